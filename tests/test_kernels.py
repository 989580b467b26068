"""How the generated kernels compute: chunks of steps, float32 arithmetic, matrix helpers."""

import json
import os
import re
import subprocess
import sys

import numba
import numpy as np
import pytest

from derive.runtime.matrix import add_column_sums, matmul, pack
from tests.conftest import ALL_CELLS as CELLS
from tests.conftest import CELL_NAMES, ROOT


@pytest.mark.parametrize("name", CELL_NAMES)
def test_chunks_of_steps_do_not_change_the_result(name):
    """B = 90 makes chunks of 2 steps (256 // 90) and a last one of 1; each batch row alone
    (B = 1) runs all 7 steps in one chunk. Both must agree, gradients summed over rows."""
    T, B, I, H = 7, 90, 3, 4
    cls = CELLS[name]
    cell = cls(I, H, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, cell.state_widths[0]))
    state0 = tuple(rng.standard_normal((B, width)) for width in cell.state_widths)
    y, final, tape = cell.forward(x, state0)
    grads = cell.backward(tape, dy, final)
    summed = {k: np.zeros_like(v) for k, v in grads.params.items()}
    for b in range(B):
        rows = slice(b, b + 1)
        y_b, final_b, tape_b = cell.forward(x[:, rows], tuple(s[rows] for s in state0))
        grads_b = cell.backward(tape_b, dy[:, rows], tuple(f[rows] for f in final))
        np.testing.assert_allclose(y_b, y[:, rows], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(grads_b.x, grads.x[:, rows], rtol=1e-12, atol=1e-14)
        for k, s in enumerate(grads_b.state0):
            np.testing.assert_allclose(s, grads.state0[k][rows], rtol=1e-12, atol=1e-14)
        for k, v in grads_b.params.items():
            summed[k] += v
    for k, v in summed.items():
        np.testing.assert_allclose(grads.params[k], v, rtol=1e-11, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("name", ["lstm", "gru", "gru_reset_before"])
def test_float32_kernels_never_compute_in_float64(name):
    """Constants are printed in the kernel's dtype: no float32 value is widened to double."""
    cls = CELLS[name]
    x = np.ones((2, 1, 3), np.float32)
    cell = cls(3, 4, dtype=np.float32, seed=0)
    _, _, tape = cell.forward(x)
    args = {
        "forward": (x, *tape.params.values(), tape.states.copy(), tape.saved.copy()),
        "backward": (
            x,
            *tape.params.values(),
            tape.states,
            tape.saved,
            np.ones((2, 1, 4), np.float32),
            np.zeros((len(cls.state_names), 1, 4), np.float32),
            np.empty_like(x),
            *(np.empty_like(v) for v in tape.params.values()),
            np.empty((len(cls.state_names), 1, 4), np.float32),
        ),
    }
    for kernel, kernel_args in args.items():
        dispatcher = getattr(cls, f"_{kernel}")
        options = {k: v for k, v in dispatcher.targetoptions.items() if k not in ("cache", "nopython")}
        uncached = numba.njit(pipeline_class=dispatcher._compiler.pipeline_class, **options)(dispatcher.py_func)
        uncached(*kernel_args, np.zeros(1, np.uint8))  # the cancel flag, never set
        ir = uncached.inspect_llvm(uncached.signatures[0])
        assert "fpext float" not in ir and not re.search(r"f(add|sub|mul|div) double", ir), f"{name}.{kernel}"


@numba.njit
def _matmul_layouts(a, b, c0, beta):
    """c = a b + beta c0 with a as given, as a transposed view of a copy and reversed; b packed
    as given and from a transposed view of a copy."""
    out = np.empty((6,) + c0.shape, c0.dtype)
    at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    for k, (left, right) in enumerate([(a, b), (at.T, b), (a[::-1], b), (a, bt.T), (at.T, bt.T), (a[::-1], bt.T)]):
        reversed_rows = k % 3 == 2  # rows of a reversed: so are those of c
        out[k] = c0[::-1] if reversed_rows else c0
        matmul(left, pack(right), out[k], beta)
        if reversed_rows:
            out[k] = out[k][::-1].copy()
    return out


# Shapes around the tiles: rows (M) around multiples of MR, columns (N) around multiples of NR
# (64 and 32 with AVX-512), depths (K) of 0 and 1, and products large enough for threads; rows
# left after the tiles go one by one (1, 3 of 8, 65 = 64 + 1 with threads) or in a last tile.
SHAPES = [
    (1, 1, 1),
    (5, 7, 3),
    (4, 0, 9),
    (0, 3, 4),
    (5, 3, 0),
    (7, 33, 65),
    (9, 64, 200),
    (130, 20, 70),
    (300, 7, 3),
    (32, 128, 512),
    (66, 70, 129),
    (3, 20, 40),
    (65, 128, 256),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", SHAPES)
def test_matmul_with_any_layout_shape_and_beta(dtype, m, k, n):
    rng = np.random.default_rng(0)
    a, b, c0 = (rng.standard_normal(s).astype(dtype) for s in ((m, k), (k, n), (m, n)))
    tol = 1e-5 * max(1, k) if dtype == np.float32 else 1e-13 * max(1, k)
    for beta in (0.0, 1.0, 0.5):
        expected = a.astype(np.float64) @ b.astype(np.float64) + beta * c0
        for c in _matmul_layouts(a, b, c0, beta):
            np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)
        if m * n:  # beta = 0 ignores what c held, even NaN, as BLAS does; matmul writes every element
            c = np.full((6, m, n), np.nan, dtype)
            assert not np.isnan(_matmul_layouts(a, b, c[0], 0.0)).any()
    np.testing.assert_allclose(_pure_matmul(a, b, c0, 0.5), a @ b + 0.5 * c0, rtol=tol, atol=tol)


def _pure_matmul(a, b, c0, beta):
    """The plain-Python bodies (run under NUMBA_DISABLE_JIT by the regeneration smoke test)."""
    c = c0.copy()
    matmul(a, pack(b), c, beta)  # called from Python: the plain bodies, the overloads are for kernels
    return c


def test_add_column_sums():
    rng = np.random.default_rng(0)
    a, out = rng.standard_normal((9, 4)), rng.standard_normal(4)
    expected = out + a.sum(axis=0)
    add_column_sums(a, out)
    np.testing.assert_allclose(out, expected, rtol=1e-14)


TASK_SPECIALISATIONS = """
import json, numba, numpy as np
from derive.runtime.compiler import PRANGE_ONLY
from derive.runtime import matrix

@numba.njit(parallel=PRANGE_ONLY)
def products(a, b):
    c = np.empty((a.shape[0], b.shape[1]), a.dtype)
    matmul(a, pack(b), c, 0.0)  # threaded
    matmul(a[:1], pack(b), c[:1], 0.0)  # one thread
    return c

matmul, pack = matrix.matmul, matrix.pack
products(np.ones((64, 128), np.float32), np.ones((128, 256), np.float32))
print(json.dumps([str(s) for s in matrix._task.signatures]))
"""


def test_threaded_and_serial_products_share_one_compiled_task(tmp_path):
    """A prange index is unsigned: passed as is, the threaded path compiled a second `_task` (with its
    tiles, about a second per dtype) beside the serial path's. Fresh cache, so nothing loads from it."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", TASK_SPECIALISATIONS], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(json.loads(out.stdout)) == 1, out.stdout
