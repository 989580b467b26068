"""The Jacobian kernel's code: per step and batch row, the rows of ∂s_t/∂s_(t-1).

Each row is a diagonal (direct) part plus, per projection W_g v, coefficient · W[g] · ∂v/∂s_(t-1).
For v a previous state that is a row of W; for v computed in the step (an in-step operand such as
an rh = r ⊙ h) its rows are computed first into `J_v`, and the product W J_v is taken with
`matmul` into `W_J`.
"""

from __future__ import annotations

import sympy as sp

from derive import kernel_names as names
from derive.derivation import Derivation, JacobianTerm

from .forward import reduction_size
from .locations import Locations, offset
from .printer import KernelPrinter, SharedTerms, block, display


def jacobian(d: Derivation, at: Locations, shared: SharedTerms) -> dict:
    printer = KernelPrinter(at.params_inline)
    rows, buffers, used = [], [], set()
    operand_products: dict[str, list] = {}
    for p in d.recurrent():
        if p.operand not in {s.name for s in at.state_index}:
            operand_products.setdefault(p.operand, []).append(p)
    reductions_of: dict[sp.Symbol, list] = {}
    for r in d.reductions():
        if r.operand not in d.jacobian:
            continue  # constant in s_(t-1): no term reads it
        reductions_of.setdefault(r.operand, []).append(r)
        buffers.append(f"{names.jacobian_rows(r.symbol.name)} = np.empty(S, J.dtype)  # ∂{r.symbol.name}/∂s_(t-1)")
    for target, terms in d.jacobian.items():
        if target in at.new_state_index:
            k = at.new_state_index[target]
            row, before, after = f"J[step, row, {at.state_offset(k)}", [], []
            title = f"∂{target.name}/∂s_(t-1): rows {at.state_span(k)} of J"
        else:
            rows_name = names.jacobian_rows(target.name)
            row = f"{rows_name}[unit"
            buffers.append(f"{rows_name} = np.empty(({d.size_of(target)}, S), J.dtype)")
            before, after = [f"{rows_name}[:] = 0.0"], []
            for p in operand_products.get(target.name, []):  # (W J_target).T = J_target.T W.T
                packed, product = names.transposed_panels(p.name), names.product_jacobian(p.name)
                buffers.append(
                    f"{packed} = pack({p.name}.T)  # {p.name}.T in column panels (see derive.runtime.matrix)"
                )
                buffers.append(f"{product} = np.empty((S, {p.name}.shape[0]), J.dtype)  # ({p.name} {rows_name}).T")
                after.append(f"matmul({rows_name}.T, {packed}, {product}, 0.0)")
            for r in reductions_of.get(target, []):  # ∂r/∂s_(t-1) = scale · Σ_unit J_target[unit]
                reduced = names.jacobian_rows(r.symbol.name)
                after += [f"{reduced}[:] = 0.0", "for unit in range(H):", f"    {reduced} += {rows_name}[unit]"]
                after += [f"{reduced} /= {reduction_size(r)}"] if r.kind == "mean" else []
            users = (
                "the products" if target.name in operand_products or not reductions_of.get(target) else "the reductions"
            )
            title = f"∂{target.name}/∂s_(t-1), needed by {users} of {target.name}"
        body, reads = _rows(d, at, terms, row, printer, shared)
        used |= reads
        rows.append({"title": title, "before": before, "size": d.size_of(target), "body": body, "after": after})
    return {"buffers": at.gate_views(used) + buffers, "rows": rows}


def _rows(
    d: Derivation, at: Locations, terms: list[JacobianTerm], row: str, printer: KernelPrinter, shared: SharedTerms
) -> tuple[list[str], set[sp.Symbol]]:
    """The loop body over units for one target: its coefficients, then their rows of J."""
    coefficients = [sp.Symbol(names.coefficient(k), real=True) for k in range(len(terms))]
    lines, reads = block([(c, "=", t.coefficient) for c, t in zip(coefficients, terms)], shared, printer, comment=False)
    used = set(reads)
    lines = at.loads(reads - set(printer.locations)) + lines
    for c, t in zip(coefficients, terms):
        note = f"  # {display(t.coefficient)}"
        if t.kind == "direct":
            lines.append(f"{row}, {at.state_offset(t.state)}] += {c}{note}")
            continue
        if t.kind == "reduction":  # the same row for every unit: rank one
            lines.append(f"for col in range(S):{note}")
            lines.append(f"    {row}, col] += {c} * {names.jacobian_rows(t.reduction.symbol.name)}[col]")
            continue
        operand = next((s for s in at.state_index if s.name == t.param.operand), None)
        if operand is not None:
            k = at.state_index[operand]
            lines.append(f"for col in range({at.state_sizes[k]}):{note}")
            lines.append(
                f"    {row}, {at.state_offset(k, 'col')}] += {c} * {t.param.name}[{offset(t.gate, size=t.param.size)}, col]"
            )
        else:
            lines.append(f"for col in range(S):{note}")
            product = names.product_jacobian(t.param.name)
            lines.append(f"    {row}, col] += {c} * {product}[col, {offset(t.gate, size=t.param.size)}]")
    return lines, used
