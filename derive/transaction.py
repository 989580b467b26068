"""Replace a package directory all at once, or not at all.

`locked(out)` serializes the runs that write `out` (an fcntl lock on `.<out>.lock` beside it: a
second `generate` waits for the first). Under the lock, `recover(out)` removes the staging
directories that killed runs left beside `out`, then `replace(files, out)`:

1. builds the complete new package in a fresh staging directory beside `out`: the files of `out`
   that stay, the new files, and the compiled caches in `__pycache__` (bytecode, numba's
   .nbi/.nbc) of the modules whose text did not change. Caches of replaced modules are dropped,
   so a stale kernel or stale bytecode can never be loaded, whatever the files' sizes and times;
2. imports the staged package in a fresh interpreter and runs every cell of it once, forward,
   backward and Jacobian, in pure Python (NUMBA_DISABLE_JIT=1, so this takes a second);
3. swaps the staging directory and `out` in one atomic rename (Linux renameat2 with
   RENAME_EXCHANGE), then deletes the old package.

The guarantee: at every instant `out` is the complete old package or the complete new one.
An exception or Ctrl-C before the swap leaves the old one and says which step failed; a kill
(SIGKILL) at any instant leaves one of the two, plus a hidden staging directory that the next run
removes. Where RENAME_EXCHANGE is missing (not Linux, or a filesystem without it) the swap is two
renames; a kill between them leaves `out` missing until the next run restores the old package.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .paths import IMPORT_ROOT

try:
    import fcntl
except ImportError:  # Windows: runs are not serialized
    fcntl = None


SMOKE_TEST = """
import importlib, sys
import numpy as np
package = importlib.import_module(sys.argv[1])
for name, cls in package.CELLS.items():
    cell = cls(2, 3, dtype=np.float64, seed=0)
    y, state, tape = cell.forward(np.random.default_rng(0).standard_normal((2, 2, 2)))
    cell.backward(tape, np.ones_like(y))
    cell.jacobian(tape)
"""


class GenerateError(RuntimeError):
    """A step of the replacement failed; `out` was not changed."""


@contextlib.contextmanager
def locked(out: Path, log=print):
    """Hold the lock of `out` for the duration of the block (waiting for another holder)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f".{out.name}.lock"
    with open(path, "a+") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                log(f"waiting for {holder} to finish writing {out}")
                fcntl.flock(handle, fcntl.LOCK_EX)
            handle.truncate(0)
            handle.write(f"`generate` (pid {os.getpid()})")
            handle.flush()
        try:
            yield
        finally:
            if fcntl is not None:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)


def replace(files: dict[str, str], out: Path, log=print) -> list[str]:
    """Make `out` hold `files` (and its other files), all at once; returns the names written.

    Call it under `locked(out)`, after `recover(out)`.
    """
    old = {name: (out / name).read_text(encoding="utf-8") for name in files if (out / name).is_file()}
    changed = [name for name, text in files.items() if old.get(name) != text]
    if not changed:
        return []
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-staging-", dir=out.parent))
    try:
        package = staging / out.name
        _step("staging the new files", out, lambda: _stage(files, changed, out, package))
        _step("testing the new package", out, lambda: _smoke_test(staging, out.name))
        _step("swapping it in", out, lambda: _swap(package, out, staging))
    except KeyboardInterrupt:
        replaced = (out / changed[0]).is_file() and (out / changed[0]).read_text(encoding="utf-8") == files[changed[0]]
        state = "it holds the complete new package" if replaced else "it was not changed"
        log(f"interrupted while writing {out}: {state}")
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for name in changed:
        log(f"wrote {out / name}")
    return changed


def _step(what: str, out: Path, action) -> None:
    try:
        action()
    except Exception as error:
        detail = str(error) if isinstance(error, GenerateError) else f"{type(error).__name__}: {error}"
        raise GenerateError(f"{what} failed, {out} was not changed: {detail}") from error


def recover(out: Path) -> None:
    """Remove staging directories of killed runs; restore `out` if a fallback swap was cut."""
    for leftover in sorted(out.parent.glob(f".{out.name}-staging-*")):
        previous = leftover / "previous"
        if not out.exists() and previous.is_dir():
            os.rename(previous, out)
        shutil.rmtree(leftover, ignore_errors=True)


def _stage(files: dict[str, str], changed: list[str], out: Path, package: Path) -> None:
    """The complete new package in `package`, with the caches that are still valid."""
    stale = tuple(f"{Path(name).stem}." for name in changed)
    if out.is_dir():
        shutil.copytree(out, package, symlinks=True, ignore=lambda d, names: _stale(d, names, out, stale))
    else:
        package.mkdir()
    for name in changed:
        target = package / name
        before = target.stat() if target.exists() else None
        target.write_text(files[name], encoding="utf-8")
        _distinct_stamp(target, before)


def _stale(directory: str, names: list[str], out: Path, stale: tuple[str, ...]) -> list[str]:
    """Cache files of replaced modules: `__pycache__/<module>.*`."""
    if Path(directory) != out / "__pycache__":
        return []
    return [n for n in names if n.startswith(stale)]


def _distinct_stamp(path: Path, before: os.stat_result | None) -> None:
    """Bytecode caches elsewhere (PYTHONPYCACHEPREFIX) trust (mtime in seconds, size): give a new
    text of the same size a later second than the old one had."""
    if before is None:
        return
    now = path.stat()
    if now.st_size == before.st_size and int(now.st_mtime) <= int(before.st_mtime):
        later = (int(before.st_mtime) + 1) * 10**9
        os.utime(path, ns=(later, later))


def _smoke_test(staging: Path, package: str) -> None:
    """Import the staged package and run each cell once, in a fresh interpreter."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(staging), str(IMPORT_ROOT), os.environ.get("PYTHONPATH", "")])
    # cwd: `python -c` puts the working directory first on sys.path, where an old copy may live
    result = subprocess.run(
        [sys.executable, "-c", SMOKE_TEST, package], env=env, cwd=staging, capture_output=True, text=True
    )
    if result.returncode:
        raise GenerateError(
            f"the new modules fail to import or to run:\n{result.stderr.strip()}"
        )


def _swap(package: Path, out: Path, staging: Path) -> None:
    if not out.exists():
        os.rename(package, out)
        return
    if _exchange(package, out):
        return
    os.rename(out, staging / "previous")  # fallback: a window where `out` is missing
    try:
        os.rename(package, out)
    except BaseException:
        os.rename(staging / "previous", out)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two directories (Linux renameat2); False where unsupported."""
    libc = _libc()
    if libc is None:
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(code)}")


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc if hasattr(libc, "renameat2") else None
    except OSError:
        return None
