"""From a cell spec to its forward, backward (BPTT) and Jacobian equations.

The per-unit equations become a graph of *nodes* (one per `let`, per state update and per
activation nested inside an expression). Its *leaves* are the previous states, the input x_t
(per unit, in values of its size I), the per-unit parameters and the projections (W v)_g, each of
which ends the pointwise graph at a matrix product. A projection of a value computed in this step
(e.g. W_hn (r*h)) needs that value first, so nodes get a *level*: the number of matrix products on
their longest path from the step's inputs. Kernels compute level 0, then its projections, then
level 1, and so on. A reduction (`cell.mean`, `cell.sum`: one value per batch row) is a leaf one
level after the node it reduces, like a projection: a level ends where a value of all units is
needed. Named constants (`cell.constant`) are neither nodes nor leaves: scalars the kernels take
as arguments, held fixed by every derivative (no gradient is computed for them).

Backward is symbolic reverse mode over the nodes: the adjoint of a node is the sum, over the
nodes that use it, of their adjoint times the local derivative, where an activation's local
derivative is written from its stored output or its arguments (`activations.py`); whatever a
rule reads becomes part of the saved set, decided on the SymPy expressions (`_saved`). The Jacobian ∂s_t/∂s_{t-1} is, per
state, a diagonal direct path plus diag(coefficient)·W_g·(∂operand/∂s_{t-1}) for each projection,
plus coefficient·scale·1ᵀ·(∂operand/∂s_{t-1}), rank one, for each reduction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from derive.activations import ACTIVATIONS, Activation
from derive.spec import Cell, Param, Reduction
from derive.validate import declared_names, validate


@dataclass
class Node:
    """`symbol = activation(*args)` or `symbol = expr`, evaluated per unit."""

    symbol: sp.Symbol
    expr: sp.Expr  # for activation nodes: activation(*args)
    activation: type | None
    args: tuple[sp.Expr, ...]  # the activation's arguments (empty for other nodes)
    level: int
    state: str | None = None  # the state this node updates
    auto: bool = False  # extracted from a nested activation call
    size: str = "H"  # its number of units: "H" or a size the cell declares

    @property
    def dependencies(self) -> set[sp.Symbol]:
        return self.expr.free_symbols

    def partials(self) -> tuple[sp.Expr, ...]:
        """∂symbol/∂args[k], written with the stored output and the arguments (activations.py)."""
        return ACTIVATIONS[self.activation].partials(self.symbol, self.args)

    def local_derivative(self, u: sp.Symbol) -> sp.Expr:
        if self.activation:
            return sp.Add(*[p * sp.diff(arg, u) for p, arg in zip(self.partials(), self.args)])
        return sp.diff(self.expr, u)


@dataclass(frozen=True)
class Leaf:
    """A symbol that is an input of the pointwise graph."""

    kind: str  # "state" (value at t-1), "input" (x_t per unit), "projection", "param" (per unit) or "reduction"
    index: int  # state index, or gate block of the parameter
    param: Param | None = None
    level: int = 0  # projections and reductions: the level at which they are available
    reduction: Reduction | None = None  # a per-row mean or sum over the units of a node


@dataclass
class Assignment:
    """`target op expr` in a kernel block; op is "=" or "+="."""

    target: sp.Symbol
    expr: sp.Expr
    op: str = "="


@dataclass
class JacobianTerm:
    """One term of a row of ∂target/∂s_{t-1}.

    kind "direct": coefficient on the diagonal of state block `state`;
    kind "projection": coefficient times row g of `param` times ∂operand/∂s_{t-1};
    kind "reduction": coefficient times ∂(the per-row reduction)/∂s_{t-1}, a row the same for
    every unit (rank one: coefficient·scale·1ᵀ·∂operand/∂s_{t-1}).
    """

    kind: str
    coefficient: sp.Expr
    state: int | None = None
    param: Param | None = None
    gate: int | None = None
    reduction: Reduction | None = None


@dataclass
class Derivation:
    cell: Cell
    nodes: list[Node]
    leaves: dict[sp.Symbol, Leaf]
    adjoint: dict[sp.Symbol, sp.Symbol]  # symbol -> its adjoint symbol d_<name>
    incoming: dict[str, sp.Symbol]  # state name -> adjoint flowing in from t+1 and y_t
    backward: dict[int, list[Assignment]]  # level -> adjoint assignments, in order
    jacobian: dict[sp.Symbol, list[JacobianTerm]]  # operand nodes, then new states
    saved: list[sp.Symbol] = field(default_factory=list)  # per-step values kept for backward

    @property
    def levels(self) -> int:
        return 1 + max([n.level for n in self.nodes] + [0])

    def node(self, symbol: sp.Symbol) -> Node | None:
        return self._by_symbol.get(symbol)

    def __post_init__(self):
        self._by_symbol = {n.symbol: n for n in self.nodes}

    def accumulator(self, symbol: sp.Symbol) -> sp.Symbol:
        """Buffer of the adjoint of `symbol` that arrives from later levels."""
        return sp.Symbol(f"d_{symbol.name}_acc", real=True)

    def accumulators(self) -> list[sp.Symbol]:
        """The `d_<node>_acc` buffers, by name: adjoints arriving from later levels and products."""
        found = {
            a.target
            for b in self.backward.values()
            for a in b
            if a.op == "+=" and a.target not in self.adjoint.values()
        }
        return sorted(found | {self.accumulator(n.symbol) for n in self.operand_nodes()}, key=lambda s: s.name)

    def preactivation(self, symbol: sp.Symbol, k: int = 0) -> sp.Symbol:
        """Adjoint of argument k of an activation node: the gate pre-activation gradient
        (`d_m_pre`; `d_m_pre1`, `d_m_pre2` for the arguments of max(a, b))."""
        several = self.node(symbol).activation.nargs.args[0] > 1
        return sp.Symbol(f"d_{symbol.name}_pre{k + 1 if several else ''}", real=True)

    @property
    def matrices(self) -> list[Param]:
        """The weight matrices, in spec order."""
        return [p for p in self.cell.params if p.kind == "matrix"]

    def on_input(self, param: Param) -> bool:
        """Whether the matrix `param` acts on the input x (its product runs per chunk, not per step)."""
        return param.operand == self.cell.x.name

    def recurrent(self, level: int | None = None) -> list[Param]:
        """Matrices acting on a value of the recurrence (not on x), whose products feed `level` if given."""
        return [
            p
            for p in self.matrices
            if not self.on_input(p) and (level is None or self.leaves[p.symbols[0]].level == level)
        ]

    def leaves_of(self, kind: str) -> dict[sp.Symbol, Leaf]:
        """The leaves of one kind ("state", "projection" or "param"), in order."""
        return {s: leaf for s, leaf in self.leaves.items() if leaf.kind == kind}

    def param_leaves(self) -> dict[sp.Symbol, Leaf]:
        """Per-unit parameters, one symbol per gate block."""
        return self.leaves_of("param")

    def operand_nodes(self) -> list[Node]:
        """Nodes that a matrix multiplies (their projections sit at a later level)."""
        names = {p.operand for p in self.cell.params if p.kind == "matrix"}
        return [n for n in self.nodes if n.symbol.name in names]

    def reductions(self, level: int | None = None) -> list[Reduction]:
        """The per-row reductions (`cell.mean`, `cell.sum`), available from `level` if given."""
        return [r for r in self.cell.reductions if level is None or self.leaves[r.symbol].level == level]

    def reduced_nodes(self) -> list[Node]:
        """Nodes that a reduction sums over the units."""
        operands = {r.operand for r in self.cell.reductions}
        return [n for n in self.nodes if n.symbol in operands]

    def size_of(self, symbol: sp.Symbol) -> str:
        """The size of a per-unit value: a node's, a previous state's, a parameter's rows per block."""
        if (node := self.node(symbol)) is not None:
            return node.size
        leaf = self.leaves.get(symbol)
        if leaf is not None and leaf.kind == "state":
            return self.cell.states[leaf.index].size
        if leaf is not None and leaf.kind == "reduction":  # per row, summed in loops of size H (validate)
            return "H"
        if leaf is not None and leaf.kind == "input":
            return self.cell.x.size
        return leaf.param.size if leaf is not None else "H"

    def new_state_nodes(self) -> list[Node]:
        by_state = {n.state: n for n in self.nodes if n.state}
        return [by_state[s.name] for s in self.cell.states]


