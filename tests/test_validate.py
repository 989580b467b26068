"""Spec validation: every mistake is an error naming the cell, the equation and the symbol."""

import ast
import warnings
from pathlib import Path

import pytest
import sympy as sp

from derive.activations import relu, sigmoid, tanh
from derive.derivation import derive
from derive.kernel_names import KERNELS
from derive.spec import Cell
from derive.validate import (
    RESERVED,
    RESERVED_PATTERN,
    SpecError,
    SpecWarning,
    declared_names,
    validate,
    validate_package,
)
from derive.write import generate as gen

ROOT = Path(__file__).resolve().parent.parent


def minimal(name="toy"):
    """A valid one-state cell to break: h' = tanh(W x + U h + b)."""
    cell = Cell(name)
    x = cell.input()
    h = cell.state("h")
    return cell, x, h, cell.weight("W", x), cell.weight("U", h), cell.bias("b")


def mistake(kind):
    cell, x, h, W, U, b = minimal()
    real = lambda name: sp.Symbol(name, real=True)  # noqa: E731  (what a user might type)
    if kind == "undefined symbol":
        cell.update(h, tanh(W + U + real("q")))
    elif kind == "foreign symbol":
        cell.update(h, tanh(W + U + sp.Symbol("h")))
    elif kind == "state never updated":
        cell.state("c")
        cell.update(h, tanh(W + U + b))
    elif kind == "state updated twice":
        cell.update(h, tanh(W + U + b))
        cell.update(h, h * 0.5)
    elif kind == "cycle of lets":
        a = cell.let("a", tanh(W + real("a2")))
        cell.let("a2", a * U)
        cell.update(h, a)
    elif kind == "weight acting on its own result":
        V = cell.weight("V", real("a"))
        a = cell.let("a", tanh(W + V))
        cell.update(h, a)
    elif kind == "let used before defined":
        a = cell.let("a", tanh(W + real("later")))
        cell.let("later", U + b)
        cell.update(h, a)
    elif kind == "let redefined":
        a = cell.let("a", tanh(W + b))
        cell.let("a", a * U)
        cell.update(h, a)
    elif kind == "unsupported function":
        cell.update(h, sp.tan(W + U))
    elif kind == "unsupported sympy function":
        cell.update(h, sp.erf(W + U))
    elif kind == "non-integer power":
        cell.update(h, (W * W + U) ** sp.Rational(1, 3))
    elif kind == "complex constant":
        cell.update(h, tanh(W + sp.I * U))
    elif kind == "relation":
        cell.update(h, W > U)
    elif kind == "python keyword":
        a = cell.let("lambda", tanh(W + U))
        cell.update(h, a)
    elif kind == "kernel local":
        a = cell.let("unit", tanh(W + U))
        cell.update(h, a)
    elif kind == "array of the kernels":
        a = cell.let("states", tanh(W + U))
        cell.update(h, a)
    elif kind == "activation helper name":
        a = cell.let("sigmoid", tanh(W + U))
        cell.update(h, a)
    elif kind == "adjoint name":
        a = cell.let("d_h", tanh(W + U))
        cell.update(h, a)
    elif kind == "shared term name":
        a = cell.let("cse3", tanh(W + U))
        cell.update(h, a)
    elif kind == "new-value clash":
        a = cell.let("h_new", tanh(W + U))
        cell.update(h, a)
    elif kind == "let named like a state":
        a = cell.let("h", tanh(W + U))
        cell.update(h, a)
    elif kind == "parameter named like a product":
        cell.vector("U_h")
        cell.update(h, tanh(W + U))
    elif kind == "duplicate parameter":
        W2 = cell.weight("W", x)
        cell.update(h, tanh(W2 + U))
    elif kind == "not an identifier":
        a = cell.let("gate-1", tanh(W + U))
        cell.update(h, a)
    elif kind == "gate used twice":
        G = cell.weight("G", h, gates="iif")
        cell.update(h, tanh(W + G["i"]))
    elif kind == "empty gates":
        cell.weight("G", h, gates="")
        cell.update(h, tanh(W + U))
    elif kind == "weight on a parameter":
        G = cell.weight("G", b)
        cell.update(h, tanh(W + G))
    elif kind == "weight on an undeclared vector":
        G = cell.weight("G", real("v"))
        cell.update(h, tanh(W + G))
    elif kind == "bad init":
        cell.vector("w", init="normal")
        cell.update(h, tanh(W + U))
    elif kind == "no state":
        cell.states.clear()
    elif kind == "bad cell name":
        cell.name = "my-cell"
        cell.update(h, tanh(W + U))
    elif kind == "reserved class name":
        cell.class_name = "RecurrentCell"
        cell.update(h, tanh(W + U))
    elif kind == "backslash in doc":
        cell.doc = r"h = \tanh(W x)"
        cell.update(h, tanh(W + U))
    elif kind == "torch name missing":
        cell.torch_module = "RNN"
        cell.update(h, tanh(W + U))
    elif kind == "constant shadowing a state":
        cell.update(h, tanh(W + U) * cell.constant("h", 0.5))
    elif kind == "constant shadowing a parameter":
        cell.update(h, tanh(W + U) * cell.constant("b", 0.5))
    elif kind == "constant named like a kernel argument":
        cell.update(h, tanh(W + U) * cell.constant("dx", 0.5))
    elif kind == "constant named like a cell attribute":
        cell.update(h, tanh(W + U) * cell.constant("hidden_size", 0.5))
    elif kind == "constant named like a layer option":
        cell.update(h, tanh(W + U) * cell.constant("dropout", 0.5))
    elif kind == "private constant name":
        cell.update(h, tanh(W + U) * cell.constant("_forward", 0.5))
    elif kind == "constant declared twice":
        cell.constant("dt", 0.1)
        cell.update(h, tanh(W + U) * cell.constant("dt", 0.2))
    elif kind == "non-finite constant":
        cell.update(h, tanh(W + U) * cell.constant("dt", float("inf")))
    elif kind == "constant that is not a number":
        cell.update(h, tanh(W + U) * cell.constant("dt", "0.1"))
    elif kind == "weight on a constant":
        G = cell.weight("G", cell.constant("dt", 0.1))
        cell.update(h, tanh(W + G))
    elif kind == "constant typed as a plain symbol":
        cell.constant("dt", 0.1)
        cell.update(h, tanh(W + U) * sp.Symbol("dt"))
    elif kind == "sizes mixed in an equation":
        P = cell.size("P", "proj_size")
        z = cell.vector("z", size=P)
        cell.update(h, tanh(W + U + b + z))
    elif kind == "undeclared size":
        cell.vector("z", size="Q")
        cell.update(h, tanh(W + U + b))
    elif kind == "size named H":
        cell.size("H", "other_size")
        cell.update(h, tanh(W + U + b))
    elif kind == "size argument taken":
        cell.size("P", "hidden_size")
        cell.update(h, tanh(W + U + b))
    elif kind == "input mixed with H values":
        cell.update(h, tanh(W + U + b) * x)
    elif kind == "let of size I mixed with H values":
        x1 = cell.let("x1", 2 * sigmoid(cell.weight("Q", h, size=x.size)) * x, size=x.size)
        cell.update(h, tanh(W + U + b + x1))
    elif kind == "input in a let of size H":
        a = cell.let("a", sigmoid(U) * x)
        cell.update(h, tanh(W + a))
    elif kind == "state of size I":
        cell.state("s", size="I")
        cell.update(h, tanh(W + U + b))
    elif kind == "size named I":
        cell.size("I", "input_size")
        cell.update(h, tanh(W + U + b))
    return cell


