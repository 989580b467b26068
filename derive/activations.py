"""The one table of the functions of a spec: symbol, derivative rule and kernel code.

Derivatives are written from stored values, so backward kernels read what forward stored and
evaluate no more than these rules say: from the output y where that is exact and stable
(sigmoid' = y(1 - y), tanh' = 1 - y², exp' = y, sqrt' = 1/(2y), elu' = 1 + min(y, 0)), from the
argument z otherwise (softplus' = σ(z), log_sigmoid' = σ(-z), silu' = y + σ(z)(1 - y),
sin' = cos(z)); the forward then keeps z for backward (`derivation._saved`).
At kinks the subgradient is the one PyTorch uses: relu'(0) = 0, hard_sigmoid'(±3) = 0,
abs'(0) = 0, elu'(0) = 1, and max(a, b), min(a, b) pass half the gradient to each argument
when a == b, as torch.maximum and torch.minimum do.

SymPy's own sp.exp, sp.log, sp.sqrt (a power 1/2), sp.Abs, sp.Max, sp.Min, sp.sin and sp.cos
are rewritten to these by `canonical`, which the spec applies to every equation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from derive.runtime import kernel_math


class Activation(sp.Function):
    """An elementwise function of the table; subclasses are listed in ACTIVATIONS."""

    nargs = 1

    def fdiff(self, argindex=1):
        return ACTIVATIONS[type(self)].partials(self, self.args)[argindex - 1]


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


class exp(Activation):
    """e**z."""


class log(Activation):
    """The natural logarithm; log(0) = -inf, NaN below 0."""


class sqrt(Activation):
    """The square root; NaN below 0."""


class abs(Activation):
    """|z|; abs'(0) = 0."""


class max(Activation):
    """max(a, b) of two values, NaN if either is NaN; ties split the gradient in halves."""

    nargs = 2


class min(Activation):
    """min(a, b) of two values, NaN if either is NaN; ties split the gradient in halves."""

    nargs = 2


class softplus(Activation):
    """log(1 + e**z) (torch.nn.functional.softplus without its threshold)."""


class log_sigmoid(Activation):
    """log σ(z) = -softplus(-z)."""


class silu(Activation):
    """z σ(z) (SiLU, swish)."""


class gelu(Activation):
    """GELU in its tanh form, z (1 + tanh(sqrt(2/π) (z + 0.044715 z³)))/2, as torch.nn.GELU(approximate="tanh")."""


class elu(Activation):
    """ELU with alpha 1: z for z > 0, else e**z - 1."""


class sin(Activation):
    """sin(z)."""


class cos(Activation):
    """cos(z)."""


class positive(sp.Function):
    """1 where y > 0, else 0: the derivative of relu written with its output."""

    nargs = 1


class inside_unit(sp.Function):
    """1 where 0 < y < 1, else 0: where hard_sigmoid is not clamped."""

    nargs = 1


class sign(sp.Function):
    """1, 0 or -1 as z is positive, zero or negative: abs'(z), 0 at 0 as torch.sgn."""

    nargs = 1


class step(sp.Function):
    """H(a - b), Heaviside's step with H(0) = 1/2: ∂max(a, b)/∂a, half a gradient at a tie (also
    at a == b == ±inf, where a - b is NaN)."""

    nargs = 2


def identity(z):
    """The identity activation: returns its argument unchanged (derivative 1)."""
    return z


# GELU's tanh form z (1 + tanh(u))/2 = z σ(2u) with 2u = GELU_LINEAR z + GELU_CUBIC z³.
GELU_LINEAR = sp.Float(2 * math.sqrt(2 / math.pi), 17)
GELU_CUBIC = sp.Float(2 * math.sqrt(2 / math.pi) * 0.044715, 17)


def _gelu_derivative(y: sp.Expr, z: sp.Expr) -> sp.Expr:
    """s + 2y(1 - s)u' with s = σ(2u) = gelu(z)/z, from y and z (torch's tanh form, rewritten)."""
    s = sigmoid(z * (GELU_LINEAR + GELU_CUBIC * z**2))
    return s + y * (1 - s) * (GELU_LINEAR + 3 * GELU_CUBIC * z**2)


@dataclass(frozen=True)
class Rule:
    """How a function differentiates and how a kernel evaluates it."""

    derivative: Callable  # (y, *args) -> ∂y/∂arg (a tuple of them for several arguments), from stored values
    kernel: Callable  # its code, a function of kernel_math.py, copied into the generated modules

    def partials(self, y: sp.Expr, args: tuple) -> tuple:
        """∂y/∂args[k] for every argument, written with the output y and the arguments."""
        result = self.derivative(y, *args)
        return result if isinstance(result, tuple) else (result,)


