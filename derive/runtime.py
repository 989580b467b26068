"""The Python side of every generated cell: parameters, input checks, tapes, gradients.

Generated modules subclass `RecurrentCell` and attach three jitted kernels. Everything a user
passes is checked and converted here, before any kernel runs, so a kernel only ever sees
C-contiguous arrays of the cell's dtype and of the shapes it was built for.
Imports only NumPy (and Numba through the generated modules): no SymPy at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Parameter:
    """A parameter's layout: `blocks` gate blocks of H rows; `columns` is "I", "H" or None."""

    name: str
    blocks: int
    columns: str | None
    gates: tuple[str, ...] | None = None
    torch: str | None = None
    init: Any = "uniform"

    def shape(self, input_size: int, hidden_size: int) -> tuple[int, ...]:
        rows = self.blocks * hidden_size
        if self.columns is None:
            return (rows,)
        return (rows, input_size if self.columns == "I" else hidden_size)


@dataclass
class Tape:
    """What `forward` keeps for `backward` and `jacobian`.

    states: (n_states, T+1, B, H), the initial state then every s_t.
    saved:  (T, n_saved, B, H), the per-step values named by the cell's `saved_names`.
    """

    cell: "RecurrentCell"
    x: np.ndarray
    states: np.ndarray
    saved: np.ndarray
    params: dict[str, np.ndarray]


@dataclass
class Gradients:
    """Gradients of a loss: x (T, B, I), params[name] (shape of the parameter), state0 (tuple)."""

    x: np.ndarray
    params: dict[str, np.ndarray]
    state0: tuple[np.ndarray, ...]


