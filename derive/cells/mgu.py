"""Minimal gated unit: a GRU with a single gate f serving as both reset and update gate.

    f = σ(W_if x + b_f + W_hf h_{t-1})
    n = tanh(W_in x + b_n + W_hn (f ⊙ h_{t-1}))
    h_t = (1 - f) ⊙ h_{t-1} + f ⊙ n

Gate direction as in the paper: f = 1 takes the new candidate n (forgets h_{t-1}), f = 0 keeps h_{t-1};
note this is the opposite of the GRU's z. Reference: Zhou, Wu, Zhang & Zhou (2016), "Minimal gated unit
for recurrent neural networks", eqs. 4-6. Convention: the paper's ([h, x] weights split into W_i·, W_h·).
"""

from derive.activations import sigmoid, tanh
from derive.spec import Cell

cell = Cell("mgu", class_name="MGU", doc=__doc__)
x = cell.input()
h = cell.state("h")
W_ih = cell.weight("W_ih", x, gates="fn")
b = cell.bias("b", gates="fn")
f = cell.let("f", sigmoid(W_ih["f"] + b["f"] + cell.weight("W_hf", h)))
fh = cell.let("fh", f * h)
n = cell.let("n", tanh(W_ih["n"] + b["n"] + cell.weight("W_hn", fh)))
cell.update(h, (1 - f) * h + f * n)
