"""Matrix products of the generated kernels: `pack(b)` once, then `matmul(a, panels, c, beta)`.

    c = a @ b + beta * c        a (M, K) any strides; c (M, N) C-contiguous; panels = pack(b)

The kernels' right operands are weights (the same at every step of a call) or a chunk of
inputs, so each is laid out once in panels of NR columns,

    panels[j, k, :] = b[k, j*NR : (j+1)*NR]      (zero-padded at the right edge)

and every MR x NR tile of c is one register-blocked loop over k, emitted as LLVM IR with explicit
vectors: MR x NV accumulators, per k NV vector loads of the panel, MR broadcasts of a, and MR*NV
fused multiply-adds. Tiles are shared among threads (`thread_pool`): BLAS would repack the weight at every
step, and its own thread pool would spin against Numba's on the same cores. Tile sizes follow the
host's vector registers (`VECTOR_BITS`, `WIDE`, `NARROW`).

The tiles are compiled once per dtype, into the C function `_tasks` (cached, loaded when this module
is imported), which kernels call by its symbol: inlined, they were compiled again into every kernel
and into every parallel region of one (about half of a cell's compile time). `_tasks` also shares a
large product's tiles among threads, through `thread_pool` (`_run`), so the kernels have no parallel
region and compile serially.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, config, sigutils
from numba.core.ccallback import CFunc
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload
from numba.np.arrayobj import populate_array
from numba.np.numpy_support import as_dtype
from numba.np.ufunc import parallel

from . import thread_pool
from .kernel_cache import enable_caching

OPTIONS = dict(cache=True, error_model="numpy")


def _vector_bits() -> int:
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else llvm.get_host_cpu_features().flatten()
    return 512 if "+avx512f" in features.split(",") else 256


VECTOR_BITS = _vector_bits()  # of the host (or NUMBA_CPU_FEATURES), as Numba compiles for it


@dataclass(frozen=True)
class Tile:
    """MR rows x NV vectors of c: MR*NV accumulators, NV + 1 more registers per k."""

    rows: int  # MR
    vectors: int  # NV

    @staticmethod
    def lanes(dtype) -> int:
        return VECTOR_BITS // (8 * np.dtype(dtype).itemsize)

    def width(self, dtype) -> int:
        """NR: columns per panel."""
        return self.vectors * self.lanes(dtype)


# 16 accumulators of AVX-512's 32 registers, 8 of AVX2's 16. Narrow panels serve products with
# fewer columns than a wide panel, which would otherwise compute mostly padding.
WIDE = Tile(4, 4) if VECTOR_BITS == 512 else Tile(4, 2)
NARROW = Tile(8, 2) if VECTOR_BITS == 512 else Tile(8, 1)
ALIGN = 64  # bytes, of the panels: a cache line
GROUP_ROWS = 64  # rows of c per task: a task reuses its panel from cache over these rows
# A product is shared among the threads when each thread's share is at least this many multiply-adds:
# about 10 us of tiles, against a few us for the other threads to start and finish.
WORK_PER_THREAD = 1 << 19
# A product whose panels take more than this also shares them among the threads, however little its work
# (batch 1): each core then reads its share from its own L2 cache (1 MiB per core on Zen 4) instead of
# all of them from L3 (LSTM float32 at 512x1x256, inference 9.8-11.2 -> 7.9-8.9 ms; GRU's 768 KiB: no change seen).
PANEL_BYTES_ALONE = 1 << 19
# Global ints: compile-time constants in kernels.
WIDE_ROWS, NARROW_ROWS, WIDE_BITS = WIDE.rows, NARROW.rows, WIDE.vectors * VECTOR_BITS


def panel_width(n: int, dtype) -> int:
    """NR for a right operand of n columns."""
    return WIDE.width(dtype) if n >= WIDE.width(dtype) else NARROW.width(dtype)


def pack(b):
    """b (K, N) in panels for `matmul`: shape (ceil(N / NR), K, NR), zero-padded."""
    k, n = b.shape
    width = panel_width(n, b.dtype)
    panels = np.zeros((math.ceil(n / width), k, width), b.dtype)
    for j in range(panels.shape[0]):
        columns = b[:, j * width : (j + 1) * width]
        panels[j, :, : columns.shape[1]] = columns
    return panels


@overload(pack)
def _pack_in_kernels(b):
    wide, narrow = WIDE.width(as_dtype(b.dtype)), NARROW.width(as_dtype(b.dtype))
    by_rows = b.layout == "C"

    def impl(b):
        k, n = b.shape
        width = wide if n >= wide else narrow
        count = (n + width - 1) // width
        # Aligned to 64 bytes: a vector load that straddles two cache lines costs two
        flat = np.zeros(count * k * width + ALIGN, b.dtype)
        skip = (-flat.ctypes.data % ALIGN) // flat.itemsize
        panels = flat[skip : skip + count * k * width].reshape(count, k, width)
        if by_rows:
            for row in range(k):
                for column in range(n):
                    panels[column // width, row, column % width] = b[row, column]
        else:  # e.g. W.T: read W row by row
            for column in range(n):
                for row in range(k):
                    panels[column // width, row, column % width] = b[row, column]
        return panels

    return impl


def matmul(a, panels, c, beta):
    """c = a @ b + beta * c in place, `panels = pack(b)`. This body runs only as plain Python
    (NUMBA_DISABLE_JIT, e.g. the smoke test of a regeneration); kernels use the tiles below."""
    count, depth, width = panels.shape
    b = panels.transpose(1, 0, 2).reshape(depth, count * width)[:, : c.shape[1]]
    product = a @ b
    c[...] = product if beta == 0 else product + beta * c  # beta = 0 ignores what c held, as BLAS does


@overload(matmul, inline="always")
def _matmul_in_kernels(a, panels, c, beta):
    arrays = (a, panels, c)
    if not all(isinstance(t, types.Array) for t in arrays) or (a.ndim, panels.ndim, c.ndim) != (2, 3, 2):
        raise TypingError(f"matmul needs 2-D a and c and 3-D panels, got {a}, {panels}, {c}")
    if len({t.dtype for t in arrays}) != 1 or a.dtype not in (types.float32, types.float64):
        raise TypingError(f"matmul needs float32 or float64 arrays of one dtype, got {a}, {panels}, {c}")
    if panels.layout != "C" or c.layout != "C":
        raise TypingError(f"matmul needs C-contiguous panels and c, got {panels}, {c}")

    # A call of `_tasks`, compiled once per dtype and called by its symbol: the kernels compile
    # serially and contain no tile code; `_tasks` shares the tiles among the pool's threads itself.
    return lambda a, panels, c, beta: _call_tasks(a, panels, c, beta)


def _symbol(function: str, dtype) -> str:
    """The process-wide name of the C function `function` for arrays of `dtype`."""
    return f"rnn_derive_matmul_{function}_{np.dtype(dtype).name}"


def _tasks_signature(real):
    """`_tasks`'s C signature for the float type `real`."""
    pointer, intp = types.CPointer(real), types.intp
    return types.void(pointer, intp, intp, pointer, intp, intp, intp, pointer, intp, intp, real)


