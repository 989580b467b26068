"""Sizes other than H (`cell.size`): lstm_proj's h of proj_size, and a user cell with two sizes in one level."""

import numpy as np
import pytest

from derive.tools.gradcheck import Problem, Report, check_gradients, check_jacobian
from generated import CELLS

LSTMProj = CELLS["lstm_proj"]


def finite_differences(cls, shapes: list[tuple[int, int, int, int]]) -> Report:
    """Every gradient and the Jacobian of `cls` against finite differences at each (T, B, I, H) of `shapes`."""
    report = Report(cls.name)
    for k, shape in enumerate(shapes):
        problem = Problem.random(cls, *shape, seed=k)
        check_gradients(problem, report)
        check_jacobian(problem, report)
    return report


def test_proj_size_is_a_checked_constructor_argument():
    cell = LSTMProj(3, 5, dtype=np.float64, proj_size=2)
    assert cell.size_values == {"P": 2} and cell.state_widths == (2, 5)
    assert cell.param_shapes() == {"W_ih": (20, 3), "W_hh": (20, 2), "b_ih": (20,), "b_hh": (20,), "W_hr": (2, 5)}
    assert repr(cell) == "LSTMProj(input_size=3, hidden_size=5, dtype=float64, proj_size=2)"
    assert LSTMProj(3, 5).size_values == {"P": 2}  # the default: hidden_size // 2
    for bad in (0, 6, 2.0, True):
        with pytest.raises(
            ValueError,
            match=rf"proj_size \(size P of LSTMProj\) must be a positive integer at most "
            rf"hidden_size=5, got {bad!r}",
        ):
            LSTMProj(3, 5, proj_size=bad)


def test_states_outputs_and_jacobian_have_their_own_sizes():
    T, B, I, H, P = 4, 3, 2, 5, 3
    cell = LSTMProj(I, H, dtype=np.float64, seed=0, proj_size=P)
    rng = np.random.default_rng(0)
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, P)), rng.standard_normal((B, H))
    y, (h, c), tape = cell.forward(x, (h0, c0))
    assert y.shape == (T, B, P) and h.shape == (B, P) and c.shape == (B, H)
    np.testing.assert_array_equal(y[-1], h)
    y_inference, final, _ = cell.forward(x, (h0, c0), tape=False)
    np.testing.assert_array_equal(y_inference, y)
    grads = cell.backward(tape, np.ones_like(y), (np.ones((B, P)), np.ones((B, H))))
    assert [g.shape for g in grads.state0] == [(B, P), (B, H)]
    assert cell.jacobian(tape).shape == (T, B, P + H, P + H)
    with pytest.raises(ValueError, match=r"state0\[0\] \(h\).*\(B, proj_size=3\) with B = 3 from x"):
        cell.forward(x, (c0, c0))
    with pytest.raises(ValueError, match=r"dy.*\(T, B, H\) = the shape of y"):
        cell.backward(tape, np.ones((T, B, H)))


def test_load_torch_checks_proj_size(torch):
    cell = LSTMProj(3, 4, proj_size=2)
    cell.load_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(
        ValueError, match=r"computes torch.nn.LSTM\(proj_size=2\) with .*proj_size=2, got .*proj_size=1"
    ):
        cell.load_torch(torch.nn.LSTM(3, 4, proj_size=1))
    with pytest.raises(ValueError, match=r"proj_size=2, got torch.nn.LSTM with .*proj_size=0"):
        cell.load_torch(torch.nn.LSTM(3, 4))


TWO_SIZES = """
from derive.activations import sigmoid, tanh
from derive.spec import Cell

cell = Cell("two_sizes", class_name="TwoSizes")
Q = cell.size("Q", "q_size")
x = cell.input()
h, q = cell.state("h"), cell.state("q", size=Q)
a = cell.let("a", tanh(cell.weight("W_qx", x, size=Q) + cell.weight("W_qh", h, size=Q) + cell.vector("b_q", size=Q)), size=Q)
g = cell.let("g", sigmoid(cell.weight("W_gx", x) + cell.weight("W_gq", q) + cell.bias("b")))
cell.update(q, a * q + cell.vector("w_q", size=Q))
cell.update(h, g * h + (1 - g) * cell.weight("W_ha", a))
"""


def test_a_users_cell_with_two_sizes_in_one_level_matches_finite_differences(tmp_path):
    """Level 0 computes values of size Q and of size H (one loop each), level 1 maps a (Q) back to H."""
    from derive.build import build

    spec = tmp_path / "two_sizes.py"
    spec.write_text(TWO_SIZES)
    TwoSizes = build(spec, tmp_path / "sizecells")["two_sizes"]
    source = (tmp_path / "sizecells" / "two_sizes.py").read_text()
    assert "for unit in range(Q):" in source and "for unit in range(H):" in source
    assert TwoSizes.state_sizes == ("H", "Q") and TwoSizes.sizes == {"Q": "q_size"}
    report = finite_differences(TwoSizes, [(3, 2, 3, 4), (2, 1, 2, 5)])
    assert max(report.errors.values()) < 1e-6, report.errors


INPUT_GATE = """
from derive.activations import sigmoid, tanh
from derive.spec import Cell

cell = Cell("input_gate", class_name="InputGate")
x = cell.input()
I = x.size
h = cell.state("h")
u = cell.let("u", sigmoid(cell.weight("Q", h, size=I) + cell.vector("b_u", size=I)) * x * x, size=I)
cell.update(h, tanh(cell.weight("W_ih", x) + cell.weight("W_u", u) + cell.weight("W_hh", h) + cell.bias("b")) + 0.5 * h)
"""


