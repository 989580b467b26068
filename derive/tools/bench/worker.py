"""A process serving one side of the benchmark: `python -m derive.tools.bench.worker SIDE`.

It reads one JSON request per line on stdin and answers with one JSON line on stdout. Each
side runs in its own process so that thread pools (OpenBLAS through NumPy/SciPy and Numba,
OpenMP and oneDNN through torch) never share a process, and the driver alternates the sides.

Requests (op):
    facts    versions, CPU, thread counts of this process
    load     build the workload of a point and warm up each of its modes (compiles, first-touch
             allocations); replies with the modes and the slowest mode's seconds per call, or
             {"unsupported": reason} if the side cannot run the point
    time     per-call wall times of `calls` consecutive calls of a mode, after untimed calls for at
             least WARM_UP_SECONDS (at least one): the other sides ran in between, so caches are cold
             and thread pools (ours, OpenMP's, ONNX Runtime's) asleep; the timed calls follow warm ones,
             as in a loop
    blas     GFLOP/s of NumPy's matmul of two n×n matrices (the BLAS ceiling)

`python -m derive.tools.bench.worker SIDE --memory POINT_JSON` measures peak memory instead, in a
fresh process (see `first_call_memory`), and prints the bytes.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .sides import Unsupported
from .workloads import PEERS, Point, build

PROC = Path("/proc/self")
WARM_UP_SECONDS = 0.01


def _status_kib(field: str) -> int:
    for line in (PROC / "status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def first_call_memory(side: str, point: Point) -> int | None:
    """Bytes by which the resident set's peak during one forward+backward exceeds its size before.

    Run in a fresh process (started with a fixed, low malloc mmap threshold) after a warm-up on a
    tiny input of the same cell and dtype, so that compiling and library set-up are done and no
    freed memory of an earlier call of this size is there to be reused: the growth is the memory
    the call holds at its peak. The kernel's high-water mark is reset first (5 > clear_refs).
    """
    if not (PROC / "clear_refs").exists():
        return None
    tiny = Point(point.cell, point.dtype, 2, 2, 4)
    warm = build(side, tiny)
    for _ in range(2):
        warm.forward_backward()
    del warm
    workload = build(side, point)
    gc.collect()
    (PROC / "clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    result = workload.forward_backward()
    peak = _status_kib("VmHWM")
    del result
    return (peak - before) * 1024


def cpu_model() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in info if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    name = fields.get("model name", platform.machine())
    family, model = fields.get("cpu family"), fields.get("model")
    simd = [f for f in ("avx512f", "avx2", "fma") if f in fields.get("flags", "").split()]
    return f"{name} (family {family}, model {model}; {', '.join(simd)})"


def facts(side: str) -> dict:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    threads = {}
    extra = {}
    if side == "derive":
        import numba

        import generated
        from derive.runtime import thread_pool, threading_layer
        from derive.runtime.matrix import VECTOR_BITS

        from .workloads import derive_inference

        versions["numba"] = numba.__version__
        layer = threading_layer.layer()  # starts Numba's threads in the kernels' layer
        threads["Numba"] = f"{numba.get_num_threads()} threads, {layer}"
        threads["matrix tiles"] = f"{VECTOR_BITS}-bit vectors, shared by {thread_pool.threads() + 1} threads"
        cell = next(iter(generated.CELLS.values()))(2, 2, seed=0)
        extra["inference"] = derive_inference(cell)[1]
    elif side in PEERS:
        from . import sides

        peer_versions, threads = sides.module(side).versions()
        versions.update(peer_versions)
    else:
        import torch

        versions["torch"] = torch.__version__
        threads["torch intra-op"] = f"{torch.get_num_threads()} threads, oneDNN {torch.backends.mkldnn.is_available()}"
    return {
        "side": side,
        "versions": versions,
        "threads": threads,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.platform(),
        **extra,
    }


def blas_gflops(dtype: str, n: int, calls: int) -> list[float]:
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    out = np.empty((n, n), dtype)
    np.matmul(a, b, out=out)
    rates = []
    for _ in range(calls):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return rates


class Server:
    def __init__(self, side: str):
        self.side = side
        self.point: Point | None = None
        self.workload = None

    def _load(self, point: Point):
        if point != self.point:
            self.workload = None
            gc.collect()
            self.workload, self.point = build(self.side, point), point
        return self.workload

    def handle(self, request: dict) -> dict:
        op = request["op"]
        if op == "facts":
            return facts(self.side)
        if op == "blas":
            return {"gflops": blas_gflops(request["dtype"], request["n"], request["calls"])}
        try:
            workload = self._load(Point(**request["point"]))
        except Unsupported as reason:
            return {"unsupported": str(reason)}
        if op == "load":
            seconds = []
            for mode in workload.modes():
                run = getattr(workload, mode)
                run()
                start = time.perf_counter()
                run()
                seconds.append(time.perf_counter() - start)
            return {"modes": workload.modes(), "seconds": max(seconds)}
        if op == "time":
            run = getattr(workload, request["mode"])
            warm = time.perf_counter() + WARM_UP_SECONDS
            run()
            while time.perf_counter() < warm:
                run()
            times = []
            for _ in range(request["calls"]):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            return {"times": times}
        raise ValueError(f"unknown op {op!r}")


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--memory"]:
        print(json.dumps({"bytes": first_call_memory(argv[0], Point(**json.loads(argv[2])))}))
        return 0
    server = Server(argv[0])
    for line in sys.stdin:
        try:
            reply = server.handle(json.loads(line))
        except Exception as error:  # reported to the driver, which stops with it
            reply = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
