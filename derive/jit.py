"""How Numba compiles the generated kernels: options and the `noalias` pipeline.

Generated modules spell their options out in each decorator (see `codegen.KERNEL_OPTIONS`):

- ``fastmath={"contract"}``: fused multiply-add only. No loop in the kernels needs reassociation
  to vectorize (they are elementwise over units), and the flags left out would break promises:
  ``nnan``/``ninf`` (in "fast") would let LLVM drop NaN and inf propagation, ``reassoc`` could
  undo the Cody-Waite range reduction and the Horner order of `kernel_math.exp`, ``arcp``/``afn``
  would allow approximate division and functions.
- ``error_model="numpy"``: division by zero gives inf/NaN as in NumPy instead of raising, so
  divisions do not branch and loops vectorize.
- ``parallel=PRANGE_ONLY`` (forward and backward): the `prange` loops of `derive.matrix.matmul`,
  inlined into the kernel, share a product's tiles among Numba's threads. Nothing else becomes
  parallel: array statements such as ``d_prev[0] = 0.0`` inside the step loop would otherwise
  each start the threads, at every step. (The products cannot live in a separately compiled
  parallel function: a cached kernel calling one crashes when loaded from the cache, numba
  issue #8578.)
- ``nogil=True``: a kernel releases the GIL once, for the whole call. Without it, each parallel
  product gives the GIL up and takes it back (Numba does so around every parallel region), and
  a busy Python thread then holds it for a switch interval (5 ms) at every step. The runtime
  also relies on it to run long calls in a worker thread (`derive.kernel_call`).
- ``pipeline_class=NoAliasPipeline``: LLVM may assume the array arguments do not overlap, so it
  vectorizes the pointwise loops without run-time overlap checks (with more than a few arrays it
  gives up on them, and the loops stay scalar). This holds because kernels are only called by
  `runtime.RecurrentCell`, which passes freshly allocated outputs; inputs are only read.
"""

from __future__ import annotations

from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.cpu import ParallelOptions
from numba.extending import intrinsic, overload

# An options object, not a dict: Numba empties a dict of parallel options as it reads them (at
# each compilation), after which `{}` would mean every parallel transformation.
PRANGE_ONLY = ParallelOptions({
    "prange": True, "comprehension": False, "reduction": False, "inplace_binop": False,
    "setitem": False, "numpy": False, "stencil": False, "fusion": False,
})


class NoAliasPipeline(CompilerBase):
    """Numba's nopython pipeline, compiling with `noalias` on every pointer argument."""

    def define_pipelines(self):
        self.state.flags.noalias = True
        return [DefaultPassBuilder.define_nopython_pipeline(self.state)]


def cancelled(flag) -> bool:
    """Whether the runtime asked the running kernel to stop: flag[0] != 0 for a (1,) uint8 array.

    Kernels check it once per time step. This body runs only as plain Python (NUMBA_DISABLE_JIT);
    kernels read the flag with an atomic load, which LLVM may not hoist out of the step loop as
    it could a plain load of a `noalias` argument that the loop never writes."""
    return bool(flag[0])


@overload(cancelled, inline="always")
def _cancelled_in_kernels(flag):
    return lambda flag: _load_acquire(flag) != 0


@intrinsic
def _load_acquire(typingctx, flag):
    """flag[0], read with an atomic load of acquire ordering (a plain load on x86 and ARM64)."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load_atomic(data, "acquire", align=1)

    return flag.dtype(flag), codegen
