"""Independently recurrent neural network: each unit sees only its own past through a scalar weight.

    h_t = relu(W_ih x_t + u ⊙ h_{t-1} + b)

Reference: Li, Li, Cook, Zhu & Gao (2018), "Independently recurrent neural network (IndRNN): building
a longer and deeper RNN", eq. 2. Convention: the paper's; u is initialised uniformly in (0, 1), W_ih and
b as PyTorch initialises linear layers (relu'(0) = 0, as in PyTorch). To keep gradients bounded over T
steps the paper constrains |u| <= 2^(1/T); clip u in your optimiser step if you need that.
"""

from derive.activations import relu
from derive.spec import Cell

cell = Cell("indrnn", class_name="IndRNN", doc=__doc__)
x = cell.input()
h = cell.state("h")
W_ih = cell.weight("W_ih", x)
u = cell.vector("u", init=(0.0, 1.0))
b = cell.bias("b")
cell.update(h, relu(W_ih + u * h + b))
