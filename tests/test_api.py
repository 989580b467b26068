"""The public contract of every generated cell."""

import tracemalloc

import numpy as np
import pytest

import generated
from generated import GRU, LSTM, RNN
from tests.conftest import ALL_CELLS as CELLS
from tests.conftest import CELL_NAMES


def test_exports():
    assert generated.CELLS["rnn"] is RNN and generated.CELLS["lstm"] is LSTM and generated.CELLS["gru"] is GRU
    assert set(generated.__all__) >= {"RNN", "LSTM", "GRU", "CELLS"}
    assert LSTM.state_names == ("h", "c") and GRU.state_names == ("h",) and RNN.state_names == ("h",)


def test_pytorch_parameter_layout():
    cell = LSTM(input_size=8, hidden_size=16, seed=0)
    assert {k: v.shape for k, v in cell.params.items()} == {
        "W_ih": (64, 8),
        "W_hh": (64, 16),
        "b_ih": (64,),
        "b_hh": (64,),
    }
    assert [p.torch for p in LSTM.parameters] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert LSTM.parameters[0].gates == ("i", "f", "g", "o") and GRU.parameters[0].gates == ("r", "z", "n")


@pytest.mark.parametrize("name", CELL_NAMES)
def test_default_dtype_init_and_seed(name):
    cls = CELLS[name]
    a, b = cls(5, 7, seed=3), cls(5, 7, seed=3)
    bound = 1 / np.sqrt(7)
    for key, value in a.params.items():
        assert value.dtype == np.float32 and value.flags.c_contiguous
        np.testing.assert_array_equal(value, b.params[key])
        if cls.parameters[list(a.params).index(key)].init == "uniform":
            assert np.all(np.abs(value) <= bound) and value.std() > bound / 4


def test_float64_init_draws_what_rng_uniform_draws():
    """The float64 values of a seed stay those of rng.uniform (PyTorch's default init)."""
    cell = LSTM(5, 7, dtype=np.float64, seed=3)
    rng, bound = np.random.default_rng(3), 1 / np.sqrt(7)
    for name, value in cell.params.items():
        np.testing.assert_array_equal(value, rng.uniform(-bound, bound, value.shape), err_msg=name)


def test_init_needs_no_more_memory_than_the_parameters():
    """No float64 temporaries: a float32 cell's init used to peak at 3x its parameters."""
    tracemalloc.start()
    try:
        cell = LSTM(64, 1024, dtype=np.float32, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = sum(value.nbytes for value in cell.params.values())
    assert size <= peak <= 1.05 * size, (peak, size)


def test_an_impossible_size_is_a_memory_error_naming_the_sizes():
    with pytest.raises(
        MemoryError,
        match=r"LSTM\(input_size=3, hidden_size=1000000, dtype=float32\): its parameters .* need 14,901.2 GiB.*hidden_size=1000000",
    ):
        LSTM(3, 10**6)
    with pytest.raises(MemoryError, match=r"reduce hidden_size=1000000000000 or input_size=1000000000000"):
        RNN(10**12, 10**12)  # beyond what any array can hold


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_forward_backward_shapes_and_dtypes(name, dtype):
    T, B, I, H = 6, 3, 4, 5
    cell = CELLS[name](I, H, dtype=dtype, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
    y, state, tape = cell.forward(x)
    widths = cell.state_widths  # H each, or a declared size (lstm_proj's h: proj_size)
    assert y.shape == (T, B, widths[0]) and y.dtype == dtype
    assert [s.shape for s in state] == [(B, width) for width in widths]
    np.testing.assert_array_equal(y[-1], state[0])
    g = cell.backward(tape, np.ones_like(y))
    assert g.x.shape == x.shape and g.x.dtype == dtype
    assert {k: v.shape for k, v in g.params.items()} == {k: v.shape for k, v in cell.params.items()}
    assert [s.shape for s in g.state0] == [(B, width) for width in widths]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_inference_forward_computes_what_the_taped_forward_does(name, dtype):
    """tape=False: the same y and final states bit for bit, no tape, x left as it was; its
    intermediate values live in one step's scratch (cells with several levels read them back)."""
    cell = CELLS[name](4, 5, dtype=dtype, seed=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 3, 4)).astype(dtype)
    state0 = tuple(rng.standard_normal((3, width)).astype(dtype) for width in cell.state_widths)
    y, state, tape = cell.forward(x, state0)
    x_before = x.copy()
    y_inference, state_inference, none = cell.forward(x, state0, tape=False)
    assert none is None and y_inference.dtype == dtype and y_inference.shape == y.shape
    np.testing.assert_array_equal(y_inference, y)
    for a, b in zip(state_inference, state):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x, x_before)
    empty, final, _ = cell.forward(x[:0], state0, tape=False)
    assert empty.shape == (0, 3, cell.state_widths[0]) and all(np.array_equal(a, b) for a, b in zip(final, state0))


