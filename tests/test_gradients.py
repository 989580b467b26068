"""Every generated cell against float64 central finite differences."""

import numpy as np
import pytest

from derive.tools.gradcheck import SHAPES, Problem, Report, check_gradients, check_jacobian
from tests.conftest import ALL_CELLS as CELLS
from tests.conftest import CELL_NAMES

TOLERANCE = 1e-6
# A normalisation over the units (LayerNorm, RMSNorm) of one unit (H = 1), or of W v with v of one element
# (I = 1), does not depend on the scale of its input: the derivative comes only through the eps of the
# norm (|dL/dh0| ~ 1e-6 for lstm_layernorm at T1B1I1H1), where central differences carry ~1e-10 of
# round-off, a relative 1e-6 to 1e-5. Such errors are within the round-off bound that `failures` removes
# (plain errors at that shape: lstm_layernorm 2.2e-6, norm_rnn 8.3e-6; beyond round-off: none).


def assert_report(report: Report):
    bad = report.failures(TOLERANCE)
    assert not bad, (
        f"{report.cell}: relative errors above {TOLERANCE} beyond the round-off of central differences: {bad}"
    )


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("name", CELL_NAMES)
def test_gradients_match_finite_differences(name, shape):
    problem = Problem.random(CELLS[name], *shape, seed=7)
    report = Report(name)
    check_gradients(problem, report)
    expected = {"x", *problem.cell.params, *(f"{s}0" for s in problem.cell.state_names)}
    assert set(report.errors) == expected
    assert_report(report)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("name", CELL_NAMES)
def test_jacobian_matches_finite_differences_and_chain(name, shape):
    problem = Problem.random(CELLS[name], *shape, seed=11)
    report = Report(name)
    check_jacobian(problem, report)
    assert set(report.errors) == {"jacobian", "jacobian chain"}
    assert_report(report)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_jacobian_shape_and_state_order(name):
    cell = CELLS[name](3, 4, dtype=np.float64, seed=0)
    _, _, tape = cell.forward(np.ones((5, 2, 3)))
    J = cell.jacobian(tape)
    S = sum(cell.state_widths)  # 4 per state, proj_size=2 for lstm_proj's h
    assert S == 4 * len(cell.state_names) - 2 * ("P" in cell.state_sizes)
    assert J.shape == (5, 2, S, S)
    assert J.dtype == np.float64


def test_checks_catch_a_wrong_gradient(monkeypatch):
    """The finite-difference check must fail when backward is wrong."""
    cls = CELLS["lstm"]
    problem = Problem.random(cls, 3, 2, 3, 4, seed=3)
    honest = type(problem.cell).backward

    def off_by_a_little(self, tape, dy=None, dstate=None):
        grads = honest(self, tape, dy, dstate)
        grads.params["W_hh"][0, 0] += 1e-3
        return grads

    monkeypatch.setattr(cls, "backward", off_by_a_little)
    report = Report("lstm")
    check_gradients(problem, report)
    assert report.errors["W_hh"] > 1e-5
    assert report.errors["x"] <= TOLERANCE


def test_checks_catch_a_wrong_jacobian(monkeypatch):
    cls = CELLS["gru"]
    problem = Problem.random(cls, 3, 2, 3, 4, seed=3)
    honest = cls.jacobian
    monkeypatch.setattr(cls, "jacobian", lambda self, tape: np.swapaxes(honest(self, tape), 2, 3))
    report = Report("gru")
    check_jacobian(problem, report)
    assert report.errors["jacobian"] > 1e-3


def test_a_gradient_that_is_exactly_zero_is_compared_absolutely():
    """tanh(g*h + h*(1-g)) = tanh(h): dL/dW is 0 exactly; finite differences give only round-off."""
    from derive.tools.gradcheck import FD_RESOLUTION, relative_error

    noise = np.full(6, 3e-11)
    assert relative_error(np.zeros(6), noise) == 1.0  # without a floor: a ratio of noise to noise
    assert relative_error(np.zeros(6), noise, FD_RESOLUTION) < 1e-9
    assert relative_error(np.full(6, 1e-3), noise, FD_RESOLUTION) > 1e-3  # a real error still fails


def test_a_small_gradient_is_compared_beyond_the_round_off_of_finite_differences():
    """A random spec's c0 barely reaches the loss (‖dL/dc0‖ ≈ 1e-4): 1e-10 of round-off per element
    is then 1e-6 relative, though the analytic gradient is right."""
    from derive.tools.gradcheck import fd_error

    rng = np.random.default_rng(0)
    exact = 1e-4 * rng.standard_normal(6)
    numeric = exact + 2e-10 * rng.standard_normal(6)
    roundoff = np.sqrt(6) * 1e-9  # Problem.roundoff's bound for such a loss
    error, resolution = fd_error(exact, numeric, roundoff)
    assert error > 1e-6 and resolution > error  # noise alone is above a 1e-6 tolerance, within the bound
    report = Report("c")
    report.add("c0", error, resolution)
    assert report.worst == error and not report.failures(1e-6)
    report.add("c0", *fd_error(1.01 * exact, numeric, roundoff))  # a 1% error still fails
    assert report.failures(1e-6) == {"c0": report.worst} and report.worst > 1e-3


def test_the_round_off_bound_holds_for_a_cell():
    """Problem.roundoff bounds what central differences of the same smooth loss differ by."""
    problem = Problem.random(CELLS["gru"], 3, 2, 3, 4, seed=5)
    for array in (problem.x, problem.state0[0], problem.cell.params["W_hh"]):
        spread = np.linalg.norm(problem.numeric(array, 1e-6) - problem.numeric(array, 2e-6))
        assert 0 < problem.roundoff(array.size) and spread <= problem.roundoff(array.size)
