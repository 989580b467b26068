"""The threads that share a matrix product's tiles: `run(worker, data, tasks, threads)`.

A recurrent kernel makes one or two products per step, of a few to a few hundred microseconds each.
Numba's launchers cost more than that: TBB's builds a task arena on every call, and whether its
worker joins before the calling thread has run every tile is chance (LSTM float32 at 64x32x128,
inference: 4.8 or 6.5 ms from one process to the next, 6.1 on one thread). This pool keeps
`threads - 1` native threads (`start`) that wait for the next product by spinning, then by sleeping:

- the calling thread publishes a product (its `worker`, `data` and number of tasks) and bumps the
  generation; each thread owns an even range of the tasks (so at batch 1 a thread reads the same
  share of a weight at every step, from its own L2 cache) and, once it is done, steals tasks of the
  others' ranges, one at a time;
- a task is claimed by a compare-and-swap on its range's counter, which holds the generation
  beside the next task: a thread that wakes late cannot claim a task of a later product;
- the caller runs tasks too and returns when every task is done. It never waits for a thread to
  wake: a sleeping thread just takes no tasks. Two callers at once: the second runs its own tasks.
- the threads never take the GIL while they wait or work, so a busy Python thread does not stall
  a product; they stop at exit (`atexit`), and a forked child starts its own (`os.register_at_fork`).

Everything lives in one int64 array (`_STATE`), exposed to compiled code by a symbol, so the code is
cached on disk like the kernels.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import platform
import sys
import threading

import llvmlite.binding as llvm
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils, config, sigutils
from numba.core.ccallback import CFunc
from numba.extending import intrinsic

from .kernel_cache import enable_caching

MAX_THREADS = 64
LINE = 8  # int64 per cache line: fields that different threads write sit on lines of their own
# _STATE's fields (indices of int64)
LOCK, GENERATION, WORKER, DATA, THREADS = 0, 1, 2, 3, 4  # written by the caller, one line
DONE = LINE  # tasks finished, added to by every thread
STOP, STARTED, BY_POOL = 2 * LINE, 2 * LINE + 1, 2 * LINE + 2  # ask the threads to return; how many run; tasks they ran
RANGES = 3 * LINE  # thread t's range: counter (generation << 32 | next task) at RANGES + LINE*t, end beside it
SIZE = RANGES + LINE * MAX_THREADS
INDEX_BITS = 32

# A waiting thread spins this many times (about 0.2 ms at 25 ns a pause on Zen 4: a kernel's next product
# comes sooner), then sleeps 50 us at a time for about 30 ms (the next call of a loop), 2 ms at a time for
# about a second, then 20 ms at a time. A product that starts while it sleeps does not wait for it.
SPINS = 1 << 13
SHORT_SLEEPS = 400
LONG_SLEEPS = 500

_SYMBOL = "rnn_derive_thread_pool"
RUN_SYMBOL = "rnn_derive_thread_pool_run"
_buffer = (ctypes.c_int64 * (SIZE + LINE))()
_STATE = (ctypes.c_int64 * SIZE).from_address(ctypes.addressof(_buffer) + (-ctypes.addressof(_buffer)) % 64)


def _field(builder, index):
    """A pointer to _STATE[index] in compiled code."""
    i64 = ir.IntType(64)
    module = builder.module
    state = module.globals.get(_SYMBOL) or ir.GlobalVariable(module, ir.ArrayType(i64, SIZE), _SYMBOL)
    return builder.gep(state, [ir.Constant(ir.IntType(32), 0), index])


@intrinsic
def _load(typingctx, index):
    def codegen(context, builder, signature, args):
        return builder.load_atomic(_field(builder, args[0]), "seq_cst", 8)

    return types.int64(types.intp), codegen


@intrinsic
def _store(typingctx, index, value):
    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[1], signature.args[1], types.int64)
        builder.store_atomic(value, _field(builder, args[0]), "seq_cst", 8)
        return context.get_dummy_value()

    return types.none(types.intp, types.int64), codegen


@intrinsic
def _add(typingctx, index, value):
    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", _field(builder, args[0]), value, "seq_cst")

    return types.int64(types.intp, types.int64), codegen


@intrinsic
def _swap(typingctx, index, expected, new):
    """Compare-and-swap: whether _STATE[index] held `expected` (and now holds `new`)."""

    def codegen(context, builder, signature, args):
        pair = builder.cmpxchg(_field(builder, args[0]), args[1], args[2], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)

    return types.boolean(types.intp, types.int64, types.int64), codegen


def _pause_instruction(builder):
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        pause = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause"
        )
        builder.call(pause, [])
    elif machine in ("aarch64", "arm64"):
        builder.asm(ir.FunctionType(ir.VoidType(), []), "yield", "", [], side_effect=True)


@intrinsic
def _pause(typingctx):
    """The CPU's spin-wait hint."""

    def codegen(context, builder, signature, args):
        _pause_instruction(builder)
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def _sleep(typingctx, microseconds):
    """Sleep the calling thread (usleep; Sleep on Windows, in milliseconds)."""

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        if sys.platform == "win32":
            sleep = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i32]), "Sleep")
            builder.call(sleep, [builder.trunc(builder.udiv(args[0], ir.Constant(args[0].type, 1000)), i32)])
        else:
            sleep = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [i32]), "usleep")
            builder.call(sleep, [builder.trunc(args[0], i32)])
        return context.get_dummy_value()

    return types.none(types.intp), codegen


