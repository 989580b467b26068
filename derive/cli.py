"""`python -m derive COMMAND`: generate, check, show, gradcheck, bench."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import generate as gen


def _cells(targets: list[str]):
    """Cells named by built-in name or given as spec files (*.py)."""
    builtin = {c.name: c for c in gen.builtin_cells()}
    cells = []
    for target in targets:
        if target.endswith(".py") or Path(target).is_file():
            cells += gen.load_spec_file(target)
        elif target in builtin:
            cells.append(builtin[target])
        else:
            raise SystemExit(f"unknown cell {target!r}: built-in cells are {', '.join(builtin)}, or give a spec file")
    return cells


def cmd_generate(args) -> int:
    if args.out is None:
        requested = {c.name for c in _cells(args.cells)} if args.cells else None
        files = gen.render_all(gen.builtin_cells())
        if requested is not None:
            files = {k: v for k, v in files.items() if k == "__init__.py" or k[:-3] in requested}
        gen.write_package(files, gen.GENERATED)
    else:
        if not args.cells:
            raise SystemExit("generate --out DIR needs the cells or spec files to generate")
        gen.write_package(gen.render_all(_cells(args.cells)), Path(args.out))
    return 0


def cmd_check(args) -> int:
    stale = gen.stale_files(gen.render_all(gen.builtin_cells()), gen.GENERATED)
    if stale:
        print("generated/ is stale; these files differ from what the specs and templates produce:")
        for name in stale:
            print(f"  generated/{name}")
        print("run `python -m derive generate` and commit the result")
        return 1
    print(f"generated/ is current ({len(gen.builtin_cells())} cells)")
    return 0


def cmd_show(args) -> int:
    from .derivation import derive
    from .formulas import show_text

    for cell in _cells(args.cells):
        print(show_text(derive(cell), args.part))
    return 0


def cmd_gradcheck(args) -> int:
    import numpy as np

    from .gradcheck import check_cell
    from .runtime import RecurrentCell

    classes = _generated_classes(args.cells)
    print(f"{'cell':<16}{'worst rel. error':>18}  {'quantities checked':<}")
    failed = []
    for cls in classes:
        start = time.perf_counter()
        report = check_cell(cls)
        ok = report.worst <= args.tolerance
        failed += [] if ok else [cls.name]
        names = ", ".join(report.errors)
        print(f"{cls.name:<16}{report.worst:>18.2e}  {names}  [{'ok' if ok else 'FAIL'}, {time.perf_counter() - start:.1f}s]")
    print(f"{len(classes) - len(failed)} passed, {len(failed)} failed (tolerance {args.tolerance:g}, float64 central differences)")
    return 1 if failed else 0


def _generated_classes(names: list[str]):
    import generated

    if not names:
        return list(generated.CELLS.values())
    unknown = [n for n in names if n not in generated.CELLS]
    if unknown:
        raise SystemExit(f"unknown cell(s) {unknown}; generated cells: {', '.join(generated.CELLS)}")
    return [generated.CELLS[n] for n in names]


def cmd_bench(args) -> int:
    try:
        from benchmarks.run import main as bench
    except ImportError as error:
        raise SystemExit(f"`bench` runs from a source checkout, with benchmarks/ beside derive/ ({error})")
    return bench(args.options)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derive", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="regenerate generated/ (or write spec files' cells to --out)")
    p.add_argument("cells", nargs="*", help="built-in cell names or spec files (default: all built-ins)")
    p.add_argument("--out", help="output directory for the cells given (a package); default generated/")
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser("check", help="fail if generated/ differs from what specs and templates produce")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("show", help="print a cell's derived equations")
    p.add_argument("cells", nargs="+", help="built-in cell names or spec files")
    p.add_argument("--part", choices=["forward", "backward", "jacobian", "all"], default="all")
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("gradcheck", help="check generated cells against finite differences")
    p.add_argument("cells", nargs="*", help="generated cell names (default: all)")
    p.add_argument("--tolerance", type=float, default=1e-6)
    p.set_defaults(run=cmd_gradcheck)

    p = sub.add_parser("bench", add_help=False, help="time generated cells against PyTorch; writes docs/benchmarks.md")
    p.set_defaults(run=cmd_bench)  # its options are parsed by benchmarks/run.py: see `bench --help`

    args, args.options = parser.parse_known_args(argv)
    if args.options and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(args.options)}")
    return args.run(args)
