"""What one side of the benchmark runs, built inside that side's own worker process.

Sides:
    derive  a generated cell (NumPy + Numba; torch is never imported in its process)
    torch   the torch.nn built-in computing the same cell (RNN, LSTM, GRU), when there is one
    eager   the same cell as an eager PyTorch loop, `derive.tools.torch_reference.run`

Every side computes the same thing: a training-mode forward over x (T, B, I) from zero initial
states (keeping what backward needs), and forward+backward with a given dL/dy, giving the
gradients of x and of every parameter. Input size I equals hidden size H throughout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

SIDES = ("derive", "torch", "eager")
MODES = ("forward", "forward_backward")


@dataclass(frozen=True)
class Point:
    """One grid point: a cell, a dtype and a size (T, B, I = H)."""

    cell: str
    dtype: str
    T: int
    B: int
    H: int

    @property
    def label(self) -> str:
        return f"{self.cell} {self.dtype} T={self.T} B={self.B} I=H={self.H}"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Workload:
    """The two timed operations of one side at one point."""

    forward: Callable[[], object]
    forward_backward: Callable[[], object]


def available_cells() -> list[str]:
    import generated

    return list(generated.CELLS)


def cell_class(name: str):
    import generated

    if name not in generated.CELLS:
        raise ValueError(f"unknown cell {name!r}; generated cells: {', '.join(generated.CELLS)}")
    return generated.CELLS[name]


def has_builtin(name: str) -> bool:
    return cell_class(name).torch_reference is not None


def matmul_flops(point: Point) -> tuple[int, int]:
    """Matrix-product FLOPs of (forward, forward+backward): 2·T·B·rows·cols per weight forward;
    backward computes two products of the same size per weight (data and weight gradients)."""
    cls = cell_class(point.cell)
    forward = sum(
        2 * point.T * point.B * p.blocks * point.H * point.H for p in cls.parameters if p.columns is not None
    )
    return forward, 3 * forward


def _inputs(point: Point):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((point.T, point.B, point.H)).astype(point.dtype)
    dy = rng.standard_normal((point.T, point.B, point.H)).astype(point.dtype)
    return x, dy


def build(side: str, point: Point) -> Workload:
    return {"derive": _derive, "torch": _torch_builtin, "eager": _torch_eager}[side](point)


def _derive(point: Point) -> Workload:
    cell = cell_class(point.cell)(point.H, point.H, dtype=np.dtype(point.dtype), seed=0)
    x, dy = _inputs(point)

    def forward_backward():
        _, _, tape = cell.forward(x)
        return cell.backward(tape, dy)

    return Workload(lambda: cell.forward(x), forward_backward)


def _torch_run(point: Point, params: list, run: Callable):
    """Workload of a torch side: `run(x)` returns y; gradients are cleared before each call."""
    import torch

    x_np, dy_np = _inputs(point)
    x = torch.tensor(x_np, requires_grad=True)
    dy = torch.tensor(dy_np)

    def forward_backward():
        for p in params + [x]:
            p.grad = None
        run(x).backward(dy)

    return Workload(lambda: run(x), forward_backward)


def _torch_builtin(point: Point) -> Workload:
    import torch

    name, options = cell_class(point.cell).torch_reference
    module = getattr(torch.nn, name)(point.H, point.H, **options).to(getattr(torch, point.dtype))
    return _torch_run(point, list(module.parameters()), lambda x: module(x)[0])


def _torch_eager(point: Point) -> Workload:
    import torch

    from derive.tools import torch_reference

    cls = cell_class(point.cell)
    init = cls(point.H, point.H, dtype=np.dtype(point.dtype), seed=0).params
    params = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    zeros = tuple(torch.zeros(point.B, point.H, dtype=getattr(torch, point.dtype)) for _ in cls.state_names)
    return _torch_run(point, list(params.values()), lambda x: torch_reference.run(point.cell, params, x, zeros)[0])
