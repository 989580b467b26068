"""Checks and conversions of what users pass to generated cells, before any kernel runs.

The dtype rule, the same for x, state0, dy and dstate:
- booleans, integers and floats no wider than the cell's dtype are converted to it (integers
  beyond 2**24 lose precision in a float32 cell, as with `np.float32(n)`);
- Python lists, tuples and scalars are converted to the cell's dtype, like `torch.tensor` does;
- torch tensors are read detached and on the CPU; floats NumPy has no dtype for (bfloat16, the
  float8 types) are widened exactly to float32 first, so they follow the rule like float16;
- an array of a wider float dtype (float64 given to a float32 cell) is a TypeError, as in
  PyTorch: narrowing would silently lose precision, so the cast is left to the caller;
- complex, string, object, datetime and structured arrays are a TypeError.
Any layout is accepted (views, negative strides, Fortran order); kernels get C-contiguous copies.
"""

from __future__ import annotations

import sys

import numpy as np

from . import held

CONVERTIBLE_KINDS = "biuf"  # bool, signed and unsigned integers, floats


def as_array(
    name: str, value, dtype: np.dtype, shape: tuple[int, ...], shape_text: str, copy: bool = False
) -> np.ndarray:
    """`value` as a C-contiguous array of `dtype` and `shape`, or an error naming `name`.

    With copy=True the result never shares memory with `value`.
    """
    array = to_numpy(name, value)
    if array.dtype.kind not in CONVERTIBLE_KINDS:
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    if array.dtype.kind == "f" and array.dtype.itemsize > dtype.itemsize and hasattr(value, "dtype"):
        raise TypeError(
            f"{name} has dtype {array.dtype} but the cell is {dtype}; cast it explicitly "
            f"(.astype(np.{dtype.name})) or build the cell with dtype=np.{array.dtype.name}"
        )
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape_text} = {shape}, got {array.shape}")
    if copy:
        return held.copy(array) if array.dtype == dtype else np.array(array, dtype=dtype, order="C", copy=True)
    return np.ascontiguousarray(array, dtype=dtype)


def to_numpy(name: str, value) -> np.ndarray:
    """np.asarray(value), with ragged or unconvertible input reported under `name`."""
    try:
        return np.asarray(_readable_tensor(value))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name} is not a rectangular numeric array: {error}") from None


def _readable_tensor(value):
    """A torch tensor as NumPy can read it: detached, on the CPU, with floats NumPy lacks
    (bfloat16, float8) widened to float32, which holds each of their values exactly.
    Anything else is returned unchanged; torch is never imported here."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(value, torch.Tensor):
        return value
    value = value.detach().cpu().resolve_conj().resolve_neg()
    if value.is_floating_point() and value.dtype not in (torch.float16, torch.float32, torch.float64):
        value = value.float()
    return value
