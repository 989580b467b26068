"""docs/benchmarks.md, its plot (PNG) and the raw results (JSON) from one benchmark run."""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import interference, torch_layers
from .load import NOISY_CORES
from .workloads import BUILTIN_SIDES, PEERS, Point

NOTES = Path(__file__).with_name("NOTES.md")  # hand-written analysis, appended to the report

TARGETS = {
    "speedup": 1.5,  # geometric mean of fwd+bwd speedups over torch built-ins
    "worst": 0.9,  # no point below
    "eager": 5.0,  # variants against their eager torch loop
    "blas": 0.85,  # fraction of the BLAS ceiling at hidden 512 (float32 fwd+bwd)
    "cold": 5.0,  # seconds, cold compile per cell and dtype (all kernels)
    "warm": 0.5,  # seconds, warm import + first call
    "ulp": 4,  # float32 activations against the correctly rounded result
    # against the best peer at each point: (geometric mean, no point below)
    "peer forward_backward": (1.5, 1.0),
    "peer inference": (1.2, 0.9),
}
MODE_NAMES = {"forward_backward": "fwd+bwd", "inference": "inference"}  # the modes compared with peers


def _ms(entry: dict, side: str, mode: str = "forward_backward") -> float | None:
    times = entry["times"].get(side, {}).get(mode)
    return times["median"] * 1e3 if times else None


def _ratio(entry: dict, side: str, mode: str = "forward_backward") -> float | None:
    other = _ms(entry, side, mode)
    return other / _ms(entry, "derive", mode) if other else None