@intrinsic
def _call_tasks(typingctx, a, panels, c, beta):
    """c = a @ b + beta * c: a call of the C function `_tasks` by its symbol (`_link_tasks`), not the tiles'
    code in every kernel."""

    def codegen(context, builder, signature, args):
        a_arr, p_arr, c_arr = (context.make_array(t)(context, builder, v) for t, v in zip((a, panels, c), args[:3]))
        c_signature = _tasks_signature(a.dtype)
        function_type = ir.FunctionType(ir.VoidType(), [context.get_value_type(t) for t in c_signature.args])
        tasks = cgutils.get_or_insert_function(builder.module, function_type, _symbol("tasks", as_dtype(a.dtype)))
        builder.call(
            tasks,
            [
                a_arr.data,
                *cgutils.unpack_tuple(builder, a_arr.strides, 2),
                p_arr.data,
                *cgutils.unpack_tuple(builder, p_arr.shape, 3),
                c_arr.data,
                *cgutils.unpack_tuple(builder, c_arr.shape, 2),
                context.cast(builder, args[3], signature.args[3], a.dtype),
            ],
        )
        return context.get_dummy_value()

    return types.none(a, panels, c, beta), codegen


def _tasks(a, a_row_stride, a_column_stride, panels, count, depth, width, c, rows, columns, beta):
    """c = a @ b + beta * c, the C function behind `_call_tasks`: each array as its data pointer and shape
    (a's is (rows, depth)), with a's strides in bytes. Its tasks (`_task`) run on the pool's threads too when each
    thread's share of the work is large enough (`WORK_PER_THREAD`) or the panels are (`PANEL_BYTES_ALONE`),
    else on the calling thread."""
    groups = (rows + GROUP_ROWS - 1) // GROUP_ROWS
    tasks = count * groups
    threads = _thread_count()
    little_work = rows * depth * columns < WORK_PER_THREAD * threads
    small_panels = count * depth * width * numba.carray(panels, 1).itemsize <= PANEL_BYTES_ALONE
    if (little_work and small_panels) or tasks < threads:
        threads = 1
    _run(
        (a, a_row_stride, a_column_stride, panels, count, depth, width, c, rows, columns, beta, groups),
        tasks,
        threads,
    )


