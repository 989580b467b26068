"""The benchmark driver: `python -m derive bench [options]` (see --help).

Each side (see workloads.py) runs in its own worker process. Every round visits the whole grid,
and at each point the sides take turns, in alternating order; a burst of load on a shared
machine then spoils one round of a point, not all of them, and hits all sides alike. A turn
during which other processes used the CPU is repeated (load.py). Reported times are medians of
all timed calls; ratios are other / derive. Peers (sides/) whose packages are missing are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from derive.write import paths

from . import compile as compile_probe
from . import interference, load, torch_layers
from . import sides as peer_sides
from .workloads import BUILTIN_SIDES, PEERS, SIDES, Point, available_cells, has_builtin, matmul_flops

CELLS = ("rnn", "lstm", "gru", "lstm_peephole", "gru_reset_before", "lstm_layernorm")
DTYPES = ("float32", "float64")
SIZES = ((64, 32, 32), (64, 32, 128), (32, 32, 512), (256, 8, 64), (512, 1, 256))  # the last: batch-1 latency
REQUEST_SECONDS = 0.05  # each timing request runs about this long (at least one call)
MAX_CALLS = 20
IDLE_FALLBACK_SECONDS = 0.2  # without /proc: pause this long between sides
BLAS_N = 2048
# Memory probes get a fixed, low mmap threshold: blocks above it are mapped on allocation and
# unmapped when freed, so the resident set follows live memory (glibc otherwise keeps freed
# blocks and raises the threshold dynamically). Only derive against torch built-ins: the
# memory target compares with them.
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "4096", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_TOP_PAD_": "0"}
MEMORY_SIDES = ("derive", "torch")


def worker_env(extra: dict | None = None) -> dict:
    path = os.pathsep.join(p for p in (str(paths.IMPORT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, **(extra or {}))


class Worker:
    """One side's process; `call(op, ...)` sends a request and returns the reply."""

    def __init__(self, side: str, env: dict):
        self.side = side
        self.process = subprocess.Popen(
            [sys.executable, "-m", "derive.tools.bench.worker", side],
            cwd=paths.IMPORT_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, op: str, **request) -> dict:
        self.process.stdin.write(json.dumps({"op": op, **request}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.side} worker exited (exit code {self.process.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.side} worker, {op} {request.get('point', '')}: {reply['error']}")
        return reply

    def cpu_ticks(self) -> int | None:
        """CPU time used so far by all threads of the process (clock ticks; Linux only)."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime, all threads
        except OSError:
            return None

    def wait_idle(self, timeout: float = 1.0) -> None:
        """Return once the process stopped using CPU: thread pools spin a while after their
        last job (OpenBLAS about 0.1 s), which would slow down the next side."""
        deadline = time.perf_counter() + timeout
        last = self.cpu_ticks()
        if last is None:
            time.sleep(IDLE_FALLBACK_SECONDS)
            return
        quiet = 0
        while quiet < 2 and time.perf_counter() < deadline:
            time.sleep(0.02)
            now = self.cpu_ticks()
            quiet = quiet + 1 if now == last else 0
            last = now

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def sides_of(point: Point, sides: list[str]) -> list[str]:
    return [s for s in sides if s not in BUILTIN_SIDES or has_builtin(point.cell)]


def installed(sides: list[str]) -> list[str]:
    """`sides` without the peers whose packages are missing, saying which were skipped."""
    kept = []
    for side in sides:
        package = peer_sides.missing(side) if side in PEERS else None
        if package:
            progress(f"skipping {side}: {package} is not installed (pip install 'rnn-derive[bench-peers]')")
        else:
            kept.append(side)
    return kept


def quiet_turn(worker: Worker, point: Point, modes: list[str], calls: int) -> tuple[dict, list[load.Turn]]:
    """One side's times of every mode at a point, the turn repeated while other processes used
    the CPU (at most load.RETRIES times): the quietest attempt's times and every attempt's load."""
    attempts = []
    for _ in range(1 + load.RETRIES):
        times, turn = load.measure(
            lambda: {m: worker.call("time", point=point.as_dict(), mode=m, calls=calls)["times"] for m in modes},
            worker.cpu_ticks,
        )
        worker.wait_idle()
        attempts.append((times, turn))
        if not turn.noisy:
            break
    times = min(attempts, key=lambda a: a[1].other_cores or 0.0)[0]
    return times, [turn for _, turn in attempts]


def time_grid(points: list[Point], workers: dict[str, Worker], rounds: int, ceiling: dict[str, list]) -> list[dict]:
    """Per point: median (and best) seconds per side and mode over `rounds` rounds of the grid,
    and the load of other processes during each turn; after each round, a BLAS ceiling sample
    per dtype is added to `ceiling`."""
    modes, calls, skipped = {}, {}, {}
    for k, point in enumerate(points, 1):
        for side in sides_of(point, list(workers)):
            reply = workers[side].call("load", point=point.as_dict())
            workers[side].wait_idle()
            if "unsupported" in reply:
                skipped[point, side] = reply["unsupported"]
                progress(f"  {side} skips {point.label}: {reply['unsupported']}")
                continue
            modes[point, side] = reply["modes"]
            calls[point, side] = max(1, min(MAX_CALLS, round(REQUEST_SECONDS / max(reply["seconds"], 1e-9))))
        progress(f"warm-up [{k}/{len(points)}] {point.label}")
    samples: dict = {}
    turns: dict = {}
    started = time.perf_counter()
    for r in range(rounds):
        for k, point in enumerate(points):
            sides = [s for s in sides_of(point, list(workers)) if (point, s) in modes]
            for side in sides if (r + k) % 2 == 0 else reversed(sides):
                times, attempts = quiet_turn(workers[side], point, modes[point, side], calls[point, side])
                for mode, t in times.items():
                    samples.setdefault((point, side, mode), []).extend(t)
                turns.setdefault((point, side), []).append([[t.other_cores, *t.loadavg] for t in attempts])
        for dtype, rates in blas_ceiling(workers["derive"], list(ceiling)).items():
            ceiling[dtype] += rates
        workers["derive"].wait_idle()
        progress(
            f"round {r + 1}/{rounds} of {len(points)} points done ({(time.perf_counter() - started) / 60:.1f} min)"
        )
    return [
        {
            "times": {
                side: {
                    mode: {"median": statistics.median(t), "best": min(t), "samples": len(t)}
                    for mode in modes[point, side]
                    for t in [samples[point, side, mode]]
                }
                for side in sides_of(point, list(workers))
                if (point, side) in modes
            },
            # per side, per round, per attempt: [other processes' cores, load average before, after]
            "load": {side: turns[point, side] for side in sides_of(point, list(workers)) if (point, side) in modes},
            "skipped": {side: reason for (p, side), reason in skipped.items() if p == point},
        }
        for point in points
    ]


def blas_ceiling(worker: Worker, dtypes: list[str]) -> dict[str, list[float]]:
    return {dtype: worker.call("blas", dtype=dtype, n=BLAS_N, calls=3)["gflops"] for dtype in dtypes}


def progress(text: str) -> None:
    print(text, flush=True)


def describe(point: Point, times: dict) -> str:
    def ms(side, mode):
        return f"{times[side][mode]['median'] * 1e3:.2f}" if mode in times[side] else "–"

    parts = [f"{side} {ms(side, 'inference')} / {ms(side, 'forward_backward')} ms" for side in times]
    return f"{point.label}: " + " | ".join(parts) + "  [inference / fwd+bwd]"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m derive bench",
        description="Time generated cells against torch.nn built-ins, eager torch loops and peers "
        "(Keras/TensorFlow, JAX, ONNX Runtime, where installed); write a report.",
    )
    parser.add_argument("--cells", nargs="+", default=list(CELLS), help="cells (default: %(default)s)")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["x".join(map(str, s)) for s in SIZES],
        help="TxBxH, input size = H (default: %(default)s)",
    )
    parser.add_argument(
        "--sides",
        nargs="+",
        default=list(SIDES),
        choices=SIDES,
        help="derive is always run; peers whose packages are missing are skipped (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=7, help="rounds over the grid (default: %(default)s)")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory measurements")
    parser.add_argument("--no-compile", action="store_true", help="skip cold/warm compile measurements")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the activation accuracy sweep (about 30 s)")
    parser.add_argument(
        "--no-torch-layers", action="store_true", help="skip derive.torch: bridge overhead, layers against torch.nn"
    )
    parser.add_argument(
        "--no-interference", action="store_true", help="skip the busy-thread and Ctrl-C measurements (about 10 s)"
    )
    parser.add_argument("--out", type=Path, help="report path (default: docs/benchmarks.md of the source checkout)")
    parser.add_argument("--no-report", action="store_true", help="print only; write no report")
    parser.add_argument("--note", default="", help="a line for the report, e.g. whether the machine was shared")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: rewrite the report (to --out) from the results of an earlier run",
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    except ValueError:
        parser.error(f"--sizes must look like 64x32x128 (T x B x H), got {args.sizes}")
    if any(len(s) != 3 or min(s) < 1 for s in args.sizes):
        parser.error(f"--sizes must be three positive integers TxBxH, got {args.sizes}")
    args.sides = ["derive"] + [s for s in args.sides if s != "derive"]
    if args.out is None and not args.no_report:
        paths.require_checkout("`bench` without --out (it writes docs/benchmarks.md)")
        args.out = paths.BENCHMARK_REPORT
    unknown = [c for c in args.cells if c not in available_cells()]
    if unknown:
        parser.error(f"unknown cells {unknown}; generated cells: {', '.join(available_cells())}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.render:
        return report(json.loads(args.render.read_text()), args.out)
    args.sides = ["derive"] + installed(args.sides[1:])
    points = [Point(c, d, *s) for c in args.cells for d in args.dtypes for s in args.sizes]
    results = {
        "command": shlex.join(["python", "-m", "derive", "bench", *argv]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "note": args.note,
        "load_average": {"start": os.getloadavg()},
        "points": [],
    }
    started = time.perf_counter()
    measure_times(results, points, args.sides, args.repeats)
    if not args.no_memory:
        measure_memory(results, points, [s for s in args.sides if s in MEMORY_SIDES])
    if not args.no_compile:
        measure_compile(results, args.cells)
    if not args.no_accuracy:
        measure_accuracy(results)
    if not args.no_torch_layers:
        progress("derive.torch: bridge overhead, 2-layer bidirectional LSTM and GRU against torch.nn (float32) ...")
        results["torch_layers"] = torch_layers.measure(args.sizes, args.repeats, worker_env())
    if not args.no_interference:
        progress("beside other work: a busy Python thread, Ctrl-C ...")
        results["interference"] = interference.measure(max(args.repeats, 15), worker_env())
    results["load_average"]["end"] = os.getloadavg()
    results["seconds"] = time.perf_counter() - started
    progress(f"done in {results['seconds'] / 60:.1f} min")
    return 0 if args.no_report else report(results, args.out)


def report(results: dict, out: Path) -> int:
    from .report import write

    for path in write(results, out):
        progress(f"wrote {path}")
    return 0


def measure_times(results: dict, points: list[Point], sides: list[str], rounds: int) -> None:
    """Times of every point, and the BLAS ceiling before and after them."""
    workers = {side: Worker(side, worker_env()) for side in sides}
    try:
        ceiling = {p.dtype: [] for p in points}
        for point, measured in zip(points, time_grid(points, workers, rounds, ceiling)):
            forward, forward_backward = matmul_flops(point)
            flops = {"inference": forward, "forward": forward, "forward_backward": forward_backward}
            results["points"].append({"point": point.as_dict(), **measured, "flops": flops})
            progress(describe(point, measured["times"]))
        results["facts"] = {side: w.call("facts") for side, w in workers.items()}  # after: threads are up
    finally:
        for w in workers.values():
            w.close()
    # Load from elsewhere only ever slows a matmul down: the ceiling is the best rate seen.
    results["blas_gflops"] = {d: max(r) for d, r in ceiling.items()}
    results["blas_gflops_median"] = {d: statistics.median(r) for d, r in ceiling.items()}
    progress("BLAS ceiling GFLOP/s: " + ", ".join(f"{d} {g:.0f}" for d, g in results["blas_gflops"].items()))


def measure_compile(results: dict, cells: list[str]) -> None:
    results["compile"] = {}
    for cell in cells:
        progress(f"compile {cell}: cold (empty Numba cache) and warm ...")
        c = results["compile"][cell] = compile_probe.measure(cell, worker_env())
        progress(
            f"  cold float32 {c['cold_compile']['float32']:.1f} s, float64 {c['cold_compile']['float64']:.1f} s; "
            f"warm import + first call {c['warm_total']:.2f} s (Numba's floor {c['numba_floor']:.2f} s)"
        )


def measure_accuracy(results: dict) -> None:
    from derive.tools import accuracy

    progress("accuracy of sigmoid and tanh (every float32 in range, dense float64 samples) ...")
    results["accuracy"] = accuracy.report()
    for a in results["accuracy"]:
        progress(f"  {a['function']} {a['dtype']}: max {a['max_ulp']:.2f} ulp over {a['count']:,} arguments")


def measure_memory(results: dict, points: list[Point], sides: list[str]) -> None:
    """Peak memory of one forward+backward per side and point, each in a fresh process."""
    for k, entry in enumerate(results["points"], 1):
        point = Point(**entry["point"])
        entry["memory"] = {}
        for side in sides_of(point, sides):
            command = [sys.executable, "-m", "derive.tools.bench.worker", side, "--memory", json.dumps(point.as_dict())]
            result = subprocess.run(
                command, cwd=paths.IMPORT_ROOT, env=worker_env(MEMORY_ENV), capture_output=True, text=True
            )
            if result.returncode:
                raise RuntimeError(f"memory probe {side} {point.label} failed:\n{result.stderr}")
            entry["memory"][side] = json.loads(result.stdout.splitlines()[-1])["bytes"]
        text = ", ".join(f"{s} {b / 2**20:.1f} MiB" for s, b in entry["memory"].items() if b is not None)
        progress(f"memory [{k}/{len(points)}] {point.label}: {text}")
