"""The activation table: kernel code, derivative rules and IEEE behaviour, entry by entry."""

import math

import numpy as np
import pytest
import sympy as sp

from derive.activations import ACTIVATIONS, INDICATORS

TORCH_NAMES = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "hard_sigmoid": "hardsigmoid", "softsign": "softsign"}


def evaluate(kernel, z: float) -> float:
    """An activation's kernel code (a function of kernel_math, or an indicator's code string) on a
    float64 scalar, run as plain Python, as kernel_math's functions are written to allow."""
    z = np.float64(z)
    with np.errstate(all="ignore"):
        if callable(kernel):
            return float(kernel(z))
        return float(eval(kernel, {"real": np.float64}, {"z": z}))


@pytest.mark.parametrize("activation", list(ACTIVATIONS), ids=lambda a: a.__name__)
def test_nan_propagates_and_huge_inputs_stay_finite(activation):
    kernel = ACTIVATIONS[activation].kernel
    assert math.isnan(evaluate(kernel, math.nan))
    for z in (-1e4, 1e4, -1e300, 1e300):
        assert math.isfinite(evaluate(kernel, z))


@pytest.mark.parametrize("activation", list(ACTIVATIONS), ids=lambda a: a.__name__)
def test_derivative_from_output_matches_sympy(activation):
    """The rule written with the output y equals d act(z)/dz away from kinks."""
    rule = ACTIVATIONS[activation]
    z = sp.Symbol("z", real=True)
    for point in (-4.0, -2.5, -0.7, 0.3, 1.9, 3.5):
        y = evaluate(rule.kernel, point)
        from_output = rule.derivative(sp.Float(y))
        from_output = float(from_output.replace(
            lambda e: type(e) in INDICATORS,
            lambda e: sp.Float(evaluate(INDICATORS[type(e)].format(y="z"), float(e.args[0])))))
        numeric = (evaluate(rule.kernel, point + 1e-6) - evaluate(rule.kernel, point - 1e-6)) / 2e-6
        assert from_output == pytest.approx(numeric, abs=1e-6), (activation.__name__, point)


@pytest.mark.parametrize("activation", list(ACTIVATIONS), ids=lambda a: a.__name__)
def test_matches_torch(torch, activation):
    z = np.linspace(-8, 8, 1601)
    ours = np.array([evaluate(ACTIVATIONS[activation].kernel, v) for v in z])
    reference = getattr(torch.nn.functional, TORCH_NAMES[activation.__name__])(torch.tensor(z)).numpy()
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("indicator", list(INDICATORS), ids=lambda i: i.__name__)
def test_derivative_indicators_keep_nan(indicator):
    """relu'(NaN) must be NaN, not 0, or a NaN forward would give a clean-looking gradient."""
    code = INDICATORS[indicator].format(y="z")
    assert math.isnan(evaluate(code, math.nan))
    assert evaluate(code, 0.5) == 1.0 and evaluate(code, -0.5) == 0.0
