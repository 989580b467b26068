"""How derived formulas are written for people: display symbols and their two printers.

The derivation names values as the kernels do (`c_new`, `W_hh_h_i`, `d_f_pre`). Here each one
gets a display symbol built from the spec's metadata (state, parameter, gate and `let` names).
A display symbol is named by its LaTeX, so SymPy renders it as is (e.g. in Jupyter), and it has
a Unicode text form:

    what                              text                LaTeX
    the input                         x_t                 x_{t}
    a state before / after the step   h_{t-1} / h_t       h_{t-1} / h_{t}   (`c_new` is c_t)
    a `let` value                     f_t                 f_{t}
    an activation nested in an        tanh(c_t)           \\tanh(c_{t})      (written out)
      equation
    unit j of block g of W·v          W_hh[i] h_{t-1}     W_{hh}[i] h_{t-1}
    a per-unit parameter              b_ih[i]             b_{ih}[i]
    a named constant                  dt, gamma           \\mathrm{dt}, \\gamma
    adjoints (∂L/∂v)                  δf_t, δh_{t-1}, δ(W_hh h_{t-1}), δb_ih
    adjoint of a pre-activation       δf_t^pre
    adjoint arriving from t+1 and y_t δh_t^in

Per-unit (elementwise) products print with ⊙ (LaTeX \\odot); matrices are non-commutative
symbols, and their products print with · (juxtaposed in LaTeX). Sums and products are ordered
for reading: adjoints, then values in equation order, then previous states, then parameters
in declaration order; numbers first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy.printing.latex import LatexPrinter, greek_letters_set
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.str import StrPrinter

from derive.activations import abs as absolute
from derive.activations import inside_unit, positive, sigmoid, sqrt, step
from derive.derivation import UNITS, Derivation
from derive.spec import Param

# Rank groups: the order in which symbols appear in sums and products.
ADJOINT, VALUE, PREVIOUS, PARAMETER, BLOCK, MATRIX = range(6)


class diag(sp.Function):
    """diag(v): the diagonal matrix of a per-unit expression v (a matrix, so non-commutative)."""

    nargs = 1
    is_commutative = False


class column(sp.Function):
    """A per-unit expression v as a column vector, a factor of a rank-one term v·1ᵀ."""

    nargs = 1
    is_commutative = False


def latex_name(name: str, *subscripts: str) -> str:
    """`W_hh` → W_{hh}, `h` with t-1 → h_{t-1}, `h_tilde` with t → h_{tilde,t}; Greek bases as \\alpha."""
    base, *parts = name.split("_")
    if base in greek_letters_set:
        base = "\\" + base
    parts = [p for p in parts if p] + list(subscripts)
    return f"{base}_{{{','.join(parts)}}}" if parts else base


@dataclass
class Notation:
    """Display symbols of one cell: what each derivation symbol is written as, and how."""

    display: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)  # derivation symbol -> display expression
    text: dict[sp.Symbol, str] = field(default_factory=dict)  # display symbol -> Unicode text
    rank: dict[sp.Symbol, tuple[int, int]] = field(default_factory=dict)  # display symbol -> reading order
    bracketed: set[sp.Symbol] = field(default_factory=set)  # products W·v, parenthesized as factors
    vectors: dict[str, tuple[str, str]] = field(default_factory=dict)  # vector name -> (text, LaTeX) at this step
    constants: list[sp.Symbol] = field(default_factory=list)  # the cell's named constants (derivation symbols)

    def symbol(self, latex: str, text: str, group: int, commutative: bool = True) -> sp.Symbol:
        """A display symbol (created once per LaTeX name)."""
        symbol = sp.Symbol(latex, real=True) if commutative else sp.Symbol(latex, commutative=False)
        if symbol in self.text and self.text[symbol] != text:
            raise ValueError(f"display name {latex!r} stands for both {self.text[symbol]!r} and {text!r}")
        self.text[symbol] = text
        self.rank.setdefault(symbol, (group, len(self.rank)))
        return symbol

    def name(self, source: sp.Symbol, latex: str, text: str, group: int) -> sp.Symbol:
        """Give derivation symbol `source` a display symbol."""
        self.display[source] = symbol = self.symbol(latex, text, group)
        return symbol

    def __call__(self, expr) -> sp.Expr:
        """`expr` over derivation symbols, rewritten over display symbols."""
        if isinstance(expr, sp.MatrixBase):
            return expr.applyfunc(self)
        return sp.sympify(expr).xreplace(self.display)

    def to_text(self, expr) -> str:
        return TextPrinter(self).doprint(expr)

    def to_latex(self, expr) -> str:
        return FormulaLatexPrinter(self).doprint(expr)


def notation(d: Derivation) -> Notation:
    """The display symbols of every value, leaf and adjoint of a derivation."""
    n = Notation()
    cell = d.cell
    vectors = n.vectors
    vectors[cell.x.name] = (f"{cell.x.name}_t", latex_name(cell.x.name, "t"))
    n.name(cell.x.symbol, vectors[cell.x.name][1], vectors[cell.x.name][0], PREVIOUS)  # per unit, in values of size I
    for state in cell.states:
        vectors[state.name] = (f"{state.name}_{{t-1}}", latex_name(state.name, "t-1"))
        n.name(state.prev, vectors[state.name][1], vectors[state.name][0], PREVIOUS)
    for node in d.nodes:
        if node.auto:  # named after the parameters, below
            continue
        base = node.state or node.symbol.name
        text, latex = f"{base}_t", latex_name(base, "t")
        vectors[node.symbol.name] = (text, latex)
        n.name(node.symbol, latex, text, VALUE)
    for p in cell.params:
        for gate, source in zip(p.gates or (None,), p.symbols):
            if p.kind == "matrix":
                matrix(n, p, gate)  # ranked now: matrices read in declaration and gate order
                text, latex = vectors[p.operand]
                symbol = n.name(source, f"{_latex_param(p, gate)} {latex}", f"{_text_param(p, gate)} {text}", PARAMETER)
                n.bracketed.add(symbol)
            else:
                n.name(source, _latex_param(p, gate), _text_param(p, gate), PARAMETER)
    for r in cell.reductions:  # per-row values of the step
        vectors[r.symbol.name] = (f"{r.symbol.name}_t", latex_name(r.symbol.name, "t"))
        n.name(r.symbol, vectors[r.symbol.name][1], vectors[r.symbol.name][0], VALUE)
    if cell.reductions:
        n.name(UNITS, "H", "H", PARAMETER)
    n.constants = [c.symbol for c in cell.constants]
    for c in cell.constants:
        latex = latex_name(c.name)
        n.name(
            c.symbol, latex if latex.startswith("\\") or len(latex) == 1 else f"\\mathrm{{{latex}}}", c.name, PARAMETER
        )
    for node in d.nodes:
        if node.auto:  # written out where it is used: tanh(c_t)
            n.display[node.symbol] = n(node.expr)
    _name_adjoints(n, d, vectors)
    return n


def _text_param(p: Param, gate: str | None) -> str:
    return f"{p.name}[{gate}]" if gate else p.name


def _latex_param(p: Param, gate: str | None) -> str:
    return f"{latex_name(p.name)}[{gate}]" if gate else latex_name(p.name)


def _name_adjoints(n: Notation, d: Derivation, vectors: dict[str, tuple[str, str]]) -> None:
    """δv for every node and leaf, δv^pre for activation nodes, δs_t^in for incoming gradients."""
    for node in d.new_state_nodes():
        text, latex = vectors[node.symbol.name]
        n.name(d.incoming[node.state], f"\\delta {latex}^{{\\mathrm{{in}}}}", f"δ{text}^in", ADJOINT)
    for source, adjoint in d.adjoint.items():
        leaf = d.leaves.get(source)
        if leaf is not None and leaf.kind not in ("state", "input", "reduction"):  # stacked, see `stacked_adjoint`
            continue
        text, latex = n.to_text(n(source)), n.to_latex(n(source))
        if d.node(source) is not None and d.node(source).auto:
            text, latex = f"[{text}]", f"\\left[{latex}\\right]"
        n.name(adjoint, f"\\delta {latex}", f"δ{text}", ADJOINT)
        node = d.node(source)
        if node is not None and node.activation:
            for k in range(len(node.args)):
                label = f"pre{k + 1}" if len(node.args) > 1 else "pre"
                n.name(
                    d.preactivation(source, k), f"\\delta {latex}^{{\\mathrm{{{label}}}}}", f"δ{text}^{label}", ADJOINT
                )


# -- symbols of matrices and stacked vectors (used by formulas.py) --------------------------
def matrix(n: Notation, p: Param, gate: str | None = None, transposed: bool = False) -> sp.Symbol:
    """The matrix W (or its gate block W[g], or Wᵀ) as a non-commutative symbol."""
    latex, text = _latex_param(p, gate), _text_param(p, gate)
    if transposed:
        latex, text = f"{latex}^{{\\top}}", f"{text}ᵀ"
    return n.symbol(latex, text, MATRIX, commutative=False)


def stacked_adjoint(n: Notation, p: Param) -> sp.Symbol:
    """δ(W v) for a matrix (all gate blocks stacked), δb for a per-unit parameter."""
    if p.kind == "matrix":
        text, latex = n.vectors[p.operand]
        return n.symbol(f"\\delta({latex_name(p.name)} {latex})", f"δ({p.name} {text})", ADJOINT, commutative=False)
    return n.symbol(f"\\delta {latex_name(p.name)}", f"δ{p.name}", ADJOINT, commutative=False)


def vector(n: Notation, name: str, transposed: bool = False) -> sp.Symbol:
    """The vector `name` (the input, a state before the step, a node) as a matrix factor."""
    text, latex = n.vectors[name]
    if transposed:
        text, latex = f"{text}ᵀ", f"{latex}^{{\\top}}"
    return n.symbol(latex, text, MATRIX, commutative=False)


def ones_row(n: Notation) -> sp.Symbol:
    """1ᵀ, the row of ones: 1ᵀ·v sums v over the units."""
    return n.symbol("\\mathbf{1}^{\\top}", "1ᵀ", MATRIX, commutative=False)


def reduction_scale(n: Notation, size: int, kind: str) -> sp.Expr:
    """The factor of a reduction's rank-one term: 1/H, 1/(4H) for a mean, 1 for a sum."""
    if kind == "sum":
        return sp.S.One
    h = "H" if size == 1 else f"{size}H"
    return n.symbol(f"\\frac{{1}}{{{h}}}", f"(1/{h})" if size == 1 else f"(1/({h}))", PARAMETER)


