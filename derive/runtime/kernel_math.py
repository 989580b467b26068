"""The activation functions as the kernels compute them; generated modules import them from here.

The functions work for float32 and float64: `real = type(z)` is the argument's type and every
constant is converted to it, so float32 arithmetic stays float32; `real is np.float32` selects
shorter polynomials for float32 (Numba decides it at compile time). There is no call into
libm, no loop and only branches that compile to selects, so LLVM vectorizes the kernel loops
they are inlined into. log, silu, gelu, sin and cos compute a float32 argument in float64 and round
once (the conversions vectorize too). NaN propagates (each function returns NaN when z is NaN) and
±inf gives the limits (NaN for sin and cos, as IEEE says). Accuracy is measured in
tests/test_kernel_math.py over every float32 where the result is not trivially rounded, and over
dense float64 samples against extended precision.

Each function is jitted with `forceinline=True`: compiled once, and marked `alwaysinline` for LLVM,
which inlines it into every kernel that calls it before vectorizing the kernel's loops (left to its
cost model, LLVM kept a second call of `tanh` as a call, and the loop scalar). Numba's own inlining
(`inline="always"`, at the level of its IR) gave the same code at about 1 s more compile per kernel.
Numba keys a cached kernel on the kernel's own file only, so this file's bytes enter every generated
module's header hash (`derive.write.generate.KERNEL_SUPPORT`): a change here changes the generated
text and refreshes the kernels' caches. Under NUMBA_DISABLE_JIT=1 the functions run as plain Python on NumPy scalars.
"""

import numpy as np

from .compiler import jit


def _inlined(function):
    """Jitted as the kernels call it: inlined into the caller by LLVM, with the kernels' `fastmath` and
    error model (see `derive.runtime.compiler`)."""
    return jit(function, forceinline=True, fastmath={"contract"}, error_model="numpy")


@_inlined
def pow2(k, real):
    """2**k for an integer-valued k in the normal exponent range of `real`, from its bit pattern."""
    if real is np.float32:
        return np.int32((np.int32(k) + 127) << 23).view(np.float32)
    return real(np.int64((np.int64(k) + 1023) << 52).view(np.float64))


@_inlined
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


@_inlined
def sigmoid(z):
    """1/(1 + e**-z), as 1/(1 + e) for z >= 0 and e/(1 + e) for z < 0, with e = e**-|z| <= 1."""
    real = type(z)
    e = exp(-abs(z))
    numerator = real(1) if z >= real(0) else e
    return numerator / (real(1) + e) if z == z else z


@_inlined
def tanh(z):
    """tanh(z) = sign(z) (1 - 2/(e**2|z| + 1)) for |z| >= 0.625; below, where that formula
    cancels, z + z s P(s) with s = z**2: a polynomial for float32, a rational function for
    float64 (both from Cephes, S. L. Moshier; 1e-7 and 2.5e-16 relative)."""
    real = type(z)
    s = z * z
    near_zero = abs(z) < real(0.625)
    e = exp(real(2) * abs(z))
    if real is np.float32:
        p = (
            ((real(-5.70498872745e-3) * s + real(2.06390887954e-2)) * s + real(-5.37397155531e-2)) * s
            + real(1.33314422036e-1)
        ) * s + real(-3.33332819422e-1)
        small = z + z * s * p
        large = real(1) - real(2) / (e + real(1))
    else:  # one division serves both formulas
        p = (real(-9.64399179425052238628e-1) * s + real(-9.92877231001918586564e1)) * s + real(
            -1.61468768441708447952e3
        )
        q = ((s + real(1.12811678491632931402e2)) * s + real(2.23548839060100448583e3)) * s + real(
            4.84406305325125486048e3
        )
        ratio = (z * s * p if near_zero else real(2)) / (q if near_zero else e + real(1))
        small = z + ratio
        large = real(1) - ratio
    large = large if z >= real(0) else (-large if z < real(0) else z)
    return small if near_zero else large


@_inlined
def relu(z):
    """max(z, 0), NaN kept."""
    real = type(z)
    return real(0) if z < real(0) else z


