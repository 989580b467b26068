"""Kernel code of the activation functions, copied verbatim into every generated module.

The functions work for float32 and float64: `real = type(z)` is the argument's type and every
constant is converted to it, so float32 arithmetic stays float32; `real is np.float32` selects
shorter polynomials for float32 (Numba decides it at compile time). There is no call into
libm, no loop and only branches that compile to selects, so LLVM vectorizes the kernel loops
they are inlined into. NaN propagates (each function returns z when z is NaN) and ±inf gives
the limits. Accuracy is measured in tests/test_kernel_math.py over every float32 where the
result is not trivially rounded, and over dense float64 samples against extended precision.

They also run as plain Python on NumPy scalars (as under NUMBA_DISABLE_JIT=1). Each function is
self-contained (no module constants), since generate.py copies the source of the ones a cell uses.
"""

import numpy as np


def pow2(k, real):
    """2**k for an integer-valued k in the normal exponent range of `real`, from its bit pattern."""
    if real is np.float32:
        return np.int32((np.int32(k) + 127) << 23).view(np.float32)
    return real(np.int64((np.int64(k) + 1023) << 52).view(np.float64))


def exp(z):
    """e**z within 1 ulp: z = k ln2 + r with |r| <= ln2/2, e**z = 2**k (1 + p(r))."""
    real = type(z)
    single = real is np.float32
    lowest, highest = (real(-104.0), real(89.0)) if single else (real(-745.2), real(709.8))
    x = z if z > lowest else lowest  # beyond these bounds e**z rounds to 0 or overflows
    x = x if x < highest else highest
    k = np.floor(x * real(1.4426950408889634) + real(0.5))  # round(x / ln2)
    # ln2 = 0.693145751953125 + 1.4286068203094172e-06 (Cody & Waite): the first part has 15
    # significant bits, so k times it is exact and r loses nothing to cancellation.
    r = (x - k * real(0.693145751953125)) - k * real(1.4286068203094172e-06)
    # p = e**r - 1 = r + r**2/2! + ... + r**n/n! by Horner's rule, n = 7 for float32 and 13 for
    # float64: the remainders, below 6e-9 and 5e-18, are a fraction of an ulp.
    if single:
        p = real(1 / 5040)
    else:
        p = real(1 / 6227020800)
        p = p * r + real(1 / 479001600)
        p = p * r + real(1 / 39916800)
        p = p * r + real(1 / 3628800)
        p = p * r + real(1 / 362880)
        p = p * r + real(1 / 40320)
        p = p * r + real(1 / 5040)
    p = p * r + real(1 / 720)
    p = p * r + real(1 / 120)
    p = p * r + real(1 / 24)
    p = p * r + real(1 / 6)
    p = p * r + real(1 / 2)
    p = p * r + real(1)
    p = p * r
    # 2**k in two exact factors: |k| may exceed the exponent range near overflow and underflow.
    half_k = np.floor(k * real(0.5))
    y = (real(1) + p) * pow2(half_k, real) * pow2(k - half_k, real)
    return y if z == z else z


def sigmoid(z):
    """1/(1 + e**-z), as 1/(1 + e) for z >= 0 and e/(1 + e) for z < 0, with e = e**-|z| <= 1."""
    real = type(z)
    e = exp(-abs(z))
    numerator = real(1) if z >= real(0) else e
    return numerator / (real(1) + e) if z == z else z


def tanh(z):
    """tanh(z) = sign(z) (1 - 2/(e**2|z| + 1)) for |z| >= 0.625; below, where that formula
    cancels, z + z s P(s) with s = z**2: a polynomial for float32, a rational function for
    float64 (both from Cephes, S. L. Moshier; 1e-7 and 2.5e-16 relative)."""
    real = type(z)
    s = z * z
    near_zero = abs(z) < real(0.625)
    e = exp(real(2) * abs(z))
    if real is np.float32:
        p = (((real(-5.70498872745e-3) * s + real(2.06390887954e-2)) * s + real(-5.37397155531e-2)) * s
             + real(1.33314422036e-1)) * s + real(-3.33332819422e-1)
        small = z + z * s * p
        large = real(1) - real(2) / (e + real(1))
    else:  # one division serves both formulas
        p = (real(-9.64399179425052238628e-1) * s + real(-9.92877231001918586564e1)) * s + real(-1.61468768441708447952e3)
        q = ((s + real(1.12811678491632931402e2)) * s + real(2.23548839060100448583e3)) * s + real(4.84406305325125486048e3)
        ratio = (z * s * p if near_zero else real(2)) / (q if near_zero else e + real(1))
        small = z + ratio
        large = real(1) - ratio
    large = large if z >= real(0) else (-large if z < real(0) else z)
    return small if near_zero else large


def relu(z):
    """max(z, 0), NaN kept."""
    real = type(z)
    return real(0) if z < real(0) else z


def hard_sigmoid(z):
    """PyTorch's Hardsigmoid: clamp(z/6 + 1/2, 0, 1), NaN kept."""
    real = type(z)
    t = z / real(6) + real(0.5)
    return real(0) if t < real(0) else (real(1) if t > real(1) else t)


def softsign(z):
    """z/(1 + |z|)."""
    real = type(z)
    return z / (real(1) + abs(z))
