"""The backward (BPTT) kernel's code: per step and level, from the last level down, one fused
pointwise loop of adjoints and the products that carry gradients back through the recurrent
matrices; per chunk of steps the products for dx and the weight gradients, and bias gradients as
column sums of the same buffers.

Gradient buffers hold dL/d(W v) per chunk. Matrices whose products receive the same gradient (an
LSTM's W_ih x and W_hh h enter the same gates) share one buffer, and a bias whose gradient equals
a buffer's columns is summed from it instead of accumulated per unit.
"""

from __future__ import annotations

import sympy as sp

from derive import kernel_names as names
from derive.derivation import Derivation
from derive.spec import Param

from .forward import level_title, row_sums
from .locations import (
    FirstWrites,
    Locations,
    Loop,
    Stage,
    by_size,
    gate_axes,
    gated,
    projection_buffer,
    rows_of,
    span,
    unit_of,
)
from .printer import KernelPrinter, SharedTerms, block


class Backward:
    """The backward kernel of one cell."""

    def __init__(self, d: Derivation, at: Locations, shared: SharedTerms):
        self.d, self.at, self.shared = d, at, shared
        self.accumulators = d.accumulators()
        self.sizes = self._sizes()
        self.buffers = self._gradient_buffers()
        self.owners: dict[str, Param] = {}  # buffer -> the matrix it is named after
        for name, buffer in self.buffers.items():
            self.owners.setdefault(buffer, d.cell.param(name))
        self.column_sums = self._column_sums()
        # the adjoints of the reductions, one per batch row (B,): `d_mu_rows`, the sums of `d_mu_terms`
        self.per_row = {r: names.per_row(names.gradient(r.symbol.name)) for r in d.reductions()}
        self.terms = {r: names.terms(names.gradient(r.symbol.name)) for r in d.reductions()}  # (B, H) each

    def _contributions(self, adjoint: sp.Symbol) -> tuple:
        """What flows into `adjoint` in one step: (level, expression) per assignment."""
        return tuple((lv, a.expr) for lv in range(self.d.levels) for a in self.d.backward[lv] if a.target == adjoint)

    def _flows(self, p: Param) -> list[tuple]:
        return [self._contributions(self.d.adjoint[s]) for s in p.symbols]

    def _gradient_buffers(self) -> dict[str, str]:
        """Matrix name -> the buffer holding the gradient of its projection, per chunk; matrices
        whose projections get the same gradient share the first one's buffer."""
        signatures: dict[tuple, str] = {}
        return {
            p.name: signatures.setdefault(tuple(self._flows(p)), names.gradient(projection_buffer(p)))
            for p in self.d.matrices
        }

    def _column_sums(self) -> dict[str, list[tuple[str, Param, int]]]:
        """Vector parameters whose gradient is a sum of gradient-buffer columns (biases):
        name -> per gate (buffer, matrix owning it, gate block); one buffer for all gates if
        one matches them all."""
        owners = list(self.owners.values())
        sums = {}
        for p in self.d.cell.params:
            if p.kind != "vector":
                continue
            whole = next((m for m in owners if self._flows(m) == self._flows(p)), None)
            if whole is not None:
                sums[p.name] = [(self.buffers[whole.name], whole, g) for g in range(p.blocks)]
                continue
            blocks = {
                flow: (self.buffers[m.name], m, j) for m in reversed(owners) for j, flow in enumerate(self._flows(m))
            }
            sources = [blocks.get(flow) for flow in self._flows(p)]
            if all(sources):
                sums[p.name] = sources
        return sums

    def code(self) -> dict:
        d, at = self.d, self.at
        writes = FirstWrites()
        printer = KernelPrinter(
            {**at.params_inline, **{acc: f"{acc.name}[row, unit]" for acc in self.accumulators}, **self._per_row()}
        )
        stages, used, gradients = [], set(), set()
        for level in reversed(range(d.levels)):
            stage, reads, targets = self._stage(level, writes, printer)
            stages.append(stage)
            used |= reads
            gradients |= targets
        prologue = at.gate_views(used) + self._buffers()
        prologue += [
            f"{names.panels(p.name)} = pack({p.name})  # in column panels (see derive.runtime.matrix)"
            for p in d.matrices
        ]
        prologue += [f"{acc.name} = np.empty((B, {self.sizes[acc]}), x.dtype)" for acc in self.accumulators]
        for r, buffer in self.per_row.items():
            prologue.append(f"{buffer} = np.empty(B, x.dtype)  # dL/d{r.symbol.name}, per row")
            prologue.append(f"{self.terms[r]} = np.empty((B, H), x.dtype)  # its terms")
        prologue += [
            f"{names.previous_gradient(s.name)} = np.empty((B, {s.size}), x.dtype)"
            f"  # dL/d{s.name}_(t-1) from the products (its first {s.size} columns of d_prev)"
            for s in self._narrow_operands()
        ]
        prologue += ["# parameter gradients add up over steps and chunks: zeroed here"]
        prologue += [f"{names.gradient(p.name)}[:] = 0.0" for p in d.cell.params]
        prologue += at.gate_views(gradients, names.gradient(""))
        resets = [f"d_prev[{k}] = 0.0" for k in range(len(d.cell.states)) if writes.never(("state", k))]
        resets += [f"{acc.name}[:] = 0.0" for acc in self.accumulators if writes.never(acc)]
        resets += [f"{terms}[:] = 0.0" for terms in self.terms.values()]  # summed per row
        for buffer, p in self.owners.items():
            resets += [
                f"{buffer}[step - start, :, {j}] = 0.0" if p.blocks > 1 else f"{buffer}[step - start] = 0.0"
                for j in range(p.blocks)
                if writes.never((buffer, j))
            ]
        if resets:
            resets.insert(0, "# no assignment of this step writes these first: they start from zero")
        sums, copies = self._bias_gradients()
        return {
            "prologue": prologue,
            "resets": resets,
            "stages": stages,
            "chunk": self._weight_gradients() + sums,
            "end": copies,
        }

    def _per_row(self) -> dict[sp.Symbol, str]:
        """The adjoints of the reductions in a loop over units, as read: `d_mu_rows[row]`."""
        return {self.d.adjoint[r.symbol]: f"{buffer}[row]" for r, buffer in self.per_row.items()}

    def _terms(self) -> dict[sp.Symbol, str]:
        """The adjoints of the reductions in a loop over units, as written: `d_mu_terms[row, unit]`,
        added up per row before the level that reads them (the loops stay vectorized)."""
        return {self.d.adjoint[r.symbol]: f"{terms}[row, unit]" for r, terms in self.terms.items()}

    def _buffers(self) -> list[str]:
        """The per-chunk gradient buffers, each after a comment on what it serves if that is more
        than its own matrix's product."""
        lines, same = [], self._same_gradients()
        for buffer, owner in self.owners.items():
            serves = self._sharing(buffer)
            biases = [name for name, sources in self.column_sums.items() if sources[0][0] == buffer]
            copies = [f"{names.gradient(name)} equals {names.gradient(same[name])}" for name in biases if name in same]
            if len(serves) + len(biases) > 1:
                note = f"# {', '.join(serves + biases)} enter the gates alike: one gradient buffer"
                note += "; the biases' gradients are its column sums" if biases else ""
                lines.append(note + "".join(f"; {c}" for c in copies))
            lines.append(
                f"{buffer} = np.empty((chunk, B, {gate_axes(owner)}), x.dtype)"
                f"  # dL/d({owner.name} {owner.operand}), per chunk"
            )
        return lines

    def _sharing(self, buffer: str) -> list[str]:
        return [f"{p.name} {p.operand}" for p in self.d.matrices if self.buffers[p.name] == buffer]

    def _stage(self, level: int, writes: FirstWrites, printer: KernelPrinter):
        """Pointwise adjoints of one level, then the products of its recurrent matrices; also the
        symbols it reads and the per-unit parameters whose gradients it writes."""
        d, at = self.d, self.at
        targets = {acc: f"{acc.name}[row, unit]" for acc in self.accumulators} | self._terms()
        leaf_of = {}
        for s, leaf in d.leaves.items():
            adjoint = d.adjoint[s]
            leaf_of[adjoint] = leaf
            if leaf.kind == "state":
                targets[adjoint] = f"d_prev[{leaf.index}, row, unit]"
            elif leaf.kind == "input":  # x used per unit: its part of dx, before the chunk's products add theirs
                targets[adjoint] = "dx[step, row, unit]"
            elif leaf.kind == "reduction":
                continue  # per row, in `_per_row`
            elif leaf.kind == "projection":
                targets[adjoint] = (
                    f"{self.buffers[leaf.param.name]}[step - start, row, {unit_of(leaf.param, leaf.index)}]"
                )
            else:
                targets[adjoint] = (
                    f"{gated(names.gradient(leaf.param.name), leaf.param)}[{unit_of(leaf.param, leaf.index)}]"
                )
        assignments, gradients = [], set()
        for a in d.backward[level]:
            leaf = leaf_of.get(a.target)
            if leaf is None:
                key = a.target if a.target in self.accumulators else None
            elif leaf.kind == "state":
                key = ("state", leaf.index)
            elif leaf.kind == "input":
                key = "dx"
            elif leaf.kind == "reduction":
                key = None  # sums over the units of every level that reads it: zeroed per step
            elif leaf.kind == "projection":
                if self.buffers[leaf.param.name] != names.gradient(projection_buffer(leaf.param)):
                    continue  # its gradient is already in the shared buffer
                key = (self.buffers[leaf.param.name], leaf.index)
            elif leaf.param.name in self.column_sums:
                continue  # summed from a gradient buffer per chunk
            else:
                key = None  # a per-unit parameter: accumulates over rows and steps
                gradients |= set(leaf.param.symbols)
            assignments.append((a.target, writes.op(key, a.op), a.expr))
        loops, used = [], set()
        defined = {a.target for a in d.backward[level] if a.op == "="} | set(printer.locations)
        for size, group in by_size(assignments, lambda a: self.sizes[a[0]]).items():
            lines, reads = block(group, self.shared, printer, targets)
            used |= reads
            loops.append(Loop(size, at.loads(reads - defined, self._incoming()) + lines))
        products = []
        for p in d.recurrent(level):
            operand = next((s for s in at.state_index if s.name == p.operand), None)
            if operand is not None:
                into, key = f"d_prev[{at.state_index[operand]}]", ("state", at.state_index[operand])
            else:
                key = d.accumulator(next(n.symbol for n in d.nodes if n.symbol.name == p.operand))
                into = key.name
            rows = f"{self.buffers[p.name]}[step - start].reshape(B, {p.name}.shape[0])"
            beta = writes.beta(key)
            if operand is not None and at.columns(p.operand):  # matmul writes C-contiguous arrays only
                scratch = names.previous_gradient(p.operand)
                products.append(f"matmul({rows}, {names.panels(p.name)}, {scratch}, 0.0)")
                products.append(f"{into[:-1]}{at.columns(p.operand)}] {'=' if beta == '0.0' else '+='} {scratch}")
                continue
            products.append(f"matmul({rows}, {names.panels(p.name)}, {into}, {beta})")
        title = level_title(d, level, [n.symbol.name for n in d.nodes if n.level == level], backward=True)
        # the adjoints of the reductions over this level's values: every later level has added to them
        sums = [row_sums(names.gradient(r.symbol.name)) for r in d.reductions(level + 1)]
        stage = Stage(title + sums, loops, products)
        return stage, used, gradients

    def _sizes(self) -> dict[sp.Symbol, str]:
        """The size of every adjoint a backward assignment writes (the size of its value)."""
        d, sizes = self.d, {}
        for s in d.leaves:
            sizes[d.adjoint[s]] = d.size_of(s)
        for n in d.nodes:
            sizes[d.adjoint[n.symbol]] = sizes[d.accumulator(n.symbol)] = n.size
            for k in range(len(n.args)):
                sizes[d.preactivation(n.symbol, k)] = n.size
        return sizes

    def _narrow_operands(self) -> list:
        """States narrower than H that a recurrent matrix acts on (their gradient goes through scratch)."""
        operands = {p.operand for p in self.d.recurrent()}
        return [s for s in self.d.cell.states if s.name in operands and s.size != "H"]

    def _incoming(self) -> dict[sp.Symbol, str]:
        loads = {}
        for k, state in enumerate(self.d.cell.states):
            loads[self.d.incoming[state.name]] = f"d_in[{k}, row, unit]" + (" + dy[step, row, unit]" if k == 0 else "")
        return loads

    def _weight_gradients(self) -> list[str]:
        """Per chunk of steps: dx, and each weight's gradient accumulated over the chunks."""
        pointwise = any(a.target == self.d.adjoint[self.d.cell.x.symbol] for b in self.d.backward.values() for a in b)
        lines, beta_x, packed = [], "1.0" if pointwise else "0.0", set()  # the step loop wrote dx's pointwise part
        for p in self.d.matrices:
            rows = rows_of(self.buffers[p.name], p, "steps")
            if self.d.on_input(p):
                lines.append(f"matmul({rows}, {names.panels(p.name)}, dx[start:stop].reshape(steps * B, I), {beta_x})")
                beta_x = "1.0"
                operand = "x[start:stop].reshape(steps * B, I)"
            else:
                operand = f"{self.at.sequence_of(p.operand)}.reshape(steps * B, {self.d.cell.size_of(p.operand)})"
            if p.operand not in packed:
                lines.append(f"{names.panels(p.operand)} = pack({operand})")
                packed.add(p.operand)
            lines.append(f"matmul({rows}.T, {names.panels(p.operand)}, {names.gradient(p.name)}, 1.0)")
        return lines

    def _same_gradients(self) -> dict[str, str]:
        """Vector parameter -> the earlier one summed from the same columns (its gradient is equal)."""
        first: dict[tuple, str] = {}
        return {
            name: first[key]
            for name, sources in self.column_sums.items()
            if first.setdefault(key := tuple((b, j) for b, _, j in sources), name) != name
        }

    def _bias_gradients(self) -> tuple[list[str], list[str]]:
        """Vector parameters whose gradient is a column sum of gradient buffers: per chunk, the
        sums; after the loop, copies for parameters with the same gradient as an earlier one."""
        sums, same = [], self._same_gradients()
        for name, sources in self.column_sums.items():
            if name in same:
                continue
            buffer, p, _ = sources[0]
            if [(b, j) for b, _, j in sources] == [(buffer, g) for g in range(p.blocks)]:
                sums.append(f"add_column_sums({rows_of(buffer, p, 'steps')}, {names.gradient(name)})")
            else:
                sums += [
                    f"add_column_sums({rows_of(b, q, 'steps')}[:, {span(j, q.size)}], "
                    f"{names.gradient(name)}[{span(g, q.size)}])"
                    for g, (b, q, j) in enumerate(sources)
                ]
        copies = [f"assign({names.gradient(name)}, {names.gradient(first)})" for name, first in same.items()]
        return sums, copies
