"""The directions of one layer: `run` gives the layer's output and each direction's states.

A bidirectional layer's two directions are independent. Run one after the other, each shares the
matrix products of every step among the cores (the runtime's thread pool), which costs a hand-off
and a wait per product. Side by side, one direction per core with its products unshared, they need
no synchronisation at all. Measured on the 2-core machine (LSTM float32, both directions of one
layer through the NumPy API, side by side against one after the other): forward+backward 1.40x at
T×B×H = 64×32×32, 1.20x at 64×32×128, 1.31x at 256×8×64, 1.26x at 512×1×256, but 1.02x at
32×32×512, where a step's products keep every core busy, and the inference forward there
0.87-0.96x. So a layer runs its directions side by side when its steps are small (`STEP_WORK`), its
calls not tiny (`CALL_WORK`: at 64×32×32, between torch.nn's runs in the benchmark, one after the
other was faster) and short enough for Ctrl-C to wait for them (`kernel_call.WORKER_WORK`: only the
main thread's long calls can be cancelled).

Side by side, both cores are busy: torch's own threads must stay asleep. A torch operator on a large
tensor wakes them (libgomp's threads then spin for milliseconds), so the two directions' outputs are
joined, and their gradients of x added, in NumPy: a bidirectional layer is one autograd node (`_Both`)
whose output is already [forward, reverse] along the features.

Eager calls only: traced ones (compile, export, fake tensors) record one op per direction and torch.cat.
"""

from __future__ import annotations

import os
from concurrent import futures

import numba
import numpy as np
import torch
from torch import Tensor

from derive.runtime import kernel_call

from . import ops

STEP_WORK = 1 << 25  # multiply-adds per step of one direction from which it is better run alone on every core
# Multiply-adds of a direction's call below which the hand-off to a second thread costs more than it saves:
# such calls take about a millisecond, and a torch operator run just before (a loss, an optimizer step)
# leaves torch's threads spinning on a core for longer than that.
CALL_WORK = 1 << 25

_helper: futures.ThreadPoolExecutor | None = None  # runs the reverse direction


def run(arguments: list[tuple], inference: bool, width: int) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """(output (N, directions * width), [(states, final) of each direction]) from `arguments`, an
    `ops.run` argument tuple per direction; `inference`: no gradient is wanted (no tape is kept);
    `width`: h's size (its first columns of the states' H)."""
    tensors = [t for a in arguments for t in (a[1], a[2], a[3], a[5], *a[4])]
    if len(arguments) == 2 and ops._untraced(tensors):
        at_once = _side_by_side(arguments)
        if inference:
            outputs = _each(ops._infer_layer, arguments, at_once)
            return _joined([states for states, _ in outputs], arguments, width), outputs
        (cell, x, batch_sizes, state0, params, constants, _), (_, _, _, state0_r, params_r, _, _) = arguments
        y, *states = _Both.apply(
            cell, x, batch_sizes, constants, state0, state0_r, width, at_once, len(params), *params, *params_r
        )
        return y, [(states[0], states[1]), (states[3], states[4])]
    ys, outputs = [], []
    for a in arguments:
        if inference:
            states, final = ops.infer(*a)
            y = states[0, a[3].shape[1] :]
        else:  # the op's y: a copy, not a view of the states it keeps for backward
            y, states, final, _ = ops.run(*a)
        ys.append(columns(y, width))
        outputs.append((states, final))
    return (ys[0] if len(ys) == 1 else torch.cat(ys, dim=-1)), outputs


def columns(rows: Tensor, width: int) -> Tensor:
    """The first `width` columns of `rows`: itself if it has no more (no slice for autograd to undo)."""
    return rows if rows.shape[-1] == width else rows[..., :width]


def _joined(states: list, arguments: list[tuple], width: int) -> Tensor:
    """[y of the forward direction, y of the reverse one] (N, 2 * width), joined by NumPy."""
    B = arguments[0][3].shape[1]
    return torch.from_numpy(np.concatenate([s.numpy()[0, B:, :width] for s in states], axis=-1))


def _side_by_side(arguments: list[tuple]) -> bool:
    """Small steps, calls neither tiny nor long, and at least two threads allowed: the directions run at once."""
    _, x, _, state0, params, _, _ = arguments[0]
    per_row = sum(p.numel() for p in params)  # multiply-adds per row of a step, about
    return (
        numba.get_num_threads() >= 2
        and state0.shape[1] * per_row < STEP_WORK
        and CALL_WORK <= x.shape[0] * per_row < kernel_call.WORKER_WORK
    )


