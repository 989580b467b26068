"""Speed of derive.torch: the bridge's overhead over the NumPy API, and layers against torch.nn.

    python -m derive.tools.bench.torch_layers --sizes 64x32x128 --repeats 20

Forward plus backward, float32, from fresh gradients (`zero_grad()` first, as a training step has
and as the NumPy API returns them), and for the layers also the forward under `torch.no_grad()`; medians of `repeats` runs after a warm-up, the runs taking turns.
Rows: the bridge against the cell's NumPy API (1 layer, lstm and gru) at the issue's point
64x32x128 if the sizes have it, else at the first size, with at least OVERHEAD_REPEATS runs; then
2-layer bidirectional LSTM and GRU against torch.nn at every size. `python -m derive bench` runs
this in a fresh process (`measure`) and adds its tables (`sections`) to the report.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

OVERHEAD_GOAL = 0.05  # the bridge's forward+backward at most 5% slower than the NumPy API
OVERHEAD_CELLS = ("lstm", "gru")
OVERHEAD_SIZE = (64, 32, 128)  # T, B, I = H: where the goal is set
OVERHEAD_REPEATS = 20  # a difference of a few percent needs more runs than the layer rows
LAYERS = ("LSTM", "GRU")  # 2 layers, bidirectional, against torch.nn's


def median_seconds(runs: dict, repeats: int) -> dict:
    """Median wall and CPU time of each run; the runs take turns, so a change of load hits them
    alike. On a loaded machine the CPU time of a single-threaded run (NUMBA_NUM_THREADS=1
    OMP_NUM_THREADS=1) is the steadier measure of work done."""
    times = {name: ([], []) for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.process_time() - cpu)
    return {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in times.items()}


def numpy_api(name, x, dy):
    import numpy as np

    import generated

    cell = generated.CELLS[name](x.shape[2], dy.shape[2], dtype=np.float32, seed=0)

    def run():
        _, _, tape = cell.forward(x)
        cell.backward(tape, dy)

    return run


def torch_layer(layer, x, dy):
    import torch

    x, dy = torch.from_numpy(x), torch.from_numpy(dy)

    def run():
        layer.zero_grad()  # fresh gradients, as the NumPy API returns and a training step has
        y, _ = layer(x)
        y.backward(dy)

    return run


def torch_inference(layer, x):
    import torch

    x = torch.from_numpy(x)

    def run():
        with torch.no_grad():
            layer(x)

    return run


def results(sizes: list[tuple[int, int, int]], repeats: int) -> dict:
    """{"overhead": [...], "layers": [...], "threads": ..., "load_average": ...}; times (wall, CPU) in s."""
    import numba
    import numpy as np
    import torch

    from derive.torch import GRU, LSTM, Recurrent

    rng = np.random.default_rng(0)
    out = {
        "threads": {"torch": torch.get_num_threads(), "numba": numba.get_num_threads()},
        "repeats": repeats,
        "load_average": {"start": os.getloadavg()[0]},
        "overhead": [],
        "layers": [],
    }
    T, B, H = overhead_size(sizes)
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    for name in OVERHEAD_CELLS:
        dy = rng.standard_normal((T, B, H)).astype(np.float32)
        times = median_seconds(
            {"numpy": numpy_api(name, x, dy), "torch": torch_layer(Recurrent(name, H, H), x, dy)},
            max(repeats, OVERHEAD_REPEATS),
        )
        out["overhead"].append({"cell": name, "size": [T, B, H], **times})
        progress(overhead_text(out["overhead"][-1]))
    classes = {"LSTM": (LSTM, torch.nn.LSTM), "GRU": (GRU, torch.nn.GRU)}
    for T, B, H in sizes:
        x = rng.standard_normal((T, B, H)).astype(np.float32)
        dy = rng.standard_normal((T, B, 2 * H)).astype(np.float32)
        for mode in LAYERS:
            ours, theirs = classes[mode]
            layer, reference = (
                ours(H, H, num_layers=2, bidirectional=True),
                theirs(H, H, num_layers=2, bidirectional=True),
            )
            layer.load_state_dict(reference.state_dict())
            times = median_seconds(
                {
                    "derive": torch_layer(layer, x, dy),
                    "torch": torch_layer(reference, x, dy),
                    "derive_inference": torch_inference(layer, x),
                    "torch_inference": torch_inference(reference, x),
                },
                repeats,
            )
            out["layers"].append({"layer": mode, "size": [T, B, H], **times})
            progress(layers_text(out["layers"][-1]))
    out["load_average"]["end"] = os.getloadavg()[0]
    return out


def overhead_size(sizes: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """OVERHEAD_SIZE if `sizes` has it, else the first size."""
    return OVERHEAD_SIZE if OVERHEAD_SIZE in sizes else sizes[0]


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _ms(pair) -> str:
    return f"{pair[0] * 1e3:.2f} ms ({pair[1] * 1e3:.2f} ms CPU)"


def _size(entry) -> str:
    return "×".join(map(str, entry["size"]))


def overhead_text(e: dict) -> str:
    wall, cpu = (e["torch"][k] / e["numpy"][k] - 1 for k in (0, 1))
    return f"{e['cell']} 1 layer {_size(e)}: NumPy API {_ms(e['numpy'])}, derive.torch {_ms(e['torch'])}, bridge overhead {100 * wall:+.1f}% wall, {100 * cpu:+.1f}% CPU"


def layers_text(e: dict) -> str:
    wall, cpu = (e["torch"][k] / e["derive"][k] for k in (0, 1))
    text = f"{e['layer']} 2 layers bidirectional {_size(e)}: derive.torch {_ms(e['derive'])}, torch.nn {_ms(e['torch'])}, speedup {wall:.2f}x wall, {cpu:.2f}x CPU"
    if "derive_inference" in e:
        speedup = e["torch_inference"][0] / e["derive_inference"][0]
        text += f"; without gradients {_ms(e['derive_inference'])} against {_ms(e['torch_inference'])}, {speedup:.2f}x"
    return text


def measure(sizes: list[tuple[int, int, int]], repeats: int, env: dict) -> dict:
    """`results` in a fresh process (python -m derive.tools.bench.torch_layers --json)."""
    command = [
        sys.executable,
        "-m",
        "derive.tools.bench.torch_layers",
        "--json",
        "--repeats",
        str(repeats),
        "--sizes",
        *("x".join(map(str, s)) for s in sizes),
    ]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed (exit code {done.returncode})")
    return json.loads(done.stdout.splitlines()[-1])


def sections(r: dict) -> list[tuple]:
    """The report's tables on derive.torch: (title, intro lines, header, rows, align) each."""

    def pct(e, k):
        return f"{100 * (e['torch'][k] / e['numpy'][k] - 1):+.1f}%"

    overhead = (
        "derive.torch: the bridge over the NumPy API",
        [
            f"One layer at T×B×H = {_size(r['overhead'][0])} (I = H), forward + backward from fresh "
            f"gradients, float32, medians of {max(r['repeats'], OVERHEAD_REPEATS)} runs taking turns; "
            f"goal: at most {100 * OVERHEAD_GOAL:.0f}% slower. Threads: torch {r['threads']['torch']}, Numba {r['threads']['numba']}; "
            f"load average {r['load_average']['start']:.1f} to {r['load_average']['end']:.1f}. "
            "On a loaded machine the CPU time is the steadier measure."
        ],
        [
            "cell",
            "T×B×H",
            "NumPy API ms",
            "derive.torch ms",
            "overhead (wall)",
            "NumPy API CPU ms",
            "derive.torch CPU ms",
            "overhead (CPU)",
        ],
        [
            [
                e["cell"],
                _size(e),
                f"{e['numpy'][0] * 1e3:.2f}",
                f"{e['torch'][0] * 1e3:.2f}",
                pct(e, 0),
                f"{e['numpy'][1] * 1e3:.2f}",
                f"{e['torch'][1] * 1e3:.2f}",
                pct(e, 1),
            ]
            for e in r["overhead"]
        ],
        "llrrrrrr",
    )
    layers = (
        "derive.torch layers against torch.nn",
        [
            "2 layers, bidirectional, float32; speedup = torch.nn / derive.torch. Forward + backward from fresh "
            "gradients (goal: at least 1 everywhere), and the forward without gradients (`torch.no_grad()`: "
            "derive.torch runs the inference kernels)."
        ],
        [
            "layer",
            "T×B×H",
            "derive.torch ms",
            "torch.nn ms",
            "speedup (wall)",
            "speedup (CPU)",
            "no_grad: derive.torch ms",
            "torch.nn ms",
            "speedup (wall)",
        ],
        [
            [
                e["layer"],
                _size(e),
                f"{e['derive'][0] * 1e3:.2f}",
                f"{e['torch'][0] * 1e3:.2f}",
                f"{e['torch'][0] / e['derive'][0]:.2f}x",
                f"{e['torch'][1] / e['derive'][1]:.2f}x",
                *_inference_cells(e),
            ]
            for e in r["layers"]
        ],
        "llrrrrrrr",
    )
    return [overhead, layers]


def _inference_cells(e: dict) -> list[str]:
    """The no_grad columns of a layers row ("n/a" in results from before they were measured)."""
    if "derive_inference" not in e:
        return ["n/a"] * 3
    ours, theirs = e["derive_inference"][0], e["torch_inference"][0]
    return [f"{ours * 1e3:.2f}", f"{theirs * 1e3:.2f}", f"{theirs / ours:.2f}x"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        "--size",
        nargs="+",
        default=["64x32x128"],
        help="TxBxH, with I = H; the overhead rows use 64x32x128 if given, else the first",
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--json", action="store_true", help="print the results as one JSON line (progress goes to stderr)"
    )
    args = parser.parse_args(argv)
    try:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    except ValueError:
        parser.error(f"--sizes must look like 64x32x128 (T x B x H), got {args.sizes}")
    if any(len(s) != 3 or min(s) < 1 for s in sizes) or args.repeats < 1:
        parser.error(
            f"--sizes must be three positive integers TxBxH and --repeats positive, got {args.sizes}, {args.repeats}"
        )
    out = results(sizes, args.repeats)
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
