"""Everything `templates/cell.py.jinja` lays out for one cell: the kernels' code (forward.py,
backward.py, jacobian.py), their docstrings' contracts, the class's parameters, the imports."""

from __future__ import annotations

import sympy as sp

from derive import kernel_names as names
from derive.activations import ACTIVATIONS, kernel_name
from derive.derivation import Derivation
from derive.spec import param_columns, shape_text

from .backward import Backward
from .forward import forward
from .jacobian import jacobian
from .locations import Locations
from .printer import SharedTerms

# Numba options of the generated functions (see derive/runtime/compiler.py for why these).
KERNEL_OPTIONS = 'nogil=True, fastmath={"contract"}, error_model="numpy", pipeline_class=NoAliasPipeline'
# Steps are processed in chunks of about this many rows (steps x batch): input products and
# gradient products stay large enough for the matrix tiles, buffers stay in cache and memory stays bounded.
CHUNK_ROWS = 256


def shared_terms(d: Derivation) -> SharedTerms:
    """One CSE over the backward and Jacobian expressions (forward computes each node once)."""
    exprs = [a.expr for b in d.backward.values() for a in b]
    exprs += [t.coefficient for terms in d.jacobian.values() for t in terms]
    return SharedTerms(exprs)


def activation_imports(d: Derivation) -> list[str]:
    """The kernel_math functions the kernels call (forward, and the derivative rules)."""
    exprs = [n.expr for n in d.nodes] + [a.expr for b in d.backward.values() for a in b]
    exprs += [t.coefficient for terms in d.jacobian.values() for t in terms]
    calls = {type(call) for e in exprs for call in e.atoms(sp.Function)} & ACTIVATIONS.keys()
    return sorted(kernel_name(a) for a in calls)


def parameters(d: Derivation) -> list[dict]:
    cell = d.cell
    result = []
    for p in cell.params:
        columns, shape = param_columns(p, cell), shape_text(p, cell)
        role = f"acts on {p.operand}" if p.kind == "matrix" else "per-unit vector"
        gates = f", gates {', '.join(p.gates)}" if p.gates else ""
        arguments = (
            [repr(p.name), f"blocks={p.blocks}", f"columns={columns!r}"]
            + ([f"gates={p.gates!r}"] if p.gates else [])
            + ([f"torch={p.torch_name!r}"] if p.torch_name else [])
            + ([f"init={p.init!r}"] if p.init != "uniform" else [])
            + ([f"size={p.size!r}"] if p.size != "H" else [])
        )
        result.append(
            {
                "name": p.name,
                "shape": shape,
                "doc": f"{shape}, {role}{gates}" + (f"; PyTorch `{p.torch_name}`" if p.torch_name else ""),
                "repr": ", ".join(arguments),
            }
        )
    return result


def glossary(d: Derivation) -> list[str]:
    """How the kernels name things, from this cell's own names (wrapped by the layout)."""
    cell = d.cell
    new = d.new_state_nodes()[0].symbol.name
    state = cell.states[0].name
    first = [f"`{new}` is {state}_t, `{state}` is {state}_(t-1)"]
    if d.matrices:
        p = d.matrices[0]
        block = f"gate block {p.gates[0]} of " if p.gates else ""
        first.append(f"`{p.symbols[0].name}` is {block}{p.name}·{p.operand}")
    nested = [n.symbol.name for n in d.nodes if n.auto]
    if nested:
        first.append(f"`{nested[0]}` is a nested activation, named after its argument")
    lines = ["; ".join(first) + ";"]
    lines.append(
        "`d_v` is dL/dv (`d_v_pre`: before v's activation, `d_v_acc`: the part from later levels and products);"
    )
    lines.append("`cse0`, `cse1`, ... are subexpressions shared within a kernel, `coef0`, ... Jacobian coefficients.")
    return lines


def size_context(d: Derivation, at: Locations) -> dict:
    """What the kernels' and the class's docstrings say about sizes, and the kernels' lines that
    read the declared sizes (all as before for a cell whose values all have size H)."""
    cell = d.cell
    sizes = [s.size for s in cell.states]
    if not cell.sizes:
        shapes = f"{', '.join(cell.state_names)}, each (B, H)"
    else:
        shapes = ", ".join(f"{s.name} (B, {s.size})" for s in cell.states)
    narrow = [s for s in cell.states if s.size != "H"]
    return {
        "size_lines": at.size_lines(),
        "size_names": "".join(f", {size} = {argument}" for size, argument in cell.sizes.items()),
        "state_shapes": shapes,
        "state_total": f"{len(sizes)}*H" if set(sizes) == {"H"} else " + ".join(sizes),
        "output_size": sizes[0],
        "sizes": dict(cell.sizes),
        "state_sizes_repr": repr(tuple(sizes)),
        "narrow_note": "".join(f"; {s.name} in the first {s.size} columns" for s in narrow),
        # a tape keeping values of size I has rows max(H, I) wide; each value in its first columns
        "tape_width": "max(H, I)" if at.wide_tape else "H",
        "saved_sizes": repr(tuple(at.saved_sizes)) if set(at.saved_sizes) - {"H"} else "",
    }


def module_context(d: Derivation, equations: list[str]) -> dict:
    """Everything `templates/cell.py.jinja` lays out for one cell; `equations` are the forward
    equations in display form (`derive.analysis.formulas`, as on the docs pages)."""
    cell = d.cell
    at = Locations(d)
    shared = shared_terms(d)
    params = parameters(d)
    doc = (cell.doc or f"The {cell.name} cell.").strip()
    gradients = [names.gradient(p.name) for p in cell.params]
    return {
        "name": cell.name,
        "class_name": cell.class_name,
        "doc": doc,
        "summary": doc.splitlines()[0],
        "equations": equations,
        "glossary": "Kernel names: " + " ".join(glossary(d)),
        "state_names": list(cell.state_names),
        "state_names_repr": repr(tuple(cell.state_names)),
        "torch_reference": repr((cell.torch_module, cell.torch_options) if cell.torch_module else None),
        "saved_names_repr": repr(tuple(s.name for s in d.saved)),
        "n_states": len(cell.states),
        "n_saved": len(d.saved),
        "saved_names_text": ", ".join(s.name for s in d.saved) or "nothing",
        # the kernels' parameter arguments, then the constants as scalars of the cell's dtype
        "param_args": ", ".join([p.name for p in cell.params] + [c.name for c in cell.constants]),
        "grad_args": ", ".join(gradients),
        "param_shapes": "; ".join(
            [f"{p['name']} {p['shape']}" for p in params] + [f"{c.name} a scalar of x's dtype" for c in cell.constants]
        ),
        "constants": {c.name: float(c.default) for c in cell.constants},
        "grad_shapes": "; ".join(f"{names.gradient(p['name'])} like {p['name']}" for p in params),
        "parameters": params,
        "activation_imports": [
            f"from derive.runtime.kernel_math import {', '.join(used)}" for used in [activation_imports(d)] if used
        ],
        # row_sums only where a reduction adds up its terms
        "matrix_imports": ", ".join(["add_column_sums", "matmul", "pack"] + (["row_sums"] if d.reductions() else [])),
        "kernel_options": KERNEL_OPTIONS,
        "chunk_rows": CHUNK_ROWS,
        "forward": forward(d, at),
        "backward": Backward(d, at, shared).code(),
        "jacobian": jacobian(d, at, shared),
    } | size_context(d, at)
