"""Cold compile time and warm import + first call, each in a fresh process.

`python -m derive.tools.bench.compile CELL [--without-scipy]` (the probe) imports the generated cells and
times its first forward+backward in float32, then in float64, on a tiny input; it prints the times
as JSON. The toolkit does not need SciPy, but Numba imports it when it is installed (to look for
BLAS, about 0.2 s); `--without-scipy` measures an installation without it.
The driver runs the probe twice with NUMBA_CACHE_DIR pointing to a new empty directory:
cold (nothing cached: the first calls compile) and warm (the cache the cold run wrote).
Warm probes alternate with the same measurement for a one-line cached function: Numba's floor,
what any Numba code pays on this machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

START = time.perf_counter()


def probe(cell: str, without_scipy: bool = False) -> dict:
    if without_scipy:
        sys.modules["scipy"] = None  # import scipy raises ImportError, as where it is not installed
    import numba  # noqa: F401
    import numpy as np

    imported_numba = time.perf_counter()
    import generated

    cls = generated.CELLS[cell]
    imported_cell = time.perf_counter()
    first_call = {}
    for dtype in ("float32", "float64"):
        start = time.perf_counter()
        instance = cls(3, 4, dtype=np.dtype(dtype), seed=0)
        x = np.ones((3, 2, 3), dtype)
        y, _, tape = instance.forward(x)
        instance.backward(tape, np.ones_like(y))
        first_call[dtype] = time.perf_counter() - start
    return {
        "import_numba": imported_numba - START,
        "import_cell": imported_cell - imported_numba,
        "first_call": first_call,
    }


TRIVIAL = "import numba\n\n\n@numba.njit(cache=True)\ndef one(x):\n    return x + 1\n"
TIME_TRIVIAL = (
    "import time; start = time.perf_counter(); import numba, numpy, trivial; trivial.one(1); "
    "print(time.perf_counter() - start)"
)


def _run(command: list[str], env: dict) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")
    return result.stdout.splitlines()[-1]


def _warm_total(run: dict) -> float:
    """Import of numba and the cells, then the first float32 forward+backward."""
    return run["import_numba"] + run["import_cell"] + run["first_call"]["float32"]


def measure(cell: str, env: dict, warm_runs: int = 3) -> dict:
    """Cold and warm probes of `cell` in fresh processes sharing a new, empty Numba cache; the
    warm probe alternates with Numba's floor (a one-line cached function), medians of `warm_runs`."""
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        with open(os.path.join(cache, "trivial.py"), "w") as module:
            module.write(TRIVIAL)
        probe = [sys.executable, "-m", "derive.tools.bench.compile", cell]
        floor = [sys.executable, "-c", TIME_TRIVIAL]
        env = dict(env, NUMBA_CACHE_DIR=cache)
        floor_env = dict(env, PYTHONPATH=cache)
        cold = json.loads(_run(probe, env))
        _run(floor, floor_env)  # writes the one-line function's cache
        warm, floors, without_scipy = [], [], []
        for _ in range(warm_runs):
            floors.append(float(_run(floor, floor_env)))
            warm.append(json.loads(_run(probe, env)))
            without_scipy.append(_warm_total(json.loads(_run(probe + ["--without-scipy"], env))))
    run = sorted(warm, key=_warm_total)[len(warm) // 2]
    total = _warm_total(run)
    return {
        "cold_compile": cold["first_call"],
        "warm_import": run["import_numba"] + run["import_cell"],
        "warm_first_call": run["first_call"]["float32"],
        "warm_total": total,
        "warm_total_without_scipy": statistics.median(without_scipy),
        "numba_floor": statistics.median(floors),
    }


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], "--without-scipy" in sys.argv)))
    os._exit(0)  # skip interpreter teardown: not part of what is measured