def _worker(tasks, dims, steps, job):
    """Tasks of the product `job` (a `_job_type` tuple, see `_tasks`): the C function that each thread runs,
    with the signature of Numba's parallel regions. `tasks[0]`, read as a number, is the first task and
    `dims[0]` how many (`_run` passes task 0 at address 0, one byte per task)."""
    a, a_row_stride, a_column_stride, panels, count, depth, width, c, rows, columns, beta, groups = _load_job(job)
    a = _strided(a, rows, depth, a_row_stride, a_column_stride)
    panels = numba.carray(panels, (count, depth, width))
    c = numba.carray(c, (rows, columns))
    first = thread_pool.address(tasks[0])
    for task in range(first, first + dims[0]):
        _task(a, panels, c, beta, groups, task)


def _job_type(real):
    """A product for `_worker`: `_tasks`'s arguments, then the number of row groups."""
    pointer, intp = types.CPointer(real), types.intp
    return types.Tuple((pointer, intp, intp, pointer, intp, intp, intp, pointer, intp, intp, real, intp))


def _worker_signature(real):
    """`_worker`'s C signature: a parallel region's (char **args, intp *dims, intp *steps, void *data)."""
    return types.void(
        types.CPointer(types.voidptr), types.CPointer(types.intp), types.CPointer(types.intp), types.CPointer(real)
    )


# Numba's `get_num_threads`, once its threads have started (`use_threads`); null before. Code reads it from
# this slot, not by its symbol: cached code that names it would fail to load before the threads start, and
# `_tasks` loads when this module is imported.
_THREADS = (ctypes.c_void_p * 1)()
_THREADS_SYMBOL = "rnn_derive_matmul_threads"


def use_threads() -> None:
    """Share large products among threads from now on (called once Numba's threads have started): start the
    pool's threads, as many as Numba's (`numba.config.NUMBA_NUM_THREADS`); a product then uses as many as
    `numba.get_num_threads()` allows in the calling thread."""
    thread_pool.start(config.NUMBA_NUM_THREADS)
    _THREADS[0] = llvm.address_of_symbol("get_num_threads")


def _threads_slot(builder):
    """The function pointer in `_THREADS`, as an i8*."""
    i8p = ir.IntType(8).as_pointer()
    module = builder.module
    slot = module.globals.get(_THREADS_SYMBOL) or ir.GlobalVariable(module, ir.ArrayType(i8p, 1), _THREADS_SYMBOL)
    return builder.load(builder.gep(slot, [ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), 0)]))


@intrinsic
def _thread_count(typingctx):
    """Numba's thread count for the calling thread (`numba.get_num_threads()`), or 1 before they start."""

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        function = _threads_slot(builder)
        count = cgutils.alloca_once_value(builder, ir.Constant(intp, 1))
        with builder.if_then(cgutils.is_not_null(builder, function)):
            get_num_threads = builder.bitcast(function, ir.FunctionType(intp, []).as_pointer())
            builder.store(builder.call(get_num_threads, []), count)
        return builder.load(count)

    return types.intp(), codegen