def identity(n: Notation) -> sp.Symbol:
    return n.symbol("I", "I", MATRIX, commutative=False)


def block(n: Notation, of: str, wrt: str) -> sp.Symbol:
    """The Jacobian block ∂of/∂wrt as a non-commutative symbol (`of`, `wrt` are vector names)."""
    (a_text, a_latex), (b_text, b_latex) = n.vectors[of], n.vectors[wrt]
    return n.symbol(
        f"\\frac{{\\partial {a_latex}}}{{\\partial {b_latex}}}", f"∂{a_text}/∂{b_text}", BLOCK, commutative=False
    )


# -- printers -------------------------------------------------------------------------------
class _Reading:
    """Orders terms and factors for reading; shared by the text and LaTeX printers."""

    times: str  # between per-unit factors
    matmul: str  # between matrix factors
    minus: str

    def __init__(self, n: Notation, **settings):
        super().__init__(settings)
        self.n = n

    def _print(self, expr, **kwargs):
        # The table's functions print as `_print_Function` says, not as SymPy's namesakes (log).
        if isinstance(expr, sp.Function) and type(expr).__module__ == sigmoid.__module__:
            return self._print_Function(expr, **kwargs)
        return super()._print(expr, **kwargs)

    def _rank(self, expr, pick=min) -> tuple:
        ranks = [self.n.rank.get(s, (-1, 0)) for s in expr.free_symbols]
        return pick(ranks) if ranks else (-1, 0)

    def _term_rank(self, term) -> tuple:
        """Per-unit terms by their last symbol (W x_t + b + r_t ⊙ (W h_{t-1} + b)); matrix terms
        (Jacobian blocks) by their matrices: diag(d) first, then Jacobian blocks, then gate blocks
        of W in declaration order, then longer products."""
        matrices = term.args_cnc()[1]
        ranks = tuple(self.n.rank.get(m, (MATRIX, -1)) for m in matrices if isinstance(m, sp.Symbol))
        return (len(matrices), ranks, self._rank(term, max))

    def _print_Add(self, expr, order=None):
        terms = sorted(expr.args, key=self._term_rank)
        positive = next((t for t in terms if not t.could_extract_minus_sign()), None)
        if positive is not None:  # h_{t-1} − n_t rather than −n_t + h_{t-1}
            terms.remove(positive)
            terms.insert(0, positive)
        out = []
        for k, term in enumerate(terms):
            if term.could_extract_minus_sign():
                out.append((self.minus if k == 0 else f" {self.minus} ") + self._print(-term))
            else:
                out.append((" + " if k else "") + self._print(term))
        return "".join(out)

    def _print_Mul(self, expr):
        if expr.could_extract_minus_sign():
            return f"{self.minus}{self._print(-expr)}"
        commutative, matrices = expr.args_cnc()
        coefficient, rest = sp.Mul(*commutative).as_coeff_Mul()
        numerator, denominator = [], []
        for factor in sp.Mul.make_args(rest) if rest != 1 else ():
            base, exponent = factor.as_base_exp()
            if exponent.is_negative:
                denominator.append(base if exponent == -1 else sp.Pow(base, -exponent))
            else:
                numerator.append(factor)
        parts = [self._factor(f) for f in sorted(numerator, key=self._rank)]
        text = self.times.join(parts)
        if denominator:
            below = self.times.join(self._factor(f) for f in sorted(denominator, key=self._rank))
            text = self._fraction(text or "1", below, len(denominator) > 1)
        pieces = ([self._print(coefficient)] if coefficient != 1 else []) + ([text] if text else [])
        pieces += [self._factor(m) for m in matrices]
        return self.matmul.join(pieces) if pieces else "1"

    def _factor(self, factor) -> str:
        body = self._print(factor)
        if precedence(factor) < PRECEDENCE["Mul"] or factor in self.n.bracketed:
            return self._wrap(body)
        return body


