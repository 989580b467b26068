"""Write generated cell modules and their docs pages, and check that the checked-in ones are current.

Every cell is validated (`validate.py`) and rendered first; the package is then replaced as a
whole (`transaction.py`: staged, tested, swapped in by one atomic rename, one run at a time). Only
a folder that holds nothing or a generated package is replaced: a file, or a folder with files
`generate` did not write, is refused, force or not. Each generated file's header (modules and docs
pages) holds the sha256 of its content: a file edited by hand no longer matches it, `check` says
so and `generate` refuses to overwrite it without force.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import sympy as sp

from derive.analysis.formulas import formulas
from derive.cells import builtin_cells
from derive.derivation import Derivation, derive
from derive.render.layout import wrap_module
from derive.render.module import module_context
from derive.spec import Cell
from derive.validate import validate_package

from . import paths
from .transaction import GenerateError, locked, recover, replace

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


class SpecFileError(ValueError):
    """A spec file is missing, defines no cell, or exits while loading."""


class _SpecExit(BaseException):
    """`os._exit` called by a spec file while it loads."""


def _refuse_exit(status=0):
    raise _SpecExit(status)


def load_spec_file(path: str | os.PathLike) -> list[Cell]:
    """The `Cell` objects defined at module level in a spec file.

    A spec that exits while loading (`sys.exit`, `exit()`, `os._exit`) raises SpecFileError;
    `os._exit` is replaced for the time of the loading (an exit from C code is not caught).
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise SpecFileError(f"spec file {path} does not exist")
    module_name = f"_derive_spec_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    exit_ = os._exit
    os._exit = _refuse_exit
    try:
        spec.loader.exec_module(module)
    except (SystemExit, _SpecExit) as error:
        how = f"SystemExit({error.code!r})" if isinstance(error, SystemExit) else f"os._exit({error.args[0]!r})"
        raise SpecFileError(f"spec file {path} exits while loading ({how}); a spec only declares cells") from None
    finally:
        os._exit = exit_
    cells = [value for value in vars(module).values() if isinstance(value, Cell)]
    if not cells:
        raise SpecFileError(f"spec file {path} defines no Cell at module level")
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


# Compiled into every kernel (imported by the generated modules). Numba keys a cached kernel on its own file only, so these files'
# bytes enter the header hash: a change to them changes the generated text (`check` fails until
# regenerated), and regenerating refreshes the kernels' caches.
KERNEL_SUPPORT = [paths.RUNTIME / name for name in ("matrix.py", "compiler.py", "kernel_math.py")]


def _spec_bytes(cell: Cell) -> bytes:
    """The spec file's bytes, or for a cell built in a session, a canonical dump of its declarations."""
    if cell.source_path:
        return Path(cell.source_path).read_bytes()
    return repr(
        (
            [(p.name, p.kind, p.gates, p.operand, p.init) for p in cell.params],
            [(e.symbol.name, sp.srepr(e.expr), e.state) for e in cell.equations],
            [(c.name, c.default) for c in cell.constants],
        )
    ).encode()


def _with_header(body: str, template: str, spec: str, inputs_hash: str) -> str:
    header = _env.get_template(HEADER_TEMPLATE).render(
        template=template,
        spec=spec,
        inputs_hash=inputs_hash,
        content_hash=hashlib.sha256(body.encode()).hexdigest(),
    )
    return header + body


def derivations(cells: list[Cell | Derivation]) -> list[Derivation]:
    """Each cell validated and derived, once (a Derivation is taken as it is); cells that go into
    one package must also have distinct names (SpecError)."""
    validate_package([c.cell if isinstance(c, Derivation) else c for c in cells])
    return [c if isinstance(c, Derivation) else derive(c) for c in cells]


def render_cell(cell: Cell | Derivation, spec_bytes: bytes | None = None) -> str:
    """The full text of `<cell.name>.py`."""
    derivation = cell if isinstance(cell, Derivation) else derive(cell)
    cell = derivation.cell
    equations = [f.text() for f in formulas(derivation).forward]  # as on the docs pages
    body = wrap_module(_env.get_template(CELL_TEMPLATE).render(**module_context(derivation, equations)))
    spec_bytes = _spec_bytes(cell) if spec_bytes is None else spec_bytes
    inputs = _sha256(
        spec_bytes, *_template_bytes(CELL_TEMPLATE, HEADER_TEMPLATE), *(p.read_bytes() for p in KERNEL_SUPPORT)
    )
    return _with_header(body, CELL_TEMPLATE, cell.source or "<interactive>", inputs)


