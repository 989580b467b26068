"""Check a cell spec before it is derived: every message names the cell, the equation and the symbol.

Errors (one SpecError listing them; equations are checked once the names are sound):
- a name that is not an ASCII Python identifier, is a keyword, is reserved by the generated code
  (RESERVED, RESERVED_PATTERN) or is used twice (also by a generated symbol: `c_new`, `W_hh_h_i`);
- no input, no state, a state never updated or updated twice, a let defined twice;
- a symbol not declared through the Cell API, used before it is defined, or a cycle of definitions;
- a function that is not in the table (activations.py: SymPy's spellings are rewritten to it by the
  spec), a power other than an integer or half-integer one, a complex or infinite constant;
- parameters: gates empty or repeated, a weight acting on something that is not a vector, a bad
  init, a PyTorch name used twice or missing while the cell names a torch module;
- constants: a default that is not a finite real number, a name that a cell instance or
  derive.torch.Recurrent already uses (CONSTANT_RESERVED: constants become keyword arguments and attributes).
Warnings (SpecWarning): a let, a constant or a parameter gate block that is never used, an update that depends
on no input, state or parameter, an output that never depends on the input, a state that never influences the output.
"""

from __future__ import annotations

import keyword
import math
import warnings
from dataclasses import dataclass

import sympy as sp

from derive.activations import ACTIVATIONS, SUPPORTED
from derive.kernel_names import MODULE_NAMES, RESERVED, RESERVED_PATTERN  # what a spec must not name
from derive.runtime import RecurrentCell
from derive.spec import INITS, Cell

# A constant is a keyword argument and an attribute of the cell (`CoRNN(I, H, dt=0.1)`, `cell.dt`) and a
# keyword argument of derive.torch.Recurrent: it must not take a name either already has.
CONSTANT_RESERVED = frozenset(
    {name for name in dir(RecurrentCell) if not name.startswith("_")}
    | {"input_size", "hidden_size", "dtype", "seed", "params", "size_values"}  # RecurrentCell.__init__, attributes
    | {"cell", "num_layers", "bias", "batch_first", "dropout", "bidirectional", "device"}  # Recurrent.__init__
)


class SpecError(ValueError):
    """A cell spec that cannot be derived; the message lists every problem."""


class SpecWarning(UserWarning):
    """A cell spec that derives but probably does not say what was meant."""


@dataclass
class _Problems:
    cell: Cell
    errors: list[str]
    notes: list[str]

    def error(self, where: str, text: str) -> None:
        self.errors.append(f"{where}: {text}")

    def warn(self, where: str, text: str) -> None:
        self.notes.append(f"{where}: {text}")


def validate(cell: Cell) -> None:
    """Raise SpecError listing every error in `cell`; issue a SpecWarning per suspicious part."""
    problems = _Problems(cell, [], [])
    _check_cell(problems)
    if not problems.errors:
        _check_names(problems)
        _check_params(problems)
        _check_constants(problems)
    if not problems.errors:
        _check_sizes(problems)
    if not problems.errors:
        _check_equations(problems)
    if not problems.errors:
        _check_equation_sizes(problems)
    if not problems.errors:
        _check_dependencies(problems)
    if not problems.errors:
        _check_reductions(problems)
    if problems.errors:
        raise SpecError(f"cell {cell.name!r} is invalid:\n  " + "\n  ".join(problems.errors))
    for note in problems.notes:
        warnings.warn(f"cell {cell.name!r}: {note}", SpecWarning, stacklevel=3)


def validate_package(cells: list[Cell]) -> None:
    """Cells generated into one package need distinct names and class names."""
    errors = []
    for attribute in ("name", "class_name"):
        seen: dict[str, int] = {}
        for cell in cells:
            value = getattr(cell, attribute)
            seen[value] = seen.get(value, 0) + 1
        errors += [f"{attribute} {value!r} is used by {count} cells" for value, count in seen.items() if count > 1]
    modules = {c.name for c in cells}
    errors += [
        f"cell {c.name!r}: class name {c.class_name!r} is also a module name" for c in cells if c.class_name in modules
    ]
    if errors:
        raise SpecError("cells of one package clash:\n  " + "\n  ".join(errors))