class RecurrentCell:
    """Base of generated cells. See a generated class's docstring for its equations."""

    name: ClassVar[str]
    state_names: ClassVar[tuple[str, ...]]
    parameters: ClassVar[tuple[Parameter, ...]]
    saved_names: ClassVar[tuple[str, ...]]
    torch_reference: ClassVar[tuple[str, dict] | None]  # (torch.nn class name, options) computing the same
    _forward: ClassVar[Callable]
    _backward: ClassVar[Callable]
    _jacobian: ClassVar[Callable]

    def __init__(self, input_size: int, hidden_size: int, dtype=np.float32, seed: int | None = None):
        for arg, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{arg} must be a positive integer, got {value!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.params = self._init_params(np.random.default_rng(seed))

    def __repr__(self):
        return f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size}, dtype={self.dtype.name})"

    # -- parameters -------------------------------------------------------------------------
    def _init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """PyTorch's default: every parameter uniform in (-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / np.sqrt(self.hidden_size)
        params = {}
        for p in self.parameters:
            shape = p.shape(self.input_size, self.hidden_size)
            if p.init == "zeros":
                value = np.zeros(shape)
            elif p.init == "ones":
                value = np.ones(shape)
            elif p.init == "uniform":
                value = rng.uniform(-bound, bound, shape)
            else:
                low, high = p.init
                value = rng.uniform(low, high, shape)
            params[p.name] = np.ascontiguousarray(value, dtype=self.dtype)
        return params

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {p.name: p.shape(self.input_size, self.hidden_size) for p in self.parameters}

    def load_torch(self, state_dict: Mapping[str, Any]) -> None:
        """Copy weights from a torch.nn.RNN/LSTM/GRU state_dict (layer 0); tensors or arrays."""
        for p in self.parameters:
            if p.torch is None:
                raise ValueError(f"{type(self).__name__} has no PyTorch counterpart for parameter {p.name!r}")
            if p.torch not in state_dict:
                raise ValueError(f"state_dict has no {p.torch!r} (for parameter {p.name!r}); keys: {sorted(state_dict)}")
            value = state_dict[p.torch]
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            value = np.asarray(value)
            expected = self.params[p.name].shape
            if value.shape != expected:
                raise ValueError(f"{p.torch!r} (parameter {p.name!r}) must have shape {expected}, got {value.shape}")
            self.params[p.name][...] = value

    def _checked_params(self) -> list[np.ndarray]:
        arrays = []
        for name, shape in self.param_shapes().items():
            value = self.params.get(name)
            if not isinstance(value, np.ndarray):
                raise TypeError(f"parameter {name!r} must be a numpy array, got {type(value).__name__}")
            if value.shape != shape:
                raise ValueError(f"parameter {name!r} must have shape {shape}, got {value.shape}")
            if value.dtype != self.dtype:
                raise TypeError(f"parameter {name!r} must have dtype {self.dtype}, got {value.dtype}")
            arrays.append(np.ascontiguousarray(value))
        return arrays

    # -- input conversion -------------------------------------------------------------------
    def _array(self, name: str, value, shape: tuple[int, ...], shape_text: str) -> np.ndarray:
        """`value` as a C-contiguous array of the cell's dtype, or an error naming `name`."""
        array = np.asarray(value)
        if array.dtype.kind not in "iuf" and array.dtype != np.bool_:
            raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
        if array.dtype.kind == "f" and array.dtype.itemsize > self.dtype.itemsize:
            raise TypeError(
                f"{name} has dtype {array.dtype} but the cell is {self.dtype}; "
                f"cast it explicitly (.astype(np.{self.dtype.name})) or build the cell with dtype=np.{array.dtype.name}"
            )
        if array.shape != shape:
            raise ValueError(f"{name} must have shape {shape_text} = {shape}, got {array.shape}")
        return np.ascontiguousarray(array, dtype=self.dtype)

    def _states_in(self, name: str, value, batch: int) -> list[np.ndarray]:
        n, H = len(self.state_names), self.hidden_size
        if value is None:
            return [np.zeros((batch, H), self.dtype) for _ in range(n)]
        if isinstance(value, np.ndarray) and n == 1:
            value = (value,)
        if not isinstance(value, (tuple, list)) or len(value) != n:
            got = f"{len(value)} arrays" if isinstance(value, (tuple, list)) else type(value).__name__
            raise ValueError(f"{name} must be a tuple of {n} arrays {self.state_names}, got {got}")
        return [
            self._array(f"{name}[{k}] ({s})", v, (batch, H), "(B, hidden_size)")
            for k, (s, v) in enumerate(zip(self.state_names, value))
        ]

    # -- the three operations -----------------------------------------------------------------
    def forward(self, x, state0=None):
        """Run the sequence x (T, B, input_size).

        Returns (y, state, tape): y (T, B, H) holds every h_t, state is the tuple of final
        states (one (B, H) array per name in `state_names`), tape feeds `backward`/`jacobian`.
        state0 is such a tuple (an array for single-state cells); zeros if None.
        """
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"x must have shape (T, B, input_size={self.input_size}), got {x.shape}")
        T, B = x.shape[:2]
        x = self._array("x", x, (T, B, self.input_size), "(T, B, input_size)")
        initial = self._states_in("state0", state0, B)
        params = self._checked_params()
        states = np.empty((len(self.state_names), T + 1, B, self.hidden_size), self.dtype)
        states[:, 0] = initial
        saved = np.empty((T, len(self.saved_names), B, self.hidden_size), self.dtype)
        if T and B:
            type(self)._forward(x, *params, states, saved)
        tape = Tape(self, x, states, saved, dict(zip((p.name for p in self.parameters), params)))
        return states[0, 1:], tuple(states[:, T]), tape

    def backward(self, tape: Tape, dy=None, dstate=None) -> Gradients:
        """Gradients of a loss given dL/dy (T, B, H) and dL/d(final state) (tuple); None = zeros."""
        self._check_tape(tape)
        T, B = tape.x.shape[:2]
        H = self.hidden_size
        dy = np.zeros((T, B, H), self.dtype) if dy is None else self._array("dy", dy, (T, B, H), "(T, B, H)")
        d_final = np.stack(self._states_in("dstate", dstate, B)) if self.state_names else None
        dx = np.zeros_like(tape.x)
        dparams = {name: np.zeros_like(value) for name, value in tape.params.items()}
        dstate0 = np.empty_like(d_final)
        if T and B:
            type(self)._backward(tape.x, *tape.params.values(), tape.states, tape.saved, dy, d_final, dx, *dparams.values(), dstate0)
        else:
            dstate0[...] = d_final
        return Gradients(dx, dparams, tuple(dstate0))

    def jacobian(self, tape: Tape) -> np.ndarray:
        """J (T, B, S, S), S = H * len(state_names): J[t] = ∂s_t/∂s_{t-1}, states stacked in order."""
        self._check_tape(tape)
        T, B = tape.x.shape[:2]
        S = self.hidden_size * len(self.state_names)
        J = np.zeros((T, B, S, S), self.dtype)
        if T and B:
            type(self)._jacobian(*tape.params.values(), tape.states, tape.saved, J)
        return J

    def _check_tape(self, tape) -> None:
        if not isinstance(tape, Tape):
            raise TypeError(f"tape must be the Tape returned by forward, got {type(tape).__name__}")
        if tape.cell is not self:
            raise ValueError(f"tape was recorded by another cell ({tape.cell!r}), not this {self!r}")
