"""Gradient flow along a real trajectory: how ‖∂s_T/∂s_{T−k}‖ changes with the lag k.

Backpropagation through time multiplies the per-step Jacobians J_t = ∂s_t/∂s_{t-1}:

    ∂s_T/∂s_{T−k} = J_T J_{T−1} ⋯ J_{T−k+1}

If the product shrinks geometrically with k, the gradient reaching k steps back vanishes; if it
grows, it explodes. `measure` runs a cell on an input, takes J_t from `cell.jacobian(tape)` and
returns, for every lag k = 0…T, the spectral norm of that product (of the whole stacked state,
and of each state's own diagonal block, e.g. ∂c_T/∂c_{T−k}); and for every step the spectral
radius and the largest singular value of J_t and the mean value of every gate; on request the
top Lyapunov exponents of the product and how their estimate converged (`derive/analysis/lyapunov.py`).

Batches: each batch row is its own trajectory. Every quantity is computed per row and reported
as the mean over rows; `norm_min` and `norm_max` give the spread of the lag norms over rows.

`analyze` builds the cells (same seed, same random input for every cell, optional gate bias and
recurrent spectral radius) and measures each. Only NumPy and the generated cells are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from derive.runtime.cell import RecurrentCell

from .lyapunov import Spectrum, lyapunov, spectrum  # noqa: F401 (derive.flow.lyapunov is the public name)

KEEP_GATES = ("f", "z")  # gates that keep the state when near 1: LSTM forget gate, GRU update gate


@dataclass(frozen=True)
class Settings:
    """How `analyze` builds each cell and its input, and what it measures besides the lag norms."""

    steps: int = 100
    hidden_size: int = 32
    input_size: int | None = None  # default: hidden_size
    batch: int = 1
    seed: int = 0  # cell initialization (PyTorch's default) and input
    input_scale: float = 1.0  # x ~ input_scale · N(0, 1)
    gate_bias: float | None = None  # total bias of the forget/update gate
    gate: str | None = None  # which gate gate_bias sets; default: the first of KEEP_GATES the cell has
    weight_scale: float | None = None  # spectral radius of every H×H gate block of the recurrent matrices
    lyapunov: int = 0  # how many Lyapunov exponents to compute (0: none)
    warmup: int = 0  # steps not averaged into the Lyapunov exponents

    def __post_init__(self):
        for name in ("steps", "hidden_size", "batch"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lyapunov", "warmup"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.warmup and not self.lyapunov:
            raise ValueError(f"warmup = {self.warmup} applies to Lyapunov exponents only: set lyapunov too")
        if self.warmup >= self.steps:
            raise ValueError(f"warmup must be less than steps = {self.steps}, got {self.warmup}")
        if self.input_size is not None and self.input_size < 1:
            raise ValueError(f"input_size must be a positive integer, got {self.input_size!r}")
        if self.weight_scale is not None and not self.weight_scale > 0:
            raise ValueError(f"weight_scale must be positive, got {self.weight_scale!r}")


@dataclass
class Flow:
    """What `measure` finds for one cell on one input (means over batch rows)."""

    label: str
    cell: str
    state_names: tuple[str, ...]
    norm: np.ndarray  # (T+1,) ‖∂s_T/∂s_{T−k}‖₂ for k = 0..T (k = 0: the identity, 1)
    norm_min: np.ndarray  # (T+1,) smallest over batch rows
    norm_max: np.ndarray  # (T+1,) largest over batch rows
    state_norm: dict[str, np.ndarray]  # state a -> (T+1,) ‖∂a_T/∂a_{T−k}‖₂
    spectral_radius: np.ndarray  # (T,) max |eigenvalue| of J_t, t = 1..T
    max_singular: np.ndarray  # (T,) ‖J_t‖₂
    gates: dict[str, np.ndarray]  # gate name -> (T,) mean activation over rows and units
    spectrum: Spectrum | None = None  # Lyapunov exponents, if asked for
    settings: Settings | None = field(default=None, repr=False)

    @property
    def lags(self) -> np.ndarray:
        return np.arange(len(self.norm))

    @property
    def steps(self) -> np.ndarray:
        return np.arange(1, len(self.spectral_radius) + 1)


def lag_norms(J: np.ndarray, blocks: list[slice] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Spectral norms of ∂s_T/∂s_{T−k} = J[T-1] ⋯ J[T-k] for k = 0..T, per batch row.

    J is (T, B, S, S) as `cell.jacobian` returns it. Returns the norms of the whole product,
    (B, T+1), and of each diagonal block given in `blocks` (slices of the state). The running
    product is renormalized every step and its scale kept as a logarithm, so norms far below or
    above the float range come out as 0 or inf instead of NaN.
    """
    T, B, S, _ = J.shape
    blocks = blocks or []
    product = np.broadcast_to(np.eye(S), (B, S, S)).copy()
    log_scale = np.zeros(B)
    norms = np.ones((B, T + 1))
    block_norms = [np.ones((B, T + 1)) for _ in blocks]
    for k in range(1, T + 1):
        product = product @ J[T - k]
        size = np.abs(product).max(axis=(1, 2))
        size[size == 0] = 1.0
        product /= size[:, None, None]
        log_scale += np.log(size)
        scale = np.exp(log_scale)
        with np.errstate(over="ignore", invalid="ignore"):
            norms[:, k] = scale * np.linalg.norm(product, 2, axis=(1, 2))
            for out, s in zip(block_norms, blocks):
                out[:, k] = scale * np.linalg.norm(product[:, s, s], 2, axis=(1, 2))
    return norms, block_norms


