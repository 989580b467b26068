"""Update-gate RNN: a vanilla RNN candidate blended with the old state by one update gate.

    c = tanh(W_ic x + b_ic + W_hc h_{t-1} + b_hc)
    g = σ(W_ig x + b_ig + W_hg h_{t-1} + b_hg)
    h_t = g ⊙ h_{t-1} + (1 - g) ⊙ c

Reference: Collins, Sohl-Dickstein & Sussillo (2017), "Capacity and trainability in recurrent neural
networks", appendix (UGRNN). Convention: g = 1 keeps the old state (as in the paper and TensorFlow's
UGRNNCell); gates stacked c, g with PyTorch's parameter names (TensorFlow adds a forget bias of 1.0 to
g; here that is b_ig's initial value, left to the user).
"""

from derive.activations import sigmoid, tanh
from derive.spec import Cell

cell = Cell("ugrnn", class_name="UGRNN", doc=__doc__)
x = cell.input()
h = cell.state("h")
pre = cell.preactivations(x, h, gates="cg")
c = cell.let("c", tanh(pre["c"]))
g = cell.let("g", sigmoid(pre["g"]))
cell.update(h, g * h + (1 - g) * c)
