"""Property-based tests (hypothesis): random shapes, dtypes and layouts through every cell; random
valid specs derive, generate and pass the finite-difference check; random invalid specs are
rejected with a clear error and change nothing."""

import hashlib
import importlib
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from derive.activations import (
    abs,
    cos,
    elu,
    gelu,
    hard_sigmoid,
    identity,
    log_sigmoid,
    max,
    min,
    relu,
    sigmoid,
    silu,
    sin,
    softplus,
    softsign,
    tanh,
)
from derive.spec import Cell
from derive.tools.gradcheck import Problem, check_cell
from derive.validate import SpecError
from derive.write import generate as gen
from tests.conftest import ALL_CELLS as CELLS
from tests.conftest import CELL_NAMES
from tests.test_inputs import layouts

ROOT = Path(__file__).resolve().parent.parent
ACTIVATIONS = [
    sigmoid,
    tanh,
    relu,
    hard_sigmoid,
    softsign,
    identity,
    softplus,
    log_sigmoid,
    silu,
    gelu,
    elu,
    sin,
    cos,
    abs,
]


# -- random shapes, dtypes and layouts through every built-in cell --------------------------
def outputs(cell, x, state0, dy):
    y, final, tape = cell.forward(x, state0)
    grads = cell.backward(tape, dy)
    return [y, *final, grads.x, *grads.params.values(), *grads.state0, cell.jacobian(tape)]


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(CELL_NAMES),
    sizes=st.tuples(st.integers(0, 5), st.integers(0, 4), st.integers(1, 4), st.integers(1, 5)),
    dtype=st.sampled_from([np.float32, np.float64]),
    given_as=st.sampled_from(
        ["cell dtype", "int16", "float16", "list", "strided view", "reversed strides", "Fortran order"]
    ),
    seed=st.integers(0, 2**16),
)
def test_any_shape_dtype_and_layout(name, sizes, dtype, given_as, seed):
    T, B, I, H = sizes
    cell = CELLS[name](I, H, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (T, B, I)).astype(dtype)  # small integers: exact in every dtype
    widths = cell.state_widths  # H, or a declared size (lstm_proj's h: proj_size)
    state0 = tuple(rng.integers(-1, 2, (B, width)).astype(dtype) for width in widths)
    dy = rng.integers(-2, 3, (T, B, widths[0])).astype(dtype)
    reference = outputs(cell, x, state0, dy)
    if given_as in ("int16", "float16"):
        x, dy = x.astype(given_as), dy.astype(given_as)
    elif given_as == "list":
        if x.size:  # an empty list cannot carry the shape (T, 0, I)
            x, dy = x.tolist(), dy.tolist()
    elif given_as != "cell dtype":
        x, dy, state0 = layouts(x)[given_as], layouts(dy)[given_as], tuple(layouts(s)[given_as] for s in state0)
    got = outputs(cell, x, state0, dy)
    S = sum(widths)
    shapes = [
        (T, B, widths[0]),
        *[(B, width) for width in widths],
        (T, B, I),
        *[v.shape for v in cell.params.values()],
        *[(B, width) for width in widths],
        (T, B, S, S),
    ]
    assert [a.shape for a in got] == shapes
    for a, b in zip(got, reference):
        assert a.dtype == dtype and np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)


