"""Print SymPy expressions as kernel code, and lay out blocks of assignments with CSE.

Each kernel has its own map from symbols to code: a local variable name, or an array element
such as `b_ih[H + unit]`. Common subexpressions are eliminated once over the backward and
Jacobian expressions of a cell (forward computes each node once, from leaves: nothing to share);
each block then defines only the shared terms it uses, named `cse0`, `cse1`, ... in the order a
kernel first defines them.

Numbers print as `real(1)`, `real(1/6)`: `real` is the kernel's float type (`x.dtype.type`), so
a float32 kernel computes in float32 (Numba would promote `1 - o` with float32 `o` to float64).
Small integer powers print as products.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from derive.activations import ACTIVATIONS, INDICATORS, kernel_name
from derive.kernel_names import shared_term


class KernelPrinter(PythonCodePrinter):
    """Python/Numba source for one kernel; symbols print through `locations`."""

    def __init__(self, locations: dict[sp.Symbol, str] | None = None):
        super().__init__({"standard": "python3", "fully_qualified_modules": False})
        self.locations = dict(locations or {})
        self.shared_terms = 0

    def define(self, term: sp.Symbol) -> str:
        """The kernel's name of a shared term: the next `cse<k>` when the kernel first defines it."""
        if term not in self.locations:
            self.locations[term] = shared_term(self.shared_terms)
            self.shared_terms += 1
        return self.locations[term]

    def _print_Symbol(self, expr):
        return self.locations.get(expr, expr.name)

    def _print(self, expr, **kwargs):
        # Before SymPy's dispatch by class name, which knows its own `exp`, `sign`, ... (math.exp).
        if type(expr) in ACTIVATIONS or type(expr) in INDICATORS:
            return self._print_Function(expr)
        return super()._print(expr, **kwargs)

    def _print_Function(self, expr):
        args = [self._print(arg) for arg in expr.args]
        if type(expr) in ACTIVATIONS:
            return f"{kernel_name(type(expr))}({', '.join(args)})"
        if type(expr) in INDICATORS:
            return "(" + INDICATORS[type(expr)].format(*args) + ")"
        raise TypeError(f"no kernel code for function {expr.func}")

    def _typed(self, text: str, negative: bool) -> str:
        return f"-real({text})" if negative else f"real({text})"

    def _print_Integer(self, expr):
        return self._typed(str(abs(expr.p)), expr.p < 0)

    def _print_Rational(self, expr):
        return self._typed(f"{abs(expr.p)}/{expr.q}", expr.p < 0)

    def _print_Float(self, expr):
        return self._typed(repr(abs(float(expr))), expr < 0)

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if exponent.is_Integer and 1 <= abs(exponent) <= 4:
            factor = self.parenthesize(base, PRECEDENCE["Mul"], strict=False)
            if exponent == -1:
                return f"(real(1)/{factor})"
            product = "*".join([factor] * abs(int(exponent)))
            return f"({product})" if exponent > 0 else f"(real(1)/({product}))"
        return super()._print_Pow(expr, rational)


def display(expr: sp.Expr) -> str:
    """Compact one-line text of an expression, for comments."""
    return sp.sstr(expr, order="none")


@dataclass
class Line:
    """One assignment ready to print: `target op expr`, with the symbolic form as comment."""

    target: str
    op: str
    code: str
    comment: str | None = None

    def render(self) -> str:
        text = f"{self.target} {self.op} {self.code}"
        return f"{text}  # {self.comment}" if self.comment else text


class SharedTerms:
    """The result of one CSE over all of a cell's expressions."""

    def __init__(self, expressions: list[sp.Expr]):
        names = sp.numbered_symbols("cse", real=True)
        replacements, reduced = sp.cse(expressions, symbols=names, order="canonical")
        self.definitions = dict(replacements)
        self.order = {s: k for k, (s, _) in enumerate(replacements)}
        self.reduced = dict(zip(expressions, reduced))

    def rewrite(self, expr: sp.Expr) -> sp.Expr:
        return self.reduced.get(expr, expr)

    def needed(self, exprs: list[sp.Expr], done: set[sp.Symbol]) -> list[sp.Symbol]:
        """Shared terms these expressions use, with their own dependencies, in order."""
        result: list[sp.Symbol] = []

        def visit(expr):
            for s in sorted(expr.free_symbols & self.definitions.keys(), key=self.order.get):
                if s not in done:
                    done.add(s)
                    visit(self.definitions[s])
                    result.append(s)

        for expr in exprs:
            visit(expr)
        return result


def block(
    assignments: list[tuple[sp.Symbol, str, sp.Expr]],
    shared: SharedTerms,
    printer: KernelPrinter,
    targets: dict[sp.Symbol, str] | None = None,
    comment: bool = True,
) -> tuple[list[str], set[sp.Symbol]]:
    """Lines for `target op expr` assignments, each preceded by the shared terms it needs.

    Returns the lines and the free symbols they read (for the caller to load).
    """
    targets = targets or {}
    done: set[sp.Symbol] = set()
    lines: list[str] = []
    reads: set[sp.Symbol] = set()
    for symbol, op, expr in assignments:
        reduced = shared.rewrite(expr)
        for term in shared.needed([reduced], done):
            definition = shared.definitions[term]
            reads |= definition.free_symbols
            lines.append(Line(printer.define(term), "=", printer.doprint(definition)).render())
        reads |= reduced.free_symbols
        code = printer.doprint(reduced)
        note = display(expr) if comment and code != display(expr) and reduced == expr else None
        lines.append(Line(targets.get(symbol, symbol.name), op, code, note).render())
    return lines, reads - set(shared.definitions)