# -- the cell as a whole --------------------------------------------------------------------
def _check_cell(p: _Problems) -> None:
    cell = p.cell
    if not _is_name(cell.name) or cell.name.startswith("__"):
        p.error("cell name", f"{cell.name!r} must be an ASCII Python identifier (it names the module {cell.name}.py)")
    if not _is_name(cell.class_name) or cell.class_name in MODULE_NAMES:
        p.error(
            "class name",
            f"{cell.class_name!r} must be an ASCII Python identifier, not a name the generated module uses",
        )
    if cell.x is None:
        p.error("input", "no input declared: call cell.input()")
    if not cell.states:
        p.error("states", "no state declared: call cell.state('h') (the first state is the output)")
    if '"""' in cell.doc or "\\" in cell.doc:
        p.error("doc", 'the docstring must not contain """ or backslashes (it is copied into generated docstrings)')


def _is_name(name) -> bool:
    return isinstance(name, str) and name.isascii() and name.isidentifier() and not keyword.iskeyword(name)


def declared_names(cell: Cell) -> list[tuple[str, str, int]]:
    """(name, what it is, which declaration) for every name a spec introduces, generated
    symbols included (a parameter's product buffer and gate blocks, a state's new value)."""
    names = [(cell.x.name, "the input", id(cell.x))]
    for s in cell.states:
        names += [(s.name, f"state {s.name!r}", id(s)), (f"{s.name}_new", f"the new value of state {s.name!r}", id(s))]
    for param in cell.params:
        origin = f"parameter {param.name!r}"  # its array, its product buffer W_v, its gate blocks
        names.append((param.name, origin, id(param)))
        if param.kind == "matrix":
            names.append((f"{param.name}_{param.operand}", origin, id(param)))
        names += [(symbol.name, origin, id(param)) for symbol in param.symbols]
    for eq in cell.equations:
        if eq.state is None:
            names.append((eq.symbol.name, f"let {eq.symbol.name!r}", id(eq)))
    names += [(c.name, f"constant {c.name!r}", id(c)) for c in cell.constants]
    names += [(r.symbol.name, f"{r.kind} {r.symbol.name!r}", id(r)) for r in cell.reductions]
    # a kernel local: P = ...; "I" is the input's size (_check_sizes says so)
    names += [(size, f"size {size!r}", hash(("size", size))) for size in cell.sizes if size != "I"]
    return names


def _check_names(p: _Problems) -> None:
    seen: dict[str, tuple[str, int]] = {}
    for name, origin, owner in declared_names(p.cell):
        if not _is_name(name):
            p.error(origin, f"{name!r} is not an ASCII Python identifier (or is a keyword)")
        elif (
            name in RESERVED or RESERVED_PATTERN.fullmatch(name)
        ) and origin != "the input":  # x is the kernels' input
            p.error(
                origin,
                f"{name!r} is reserved by the generated code (kernel names: see derive.kernel_names; "
                "d_*, cse<n>, coef<n>, J_*, *_J, *_rows, *_terms are generated)",
            )
        elif (
            name in seen
            and seen[name][1] != owner
            and not (origin.startswith("let") and seen[name][0].startswith("let"))
        ):
            p.error(origin, f"name {name!r} is already used by {seen[name][0]}")  # a let twice: _check_equations
        seen.setdefault(name, (origin, owner))


