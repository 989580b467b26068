"""PyTorch layers for every generated cell: `LSTM`, `GRU`, `RNN` (drop-ins for torch.nn's) and
`Recurrent` (any cell of `generated.CELLS`), running the generated kernels as torch custom ops.

Needs PyTorch, an optional extra: pip install 'rnn-derive[torch]'.
"""

try:
    import torch  # noqa: F401
except ImportError as error:
    raise ImportError("derive.torch needs PyTorch, an optional extra: pip install 'rnn-derive[torch]'") from error

from .layers import GRU, LSTM, RNN, Recurrent

__all__ = ["GRU", "LSTM", "RNN", "Recurrent"]
