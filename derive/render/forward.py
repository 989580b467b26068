"""The forward kernel's code: per chunk the input products, per step and level the recurrent
products and one fused pointwise loop that computes the level's nodes and stores what backward
reads (new states into `states`, other values into the tape `saved` at `tape_step`: the step, or
0 when the caller keeps no tape and `saved` holds one step)."""

from __future__ import annotations

from derive import kernel_names as names
from derive.derivation import Derivation
from derive.spec import Reduction

from .locations import Locations, Loop, Stage, by_size, gate_axes, projection_buffer, unit_of
from .printer import KernelPrinter, SharedTerms, block


def level_title(d: Derivation, level: int, values: list[str], backward: bool = False) -> list[str]:
    """`# level 1, after W_hn·rh: n, h_new` (backward: `# level 1: n, h_new; then back through
    W_hn·rh`); nothing for a cell of one level."""
    if d.levels == 1:
        return []
    products = ", ".join(
        [f"{p.name}·{p.operand}" for p in d.recurrent(level)] + [reduction_text(r) for r in d.reductions(level)]
    )
    if backward:
        return [f"# level {level}: {', '.join(values)}" + (f"; then back through {products}" if products else "")]
    return [f"# level {level}{', after ' + products if products else ''}: {', '.join(values)}"]


def reduction_text(r: Reduction) -> str:
    """`mean(a_of)`, as in level titles."""
    return f"{r.kind}({r.operand.name})"


def reduction_size(r: Reduction) -> str:
    """The number of units a reduction runs over, in kernel code: `H`, `4 * H`."""
    return "H" if r.blocks == 1 else f"{r.blocks} * H"


def row_sums(name: str) -> str:
    """`row_sums(mu_terms, mu_rows)`: a reduction's terms of the step added up per row."""
    return f"row_sums({names.terms(name)}, {names.per_row(name)})"


def forward(d: Derivation, at: Locations) -> dict:
    inline = dict(at.params_inline)
    inline |= {r.symbol: f"{names.per_row(r.symbol.name)}[row]" for r in d.reductions()}
    for s, leaf in d.leaves_of("projection").items():
        where = "step - start, row" if d.on_input(leaf.param) else "row"
        inline[s] = f"{projection_buffer(leaf.param)}[{where}, {unit_of(leaf.param, leaf.index)}]"
    printer = KernelPrinter(inline)
    prologue, chunk = [], []
    for p in d.matrices:
        buffer, packed = projection_buffer(p), names.transposed_panels(p.name)
        if d.on_input(p):
            prologue.append(
                f"{buffer} = np.empty((chunk, B, {gate_axes(p)}), x.dtype)  # {p.name} x for the steps of a chunk"
            )
            chunk.append(
                f"matmul(x[start:start + steps].reshape(steps * B, I), {packed}, "
                f"{buffer}[:steps].reshape(steps * B, {p.name}.shape[0]), 0.0)"
            )
        else:
            prologue.append(f"{buffer} = np.empty((B, {gate_axes(p)}), x.dtype)  # {p.name} {p.operand} for one step")
        prologue.append(f"{packed} = pack({p.name}.T)  # {p.name}.T in column panels (see derive.runtime.matrix)")
    for r in d.reductions():
        what = f"{r.kind} of {r.operand.name} over {reduction_size(r)} units"
        what += f" (it adds up the {r.blocks} gate blocks)" if r.blocks > 1 else ""
        prologue.append(f"{names.per_row(r.symbol.name)} = np.empty(B, x.dtype)  # {r.symbol.name}: {what}, per row")
        prologue.append(f"{names.terms(r.symbol.name)} = np.empty((B, H), x.dtype)  # its terms, per row and unit")
    stages, used = [], set()
    for level in range(d.levels):
        nodes = [n for n in d.nodes if n.level == level]
        reduced = [r for r in d.reductions() if d.leaves[r.symbol].level == level + 1]
        loops = []
        groups = by_size(nodes, lambda n: n.size)
        for size in _saved_projection_sizes(d, at, level):  # stored in a loop of their size, even without nodes
            groups.setdefault(size, [])
        for size, group in groups.items():
            body, reads = _pointwise(d, at, level, size, group, printer, inline)
            # reductions run over H-sized values only (validate); summed after the loop, which stays vectorized
            body += [f"{names.terms(r.symbol.name)}[row, unit] = {r.operand.name}" for r in reduced if size == "H"]
            used |= reads
            loops.append(Loop(size, body))
        products = [row_sums(r.symbol.name) for r in d.reductions(level)]
        products += [
            f"{names.per_row(r.symbol.name)} /= {reduction_size(r)}" for r in d.reductions(level) if r.kind == "mean"
        ]
        products += [
            f"matmul({at.vector_at(p.operand, 'step', 'tape_step')}, {names.transposed_panels(p.name)}, "
            f"{projection_buffer(p)}.reshape(B, {p.name}.shape[0]), 0.0)"
            for p in d.recurrent(level)
        ]
        title = level_title(d, level, [n.symbol.name for n in nodes])
        stages.append(Stage(title + products, loops))
    return {"prologue": at.gate_views(used) + prologue, "chunk": chunk, "stages": stages}


def _saved_projection_sizes(d: Derivation, at: Locations, level: int) -> list[str]:
    """The sizes of the products of `level` that backward reads from the tape (U·h of size H is
    stored even where the level computes only values of size I)."""
    leaves = [d.leaves.get(s) for s in at.saved_index]
    return [leaf.param.size for leaf in leaves if leaf and leaf.level == level and leaf.kind == "projection"]


def _pointwise(d: Derivation, at: Locations, level: int, size: str, nodes: list, printer, inline: dict):
    """The body of one pointwise loop (the nodes of one level and size) and the symbols it reads:
    loads, the nodes, then the stores of what backward reads."""
    lines, reads = block([(n.symbol, "=", n.expr) for n in nodes], SharedTerms([]), printer)
    used = set(reads)
    reads -= {n.symbol for n in nodes} | set(inline)
    stores = [
        f"{at.value_location(n.symbol, 'tape_step')} = {n.symbol.name}"
        for n in nodes
        if n.symbol in at.new_state_index or n.symbol in at.saved_index
    ]
    for s, k in at.saved_index.items():
        leaf = d.leaves.get(s)
        # a per-row reduction is stored at every unit of each loop of its level
        if leaf is not None and leaf.level == level and (leaf.kind == "reduction" or leaf.param.size == size):
            stores.append(f"saved[tape_step, {k}, row, unit] = {inline[s]}")
    return at.loads(reads, tape_step="tape_step") + lines + stores, used
