"""The built-in cell specs, one module each; BUILTIN lists them in the order of `generated.CELLS`."""

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
)
