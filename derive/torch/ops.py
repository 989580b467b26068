"""The generated kernels as torch custom ops: `derive::recurrent` and `derive::recurrent_backward`.

One call runs one layer in one direction over a sequence in PackedSequence layout: `x` (N, I)
holds the rows of every step one after the other, `batch_sizes` (T,) how many rows each step has
(non-increasing: rows are sorted by length, longest first). A plain (T, B, I) tensor is the same
with batch_sizes = [B] * T, and its (T*B, I) view is shared, not copied.

Variable lengths run in the runtime, not in the kernels: the steps form runs of equal batch size
(at most one run per distinct length), and each run is one call of the NumPy API on its first b
rows, which in packed layout are one contiguous (steps, b, I) block. Forward chains the final state
of a run into the next; backward chains dL/d(initial state) back. Padding never enters a cell and
the kernels and templates stay as they are. A row's final state is its state after its last step.

The bridge uses the cells' public API (`forward`, `backward`, `Tape`), so it gets their input
checks and call path; CPU tensors and NumPy arrays share memory both ways (Tensor.numpy,
torch.from_numpy).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

import generated
from derive.runtime import RecurrentCell, Tape

_CLASSES: dict[str, type[RecurrentCell]] = {}  # op key -> cell class (ops take the key, a string)
_PROTOTYPES: dict[tuple, RecurrentCell] = {}  # one instance per (key, I, H, dtype), copied per call


def register(cls: type[RecurrentCell]) -> str:
    """The key naming `cls` in op calls: its name for built-in cells, module.class otherwise."""
    key = cls.name if generated.CELLS.get(cls.name) is cls else f"{cls.__module__}.{cls.__qualname__}"
    _CLASSES[key] = cls
    return key


def cell_class(key: str) -> type[RecurrentCell]:
    if key not in _CLASSES:
        if key not in generated.CELLS:
            raise ValueError(f"cell {key!r} is not a generated cell; names: {sorted(generated.CELLS)}")
        register(generated.CELLS[key])
    return _CLASSES[key]


def _cell(key: str, params: list[np.ndarray], constants: Tensor, input_size: int, hidden_size: int) -> RecurrentCell:
    """An instance of the cell whose params are `params` (shared, not copied) and constants `constants`."""
    cls = cell_class(key)
    index = (key, input_size, hidden_size, params[0].dtype)
    if index not in _PROTOTYPES:
        _PROTOTYPES[index] = cls(input_size, hidden_size, dtype=params[0].dtype)
    cell = copy.copy(_PROTOTYPES[index])
    cell.params = {p.name: value for p, value in zip(cls.parameters, params)}
    for name, value in zip(cls.constants, constants.tolist()):
        setattr(cell, name, value)  # checked
    return cell


def check_arguments(key: str, x: Tensor, batch_sizes: Tensor, state0: Tensor, params: list[Tensor], constants: Tensor) -> None:
    """Devices, dtypes and shapes of an op call; errors name the argument (values are not read)."""
    cls = cell_class(key)
    if not isinstance(constants, Tensor) or constants.dtype != torch.float64 or constants.shape != (len(cls.constants),):
        got = f"{constants.dtype} of shape {tuple(constants.shape)}" if isinstance(constants, Tensor) else type(constants).__name__
        raise ValueError(f"constants must be a float64 tensor of shape ({len(cls.constants)},), the values of {list(cls.constants)}, got {got}")
    tensors = {"x": x, "batch_sizes": batch_sizes, "state0": state0, **{f"params[{k}] ({p.name})": v for k, (p, v) in enumerate(zip(cls.parameters, params))}}
    for name, value in tensors.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.device.type not in ("cpu", "meta"):
            raise ValueError(f"{name} is on {value.device}: derive.torch runs on the CPU only; move it with .cpu()")
    if len(params) != len(cls.parameters):
        raise ValueError(f"params must hold {len(cls.parameters)} tensors {[p.name for p in cls.parameters]}, got {len(params)}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    for name, value in tensors.items():
        if name != "batch_sizes" and value.dtype != x.dtype:
            raise TypeError(f"{name} has dtype {value.dtype} but x has {x.dtype}: all must have one dtype")
    if batch_sizes.dtype != torch.int64 or batch_sizes.dim() != 1 or batch_sizes.device.type != "cpu":
        raise ValueError(f"batch_sizes must be a 1-D int64 CPU tensor, got {batch_sizes.dtype} of shape {tuple(batch_sizes.shape)} on {batch_sizes.device}")
    if x.dim() != 2:
        raise ValueError(f"x must have shape (N, input_size), the rows of all steps, got {tuple(x.shape)}")
    n = len(cls.state_names)
    if state0.dim() != 3 or state0.shape[0] != n:
        raise ValueError(f"state0 must have shape ({n}, B, hidden_size), one (B, H) per state {cls.state_names}, got {tuple(state0.shape)}")
    H = state0.shape[2]
    I = x.shape[1]
    for p, value in zip(cls.parameters, params):
        if tuple(value.shape) != p.shape(I, H):
            raise ValueError(f"parameter {p.name} must have shape {p.shape(I, H)} for input_size={I}, hidden_size={H}, got {tuple(value.shape)}")


def _check_batch_sizes(batch_sizes: np.ndarray, x: np.ndarray, state0: np.ndarray) -> None:
    B = state0.shape[1]
    if len(batch_sizes) and (batch_sizes[0] != B or np.any(np.diff(batch_sizes) > 0) or batch_sizes[-1] < 1):
        raise ValueError(f"batch_sizes must be non-increasing, from B = {B} (state0) down to at least 1, got {batch_sizes.tolist()}")
    if batch_sizes.sum() != len(x):
        raise ValueError(f"batch_sizes must sum to the {len(x)} rows of x, got {batch_sizes.sum()}")


def _runs(batch_sizes: np.ndarray, single_steps: bool = False) -> list[tuple[int, int, int, int]]:
    """(first step, end step, first packed row, batch) of each run of steps of equal batch size."""
    T = len(batch_sizes)
    starts = np.arange(T) if single_steps else np.flatnonzero(np.diff(batch_sizes, prepend=-1))
    ends = np.append(starts[1:], T)
    batches = batch_sizes[starts]
    first_rows = np.concatenate([[0], np.cumsum((ends - starts) * batches)[:-1]])
    return list(zip(starts.tolist(), ends.tolist(), first_rows.tolist(), batches.tolist()))


def _reversal(batch_sizes: np.ndarray) -> np.ndarray:
    """The packed-row permutation reversing every sequence within its own length (an involution)."""
    B = int(batch_sizes[0]) if len(batch_sizes) else 0
    first_rows = np.concatenate([[0], np.cumsum(batch_sizes)[:-1]]).astype(np.int64)
    present = np.arange(B)[None, :] < batch_sizes[:, None]
    lengths = present.sum(0)
    steps, rows = np.nonzero(present)  # in packed order
    return first_rows[lengths[rows] - 1 - steps] + rows


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _reversed(array: np.ndarray, order, axis: int = 0) -> np.ndarray:
    return array if order is None else np.ascontiguousarray(np.take(array, order, axis=axis))


@torch.library.custom_op("derive::recurrent", mutates_args=())
def recurrent(cell: str, x: Tensor, batch_sizes: Tensor, state0: Tensor, params: list[Tensor], constants: Tensor,
              reverse: bool) -> tuple[Tensor, Tensor, Tensor]:
    """One layer, one direction; `constants` (float64, CPU) holds the values of the cell's constants in order.
    Returns (states (n, B + N, H): every state, its initial value for
    the B rows then its value after every step in the rows of x; final (n, B, H): each row's state
    after its last step; tape (flat, for backward)).
    reverse=True runs every sequence from its last step to its first."""
    check_arguments(cell, x, batch_sizes, state0, params, constants)
    bs, s0 = batch_sizes.numpy(), _numpy(state0)
    xs = _numpy(x)
    _check_batch_sizes(bs, xs, s0)
    order = _reversal(bs) if reverse else None
    xs = _reversed(xs, order)
    model = _cell(cell, [_numpy(p) for p in params], constants, x.shape[1], state0.shape[2])
    final, records = s0.copy(), []
    for start, end, row, b in _runs(bs):
        _, last, record = model.forward(xs[row:row + (end - start) * b].reshape(end - start, b, -1), tuple(final[:, :b]))
        records.append(record)
        final[:, :b] = last
    states, tape = _join(records, s0)
    return torch.from_numpy(_reversed(states, _state_rows(order, s0), axis=1)), torch.from_numpy(final), torch.from_numpy(tape)


def _join(records: list[Tape], s0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The runs' tapes as one: states (n, B + N, H), saved (flat). A single run's (n, T+1, B, H)
    states already have that layout: nothing is copied then."""
    n, _, H = s0.shape
    if len(records) == 1:
        return records[0].states.reshape(n, -1, H), records[0].saved.reshape(-1)
    states = np.concatenate([s0] + [r.states[:, 1:].reshape(n, -1, H) for r in records], axis=1)
    return states, np.concatenate([r.saved.ravel() for r in records] or [np.empty(0, s0.dtype)])


