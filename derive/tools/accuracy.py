"""Accuracy of the kernels' activation functions (kernel_math.py), in ulps.

float32: every float32 of the range where the result is not trivially rounded (checked
exhaustively), against the correctly rounded result (float64 math rounded to float32).
float64: dense samples against extended precision (np.longdouble, 64-bit mantissa on x86-64).
The functions measured are kernel_math's jitted functions, which the kernels inline.
Used by tests/test_kernel_math.py (which asserts bounds) and by `python -m derive bench`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numba
import numpy as np

from derive.runtime import kernel_math

# Positive float32 magnitudes swept exhaustively, per function (both signs where not odd):
# below them the result rounds to the value at 0 (sigmoid 1/2) or to z itself (tanh, with
# margin); above them to the limit (sigmoid 1 or 0, tanh ±1), underflows (gelu's negative tail)
# or repeats per binade (log: four binades around 1, where its argument reduction is hardest).
# sin and cos are exhaustive up to 1.6e6, the end of their exact argument reduction (kernel_math.quarter_turns).
FLOAT32_RANGES = {
    "sigmoid": (2.0**-27, 105.0),
    "tanh": (2.0**-20, 9.5),
    "log": (0.25, 4.0),
    "softplus": (2.0**-27, 105.0),
    "log_sigmoid": (2.0**-27, 105.0),
    "silu": (2.0**-27, 105.0),
    "gelu": (2.0**-27, 12.0),
    "elu": (2.0**-27, 105.0),
    "sin": (2.0**-12, 1.6e6),
    "cos": (2.0**-12, 1.6e6),
}
EXACT_REDUCTION_LIMIT = 1.6e6  # sin, cos: beyond, only |result| <= 1 is promised
FLOAT64_MAX_MAGNITUDE = {"sin": 1.6e6, "cos": 1.6e6}  # samples above it are left out
GELU_2U = (2 * math.sqrt(2 / math.pi), 2 * math.sqrt(2 / math.pi) * 0.044715)


@numba.njit(cache=True)
def _reference_sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@numba.njit(cache=True)
def _reference_tanh(x):
    return math.tanh(x)


@numba.njit(cache=True)
def _reference_log(x):
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


@numba.njit(cache=True)
def _reference_softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@numba.njit(cache=True)
def _reference_log_sigmoid(x):
    return -(max(-x, 0.0) + math.log1p(math.exp(-abs(x))))


@numba.njit(cache=True)
def _reference_silu(x):
    return x / (1.0 + math.exp(-x))


@numba.njit(cache=True)
def _reference_gelu(x):
    return x / (1.0 + math.exp(-x * (1.5957691216057308 + 0.07135481627260025 * x * x)))


@numba.njit(cache=True)
def _reference_elu(x):
    return x if x > 0 else math.expm1(x)


@numba.njit(cache=True)
def _reference_sin(x):
    return math.sin(x)


@numba.njit(cache=True)
def _reference_cos(x):
    return math.cos(x)


REFERENCES = {
    "sigmoid": _reference_sigmoid,
    "tanh": _reference_tanh,
    "log": _reference_log,
    "softplus": _reference_softplus,
    "log_sigmoid": _reference_log_sigmoid,
    "silu": _reference_silu,
    "gelu": _reference_gelu,
    "elu": _reference_elu,
    "sin": _reference_sin,
    "cos": _reference_cos,
}
ODD = {"tanh", "sin", "cos"}  # one sign is enough (cos is even)


@numba.njit(cache=True)
def _ulps32(a, b):
    """Number of float32 values from a to b (NaN equal to NaN only)."""
    if a != a or b != b:
        return 0 if (a != a and b != b) else 2**32
    ia, ib = np.int64(np.float32(a).view(np.int32)), np.int64(np.float32(b).view(np.int32))
    ia = ia if ia >= 0 else -(ia & 0x7FFFFFFF)
    ib = ib if ib >= 0 else -(ib & 0x7FFFFFFF)
    return abs(ia - ib)


# Not cached, nor `_apply`: their arguments are jitted functions, whose Numba type names the function
# object of one process, so every process added an entry to the cache's index (146 files after a few
# weeks) and saving the index failed once an entry's function had been freed ("underlying object has
# vanished", which ended a benchmark run at its accuracy step).
@numba.njit
def _sweep32(function, reference, first, last, step, sign):
    """Worst ulp distance over float32 bit patterns first..last (inclusive) by `step`, times sign."""
    worst, at, count = 0, np.float32(0), 0
    for bits in range(first, last + 1, step):
        x = np.float32(sign) * np.int32(bits).view(np.float32)
        error = _ulps32(function(x), np.float32(reference(np.float64(x))))
        count += 1
        if error > worst:
            worst, at = error, x
    return worst, at, count


@dataclass
class Accuracy:
    """Worst error in ulps, where it occurred, and how many arguments were checked."""

    function: str
    dtype: str
    max_ulp: float
    at: float
    count: int


def _bits32(value: float) -> int:
    return int(np.float32(value).view(np.int32))


def float32_sweep(name: str, function, odd: bool = False) -> Accuracy:
    """Every float32 with magnitude in FLOAT32_RANGES[name] (both signs unless `odd`), plus
    every 97th float32 elsewhere (tiny magnitudes, subnormals, saturation, inf and NaN)."""
    low, high = (_bits32(v) for v in FLOAT32_RANGES[name])
    reference = REFERENCES[name]
    results = []
    for sign in (1.0,) if odd else (1.0, -1.0):
        results.append(_sweep32(function, reference, low, high, 1, sign))
        results.append(_sweep32(function, reference, 0, low, 97, sign))
        if FLOAT32_RANGES[name][1] < EXACT_REDUCTION_LIMIT:
            results.append(_sweep32(function, reference, high, 0x7FC00000, 97, sign))
    worst, at, _ = max(results, key=lambda r: r[0])
    return Accuracy(name, "float32", float(worst), float(at), sum(r[2] for r in results))


@numba.njit
def _apply(function, x, out):
    for k in range(x.size):
        out[k] = function(x[k])


def _reference64(name: str, x: np.ndarray) -> np.ndarray:
    z = x.astype(np.longdouble)
    with np.errstate(all="ignore"):
        softplus = np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
        negative_softplus = np.maximum(-z, 0) + np.log1p(np.exp(-np.abs(z)))
        linear, cubic = (
            np.longdouble(2) * np.sqrt(np.longdouble(2) / np.longdouble(np.pi)) * np.longdouble(c)
            for c in ("1", "0.044715")
        )
        return {
            "sigmoid": lambda: 1 / (1 + np.exp(-z)),
            "tanh": lambda: np.tanh(z),
            "log": lambda: np.log(z),
            "softplus": lambda: softplus,
            "log_sigmoid": lambda: -negative_softplus,
            "silu": lambda: z / (1 + np.exp(-z)),
            "gelu": lambda: z / (1 + np.exp(-z * (linear + cubic * z * z))),
            "elu": lambda: np.where(z > 0, z, np.expm1(z)),
            "sin": lambda: np.sin(z),
            "cos": lambda: np.cos(z),
        }[name]()


def float64_sample(name: str, function, n: int = 1_000_000, seed: int = 0) -> Accuracy:
    """n log-uniform magnitudes from 1e-300 to 750 and n uniform values in [-40, 40], both signs,
    against np.longdouble (subnormal results count in units of the subnormal spacing)."""
    x, errors, _ = float64_errors(name, function, n, seed)
    k = int(np.argmax(errors))
    return Accuracy(name, "float64", float(errors[k]), float(x[k]), x.size)


def float64_errors(name: str, function, n: int = 1_000_000, seed: int = 0):
    """The samples of `float64_sample`, the error in ulps at each (0 where both are NaN or the same
    infinity) and the extended-precision results."""
    rng = np.random.default_rng(seed)
    magnitudes = 10.0 ** rng.uniform(-300, math.log10(FLOAT64_MAX_MAGNITUDE.get(name, 750)), n)
    x = np.concatenate([magnitudes * rng.choice([-1.0, 1.0], n), rng.uniform(-40, 40, n)])
    ours = np.empty_like(x)
    _apply(function, x, ours)
    exact = _reference64(name, x)
    nearest = exact.astype(np.float64)
    ulp = np.spacing(np.maximum(np.abs(nearest), np.finfo(np.float64).tiny)).astype(np.longdouble)
    with np.errstate(invalid="ignore"):
        errors = np.abs(ours.astype(np.longdouble) - exact) / ulp
    both_nan = np.isnan(ours) & np.isnan(nearest)
    same_infinity = np.isinf(nearest) & (ours == nearest)
    errors = np.where(both_nan | same_infinity, 0, np.where(np.isnan(errors), np.inf, errors))
    return x, errors, exact


def jitted(name: str):
    """The kernel_math function `name`, jitted as the kernels inline it."""
    function = getattr(kernel_math, name, None)
    if not isinstance(function, numba.core.registry.CPUDispatcher):
        raise LookupError(f"kernel_math has no jitted function {name!r}")
    return function


def report() -> list[dict]:
    """Worst errors of sigmoid and tanh, float32 (every value in range) and float64 (samples)."""
    results = []
    for name in ("sigmoid", "tanh"):
        results.append(float32_sweep(name, jitted(name), odd=name in ODD))
        results.append(float64_sample(name, jitted(name)))
    return [asdict(r) for r in results]