def _check_params(p: _Problems) -> None:
    cell = p.cell
    vectors = {cell.x.name} | {s.name for s in cell.states} | {eq.symbol.name for eq in cell.equations}
    torch_names: dict[str, str] = {}
    for param in cell.params:
        where = f"parameter {param.name!r}"
        if param.gates is not None:
            if len(param.gates) == 0:
                p.error(where, "gates is empty; give at least one gate or gates=None")
            repeated = sorted({g for g in param.gates if list(param.gates).count(g) > 1})
            if repeated:
                p.error(where, f"gate {repeated[0]!r} is used twice in gates {list(param.gates)}")
            if len(param.symbols) != len(param.gates):
                p.error(where, f"{len(param.symbols)} symbols for {len(param.gates)} gates")
        if param.kind == "matrix" and param.operand not in vectors:
            p.error(
                where,
                f"acts on {param.operand!r}, which is not a vector of this cell (the input, a state, "
                f"a let or a new state value)" + _what_is(cell, param.operand),
            )
        if param.init not in INITS and not _is_range(param.init):
            p.error(where, f"init must be one of {INITS} or a (low, high) pair of finite numbers, got {param.init!r}")
        if param.torch_name is not None:
            if param.torch_name in torch_names:
                p.error(where, f"PyTorch name {param.torch_name!r} is also given to {torch_names[param.torch_name]}")
            torch_names[param.torch_name] = where
        elif cell.torch_module:
            p.error(where, f"the cell names torch.nn.{cell.torch_module} but this parameter has no torch= name")


def _check_constants(p: _Problems) -> None:
    for constant in p.cell.constants:
        where = f"constant {constant.name!r}"
        default = constant.default
        if isinstance(default, bool) or not isinstance(default, (int, float)) or not math.isfinite(default):
            p.error(where, f"the default must be a finite real number (int or float), got {default!r}")
        if constant.name in CONSTANT_RESERVED or constant.name.startswith("_"):
            p.error(
                where,
                f"{constant.name!r} is taken: a constant becomes a keyword argument and an attribute of the "
                "cell and of derive.torch.Recurrent, which already use it (derive.validate.CONSTANT_RESERVED "
                "and every name starting with _)",
            )


def _what_is(cell: Cell, name: str) -> str:
    for param in cell.params:
        if name == param.name or name in {s.name for s in param.symbols}:
            return f"; {name!r} belongs to parameter {param.name!r}, a weight acts on vectors, not on parameters"
    if name in {c.name for c in cell.constants}:
        return f"; {name!r} is a constant, one scalar for all units: multiply by it instead"
    return ""


def _is_range(init) -> bool:
    return (
        isinstance(init, tuple)
        and len(init) == 2
        and all(isinstance(v, (int, float)) and abs(v) < float("inf") for v in init)
        and init[0] <= init[1]
    )


