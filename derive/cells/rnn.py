"""Elman RNN with tanh, as torch.nn.RNN (nonlinearity="tanh").

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

Reference: Elman (1990), "Finding structure in time". Convention: PyTorch.
"""

from derive.activations import tanh
from derive.spec import Cell

cell = Cell("rnn", class_name="RNN", doc=__doc__, torch_module="RNN")
x = cell.input()
h = cell.state("h")
cell.update(h, tanh(cell.preactivations(x, h)))
