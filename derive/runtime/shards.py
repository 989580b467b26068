"""One kernel call split over the batch: `run(kernel, shards, cancel)`, each shard on its own thread.

Batch rows are independent in every cell, so the rows can be split into shards that each run the
whole sequence, with no exchange between threads at any step. That pays where a step's products are
too small to share their tiles (`matrix.WORK_PER_THREAD`): the products and pointwise loops of a
call then run on one core while the others wait (LSTM float32 64x32x32 inference: 0.48 ms on 2
threads, 0.26 ms for half the rows). Where they are large, a shard per thread would stream every
weight through every core at every step (32x32x512: measured slower).

The shards run on `thread_pool`'s threads: a compiled trampoline (`_run_shards`, one per kernel
signature, cached) stores the shards' arguments and calls the kernel's native code by its address,
one task per shard. Python threads would cost more than they save at these sizes: a hand-off from
Python to a helper thread and back took about 0.25 ms.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic

from . import kernel_call, matrix, thread_pool
from .kernel_cache import enable_caching

MIN_ROWS = 4  # rows per shard, at least: a product's tile is 4 rows high
MIN_WORK = 1 << 20  # multiply-adds per call, at least (about 0.1 ms): below, the hand-off costs more
# multiply-adds per step and shard, at least: below, a step's fixed costs (a product's call, its loops)
# outweigh what a shard saves (RNN float32 inference at 64x32x32 and 256x8x64, 2^15 a step and shard:
# 0.15 and 0.37-0.45 ms on all rows, 0.16-0.22 and 0.34-0.52 ms in 2 shards)
MIN_STEP_WORK = 1 << 16
WORKSPACE_BYTES = 1 << 24  # the most that a thread keeps between calls for the shards' arrays (`workspace`)

_kept = threading.local()  # the calling thread's workspace


def count(batch: int, step_work: int, work: int) -> int:
    """How many shards a call of `work` multiply-adds, `step_work` of them per step, should have:
    one per thread of the calling thread's `numba.get_num_threads()` if its step's products run on
    one thread, else 1."""
    threads = min(numba.get_num_threads(), thread_pool.threads() + 1, batch // MIN_ROWS, step_work // MIN_STEP_WORK)
    if threads < 2 or work < MIN_WORK or step_work >= matrix.WORK_PER_THREAD * threads:
        return 1
    return threads


def rows(batch: int, shards: int) -> list[slice]:
    """The batch rows of each shard: even shares, in order."""
    return [slice(k * batch // shards, (k + 1) * batch // shards) for k in range(shards)]


class Rows(NamedTuple):
    """A kernel argument split over the batch (its axis `axis`): each shard gets its rows in an array of its
    own; the part `before` of them (an index applied first, `()`: all, None: none) is copied in before the
    call, the part `after` copied back after it."""

    array: np.ndarray
    axis: int
    before: tuple | None = ()
    after: tuple | None = None


def call(kernel, arguments: tuple, parts: int, work: int) -> None:
    """kernel(*arguments, cancel) as `kernel_call.call` makes it, with the batch in `parts` shards run at
    once: `Rows` arguments are split, the others shared. Shards whose arrays would not fit in
    WORKSPACE_BYTES, or parts < 2: one call on all the rows."""
    split = [a for a in arguments if isinstance(a, Rows)]
    row_sets = rows(split[0].array.shape[split[0].axis], parts)
    shapes = [_rows(a, r).shape for r in row_sets for a in split] if parts > 1 else []
    if parts < 2 or sum(math.prod(shape) + 64 for shape in shapes) * split[0].array.itemsize > WORKSPACE_BYTES:
        plain = tuple(a.array if isinstance(a, Rows) else a for a in arguments)
        kernel_call.call(kernel, plain, work=work)
        return
    arrays = iter(workspace(shapes, split[0].array.dtype))
    pieces = [tuple(_piece(a, r, arrays) for a in arguments) for r in row_sets]
    kernel_call.call(functools.partial(run, kernel), (pieces,), work=work)
    for r, piece in zip(row_sets, pieces):
        for a, part in zip(arguments, piece):
            if isinstance(a, Rows) and a.after is not None:
                _rows(a, r)[a.after] = part[a.after]


def _rows(argument: Rows, rows: slice) -> np.ndarray:
    return argument.array[(slice(None),) * argument.axis + (rows,)]


def _piece(argument, rows: slice, arrays):
    """A shard's value of the argument: its own array (rows copied in) for a split one, else the argument."""
    if not isinstance(argument, Rows):
        return argument
    part = next(arrays)
    if argument.before is not None:
        part[argument.before] = _rows(argument, rows)[argument.before]
    return part