@_inlined
def hard_sigmoid(z):
    """PyTorch's Hardsigmoid: clamp(z/6 + 1/2, 0, 1), NaN kept."""
    real = type(z)
    t = z / real(6) + real(0.5)
    return real(0) if t < real(0) else (real(1) if t > real(1) else t)


@_inlined
def softsign(z):
    """z/(1 + |z|)."""
    real = type(z)
    return z / (real(1) + abs(z))


@_inlined
def log(z):
    """Natural logarithm within 1 ulp (fdlibm, as in musl), in float64 (a float32 rounds it once):
    z = 2**k m with sqrt(1/2) <= m < sqrt(2), f = m - 1, s = f/(2 + f),
    log z = k ln2 + f - f²/2 + s (f²/2 + R(s²)). Subnormals are scaled by 2**54 first;
    log(±0) = -inf, log(z < 0) = NaN, log(inf) = inf."""
    real = type(z)
    t = np.float64(z)
    small = t < 2.2250738585072014e-308
    x = np.float64(t * (18014398509481984.0 if small else 1.0))  # (Numba views only an explicit dtype)
    bits = x.view(np.int64) + np.int64((0x3FF00000 - 0x3FE6A09E) << 32)
    k = np.float64((bits >> 52) - 1023) - (54.0 if small else 0.0)
    f = np.int64((bits & 0x000FFFFFFFFFFFFF) + (0x3FE6A09E << 32)).view(np.float64) - 1.0
    s = f / (2.0 + f)
    u = s * s
    w = u * u
    r = u * (
        6.666666666666735130e-01
        + w * (2.857142874366239149e-01 + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01))
    ) + w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01))
    half_f2 = 0.5 * f * f
    y = real(s * (half_f2 + r) + k * 1.90821492927058770002e-10 - half_f2 + f + k * 6.93147180369123816490e-01)
    infinity = real(np.inf)
    finite_positive = (z > real(0)) & (z < infinity)
    return y if finite_positive else (-infinity if z == real(0) else (z if z > real(0) else real(np.nan)))


@_inlined
def log1p(z):
    """log(1 + z) for z >= -1 with u = 1 + z rounded: log(u) + (z - (u - 1))/u corrects the rounding
    of u (Goldberg), so tiny z give z; accurate to about 1 ulp more than log."""
    real = type(z)
    u = real(1) + z
    correction = (z - (u - real(1))) / u
    return log(u) + (correction if u < real(np.inf) else real(0))


@_inlined
def sqrt(z):
    """The correctly rounded square root (one instruction, vectorized); sqrt(z < 0) = NaN."""
    return np.sqrt(z)


@_inlined
def absolute(z):
    """|z| (one instruction)."""
    return abs(z)


@_inlined
def maximum(a, b):
    """The larger of a and b, NaN if either is NaN (as torch.maximum)."""
    return a if a > b else (b if b >= a else a + b)


@_inlined
def minimum(a, b):
    """The smaller of a and b, NaN if either is NaN (as torch.minimum)."""
    return a if a < b else (b if b <= a else a + b)


@_inlined
def softplus(z):
    """log(1 + e**z) = max(z, 0) + log1p(e**-|z|): no overflow, no cancellation (the exact function,
    where torch.nn.functional.softplus returns z itself above its threshold 20)."""
    real = type(z)
    return (z if z > real(0) else real(0)) + log1p(exp(-abs(z)))


@_inlined
def log_sigmoid(z):
    """log σ(z) = -softplus(-z), never log(σ(z)) (which is -inf once σ(z) underflows)."""
    return -softplus(-z)


@_inlined
def silu(z):
    """z σ(z); float32 is computed in float64, so a subnormal result is still rounded once (z times
    a subnormal σ(z) would be |z|/2 subnormal spacings off); silu(-inf) = 0, the limit (torch gives NaN)."""
    real = type(z)
    t = np.float64(z)
    return real(0) if z == real(-np.inf) else real(t * sigmoid(t))


