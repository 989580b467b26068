"""sLSTM: xLSTM's scalar-memory LSTM, with exponential input gating, a normaliser state and a stabiliser.

    ĩ, f̃, z̃, õ = W_ih x + W_hh h_{t-1} + b, split in gate blocks i, f, z, o
    m_t = max(log σ(f̃) + m_{t-1}, ĩ)
    i' = exp(ĩ - m_t)        f' = exp(log σ(f̃) + m_{t-1} - m_t)
    c_t = f' ⊙ c_{t-1} + i' ⊙ tanh(z̃)
    n_t = f' ⊙ n_{t-1} + i'
    h_t = σ(õ) ⊙ c_t / n_t

Reference: Beck, Pöppel, Spanring, Auer, Prudnikova, Kopp, Klambauer, Brandstetter & Hochreiter (2024),
"xLSTM: extended long short-term memory", section 2.2 (sLSTM) and its stabilised form. Convention: the
sigmoid forget gate (log f = log_sigmoid(f̃), stable), one head (a dense W_hh), one bias b; gates stacked
i, f, z, o in W_ih (4H, I), W_hh (4H, H) and b (4H); states (h, c, n, m), all zero at the start (the
runtime's default initial state). max splits its gradient in halves at a tie.
"""

from derive.activations import exp, log_sigmoid, max, sigmoid, tanh
from derive.spec import Cell

cell = Cell("slstm", class_name="SLSTM", doc=__doc__)
x = cell.input()
h, c, n, m = (cell.state(name) for name in "hcnm")
W_ih = cell.weight("W_ih", x, gates="ifzo")
W_hh = cell.weight("W_hh", h, gates="ifzo")
b = cell.bias("b", gates="ifzo")
pre = {g: W_ih[g] + W_hh[g] + b[g] for g in "ifzo"}
log_f = cell.let("log_f", log_sigmoid(pre["f"]) + m)
m_new = cell.update(m, max(log_f, pre["i"]))
i = cell.let("i", exp(pre["i"] - m_new))
f = cell.let("f", exp(log_f - m_new))
c_new = cell.update(c, f * c + i * tanh(pre["z"]))
n_new = cell.update(n, f * n + i)
cell.update(h, sigmoid(pre["o"]) * c_new / n_new)