def workspace(shapes: list[tuple], dtype) -> list[np.ndarray]:
    """C-contiguous arrays of these shapes, each starting on a cache line, in one buffer that the calling
    thread keeps for its next sharded call (up to WORKSPACE_BYTES; larger ones are allocated at every call).
    Allocated at every call, they made some processes 2-3 times slower than one call on all the rows: glibc
    gave their pages back to the system at the end of each call (the heap's top exceeded its trim threshold)
    and the next call took a page fault for every 4 KiB, while the other shard's thread was interrupted to
    flush its TLB (LSTM float32 inference, 256x8x64: 2.1-2.9 ms instead of 1.0 in 3 processes of 8)."""
    line = 64 // np.dtype(dtype).itemsize
    sizes = [math.prod(shape) for shape in shapes]
    starts = np.cumsum([0] + [-(-size // line) * line for size in sizes]).tolist()
    needed = (starts[-1] + line) * np.dtype(dtype).itemsize
    buffer = getattr(_kept, "buffer", None)
    if buffer is None or buffer.nbytes < needed:
        buffer = np.empty(needed, np.uint8)
        if needed <= WORKSPACE_BYTES:
            _kept.buffer = buffer
    first = -buffer.ctypes.data % 64
    values = buffer[first : first + starts[-1] * np.dtype(dtype).itemsize].view(dtype)
    return [values[start : start + size].reshape(shape) for start, size, shape in zip(starts, sizes, shapes)]


def run(kernel, shards: list[tuple], cancel: np.ndarray) -> None:
    """kernel(*shard, cancel) for every shard, the shards at once on the thread pool. The arrays of
    different shards must not overlap. If a shard raised, every shard runs again one after the other,
    raising as the kernel does."""
    shards = tuple((*shard, cancel) for shard in shards)
    if config.DISABLE_JIT:
        for shard in shards:
            kernel(*shard)
        return
    address, trampoline = _compiled(kernel, shards)
    if not trampoline(address, shards, len(shards)):
        for shard in shards:
            kernel(*shard)


# (kernel, shard count, argument kinds) -> (the kernel's native address, the trampoline's compiled entry).
# The entry is called directly: Numba's dispatcher would type the tuple of tuples at every call (0.16 ms).
_COMPILED: dict[tuple, tuple] = {}


def _kind(value) -> tuple:
    """What decides a value's Numba type: for an array its dtype, dimensions, layout, writeability, alignment."""
    if isinstance(value, np.ndarray):
        flags = value.flags
        return (value.dtype.str, value.ndim, flags.c_contiguous, flags.f_contiguous, flags.writeable, flags.aligned)
    return (type(value),)


def _compiled(kernel, shards: tuple) -> tuple:
    kinds = tuple(map(_kind, shards[0]))
    if any(tuple(map(_kind, shard)) != kinds for shard in shards[1:]):  # one type for all: the entry trusts it
        raise TypeError("shards must have arguments of the same types, dimensions and layouts")
    key = (kernel, len(shards), kinds)
    found = _COMPILED.get(key)
    if found is None:
        signature = tuple(kernel.typeof_pyval(value) for value in shards[0])
        kernel.compile(signature)
        native = kernel.overloads[signature]
        if native.signature.return_type != types.none:  # the trampoline's call has no room for a value
            raise TypeError(
                f"a sharded kernel must return None, {kernel.py_func.__qualname__} returns {native.signature.return_type}"
            )
        address = native.library.get_pointer_to_function(native.fndesc.llvm_func_name)
        arguments = (types.intp, types.UniTuple(types.Tuple(signature), len(shards)), types.intp)
        _shards.compile(arguments)
        found = _COMPILED[key] = (address, _shards.overloads[arguments].entry_point)
    return found


@intrinsic
def _run_shards(typingctx, address, shards, threads):
    """The native function at `address` (Numba's calling convention, returning None) once per shard,
    its arguments the shard's tuple; the shards are `thread_pool` tasks. Whether every call returned
    normally."""
    if not isinstance(shards, types.UniTuple) or not isinstance(shards.dtype, types.BaseTuple):
        raise numba.core.errors.TypingError(f"shards must be a tuple of argument tuples, got {shards}")
    arguments = list(shards.dtype.types)

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        i8p = ir.IntType(8).as_pointer()
        shard_type = context.get_value_type(shards.dtype)
        job_type = ir.LiteralStructType(
            [intp, ir.ArrayType(shard_type, shards.count), ir.ArrayType(intp, shards.count)]
        )
        job = cgutils.alloca_once(builder, job_type)
        builder.store(args[0], cgutils.gep_inbounds(builder, job, 0, 0))
        for k, shard in enumerate(cgutils.unpack_tuple(builder, args[1], shards.count)):
            builder.store(shard, cgutils.gep_inbounds(builder, job, 0, 1, k))
        worker = _worker(context, builder.module, arguments, job_type)
        run = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i8p, intp, intp]), thread_pool.RUN_SYMBOL
        )
        count = ir.Constant(intp, shards.count)
        builder.call(run, [builder.bitcast(worker, i8p), builder.bitcast(job, i8p), count, args[2]])
        failed = ir.Constant(intp, 0)
        for k in range(shards.count):
            failed = builder.or_(failed, builder.load(cgutils.gep_inbounds(builder, job, 0, 2, k)))
        return builder.icmp_unsigned("==", failed, ir.Constant(intp, 0))

    return types.boolean(types.intp, shards, types.intp), codegen


