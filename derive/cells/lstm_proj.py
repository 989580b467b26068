"""LSTM with a projection, as torch.nn.LSTM(proj_size=P): gates i, f, g, o as the LSTM's, h of size P.

    i, f, g, o = σ, σ, tanh, σ of W_ih x + b_ih + W_hh h_{t-1} + b_hh  (W_hh (4H, P): it acts on h)
    c_t = f ⊙ c_{t-1} + i ⊙ g                       (c of size H)
    h_t = W_hr (o ⊙ tanh(c_t))                      (W_hr (P, H): h of size P < H)

Reference: Sak, Senior & Beaufays (2014), "Long short-term memory recurrent neural network
architectures for large scale acoustic modeling" (LSTMP, without peepholes). Convention: PyTorch
(`proj_size`, weight_hr_l0, no bias on the projection; the cell takes proj_size=, by default H // 2).
"""

from derive.activations import sigmoid, tanh
from derive.spec import Cell

cell = Cell("lstm_proj", class_name="LSTMProj", doc=__doc__, torch_module="LSTM", torch_options={"proj_size": "P"})
P = cell.size("P", "proj_size")
x = cell.input()
h, c = cell.state("h", size=P), cell.state("c")
pre = cell.preactivations(x, h, gates="ifgo")
i = cell.let("i", sigmoid(pre["i"]))
f = cell.let("f", sigmoid(pre["f"]))
g = cell.let("g", tanh(pre["g"]))
o = cell.let("o", sigmoid(pre["o"]))
c_new = cell.update(c, f * c + i * g)
h_pre = cell.let("h_pre", o * tanh(c_new))
cell.update(h, cell.weight("W_hr", h_pre, torch="weight_hr_l0", size=P))
