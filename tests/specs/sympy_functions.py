"""Test cell written with SymPy's own functions (sp.exp, sp.log, sp.sqrt, sp.Abs, sp.Max with three
arguments, sp.Min, sp.sin, sp.cos) and a half-integer power: the spec rewrites them to the table's."""

import sympy as sp

from derive.activations import sigmoid
from derive.spec import Cell

cell = Cell("sympy_functions", class_name="SympyFunctions", doc=__doc__)
x = cell.input()
h = cell.state("h")
pre = cell.preactivations(x, h, gates="abcz")
z = cell.let("z", sigmoid(pre["z"]))  # first: the gate test_inputs checks for saturation
u = cell.let("u", sp.Max(pre["a"], pre["b"], h))
v = cell.let("v", sp.Min(pre["c"], h / 2))
r = cell.let(
    "r",
    sp.sin(u) * sp.exp(-sp.Abs(v))
    + sp.cos(v) / sp.sqrt(1 + u**2)
    + sp.log(2 + sp.cos(u)) * (1 + v**2) ** sp.Rational(-3, 2),
)
cell.update(h, z * h + (1 - z) * r)
