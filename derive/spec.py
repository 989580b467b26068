"""The cell specification language.

A cell is a handful of per-unit equations. Matrix-vector products appear as explicit linear
terms: `cell.weight("W_hh", h, gates="ifgo")` declares a (4H, H) matrix acting on h and returns
one scalar symbol per gate block, the j-th unit of (W_hh h) in that block. Everything else
(biases, per-unit weights, states) is a scalar symbol for unit j, so the update equations read
as they are written in papers::

    cell = Cell("rnn", class_name="RNN")
    x = cell.input()
    h = cell.state("h")
    W_ih = cell.weight("W_ih", x, torch="weight_ih_l0")
    ...
    cell.update(h, tanh(W_ih + b_ih + W_hh + b_hh))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from derive.activations import canonical, sqrt

INITS = ("uniform", "zeros", "ones")


@dataclass(frozen=True)
class InputVector:
    """The cell input x_t, of size I (input_size): the operand of a weight (`cell.weight("W_ih", x)`)
    and, per unit, a value of size I in equations (`cell.let("x1", 2 * sigmoid(Q) * x, size=x.size)`)."""

    name: str

    @property
    def size(self) -> str:
        """The input's own size, "I" (`input_size`): values of this size need no `cell.size`."""
        return "I"

    @property
    def symbol(self) -> sp.Symbol:
        """Unit j of x_t, as equations use it."""
        return _symbol(self.name)

    def _sympy_(self):
        return self.symbol


def _on_symbol(operator: str):
    def method(self, *args):
        return getattr(self.symbol, operator)(*args)

    return method


for _operator in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "pow", "rpow", "neg"):
    setattr(InputVector, f"__{_operator}__", _on_symbol(f"__{_operator}__"))


@dataclass
class Param:
    """A learnable parameter: a matrix acting on one vector, or a per-unit vector.

    Both are stacked over gate blocks in the given order, PyTorch style: a matrix with
    gates "ifgo" acting on h has shape (4H, H), a vector with those gates has shape (4H,).
    """

    name: str
    kind: str  # "matrix" or "vector"
    gates: tuple[str, ...] | None
    symbols: tuple[sp.Symbol, ...]  # one per gate block
    operand: str | None = None  # matrices: name of the vector they act on
    torch_name: str | None = None  # key in a PyTorch state_dict, if any
    init: str | tuple[float, float] = "uniform"
    size: str = "H"  # the size of each gate block (a matrix's rows per block): "H" or a `Cell.size`

    @property
    def blocks(self) -> int:
        return len(self.symbols)


class Gates:
    """Per-gate scalar symbols of a gated parameter: `W_ih["f"]`, or unpack in gate order."""

    def __init__(self, param: Param):
        self._param = param
        self._by_gate = dict(zip(param.gates, param.symbols))

    def __getitem__(self, gate: str) -> sp.Symbol:
        if gate not in self._by_gate:
            raise KeyError(f"parameter {self._param.name!r} has gates {list(self._param.gates)}, not {gate!r}")
        return self._by_gate[gate]

    def __iter__(self):
        return iter(self._param.symbols)

    def __len__(self):
        return len(self._param.symbols)


@dataclass
class State:
    """A recurrent state vector: its value at t-1 (`prev`) and its update at t (`new`)."""

    name: str
    prev: sp.Symbol
    new: sp.Symbol | None = None
    size: str = "H"


@dataclass(frozen=True)
class Constant:
    """A named hyperparameter: one scalar for all units, `default` unless an instance sets it
    (`CoRNN(input_size, hidden_size, dt=0.1)`). Kernels take it as an argument at run time."""

    name: str
    default: float
    symbol: sp.Symbol


@dataclass
class Equation:
    """`symbol = expr`, per unit; `state` names the state an update equation defines."""

    symbol: sp.Symbol
    expr: sp.Expr
    state: str | None = None
    size: str = "H"


@dataclass(frozen=True)
class Reduction:
    """`symbol = mean or sum over the units of operand`, one value per batch row.

    `operand` is a per-unit let (the sum of the terms when the reduced value has several gate
    blocks); the reduced size is `blocks` * H."""

    symbol: sp.Symbol
    operand: sp.Symbol
    kind: str  # "mean" or "sum"
    blocks: int = 1