MISTAKES = {
    "undefined symbol": r"equation h_new = .*\(update of 'h'\): symbol 'q' is not declared",
    "foreign symbol": r"equation h_new = .*: symbol 'h' was not made by this cell \(sympy.Symbol\('h'\) has other assumptions\)",
    "state never updated": r"state 'c': never updated: call cell.update\(c, ...\)",
    "state updated twice": r"state 'h': updated 2 times",
    "cycle of lets": r"equation a = tanh\(W_x \+ a2\) \(let\): cycle of definitions a -> a2 -> a",
    "weight acting on its own result": r"equation a = .*: cycle of definitions a -> a \(via the product V a\)",
    "let used before defined": r"equation a = .*: uses 'later' before 'later' is defined; .* move it up",
    "let redefined": r"equation a = U_h\*a \(let\): 'a' is defined twice",
    "unsupported function": r"equation h_new = tan\(.*\): function tan is not supported; supported: sigmoid, tanh, relu, "
    r"hard_sigmoid, softsign, exp, log, sqrt, abs, max, min, softplus, log_sigmoid, silu, gelu, elu, "
    r"sin, cos, identity \(from derive.activations\)",
    "unsupported sympy function": r"equation h_new = .*: function erf is not supported; supported: sigmoid",
    "non-integer power": r"power \(.*\)\*\*\(1/3\) has a non-integer exponent; only integer powers and sqrt are supported "
    r"\(write a\*\*b as exp\(b\*log\(a\)\)\)",
    "complex constant": r"equation h_new = .*: I \(ImaginaryUnit\) is not supported",
    "relation": r"equation h_new = .*: the right-hand side must be a number or an expression, got StrictGreaterThan",
    "python keyword": r"let 'lambda': 'lambda' is not an ASCII Python identifier \(or is a keyword\)",
    "kernel local": r"let 'unit': 'unit' is reserved by the generated code",
    "array of the kernels": r"let 'states': 'states' is reserved by the generated code",
    "activation helper name": r"let 'sigmoid': 'sigmoid' is reserved by the generated code",
    "adjoint name": r"let 'd_h': 'd_h' is reserved by the generated code .*d_\*",
    "shared term name": r"let 'cse3': 'cse3' is reserved",
    "new-value clash": r"let 'h_new': name 'h_new' is already used by the new value of state 'h'",
    "let named like a state": r"let 'h': name 'h' is already used by state 'h'",
    "parameter named like a product": r"parameter 'U_h': name 'U_h' is already used by parameter 'U'",
    "duplicate parameter": r"name 'W' is already used by parameter 'W'|parameter 'W': name 'W_x'",
    "not an identifier": r"let 'gate-1': 'gate-1' is not an ASCII Python identifier",
    "gate used twice": r"parameter 'G': gate 'i' is used twice in gates \['i', 'i', 'f'\]",
    "empty gates": r"parameter 'G': gates is empty",
    "weight on a parameter": r"parameter 'G': acts on 'b', which is not a vector of this cell .*belongs to parameter 'b'",
    "weight on an undeclared vector": r"parameter 'G': acts on 'v', which is not a vector of this cell",
    "bad init": r"parameter 'w': init must be one of \('uniform', 'zeros', 'ones'\)",
    "no state": r"states: no state declared",
    "bad cell name": r"cell name: 'my-cell' must be an ASCII Python identifier",
    "reserved class name": r"class name: 'RecurrentCell' must be an ASCII Python identifier, not a name the generated module uses",
    "backslash in doc": r"doc: the docstring must not contain",
    "torch name missing": r"parameter 'W': the cell names torch.nn.RNN but this parameter has no torch= name",
    "constant shadowing a state": r"constant 'h': name 'h' is already used by state 'h'",
    "constant shadowing a parameter": r"constant 'b': name 'b' is already used by parameter 'b'",
    "constant named like a kernel argument": r"constant 'dx': 'dx' is reserved by the generated code",
    "constant named like a cell attribute": r"constant 'hidden_size': 'hidden_size' is taken: a constant becomes a keyword "
    r"argument and an attribute of the cell and of derive.torch.Recurrent",
    "constant named like a layer option": r"constant 'dropout': 'dropout' is taken",
    "private constant name": r"constant '_forward': '_forward' is taken.*every name starting with _",
    "constant declared twice": r"constant 'dt': name 'dt' is already used by constant 'dt'",
    "non-finite constant": r"constant 'dt': the default must be a finite real number \(int or float\), got inf",
    "constant that is not a number": r"constant 'dt': the default must be a finite real number \(int or float\), got '0.1'",
    "weight on a constant": r"parameter 'G': acts on 'dt', which is not a vector of this cell .*'dt' is a constant, one scalar "
    r"for all units: multiply by it instead",
    "constant typed as a plain symbol": r"symbol 'dt' was not made by this cell",
    "sizes mixed in an equation": r"equation h_new = tanh\(.*\) \(update of 'h'\): 'z' has size P but 'h_new' has size H: "
    r"per-unit values of different sizes cannot combine; a matrix maps between sizes",
    "undeclared size": r"parameter 'z': size 'Q' is not declared: sizes are H, I or one of cell.size\(...\) \[\]",
    "input mixed with H values": r"equation h_new = x\*tanh\(.*\) \(update of 'h'\): 'x' has size I but 'h_new' has size H: "
    r"per-unit values of different sizes cannot combine; a matrix maps between sizes",
    "let of size I mixed with H values": r"equation h_new = tanh\(.*x1.*\) \(update of 'h'\): 'x1' has size I but "
    r"'h_new' has size H",
    "input in a let of size H": r"equation a = x\*sigmoid\(U_h\) \(let\): 'x' has size I but 'a' has size H",
    "state of size I": r"state 's': a state cannot have size I \(input_size\): states have H or a declared size",
    "size named I": r"size 'I': I, the input's size \(input_size\), needs no declaration: use size=x.size",
    "size named H": r"size 'H': 'H' is reserved by the generated code",
    "size argument taken": r"size 'P': its constructor argument 'hidden_size' must be a free identifier",
}


