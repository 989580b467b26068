"""Mogrifier LSTM: the input and the state gate each other for 5 rounds, then a standard LSTM step.

    x⁰ = x_t, h⁰ = h_{t-1}                          (x of size I, h of size H)
    x¹ = 2σ(Q1 h⁰) ⊙ x⁰      h² = 2σ(R2 x¹) ⊙ h⁰     (Q1, Q3, Q5 (I, H); R2, R4 (H, I))
    x³ = 2σ(Q3 h²) ⊙ x¹      h⁴ = 2σ(R4 x³) ⊙ h²
    x⁵ = 2σ(Q5 h⁴) ⊙ x³
    i, f, g, o = σ, σ, tanh, σ of W_ih x⁵ + b_ih + W_hh h⁴ + b_hh   (as torch.nn.LSTM)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)

Reference: Melis, Kočiský & Blunsom (2020), "Mogrifier LSTM", ICLR (5 rounds, their best). The
paper's x^{i-2} for i = 1 is x itself (x^{-1} = x). Convention: the LSTM part is PyTorch's (gates
i, f, g, o; W_ih (4H, I), W_hh (4H, H), b_ih and b_hh (4H)); Q and R have no biases, as in the
paper (full rank, not its low-rank factorisation), and PyTorch's initialisation, uniform in
±1/√H. No torch.nn module computes this cell.
"""

from derive.activations import sigmoid, tanh
from derive.spec import Cell

cell = Cell("mogrifier_lstm", class_name="MogrifierLSTM", doc=__doc__)
x = cell.input()
I = x.size  # noqa: E741 (the paper's and torch's name of the input's size)
h, c = cell.state("h"), cell.state("c")
x1 = cell.let("x1", 2 * sigmoid(cell.weight("Q1", h, size=I)) * x, size=I)
h2 = cell.let("h2", 2 * sigmoid(cell.weight("R2", x1)) * h)
x3 = cell.let("x3", 2 * sigmoid(cell.weight("Q3", h2, size=I)) * x1, size=I)
h4 = cell.let("h4", 2 * sigmoid(cell.weight("R4", x3)) * h2)
x5 = cell.let("x5", 2 * sigmoid(cell.weight("Q5", h4, size=I)) * x3, size=I)
pre = cell.preactivations(x5, h4, gates="ifgo")
i = cell.let("i", sigmoid(pre["i"]))
f = cell.let("f", sigmoid(pre["f"]))
g = cell.let("g", tanh(pre["g"]))
o = cell.let("o", sigmoid(pre["o"]))
c_new = cell.update(c, f * c + i * g)
cell.update(h, o * tanh(c_new))