# -- random valid specs -------------------------------------------------------------------
@st.composite
def valid_cells(draw):
    """A small cell from a grammar: gates act(k (W x + U h + b)) with k a named constant or 1, optionally a
    product of a gate (a second level) and a value minus a mean or sum over the units (a reduction, one more
    level), and updates combining gates and states (a second state like LSTM's c, and then perhaps h of
    another size P, projected from H values as in lstm_proj). W acts on x, or on x gated per unit in its own
    size I by a value of h (u = act(G h) ⊙ x, G mapping h's size to I, as the Mogrifier LSTM's rounds)."""
    cell = Cell("cell")
    x = cell.input()
    two_states = draw(st.booleans())
    projected = two_states and draw(st.booleans())  # h of its own size P, a projection of H values (lstm_proj)
    P = cell.size("P", "proj_size") if projected else "H"
    states = [cell.state("h", size=P)] + ([cell.state("c")] if two_states else [])
    gates = "abc"[: draw(st.integers(1, 3))]
    if draw(st.booleans()):  # the input gated per unit, a value of size I
        gate = draw(st.sampled_from(ACTIVATIONS))(cell.weight("G", states[0], size=x.size))
        x = cell.let("u", gate * x, size=x.size)
    W, U, b = cell.weight("W", x, gates=gates), cell.weight("U", states[0], gates=gates), cell.bias("b", gates=gates)
    scale = cell.constant("k", draw(st.sampled_from([0.5, 1.5, 3]))) if draw(st.booleans()) else 1
    values = []
    for k, g in enumerate(gates):
        pre = scale * (W[g] + U[g] + b[g])
        if len(states) > 1 and draw(st.booleans()):
            pre += cell.vector(f"p{k}") * states[1]  # a peephole
        values.append(cell.let(f"g{k}", draw(st.sampled_from(ACTIVATIONS))(pre)))
    if draw(st.booleans()):  # a weight acting on a value of this step
        V = cell.weight("V", values[0])
        values.append(cell.let("m", draw(st.sampled_from(ACTIVATIONS))(V + W[gates[0]])))
    reduction = draw(st.sampled_from([None, "mean", "sum"]))
    if reduction:  # a per-row reduction of the last value (a let, reduced as it is) or of its square
        value = values[-1] if draw(st.booleans()) else values[-1] ** 2
        values.append(cell.let("centred", values[-1] - getattr(cell, reduction)(value, "r") / 2))

    def combine(start):
        expr = start
        for value in values:
            expr = draw(
                st.sampled_from(
                    [
                        expr + value,
                        expr * value,
                        (1 - value) * expr + value * start,
                        max(expr, value),
                        min(expr, value) / (2 + start**2),
                    ]
                )
            )
        return expr

    if len(states) > 1:
        c_new = cell.update(states[1], combine(states[1]))
        out = draw(st.sampled_from(ACTIVATIONS))(combine(c_new))
        cell.update(states[0], cell.weight("W_hr", cell.let("h_pre", out), size=P) if projected else out)
    else:
        cell.update(states[0], draw(st.sampled_from(ACTIVATIONS))(combine(states[0])))
    cell.source = "hypothesis"
    return cell


@pytest.fixture(scope="module")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="spec-properties-"))
    sys.path.insert(0, str(path))
    yield path
    sys.path.remove(str(path))
    shutil.rmtree(path, ignore_errors=True)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(cell=valid_cells())
def test_random_valid_specs_generate_and_pass_the_gradient_check(workdir, cell):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random spec may leave a gate block unused
        files = gen.render_all([cell])
    package = "spec_" + hashlib.sha256(files["cell.py"].encode()).hexdigest()[:12]
    gen.write_package(files, workdir / package, log=lambda m: None)
    cls = importlib.import_module(package).CELLS["cell"]
    problem = Problem.random(cls, 3, 2, 2, 3, seed=1)  # the problem check_cell builds first
    _, _, tape = problem.cell.forward(problem.x, problem.state0)
    # A state exactly 0 (e.g. h_t = relu(g*h_{t-1}) from h = 0) sits on a kink, where central
    # differences give the mean of the one-sided slopes, not the subgradient the cell documents.
    assume(all(np.all(tape.states[k, 1:, :, :width] != 0) for k, width in enumerate(problem.cell.state_widths)))
    report = check_cell(cls, shapes=((3, 2, 2, 3),), seed=1)
    bad = report.failures(1e-6)
    assert not bad, f"{bad}\n" + "\n".join(f"{eq.symbol} = {eq.expr}" for eq in cell.equations)


