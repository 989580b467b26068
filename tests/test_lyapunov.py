"""Lyapunov exponents (derive/analysis/lyapunov.py): exact theory, identities that hold for every cell, and the checks."""

import tracemalloc

import numpy as np
import pytest

from derive.analysis import flow
from derive.analysis import lyapunov as lyap
from generated import LSTM, RNN
from tests.conftest import ALL_CELLS, CELL_NAMES, orthogonal


def rotation(radius: float, angle: float) -> np.ndarray:
    """radius · a 2×2 rotation: the eigenvalues radius · e^{±i angle}."""
    return radius * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def normal_matrix(H: int = 8) -> np.ndarray:
    """Q D Qᵀ with D block diagonal: moduli 1.3 (a complex pair), 1.1, 0.9, 0.6 (a pair), 0.4, 0.2."""
    D = np.zeros((H, H))
    D[0:2, 0:2] = rotation(1.3, 0.7)
    D[2, 2], D[3, 3] = -1.1, 0.9
    D[4:6, 4:6] = rotation(0.6, 2.0)
    D[6, 6], D[7, 7] = 0.4, -0.2
    Q = orthogonal(H, seed=7)  # not START_SEED's basis: Q_0 must not start on the eigenvectors
    return Q @ D @ Q.T


def non_normal_matrix(H: int = 8) -> np.ndarray:
    """V diag(λ) V⁻¹ with V random (condition number about 100), real eigenvalues of distinct moduli."""
    V = np.random.default_rng(3).standard_normal((H, H))
    return V @ np.diag([1.5, -1.2, 1.0, 0.8, -0.6, 0.45, 0.3, 0.1]) @ np.linalg.inv(V)


# -- exact theory -------------------------------------------------------------------------------
@pytest.mark.parametrize("matrix", [normal_matrix, non_normal_matrix])
@pytest.mark.parametrize("steps, warmup, tolerance", [(10000, 0, 1e-3), (600, 300, 1e-9)])
def test_linear_cell_has_the_log_moduli_of_the_eigenvalues_of_W_hh(extra, matrix, steps, warmup, tolerance):
    """h_t = W_ih x_t + W_hh h_{t-1} + b (a spec generated for the tests): J_t = W_hh, so the exponents are
    log|eigenvalues of W_hh|. Without warmup the estimate carries the start's projection, O(1/T); after
    a warmup Q_t holds the Schur vectors of W_hh and every step adds the exact log|λ_i|."""
    W = matrix()
    cell = extra.RNNIdentity(2, 8, dtype=np.float64, seed=0)
    cell.params["W_hh"][:] = W
    x = np.zeros((steps, 2, 2))
    exponents = flow.lyapunov(cell, x, 8, warmup=warmup)
    expected = np.sort(np.log(np.abs(np.linalg.eigvals(W))))[::-1]
    assert exponents.shape == (2, 8) and exponents.dtype == np.float64
    np.testing.assert_allclose(exponents, np.broadcast_to(expected, (2, 8)), rtol=0, atol=tolerance)


def random_tanh_rnn(N: int, g: float, seed: int = 0) -> RNN:
    """h_t = tanh(W_hh h_{t-1}), W_hh entries N(0, g²/N), no bias (the input is 0)."""
    cell = RNN(1, N, dtype=np.float64, seed=seed)
    cell.params["W_hh"][:] = np.random.default_rng(seed).standard_normal((N, N)) * g / np.sqrt(N)
    cell.params["b_ih"][:] = cell.params["b_hh"][:] = 0.0
    return cell


@pytest.mark.parametrize("g", [0.8, 1.5])
def test_random_tanh_rnn_turns_chaotic_above_gain_one(g):
    """Molgedey, Schuchhardt & Schuster 1992: λ₁ < 0 for g < 1, λ₁ > 0 (chaos) for g > 1 (mean-field
    λ₁ at g = 1.5: 0.065). Below 1 the state falls to the fixed point 0, where J_t = W_hh: λ₁ = log ρ(W_hh)."""
    N, B = 200, 2
    cell = random_tanh_rnn(N, g)
    state0 = np.random.default_rng(1).standard_normal((B, N))
    exponents = flow.lyapunov(cell, np.zeros((300, B, 1)), 1, state0, warmup=100)
    if g < 1:
        assert np.all(exponents < 0)
        rho = np.abs(np.linalg.eigvals(cell.params["W_hh"])).max()
        np.testing.assert_allclose(exponents, np.log(rho), atol=5e-3)
    else:
        assert np.all(exponents > 0.02)


