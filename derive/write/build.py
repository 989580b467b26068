"""Generate cells into a package and import it in one call, from a script or a notebook.

    from derive.build import build
    cells = build("my_cell.py", "mycells")      # or build([cell_object], "mycells")
    cell = cells["my_cell"](input_size=8, hidden_size=16)

Same files as `python -m derive generate my_cell.py --out mycells`, with the same refusals: `out`
must be new, or a folder holding a generated package or nothing (`NotAPackageError`). Calling it
again after editing the spec regenerates and re-imports, so a notebook always runs the current kernels.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from derive.spec import Cell

from . import generate as gen


def build(cells, out, log=None) -> dict[str, type]:
    """Write `cells` (Cell objects, or spec file paths) as package `out`; return its CELLS."""
    items = [cells] if isinstance(cells, (Cell, str, Path)) else list(cells)
    resolved: list[Cell] = []
    for item in items:
        resolved += [item] if isinstance(item, Cell) else gen.load_spec_file(item)
    out = Path(out).resolve()
    if not out.name.isidentifier():  # checked before anything is written
        raise ValueError(f"out must be a folder whose name is a Python package name, got {out.name!r} ({out})")
    gen.write_package(gen.render_all(resolved), out, log=log or (lambda message: None))
    return import_package(out).CELLS


def import_package(path: Path):
    """(Re-)import the generated package at `path`, replacing any earlier import of it."""
    name = path.name
    if not name.isidentifier():
        raise ValueError(f"output directory name {name!r} is not a valid Python package name")
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]
    spec = importlib.util.spec_from_file_location(name, path / "__init__.py", submodule_search_locations=[str(path)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return package