def _each(function, jobs: list[tuple], at_once: bool) -> list:
    """[function(*job) for job in jobs]; `at_once`: the second on the helper thread meanwhile, each on one core."""
    if not at_once:
        return [function(*job) for job in jobs]
    global _helper
    if _helper is None:
        _helper = futures.ThreadPoolExecutor(1, thread_name_prefix="rnn-derive-direction")
    second = _helper.submit(_on_one_core, function, jobs[1])
    try:
        return [_on_one_core(function, jobs[0]), second.result()]
    except BaseException:  # Ctrl-C too: the helper's kernel cannot be cancelled, it ends first
        kernel_call.wait_for(second)
        raise


def _on_one_core(function, arguments: tuple):
    """function(*arguments) with the products of its kernels unshared (Numba's thread count is per thread)."""
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return function(*arguments)
    finally:
        numba.set_num_threads(threads)


class _Both(torch.autograd.Function):
    """`ops.run` for both directions of a layer in one autograd node, at once (`at_once`) or one after
    the other; its output y is [forward, reverse] (N, 2 * width), joined in NumPy, then each direction's
    states, final and tape."""

    @staticmethod
    def forward(ctx, cell, x, batch_sizes, constants, state0, state0_r, width, at_once, n, *params):
        inputs = [
            (cell, x, batch_sizes, state0, list(params[:n]), constants, False),
            (cell, x, batch_sizes, state0_r, list(params[n:]), constants, True),
        ]
        outputs = _each(ops._forward_layer, [(*a, True) for a in inputs], at_once)
        (states, final, tape), (states_r, final_r, tape_r) = ([torch.from_numpy(v) for v in o] for o in outputs)
        ctx.cell, ctx.n, ctx.width, ctx.at_once = cell, n, width, at_once
        ctx.save_for_backward(x, batch_sizes, constants, state0, state0_r, states, tape, states_r, tape_r, *params)
        ctx.mark_non_differentiable(tape, tape_r)
        ctx.set_materialize_grads(False)  # an output the loss does not use gets no zero gradient
        y = _joined([states, states_r], inputs, width)
        return y, states, final, tape, states_r, final_r, tape_r

    @staticmethod
    def backward(ctx, d_y, d_states, d_final, _, d_states_r, d_final_r, _r):
        x, batch_sizes, constants, state0, state0_r, states, tape, states_r, tape_r, *params = ctx.saved_tensors
        n, width = ctx.n, ctx.width
        plain = ops._plain_eager(x, *params, d_y, d_states, d_final, d_states_r, d_final_r)
        d_ys = [None, None] if d_y is None else _split(d_y, width, state0.shape[2], plain)
        each = [  # per direction: what `ops.recurrent_backward` takes after the shared arguments
            (state0, params[:n], False, states, tape, d_states, d_final),
            (state0_r, params[n:], True, states_r, tape_r, d_states_r, d_final_r),
        ]
        jobs = [
            (ctx.cell, x, batch_sizes, s0, p, constants, reverse, st, tp, d, ds, df)
            for (s0, p, reverse, st, tp, ds, df), d in zip(each, d_ys)
        ]
        if plain:
            results = _each(ops._gradients, jobs, ctx.at_once)
            dx = torch.from_numpy(np.add(results[0][0].numpy(), results[1][0].numpy()))  # NumPy: torch's threads sleep
        else:  # create_graph=True: the op, which refuses double backward
            results = [ops.recurrent_backward(*job) for job in jobs]
            dx = results[0][0] + results[1][0]
        (_, d_state0, d_params), (_, d_state0_r, d_params_r) = results
        return None, dx, None, None, d_state0, d_state0_r, None, None, None, *d_params, *d_params_r


def _split(d_y: Tensor, width: int, hidden_size: int, plain: bool) -> list[Tensor]:
    """dL/dy of each direction, (N, H), from dL/d[forward, reverse] (N, 2 * width), the columns past a
    narrower h zero: by NumPy in `plain` eager backward, else by torch (a graph of it may be recorded)."""
    halves = (d_y[:, :width], d_y[:, width:])
    if not plain:
        return [torch.nn.functional.pad(half, (0, hidden_size - width)) for half in halves]
    out = []
    for half in halves:
        allocate = np.empty if width == hidden_size else np.zeros  # only a narrower h leaves columns to zero
        full = allocate((half.shape[0], hidden_size), half.numpy().dtype)
        full[:, :width] = half.numpy()
        out.append(torch.from_numpy(full))
    return out


def _after_fork_in_child() -> None:
    global _helper
    _helper = None  # the parent's thread is not in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