def test_inference_forward_checks_its_arguments_and_finds_non_finite_values():
    cell = LSTM(2, 3, dtype=np.float64, seed=0)
    x = np.ones((4, 1, 2))
    with pytest.raises(TypeError, match=r"tape must be True or False, got 'no'"):
        cell.forward(x, tape="no")
    x[2, 0, 1] = np.nan
    with pytest.raises(FloatingPointError, match=r"at time step 2, batch row 0, in the input: x\[2, 0, 1\] = nan"):
        cell.forward(x, tape=False, check_finite=True)
    relu = generated.CELLS["rnn_relu"](2, 3, dtype=np.float64, seed=0)
    relu.params["W_ih"][:], relu.params["W_hh"][:] = 1, 1e300  # h overflows at the third step
    with pytest.raises(FloatingPointError, match=r"at time step 2, batch row 0, in h \(new state\) at unit 0: inf"):
        relu.forward(np.ones((4, 1, 2)), tape=False, check_finite=True)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_forward_is_deterministic_and_continues_from_state(name):
    cell = CELLS[name](3, 4, dtype=np.float64, seed=1)
    x = np.random.default_rng(2).standard_normal((8, 2, 3))
    y, state, _ = cell.forward(x)
    y2, _, _ = cell.forward(x)
    np.testing.assert_array_equal(y, y2)
    y_first, mid, _ = cell.forward(x[:5])
    y_rest, end, _ = cell.forward(x[5:], mid)
    np.testing.assert_allclose(np.concatenate([y_first, y_rest]), y, rtol=0, atol=1e-14)
    for a, b in zip(end, state):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)


def test_params_are_live():
    cell = RNN(2, 3, dtype=np.float64, seed=0)
    x = np.ones((2, 1, 2))
    before, _, _ = cell.forward(x)
    cell.params["b_ih"] += 1.0
    after, _, _ = cell.forward(x)
    assert not np.allclose(before, after)
    cell.params["b_ih"] -= 1.0
    np.testing.assert_array_equal(cell.forward(x)[0], before)


def test_training_step_reduces_loss():
    """Forward, backward and a few gradient steps: what a user does with a cell."""
    rng = np.random.default_rng(0)
    cell = GRU(3, 8, dtype=np.float64, seed=0)
    x, target = rng.standard_normal((10, 4, 3)), rng.uniform(-0.5, 0.5, (10, 4, 8))
    losses = []
    for _ in range(20):
        y, _, tape = cell.forward(x)
        losses.append(0.5 * np.sum((y - target) ** 2))
        grads = cell.backward(tape, y - target)
        for name, value in cell.params.items():
            value -= 0.01 * grads.params[name]
    assert losses[-1] < 0.7 * losses[0]


def test_wrong_shapes_are_named():
    cell = LSTM(3, 4)
    with pytest.raises(ValueError, match=r"x must have shape"):
        cell.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"x must have shape .*\(2, 1, 3\).*got \(2, 1, 5\)"):
        cell.forward(np.zeros((2, 1, 5), np.float32))
    with pytest.raises(ValueError, match=r"state0 must be a tuple of 2 arrays"):
        cell.forward(np.zeros((2, 1, 3), np.float32), np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match=r"state0\[1\] \(c\) must have shape"):
        cell.forward(np.zeros((2, 1, 3), np.float32), (np.zeros((1, 4), np.float32), np.zeros((2, 4), np.float32)))
    _, _, tape = cell.forward(np.zeros((2, 1, 3), np.float32))
    with pytest.raises(ValueError, match=r"dy must have shape"):
        cell.backward(tape, np.zeros((2, 1, 5), np.float32))
    with pytest.raises(ValueError, match="another cell"):
        LSTM(3, 4).backward(tape)
    with pytest.raises(TypeError, match=r"x has dtype float64 but the cell is float32"):
        cell.forward(np.zeros((2, 1, 3)))
    cell.params["W_hh"] = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"parameter 'W_hh' must have shape \(16, 4\)"):
        cell.forward(np.zeros((2, 1, 3), np.float32))
