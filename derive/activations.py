"""The one table of activation functions: symbol, derivative rule and kernel code.

Every derivative is written in terms of the activation's *output* y, so backward kernels
read stored activations and never re-evaluate exp(): sigmoid' = y(1 - y), tanh' = 1 - y².
At kinks the subgradient is the one PyTorch uses (relu'(0) = 0, hard_sigmoid'(±3) = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp


class Activation(sp.Function):
    """An elementwise activation; subclasses are listed in ACTIVATIONS."""

    nargs = 1

    def fdiff(self, argindex=1):
        return ACTIVATIONS[type(self)].derivative(self)


class sigmoid(Activation):
    """σ(z) = 1 / (1 + exp(-z))."""


class tanh(Activation):
    """tanh(z)."""


class relu(Activation):
    """max(z, 0)."""


class hard_sigmoid(Activation):
    """PyTorch's Hardsigmoid: clamp(z/6 + 1/2, 0, 1)."""


class softsign(Activation):
    """z / (1 + |z|)."""


class positive(sp.Function):
    """1 where y > 0, else 0: the derivative of relu written with its output."""

    nargs = 1


class inside_unit(sp.Function):
    """1 where 0 < y < 1, else 0: where hard_sigmoid is not clamped."""

    nargs = 1


def identity(z):
    """The identity activation: returns its argument unchanged (derivative 1)."""
    return z


@dataclass(frozen=True)
class Rule:
    """How an activation differentiates and how a kernel evaluates it."""

    derivative: Callable[[sp.Expr], sp.Expr]  # y -> dy/dz, in terms of the output y
    body: str  # Python expression of the scalar argument `z`, for the jitted helper
    formula: str  # human-readable definition


ACTIVATIONS: dict[type, Rule] = {
    sigmoid: Rule(lambda y: y * (1 - y), "1.0 / (1.0 + math.exp(-z))", "σ(z) = 1/(1+e^-z)"),
    tanh: Rule(lambda y: 1 - y**2, "math.tanh(z)", "tanh(z)"),
    relu: Rule(lambda y: positive(y), "max(z, 0.0)", "max(z, 0)"),  # Numba's max keeps a NaN
    hard_sigmoid: Rule(
        lambda y: sp.Rational(1, 6) * inside_unit(y),
        "min(max(z / 6.0 + 0.5, 0.0), 1.0)",  # keeps a NaN too
        "clamp(z/6 + 1/2, 0, 1)",
    ),
    softsign: Rule(lambda y: (1 - sp.Abs(y)) ** 2, "z / (1.0 + abs(z))", "z/(1+|z|)"),
}

# Kernel code of the indicator functions that appear in derivatives; `0.0 * y` keeps a NaN.
INDICATORS: dict[type, str] = {
    positive: "1.0 if {y} > 0.0 else 0.0 * {y}",
    inside_unit: "1.0 if 0.0 < {y} < 1.0 else 0.0 * {y}",
}

SUPPORTED = tuple(cls.__name__ for cls in ACTIVATIONS) + ("identity",)


def derivative_from_output(activation: type, y: sp.Expr) -> sp.Expr:
    """d act(z)/dz expressed with the stored output y = act(z)."""
    return ACTIVATIONS[activation].derivative(y)
