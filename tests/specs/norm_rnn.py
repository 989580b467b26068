"""Test cell with reductions over the units: an RMSNorm of the pre-activation (cell.mean of a
square), a softmax over the units (cell.sum of exp), a mean of the previous state and a sum of
a gated product with both its blocks.

    pre = W_ih x + W_hh h_{t-1} + b − mean(h_{t-1})
    n = pre / sqrt(mean(pre²) + 1e-5) ⊙ gain
    e = exp(tanh(n))
    h_t = tanh(n) + e / sum(e) + sum(V[a] h_{t-1} + V[b] h_{t-1}) / 8
"""

from derive.activations import exp, sqrt, tanh
from derive.spec import Cell

cell = Cell("norm_rnn", class_name="NormRNN", doc=__doc__)
x = cell.input()
h = cell.state("h")
W_ih, W_hh, b = cell.weight("W_ih", x), cell.weight("W_hh", h), cell.bias("b")
gain = cell.vector("gain", init="ones")
V = cell.weight("V", h, gates="ab")
pre = cell.let("pre", W_ih + W_hh + b - cell.mean(h, "h_mean"))
n = cell.let("n", pre / sqrt(cell.mean(pre**2, "square_mean") + 1e-5) * gain)
e = cell.let("e", exp(tanh(n)))  # bounded: no inf/inf when n saturates
cell.update(h, tanh(n) + e / cell.sum(e, "e_sum") + cell.sum(V, "V_sum") / 8)
