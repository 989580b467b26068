"""Benchmarks of the generated cells against PyTorch on CPU: `python -m derive bench`.

workloads.py  what one side runs: a generated cell, a torch.nn built-in, or an eager torch loop
worker.py     a process serving one side (timing, peak memory, BLAS ceiling, machine facts)
compile.py    cold compile (empty Numba cache) and warm import + first call, in fresh processes
run.py        the grid, alternating the sides point by point, medians and ratios, progress output
report.py     docs/benchmarks.md and its plot

Never part of the tests: timings belong in a report, not in assertions.
"""
