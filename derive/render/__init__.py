"""Derivation → module text: the kernels' Python source and the context of `templates/`.

printer.py   SymPy expressions as kernel statements (shared terms, constants in the kernel's dtype)
codegen.py   the forward, backward and Jacobian kernels of one cell, and the module's template context
"""
