"""Peephole LSTM: the gates also see the cell state through per-unit (diagonal) weights.

    i = σ(W_ii x + b_ii + W_hi h + b_hi + w_ci ⊙ c_{t-1})
    f = σ(W_if x + b_if + W_hf h + b_hf + w_cf ⊙ c_{t-1})
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    o = σ(W_io x + b_io + W_ho h + b_ho + w_co ⊙ c_t)
    h_t = o ⊙ tanh(c_t)

Reference: Gers & Schmidhuber (2000), "Recurrent nets that time and count"; Gers, Schraudolph &
Schmidhuber (2002). Convention: i and f peek at c_{t-1}, o at c_t (as in the paper and in
TensorFlow's LSTMCell(use_peepholes=True)); gates stacked i, f, g, o with PyTorch's parameter names,
so `load_torch` takes a torch.nn.LSTM state_dict plus w_ci, w_cf, w_co.
"""

from derive.activations import sigmoid, tanh
from derive.spec import Cell

cell = Cell("lstm_peephole", class_name="PeepholeLSTM", doc=__doc__)
x = cell.input()
h, c = cell.state("h"), cell.state("c")
pre = cell.preactivations(x, h, gates="ifgo")
w_ci, w_cf, w_co = (cell.vector(name) for name in ("w_ci", "w_cf", "w_co"))
i = cell.let("i", sigmoid(pre["i"] + w_ci * c))
f = cell.let("f", sigmoid(pre["f"] + w_cf * c))
g = cell.let("g", tanh(pre["g"]))
c_new = cell.update(c, f * c + i * g)
o = cell.let("o", sigmoid(pre["o"] + w_co * c_new))
cell.update(h, o * tanh(c_new))