# -- equations --------------------------------------------------------------------------------
def _check_equations(p: _Problems) -> None:
    """Supported functions and constants, each symbol declared and defined before its use,
    states updated exactly once, lets defined once."""
    cell = p.cell
    declared = {s.prev for s in cell.states} | {sym for param in cell.params for sym in param.symbols}
    declared |= {c.symbol for c in cell.constants} | {cell.x.symbol}
    reductions = {r.symbol: r for r in cell.reductions}
    by_name = {sym.name: sym for sym in declared | {eq.symbol for eq in cell.equations}}
    defined_at = {eq.symbol for eq in cell.equations}
    product_of = {
        sym: (param, by_name[param.operand])
        for param in cell.params
        if param.kind == "matrix" and by_name.get(param.operand) in defined_at
        for sym in param.symbols
    }
    updates: dict[str, int] = {}
    defined = set(declared)
    for eq in cell.equations:
        where = _equation(eq)
        _check_expression(p, where, eq.expr)
        if eq.state is not None:
            updates[eq.state] = updates.get(eq.state, 0) + 1
        elif eq.symbol in defined:
            p.error(
                where,
                f"{eq.symbol.name!r} is defined twice; a let cannot be redefined, give the new value another name",
            )
        reported = set()
        for symbol in sorted(eq.expr.free_symbols, key=str):
            if symbol in product_of and product_of[symbol][1] not in defined:
                param, operand = product_of[symbol]
                if operand not in reported:
                    reported.add(operand)
                    p.error(where, _used_early(cell, eq, operand, f"the product {param.name} {operand.name}"))
            elif symbol in reductions and reductions[symbol].operand not in defined:
                if symbol not in reported:
                    reported.add(symbol)
                    p.error(
                        where,
                        _used_early(
                            cell, eq, reductions[symbol].operand, f"the {reductions[symbol].kind} {symbol.name}"
                        ),
                    )
            elif symbol in defined or symbol in product_of or symbol in reductions:
                continue
            elif symbol in defined_at:
                if symbol not in reported:
                    reported.add(symbol)
                    p.error(where, _used_early(cell, eq, symbol, repr(symbol.name)))
            elif symbol.name in by_name or (cell.x and symbol.name == cell.x.name):
                p.error(
                    where,
                    f"symbol {symbol.name!r} was not made by this cell (sympy.Symbol({symbol.name!r}) has other "
                    "assumptions); use the symbol that cell.input/state/let/weight returned",
                )
            else:
                p.error(
                    where,
                    f"symbol {symbol.name!r} is not declared (declare it with cell.state, cell.let, cell.weight, "
                    "cell.vector or cell.constant)",
                )
        defined.add(eq.symbol)
    for s in cell.states:
        count = updates.get(s.name, 0)
        if count != 1:
            p.error(
                f"state {s.name!r}",
                f"never updated: call cell.update({s.name}, ...)" if count == 0 else f"updated {count} times",
            )


def _check_reductions(p: _Problems) -> None:
    """A reduction sums a per-unit value: its operand must depend on something with units (a
    state, a parameter, a product), not only on constants and other reductions."""
    cell = p.cell
    per_row = {c.symbol for c in cell.constants} | {r.symbol for r in cell.reductions}
    values = {eq.symbol: eq.expr for eq in cell.equations}

    def units(symbol, seen=frozenset()) -> bool:
        if symbol in per_row or symbol in seen:
            return False
        if symbol not in values:
            return True
        return any(units(s, seen | {symbol}) for s in values[symbol].free_symbols)

    for r in cell.reductions:
        if not units(r.operand):
            p.error(
                f"{r.kind} {r.symbol.name!r}",
                f"reduces {sp.sstr(values[r.operand], order='none')}, which has no units (it depends only on "
                "constants and per-row reductions): reduce a per-unit value, e.g. a state or a product",
            )
    sizes = cell.symbol_sizes()
    for r in cell.reductions:
        users = [eq.symbol.name for eq in cell.equations if r.symbol in eq.expr.free_symbols and eq.size != "H"]
        if sizes[r.operand] != "H" or users:
            p.error(
                f"{r.kind} {r.symbol.name!r}",
                f"reductions run over and into values of size H only (not yet other sizes): it reduces "
                f"{r.operand.name!r} of size {sizes[r.operand]}"
                + (f" and is used by {', '.join(repr(u) for u in users)} of another size" if users else ""),
            )


def _check_sizes(p: _Problems) -> None:
    """Declared sizes are identifiers other than H and I, with distinct constructor arguments;
    every state, let and parameter has H, I (the input's size; not for states) or a declared size."""
    cell = p.cell
    for name, argument in cell.sizes.items():
        if name == "I":
            p.error(f"size {name!r}", "I, the input's size (input_size), needs no declaration: use size=x.size")
            continue
        if not _is_name(name) or name == "H":
            p.error(f"size {name!r}", "a size must be an identifier other than H (hidden_size) and I (input_size)")
        if not _is_name(argument) or argument in CONSTANT_RESERVED or argument in {c.name for c in cell.constants}:
            p.error(f"size {name!r}", f"its constructor argument {argument!r} must be a free identifier")
    known = {"H", "I", *cell.sizes}
    for s in cell.states:
        if s.size == "I":
            p.error(
                f"state {s.name!r}",
                "a state cannot have size I (input_size): states have H or a declared size (cell.size), at most "
                "hidden_size; keep a value of size I in a let and map it to the state with a weight",
            )
    owners = [(f"state {s.name!r}", s.size) for s in cell.states]
    owners += [(f"parameter {q.name!r}", q.size) for q in cell.params]
    owners += [(_equation(eq), eq.size) for eq in cell.equations if eq.state is None]
    for where, size in owners:
        if size not in known:
            p.error(
                where, f"size {size!r} is not declared: sizes are H, I or one of cell.size(...) {sorted(cell.sizes)}"
            )