@pytest.mark.parametrize("kind", MISTAKES)
def test_a_mistake_is_an_error_naming_cell_equation_and_symbol(kind):
    cell = mistake(kind)
    with pytest.raises(SpecError) as error:
        derive(cell)
    message = str(error.value)
    assert message.startswith(f"cell {cell.name!r} is invalid:"), message
    assert __import__("re").search(MISTAKES[kind], message), f"{kind}: {message}"


def test_every_error_is_reported_at_once():
    cell, x, h, W, U, b = minimal()
    a = cell.let("a", sp.tan(W))
    cell.let("d_a", a + sp.Symbol("q", real=True))
    cell.update(h, a)
    with pytest.raises(SpecError) as error:
        validate(cell)
    assert "'d_a' is reserved" in str(error.value)
    cell.equations.pop(1)
    cell.equations.insert(1, type(cell.equations[0])(sp.Symbol("e", real=True), sp.Symbol("q", real=True) + sp.tan(U)))
    with pytest.raises(SpecError) as error:
        validate(cell)
    lines = str(error.value).splitlines()[1:]
    assert len(lines) == 3 and "function tan" in lines[0] and "'q' is not declared" in lines[2]


def test_the_input_is_a_value_of_size_I():
    """x in an equation is unit j of x_t, of size I: with values of size H it is a SpecError (above);
    reductions run over H units only, so cell.mean(x) stays a TypeError."""
    cell, x, h, W, U, b = minimal()
    assert x.size == "I" and sp.sympify(x) == x.symbol and (2 * x - 1).free_symbols == {x.symbol}
    with pytest.raises(TypeError, match=r"cell.mean\(\) of the input 'x': reductions run over values of size H, "):
        cell.mean(x)
    with pytest.raises(ValueError, match=r"cell 'toy': input\(\) called twice"):
        cell.input("u")
    with pytest.raises(ValueError, match=r"cell 'toy': update\(\) of q, which is not a state"):
        cell.update(sp.Symbol("q", real=True), U)


