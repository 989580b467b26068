"""The kernel vocabulary: every identifier a generated module uses besides the spec's own names.

The emitters (`derive/render/`) and the template spell kernel code with these names; validation
(`derive/validate.py`) refuses a spec name among them (`RESERVED`, `RESERVED_PATTERN`), since a
spec value named like one would shadow it. tests/test_validate.py checks the list against every
generated module.

Kernel conventions (shapes in every generated docstring):
    x       (T, B, I)             input sequence, time-major
    states  (n_states, T+1, B, H) states[k, 0] is the initial state, states[k, t+1] is s_t
    saved   (T, n_saved, B, H)    per-step values backward needs (the tape; rows max(H, I) wide if it keeps values of size I)
Loops run over `step` (time), `row` (batch) and `unit` (hidden unit); a Jacobian row over `col`.
"""

from __future__ import annotations

import re

from derive.activations import SUPPORTED
from derive.runtime import kernel_math

# The kernel functions of a generated module (private: the cell class calls them).
KERNELS = ("_forward", "_backward", "_jacobian")

# Module level: imports, the kernels, the activation functions (kernel_math), the package's CELLS.
MODULE_NAMES = frozenset(
    {
        "math",
        "np",
        "numba",
        "jit",
        "Parameter",
        "RecurrentCell",
        "CELLS",
        *KERNELS,
        "matmul",
        "pack",
        "add_column_sums",
        "row_sums",
        "NoAliasPipeline",
        "cancelled",
        "assign",
    }
    | set(SUPPORTED)
    | {
        name
        for name, value in vars(kernel_math).items()
        if getattr(value, "__module__", None) == kernel_math.__name__ and not name.startswith("_")
    }
)

# Inside the kernels: sizes, loop indexes (with the tape's: record, tape_step), arrays (arguments and
# buffers), and the builtins called.
SIZES = frozenset({"T", "B", "I", "H", "S"})
LOOPS = frozenset({"step", "row", "unit", "col", "chunk", "start", "stop", "steps", "record", "tape_step"})
ARRAYS = frozenset({"x", "states", "saved", "dy", "d_state", "dx", "d_state0", "J", "cancel", "d_in", "d_prev"})
BUILTINS = frozenset({"range", "abs", "min", "max", "real"})  # `real`: the kernel's float type

RESERVED = MODULE_NAMES | SIZES | LOOPS | ARRAYS | BUILTINS


# Families of generated names, each made by one function here.
def gradient(name: str) -> str:
    """dL/d`name`: adjoints, gradient arrays and buffers (`d_W_ih`, `d_h_acc`)."""
    return f"d_{name}"


def shared_term(k: int) -> str:
    """The k-th common subexpression of a kernel, numbered in order of use."""
    return f"cse{k}"


def coefficient(k: int) -> str:
    """The k-th Jacobian coefficient of a row."""
    return f"coef{k}"


def jacobian_rows(vector: str) -> str:
    """∂vector/∂s_(t-1) of an in-step operand, one row per unit: `J_rh`."""
    return f"J_{vector}"


def product_jacobian(matrix: str) -> str:
    """(matrix · J_operand).T: `W_hn_J`."""
    return f"{matrix}_J"


def transposed_panels(matrix: str) -> str:
    """matrix.T packed in column panels for `matmul` (forward: x W.T): `W_ih_T`."""
    return f"{matrix}_T"


def panels(name: str) -> str:
    """`name` packed in column panels for `matmul`: `W_ih_panels`, `x_panels`."""
    return f"{name}_panels"


def previous_gradient(state: str) -> str:
    """dL/d`state`_(t-1) from the products of one step, for a state narrower than H: `d_prev_h`."""
    return f"d_prev_{state}"


def gate_view(name: str) -> str:
    """A stacked (G*H,) vector viewed with a gate axis, (G, H): `b_ih_gates`."""
    return f"{name}_gates"


def per_row(name: str) -> str:
    """A per-row value of a step, (B,): the reduction `mu` over the units, `mu_rows`."""
    return f"{name}_rows"


def terms(name: str) -> str:
    """What a reduction adds up in a step, (B, units): `mu_terms`, summed into `mu_rows`."""
    return f"{name}_terms"


RESERVED_PATTERN = re.compile(
    r"d_.*|cse\d+|coef\d+|J_.*|.*_J|.*_T|.*_panels|.*_gates|.*_rows|.*_terms"
)  # the families above
