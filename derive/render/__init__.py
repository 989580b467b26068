"""Derivation → module text: the kernels' Python source and the context of `templates/`.

module.py     the template context of one cell: imports, docstrings, parameters, the three kernels
forward.py    the forward kernel: products per chunk and level, fused pointwise loops, the tape
backward.py   the backward kernel: adjoints per level, shared gradient buffers, weight and bias gradients
jacobian.py   the Jacobian kernel: the rows of ∂s_t/∂s_(t-1)
locations.py  where each value lives in a kernel (states, tape, parameters) and gate-block indexes
printer.py    SymPy expressions as kernel statements (shared terms, constants in the kernel's dtype)
layout.py     rendered lines within 100 columns

The identifiers the kernels use are listed in derive/kernel_names.py.
"""
