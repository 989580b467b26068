"""Test cell using every function of the table beyond the classic activations, division and powers,
on two states, so each derivative rule (from the output or from the arguments) is checked in
backward and in the Jacobian."""

from derive.activations import (
    abs,
    cos,
    elu,
    exp,
    gelu,
    log,
    log_sigmoid,
    max,
    min,
    silu,
    sin,
    softplus,
    sqrt,
    tanh,
)
from derive.spec import Cell

cell = Cell("all_functions", class_name="AllFunctions", doc=__doc__)
x = cell.input()
h, c = cell.state("h"), cell.state("c")
pre = cell.preactivations(x, h, gates="abdegmnw")
a = cell.let("a", softplus(pre["a"]))
b = cell.let("b", log_sigmoid(pre["b"]))
s = cell.let("s", silu(pre["d"]))
g = cell.let("g", gelu(pre["g"]))
e = cell.let("e", elu(pre["e"]))
m = cell.let("m", max(pre["m"], c))
n = cell.let("n", min(pre["n"], -c / 2))
w = cell.let("w", sin(pre["w"]) * cos(h))
c_new = cell.update(c, exp(-abs(m)) * c + log(1 + a) - sqrt(1 + n**2) / (2 + b**2) + w)
cell.update(h, tanh(c_new * s + g * e / 4) + h / (1 + h**2))  # bounded, also when pre-activations saturate