def worker_type(context) -> ir.FunctionType:
    """A worker's LLVM type: the signature of Numba's parallel regions (char **args, intp *dims, intp *steps,
    void *data)."""
    i8p, intp = ir.IntType(8).as_pointer(), context.get_value_type(types.intp)
    return ir.FunctionType(ir.VoidType(), [i8p.as_pointer(), intp.as_pointer(), intp.as_pointer(), i8p])


def call_worker(context, builder, worker, first, count, data) -> None:
    """worker(args, dims, steps, data) over tasks first:first+count: task `first` as args[0] read as a number,
    dims[0] = count, one byte per task (see `matrix._worker`)."""
    i8p, intp = ir.IntType(8).as_pointer(), context.get_value_type(types.intp)
    tasks = cgutils.alloca_once_value(builder, builder.inttoptr(first, i8p))
    dims = cgutils.alloca_once_value(builder, count)
    step = cgutils.alloca_once_value(builder, ir.Constant(intp, 1))
    builder.call(worker, [tasks, dims, step, data])


@intrinsic
def _call(typingctx, worker, data, task):
    """The worker at address `worker` for the one task `task` of the product at address `data`."""

    def codegen(context, builder, signature, args):
        i8p, intp = ir.IntType(8).as_pointer(), context.get_value_type(types.intp)
        function = builder.inttoptr(args[0], worker_type(context).as_pointer())
        call_worker(context, builder, function, args[2], ir.Constant(intp, 1), builder.inttoptr(args[1], i8p))
        return context.get_dummy_value()

    return types.none(types.intp, types.intp, types.intp), codegen


@intrinsic
def address(typingctx, pointer):
    """A pointer as a number."""

    def codegen(context, builder, signature, args):
        return builder.ptrtoint(args[0], context.get_value_type(types.intp))

    return types.intp(pointer), codegen


OPTIONS = dict(cache=True, nogil=True, error_model="numpy")


@numba.njit(**OPTIONS)
def _claim(me, threads, generation, worker, data):
    """Run tasks of the product `generation`: from thread `me`'s own range, then from the others'. How many."""
    mask = (1 << INDEX_BITS) - 1
    done = 0
    for k in range(threads):
        counter = RANGES + LINE * ((me + k) % threads)
        while True:
            claimed = _load(counter)
            # the end is read after the counter: a later product resets the counter before its end
            if claimed >> INDEX_BITS != generation or claimed & mask >= _load(counter + 1):
                break
            if _swap(counter, claimed, claimed + 1):
                _call(worker, data, claimed & mask)
                done += 1
    return done


