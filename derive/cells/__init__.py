"""The built-in cell specs, one module each; BUILTIN lists them in the order of `generated.CELLS`."""

import importlib
from pathlib import Path

BUILTIN = (
    "rnn",
    "lstm",
    "gru",
    "rnn_relu",
    "lstm_peephole",
    "lstm_cifg",
    "gru_reset_before",
    "mgu",
    "indrnn",
    "janet",
    "ugrnn",
    "ligru",
    "min_gru",
    "min_lstm",
    "slstm",
    "cornn",
    "lstm_layernorm",
    "lstm_proj",
    "mogrifier_lstm",
)


def builtin_cells() -> list:
    """The built-in cells' specs (`derive.spec.Cell`), in the order of BUILTIN."""
    cells = []
    for name in BUILTIN:
        cell = importlib.import_module(f"{__name__}.{name}").cell
        cell.source = f"derive/cells/{name}.py"
        cell.source_path = str(Path(__file__).with_name(f"{name}.py"))
        cells.append(cell)
    return cells
