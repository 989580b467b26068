"""How the generated kernels compute: chunks of steps, float32 arithmetic, BLAS helpers."""

import re

import numba
import numpy as np
import pytest

from derive.blas import add_column_sums, gemm
from tests.conftest import ALL_CELLS as CELLS
from tests.conftest import CELL_NAMES


@pytest.mark.parametrize("name", CELL_NAMES)
def test_chunks_of_steps_do_not_change_the_result(name):
    """B = 90 makes chunks of 2 steps (256 // 90) and a last one of 1; each batch row alone
    (B = 1) runs all 7 steps in one chunk. Both must agree, gradients summed over rows."""
    T, B, I, H = 7, 90, 3, 4
    cls = CELLS[name]
    cell = cls(I, H, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, H))
    state0 = tuple(rng.standard_normal((B, H)) for _ in cls.state_names)
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
        "backward": (x, *tape.params.values(), tape.states, tape.saved, np.ones((2, 1, 4), np.float32),
                     np.zeros((len(cls.state_names), 1, 4), np.float32), np.empty_like(x),
                     *(np.empty_like(v) for v in tape.params.values()), np.empty((len(cls.state_names), 1, 4), np.float32)),
    }
    for kernel, kernel_args in args.items():
        dispatcher = getattr(cls, f"_{kernel}")
        options = {k: v for k, v in dispatcher.targetoptions.items() if k not in ("cache", "nopython")}
        uncached = numba.njit(pipeline_class=dispatcher._compiler.pipeline_class, **options)(dispatcher.py_func)
        uncached(*kernel_args)
        ir = uncached.inspect_llvm(uncached.signatures[0])
        assert "fpext float" not in ir and not re.search(r"f(add|sub|mul|div) double", ir), f"{name}.{kernel}"


@numba.njit
def _gemm_variants(a, b, c0, beta):
    """c = a b + beta c0 computed with a and b as given, transposed views of copies, or both."""
    out = np.empty((4,) + c0.shape, c0.dtype)
    at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    for k in range(4):
        out[k] = c0
    gemm(a, b, out[0], beta)
    gemm(at.T, b, out[1], beta)
    gemm(a, bt.T, out[2], beta)
    gemm(at.T, bt.T, out[3], beta)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_accumulates_with_any_operand_layout(dtype):
    rng = np.random.default_rng(0)
    a, b, c0 = (rng.standard_normal(s).astype(dtype) for s in ((5, 7), (7, 3), (5, 3)))
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for beta in (0.0, 1.0, 0.5):
        for c in _gemm_variants(a, b, c0, beta):
            np.testing.assert_allclose(c, a @ b + beta * c0, rtol=tol, atol=tol)


def test_add_column_sums():
    rng = np.random.default_rng(0)
    a, out = rng.standard_normal((9, 4)), rng.standard_normal(4)
    expected = out + a.sum(axis=0)
    add_column_sums(a, out)
    np.testing.assert_allclose(out, expected, rtol=1e-14)
