"""Matrix helpers for jitted kernels: `gemm(a, b, c, beta)` and `add_column_sums(a, out)`.

`gemm`: c = a @ b + beta * c, through the BLAS Numba uses.

`np.dot(a, b, out)` cannot accumulate (no beta), so summing products needs a temporary and an
extra pass over memory. This calls the same BLAS routine as Numba's np.dot (SciPy's sgemm/dgemm,
through Numba's `numba_xxgemm` helper, so kernels stay cacheable) with beta exposed.

a (M, K) and b (K, N) may be C- or F-contiguous (a transposed view such as `W.T` is passed
as transposed, without a copy); c (M, N) must be C-contiguous; all of one float dtype. Shapes
are checked by the generated kernels' construction, not here: this is an internal routine.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload
from numba.np.linalg import ensure_blas, get_blas_kind

_CHAR = ir.IntType(8)
_GEMM = ir.FunctionType(
    ir.IntType(32),
    [_CHAR, _CHAR, _CHAR]  # kind, transa, transb
    + [cgutils.intp_t] * 3  # m, n, k
    + [cgutils.voidptr_t, cgutils.voidptr_t, cgutils.intp_t]  # alpha, a, lda
    + [cgutils.voidptr_t, cgutils.intp_t, cgutils.voidptr_t]  # b, ldb, beta
    + [cgutils.voidptr_t, cgutils.intp_t],  # c, ldc
)


def gemm(a, b, c, beta):
    """c = a @ b + beta * c, in place. This body runs only as plain Python (NUMBA_DISABLE_JIT,
    e.g. the smoke test of a regeneration); jitted kernels call BLAS through `_blas_gemm`."""
    product = a @ b
    c[...] = product if beta == 0 else product + beta * c  # beta = 0 ignores what c held, as BLAS does


@overload(gemm)
def _gemm_in_kernels(a, b, c, beta):
    def impl(a, b, c, beta):
        _blas_gemm(a, b, c, beta)

    return impl


@intrinsic
def _blas_gemm(typingctx, a, b, c, beta):
    arrays = (a, b, c)
    if not all(isinstance(t, types.Array) and t.ndim == 2 for t in arrays):
        raise TypingError(f"gemm needs 2-D arrays, got {a}, {b}, {c}")
    if len({t.dtype for t in arrays}) != 1 or a.dtype not in (types.float32, types.float64):
        raise TypingError(f"gemm needs float32 or float64 arrays of one dtype, got {a}, {b}, {c}")
    if a.layout not in "CF" or b.layout not in "CF" or c.layout != "C":
        raise TypingError(f"gemm needs contiguous a, b and a C-contiguous c, got {a}, {b}, {c}")
    ensure_blas()

    def codegen(context, builder, signature, args):
        a_arr, b_arr, c_arr = (context.make_array(t)(context, builder, v) for t, v in zip(arrays, args[:3]))
        dtype = c.dtype
        beta_value = context.cast(builder, args[3], signature.args[3], dtype)
        alpha_slot = cgutils.alloca_once_value(builder, context.get_constant(dtype, 1.0))
        beta_slot = cgutils.alloca_once_value(builder, beta_value)
        m, k = cgutils.unpack_tuple(builder, a_arr.shape, 2)
        n = cgutils.unpack_tuple(builder, b_arr.shape, 2)[1]

        def operand(ty, arr):
            """BLAS is column-major: a C-contiguous array is its transpose, untransposed."""
            rows, cols = cgutils.unpack_tuple(builder, arr.shape, 2)
            trans = ir.Constant(_CHAR, ord("n" if ty.layout == "C" else "t"))
            return trans, cols if ty.layout == "C" else rows, builder.bitcast(arr.data, cgutils.voidptr_t)

        # Row-major c = a b is column-major c^T = b^T a^T.
        trans_b, ld_b, data_b = operand(b, b_arr)
        trans_a, ld_a, data_a = operand(a, a_arr)
        fn = cgutils.get_or_insert_function(builder.module, _GEMM, "numba_xxgemm")
        kind = ir.Constant(_CHAR, ord(get_blas_kind(dtype)))
        void = cgutils.voidptr_t
        builder.call(
            fn,
            (kind, trans_b, trans_a, n, m, k, builder.bitcast(alpha_slot, void), data_b, ld_b,
             data_a, ld_a, builder.bitcast(beta_slot, void), builder.bitcast(c_arr.data, void), n),
        )
        return context.get_dummy_value()

    return types.none(a, b, c, beta), codegen


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def add_column_sums(a, out):
    """out += a.sum(axis=0) for a (rows, n) and out (n,): one streaming pass over a."""
    for row in range(a.shape[0]):
        for column in range(a.shape[1]):
            out[column] += a[row, column]