@pytest.fixture(scope="module")
def input_gate(tmp_path_factory):
    from derive.build import build

    folder = tmp_path_factory.mktemp("inputgate")
    spec = folder / "input_gate.py"
    spec.write_text(INPUT_GATE)
    return build(spec, folder / "cells")["input_gate"], (folder / "cells" / "input_gate.py").read_text()


# I > H (the tape's rows are I wide), I < H, one unit each
INPUT_SHAPES = [(3, 2, 5, 3), (2, 3, 2, 4), (1, 1, 1, 1)]


def test_the_input_per_unit_gated_by_a_value_of_size_I_matches_finite_differences(input_gate):
    """u = σ(Q h + b_u) ⊙ x ⊙ x has size I (Q: H → I, b_u (I,)); W_u maps it back to H within the
    step. dx = its pointwise part (2σ(·)⊙x⊙δu) + W_ihᵀ δ(W_ih x); the Jacobian goes through W_u·∂u/∂h."""
    InputGate, source = input_gate
    assert "for unit in range(I):" in source and "dx[step, row, unit] = " in source
    assert "def _jacobian(x, " in source and "J_u = np.empty((I, S), J.dtype)" in source
    assert InputGate.saved_sizes and "I" in InputGate.saved_sizes
    cell = InputGate(5, 3, dtype=np.float64, seed=0)
    assert cell.param_shapes() == {"Q": (5, 3), "b_u": (5,), "W_ih": (3, 5), "W_u": (3, 5), "W_hh": (3, 3), "b": (3,)}
    report = finite_differences(InputGate, INPUT_SHAPES)
    assert not report.failures(1e-6), report.errors


@pytest.mark.parametrize("I, H", [(5, 3), (2, 4)])
def test_a_tape_of_values_of_size_I_is_max_of_H_and_I_wide_with_zeros_beyond_a_value(input_gate, I, H):
    """The tape keeps u (size I) and H-size values in rows max(H, I) wide; the columns past a
    value's size are zero, so check_finite never reads uninitialised memory."""
    InputGate, _ = input_gate
    cell = InputGate(I, H, dtype=np.float64, seed=1)
    x = np.random.default_rng(0).standard_normal((4, 2, I))
    y, _, tape = cell.forward(x, check_finite=True)
    assert tape.saved.shape == (4, len(cell.saved_names), 2, max(H, I))
    for k, size in enumerate(cell.saved_sizes):
        width = I if size == "I" else H
        assert not tape.saved[:, k, :, width:].any(), cell.saved_names[k]
    y_inference, _, _ = cell.forward(x, tape=False)
    np.testing.assert_array_equal(y_inference, y)
    cell.backward(tape, np.ones_like(y), check_finite=True)
    assert cell.jacobian(tape, check_finite=True).shape == (4, 2, H, H)


MOGRIFIER = CELLS["mogrifier_lstm"]


def test_mogrifier_lstm_with_a_wider_input_matches_finite_differences():
    """Its five rounds alternate sizes I and H, each through a product of an in-step value."""
    assert MOGRIFIER.saved_sizes.count("I") == 6  # x1, x3, x5 and their gates
    report = finite_differences(MOGRIFIER, [(3, 2, 6, 3), (2, 2, 1, 2)])
    assert not report.failures(1e-6), report.errors


def test_show_writes_dx_in_two_parts_and_the_jacobian_through_the_value_of_size_I():
    from derive.formulas import formulas

    namespace = {}
    exec(INPUT_GATE, namespace)
    text = formulas(namespace["cell"]).text()
    pointwise = "  δx_t = 2·δu_t ⊙ x_t ⊙ σ(Q h_{t-1} + b_u)\n"
    assert pointwise in text and text.index(pointwise) < text.index("  δx_t += W_ihᵀ·δ(W_ih x_t)\n"), text
    assert "where ∂u_t/∂h_{t-1} = diag(x_t² ⊙ (1 − σ(Q h_{t-1} + b_u)) ⊙ σ(Q h_{t-1} + b_u))·Q" in text
    assert "Q     (I, H), acts on h_{t-1}" in text and "b_u   (I,), per-unit vector" in text


INPUT_GATE_ONLY_LEVEL = """
from derive.activations import sigmoid, softplus, tanh
from derive.spec import Cell

cell = Cell("gate_only", class_name="GateOnly")
x = cell.input()
h, c = cell.state("h"), cell.state("c")
u = cell.let("u", sigmoid(cell.weight("G", h, size=x.size)) * x, size=x.size)
g = cell.let("g", softplus(cell.weight("W", u) + cell.weight("U", h) + cell.bias("b")))
c_new = cell.update(c, c * g + (1 - g) * tanh(g))
cell.update(h, tanh(c_new))
"""


def test_a_product_of_a_level_without_values_of_its_size_is_still_stored_for_backward(tmp_path):
    """Level 0 computes only u (size I), yet U·h (size H) is a product of level 0 that backward reads
    (softplus' needs its argument): it gets a loop of its own size that stores it. Found by the property
    tests (it read an unwritten tape slot: gradients off by 1e-1)."""
    from derive.build import build

    spec = tmp_path / "gate_only.py"
    spec.write_text(INPUT_GATE_ONLY_LEVEL)
    GateOnly = build(spec, tmp_path / "cells")["gate_only"]
    source = (tmp_path / "cells" / "gate_only.py").read_text()
    assert "= U_h[row, unit]" in source  # U h is stored on the tape
    report = finite_differences(GateOnly, [(3, 2, 2, 3), (2, 1, 4, 2)])
    assert not report.failures(1e-6), report.errors
