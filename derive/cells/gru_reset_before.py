"""GRU of Cho et al.: the reset gate multiplies h *before* the recurrent matrix product.

    r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + W_hn (r ⊙ h_{t-1}) + b_hn)
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

Reference: Cho et al. (2014), "Learning phrase representations using RNN encoder-decoder for
statistical machine translation", arXiv:1406.1078 v3, eqs. 5-8. Convention: as Keras GRU with
reset_after=False; z keeps the old state as in PyTorch. Unlike `gru`, W_hn is its own (H, H)
matrix (it multiplies r ⊙ h, not h) and W_hh holds only the r and z blocks.
"""

from derive.activations import sigmoid, tanh
from derive.spec import Cell

cell = Cell("gru_reset_before", class_name="GRUResetBefore", doc=__doc__)
x = cell.input()
h = cell.state("h")
W_ih = cell.weight("W_ih", x, gates="rzn")
b_ih, b_hh = cell.bias("b_ih", gates="rzn"), cell.bias("b_hh", gates="rzn")
W_hh = cell.weight("W_hh", h, gates="rz")
r = cell.let("r", sigmoid(W_ih["r"] + b_ih["r"] + W_hh["r"] + b_hh["r"]))
z = cell.let("z", sigmoid(W_ih["z"] + b_ih["z"] + W_hh["z"] + b_hh["z"]))
rh = cell.let("rh", r * h)
n = cell.let("n", tanh(W_ih["n"] + b_ih["n"] + cell.weight("W_hn", rh) + b_hh["n"]))
cell.update(h, (1 - z) * n + z * h)
