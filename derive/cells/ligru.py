"""Light GRU (Li-GRU): no reset gate and a ReLU candidate.

    z = σ(W_iz x + b_iz + W_hz h_{t-1} + b_hz)
    n = relu(W_in x + b_in + W_hn h_{t-1} + b_hn)
    h_t = z ⊙ h_{t-1} + (1 - z) ⊙ n

Reference: Ravanelli, Brakel, Omologo & Bengio (2018), "Light gated recurrent units for speech
recognition", eqs. 5-7. Convention: the paper's, without its batch normalisation of the input
projections (normalise outside the cell if you want it); gates stacked z, n with PyTorch's names.
"""

from derive.activations import relu, sigmoid
from derive.spec import Cell

cell = Cell("ligru", class_name="LiGRU", doc=__doc__)
x = cell.input()
h = cell.state("h")
pre = cell.preactivations(x, h, gates="zn")
z = cell.let("z", sigmoid(pre["z"]))
n = cell.let("n", relu(pre["n"]))
cell.update(h, z * h + (1 - z) * n)