@intrinsic
def _run(typingctx, job, tasks, threads):
    """`_worker` over tasks 0:tasks of `job`: on the calling thread if threads == 1, else shared among that
    many threads by `thread_pool` (its C function `run`, called by its symbol)."""
    real = job.types[-2]
    if job != _job_type(real):
        raise TypingError(f"_run needs a {_job_type(real)}, got {job}")

    def codegen(context, builder, signature, args):
        job_value, tasks_value, threads_value = args
        i8p, intp = ir.IntType(8).as_pointer(), context.get_value_type(types.intp)
        worker_type = thread_pool.worker_type(context)
        worker = cgutils.get_or_insert_function(builder.module, worker_type, _symbol("worker", as_dtype(real)))
        data = builder.bitcast(cgutils.alloca_once_value(builder, job_value), i8p)
        with builder.if_else(builder.icmp_signed(">", threads_value, ir.Constant(intp, 1))) as (shared, here):
            with shared:
                run_type = ir.FunctionType(ir.VoidType(), [i8p, i8p, intp, intp])
                run = cgutils.get_or_insert_function(builder.module, run_type, thread_pool.RUN_SYMBOL)
                builder.call(run, [builder.bitcast(worker, i8p), data, tasks_value, threads_value])
            with here:
                thread_pool.call_worker(context, builder, worker, ir.Constant(intp, 0), tasks_value, data)
        return context.get_dummy_value()

    return types.none(job, types.intp, types.intp), codegen


@intrinsic
def _load_job(typingctx, job):
    """The `_job_type` tuple that `_run` stored at `job`."""
    job_type = _job_type(job.dtype)

    def codegen(context, builder, signature, args):
        return builder.load(builder.bitcast(args[0], context.get_value_type(job_type).as_pointer()))

    return job_type(job), codegen


@intrinsic
def _strided(typingctx, data, rows, columns, row_stride, column_stride):
    """A view of the (rows, columns) array at `data` with these strides in bytes (the caller owns the memory)."""
    array_type = types.Array(data.dtype, 2, "A")

    def codegen(context, builder, signature, args):
        array = context.make_array(array_type)(context, builder)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(data.dtype)))
        populate_array(
            array,
            data=args[0],
            shape=cgutils.pack_array(builder, list(args[1:3])),
            strides=cgutils.pack_array(builder, list(args[3:5])),
            itemsize=itemsize,
            meminfo=None,
        )
        return array._getvalue()

    return array_type(data, rows, columns, row_stride, column_stride), codegen


def _link_tasks() -> list:
    """`_worker` and `_tasks` for each dtype, compiled or loaded from the cache, exposed under `_symbol`:
    `_tasks` calls the worker, kernels call `_tasks`. Runs when this module is imported: before any kernel
    that calls them is compiled or loaded from the cache (a kernel whose symbol is missing would abort the
    process when loaded)."""
    if config.DISABLE_JIT:  # kernels are plain Python, calling matmul's own body
        return []
    llvm.add_symbol(_THREADS_SYMBOL, ctypes.addressof(_THREADS))
    if parallel._is_initialized:  # Numba's threads started before this import
        use_threads()
    compiled = []
    for real in (types.float32, types.float64):
        for name, function, signature in (
            ("worker", _worker, _worker_signature(real)),
            ("tasks", _tasks, _tasks_signature(real)),
        ):
            signature = sigutils.normalize_signature(signature)  # as numba.cfunc does
            c_function = CFunc(function, signature, locals={}, options={"error_model": "numpy"})
            enable_caching(c_function)  # a damaged cache file is dropped and compiled again (kernel_cache)
            c_function.compile()
            llvm.add_symbol(_symbol(name, as_dtype(real)), c_function.address)
            compiled.append(c_function)
    return compiled


@numba.njit(**OPTIONS)
def _task(a, panels, c, beta, groups, task):
    """Rows of group `task % groups` times panel `task // groups`."""
    j, group = divmod(task, groups)
    col = j * panels.shape[2]
    valid = min(panels.shape[2], c.shape[1] - col)
    stop = min(c.shape[0], (group + 1) * GROUP_ROWS)
    start = group * GROUP_ROWS
    if 8 * panels.itemsize * panels.shape[2] == WIDE_BITS:
        tiled = _tiled_rows(start, stop, WIDE_ROWS)
        for top in range(start, tiled, WIDE_ROWS):
            _wide_tile(a, panels, j, top, min(WIDE_ROWS, stop - top), c, col, valid, beta)
        for top in range(tiled, stop):
            _wide_row(a, panels, j, top, 1, c, col, valid, beta)
    else:
        tiled = _tiled_rows(start, stop, NARROW_ROWS)
        for top in range(start, tiled, NARROW_ROWS):
            _narrow_tile(a, panels, j, top, min(NARROW_ROWS, stop - top), c, col, valid, beta)
        for top in range(tiled, stop):
            _narrow_row(a, panels, j, top, 1, c, col, valid, beta)