def render_package(cells: list[Cell]) -> str:
    """The text of the package's `__init__.py`, listing `cells` in CELLS."""
    entries = [{"module": c.name, "class_name": c.class_name, "name": c.name} for c in cells]
    body = wrap_module(_env.get_template(PACKAGE_TEMPLATE).render(cells=entries))
    inputs = _sha256(" ".join(c.name for c in cells).encode(), *_template_bytes(PACKAGE_TEMPLATE, HEADER_TEMPLATE))
    return _with_header(body, PACKAGE_TEMPLATE, ", ".join(c.name for c in cells), inputs)


def render_all(cells: list[Cell | Derivation]) -> dict[str, str]:
    """File name -> text for a package holding `cells` (validated first: SpecError)."""
    derived = derivations(cells)
    files = {"__init__.py": render_package([d.cell for d in derived])}
    for d in derived:
        files[f"{d.cell.name}.py"] = render_cell(d)
    return files


def render_docs(cells: list[Cell | Derivation]) -> dict[str, str]:
    """File name -> text of the page `docs/cells/<cell>.md` of each cell (`analysis/formulas.py`)."""
    pages = {}
    for d in derivations(cells):
        c = d.cell
        body = "\n" + formulas(d).markdown()
        pages[f"{c.name}.md"] = (
            f"<!-- Generated by `python -m derive generate` from {c.source}; do not edit by hand. -->\n"
            f"<!-- content sha256: {hashlib.sha256(body.encode()).hexdigest()} -->\n" + body
        )
    return pages


class HandEditedError(GenerateError):
    """`generate` would overwrite generated files that were edited by hand."""


class NotAPackageError(GenerateError):
    """`out` is a file, or a folder with files that `generate` did not write: never replaced."""


def write_docs(files: dict[str, str], out: Path, log=print, force: bool = False) -> list[str]:
    """Write the pages that changed into `out`, each by an atomic rename; pages edited by hand
    are not overwritten unless `force`. Returns the names written."""
    out = Path(out)
    if not force:
        _refuse_hand_edits(f"{out} was not changed", hand_edits(files, out))
    out.mkdir(parents=True, exist_ok=True)
    changed = stale_files(files, out)
    for name in changed:
        staged = out / f".{name}.tmp"
        staged.write_text(files[name], encoding="utf-8")
        os.replace(staged, out / name)
        log(f"wrote {out / name}")
    return changed


def write_package(files: dict[str, str], out: Path, log=print, force: bool = False) -> list[str]:
    """Replace the package `out` by one holding `files`, all at once (see `transaction.py`).

    `out` must not exist, or be a folder holding a generated package or nothing (NotAPackageError,
    even with `force`). Generated files of `out` edited by hand are not overwritten unless `force`.
    Returns the names of the files that changed.
    """
    out = Path(out).resolve()
    with locked(out, log):
        recover(out)
        _refuse_a_non_package(out)
        if not force:
            _refuse_hand_edits(f"{out} was not changed", hand_edits(files, out))
        return replace(files, out, log)


def write_builtin(names: set[str] | None = None, force: bool = False, log=print) -> list[str]:
    """Regenerate generated/ and docs/cells/ for the built-in cells (all, or those `names`).

    Nothing is written if any file to overwrite was edited by hand, unless `force`. Returns the
    paths written.
    """
    derived = derivations(builtin_cells())
    chosen = [d for d in derived if names is None or d.cell.name in names]
    modules = {"__init__.py", *(f"{d.cell.name}.py" for d in chosen)}
    files = {name: text for name, text in render_all(derived).items() if name in modules}
    pages = render_docs(chosen)
    if not force:
        _refuse_hand_edits("nothing was written", hand_edits(files, GENERATED) + hand_edits(pages, DOCS))
    written = [str(GENERATED / n) for n in write_package(files, GENERATED, log, force)]
    return written + [str(DOCS / n) for n in write_docs(pages, DOCS, log, force)]


@dataclass
class CheckReport:
    """What `check` found: files edited by hand (or never generated), and stale files."""

    cells: int
    edited: list[str] = field(default_factory=list)  # '<path>: <why>'
    stale: list[str] = field(default_factory=list)  # 'generated/<name>', 'docs/cells/<name>'

    @property
    def current(self) -> bool:
        return not (self.edited or self.stale)


