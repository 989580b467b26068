"""Peer sides of the benchmark: other frameworks' fastest built-ins for the cells torch.nn has.

keras_tf.py      Keras 3 layers (LSTM, GRU, SimpleRNN) on TensorFlow, called in a tf.function
jax_scan.py      the cell equations as a jitted `lax.scan`, backward by `jax.vjp`
onnx_runtime.py  the ONNX LSTM/GRU/RNN operator in an ONNX Runtime session (inference only)

Each builds a `Workload` (workloads.py) from the same weights as the torch.nn side, in torch's
layout (`reference_weights`), converted to the peer's gate order; each runs in its own worker
process. A peer whose packages are missing is skipped (`missing`); `pip install '.[bench-peers]'`.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np

# side -> (module here, packages it imports)
PEERS = {
    "keras": ("keras_tf", ("tensorflow", "keras")),
    "jax": ("jax_scan", ("jax", "jaxlib")),
    "onnxruntime": ("onnx_runtime", ("onnx", "onnxruntime")),
}
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}  # gate blocks of each torch.nn built-in


class Unsupported(Exception):
    """This side cannot run this point (e.g. a dtype its operator lacks)."""


def missing(side: str) -> str | None:
    """The first package `side` needs that is not installed, or None."""
    return next((p for p in PEERS[side][1] if importlib.util.find_spec(p) is None), None)


def module(side: str):
    return importlib.import_module(f"{__name__}.{PEERS[side][0]}")


def reference_weights(point) -> tuple[str, dict, dict]:
    """(torch.nn class name, its options, weights) for a point's cell: weight_ih (G·H, I),
    weight_hh (G·H, H), bias_ih and bias_hh (G·H,) in torch's gate order, drawn like torch's
    default init (uniform in ±1/√H) from a fixed seed."""
    import generated

    reference = generated.CELLS[point.cell].torch_reference
    if reference is None:
        raise Unsupported(f"{point.cell} has no torch.nn built-in, hence no peer")
    name, options = reference
    if any(isinstance(value, str) for value in options.values()):  # a declared size, e.g. proj_size="P"
        raise Unsupported(f"{point.cell} has sizes other than H ({options}): the peers do not run it yet")
    rows, bound = GATES[name] * point.H, 1 / np.sqrt(point.H)
    rng = np.random.default_rng(1)
    shapes = {"weight_ih": (rows, point.H), "weight_hh": (rows, point.H), "bias_ih": (rows,), "bias_hh": (rows,)}
    weights = {k: rng.uniform(-bound, bound, s).astype(point.dtype) for k, s in shapes.items()}
    return name, options, weights


def regate(array: np.ndarray, order: list[int], blocks: int, axis: int = 0) -> np.ndarray:
    """The gate blocks of `array` along `axis` in a peer's order: `order` lists torch's block numbers."""
    parts = np.split(array, blocks, axis=axis)
    return np.concatenate([parts[k] for k in order], axis=axis)
