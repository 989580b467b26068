"""minGRU: a GRU whose gate and candidate see only the input, so the recurrence is linear in h.

    z = σ(W_iz x + b_iz)
    n = W_in x + b_in
    h_t = (1 - z) ⊙ h_{t-1} + z ⊙ n

Reference: Feng, Tung, Ahmed, Bengio & Hajimirsadeghi (2024), "Were RNNs all we needed?", section 3.1,
the sequential form. Convention: gates stacked z, n in W_ih (2H, I) and b_ih (2H); no activation on the
candidate (the paper's log-space variant and its g(·) are a training-time parallel scan of the same
recurrence, not a different cell).
"""

from derive.activations import sigmoid
from derive.spec import Cell

cell = Cell("min_gru", class_name="MinGRU", doc=__doc__)
x = cell.input()
h = cell.state("h")
W_ih = cell.weight("W_ih", x, gates="zn")
b_ih = cell.bias("b_ih", gates="zn")
z = cell.let("z", sigmoid(W_ih["z"] + b_ih["z"]))
n = cell.let("n", W_ih["n"] + b_ih["n"])
cell.update(h, (1 - z) * h + z * n)
