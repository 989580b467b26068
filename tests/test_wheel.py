"""A regular install works from anywhere: the wheel, in a fresh virtual environment.

The wheel is built from a copy of the checkout and installed (not editable) into a new venv;
a user then works in an unrelated folder: generate a spec into a package, import and run it,
show its formulas, gradient-check it. Commands that rebuild the checkout's own files refuse in
one line and write nothing into site-packages.
"""

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT = 900  # pip may download the dependencies (its cache is used when it has them)
RUN_TIMEOUT = 600  # a command that compiles a cell's kernels

RUN_USER_CELL = """
import numpy as np
import derive, mycells
from mycells import LeakyRNN
cell = LeakyRNN(input_size=3, hidden_size=8, seed=0)
y, (h_T,), tape = cell.forward(np.ones((5, 2, 3), np.float32))
grads = cell.backward(tape, dy=np.ones_like(y))
assert y.shape == (5, 2, 8) and grads.params["alpha"].shape == (8,) and np.isfinite(grads.x).all()
print(derive.__file__)
"""


def _run(command: list, cwd: Path, timeout: int = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    """`command` as a user would run it: no PYTHONPATH, nothing from this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR", "PYTHONHOME")}
    return subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the checkout (a build writes build/ and *.egg-info into its source)."""
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "__pycache__", "build", "dist", "*.egg-info", ".pytest_cache", ".hypothesis", "out"
        ),
    )
    # In an isolated build environment, as pip builds for a user: the setuptools of a venv may
    # be too old or lack bdist_wheel.
    _ok(
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp_path / "dist", source],
            tmp_path,
            INSTALL_TIMEOUT,
        )
    )
    return next((tmp_path / "dist").glob("rnn_derive-*.whl"))


@pytest.mark.slow
def test_the_wheel_installs_and_runs_a_user_cell_from_an_unrelated_folder(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"derive", "generated", wheel.name.split("-py3")[0] + ".dist-info"}
    assert {
        "derive/templates/cell.py.jinja",
        "derive/templates/header.jinja",
        "derive/templates/package.py.jinja",
        "derive/write/paths.py",
        "derive/tools/bench/run.py",
        "derive/cells/lstm.py",
        "generated/lstm.py",
    } <= set(names)

    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    _ok(_run([python, "-m", "pip", "install", "--disable-pip-version-check", wheel], tmp_path, INSTALL_TIMEOUT))
    site = Path(
        _ok(
            _run([python, "-c", "import derive, pathlib; print(pathlib.Path(derive.__file__).parent.parent)"], tmp_path)
        ).strip()
    )
    installed = sorted(p.relative_to(site) for p in site.rglob("*"))

    work = tmp_path / "work"  # a user's folder: neither the checkout nor site-packages
    work.mkdir()
    tutorial = (ROOT / "docs" / "variants.md").read_text()
    (work / "leaky_rnn.py").write_text(
        re.search(r"```python\n(# leaky_rnn\.py\n.*?)```", tutorial, flags=re.DOTALL).group(1)
    )

    _ok(_run([python, "-m", "derive", "generate", "leaky_rnn.py", "--out", "mycells"], work))
    assert (work / "mycells" / "leaky_rnn.py").is_file()
    used = _ok(_run([python, "-c", RUN_USER_CELL], work)).strip()
    assert Path(used).parent.parent == site, "derive was not imported from the installed wheel"
    assert "∂h_t/∂h_{t-1}" in _ok(_run([python, "-m", "derive", "show", "leaky_rnn.py", "--part", "jacobian"], work))
    assert "1 passed, 0 failed" in _ok(_run([python, "-m", "derive", "gradcheck", "--package", "mycells"], work))

    for command in (["generate"], ["check"]):  # they rebuild or compare the checkout's own files
        result = _run([python, "-m", "derive", *command], work)
        assert result.returncode != 0 and "source checkout" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(p.relative_to(site) for p in site.rglob("*") if "__pycache__" not in p.parts) == [
        p for p in installed if "__pycache__" not in p.parts
    ], "a command wrote into site-packages"
