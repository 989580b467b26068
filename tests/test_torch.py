"""Cells with a PyTorch counterpart match it: same weights, same outputs, same gradients."""

import numpy as np
import pytest

from derive.tools.gradcheck import relative_error
from generated import CELLS
from tests.conftest import TORCH_CELLS

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}
SHAPES = [(5, 3, 4, 6), (1, 1, 2, 3), (7, 2, 5, 8)]  # (T, B, I, H)


def torch_run(torch, cell, module_state, x, state0, R, R_state, dtype):
    """Forward and backward of the torch.nn counterpart; returns arrays."""
    name, options = cell.torch_reference[0], cell.torch_options()
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    module = getattr(torch.nn, name)(x.shape[2], cell.hidden_size, **options).to(tdtype)
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
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("name", TORCH_CELLS)
def test_matches_torch(torch, name, shape, dtype):
    T, B, I, H = shape
    cls = CELLS[name]
    rng = np.random.default_rng(5)
    cell = cls(I, H, dtype=dtype, seed=3)
    widths = cell.state_widths  # h of proj_size for lstm_proj
    x = rng.standard_normal((T, B, I)).astype(dtype)
    state0 = tuple(rng.standard_normal((B, width)).astype(dtype) for width in widths)
    R = rng.standard_normal((T, B, widths[0])).astype(dtype)
    R_state = tuple(rng.standard_normal((B, width)).astype(dtype) for width in widths)

    module_state = {p.torch: cell.params[p.name] for p in cls.parameters}
    ref = torch_run(torch, cell, module_state, x, state0, R, R_state, dtype)

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


@pytest.mark.parametrize("form", ["state_dict", "module"])
@pytest.mark.parametrize("name", TORCH_CELLS)
def test_load_torch_copies_a_module_or_its_state_dict(torch, name, form):
    cls = CELLS[name]
    cell = cls(3, 4, seed=0)
    module = getattr(torch.nn, cls.torch_reference[0])(3, 4, **cell.torch_options())
    before = {k: id(v) for k, v in cell.params.items()}
    cell.load_torch(module.state_dict() if form == "state_dict" else module)
    for p in cls.parameters:
        np.testing.assert_array_equal(cell.params[p.name], module.state_dict()[p.torch].numpy())
    assert {k: id(v) for k, v in cell.params.items()} == before, "load_torch must update the live arrays"
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    y, _, _ = cell.forward(x)
    y_ref, _ = module(torch.tensor(x))
    assert relative_error(y, y_ref.detach().numpy()) <= 1e-4


# -- load_torch: checked as a whole before anything is copied --------------------------------
def snapshot(cell):
    return {name: value.copy() for name, value in cell.params.items()}


def assert_unchanged(cell, before):
    for name, value in cell.params.items():
        np.testing.assert_array_equal(value, before[name], err_msg=f"{name} changed although load_torch failed")


def test_a_failing_load_torch_changes_nothing(torch):
    lstm = torch.nn.LSTM(3, 4)
    cases = [
        (CELLS["lstm_peephole"](3, 4, seed=0), lstm.state_dict(), "no PyTorch counterpart for parameter 'w_ci'"),
        (
            CELLS["lstm"](3, 4, seed=0),
            {**lstm.state_dict(), "bias_hh_l0": torch.zeros(5)},
            r"'bias_hh_l0'.*must have shape \(4\*hidden_size,\) = \(16,\), got \(5,\)",
        ),
        (
            CELLS["lstm"](3, 4, seed=0),
            {**lstm.state_dict(), "bias_hh_l0": torch.zeros(16, dtype=torch.float64)},
            r"'bias_hh_l0'.*has dtype float64 but the cell is float32",
        ),
    ]
    for cell, state_dict, message in cases:
        before = snapshot(cell)
        with pytest.raises((ValueError, TypeError), match=message):
            cell.load_torch(state_dict)
        assert_unchanged(cell, before)


def test_load_torch_into_read_only_parameters_names_them_and_changes_nothing(torch):
    cell = CELLS["lstm"](3, 4, seed=0)
    cell.params["W_hh"].flags.writeable = False
    before = snapshot(cell)
    with pytest.raises(ValueError, match=r"parameter 'W_hh' is a read-only array"):
        cell.load_torch(torch.nn.LSTM(3, 4))
    assert_unchanged(cell, before)


