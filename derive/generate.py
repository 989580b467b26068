"""Write generated cell modules and check that the checked-in ones are current.

Generation is transactional: every file is rendered and written into a temporary directory
beside the output, the new modules are imported there as a smoke test, and only then are the
files moved into place one by one with atomic renames. A failure at any point before that
leaves the previous output untouched.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jinja2
import sympy as sp

from .cells import BUILTIN
from .codegen import module_context
from .derivation import derive
from .spec import Cell

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
GENERATED = ROOT / "generated"
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
        cell.source_path = str(ROOT / cell.source)
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
    inputs = _sha256(spec_bytes, *_template_bytes(CELL_TEMPLATE, HEADER_TEMPLATE))
    return _with_header(body, CELL_TEMPLATE, cell.source or "<interactive>", inputs)


def render_package(cells: list[Cell]) -> str:
    """The text of the package's `__init__.py`, listing `cells` in CELLS."""
    entries = [{"module": c.name, "class_name": c.class_name, "name": c.name} for c in cells]
    body = _env.get_template(PACKAGE_TEMPLATE).render(cells=entries)
    inputs = _sha256(" ".join(c.name for c in cells).encode(), *_template_bytes(PACKAGE_TEMPLATE, HEADER_TEMPLATE))
    return _with_header(body, PACKAGE_TEMPLATE, ", ".join(c.name for c in cells), inputs)


def render_all(cells: list[Cell]) -> dict[str, str]:
    """File name -> text for a package holding `cells`."""
    files = {"__init__.py": render_package(cells)}
    for cell in cells:
        files[f"{cell.name}.py"] = render_cell(cell)
    return files


def write_package(files: dict[str, str], out: Path, log=print) -> None:
    """Write `files` into `out` transactionally (see the module docstring)."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-staging-", dir=out.parent))
    try:
        package = staging / out.name
        package.mkdir()
        for name, text in files.items():
            (package / name).write_text(text, encoding="utf-8")
        _smoke_import(staging, out.name)
        out.mkdir(exist_ok=True)
        for name in files:
            os.replace(package / name, out / name)
            log(f"wrote {out / name}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _smoke_import(path: Path, package: str) -> None:
    """Import the staged package in a fresh interpreter; raise with its error if that fails."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env["NUMBA_DISABLE_JIT"] = "1"  # importing must work; compiling happens at first call
    result = subprocess.run(
        [sys.executable, "-c", f"import {package}; assert {package}.CELLS"],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise RuntimeError(f"the regenerated modules fail to import; nothing was replaced:\n{result.stderr}")


def stale_files(files: dict[str, str], out: Path) -> list[str]:
    """Names of files in `out` that differ from `files` (or are missing)."""
    out = Path(out)
    stale = []
    for name, text in files.items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
