"""ONNX Runtime: the ONNX LSTM / GRU / RNN operator in an inference session (forward only).

The graph is one operator built with onnx.helper, its weights as initializers: W (1, G·H, I),
R (1, G·H, H), B (1, 2·G·H) = [input biases, recurrent biases], gates in ONNX's order (LSTM
i, o, f, c; GRU z, r, h), GRU with linear_before_reset=1 (torch's form), RNN with torch's
nonlinearity. Input X (T, B, I) and output Y (T, 1, B, H): torch's layout, no transposes.
"""

from __future__ import annotations

import numpy as np

from ..workloads import Workload, _inputs
from . import Unsupported, reference_weights, regate

GATE_ORDER = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN": [0]}  # torch blocks in ONNX's order
OPSET = 17


def versions() -> tuple[dict, dict]:
    import onnx
    import onnxruntime

    threads = onnxruntime.SessionOptions().intra_op_num_threads
    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}, {
        "ONNX Runtime": f"intra-op {threads or 'default (one per core)'}, providers {', '.join(onnxruntime.get_available_providers())}"
    }


def model(point):
    """The ONNX model of a point's torch.nn built-in, holding the reference weights."""
    from onnx import TensorProto, helper, numpy_helper

    name, options, w = reference_weights(point)
    order = GATE_ORDER[name]
    W, R = (regate(w[k], order, len(order))[None] for k in ("weight_ih", "weight_hh"))
    B = np.concatenate([regate(w[k], order, len(order)) for k in ("bias_ih", "bias_hh")])[None]
    attributes = {"hidden_size": point.H}
    if name == "GRU":
        attributes["linear_before_reset"] = 1
    if name == "RNN":
        attributes["activations"] = [options.get("nonlinearity", "tanh").capitalize()]
    element = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[point.dtype]
    node = helper.make_node(name, ["X", "W", "R", "B"], ["Y"], **attributes)
    graph = helper.make_graph(
        [node],
        point.cell,
        [helper.make_tensor_value_info("X", element, [point.T, point.B, point.H])],
        [helper.make_tensor_value_info("Y", element, [point.T, 1, point.B, point.H])],
        [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def build(point) -> Workload:
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    x, _ = _inputs(point)
    feed = {"X": x}
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # an unsupported dtype is reported below, not logged as an error
    try:  # with a first run: some kernels reject a dtype only when run (LSTM: "does not support double yet")
        session = onnxruntime.InferenceSession(
            model(point).SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        session.run(None, feed)
    except (state.Fail, state.NotImplemented, state.RuntimeException) as error:
        message = str(error).splitlines()[0].split(" : ")[-1].split("Status Message: ")[-1]
        raise Unsupported(f"ONNX Runtime, {point.dtype}: {message}") from error
    return Workload(
        forward=None,
        forward_backward=None,
        inference=lambda: session.run(None, feed),
        output=lambda: session.run(None, feed)[0][:, 0],
    )
