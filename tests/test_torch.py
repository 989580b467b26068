"""Cells with a PyTorch counterpart match it: same weights, same outputs, same gradients."""

import numpy as np
import pytest

from derive.gradcheck import relative_error
from generated import CELLS
from tests.conftest import TORCH_CELLS

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}
SHAPES = [(5, 3, 4, 6), (1, 1, 2, 3), (7, 2, 5, 8)]  # (T, B, I, H)


def torch_run(torch, cls, module_state, x, state0, R, R_state, dtype):
    """Forward and backward of the torch.nn counterpart; returns arrays."""
    name, options = cls.torch_reference
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    module = getattr(torch.nn, name)(x.shape[2], state0[0].shape[1], **options).to(tdtype)
    module.load_state_dict({k: torch.tensor(v) for k, v in module_state.items()})
    xt = torch.tensor(x, requires_grad=True)
    s0 = [torch.tensor(s[None], requires_grad=True) for s in state0]
    y, final = module(xt, s0[0] if len(s0) == 1 else tuple(s0))
    final = (final,) if len(s0) == 1 else final
    loss = (y * torch.tensor(R)).sum() + sum((f * torch.tensor(r[None])).sum() for f, r in zip(final, R_state))
    loss.backward()
    params = dict(module.named_parameters())
    return {
        "y": y.detach().numpy(),
        "final": [f[0].detach().numpy() for f in final],
        "dx": xt.grad.numpy(),
        "dparams": {k: p.grad.numpy() for k, p in params.items()},
        "dstate0": [s.grad[0].numpy() for s in s0],
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%dB%dI%dH%d" % s)
@pytest.mark.parametrize("name", TORCH_CELLS)
def test_matches_torch(torch, name, shape, dtype):
    T, B, I, H = shape
    cls = CELLS[name]
    rng = np.random.default_rng(5)
    cell = cls(I, H, dtype=dtype, seed=3)
    n = len(cls.state_names)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    state0 = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in range(n))
    R = rng.standard_normal((T, B, H)).astype(dtype)
    R_state = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in range(n))

    module_state = {p.torch: cell.params[p.name] for p in cls.parameters}
    ref = torch_run(torch, cls, module_state, x, state0, R, R_state, dtype)

    y, final, tape = cell.forward(x, state0)
    grads = cell.backward(tape, R, R_state)
    tol = TOLERANCE[dtype]
    errors = {
        "y": relative_error(y, ref["y"]),
        "dx": relative_error(grads.x, ref["dx"]),
        **{f"final {s}": relative_error(a, b) for s, a, b in zip(cls.state_names, final, ref["final"])},
        **{f"d{s}0": relative_error(a, b) for s, a, b in zip(cls.state_names, grads.state0, ref["dstate0"])},
        **{f"d{p.name}": relative_error(grads.params[p.name], ref["dparams"][p.torch]) for p in cls.parameters},
    }
    assert y.dtype == dtype and grads.x.dtype == dtype
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, f"{name} {np.dtype(dtype).name}: errors above {tol}: {bad}"


@pytest.mark.parametrize("name", TORCH_CELLS)
def test_load_torch_copies_a_state_dict(torch, name):
    cls = CELLS[name]
    torch_name, options = cls.torch_reference
    module = getattr(torch.nn, torch_name)(3, 4, **options)
    cell = cls(3, 4, seed=0)
    before = {k: id(v) for k, v in cell.params.items()}
    cell.load_torch(module.state_dict())
    for p in cls.parameters:
        np.testing.assert_array_equal(cell.params[p.name], module.state_dict()[p.torch].numpy())
    assert {k: id(v) for k, v in cell.params.items()} == before, "load_torch must update the live arrays"
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    y, _, _ = cell.forward(x)
    y_ref, _ = module(torch.tensor(x))
    assert relative_error(y, y_ref.detach().numpy()) <= 1e-4