def gate_names(cls: type[RecurrentCell]) -> tuple[str, ...]:
    """Names of the gate blocks of a cell's parameters, in order (LSTM: i, f, g, o)."""
    names: list[str] = []
    for p in cls.parameters:
        names += [g for g in p.gates or () if g not in names]
    return tuple(names)


def measure(
    cell: RecurrentCell,
    x: np.ndarray,
    state0=None,
    label: str | None = None,
    lyapunov_exponents: int = 0,
    warmup: int = 0,
) -> Flow:
    """Run `cell` on x (T, B, I) from state0 and measure the gradient flow along the trajectory;
    with lyapunov_exponents = k > 0 also the top k Lyapunov exponents, the first `warmup` steps
    not averaged."""
    _, _, tape = cell.forward(x, state0)
    J = cell.jacobian(tape).astype(np.float64)
    T, B, S, _ = J.shape
    ends = np.cumsum(cell.state_widths)  # each state's rows of J
    blocks = [slice(end - width, end) for end, width in zip(ends, cell.state_widths)]
    norms, block_norms = lag_norms(J, blocks)
    gates = {
        g: tape.saved[:, cell.saved_names.index(g)].mean(axis=(1, 2))
        for g in gate_names(type(cell))
        if g in cell.saved_names
    }
    return Flow(
        label=label or cell.name,
        cell=cell.name,
        state_names=tuple(cell.state_names),
        norm=norms.mean(axis=0),
        norm_min=norms.min(axis=0),
        norm_max=norms.max(axis=0),
        state_norm={s: b.mean(axis=0) for s, b in zip(cell.state_names, block_norms)},
        spectral_radius=np.abs(np.linalg.eigvals(J)).max(axis=-1).mean(axis=1),
        max_singular=np.linalg.norm(J, 2, axis=(2, 3)).mean(axis=1),
        gates=gates,
        spectrum=spectrum(cell, x, lyapunov_exponents, state0, warmup) if lyapunov_exponents else None,
    )


