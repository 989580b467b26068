"""LayerNorm LSTM, as in PyTorch's fastrnns benchmark (LayerNormLSTMCell): no biases, LayerNorm on
both gate pre-activations and on the cell state.

    a = LN(W_ih x; γ_ih, β_ih) + LN(W_hh h_{t-1}; γ_hh, β_hh), each over all 4H units
    i = σ(a_i)    f = σ(a_f)    g = tanh(a_g)    o = σ(a_o)
    c_t = LN(f ⊙ c_{t-1} + i ⊙ g; γ_c, β_c), over the H units
    h_t = o ⊙ tanh(c_t)
    LN(v; γ, β) = (v − mean v) / sqrt(var v + 1e-5) ⊙ γ + β, with the biased variance

Reference: Ba, Kiros & Hinton (2016), "Layer normalization", section 3.1 (LSTM); the layout of
pytorch/benchmarks/fastrnns/custom_lstms.py. Convention: gates stacked i, f, g, o in W_ih (4H, I)
and W_hh (4H, H); gamma_ih, beta_ih, gamma_hh, beta_hh (4H,), gamma_c, beta_c (H,); every γ
starts at 1 and every β at 0.
"""

from derive.activations import sigmoid, tanh
from derive.spec import Cell

cell = Cell("lstm_layernorm", class_name="LSTMLayerNorm", doc=__doc__)
x = cell.input()
h, c = cell.state("h"), cell.state("c")
W_ih = cell.weight("W_ih", x, gates="ifgo")
W_hh = cell.weight("W_hh", h, gates="ifgo")
gamma_ih, gamma_hh = (cell.vector(name, gates="ifgo", init="ones") for name in ("gamma_ih", "gamma_hh"))
beta_ih, beta_hh = (cell.vector(name, gates="ifgo", init="zeros") for name in ("beta_ih", "beta_hh"))
gamma_c, beta_c = cell.vector("gamma_c", init="ones"), cell.vector("beta_c", init="zeros")
ih = cell.layer_norm("ln_ih", W_ih, gamma_ih, beta_ih)
hh = cell.layer_norm("ln_hh", W_hh, gamma_hh, beta_hh)
i, f, o = (cell.let(gate, sigmoid(ih[gate] + hh[gate])) for gate in "ifo")
g = cell.let("g", tanh(ih["g"] + hh["g"]))
c_pre = cell.let("c_pre", f * c + i * g)
c_new = cell.update(c, cell.layer_norm("ln_c", c_pre, gamma_c, beta_c))
cell.update(h, o * tanh(c_new))
