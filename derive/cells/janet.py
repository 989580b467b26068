"""JANET ("just another network"): an LSTM with only a forget gate, whose output is its cell state.

    s = W_if x + b_if + W_hf h_{t-1} + b_hf
    f = σ(s)        k = σ(s - β)        (β = 1)
    h_t = f ⊙ h_{t-1} + (1 - k) ⊙ tanh(W_ic x + b_ic + W_hc h_{t-1} + b_hc)

Reference: van der Westhuizen & Lasenby (2018), "The unreasonable effectiveness of the forget gate",
eqs. 12-14, with h_t = c_t so there is one state. Convention: the paper's shift β = 1; gates stacked
f, c with PyTorch's parameter names. The paper's chrono initialisation of b_f is left to the user
(set `cell.params["b_ih"][:H]`).
"""

from derive.activations import sigmoid, tanh
from derive.spec import Cell

BETA = 1

cell = Cell("janet", class_name="JANET", doc=__doc__)
x = cell.input()
h = cell.state("h")
pre = cell.preactivations(x, h, gates="fc")
f = cell.let("f", sigmoid(pre["f"]))
k = cell.let("k", sigmoid(pre["f"] - BETA))
cell.update(h, f * h + (1 - k) * tanh(pre["c"]))
