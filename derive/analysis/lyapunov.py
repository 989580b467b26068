"""Lyapunov exponents of a cell's state along a trajectory, from its exact per-step Jacobians.

The gradient that reaches n steps back goes through the product J_T ⋯ J_{T−n+1} of the Jacobians
J_t = ∂s_t/∂s_{t-1}. Over long products it grows or shrinks by e^λ₁ per step, λ₁ the largest
Lyapunov exponent: λ₁ < 0, the gradient vanishes; λ₁ > 0, it explodes (and the dynamics are
chaotic). The top k exponents λ₁ ≥ … ≥ λ_k are the growth rates of k-dimensional volumes, so
they say how many directions of the state keep information, and how well.

Benettin's method (Benettin et al. 1980; Shimada & Nagashima 1979): start from k orthonormal
columns Q_0 and factor J_t Q_{t-1} = Q_t R_t at every step. R_n ⋯ R_1 is the R factor of
J_n ⋯ J_1 Q_0, so the mean of log|diag R_t| over the steps are the finite-time exponents, and
the columns stay orthonormal: nothing overflows or underflows, however long the trajectory.

Each batch row is its own trajectory. The first `warmup` steps turn Q towards the growing
directions and are not averaged. Jacobians are computed chunk by chunk (forward from the state
the previous chunk ended in), so memory does not grow with T. Arithmetic is float64, also for
float32 cells: their float32 Jacobians are converted. A step whose Jacobian maps a direction to
exactly 0 (a dead relu unit, say) gives an exponent of −inf, which is the exact value.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from derive.runtime.arguments import to_numpy
from derive.runtime.cell import RecurrentCell

CHUNK_BYTES = 32 * 2**20  # float64 Jacobians held at once, at least one step's
START_SEED = 0  # of the random orthonormal Q_0: a fixed start makes every result reproducible


@dataclass(frozen=True)
class Spectrum:
    """Lyapunov exponents of one run, per step, natural log, descending (k = their number)."""

    exponents: np.ndarray  # (B, k) over all steps past warmup, per batch row
    running: np.ndarray  # (T − warmup, k) the estimate after each step past warmup, mean over rows
    warmup: int

    @property
    def steps(self) -> np.ndarray:
        """The step t of each row of `running`: warmup + 1, ..., T."""
        return np.arange(self.warmup + 1, self.warmup + 1 + len(self.running))


def lyapunov(cell: RecurrentCell, x, k: int, state0=None, warmup: int = 0) -> np.ndarray:
    """The top k Lyapunov exponents (B, k) per step of `cell` run on x (T, B, input_size).

    Natural log, descending, averaged over steps warmup + 1, ..., T; state0 as in `cell.forward`.
    """
    x = check_arguments(cell, x, k, warmup)
    (exponents,) = deque(running_exponents(jacobian_chunks(cell, x, state0), k, warmup), maxlen=1)  # the last estimate
    return descending(exponents)


def spectrum(cell: RecurrentCell, x, k: int, state0=None, warmup: int = 0) -> Spectrum:
    """`lyapunov`, and how the estimate converged: its mean over rows after every step."""
    x = check_arguments(cell, x, k, warmup)
    means = []
    for exponents in running_exponents(jacobian_chunks(cell, x, state0), k, warmup):
        exponents = descending(exponents)
        means.append(exponents.mean(axis=0))
    return Spectrum(exponents, np.array(means), warmup)


def check_arguments(cell, x, k, warmup) -> np.ndarray:
    """x as an array, once cell, x, k and warmup are known to fit together (else an error naming them)."""
    if not isinstance(cell, RecurrentCell):
        hint = (
            f"; build one: {cell.__name__}(input_size, hidden_size)"
            if isinstance(cell, type) and issubclass(cell, RecurrentCell)
            else ""
        )
        raise TypeError(f"cell must be an instance of a generated cell, got {cell!r}{hint}")
    x = to_numpy("x", x)
    if x.ndim != 3 or x.shape[2] != cell.input_size:  # checked whole: forward sees it in chunks
        raise ValueError(f"x must have shape (T, B, input_size={cell.input_size}), got {x.shape}")
    S = sum(cell.state_widths)
    if not _is_integer(k) or not 1 <= k <= S:
        sizes = (
            f"× hidden size {cell.hidden_size}"
            if len(set(cell.state_widths)) == 1
            else f"of sizes {', '.join(map(str, cell.state_widths))}"
        )
        raise ValueError(
            f"k (the number of Lyapunov exponents) must be an integer from 1 to the state size {S} of this "
            f"{cell.name} ({len(cell.state_names)} state(s) {', '.join(cell.state_names)} {sizes}), got {k!r}"
        )
    T = x.shape[0]
    if not _is_integer(warmup) or not 0 <= warmup < T:
        raise ValueError(f"warmup must be an integer with 0 <= warmup < T = {T} (the steps in x), got {warmup!r}")
    return x


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def jacobian_chunks(cell: RecurrentCell, x: np.ndarray, state0=None) -> Iterator[np.ndarray]:
    """J_t = ∂s_t/∂s_{t-1} for t = 1..T as float64 arrays (steps, B, S, S), chunk after chunk."""
    T, B = x.shape[:2]
    S = sum(cell.state_widths)
    steps = max(1, CHUNK_BYTES // max(1, B * S * S * 8))
    state = state0
    for start in range(0, T, steps):
        _, state, tape = cell.forward(x[start : start + steps], state)
        yield cell.jacobian(tape).astype(np.float64, copy=False)


def running_exponents(chunks, k: int, warmup: int = 0) -> Iterator[np.ndarray]:
    """Benettin's QR iteration over Jacobian chunks (steps, B, S, S); after each step past
    `warmup`, the exponents estimated so far (B, k), in the order of the columns of Q."""
    Q = log_sum = None
    t = 0
    for J in chunks:
        if Q is None:
            B, S = J.shape[1:3]
            Q = np.broadcast_to(start_columns(S, k), (B, S, k))
            log_sum = np.zeros((B, k))
        for J_t in J:
            Q, R = np.linalg.qr(J_t @ Q)
            t += 1
            if t > warmup:
                with np.errstate(divide="ignore"):
                    log_sum += np.log(np.abs(np.diagonal(R, axis1=1, axis2=2)))
                yield log_sum / (t - warmup)


def start_columns(S: int, k: int) -> np.ndarray:
    """Q_0 (S, k): the first k columns of a random orthogonal matrix (seed START_SEED), so the
    start is in no special subspace; the same k columns whatever k, for reproducible results."""
    Q, _ = np.linalg.qr(np.random.default_rng(START_SEED).standard_normal((S, S)))
    return Q[:, :k]


def descending(exponents: np.ndarray) -> np.ndarray:
    """Sorted from largest to smallest along the last axis (NaN last)."""
    return -np.sort(-exponents, axis=-1)
