"""The Python side of every generated cell: parameters, input checks, tapes, gradients.

Generated modules subclass `RecurrentCell` and attach three jitted kernels. Everything a user
passes is checked and converted here, before any kernel runs, so a kernel only ever sees
C-contiguous arrays of the cell's dtype and of the shapes it was built for.
Imports only NumPy and Numba (`kernel_call` chooses its threading layer on import): no SymPy at run time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from . import finite, held, kernel_call, shards
from .arguments import as_array, to_numpy
from .torch_weights import cell_weights

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Parameter:
    """A parameter's layout: `blocks` gate blocks of `size` rows ("H", or a size the cell
    declares, such as "P"); `columns` is "I", "H", a declared size or None (a vector)."""

    name: str
    blocks: int
    columns: str | None
    gates: tuple[str, ...] | None = None
    torch: str | None = None
    init: Any = "uniform"
    size: str = "H"

    def init_range(self, hidden_size: int) -> tuple[float, float]:
        """(low, high) of the initial values: PyTorch's uniform (-1/sqrt(H), 1/sqrt(H)), the spec's own
        range, or a constant (low == high) for "zeros" and "ones"."""
        if self.init in ("zeros", "ones"):
            return (0.0, 0.0) if self.init == "zeros" else (1.0, 1.0)
        bound = 1.0 / math.sqrt(hidden_size)
        return (-bound, bound) if self.init == "uniform" else tuple(self.init)

    def shape(self, input_size: int, hidden_size: int, sizes: Mapping[str, int] | None = None) -> tuple[int, ...]:
        """The shape for these sizes; `sizes` gives the cell's declared sizes by name ({"P": 4})."""
        known = {"I": input_size, "H": hidden_size, **(sizes or {})}
        rows = self.blocks * known[self.size]
        return (rows,) if self.columns is None else (rows, known[self.columns])

    def shape_text(self, arguments: Mapping[str, str] | None = None) -> str:
        """The shape in the constructor's arguments: `(4*hidden_size, proj_size)`; `arguments`
        names the cell's declared sizes ({"P": "proj_size"})."""
        known = {"I": "input_size", "H": "hidden_size", **(arguments or {})}
        rows = known[self.size] if self.blocks == 1 else f"{self.blocks}*{known[self.size]}"
        return f"({rows},)" if self.columns is None else f"({rows}, {known[self.columns]})"