def _check_equation_sizes(p: _Problems) -> None:
    """Each per-unit value in an equation has the size of the value it defines (a matrix maps
    between sizes: its product has the size of its rows)."""
    cell = p.cell
    sizes = cell.symbol_sizes()
    for eq in cell.equations:
        for symbol in sorted(eq.expr.free_symbols & sizes.keys(), key=str):
            if sizes[symbol] != eq.size:
                p.error(
                    _equation(eq),
                    f"{symbol.name!r} has size {sizes[symbol]} but {eq.symbol.name!r} has size {eq.size}: "
                    "per-unit values of different sizes cannot combine; a matrix maps between sizes",
                )


def _equation(eq) -> str:
    kind = f"update of {eq.state!r}" if eq.state else "let"
    return f"equation {eq.symbol.name} = {sp.sstr(eq.expr, order='none')} ({kind})"


def _used_early(cell: Cell, eq, symbol: sp.Symbol, what: str) -> str:
    """`eq` reads `symbol` (through `what`), which a later equation defines."""
    cycle = _cycle_through(cell, eq.symbol, symbol)
    if cycle:
        path = " -> ".join(s.name for s in cycle)
        return f"cycle of definitions {path} (via {what}); a value cannot depend on itself within a step"
    return f"uses {what} before {symbol.name!r} is defined; equations are evaluated in the order written, move it up"


def _cycle_through(cell: Cell, start: sp.Symbol, via: sp.Symbol) -> list[sp.Symbol] | None:
    """A path via -> ... -> start in the graph 'defined from', if any, closed as start -> via -> ... -> start."""
    graph = _definition_graph(cell)
    path, seen = [via], {via}

    def visit(node):
        if node == start:
            return True
        for nxt in sorted(graph.get(node, ()), key=str):
            if nxt not in seen:
                seen.add(nxt)
                path.append(nxt)
                if visit(nxt):
                    return True
                path.pop()
        return False

    return [start, *path] if visit(via) else None


def _definition_graph(cell: Cell) -> dict[sp.Symbol, set[sp.Symbol]]:
    """symbol -> the defined symbols its definition reads (a product reads its operand)."""
    defined = {eq.symbol.name: eq.symbol for eq in cell.equations}
    product_operand = {
        sym: defined[param.operand]
        for param in cell.params
        if param.kind == "matrix" and param.operand in defined
        for sym in param.symbols
    }
    graph: dict[sp.Symbol, set[sp.Symbol]] = {}
    for eq in cell.equations:
        reads = {product_operand.get(s, s) for s in eq.expr.free_symbols}
        graph.setdefault(eq.symbol, set()).update(s for s in reads if s.name in defined)
    return graph


def _check_expression(p: _Problems, where: str, expr) -> None:
    if not isinstance(expr, sp.Expr):
        p.error(where, f"the right-hand side must be a number or an expression, got {type(expr).__name__}")
        return
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Add, sp.Mul)) or type(node) is sp.Symbol:
            continue
        if isinstance(node, sp.Pow):
            if not node.exp.is_Integer:
                p.error(
                    where,
                    f"power {node} has a non-integer exponent; only integer powers and sqrt are supported "
                    "(write a**b as exp(b*log(a)))",
                )
        elif isinstance(node, sp.Number):
            if not (node.is_real and node.is_finite):
                p.error(where, f"constant {node} is not a finite real number")
        elif isinstance(node, sp.Function) or getattr(node, "is_Function", False):
            if type(node) not in ACTIVATIONS:
                p.error(
                    where,
                    f"function {type(node).__name__} is not supported; supported: {', '.join(SUPPORTED)} "
                    "(from derive.activations)",
                )
        else:
            p.error(
                where,
                f"{node} ({type(node).__name__}) is not supported in an equation; use numbers, symbols "
                f"of the cell, + - * /, integer powers and the activations {', '.join(SUPPORTED)}",
            )


