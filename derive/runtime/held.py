"""Copies and comparisons of arrays that keep the GIL: the tape's copies, y, the tape check.

NumPy releases the GIL while it copies or compares a large array. Beside a CPU-busy Python thread,
taking it back waits for that thread's switch interval (5 ms by default): a forward with its tape
waited four times (x, W_ih, W_hh and y), about 20 ms on top of a 4 ms kernel. C's memmove and memcmp,
called through ctypes with the Python calling convention (`PYFUNCTYPE`, which keeps the GIL), do the
same work in one go: a copy of a few MiB keeps other Python threads waiting a millisecond or so, once.
Arrays that are not C-contiguous take NumPy's path, and so does everything where libc's memcmp cannot
be found.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

_SIGNATURE = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memmove = ctypes.PYFUNCTYPE(ctypes.c_void_p, *_SIGNATURE)(ctypes.cast(ctypes.memmove, ctypes.c_void_p).value)


def _find_memcmp():
    try:
        libc = ctypes.cdll.msvcrt if sys.platform == "win32" else ctypes.CDLL(None)
        return ctypes.PYFUNCTYPE(ctypes.c_int, *_SIGNATURE)(ctypes.cast(libc.memcmp, ctypes.c_void_p).value)
    except (OSError, AttributeError):
        return None


_memcmp = _find_memcmp()


def copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of `array`."""
    if not array.flags.c_contiguous:
        return np.array(array, order="C", copy=True)
    out = np.empty(array.shape, array.dtype)
    if array.nbytes:
        _memmove(out.ctypes.data, array.ctypes.data, array.nbytes)
    return out


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equality of two arrays of one dtype (NaN equals itself)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if _memcmp is not None and a.flags.c_contiguous and b.flags.c_contiguous:
        return a.nbytes == 0 or _memcmp(a.ctypes.data, b.ctypes.data, a.nbytes) == 0
    unsigned = np.dtype(f"u{a.dtype.itemsize}")
    return np.array_equal(np.ascontiguousarray(a).view(unsigned), np.ascontiguousarray(b).view(unsigned))
