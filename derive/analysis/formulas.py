"""A cell's derived formulas as people write them: forward, backward (BPTT) and Jacobian.

`formulas(cell)` returns SymPy objects over display symbols (`notation.py`): the forward
equations, one step of backpropagation through time, and the Jacobian ∂s_t/∂s_{t-1} as a block
matrix over the states, each block simplified:

- a block is diag(direct path) + Σ diag(coefficient)·W[g] over the gate blocks of the recurrent
  matrices, e.g. ∂h_t/∂h_{t-1} = diag(1 − h_t²)·W_hh for the Elman RNN;
- a state computed from another state of the same step is written through that state's block,
  as by the chain rule: LSTM ∂h_t/∂h_{t-1} = diag(o_t ⊙ (1 − tanh(c_t)²))·∂c_t/∂h_{t-1} + …;
  a diagonal block of one term is multiplied in instead (∂h_t/∂c_{t-1} = diag(f_t ⊙ o_t ⊙ …));
- a matrix acting on a value of the same step (W_hn (r ⊙ h)) is diag(coefficient)·W·∂v_t/∂s_{t-1},
  and that inner Jacobian is listed after the blocks.

`text()`, `latex()` and `markdown()` render them; in Jupyter the object shows its LaTeX.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from derive.cells import builtin_cells
from derive.derivation import Derivation, derive, total_derivatives
from derive.spec import Cell, Param, Reduction, shape_text

from . import notation as nt

PARTS = ("forward", "backward", "jacobian")

LEGENDS = {
    "parameters": "Matrices and per-unit vectors stack their gate blocks in the order given, PyTorch style; "
    "W[g] is gate block g of W.",
    "constants": "One scalar each, the same for all units; the cell's constructor takes them as keyword arguments "
    "(their defaults below) and they can be set on an instance: the kernels read them at run time.",
    "forward": "per unit, for one step: x_t is the input, {previous} the state before the step; "
    "⊙ multiplies per unit; W[g] v is gate block g of W times v",
    "backward": "one step of backpropagation through time: δv = ∂L/∂v; {incoming} {arrive} from y_t and step t+1; "
    "δv^pre is the gradient at v's pre-activation; δ(W v) stacks its gate blocks; "
    "+= adds to what the step already has (parameters: summed over steps and batch rows)",
    "jacobian": "blocks over the states ({states}); diag(v) is the diagonal matrix of v, · the matrix product, "
    "I the identity",
}
# Added to the legend of a part for a cell with reductions (cell.mean, cell.sum).
REDUCTION_LEGENDS = {
    "forward": "; mean(v) and sum(v) run over the units, one value per batch row",
    "backward": "; sum(v) runs over the units: the adjoint of a mean or sum gathers every unit's part",
    "jacobian": "; 1ᵀ is the row of ones (1ᵀ·M sums the rows of M), so (1/H)·a·1ᵀ·M is a rank-one term",
}
TITLES = {"forward": "Forward", "backward": "Backward (BPTT)", "jacobian": "Jacobian ∂s_t/∂s_{t-1}"}


@dataclass(frozen=True)
class Formula:
    """`lhs op rhs` over display symbols; op is "=" or "+="."""

    lhs: sp.Expr
    rhs: sp.Expr
    op: str = "="
    notation: nt.Notation = field(repr=False, compare=False, default=None)

    def text(self) -> str:
        return f"{self.notation.to_text(self.lhs)} {self.op} {self.notation.to_text(self.rhs)}"

    def latex(self, align: str = "") -> str:
        op = "=" if self.op == "=" else "\\mathrel{+}="
        return f"{self.notation.to_latex(self.lhs)} {align}{op} {self.notation.to_latex(self.rhs)}"

    def _repr_latex_(self) -> str:
        return f"$\\displaystyle {self.latex()}$"


@dataclass(frozen=True)
class Path:
    """diag(coefficient)·[matrix]·[block]: one term of a Jacobian block (derivation symbols)."""

    coefficient: sp.Expr
    matrix: tuple[Param, str | None] | None = None  # (W, gate) the term goes through
    block: tuple[sp.Symbol, int] | None = None  # (node, state index): the Jacobian it continues with
    reduction: Reduction | None = None  # rank one, scale·coefficient·1ᵀ·block: through a mean or sum


@dataclass
class JacobianBlock:
    """∂of_t/∂s_{t-1} for state `wrt`: diag(direct) + Σ paths."""

    of: sp.Symbol  # a new state or an in-step operand (derivation symbol)
    wrt: int
    direct: sp.Expr = sp.S.Zero
    paths: list[Path] = field(default_factory=list)

    @property
    def is_zero(self) -> bool:
        return self.direct == 0 and not self.paths

    @property
    def is_diagonal(self) -> bool:
        return not self.paths


@dataclass
class CellFormulas:
    """Everything `show` prints for one cell, as SymPy objects."""

    cell: Cell
    derivation: Derivation
    notation: nt.Notation
    forward: list[Formula]
    backward: list[Formula]
    jacobian: sp.Matrix  # block (a, b) = ∂a_t/∂b_{t-1}, states in order
    blocks: list[Formula]  # the blocks of `jacobian`, row by row
    inner: list[Formula]  # Jacobians of in-step operands the blocks refer to
    parameters: list[dict[str, str]]  # name, shape, operand (text, LaTeX; "" for vectors), gates, torch

    def text(self, part: str = "all") -> str:
        return _text(self, _parts(part))

    def latex(self, part: str = "all") -> str:
        return _latex(self, _parts(part))

    def markdown(self, part: str = "all") -> str:
        return _markdown(self, _parts(part))

    def _repr_latex_(self) -> str:
        parts = ["\n".join(_aligned(self, part)) for part in PARTS]
        return "$$\\begin{gathered}\n" + " \\\\[1ex]\n".join(parts) + "\n\\end{gathered}$$"


def formulas(cell: Cell | str | Derivation) -> CellFormulas:
    """The formulas of a cell, given as a spec, a built-in cell name or its derivation."""
    if isinstance(cell, str):
        by_name = {c.name: c for c in builtin_cells()}
        if cell not in by_name:
            raise ValueError(f"unknown cell {cell!r}; built-in cells: {', '.join(by_name)}")
        cell = by_name[cell]
    if not isinstance(cell, (Cell, Derivation)):
        raise TypeError(
            f"cell must be a derive.spec.Cell, a built-in cell name or a Derivation, got {type(cell).__name__}"
        )
    d = cell if isinstance(cell, Derivation) else derive(cell)
    cell = d.cell
    n = nt.notation(d)
    matrix, blocks, inner = _jacobian(d, n)
    return CellFormulas(cell, d, n, _forward(d, n), _backward(d, n), matrix, blocks, inner, _parameters(d, n))


def _parts(part: str) -> tuple[str, ...]:
    if part == "all":
        return PARTS
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)} or all, got {part!r}")
    return (part,)


# -- forward --------------------------------------------------------------------------------
def _forward(d: Derivation, n: nt.Notation) -> list[Formula]:
    lines = []
    for node in d.nodes:
        if not node.auto:
            lines.append(Formula(n(node.symbol), n(node.expr), notation=n))
        for r in d.cell.reductions:
            if r.operand == node.symbol:
                lines.append(Formula(n(r.symbol), _reduction(n, r), notation=n))
    return lines


def _reduction(n: nt.Notation, r: Reduction) -> sp.Expr:
    """mean(v_t) or sum(v_t) over the units; the mean of a value of 4 gate blocks (v the sum of
    its blocks) as (1/4)·mean(v_t)."""
    scale = sp.Rational(1, r.blocks) if r.kind == "mean" else 1
    return scale * sp.Function(r.kind)(n(r.operand))


def _parameters(d: Derivation, n: nt.Notation) -> list[dict[str, str]]:
    rows = []
    for p in d.cell.params:
        text, latex = n.vectors[p.operand] if p.kind == "matrix" else ("", "")
        gates = ", ".join(p.gates) if p.gates else ""
        rows.append(
            {
                "name": p.name,
                "shape": shape_text(p, d.cell),
                "operand": text,
                "operand_latex": latex,
                "gates": gates,
                "torch": p.torch_name or "",
            }
        )
    return rows


# -- backward -------------------------------------------------------------------------------
def _backward(d: Derivation, n: nt.Notation) -> list[Formula]:
    """One BPTT step in the order backward runs: per level, the per-unit adjoints, then the
    products with Wᵀ; after the loop the input gradient and the weight gradients.

    Accumulators (`d_v_acc`, the part of δv that arrives from later levels) are shown as δv
    itself, and per-gate parameter and product adjoints as one stacked vector per parameter.
    """
    cell = d.cell
    merged = {d.accumulator(node.symbol): d.adjoint[node.symbol] for node in d.nodes}
    leaf_of_adjoint = {d.adjoint[s]: leaf for s, leaf in d.leaves.items()}
    lines: list[Formula] = []
    seen: set[sp.Expr] = set()

    def emit(lhs, rhs, summed=False):
        lines.append(Formula(lhs, rhs, "+=" if summed or lhs in seen else "=", n))
        seen.add(lhs)

    matrices = [p for p in cell.params if p.kind == "matrix"]
    for level in reversed(range(d.levels)):
        stacked: dict[str, dict[str, sp.Expr]] = {}
        for a in d.backward[level]:
            leaf = leaf_of_adjoint.get(a.target)
            if leaf is not None and leaf.kind not in ("state", "input", "reduction"):
                gate = leaf.param.gates[leaf.index] if leaf.param.gates else None
                stacked.setdefault(leaf.param.name, {})[gate] = a.expr
                continue
            target = merged.get(a.target, a.target)
            expr = a.expr.xreplace({acc: 0 for acc, adj in merged.items() if adj == target})
            if expr != 0:
                # a per-row value (mean, sum) gathers its adjoint from every unit that reads it
                emit(n(target), sp.Function("sum")(n(expr)) if leaf and leaf.kind == "reduction" else n(expr))
        for name, by_gate in stacked.items():
            p = cell.param(name)
            value = n(by_gate[None]) if p.gates is None else sp.Matrix([n(by_gate.get(g, 0)) for g in p.gates])
            emit(nt.stacked_adjoint(n, p), value, summed=p.kind == "vector")
        for p in matrices:
            if d.leaves[p.symbols[0]].level == level and p.operand != cell.x.name:
                emit(_adjoint_of_vector(d, n, p.operand), nt.matrix(n, p, transposed=True) * nt.stacked_adjoint(n, p))
    inputs = [nt.matrix(n, p, transposed=True) * nt.stacked_adjoint(n, p) for p in matrices if p.operand == cell.x.name]
    if inputs:  # after x's part per unit, if it has one (δx_t += ...)
        x, adjoint = cell.x.name, n(d.adjoint[cell.x.symbol])
        name = (f"\\delta {n.vectors[x][1]}", f"δ{n.vectors[x][0]}", nt.ADJOINT)
        lhs = adjoint if adjoint in seen else n.symbol(*name, commutative=False)
        emit(lhs, sp.Add(*inputs))
    for p in matrices:
        gradient = n.symbol(f"\\delta {nt.latex_name(p.name)}", f"δ{p.name}", nt.ADJOINT, commutative=False)
        emit(gradient, nt.stacked_adjoint(n, p) * nt.vector(n, p.operand, transposed=True), summed=True)
    return lines


def _adjoint_of_vector(d: Derivation, n: nt.Notation, name: str) -> sp.Symbol:
    """δv for the vector a matrix acts on: a state before the step or a node of this step."""
    for state in d.cell.states:
        if state.name == name:
            return n(d.adjoint[state.prev])
    return n(d.adjoint[next(node.symbol for node in d.nodes if node.symbol.name == name)])


# -- Jacobian -------------------------------------------------------------------------------
def jacobian_blocks(d: Derivation) -> dict[tuple[sp.Symbol, int], JacobianBlock]:
    """Every block ∂v_t/∂s_{t-1} of the in-step operands and the new states, in node order.

    A new state's block goes through the new states computed before it (their blocks appear
    as `Path.block`), so each block is short; products of in-step operands do the same.
    """
    cell = d.cell
    states = {s.name: k for k, s in enumerate(cell.states)}
    new_states = [node.symbol for node in d.new_state_nodes()]
    targets = {node.symbol for node in d.operand_nodes() + d.reduced_nodes()} | set(new_states)
    blocks: dict[tuple[sp.Symbol, int], JacobianBlock] = {}
    for node in d.nodes:
        if node.symbol not in targets:
            continue
        earlier = {s for s in new_states if _index(d, s) < _index(d, node.symbol)}
        rows = [JacobianBlock(node.symbol, k) for k in range(len(cell.states))]
        for source, coefficient in total_derivatives(d, node, earlier).items():
            leaf = d.leaves.get(source)
            if leaf is not None and leaf.kind == "state":
                rows[leaf.index].direct += coefficient
            elif leaf is not None and leaf.kind == "projection" and leaf.param.operand != cell.x.name:
                gate = leaf.param.gates[leaf.index] if leaf.param.gates else None
                operand = leaf.param.operand
                if operand in states:
                    rows[states[operand]].paths.append(Path(coefficient, (leaf.param, gate)))
                else:
                    inner = next(m.symbol for m in d.nodes if m.symbol.name == operand)
                    _continue(rows, blocks, coefficient, (leaf.param, gate), inner)
            elif leaf is not None and leaf.kind == "reduction":
                _continue(rows, blocks, coefficient, None, leaf.reduction.operand, leaf.reduction)
            elif leaf is None:  # a new state of this step, held fixed
                _continue(rows, blocks, coefficient, None, source)
        blocks.update({(node.symbol, k): row for k, row in enumerate(rows)})
    return blocks


def _index(d: Derivation, symbol: sp.Symbol) -> int:
    return next(k for k, node in enumerate(d.nodes) if node.symbol == symbol)


def _continue(rows, blocks, coefficient, matrix, through: sp.Symbol, reduction: Reduction | None = None) -> None:
    """Add diag(coefficient)·[matrix]·∂through/∂s_k to every row k where that block is not zero
    (through a reduction: scale·coefficient·1ᵀ·∂through/∂s_k)."""
    for k, row in enumerate(rows):
        if not blocks[(through, k)].is_zero:
            row.paths.append(Path(coefficient, matrix, (through, k), reduction))


def _jacobian(d: Derivation, n: nt.Notation) -> tuple[sp.Matrix, list[Formula], list[Formula]]:
    blocks = jacobian_blocks(d)
    states = d.cell.states
    referenced: set[tuple[sp.Symbol, int]] = set()

    def name(key) -> sp.Symbol:
        node, k = key
        return nt.block(n, node.name, states[k].name)

    def expression(b: JacobianBlock) -> sp.Expr:
        direct, terms = b.direct, []
        for path in b.paths:
            if path.reduction:
                terms.append(rank_one(path))
                continue
            factors = [nt.matrix(n, *path.matrix)] if path.matrix else []
            inner = blocks[path.block] if path.block else None
            inline = inner is not None and inner.is_diagonal and not isinstance(inner.direct, sp.Add)
            if inline and not factors:
                direct += path.coefficient * inner.direct  # diag(a)·diag(b) = diag(a ⊙ b)
                continue
            if inline:
                factors.append(_diag(n, inner.direct))
            elif inner is not None:
                factors.append(name(path.block))
                referenced.add(path.block)
            terms.append(
                sp.Mul(*([] if path.coefficient == 1 else [_diag(n, path.coefficient, scaled=True)]), *factors)
            )
        if direct != 0:
            terms.append(_diag(n, direct))
        return sp.Add(*terms)

    def rank_one(path: Path) -> sp.Expr:
        """−(1/H)·a·1ᵀ·∂v_t/∂s_{t-1} for a path through a mean of v (a diagonal block written as diag)."""
        inner = blocks[path.block]
        if inner.is_diagonal and not isinstance(inner.direct, sp.Add):
            last = _diag(n, inner.direct)
        else:
            last = name(path.block)
            referenced.add(path.block)
        sign, coefficient = (
            (-1, -path.coefficient) if path.coefficient.could_extract_minus_sign() else (1, path.coefficient)
        )
        scale = nt.reduction_scale(n, path.reduction.blocks, path.reduction.kind)
        return sign * sp.Mul(scale, nt.column(n(coefficient)), nt.ones_row(n), last)

    rows = [node.symbol for node in d.new_state_nodes()]
    keys = [(row, k) for row in rows for k in range(len(states))]
    matrix = sp.Matrix(len(rows), len(states), [expression(blocks[key]) for key in keys])
    named = [Formula(name(key), value, notation=n) for key, value in zip(keys, matrix)]
    inner: dict[tuple[sp.Symbol, int], Formula] = {}
    in_order = lambda keys: sorted(keys, key=lambda key: (_index(d, key[0]), key[1]))  # noqa: E731
    while pending := in_order(referenced - set(keys) - set(inner)):  # inner blocks may refer to further ones
        for key in pending:
            inner[key] = Formula(name(key), expression(blocks[key]), notation=n)
    return matrix, named, [inner[key] for key in in_order(inner)]


def _diag(n: nt.Notation, coefficient: sp.Expr, scaled: bool = False) -> sp.Expr:
    """diag(coefficient); where it is the same for every unit (made of constants) a multiple of I, or with
    `scaled` (a factor of a product) the scalar itself."""
    if coefficient.free_symbols <= set(n.constants):
        return n(coefficient) if scaled else nt.identity(n) if coefficient == 1 else n(coefficient) * nt.identity(n)
    return nt.diag(n(coefficient))


# -- rendering ------------------------------------------------------------------------------
def _legend(f: CellFormulas, part: str) -> str:
    states = f.cell.states
    return LEGENDS[part].format(
        previous=", ".join(f.notation.vectors[s.name][0] for s in states),
        incoming=", ".join(f.notation.text[f.notation(f.derivation.incoming[s.name])] for s in states),
        arrive="arrive" if len(states) > 1 else "arrives",
        states=", ".join(s.name for s in states),
    ) + (REDUCTION_LEGENDS.get(part, "") if f.cell.reductions else "")


def _block_matrix(f: CellFormulas, style: int) -> tuple[str, str, list[list[str]]]:
    """The new states, the previous states and the block names (0 for zero blocks), in text
    (style 0) or LaTeX (style 1)."""
    n, size = f.notation, len(f.cell.states)
    render = n.to_latex if style else n.to_text
    new = ", ".join(n.vectors[node.symbol.name][style] for node in f.derivation.new_state_nodes())
    old = ", ".join(n.vectors[s.name][style] for s in f.cell.states)
    names = [render(b.lhs) if b.rhs != 0 else "0" for b in f.blocks]
    return new, old, [names[i * size : (i + 1) * size] for i in range(size)]


def _block_matrix_text(f: CellFormulas) -> list[str]:
    """∂(h_t, c_t)/∂(h_{t-1}, c_{t-1}) = ⎡ ∂h_t/∂h_{t-1}  ∂h_t/∂c_{t-1} ⎤ ... (one state: nothing)."""
    if len(f.cell.states) == 1:
        return []
    new, old, rows = _block_matrix(f, 0)
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows))]
    lhs = f"∂({new})/∂({old}) = "
    brackets = [("⎡", "⎤")] + [("⎢", "⎥")] * (len(rows) - 2) + [("⎣", "⎦")]
    lines = []
    for i, (row, (left, right)) in enumerate(zip(rows, brackets)):
        cells = "  ".join(e.ljust(w) for e, w in zip(row, widths))
        lines.append(f"{lhs if i == 0 else ' ' * len(lhs)}{left} {cells} {right}")
    return lines


def _section_lines(f: CellFormulas, part: str) -> list[Formula]:
    return {"forward": f.forward, "backward": f.backward, "jacobian": f.blocks + f.inner}[part]


def _text(f: CellFormulas, parts: tuple[str, ...]) -> str:
    out = [f"{f.cell.class_name} ({f.cell.name})"]
    if parts == PARTS:
        out += ["", "Parameters"]
        width = max(len(p["name"]) for p in f.parameters)
        for p in f.parameters:
            gates = f", gates {p['gates']}" if p["gates"] else ""
            torch = f", PyTorch {p['torch']}" if p["torch"] else ""
            role = f"acts on {p['operand']}" if p["operand"] else "per-unit vector"
            out.append(f"  {p['name'].ljust(width)}  {p['shape']}, {role}{gates}{torch}")
        if f.cell.constants:
            out += ["", "Constants (defaults; set per instance)"]
            out += [f"  {c.name} = {float(c.default)!r}" for c in f.cell.constants]
    for part in parts:
        out += ["", f"{TITLES[part]} — {_legend(f, part)}"]
        if part == "jacobian":
            out += [f"  {line}" for line in _block_matrix_text(f)]
            out += [f"  {x.text()}" for x in f.blocks] + [f"  where {x.text()}" for x in f.inner]
        else:
            out += [f"  {x.text()}" for x in _section_lines(f, part)]
    return "\n".join(out) + "\n"


def _latex_block_matrix(f: CellFormulas) -> list[str]:
    if len(f.cell.states) == 1:
        return []
    new, old, rows = _block_matrix(f, 1)
    body = " \\\\ ".join(" & ".join(row) for row in rows)
    return [f"\\frac{{\\partial ({new})}}{{\\partial ({old})}} &= \\begin{{bmatrix}} {body} \\end{{bmatrix}}"]


def _aligned(f: CellFormulas, part: str) -> list[str]:
    rows = (_latex_block_matrix(f) if part == "jacobian" else []) + [x.latex("&") for x in _section_lines(f, part)]
    return ["\\begin{aligned}", *(r + " \\\\" for r in rows[:-1]), rows[-1], "\\end{aligned}"]


def _latex(f: CellFormulas, parts: tuple[str, ...]) -> str:
    out = []
    for part in parts:
        out += [f"% {f.cell.class_name} ({f.cell.name}), {TITLES[part]}: {_legend(f, part)}", *_aligned(f, part), ""]
    return "\n".join(out)


def _sizes_legend(cell: Cell) -> str:
    """For a cell with sizes other than H: which size is which, each state's, and the values in the
    input's size I (nothing otherwise)."""
    inputs = [eq.symbol.name for eq in cell.equations if eq.size == cell.x.size]
    if not cell.sizes and not inputs:
        return ""
    sizes = "".join(f", {size} = `{argument}`" for size, argument in cell.sizes.items())
    parts = [", ".join(f"{s.name} has {s.size}" for s in cell.states) + " units"] if cell.sizes else []
    parts += [f"{', '.join(inputs)} {'has' if len(inputs) == 1 else 'have'} I units, as the input"] if inputs else []
    return f" Sizes: H = `hidden_size`, I = `input_size`{sizes}; {'; '.join(parts)}."


