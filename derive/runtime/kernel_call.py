"""How the runtime calls a kernel: safely from any thread or forked process, and interruptibly.

Kernels release the GIL for the whole call (`nogil=True`) and take a last argument `cancel`, a
one-element uint8 array they read once per time step, returning early when it is set.

- Threads: `threading_layer` chooses TBB (thread- and fork-safe). Under a layer that is not
  thread-safe (`workqueue`), one process-wide lock lets one kernel call run at a time.
- Ctrl-C: signals reach Python only in the main thread, between bytecodes. A long call from the
  main thread therefore runs in a worker thread while the main thread waits; a KeyboardInterrupt
  (or any exception from a signal handler) sets `cancel`, waits the few milliseconds until the
  kernel has returned and is raised again. The cell and its parameters are unchanged: kernels
  only write the call's new output arrays. Shorter calls (`WORKER_WORK`) and calls from other
  threads run directly: Ctrl-C then waits for their end.
- Fork: the lock and the worker are made anew in a child process.
"""

from __future__ import annotations

import os
import threading
from concurrent import futures

import numpy as np

from . import threading_layer

# Multiply-adds (about T * B * parameter count) from which a main-thread call runs in the worker:
# 30 ms on the 2-core benchmark machine, about 1 s on a slow one. The hand-off to the worker and
# back takes the GIL three times, a few switch intervals (5 ms) when a busy Python thread holds it,
# so only long calls pay it.
WORKER_WORK = 1 << 30
POLL_SECONDS = 0.1  # the main thread's wait wakes this often to run Python's pending signal handlers

_lock = threading.Lock()
_worker: futures.ThreadPoolExecutor | None = None
_UNCANCELLED = np.zeros(1, np.uint8)  # the flag of direct calls: nothing sets it
_main_thread = threading.main_thread().ident  # the thread that receives signals


def call(kernel, args: tuple, work: int) -> None:
    """kernel(*args, cancel), with `work` about its count of multiply-adds."""
    if threading_layer.needs_lock():
        with _lock:
            _call(kernel, args, work)
    else:
        _call(kernel, args, work)


def _call(kernel, args: tuple, work: int) -> None:
    if work < WORKER_WORK or threading.get_ident() != _main_thread:
        kernel(*args, _UNCANCELLED)
        return
    cancel = np.zeros(1, np.uint8)
    running = None
    try:
        running = _get_worker().submit(kernel, *args, cancel)
        while not running.done():  # a signal interrupts the wait; the timeout serves _thread.interrupt_main
            futures.wait([running], timeout=POLL_SECONDS)
    except BaseException:  # KeyboardInterrupt, or what a signal handler raised
        cancel[0] = 1  # also stops a kernel submitted just before the signal
        if running is not None:
            wait_for(running)
        raise
    running.result()  # raises what the kernel raised


def _get_worker() -> futures.ThreadPoolExecutor:
    global _worker
    if _worker is None:
        _worker = futures.ThreadPoolExecutor(1, thread_name_prefix="rnn-derive-kernel")
    return _worker


def wait_for(running: futures.Future) -> None:
    """Until `running` (a cancelled kernel: a few milliseconds) has returned, ignoring further Ctrl-C."""
    while not running.done():
        try:
            futures.wait([running])
        except KeyboardInterrupt:
            pass


def _after_fork_in_child() -> None:
    """A forked child has only the forking thread, now its main thread: a lock held or a worker of
    the parent is gone."""
    global _lock, _worker, _main_thread
    _lock, _worker, _main_thread = threading.Lock(), None, threading.get_ident()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
