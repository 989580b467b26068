"""Every built-in cell written by hand as an eager PyTorch step: an independent oracle.

These are not derived from the specs: each step is typed from the cell's documented equations,
so agreement with the generated kernels (tests/test_reference.py) checks the spec, the derivation
and the code generation at once. They are also the "custom cell in eager PyTorch" baseline of the
benchmarks. Parameters use the generated cells' names and layouts. Requires torch (imported lazily
by callers; the rest of the toolkit never imports this module).
"""

from __future__ import annotations

import torch


def _split(t, n):
    return t.chunk(n, dim=-1)


def _linear(p, name, v):
    return v @ p[name].T


def rnn(p, x, h):
    return (torch.tanh(_linear(p, "W_ih", x) + p["b_ih"] + _linear(p, "W_hh", h) + p["b_hh"]),)


def rnn_relu(p, x, h):
    return (torch.relu(_linear(p, "W_ih", x) + p["b_ih"] + _linear(p, "W_hh", h) + p["b_hh"]),)


def _lstm_gates(p, x, h, n):
    return _split(_linear(p, "W_ih", x) + p["b_ih"] + _linear(p, "W_hh", h) + p["b_hh"], n)


def lstm(p, x, h, c):
    i, f, g, o = _lstm_gates(p, x, h, 4)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_proj(p, x, h, c):
    _, c = lstm(p, x, h, c)
    i, f, g, o = _lstm_gates(p, x, h, 4)
    return _linear(p, "W_hr", torch.sigmoid(o) * torch.tanh(c)), c


def lstm_peephole(p, x, h, c):
    i, f, g, o = _lstm_gates(p, x, h, 4)
    i = torch.sigmoid(i + p["w_ci"] * c)
    f = torch.sigmoid(f + p["w_cf"] * c)
    c = f * c + i * torch.tanh(g)
    o = torch.sigmoid(o + p["w_co"] * c)
    return o * torch.tanh(c), c


def lstm_cifg(p, x, h, c):
    f, g, o = _lstm_gates(p, x, h, 3)
    f = torch.sigmoid(f)
    c = f * c + (1 - f) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru(p, x, h):
    xr, xz, xn = _split(_linear(p, "W_ih", x) + p["b_ih"], 3)
    hr, hz, hn = _split(_linear(p, "W_hh", h) + p["b_hh"], 3)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


def gru_reset_before(p, x, h):
    xr, xz, xn = _split(_linear(p, "W_ih", x) + p["b_ih"], 3)
    br, bz, bn = _split(p["b_hh"], 3)
    hr, hz = _split(_linear(p, "W_hh", h), 2)
    r, z = torch.sigmoid(xr + hr + br), torch.sigmoid(xz + hz + bz)
    n = torch.tanh(xn + _linear(p, "W_hn", r * h) + bn)
    return ((1 - z) * n + z * h,)


def mgu(p, x, h):
    xf, xn = _split(_linear(p, "W_ih", x) + p["b"], 2)
    f = torch.sigmoid(xf + _linear(p, "W_hf", h))
    n = torch.tanh(xn + _linear(p, "W_hn", f * h))
    return ((1 - f) * h + f * n,)


def indrnn(p, x, h):
    return (torch.relu(_linear(p, "W_ih", x) + p["u"] * h + p["b"]),)


def janet(p, x, h):
    s, c = _lstm_gates(p, x, h, 2)
    return (torch.sigmoid(s) * h + (1 - torch.sigmoid(s - 1)) * torch.tanh(c),)


def ugrnn(p, x, h):
    c, g = _lstm_gates(p, x, h, 2)
    g = torch.sigmoid(g)
    return (g * h + (1 - g) * torch.tanh(c),)


def ligru(p, x, h):
    z, n = _lstm_gates(p, x, h, 2)
    z = torch.sigmoid(z)
    return (z * h + (1 - z) * torch.relu(n),)


def min_gru(p, x, h):
    z, n = _split(_linear(p, "W_ih", x) + p["b_ih"], 2)
    z = torch.sigmoid(z)
    return ((1 - z) * h + z * n,)


def min_lstm(p, x, h):
    f, i, n = _split(_linear(p, "W_ih", x) + p["b_ih"], 3)
    f, i = torch.sigmoid(f), torch.sigmoid(i)
    return (f / (f + i) * h + i / (f + i) * n,)


def slstm(p, x, h, c, n, m):
    i, f, z, o = _split(_linear(p, "W_ih", x) + _linear(p, "W_hh", h) + p["b"], 4)
    log_f = torch.nn.functional.logsigmoid(f) + m
    m = torch.maximum(log_f, i)
    i, f = torch.exp(i - m), torch.exp(log_f - m)
    c = f * c + i * torch.tanh(z)
    n = f * n + i
    return torch.sigmoid(o) * c / n, c, n, m


def cornn(p, x, y, z, dt=0.042, gamma=2.7, epsilon=4.7):
    z = z + dt * (
        torch.tanh(_linear(p, "W", y) + _linear(p, "W_z", z) + _linear(p, "V", x) + p["b"]) - gamma * y - epsilon * z
    )
    return y + dt * z, z


def _layer_norm(v, gamma, beta):
    return torch.nn.functional.layer_norm(v, v.shape[-1:], gamma, beta, eps=1e-5)


def lstm_layernorm(p, x, h, c):
    """fastrnns' LayerNormLSTMCell (pytorch/benchmarks/fastrnns/custom_lstms.py), no biases."""
    gates = _layer_norm(_linear(p, "W_ih", x), p["gamma_ih"], p["beta_ih"])
    gates = gates + _layer_norm(_linear(p, "W_hh", h), p["gamma_hh"], p["beta_hh"])
    i, f, g, o = _split(gates, 4)
    c = _layer_norm(torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g), p["gamma_c"], p["beta_c"])
    return torch.sigmoid(o) * torch.tanh(c), c


def mogrifier_lstm(p, x, h, c):
    """Melis et al. (2020): x and h gate each other for 5 rounds (odd: x, even: h), then an LSTM step."""
    for k in range(1, 6):
        if k % 2:
            x = 2 * torch.sigmoid(_linear(p, f"Q{k}", h)) * x
        else:
            h = 2 * torch.sigmoid(_linear(p, f"R{k}", x)) * h
    return lstm(p, x, h, c)


STEPS = {
    f.__name__: f
    for f in (
        rnn,
        rnn_relu,
        lstm,
        lstm_peephole,
        lstm_cifg,
        gru,
        gru_reset_before,
        mgu,
        indrnn,
        janet,
        ugrnn,
        ligru,
        min_gru,
        min_lstm,
        slstm,
        cornn,
        lstm_layernorm,
        lstm_proj,
        mogrifier_lstm,
    )
}


def run(name: str, params: dict, x, state0: tuple, constants: dict | None = None):
    """Unroll cell `name` over x (T, B, I) as an eager loop; returns (y (T, B, H), final states).
    `constants` (name -> value) sets the cell's named constants; their defaults otherwise."""
    step = STEPS[name]
    state = tuple(state0)
    outputs = []
    for x_t in x:
        state = step(params, x_t, *state, **(constants or {}))
        outputs.append(state[0])
    return torch.stack(outputs), state