@_inlined
def gelu(z):
    """GELU, tanh form (torch.nn.GELU(approximate="tanh")): z (1 + tanh(u))/2 = z σ(2u), u =
    sqrt(2/π)(z + 0.044715 z³); σ keeps the negative tail accurate, where 1 + tanh(u) cancels.
    float32 is computed in float64 (σ(2u) magnifies the rounding of 2u by |2u| in the tail);
    gelu(-inf) = 0, the limit (torch gives NaN)."""
    real = type(z)
    t = np.float64(z)
    w = t * (1.5957691216057308 + 0.07135481627260025 * (t * t))  # 2u = 2 sqrt(2/π) (t + 0.044715 t³)
    y = real(t * sigmoid(w))
    return real(0) if z == real(-np.inf) else y


@_inlined
def elu(z):
    """ELU with alpha 1 (torch.nn.functional.elu): z for z > 0, else e**z - 1 = 2t/(1 - t) with
    t = tanh(z/2), which has no cancellation for small |z| (no expm1 needed)."""
    real = type(z)
    t = tanh(real(0.5) * z)
    return z if z >= real(0) else real(2) * t / (real(1) - t)  # elu(-0) = -0


@_inlined
def quarter_turns(z):
    """z = k π/2 + r with k an integer (as a float64) and |r| <= π/4, in float64: π/2 in three parts
    of 33 bits (fdlibm) makes k times each part exact for |k| < 2**20, i.e. |z| < 1.6e6. Beyond,
    r has an absolute error of about |z| 2**-53 (no Payne-Hanek reduction: pre-activations that
    large have no meaningful phase) and is clamped to |r| <= 0.8, so sin and cos stay in [-1, 1].
    Returns (k, r)."""
    t = np.float64(z)
    k = np.floor(t * 0.6366197723675814 + 0.5)
    r = ((t - k * 1.57079632673412561417e00) - k * 6.07710050630396597660e-11) - k * 2.02226624871116645580e-21
    r = r if r < 0.8 else 0.8
    return k, (r if r > -0.8 else -0.8)


@_inlined
def sin_cos_kernels(r):
    """sin r and cos r for |r| <= π/4 in float64 (fdlibm's polynomials, within 1 ulp)."""
    t = r * r
    w = t * t
    s = 2.75573137070700676789e-06 + t * (-2.50507602534068634195e-08 + t * 1.58969099521155010221e-10)
    s = 8.33333333332248946124e-03 + t * (-1.98412698298579493134e-04 + t * s)
    sine = r + (t * r) * (-1.66666666666666324348e-01 + t * s)
    c = t * (4.16666666666666019037e-02 + t * (-1.38888888888741095749e-03 + t * 2.48015872894767294178e-05))
    c = c + w * w * (-2.75573143513906633035e-07 + t * (2.08757232129817482790e-09 + t * -1.13596475577881948265e-11))
    half_t = 0.5 * t
    one_minus = 1.0 - half_t
    cosine = one_minus + (((1.0 - one_minus) - half_t) + t * c)
    return sine, cosine


@_inlined
def sin(z):
    """sin z in float64 (float32 rounds it once): reduced by quarter_turns, then the quadrant picks
    ±sin r or ±cos r. sin(±0) = ±0, sin(±inf) = NaN."""
    real = type(z)
    k, r = quarter_turns(z)
    sine, cosine = sin_cos_kernels(r)
    quadrant = k - 4.0 * np.floor(k * 0.25)
    y = sine if quadrant == 0.0 else (cosine if quadrant == 1.0 else (-sine if quadrant == 2.0 else -cosine))
    finite_nonzero = (abs(z) > real(0)) & (abs(z) < real(np.inf))
    return real(y) if finite_nonzero else (z if z == real(0) else real(np.nan))


@_inlined
def cos(z):
    """cos z, as sin (see there). cos(±inf) = NaN."""
    real = type(z)
    k, r = quarter_turns(z)
    sine, cosine = sin_cos_kernels(r)
    quadrant = k - 4.0 * np.floor(k * 0.25)
    y = cosine if quadrant == 0.0 else (-sine if quadrant == 1.0 else (-cosine if quadrant == 2.0 else sine))
    return real(y) if abs(z) < real(np.inf) else real(np.nan)
