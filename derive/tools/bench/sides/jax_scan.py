"""JAX: the cell equations of torch.nn's LSTM, GRU and RNN as a jitted `lax.scan`.

The input projection x·W_ihᵀ + b_ih of all steps is one product before the scan (as torch and
oneDNN do); each step then multiplies h by W_hhᵀ. Gates in torch's order and form (GRU:
n = tanh(a_n + r ⊙ (W_hn h + b_hn)), h = (1 - z) ⊙ n + z ⊙ h). Backward: `jax.vjp` of the same
function with dL/dy, giving the gradients of x and of every weight. float64 needs jax_enable_x64.
"""

from __future__ import annotations

import numpy as np

from ..workloads import Workload, _inputs
from . import reference_weights


def versions() -> tuple[dict, dict]:
    import jax

    return {"jax": jax.__version__}, {"XLA CPU": f"{jax.local_device_count()} device(s) {jax.devices()[0].platform}"}


def step_function(name: str, options: dict):
    """step(h_or_(h, c), w, projected x_t) -> (new state, h) of the torch.nn built-in `name`."""
    import jax
    import jax.numpy as jnp

    sigmoid = jax.nn.sigmoid
    if name == "LSTM":

        def step(state, w, a):
            h, c = state
            i, f, g, o = jnp.split(a + h @ w["weight_hh"].T + w["bias_hh"], 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
            h = sigmoid(o) * jnp.tanh(c)
            return (h, c), h
    elif name == "GRU":

        def step(h, w, a):
            a_r, a_z, a_n = jnp.split(a, 3, axis=-1)
            h_r, h_z, h_n = jnp.split(h @ w["weight_hh"].T + w["bias_hh"], 3, axis=-1)
            r, z = sigmoid(a_r + h_r), sigmoid(a_z + h_z)
            n = jnp.tanh(a_n + r * h_n)
            h = (1 - z) * n + z * h
            return h, h
    else:
        activation = {"tanh": jnp.tanh, "relu": jax.nn.relu}[options.get("nonlinearity", "tanh")]

        def step(h, w, a):
            h = activation(a + h @ w["weight_hh"].T + w["bias_hh"])
            return h, h

    return step


def build(point) -> Workload:
    import jax

    if point.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    name, options, weights = reference_weights(point)
    step = step_function(name, options)
    zeros = jnp.zeros((point.B, point.H), point.dtype)
    state0 = (zeros, zeros) if name == "LSTM" else zeros

    def run(w, x):
        projected = x @ w["weight_ih"].T + w["bias_ih"]
        _, y = jax.lax.scan(lambda state, a: step(state, w, a), state0, projected)
        return y

    def gradients(w, x, dy):
        _, pullback = jax.vjp(run, w, x)
        return pullback(dy)

    w = {k: jnp.asarray(v) for k, v in weights.items()}
    x, dy = (jnp.asarray(a) for a in _inputs(point))
    inference, forward_backward = jax.jit(run), jax.jit(gradients)
    return Workload(
        forward=None,
        forward_backward=lambda: jax.block_until_ready(forward_backward(w, x, dy)),
        inference=lambda: jax.block_until_ready(inference(w, x)),
        output=lambda: np.asarray(inference(w, x)),
    )