# -- random invalid specs -----------------------------------------------------------------
def fingerprint(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def break_spec(cell, mistake, name):
    """Make one mistake in a valid cell; returns what the error must mention."""
    h = cell.states[0].prev
    last = cell.equations[-1]
    if mistake == "undefined symbol":
        last.expr = last.expr + sp.Symbol(name, real=True)
        return rf"symbol '{name}' is not declared"
    if mistake == "reserved name":
        cell.let(name, h * 2)
        cell.equations.insert(0, cell.equations.pop())
        return rf"let '{name}': '{name}' is reserved by the generated code"
    if mistake == "unsupported function":
        last.expr = sp.tan(last.expr)
        return r"function tan is not supported; supported: sigmoid, tanh, relu, hard_sigmoid, softsign, exp, log"
    if mistake == "state never updated":
        cell.equations.remove(last)
        return rf"state '{last.state}': never updated"
    if mistake == "constant shadowing a state":
        cell.constant(h.name, 1.0)
        return rf"constant '{h.name}': name '{h.name}' is already used by state '{h.name}'"
    if mistake == "reduction without units":
        k = cell.constant("kappa", 2.0)
        last.expr = last.expr + cell.mean(3 * k, name)
        cell.equations.insert(cell.equations.index(last), cell.equations.pop())  # its let `<name>_of` first
        return rf"mean '{name}': reduces 3\*kappa, which has no units"
    if mistake == "mixed sizes":
        Q = cell.size("Q", "q_size")
        cell.let(name, h * 2, size=Q)
        return rf"'{h.name}' has size {cell.states[0].size} but '{name}' has size Q"
    if mistake == "input mixed with H values":
        cell.let(name, cell.x.symbol * 2 + cell.states[-1].prev)  # the last state has size H
        return rf"'{cell.x.name}' has size I but '{name}' has size H"
    if mistake == "cycle":
        later = sp.Symbol("later", real=True)
        first = cell.equations[0]
        first.expr = first.expr * later
        cell.let("later", first.symbol + 1)
        return rf"cycle of definitions {first.symbol} -> later -> {first.symbol}"
    raise AssertionError(mistake)


RESERVED_EXAMPLES = [
    "H",
    "step",
    "row",
    "saved",
    "states",
    "np",
    "tanh",
    "d_g0",
    "cse1",
    "coef2",
    "J_m",
    "g0_J",
    "g0_rows",
    "range",
]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cell=valid_cells(),
    mistake=st.sampled_from(
        [
            "undefined symbol",
            "reserved name",
            "unsupported function",
            "state never updated",
            "cycle",
            "constant shadowing a state",
            "reduction without units",
            "mixed sizes",
            "input mixed with H values",
        ]
    ),
    name=st.one_of(st.sampled_from(RESERVED_EXAMPLES), st.from_regex(r"q[a-z]{0,3}", fullmatch=True)),
)
def test_random_invalid_specs_are_rejected_and_change_nothing(tmp_path, cell, mistake, name):
    if mistake == "reserved name" and name not in RESERVED_EXAMPLES:
        name = RESERVED_EXAMPLES[len(name) % len(RESERVED_EXAMPLES)]
    if mistake in ("reduction without units", "mixed sizes", "input mixed with H values") and name in RESERVED_EXAMPLES:
        name = "qfree"
    expected = break_spec(cell, mistake, name)
    out = tmp_path / "generated"
    if not out.exists():
        shutil.copytree(ROOT / "generated", out, ignore=shutil.ignore_patterns("__pycache__"))
    before, real_before = fingerprint(out), fingerprint(ROOT / "generated")
    with pytest.raises(SpecError) as error, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen.write_package(gen.render_all([cell]), out, log=lambda m: None)
    message = str(error.value)
    assert message.startswith("cell 'cell' is invalid:") and re.search(expected, message), message
    assert fingerprint(out) == before and fingerprint(ROOT / "generated") == real_before