def derive(cell: Cell) -> Derivation:
    """Derive forward nodes, backward assignments, Jacobian terms and the saved set.

    The spec is validated first (`validate.py`): SpecError lists what is wrong.
    """
    validate(cell)
    leaves = _leaves(cell)
    nodes = _nodes(cell, leaves)
    adjoint = {s: sp.Symbol(f"d_{s.name}", real=True) for s in [*leaves, *(n.symbol for n in nodes)]}
    incoming = {s.name: sp.Symbol(f"d_{s.name}_in", real=True) for s in cell.states}
    derivation = Derivation(cell, nodes, leaves, adjoint, incoming, {}, {})
    derivation.backward = _backward(derivation)
    derivation.jacobian = _jacobian(derivation)
    derivation.saved = _saved(derivation)
    return derivation


# -- forward ------------------------------------------------------------------------------
# The number of units H in expressions (the scale of a mean); kernels have it as `H`.
UNITS = sp.Symbol("H", positive=True, integer=True)


def reduction_scale(r: Reduction) -> sp.Expr:
    """∂r/∂(one unit of its operand): 1/(blocks·H) for a mean, 1 for a sum."""
    return 1 / (r.blocks * UNITS) if r.kind == "mean" else sp.S.One


def _leaves(cell: Cell) -> dict[sp.Symbol, Leaf]:
    leaves = {s.prev: Leaf("state", k) for k, s in enumerate(cell.states)}
    leaves[cell.x.symbol] = Leaf("input", 0)  # x_t per unit, in equations of size I
    for p in cell.params:
        kind = "projection" if p.kind == "matrix" else "param"
        leaves.update({sym: Leaf(kind, g, p) for g, sym in enumerate(p.symbols)})
    leaves.update({r.symbol: Leaf("reduction", 0, reduction=r) for r in cell.reductions})
    return leaves


