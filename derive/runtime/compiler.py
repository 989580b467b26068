"""How Numba compiles the generated kernels: `jit` (cached), the options and the `noalias` pipeline.

Generated modules spell their options out in each decorator (see `render/module.py`, KERNEL_OPTIONS):

- ``fastmath={"contract"}``: fused multiply-add only. No loop in the kernels needs reassociation
  to vectorize (they are elementwise over units; a reduction's sums over the units are
  `matrix.row_sums`, a function of its own), and the flags left out would break promises:
  ``nnan``/``ninf`` (in "fast") would let LLVM drop NaN and inf propagation, ``reassoc`` could
  undo the Cody-Waite range reduction and the Horner order of `kernel_math.exp`, ``arcp``/``afn``
  would allow approximate division and functions.
- ``error_model="numpy"``: division by zero gives inf/NaN as in NumPy instead of raising, so
  divisions do not branch and loops vectorize.
- no ``parallel``: kernels compile serially. Their matrix products call `derive.runtime.matrix`'s C
  function `_tasks`, compiled once per dtype, which shares a product's tiles among Numba's threads
  itself (Numba's parallel regions cost about 3 s of every cell's compile, and a cached kernel
  calling a separately compiled parallel function crashes when loaded, numba issue #8578).
- ``nogil=True``: a kernel releases the GIL once, for the whole call; its products' threads never
  take it (a busy Python thread would otherwise hold it for a switch interval, 5 ms, at every
  step). The runtime also relies on it to run long calls in a worker thread
  (`derive.runtime.kernel_call`).
- ``pipeline_class=NoAliasPipeline``: LLVM may assume the array arguments do not overlap, so it
  vectorizes the pointwise loops without run-time overlap checks (with more than a few arrays it
  gives up on them, and the loops stay scalar). This holds because kernels are only called by
  `runtime.RecurrentCell`, which passes freshly allocated outputs; inputs are only read. While it
  compiles a kernel, LLVM also follows every use of the kernel's own buffers to see that they do not
  overlap the arguments either (`_alias_analysis_through_long_kernels`).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

from numba.core import types
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload

from .kernel_cache import enable_caching


class NoAliasPipeline(CompilerBase):
    """Numba's nopython pipeline, compiling with `noalias` on every pointer argument."""

    def define_pipelines(self):
        self.state.flags.noalias = True
        return [DefaultPassBuilder.define_nopython_pipeline(self.state)]

    def _compile_core(self):
        with _alias_analysis_through_long_kernels():
            return super()._compile_core()


# How many uses of a pointer LLVM follows to prove that it does not escape (LLVM's default: 100).
# A kernel's local buffers (the projections, the reductions' terms) have more uses than that in
# a cell of several levels; past the limit LLVM assumes they may overlap the arguments and leaves
# the pointwise loops that read them scalar (lstm_layernorm's forward: 3x slower).
_USES_TO_EXPLORE, _LLVM_DEFAULT_USES = 10_000, 100


@contextmanager
def _alias_analysis_through_long_kernels():
    """LLVM follows every use of a kernel's pointers while it compiles the kernel, then its default
    again (the option is process-wide: other code keeps LLVM's usual behaviour)."""
    from llvmlite import binding

    binding.set_option("", f"-capture-tracking-max-uses-to-explore={_USES_TO_EXPLORE}")
    try:
        yield
    finally:
        binding.set_option("", f"-capture-tracking-max-uses-to-explore={_LLVM_DEFAULT_USES}")


def cancelled(flag) -> bool:
    """Whether the runtime asked the running kernel to stop: flag[0] != 0 for a (1,) uint8 array.

    Kernels check it once per time step. This body runs only as plain Python (NUMBA_DISABLE_JIT);
    kernels read the flag with an atomic load, which LLVM may not hoist out of the step loop as
    it could a plain load of a `noalias` argument that the loop never writes."""
    return bool(flag[0])


@overload(cancelled, inline="always")
def _cancelled_in_kernels(flag):
    return lambda flag: _load_acquire(flag) != 0


def assign(target, source) -> None:
    """target[...] = source for C-contiguous arrays of one shape. This body runs only as plain Python
    (NUMBA_DISABLE_JIT); kernels copy element by element: Numba's `target[:] = source` checks the shapes
    with an error message that compiles Numba's string formatting into the kernel (about 3 s of the
    first compile in a process and 0.4 s of every kernel that has one)."""
    target[...] = source


@overload(assign)
def _assign_in_kernels(target, source):
    arrays = (target, source)
    if not all(isinstance(t, types.Array) and t.layout == "C" for t in arrays) or target.ndim != source.ndim:
        raise TypingError(f"assign needs C-contiguous arrays of one shape, got {target}, {source}")

    def impl(target, source):
        if target.shape != source.shape:
            raise ValueError("assign needs arrays of one shape")
        flat_target, flat_source = target.reshape(target.size), source.reshape(source.size)
        for index in range(flat_source.size):
            flat_target[index] = flat_source[index]

    return impl


@intrinsic
def _load_acquire(typingctx, flag):
    """flag[0], read with an atomic load of acquire ordering (a plain load on x86 and ARM64)."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load_atomic(data, "acquire", align=1)

    return flag.dtype(flag), codegen


def jit(function=None, **options):
    """`numba.njit(cache=True, error_model="numpy")` for generated kernels.

    error_model="numpy": division by zero gives Inf/NaN as IEEE says instead of raising.
    The cache repairs itself: a damaged cache file is removed, with a warning, and the kernel
    compiled again (`derive.runtime.kernel_cache`). Where numba finds no writable cache directory (next
    to the module, NUMBA_CACHE_DIR or the user cache), kernels compile on first use in every
    process, and one warning per process says so.
    """
    if function is None:
        return lambda f: jit(f, **options)
    import numba

    dispatcher = numba.njit(**{"error_model": "numpy", **options})(function)
    if not enable_caching(dispatcher):
        if not _UNCACHED:
            warnings.warn(
                f"no writable cache directory for compiled kernels (next to {function.__code__.co_filename}, "
                "NUMBA_CACHE_DIR or the user cache): they compile on first use in every process. Set NUMBA_CACHE_DIR "
                "to a writable directory to cache them.",
                RuntimeWarning,
                stacklevel=2,
            )
        _UNCACHED.add(function.__module__)
    return dispatcher


_UNCACHED: set[str] = set()  # modules whose kernels run without a cache; one warning for all
