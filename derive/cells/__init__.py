"""The built-in cell specs, one module each; BUILTIN lists them in the order of `generated.CELLS`."""

BUILTIN = ("rnn", "lstm", "gru")
