"""The function table: kernel code, derivative rules, subgradients at kinks and IEEE behaviour, entry by entry."""

import math

import numpy as np
import pytest
import sympy as sp

from derive import activations
from derive.activations import ACTIVATIONS, INDICATORS, canonical

TORCH = {  # name -> torch function of the same arguments
    "sigmoid": lambda t: t.sigmoid,
    "tanh": lambda t: t.tanh,
    "relu": lambda t: t.relu,
    "hard_sigmoid": lambda t: t.nn.functional.hardsigmoid,
    "softsign": lambda t: t.nn.functional.softsign,
    "exp": lambda t: t.exp,
    "log": lambda t: t.log,
    "sqrt": lambda t: t.sqrt,
    "abs": lambda t: t.abs,
    "max": lambda t: t.maximum,
    "min": lambda t: t.minimum,
    "softplus": lambda t: t.nn.functional.softplus,
    "log_sigmoid": lambda t: t.nn.functional.logsigmoid,
    "silu": lambda t: t.nn.functional.silu,
    "gelu": lambda t: lambda z: t.nn.functional.gelu(z, approximate="tanh"),
    "elu": lambda t: t.nn.functional.elu,
    "sin": lambda t: t.sin,
    "cos": lambda t: t.cos,
}
FUNCTIONS = list(ACTIVATIONS)
ONE_ARGUMENT = [f for f in FUNCTIONS if f.nargs.args[0] == 1]


def evaluate(kernel, *z: float) -> float:
    """A function's kernel code (a function of kernel_math, or an indicator's code string) on float64
    scalars, run as plain Python, as kernel_math's functions are written to allow."""
    z = [np.float64(v) for v in z]
    with np.errstate(all="ignore"):
        if callable(kernel):
            return float(kernel(*z))
        return float(
            eval(
                kernel.format(*[f"z{k}" for k in range(len(z))]),
                {"real": np.float64},
                {f"z{k}": v for k, v in enumerate(z)},
            )
        )


def numeric(expr: sp.Expr) -> float:
    """A derivative rule at numbers: table functions and indicators run as their kernels."""

    def run(e):
        code = ACTIVATIONS[type(e)].kernel if type(e) in ACTIVATIONS else INDICATORS[type(e)]
        return sp.Float(evaluate(code, *[float(a) for a in e.args]))

    value = expr.replace(lambda e: (type(e) in ACTIVATIONS or type(e) in INDICATORS) and not e.free_symbols, run)
    return math.inf if value == sp.zoo else float(value)  # 1/0: the kernels' IEEE division gives inf


def partials_at(function, *z: float) -> list[float]:
    rule = ACTIVATIONS[function]
    y = evaluate(rule.kernel, *z)
    return [numeric(p) for p in rule.partials(sp.Float(y), tuple(sp.Float(v) for v in z))]


POINTS = (-4.0, -2.5, -0.7, 0.3, 1.9, 3.5)


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
def test_nan_propagates_and_huge_inputs_stay_finite_or_give_the_limit(function):
    kernel = ACTIVATIONS[function].kernel
    arity = function.nargs.args[0]
    assert math.isnan(evaluate(kernel, *[math.nan] * arity))
    if arity == 2:
        assert math.isnan(evaluate(kernel, math.nan, 1.0)) and math.isnan(evaluate(kernel, 1.0, math.nan))
    for z in (-1e4, 1e4, -1e300, 1e300):
        value = evaluate(kernel, *[z] * arity)
        if function.__name__ in ("exp", "softplus", "log_sigmoid") and abs(z) > 1e3:
            assert value in (0.0, -0.0, math.inf, -math.inf, z, -z), (function, z, value)  # overflow as e**z
        elif function.__name__ in ("log", "sqrt") and z < 0:
            assert math.isnan(value)
        else:
            assert math.isfinite(value) or (function.__name__ in ("exp",) and z > 0)


