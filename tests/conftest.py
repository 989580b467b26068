import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

import generated
from derive.write.build import build
from tests import extra_cells

ROOT = Path(__file__).resolve().parent.parent


def _user_cells() -> dict[str, type]:
    """Cells generated from spec files outside the package, as a user would: the tutorial's
    leaky_rnn (taken from docs/variants.md), a cell using every classic activation, one using every
    other function of the table with division and powers, and one written with SymPy's functions."""
    folder = Path(tempfile.mkdtemp(prefix="rnn-derive-user-"))
    tutorial = (ROOT / "docs" / "variants.md").read_text()
    spec = re.search(r"```python\n(# leaky_rnn\.py\n.*?)```", tutorial, flags=re.S).group(1)
    (folder / "leaky_rnn.py").write_text(spec)
    specs = [
        ROOT / "tests" / "specs" / f"{name}.py"
        for name in ("all_activations", "all_functions", "sympy_functions", "norm_rnn")
    ]
    return build([folder / "leaky_rnn.py", *specs], folder / "usercells")


ALL_CELLS = {**generated.CELLS, **_user_cells()}  # every test suite runs over all of these
CELL_NAMES = list(ALL_CELLS)
TORCH_CELLS = [name for name, cls in generated.CELLS.items() if cls.torch_reference]


def orthogonal(n: int, seed: int = 0) -> np.ndarray:
    """A random n×n orthogonal matrix (Haar-distributed)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q * np.sign(np.diag(r))


@pytest.fixture(scope="session")
def torch():
    """PyTorch, or a visible skip; under CI (CI=true) a missing torch is a failure."""
    try:
        import torch
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("torch is missing under CI=true; install torch==2.13.0 (CPU build)")
        pytest.skip("torch is not installed: PyTorch comparisons skipped (pip install torch==2.13.0)")
    return torch


@pytest.fixture(scope="session")
def extra(tmp_path_factory):
    """The test-only cells of tests/extra_cells.py (identity RNN, multi-level GRU), generated and imported."""
    return extra_cells.generate_into(tmp_path_factory.mktemp("extra"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
