"""Numba's cache: never stale after regeneration, repaired when damaged, optional where nothing is writable."""

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from derive.activations import tanh
from derive.spec import Cell
from derive.write import generate as gen

ROOT = Path(__file__).resolve().parent.parent
QUIET = dict(log=lambda message: None)

RUN_SCALED = """
import json
import numpy as np
from scaledpkg import Scaled
cell = Scaled(2, 3, dtype=np.float64, seed=0)
y, _, _ = cell.forward(np.ones((1, 1, 2)))
print(json.dumps({"y": y.ravel().tolist(), "W": cell.params["W"].tolist(), "b": cell.params["b"].tolist()}))
"""


def scaled(scale: str) -> dict[str, str]:
    """A package with one cell h' = tanh(scale * (W x + U h + b)); every scale prints with the
    same number of characters, so the modules of two scales have the same size."""
    cell = Cell("scaled", class_name="Scaled")
    x = cell.input()
    h = cell.state("h")
    W, U, b = cell.weight("W", x), cell.weight("U", h), cell.bias("b")
    cell.update(h, tanh(sp.Float(scale) * (W + U + b)))
    cell.source = "scaled"
    return gen.render_all([cell])


def run(parent: Path, script: str, **env) -> subprocess.CompletedProcess:
    """`script` in a fresh interpreter with the default caches: bytecode and numba's in __pycache__."""
    environment = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONDONTWRITEBYTECODE")}
    environment.update(PYTHONPATH=os.pathsep.join([str(parent), str(ROOT)]), **env)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=parent, env=environment, capture_output=True, text=True, timeout=900
    )


def scale_used(parent: Path) -> float:
    """Run the cell in a fresh interpreter (using whatever caches exist) and infer its scale."""
    result = run(parent, RUN_SCALED)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    pre = np.sum(out["W"], axis=1) + np.array(out["b"])  # x = 1, h0 = 0
    return float(np.round(np.arctanh(out["y"])[0] / pre[0], 6))