@pytest.mark.parametrize("function", ONE_ARGUMENT, ids=lambda f: f.__name__)
def test_derivative_rule_matches_central_differences(function):
    """The rule, written with the stored output y and the argument z, equals d f(z)/dz away from kinks."""
    kernel = ACTIVATIONS[function].kernel
    points = [abs(p) for p in POINTS] if function in (activations.log, activations.sqrt) else POINTS
    for point in points:
        (rule,) = partials_at(function, point)
        difference = (evaluate(kernel, point + 1e-6) - evaluate(kernel, point - 1e-6)) / 2e-6
        assert rule == pytest.approx(difference, abs=1e-6), (function.__name__, point)


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
def test_kernel_and_derivative_match_torch_autograd(torch, function):
    """Values against torch (float64) on a grid, the rule against torch's gradient at the same points
    (kinks and ties included: relu'(0) = 0, abs'(0) = 0, elu'(0) = 1, max/min ties give halves).
    softplus: torch returns z itself above its threshold 20; the grid stays below it."""
    name = function.__name__
    grid = np.linspace(-8, 8, 161)  # contains 0 and the integers
    if name in ("log", "sqrt"):
        grid = np.concatenate([np.linspace(1e-3, 8, 160), [0.0, -1.0]])
    args = (grid, np.round(grid[::-1] / 2) * 2) if function.nargs.args[0] == 2 else (grid,)  # many ties
    tensors = [torch.tensor(a, requires_grad=True) for a in args]
    reference = TORCH[name](torch)(*tensors)
    reference.sum().backward()
    ours = np.array([evaluate(ACTIVATIONS[function].kernel, *point) for point in zip(*args)])
    np.testing.assert_allclose(ours, reference.detach().numpy(), rtol=1e-12, atol=1e-15)
    rules = np.array([partials_at(function, *point) for point in zip(*args)])
    rtol = 1e-7 if name == "hard_sigmoid" else 1e-12  # torch's hardsigmoid backward uses 1/6 in float32
    atol = 1e-10 if name == "gelu" else 1e-15  # torch's 1 + tanh(u) cancels in gelu's negative tail
    for k, t in enumerate(tensors):
        np.testing.assert_allclose(rules[:, k], t.grad.numpy(), rtol=rtol, atol=atol, err_msg=f"{name} argument {k}")


@pytest.mark.parametrize("indicator", list(INDICATORS), ids=lambda i: i.__name__)
def test_derivative_indicators_keep_nan(indicator):
    """relu'(NaN) must be NaN, not 0, or a NaN forward would give a clean-looking gradient."""
    code = INDICATORS[indicator]
    arity = indicator.nargs.args[0]
    assert math.isnan(evaluate(code, *[math.nan] * arity))
    if arity == 1:
        assert evaluate(code, 0.5) == 1.0 and evaluate(code, -0.5) in (0.0, -1.0)
    else:
        assert evaluate(code, 1.0, 0.0) == 1.0 and evaluate(code, 0.0, 1.0) == 0.0 and evaluate(code, 2.0, 2.0) == 0.5
        assert evaluate(code, math.inf, math.inf) == 0.5 and evaluate(code, -math.inf, 1.0) == 0.0


def test_sympy_spellings_become_the_table_functions():
    a, b, c = sp.symbols("a b c", real=True)
    expr = canonical(
        sp.exp(a)
        + sp.log(b)
        + sp.Abs(c)
        + sp.sin(a) * sp.cos(b)
        + sp.Max(a, b, c)
        + sp.Min(a, b)
        + sp.sqrt(1 + a**2)
        + (1 + b**2) ** sp.Rational(-3, 2)
    )
    calls = {type(call) for call in expr.atoms(sp.Function)}
    assert calls == {
        activations.exp,
        activations.log,
        activations.abs,
        activations.sin,
        activations.cos,
        activations.max,
        activations.min,
        activations.sqrt,
    }
    assert not any(isinstance(p, sp.Pow) and not p.exp.is_Integer for p in expr.atoms(sp.Pow))
    assert float(canonical(sp.log(2) * a).coeff(a)) == pytest.approx(math.log(2))  # a constant call is a number


def test_every_function_is_importable_by_its_name():
    for name in (
        "exp",
        "log",
        "sqrt",
        "abs",
        "max",
        "min",
        "softplus",
        "log_sigmoid",
        "silu",
        "gelu",
        "elu",
        "sin",
        "cos",
    ):
        assert getattr(activations, name) in ACTIVATIONS and name in activations.SUPPORTED
