import os

import numpy as np
import pytest

import generated

CELL_NAMES = list(generated.CELLS)
TORCH_CELLS = [name for name, cls in generated.CELLS.items() if cls.torch_reference]


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


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
