"""Kernel code of the activation functions, copied verbatim into every generated module.

The functions work for float32 and float64 alike: `real = type(z)` is the argument's type and
every constant is converted to it, so float32 arithmetic stays float32. There is no call into
libm, no loop and only branches that compile to selects, so LLVM vectorizes the kernel loops
they are inlined into. NaN propagates (each function returns z when z is NaN) and ±inf gives
the limits. Accuracy is measured in tests/test_kernel_math.py over every float32 where the
result is not trivially rounded, and over dense float64 samples against extended precision.

They also run as plain Python on NumPy scalars (as under NUMBA_DISABLE_JIT=1). Each function is
self-contained (no module constants), since generate.py copies the source of the ones a cell uses.
"""

import numpy as np


def pow2(k, real):
    """2**k for an integer-valued k in [-1022, 1023], from its float64 bit pattern, as `real`."""
    return real(np.int64((np.int64(k) + 1023) << 52).view(np.float64))


def exp(z):
    """e**z within 1 ulp: z = k ln2 + r with |r| <= ln2/2, e**z = 2**k (1 + p(r))."""
    real = type(z)
    x = z if z > real(-745.2) else real(-745.2)  # beyond these bounds e**z is 0 or inf in float64
    x = x if x < real(709.8) else real(709.8)
    k = np.floor(x * real(1.4426950408889634) + real(0.5))  # round(x / ln2)
    # ln2 = 0.693145751953125 + 1.4286068203094172e-06 (Cody & Waite): the first part has 15
    # significant bits, so k times it is exact and r loses nothing to cancellation.
    r = (x - k * real(0.693145751953125)) - k * real(1.4286068203094172e-06)
    # p = e**r - 1 = r + r**2/2! + ... + r**13/13! by Horner's rule; the remainder is below 5e-18.
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
    """tanh(z): z + z s P(s)/Q(s) with s = z**2 for |z| < 0.625 (rational approximation of
    Cephes, S. L. Moshier: 2.5e-16 relative), else sign(z) (1 - 2/(e**2|z| + 1))."""
    real = type(z)
    s = z * z
    p = (real(-9.64399179425052238628e-1) * s + real(-9.92877231001918586564e1)) * s + real(-1.61468768441708447952e3)
    q = ((s + real(1.12811678491632931402e2)) * s + real(2.23548839060100448583e3)) * s + real(4.84406305325125486048e3)
    small = z + z * s * p / q
    large = real(1) - real(2) / (exp(real(2) * abs(z)) + real(1))
    large = large if z >= real(0) else (-large if z < real(0) else z)
    return small if abs(z) < real(0.625) else large


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