def _gflops(entry: dict, side: str = "derive") -> float | None:
    ms = _ms(entry, side)
    return entry["flops"]["forward_backward"] / ms / 1e6 if ms else None


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _fmt(value, spec: str = ".2f", unit: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{unit}"


def _label(entry: dict) -> str:
    p = Point(**entry["point"])
    return f"{p.cell} {p.dtype} {p.T}×{p.B}×{p.H}"


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(title: str, intro: list[str], header: list[str], rows: list[list], align: str) -> list[str]:
    """A section: title, explanatory lines, then a table (align: one of l/r per column)."""
    rule = ["---" if a == "l" else "---:" for a in align]
    return ["", f"## {title}", "", *intro, "", _row(header), _row(rule), *(_row(r) for r in rows)]


def best_peers(results: dict) -> dict[str, list[dict]]:
    """Per mode of MODE_NAMES, one row per point where derive and a peer (a built-in of another
    framework: BUILTIN_SIDES) were timed: the fastest peer by median, its ms, ours, and the ratio
    peer / ours (above 1: derive is faster)."""
    rows = {mode: [] for mode in MODE_NAMES}
    for entry in results["points"]:
        for mode, found in rows.items():
            ours = _ms(entry, "derive", mode)
            timed = {side: ms for side in BUILTIN_SIDES if (ms := _ms(entry, side, mode))}
            if ours and timed:
                peer = min(timed, key=timed.get)
                found.append(
                    {
                        "label": _label(entry),
                        "peer": peer,
                        "peer_ms": timed[peer],
                        "ours_ms": ours,
                        "ratio": timed[peer] / ours,
                    }
                )
    return rows


def _best_peer_table(results: dict) -> list[str]:
    best = best_peers(results)
    if not any(best.values()):
        return []
    rows = [
        [r["label"], MODE_NAMES[mode], r["peer"], _fmt(r["peer_ms"]), _fmt(r["ours_ms"]), f"{r['ratio']:.2f}x"]
        for mode, found in best.items()
        for r in found
    ]
    for mode, found in best.items():
        if found:
            ratios = [r["ratio"] for r in found]
            rows.append(
                [
                    f"**geometric mean** over {len(found)} points",
                    MODE_NAMES[mode],
                    "",
                    "",
                    "",
                    f"**{_geomean(ratios):.2f}x** (worst {min(ratios):.2f}x)",
                ]
            )
    inference = results["facts"]["derive"].get("inference", "cell.forward(x), which records the tape")
    return _table(
        "Ours against the best peer at each point",
        [
            "The fastest of the other frameworks' built-ins at each point and mode (median wall time, ms):",
            "torch.nn, Keras 3 on TensorFlow, JAX (jitted lax.scan) and ONNX Runtime (inference only), where",
            "installed. Ratio = best peer's time / ours: above 1, derive is faster. Inference: peers without",
            f"autograd state (torch.inference_mode, tf.function without tape, jitted JAX, ORT); ours: `{inference}`.",
        ],
        ["point", "mode", "best peer", "peer ms", "derive ms", "ratio"],
        rows,
        "lllrrr",
    )


def _load(results: dict) -> str | None:
    """Other processes' CPU during the timed turns: median, and how many turns were noisy."""
    rounds = [attempts for e in results["points"] for turns in e.get("load", {}).values() for attempts in turns]
    kept = [min((a[0] for a in attempts if a[0] is not None), default=None) for attempts in rounds]
    kept = [k for k in kept if k is not None]
    if not kept:
        return None
    repeated = sum(len(attempts) > 1 for attempts in rounds)
    noisy = sum(k > NOISY_CORES for k in kept)
    return (
        f"median {sorted(kept)[len(kept) // 2]:.2f} cores over {len(kept)} turns; {repeated} turns repeated "
        f"(other processes above {NOISY_CORES} cores), {noisy} still noisy after the repeats"
    )


def summary(results: dict) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows."""
    entries = results["points"]
    rows = []

    def add(target: str, measured: str, ok: bool) -> None:
        rows.append((target, measured, "met" if ok else "**missed**"))

    for mode, found in best_peers(results).items():
        if found:
            mean, floor = TARGETS[f"peer {mode}"]
            ratios = [r["ratio"] for r in found]
            worst = min(found, key=lambda r: r["ratio"])
            add(
                f"{MODE_NAMES[mode]} against the best peer: geometric mean ≥ {mean}x, no point below {floor}x",
                f"{_geomean(ratios):.2f}x over {len(found)} points; worst {worst['ratio']:.2f}x ({worst['label']}, "
                f"{worst['peer']})",
                _geomean(ratios) >= mean and worst["ratio"] >= floor,
            )
    builtin = [e for e in entries if "torch" in e["times"]]
    if builtin:
        ratios = [_ratio(e, "torch") for e in builtin]
        worst, at = min(zip(ratios, builtin), key=lambda r: r[0])
        below = sum(r < TARGETS["worst"] for r in ratios)
        add(
            f"fwd+bwd speedup over torch built-ins, geometric mean ≥ {TARGETS['speedup']}x",
            f"{_geomean(ratios):.2f}x over {len(ratios)} points",
            _geomean(ratios) >= TARGETS["speedup"],
        )
        add(
            f"no point below {TARGETS['worst']}x",
            f"worst {worst:.2f}x ({_label(at)}); {below} points below",
            worst >= TARGETS["worst"],
        )
    variants = [e for e in entries if "torch" not in e["times"] and "eager" in e["times"]]
    if variants:
        ratios = [_ratio(e, "eager") for e in variants]
        met = sum(r >= TARGETS["eager"] for r in ratios)
        add(
            f"variants ≥ {TARGETS['eager']}x faster than their eager torch loop (fwd+bwd)",
            f"{met} of {len(ratios)} points; min {min(ratios):.1f}x, geometric mean {_geomean(ratios):.1f}x",
            met == len(ratios),
        )
    wide = [e for e in entries if e["point"]["H"] == 512 and e["point"]["dtype"] == "float32"]
    if wide:
        fractions = [_gflops(e) / results["blas_gflops"][e["point"]["dtype"]] for e in wide]
        add(
            f"≥ {TARGETS['blas']:.0%} of the BLAS ceiling at hidden 512 (float32 fwd+bwd)",
            f"{min(fractions):.0%} to {max(fractions):.0%}",
            min(fractions) >= TARGETS["blas"],
        )
    if results.get("compile"):
        cold = max(max(c["cold_compile"].values()) for c in results["compile"].values())
        warm = max(c["warm_total"] for c in results["compile"].values())
        lean = [c["warm_total_without_scipy"] for c in results["compile"].values() if "warm_total_without_scipy" in c]
        add(f"cold compile ≤ {TARGETS['cold']:.0f} s per cell and dtype", f"max {cold:.1f} s", cold <= TARGETS["cold"])
        floor = max(c["numba_floor"] for c in results["compile"].values())
        measured = f"max {warm:.2f} s (Numba's own floor: up to {floor:.2f} s)"
        if lean:
            measured = f"max {max(lean):.2f} s without SciPy (not a dependency); {measured} with SciPy installed"
        add(f"warm import + first call ≤ {TARGETS['warm']} s", measured, max(lean or [warm]) <= TARGETS["warm"])
    with_memory = [e for e in entries if e.get("memory", {}).get("torch")]
    if with_memory:
        ratios = [e["memory"]["derive"] / e["memory"]["torch"] for e in with_memory]
        add("peak memory of fwd+bwd ≤ torch built-in's", f"derive / torch: max {max(ratios):.2f}", max(ratios) <= 1.0)
    for target, measured, ok in interference.targets(results["interference"]) if results.get("interference") else []:
        add(target, measured, ok)
    if results.get("accuracy"):
        worst = max(a["max_ulp"] for a in results["accuracy"] if a["dtype"] == "float32")
        add(
            f"float32 sigmoid and tanh within {TARGETS['ulp']} ulp of the correctly rounded result",
            f"max {worst:.0f} ulp (every float32 in range)",
            worst <= TARGETS["ulp"],
        )
    return rows


def _ceiling(results: dict) -> str:
    medians = results.get("blas_gflops_median", {})
    return ", ".join(
        f"{d} {g:.0f} GFLOP/s" + (f" ({medians[d]:.0f})" if d in medians else "")
        for d, g in results["blas_gflops"].items()
    )


def _header(results: dict, plot_name: str | None) -> list[str]:
    facts = results["facts"]
    derive = facts["derive"]
    versions = dict(derive["versions"])
    for f in facts.values():
        versions.update(f["versions"])
    load = results["load_average"]
    turns = _load(results)
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m derive bench` (derive/tools/bench/), do not edit by hand; the analysis at the end",
        "comes from derive/tools/bench/NOTES.md. This report is from the run of:",
        "",
        "```bash",
        results["command"],
        "```",
        *_best_peer_table(results),
        "",
        "## The run",
        "",
        "| | |",
        "| --- | --- |",
        f"| date | {results['date']} |",
        f"| machine | {derive['machine']} |",
        f"| CPU | {derive['cpu']}, {derive['cores']} cores |",
        f"| versions | {', '.join(f'{k} {v}' for k, v in versions.items())} |",
        *(f"| {side} process: {pool} | {text} |" for side, f in facts.items() for pool, text in f["threads"].items()),
        f"| load average (1, 5, 15 min) | start {', '.join(f'{v:.2f}' for v in load['start'])}; "
        f"end {', '.join(f'{v:.2f}' for v in load['end'])} |",
        *([f"| other processes' CPU while a side was timed | {turns} |"] if turns else []),
        f"| BLAS ceiling (NumPy matmul, n=2048, after each round: best, and median) | {_ceiling(results)} |",
        f"| run time | {results['seconds'] / 60:.1f} min |",
        *([f"| note | {results['note']} |"] if results.get("note") else []),
        "",
        "## Targets",
        "",
        _row(["target", "measured", ""]),
        _row(["---", "---", "---"]),
        *(_row(list(r)) for r in summary(results)),
    ]
    return lines + (["", f"![forward+backward speedups]({plot_name})"] if plot_name else [])


def _times(results: dict) -> list[str]:
    rows = []
    for e in results["points"]:
        p = Point(**e["point"])
        row = [p.cell, p.dtype, f"{p.T}×{p.B}×{p.H}", _fmt(_ms(e, "derive", "forward")), _fmt(_ms(e, "derive"))]
        for side in ("torch", "eager"):
            speedups = f"{_fmt(_ratio(e, side, 'forward'), unit='x')} / {_fmt(_ratio(e, side), unit='x')}"
            row += [_fmt(_ms(e, side, "forward")), _fmt(_ms(e, side)), speedups if side in e["times"] else "–"]
        rows.append(row)
    return _table(
        "Times",
        [
            "Median wall time per call, in ms: forward (training mode: the tape for backward is kept) and",
            "forward+backward (gradients of x and of every parameter). Speedup = other side's time / derive's.",
            "Each side runs in its own process; the sides take turns, in alternating order, every round.",
        ],
        [
            "cell",
            "dtype",
            "T×B×I=H",
            "derive fwd",
            "derive fwd+bwd",
            "torch fwd",
            "torch fwd+bwd",
            "speedup fwd / fwd+bwd",
            "eager fwd",
            "eager fwd+bwd",
            "speedup fwd / fwd+bwd",
        ],
        rows,
        "lll" + "r" * 8,
    )


def _sides(results: dict) -> list[str]:
    sides = [s for s in ("derive", *BUILTIN_SIDES) if any(s in e["times"] for e in results["points"])]
    if not any(s in PEERS for s in sides):
        return []
    rows = [
        [_label(e), *(f"{_fmt(_ms(e, s, 'inference'))} / {_fmt(_ms(e, s))}" for s in sides)] for e in results["points"]
    ]
    skipped = {f"{side}: {reason}" for e in results["points"] for side, reason in e.get("skipped", {}).items()}
    return _table(
        "Every side: inference / forward+backward",
        [
            "Median wall time per call, in ms, inference forward / forward+backward (– where a side has no",
            "such mode). Peers get torch.nn's weights in their own gate order and layout (derive/tools/bench/sides/).",
            *(f"Skipped: {text}." for text in sorted(skipped)),
        ],
        ["point", *sides],
        rows,
        "l" + "r" * len(sides),
    )


def _efficiency(results: dict) -> list[str]:
    rows = []
    for e in results["points"]:
        p = Point(**e["point"])
        memory = {s: b / 2**20 for s, b in e.get("memory", {}).items() if b is not None}
        rows.append(
            [
                p.cell,
                p.dtype,
                f"{p.T}×{p.B}×{p.H}",
                _fmt(_gflops(e), ".1f"),
                f"{_gflops(e) / results['blas_gflops'][p.dtype]:.0%}",
                _fmt(_gflops(e, "torch"), ".1f"),
                _fmt(memory.get("derive"), ".1f"),
                _fmt(memory.get("torch"), ".1f"),
            ]
        )
    return _table(
        "Efficiency and memory",
        [
            "GFLOP/s counts the matrix products only (forward 2·T·B·rows·cols per weight, backward twice that),",
            "against the BLAS ceiling above. Peak memory: resident-set growth during one forward+backward, in a",
            "fresh process per side and point, after a warm-up on a tiny input (Linux high-water mark, reset",
            "before the call; malloc mmap threshold fixed at 4 KiB, so freed blocks leave the resident set).",
        ],
        [
            "cell",
            "dtype",
            "T×B×I=H",
            "derive GFLOP/s",
            "of BLAS ceiling",
            "torch GFLOP/s",
            "peak MiB derive",
            "peak MiB torch",
        ],
        rows,
        "lll" + "r" * 5,
    )


def _compile(results: dict) -> list[str]:
    def lean(c):
        return f"{c['warm_total_without_scipy']:.2f}" if "warm_total_without_scipy" in c else "–"

    rows = [
        [
            cell,
            f"{c['cold_compile']['float32']:.1f}",
            f"{c['cold_compile']['float64']:.1f}",
            f"{c['warm_import']:.2f}",
            f"{c['warm_first_call']:.2f}",
            f"{c['warm_total']:.2f}",
            lean(c),
            f"{c['numba_floor']:.2f}",
        ]
        for cell, c in results["compile"].items()
    ]
    return _table(
        "Compile and import",
        [
            "Fresh processes with a new, empty Numba cache: cold = first forward+backward of each dtype",
            "(compiles the kernels); warm = a later process: import numba + the generated package, then the",
            "first float32 forward+backward, loading the kernels from the cache (median of 3), with SciPy",
            "installed (Numba imports it to look for BLAS) and without (the toolkit does not need it).",
            "Numba's floor: the same for a cached one-line function, with SciPy, alternating with the warm runs.",
        ],
        [
            "cell",
            "cold float32 (s)",
            "cold float64 (s)",
            "warm import (s)",
            "warm first call (s)",
            "warm total (s)",
            "warm total without SciPy (s)",
            "Numba's floor (s)",
        ],
        rows,
        "l" + "r" * 7,
    )


def _accuracy(results: dict) -> list[str]:
    rows = [
        [a["function"], a["dtype"], f"{a['max_ulp']:.2f}", repr(a["at"]), f"{a['count']:,}"]
        for a in results["accuracy"]
    ]
    return _table(
        "Accuracy of the activation functions",
        [
            "derive/runtime/kernel_math.py as the kernels run it (derive/tools/accuracy.py): float32 against the correctly",
            "rounded result over every float32 where it is not trivially rounded (plus every 97th elsewhere),",
            "float64 against extended precision over dense samples. Error in ulps of the result.",
        ],
        ["function", "dtype", "max error (ulp)", "at", "arguments checked"],
        rows,
        "llrlr",
    )


def markdown(results: dict, plot_name: str | None) -> str:
    lines = _header(results, plot_name) + _sides(results) + _times(results) + _efficiency(results)
    if results.get("compile"):
        lines += _compile(results)
    if results.get("accuracy"):
        lines += _accuracy(results)
    if results.get("interference"):
        lines += _table(*interference.section(results["interference"]))
    if results.get("torch_layers"):
        lines += [line for section in torch_layers.sections(results["torch_layers"]) for line in _table(*section)]
    if NOTES.is_file():
        lines += ["", NOTES.read_text(encoding="utf-8").rstrip()]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> bool:
    """Bar charts of fwd+bwd speedups; False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        return False
    entries = [(Point(**e["point"]), e) for e in results["points"]]
    best = {r["label"]: r["ratio"] for r in best_peers(results)["forward_backward"]}

    def ratio(e, side):  # "peer": the best peer at that point
        return best.get(_label(e)) if side == "peer" else _ratio(e, side)

    panels = [
        (side, title, target)
        for side, title, target in (
            ("peer", "the best peer", TARGETS["peer forward_backward"][0]),
            ("torch", "the torch.nn built-in", TARGETS["speedup"]),
            ("eager", "the eager torch loop", TARGETS["eager"]),
        )
        if any(ratio(e, side) for _, e in entries)
    ]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 5.4), squeeze=False)
    groups = sorted({(p.dtype, p.T, p.B, p.H) for p, _ in entries}, key=lambda g: (g[0], g[3], g[1]))
    for ax, (side, title, target) in zip(axes[0], panels):
        cells = list(dict.fromkeys(p.cell for p, e in entries if ratio(e, side)))
        width = 0.8 / len(cells)
        for k, cell in enumerate(cells):
            bars = [
                (g, e)
                for g, group in enumerate(groups)
                for p, e in entries
                if (p.dtype, p.T, p.B, p.H) == group and p.cell == cell and ratio(e, side)
            ]
            xs, ys = [g + (k - (len(cells) - 1) / 2) * width for g, _ in bars], [ratio(e, side) for _, e in bars]
            ax.bar(xs, ys, width, label=cell)
            for x, y in zip(xs, ys):
                ax.annotate(f"{y:.1f}", (x, y), ha="center", va="bottom", fontsize=6)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(target, color="tab:red", linestyle="--", linewidth=0.8, label=f"target {target}x")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{d.replace('float', 'f')}\n{T}×{B}×{H}" for d, T, B, H in groups], fontsize=8)
        ax.set_ylabel("speedup (×, log scale)")
        ax.set_title(f"fwd+bwd speedup over {title}")
        ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.suptitle("Generated kernels, forward+backward, T×B×(I=H): other side's median time / derive's")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(results: dict, out: Path) -> list[Path]:
    """Write the report, its plot and the raw results beside it; return the paths written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    png, raw = out.with_suffix(".png"), out.with_suffix(".json")
    written = [png] if plot(results, png) else []
    out.write_text(markdown(results, png.name if written else None), encoding="utf-8")
    raw.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return [out, raw, *written]