def _worker(context, module, arguments, job_type) -> ir.Function:
    """The pool's worker (`thread_pool.worker_type`) for a job {address, shards, statuses}: each task
    calls the function at `address` with its shard and stores the status (0: returned normally)."""
    name = "rnn_derive_shard_worker_" + hashlib.sha256(str((arguments, job_type)).encode()).hexdigest()[:16]
    if name in module.globals:
        return module.globals[name]
    worker = ir.Function(module, thread_pool.worker_type(context), name)
    worker.linkage = "internal"
    builder = ir.IRBuilder(worker.append_basic_block("entry"))
    tasks, dims, _, data = worker.args
    intp = context.get_value_type(types.intp)
    job = builder.bitcast(data, job_type.as_pointer())
    address = builder.load(cgutils.gep_inbounds(builder, job, 0, 0))
    function_type = context.call_conv.get_function_type(types.none, arguments)
    function = builder.inttoptr(address, function_type.as_pointer())
    first = builder.ptrtoint(builder.load(tasks), intp)
    last = builder.add(first, builder.load(dims))

    def element(member: int, task):  # &job.member[task]
        return builder.gep(job, [ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), member), task])

    with cgutils.for_range_slice(builder, first, last, ir.Constant(intp, 1)) as (task, _):
        values = cgutils.unpack_tuple(builder, builder.load(element(1, task)), len(arguments))
        status, _ = context.call_conv.call_function(builder, function, types.none, arguments, values)
        builder.store(builder.zext(status.is_error, intp), element(2, task))
    builder.ret_void()
    return worker


@numba.njit(**thread_pool.OPTIONS)
def _shards(address, shards, threads):
    return _run_shards(address, shards, threads)


enable_caching(_shards)
