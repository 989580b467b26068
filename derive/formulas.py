"""Readable text of a derivation: forward equations, BPTT equations and Jacobian blocks."""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from .derivation import Derivation


class _UnicodePrinter(StrPrinter):
    """One-line text with ·, ² and σ, keeping symbol names as written in the spec."""

    def _print_Mul(self, expr):
        return super()._print_Mul(expr).replace("*", "·")

    def _print_Pow(self, expr):
        base, exp = expr.args
        if exp == 2:
            return f"{self.parenthesize(base, PRECEDENCE['Pow'])}²"
        return super()._print_Pow(expr)

    def _print_Function(self, expr):
        name = {"sigmoid": "σ"}.get(expr.func.__name__, expr.func.__name__)
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"


def _pretty(expr) -> str:
    return _UnicodePrinter({"order": "none"}).doprint(expr)


def forward_lines(d: Derivation) -> list[str]:
    return [f"{n.symbol} = {_pretty(n.expr)}" for n in d.nodes]


def backward_lines(d: Derivation) -> list[str]:
    lines = []
    for level in reversed(range(d.levels)):
        for a in d.backward[level]:
            lines.append(f"{a.target} {a.op} {_pretty(a.expr)}")
    return lines


def jacobian_lines(d: Derivation) -> list[str]:
    """Each block ∂a_t/∂b_(t-1) as diag(direct) + Σ diag(coefficient)·W[gate] (...)."""
    lines = []
    states = d.cell.states
    names = {n.symbol: (f"{n.state}_t" if n.state else f"{n.symbol}_t") for n in d.nodes}
    for target, terms in d.jacobian.items():
        for k, state in enumerate(states):
            parts = []
            for t in terms:
                coefficient = _pretty(t.coefficient)
                if t.kind == "direct" and t.state == k:
                    parts.append(f"diag({coefficient})")
                elif t.kind == "projection":
                    gate = f"[{t.param.gates[t.gate]}]" if t.param.gates else ""
                    if t.param.operand == state.name:
                        parts.append(f"diag({coefficient})·{t.param.name}{gate}")
                    elif t.param.operand not in {s.name for s in states}:
                        parts.append(f"diag({coefficient})·{t.param.name}{gate}·∂{t.param.operand}_t/∂{state.name}_(t-1)")
            lines.append(f"∂{names[target]}/∂{state.name}_(t-1) = " + (" + ".join(parts) or "0"))
    return lines


def show_text(d: Derivation, part: str = "all") -> str:
    sections = {
        "forward": ("Forward (per unit; h, c, ... are the states at t-1)", forward_lines),
        "backward": ("Backward (d_v = ∂L/∂v; d_<s>_in flows in from step t+1 and y_t)", backward_lines),
        "jacobian": ("Jacobian of the state (W[g] = gate block g of W)", jacobian_lines),
    }
    chosen = sections if part == "all" else {part: sections[part]}
    out = [f"{d.cell.class_name} ({d.cell.name})"]
    for title, lines in chosen.values():
        out += ["", title] + [f"  {line}" for line in lines(d)]
    return "\n".join(out)