def _state_rows(order, s0: np.ndarray):
    """`order` extended to the rows of `states`, whose first B rows are the initial state."""
    B = s0.shape[1]
    return None if order is None else np.concatenate([np.arange(B), B + order])


@recurrent.register_fake
def _(cell, x, batch_sizes, state0, params, constants, reverse):
    check_arguments(cell, x, batch_sizes, state0, params, constants)
    n, B, H = state0.shape
    N = x.shape[0]
    return x.new_empty(n, B + N, H), x.new_empty(n, B, H), x.new_empty(N * len(cell_class(cell).saved_names) * H)


@torch.library.custom_op("derive::recurrent_backward", mutates_args=())
def recurrent_backward(
    cell: str, x: Tensor, batch_sizes: Tensor, state0: Tensor, params: list[Tensor], constants: Tensor, reverse: bool,
    states: Tensor, tape: Tensor, d_states: Tensor, d_final: Tensor,
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Gradients (dx, d_state0, d_params) of `recurrent` given dL/d(states) and dL/d(final)."""
    bs, s0 = batch_sizes.numpy(), _numpy(state0)
    order = _reversal(bs) if reverse else None
    rows_order = _state_rows(order, s0)
    xs, states, d_states = (_reversed(_numpy(t), o, axis) for t, o, axis in ((x, order, 0), (states, rows_order, 1), (d_states, rows_order, 1)))
    model = _cell(cell, [_numpy(p) for p in params], constants, x.shape[1], state0.shape[2])
    n, B, H = s0.shape
    n_saved = len(model.saved_names)
    tape = _numpy(tape)
    d_running = _numpy(d_final).copy()
    # Gradients reaching the other states (an LSTM's c_t) at every step enter between steps.
    inject = n > 1 and bool(np.any(d_states[1:, B:]))
    runs = _runs(bs, single_steps=inject)
    first_rows = B + np.concatenate([[0], np.cumsum(bs)]).astype(np.int64)  # of each step in `states`
    dx_parts, d_params = [], [np.zeros_like(value) for value in model.params.values()]
    for start, end, row, b in reversed(runs):
        steps = end - start
        rows = slice(B + row, B + row + steps * b)
        if inject:
            d_running[1:, :b] += d_states[1:, rows]
        if len(runs) == 1:  # the layout the tape was recorded in: no copy
            record_states = states.reshape(n, steps + 1, b, H)
        else:
            record_states = np.empty((n, steps + 1, b, H), xs.dtype)
            previous = 0 if start == 0 else first_rows[start - 1]
            record_states[:, 0] = states[:, previous:previous + b]
            record_states[:, 1:] = states[:, rows].reshape(n, steps, b, H)
        record = Tape(model, xs[row:row + steps * b].reshape(steps, b, -1), record_states,
                      tape[row * n_saved * H:(row + steps * b) * n_saved * H].reshape(steps, n_saved, b, H), model.params,
                      model.constant_values)
        grads = model.backward(record, d_states[0, rows].reshape(steps, b, H), tuple(d_running[:, :b]))
        dx_parts.append(grads.x.reshape(-1, xs.shape[1]))
        d_params = list(grads.params.values()) if len(runs) == 1 else [t + p for t, p in zip(d_params, grads.params.values())]
        d_running[:, :b] = grads.state0
    dx = dx_parts[0] if len(dx_parts) == 1 else np.concatenate(dx_parts[::-1] or [np.empty_like(xs)])
    d_running += d_states[:, :B]
    return torch.from_numpy(_reversed(dx, order)), torch.from_numpy(d_running), [torch.from_numpy(d) for d in d_params]


@recurrent_backward.register_fake
def _(cell, x, batch_sizes, state0, params, constants, reverse, states, tape, d_states, d_final):
    return torch.empty_like(x), torch.empty_like(state0), [torch.empty_like(p) for p in params]


def _setup_context(ctx, inputs, output):
    cell, x, batch_sizes, state0, params, constants, reverse = inputs
    states, _, tape = output
    ctx.cell, ctx.reverse, ctx.n_params = cell, reverse, len(params)
    ctx.save_for_backward(x, batch_sizes, state0, constants, states, tape, *params)
    ctx.mark_non_differentiable(tape)


def _backward(ctx, d_states, d_final, _d_tape):
    x, batch_sizes, state0, constants, states, tape, *params = ctx.saved_tensors
    d_states = torch.zeros_like(states) if d_states is None else d_states
    d_final = torch.zeros_like(state0) if d_final is None else d_final
    dx, d_state0, d_params = recurrent_backward(ctx.cell, x, batch_sizes, state0, params, constants, ctx.reverse,
                                                states, tape, d_states, d_final)
    return None, dx, None, d_state0, list(d_params), None, None


recurrent.register_autograd(_backward, setup_context=_setup_context)


def _no_double_backward(ctx, *grads):
    raise RuntimeError("derive.torch: double backward (gradients of gradients, create_graph=True) is not supported by the generated kernels")


def _setup_nothing(ctx, inputs, output):
    pass


recurrent_backward.register_autograd(_no_double_backward, setup_context=_setup_nothing)
