"""Reductions over the units (cell.mean, cell.sum, cell.layer_norm): validation, the derivation's
rank-one Jacobian terms, `show`, and the kernels' per-row values. Finite differences of the cells
that use them: tests/test_gradients.py (lstm_layernorm, tests/specs/norm_rnn.py); eager PyTorch:
tests/test_reference.py (lstm_layernorm)."""

import numpy as np
import pytest
import sympy as sp

from derive.activations import tanh
from derive.analysis.formulas import formulas
from derive.cells import builtin_cells
from derive.derivation import UNITS, derive
from derive.validate import SpecError
from tests.conftest import ALL_CELLS
from tests.test_validate import minimal


def invalid(build) -> str:
    cell, x, h, W, U, b = minimal()
    build(cell, x, h, W, U, b)
    with pytest.raises(SpecError) as error:
        derive(cell)
    return str(error.value)


def test_a_reduction_of_the_input_is_a_type_error_naming_the_cell_and_the_fix():
    cell, x, *_ = minimal()
    with pytest.raises(TypeError, match=r"cell 'toy': cell.sum\(\) of the input 'x': .*cell.sum\(cell.weight"):
        cell.sum(x)
    with pytest.raises(TypeError, match=r"cell 'toy': cell.mean\(\) of the input 'x'"):
        cell.mean([x, x])


def test_a_reduction_of_a_value_without_units_is_an_error():
    def build(cell, x, h, W, U, b):
        dt = cell.constant("dt", 0.5)
        cell.update(h, tanh(W + U + b + cell.mean(2 * dt, "twice_dt") + cell.sum(cell.mean(h, "mu"), "total")))

    text = invalid(build)
    assert "mean 'twice_dt': reduces 2*dt, which has no units" in text
    assert "sum 'total': reduces mu, which has no units" in text
    assert "mean 'mu'" not in text  # the mean of h is fine


@pytest.mark.parametrize(
    "name, message",
    [
        ("h", "mean 'h': name 'h' is already used by state 'h'"),
        ("mu_rows", "'mu_rows' is reserved by the generated"),
        ("mu_terms", "'mu_terms' is reserved by the generated"),
    ],
)
def test_a_reduction_name_must_be_free(name, message):
    text = invalid(lambda cell, x, h, W, U, b: cell.update(h, tanh(W + U + b - cell.mean(h, name))))
    assert message in text


@pytest.mark.parametrize(
    "reduced, message",
    [
        ("q", "it reduces 'mu_q_of' of size P and is used by 'q_new' of another size"),
        ("h", "it reduces 'mu_h_of' of size H and is used by 'q_new' of another size"),
    ],
)
def test_reductions_over_or_into_values_of_other_sizes_are_refused(reduced, message):
    def build(cell, x, h, W, U, b):
        P = cell.size("P", "proj_size")
        q = cell.state("q", size=P)
        mu = cell.mean({"q": q, "h": h}[reduced], f"mu_{reduced}")
        cell.update(q, tanh(cell.weight("A", h, size=P) - mu))
        cell.update(h, tanh(W + U + b))

    text = invalid(build)
    assert f"mean 'mu_{reduced}': reductions run over and into values of size H only" in text and message in text


def test_a_reduction_is_a_leaf_one_level_after_its_operand_and_backward_scales_its_adjoint():
    cell, x, h, W, U, b = minimal()
    mu = cell.mean(h, "mu")
    a = cell.let("a", W + U + b - mu)
    cell.update(h, a / cell.sum(a**2, "ss"))
    d = derive(cell)
    levels = {s.name: leaf.level for s, leaf in d.leaves.items() if leaf.kind == "reduction"}
    assert levels == {"mu": 1, "ss": 2}
    assert [n.symbol.name for n in d.reduced_nodes()] == ["mu_of", "ss_of"]
    by_target = {a.target.name: a.expr for lv in d.backward.values() for a in lv if a.op == "="}
    assert sp.simplify(by_target["d_mu_of"] - d.adjoint[mu] / UNITS) == 0  # mean: δ/H to every unit
    ss = next(r.symbol for r in cell.reductions if r.kind == "sum")
    assert by_target["d_ss_of"] == d.adjoint[ss]  # sum: δ to every unit, unscaled
    kinds = [t.kind for t in d.jacobian[d.new_state_nodes()[0].symbol]]
    assert sorted(kinds) == ["projection", "reduction", "reduction"]  # U·h, mean(h), sum(a²): no diagonal


def test_layer_norm_helper_declares_mean_and_biased_variance_over_all_gate_blocks():
    cell = next(c for c in builtin_cells() if c.name == "lstm_layernorm")
    reductions = {r.symbol.name: (r.kind, r.blocks) for r in cell.reductions}
    assert reductions == {
        "ln_ih_mean": ("mean", 4),
        "ln_ih_var": ("mean", 4),
        "ln_hh_mean": ("mean", 4),
        "ln_hh_var": ("mean", 4),
        "ln_c_mean": ("mean", 1),
        "ln_c_var": ("mean", 1),
    }


