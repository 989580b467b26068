"""How the generated kernels compute: chunks of steps, float32 arithmetic, matrix helpers."""

import json
import os
import re
import subprocess
import sys

import numba
import numpy as np
import pytest

from derive.runtime import threading_layer
from derive.runtime.compiler import assign
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
    """Constants are printed in the kernel's dtype: no float32 value is widened to double. The activations are
    inlined into the kernels, and the forward kernel's loop over units is vectorized."""
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
            None,  # d_steps: no gradients into the states of every step
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
        # every activation inlined (kernel_math's functions are compiled apart, marked alwaysinline), so that
        # the step's loop vectorizes: exp's floor on a vector of float32 in the forward kernel
        assert "kernel_math" not in " ".join(re.findall(r"call [^@]*@([\w.$]+)", ir)), f"{name}.{kernel}"
        vectorizes = kernel == "forward" and not numba.config.BOUNDSCHECK  # a bounds check is a branch per load
        assert not vectorizes or re.search(r"llvm\.floor\.v\d+f32", ir), f"{name}.{kernel}: scalar loop"


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
    (1, 300, 520),  # little work, but panels of more than PANEL_BYTES_ALONE in float32: threaded at batch 1
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", SHAPES)
def test_matmul_with_any_layout_shape_and_beta(dtype, m, k, n):
    threading_layer.layer()  # Numba's threads started: the large products share their tiles among them
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


TILES_BY_SYMBOL = """
import json, numba, numpy as np
from derive.runtime import matrix, threading_layer

@numba.njit(cache=True)
def products(a, b):
    c = np.empty((a.shape[0], b.shape[1]), a.dtype)
    matrix.matmul(a, matrix.pack(b), c, 0.0)  # threaded, once the threads started
    matrix.matmul(a[:1], matrix.pack(b), c[:1], 0.0)  # one thread
    return c

@numba.njit(cache=True)
def thread_count():
    return matrix._thread_count()

compiled_tasks = len(matrix._task.signatures)  # compiled by this import (none when loaded from the cache)
a, b = np.arange(64 * 128, dtype=np.float32).reshape(64, 128) % 7, np.ones((128, 256), np.float32)
alone = products(a, b)
threads = [thread_count()]
threading_layer.layer()  # starts Numba's threads: large products share their tiles among them
threads.append(thread_count())
numba.set_num_threads(1)
threads.append(thread_count())
numba.set_num_threads(2)
c = products(a, b)
code = "" if products.stats.cache_hits else products.inspect_llvm(products.signatures[0])
print(json.dumps(dict(
    correct=bool((c == a @ b).all() and (alone == c).all()),
    threads=threads,
    tasks=[compiled_tasks, len(matrix._task.signatures)],
    cached=sum(products.stats.cache_hits.values()),
    calls_symbol=matrix._symbol("tasks", np.float32) in code,
    has_tiles="llvm.fma" in code,
)))
"""


def test_kernels_call_the_tiles_compiled_once_per_dtype(tmp_path):
    """The tiles are one C function per dtype (compiled when `matrix` is imported), which kernels call by its
    symbol: a kernel's code has none of them (they were inlined into every kernel and every parallel region of
    one, about half of a cell's compile time). The C function shares a product's tiles among Numba's threads
    once they have started (before: one thread), as many as `numba.set_num_threads` allows. A second process
    loads both the function and the kernel from the cache and calls it (a missing symbol would abort it)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    script = tmp_path / "products.py"  # a file: numba caches no code given by -c
    script.write_text(TILES_BY_SYMBOL)
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(out.stdout))
    cold, warm = runs
    expected = dict(correct=True, threads=[1, 2, 1], calls_symbol=False, has_tiles=False)
    assert cold == {**expected, "tasks": [2, 2], "cached": 0, "calls_symbol": True}, cold
    assert warm == {**expected, "tasks": [0, 0], "cached": 1}, warm


def test_assign_copies_arrays_of_one_shape():
    @numba.njit
    def copy(target, source):
        assign(target, source)

    source, target = np.arange(24.0).reshape(2, 3, 4), np.zeros((2, 3, 4))
    copy(target, source)
    np.testing.assert_array_equal(target, source)
    with pytest.raises(ValueError, match="one shape"):
        copy(np.zeros((2, 4, 3)), source)
    assert "unicode" not in copy.inspect_llvm(copy.signatures[0])  # no string formatting compiled in


def test_kernels_copy_arrays_with_assign():
    """`a[:] = b` of two arrays compiles Numba's string formatting into a kernel (for its shape error):
    about 3 s of the first compile in a process. Kernels copy with `assign` instead; filling with a number is fine."""
    for path in sorted((ROOT / "generated").glob("*.py")):
        copies = re.findall(r"^\s*\w+(?:\[[^]]*\])?\[:\] = (?![\d.]+$).+$", path.read_text(), re.M)
        assert not copies, (path.name, copies)