# -- building the cells -----------------------------------------------------------------------
def set_gate_bias(cell: RecurrentCell, value: float, gate: str | None = None) -> str:
    """Make the total bias of the forget/update gate `value`; returns the gate's name.

    The biases of a gate are the per-unit vectors with that gate block (LSTM: b_ih[f] and b_hh[f]);
    the first gets `value` and the others 0, so their sum is `value`.
    """
    names = gate_names(type(cell))
    if gate is None:
        gate = next((g for g in KEEP_GATES if g in names), None)
        if gate is None:
            raise ValueError(
                f"cell {cell.name!r} has no forget or update gate (gates: {', '.join(names) or 'none'}); "
                f"a gate bias applies to a gate named {' or '.join(KEEP_GATES)}, or name one with gate="
            )
    vectors = [p for p in cell.parameters if p.columns is None and p.gates and gate in p.gates]
    if not vectors:
        raise ValueError(
            f"cell {cell.name!r} has no bias vector with a gate {gate!r} (gates: {', '.join(names) or 'none'})"
        )
    H = cell.hidden_size
    for k, p in enumerate(vectors):
        g = p.gates.index(gate)
        cell.params[p.name][g * H : (g + 1) * H] = value if k == 0 else 0.0
    return gate


def set_spectral_radius(cell: RecurrentCell, radius: float) -> None:
    """Scale every H×H gate block of the matrices acting on hidden-size vectors to spectral radius `radius`."""
    H = cell.hidden_size
    recurrent = [p for p in cell.parameters if p.columns == "H" and p.size == "H"]
    if not recurrent:
        raise ValueError(f"cell {cell.name!r} has no recurrent matrix to scale")
    for p in recurrent:
        W = cell.params[p.name]
        for b in range(p.blocks):
            block = W[b * H : (b + 1) * H]
            current = np.abs(np.linalg.eigvals(block)).max()
            if current == 0:
                raise ValueError(f"block {b} of {p.name!r} is nilpotent: its spectral radius cannot be scaled")
            block *= radius / current


def build(cls: type[RecurrentCell], settings: Settings) -> tuple[RecurrentCell, np.ndarray]:
    """The float64 cell and the input x (T, B, I) that `settings` describe."""
    I = settings.input_size or settings.hidden_size
    cell = cls(I, settings.hidden_size, dtype=np.float64, seed=settings.seed)
    if settings.weight_scale is not None:
        set_spectral_radius(cell, settings.weight_scale)
    if settings.gate_bias is not None:
        set_gate_bias(cell, settings.gate_bias, settings.gate)
    rng = np.random.default_rng(settings.seed)
    x = settings.input_scale * rng.standard_normal((settings.steps, settings.batch, I))
    return cell, x


def analyze(cells, settings: Settings = Settings(), suffix: str = "") -> list[Flow]:
    """Measure each cell (a generated class or a name in `generated.CELLS`) on the same input.

    Each flow is labelled by the cell's name, followed by `suffix` in parentheses if given.
    """
    flows = []
    for cls in resolve(cells):
        cell, x = build(cls, settings)
        label = f"{cls.name} ({suffix})" if suffix else cls.name
        flow = measure(cell, x, label=label, lyapunov_exponents=settings.lyapunov, warmup=settings.warmup)
        flow.settings = settings
        flows.append(flow)
    return flows


def resolve(cells) -> list[type[RecurrentCell]]:
    """Generated classes for names in `generated.CELLS` (classes pass through)."""
    classes = []
    for c in [cells] if isinstance(cells, (str, type)) else cells:
        if isinstance(c, str):
            import generated

            if c not in generated.CELLS:
                raise ValueError(f"unknown cell {c!r}; generated cells: {', '.join(generated.CELLS)}")
            c = generated.CELLS[c]
        classes.append(c)
    return classes


def sweep(settings: Settings, gate_bias=(None,), weight_scale=(None,)) -> list[tuple[Settings, str]]:
    """One Settings per combination of the values given, with a label suffix naming what varies."""
    runs = []
    for bias in gate_bias:
        for radius in weight_scale:
            parts = []
            if len(gate_bias) > 1:
                parts.append(f"gate bias {bias:g}")
            if len(weight_scale) > 1:
                parts.append(f"ρ = {radius:g}")
            runs.append((replace(settings, gate_bias=bias, weight_scale=radius), ", ".join(parts)))
    return runs