def test_lstm_with_a_constant_forget_gate_has_the_exponents_log_f():
    """W_ih[f] = W_hh[f] = 0 and bias b_j: f_j = σ(b_j) at every step. With W_hh[i] = W_hh[g] = 0 as well,
    c_t does not depend on h_{t-1}, so J_t = [[∂h/∂h, ∂h/∂c], [0, diag(f)]] is block triangular and its
    spectrum is the union of the c block's, log f_j, and the h block's, log of diag(o(1−o) tanh c)·W_hh[o]
    (input, i, g, o and W_hh[o] stay random). The top H of the full 2H spectrum must be log f_j."""
    H, I = 8, 3
    f = np.array([0.97, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    cell = LSTM(I, H, dtype=np.float64, seed=0)
    cell.params["W_hh"][: 3 * H] = 0.0
    cell.params["W_ih"][H : 2 * H] = 0.0
    cell.params["b_ih"][H : 2 * H] = np.log(f / (1 - f))
    cell.params["b_hh"][H : 2 * H] = 0.0
    x = np.random.default_rng(1).standard_normal((600, 2, I))
    _, _, tape = cell.forward(x[:20])
    J = cell.jacobian(tape)
    np.testing.assert_allclose(J[:, :, H:, H:], np.broadcast_to(np.diag(f), J[:, :, H:, H:].shape), rtol=1e-14)
    assert np.all(J[:, :, H:, :H] == 0) and np.abs(J[:, :, :H, :]).min(axis=(0, 1)).max() > 0
    exponents = flow.lyapunov(cell, x, 2 * H, warmup=300)
    np.testing.assert_allclose(exponents[:, :H], np.broadcast_to(np.log(f), (2, H)), rtol=0, atol=1e-3)
    assert np.all(exponents[:, H:] < np.log(f).min() - 0.5)  # the h block decays much faster


# -- identities for every cell -------------------------------------------------------------------
# Cells whose Jacobian is singular by construction. slstm: its stabiliser m is a redundant coordinate; whenever
# ĩ wins m_t = max(log σ(f̃) + m, ĩ), moving m by δ and c, n by -c δ, -n δ changes nothing after the step.
SINGULAR = {"slstm"}
# lstm_layernorm: c_t = LN(f ⊙ c + i ⊙ g) ignores a shift of every unit alike, so moving c_{t-1} by δ/f changes
# nothing after the step (tests/test_reductions.py checks that null vector); in floating point the determinant
# is rounding (log|det J| = -69 or -inf here), so the sum of the exponents is not comparable either.
SINGULAR_UP_TO_ROUNDING = {"lstm_layernorm"}


@pytest.mark.parametrize("name", CELL_NAMES)
def test_exponents_match_the_plain_product_of_the_jacobians(name, monkeypatch):
    """Every cell, user cells too, float64, one step per chunk (the state carried from chunk to chunk):
    λ₁ = (1/T) log‖J_T ⋯ J_1 q₀‖ for the start vector q₀, and the sum of all S exponents is
    (1/T) log|det(J_T ⋯ J_1)| = the mean of log|det J_t|, both from `cell.jacobian` of one forward."""
    monkeypatch.setattr(lyap, "CHUNK_BYTES", 1)
    cls = ALL_CELLS[name]
    cell = cls(3, 4, dtype=np.float64, seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 2, 3))
    state0 = tuple(0.5 * rng.standard_normal((2, width)) for width in cell.state_widths)
    _, _, tape = cell.forward(x, state0)
    J = cell.jacobian(tape)
    S = J.shape[-1]
    product = J[11]
    for t in range(10, -1, -1):
        product = product @ J[t]  # J_12 ⋯ J_1, per batch row
    with np.errstate(divide="ignore"):
        top = np.log(np.linalg.norm(product @ lyap.start_columns(S, 1), axis=(1, 2))) / 12
        np.testing.assert_allclose(flow.lyapunov(cell, x, 1, state0)[:, 0], top, rtol=1e-10)
        log_det = np.linalg.slogdet(J)[1].mean(axis=0)
    if name in SINGULAR:  # log|det| = -inf; exponents of singular directions are rounding, not comparable
        assert np.isneginf(log_det).all()
        return
    if name in SINGULAR_UP_TO_ROUNDING:
        return
    np.testing.assert_allclose(flow.lyapunov(cell, x, S, state0).sum(axis=1), log_det, rtol=1e-10)


def test_chunks_give_the_same_exponents_and_bound_the_memory(monkeypatch):
    """The Jacobians of all T steps would take 50 MB; chunks of 1 MB keep the peak a few MB and change nothing."""
    cell = LSTM(4, 32, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((1500, 1, 4))
    whole = flow.lyapunov(cell, x, 3, warmup=10)  # default chunk: 32 MB, 1024 steps here
    monkeypatch.setattr(lyap, "CHUNK_BYTES", 2**20)  # 32 steps
    tracemalloc.start()
    try:
        chunked = flow.lyapunov(cell, x, 3, warmup=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(chunked, whole, rtol=1e-13)
    assert peak < 5 * 2**20, f"peak {peak / 2**20:.1f} MB"


def test_float32_cells_are_computed_in_float64_from_their_jacobians():
    cell = LSTM(3, 4, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((50, 2, 3)).astype(np.float32)
    _, _, tape = cell.forward(x)
    log_det = np.linalg.slogdet(cell.jacobian(tape).astype(np.float64))[1].mean(axis=0)
    exponents = flow.lyapunov(cell, x, 8)
    assert exponents.dtype == np.float64
    np.testing.assert_allclose(exponents.sum(axis=1), log_det, rtol=1e-12)  # float32 arithmetic: about 1e-6


def test_spectrum_records_the_convergence_of_the_same_exponents():
    cell = LSTM(3, 4, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((40, 3, 3))
    s = lyap.spectrum(cell, x, 5, warmup=15)
    np.testing.assert_array_equal(s.exponents, flow.lyapunov(cell, x, 5, warmup=15))
    assert s.running.shape == (25, 5) and list(s.steps) == list(range(16, 41))
    np.testing.assert_allclose(s.running[-1], s.exponents.mean(axis=0), rtol=1e-15)
    assert np.all(np.diff(s.exponents, axis=1) <= 0)  # descending


def test_a_dead_direction_gives_minus_infinity():
    """A relu RNN whose units are all off (negative bias, no input) has J_t = 0: every exponent is −inf."""
    cell = ALL_CELLS["rnn_relu"](2, 3, dtype=np.float64, seed=0)
    cell.params["b_ih"][:] = -10.0
    exponents = flow.lyapunov(cell, np.zeros((5, 1, 2)), 3)
    assert np.all(exponents == -np.inf)


# -- arguments ------------------------------------------------------------------------------------
def test_arguments_are_checked(monkeypatch):
    cell = LSTM(3, 4, dtype=np.float64)
    x = np.zeros((10, 2, 3))
    with pytest.raises(
        TypeError, match=r"cell must be an instance of a generated cell, got .*LSTM.*; build one: LSTM\(input_size"
    ):
        flow.lyapunov(LSTM, x, 1)
    with pytest.raises(TypeError, match="cell must be an instance of a generated cell, got 'lstm'"):
        flow.lyapunov("lstm", x, 1)
    for k in (0, 9, 1.0, True, None):
        with pytest.raises(
            ValueError,
            match=rf"k \(the number of Lyapunov exponents\) must be an integer from 1 to "
            rf"the state size 8 of this lstm \(2 state\(s\) h, c × hidden size 4\), got {k!r}",
        ):
            flow.lyapunov(cell, x, k)
    for warmup in (-1, 10, 2.5):
        with pytest.raises(
            ValueError, match=rf"warmup must be an integer with 0 <= warmup < T = 10 \(the steps in x\), got {warmup!r}"
        ):
            flow.lyapunov(cell, x, 1, warmup=warmup)
    with pytest.raises(ValueError, match="warmup must be .* < T = 0"):
        flow.lyapunov(cell, np.zeros((0, 2, 3)), 1)
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, input_size=3\), got \(10, 3\)"):
        flow.lyapunov(cell, np.zeros((10, 3)), 1)
    monkeypatch.setattr(lyap, "CHUNK_BYTES", 1)  # forward sees one step at a time: the error must name the whole x
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, input_size=3\), got \(10, 2, 5\)"):
        flow.lyapunov(cell, np.zeros((10, 2, 5)), 1)
    with pytest.raises(TypeError, match="x has dtype float64 but the cell is float32"):
        flow.lyapunov(LSTM(3, 4), x, 1)
    with pytest.raises(ValueError, match=r"state0\[1\] \(c\) must have shape"):
        flow.lyapunov(cell, x, 1, state0=(np.zeros((2, 4)), np.zeros((3, 4))))
    assert flow.lyapunov(cell, np.zeros((3, 0, 3)), 2).shape == (0, 2)  # no batch rows: no exponents
