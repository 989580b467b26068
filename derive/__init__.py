"""Symbolic derivation and code generation for recurrent cells.

The pipeline, one module each: `spec` (declare a cell) → `derivation` (forward, backward and
Jacobian equations with SymPy) → `codegen` (text for the kernels) → `generate` (write
`generated/`, check it is current). `runtime` is the small base class the generated cells use;
it needs only NumPy and Numba.
"""
