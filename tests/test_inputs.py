"""What users pass to a generated cell: checked before any kernel runs, or handled exactly right."""

import re

import numpy as np
import pytest

from generated import LSTM, RNN
from tests.conftest import ALL_CELLS as CELLS
from tests.conftest import CELL_NAMES

T, B, I, H = 4, 3, 5, 6


def make(name, dtype=np.float64, seed=0):
    cell = CELLS[name](I, H, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    state0 = tuple(rng.standard_normal((B, width)).astype(dtype) for width in cell.state_widths)
    return cell, x, state0


def run_all(cell, x, state0=None, dy=None, dstate=None):
    """Forward, backward and Jacobian; returns every result as a flat list of arrays."""
    y, final, tape = cell.forward(x, state0)
    dy = np.ones_like(y) if dy is None else dy
    grads = cell.backward(tape, dy, dstate)
    return [y, *final, grads.x, *grads.params.values(), *grads.state0, cell.jacobian(tape)]


# -- shapes, ranks, numbers of states, batch sizes ------------------------------------------
@pytest.mark.parametrize("name", CELL_NAMES)
def test_wrong_rank_or_size_names_the_argument(name):
    cell, x, state0 = make(name)
    n, first = len(cell.state_names), cell.state_names[0]  # the output state: h, or y for cornn
    W = cell.state_widths[0]  # H = 6, or lstm_proj's proj_size = 3
    size = "hidden_size" if W == H else rf"proj_size={W}"
    cases = [
        ((x[0],), {}, r"x must have shape \(T, B, input_size=5\), got \(3, 5\)"),
        ((x[..., :4],), {}, r"x must have shape \(T, B, input_size=5\) = \(4, 3, 5\), got \(4, 3, 4\)"),
        (
            (x, (state0[0][:, : W - 1], *state0[1:])),
            {},
            rf"state0\[0\] \({first}\) must have shape .* = \(3, {W}\), got \(3, {W - 1}\)",
        ),
        ((x, tuple(s[None] for s in state0)), {}, rf"state0\[0\] \({first}\) must have shape .*got \(1, 3, {W}\)"),
        ((x, state0 + (state0[0],)), {}, rf"state0 must be a tuple of {n} arrays .*got {n + 1} arrays"),
        (
            (x, [np.zeros((2, W))] * n),
            {},
            rf"state0\[0\] \({first}\) must have shape \(B, {size}\) with B = 3 from x = \(3, {W}\), got \(2, {W}\)",
        ),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            cell.forward(*args, **kwargs)
    _, _, tape = cell.forward(x, state0)
    with pytest.raises(
        ValueError, match=rf"dy must have shape \(T, B, H\) = the shape of y = \(4, 3, {W}\), got \(4, 2, {W}\)"
    ):
        cell.backward(tape, np.ones((T, 2, W)))
    with pytest.raises(ValueError, match=r"dy must have shape .*got \(4, 3\)"):
        cell.backward(tape, np.ones((T, B)))
    with pytest.raises(ValueError, match=rf"dstate\[0\] \({first}\) must have shape \(B, {size}\) with B = 3 from x"):
        cell.backward(tape, None, tuple(np.ones((2, w)) for w in cell.state_widths))
    with pytest.raises(ValueError, match=rf"dstate must be a tuple of {n} arrays"):
        cell.backward(tape, None, [np.ones((B, W))] * (n + 1))


def test_single_state_cells_take_a_bare_array_or_a_tuple():
    cell, x, (h0,) = make("rnn")
    np.testing.assert_array_equal(cell.forward(x, h0)[0], cell.forward(x, (h0,))[0])


@pytest.mark.parametrize("batch", [B, 1])
def test_single_state_cells_read_a_nested_list_as_the_state(batch):
    """README: lists are converted. h.tolist() is the state, not a list of B states."""
    cell, x, (h0,) = make("rnn")
    x, h0 = x[:, :batch], h0[:batch]
    expected = run_all(cell, x, h0, dstate=h0)
    for got, want in zip(run_all(cell, x, h0.tolist(), dstate=h0.tolist()), expected):
        np.testing.assert_array_equal(got, want)
    for states in ([h0], (h0.tolist(),)):  # a list or tuple holding the one state
        np.testing.assert_array_equal(cell.forward(x, states)[0], expected[0])
    with pytest.raises(ValueError, match=r"state0 must be a tuple of 1 arrays \('h',\), got 2 arrays"):
        cell.forward(x, [h0, h0])


# -- dtypes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CELL_NAMES)
def test_integers_booleans_and_narrower_floats_are_converted(name):
    cell, _, _ = make(name)
    ints = np.arange(T * B * I).reshape(T, B, I) % 3 - 1
    reference = run_all(cell, ints.astype(np.float64))
    for x in (
        ints,
        ints.astype(np.int8),
        ints.astype(np.uint8) * 0,
        ints.astype(np.float16),
        ints.astype(np.float32),
        ints.tolist(),
    ):
        expected = reference if np.asarray(x).any() else run_all(cell, np.zeros((T, B, I)))
        for got, want in zip(run_all(cell, x), expected):
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, want)
    booleans = ints > 0
    np.testing.assert_array_equal(cell.forward(booleans)[0], cell.forward(booleans.astype(np.float64))[0])


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_torch_floats_numpy_lacks_are_converted_like_float16(torch, dtype):
    cell, x, state0 = make("lstm", np.float32)
    dy = np.random.default_rng(1).standard_normal((T, B, H))
    rounded = [torch.tensor(a).to(getattr(torch, dtype)) for a in (x, dy, *state0)]
    widened = [a.float().numpy() for a in rounded]  # exact: float32 holds every value of these types
    expected = run_all(cell, widened[0], tuple(widened[2:]), dy=widened[1], dstate=tuple(widened[2:]))
    got = run_all(cell, rounded[0], tuple(rounded[2:]), dy=rounded[1], dstate=tuple(rounded[2:]))
    for a, b in zip(got, expected):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def test_torch_tensors_that_require_grad_are_read_detached(torch):
    cell, x, state0 = make("gru", np.float32)
    y, _, _ = cell.forward(torch.tensor(x, requires_grad=True), torch.tensor(state0[0], requires_grad=True))
    np.testing.assert_array_equal(y, cell.forward(x, state0)[0])


@pytest.mark.parametrize("name", CELL_NAMES)
def test_float64_given_to_a_float32_cell_is_a_type_error_for_every_argument(name):
    cell, x, state0 = make(name, np.float32)
    wide = lambda a: tuple(s.astype(np.float64) for s in a)  # noqa: E731
    first = cell.state_names[0]
    with pytest.raises(TypeError, match=r"x has dtype float64 but the cell is float32; cast it explicitly"):
        cell.forward(x.astype(np.float64))
    with pytest.raises(TypeError, match=rf"state0\[0\] \({first}\) has dtype float64 but the cell is float32"):
        cell.forward(x, wide(state0))
    y, final, tape = cell.forward(x, state0)
    with pytest.raises(TypeError, match=r"dy has dtype float64 but the cell is float32"):
        cell.backward(tape, y.astype(np.float64))
    with pytest.raises(TypeError, match=rf"dstate\[0\] \({first}\) has dtype float64 but the cell is float32"):
        cell.backward(tape, None, wide(final))
    # Python numbers carry no dtype: they take the cell's, like torch.tensor does.
    assert cell.forward(x.tolist())[0].dtype == np.float32


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((T, B, I), np.complex128),
        np.full((T, B, I), "a"),
        np.full((T, B, I), 1.0, dtype=object),
        np.zeros((T, B, I), "datetime64[s]"),
    ],
)
def test_complex_string_object_and_datetime_arrays_are_type_errors(bad):
    cell, x, state0 = make("lstm")
    with pytest.raises(TypeError, match=re.escape(f"x must be a real numeric array, got dtype {bad.dtype}")):
        cell.forward(bad)
    with pytest.raises(TypeError, match=r"state0\[1\] \(c\) must be a real numeric array"):
        cell.forward(x, (state0[0], bad[0, :, :1].repeat(H, 1)))
    _, _, tape = cell.forward(x)
    with pytest.raises(TypeError, match=r"dy must be a real numeric array"):
        cell.backward(tape, bad[..., :1].repeat(H, 2))


