"""Keras 3 on TensorFlow: keras.layers.LSTM / GRU / SimpleRNN, called in a tf.function.

Conventions matched to torch.nn: LSTM gates i, f, c, o (torch's order) with tanh and a sigmoid
recurrent activation, one bias = b_ih + b_hh; GRU with reset_after=True (torch's n = tanh(W_in x
+ b_in + r ⊙ (W_hn h + b_hn)), biases (2, 3H) = [input; recurrent]), gates z, r, h; SimpleRNN
with torch's nonlinearity and one bias. Input (B, T, I), Keras's layout (x is transposed once,
outside the timed calls); outputs are transposed back only in `outputs` for the tests.
"""

from __future__ import annotations

import os

import numpy as np

from ..workloads import Workload, _inputs
from . import reference_weights, regate

LAYERS = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "SimpleRNN"}
GATE_ORDER = {"LSTM": [0, 1, 2, 3], "GRU": [1, 0, 2], "RNN": [0]}  # torch blocks in Keras's order


def versions() -> tuple[dict, dict]:
    import keras
    import tensorflow as tf

    threads = tf.config.threading
    pools = f"intra-op {threads.get_intra_op_parallelism_threads() or 'default'}, inter-op {threads.get_inter_op_parallelism_threads() or 'default'}"
    return {"tensorflow": tf.__version__, "keras": keras.__version__}, {"TensorFlow": pools}


def layer(point):
    """The Keras layer of a point, built, holding the reference weights."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    name, options, w = reference_weights(point)
    blocks, order = len(GATE_ORDER[name]), GATE_ORDER[name]
    settings = {"activation": options.get("nonlinearity", "tanh"), "return_sequences": True, "dtype": point.dtype}
    if name != "RNN":
        settings["recurrent_activation"] = "sigmoid"
    if name == "GRU":
        settings["reset_after"] = True
    built = getattr(keras.layers, LAYERS[name])(point.H, **settings)
    built.build((point.B, point.T, point.H))
    kernel, recurrent = (regate(w[k].T, order, blocks, axis=1) for k in ("weight_ih", "weight_hh"))
    if name == "GRU":
        bias = np.stack([regate(w[k], order, blocks) for k in ("bias_ih", "bias_hh")])
    else:
        bias = regate(w["bias_ih"] + w["bias_hh"], order, blocks)
    built.set_weights([kernel, recurrent, bias])
    return built


def build(point) -> Workload:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    model = layer(point)
    x_np, dy_np = _inputs(point)
    x, dy = (tf.constant(a.transpose(1, 0, 2)) for a in (x_np, dy_np))

    @tf.function
    def inference(x):
        return model(x, training=False)

    @tf.function
    def forward_backward(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x, training=True)
        return tape.gradient(y, [x, *model.trainable_variables], output_gradients=dy)

    return Workload(
        forward=None,
        forward_backward=lambda: forward_backward(x, dy),
        inference=lambda: inference(x),
        output=lambda: np.asarray(inference(x)).transpose(1, 0, 2),
    )
