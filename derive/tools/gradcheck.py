"""Prove a cell's gradients and Jacobian against float64 central finite differences.

The loss is L = <y, R> + Σ_k <s_T[k], R_k> with fixed random R, so every output and every
final state matter. Each element of x, of every parameter and of every initial state is
perturbed by ±eps; the error is ‖analytic − numeric‖ / ‖numeric‖ per argument.
Only NumPy is needed: this runs anywhere the generated cells run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPS = 1e-6
# Central differences of an O(1) loss carry ~1e-16/EPS = 1e-10 of round-off per element: a
# numeric gradient whose norm is below FD_RESOLUTION cannot be told from zero.
FD_RESOLUTION = 1e-7
ROUNDOFF = float(np.finfo(np.float64).eps)
SHAPES = ((3, 2, 3, 4), (1, 1, 1, 1), (4, 3, 2, 5))  # (T, B, I, H)


def relative_error(analytic: np.ndarray, numeric: np.ndarray, floor: float = 0.0) -> float:
    """‖a − n‖₂ / ‖n‖₂; absolute when ‖n‖₂ <= floor; NaN anywhere gives inf.

    `floor` is the reference's resolution: a gradient that is exactly zero (e.g. a spec whose
    output ignores a parameter) shows up in central differences as round-off noise, and a ratio
    of noise to noise says nothing. Comparisons of exact references pass floor = 0.
    """
    diff = float(np.linalg.norm(np.ravel(analytic) - np.ravel(numeric)))
    scale = float(np.linalg.norm(np.ravel(numeric)))
    error = diff / scale if scale > floor else diff
    return error if np.isfinite(error) else float("inf")


def fd_error(analytic: np.ndarray, numeric: np.ndarray, roundoff: float) -> tuple[float, float]:
    """(error, resolution) of an analytic derivative against central differences: the relative
    error (absolute below FD_RESOLUTION), and the part of it that the round-off of the
    differences, bounded by `roundoff` in norm, can explain on the same scale."""
    scale = float(np.linalg.norm(np.ravel(numeric)))
    return relative_error(analytic, numeric, FD_RESOLUTION), roundoff / scale if scale > FD_RESOLUTION else roundoff


def roundoff_bound(magnitude: float, size: int) -> float:
    """A bound on the norm of the round-off of `size` central differences (steps ±EPS) of values
    whose terms add up to `magnitude` in absolute value, each computed within eps_machine of it."""
    return np.sqrt(size) * ROUNDOFF * magnitude / EPS


@dataclass
class Problem:
    """A random float64 instance: the cell, its inputs and the loss weights."""

    cell: object
    x: np.ndarray
    state0: tuple[np.ndarray, ...]
    R: np.ndarray
    R_state: tuple[np.ndarray, ...]

    @classmethod
    def random(cls, cell_class, T, B, I, H, seed=0, scale=1.0):
        rng = np.random.default_rng(seed)
        cell = cell_class(I, H, dtype=np.float64, seed=seed)
        for value in cell.params.values():  # larger than PyTorch's init, to exercise nonlinearity
            value[...] = rng.uniform(-scale, scale, value.shape)
        widths = cell.state_widths  # H each, unless the cell declares other sizes (h of proj_size)
        return cls(
            cell,
            rng.standard_normal((T, B, I)),
            tuple(0.5 * rng.standard_normal((B, width)) for width in widths),
            rng.standard_normal((T, B, widths[0])),
            tuple(rng.standard_normal((B, width)) for width in widths),
        )

    def loss(self) -> float:
        y, state, _ = self.cell.forward(self.x, self.state0)
        return float(np.sum(y * self.R) + sum(np.sum(s * r) for s, r in zip(state, self.R_state)))

    def roundoff(self, size: int) -> float:
        """A bound on the norm of the round-off in `numeric` for `size` elements (the loss's
        terms add up to M in absolute value)."""
        y, state, _ = self.cell.forward(self.x, self.state0)
        magnitude = float(np.sum(np.abs(y * self.R)) + sum(np.sum(np.abs(s * r)) for s, r in zip(state, self.R_state)))
        return roundoff_bound(magnitude, size)

    def gradients(self):
        _, _, tape = self.cell.forward(self.x, self.state0)
        return self.cell.backward(tape, self.R, self.R_state)

    def numeric(self, array: np.ndarray, eps: float = EPS) -> np.ndarray:
        """Central differences of the loss with respect to every element of `array` (in place)."""
        grad = np.zeros_like(array)
        flat, out = array.reshape(-1), grad.reshape(-1)
        for k in range(flat.size):
            keep = flat[k]
            flat[k] = keep + eps
            up = self.loss()
            flat[k] = keep - eps
            down = self.loss()
            flat[k] = keep
            out[k] = (up - down) / (2 * eps)
        return grad


@dataclass
class Report:
    """Worst relative error per checked quantity for one cell, and how far each goes beyond the
    resolution of central differences (what a tolerance is compared with)."""

    cell: str
    errors: dict[str, float] = field(default_factory=dict)
    beyond_resolution: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, error: float, resolution: float = 0.0) -> None:
        self.errors[name] = max(self.errors.get(name, 0.0), error)
        excess = max(error - resolution, 0.0) if np.isfinite(error) else float("inf")
        self.beyond_resolution[name] = max(self.beyond_resolution.get(name, 0.0), excess)

    @property
    def worst(self) -> float:
        return max(self.errors.values())

    def failures(self, tolerance: float) -> dict[str, float]:
        """Quantities whose error exceeds `tolerance` beyond the resolution: name -> error."""
        return {k: self.errors[k] for k, v in self.beyond_resolution.items() if not v <= tolerance}


def check_gradients(problem: Problem, report: Report) -> None:
    """Backward against finite differences for x, every parameter and every initial state."""
    grads = problem.gradients()

    def error(analytic, array):
        return fd_error(analytic, problem.numeric(array), problem.roundoff(array.size))

    report.add("x", *error(grads.x, problem.x))
    for name, value in problem.cell.params.items():
        report.add(name, *error(grads.params[name], value))
    for k, name in enumerate(problem.cell.state_names):
        report.add(f"{name}0", *error(grads.state0[k], problem.state0[k]))


def numeric_jacobian(cell, x_t: np.ndarray, state: tuple[np.ndarray, ...], eps: float = EPS) -> np.ndarray:
    """∂s_t/∂s_{t-1} (B, S, S) of one step from x_t (B, I) and s_{t-1} (states of any sizes,
    S the sum of their sizes), by central differences."""
    B = state[0].shape[0]
    columns_of = [(k, unit) for k, s in enumerate(state) for unit in range(s.shape[1])]
    S = len(columns_of)
    J = np.zeros((B, S, S))
    for col, (k, unit) in enumerate(columns_of):
        columns = []
        for sign in (1, -1):
            shifted = [s.copy() for s in state]
            shifted[k][:, unit] += sign * eps
            _, new, _ = cell.forward(x_t[None], tuple(shifted))
            columns.append(np.concatenate(new, axis=1))
        J[:, :, col] = (columns[0] - columns[1]) / (2 * eps)
    return J


def check_jacobian(problem: Problem, report: Report) -> None:
    """Every J[t] against one-step finite differences, and the chain rule through BPTT."""
    cell = problem.cell
    _, _, tape = cell.forward(problem.x, problem.state0)
    J = cell.jacobian(tape)
    for t in range(problem.x.shape[0]):
        previous = tuple(tape.states[k, t, :, :width] for k, width in enumerate(cell.state_widths))
        new = [tape.states[k, t + 1, :, :width] for k, width in enumerate(cell.state_widths)]
        magnitude = max(float(np.abs(s).max()) for s in new)  # of the values differenced
        report.add(
            "jacobian",
            *fd_error(J[t], numeric_jacobian(cell, problem.x[t], previous), roundoff_bound(magnitude, J[t].size)),
        )
    # v^T J_T ... J_1 must equal what backward gives for the loss <s_T, v>.
    v = np.concatenate(problem.R_state, axis=1)
    chained = v.copy()
    for t in reversed(range(problem.x.shape[0])):
        chained = np.einsum("bi,bij->bj", chained, J[t])
    grads = cell.backward(tape, None, problem.R_state)
    report.add("jacobian chain", relative_error(np.concatenate(grads.state0, axis=1), chained))


def check_cell(cell_class, shapes=SHAPES, seed=0) -> Report:
    """All checks for one cell over several shapes."""
    report = Report(cell_class.name)
    for k, (T, B, I, H) in enumerate(shapes):
        problem = Problem.random(cell_class, T, B, I, H, seed=seed + k)
        check_gradients(problem, report)
        check_jacobian(problem, report)
    return report
