"""LSTM with coupled input and forget gates (CIFG): the input gate is 1 - f.

    f = σ(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)   o = σ(W_io x + b_io + W_ho h + b_ho)
    c_t = f ⊙ c_{t-1} + (1 - f) ⊙ g
    h_t = o ⊙ tanh(c_t)

Reference: Greff et al. (2017), "LSTM: A search space odyssey" (variant CIFG). Convention: gates
stacked f, g, o (PyTorch's order without i), PyTorch's parameter names.
"""

from derive.activations import sigmoid, tanh
from derive.spec import Cell

cell = Cell("lstm_cifg", class_name="CIFGLSTM", doc=__doc__)
x = cell.input()
h, c = cell.state("h"), cell.state("c")
pre = cell.preactivations(x, h, gates="fgo")
f = cell.let("f", sigmoid(pre["f"]))
g = cell.let("g", tanh(pre["g"]))
o = cell.let("o", sigmoid(pre["o"]))
c_new = cell.update(c, f * c + (1 - f) * g)
cell.update(h, o * tanh(c_new))
