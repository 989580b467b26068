"""The generated kernels as torch custom ops: `derive::recurrent`, `derive::recurrent_backward` and,
when no gradient is wanted, `derive::recurrent_inference`.

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

import numpy as np
import torch
from torch import Tensor

import generated
from derive.runtime import RecurrentCell, Tape

try:  # torch has no public test for these: the private helpers torch.autograd.Function.apply uses
    from torch._C import _are_functorch_transforms_active
    from torch.utils._python_dispatch import is_in_torch_dispatch_mode
except ImportError:  # gone from a later torch: every call takes the op, which is always right

    def _in_mode_or_transform() -> bool:
        return True
else:

    def _in_mode_or_transform() -> bool:
        """A torch dispatch mode (fake tensors, make_fx, opcheck) or a torch.func transform is active."""
        return is_in_torch_dispatch_mode() or _are_functorch_transforms_active()


_CLASSES: dict[str, type[RecurrentCell]] = {}  # op key -> cell class (ops take the key, a string)
_PROTOTYPES: dict[tuple, RecurrentCell] = {}  # one instance per (key, I, H, dtype)


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


def declared_sizes(cls: type[RecurrentCell], params: list[Tensor]) -> dict[str, int]:
    """The cell's declared sizes ({"P": 3}), read from the rows of the first parameter of each."""
    sizes = {}
    for size in cls.sizes:
        k, p = next((k, p) for k, p in enumerate(cls.parameters) if p.size == size)
        sizes[size] = params[k].shape[0] // p.blocks if k < len(params) else 0
    return sizes


def _without_padding(model: RecurrentCell, states: np.ndarray) -> np.ndarray:
    """`states` (n, ..., H) with the columns past a narrower state's size zero (a copy if any is
    not): the op ignores them, so they neither reach its outputs nor get a gradient."""
    widths = model.state_widths
    if all(width == states.shape[-1] for width in widths):
        return states
    states = states.copy()
    for k, width in enumerate(widths):
        states[k, ..., width:] = 0.0
    return states


def _prototype(key: str, input_size: int, hidden_size: int, dtype: np.dtype, sizes: dict[str, int]) -> RecurrentCell:
    """One instance per (cell, sizes, dtype), never changed: the ops pass parameters to its kernels
    explicitly (`_run`, `_gradients`), so its own are never used. A state narrower than H
    (lstm_proj's h) is passed in the first columns of (B, H) rows, as the kernels keep it."""
    index = (key, input_size, hidden_size, dtype, tuple(sizes.items()))
    if index not in _PROTOTYPES:
        cls = cell_class(key)
        arguments = {cls.sizes[size]: value for size, value in sizes.items()}
        _PROTOTYPES[index] = cls(input_size, hidden_size, dtype=dtype, **arguments)
    return _PROTOTYPES[index]


