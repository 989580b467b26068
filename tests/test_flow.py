"""The gradient-flow analyzer: theory it must reproduce, and its numbers against direct computation."""

import contextlib
import csv
import io
import sys

import numpy as np
import pytest

from derive.analysis import flow
from derive.tools import cli
from generated import GRU, LSTM, RNN
from tests.conftest import orthogonal

H, I = 8, 3


def with_recurrent(cls, W_hh, seed=0, zero_bias=False):
    cell = cls(I, H, dtype=np.float64, seed=seed)
    cell.params["W_hh"][:] = W_hh
    if zero_bias:
        for name in ("b_ih", "b_hh"):
            cell.params[name][:] = 0.0
    return cell


def inputs(T, B=1, scale=1.0, seed=1):
    return scale * np.random.default_rng(seed).standard_normal((T, B, I))


# -- theory -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rho", [0.9, 1.1])
def test_identity_rnn_jacobian_is_W_hh_and_norms_are_powers_of_rho(extra, rho):
    W = rho * orthogonal(H)
    cell = with_recurrent(extra.RNNIdentity, W)
    x = inputs(40, B=2)
    _, _, tape = cell.forward(x)
    J = cell.jacobian(tape)
    assert np.array_equal(J, np.broadcast_to(W, J.shape))
    result = flow.measure(cell, x)
    k = np.arange(41)
    np.testing.assert_allclose(result.norm, rho**k, rtol=1e-10, atol=0)
    np.testing.assert_allclose(result.spectral_radius, rho, rtol=1e-10)
    np.testing.assert_allclose(result.max_singular, rho, rtol=1e-10)


def test_tanh_rnn_at_rest_has_J_equal_to_W_hh():
    """h = 0, x = 0, no bias: h stays 0 and 1 − h² = 1, so J_t = W_hh exactly."""
    W = 1.3 * orthogonal(H, seed=2)
    cell = with_recurrent(RNN, W, zero_bias=True)
    x = np.zeros((25, 1, I))
    _, _, tape = cell.forward(x)
    assert np.array_equal(cell.jacobian(tape)[:, 0], np.broadcast_to(W, (25, H, H)))
    np.testing.assert_allclose(flow.measure(cell, x).norm, 1.3 ** np.arange(26), rtol=1e-10, atol=0)


def test_tanh_rnn_with_rho_below_one_decays_at_least_geometrically():
    rho = 0.8
    cell = with_recurrent(RNN, rho * orthogonal(H))  # ‖W_hh‖₂ = ρ and |tanh'| ≤ 1: each step shrinks by ρ or more
    result = flow.measure(cell, inputs(100))
    assert np.all(result.norm[1:] <= rho * result.norm[:-1] * (1 + 1e-12))
    assert result.norm[100] <= rho**100
    # Random recurrent weights scaled to spectral radius 0.5: the same, at the rate ‖W_hh‖₂.
    settings = flow.Settings(steps=100, hidden_size=H, input_size=I, weight_scale=0.5)
    cell, x = flow.build(RNN, settings)
    bound = np.linalg.norm(cell.params["W_hh"], 2)
    assert np.isclose(np.abs(np.linalg.eigvals(cell.params["W_hh"])).max(), 0.5)
    result = flow.measure(cell, x)
    assert np.all(result.norm[1:] <= bound * result.norm[:-1] * (1 + 1e-12))
    assert result.norm[100] < 1e-12


def test_tanh_rnn_with_large_rho_grows_until_it_saturates():
    rho, T = 2.0, 200
    cell = with_recurrent(RNN, rho * orthogonal(H), zero_bias=True)
    x = inputs(T, scale=1e-6)
    y, _, _ = cell.forward(x)
    result = flow.measure(cell, x)
    n = result.norm
    early = (n[T] / n[T - 10]) ** (1 / 10)  # lags reaching the first steps: the state is still tiny
    late = (n[100] / n[1]) ** (1 / 99)  # the last 100 steps: tanh saturated
    assert early > 0.99 * rho
    assert late < 0.6 * rho
    assert np.mean(1 - y[:10] ** 2) > 0.999 and np.mean(1 - y[100:] ** 2) < 0.5
    assert rho**10 < n[T] < 1e-20 * rho**T  # it explodes, by far less than ρ^T


