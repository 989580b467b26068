"""The one table of activation functions: symbol, derivative rule and kernel code.

Every derivative is written in terms of the activation's *output* y, so backward kernels
read stored activations and never re-evaluate exp(): sigmoid' = y(1 - y), tanh' = 1 - y².
At kinks the subgradient is the one PyTorch uses (relu'(0) = 0, hard_sigmoid'(±3) = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp

from . import kernel_math


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
    kernel: Callable  # its code for the jitted helper of the same name (kernel_math.py)


ACTIVATIONS: dict[type, Rule] = {
    sigmoid: Rule(lambda y: y * (1 - y), kernel_math.sigmoid),
    tanh: Rule(lambda y: 1 - y**2, kernel_math.tanh),
    relu: Rule(lambda y: positive(y), kernel_math.relu),
    hard_sigmoid: Rule(lambda y: sp.Rational(1, 6) * inside_unit(y), kernel_math.hard_sigmoid),
    softsign: Rule(lambda y: (1 - sp.Abs(y)) ** 2, kernel_math.softsign),
}

# Kernel code of the indicator functions that appear in derivatives (`real` is the kernel's float
# type); `real(0) * y` keeps a NaN, so a NaN forward never yields a clean-looking gradient.
INDICATORS: dict[type, str] = {
    positive: "real(1) if {y} > real(0) else real(0) * {y}",
    inside_unit: "real(1) if real(0) < {y} < real(1) else real(0) * {y}",
}

SUPPORTED = tuple(cls.__name__ for cls in ACTIVATIONS) + ("identity",)


def derivative_from_output(activation: type, y: sp.Expr) -> sp.Expr:
    """d act(z)/dz expressed with the stored output y = act(z)."""
    return ACTIVATIONS[activation].derivative(y)