def warnings_of(cell) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        derive(cell)
    return [str(w.message) for w in caught if issubclass(w.category, SpecWarning)]


def test_suspicious_specs_derive_with_warnings():
    cell, x, h, W, U, b = minimal()
    a = cell.let("a", tanh(W + U + b))
    cell.let("unused", a * 2)
    cell.update(h, a)
    assert warnings_of(cell) == ["cell 'toy': equation unused = 2*a (let): let 'unused' is never used"]

    cell, x, h, W, U, b = minimal()
    cell.update(h, 0.5)
    found = warnings_of(cell)
    assert (
        "cell 'toy': equation h_new = 0.500000000000000 (update of 'h'): the update of 'h' is a constant: it depends on no input, state or parameter"
        in found
    )
    assert "cell 'toy': parameter 'W': is never used (its gradient is always zero)" in found
    assert "cell 'toy': state 'h': the output never depends on the input 'x'" in found

    cell, x, h, W, U, b = minimal()
    c = cell.state("c")
    G = cell.weight("G", x, gates="ab")
    cell.update(h, tanh(W + U + b + G["a"]))
    cell.update(c, c + h)
    assert warnings_of(cell) == [
        "cell 'toy': parameter 'G': gate block(s) ['b'] are never used",
        "cell 'toy': state 'c': never influences the output 'h'",
    ]


def test_an_unused_constant_is_a_warning_and_constants_alone_are_no_dependency():
    cell, x, h, W, U, b = minimal()
    cell.constant("unused", 1.0)
    dt = cell.constant("dt", 0.1)
    cell.update(h, tanh(W + U + b) * dt)
    assert warnings_of(cell) == ["cell 'toy': constant 'unused': is never used"]
    cell, x, h, W, U, b = minimal()
    cell.update(h, 2 * cell.constant("dt", 0.1))
    found = warnings_of(cell)
    assert (
        "cell 'toy': equation h_new = 2*dt (update of 'h'): the update of 'h' is a constant: it depends on no input, state or parameter"
        in found
    )