def check_arguments(
    key: str, x: Tensor, batch_sizes: Tensor, state0: Tensor, params: list[Tensor], constants: Tensor
) -> None:
    """Devices, dtypes and shapes of an op call; errors name the argument (values are not read)."""
    cls = cell_class(key)
    if (
        not isinstance(constants, Tensor)
        or constants.dtype != torch.float64
        or constants.shape != (len(cls.constants),)
    ):
        got = (
            f"{constants.dtype} of shape {tuple(constants.shape)}"
            if isinstance(constants, Tensor)
            else type(constants).__name__
        )
        raise ValueError(
            f"constants must be a float64 tensor of shape ({len(cls.constants)},), the values of {list(cls.constants)}, got {got}"
        )
    tensors = {
        "x": x,
        "batch_sizes": batch_sizes,
        "state0": state0,
        **{f"params[{k}] ({p.name})": v for k, (p, v) in enumerate(zip(cls.parameters, params))},
    }
    for name, value in tensors.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.device.type not in ("cpu", "meta"):
            raise ValueError(f"{name} is on {value.device}: derive.torch runs on the CPU only; move it with .cpu()")
    if len(params) != len(cls.parameters):
        raise ValueError(
            f"params must hold {len(cls.parameters)} tensors {[p.name for p in cls.parameters]}, got {len(params)}"
        )
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    for name, value in tensors.items():
        if name != "batch_sizes" and value.dtype != x.dtype:
            raise TypeError(f"{name} has dtype {value.dtype} but x has {x.dtype}: all must have one dtype")
    if batch_sizes.dtype != torch.int64 or batch_sizes.dim() != 1 or batch_sizes.device.type != "cpu":
        raise ValueError(
            f"batch_sizes must be a 1-D int64 CPU tensor, got {batch_sizes.dtype} of shape {tuple(batch_sizes.shape)} on {batch_sizes.device}"
        )
    if x.dim() != 2:
        raise ValueError(f"x must have shape (N, input_size), the rows of all steps, got {tuple(x.shape)}")
    n = len(cls.state_names)
    if state0.dim() != 3 or state0.shape[0] != n:
        raise ValueError(
            f"state0 must have shape ({n}, B, hidden_size), one (B, H) per state {cls.state_names}, got {tuple(state0.shape)}"
        )
    H = state0.shape[2]
    I = x.shape[1]
    sizes = declared_sizes(cls, params)
    for p, value in zip(cls.parameters, params):
        if tuple(value.shape) != p.shape(I, H, sizes):
            raise ValueError(
                f"parameter {p.name} must have shape {p.shape(I, H, sizes)} for input_size={I}, hidden_size={H}, got {tuple(value.shape)}"
            )


def _check_batch_sizes(batch_sizes: np.ndarray, rows: int, B: int) -> None:
    """batch_sizes fits x's `rows` and state0's batch B."""
    if len(batch_sizes) and (batch_sizes[0] != B or np.any(batch_sizes[1:] > batch_sizes[:-1]) or batch_sizes[-1] < 1):
        raise ValueError(
            f"batch_sizes must be non-increasing, from B = {B} (state0) down to at least 1, got {batch_sizes.tolist()}"
        )
    if batch_sizes.sum() != rows:
        raise ValueError(f"batch_sizes must sum to the {rows} rows of x, got {batch_sizes.sum()}")