def test_ragged_input_is_named():
    with pytest.raises(ValueError, match=r"x is not a rectangular numeric array"):
        RNN(2, 3).forward([[[1.0, 2.0]], [[1.0]]])


# -- layouts --------------------------------------------------------------------------------
def layouts(a):
    """The same values as a non-contiguous view, with reversed strides and in Fortran order."""
    padded = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    padded[..., ::2] = a
    reversed_ = np.ascontiguousarray(a[::-1])[::-1]
    return {"strided view": padded[..., ::2], "reversed strides": reversed_, "Fortran order": np.asfortranarray(a)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_views_reversed_strides_and_fortran_order_give_the_contiguous_result(name, dtype):
    cell, x, state0 = make(name, dtype)
    dy = np.random.default_rng(1).standard_normal((T, B, cell.state_widths[0])).astype(dtype)
    dstate = tuple(np.ones_like(s) for s in state0)
    reference = run_all(cell, x, state0, dy, dstate)
    for kind in ("strided view", "reversed strides", "Fortran order"):
        assert not layouts(x)[kind].flags.c_contiguous
        inputs = dict(
            x=layouts(x)[kind],
            state0=tuple(layouts(s)[kind] for s in state0),
            dy=layouts(dy)[kind],
            dstate=tuple(layouts(s)[kind] for s in dstate),
        )
        for got, want in zip(run_all(cell, **inputs), reference):
            np.testing.assert_array_equal(got, want, err_msg=kind)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_parameters_in_any_layout_give_the_same_result(name):
    cell, x, state0 = make(name)
    reference = run_all(cell, x, state0)
    for key, value in list(cell.params.items()):
        cell.params[key] = np.asfortranarray(value) if value.ndim == 2 else value[::-1].copy()[::-1]
    for got, want in zip(run_all(cell, x, state0), reference):
        np.testing.assert_array_equal(got, want)


# -- empty sequences and batches ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_empty_time_or_batch_gives_empty_results(name, dtype):
    cell, _, _ = make(name, dtype)
    widths = cell.state_widths
    S, W = sum(widths), widths[0]
    for steps, batch in ((0, 3), (4, 0), (0, 0)):
        state0 = tuple(np.full((batch, w), 0.5, dtype) for w in widths)
        dstate = tuple(np.full((batch, w), 2.0, dtype) for w in widths)
        y, final, tape = cell.forward(np.zeros((steps, batch, I), dtype), state0)
        assert y.shape == (steps, batch, W) and y.dtype == dtype
        for s, s0 in zip(final, state0):
            np.testing.assert_array_equal(s, s0)  # no step: the final state is the initial one
        grads = cell.backward(tape, np.zeros((steps, batch, W), dtype), dstate)
        assert grads.x.shape == (steps, batch, I)
        for name_, value in grads.params.items():
            assert value.shape == cell.params[name_].shape
            np.testing.assert_array_equal(value, 0)  # a sum over no step or no row
        for d0, d in zip(grads.state0, dstate):
            np.testing.assert_array_equal(d0, d)  # dL/ds_0 = dL/ds_T when T = 0
        J = cell.jacobian(tape)
        assert J.shape == (steps, batch, S, S) and J.dtype == dtype


# -- parameters -----------------------------------------------------------------------------
def test_a_parameter_of_the_wrong_shape_dtype_or_type_is_named():
    cell, x, _ = make("lstm", np.float32)
    good = cell.params["W_hh"]
    for value, error, message in [
        (np.zeros((24, 5), np.float32), ValueError, r"parameter 'W_hh' must have shape \(24, 6\), got \(24, 5\)"),
        (good.astype(np.float64), TypeError, r"parameter 'W_hh' must have dtype float32, got float64"),
        (good.astype(np.int32), TypeError, r"parameter 'W_hh' must have dtype float32, got int32"),
        (good.tolist(), TypeError, r"parameter 'W_hh' must be a numpy array, got list"),
    ]:
        cell.params["W_hh"] = value
        with pytest.raises(error, match=message):
            cell.forward(x)
    cell.params["W_hh"] = good
    del cell.params["b_ih"]
    with pytest.raises(ValueError, match=r"parameter 'b_ih' is missing from params"):
        cell.forward(x)


def test_an_unknown_parameter_name_is_an_error_not_ignored():
    cell, x, _ = make("gru")
    cell.params["W_HH"] = cell.params["W_hh"].copy()  # a typo
    with pytest.raises(ValueError, match=r"params has unknown names \['W_HH'\]"):
        cell.forward(x)


# -- tapes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CELL_NAMES)
def test_a_tape_from_another_cell_is_rejected(name):
    cell, x, _ = make(name)
    _, _, tape = cell.forward(x)
    twin = CELLS[name](I, H, dtype=np.float64, seed=0)  # same class, sizes and values
    with pytest.raises(ValueError, match="tape was recorded by another cell"):
        twin.backward(tape)
    with pytest.raises(ValueError, match="tape was recorded by another cell"):
        twin.jacobian(tape)
    with pytest.raises(TypeError, match="tape must be the Tape returned by forward, got tuple"):
        cell.backward(tuple(vars(tape).values()))


@pytest.mark.parametrize("change", ["in place", "replaced", "load_torch-like copy"])
def test_a_tape_whose_parameters_changed_is_rejected(change):
    cell, x, _ = make("lstm")
    _, _, tape = cell.forward(x)
    if change == "in place":
        cell.params["W_hh"][0, 0] += 0.5
    elif change == "replaced":
        cell.params["b_hh"] = cell.params["b_hh"] + 1.0
    else:
        cell.params["W_ih"][...] = 0.0
    for operation in (cell.backward, cell.jacobian):
        with pytest.raises(
            ValueError, match=r"parameter '(W_hh|b_hh|W_ih)' changed \(in place or replaced\) after the forward"
        ):
            operation(tape)


def test_a_parameter_restored_bit_for_bit_is_accepted():
    cell, x, _ = make("gru")
    _, _, tape = cell.forward(x)
    saved = cell.params["W_hh"].copy()
    cell.params["W_hh"][...] = 7.0
    cell.params["W_hh"] = saved  # same values, another array
    cell.backward(tape)


def test_changing_inputs_or_outputs_after_forward_cannot_alter_the_tape():
    """The tape owns copies: reusing the x buffer or editing y in place is safe."""
    cell, x, state0 = make("lstm")
    reference = run_all(cell, x, state0)
    y, final, tape = cell.forward(x, state0)
    x[...] = 99.0
    y[...] = -5.0
    for s in final + state0:
        s[...] = 3.0
    grads = cell.backward(tape, np.ones_like(y))
    np.testing.assert_array_equal(grads.x, reference[len(final) + 1])
    for got, want in zip(grads.params.values(), reference[len(final) + 2 :]):
        np.testing.assert_array_equal(got, want)


def test_a_tape_with_arrays_of_another_batch_is_rejected():
    cell, x, _ = make("lstm")
    _, _, tape = cell.forward(x)
    _, _, other = cell.forward(x[:, :2])
    mixed = type(tape)(cell, tape.x, other.states, tape.saved, tape.params, tape.constants)
    for operation in (cell.backward, cell.jacobian):
        with pytest.raises(
            ValueError,
            match=r"tape is inconsistent: tape.states must be a C-contiguous float64 array of shape \(2, 5, 3, 6\), got .*\(2, 5, 2, 6\)",
        ):
            operation(mixed)
    with pytest.raises(AttributeError):
        tape.states = other.states  # a Tape is frozen


# -- non-finite values ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_nan_and_inf_propagate_without_raising(name, dtype):
    cell, x, state0 = make(name, dtype)
    x[2, 1, 0] = np.nan
    x[3, 0, 1] = np.inf
    y, final, tape = cell.forward(x, state0)
    assert np.isfinite(y[:2]).all() and np.isfinite(y[2, [0, 2]]).all()
    assert np.isnan(y[2, 1]).any()  # row 1 is poisoned from step 2 on, the other rows only by the inf
    grads = cell.backward(tape, np.ones_like(y))
    assert not np.isfinite(grads.x).all()
    assert not np.isfinite(cell.jacobian(tape)).all()


def test_check_finite_names_the_input_step_and_row():
    cell, x, _ = make("lstm")
    x[2, 1, 3] = np.nan
    x[3, 0, 0] = np.inf
    with pytest.raises(
        FloatingPointError,
        match=r"forward: first non-finite value at time step 2, batch row 1, in the input: x\[2, 1, 3\] = nan",
    ):
        cell.forward(x, check_finite=True)


def test_check_finite_names_a_parameter_and_an_initial_state():
    cell, x, state0 = make("gru")
    bad = (state0[0].copy(),)
    bad[0][2, 4] = -np.inf
    with pytest.raises(FloatingPointError, match=r"in state0 \(h\): state0\[0\]\[2, 4\] = -inf"):
        cell.forward(x, bad, check_finite=True)
    cell.params["b_hh"][5] = np.nan
    with pytest.raises(FloatingPointError, match=r"in parameter 'b_hh': b_hh\[5\] = nan"):
        cell.forward(x, check_finite=True)


def test_check_finite_names_the_quantity_that_overflows_from_finite_inputs():
    """Finite float32 values whose products overflow to +inf and -inf: inf - inf = nan in a gate."""
    cell, x, _ = make("lstm", np.float32)
    x[0, 2] = 3e38
    cell.params["W_ih"][...] = 1.0  # W_ih x = +inf in row 2
    cell.params["W_hh"][...] = -3e38  # W_hh h = -inf where h = 1
    h0 = np.zeros((B, H), np.float32)
    h0[2] = 1.0
    state0 = (h0, np.zeros((B, H), np.float32))
    y, _, _ = cell.forward(x, state0)  # by default: no error, NaN where IEEE puts it
    assert np.isnan(y[0, 2]).all() and np.isfinite(y[0, :2]).all()
    with pytest.raises(
        FloatingPointError, match=r"at time step 0, batch row 2, in i at unit 0: nan, computed from finite inputs"
    ):
        cell.forward(x, state0, check_finite=True)


def test_check_finite_in_backward_and_jacobian():
    cell, x, _ = make("rnn")
    y, _, tape = cell.forward(x)
    dy = np.ones_like(y)
    dy[1, 2, 3] = np.nan
    dy[3, 0, 0] = np.inf  # backward meets the last step first
    with pytest.raises(
        FloatingPointError,
        match=r"backward: first non-finite value at time step 3, batch row 0, in the argument: dy\[3, 0, 0\] = inf",
    ):
        cell.backward(tape, dy, check_finite=True)
    cell.backward(tape, np.ones_like(y), check_finite=True)
    cell.jacobian(tape, check_finite=True)
    x[0, 0, 0] = np.nan
    _, _, tape = cell.forward(x)
    with pytest.raises(
        FloatingPointError, match=r"backward: first non-finite value in the tape \(states\), from forward"
    ):
        cell.backward(tape, check_finite=True)
    with pytest.raises(FloatingPointError, match=r"jacobian: first non-finite value in the tape"):
        cell.jacobian(tape, check_finite=True)
    cell.params["W_ih"][...] = 1e300  # x = 0: a finite forward, but dx = d_pre W_ih overflows
    _, _, tape = cell.forward(np.zeros((2, 1, I)))
    with pytest.raises(
        FloatingPointError,
        match=r"backward: first non-finite value at time step 1 \(counting down\), batch row 0, in dx\[1, 0, 0\] = -?inf",
    ):
        cell.backward(tape, np.full((2, 1, H), 1e300), check_finite=True)


# The saved value that shows the saturation where the first one does not: slstm's first is log σ(f̃) + m and its
# i' is normalised by the stabiliser m, so its output gate σ(õ); min_lstm's gates are normalised (both saturated
# give 1/2), so its candidate n = W_in x + b_in; lstm_layernorm's first is a LayerNorm's standard deviation, so
# its input gate; mogrifier_lstm's first is a gate of its rounds, whose Q and R have no biases, so its input gate.
FIRST_GATE = {"slstm": "sigmoid_h_new", "min_lstm": "n", "lstm_layernorm": "i", "mogrifier_lstm": "i"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_saturated_preactivations_give_finite_values_and_gradients(name, dtype):
    """Pre-activations of ±1e4: exp(1e4) overflows to inf, σ = 1/(1+inf) = 0, finite gradients."""
    cell, x, state0 = make(name, dtype)
    for value in cell.params.values():
        if value.ndim == 1:
            value[...] = np.where(np.arange(value.size) % 2, 1e4, -1e4)
    y, final, tape = cell.forward(x, state0)
    grads = cell.backward(tape, np.ones_like(y), tuple(np.ones_like(s) for s in final))
    for array in [y, *final, grads.x, *grads.params.values(), *grads.state0, cell.jacobian(tape)]:
        assert np.isfinite(array).all()
    gate = (
        tape.saved[:, cell.saved_names.index(FIRST_GATE.get(name, cell.saved_names[0]))] if cell.saved_names else y
    )  # RNN: h
    saturated = np.isin(np.abs(gate), [0.0, 1.0]) | (np.abs(gate) > 1e3)  # exactly 0 or ±1; relu passes ~1e4
    assert saturated.mean() > 0.9


@pytest.mark.parametrize("z, expected", [(-1e4, 0.0), (1e4, 1.0), (-745.0, 0.0), (0.0, 0.5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_jitted_sigmoid_saturates_without_overflow_errors(z, expected, dtype):
    from generated.lstm import sigmoid, tanh

    assert sigmoid(dtype(z)) == pytest.approx(expected, abs=1e-300)
    assert abs(tanh(dtype(z))) <= 1.0


def test_bounds_checked_kernels_raise_instead_of_reading_out_of_bounds():
    """Under NUMBA_BOUNDSCHECK=1 (the second CI run) a kernel handed an array too short raises
    IndexError: proof that bounds-checked code runs, not kernels cached without the checks."""
    import numba

    if not numba.config.BOUNDSCHECK:
        pytest.skip("runs under NUMBA_BOUNDSCHECK=1 (see .ci/run)")
    cell, x, _ = make("lstm")
    _, _, tape = cell.forward(x)
    J = np.zeros((T, B, 2 * H, 2 * H))
    with pytest.raises(IndexError):
        LSTM._jacobian(
            tape.x, *tape.params.values(), tape.states, tape.saved[:-1], J, np.zeros(1, np.uint8)
        )  # one step short