ACTIVATIONS: dict[type, Rule] = {
    sigmoid: Rule(lambda y, z: y * (1 - y), kernel_math.sigmoid),
    tanh: Rule(lambda y, z: 1 - y**2, kernel_math.tanh),
    relu: Rule(lambda y, z: positive(y), kernel_math.relu),
    hard_sigmoid: Rule(lambda y, z: sp.Rational(1, 6) * inside_unit(y), kernel_math.hard_sigmoid),
    softsign: Rule(lambda y, z: (1 - sp.Abs(y)) ** 2, kernel_math.softsign),
    exp: Rule(lambda y, z: y, kernel_math.exp),
    log: Rule(lambda y, z: 1 / z, kernel_math.log),
    sqrt: Rule(lambda y, z: 1 / (2 * y), kernel_math.sqrt),
    abs: Rule(lambda y, z: sign(z), kernel_math.absolute),
    max: Rule(lambda y, a, b: (step(a, b), step(b, a)), kernel_math.maximum),
    min: Rule(lambda y, a, b: (step(b, a), step(a, b)), kernel_math.minimum),
    softplus: Rule(lambda y, z: sigmoid(z), kernel_math.softplus),
    log_sigmoid: Rule(lambda y, z: sigmoid(-z), kernel_math.log_sigmoid),
    silu: Rule(lambda y, z: y + sigmoid(z) * (1 - y), kernel_math.silu),
    gelu: Rule(lambda y, z: _gelu_derivative(y, z), kernel_math.gelu),
    elu: Rule(lambda y, z: 1 + min(y, 0), kernel_math.elu),
    sin: Rule(lambda y, z: cos(z), kernel_math.sin),
    cos: Rule(lambda y, z: -sin(z), kernel_math.cos),
}

# Kernel code of the indicator functions that appear in derivatives, formatted with the printed
# arguments (`real` is the kernel's float type); `real(0) * y` and `a + b` keep a NaN, so a NaN
# forward never yields a clean-looking gradient.
INDICATORS: dict[type, str] = {
    positive: "real(1) if {0} > real(0) else real(0) * {0}",
    inside_unit: "real(1) if real(0) < {0} < real(1) else real(0) * {0}",
    sign: "real(1) if {0} > real(0) else (-real(1) if {0} < real(0) else real(0) * {0})",
    step: "real(1) if {0} > {1} else (real(0.5) if {0} == {1} else (real(0) if {0} < {1} else {0} + {1}))",
}

SUPPORTED = tuple(cls.__name__ for cls in ACTIVATIONS) + ("identity",)

# SymPy's spellings of functions of the table (sp.sqrt(z) is the power z**(1/2): see `canonical`).
SYMPY_SPELLINGS: dict[type, type] = {
    sp.exp: exp,
    sp.log: log,
    sp.Abs: abs,
    sp.Max: max,
    sp.Min: min,
    sp.sin: sin,
    sp.cos: cos,
}


def canonical(expr: sp.Expr) -> sp.Expr:
    """`expr` with SymPy's spellings replaced by the table's functions: sp.exp → exp, sp.Max(a, b, c)
    → max(max(a, b), c), z**(n/2) → sqrt(z)**n; constant calls (sp.log(2)) become numbers."""

    def rewrite(e):
        if isinstance(e, sp.Pow) and e.exp.is_Rational and e.exp.q == 2:
            return sqrt(e.base) ** e.exp.p
        if type(e) in SYMPY_SPELLINGS:
            function = SYMPY_SPELLINGS[type(e)]
            args = list(e.args)
            result = function(*args[: function.nargs.args[0]])
            for more in args[function.nargs.args[0] :]:  # Max and Min take any number of arguments
                result = function(result, more)
            return result
        return e

    if not isinstance(expr, sp.Basic):
        return expr
    expr = expr.replace(
        lambda e: isinstance(e, sp.Pow) and e.exp.is_Rational and e.exp.q == 2 or type(e) in SYMPY_SPELLINGS, rewrite
    )
    return expr.replace(lambda e: isinstance(e, Activation) and not e.free_symbols, lambda e: sp.Float(_evaluate(e)))


def _evaluate(call: sp.Expr) -> float:
    """A table function applied to numbers, in float64 (its kernel run as Python)."""
    import numpy as np

    args = [np.float64(float(a)) for a in call.args]
    return float(ACTIVATIONS[type(call)].kernel(*args))


def kernel_name(function: type) -> str:
    """Name of the function's jitted helper in a generated module (`absolute` for abs)."""
    return ACTIVATIONS[function].kernel.__name__
