"""Inference forward calls split over the batch (derive/runtime/shards.py): the same results bit for bit as
one call on all the rows, for every cell and dtype; the pool's thread takes part; a failing shard raises as
the kernel does; a set cancel flag stops every shard; the workspace is aligned and kept."""

import numba
import numpy as np
import pytest

from derive.runtime import shards, thread_pool
from tests.conftest import ALL_CELLS, CELL_NAMES


@pytest.fixture
def always_sharded(monkeypatch):
    """Shards from 4 rows a shard on, whatever the work (the thresholds are for speed, not correctness)."""
    monkeypatch.setattr(shards, "MIN_WORK", 0)
    monkeypatch.setattr(shards, "MIN_STEP_WORK", 1)


def _inference(cell, x, state0, sharded: bool, monkeypatch):
    with monkeypatch.context() as patch:
        if not sharded:
            patch.setattr(shards, "count", lambda *args: 1)
        return cell.forward(x, state0, tape=False)


# every cell in float64; float32 for cells of each kind (gated, several state sizes, several value sizes)
FLOAT32_CELLS = ["rnn", "lstm", "gru", "lstm_proj", "mogrifier_lstm"]


@pytest.mark.parametrize(
    "name, dtype",
    [(name, np.float64) for name in CELL_NAMES] + [(name, np.float32) for name in FLOAT32_CELLS],
)
def test_shards_give_one_calls_results_bit_for_bit(name, dtype, always_sharded, monkeypatch):
    cls = ALL_CELLS[name]
    cell = cls(5, 6, dtype=dtype, seed=1)
    T, B = 7, 9  # shards of 4 and 5 rows
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, 5)).astype(dtype)
    _, state0, _ = cell.forward(rng.standard_normal((3, B, 5)).astype(dtype), tape=False)  # non-zero states
    assert shards.count(B, B * cell._parameter_count, T * B * cell._parameter_count) == 2
    y, final, tape = _inference(cell, x, state0, True, monkeypatch)
    y_one, final_one, _ = _inference(cell, x, state0, False, monkeypatch)
    assert tape is None
    np.testing.assert_array_equal(y, y_one)
    for value, expected in zip(final, final_one):
        np.testing.assert_array_equal(value, expected)
    # and the training forward, which is never sharded, gives the same y
    np.testing.assert_array_equal(cell.forward(x, state0)[0], y)
    # every state after every step, a narrower state's zero columns included (derive.torch reads them)
    arguments = (x, cell._states_in("state0", state0, B), cell._live_params(), cell.constant_values, False)
    with monkeypatch.context() as patch:
        patch.setattr(shards, "count", lambda *args: 1)
        states_one, _ = cell._run(*arguments)
    np.testing.assert_array_equal(cell._run(*arguments)[0], states_one)


def test_the_pool_thread_runs_a_shard(always_sharded):
    cls = ALL_CELLS["lstm"]
    cell = cls(16, 32, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((50, 16, 16)).astype(np.float32)
    if thread_pool.threads() == 0 or numba.get_num_threads() < 2:
        pytest.skip("one thread: no shards")
    before = thread_pool.tasks_run_by_pool_threads()
    for _ in range(2000):  # the pool's thread may be asleep at a call: the caller then runs both shards
        cell.forward(x, tape=False)
        if thread_pool.tasks_run_by_pool_threads() > before:
            return
    pytest.fail("the pool's thread ran no shard in 2000 calls")


def test_no_shards_on_one_thread_few_rows_or_large_steps():
    if thread_pool.threads() == 0:
        pytest.skip("no pool threads")
    small_step, work = 1 << 18, 1 << 30
    assert shards.count(32, small_step, work) == 2
    assert shards.count(7, small_step, work) == 1  # fewer than MIN_ROWS rows a shard
    assert shards.count(32, small_step, shards.MIN_WORK - 1) == 1  # a short call
    assert shards.count(32, 2 * shards.MIN_STEP_WORK - 1, work) == 1  # a small step
    assert shards.count(32, 2 * shards.matrix.WORK_PER_THREAD, work) == 1  # products already shared
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert shards.count(32, small_step, work) == 1
    finally:
        numba.set_num_threads(threads)


@numba.njit(nogil=True)
def _fails_on_negative(x, out, cancel):
    if x[0] < 0:
        raise ValueError("negative first value")
    out[:] = 2 * x


def test_a_failing_shard_raises_as_the_kernel_does():
    out = [np.zeros(3), np.zeros(3)]
    shards.run(_fails_on_negative, [(np.ones(3), out[0]), (np.full(3, 2.0), out[1])], np.zeros(1, np.uint8))
    assert out[0].tolist() == [2.0] * 3 and out[1].tolist() == [4.0] * 3
    with pytest.raises(ValueError, match="negative first value"):
        shards.run(_fails_on_negative, [(np.ones(3), out[0]), (-np.ones(3), out[1])], np.zeros(1, np.uint8))


def test_a_set_cancel_flag_stops_every_shard(always_sharded):
    cell = ALL_CELLS["gru"](4, 8, dtype=np.float64, seed=0)
    T, b = 5, 4
    inputs = (*cell._live_params().values(), *cell._constant_args(cell.constant_values))
    pieces = []
    for _ in range(2):
        states = np.full((1, T + 1, b, 8), np.nan)
        states[:, 0] = 0.0
        pieces.append((np.ones((T, b, 4)), *inputs, states, cell._saved(1, b)))  # one step of scratch
    shards.run(type(cell)._forward, pieces, np.ones(1, np.uint8))
    assert all(np.isnan(piece[-2][:, 1:]).all() for piece in pieces)  # no step ran
    shards.run(type(cell)._forward, pieces, np.zeros(1, np.uint8))
    assert all(np.isfinite(piece[-2]).all() for piece in pieces)


def test_workspace_arrays_are_aligned_apart_and_kept():
    shapes = [(3, 5), (7,), (2, 2, 3)]
    arrays = shards.workspace(shapes, np.float32)
    assert [a.shape for a in arrays] == shapes
    assert all(a.flags.c_contiguous and a.ctypes.data % 64 == 0 for a in arrays)
    ends = [(a.ctypes.data, a.ctypes.data + a.nbytes) for a in arrays]
    assert all(end <= start for (_, end), (start, _) in zip(ends, ends[1:]))
    assert shards.workspace(shapes, np.float32)[0].ctypes.data == arrays[0].ctypes.data  # kept for the next call
    large = [(shards.WORKSPACE_BYTES // 8 + 1,)]
    first, second = shards.workspace(large, np.float64)[0], shards.workspace(large, np.float64)[0]
    assert not np.shares_memory(first, second)  # too large to keep


def test_calls_too_large_for_the_workspace_run_as_one(always_sharded, monkeypatch):
    cell = ALL_CELLS["lstm"](4, 8, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((6, 8, 4))
    expected = cell.forward(x, tape=False)[0]
    monkeypatch.setattr(shards, "WORKSPACE_BYTES", 1024)
    monkeypatch.setattr(shards, "run", lambda *args: pytest.fail("ran in shards"))
    np.testing.assert_array_equal(cell.forward(x, tape=False)[0], expected)


def test_shards_of_different_types_are_refused():
    shards_ = [(np.ones(3), np.zeros(3)), (np.ones((3, 1)), np.zeros(3))]
    with pytest.raises(TypeError, match="same types"):
        shards.run(_fails_on_negative, shards_, np.zeros(1, np.uint8))
