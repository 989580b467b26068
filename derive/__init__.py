"""Symbolic derivation and code generation for recurrent cells.

The pipeline, left to right; each layer imports only the ones before it:

    spec.py, activations.py, cells/   declare a cell (the built-ins are specs too)
    kernel_names.py                   the identifiers of the generated code (validate reserves them)
    validate.py                       reject what cannot be derived, with the reason
    derivation.py                     SymPy: forward, BPTT backward and Jacobian equations, once per cell
    render/                           equations → kernel source and template context
    write/                            source → `generated/` and `docs/cells/`, atomically; `check`

Beside it:

    runtime/    what `generated/` imports: NumPy and Numba only (the bottom layer)
    analysis/   formulas for people, gradient flow, Lyapunov exponents
    torch/      the generated cells as torch.nn layers
    tools/      `python -m derive ...`, gradcheck, accuracy, benchmark (the top layer)

`build.py`, `formulas.py` and `flow.py` keep the documented import paths (`derive.build.build`,
`derive.formulas.formulas`, `derive.flow.analyze`). Importing `derive` imports nothing else.
"""
