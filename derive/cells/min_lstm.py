"""minLSTM: forget and input gates of the input alone, normalised to sum to one, on a linear candidate.

    f = σ(W_if x + b_if)        i = σ(W_ii x + b_ii)        n = W_in x + b_in
    h_t = f / (f + i) ⊙ h_{t-1} + i / (f + i) ⊙ n

Reference: Feng, Tung, Ahmed, Bengio & Hajimirsadeghi (2024), "Were RNNs all we needed?", section 3.2,
the sequential form with normalised gates. Convention: gates stacked f, i, n in W_ih (3H, I) and b_ih (3H);
no activation on the candidate.
"""

from derive.activations import sigmoid
from derive.spec import Cell

cell = Cell("min_lstm", class_name="MinLSTM", doc=__doc__)
x = cell.input()
h = cell.state("h")
W_ih = cell.weight("W_ih", x, gates="fin")
b_ih = cell.bias("b_ih", gates="fin")
f = cell.let("f", sigmoid(W_ih["f"] + b_ih["f"]))
i = cell.let("i", sigmoid(W_ih["i"] + b_ih["i"]))
n = cell.let("n", W_ih["n"] + b_ih["n"])
cell.update(h, f / (f + i) * h + i / (f + i) * n)
