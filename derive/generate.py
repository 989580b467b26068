"""Write generated cell modules and their docs pages, and check that the checked-in ones are current.

Every cell is validated (`validate.py`) and rendered first; the package is then replaced as a
whole, never file by file (`transaction.py`: staged, tested, swapped in by one atomic rename,
one run at a time). Each file's header holds the sha256 of its content: a file edited by hand
no longer matches it, `check` says so and `generate` refuses to overwrite it without force.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
from pathlib import Path

import jinja2
import sympy as sp

from . import paths
from .cells import BUILTIN
from .codegen import module_context
from .derivation import derive
from .spec import Cell
from .transaction import GenerateError, locked, recover, replace
from .validate import validate_package

TEMPLATES = paths.TEMPLATES
GENERATED = paths.GENERATED
DOCS = paths.DOCS_CELLS
CELL_TEMPLATE = "cell.py.jinja"
PACKAGE_TEMPLATE = "package.py.jinja"
HEADER_TEMPLATE = "header.jinja"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)


def builtin_cells() -> list[Cell]:
    cells = []
    for name in BUILTIN:
        cell = importlib.import_module(f"derive.cells.{name}").cell
        cell.source = f"derive/cells/{name}.py"
        cell.source_path = str(paths.CELL_SPECS / f"{name}.py")
        cells.append(cell)
    return cells


def load_spec_file(path: str | os.PathLike) -> list[Cell]:
    """The `Cell` objects defined at module level in a spec file."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"spec file {path} does not exist")
    module_name = f"_derive_spec_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cells = [value for value in vars(module).values() if isinstance(value, Cell)]
    if not cells:
        raise ValueError(f"spec file {path} defines no Cell at module level")
    for cell in cells:
        cell.source, cell.source_path = path.name, str(path)
    return cells


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _template_bytes(*names: str) -> list[bytes]:
    return [(TEMPLATES / name).read_bytes() for name in names]


# Compiled into every kernel. Numba keys a cached kernel on its own file only, so these files'
# bytes enter the header hash: a change to them changes the generated text (`check` fails until
# regenerated), and regenerating refreshes the kernels' caches.
KERNEL_SUPPORT = [paths.PACKAGE / name for name in ("matrix.py", "jit.py")]


def _spec_bytes(cell: Cell) -> bytes:
    """The spec file's bytes, or for a cell built in a session, a canonical dump of its declarations."""
    if cell.source_path:
        return Path(cell.source_path).read_bytes()
    return repr(([(p.name, p.kind, p.gates, p.operand, p.init) for p in cell.params],
                 [(e.symbol.name, sp.srepr(e.expr), e.state) for e in cell.equations])).encode()


def _with_header(body: str, template: str, spec: str, inputs_hash: str) -> str:
    header = _env.get_template(HEADER_TEMPLATE).render(
        template=template,
        spec=spec,
        inputs_hash=inputs_hash,
        content_hash=hashlib.sha256(body.encode()).hexdigest(),
    )
    return header + body


def render_cell(cell: Cell, spec_bytes: bytes | None = None) -> str:
    """The full text of `<cell.name>.py`."""
    body = _env.get_template(CELL_TEMPLATE).render(**module_context(derive(cell)))
    spec_bytes = _spec_bytes(cell) if spec_bytes is None else spec_bytes
    inputs = _sha256(spec_bytes, *_template_bytes(CELL_TEMPLATE, HEADER_TEMPLATE), *(p.read_bytes() for p in KERNEL_SUPPORT))
    return _with_header(body, CELL_TEMPLATE, cell.source or "<interactive>", inputs)


def render_package(cells: list[Cell]) -> str:
    """The text of the package's `__init__.py`, listing `cells` in CELLS."""
    entries = [{"module": c.name, "class_name": c.class_name, "name": c.name} for c in cells]
    body = _env.get_template(PACKAGE_TEMPLATE).render(cells=entries)
    inputs = _sha256(" ".join(c.name for c in cells).encode(), *_template_bytes(PACKAGE_TEMPLATE, HEADER_TEMPLATE))
    return _with_header(body, PACKAGE_TEMPLATE, ", ".join(c.name for c in cells), inputs)


def render_all(cells: list[Cell]) -> dict[str, str]:
    """File name -> text for a package holding `cells` (validated first: SpecError)."""
    validate_package(cells)
    files = {"__init__.py": render_package(cells)}
    for cell in cells:
        files[f"{cell.name}.py"] = render_cell(cell)
    return files


def render_docs(cells: list[Cell]) -> dict[str, str]:
    """File name -> text of the page `docs/cells/<cell>.md` of each cell (`formulas.py`)."""
    from .formulas import formulas

    return {
        f"{c.name}.md": f"<!-- Generated by `python -m derive generate` from {c.source}; do not edit by hand. -->\n\n"
        + formulas(c).markdown()
        for c in cells
    }


def write_docs(files: dict[str, str], out: Path, log=print) -> None:
    """Write the pages into `out`, each by an atomic rename."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        staged = out / f".{name}.tmp"
        staged.write_text(text, encoding="utf-8")
        os.replace(staged, out / name)
        log(f"wrote {out / name}")


class HandEditedError(GenerateError):
    """`generate` would overwrite files that were edited by hand or not generated."""


def write_package(files: dict[str, str], out: Path, log=print, force: bool = False) -> list[str]:
    """Replace the package `out` by one holding `files`, all at once (see `transaction.py`).

    Files of `out` that were edited by hand, or not generated, are not overwritten unless
    `force`. Returns the names of the files that changed.
    """
    out = Path(out).resolve()
    with locked(out, log):
        recover(out)
        edited = [] if force else hand_edits(files, out)
        if edited:
            raise HandEditedError(
                f"{out} was not changed: generating would overwrite\n  " + "\n  ".join(edited)
                + "\nmove the change into the spec or the template, or rerun with --force to discard it"
            )
        return replace(files, out, log)


HEADER_HASH = re.compile(r"^# content sha256: ([0-9a-f]{64})$")
HEADER_LINES = 4  # templates/header.jinja


def edited_by_hand(text: str) -> str | None:
    """Why `text` is not an untouched generated file, or None if it is one."""
    lines = text.split("\n", HEADER_LINES)
    match = HEADER_HASH.match(lines[HEADER_LINES - 1]) if len(lines) > HEADER_LINES else None
    if not lines[0].startswith("# Generated by `python -m derive generate`") or match is None:
        return "not a generated file (no generated header)"
    if hashlib.sha256(lines[HEADER_LINES].encode()).hexdigest() != match.group(1):
        return "edited by hand (its content no longer matches the content sha256 in its header)"
    return None


def hand_edits(files: dict[str, str], out: Path) -> list[str]:
    """'<path>: <why>' for each file of `out` that writing `files` would overwrite but that
    was edited by hand or never generated."""
    found = []
    for name, text in files.items():
        path = Path(out) / name
        if path.is_file():
            current = path.read_text(encoding="utf-8")
            why = edited_by_hand(current) if current != text else None
            if why:
                found.append(f"{path}: {why}")
    return found


def stale_files(files: dict[str, str], out: Path) -> list[str]:
    """Names of files in `out` that differ from `files` (or are missing)."""
    out = Path(out)
    stale = []
    for name, text in files.items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