@dataclass
class Cell:
    """A recurrent cell declared equation by equation (see the module docstring)."""

    name: str
    class_name: str | None = None
    doc: str = ""
    x: InputVector | None = None
    states: list[State] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    equations: list[Equation] = field(default_factory=list)
    constants: list[Constant] = field(default_factory=list)
    reductions: list[Reduction] = field(default_factory=list)
    sizes: dict[str, str] = field(default_factory=dict)  # sizes other than H and I -> constructor argument
    torch_module: str | None = None  # torch.nn class computing the same function, if any
    torch_options: dict = field(default_factory=dict)  # its constructor options
    source: str | None = None  # name of the spec file, for headers and errors
    source_path: str | None = None  # its path, whose bytes are hashed into the header

    def __post_init__(self):
        if self.class_name is None:
            self.class_name = "".join(part.capitalize() for part in self.name.split("_"))

    # -- declarations -------------------------------------------------------------------
    def input(self, name: str = "x") -> InputVector:
        """Declare the input vector x_t, of size I (input_size): weights act on it, and equations may
        use it per unit in values of its size (`x.size`)."""
        if self.x is not None:
            raise ValueError(f"cell {self.name!r}: input() called twice; a cell has one input vector")
        self.x = InputVector(name)
        return self.x

    def size(self, name: str, argument: str) -> str:
        """Declare a size other than H (hidden_size) and I (input_size), e.g. a projection's
        `cell.size("P", "proj_size")`: the cell's constructor takes it as keyword `argument`."""
        self.sizes[name] = argument
        return name

    def state(self, name: str, size: str = "H") -> sp.Symbol:
        """Declare a state vector of `size` units; returns its value at t-1. The first state is the output."""
        prev = _symbol(name)
        self.states.append(State(name, prev, size=size))
        return prev

    def weight(self, name, operand, gates=None, torch=None, init="uniform", size="H"):
        """A matrix acting on `operand` (the input, a state or a `let` value), with `size` rows
        per gate block (the size of its result; its columns are the size of `operand`).

        Returns the symbol of unit j of the product (one per gate, as `Gates`, if gated).
        """
        operand_name = operand.name if isinstance(operand, (InputVector, sp.Symbol)) else None
        if operand_name is None:
            raise TypeError(
                f"cell {self.name!r}: weight {name!r} must act on the input, a state or a let "
                f"value, not {type(operand).__name__}"
            )
        return self._add_param(name, "matrix", gates, torch, init, operand=operand_name, size=size)

    def vector(self, name, gates=None, torch=None, init="uniform", size="H"):
        """A per-unit parameter vector (a bias, a peephole or a recurrent weight) of `size` units per gate."""
        return self._add_param(name, "vector", gates, torch, init, size=size)

    bias = vector

    def constant(self, name: str, default: float) -> sp.Symbol:
        """A named scalar hyperparameter with a default, set per instance without regenerating:
        `dt = cell.constant("dt", 0.042)`; use the returned symbol in equations."""
        constant = Constant(name, default, _symbol(name))
        self.constants.append(constant)
        return constant.symbol

    def mean(self, value, name: str | None = None) -> sp.Symbol:
        """The mean over the units of a per-unit expression, one value per batch row, usable in
        any later equation: `mu = cell.mean(a)`. `value` may also be a gated term (`cell.mean(W_hh)`)
        or a sequence of per-unit expressions: the mean is then over all their units (blocks * H)."""
        return self._reduce("mean", value, name)

    def sum(self, value, name: str | None = None) -> sp.Symbol:
        """The sum over the units of `value`, per batch row (see `mean`)."""
        return self._reduce("sum", value, name)

    def _reduce(self, kind: str, value, name: str | None) -> sp.Symbol:
        terms = list(value.values()) if isinstance(value, dict) else value
        terms = list(terms) if isinstance(terms, (Gates, list, tuple)) else [terms]
        for term in terms:
            if isinstance(term, InputVector):
                raise TypeError(
                    f"cell {self.name!r}: cell.{kind}() of the input {term.name!r}: reductions run over values of "
                    f"size H, the input has size I (input_size); reduce its product with a weight, e.g. "
                    f"cell.{kind}(cell.weight('W_ih', {term.name}))"
                )
        name = name or f"{kind}{len(self.reductions) + 1}"
        total = canonical(sp.sympify(sp.Add(*terms)))
        lets = {eq.symbol for eq in self.equations if eq.state is None}
        if len(terms) == 1 and total in lets:
            operand = total
        else:  # a let of the size of what it sums (validate refuses sizes other than H, for now)
            sizes = self.symbol_sizes()
            size = next((sizes[s] for s in sorted(total.free_symbols, key=str) if s in sizes), "H")
            operand = self.let(f"{name}_of", total, size=size)
        reduction = Reduction(_symbol(name), operand, kind, len(terms))
        self.reductions.append(reduction)
        return reduction.symbol

    def layer_norm(self, name: str, value, gamma, beta, eps: float = 1e-5):
        """LayerNorm over all units of `value` (a per-unit expression or a gated term, as for `mean`):
        (v − mean v) / sqrt(var v + eps) ⊙ gamma + beta, with the biased variance; `gamma` and `beta`
        are per-unit vectors with the same gate blocks as `value`. Declares the reductions
        `<name>_mean`, `<name>_var` and the let `<name>_std`; returns the normalised value (per gate,
        as a dict, for a gated value)."""
        gates = value._param.gates if isinstance(value, Gates) else None
        terms = list(value) if gates else [value]
        if not gates and not (isinstance(value, sp.Symbol) and value in {eq.symbol for eq in self.equations}):
            terms = [self.let(f"{name}_in", value)]
        gammas, betas = (list(p) if gates else [p] for p in (gamma, beta))
        mu = self.mean(terms, f"{name}_mean")
        var = self.mean([(t - mu) ** 2 for t in terms], f"{name}_var")
        std = self.let(f"{name}_std", sqrt(var + eps))
        normalised = [(t - mu) / std * g + b for t, g, b in zip(terms, gammas, betas)]
        return dict(zip(gates, normalised)) if gates else normalised[0]

    def preactivations(self, x, h, gates=None):
        """PyTorch's gate inputs W_ih x + b_ih + W_hh h + b_hh, per gate.

        Declares W_ih, W_hh, b_ih, b_hh with PyTorch's layer-0 names and returns the expression
        (a dict gate -> expression if `gates` is given, in that stacking order).
        """
        W_ih = self.weight("W_ih", x, gates, torch="weight_ih_l0")
        W_hh = self.weight("W_hh", h, gates, torch="weight_hh_l0")
        b_ih = self.bias("b_ih", gates, torch="bias_ih_l0")
        b_hh = self.bias("b_hh", gates, torch="bias_hh_l0")
        if gates is None:
            return W_ih + b_ih + W_hh + b_hh
        return {g: W_ih[g] + b_ih[g] + W_hh[g] + b_hh[g] for g in gates}

    def let(self, name: str, expr, size: str = "H") -> sp.Symbol:
        """Name an intermediate per-unit value of `size` units, e.g. a gate (`size=x.size`, "I": a value
        in the input's own space, such as the input gated per unit). (`let` and `update`
        accept SymPy's spellings of the functions, sp.exp or sp.Max: see activations.canonical.)"""
        symbol = _symbol(name)
        self.equations.append(Equation(symbol, canonical(sp.sympify(expr)), size=size))
        return symbol

    def update(self, state: sp.Symbol, expr) -> sp.Symbol:
        """Give the new value of a state; returns the symbol of the new value."""
        match = [s for s in self.states if s.prev == state]
        if not match:
            raise ValueError(f"cell {self.name!r}: update() of {state}, which is not a state")
        symbol = _symbol(f"{match[0].name}_new")
        match[0].new = symbol
        self.equations.append(Equation(symbol, canonical(sp.sympify(expr)), state=match[0].name, size=match[0].size))
        return symbol

    # -- queries --------------------------------------------------------------------------
    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def symbol_sizes(self) -> dict[sp.Symbol, str]:
        """The size of every per-unit symbol: the input, previous states, equations and parameters."""
        sizes = {s.prev: s.size for s in self.states} | {e.symbol: e.size for e in self.equations}
        sizes |= {self.x.symbol: self.x.size} if self.x is not None else {}
        return sizes | {symbol: q.size for q in self.params for symbol in q.symbols}

    def size_of(self, name: str) -> str:
        """The size of the vector `name`: "I" for the input, else of its state or let ("H" if unknown)."""
        if self.x is not None and name == self.x.name:
            return "I"
        sizes = {s.name: s.size for s in self.states} | {e.symbol.name: e.size for e in self.equations}
        return sizes.get(name, "H")

    @property
    def has_sizes(self) -> bool:
        """Whether any value has a size other than H (kernels then loop over each size)."""
        return bool(self.sizes)

    def _add_param(self, name, kind, gates, torch, init, operand=None, size="H"):
        gates = tuple(gates) if gates is not None else None
        if gates is None:
            names = [f"{name}_{operand}" if operand else name]
        else:
            names = [f"{name}_{operand}_{g}" if operand else f"{name}_{g}" for g in gates]
        param = Param(
            name,
            kind,
            gates,
            tuple(_symbol(n) for n in names),
            operand=operand,
            torch_name=torch,
            init=init,
            size=size,
        )
        self.params.append(param)
        return param.symbols[0] if gates is None else Gates(param)


def _symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def param_columns(param: Param, cell: Cell) -> str | None:
    """The size of a matrix's operand ("I" for the input, "H", or a declared size), None for a vector."""
    if param.kind == "vector":
        return None
    return cell.size_of(param.operand)


def shape_text(param: Param, cell: Cell) -> str:
    """The parameter's shape in sizes: `(4*H, I)`, `(H,)`, `(P, H)`."""
    rows = param.size if param.blocks == 1 else f"{param.blocks}*{param.size}"
    columns = param_columns(param, cell)
    return f"({rows}, {columns})" if columns else f"({rows},)"