# -- warnings: parts that are never used or equations that depend on nothing ------------------
def _check_dependencies(p: _Problems) -> None:
    cell = p.cell
    used = set().union(*(eq.expr.free_symbols for eq in cell.equations))
    constants = {c.symbol for c in cell.constants}
    operands = {param.operand for param in cell.params if param.kind == "matrix" and set(param.symbols) & used}
    operands |= {r.operand.name for r in cell.reductions if r.symbol in used}
    for eq in cell.equations:
        if eq.state is None and eq.symbol not in used and eq.symbol.name not in operands:
            p.warn(_equation(eq), f"let {eq.symbol.name!r} is never used")
        if eq.state is not None and not eq.expr.free_symbols - constants:
            p.warn(
                _equation(eq), f"the update of {eq.state!r} is a constant: it depends on no input, state or parameter"
            )
    for constant in cell.constants:
        if constant.symbol not in used:
            p.warn(f"constant {constant.name!r}", "is never used")
    for param in cell.params:
        unused = [g for g, s in zip(param.gates or [None], param.symbols) if s not in used]
        if len(unused) == len(param.symbols):
            p.warn(f"parameter {param.name!r}", "is never used (its gradient is always zero)")
        elif unused:
            p.warn(f"parameter {param.name!r}", f"gate block(s) {unused} are never used")
    reaches = _influence(cell)
    output = cell.states[0].name
    if "input" not in reaches[output]:
        p.warn(f"state {output!r}", f"the output never depends on the input {cell.x.name!r}")
    for s in cell.states[1:]:
        if s.name not in reaches[output]:
            p.warn(f"state {s.name!r}", f"never influences the output {output!r}")


def _influence(cell: Cell) -> dict[str, set[str]]:
    """For each state: the states and "input" its value depends on, over any number of steps."""
    states = {s.prev: s.name for s in cell.states}
    input_products = {sym for param in cell.params if param.operand == cell.x.name for sym in param.symbols}
    input_products.add(cell.x.symbol)  # the input itself, per unit
    products = {sym: param.operand for param in cell.params if param.kind == "matrix" for sym in param.symbols}
    values = {eq.symbol.name: eq for eq in cell.equations}
    reductions = {r.symbol: r.operand for r in cell.reductions}
    direct: dict[str, set[str]] = {}

    def sources(symbol, seen) -> set[str]:
        if symbol in seen:
            return set()
        seen.add(symbol)
        if symbol in states:
            return {states[symbol]}
        if symbol in input_products:
            return {"input"}
        if symbol in products:
            operand = products[symbol]
            if operand in values:
                return sources(values[operand].symbol, seen)
            return {states[s] for s in states if s.name == operand}
        if symbol in reductions:
            return sources(reductions[symbol], seen)
        if symbol.name in values:
            return set().union(*(sources(s, seen) for s in values[symbol.name].expr.free_symbols))
        return set()

    for eq in cell.equations:
        if eq.state is not None:
            direct[eq.state] = set().union(*(sources(s, set()) for s in eq.expr.free_symbols))
    reaches = {name: set(direct.get(name, ())) for name in cell.state_names}
    changed = True
    while changed:
        changed = False
        for name in reaches:
            more = set().union(*(reaches[s] for s in reaches[name] if s in reaches)) - reaches[name]
            if more:
                reaches[name] |= more
                changed = True
    return reaches