def check() -> CheckReport:
    """Compare the checkout's generated/ and docs/cells/ with what the specs and templates produce
    (each cell validated and derived once, for its module and its page)."""
    derived = derivations(builtin_cells())
    report = CheckReport(len(derived))
    for folder, label, files in (
        (GENERATED, "generated", render_all(derived)),
        (DOCS, "docs/cells", render_docs(derived)),
    ):
        report.edited += hand_edits(files, folder)
        by_hand = hand_edited(files, folder)  # a file edited by hand is reported as such, not also as stale
        report.stale += [f"{label}/{name}" for name in stale_files(files, folder) if name not in by_hand]
    return report


def _refuse_a_non_package(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise NotAPackageError(
            f"{out} was not changed: it is a file, not a folder; `generate` writes a package "
            "folder and never replaces a file (--force does not change that): choose another output folder"
        )
    foreign = not_generated(out)
    if foreign:
        listed = foreign[:MAX_LISTED] + (
            [f"... and {len(foreign) - MAX_LISTED} more"] if len(foreign) > MAX_LISTED else []
        )
        raise NotAPackageError(
            f"{out} was not changed: it holds files that `generate` did not write:\n  "
            + "\n  ".join(listed)
            + "\n`generate` replaces only a folder that holds a generated package or nothing "
            "(--force does not change that): choose a new output folder"
        )


def _refuse_hand_edits(outcome: str, edited: list[str]) -> None:
    if edited:
        raise HandEditedError(
            f"{outcome}: generating would overwrite\n  "
            + "\n  ".join(edited)
            + "\nmove the change into the spec or the template, or rerun with --force to discard it"
        )


MAX_LISTED = 10  # files named in a refusal


# How each kind of generated file starts: its first line, and the line (of the first `lines`)
# with the sha256 of the content after them.
HEADERS = {
    ".py": (
        "# Generated by `python -m derive generate`",
        re.compile(r"^# content sha256: ([0-9a-f]{64})$"),
        4,
    ),  # header.jinja
    ".md": (
        "<!-- Generated by `python -m derive generate`",
        re.compile(r"^<!-- content sha256: ([0-9a-f]{64}) -->$"),
        2,
    ),
}
NOT_GENERATED = "not a generated file (no generated header)"


def edited_by_hand(text: str, kind: str = ".py") -> str | None:
    """Why `text` is not an untouched generated file of `kind` (.py, .md), or None if it is one."""
    first, hash_line, count = HEADERS[kind]
    lines = text.split("\n", count)
    match = hash_line.match(lines[count - 1]) if len(lines) > count else None
    if not lines[0].startswith(first) or match is None:
        return NOT_GENERATED
    if hashlib.sha256(lines[count].encode()).hexdigest() != match.group(1):
        return "edited by hand (its content no longer matches the content sha256 in its header)"
    return None


def hand_edited(files: dict[str, str], out: Path) -> dict[str, str]:
    """Name -> why, for each file of `out` that writing `files` would overwrite but that was
    edited by hand or never generated."""
    found = {}
    for name, text in files.items():
        path = Path(out) / name
        if path.is_file():
            current = path.read_text(encoding="utf-8")
            why = edited_by_hand(current, path.suffix) if current != text else None
            if why:
                found[name] = why
    return found


def hand_edits(files: dict[str, str], out: Path) -> list[str]:
    """'<path>: <why>' for each file of `hand_edited(files, out)`."""
    return [f"{Path(out) / name}: {why}" for name, why in hand_edited(files, out).items()]


def not_generated(out: Path) -> list[str]:
    """The entries of the folder `out` that `generate` did not write: all but `__pycache__` and
    modules with the generated header (edited by hand or not)."""
    if not out.is_dir():
        return []
    return sorted(str(path) for path in out.iterdir() if not _written_by_generate(path))


def _written_by_generate(path: Path) -> bool:
    if path.is_symlink():
        return False
    if path.name == "__pycache__":
        return path.is_dir()
    return (
        path.suffix == ".py"
        and path.is_file()
        and edited_by_hand(path.read_text(encoding="utf-8", errors="replace")) != NOT_GENERATED
    )


def stale_files(files: dict[str, str], out: Path) -> list[str]:
    """Names of files in `out` that differ from `files` (or are missing)."""
    out = Path(out)
    stale = []
    for name, text in files.items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