def _nodes(cell: Cell, leaves: dict[sp.Symbol, Leaf]) -> list[Node]:
    """Flatten equations into nodes (nested activations become nodes) and assign levels."""
    nodes: list[Node] = []
    level: dict[sp.Symbol, int] = {}
    declared = {name for name, _, _ in declared_names(cell)}  # names a nested activation must not take
    constants = {c.symbol for c in cell.constants}  # kernel arguments, there from the start

    def level_of(symbol: sp.Symbol) -> int:
        if symbol in constants:
            return 0
        leaf = leaves.get(symbol)
        if leaf is None:
            return level[symbol]
        if leaf.kind == "reduction":
            leaves[symbol] = Leaf(leaf.kind, 0, level=level[leaf.reduction.operand] + 1, reduction=leaf.reduction)
            return leaves[symbol].level
        if leaf.kind == "projection":
            operand = leaf.param.operand
            node_levels = [lv + 1 for s, lv in level.items() if s.name == operand]
            leaf_level = node_levels[0] if node_levels else 0
            leaves[symbol] = Leaf(leaf.kind, leaf.index, leaf.param, leaf_level)
            return leaf_level
        return 0

    def add(symbol, expr, state=None, auto=False, size="H"):
        activation = type(expr) if isinstance(expr, Activation) else None
        args = expr.args if activation else ()
        level[symbol] = max([level_of(s) for s in expr.free_symbols] + [0])
        nodes.append(Node(symbol, expr, activation, args, level[symbol], state, auto, size))

    def lift(expr, owner: str, size: str):
        """Replace activation calls nested inside `expr` by nodes of their own."""

        def replace(call):
            inner = call.func(*[lift(arg, owner, size) for arg in call.args])
            arg = inner.args[0]
            base = arg.name if len(inner.args) == 1 and isinstance(arg, sp.Symbol) else owner
            name = f"{call.func.__name__}_{base}"
            taken = {n.symbol.name for n in nodes} | {s.name for s in leaves} | declared
            suffix = 2
            while name in taken:
                name, suffix = f"{call.func.__name__}_{base}{suffix}", suffix + 1
            symbol = sp.Symbol(name, real=True)
            add(symbol, inner, auto=True, size=size)
            return symbol

        return expr.replace(lambda e: isinstance(e, Activation), replace)

    for eq in cell.equations:
        expr = eq.expr
        if isinstance(expr, Activation):
            expr = expr.func(*[lift(arg, eq.symbol.name, eq.size) for arg in expr.args])
        else:
            expr = lift(expr, eq.symbol.name, eq.size)
        add(eq.symbol, expr, eq.state, size=eq.size)
    return nodes


