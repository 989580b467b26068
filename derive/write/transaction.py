"""Replace a package directory all at once, or not at all.

`locked(out)` serializes the runs that write `out` (an fcntl lock on the folder that holds it:
a second `generate` into that folder waits for the first; no lock file is left anywhere). Under
the lock, `recover(out)` removes what killed runs left, then `replace(files, out)`:

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

Where `out` cannot be renamed at all (EXDEV: a folder in an overlayfs lower layer, as in a Docker
image; EBUSY: a mount point, as a Docker volume), the changed files are replaced one by one: all
new files are first written beside the old ones (`.<name>.generate-partial`), then the caches of
the replaced modules are deleted and each file is renamed over its old one. Each file is always
complete, but the package is not replaced at once: a failure while writing the new files leaves
the old package; a kill during the renames (a few milliseconds) can leave some modules new and
some old, which the next run completes.
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


PARTIAL = ".generate-partial"  # suffix of a new file written beside the old one (file-by-file replacement)


class GenerateError(RuntimeError):
    """`generate` refused or failed; unless it is a PartlyReplacedError, `out` was not changed."""


class PartlyReplacedError(GenerateError):
    """Replacing the files one by one failed after some of them were replaced."""


@contextlib.contextmanager
def locked(out: Path, log=print):
    """Hold the lock of `out`'s folder for the duration of the block (waiting for another holder)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GenerateError(
            f"{out} was not changed: cannot create its folder {out.parent} ({error.strerror})"
        ) from error
    if fcntl is None:
        yield
        return
    folder = os.open(out.parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another `generate` to finish writing into {out.parent}")
            fcntl.flock(folder, fcntl.LOCK_EX)
        except OSError as error:  # e.g. NFS, where a folder cannot be locked
            log(
                f"cannot lock {out.parent} ({error.strerror}): runs writing into it at the same time are not serialized"
            )
        yield
    finally:
        os.close(folder)  # releases the lock


def replace(files: dict[str, str], out: Path, log=print) -> list[str]:
    """Make `out` hold `files` (and its other files), all at once; returns the names written.

    Call it under `locked(out)`, after `recover(out)`.
    """
    old = {name: (out / name).read_text(encoding="utf-8") for name in files if (out / name).is_file()}
    changed = [name for name, text in files.items() if old.get(name) != text]
    if not changed:
        return []
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-staging-", dir=out.parent))
    except OSError as error:  # a read-only folder or file system
        raise GenerateError(
            f"{out} was not changed: cannot write into its folder {out.parent} ({error.strerror}), "
            "where `generate` stages the new package"
        ) from error
    try:
        package = staging / out.name
        _step("staging the new files", out, lambda: _stage(files, changed, out, package))
        _step("testing the new package", out, lambda: _smoke_test(staging, out.name))
        _step("swapping it in", out, lambda: _swap(package, out, staging, changed))
    except KeyboardInterrupt:
        new = [
            name
            for name in changed
            if (out / name).is_file() and (out / name).read_text(encoding="utf-8") == files[name]
        ]
        state = (
            "it holds the complete new package"
            if len(new) == len(changed)
            else "it was not changed"
            if not new
            else f"{len(new)} of its {len(changed)} changed files were replaced: run `generate` again"
        )
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
    except PartlyReplacedError:
        raise
    except Exception as error:
        detail = str(error) if isinstance(error, GenerateError) else f"{type(error).__name__}: {error}"
        raise GenerateError(f"{what} failed, {out} was not changed: {detail}") from error


def recover(out: Path) -> None:
    """Remove staging directories and partial files of killed runs; restore `out` if a fallback
    swap was cut."""
    for leftover in sorted(out.parent.glob(f".{out.name}-staging-*")):
        previous = leftover / "previous"
        if not out.exists() and previous.is_dir():
            os.rename(previous, out)
        shutil.rmtree(leftover, ignore_errors=True)
    if out.is_dir():
        for partial in out.glob(f".*{PARTIAL}"):
            partial.unlink()


def _stage(files: dict[str, str], changed: list[str], out: Path, package: Path) -> None:
    """The complete new package in `package`, with the caches that are still valid."""
    if out.is_dir():
        caches = out / "__pycache__"
        shutil.copytree(
            out, package, symlinks=True, ignore=lambda d, names: _stale(names, changed) if Path(d) == caches else []
        )
    else:
        package.mkdir()
    for name in changed:
        target = package / name
        before = target.stat() if target.exists() else None
        target.write_text(files[name], encoding="utf-8")
        _distinct_stamp(target, before)


def _stale(caches: list[str], changed: list[str]) -> list[str]:
    """The entries of `__pycache__` that belong to the changed modules: `<module>.*`."""
    modules = tuple(f"{Path(name).stem}." for name in changed)
    return [name for name in caches if name.startswith(modules)]


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
        raise GenerateError(f"the new modules fail to import or to run:\n{result.stderr.strip()}")


def _swap(package: Path, out: Path, staging: Path, changed: list[str]) -> None:
    if not out.exists():
        os.rename(package, out)
        return
    try:
        if not _exchange(package, out):
            _rename_twice(package, out, staging)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EBUSY):
            raise
        _replace_files(package, out, changed)


def _rename_twice(package: Path, out: Path, staging: Path) -> None:
    os.rename(out, staging / "previous")  # a window where `out` is missing
    try:
        os.rename(package, out)
    except BaseException:
        os.rename(staging / "previous", out)
        raise


def _replace_files(package: Path, out: Path, changed: list[str]) -> None:
    """Replace the `changed` files of `out` by those of `package`, each by an atomic rename."""
    partial = {name: out / f".{name}{PARTIAL}" for name in changed}
    replaced = 0
    try:
        for name, path in partial.items():
            shutil.copy2(package / name, path)  # copy2: keeps the distinct stamp of `_stage`
        caches = out / "__pycache__"
        for name in _stale(os.listdir(caches) if caches.is_dir() else [], changed):
            (caches / name).unlink()
        for name, path in partial.items():
            os.replace(path, out / name)
            replaced += 1
    except BaseException as error:
        for path in partial.values():
            path.unlink(missing_ok=True)
        if replaced and isinstance(error, OSError):
            raise PartlyReplacedError(
                f"replacing the files of {out} one by one failed after {replaced} of {len(changed)}: "
                f"{type(error).__name__}: {error}; run `generate` again"
            ) from error
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