class Constant:
    """A named constant of a cell (`cell.dt`) as an attribute of its instances: set per instance,
    checked when set (a finite real number, also in the cell's dtype), read as a float."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, cell, owner=None):
        return self if cell is None else cell.__dict__[self.name]

    def __set__(self, cell, value) -> None:
        cell.__dict__[self.name] = checked_constant(f"{type(cell).__name__} constant {self.name!r}", value, cell.dtype)


def checked_constant(where: str, value, dtype: np.dtype) -> float:
    """`value` as a constant's float: a real number, finite also once converted to `dtype`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where} must be a real number (int or float), got {type(value).__name__} {value!r}")
    with np.errstate(over="ignore"):  # a value too large for float32 becomes inf: refused below
        converted = dtype.type(value)
    if not (math.isfinite(value) and np.isfinite(converted)):
        raise ValueError(f"{where} must be a finite number in {dtype}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Tape:
    """What `forward` keeps for `backward` and `jacobian`; it owns all its arrays.

    x: (T, B, I), a copy of the input.
    states: (n_states, T+1, B, H), the initial state then every s_t.
    saved:  (T, n_saved, B, W), the per-step values named by the cell's `saved_names`; W = H, or
            max(H, I) if one has size I (`RecurrentCell.tape_width`).
    params: a copy of the parameters forward used.
    constants: the values of the cell's constants forward used.
    """

    cell: RecurrentCell
    x: np.ndarray
    states: np.ndarray
    saved: np.ndarray
    params: dict[str, np.ndarray]
    constants: dict[str, float]


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
    constants: ClassVar[dict[str, float]] = {}  # name -> default of the cell's named constants (attributes: `Constant`)
    sizes: ClassVar[dict[str, str]] = {}  # declared size -> its constructor argument ({"P": "proj_size"})
    state_sizes: ClassVar[tuple[str, ...]] = ()  # each state's size ("H" or a declared size); () all H
    saved_sizes: ClassVar[tuple[str, ...]] = ()  # each saved value's size ("H", "I" or a declared one); () all H
    _forward: ClassVar[Callable]
    _backward: ClassVar[Callable]
    _jacobian: ClassVar[Callable]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls.constants:
            setattr(cls, name, Constant(name))

    def __init__(self, input_size: int, hidden_size: int, dtype=np.float32, seed: int | None = None, **constants):
        """`constants` set the cell's named constants (see `constants` for their names and defaults)
        and its declared sizes (see `sizes`, e.g. `proj_size=`; by default half of hidden_size, at least 1)."""
        for arg, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{arg} must be a positive integer, got {value!r}")
        self.size_values = self.sizes_from(constants, int(hidden_size))  # each declared size ({"P": 4})
        self.dtype = np.dtype(dtype)
        if self.dtype not in DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        for name, value in self.constants_with(constants, self.dtype).items():
            setattr(self, name, value)
        self.params = self._init_params(np.random.default_rng(seed))
        self._parameter_count = sum(value.size for value in self.params.values())  # the shapes never change

    def __repr__(self):
        constants = "".join(f", {self.sizes[size]}={value}" for size, value in self.size_values.items())
        constants += "".join(f", {name}={value!r}" for name, value in self.constant_values.items())
        return f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size}, dtype={self.dtype.name}{constants})"

    @classmethod
    def sizes_from(cls, keywords: dict, hidden_size: int) -> dict[str, int]:
        """The declared sizes from their keyword arguments, taken out of `keywords` (default
        hidden_size // 2, at least 1), each a positive integer at most hidden_size."""
        sizes = {}
        for size, argument in cls.sizes.items():
            value = keywords.pop(argument, max(1, hidden_size // 2))
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 1 <= value <= hidden_size:
                raise ValueError(
                    f"{argument} (size {size} of {cls.__name__}) must be a positive integer at most "
                    f"hidden_size={hidden_size}, got {value!r}"
                )
            sizes[size] = int(value)
        return sizes

    @classmethod
    def constants_with(cls, values: Mapping, dtype) -> dict[str, float]:
        """Every constant, from `values` (keyword arguments) or its default, checked for `dtype`."""
        unknown = sorted(set(values) - set(cls.constants))
        if unknown:
            has = f"its constants are {list(cls.constants)}" if cls.constants else "it has no constants"
            raise TypeError(f"{cls.__name__}() got unexpected keyword argument(s) {unknown}; {has}")
        dtype = np.dtype(dtype)
        return {
            name: checked_constant(f"{cls.__name__} constant {name!r}", values.get(name, default), dtype)
            for name, default in cls.constants.items()
        }

    @property
    def constant_values(self) -> dict[str, float]:
        """The current value of each named constant."""
        return {name: getattr(self, name) for name in self.constants}

    def torch_options(self) -> dict:
        """The options of the torch.nn module computing this cell (`torch_reference`), a declared
        size given by name there ({"proj_size": "P"}) replaced by this cell's value."""
        options = self.torch_reference[1] if self.torch_reference else {}
        return {
            key: self.size_values.get(value, value) if isinstance(value, str) else value
            for key, value in options.items()
        }

    def _constant_args(self, constants: dict[str, float]) -> tuple:
        """The constants as kernel arguments: scalars of the cell's dtype, after the parameters."""
        return tuple(self.dtype.type(value) for value in constants.values())

    # -- parameters -------------------------------------------------------------------------
    def _init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """PyTorch's default: every parameter uniform in (-1/sqrt(H), 1/sqrt(H)), drawn in the
        cell's dtype straight into the parameter arrays (no float64 temporaries)."""
        params = self._allocate_params()
        for p in self.parameters:
            value = params[p.name]
            low, high = p.init_range(self.hidden_size)
            if low == high:
                value[...] = low
                continue
            rng.random(dtype=self.dtype, out=value)  # uniform in [0, 1); float64 draws are those of rng.uniform
            value *= high - low
            value += low
        return params

    def _allocate_params(self) -> dict[str, np.ndarray]:
        shapes = self.param_shapes()
        try:
            return {name: np.empty(shape, self.dtype) for name, shape in shapes.items()}
        except (MemoryError, ValueError) as error:  # ValueError: larger than any array can be
            needed = sum(math.prod(shape) for shape in shapes.values()) * self.dtype.itemsize
            raise MemoryError(
                f"{self!r}: its parameters {shapes} need {needed / 2**30:,.1f} GiB, which cannot be allocated "
                f"({error}); reduce hidden_size={self.hidden_size} or input_size={self.input_size}"
            ) from None

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {p.name: p.shape(self.input_size, self.hidden_size, self.size_values) for p in self.parameters}

    @classmethod
    def tape_width(cls, input_size: int, hidden_size: int) -> int:
        """The width of the tape's rows (`saved`'s last axis): hidden_size, or max(hidden_size,
        input_size) if the cell keeps values of size I; a value narrower fills the first columns."""
        return max(hidden_size, input_size) if "I" in cls.saved_sizes else hidden_size

    @property
    def state_widths(self) -> tuple[int, ...]:
        """Each state's number of units (hidden_size, or a declared size such as proj_size)."""
        if not self.state_sizes:
            return (self.hidden_size,) * len(self.state_names)
        known = {"H": self.hidden_size, **self.size_values}
        return tuple(known[size] for size in self.state_sizes)

    def load_torch(self, source, *, layer: int | None = None, direction: str | None = None) -> None:
        """Copy weights from a torch.nn RNN/LSTM/GRU module or its state_dict (tensors or arrays).

        A module is checked to compute this cell (see `derive.runtime.torch_weights`); a state_dict only
        for its keys and shapes. A multi-layer or bidirectional source needs `layer` (0, 1, ...)
        and/or `direction` ("forward" or "reverse") to say which part to take. Everything is
        checked before anything is copied: on an error the cell is unchanged. The live arrays in
        `params` are updated in place.
        """
        targets = self._live_params()
        values = cell_weights(self, source, layer, direction)
        for name, target in targets.items():
            if not target.flags.writeable:
                raise ValueError(
                    f"parameter {name!r} is a read-only array, and load_torch copies into the live arrays: "
                    f"give the cell a writable one first (cell.params[{name!r}] = cell.params[{name!r}].copy())"
                )
        for name, value in values.items():
            targets[name][...] = value

    def _live_params(self) -> dict[str, np.ndarray]:
        """`self.params`, checked: every parameter present, an array of its shape and the
        cell's dtype (any layout); unknown names are an error, so a typo is not ignored."""
        if not isinstance(self.params, Mapping):
            raise TypeError(f"params must be a dict of arrays, got {type(self.params).__name__}")
        shapes = self.param_shapes()
        unknown = sorted(set(self.params) - set(shapes))
        if unknown:
            raise ValueError(f"params has unknown names {unknown}; {type(self).__name__} has {list(shapes)}")
        live = {}
        for name, shape in shapes.items():
            if name not in self.params:
                raise ValueError(f"parameter {name!r} is missing from params")
            value = self.params[name]
            if not isinstance(value, np.ndarray):
                raise TypeError(f"parameter {name!r} must be a numpy array, got {type(value).__name__}")
            if value.shape != shape:
                raise ValueError(f"parameter {name!r} must have shape {shape}, got {value.shape}")
            if value.dtype != self.dtype:
                raise TypeError(f"parameter {name!r} must have dtype {self.dtype}, got {value.dtype}")
            live[name] = value
        return live

    # -- input conversion -------------------------------------------------------------------
    def _array(self, name: str, value, shape: tuple[int, ...], shape_text: str, copy: bool = False) -> np.ndarray:
        return as_array(name, value, self.dtype, shape, shape_text, copy)

    def _states_in(self, name: str, value, batch: int) -> list[np.ndarray]:
        """A tuple of (B, H) arrays, one per state (a state of another size: (B, that size)); for
        single-state cells also the state itself (an array, or a list of B rows: a list is a list of
        states only if it holds (B, H) arrays)."""
        n, widths = len(self.state_names), self.state_widths
        if value is None:
            return [np.zeros((batch, width), self.dtype) for width in widths]
        if n == 1 and not isinstance(value, tuple):
            if not isinstance(value, list) or to_numpy(name, value).ndim == 2:  # else a list of (B, H) states
                value = (value,)  # the state itself: an array, a tensor or B rows as lists
        if not isinstance(value, (tuple, list)) or len(value) != n:
            got = f"{len(value)} arrays" if isinstance(value, (tuple, list)) else type(value).__name__
            raise ValueError(f"{name} must be a tuple of {n} arrays {self.state_names}, got {got}")
        return [
            self._array(f"{name}[{k}] ({s})", v, (batch, width), f"(B, {self._size_text(k)}) with B = {batch} from x")
            for k, (s, v, width) in enumerate(zip(self.state_names, value, widths))
        ]

    def _size_text(self, k: int) -> str:
        """State k's size as its constructor argument: `hidden_size`, `proj_size=4`."""
        size = self.state_sizes[k] if self.state_sizes else "H"
        return "hidden_size" if size == "H" else f"{self.sizes[size]}={self.size_values[size]}"

    # -- the three operations -----------------------------------------------------------------
    def forward(self, x, state0=None, *, tape: bool = True, check_finite: bool = False):
        """Run the sequence x (T, B, input_size).

        Returns (y, state, tape): y (T, B, H) holds every h_t, state is the tuple of final
        states (one (B, H) array per name in `state_names`), tape feeds `backward`/`jacobian`.
        state0 is such a tuple (for single-state cells also the state itself: an array, a tensor
        or a nested list of (B, H)); zeros if None.
        tape=False is inference: nothing is kept for backward (the returned tape is None), x is
        not copied and the kernel writes each step's intermediate values over the last step's.
        y, state and the tape are new arrays: changing x, y or state later cannot alter the
        tape. check_finite=True raises FloatingPointError naming where the first NaN or Inf
        appears (argument, time step, batch row, quantity); by default they just propagate.
        """
        if not isinstance(tape, bool):
            raise TypeError(f"tape must be True or False, got {tape!r}")
        shape = to_numpy("x", x).shape
        if len(shape) != 3:
            raise ValueError(f"x must have shape (T, B, input_size={self.input_size}), got {shape}")
        T, B = shape[:2]
        x = self._array("x", x, (T, B, self.input_size), f"(T, B, input_size={self.input_size})", copy=tape)
        initial = self._states_in("state0", state0, B)
        # the tape keeps its own copy of the parameters; without one, C-contiguous views do
        live = self._live_params()
        params = {name: held.copy(v) if tape else np.ascontiguousarray(v) for name, v in live.items()}
        constants = self.constant_values
        states, saved = self._run(x, initial, params, constants, record=tape)
        if check_finite:
            finite.check_forward(self, x, initial, params, states, saved if tape else None)
        widths = self.state_widths
        final = tuple(states[k, T, :, :width].copy() for k, width in enumerate(widths))
        y = states[0, 1:, :, : widths[0]]
        if not tape:
            return y, final, None  # nothing else holds states: y is a view
        return held.copy(y), final, Tape(self, x, states, saved, params, constants)

    def _run(
        self, x: np.ndarray, initial, params: dict[str, np.ndarray], constants: dict[str, float], record: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """(states, saved) after the forward kernel on checked arguments (also derive.torch's path): x (T, B, I)
        and the params (in the cell's order) C-contiguous of the cell's dtype, initial (n, B, H) or n (B, H)
        arrays, constants checked. Without `record`, saved is one step of scratch."""
        T, B = x.shape[:2]
        states = np.empty((len(self.state_names), T + 1, B, self.hidden_size), self.dtype)
        self._pad_states(states, initial)
        saved = self._saved(T if record else min(T, 1), B)
        if T and B:
            # work: about the multiply-adds, as every parameter is used once per step and row
            work = T * B * self._parameter_count
            inputs = (*params.values(), *self._constant_args(constants))
            # inference in batch shards (the tape's copies would cost what they save): x's rows in, the
            # states' initial rows in (all of them where a narrower state's zero columns must stay zero) and
            # later ones out, one step of scratch
            parts = 1 if record else shards.count(B, B * self._parameter_count, work)
            first = () if min(self.state_widths) < self.hidden_size else (slice(None), slice(0, 1))
            later = (slice(None), slice(1, None))
            arguments = (shards.Rows(x, 1), *inputs, shards.Rows(states, 2, first, later), shards.Rows(saved, 2, None))
            shards.call(type(self)._forward, arguments, parts, work)
        return states, saved

    def _saved(self, steps: int, batch: int) -> np.ndarray:
        """The forward kernel's `saved` for `steps` steps of `batch` rows."""
        # values of several sizes leave columns unwritten: zeros there, so check_finite never reads garbage
        allocate = np.zeros if self.saved_sizes else np.empty
        shape = (steps, len(self.saved_names), batch, self.tape_width(self.input_size, self.hidden_size))
        return allocate(shape, self.dtype)

    def _pad_states(self, states: np.ndarray, values) -> None:
        """states[:, 0] = values; a state narrower than H fills the first columns of its rows and
        the rest of its rows is zero at every step (the kernels never write it)."""
        for k, width in enumerate(self.state_widths):
            states[k, ..., width:] = 0.0
            states[k, 0, :, :width] = values[k][..., :width]  # derive.torch passes (B, H) rows

    def backward(self, tape: Tape, dy=None, dstate=None, *, check_finite: bool = False) -> Gradients:
        """Gradients of a loss given dL/dy (T, B, H) and dL/d(final state) (tuple); None = zeros.

        The tape must come from this cell's forward with the parameters unchanged since.
        check_finite=True: see `forward`.
        """
        self._check_tape(tape)
        T, B = tape.x.shape[:2]
        H = self.state_widths[0]
        dy = (
            np.zeros((T, B, H), self.dtype)
            if dy is None
            else self._array("dy", dy, (T, B, H), "(T, B, H) = the shape of y")
        )
        d_final = self._stacked(self._states_in("dstate", dstate, B))
        grads = self._gradients(tape, dy, d_final)
        if check_finite:
            finite.check_backward(self, tape, dy, d_final, grads)
        return grads

    def _stacked(self, values) -> np.ndarray:
        """(n, B, H) from one (B, width) array per state, a narrower state zero-padded."""
        if not self.sizes:
            return np.stack(values)
        stacked = np.zeros((len(values), values[0].shape[0], self.hidden_size), self.dtype)
        for k, value in enumerate(values):
            stacked[k, :, : value.shape[1]] = value
        return stacked

    def _gradients(
        self, tape: Tape, dy: np.ndarray, d_final: np.ndarray, d_steps: np.ndarray | None = None
    ) -> Gradients:
        """The backward kernel on checked arguments: a consistent tape, dy (T, B, H) and d_final
        (n, B, H) C-contiguous of the cell's dtype; d_steps (n, T, B, H) likewise or None: dL/d(every
        state after every step), from elsewhere than the later steps (derive.torch's all_states)."""
        T, B = tape.x.shape[:2]
        new = np.empty_like if T and B else np.zeros_like  # the kernel overwrites dx and the dparams
        dx = new(tape.x)
        dparams = {name: new(value) for name, value in tape.params.items()}
        dstate0 = np.empty_like(d_final)
        if T and B:
            arrays = (
                tape.x,
                *tape.params.values(),
                *self._constant_args(tape.constants),
                tape.states,
                tape.saved,
                dy,
                d_final,
                d_steps,
                dx,
                *dparams.values(),
                dstate0,
            )
            kernel_call.call(type(self)._backward, arrays, work=T * B * self._parameter_count)
        else:
            dstate0[...] = d_final
        return Gradients(dx, dparams, tuple(dstate0[k, :, :width] for k, width in enumerate(self.state_widths)))

    def jacobian(self, tape: Tape, *, check_finite: bool = False) -> np.ndarray:
        """J (T, B, S, S), S = the sum of the states' sizes (H each, unless the cell declares
        others): J[t] = ∂s_t/∂s_{t-1}, states stacked in order."""
        self._check_tape(tape)
        T, B = tape.x.shape[:2]
        S = sum(self.state_widths)
        J = np.zeros((T, B, S, S), self.dtype)
        if T and B:
            arrays = (tape.x, *tape.params.values(), *self._constant_args(tape.constants), tape.states, tape.saved, J)
            kernel_call.call(type(self)._jacobian, arrays, work=J.size)
        if check_finite:
            finite.check_jacobian(tape, J)
        return J

    def _check_tape(self, tape) -> None:
        """The tape is this cell's, internally consistent, and its parameters are still the
        cell's (PyTorch raises likewise when a tensor saved for backward changed in place)."""
        if not isinstance(tape, Tape):
            raise TypeError(f"tape must be the Tape returned by forward, got {type(tape).__name__}")
        if tape.cell is not self:
            raise ValueError(f"tape was recorded by another cell ({tape.cell!r}), not by this {self!r}")
        T, B = tape.x.shape[:2] if tape.x.ndim == 3 else (-1, -1)
        expected = {
            "x": (T, B, self.input_size),
            "states": (len(self.state_names), T + 1, B, self.hidden_size),
            "saved": (T, len(self.saved_names), B, self.tape_width(self.input_size, self.hidden_size)),
            **{f"params[{name!r}]": shape for name, shape in self.param_shapes().items()},
        }
        arrays = {"x": tape.x, "states": tape.states, "saved": tape.saved}
        arrays.update({f"params[{name!r}]": value for name, value in tape.params.items()})
        for name, shape in expected.items():
            value = arrays.get(name)
            if not (
                isinstance(value, np.ndarray)
                and value.shape == shape
                and value.dtype == self.dtype
                and value.flags.c_contiguous
            ):
                raise ValueError(
                    f"tape is inconsistent: tape.{name} must be a C-contiguous {self.dtype} array of shape {shape}, got {_describe(value)}"
                )
        if list(tape.params) != list(self.param_shapes()):
            raise ValueError(
                f"tape is inconsistent: tape.params must hold {list(self.param_shapes())}, got {list(tape.params)}"
            )
        if tape.constants != self.constant_values:
            raise ValueError(
                f"constants changed after the forward that recorded this tape ({tape.constants} then, "
                f"{self.constant_values} now); its gradients would belong to other values: run forward again"
            )
        for name, value in self._live_params().items():
            if not held.same_bits(value, tape.params[name]):
                raise ValueError(
                    f"parameter {name!r} changed (in place or replaced) after the forward that recorded this tape; "
                    "its gradients would belong to other values: run forward again"
                )


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        layout = "C-contiguous" if value.flags.c_contiguous else "non-contiguous"
        return f"a {layout} {value.dtype} array of shape {value.shape}"
    return type(value).__name__