def test_show_writes_reductions_and_rank_one_jacobian_terms():
    f = formulas("lstm_layernorm")
    forward = f.text("forward")
    assert "ln_c_mean_t = mean(c_pre_t)" in forward
    assert "ln_ih_mean_t = (1/4)·mean(ln_ih_mean_of_t)" in forward  # over the 4H units of W_ih x_t
    backward = f.text("backward")
    # a per-row value's adjoint gathers every unit's part; its operand gets it back scaled, per unit
    assert "δln_c_mean_t = sum(−δc_t ⊙ gamma_c / ln_c_std_t)" in backward
    assert "δln_c_mean_t += sum(δln_c_var_of_t ⊙ (2·ln_c_mean_t − 2·c_pre_t))" in backward
    assert "δc_pre_t += δln_c_mean_t / H" in backward
    jacobian = f.text("jacobian")
    # ∂c_t/∂c_{t-1} of a LayerNorm of f ⊙ c: a diagonal, minus the mean's rank-one term, minus the variance's
    assert "∂c_t/∂c_{t-1} = diag(f_t ⊙ gamma_c / ln_c_std_t) − (1/H)·gamma_c / ln_c_std_t·1ᵀ·diag(f_t) − " in jacobian
    assert "(1/(4H))·" in jacobian and "·1ᵀ·∂ln_hh_mean_of_t/∂h_{t-1}" in jacobian
    assert "where ∂ln_hh_mean_of_t/∂h_{t-1} = W_hh[i] + W_hh[f] + W_hh[g] + W_hh[o]" in jacobian
    assert "\\mathbf{1}^{\\top}" in f.latex("jacobian")


def test_the_kernels_keep_one_value_per_row_on_the_tape():
    """The saved mean is the same for every unit of a row and equals the mean of its operand."""
    cls = ALL_CELLS["lstm_layernorm"]
    cell = cls(3, 5, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 3))
    _, final, tape = cell.forward(x)
    saved = dict(zip(cls.saved_names, np.moveaxis(tape.saved, 1, 0)))
    assert np.ptp(saved["ln_c_mean"], axis=-1).max() == 0.0
    np.testing.assert_allclose(saved["ln_c_mean"][..., 0], saved["c_pre"].mean(axis=-1), rtol=1e-13)
    c_pre = saved["c_pre"][-1]
    expected = (c_pre - c_pre.mean(-1, keepdims=True)) / np.sqrt(c_pre.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(final[1], expected, rtol=1e-12)  # γ = 1, β = 0 at initialisation


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_sums_add_up_each_row_of_a_reduction_s_terms(dtype):
    """The kernels write a reduction's terms per unit and add them up per row with `row_sums` (the one
    reassociated sum): equal to NumPy's sum up to the rounding of a sum, any width, and NaN/inf as IEEE."""
    from derive.runtime.matrix import row_sums

    rng = np.random.default_rng(2)
    for units in (1, 3, 16, 129):
        terms = rng.standard_normal((5, units)).astype(dtype)
        out = np.full(5, 7.0, dtype)  # overwritten, not added to
        row_sums(terms, out)
        exact = terms.astype(np.float64).sum(axis=1)
        bound = 2 * units * np.finfo(dtype).eps * np.abs(terms).astype(np.float64).sum(axis=1)
        assert np.all(np.abs(out - exact) <= bound), (units, out - exact)
    terms = np.ones((3, 40), dtype)
    terms[0, 17], terms[1, 3], terms[2, [5, 30]] = np.nan, np.inf, [np.inf, -np.inf]
    out = np.empty(3, dtype)
    row_sums(terms, out)
    assert np.isnan(out[0]) and out[1] == np.inf and np.isnan(out[2])


def test_the_layernorm_lstm_jacobian_has_the_null_vector_of_its_shift_invariance():
    """c_t = LN(f ⊙ c_{t-1} + i ⊙ g) ignores a shift of all units alike: J_t (0, δ/f_t) = 0 for the dense
    Jacobian the kernel builds from its rank-one terms (a missing term would leave the shift visible)."""
    cls = ALL_CELLS["lstm_layernorm"]
    cell = cls(3, 5, dtype=np.float64, seed=1)
    rng = np.random.default_rng(1)
    for value in cell.params.values():
        value[...] = rng.uniform(-1, 1, value.shape)
    _, _, tape = cell.forward(rng.standard_normal((4, 2, 3)), tuple(rng.standard_normal((2, 5)) for _ in range(2)))
    J = cell.jacobian(tape)
    f = tape.saved[:, cls.saved_names.index("f")]
    shift = np.concatenate([np.zeros_like(f), 1 / f], axis=-1)
    assert np.abs(np.einsum("tbij,tbj->tbi", J, shift)).max() < 1e-12 * np.abs(J).max() * np.abs(shift).max()
    assert np.abs(np.einsum("tbij,tbj->tbi", J[..., :5], rng.standard_normal(f.shape))).max() > 1e-3  # h moves it
