"""Cells that exist only for the tests: generic code must handle them as it does the built-ins.

- `rnn_identity`: h_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, so ∂h_t/∂h_{t-1} = W_hh exactly;
- `gru_reset_before`: Cho et al.'s GRU, the reset gate applied before the matrix product,
  n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn): a weight acting on a value of the same step,
  so its kernels run in two levels and its Jacobian goes through ∂(r ⊙ h)/∂h_{t-1};
- `indrnn_test`, `lstm_peephole_test` (formulas only): no matrix on h; peepholes, one on c_t.
"""

import importlib
import sys
from pathlib import Path

from derive.activations import identity, relu, sigmoid, tanh
from derive.spec import Cell
from derive.write import generate as gen

SOURCE = "tests/extra_cells.py"

rnn_identity = Cell("rnn_identity", class_name="RNNIdentity", doc="Elman RNN without an activation.")
x = rnn_identity.input()
h = rnn_identity.state("h")
W_ih = rnn_identity.weight("W_ih", x)
W_hh = rnn_identity.weight("W_hh", h)
b_ih = rnn_identity.bias("b_ih")
b_hh = rnn_identity.bias("b_hh")
rnn_identity.update(h, identity(W_ih + b_ih + W_hh + b_hh))

gru_reset_before = Cell("gru_reset_before", class_name="GRUResetBefore", doc="GRU with the reset gate before W_hn.")
x = gru_reset_before.input()
h = gru_reset_before.state("h")
W_ih = gru_reset_before.weight("W_ih", x, gates="rzn")
W_hh = gru_reset_before.weight("W_hh", h, gates="rz")
b_ih = gru_reset_before.bias("b_ih", gates="rzn")
b_hh = gru_reset_before.bias("b_hh", gates="rzn")
r = gru_reset_before.let("r", sigmoid(W_ih["r"] + b_ih["r"] + W_hh["r"] + b_hh["r"]))
z = gru_reset_before.let("z", sigmoid(W_ih["z"] + b_ih["z"] + W_hh["z"] + b_hh["z"]))
rh = gru_reset_before.let("rh", r * h)
W_hn = gru_reset_before.weight("W_hn", rh)
n = gru_reset_before.let("n", tanh(W_ih["n"] + b_ih["n"] + W_hn + b_hh["n"]))
gru_reset_before.update(h, (1 - z) * n + z * h)

# Only derived and shown (not generated), to exercise the formulas on other shapes of cell.
indrnn = Cell("indrnn_test", class_name="IndRNNTest", doc="IndRNN: a per-unit recurrent weight, no matrix on h.")
x = indrnn.input()
h = indrnn.state("h")
W_ih = indrnn.weight("W_ih", x)
u = indrnn.vector("u")
b_ih = indrnn.bias("b_ih")
indrnn.update(h, relu(W_ih + b_ih + u * h))

lstm_peephole = Cell("lstm_peephole_test", class_name="LSTMPeepholeTest", doc="LSTM with peepholes; o sees c_t.")
x = lstm_peephole.input()
h, c = lstm_peephole.state("h"), lstm_peephole.state("c")
W_ih = lstm_peephole.weight("W_ih", x, gates="ifgo")
W_hh = lstm_peephole.weight("W_hh", h, gates="ifgo")
b = lstm_peephole.bias("b", gates="ifgo")
w_c = lstm_peephole.vector("w_c", gates="ifo")
i = lstm_peephole.let("i", sigmoid(W_ih["i"] + W_hh["i"] + b["i"] + w_c["i"] * c))
f = lstm_peephole.let("f", sigmoid(W_ih["f"] + W_hh["f"] + b["f"] + w_c["f"] * c))
g = lstm_peephole.let("g", tanh(W_ih["g"] + W_hh["g"] + b["g"]))
c_new = lstm_peephole.update(c, f * c + i * g)
o = lstm_peephole.let("o", sigmoid(W_ih["o"] + W_hh["o"] + b["o"] + w_c["o"] * c_new))
lstm_peephole.update(h, o * tanh(c_new))

CELLS = (rnn_identity, gru_reset_before)
FORMULA_ONLY = (indrnn, lstm_peephole)
for _cell in CELLS + FORMULA_ONLY:
    _cell.source = SOURCE


def generate_into(directory: Path, package: str = "extra_cells_generated"):
    """Generate CELLS as a package in `directory` and import it."""
    gen.write_package(gen.render_all(list(CELLS)), Path(directory) / package, log=lambda message: None)
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(directory))
