"""Kernels need neither SciPy nor BLAS: every product goes through derive.runtime.matrix.

Numba's `np.dot` (and `@`) in a kernel imports SciPy's BLAS when it compiles, and a kernel cached
where SciPy was present aborts the interpreter where it is not. So every kernel of every cell runs
here in a fresh interpreter where `import scipy` fails. It uses the usual Numba cache: a kernel
that needs SciPy fails either way, compiled here (ImportError) or loaded from a cache written
where SciPy was present (the interpreter aborts), so the kernels that earlier tests compiled need
not be compiled again.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import extra_cells
from tests.conftest import ALL_CELLS

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 3600  # with a cold cache every kernel of every cell compiles, in both dtypes: about 4 minutes on 2 idle cores

RUN_EVERY_KERNEL = """
import importlib, importlib.abc, json, sys

class BlockSciPy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "scipy" or name.startswith("scipy."):
            raise ImportError(f"{name} is blocked: kernels must not need SciPy")

sys.meta_path.insert(0, BlockSciPy())
try:
    import scipy  # noqa: F401
    sys.exit("scipy could still be imported: the test would prove nothing")
except ImportError:
    pass

import numpy as np

for folder, module, class_name in json.loads(sys.argv[1]):
    sys.path.insert(0, folder)
    cls = getattr(importlib.import_module(module), class_name)
    for dtype in (np.float32, np.float64):
        cell = cls(3, 5, dtype=dtype, seed=0)
        x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(dtype)
        y, _, tape = cell.forward(x)
        grads = cell.backward(tape, np.ones_like(y))
        J = cell.jacobian(tape)
        assert all(np.isfinite(a).all() for a in (y, grads.x, J, *grads.params.values())), cls.name
    print(cls.name, flush=True)
"""


def _where(cls) -> tuple[str, str, str]:
    """(folder to put on sys.path, module to import, class name) of a generated cell class."""
    module = sys.modules[cls.__module__]
    depth = cls.__module__.count(".") + 1
    return str(Path(module.__file__).resolve().parents[depth - 1]), cls.__module__, cls.__name__


@pytest.mark.slow
def test_every_kernel_of_every_cell_runs_where_scipy_cannot_be_imported(tmp_path):
    extra = extra_cells.generate_into(tmp_path)
    classes = list({**ALL_CELLS, **{f"extra_{name}": cls for name, cls in extra.CELLS.items()}}.values())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    # Compiling is single-threaded: one process per core shares the cells out.
    shares = [classes[k :: os.cpu_count() or 1] for k in range(min(os.cpu_count() or 1, len(classes)))]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RUN_EVERY_KERNEL, json.dumps([_where(c) for c in share])],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for share in shares
    ]
    try:
        outputs = [process.communicate(timeout=TIMEOUT) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, share, (out, err) in zip(processes, shares, outputs):
        assert process.returncode == 0, err[-3000:]
        assert out.split() == [cls.name for cls in share]
