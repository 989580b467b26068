"""The opt-in search for the first non-finite value (`check_finite=True`).

Kernels follow IEEE arithmetic: NaN and Inf propagate and never raise. When asked, these
functions look, after the kernel ran, for where the first non-finite value appeared (which
argument, time step, batch row and quantity) and raise FloatingPointError saying so.
Forward runs from step 0 upwards, backward from step T-1 downwards: "first" follows each.
"""

from __future__ import annotations

import numpy as np


def first_nonfinite(array: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first non-finite element in C order, or None if all are finite."""
    bad = ~np.isfinite(array)
    if not bad.any():
        return None
    return tuple(int(k) for k in np.unravel_index(int(np.argmax(bad)), array.shape))


def _last_step_first(array: np.ndarray) -> tuple[int, ...] | None:
    """Like first_nonfinite for a time-major array, but from its last step down."""
    steps = _steps_with_nonfinite(array, 0)
    if not steps.any():
        return None
    step = len(steps) - 1 - int(np.argmax(steps[::-1]))
    return (step, *first_nonfinite(array[step]))


def _steps_with_nonfinite(array: np.ndarray, time_axis: int) -> np.ndarray:
    other = tuple(k for k in range(array.ndim) if k != time_axis)
    return (~np.isfinite(array)).any(axis=other)


def _at(name: str, array: np.ndarray, index: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(map(str, index))}] = {array[index]}"


def _raise(operation: str, where: str):
    raise FloatingPointError(f"{operation}: first non-finite value {where}")


def _check_each(operation: str, labelled: list[tuple[str, str, np.ndarray]]) -> None:
    """`labelled`: (what it is, short name, array), checked in order."""
    for label, name, array in labelled:
        index = first_nonfinite(array)
        if index is not None:
            _raise(operation, f"in {label}: {_at(name, array, index)}")


def check_forward(cell, x, initial, params, states, saved) -> None:
    """Parameters, initial states, then step by step: the input x_t, then the values
    computed in step t (saved intermediates, then new states; saved is None without a tape)."""
    _check_each("forward", [(f"parameter {k!r}", k, v) for k, v in params.items()])
    _check_each(
        "forward", [(f"state0 ({s})", f"state0[{k}]", v) for k, (s, v) in enumerate(zip(cell.state_names, initial))]
    )
    if x.shape[0] == 0:
        return
    bad_x = _steps_with_nonfinite(x, 0)
    bad_step = bad_x | _steps_with_nonfinite(states[:, 1:], 1)
    if saved is not None:
        bad_step |= _steps_with_nonfinite(saved, 0)
    if not bad_step.any():
        return
    step = int(np.argmax(bad_step))
    if bad_x[step]:
        row, i = first_nonfinite(x[step])
        _raise("forward", f"at time step {step}, batch row {row}, in the input: {_at('x', x, (step, row, i))}")
    quantities = [] if saved is None else [(name, saved[step, k]) for k, name in enumerate(cell.saved_names)]
    quantities += [(f"{name} (new state)", states[k, step + 1]) for k, name in enumerate(cell.state_names)]
    bad = [(name, value, first_nonfinite(value)) for name, value in quantities]
    bad = [(name, value, index) for name, value, index in bad if index is not None]
    name, value, (row, unit) = bad[0]
    others = ", ".join(n for n, _, _ in bad[1:])
    _raise(
        "forward",
        f"at time step {step}, batch row {row}, in {name} at unit {unit}: {value[row, unit]}, computed from "
        "finite inputs (the step's arithmetic overflowed or was undefined)"
        + (f"; also non-finite in that step: {others}" if others else ""),
    )


def check_tape(operation: str, tape) -> None:
    for name in ("states", "saved"):
        if first_nonfinite(getattr(tape, name)) is not None:
            _raise(operation, f"in the tape ({name}), from forward: run forward(..., check_finite=True) to locate it")


def check_backward(cell, tape, dy, d_final, grads) -> None:
    """dy (from its last step), dstate, the tape, then the gradients: dx from its last step
    (backward runs from T-1 down), the parameters' gradients, the initial states'."""
    index = _last_step_first(dy) if dy.size else None
    if index is not None:
        _raise("backward", f"at time step {index[0]}, batch row {index[1]}, in the argument: {_at('dy', dy, index)}")
    _check_each(
        "backward", [(f"dstate ({s})", f"dstate[{k}]", v) for k, (s, v) in enumerate(zip(cell.state_names, d_final))]
    )
    check_tape("backward", tape)
    index = _last_step_first(grads.x) if grads.x.size else None
    if index is not None:
        _raise(
            "backward", f"at time step {index[0]} (counting down), batch row {index[1]}, in {_at('dx', grads.x, index)}"
        )
    _check_each("backward", [(f"the gradient of parameter {k!r}", f"d_{k}", v) for k, v in grads.params.items()])
    _check_each(
        "backward",
        [
            (f"the gradient of state0 ({s})", f"d_state0[{k}]", v)
            for k, (s, v) in enumerate(zip(cell.state_names, grads.state0))
        ],
    )


def check_jacobian(tape, J) -> None:
    check_tape("jacobian", tape)
    index = first_nonfinite(J)
    if index is not None:
        _raise("jacobian", f"at time step {index[0]}, batch row {index[1]}, in {_at('J', J, index)}")
