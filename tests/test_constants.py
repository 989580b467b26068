"""Named constants (`cell.constant`): set per instance, checked, passed to the kernels at run time."""

import numpy as np
import pytest

from derive.tools.gradcheck import Problem, Report, check_gradients
from generated import CELLS

CoRNN = CELLS["cornn"]


def run(cell, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((5, 2, cell.input_size))
    return cell.forward(x)


def test_defaults_keyword_arguments_and_attributes():
    cell = CoRNN(3, 4, dtype=np.float64, dt=0.1)
    assert CoRNN.constants == {"dt": 0.042, "gamma": 2.7, "epsilon": 4.7}
    assert cell.constant_values == {"dt": 0.1, "gamma": 2.7, "epsilon": 4.7}
    cell.gamma = 3
    assert cell.gamma == 3.0 and isinstance(cell.gamma, float)
    assert repr(cell) == "CoRNN(input_size=3, hidden_size=4, dtype=float64, dt=0.1, gamma=3.0, epsilon=4.7)"
    assert CoRNN(3, 4).dt == 0.042  # another instance keeps its own values


def test_a_new_value_changes_the_result_without_compiling_again():
    cell = CoRNN(3, 4, dtype=np.float64, seed=1)
    y_default, _, _ = run(cell)
    signatures = len(CoRNN._forward.signatures)
    cell.dt = 0.2
    y_new, _, _ = run(cell)
    assert not np.allclose(y_new, y_default)
    assert len(CoRNN._forward.signatures) == signatures  # a scalar argument, not a constant compiled in
    again = CoRNN(3, 4, dtype=np.float64, seed=1, dt=0.2)
    np.testing.assert_array_equal(run(again)[0], y_new)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernels_receive_the_value_in_the_cells_dtype(dtype):
    """dt = 1/3 is rounded to the cell's dtype once: y_1 = dt * z_1 computed in that dtype."""
    cell = CoRNN(1, 1, dtype=dtype, dt=1 / 3)
    for value in cell.params.values():
        value[...] = 0
    cell.params["b"][...] = 1
    y, (_, z), _ = cell.forward(np.zeros((1, 1, 1), dtype))
    real = np.dtype(dtype).type
    expected_z = real(1 / 3) * real(np.tanh(real(1)))
    assert z.dtype == dtype and abs(float(z[0, 0]) - float(expected_z)) <= 4 * np.finfo(dtype).eps


def test_gradients_with_other_values_match_finite_differences():
    problem = Problem.random(CoRNN, 3, 2, 3, 4, seed=5)
    problem.cell.dt, problem.cell.gamma, problem.cell.epsilon = 0.3, 0.5, 1.5
    report = Report("cornn")
    check_gradients(problem, report)
    assert max(report.errors.values()) < 1e-6, report.errors


@pytest.mark.parametrize(
    "value, error, message",
    [
        ("0.1", TypeError, r"CoRNN constant 'dt' must be a real number \(int or float\), got str '0.1'"),
        (True, TypeError, r"CoRNN constant 'dt' must be a real number \(int or float\), got bool True"),
        (None, TypeError, r"got NoneType None"),
        (float("nan"), ValueError, r"CoRNN constant 'dt' must be a finite number in float32, got nan"),
        (-float("inf"), ValueError, r"must be a finite number in float32, got -inf"),
        (1e300, ValueError, r"must be a finite number in float32, got 1e\+300"),  # finite, but not in float32
    ],
)
def test_a_bad_value_is_refused_and_changes_nothing(value, error, message):
    cell = CoRNN(3, 4)
    with pytest.raises(error, match=message):
        cell.dt = value
    assert cell.dt == 0.042
    with pytest.raises(error, match=message):
        CoRNN(3, 4, dt=value)


def test_a_float64_cell_takes_values_a_float32_cell_cannot():
    assert CoRNN(3, 4, dtype=np.float64, dt=1e300).dt == 1e300


def test_unknown_keyword_arguments_are_refused():
    with pytest.raises(
        TypeError,
        match=r"CoRNN\(\) got unexpected keyword argument\(s\) \['delta'\]; its constants are \['dt', 'gamma', 'epsilon'\]",
    ):
        CoRNN(3, 4, delta=0.1)
    with pytest.raises(TypeError, match=r"LSTM\(\) got unexpected keyword argument\(s\) \['dt'\]; it has no constants"):
        CELLS["lstm"](3, 4, dt=0.1)


def test_a_tape_belongs_to_the_values_of_its_forward():
    cell = CoRNN(3, 4, dtype=np.float64)
    _, _, tape = run(cell)
    assert tape.constants == {"dt": 0.042, "gamma": 2.7, "epsilon": 4.7}
    cell.dt = 0.1
    with pytest.raises(ValueError, match=r"constants changed after the forward that recorded this tape"):
        cell.backward(tape)
    with pytest.raises(ValueError, match=r"constants changed after the forward"):
        cell.jacobian(tape)
    cell.dt = 0.042
    cell.backward(tape)  # the same values again: the tape is valid


def test_formulas_and_docs_show_constants_by_name():
    from derive.analysis.formulas import formulas

    shown = formulas("cornn")
    text = shown.text()
    assert "Constants (defaults; set per instance)\n  dt = 0.042\n  gamma = 2.7\n  epsilon = 4.7" in text
    assert "y_t = y_{t-1} + z_t ⊙ dt" in text
    assert "∂y_t/∂z_{t-1} = dt·∂z_t/∂z_{t-1}" in text  # a scalar of constants, not diag(dt)
    markdown = shown.markdown()
    assert "| `gamma` | $\\gamma$ | 2.7 |" in markdown and "| `dt` | $\\mathrm{dt}$ | 0.042 |" in markdown
    assert "\\mathrm{dt}" in shown.latex("forward")


def test_a_users_spec_with_a_constant_generates_and_runs(tmp_path):
    """A constant used inside a let and an activation, in a cell generated outside the package."""
    from derive.build import build

    spec = tmp_path / "scaled_rnn.py"
    spec.write_text(
        "from derive.activations import tanh\n"
        "from derive.spec import Cell\n"
        "cell = Cell('scaled_rnn', class_name='ScaledRNN')\n"
        "x = cell.input()\n"
        "h = cell.state('h')\n"
        "beta = cell.constant('beta', 2)\n"
        "a = cell.let('a', tanh(beta * cell.preactivations(x, h)))\n"
        "cell.update(h, a / beta)\n"
    )
    ScaledRNN = build(spec, tmp_path / "scaledcells")["scaled_rnn"]  # not conftest's `usercells`
    assert ScaledRNN.constants == {"beta": 2.0}
    problem = Problem.random(ScaledRNN, 3, 2, 3, 4, seed=2)
    problem.cell.beta = 0.7
    report = Report("scaled_rnn")
    check_gradients(problem, report)
    assert max(report.errors.values()) < 1e-6, report.errors
    y, _, _ = problem.cell.forward(problem.x)
    W, U, b1, b2 = (problem.cell.params[k] for k in ("W_ih", "W_hh", "b_ih", "b_hh"))
    h = np.zeros((2, 4))
    for x_t in problem.x:
        h = np.tanh(0.7 * (x_t @ W.T + b1 + h @ U.T + b2)) / 0.7
    np.testing.assert_allclose(y[-1], h, rtol=1e-12, atol=1e-14)
