"""What one side of the benchmark runs, built inside that side's own worker process.

Sides:
    derive  a generated cell (NumPy + Numba; torch is never imported in its process)
    torch   the torch.nn built-in computing the same cell (RNN, LSTM, GRU), when there is one
    eager   the same cell as an eager PyTorch loop, `derive.tools.torch_reference.run`
    keras, jax, onnxruntime   peers, see sides/ (optional packages)

Every side computes the same thing from zero initial states, in up to three modes: an inference
forward over x (T, B, I) (nothing kept for backward), a training-mode forward (keeping what
backward needs; derive, torch, eager) and forward+backward with a given dL/dy, giving the
gradients of x and of every parameter (all but onnxruntime). Input size I equals hidden size H.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

OWN_SIDES = ("derive", "torch", "eager")
PEERS = ("keras", "jax", "onnxruntime")  # sides/: optional packages
SIDES = OWN_SIDES + PEERS
BUILTIN_SIDES = ("torch", *PEERS)  # only for cells with a torch.nn built-in
MODES = ("inference", "forward", "forward_backward")


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
    """The timed operations of one side at one point; None where the side has no such mode."""

    forward: Callable[[], object] | None  # training mode: keeps what backward needs
    forward_backward: Callable[[], object] | None
    inference: Callable[[], object]
    output: Callable[[], object] | None = None  # y (T, B, H) of the inference forward, as NumPy (tests)

    def modes(self) -> list[str]:
        return [m for m in MODES if getattr(self, m) is not None]


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
    forward = sum(2 * point.T * point.B * p.blocks * point.H * point.H for p in cls.parameters if p.columns is not None)
    return forward, 3 * forward


def _inputs(point: Point, output_width: int | None = None):
    """x (T, B, I=H) and dL/dy (T, B, width of y: H, or a declared size such as proj_size)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((point.T, point.B, point.H)).astype(point.dtype)
    dy = rng.standard_normal((point.T, point.B, output_width or point.H)).astype(point.dtype)
    return x, dy


def build(side: str, point: Point) -> Workload:
    if side in PEERS:
        from . import sides

        return sides.module(side).build(point)
    return {"derive": _derive, "torch": _torch_builtin, "eager": _torch_eager}[side](point)


def derive_inference(cell) -> tuple[Callable, str]:
    """(run(x), description) of a generated cell's fastest forward without backward: forward with
    tape=False where the runtime offers it, else the training forward (which records the tape)."""
    if "tape" in inspect.signature(cell.forward).parameters:
        return (lambda x: cell.forward(x, tape=False)), "cell.forward(x, tape=False)"
    return cell.forward, "cell.forward(x), which records the tape (the runtime has no tape=False yet)"


def _derive(point: Point) -> Workload:
    cell = cell_class(point.cell)(point.H, point.H, dtype=np.dtype(point.dtype), seed=0)
    x, dy = _inputs(point, cell.state_widths[0])

    def forward_backward():
        _, _, tape = cell.forward(x)
        return cell.backward(tape, dy)

    infer = derive_inference(cell)[0]
    return Workload(lambda: cell.forward(x), forward_backward, lambda: infer(x), lambda: infer(x)[0])


def _torch_run(point: Point, params: list, run: Callable, output_width: int | None = None):
    """Workload of a torch side: `run(x)` returns y; gradients are cleared before each call;
    the inference forward runs under torch.inference_mode()."""
    import torch

    x_np, dy_np = _inputs(point, output_width)
    x = torch.tensor(x_np, requires_grad=True)
    dy = torch.tensor(dy_np)

    def forward_backward():
        for p in params + [x]:
            p.grad = None
        run(x).backward(dy)

    def inference():
        with torch.inference_mode():
            return run(x)

    return Workload(lambda: run(x), forward_backward, inference, lambda: inference().numpy())


def _torch_builtin(point: Point) -> Workload:
    import torch

    from .sides import reference_weights

    name, options, weights = reference_weights(point)  # the weights every peer gets
    module = getattr(torch.nn, name)(point.H, point.H, **options).to(getattr(torch, point.dtype))
    module.load_state_dict({f"{k}_l0": torch.from_numpy(v) for k, v in weights.items()})
    return _torch_run(point, list(module.parameters()), lambda x: module(x)[0])


def _torch_eager(point: Point) -> Workload:
    import torch

    from derive.tools import torch_reference

    cell = cell_class(point.cell)(point.H, point.H, dtype=np.dtype(point.dtype), seed=0)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in cell.params.items()}
    zeros = tuple(torch.zeros(point.B, width, dtype=getattr(torch, point.dtype)) for width in cell.state_widths)

    def run(x):
        return torch_reference.run(point.cell, params, x, zeros)[0]

    return _torch_run(point, list(params.values()), run, cell.state_widths[0])