class TextPrinter(_Reading, StrPrinter):
    """One line of readable Unicode: h_t = tanh(W_ih x_t + W_hh h_{t-1} + b_ih + b_hh)."""

    times, matmul, minus = " ⊙ ", "·", "−"
    _superscripts = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")

    def _wrap(self, body: str) -> str:
        return f"({body})"

    def _fraction(self, above: str, below: str, compound: bool) -> str:
        return f"{above} / ({below})" if compound else f"{above} / {below}"

    def _print_Symbol(self, expr):
        if expr not in self.n.text:
            raise ValueError(f"no display name for {expr}: the notation must name every symbol it prints")
        return self.n.text[expr]

    def _print_Pow(self, expr):
        base, exponent = expr.args
        if exponent.is_Integer and exponent > 0:
            return self.parenthesize(base, PRECEDENCE["Pow"]) + str(exponent).translate(self._superscripts)
        return super()._print_Pow(expr)

    def _print_Rational(self, expr):
        return f"({expr.p}/{expr.q})"

    def _print_Abs(self, expr):
        return f"|{self._print(expr.args[0])}|"

    def _print_Function(self, expr):
        args = [self._print(arg) for arg in expr.args]
        arg = ", ".join(args)
        if isinstance(expr, positive):
            return f"[{arg} > 0]"
        if isinstance(expr, inside_unit):
            return f"[0 < {arg} < 1]"
        if isinstance(expr, absolute):
            return f"|{arg}|"
        if isinstance(expr, step):
            return f"H({self._print(expr.args[0] - expr.args[1])})"
        if isinstance(expr, column):
            return self._factor(expr.args[0])
        name = {sigmoid: "σ", sqrt: "√"}.get(type(expr), type(expr).__name__)
        return f"{name}({arg})"

    def _print_MatrixBase(self, expr):
        return "[" + "; ".join(self._print(e) for e in expr) + "]"