@numba.njit(**OPTIONS)
def _run(worker, data, tasks, threads):
    """worker's tasks 0:tasks, shared among `threads` threads (the caller's and the pool's) if it can."""
    threads = min(threads, _load(STARTED) + 1)
    if threads <= 1 or not _swap(LOCK, 0, 1):  # no pool, or another caller has it
        for task in range(tasks):
            _call(worker, data, task)
        return
    generation = (_load(GENERATION) + 1) & ((1 << 31) - 1)
    _store(WORKER, worker)
    _store(DATA, data)
    _store(THREADS, threads)
    _store(DONE, 0)
    for t in range(threads):
        counter = RANGES + LINE * t
        _store(counter, (generation << INDEX_BITS) | (t * tasks // threads))
        _store(counter + 1, (t + 1) * tasks // threads)
    _store(GENERATION, generation)
    _add(DONE, _claim(0, threads, generation, worker, data))
    while _load(DONE) < tasks:
        _pause()
    _store(LOCK, 0)


def _run_c(worker, data, tasks, threads):
    """`_run` as the C function that `matrix` calls by the symbol `RUN_SYMBOL`."""
    _run(address(worker), address(data), tasks, threads)


@numba.njit(**OPTIONS)
def _serve(me):
    """Thread `me` (1, 2, ...) of the pool: take part in every product until asked to stop."""
    seen = _load(GENERATION)
    idle = 0
    while _load(STOP) == 0:
        generation = _load(GENERATION)
        if generation != seen:
            seen = generation
            idle = 0
            threads = _load(THREADS)
            if me < threads:
                done = _claim(me, threads, generation, _load(WORKER), _load(DATA))
                if done:
                    _add(BY_POOL, done)
                    _add(DONE, done)
        elif idle < SPINS:
            idle += 1
            _pause()
        elif idle < SPINS + SHORT_SLEEPS:
            idle += 1
            _sleep(50)
        elif idle < SPINS + SHORT_SLEEPS + LONG_SLEEPS:
            idle += 1
            _sleep(2000)
        else:
            _sleep(20000)


_threads: list[threading.Thread] = []
_starting = threading.Lock()


def start(threads: int) -> None:
    """Run `threads - 1` pool threads beside the calling ones (once per process; at most MAX_THREADS)."""
    with _starting:
        if _threads or config.DISABLE_JIT:
            return
        _STATE[STOP] = 0
        for me in range(1, min(threads, MAX_THREADS)):
            thread = threading.Thread(target=_serve, args=(me,), name=f"rnn-derive-matmul-{me}", daemon=True)
            thread.start()
            _threads.append(thread)
        _STATE[STARTED] = len(_threads)


def threads() -> int:
    """How many pool threads run (0 before `start`)."""
    return int(_STATE[STARTED])


def tasks_run_by_pool_threads() -> int:
    """Tasks that the pool's threads (not the callers) have run in this process, for tests and diagnostics."""
    return int(_STATE[BY_POOL])


def stop() -> None:
    """Ask the pool's threads to return and wait for them (at exit: their code must not outlive Numba's)."""
    with _starting:
        _STATE[STARTED] = 0
        _STATE[STOP] = 1
        for thread in _threads:
            thread.join(timeout=5)
        _threads.clear()


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: it runs products alone until it starts its own."""
    global _starting
    count = len(_threads) + 1
    _starting = threading.Lock()
    _threads.clear()
    for index in range(SIZE):
        _STATE[index] = 0
    if count > 1:
        start(count)


def _link() -> CFunc | None:
    """Expose _STATE and compile (or load from the cache) `_run_c` under `RUN_SYMBOL`."""
    llvm.add_symbol(_SYMBOL, ctypes.addressof(_STATE))
    if config.DISABLE_JIT:
        return None
    intp = types.intp
    signature = sigutils.normalize_signature(types.void(types.voidptr, types.voidptr, intp, intp))
    c_function = CFunc(_run_c, signature, locals={}, options={"error_model": "numpy"})
    enable_caching(c_function)
    c_function.compile()
    llvm.add_symbol(RUN_SYMBOL, c_function.address)
    return c_function


_COMPILED_RUN = _link()
atexit.register(stop)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