def test_lstm_with_saturated_forget_gate_keeps_its_cell_gradient():
    """Forget bias 5 and tiny recurrent weights: ‖∂c_T/∂c_{T−k}‖ follows ∏ f_t within 1% for
    every k up to 100, while a tanh RNN on the same input loses the gradient."""
    T = 100
    settings = flow.Settings(steps=T, hidden_size=H, input_size=I, gate_bias=5.0, weight_scale=1e-3)
    cell, x = flow.build(LSTM, settings)
    _, _, tape = cell.forward(x)
    f = tape.saved[:, LSTM.saved_names.index("f"), 0]  # (T, H)
    J = cell.jacobian(tape)[:, 0]
    for t in range(T):  # the one-step block is exactly diag(f_t)
        assert np.array_equal(J[t, H:, H:], np.diag(f[t]))
    products = np.array([np.prod(f[T - k :], axis=0).max() for k in range(T + 1)])
    result = flow.measure(cell, x)
    np.testing.assert_allclose(result.state_norm["c"], products, rtol=0.01)
    assert 0.3 < products[T] < 0.9  # the memory is held, not perfectly
    rnn = flow.analyze([RNN], flow.Settings(steps=T, hidden_size=H, input_size=I))[0]
    assert rnn.norm[T] < 1e-6 * result.state_norm["c"][T]


# -- the analyzer's numbers ---------------------------------------------------------------------
def products_directly(J):
    """‖J[T-1] ⋯ J[T-k]‖₂ per row and lag, by plain matrix products."""
    T, B = J.shape[:2]
    out = np.ones((B, T + 1))
    for b in range(B):
        for k in range(1, T + 1):
            out[b, k] = np.linalg.norm(
                np.linalg.multi_dot([np.eye(J.shape[2])] + [J[T - j, b] for j in range(1, k + 1)]), 2
            )
    return out


