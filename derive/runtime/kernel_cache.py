"""Numba's on-disk cache of compiled kernels, made to survive damaged files.

Numba trusts its cache files: a truncated or corrupted index (`.nbi`) or data file (`.nbc`) in
`__pycache__` makes the first call of the kernel raise (EOFError, UnpicklingError, "LLVM bitcode
parsing error") in every later process, until someone deletes the file; bytes changed inside the
machine code of a data file even load silently. `RepairingCache` is numba's own cache of a
function's overloads with two changes:
- data files it writes carry the sha256 of their content, checked when they are read (files
  written by numba itself, without it, are read as numba reads them);
- a failure to load an overload removes the damaged entry (only files numba wrote for that
  function), warns once naming the file, and lets numba compile the function again and save it.
It builds on `numba.core.caching` (Cache, IndexDataCacheFile) and their private helpers, which
have kept their names and roles for many numba releases; tests/test_cache.py damages real files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import warnings

from numba.core.caching import FunctionCache, IndexDataCacheFile
from numba.core.ccallback import CFunc
from numba.core.dispatcher import Dispatcher

_WARNED: set[str] = set()


def enable_caching(dispatcher) -> bool:
    """Give a numba dispatcher (or a `numba.cfunc` before it compiles) a `RepairingCache`, as
    `cache=True` gives it numba's own one. False where numba finds no writable cache directory for
    the function's file."""
    if isinstance(dispatcher, CFunc):
        py_func = dispatcher._pyfunc  # what CFunc.enable_caching reads
    elif isinstance(dispatcher, Dispatcher):
        py_func = dispatcher.py_func
    else:  # a plain function under NUMBA_DISABLE_JIT=1
        return True
    try:
        dispatcher._cache = RepairingCache(py_func)  # what enable_caching of both does
    except RuntimeError as error:  # numba: "cannot cache function ...: no locator available ..."
        if "cannot cache" not in str(error):
            raise
        return False
    return True


class ChecksummedCacheFile(IndexDataCacheFile):
    """numba's index and data files; data files start with MAGIC and the sha256 of the rest."""

    MAGIC = b"rnn-derive sha256\n"  # a pickle (numba's own data files) starts with b"\x80"

    def _save_data(self, name, data):
        payload = self._dump(data)
        with self._open_for_write(self._data_path(name)) as file:
            file.write(self.MAGIC + hashlib.sha256(payload).digest() + payload)

    def _load_data(self, name):
        with open(self._data_path(name), "rb") as file:
            content = file.read()
        if content.startswith(self.MAGIC):
            digest, content = content[len(self.MAGIC) : len(self.MAGIC) + 32], content[len(self.MAGIC) + 32 :]
            if hashlib.sha256(content).digest() != digest:
                raise ValueError("its content does not match the sha256 saved with it")
        return pickle.loads(content)


class RepairingCache(FunctionCache):
    """numba's FunctionCache with checksummed data files; a failure to load an overload drops
    it and compiles it again."""

    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file = ChecksummedCacheFile(
            self._cache_path, self._impl.filename_base, self._impl.locator.get_source_stamp()
        )

    def _load_overload(self, sig, target_context):
        try:
            return super()._load_overload(sig, target_context)
        except Exception as error:  # whatever a damaged file raises; compiling is always possible
            self._drop(self._index_key(sig, target_context.codegen()), error)
            return None

    def _drop(self, key, error: Exception) -> None:
        """Remove the entry that failed to load: its data file, or the whole index if that is damaged."""
        files = self._cache_file
        try:
            overloads = files._load_index()
        except Exception:  # the index is damaged: its entries are lost, the data files it named useless
            overloads = None
            damaged, remove = files._index_path, [files._index_path, *self._data_paths()]
        else:
            name = overloads.pop(key, None)
            damaged = files._data_path(name) if name else self._cache_path
            remove = [damaged] if name else []
        try:
            if overloads is not None and remove:
                files._save_index(overloads)
            for path in remove:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            outcome = "removed it; the kernel compiles again and is cached afresh" if remove else "compiling it again"
        except OSError as failure:
            outcome = f"could not remove it ({failure}): delete it, or the kernel compiles in every process"
        if damaged not in _WARNED:
            _WARNED.add(damaged)
            warnings.warn(
                f"{damaged}: numba's cache of {self._py_func.__qualname__} could not be loaded "
                f"({type(error).__name__}: {error}); {outcome}",
                RuntimeWarning,
                stacklevel=2,
            )

    def _data_paths(self) -> list[str]:
        """The data files of this function's cache: numba names them '<base>.<number>.nbc'."""
        pattern = re.compile(re.escape(self._impl.filename_base) + r"\.\d+\.nbc")
        try:
            names = os.listdir(self._cache_path)
        except OSError:
            return []
        return [os.path.join(self._cache_path, name) for name in names if pattern.fullmatch(name)]
