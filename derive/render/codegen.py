"""Turn a derivation into the text pieces the cell template lays out.

Every decision is made here: where each symbol lives in each kernel (a local, a parameter
element, a projection buffer, a slot of the tape), which matrix products run at which level,
what is loaded and stored. The template only places these lines into loops and functions.

Kernel conventions (shapes in every generated docstring):
    x       (T, B, I)            input sequence, time-major
    states  (n_states, T+1, B, H) states[k, 0] is the initial state, states[k, t+1] is s_t
    saved   (T, n_saved, B, H)   per-step values backward needs (the tape)
Loops run over `step` (time), `row` (batch) and `unit` (hidden unit).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass, field

import sympy as sp

from derive.runtime import kernel_math
from derive.activations import ACTIVATIONS
from derive.derivation import Derivation, JacobianTerm
from .printer import KernelPrinter, SharedTerms, block, display
from derive.spec import Cell, Param, param_columns, shape_text


# Numba options of the generated functions (see derive/runtime/compiler.py for why these).
KERNEL_OPTIONS = 'nogil=True, fastmath={"contract"}, error_model="numpy", pipeline_class=NoAliasPipeline'
PARALLEL_KERNEL_OPTIONS = "parallel=PRANGE_ONLY, " + KERNEL_OPTIONS  # kernels with matrix products
HELPER_OPTIONS = 'inline="always", fastmath={"contract"}, error_model="numpy"'
# Steps are processed in chunks of about this many rows (steps x batch): input products and
# gradient products stay large enough for the matrix tiles, buffers stay in cache and memory stays bounded.
CHUNK_ROWS = 256


def offset(gate: int, index: str = "unit") -> str:
    """Index of `index` within gate block `gate` of a stacked (G*H, ...) parameter."""
    return index if gate == 0 else f"H + {index}" if gate == 1 else f"{gate} * H + {index}"


def unit_of(param: Param, gate: int) -> str:
    """Index of unit `unit` of gate block `gate` in an array with a gate axis (if `param` is gated).

    Gate blocks get their own axis (shape (..., G, H)) so every index but `unit` is constant in
    the loop over units: Numba's negative-index check then folds away and loads stay contiguous
    (an index such as `2 * H + unit` would make LLVM gather)."""
    return f"{gate}, unit" if param.blocks > 1 else "unit"


def gated(name: str, param: Param) -> str:
    """Name of the view with a gate axis of array `name` (shaped like `param`'s rows)."""
    return f"{name}_gates" if param.blocks > 1 else name


def gate_axes(param: Param) -> str:
    """Trailing shape of an array with one value per unit of each gate of `param`."""
    return f"{param.blocks}, H" if param.blocks > 1 else "H"


def span(gate: int) -> str:
    """Slice of gate block `gate` in a stacked (G*H, ...) dimension: `H:2 * H`."""

    def edge(g: int) -> str:
        return "0" if g == 0 else "H" if g == 1 else f"{g} * H"

    return f"{edge(gate)}:{edge(gate + 1)}"


def projection_buffer(param: Param) -> str:
    """Name of the array holding W v for every gate: `W_hh_h`."""
    return f"{param.name}_{param.operand}"


@dataclass
class Stage:
    """One level of a time step: matrix products, then a fused pointwise loop."""

    matmuls: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


@dataclass
class JacobianRow:
    """Rows of ∂target/∂s_{t-1}, one per unit, for one target vector."""

    title: str
    before: list[str]
    body: list[str]
    after: list[str]


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


class CellCode:
    """All code pieces of one cell, computed once from its derivation."""

    def __init__(self, d: Derivation):
        self.d = d
        self.cell = d.cell
        self.matrices = [p for p in self.cell.params if p.kind == "matrix"]
        self.saved_index = {s: k for k, s in enumerate(d.saved)}
        self.state_index = {s.prev: k for k, s in enumerate(self.cell.states)}
        self.new_state_index = {n.symbol: k for k, n in enumerate(d.new_state_nodes())}
        self.shared = SharedTerms(self._all_expressions())
        self.params_inline = self._params_inline()

    # -- shared helpers ---------------------------------------------------------------------
    def _all_expressions(self) -> list[sp.Expr]:
        """Backward and Jacobian expressions: one CSE over both. (Forward computes each node
        exactly once from leaves, so it has nothing to share and stays as written.)"""
        exprs = [a.expr for b in self.d.backward.values() for a in b]
        exprs += [t.coefficient for terms in self.d.jacobian.values() for t in terms]
        return exprs

    def _params_inline(self) -> dict[sp.Symbol, str]:
        """Per-unit parameters read in place, and the constants, which are kernel arguments."""
        inline = {
            s: f"{gated(leaf.param.name, leaf.param)}[{unit_of(leaf.param, leaf.index)}]"
            for s, leaf in self.d.leaves.items()
            if leaf.kind == "param"
        }
        return inline | {c.symbol: c.name for c in self.cell.constants}

    def gate_views(self, lines: list[str], prefix: str = "") -> list[str]:
        """Views with a gate axis of the gated per-unit parameters (or, with prefix `d_`, of their
        gradients) that `lines` use."""
        views = []
        for p in self.cell.params:
            name = gated(prefix + p.name, p)
            if p.kind == "vector" and p.blocks > 1 and any(f"{name}[" in line for line in lines):
                views.append(f"{name} = {prefix}{p.name}.reshape({gate_axes(p)})")
        return views

    def _level_of_param(self, param: Param) -> int:
        return self.d.leaves[param.symbols[0]].level

    def vector_at(self, name: str, step: str, tape_step: str | None = None) -> str:
        """Code for the (B, H) array of vector `name` (a previous state or a node) at `step`;
        a saved value at `tape_step` (forward: `tape_step`, the tape's step or 0 without a tape)."""
        for s, k in self.state_index.items():
            if s.name == name:
                return f"states[{k}, {step}]"
        for s, k in self.new_state_index.items():
            if s.name == name:
                return f"states[{k}, {step} + 1]"
        k = next(k for s, k in self.saved_index.items() if s.name == name)
        return f"saved[{tape_step or step}, {k}]"

    def _value_location(self, symbol: sp.Symbol, tape_step: str = "step") -> str:
        """Where a forward value of this step is kept (saved values: at `tape_step` of the tape)."""
        if symbol in self.state_index:
            return f"states[{self.state_index[symbol]}, step, row, unit]"
        if symbol in self.new_state_index:
            return f"states[{self.new_state_index[symbol]}, step + 1, row, unit]"
        return f"saved[{tape_step}, {self.saved_index[symbol]}, row, unit]"

    def _loads(self, symbols: set[sp.Symbol], extra: dict[sp.Symbol, str] | None = None, tape_step: str = "step") -> list[str]:
        extra = extra or {}
        lines = []
        for s in sorted(symbols, key=lambda s: s.name):
            lines.append(f"{s.name} = {extra[s] if s in extra else self._value_location(s, tape_step)}")
        return lines

    # -- forward ----------------------------------------------------------------------------
    def _recurrent(self, level: int | None = None) -> list[Param]:
        """Matrices acting on a value of the recurrence (not on x), at `level` if given."""
        return [
            p for p in self.matrices
            if p.operand != self.cell.x.name and (level is None or self._level_of_param(p) == level)
        ]

    def forward(self) -> dict:
        inline = dict(self.params_inline)
        for s, leaf in self.d.leaves.items():
            if leaf.kind == "projection":
                buffer = projection_buffer(leaf.param)
                where = "step - start, row" if leaf.param.operand == self.cell.x.name else "row"
                inline[s] = f"{buffer}[{where}, {unit_of(leaf.param, leaf.index)}]"
        printer = KernelPrinter(inline)
        prologue, chunk = [], []
        for p in self.matrices:
            buffer = projection_buffer(p)
            if p.operand == self.cell.x.name:
                prologue.append(f"{buffer} = np.empty((chunk, B, {gate_axes(p)}), x.dtype)  # {p.name} x for the steps of a chunk")
                chunk.append(f"matmul(x[start:start + steps].reshape(steps * B, I), {p.name}_T, {buffer}[:steps].reshape(steps * B, {p.name}.shape[0]), 0.0)")
            else:
                prologue.append(f"{buffer} = np.empty((B, {gate_axes(p)}), x.dtype)")
            prologue.append(f"{p.name}_T = pack({p.name}.T)  # {p.name}.T in column panels (see derive.runtime.matrix)")
        stages = []
        for level in range(self.d.levels):
            nodes = [n for n in self.d.nodes if n.level == level]
            lines, reads = block([(n.symbol, "=", n.expr) for n in nodes], SharedTerms([]), printer)
            reads -= {n.symbol for n in nodes} | set(inline)
            stores = []
            for n in nodes:
                if n.symbol in self.new_state_index or n.symbol in self.saved_index:
                    stores.append(f"{self._value_location(n.symbol, 'tape_step')} = {n.symbol.name}")
            for s, k in self.saved_index.items():
                leaf = self.d.leaves.get(s)
                if leaf is not None and leaf.level == level:
                    stores.append(f"saved[tape_step, {k}, row, unit] = {inline[s]}")
            matmuls = [
                f"matmul({self.vector_at(p.operand, 'step', 'tape_step')}, {p.name}_T, {projection_buffer(p)}.reshape(B, {p.name}.shape[0]), 0.0)"
                for p in self._recurrent(level)
            ]
            stages.append(Stage(matmuls, self._loads(reads, tape_step="tape_step") + lines + stores))
        prologue = self.gate_views([line for stage in stages for line in stage.body]) + prologue
        return {"prologue": prologue, "chunk": chunk, "stages": stages}

    # -- backward ---------------------------------------------------------------------------
    def _incoming_loads(self) -> dict[sp.Symbol, str]:
        loads = {}
        for k, state in enumerate(self.cell.states):
            code = f"d_in[{k}, row, unit]"
            if k == 0:
                code += " + dy[step, row, unit]"
            loads[self.d.incoming[state.name]] = code
        return loads

    def _accumulators(self) -> list[sp.Symbol]:
        return sorted(
            {a.target for b in self.d.backward.values() for a in b if a.target.name.endswith("_acc")}
            | {self.d.accumulator(n.symbol) for n in self.d.operand_nodes()},
            key=lambda s: s.name,
        )

    def _contributions(self, adjoint: sp.Symbol) -> tuple:
        """What flows into `adjoint` in one step: (level, expression) per assignment."""
        return tuple((lv, str(a.expr)) for lv in range(self.d.levels) for a in self.d.backward[lv] if a.target == adjoint)

    def _gradient_buffers(self) -> dict[str, str]:
        """Matrix name -> the buffer holding the gradient of its projection, per chunk.

        Matrices whose projections get the same gradient (W_ih and W_hh of an LSTM: both
        sums enter the same gate) share the first one's buffer.
        """
        signatures: dict[tuple, str] = {}
        return {
            p.name: signatures.setdefault(
                tuple(self._contributions(self.d.adjoint[s]) for s in p.symbols), f"d_{projection_buffer(p)}"
            )
            for p in self.matrices
        }

    def _column_sums(self, buffers: dict[str, str]) -> dict[str, list[tuple[str, Param, int]]]:
        """Vector parameters whose gradient is a sum of gradient-buffer columns (biases):
        name -> per gate (buffer, matrix owning it, gate block); one buffer for all gates if
        one matches them all."""
        owners = [p for p in self.matrices if buffers[p.name] == f"d_{projection_buffer(p)}"]

        def flows(p: Param) -> list[tuple]:
            return [self._contributions(self.d.adjoint[s]) for s in p.symbols]

        sums = {}
        for p in self.cell.params:
            if p.kind != "vector":
                continue
            whole = next((m for m in owners if flows(m) == flows(p)), None)
            if whole is not None:
                sums[p.name] = [(buffers[whole.name], whole, g) for g in range(p.blocks)]
                continue
            blocks = {flow: (buffers[m.name], m, j) for m in reversed(owners) for j, flow in enumerate(flows(m))}
            sources = [blocks.get(flow) for flow in flows(p)]
            if all(sources):
                sums[p.name] = sources
        return sums

    def backward(self) -> dict:
        accumulators = self._accumulators()
        buffers = self._gradient_buffers()
        owners: dict[str, Param] = {}  # buffer -> the matrix it is named after
        for name, buffer in buffers.items():
            owners.setdefault(buffer, self.cell.param(name))
        column_sums = self._column_sums(buffers)
        writes = FirstWrites()
        stages = [self._backward_stage(level, buffers, column_sums, accumulators, writes)
                  for level in reversed(range(self.d.levels))]
        body = [line for stage in stages for line in stage.body]
        prologue = self.gate_views(body) + [
            f"{buffer} = np.empty((chunk, B, {gate_axes(p)}), x.dtype)  # dL/d({p.name} {p.operand}) for the steps of a chunk"
            for buffer, p in owners.items()
        ]
        prologue += [f"{p.name}_panels = pack({p.name})  # in column panels (see derive.runtime.matrix)" for p in self.matrices]
        prologue += [f"{acc.name} = np.empty((B, H), x.dtype)" for acc in accumulators]
        prologue += [f"d_{p.name}[:] = 0.0" for p in self.cell.params]  # accumulated over steps and chunks
        prologue += self.gate_views(body, "d_")
        resets = [f"d_prev[{k}] = 0.0" for k in range(len(self.cell.states)) if writes.never(("state", k))]
        resets += [f"{acc.name}[:] = 0.0" for acc in accumulators if writes.never(acc)]
        for buffer, p in owners.items():
            resets += [
                f"{buffer}[step - start, :, {j}] = 0.0" if p.blocks > 1 else f"{buffer}[step - start] = 0.0"
                for j in range(p.blocks)
                if writes.never((buffer, j))
            ]
        sums, copies = self._bias_gradients(column_sums)
        return {
            "prologue": prologue,
            "resets": resets,
            "stages": stages,
            "chunk": self._weight_gradients(buffers) + sums,
            "end": copies,
        }

    def _backward_stage(self, level: int, buffers: dict, column_sums: dict, accumulators: list, writes) -> Stage:
        """Pointwise adjoints of one level, then the products of its recurrent matrices."""
        inline = dict(self.params_inline)
        inline.update({acc: f"{acc.name}[row, unit]" for acc in accumulators})
        targets = dict(inline)
        leaf_of = {}
        for s, leaf in self.d.leaves.items():
            adjoint = self.d.adjoint[s]
            leaf_of[adjoint] = leaf
            if leaf.kind == "state":
                targets[adjoint] = f"d_prev[{leaf.index}, row, unit]"
            elif leaf.kind == "projection":
                targets[adjoint] = f"{buffers[leaf.param.name]}[step - start, row, {unit_of(leaf.param, leaf.index)}]"
            else:
                targets[adjoint] = f"{gated('d_' + leaf.param.name, leaf.param)}[{unit_of(leaf.param, leaf.index)}]"
        assignments = []
        for a in self.d.backward[level]:
            leaf = leaf_of.get(a.target)
            if leaf is None:
                key = a.target if a.target in accumulators else None
            elif leaf.kind == "state":
                key = ("state", leaf.index)
            elif leaf.kind == "projection":
                if buffers[leaf.param.name] != f"d_{projection_buffer(leaf.param)}":
                    continue  # its gradient is already in the shared buffer
                key = (buffers[leaf.param.name], leaf.index)
            elif leaf.param.name in column_sums:
                continue  # summed from a gradient buffer per chunk
            else:
                key = None  # a per-unit parameter: accumulates over rows and steps
            assignments.append((a.target, writes.op(key, a.op), a.expr))
        lines, reads = block(assignments, self.shared, KernelPrinter(inline), targets)
        reads -= {a.target for a in self.d.backward[level] if a.op == "="} | set(inline)
        products = []
        for p in self._recurrent(level):
            operand = next((s for s in self.state_index if s.name == p.operand), None)
            if operand is not None:
                into, key = f"d_prev[{self.state_index[operand]}]", ("state", self.state_index[operand])
            else:
                key = self.d.accumulator(next(n.symbol for n in self.d.nodes if n.symbol.name == p.operand))
                into = key.name
            rows = f"{buffers[p.name]}[step - start].reshape(B, {p.name}.shape[0])"
            products.append(f"matmul({rows}, {p.name}_panels, {into}, {writes.beta(key)})")
        return Stage([], self._loads(reads, self._incoming_loads()) + lines, products)

    def _weight_gradients(self, buffers: dict[str, str]) -> list[str]:
        """Per chunk of steps: dx, and each weight's gradient accumulated over the chunks."""
        lines = []
        beta_x = "0.0"
        packed = set()
        for p in self.matrices:
            rows = f"{buffers[p.name]}[:steps].reshape(steps * B, {p.name}.shape[0])"
            if p.operand == self.cell.x.name:
                lines.append(f"matmul({rows}, {p.name}_panels, dx[start:stop].reshape(steps * B, I), {beta_x})")
                beta_x = "1.0"
                operand = "x[start:stop].reshape(steps * B, I)"
            else:
                operand = f"{self._sequence_of(p.operand)}.reshape(steps * B, H)"
            if p.operand not in packed:
                lines.append(f"{p.operand}_panels = pack({operand})")
                packed.add(p.operand)
            lines.append(f"matmul({rows}.T, {p.operand}_panels, d_{p.name}, 1.0)")
        return lines

    def _bias_gradients(self, column_sums: dict) -> tuple[list[str], list[str]]:
        """Vector parameters whose gradient is a column sum of gradient buffers: per chunk, the
        sums; after the loop, copies for parameters with the same gradient as an earlier one."""
        sums, copies, done = [], [], {}
        for name, sources in column_sums.items():
            key = tuple((buffer, j) for buffer, _, j in sources)
            if key in done:
                copies.append(f"d_{name}[:] = d_{done[key]}")
                continue
            done[key] = name
            buffer, p, _ = sources[0]
            rows = f"{buffer}[:steps].reshape(steps * B, {p.name}.shape[0])"
            if key == tuple((buffer, g) for g in range(p.blocks)):
                sums.append(f"add_column_sums({rows}, d_{name})")
            else:
                sums += [
                    f"add_column_sums({b}[:steps].reshape(steps * B, {q.name}.shape[0])[:, {span(j)}], d_{name}[{span(g)}])"
                    for g, (b, q, j) in enumerate(sources)
                ]
        return sums, copies

    def _sequence_of(self, name: str) -> str:
        """Code for the (steps, B, H) values of vector `name` over the steps of a chunk."""
        at = self.vector_at(name, "STEP")
        if at.startswith("states"):
            return at.replace("STEP + 1", "start + 1:stop + 1").replace("STEP", "start:stop")
        return f"np.ascontiguousarray({at.replace('STEP', 'start:stop')})"

    # -- Jacobian ---------------------------------------------------------------------------
    def jacobian(self) -> dict:
        printer = KernelPrinter(self.params_inline)
        rows = []
        buffers = []
        operand_products = {}
        for p in self.matrices:
            if p.operand not in {s.name for s in self.state_index} and p.operand != self.cell.x.name:
                operand_products.setdefault(p.operand, []).append(p)
        for target, terms in self.d.jacobian.items():
            if target in self.new_state_index:
                k = self.new_state_index[target]
                row = f"J[step, row, {offset(k)}"
                before, after = [], []
                title = f"∂{target.name}/∂s_(t-1): rows {offset(k, 'unit')} of J"
            else:
                row = f"J_{target.name}[unit"
                buffers.append(f"J_{target.name} = np.empty((H, S), J.dtype)")
                before = [f"J_{target.name}[:] = 0.0"]
                after = []
                for p in operand_products.get(target.name, []):  # (W J_target).T = J_target.T W.T
                    buffers.append(f"{p.name}_T = pack({p.name}.T)  # {p.name}.T in column panels (see derive.runtime.matrix)")
                    buffers.append(f"{p.name}_J = np.empty((S, {p.name}.shape[0]), J.dtype)  # ({p.name} J_{target.name}).T")
                    after.append(f"matmul(J_{target.name}.T, {p.name}_T, {p.name}_J, 0.0)")
                title = f"∂{target.name}/∂s_(t-1), needed by the products of {target.name}"
            body = self._jacobian_body(terms, row, printer)
            rows.append(JacobianRow(title, before, body, after))
        return {"buffers": self.gate_views([line for r in rows for line in r.body]) + buffers, "rows": rows}

    def _jacobian_body(self, terms: list[JacobianTerm], row: str, printer: KernelPrinter) -> list[str]:
        coefficients = [sp.Symbol(f"coef{k}", real=True) for k in range(len(terms))]
        lines, reads = block(
            [(c, "=", t.coefficient) for c, t in zip(coefficients, terms)], self.shared, printer, comment=False
        )
        reads -= set(self.params_inline)
        lines = self._loads(reads) + lines
        for c, t in zip(coefficients, terms):
            note = f"  # {display(t.coefficient)}"
            if t.kind == "direct":
                lines.append(f"{row}, {offset(t.state)}] += {c}{note}")
                continue
            operand = next((s for s in self.state_index if s.name == t.param.operand), None)
            if operand is not None:
                lines.append(f"for col in range(H):{note}")
                lines.append(f"    {row}, {offset(self.state_index[operand], 'col')}] += {c} * {t.param.name}[{offset(t.gate)}, col]")
            else:
                lines.append(f"for col in range(S):{note}")
                lines.append(f"    {row}, col] += {c} * {t.param.name}_J[col, {offset(t.gate)}]")
        return lines

    # -- module-level facts -----------------------------------------------------------------
    def helpers(self) -> list[str]:
        """Source of the jitted helpers: the functions any kernel calls (forward, or the derivative
        rules in backward and the Jacobian), after the functions they call."""
        exprs = [n.expr for n in self.d.nodes] + self._all_expressions()
        calls = {type(call) for e in exprs for call in e.atoms(sp.Function)}
        used = sorted(calls & ACTIVATIONS.keys(), key=lambda a: a.__name__)
        return [inspect.getsource(f).rstrip("\n") for f in with_callees([ACTIVATIONS[a].kernel for a in used])]

    def parameters(self) -> list[dict]:
        result = []
        for p in self.cell.params:
            columns, shape = param_columns(p, self.cell), shape_text(p, self.cell)
            role = f"acts on {p.operand}" if p.kind == "matrix" else "per-unit vector"
            gates = f", gates {', '.join(p.gates)}" if p.gates else ""
            result.append(
                {
                    "name": p.name,
                    "blocks": p.blocks,
                    "columns": columns,
                    "gates": p.gates,
                    "torch": p.torch_name,
                    "init": p.init,
                    "shape": shape,
                    "doc": f"{shape}, {role}{gates}" + (f"; PyTorch `{p.torch_name}`" if p.torch_name else ""),
                }
            )
        return result

    def equations(self) -> list[str]:
        return [f"{n.symbol.name} = {display(n.expr)}" for n in self.d.nodes]


def with_callees(functions: list) -> list:
    """`functions` and the kernel_math functions they call, each after its callees."""
    order: list = []

    def visit(function):
        if function in order:
            return
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                callee = getattr(kernel_math, node.func.id, None)
                if inspect.isfunction(callee) and callee.__module__ == kernel_math.__name__:
                    visit(callee)
        order.append(function)

    for function in functions:
        visit(function)
    return order


def module_context(d: Derivation) -> dict:
    """Everything `templates/cell.py.jinja` lays out for one cell."""
    code = CellCode(d)
    cell = d.cell
    params = code.parameters()
    for p in params:
        p["repr"] = ", ".join(
            [repr(p["name"]), f"blocks={p['blocks']}", f"columns={p['columns']!r}"]
            + ([f"gates={p['gates']!r}"] if p["gates"] else [])
            + ([f"torch={p['torch']!r}"] if p["torch"] else [])
            + ([f"init={p['init']!r}"] if p["init"] != "uniform" else [])
        )
    doc = (cell.doc or f"The {cell.name} cell.").strip()
    return {
        "name": cell.name,
        "class_name": cell.class_name,
        "doc": doc,
        "summary": doc.splitlines()[0],
        "equations": code.equations(),
        "state_names": list(cell.state_names),
        "state_names_repr": repr(tuple(cell.state_names)),
        "torch_reference": repr((cell.torch_module, cell.torch_options) if cell.torch_module else None),
        "saved_names_repr": repr(tuple(s.name for s in d.saved)),
        "n_states": len(cell.states),
        "n_saved": len(d.saved),
        "saved_names_text": ", ".join(s.name for s in d.saved) or "nothing",
        # the kernels' parameter arguments, then the constants as scalars of the cell's dtype
        "param_args": ", ".join([p.name for p in cell.params] + [c.name for c in cell.constants]),
        "grad_args": ", ".join(f"d_{p.name}" for p in cell.params),
        "param_shapes": "; ".join([f"{p['name']} {p['shape']}" for p in params]
                                  + [f"{c.name} a scalar of x's dtype" for c in cell.constants]),
        "constants": {c.name: float(c.default) for c in cell.constants},
        "grad_shapes": "; ".join(f"d_{p['name']} like {p['name']}" for p in params),
        "parameters": params,
        "helpers": code.helpers(),
        "helper_options": HELPER_OPTIONS,
        "kernel_options": KERNEL_OPTIONS,
        "parallel_kernel_options": PARALLEL_KERNEL_OPTIONS,
        "chunk_rows": CHUNK_ROWS,
        "forward": code.forward(),
        "backward": code.backward(),
        "jacobian": code.jacobian(),
    }
