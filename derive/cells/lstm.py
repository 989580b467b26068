"""LSTM, as torch.nn.LSTM: gates stacked in the order i, f, g, o.

    i = σ(W_ii x + b_ii + W_hi h + b_hi)      f = σ(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)   o = σ(W_io x + b_io + W_ho h + b_ho)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)

Reference: Hochreiter & Schmidhuber (1997); forget gate: Gers et al. (2000). Convention: PyTorch.
"""

from derive.activations import sigmoid, tanh
from derive.spec import Cell

cell = Cell("lstm", class_name="LSTM", doc=__doc__, torch_module="LSTM")
x = cell.input()
h, c = cell.state("h"), cell.state("c")
pre = cell.preactivations(x, h, gates="ifgo")
i = cell.let("i", sigmoid(pre["i"]))
f = cell.let("f", sigmoid(pre["f"]))
g = cell.let("g", tanh(pre["g"]))
o = cell.let("o", sigmoid(pre["o"]))
c_new = cell.update(c, f * c + i * g)
cell.update(h, o * tanh(c_new))