class FormulaLatexPrinter(_Reading, LatexPrinter):
    """LaTeX of the same reading: \\sigma, \\odot, \\operatorname{diag}."""

    times, matmul, minus = " \\odot ", " ", "-"

    def _wrap(self, body: str) -> str:
        return f"\\left({body}\\right)"

    def _fraction(self, above: str, below: str, compound: bool) -> str:
        return f"\\frac{{{above}}}{{{below}}}"

    def _print_Symbol(self, expr, style="plain"):
        return expr.name

    def _print_Abs(self, expr, exp=None):
        return f"\\left|{self._print(expr.args[0])}\\right|"

    def _print_Function(self, expr, exp=None):
        arg = ", ".join(self._print(a) for a in expr.args)
        if isinstance(expr, positive):
            text = f"[{arg} > 0]"
        elif isinstance(expr, inside_unit):
            text = f"[0 < {arg} < 1]"
        elif isinstance(expr, absolute):
            text = f"\\left|{arg}\\right|"
        elif isinstance(expr, sqrt):
            text = f"\\sqrt{{{arg}}}"
        elif isinstance(expr, step):
            text = f"H\\left({self._print(expr.args[0] - expr.args[1])}\\right)"
        elif isinstance(expr, column):
            text = self._factor(expr.args[0])
        else:
            name = type(expr).__name__
            escaped = name.replace("_", "\\_")
            commands = {
                "sigmoid": "\\sigma",
                "tanh": "\\tanh",
                "exp": "\\exp",
                "log": "\\log",
                "sin": "\\sin",
                "cos": "\\cos",
                "max": "\\max",
                "min": "\\min",
            }
            command = commands.get(name, f"\\operatorname{{{escaped}}}")
            text = f"{command}\\left({arg}\\right)"
        return f"{text}^{{{exp}}}" if exp is not None else text

    def _print_MatrixBase(self, expr):
        return "\\begin{bmatrix} " + " \\\\ ".join(self._print(e) for e in expr) + " \\end{bmatrix}"