# -- backward -----------------------------------------------------------------------------
def _consumers(nodes: list[Node]) -> dict[sp.Symbol, list[Node]]:
    consumers: dict[sp.Symbol, list[Node]] = {}
    for node in nodes:
        for u in sorted(node.dependencies, key=str):
            consumers.setdefault(u, []).append(node)
    return consumers


def _backward(d: Derivation) -> dict[int, list[Assignment]]:
    """Adjoint assignments per level: first `=` of each node in reverse topological order,
    then the `+=` accumulations into arrays.

    A node's adjoint sums its same-level consumers, its incoming gradient (new states) and
    `d_<node>_acc`, where consumers at later levels and matrix products with the node as
    operand accumulate. Leaves (previous states, parameters, projections) only accumulate.
    """
    consumers = _consumers(d.nodes)
    operands = {n.symbol for n in d.operand_nodes()}
    reduced_by: dict[sp.Symbol, list[Reduction]] = {}
    for r in d.cell.reductions:
        reduced_by.setdefault(r.operand, []).append(r)
    defines: dict[int, list[Assignment]] = {lv: [] for lv in range(d.levels)}
    accumulates: dict[int, list[Assignment]] = {lv: [] for lv in range(d.levels)}

    def contributions(symbol, level):
        users = [c for c in consumers.get(symbol, []) if c.level == level]
        return sp.Add(*[_through(d, c, symbol) for c in users])

    for node in reversed(d.nodes):
        later = [c for c in consumers.get(node.symbol, []) if c.level > node.level]
        expr = contributions(node.symbol, node.level)
        if node.state:
            expr = d.incoming[node.state] + expr
        for r in reduced_by.get(node.symbol, []):  # its reductions, complete at a later level
            expr += d.adjoint[r.symbol] * reduction_scale(r)
        if later or node.symbol in operands:
            expr = d.accumulator(node.symbol) + expr
        defines[node.level].append(Assignment(d.adjoint[node.symbol], expr))
        if node.activation:
            for k, partial in enumerate(node.partials()):
                defines[node.level].append(
                    Assignment(d.preactivation(node.symbol, k), d.adjoint[node.symbol] * partial)
                )
        for level in sorted({c.level for c in later}):
            accumulates[level].append(Assignment(d.accumulator(node.symbol), contributions(node.symbol, level), "+="))
    for leaf in d.leaves:
        for level in range(d.levels):
            expr = contributions(leaf, level)
            if expr != 0:
                accumulates[level].append(Assignment(d.adjoint[leaf], expr, "+="))
    return {lv: defines[lv] + accumulates[lv] for lv in range(d.levels)}


