"""Speed of derive.torch: the bridge's overhead over the NumPy API, and layers against torch.nn.

    python -m derive.tools.bench.torch_layers --size 64x32x128 --repeats 20

Forward plus backward, float32, medians of `repeats` runs after a warm-up. Not yet part of
`python -m derive bench` (its report, processes and turns); this is the quick measurement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numba
import numpy as np
import torch

import generated
from derive.torch import GRU, LSTM, Recurrent


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


def overhead(ours, other) -> str:
    return f"bridge overhead {100 * (ours[0] / other[0] - 1):+.1f}% wall, {100 * (ours[1] / other[1] - 1):+.1f}% CPU"


def speedup(ours, other) -> str:
    return f"speedup {other[0] / ours[0]:.2f}x wall, {other[1] / ours[1]:.2f}x CPU"


def ms(pair):
    return f"{pair[0] * 1e3:.2f} ms ({pair[1] * 1e3:.2f} ms CPU)"


def numpy_api(name, x, dy):
    cell = generated.CELLS[name](x.shape[2], dy.shape[2], dtype=np.float32, seed=0)

    def run():
        _, _, tape = cell.forward(x)
        cell.backward(tape, dy)
    return run


def torch_layer(layer, x, dy):
    x = torch.from_numpy(x)
    dy = torch.from_numpy(dy)

    def run():
        y, _ = layer(x)
        y.backward(dy)
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="64x32x128", help="TxBxH, with I = H")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    T, B, H = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    print(f"(T, B, I=H) = ({T}, {B}, {H}) float32, forward + backward, median of {args.repeats} (taking turns); "
          f"torch threads {torch.get_num_threads()}, Numba threads {numba.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    for name in ("lstm", "gru"):
        dy = rng.standard_normal((T, B, H)).astype(np.float32)
        times = median_seconds({"numpy": numpy_api(name, x, dy), "torch": torch_layer(Recurrent(name, H, H), x, dy)}, args.repeats)
        plain, bridged = times["numpy"], times["torch"]
        print(f"{name} 1 layer: NumPy API {ms(plain)}, derive.torch {ms(bridged)}, {overhead(bridged, plain)}")
    for ours, theirs in ((LSTM, torch.nn.LSTM), (GRU, torch.nn.GRU)):
        dy = rng.standard_normal((T, B, 2 * H)).astype(np.float32)
        options = {"num_layers": 2, "bidirectional": True}
        layer, reference = ours(H, H, **options), theirs(H, H, **options)
        layer.load_state_dict(reference.state_dict())
        times = median_seconds({"ours": torch_layer(layer, x, dy), "torch.nn": torch_layer(reference, x, dy)}, args.repeats)
        mine, builtin = times["ours"], times["torch.nn"]
        print(f"{ours.__name__} 2 layers bidirectional: derive.torch {ms(mine)}, torch.nn {ms(builtin)}, {speedup(mine, builtin)}")


if __name__ == "__main__":
    main()
