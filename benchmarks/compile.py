"""Cold compile time and warm import + first call, each in a fresh process.

`python -m benchmarks.compile CELL` (the probe) imports the generated cells and times its first
forward+backward in float32, then in float64, on a tiny input; it prints the times as JSON.
The driver runs the probe twice with NUMBA_CACHE_DIR pointing to a new empty directory:
cold (nothing cached: the first calls compile) and warm (the cache the cold run wrote).
`numba_floor` measures the same for a one-line cached function: what any Numba code pays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

START = time.perf_counter()


def probe(cell: str) -> dict:
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


def measure(cell: str, env: dict) -> dict:
    """Cold and warm probes of `cell` in fresh processes sharing a new, empty Numba cache."""
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = dict(env, NUMBA_CACHE_DIR=cache)
        runs = {}
        for kind in ("cold", "warm"):
            result = subprocess.run(
                [sys.executable, "-m", "benchmarks.compile", cell], env=env, capture_output=True, text=True
            )
            if result.returncode:
                raise RuntimeError(f"compile probe of {cell} failed:\n{result.stderr}")
            runs[kind] = json.loads(result.stdout.splitlines()[-1])
    cold, warm = runs["cold"], runs["warm"]
    return {
        "cold_compile": cold["first_call"],
        "warm_first_call": warm["first_call"]["float32"],
        "warm_import": warm["import_numba"] + warm["import_cell"],
        "warm_total": warm["import_numba"] + warm["import_cell"] + warm["first_call"]["float32"],
    }


TRIVIAL = "import numba\n\n\n@numba.njit(cache=True)\ndef one(x):\n    return x + 1\n"
TIME_TRIVIAL = (
    "import time; start = time.perf_counter(); import numba, numpy, trivial; trivial.one(1); "
    "print(time.perf_counter() - start)"
)


def numba_floor(env: dict) -> float:
    """Seconds to import numba and call a one-line cached function whose cache exists."""
    with tempfile.TemporaryDirectory(prefix="numba-floor-") as folder:
        with open(os.path.join(folder, "trivial.py"), "w") as module:
            module.write(TRIVIAL)
        env = dict(env, NUMBA_CACHE_DIR=folder, PYTHONPATH=folder)
        for _ in range(2):  # the first run writes the cache
            result = subprocess.run([sys.executable, "-c", TIME_TRIVIAL], env=env, capture_output=True, text=True)
            if result.returncode:
                raise RuntimeError(f"numba floor probe failed:\n{result.stderr}")
    return float(result.stdout.split()[-1])


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
    os._exit(0)  # skip interpreter teardown: not part of what is measured