def _through(d: Derivation, consumer: Node, u: sp.Symbol) -> sp.Expr:
    """What `consumer` passes back to u: its adjoint (of the pre-activation, for activations)
    times the derivative of its expression (argument) with respect to u."""
    if consumer.activation:
        return sp.Add(*[d.preactivation(consumer.symbol, k) * sp.diff(arg, u) for k, arg in enumerate(consumer.args)])
    return d.adjoint[consumer.symbol] * sp.diff(consumer.expr, u)


# -- Jacobian -----------------------------------------------------------------------------
def total_derivatives(d: Derivation, target: Node, through: set[sp.Symbol] = frozenset()) -> dict[sp.Symbol, sp.Expr]:
    """∂target/∂leaf through all nodes of one step, projections held fixed.

    Nodes in `through` are held fixed too: the result then also has ∂target/∂node for each of
    them, and the paths through them are left for the caller to chain (`formulas.py` writes
    ∂h_t/∂h_{t-1} of an LSTM through ∂c_t/∂h_{t-1} this way).
    """
    consumers = _consumers(d.nodes)
    adj: dict[sp.Symbol, sp.Expr] = {target.symbol: sp.S.One}

    def total(u: sp.Symbol) -> sp.Expr:
        users = [c for c in consumers.get(u, []) if c.symbol in adj and c.symbol not in through]
        return sp.Add(*[adj[c.symbol] * c.local_derivative(u) for c in users])

    for node in reversed(d.nodes[: d.nodes.index(target)]):
        if (value := total(node.symbol)) != 0:
            adj[node.symbol] = value
    totals = {s: adj[s] for s in sorted(through, key=str) if s in adj}
    for leaf in d.leaves:
        if (value := total(leaf)) != 0:
            totals[leaf] = value
    return totals


def _jacobian(d: Derivation) -> dict[sp.Symbol, list[JacobianTerm]]:
    """Rows of ∂v/∂s_{t-1} for each node v a matrix acts on or a reduction sums (if not zero), then
    for each new state."""
    rows = {}
    targets = {n.symbol for n in d.operand_nodes() + d.reduced_nodes()}
    for target in [n for n in d.nodes if n.symbol in targets] + d.new_state_nodes():
        terms = []
        for leaf_symbol, coefficient in total_derivatives(d, target).items():
            leaf = d.leaves[leaf_symbol]
            if leaf.kind == "state":
                terms.append(JacobianTerm("direct", coefficient, state=leaf.index))
            elif leaf.kind == "projection" and leaf.param.operand != d.cell.x.name:
                terms.append(JacobianTerm("projection", coefficient, param=leaf.param, gate=leaf.index))
            elif leaf.kind == "reduction" and rows.get(leaf.reduction.operand):  # else it is constant in s_{t-1}
                terms.append(JacobianTerm("reduction", coefficient, reduction=leaf.reduction))
        rows[target.symbol] = terms
    operands = {n.symbol for n in d.operand_nodes() + d.new_state_nodes()}
    return {target: terms for target, terms in rows.items() if terms or target in operands}


# -- what forward keeps ---------------------------------------------------------------------
def _saved(d: Derivation) -> list[sp.Symbol]:
    """Per-step values the backward and Jacobian kernels read, and values crossing levels.

    New states are kept in the state sequence, previous states and parameters are inputs, so
    only intermediate nodes and projections are saved, in a fixed order.
    """
    needed: set[sp.Symbol] = set()
    for block in d.backward.values():
        for a in block:
            needed |= a.expr.free_symbols
    for terms in d.jacobian.values():
        for term in terms:
            needed |= term.coefficient.free_symbols
    for node in d.nodes:
        needed |= {s for s in node.dependencies if (n := d.node(s)) is not None and n.level < node.level}
    needed |= {n.symbol for n in d.operand_nodes()}
    keep = [n.symbol for n in d.nodes if n.symbol in needed and not n.state]
    keep += [s for s, leaf in d.leaves.items() if leaf.kind in ("projection", "reduction") and s in needed]
    return keep
