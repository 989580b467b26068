"""minLSTM: forget and input gates of the input alone, normalised to sum to one, on a linear candidate.

    f = σ(W_if x + b_if)        i = σ(W_ii x + b_ii)        n = W_in x + b_in
    h_t = f / (f + i) ⊙ h_{t-1} + i / (f + i) ⊙ n

Reference: Feng, Tung, Ahmed, Bengio & Hajimirsadeghi (2024), "Were RNNs all we needed?", section 3.2,
the sequential form with normalised gates. Convention: gates stacked f, i, n in W_ih (3H, I) and b_ih (3H);
no activation on the candidate. The normalised gates are computed as f / (f + i) = σ(log f - log i) and
i / (f + i) = σ(log i - log f), with log f = log_sigmoid(W_if x + b_if): the same values, but no 0/0 when
both gates saturate to 0 (pre-activations below about -88 in float32).
"""

from derive.activations import log_sigmoid, sigmoid
from derive.spec import Cell

cell = Cell("min_lstm", class_name="MinLSTM", doc=__doc__)
x = cell.input()
h = cell.state("h")
W_ih = cell.weight("W_ih", x, gates="fin")
b_ih = cell.bias("b_ih", gates="fin")
log_ratio = cell.let(
    "log_ratio", log_sigmoid(W_ih["f"] + b_ih["f"]) - log_sigmoid(W_ih["i"] + b_ih["i"])
)  # log f - log i
f = cell.let("f", sigmoid(log_ratio))  # f / (f + i)
i = cell.let("i", sigmoid(-log_ratio))  # i / (f + i)
n = cell.let("n", W_ih["n"] + b_ih["n"])
cell.update(h, f * h + i * n)
