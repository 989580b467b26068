"""Benchmarks of the generated cells against PyTorch and other frameworks on CPU: `python -m derive bench`.

workloads.py  what one side runs: a generated cell, a torch.nn built-in, or an eager torch loop
sides/        peers: Keras 3 on TensorFlow, JAX, ONNX Runtime (optional: the bench-peers extra)
worker.py     a process serving one side (timing, peak memory, BLAS ceiling, machine facts)
load.py       other processes' CPU use while a side is timed: noisy turns are repeated
compile.py    cold compile (empty Numba cache) and warm import + first call, in fresh processes
run.py        the grid, alternating the sides point by point, medians and ratios, progress output
report.py     docs/benchmarks.md and its plot

Never part of the tests: timings belong in a report, not in assertions.
"""
