"""Numba's cache: never stale after regeneration, and optional where nothing is writable."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import sympy as sp

from derive import generate as gen
from derive.activations import tanh
from derive.spec import Cell

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
    return subprocess.run([sys.executable, "-c", script], cwd=parent, env=environment, capture_output=True, text=True)


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


def test_a_read_only_install_works_without_the_cache_and_warns(tmp_path):
    """generated/ copied where no cache directory is writable. As root, permission bits do not
    stop writes, so the cache locations are made unusable: __pycache__ is a file, and the user
    cache directory lies below a file."""
    install = tmp_path / "install"
    package = install / "generated"
    package.mkdir(parents=True)
    for source in (ROOT / "generated").glob("*.py"):
        shutil.copy(source, package)
    (package / "probe.py").write_text("import numba\n\n@numba.njit(cache=True)\ndef one():\n    return 1\n")
    (package / "__pycache__").write_text("not a directory")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file")
    listing = sorted(p.name for p in package.iterdir())
    for path in [package, *package.iterdir()]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    env = dict(HOME=str(blocked / "home"), XDG_CACHE_HOME=str(blocked / "cache"), PYTHONDONTWRITEBYTECODE="1")
    try:
        control = run(install, "import generated.probe", **env)
        assert "cannot cache function 'one'" in control.stderr, "the cache is writable after all: the test proves nothing"
        script = "import numpy as np, generated; generated.RNN(2, 3).forward(np.ones((3, 2, 2), np.float32)); print('ran')"
        result = run(install, script, **env)
    finally:
        for path in [package, *package.iterdir()]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert result.returncode == 0 and result.stdout.strip() == "ran", result.stderr
    for module in ("generated.rnn", "generated.lstm", "generated.gru"):  # imported by generated/__init__
        assert result.stderr.count(f"RuntimeWarning: {module}: no writable cache directory for its compiled kernels") == 1
    assert "Set NUMBA_CACHE_DIR to a writable directory" in result.stderr
    assert sorted(p.name for p in package.iterdir()) == listing
