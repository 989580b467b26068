"""Numba's threading layer for the kernels: chosen when the runtime is imported, before any kernel runs.

Numba has three layers (https://numba.readthedocs.io/en/stable/user/threading-layer.html):

    tbb        thread-safe and fork-safe
    omp        thread-safe; GNU OpenMP (Linux) is not fork-safe: a fork after a parallel kernel
               aborts the child ("Terminating: fork() called from a process already using GNU OpenMP")
    workqueue  fork-safe; not thread-safe: two threads in parallel code at once abort the process

Only TBB lets a cell be called from several threads and from a forked process. Unless the user
chose a layer (`NUMBA_THREADING_LAYER`, or Numba's threads already started), the layer is Numba's
"forksafe" choice: TBB where it loads, else `workqueue` (on Linux; elsewhere OpenMP, which is
fork-safe there), never GNU OpenMP. The `tbb` wheel puts its library in `<sys.prefix>/lib`
(Windows: `Library/bin`), which the loader does not search in a virtual environment, so it is
loaded from there first. Under `workqueue`, `needs_lock()` tells the runtime to let one kernel
call run at a time, and if the layer was this module's choice, one warning says so.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import warnings

import numba

# Where the `tbb` wheel installs the library, as Numba names it per platform.
TBB_LIBRARY = {
    "win32": os.path.join("Library", "bin", "tbb12.dll"),
    "darwin": os.path.join("lib", "libtbb.12.dylib"),
}.get(sys.platform, os.path.join("lib", "libtbb.so.12"))
NOT_THREAD_SAFE = "workqueue"

_layer: str | None = None
_starting = threading.Lock()


def layer() -> str:
    """The threading layer of the kernels; the first call starts Numba's threads."""
    return _layer or _start()


def needs_lock() -> bool:
    """Whether kernel calls must run one at a time in this process (the layer is not thread-safe)."""
    return (_layer or _start()) == NOT_THREAD_SAFE


def _start() -> str:
    global _layer
    with _starting:
        if _layer is None:
            _choose()  # again: Numba's compiler reloads its config when NUMBA_* variables change
            numba.get_num_threads()  # starts the threads in the configured layer
            _layer = numba.threading_layer()
            from . import matrix  # imported here: importing the runtime (any CLI command does) need not load it

            matrix.use_threads()  # large matrix products now share their tiles among the threads
            if _layer == NOT_THREAD_SAFE and _chosen_here:
                warnings.warn(
                    f"rnn-derive: Numba's TBB threading layer could not be loaded, so kernels use '{_layer}', "
                    "which is fork-safe but not thread-safe: kernel calls from several threads run one at a "
                    "time. Install the `tbb` package (pip install tbb) to run them at once.",
                    RuntimeWarning,
                    stacklevel=2,
                )
    return _layer


def _started() -> bool:
    try:
        numba.threading_layer()
    except ValueError:  # "Threading layer is not initialized."
        return False
    return True


def _load_tbb() -> None:
    """Load the `tbb` wheel's library by its path, so that Numba's load by name finds it."""
    path = os.path.join(sys.prefix, TBB_LIBRARY)
    if os.path.exists(path):
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            pass  # Numba's own attempt fails as well and takes the next layer


def _choose() -> None:
    """Configure the layer unless the user did (then `_chosen_here` stays False)."""
    global _chosen_here
    if _started():
        return
    _load_tbb()  # also serves a user's NUMBA_THREADING_LAYER=tbb or "safe"
    if numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "forksafe"
        _chosen_here = True


_chosen_here = False
_choose()
