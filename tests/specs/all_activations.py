"""Test cell using every activation of the table, so each derivative rule is checked."""

from derive.activations import hard_sigmoid, identity, relu, sigmoid, softsign, tanh
from derive.spec import Cell

cell = Cell("all_activations", class_name="AllActivations", doc=__doc__)
x = cell.input()
h = cell.state("h")
pre = cell.preactivations(x, h, gates="abcde")
a = cell.let("a", relu(pre["a"]))
b = cell.let("b", hard_sigmoid(2 * pre["b"]))
c = cell.let("c", softsign(pre["c"]))
d = cell.let("d", identity(pre["d"]) / 2)
e = cell.let("e", sigmoid(pre["e"]))
cell.update(h, tanh(a * b + c - d) * e + (1 - e) * h)