def _markdown(f: CellFormulas, parts: tuple[str, ...]) -> str:
    out = [f"# {f.cell.class_name} (`{f.cell.name}`)", ""]
    if parts == PARTS:
        if f.cell.doc:
            out += [f.cell.doc.strip(), ""]
        out += [
            "## Parameters",
            "",
            LEGENDS["parameters"] + _sizes_legend(f.cell),
            "",
            "| parameter | shape | acts on | gate blocks | PyTorch |",
            "| --- | --- | --- | --- | --- |",
        ]
        for p in f.parameters:
            on = f"${p['operand_latex']}$" if p["operand"] else "per-unit vector"
            torch = f"`{p['torch']}`" if p["torch"] else ""
            out.append(f"| `{p['name']}` | {p['shape']} | {on} | {p['gates']} | {torch} |")
        out.append("")
        if f.cell.constants:
            out += [
                "## Constants",
                "",
                LEGENDS["constants"],
                "",
                "| constant | symbol | default |",
                "| --- | --- | --- |",
            ]
            out += [
                f"| `{c.name}` | ${f.notation.to_latex(f.notation(c.symbol))}$ | {float(c.default)!r} |"
                for c in f.cell.constants
            ]
            out.append("")
    for part in parts:
        legend = _legend(f, part)
        out += [
            f"## {TITLES[part]}",
            "",
            f"{legend[0].upper()}{legend[1:]}.",
            "",
            "```math",
            *_aligned(f, part),
            "```",
            "",
        ]
    return "\n".join(out)