def test_a_regenerated_module_of_equal_size_and_mtime_never_runs_stale_code(tmp_path):
    out = tmp_path / "scaledpkg"
    first, second = scaled("0.25"), scaled("0.75")
    assert len(first["scaled.py"]) == len(second["scaled.py"]) and first["scaled.py"] != second["scaled.py"]
    gen.write_package(first, out, **QUIET)
    assert scale_used(tmp_path) == 0.25  # compiles, and caches bytecode and kernels in __pycache__
    assert any(p.suffix == ".nbi" for p in (out / "__pycache__").iterdir())
    module = out / "scaled.py"
    before = module.stat()
    gen.write_package(second, out, **QUIET)
    assert module.stat().st_size == before.st_size
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))  # the worst case: same size, same time
    assert scale_used(tmp_path) == 0.75

    # Control: the same swap of texts behind generate's back loads the stale caches.
    stamp = module.stat()
    module.write_text(first["scaled.py"])
    os.utime(module, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert scale_used(tmp_path) == 0.75, "expected the stale bytecode to be used: the test would not see staleness"


RUN_THREADED = """
import json
import numpy as np
import threadedpkg
cell = threadedpkg.CELLS[{name!r}](128, 128, dtype=np.float32, seed=0)  # products of 32x128x128: threaded
x = np.random.default_rng(0).standard_normal((3, 32, 128)).astype(np.float32)
y, _, tape = cell.forward(x)
grads = cell.backward(tape, np.ones_like(y))
print(json.dumps([float(y.sum()), float(grads.x.sum()), float(grads.params["W"].sum())]))
"""


def test_kernels_loaded_from_the_cache_run_their_threaded_products(tmp_path):
    """The pattern that crashes Numba (issue #8578) when a cached kernel links a separately
    compiled parallel function: cell b compiles while the matrix helpers load from the cache, then
    both load from the cache. Every run must succeed and agree."""
    cells = []
    for name in ("a", "b"):
        cell = Cell(name, class_name=name.upper())
        x, h = cell.input(), cell.state("h")
        cell.update(h, tanh(cell.weight("W", x) + cell.weight("U", h) + cell.bias("b")))
        cell.source = name
        cells.append(cell)
    gen.write_package(gen.render_all(cells), tmp_path / "threadedpkg", **QUIET)
    cache = dict(NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    outputs = []
    for name in ("a", "b", "b", "a"):
        result = run(tmp_path, RUN_THREADED.format(name=name), **cache)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs.append((name, result.stdout))
    assert outputs[1] == outputs[2] and outputs[0] == outputs[3]


@contextlib.contextmanager
def read_only_install(tmp_path: Path):
    """generated/ copied where its own __pycache__ cannot be written. As root, permission bits do
    not stop writes, so numba's in-tree cache is made unusable: __pycache__ is a file."""
    install = tmp_path / "install"
    package = install / "generated"
    package.mkdir(parents=True)
    for source in (ROOT / "generated").glob("*.py"):
        shutil.copy(source, package)
    (package / "probe.py").write_text("import numba\n\n@numba.njit(cache=True)\ndef one():\n    return 1\n")
    (package / "__pycache__").write_text("not a directory")
    listing = sorted(p.name for p in package.iterdir())
    for path in [package, *package.iterdir()]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield install
    finally:
        for path in [package, *package.iterdir()]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert sorted(p.name for p in package.iterdir()) == listing


RUN_RNN = "import numpy as np, generated; generated.RNN(2, 3).forward(np.ones((3, 2, 2), np.float32)); print('ran')"


def test_a_read_only_install_caches_its_kernels_in_the_user_cache(tmp_path):
    """What the README says: numba falls back to the user's cache directory, without a warning."""
    user_cache = tmp_path / "user-cache"
    with read_only_install(tmp_path) as install:
        result = run(
            install, RUN_RNN, HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(user_cache), PYTHONDONTWRITEBYTECODE="1"
        )
    assert result.returncode == 0 and result.stdout.strip() == "ran", result.stderr
    assert "RuntimeWarning" not in result.stderr, result.stderr
    assert list(user_cache.glob("numba/*/rnn._forward-*.nbi")), sorted(map(str, user_cache.rglob("*")))


def test_a_read_only_install_without_any_cache_directory_works_and_warns_once(tmp_path):
    """No cache directory at all: the user cache directory lies below a file."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file")
    env = dict(HOME=str(blocked / "home"), XDG_CACHE_HOME=str(blocked / "cache"), PYTHONDONTWRITEBYTECODE="1")
    with read_only_install(tmp_path) as install:
        control = run(install, "import generated.probe", **env)
        assert "cannot cache function 'one'" in control.stderr, (
            "the cache is writable after all: the test proves nothing"
        )
        result = run(install, RUN_RNN, **env)
    assert result.returncode == 0 and result.stdout.strip() == "ran", result.stderr
    assert result.stderr.count("no writable cache directory") == 1, result.stderr  # not one per module
    assert "RuntimeWarning: no writable cache directory for compiled kernels" in result.stderr
    assert "Set NUMBA_CACHE_DIR to a writable directory" in result.stderr


# -- damaged cache files ----------------------------------------------------------------------
def flip_64_bytes(data: bytes, at: int) -> bytes:
    return data[:at] + bytes(b ^ 0xFF for b in data[at : at + 64]) + data[at + 64 :]


DAMAGE = {  # name: (file suffix, how its bytes change)
    "index truncated to 0": (".nbi", lambda data: b""),
    "index of random bytes": (".nbi", lambda data: np.random.default_rng(0).bytes(len(data))),
    "data halved": (".nbc", lambda data: data[: len(data) // 2]),
    "data with 64 bytes flipped in the bitcode": (
        ".nbc",
        lambda data: flip_64_bytes(data, data.index(b"BC\xc0\xde") + 4096),
    ),
    "data with 64 bytes flipped in the machine code": (
        ".nbc",
        lambda data: flip_64_bytes(data, data.index(b"\x7fELF") + 4096),
    ),
}


@pytest.fixture(scope="module")
def cached_package(tmp_path_factory):
    """The scaled package, run once: its kernel `_forward` is cached in its __pycache__."""
    parent = tmp_path_factory.mktemp("cached")
    gen.write_package(scaled("0.25"), parent / "scaledpkg", **QUIET)
    assert scale_used(parent) == 0.25
    return parent


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cache_file_is_dropped_with_one_warning_and_the_kernel_compiled_again(
    cached_package, tmp_path, damage
):
    shutil.copytree(cached_package, tmp_path, dirs_exist_ok=True)  # copy2: times kept, the cache stays valid
    cache = tmp_path / "scaledpkg" / "__pycache__"
    suffix, change = DAMAGE[damage]
    (damaged,) = cache.glob(f"scaled._forward-*{suffix}")
    damaged.write_bytes(change(damaged.read_bytes()))
    unrelated = cache / "unrelated.forward-1.py311.1.nbc"
    unrelated.write_bytes(b"another function's cache file")

    result = run(tmp_path, RUN_SCALED)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count(f"{damaged}: numba's cache of _forward could not be loaded") == 1, result.stderr[-3000:]
    assert "removed it; the kernel compiles again and is cached afresh" in result.stderr
    expected = run(cached_package, RUN_SCALED).stdout
    assert result.stdout == expected
    again = run(tmp_path, RUN_SCALED)  # repaired: loads from the cache, no warning
    assert again.returncode == 0 and again.stdout == expected and "could not be loaded" not in again.stderr, (
        again.stderr
    )
    assert unrelated.read_bytes() == b"another function's cache file"
    (data,) = cache.glob("scaled._forward-*.nbc")
    assert data.read_bytes().startswith(b"rnn-derive sha256\n")  # saved afresh, with its checksum


MATMUL = """
import numba
import numpy as np
from derive.runtime.matrix import matmul, pack

@numba.njit
def product(a, panels, c):
    matmul(a, panels, c, 0.0)

a, b = np.arange(12.0).reshape(3, 4), np.arange(20.0).reshape(4, 5)
c = np.zeros((3, 5))
product(a, pack(b), c)
print(float(np.abs(c - a @ b).max()))
"""


@pytest.mark.parametrize("damage", ["index of random bytes", "data halved"])
def test_a_damaged_cache_of_the_matrix_tiles_is_dropped_and_they_compile_again(tmp_path, damage):
    """The tiles (`matrix._tasks`, compiled once per dtype when derive.runtime.matrix is imported) keep a
    repairing cache like the kernels': a damaged file of theirs would otherwise fail every import."""
    shutil.copytree(ROOT / "derive", tmp_path / "derive")
    cache = tmp_path / "derive" / "runtime" / "__pycache__"
    for old in cache.glob("matrix._tasks-*"):  # the checkout's, maybe of older line numbers too
        old.unlink()
    assert run(tmp_path, MATMUL).stdout == "0.0\n"  # compiled and cached
    suffix, change = DAMAGE[damage]
    damaged = sorted(cache.glob(f"matrix._tasks-*{suffix}"))[0]  # the index, or the first dtype's data
    damaged.write_bytes(change(damaged.read_bytes()))

    result = run(tmp_path, MATMUL)
    assert result.returncode == 0 and result.stdout == "0.0\n", result.stderr[-3000:]
    assert result.stderr.count(f"{damaged}: numba's cache of _tasks could not be loaded") == 1, result.stderr[-3000:]
    again = run(tmp_path, MATMUL)  # repaired: loads from the cache, no warning
    assert again.returncode == 0 and again.stdout == "0.0\n" and "could not be loaded" not in again.stderr, again.stderr


ACCURACY_SWEEPS = """
import numpy as np
from derive.tools import accuracy
sigmoid = accuracy.jitted("sigmoid")
accuracy._sweep32(sigmoid, accuracy.REFERENCES["sigmoid"], 0, 1000, 1, 1.0)
accuracy.float64_errors("sigmoid", sigmoid, n=10)
"""


def test_the_accuracy_sweeps_taking_functions_leave_nothing_in_the_cache(tmp_path):
    """Functions whose arguments are jitted functions get a type naming one process's function object:
    cached, each process added an index entry, and saving the index failed once one was freed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", ACCURACY_SWEEPS], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
    cached = [p.name for p in (tmp_path / "cache").rglob("accuracy.*")]
    assert cached and not [name for name in cached if "_sweep32" in name or "_apply" in name], cached
