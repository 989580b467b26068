"""Cells that exist only for the tests: generic code must handle them as it does the built-ins.

- `rnn_identity`: h_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, so ∂h_t/∂h_{t-1} = W_hh exactly;
- `gru_reset_before`: Cho et al.'s GRU, the reset gate applied before the matrix product,
  n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn): a weight acting on a value of the same step,
  so its kernels run in two levels and its Jacobian goes through ∂(r ⊙ h)/∂h_{t-1}.
"""

import importlib
import sys
from pathlib import Path

from derive import generate as gen
from derive.activations import identity, sigmoid, tanh
from derive.spec import Cell

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

CELLS = (rnn_identity, gru_reset_before)
for _cell in CELLS:
    _cell.source = SOURCE


def generate_into(directory: Path, package: str = "extra_cells_generated"):
    """Generate CELLS as a package in `directory` and import it."""
    gen.write_package(gen.render_all(list(CELLS)), Path(directory) / package, log=lambda message: None)
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(directory))
