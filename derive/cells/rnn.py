"""Elman RNN with tanh, as torch.nn.RNN (nonlinearity="tanh").

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

Reference: Elman (1990), "Finding structure in time". Convention: PyTorch.
"""

from derive.spec import Cell
from derive.activations import tanh

cell = Cell("rnn", class_name="RNN", doc=__doc__, torch_module="RNN")
x = cell.input()
h = cell.state("h")
W_ih = cell.weight("W_ih", x, torch="weight_ih_l0")
W_hh = cell.weight("W_hh", h, torch="weight_hh_l0")
b_ih = cell.bias("b_ih", torch="bias_ih_l0")
b_hh = cell.bias("b_hh", torch="bias_hh_l0")
cell.update(h, tanh(W_ih + b_ih + W_hh + b_hh))