def products_by_finite_differences(cell, x, eps=1e-6):
    """‖∂s_T/∂s_{T−k}‖₂ per row and lag, perturbing the state at T−k and running the rest of the sequence."""
    T, B = x.shape[:2]
    _, _, tape = cell.forward(x)
    n, S = len(cell.state_names), len(cell.state_names) * H
    out = np.ones((B, T + 1))
    for k in range(1, T + 1):
        start = tape.states[:, T - k]
        D = np.zeros((B, S, S))
        for col in range(S):
            ends = []
            for sign in (1, -1):
                shifted = start.copy()
                shifted[col // H, :, col % H] += sign * eps
                _, end, _ = cell.forward(x[T - k :], tuple(shifted[:n]))
                ends.append(np.concatenate(end, axis=1))
            D[:, :, col] = (ends[0] - ends[1]) / (2 * eps)
        out[:, k] = np.linalg.norm(D, 2, axis=(1, 2))
    return out


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "gru_reset_before"])
def test_norms_match_direct_products_and_finite_differences(extra, cell_name):
    cls = {"lstm": LSTM, "gru": GRU, "gru_reset_before": extra.GRUResetBefore}[cell_name]
    cell = cls(I, H, dtype=np.float64, seed=4)
    x = inputs(6, B=3, seed=5)
    result = flow.measure(cell, x)
    _, _, tape = cell.forward(x)
    direct = products_directly(cell.jacobian(tape))
    np.testing.assert_allclose(result.norm, direct.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.norm_min, direct.min(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.norm_max, direct.max(axis=0), rtol=1e-12)
    numeric = products_by_finite_differences(cell, x)
    np.testing.assert_allclose(result.norm, numeric.mean(axis=0), rtol=1e-6)


def test_lag_norms_survive_underflow_and_give_state_blocks():
    J = np.zeros((400, 1, 4, 4))
    J[:, 0] = np.diag([0.1, 0.1, 0.5, 0.5])
    norms, (first, second) = flow.lag_norms(J, [slice(0, 2), slice(2, 4)])
    k = np.arange(401)
    np.testing.assert_allclose(norms[0], 0.5**k, rtol=1e-12)
    np.testing.assert_allclose(second[0], 0.5**k, rtol=1e-12)
    np.testing.assert_allclose(first[0, :300], 0.1 ** k[:300], rtol=1e-10)  # 1e-299, then below float range
    assert np.all(np.isfinite(first)) and first[0, 400] == 0.0


# -- building cells -------------------------------------------------------------------------------
def test_gate_bias_goes_to_the_forget_or_update_gate():
    lstm = LSTM(I, H, dtype=np.float64, seed=0)
    assert flow.set_gate_bias(lstm, 3.0) == "f"
    assert np.all(lstm.params["b_ih"][H : 2 * H] == 3.0) and np.all(lstm.params["b_hh"][H : 2 * H] == 0.0)
    assert np.all(np.abs(lstm.params["b_ih"][:H]) < 1)  # other gates untouched
    gru = GRU(I, H, dtype=np.float64, seed=0)
    assert flow.set_gate_bias(gru, -1.0) == "z"
    assert np.all(gru.params["b_ih"][H : 2 * H] == -1.0)
    assert flow.set_gate_bias(gru, 2.0, gate="r") == "r" and np.all(gru.params["b_ih"][:H] == 2.0)
    with pytest.raises(ValueError, match=r"cell 'rnn' has no forget or update gate \(gates: none\)"):
        flow.set_gate_bias(RNN(I, H), 1.0)
    with pytest.raises(ValueError, match="no bias vector with a gate 'q'"):
        flow.set_gate_bias(lstm, 1.0, gate="q")


def test_weight_scale_sets_the_spectral_radius_of_every_gate_block():
    cell, _ = flow.build(LSTM, flow.Settings(steps=2, hidden_size=H, weight_scale=0.7))
    W = cell.params["W_hh"]
    for b in range(4):
        assert np.isclose(np.abs(np.linalg.eigvals(W[b * H : (b + 1) * H])).max(), 0.7)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        flow.Settings(steps=0)
    with pytest.raises(ValueError, match="weight_scale must be positive"):
        flow.Settings(weight_scale=-1.0)
    with pytest.raises(ValueError, match="unknown cell 'nope'"):
        flow.analyze(["nope"])


# -- the command ----------------------------------------------------------------------------------
def run_flow(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["flow", *args])
    return code, out.getvalue()


def read_csv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_flow_command_writes_csv_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    code, out = run_flow(
        "lstm", "gru", "--steps", "12", "--hidden-size", "4", "--gate-bias", "0", "2", "--out", str(tmp_path)
    )
    assert code == 0
    rows = read_csv(tmp_path / "gradient_flow.csv")
    assert list(rows[0]) == ["cell", "run", "lag", "norm", "norm_min", "norm_max", "norm_h", "norm_c"]
    runs = ["lstm (gate bias 0)", "gru (gate bias 0)", "lstm (gate bias 2)", "gru (gate bias 2)"]
    assert [r["run"] for r in rows[::13]] == runs and len(rows) == 4 * 13
    assert all(r["norm_c"] == "" for r in rows if r["cell"] == "gru")
    expected = flow.analyze(["lstm"], flow.Settings(steps=12, hidden_size=4, gate_bias=2.0))[0]
    written = [float(r["norm"]) for r in rows if r["run"] == "lstm (gate bias 2)"]
    np.testing.assert_array_equal(written, expected.norm)
    steps = read_csv(tmp_path / "gradient_flow_steps.csv")
    assert list(steps[0]) == [
        "cell",
        "run",
        "step",
        "spectral_radius",
        "max_singular",
        "gate_i",
        "gate_f",
        "gate_g",
        "gate_o",
        "gate_r",
        "gate_z",
        "gate_n",
    ]
    assert len(steps) == 4 * 12 and steps[0]["gate_r"] == "" and steps[-1]["gate_i"] == ""
    assert (tmp_path / "gradient_flow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "lyapunov.csv").exists() and not (tmp_path / "lyapunov.png").exists()
    assert "lstm (gate bias 2)" in out and "k=10" in out and "k=12" in out
    assert f"wrote {tmp_path / 'gradient_flow.png'}" in out


def test_flow_command_sweeps_the_weight_scale_and_works_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    code, out = run_flow(
        "rnn", "--steps", "5", "--hidden-size", "4", "--weight-scale", "0.5", "2", "--out", str(tmp_path)
    )
    assert code == 0
    assert {r["run"] for r in read_csv(tmp_path / "gradient_flow.csv")} == {"rnn (ρ = 0.5)", "rnn (ρ = 2)"}
    assert not (tmp_path / "gradient_flow.png").exists()
    assert "pip install matplotlib" in out and "pip install -e '.[plot]'" in out


def test_flow_command_refuses_a_gate_bias_the_cell_cannot_take(tmp_path):
    with pytest.raises(SystemExit, match="cell 'rnn' has no forget or update gate"):
        run_flow("rnn", "--steps", "3", "--gate-bias", "1", "--out", str(tmp_path))


def test_flow_command_writes_the_lyapunov_exponents_and_their_convergence(tmp_path):
    pytest.importorskip("matplotlib")
    code, out = run_flow(
        "rnn",
        "lstm",
        "--steps",
        "12",
        "--hidden-size",
        "4",
        "--batch",
        "2",
        "--lyapunov",
        "3",
        "--warmup",
        "2",
        "--out",
        str(tmp_path),
    )
    assert code == 0
    rows = read_csv(tmp_path / "lyapunov.csv")
    assert list(rows[0]) == ["cell", "run", "step", "lambda_1", "lambda_2", "lambda_3"]
    assert [(r["run"], int(r["step"])) for r in rows] == [(run, t) for run in ("rnn", "lstm") for t in range(3, 13)]
    settings = flow.Settings(steps=12, hidden_size=4, batch=2, lyapunov=3, warmup=2)
    for cls in (RNN, LSTM):
        cell, x = flow.build(cls, settings)
        expected = flow.lyapunov(cell, x, 3, warmup=2).mean(axis=0)
        last = [float(r[f"lambda_{i}"]) for r in rows if r["cell"] == cls.name for i in (1, 2, 3)][-3:]
        np.testing.assert_allclose(last, expected, rtol=1e-12)
        assert f"{expected[0]:.4f}" in out.split(cls.name + " ")[-1].splitlines()[0]  # the table's row
    assert "Lyapunov exponents per step" in out and "e^λ1" in out
    assert (tmp_path / "lyapunov.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {tmp_path / 'lyapunov.csv'}" in out and f"wrote {tmp_path / 'lyapunov.png'}" in out


def test_flow_command_refuses_more_lyapunov_exponents_than_the_state_has(tmp_path):
    message = r"k \(the number of Lyapunov exponents\) must be an integer from 1 to the state size 4 of this rnn"
    with pytest.raises(SystemExit, match=message):
        run_flow("rnn", "--steps", "6", "--hidden-size", "4", "--lyapunov", "5", "--out", str(tmp_path))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lyapunov", "-1"], "lyapunov must be a non-negative integer, got -1"),
        (["--warmup", "2"], "warmup = 2 applies to Lyapunov exponents only: set lyapunov too"),
        (["--lyapunov", "1", "--warmup", "6"], "warmup must be less than steps = 6, got 6"),
        (["--steps", "0"], "steps must be a positive integer, got 0"),
    ],
)
def test_flow_command_line_values_that_do_not_fit_are_usage_errors(tmp_path, capsys, args, message):
    """Exit status 2 and one line on stderr, before anything is measured or written."""
    code, _ = run_flow("rnn", "--steps", "6", "--hidden-size", "4", *args, "--out", str(tmp_path / "out"))
    assert code == 2
    assert capsys.readouterr().err == f"flow: {message}\n"
    assert not (tmp_path / "out").exists()
