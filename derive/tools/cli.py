"""`python -m derive COMMAND`: generate, check, show, flow, experiment, gradcheck, bench."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

from derive.validate import SpecError
from derive.write import generate as gen
from derive.write import paths
from derive.write.generate import SpecFileError
from derive.write.transaction import GenerateError


class UsageError(Exception):
    """A command line that cannot run: reported in one line, exit status 2."""


def _cells(targets: list[str]):
    """Cells named by built-in name or given as spec files (*.py)."""
    builtin = {c.name: c for c in gen.builtin_cells()}
    cells = []
    for target in targets:
        if _is_spec_file(target):
            if not Path(target).is_file():
                raise UsageError(f"spec file {Path(target).resolve()} does not exist")
            cells += gen.load_spec_file(target)
        elif target in builtin:
            cells.append(builtin[target])
        else:
            raise UsageError(f"unknown cell {target!r}: built-in cells are {', '.join(builtin)}, or give a spec file")
    return cells


def _is_spec_file(target: str) -> bool:
    return target.endswith(".py") or Path(target).is_file()


def cmd_generate(args) -> int:
    if args.out is None:
        spec = next((t for t in args.cells if _is_spec_file(t)), None)
        if spec is not None:
            raise UsageError(
                f"{spec} is a spec file: give --out DIR, the package folder for its cells "
                "(without --out, generate writes the built-in cells into generated/)"
            )
        paths.require_checkout("`generate` without --out (it rebuilds the built-in generated/)")
        written = gen.write_builtin({c.name for c in _cells(args.cells)} if args.cells else None, force=args.force)
        current = f"{gen.GENERATED} and {gen.DOCS} are"
    else:
        if not args.cells:
            raise UsageError("generate --out DIR needs the cells or spec files to generate")
        out = Path(args.out)
        written = gen.write_package(gen.render_all(_cells(args.cells)), out, force=args.force)
        current = f"{out} is"
    if not written:
        print(f"{current} already current")
    return 0


def cmd_check(args) -> int:
    paths.require_checkout("`check` (it compares the checkout's generated/ and docs/cells/ with the specs)")
    report = gen.check()
    if report.edited:
        print("generated/ or docs/cells/ has files that were not produced by `generate` as they are:")
        for line in report.edited:
            print(f"  {line}")
    if report.stale:
        print("generated/ or docs/cells/ is stale; these files differ from what the specs and templates produce:")
        for name in report.stale:
            print(f"  {name}")
    if report.edited:
        print(
            "move each change into the spec or the template, then run `python -m derive generate --force` "
            "(it discards the edits) and commit the result"
        )
    elif report.stale:
        print("run `python -m derive generate` and commit the result")
    if not report.current:
        return 1
    print(f"generated/ and docs/cells/ are current ({report.cells} cells)")
    return 0


def cmd_show(args) -> int:
    from derive.analysis.formulas import formulas

    for cell in _cells(args.cells):
        print(getattr(formulas(cell), args.format)(args.part))
    return 0


def cmd_gradcheck(args) -> int:

    from .gradcheck import check_cell

    classes = _generated_classes(args.cells, args.package)
    print(f"{'cell':<16}{'worst rel. error':>18}{'beyond round-off':>18}  {'quantities checked':<}")
    failed = []
    for cls in classes:
        start = time.perf_counter()
        report = check_cell(cls)
        ok = not report.failures(args.tolerance)  # beyond the round-off of the central differences
        failed += [] if ok else [cls.name]
        names = ", ".join(report.errors)
        print(
            f"{cls.name:<16}{report.worst:>18.2e}{max(report.beyond_resolution.values()):>18.2e}  {names}  "
            f"[{'ok' if ok else 'FAIL'}, {time.perf_counter() - start:.1f}s]"
        )
    print(
        f"{len(classes) - len(failed)} passed, {len(failed)} failed (tolerance {args.tolerance:g}, float64 central differences)"
    )
    return 1 if failed else 0


def cmd_flow(args) -> int:
    from derive.analysis import flow, flow_report

    try:
        base = flow.Settings(
            args.steps,
            args.hidden_size,
            args.input_size,
            args.batch,
            args.seed,
            args.input_scale,
            gate=args.gate,
            lyapunov=args.lyapunov,
            warmup=args.warmup,
        )
    except ValueError as error:  # the command line's values: a usage error
        raise UsageError(str(error)) from None
    out = Path(args.out)
    try:  # before the measurement, which can take minutes
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot write into {out}: {error.strerror}") from None
    try:
        classes = flow.resolve(args.cells)
        runs = flow.sweep(base, args.gate_bias or [None], args.weight_scale or [None])
        flows = []
        for settings, suffix in runs:
            for cls in classes:
                start = time.perf_counter()
                flows += flow.analyze([cls], settings, suffix)
                print(
                    f"measured {flows[-1].label}: {settings.steps} steps in {time.perf_counter() - start:.1f}s",
                    flush=True,
                )
    except ValueError as error:
        raise SystemExit(f"flow: {error}") from None
    paths = flow_report.write_csv(flows, out)
    print()
    print(flow_report.table(flows))
    print()
    if args.lyapunov:
        print(flow_report.lyapunov_table(flows))
        print()
    varying = tuple(
        name
        for name, values in (("gate_bias", args.gate_bias), ("weight_scale", args.weight_scale))
        if values and len(values) > 1
    )
    title = args.title or ", ".join(
        sorted({c.name for c in classes}, key=args.cells.index)
    ) + ": " + flow_report.describe(runs[0][0], varying)
    pngs = [png for png in (flow_report.plot(flows, out, title), flow_report.plot_lyapunov(flows, out, title)) if png]
    for path in paths + tuple(pngs):
        print(f"wrote {path}")
    if not pngs:
        print(flow_report.NO_MATPLOTLIB)
    return 0


def cmd_experiment(args) -> int:
    from derive.analysis import flow_report
    from derive.tools import experiment

    given = {
        f.name: getattr(args, f.name, None) for f in dataclasses.fields(experiment.Settings)
    }  # options left out: the defaults
    try:
        settings = experiment.Settings(
            **{name: tuple(v) if isinstance(v, list) else v for name, v in given.items() if v is not None}
        )
        torch = experiment.require_torch()
    except (ValueError, ImportError) as error:
        raise UsageError(str(error)) from None
    if args.threads is not None:
        import numba

        if not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
            raise UsageError(
                f"--threads must be from 1 to {numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS), got {args.threads}"
            )
        numba.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    try:  # before the training, which takes minutes
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot write into {out}: {error.strerror}") from None
    results = experiment.run(settings, experiment.Progress())
    print(experiment.table(results))
    written = experiment.write_csv(results, out) + (
        experiment.plot(results, out, args.title or experiment.describe(settings)),
    )
    for path in written:
        print(f"wrote {path}" if path else flow_report.NO_MATPLOTLIB)
    return 0


def _generated_classes(names: list[str], package: str | None = None):
    """Classes of a generated package: the built-in `generated`, or the package folder `package`."""
    if package is None:
        import generated as module
    else:
        from derive.write.build import import_package

        folder = Path(package).resolve()
        if not (folder / "__init__.py").is_file():
            raise SystemExit(f"--package {package}: not a generated package (no {folder / '__init__.py'})")
        module = import_package(folder)
    if not names:
        return list(module.CELLS.values())
    unknown = [n for n in names if n not in module.CELLS]
    if unknown:
        raise SystemExit(f"unknown cell(s) {unknown}; generated cells: {', '.join(module.CELLS)}")
    return [module.CELLS[n] for n in names]


def cmd_bench(args) -> int:
    from .bench.run import main as bench

    return bench(args.options)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derive", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="regenerate generated/ and docs/cells/ (or write spec files' cells to --out)")
    p.add_argument("cells", nargs="*", help="built-in cell names or spec files (default: all built-ins)")
    p.add_argument("--out", help="output directory for the cells given (a package); default generated/")
    p.add_argument("--force", action="store_true", help="overwrite files edited by hand (their edits are lost)")
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser("check", help="fail if generated/ or docs/cells/ differ from what specs and templates produce")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("show", help="print a cell's derived equations")
    p.add_argument("cells", nargs="+", help="built-in cell names or spec files")
    p.add_argument("--part", choices=["forward", "backward", "jacobian", "all"], default="all")
    style = p.add_mutually_exclusive_group()
    style.add_argument("--text", dest="format", action="store_const", const="text", help="readable Unicode (default)")
    style.add_argument(
        "--latex", dest="format", action="store_const", const="latex", help="LaTeX (aligned environments)"
    )
    style.add_argument(
        "--markdown",
        dest="format",
        action="store_const",
        const="markdown",
        help="Markdown with ```math blocks, as in docs/cells/",
    )
    p.set_defaults(format="text")
    p.set_defaults(run=cmd_show)

    p = sub.add_parser(
        "flow", help="measure gradient flow ‖∂s_T/∂s_{T−k}‖ of generated cells along a random trajectory"
    )
    p.add_argument("cells", nargs="+", help="generated cell names; all run on the same random input")
    p.add_argument("--steps", type=int, default=100, help="sequence length T (default 100)")
    p.add_argument(
        "--out", required=True, help="directory for gradient_flow.csv, gradient_flow_steps.csv, gradient_flow.png"
    )
    p.add_argument("--hidden-size", type=int, default=32, help="H (default 32)")
    p.add_argument("--input-size", type=int, help="I (default: H)")
    p.add_argument(
        "--batch", type=int, default=1, help="batch rows, each its own trajectory; means are reported (default 1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the weights (PyTorch's default init) and the input")
    p.add_argument("--input-scale", type=_finite, default=1.0, help="x ~ scale · N(0, 1) (default 1)")
    p.add_argument(
        "--gate-bias",
        type=_finite,
        nargs="+",
        metavar="B",
        help="total bias of the forget/update gate (f, else z); several values: one run each",
    )
    p.add_argument("--gate", help="the gate --gate-bias sets (default: f, else z)")
    p.add_argument(
        "--weight-scale",
        type=_finite,
        nargs="+",
        metavar="RHO",
        help="spectral radius of every H×H gate block of the recurrent matrices; several values: one run each",
    )
    p.add_argument(
        "--lyapunov",
        type=int,
        default=0,
        metavar="K",
        help="also compute the top K Lyapunov exponents of the Jacobian product (lyapunov.csv, lyapunov.png)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=0,
        metavar="W",
        help="steps run but not averaged into the Lyapunov exponents (default 0)",
    )
    p.add_argument("--title", help="title of the figures (default: the cells and settings)")
    p.set_defaults(run=cmd_flow)

    p = sub.add_parser(
        "experiment", help="train cells with derive.torch on a long-lag task, next to their gradient flow"
    )
    tasks = p.add_subparsers(dest="task", required=True)
    p = tasks.add_parser(
        "adding", help="the adding problem (Hochreiter & Schmidhuber 1997): sum the two marked values of a sequence"
    )
    p.add_argument("--cells", nargs="+", help="generated cell names (default: rnn lstm gru)")
    p.add_argument("--lags", type=int, nargs="+", help="sequence lengths T, each >= 2 (default: 50 100 200)")
    p.add_argument("--steps", type=int, help="Adam steps per cell and lag (default: 800)")
    p.add_argument("--batch", type=int, help="sequences per step (default: 64)")
    p.add_argument("--hidden", type=int, help="hidden size H (default: 64)")
    p.add_argument("--lr", type=_finite, help="Adam's learning rate (default: 0.01)")
    p.add_argument("--clip", type=_finite, help="largest gradient norm per step, 0: no clipping (default: 1.0)")
    p.add_argument(
        "--forget-bias",
        type=_finite,
        nargs="+",
        metavar="B",
        help="total forget-gate bias of the cells with a gate f; several values: one run each (default: PyTorch's init)",
    )
    p.add_argument("--seed", type=int, help="seed of the weights, the batches and the test set (default: 0)")
    p.add_argument("--test-size", type=int, help="test sequences (default: 512)")
    p.add_argument("--eval-every", type=int, help="steps between test evaluations (default: steps / 20)")
    p.add_argument("--threads", type=int, help="threads of the kernels and of PyTorch (default: theirs)")
    p.add_argument(
        "--out", default="out/adding", help="directory for adding.csv, adding_flow.csv, adding.png (default out/adding)"
    )
    p.add_argument("--title", help="title of the figure (default: the settings)")
    p.set_defaults(run=cmd_experiment)

    p = sub.add_parser("gradcheck", help="check generated cells against finite differences")
    p.add_argument("cells", nargs="*", help="generated cell names (default: all)")
    p.add_argument(
        "--package", metavar="DIR", help="a package written by `generate --out DIR` (default: the built-in cells)"
    )
    p.add_argument("--tolerance", type=_finite, default=1e-6)
    p.set_defaults(run=cmd_gradcheck)

    p = sub.add_parser("bench", add_help=False, help="time generated cells against PyTorch; writes docs/benchmarks.md")
    p.set_defaults(run=cmd_bench)  # its options are parsed by derive/tools/bench/run.py: see `bench --help`

    args, args.options = parser.parse_known_args(argv)
    if args.options and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(args.options)}")
    try:
        return args.run(args)
    except UsageError as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 2
    except (SpecError, SpecFileError) as error:
        unchanged = "\nnothing was written" if args.command == "generate" and isinstance(error, SpecError) else ""
        print(f"{args.command}: {error}{unchanged}", file=sys.stderr)
        return 1
    except GenerateError as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{args.command}: interrupted", file=sys.stderr)
        return 130