def test_constant_reserved_names_cover_the_constructors_and_attributes(torch):
    """A constant is a keyword argument of the cell and of derive.torch.Recurrent, and an attribute of the cell."""
    import inspect

    import numpy as np

    from derive.torch.layers import Recurrent
    from derive.validate import CONSTANT_RESERVED
    from generated import CELLS

    arguments = set(inspect.signature(Recurrent.__init__).parameters) | set(
        inspect.signature(CELLS["rnn"].__init__).parameters
    )
    attributes = set(vars(CELLS["rnn"](2, 3, dtype=np.float64)))
    missing = (
        {name for name in arguments | attributes if not name.startswith("_")}
        - {"self", "constants"}
        - CONSTANT_RESERVED
    )
    assert missing == set(), f"add to derive.validate.CONSTANT_RESERVED: {sorted(missing)}"


def test_the_builtin_cells_are_valid_without_warnings():
    for cell in gen.builtin_cells():
        assert warnings_of(cell) == []


def test_a_nested_activation_never_takes_a_declared_name():
    """tanh(a) would be named tanh_a, but a let already has that name: the node gets tanh_a2."""
    cell, x, h, W, U, b = minimal()
    t = cell.let("tanh_a", relu(W))
    a = cell.let("a", sigmoid(U + b))
    cell.update(h, tanh(a) * t)
    names = [n.symbol.name for n in derive(cell).nodes]
    assert names == ["tanh_a", "a", "tanh_a2", "h_new"]


def test_cells_of_one_package_need_distinct_names():
    first, second = minimal("same")[0], minimal("same")[0]
    with pytest.raises(SpecError, match=r"name 'same' is used by 2 cells"):
        validate_package([first, second])
    third = minimal("other")[0]
    third.class_name = "same"
    with pytest.raises(SpecError, match=r"class name 'same' is also a module name"):
        validate_package([first, third])


def kernel_identifiers(source: str) -> set[str]:
    """Names bound or read in a generated module: module level and inside kernel functions
    (activation helpers have their own closed scope)."""
    tree = ast.parse(source)
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
            if node.name not in KERNELS:
                continue  # a helper (activation, exp, ...): its locals live in its own scope
            names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            names |= {a.arg for a in node.args.args}
    return names


FUNCTION_SPECS = [
    c
    for name in ("all_functions", "sympy_functions")
    for c in gen.load_spec_file(ROOT / "tests" / "specs" / f"{name}.py")
]


@pytest.mark.parametrize("cell", gen.builtin_cells() + FUNCTION_SPECS, ids=lambda c: c.name)
def test_reserved_names_cover_every_identifier_of_the_generated_kernels(cell):
    """If the code generator starts using a new identifier, RESERVED must learn it; otherwise
    a spec could name a value like it and shadow it. (The test specs call every function helper.)"""
    derivation = derive(cell)
    from_spec = {name for name, _, _ in declared_names(cell)} | {n.symbol.name for n in derivation.nodes}
    if cell in FUNCTION_SPECS:
        source = gen.render_all([cell])[f"{cell.name}.py"]
    else:
        source = (ROOT / "generated" / f"{cell.name}.py").read_text()
    unknown = {
        name
        for name in kernel_identifiers(source)
        if name not in from_spec and name not in RESERVED and not RESERVED_PATTERN.fullmatch(name)
    }
    assert unknown == set(), f"add to derive.validate.RESERVED: {sorted(unknown)}"


def test_the_cli_reports_an_invalid_spec_file_and_writes_nothing(tmp_path):
    import os
    import subprocess
    import sys

    spec = tmp_path / "bad.py"
    spec.write_text(
        "import sympy as sp\nfrom derive.spec import Cell\nfrom derive.activations import tanh\n"
        "cell = Cell('bad')\nx = cell.input()\nh = cell.state('h')\nW = cell.weight('W', x)\n"
        "cell.update(h, tanh(W + sp.Symbol('q', real=True)))\n"
    )
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "derive", "generate", str(spec), "--out", str(out)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "generate: cell 'bad' is invalid:",
        "  equation h_new = tanh(W_x + q) (update of 'h'): symbol 'q' is not declared (declare it with cell.state, cell.let, cell.weight, "
        "cell.vector or cell.constant)",
        "nothing was written",
    ]
    assert not out.exists()