@numba.njit(inline="always")
def _tiled_rows(start, stop, tile_rows):
    """Where the tiles of rows start:stop end; the rows after it go one by one.

    A tile computes all its rows whatever `rows` is: a 1-row product (batch 1) in 4-row tiles
    costs 4 rows. A single row is bound by loading the panel, about half a tile's multiply-adds
    (1x256 . 256x1024 float32: 12 us per row against 20 us per 4-row tile, one thread), so fewer
    than half a tile of rows left go one by one, more in one last partial tile."""
    left = (stop - start) % tile_rows
    return stop - left if 2 * left < tile_rows else stop


def _tile_intrinsic(tile_rows: int, vectors: int):
    """c[m0:m0+rows, c0:c0+valid] = a[m0:m0+rows] @ panels[j][:, :valid] + beta * c[...], for
    rows <= `tile_rows` (the rows past them load row m0+rows-1 again and store nothing),
    panels of `vectors` vectors, and valid <= NR."""

    @intrinsic
    def tile(typingctx, a, panels, j, m0, rows, c, c0, valid, beta):
        def codegen(context, builder, signature, args):
            a_arr, p_arr, c_arr = (
                context.make_array(t)(context, builder, v) for t, v in zip((a, panels, c), (args[0], args[1], args[5]))
            )
            j_val, m0_val, rows_val, c0_val, valid_val = args[2], args[3], args[4], args[6], args[7]
            dtype = as_dtype(a.dtype)
            real = context.get_value_type(a.dtype)
            lanes = Tile.lanes(dtype)
            vec = ir.VectorType(real, lanes)
            intp = cgutils.intp_t
            i32 = ir.IntType(32)
            const = lambda value: ir.Constant(intp, value)  # noqa: E731
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.v{lanes}f{8 * dtype.itemsize}"
            )
            zero = ir.Constant(vec, [ir.Constant(real, 0.0)] * lanes)

            def splat(value):
                return _splat(builder, value, lanes)

            def vector_at(data, offset):
                return builder.bitcast(builder.gep(data, [offset]), vec.as_pointer())

            itemsize = const(dtype.itemsize)
            a_row_step, a_col_step = (
                builder.sdiv(s, itemsize) for s in cgutils.unpack_tuple(builder, a_arr.strides, 2)
            )
            _, depth, width = cgutils.unpack_tuple(builder, p_arr.shape, 3)
            ldc = cgutils.unpack_tuple(builder, c_arr.shape, 2)[1]
            panel_start = builder.mul(builder.mul(j_val, depth), width)
            last = builder.sub(rows_val, const(1))
            a_rows = [  # rows past `rows` read the last one again: loads stay inside a
                builder.mul(
                    builder.add(m0_val, builder.select(builder.icmp_signed("<", const(r), rows_val), const(r), last)),
                    a_row_step,
                )
                for r in range(tile_rows)
            ]
            count = range(tile_rows * vectors)

            # for k in range(depth): acc[r, v] += a[m0 + r, k] * panels[j, k, v*lanes : (v+1)*lanes]
            entry = builder.block
            loop = builder.append_basic_block("tile.loop")
            after = builder.append_basic_block("tile.after")
            builder.cbranch(builder.icmp_signed(">", depth, const(0)), loop, after)
            builder.position_at_end(loop)
            k = builder.phi(intp)
            acc = [builder.phi(vec) for _ in count]
            b_row = builder.add(panel_start, builder.mul(k, width))
            b = [
                builder.load(vector_at(p_arr.data, builder.add(b_row, const(v * lanes))), align=1)
                for v in range(vectors)
            ]
            a_col = builder.mul(k, a_col_step)
            a_k = [splat(builder.load(builder.gep(a_arr.data, [builder.add(start, a_col)]))) for start in a_rows]
            summed = [builder.call(fma, [a_k[i // vectors], b[i % vectors], acc[i]]) for i in count]
            k_next = builder.add(k, const(1))
            body_end = builder.block
            k.add_incoming(const(0), entry)
            k.add_incoming(k_next, body_end)
            for phi, value in zip(acc, summed):
                phi.add_incoming(zero, entry)
                phi.add_incoming(value, body_end)
            builder.cbranch(builder.icmp_signed("<", k_next, depth), loop, after)

            builder.position_at_end(after)
            result = []
            for value in summed:
                phi = builder.phi(vec)
                phi.add_incoming(zero, entry)
                phi.add_incoming(value, body_end)
                result.append(phi)
            beta_val = context.cast(builder, args[8], signature.args[8], a.dtype)
            beta_vec = splat(beta_val)
            keep = builder.fcmp_unordered("!=", beta_val, ir.Constant(real, 0.0))  # beta 0 ignores c, as BLAS does

            def blend(old, value):
                return builder.select(keep, builder.call(fma, [beta_vec, old, value]), value)

            pointers = [
                vector_at(
                    c_arr.data,
                    builder.add(
                        builder.mul(builder.add(m0_val, const(i // vectors)), ldc),
                        builder.add(c0_val, const(i % vectors * lanes)),
                    ),
                )
                for i in count
            ]
            lane_index = ir.Constant(ir.VectorType(intp, lanes), list(range(lanes)))
            masks = [  # lanes of vector v inside the valid columns
                builder.icmp_signed("<", builder.add(lane_index, splat(const(v * lanes))), splat(valid_val))
                for v in range(vectors)
            ]
            mask_type = masks[0].type
            store = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.VoidType(), [vec, vec.as_pointer(), i32, mask_type]),
                f"llvm.masked.store.v{lanes}f{8 * dtype.itemsize}.p0",
            )
            load = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(vec, [vec.as_pointer(), i32, mask_type, vec]),
                f"llvm.masked.load.v{lanes}f{8 * dtype.itemsize}.p0",
            )
            whole = builder.icmp_signed(">=", valid_val, width)
            align = ir.Constant(i32, dtype.itemsize)
            for r in range(tile_rows):  # each row of c: whole vectors, or masked at the right edge
                row = range(r * vectors, (r + 1) * vectors)
                with builder.if_then(builder.icmp_signed("<", const(r), rows_val), likely=True):
                    with builder.if_else(whole) as (full, edge):
                        with full:
                            for i in row:
                                builder.store(
                                    blend(builder.load(pointers[i], align=1), result[i]), pointers[i], align=1
                                )
                        with edge:
                            for i in row:
                                mask = masks[i % vectors]
                                old = builder.call(load, [pointers[i], align, mask, zero])
                                builder.call(store, [blend(old, result[i]), pointers[i], align, mask])
            return context.get_dummy_value()

        intp = types.intp
        return types.none(a, panels, intp, intp, intp, c, intp, intp, beta), codegen

    return tile


def _splat(builder, value, lanes):
    """A vector of `lanes` copies of the scalar `value`."""
    i32 = ir.IntType(32)
    undef = ir.Constant(ir.VectorType(value.type, lanes), ir.Undefined)
    first = builder.insert_element(undef, value, ir.Constant(i32, 0))
    return builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(i32, lanes), [0] * lanes))


_wide_tile = _tile_intrinsic(WIDE.rows, WIDE.vectors)
_narrow_tile = _tile_intrinsic(NARROW.rows, NARROW.vectors)
_wide_row = _tile_intrinsic(1, WIDE.vectors)
_narrow_row = _tile_intrinsic(1, NARROW.vectors)


@numba.njit(fastmath={"contract"}, **OPTIONS)
def add_column_sums(a, out):
    """out += a.sum(axis=0) for a (rows, n) and out (n,): one streaming pass over a."""
    for row in range(a.shape[0]):
        for column in range(a.shape[1]):
            out[column] += a[row, column]


@numba.njit(fastmath={"reassoc", "contract"}, **OPTIONS)
def row_sums(a, out):
    """out[row] = a[row].sum() for a (rows, n) and out (rows,): a reduction's terms added up per batch
    row. The one reassociated sum of the kernels (in vector lanes, in any order): the loops that
    write the terms stay elementwise, and so vectorized."""
    for row in range(a.shape[0]):
        total = a.dtype.type(0.0)
        for unit in range(a.shape[1]):
            total += a[row, unit]
        out[row] = total


_COMPILED_TASKS = _link_tasks()  # kept: their machine code lives as long as these objects
