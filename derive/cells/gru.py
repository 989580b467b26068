"""GRU, as torch.nn.GRU: gates stacked in the order r, z, n.

    r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

The reset gate multiplies the recurrent projection *after* the matrix product (PyTorch, cuDNN,
Keras reset_after=True); see `gru_reset_before` for Cho et al.'s original placement.
Reference: Cho et al. (2014). Convention: PyTorch.
"""

from derive.activations import sigmoid, tanh
from derive.spec import Cell

cell = Cell("gru", class_name="GRU", doc=__doc__, torch_module="GRU")
x = cell.input()
h = cell.state("h")
W_ih = cell.weight("W_ih", x, gates="rzn", torch="weight_ih_l0")
W_hh = cell.weight("W_hh", h, gates="rzn", torch="weight_hh_l0")
b_ih = cell.bias("b_ih", gates="rzn", torch="bias_ih_l0")
b_hh = cell.bias("b_hh", gates="rzn", torch="bias_hh_l0")
r = cell.let("r", sigmoid(W_ih["r"] + b_ih["r"] + W_hh["r"] + b_hh["r"]))
z = cell.let("z", sigmoid(W_ih["z"] + b_ih["z"] + W_hh["z"] + b_hh["z"]))
n = cell.let("n", tanh(W_ih["n"] + b_ih["n"] + r * (W_hh["n"] + b_hh["n"])))
cell.update(h, (1 - z) * n + z * h)
