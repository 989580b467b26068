"""Every built-in cell against its hand-written eager PyTorch loop (derive/tools/torch_reference.py)."""

import numpy as np
import pytest

from derive.tools.gradcheck import relative_error
from generated import CELLS

TOLERANCE = 1e-10


# an input wider than the state too (mogrifier_lstm keeps values of size I in a tape max(H, I) wide)
@pytest.mark.parametrize("shape", [(6, 3, 4, 5), (1, 1, 2, 3), (3, 2, 6, 4)], ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("name", list(CELLS))
def test_matches_hand_written_torch_loop(torch, name, shape):
    from derive.tools import torch_reference

    if name not in torch_reference.STEPS:
        pytest.fail(f"cell {name!r} has no hand-written reference in derive/tools/torch_reference.py")
    T, B, I, H = shape
    cls = CELLS[name]
    rng = np.random.default_rng(9)
    constants = {name: 1.5 * default for name, default in cls.constants.items()}  # not the defaults: set at run time
    cell = cls(I, H, dtype=np.float64, seed=2, **constants)
    for value in cell.params.values():
        value[...] = rng.uniform(-1, 1, value.shape)
    x = rng.standard_normal((T, B, I))
    widths = cell.state_widths  # H each, unless the cell declares other sizes
    state0 = tuple(0.5 * rng.standard_normal((B, width)) for width in widths)
    R = rng.standard_normal((T, B, widths[0]))
    R_state = tuple(rng.standard_normal((B, width)) for width in widths)

    params = {k: torch.tensor(v, requires_grad=True) for k, v in cell.params.items()}
    xt = torch.tensor(x, requires_grad=True)
    s0 = tuple(torch.tensor(s, requires_grad=True) for s in state0)
    y_ref, final_ref = torch_reference.run(name, params, xt, s0, constants)
    loss = (y_ref * torch.tensor(R)).sum() + sum((f * torch.tensor(r)).sum() for f, r in zip(final_ref, R_state))
    loss.backward()

    y, final, tape = cell.forward(x, state0)
    grads = cell.backward(tape, R, R_state)
    errors = {"y": relative_error(y, y_ref.detach().numpy()), "dx": relative_error(grads.x, xt.grad.numpy())}
    for s, a, b in zip(cls.state_names, final, final_ref):
        errors[f"final {s}"] = relative_error(a, b.detach().numpy())
    for s, a, b in zip(cls.state_names, grads.state0, s0):
        errors[f"d{s}0"] = relative_error(a, b.grad.numpy())
    for k, p in params.items():
        errors[f"d{k}"] = relative_error(grads.params[k], p.grad.numpy())
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    assert not bad, f"{name}: errors above {TOLERANCE}: {bad}"
