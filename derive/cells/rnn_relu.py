"""Elman RNN with ReLU, as torch.nn.RNN(nonlinearity="relu").

    h_t = relu(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

relu'(0) is taken as 0, as in PyTorch. Reference: Le, Jaitly & Hinton (2015), "A simple way to
initialize recurrent networks of rectified linear units" (they use W_hh = I). Convention: PyTorch.
"""

from derive.activations import relu
from derive.spec import Cell

cell = Cell("rnn_relu", class_name="RNNReLU", doc=__doc__, torch_module="RNN", torch_options={"nonlinearity": "relu"})
x = cell.input()
h = cell.state("h")
cell.update(h, relu(cell.preactivations(x, h)))
