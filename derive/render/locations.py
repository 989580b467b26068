"""Where each value of a step lives in a kernel, and the index arithmetic of stacked gates.

A previous state is read from `states[k, step]`, a new state from `states[k, step + 1]`, any
other value backward needs from the tape `saved[step, k]`; a per-unit parameter is an element
of the parameter (through a view with a gate axis if it is stacked); the input, used per unit,
is `x[step, row, unit]`. The tape's rows are H wide, or max(H, I) when it keeps values of size I:
a value narrower than its array lives in the first columns of its rows. The three emitters
(forward.py, backward.py, jacobian.py) share these answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from derive import kernel_names as names
from derive.derivation import UNITS, Derivation
from derive.spec import Param


def offset(gate: int, index: str = "unit", size: str = "H") -> str:
    """Index of `index` within gate block `gate` of a stacked (G*H, ...) parameter (blocks of `size`)."""
    return index if gate == 0 else f"{size} + {index}" if gate == 1 else f"{gate} * {size} + {index}"


def unit_of(param: Param, gate: int) -> str:
    """Index of unit `unit` of gate block `gate` in an array with a gate axis (if `param` is gated).

    Gate blocks get their own axis (shape (..., G, H)) so every index but `unit` is constant in
    the loop over units: Numba's negative-index check then folds away and loads stay contiguous
    (an index such as `2 * H + unit` would make LLVM gather)."""
    return f"{gate}, unit" if param.blocks > 1 else "unit"


def gated(name: str, param: Param) -> str:
    """Name of the view with a gate axis of array `name` (shaped like `param`'s rows)."""
    return names.gate_view(name) if param.blocks > 1 else name


def gate_axes(param: Param) -> str:
    """Trailing shape of an array with one value per unit of each gate of `param`."""
    return f"{param.blocks}, {param.size}" if param.blocks > 1 else param.size


def span(gate: int, size: str = "H") -> str:
    """Slice of gate block `gate` in a stacked (G*H, ...) dimension: `H:2 * H`."""

    def edge(g: int) -> str:
        return "0" if g == 0 else size if g == 1 else f"{g} * {size}"

    return f"{edge(gate)}:{edge(gate + 1)}"


def projection_buffer(param: Param) -> str:
    """Name of the array holding W v for every gate: `W_hh_h`."""
    return f"{param.name}_{param.operand}"


def rows_of(buffer: str, param: Param, steps: str) -> str:
    """A per-chunk buffer of `param`'s rows, as a (steps * B, G*H) matrix."""
    return f"{buffer}[:{steps}].reshape({steps} * B, {param.name}.shape[0])"


@dataclass
class Loop:
    """A pointwise loop over the `size` units of the values it computes."""

    size: str
    body: list[str]


@dataclass
class Stage:
    """One level of a time step: products before the pointwise loops (after a comment naming the
    level, if the cell has several), one loop per size of its values, products after."""

    before: list[str] = field(default_factory=list)
    loops: list[Loop] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


def by_size(items: list, size_of) -> dict[str, list]:
    """`items` grouped by size, in order of first appearance (one pointwise loop each)."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(size_of(item), []).append(item)
    return groups


class FirstWrites:
    """Within a step, the first write to a buffer assigns (`=`, gemm beta 0) and later writes add,
    so no buffer is zeroed first; `never` names the buffers nothing wrote (these are zeroed)."""

    def __init__(self):
        self.written: set = set()

    def op(self, key, default: str) -> str:
        """`=` for the first write to `key` (None: not a per-step buffer), else `default`."""
        if key is None or key in self.written:
            return default
        self.written.add(key)
        return "="

    def beta(self, key) -> str:
        return "0.0" if self.op(key, "+=") == "=" else "1.0"

    def never(self, key) -> bool:
        return key not in self.written


class Locations:
    """The places of one cell's values, shared by its three kernels."""

    def __init__(self, d: Derivation):
        self.d = d
        self.cell = d.cell
        self.saved_index = {s: k for k, s in enumerate(d.saved)}
        self.state_index = {s.prev: k for k, s in enumerate(self.cell.states)}
        self.new_state_index = {n.symbol: k for k, n in enumerate(d.new_state_nodes())}
        self.state_sizes = [s.size for s in self.cell.states]
        self.params_inline = {  # per-unit parameters, read in place; constants are kernel arguments
            s: f"{gated(leaf.param.name, leaf.param)}[{unit_of(leaf.param, leaf.index)}]"
            for s, leaf in d.param_leaves().items()
        } | {c.symbol: c.name for c in self.cell.constants}
        self.params_inline[UNITS] = "real(H)"  # the size of a mean, in the kernel's float type
        self.params_inline[self.cell.x.symbol] = "x[step, row, unit]"  # every kernel has x and loops over steps
        # each saved value's size; with one of size I the tape's rows are max(H, I) wide (RecurrentCell.tape_width)
        self.saved_sizes = [d.size_of(s) for s in d.saved]
        self.wide_tape = "I" in self.saved_sizes

    def state_offset(self, k: int, index: str = "unit") -> str:
        """Index of `index` within state k of the stacked state vector (rows and columns of J)."""
        earlier = self.state_sizes[:k]
        if len(set(self.state_sizes)) == 1:
            return offset(k, index, self.state_sizes[0])
        return " + ".join(earlier + [index])

    def state_span(self, k: int) -> str:
        """Slice of state k in the stacked state vector: `P:P + H`."""
        sizes = self.state_sizes
        if len(set(sizes)) == 1:
            return span(k, sizes[0])
        return f"{' + '.join(sizes[:k]) or '0'}:{' + '.join(sizes[: k + 1])}"

    def size_lines(self) -> list[str]:
        """Each declared size, read from the shape of a parameter of that size (a kernel line)."""
        lines = []
        for size, argument in self.cell.sizes.items():
            p = next((q for q in self.cell.params if q.size == size), None)
            if p is not None:
                rows = f"{p.name}.shape[0]" + (f" // {p.blocks}" if p.blocks > 1 else "")
                lines.append(f"{size} = {rows}  # {argument}")
                continue
            p = next(q for q in self.d.matrices if self.cell.size_of(q.operand) == size)
            lines.append(f"{size} = {p.name}.shape[1]  # {argument}")
        return lines

    def columns(self, name: str) -> str:
        """`, :, :P` for a vector narrower than its array's rows, kept in their first P columns: the
        states' rows are H wide, the tape's H or max(H, I) (`wide_tape`)."""
        size = self.cell.size_of(name)
        full = size == "H" and not (self.wide_tape and self._place(name)[0] == "saved")
        return "" if full else f", :, :{size}"

    def gate_views(self, used: set[sp.Symbol], prefix: str = "") -> list[str]:
        """Views with a gate axis of the stacked per-unit parameters whose symbols are in `used`
        (with prefix `d_`: of their gradients)."""
        views = []
        for p in self.cell.params:
            if p.kind == "vector" and p.blocks > 1 and used & set(p.symbols):
                views.append(f"{gated(prefix + p.name, p)} = {prefix}{p.name}.reshape({gate_axes(p)})")
        return views

    def _place(self, name: str) -> tuple[str, int, bool]:
        """Where vector `name` (a previous state or a node) lives: ("states", k, is the new value)
        or ("saved", k, False)."""
        for s, k in self.state_index.items():
            if s.name == name:
                return "states", k, False
        for s, k in self.new_state_index.items():
            if s.name == name:
                return "states", k, True
        return "saved", next(k for s, k in self.saved_index.items() if s.name == name), False

    def vector_at(self, name: str, step: str, tape_step: str | None = None) -> str:
        """Code for the (B, H) array of vector `name` at `step` (a tape value at `tape_step` if given:
        forward's `tape_step` is the step, or 0 when no tape is kept)."""
        array, k, new = self._place(name)
        cols = self.columns(name)
        return (
            f"states[{k}, {step}{' + 1' if new else ''}{cols}]"
            if array == "states"
            else f"saved[{tape_step or step}, {k}{cols}]"
        )

    def sequence_of(self, name: str) -> str:
        """Code for the (steps, B, H) values of vector `name` over the steps of a chunk."""
        array, k, new = self._place(name)
        cols = self.columns(name)
        if array == "states":
            steps = f"states[{k}, {'start + 1:stop + 1' if new else 'start:stop'}{cols}]"
            return f"np.ascontiguousarray({steps})" if cols else steps
        return f"np.ascontiguousarray(saved[start:stop, {k}{cols}])"

    def value_location(self, symbol: sp.Symbol, tape_step: str = "step") -> str:
        """Where a forward value of this step is kept (a tape value: at `tape_step`)."""
        if symbol in self.state_index:
            return f"states[{self.state_index[symbol]}, step, row, unit]"
        if symbol in self.new_state_index:
            return f"states[{self.new_state_index[symbol]}, step + 1, row, unit]"
        return f"saved[{tape_step}, {self.saved_index[symbol]}, row, unit]"

    def loads(
        self, symbols: set[sp.Symbol], extra: dict[sp.Symbol, str] | None = None, tape_step: str = "step"
    ) -> list[str]:
        """`name = <where it lives>` for each symbol, by name (`extra`: other places).

        By name, not in gate order: the order of the loads is the order of the instructions LLVM
        sees, and with `fastmath={"contract"}` it decides which products fuse into FMAs from it
        (gate order changed one Jacobian entry of lstm_peephole in the last bit)."""
        extra = extra or {}
        return [
            f"{s.name} = {extra[s] if s in extra else self.value_location(s, tape_step)}"
            for s in sorted(symbols, key=lambda s: s.name)
        ]