@pytest.mark.parametrize(
    "name, make_module, message",
    [
        (
            "rnn",
            lambda nn: nn.RNN(3, 4, nonlinearity="relu"),
            r"computes torch.nn.RNN\(\) with mode='RNN_TANH'.*got torch.nn.RNN with mode='RNN_RELU'",
        ),
        (
            "rnn_relu",
            lambda nn: nn.RNN(3, 4),
            r"computes torch.nn.RNN\(nonlinearity='relu'\) with mode='RNN_RELU'.*got torch.nn.RNN with mode='RNN_TANH'",
        ),
        ("lstm", lambda nn: nn.GRU(3, 4), r"got torch.nn.GRU with mode='GRU'"),
        ("lstm", lambda nn: nn.LSTM(3, 4, proj_size=2), r"proj_size=0, got torch.nn.LSTM .*proj_size=2"),
        ("gru", lambda nn: nn.GRU(3, 4, bias=False), r"bias=True.*got torch.nn.GRU .*bias=False"),
        (
            "lstm_cifg",
            lambda nn: nn.GRU(3, 4),
            r"CIFGLSTM \(lstm_cifg\) has no torch.nn counterpart, and torch.nn.GRU .* computes another cell",
        ),
        ("lstm_peephole", lambda nn: nn.LSTM(3, 4), r"has no torch.nn counterpart"),
    ],
    ids=lambda case: case if isinstance(case, str) and case.isidentifier() else "",
)
def test_load_torch_refuses_a_module_computing_another_cell(torch, name, make_module, message):
    cell = CELLS[name](3, 4, seed=0)
    before = snapshot(cell)
    with pytest.raises(ValueError, match=message):
        cell.load_torch(make_module(torch.nn))
    assert_unchanged(cell, before)


def test_load_torch_refuses_keys_of_other_modules_or_layers_unless_one_is_picked(torch):
    projected = torch.nn.LSTM(3, 4, proj_size=2).state_dict()
    with pytest.raises(
        ValueError, match=r"state_dict has \['weight_hr_l0'\], which LSTM \(lstm\) has no parameter for"
    ):
        CELLS["lstm"](3, 4).load_torch(projected)
    deep = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    for source in (deep, deep.state_dict()):
        with pytest.raises(
            ValueError, match=r"other layers or directions: \[.*'bias_hh_l0_reverse'.*'weight_ih_l1'.*\]; pass layer="
        ):
            CELLS["gru"](3, 4).load_torch(source)
    first = CELLS["gru"](3, 4)
    first.load_torch(deep, layer=0)  # layer 0, forward
    np.testing.assert_array_equal(first.params["W_ih"], deep.weight_ih_l0.detach().numpy())
    second = CELLS["gru"](8, 4)  # layer 1 reads both directions of layer 0: input size 2*H
    second.load_torch(deep.state_dict(), layer=1, direction="reverse")
    for p in CELLS["gru"].parameters:
        np.testing.assert_array_equal(
            second.params[p.name], deep.state_dict()[p.torch.replace("_l0", "_l1_reverse")].numpy()
        )
    with pytest.raises(ValueError, match=r"direction must be one of \('forward', 'reverse'\), got 'backward'"):
        second.load_torch(deep, layer=1, direction="backward")
    with pytest.raises(ValueError, match=r"state_dict has no 'weight_ih_l2'"):
        second.load_torch(deep, layer=2)


def test_load_torch_converts_narrower_floats_and_refuses_wider_ones(torch):
    module = torch.nn.RNN(3, 4).to(torch.bfloat16)
    cell = CELLS["rnn"](3, 4)
    cell.load_torch(module)
    np.testing.assert_array_equal(cell.params["W_ih"], module.weight_ih_l0.float().detach().numpy())
    with pytest.raises(TypeError, match=r"'weight_ih_l0'.*has dtype float64 but the cell is float32"):
        cell.load_torch(torch.nn.RNN(3, 4).double())