def _runs(batch_sizes: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(first step, end step, first packed row, batch) of each run of steps of equal batch size."""
    T = len(batch_sizes)
    if T and batch_sizes[0] == batch_sizes[-1]:  # one batch size: batch_sizes is non-increasing
        return [(0, T, 0, int(batch_sizes[0]))]
    new = np.diff(batch_sizes, prepend=-1) != 0
    starts = np.flatnonzero(new)
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
    return np.ascontiguousarray(t.detach().numpy())  # a copy by NumPy if needed: torch's would wake its threads


def _reversed(array: np.ndarray, order, axis: int = 0) -> np.ndarray:
    return array if order is None else np.ascontiguousarray(np.take(array, order, axis=axis))


def _weights(model: RecurrentCell, params: list[Tensor]) -> dict[str, np.ndarray]:
    return {p.name: _numpy(value) for p, value in zip(model.parameters, params)}


def _constants(model: RecurrentCell, constants: Tensor) -> dict[str, float]:
    """The cell's named constants from the op's float64 tensor, checked for the cell's dtype."""
    return model.constants_with(dict(zip(model.constants, constants.tolist())), model.dtype)


@torch.library.custom_op("derive::recurrent", mutates_args=())
def recurrent(
    cell: str, x: Tensor, batch_sizes: Tensor, state0: Tensor, params: list[Tensor], constants: Tensor, reverse: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One layer, one direction; `constants` (float64, CPU) holds the values of the cell's constants
    in order. Returns (y (N, H): h after every step, in the rows of x;
    states (n, B + N, H): every state, its initial value for the B rows then its value after every
    step in the rows of x; final (n, B, H): each row's state after its last step; tape (flat, for
    backward)). reverse=True runs every sequence from its last step to its first.
    x and the parameters are not copied: the kernels only read them, and autograd keeps the tensors
    it saves for backward unchanged (an in-place change is an error at backward)."""
    return _record_layer(cell, x, batch_sizes, state0, params, constants, reverse)


def _record_layer(cell, x, batch_sizes, state0, params, constants, reverse):
    """`recurrent`'s implementation, also run by `_Eager`."""
    states, final, tape = _forward_layer(cell, x, batch_sizes, state0, params, constants, reverse, record=True)
    B = state0.shape[1]
    return (
        torch.from_numpy(states[0, B:].copy()),
        torch.from_numpy(states),
        torch.from_numpy(final),
        torch.from_numpy(tape),
    )


@torch.library.custom_op("derive::recurrent_inference", mutates_args=())
def recurrent_inference(
    cell: str, x: Tensor, batch_sizes: Tensor, state0: Tensor, params: list[Tensor], constants: Tensor, reverse: bool
) -> tuple[Tensor, Tensor]:
    """`recurrent` for inference, when no gradient is wanted: the kernels' inference forward, which
    writes and keeps no tape. Returns (states, final) as `recurrent` does (y is states[0, B:]), bit
    for bit. It has no backward: a call whose outputs need a gradient is an error at backward."""
    return _infer_layer(cell, x, batch_sizes, state0, params, constants, reverse)


def _infer_layer(cell, x, batch_sizes, state0, params, constants, reverse):
    """`recurrent_inference`'s implementation, also run by `infer`."""
    states, final, _ = _forward_layer(cell, x, batch_sizes, state0, params, constants, reverse, record=False)
    return torch.from_numpy(states), torch.from_numpy(final)


@recurrent_inference.register_fake
def _(cell, x, batch_sizes, state0, params, constants, reverse):
    check_arguments(cell, x, batch_sizes, state0, params, constants)
    n, B, H = state0.shape
    return x.new_empty(n, B + x.shape[0], H), x.new_empty(n, B, H)


def _no_backward_for_inference(ctx, *grads):
    raise RuntimeError(
        "derive.torch: derive::recurrent_inference has no backward; layers call it only when no gradient is "
        "wanted (torch.no_grad(), or nothing requires one)"
    )


recurrent_inference.register_autograd(_no_backward_for_inference, setup_context=lambda ctx, inputs, output: None)


def infer(
    cell: str, x: Tensor, batch_sizes: Tensor, state0: Tensor, params: list[Tensor], constants: Tensor, reverse: bool
) -> tuple[Tensor, Tensor]:
    """`torch.ops.derive.recurrent_inference(...)`: eager, its implementation without the op's dispatch;
    traced (compile, export, fake tensors) the op, which the trace records."""
    if _untraced((x, batch_sizes, state0, constants, *params)):
        return _infer_layer(cell, x, batch_sizes, state0, params, constants, reverse)
    return torch.ops.derive.recurrent_inference(cell, x, batch_sizes, state0, params, constants, reverse)


def _forward_layer(cell, x, batch_sizes, state0, params, constants, reverse, record: bool):
    """(states (n, B + N, H), final (n, B, H), flat tape or None without `record`) as NumPy arrays."""
    check_arguments(cell, x, batch_sizes, state0, params, constants)
    bs, s0 = batch_sizes.numpy(), _numpy(state0)
    xs = _numpy(x)
    _check_batch_sizes(bs, len(xs), s0.shape[1])
    order = _reversal(bs) if reverse else None
    xs = _reversed(xs, order)
    model = _prototype(cell, x.shape[1], state0.shape[2], xs.dtype, declared_sizes(cell_class(cell), params))
    s0 = _without_padding(model, s0)
    weights, values = _weights(model, params), _constants(model, constants)
    final, runs = s0.copy(), []
    for start, end, row, b in _runs(bs):
        run_x = xs[row : row + (end - start) * b].reshape(end - start, b, -1)
        states, saved = model._run(run_x, final[:, :b], weights, values, record)
        runs.append((states, saved))
        final[:, :b] = states[:, -1]
    states, tape = _join(runs, s0, record)
    return _reversed(states, _state_rows(order, s0), axis=1), final, tape


def _join(
    runs: list[tuple[np.ndarray, np.ndarray]], s0: np.ndarray, record: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The runs' (states, saved) as one: states (n, B + N, H), saved (flat; None without `record`).
    A single run's (n, T+1, B, H) states already have that layout: nothing is copied then."""
    n, _, H = s0.shape
    if len(runs) == 1:
        states, saved = runs[0]
        return states.reshape(n, -1, H), saved.reshape(-1) if record else None
    states = np.concatenate([s0] + [states[:, 1:].reshape(n, -1, H) for states, _ in runs], axis=1)
    if not record:
        return states, None
    return states, np.concatenate([saved.ravel() for _, saved in runs] or [np.empty(0, s0.dtype)])


def _tape_size(cls: type[RecurrentCell], rows: int, input_size: int, hidden_size: int) -> int:
    """The number of values the flat tape holds for `rows` rows (steps x batch) of every step."""
    return rows * len(cls.saved_names) * cls.tape_width(input_size, hidden_size)


def _state_rows(order, s0: np.ndarray):
    """`order` extended to the rows of `states`, whose first B rows are the initial state."""
    B = s0.shape[1]
    return None if order is None else np.concatenate([np.arange(B), B + order])


@recurrent.register_fake
def _(cell, x, batch_sizes, state0, params, constants, reverse):
    check_arguments(cell, x, batch_sizes, state0, params, constants)
    n, B, H = state0.shape
    N = x.shape[0]
    return (
        x.new_empty(N, H),
        x.new_empty(n, B + N, H),
        x.new_empty(n, B, H),
        x.new_empty(_tape_size(cell_class(cell), N, x.shape[1], H)),
    )


def check_recorded(
    key: str, x: Tensor, state0: Tensor, states: Tensor, tape: Tensor, gradients: dict[str, Tensor | None]
) -> None:
    """What `recurrent_backward` gets besides recurrent's arguments: the outputs of `recurrent` and
    the gradients of its outputs (None: zero), shapes and dtypes, errors naming the argument."""
    n, B, H = state0.shape
    N = x.shape[0]
    expected = {
        "states": (states, (n, B + N, H)),
        "tape": (tape, (_tape_size(cell_class(key), N, x.shape[1], H),)),
        "d_y": (gradients["d_y"], (N, H)),
        "d_states": (gradients["d_states"], (n, B + N, H)),
        "d_final": (gradients["d_final"], (n, B, H)),
    }
    for name, (value, shape) in expected.items():
        if value is None and name.startswith("d_"):
            continue
        if (
            not isinstance(value, Tensor)
            or value.device.type not in ("cpu", "meta")
            or value.dtype != x.dtype
            or tuple(value.shape) != shape
        ):
            got = (
                f"{value.dtype} of shape {tuple(value.shape)} on {value.device}"
                if isinstance(value, Tensor)
                else type(value).__name__
            )
            raise ValueError(f"{name} must be a {x.dtype} CPU tensor of shape {shape}, got {got}")


@torch.library.custom_op("derive::recurrent_backward", mutates_args=())
def recurrent_backward(
    cell: str,
    x: Tensor,
    batch_sizes: Tensor,
    state0: Tensor,
    params: list[Tensor],
    constants: Tensor,
    reverse: bool,
    states: Tensor,
    tape: Tensor,
    d_y: Tensor | None,
    d_states: Tensor | None,
    d_final: Tensor | None,
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Gradients (dx, d_state0, d_params) of `recurrent` given dL/dy, dL/d(states) and dL/d(final),
    each None where it is zero."""
    check_arguments(cell, x, batch_sizes, state0, params, constants)
    check_recorded(cell, x, state0, states, tape, {"d_y": d_y, "d_states": d_states, "d_final": d_final})
    _check_batch_sizes(batch_sizes.numpy(), x.shape[0], state0.shape[1])
    return _gradients(cell, x, batch_sizes, state0, params, constants, reverse, states, tape, d_y, d_states, d_final)


def _gradients(cell, x, batch_sizes, state0, params, constants, reverse, states, tape, d_y, d_states, d_final):
    """`recurrent_backward` on arguments known to be consistent."""
    bs, s0 = batch_sizes.numpy(), _numpy(state0)
    n, B, H = s0.shape
    N = x.shape[0]
    order = _reversal(bs) if reverse else None
    rows_order = _state_rows(order, s0)
    model = _prototype(cell, x.shape[1], H, s0.dtype, declared_sizes(cell_class(cell), params))
    weights, values = _weights(model, params), _constants(model, constants)
    dy = np.zeros((N, H), s0.dtype) if d_y is None else _numpy(d_y)
    d_running = np.zeros_like(s0) if d_final is None else _numpy(d_final).copy()
    # gradients reaching every state after every step (all_states): the kernels add them per step
    d_all = None if d_states is None else _reversed(_numpy(d_states), rows_order, axis=1)
    dy = _reversed(dy, order)
    xs, states = _reversed(_numpy(x), order), _reversed(_numpy(states), rows_order, axis=1)
    n_saved, width = len(model.saved_names), model.tape_width(x.shape[1], H)
    tape = _numpy(tape)
    runs = _runs(bs)
    first_rows = None if len(runs) == 1 else B + np.concatenate([[0], np.cumsum(bs)])  # of each step in `states`
    dx_parts, d_params = [], None
    for start, end, row, b in reversed(runs):
        steps = end - start
        rows = slice(B + row, B + row + steps * b)
        if len(runs) == 1:  # the layout the tape was recorded in: no copy
            record_states = states.reshape(n, steps + 1, b, H)
        else:
            record_states = np.empty((n, steps + 1, b, H), xs.dtype)
            previous = 0 if start == 0 else first_rows[start - 1]
            record_states[:, 0] = states[:, previous : previous + b]
            record_states[:, 1:] = states[:, rows].reshape(n, steps, b, H)
        record = Tape(
            model,
            xs[row : row + steps * b].reshape(steps, b, -1),
            record_states,
            tape[row * n_saved * width : (row + steps * b) * n_saved * width].reshape(steps, n_saved, b, width),
            weights,
            values,
        )
        d_steps = None if d_all is None else np.ascontiguousarray(d_all[:, rows].reshape(n, steps, b, H))
        grads = model._gradients(
            record, dy[row : row + steps * b].reshape(steps, b, H), np.ascontiguousarray(d_running[:, :b]), d_steps
        )
        dx_parts.append(grads.x.reshape(-1, xs.shape[1]))
        d_params = (
            list(grads.params.values())
            if d_params is None
            else [t + p for t, p in zip(d_params, grads.params.values())]
        )
        for k, d_state in enumerate(grads.state0):  # a state narrower than H: its first columns
            d_running[k, :b, : d_state.shape[1]] = d_state
    dx = dx_parts[0] if len(dx_parts) == 1 else np.concatenate(dx_parts[::-1] or [np.empty_like(xs)])
    d_params = d_params or [np.zeros_like(w) for w in weights.values()]
    if d_all is not None:
        d_running += d_all[:, :B]
    d_running = _without_padding(model, d_running)
    return torch.from_numpy(_reversed(dx, order)), torch.from_numpy(d_running), [torch.from_numpy(d) for d in d_params]


@recurrent_backward.register_fake
def _(cell, x, batch_sizes, state0, params, constants, reverse, states, tape, d_y, d_states, d_final):
    return torch.empty_like(x), torch.empty_like(state0), [torch.empty_like(p) for p in params]


def _setup_context(ctx, inputs, output):
    cell, x, batch_sizes, state0, params, constants, reverse = inputs
    _, states, _, tape = output
    ctx.cell, ctx.reverse, ctx.n_params = cell, reverse, len(params)
    ctx.save_for_backward(x, batch_sizes, state0, constants, states, tape, *params)
    ctx.mark_non_differentiable(tape)
    ctx.set_materialize_grads(False)  # an output the loss does not use gets no zero gradient


def _backward(ctx, d_y, d_states, d_final, _d_tape):
    x, batch_sizes, state0, constants, states, tape, *params = ctx.saved_tensors
    arguments = (ctx.cell, x, batch_sizes, state0, params, constants, ctx.reverse, states, tape, d_y, d_states, d_final)
    # Eager, the arguments are those `recurrent` checked and autograd kept unchanged: the
    # implementation runs without the op's dispatch (about 0.3 ms a call). Traced (compile, export,
    # torch.func) or with create_graph=True it runs as the op, recorded or refusing double backward.
    run = _gradients if _plain_eager(x, *params, d_y, d_states, d_final) else recurrent_backward
    dx, d_state0, d_params = run(*arguments)
    return None, dx, None, d_state0, list(d_params), None, None


def no_gradient_wanted(*tensors: Tensor) -> bool:
    """Outputs computed from `tensors` need no gradient (torch.no_grad(), or none of them requires
    one): `infer` serves the call."""
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _plain_eager(*tensors: Tensor | None) -> bool:
    """No tracing, no transform, no graph of the backward being recorded: plain CPU tensors only."""
    return not torch.is_grad_enabled() and _untraced(tensors)


def _untraced(tensors) -> bool:
    """Eager: no compile, export or TorchScript trace, no dispatch mode (fake tensors, make_fx,
    opcheck), no torch.func transform; `tensors` are plain tensors (None: absent)."""
    return (
        not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not _in_mode_or_transform()
        and all(t is None or type(t) in (Tensor, torch.nn.Parameter) for t in tensors)
    )


recurrent.register_autograd(_backward, setup_context=_setup_context)


def _no_double_backward(ctx, *grads):
    raise RuntimeError(
        "derive.torch: double backward (gradients of gradients, create_graph=True) is not supported by the generated kernels"
    )


def _setup_nothing(ctx, inputs, output):
    pass


recurrent_backward.register_autograd(_no_double_backward, setup_context=_setup_nothing)


class _Eager(torch.autograd.Function):
    """`recurrent` and its autograd without the op's dispatch, for plain eager calls (`run`): the
    same implementation, saved tensors and backward. (No `setup_context`: binding its arguments
    costs more than the call; the op serves torch.func.)"""

    @staticmethod
    def forward(ctx, cell, x, batch_sizes, state0, constants, reverse, *params):
        inputs = (cell, x, batch_sizes, state0, list(params), constants, reverse)
        output = _record_layer(*inputs)
        _setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, *grads):
        _, dx, _, d_state0, d_params, _, _ = _backward(ctx, *grads)
        return None, dx, None, d_state0, None, None, *d_params


def run(
    cell: str, x: Tensor, batch_sizes: Tensor, state0: Tensor, params: list[Tensor], constants: Tensor, reverse: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`torch.ops.derive.recurrent(...)`. Eager, the op's dispatch (about 0.1 ms a call) is left
    out; traced (compile, export, torch.func, fake tensors) it is the op, which they record."""
    if _untraced((x, batch_sizes, state0, constants, *params)):
        return _Eager.apply(cell, x, batch_sizes, state0, constants, reverse, *params)
    return torch.ops.derive.recurrent(cell, x, batch_sizes, state0, params, constants, reverse)
