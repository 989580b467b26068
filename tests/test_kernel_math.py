"""The kernels' activation functions (derive/kernel_math.py): accuracy, special values, types."""

import numba
import numpy as np
import pytest

from derive import accuracy, kernel_math

FLOAT32_MAX_ULP = 4  # against the correctly rounded result, over every float32 in range
FLOAT64_MAX_ULP = {"sigmoid": 2.5, "tanh": 1.5}  # measured 2.19 and 1.23 (dense samples)


def jitted(name: str):
    """The helper `name` as a generated module compiled it; helpers no built-in cell uses are
    self-contained and compiled here."""
    try:
        return accuracy.jitted(name)
    except LookupError:
        return numba.njit(getattr(kernel_math, name))


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_float32_within_4_ulp_of_correctly_rounded_everywhere(name):
    result = accuracy.float32_sweep(name, jitted(name), odd=name == "tanh")
    print(f"\n{name} float32: max {result.max_ulp:.0f} ulp at {result.at!r} over {result.count} values")
    assert result.count > 10**8
    assert result.max_ulp <= FLOAT32_MAX_ULP, result


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_float64_at_full_precision(name):
    result = accuracy.float64_sample(name, jitted(name))
    print(f"\n{name} float64: max {result.max_ulp:.2f} ulp at {result.at!r} over {result.count} values")
    assert result.max_ulp <= FLOAT64_MAX_ULP[name], result


@numba.njit
def _apply(function, x):
    out = np.empty_like(x)
    for k in range(x.size):
        out[k] = function(x[k])
    return out


SPECIAL = [0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 3.0, -3.0, 20.0, -20.0, 1e4, -1e4, 1e30, -1e30, np.inf, -np.inf, np.nan]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "hard_sigmoid", "softsign"])
def test_special_values_follow_the_definition(name, dtype):
    """NaN stays NaN, ±inf and ±1e4 give the limits, signed zeros and tiny values are exact;
    the result keeps the argument's dtype."""
    x = np.array(SPECIAL, dtype)
    ours = _apply(jitted(name), x)
    assert ours.dtype == dtype
    z = x.astype(np.longdouble)
    with np.errstate(all="ignore"):
        exact = {
            "sigmoid": lambda: 1 / (1 + np.exp(-z)),
            "tanh": lambda: np.tanh(z),
            "relu": lambda: np.where(z < 0, 0, z),
            "hard_sigmoid": lambda: np.clip(z / 6 + 0.5, 0, 1),
            "softsign": lambda: z / (1 + np.abs(z)),
        }[name]().astype(dtype)
    np.testing.assert_array_max_ulp(ours, exact, maxulp=FLOAT32_MAX_ULP)
    assert np.isnan(ours[-1])


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "exp"])
def test_plain_python_matches_the_jitted_code(name):
    """kernel_math runs as Python (NUMBA_DISABLE_JIT=1) and gives what the kernels compute
    (up to the rounding of the fused multiply-adds the compiled code uses)."""
    x = np.random.default_rng(0).uniform(-30, 30, 50)
    for dtype in (np.float32, np.float64):
        values = x.astype(dtype)
        python = np.array([getattr(kernel_math, name)(v) for v in values])
        assert python.dtype == dtype
        np.testing.assert_array_max_ulp(python, _apply(jitted(name), values), maxulp=2)


def test_exp_over_the_float64_range():
    x = np.concatenate([np.linspace(-746, 710, 100_001), [-745.2, -745.13, 709.78, 709.79]])
    ours = _apply(jitted("exp"), x)
    with np.errstate(over="ignore"):
        exact = np.exp(x.astype(np.longdouble))
        nearest = exact.astype(np.float64)
    finite = np.isfinite(nearest) & (nearest > 0)
    ulp = np.spacing(np.maximum(nearest[finite], np.finfo(np.float64).tiny)).astype(np.longdouble)
    assert np.max(np.abs(ours[finite] - exact[finite]) / ulp) < 1.0
    np.testing.assert_array_equal(ours[~finite], nearest[~finite])
