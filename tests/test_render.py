"""The render stage: the kernel vocabulary agrees with validation, and the layout changes no code."""

import ast

import pytest

from derive import kernel_names as names
from derive.cells import builtin_cells
from derive.render.layout import WIDTH, wrap_module
from derive.render.module import module_context
from derive.validate import RESERVED_PATTERN
from derive.write import generate as gen

FAMILIES = [
    names.gradient,
    names.jacobian_rows,
    names.product_jacobian,
    names.transposed_panels,
    names.panels,
    names.gate_view,
]


@pytest.mark.parametrize("family", FAMILIES + [names.shared_term, names.coefficient], ids=lambda f: f.__name__)
def test_every_family_of_generated_names_is_reserved(family):
    argument = 7 if family in (names.shared_term, names.coefficient) else "W_hh"
    assert RESERVED_PATTERN.fullmatch(family(argument))


def code(text: str) -> str:
    """The module's syntax tree without its docstrings (whose prose the layout reflows)."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            body.pop(0)
    return ast.dump(tree)


@pytest.mark.parametrize("cell", builtin_cells(), ids=lambda c: c.name)
def test_the_layout_keeps_lines_within_the_width_and_the_code_as_it_was(cell):
    d = gen.derive(cell)
    text = gen._env.get_template(gen.CELL_TEMPLATE).render(**module_context(d, ["h_t = ..."]))
    wrapped = wrap_module(text)
    assert code(wrapped) == code(text)
    long = [line for line in wrapped.splitlines() if len(line) > WIDTH]
    assert long == []
    assert max(len(line) for line in text.splitlines()) > WIDTH  # the test has something to wrap


NAMES = " + ".join(f"a{k}" for k in range(40))


@pytest.mark.parametrize(
    "line",
    [
        "    cse = (real(1) if aaaa > bbbb else (real(0.5) if aaaa == bbbb else (real(0) if aaaa < bbbb else aaaa + bbbb)))"
        " + d_min_c_new_pre1 * cccccccccccccccccccccc",
        f"    v = ({NAMES}) * ({NAMES}) + g({NAMES}, {NAMES})",
        f"    w = f(x)[{NAMES}] - (({NAMES}) + h(({NAMES})))",
    ],
)
def test_the_layout_breaks_only_inside_brackets(line):
    """A continued piece that closes a bracket it did not open is never broken outside it (a random
    spec's kernel once got a line that started with `+ d_min_c_new_pre1` outside any bracket)."""
    text = "def f():\n" + line + "\n"
    wrapped = wrap_module(text)
    assert ast.dump(ast.parse(wrapped)) == ast.dump(ast.parse(text))
    assert max(len(line) for line in wrapped.splitlines()) <= WIDTH
