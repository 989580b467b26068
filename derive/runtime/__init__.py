"""What `generated/` imports at run time: NumPy and Numba, never SymPy.

cell.py             RecurrentCell, the Python side of every generated cell (checks, tapes, gradients)
arguments.py        the dtype rule and array conversion; finite.py: checks for NaN and inf
held.py             copies and comparisons that keep the GIL (a busy thread would keep it 5 ms)
compiler.py         jit() and how Numba compiles the kernels (options, the noalias pipeline)
matrix.py           the kernels' matrix products (packed panels, vector tiles)
thread_pool.py      the threads that share a product's tiles
shards.py           an inference call split over the batch, a shard per pool thread
kernel_math.py      exp, sigmoid, tanh, ... as the kernels compute them
kernel_cache.py     Numba's cache, repairing itself; kernel_call.py: calls from threads and Ctrl-C
threading_layer.py  which Numba threading layer, safe with fork and threads
torch_weights.py    torch.nn modules and state_dicts into a cell's parameters
"""

from .cell import DTYPES, Constant, Gradients, Parameter, RecurrentCell, Tape

__all__ = ["DTYPES", "Constant", "Gradients", "Parameter", "RecurrentCell", "Tape"]
