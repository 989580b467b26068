"""derive.torch: the layers equal torch.nn's, the custom ops pass PyTorch's own checks."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from derive.tools.gradcheck import relative_error
from generated import CELLS
from tests.conftest import ROOT

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402 (after the skip)

from derive.torch import GRU, LSTM, RNN, Recurrent, ops  # noqa: E402

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}
DTYPES = pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
MODES = {  # ours, torch.nn's, extra options
    "lstm": (LSTM, torch.nn.LSTM, {}),
    "gru": (GRU, torch.nn.GRU, {}),
    "rnn_tanh": (RNN, torch.nn.RNN, {}),
    "rnn_relu": (RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
}
I, H = 3, 4


def pair(mode, dtype, **options):
    """Our layer and torch.nn's with the same weights (copied from ours into torch's)."""
    ours, theirs, extra = MODES[mode]
    layer = ours(I, H, **extra, **options, dtype=dtype)
    reference = theirs(I, H, **extra, **options, dtype=dtype)
    reference.load_state_dict(layer.state_dict())
    return layer, reference


def as_tuple(states):
    return states if isinstance(states, tuple) else (states,)


def run(module, x, hx, weights):
    """Forward, then gradients of a fixed random loss w.r.t. x, hx and every parameter."""
    y, final = module(x, hx)
    y_data = y.data if hasattr(y, "batch_sizes") else y
    final = as_tuple(final)
    generator = torch.Generator().manual_seed(7)
    loss = (y_data * torch.randn(y_data.shape, generator=generator, dtype=y_data.dtype)).sum()
    loss = loss + sum((f * torch.randn(f.shape, generator=generator, dtype=f.dtype)).sum() for f in final)
    inputs = [x.data if hasattr(x, "batch_sizes") else x, *(() if hx is None else as_tuple(hx))]
    names = sorted(dict(module.named_parameters()))
    params = dict(module.named_parameters())
    grads = torch.autograd.grad(loss, inputs + [params[n] for n in names])
    return {
        "y": y_data,
        **{f"final[{k}]": f for k, f in enumerate(final)},
        "dx": grads[0],
        **{f"dhx[{k}]": g for k, g in enumerate(grads[1 : len(inputs)])},
        **{f"d{n}": g for n, g in zip(names, grads[len(inputs) :])},
    }


def assert_same(ours, theirs, dtype):
    assert ours.keys() == theirs.keys()
    errors = {k: relative_error(ours[k].detach().numpy(), theirs[k].detach().numpy()) for k in ours}
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE[dtype]}
    assert not bad, f"errors above {TOLERANCE[dtype]}: {bad}"


def inputs(layer, T, B, dtype, batch_first, given_states, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(shape, generator=generator, dtype=dtype, requires_grad=True)
    hx = None
    if given_states:
        D = 2 if layer.bidirectional else 1
        states = tuple(
            torch.randn(layer.num_layers * D, B, H, generator=generator, dtype=dtype, requires_grad=True)
            for _ in layer.cell_class.state_names
        )
        hx = states if len(states) > 1 else states[0]
    return x, hx


@DTYPES
@pytest.mark.parametrize("layout", ["time_major-zero_states", "batch_first-given_states"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("mode", list(MODES))
def test_layers_equal_torch_nn(mode, num_layers, bidirectional, layout, dtype):
    batch_first = layout.startswith("batch_first")
    layer, reference = pair(mode, dtype, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    x, hx = inputs(layer, 5, 3, dtype, batch_first, given_states=layout.endswith("given_states"))
    assert_same(run(layer, x, hx, None), run(reference, x, hx, None), dtype)


@DTYPES
@pytest.mark.parametrize("mode", list(MODES))
def test_packed_sequences_with_unsorted_lengths_equal_torch_nn(mode, dtype):
    layer, reference = pair(mode, dtype, num_layers=2, bidirectional=True)
    x, hx = inputs(layer, 6, 5, dtype, batch_first=False, given_states=True)
    lengths = torch.tensor([3, 6, 1, 6, 2])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    ours, theirs = run(layer, packed, hx, None), run(reference, packed, hx, None)
    assert_same(ours, theirs, dtype)
    y, _ = layer(packed, hx)
    assert isinstance(y, torch.nn.utils.rnn.PackedSequence) and torch.equal(y.unsorted_indices, packed.unsorted_indices)


def test_padding_never_enters_a_cell_nor_its_gradients():
    """NaN in the padding changes nothing; padded outputs are zero, padded inputs get zero
    gradient; a row's final state is its state at its last real step."""
    layer = Recurrent("lstm_peephole", I, H, bidirectional=True, dtype=torch.float64)
    x = torch.randn(6, 3, I, dtype=torch.float64)
    lengths = torch.tensor([2, 6, 4])
    for b, n in enumerate(lengths):
        x[n:, b] = float("nan")
    x.requires_grad_(True)
    y, (h, _) = layer(pack_padded_sequence(x, lengths, enforce_sorted=False))
    padded, _ = pad_packed_sequence(y)
    padded.sum().backward()
    assert torch.isfinite(padded).all() and torch.isfinite(x.grad).all()
    for b, n in enumerate(lengths):
        alone, (h_b, _) = layer(x[:n, b : b + 1].detach())  # the row by itself, no padding
        torch.testing.assert_close(padded[:n, b], alone[:, 0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h[:, b], h_b[:, 0], rtol=1e-12, atol=1e-12)
        assert (padded[n:, b] == 0).all() and (x.grad[n:, b] == 0).all()


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_dropout_between_layers_in_training_only(mode):
    """Training draws the same dropout masks as torch.nn from the same seed; eval has none."""
    layer, reference = pair(mode, torch.float64, num_layers=3, dropout=0.5)
    x, _ = inputs(layer, 5, 3, torch.float64, False, False)
    torch.manual_seed(3)
    ours = run(layer, x, None, None)
    torch.manual_seed(3)
    assert_same(ours, run(reference, x, None, None), torch.float64)
    layer.eval(), reference.eval()
    assert_same(run(layer, x, None, None), run(reference, x, None, None), torch.float64)
    assert not torch.allclose(ours["y"], run(layer, x, None, None)["y"])


def test_state_dicts_load_both_ways_and_names_follow_torch_or_the_spec():
    reference = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, bias=False)
    layer = LSTM(I, H, num_layers=2, bidirectional=True, bias=False)
    layer.load_state_dict(reference.state_dict())
    reference.load_state_dict(layer.state_dict())
    assert list(layer.state_dict()) == list(reference.state_dict())
    peephole = Recurrent("lstm_peephole", I, H, num_layers=2, bidirectional=True)
    assert {"weight_ih_l1_reverse", "w_ci_l0", "w_co_l1_reverse"} <= set(dict(peephole.named_parameters()))
    assert {"W_ih_l0", "u_l0", "b_l0"} == set(dict(Recurrent("indrnn", I, H).named_parameters()))
    assert {"W_ih_l0", "u_l0"} == set(dict(Recurrent("indrnn", I, H, bias=False).named_parameters()))


def test_every_step_full_state_is_returned_and_differentiable():
    """all_states=True gives every c_t of an LSTM, equal to the eager reference, and its gradient."""
    from derive.tools.torch_reference import run as eager

    layer = LSTM(I, H, dtype=torch.float64)
    x = torch.randn(5, 2, I, dtype=torch.float64)
    y, _, (hs, cs) = layer(x, all_states=True)
    params = {p.name: getattr(layer, f"{p.torch[:-3]}_l0") for p in layer.cell_class.parameters}
    states = [(torch.zeros(2, H, dtype=torch.float64),) * 2]
    for t in range(5):
        states.append(eager("lstm", params, x[t : t + 1], states[-1])[1])
    torch.testing.assert_close(cs, torch.stack([s[1] for s in states[1:]]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hs, y)


def small_input(layer, generator):
    x = torch.randn(4, 3, layer.input_size, generator=generator, dtype=torch.float64, requires_grad=True)
    D = 2 if layer.bidirectional else 1
    hx = tuple(
        torch.randn(layer.num_layers * D, 3, width, generator=generator, dtype=torch.float64, requires_grad=True)
        for width in layer.state_widths
    )
    return x, hx


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (1, True), (2, False), (2, True)])
def test_lstm_with_proj_size_equals_torch_nn(layers, bidirectional):
    """LSTM(proj_size=P) runs lstm_proj: outputs, h_n (L*D, B, P), c_n (L*D, B, H) and the gradients of
    the input, the initial states and every parameter (weight_hr_l0 too) equal torch.nn.LSTM's."""
    P, D = 2, 2 if bidirectional else 1
    reference = torch.nn.LSTM(I, H, layers, bidirectional=bidirectional, proj_size=P, dtype=torch.float64)
    layer = LSTM(I, H, layers, bidirectional=bidirectional, proj_size=P, dtype=torch.float64)
    assert list(layer.state_dict()) == list(reference.state_dict()) and layer.proj_size == P
    layer.load_state_dict(reference.state_dict())
    reference.load_state_dict(layer.state_dict())
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(6, 3, I, generator=generator, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(layers * D, 3, P, generator=generator, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(layers * D, 3, H, generator=generator, dtype=torch.float64, requires_grad=True)
    results = []
    for module in (reference, layer):
        y, (h, c) = module(x, (h0, c0))
        weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        loss = (y * weights).sum() + (h**2).sum() + (0.3 * c).sum()
        results.append((y, h, c, *torch.autograd.grad(loss, [x, h0, c0, *module.parameters()])))
    assert results[1][0].shape == (6, 3, D * P) and results[1][1].shape == (layers * D, 3, P)
    for ours, theirs in zip(results[1], results[0]):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_proj_size_is_checked_as_torch_nn_does():
    with pytest.raises(ValueError, match=rf"proj_size must be an integer from 0 to hidden_size - 1 = {H - 1}, got {H}"):
        LSTM(I, H, proj_size=H)
    layer = LSTM(I, H, proj_size=2)
    with pytest.raises(ValueError, match=r"hx\[h\] must have shape \(num_layers \* num_directions, B, proj_size\)"):
        layer(torch.zeros(4, 3, I), (torch.zeros(1, 3, H), torch.zeros(1, 3, H)))


@pytest.mark.parametrize("name", list(CELLS))
def test_gradcheck_every_cell(name):
    """Finite differences through Recurrent: 2 bidirectional layers, packed unsorted lengths,
    initial states, final states and every step's full state (the path adding dL/dc_t)."""
    torch.manual_seed(0)  # the layer's init: the same whatever ran before (it drew from the global generator)
    layer = Recurrent(name, 2, 2, num_layers=2, bidirectional=True, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    x, hx = small_input(layer, generator)
    lengths = torch.tensor([2, 4, 1])
    names = [n for n, _ in layer.named_parameters()]

    n = len(hx)

    def function(x, *tensors):
        params = dict(zip(names, tensors[n:]))
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        y, final, every = torch.func.functional_call(layer, params, (packed, tensors[:n]), {"all_states": True})
        return (y.data, *final, *(s.data for s in every))

    assert torch.autograd.gradcheck(function, (x, *hx, *layer.parameters()), eps=1e-6, atol=1e-8, rtol=1e-6)


def op_arguments(name, dtype=torch.float64, reverse=True):
    cls = CELLS[name]
    generator = torch.Generator().manual_seed(1)
    batch_sizes = torch.tensor([3, 3, 2, 1])
    x = torch.randn(int(batch_sizes.sum()), I, generator=generator, dtype=dtype, requires_grad=True)
    state0 = torch.randn(len(cls.state_names), 3, H, generator=generator, dtype=dtype, requires_grad=True)
    sizes = {size: H // 2 for size in cls.sizes}  # lstm_proj's proj_size
    params = [
        torch.randn(p.shape(I, H, sizes), generator=generator, dtype=dtype, requires_grad=True) for p in cls.parameters
    ]
    constants = torch.tensor(
        [0.5 * default for default in cls.constants.values()], dtype=torch.float64
    )  # not the defaults
    return (name, x, batch_sizes, state0, params, constants, reverse)


@pytest.mark.parametrize("name", list(CELLS))
def test_opcheck_every_cell(name):
    torch.library.opcheck(torch.ops.derive.recurrent.default, op_arguments(name))
    torch.library.opcheck(torch.ops.derive.recurrent.default, op_arguments(name, reverse=False))
    inference = [a.detach() if isinstance(a, torch.Tensor) else a for a in op_arguments(name)]
    inference[4] = [p.detach() for p in inference[4]]
    torch.library.opcheck(torch.ops.derive.recurrent_inference.default, tuple(inference))


def test_the_inference_op_has_no_backward():
    _, x, batch_sizes, state0, params, constants, reverse = op_arguments("lstm")
    states, _ = torch.ops.derive.recurrent_inference("lstm", x, batch_sizes, state0, params, constants, reverse)
    with pytest.raises(RuntimeError, match="recurrent_inference has no backward"):
        states.sum().backward()


def test_compile_fullgraph_and_export_run_the_ops():
    layer = LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
    x = torch.randn(3, 5, I, dtype=torch.float64, requires_grad=True)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    (y, (_, c)), (y_ref, (_, c_ref)) = compiled(x), layer(x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    grad = torch.autograd.grad((y * y).sum() + c.sum(), x)[0]
    torch.testing.assert_close(grad, torch.autograd.grad((y_ref * y_ref).sum() + c_ref.sum(), x)[0], rtol=0, atol=0)
    exported = torch.export.export(layer, (x.detach(),))
    assert any("derive.recurrent" in str(node.target) for node in exported.graph.nodes)
    torch.testing.assert_close(exported.module()(x.detach())[0], y_ref, rtol=0, atol=0)


def test_eager_calls_leave_out_the_ops_dispatch_and_traced_calls_record_the_op():
    """Plain eager, a layer runs the op's implementation without its dispatch (`ops.run`); under a
    dispatch mode (make_fx here; fake tensors, opcheck) or a TorchScript trace it calls the op,
    which the trace records."""
    from torch.fx.experimental.proxy_tensor import make_fx

    layer = LSTM(I, H, dtype=torch.float64)
    x = torch.randn(5, 2, I, dtype=torch.float64, requires_grad=True)
    y, _ = layer(x)
    assert type(y.grad_fn.next_functions[0][0]).__name__ == "_EagerBackward"
    graph = make_fx(lambda x: layer(x)[0])(x.detach())
    assert any("derive.recurrent" in str(node.target) for node in graph.graph.nodes)
    torch.testing.assert_close(graph(x.detach()), y, rtol=0, atol=0)
    with warnings.catch_warnings():  # TracerWarning: the lengths are read on the host
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(layer, (x.detach(),), check_trace=False)
    assert "derive::recurrent" in str(traced.graph)


def test_errors_name_the_argument():
    layer = GRU(I, H, num_layers=2, dtype=torch.float64)
    with pytest.raises(TypeError, match="input must have dtype torch.float64.*got torch.float32"):
        layer(torch.zeros(2, 1, I))
    with pytest.raises(ValueError, match="input must have input_size = 3"):
        layer(torch.zeros(2, 1, I + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="input is on meta"):
        layer(torch.zeros(2, 1, I, dtype=torch.float64, device="meta"))
    with pytest.raises(ValueError, match=r"hx\[h\] must have shape .* = \(2, 1, 4\), got \(1, 1, 4\)"):
        layer(torch.zeros(2, 1, I, dtype=torch.float64), torch.zeros(1, 1, H, dtype=torch.float64))
    with pytest.raises(ValueError, match="device must be the CPU"):
        GRU(I, H, device="cuda")
    name, x, batch_sizes, state0, params, constants, reverse = op_arguments("gru")
    with pytest.raises(ValueError, match=r"parameter W_hh must have shape \(12, 4\)"):
        torch.ops.derive.recurrent(
            name, x, batch_sizes, state0, [params[0], params[0], *params[2:]], constants, reverse
        )
    with pytest.raises(ValueError, match="batch_sizes must be non-increasing"):
        torch.ops.derive.recurrent(name, x, torch.tensor([3, 1, 2, 3]), state0, params, constants, reverse)
    with pytest.raises(
        ValueError,
        match=r"constants must be a float64 tensor of shape \(0,\), the values of \[\], got torch.float64 of shape \(1,\)",
    ):
        torch.ops.derive.recurrent(
            name, x, batch_sizes, state0, params, torch.tensor([0.1], dtype=torch.float64), reverse
        )


def test_double_backward_raises_a_clear_error():
    layer = RNN(I, H, dtype=torch.float64)
    x = torch.randn(3, 2, I, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(layer(x)[0].pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad.sum().backward()


def test_contiguous_cpu_tensors_are_shared_with_numpy_not_copied():
    x = torch.randn(4, 3, dtype=torch.float32)
    assert np.shares_memory(ops._numpy(x), x.numpy())
    layer = Recurrent("mgu", I, H)
    y, _ = layer(torch.randn(5, 2, I))
    assert y.dtype == torch.float32 and y.shape == (5, 2, H)


def test_import_without_torch_names_the_extra():
    code = "import sys; sys.modules['torch'] = None\ntry:\n import derive.torch\nexcept ImportError as e:\n print(e)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert "pip install 'rnn-derive[torch]'" in out.stdout, out.stderr


def test_training_example_learns():
    """docs/examples/train_sequence.py (docs/torch.md) at a tiny size: the loss goes down."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_sequence", ROOT / "docs" / "examples" / "train_sequence.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    first, last = example.main(["--steps", "40", "--hidden-size", "8", "--batch-size", "8", "--max-length", "6"])
    assert last < 0.5 * first


def test_distributed_data_parallel_equals_single_process_training():
    """docs/examples/ddp_recurrent.py: 2 spawned gloo processes under DDP end with the parameters of
    one process trained on the whole batch."""
    out = subprocess.run(
        [sys.executable, "docs/examples/ddp_recurrent.py", "--steps", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    difference = float(out.stdout.split("largest relative parameter difference ")[1].split()[0])
    moved = float(out.stdout.split("moved by at least ")[1].split(")")[0])
    assert difference <= 1e-12 and moved > 1e-6, out.stdout


def test_readme_example_runs():
    readme = (ROOT / "README.md").read_text().split("## Train in PyTorch", 1)[1]
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 (the README's own code)


def test_a_cell_generated_outside_the_package_runs_through_its_class():
    """Recurrent takes a generated class that is not in generated.CELLS (the tutorial's leaky_rnn)
    and computes what the class's NumPy API computes."""
    from derive.torch.layers import parameter_name
    from tests.conftest import ALL_CELLS

    cls = ALL_CELLS["leaky_rnn"]
    layer = Recurrent(cls, I, H, dtype=torch.float64)
    cell = cls(I, H, dtype=np.float64)
    cell.params = {p.name: getattr(layer, parameter_name(p, 0, False)).detach().numpy() for p in cls.parameters}
    x = torch.randn(4, 2, I, dtype=torch.float64, requires_grad=True)
    y, _ = layer(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    y_np, _, tape = cell.forward(x.detach().numpy())
    np.testing.assert_allclose(y.detach().numpy(), y_np, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(x.grad.numpy(), cell.backward(tape, dy.numpy()).x, rtol=1e-13, atol=1e-13)


def test_unused_outputs_get_no_zero_gradient_and_none_means_zero():
    """recurrent_backward takes None for the gradient of an output the loss does not use, and
    gives what zeros give; autograd passes None (no zero tensor of every state is made)."""
    name, x, batch_sizes, state0, params, constants, reverse = op_arguments("lstm")
    y, states, final, tape = torch.ops.derive.recurrent(name, x, batch_sizes, state0, params, constants, reverse)
    recorded = (name, x, batch_sizes, state0, params, constants, reverse, states, tape)
    d_y = torch.randn_like(y)
    with_none = torch.ops.derive.recurrent_backward(*recorded, d_y, None, None)
    with_zeros = torch.ops.derive.recurrent_backward(*recorded, d_y, torch.zeros_like(states), torch.zeros_like(final))
    for a, b in zip([with_none[0], with_none[1], *with_none[2]], [with_zeros[0], with_zeros[1], *with_zeros[2]]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    seen = []
    original = ops._gradients
    try:
        ops._gradients = lambda *arguments: seen.append(arguments[-3:]) or original(*arguments)
        (y * d_y).sum().backward()
    finally:
        ops._gradients = original
    assert len(seen) == 1 and seen[0][1] is None and seen[0][2] is None  # eager: the implementation, no zeros
    torch.testing.assert_close(x.grad, with_none[0], rtol=0, atol=0)


def test_the_op_backward_checks_what_it_is_given():
    name, x, batch_sizes, state0, params, constants, reverse = op_arguments("gru")
    y, states, final, tape = torch.ops.derive.recurrent(name, x, batch_sizes, state0, params, constants, reverse)
    with pytest.raises(
        ValueError,
        match=r"tape must be a torch.float64 CPU tensor of shape \(144,\), got torch.float64 of shape \(143,\)",
    ):
        torch.ops.derive.recurrent_backward(
            name, x, batch_sizes, state0, params, constants, reverse, states, tape[1:], y, None, None
        )
    with pytest.raises(ValueError, match=r"d_y must be a torch.float64 CPU tensor of shape \(9, 4\)"):
        torch.ops.derive.recurrent_backward(
            name, x, batch_sizes, state0, params, constants, reverse, states, tape, y[1:], None, None
        )
    with pytest.raises(ValueError, match="batch_sizes must sum to the 9 rows"):
        torch.ops.derive.recurrent_backward(
            name, x, torch.tensor([3, 3, 2]), state0, params, constants, reverse, states, tape, y, None, None
        )


def test_outputs_do_not_alias_the_tape_and_inputs_are_guarded_by_autograd():
    """The op shares x and the parameters with its kernels instead of copying them: autograd's
    version counters stand guard. y and the final states are copies, so changing them cannot
    alter the gradients; changing x, a parameter or a returned state (a view of the tape) is an error."""
    layer = Recurrent("lstm", I, H, dtype=torch.float64)
    x = torch.randn(5, 2, I, dtype=torch.float64, requires_grad=True)
    expected = torch.autograd.grad(layer(x)[0].sum(), [x, *layer.parameters()])
    y, (h, c) = layer(x)
    loss = y.sum()
    y.detach().mul_(3)
    c.detach().fill_(7)
    for a, b in zip(torch.autograd.grad(loss, [x, *layer.parameters()]), expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    leaf = torch.randn(5, 2, I, dtype=torch.float64, requires_grad=True)
    for change in ("input", "parameter", "state"):
        x = leaf.clone()
        y, _, (_, every_c) = layer(x, all_states=True)
        loss = y.sum() + every_c.sum()
        with torch.no_grad():
            {"input": x, "parameter": layer.weight_hh_l0, "state": every_c}[change].add_(1)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


@pytest.mark.parametrize("name", ["lstm", "gru", "lstm_proj", "slstm"])
def test_without_gradients_the_inference_kernels_run_and_give_the_same_bits(name, monkeypatch):
    """Under torch.no_grad(), or when nothing needs a gradient (frozen parameters, plain inputs), the
    layers run the kernels' inference forward, which keeps no tape: outputs, final and every step's
    states equal the training path's bit for bit; packed, bidirectional, two layers."""
    from derive.runtime import RecurrentCell

    layer = Recurrent(name, I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, I, generator=generator, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([3, 6, 1, 6, 2]), enforce_sorted=False)
    hx = tuple(torch.randn(4, 5, width, generator=generator, dtype=torch.float64) for width in layer.state_widths)
    recorded = []
    original = RecurrentCell._run
    monkeypatch.setattr(RecurrentCell, "_run", lambda cell, *args: recorded.append(args[-1]) or original(cell, *args))
    expected = layer(packed, hx, all_states=True)
    assert recorded and all(recorded)
    recorded.clear()
    with torch.no_grad():
        without = layer(packed, hx, all_states=True)
    assert recorded and not any(recorded)
    recorded.clear()
    layer.requires_grad_(False)
    frozen = layer(packed, hx, all_states=True)
    assert recorded and not any(recorded)
    for got in (without, frozen):
        flat = [got[0].data, *got[1], *(s.data for s in got[2])]
        for a, b in zip(flat, [expected[0].data, *expected[1], *(s.data for s in expected[2])]):
            assert a.grad_fn is None
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("inference", [False, True], ids=["training", "no_grad"])
def test_both_directions_side_by_side_equal_one_after_the_other(inference, monkeypatch):
    """A bidirectional layer runs its directions at once, one core each (derive/torch/directions.py),
    with one autograd node for both; outputs and every gradient are those of running them one after
    the other, bit for bit, and the caller's Numba thread count is restored."""
    import numba

    from derive.torch import directions

    if numba.get_num_threads() < 2:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() < 2:
        pytest.skip("one thread: directions run one after the other")
    threads = numba.get_num_threads()
    monkeypatch.setattr(directions, "CALL_WORK", 0)  # these tiny calls too
    layer = Recurrent("lstm_peephole", I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(6, 5, I, generator=generator, dtype=torch.float64, requires_grad=True)
    calls = []
    original = directions._each
    monkeypatch.setattr(
        directions, "_each", lambda f, jobs, at_once: calls.append(at_once) or original(f, jobs, at_once)
    )

    def outputs():
        with torch.set_grad_enabled(not inference):
            packed = pack_padded_sequence(x, torch.tensor([3, 6, 1, 6, 2]), enforce_sorted=False)
            y, (h, c), (every_h, every_c) = layer(packed, all_states=True)
        if inference:
            return [y.data, h, c, every_c.data]
        loss = (y.data * y.data).sum() + (c * c).sum() + every_c.data.sum()
        return [y.data, h, c, *torch.autograd.grad(loss, [x, *layer.parameters()])]

    side_by_side = outputs()
    assert calls == [True] * (2 if inference else 4)  # per layer; in training once more in backward
    assert numba.get_num_threads() == threads
    monkeypatch.setattr(directions, "STEP_WORK", 0)  # every step too large: one direction at a time
    for a, b in zip(side_by_side, outputs()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert calls == [True] * (2 if inference else 4) + [False] * (2 if inference else 4)


CTRL_C_SIDE_BY_SIDE = """
import json, os, signal, threading, time
import numba, torch
from derive.torch import LSTM, directions
numba.set_num_threads(2)
directions.CALL_WORK = 0  # side by side at this small size too
torch.manual_seed(0)
layer = LSTM(16, 16, bidirectional=True)
x = torch.randn(64, 4, 16)
with torch.no_grad():
    before = layer(x)[0]
calls = []
original = directions._each
directions._each = lambda f, jobs, at_once: calls.append(at_once) or original(f, jobs, at_once)
sent = []
def interrupt():
    time.sleep(0.5)
    sent.append(time.perf_counter())
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt).start()
started = time.perf_counter()
try:
    while time.perf_counter() - started < 20:
        with torch.no_grad():
            layer(x)
    raised = None
except KeyboardInterrupt:
    raised = time.perf_counter() - sent[0]
with torch.no_grad():
    same = torch.equal(layer(x)[0], before)
print(json.dumps({"latency": raised, "same": same, "side_by_side": all(calls) and len(calls) > 1}))
"""


def test_ctrl_c_stops_a_loop_of_side_by_side_layers_and_leaves_them_usable():
    """A KeyboardInterrupt during a bidirectional layer running its directions side by side is raised
    once the helper thread's kernel ends (milliseconds here), not swallowed while the main thread waits
    for it; the layer then gives its earlier results."""
    out = subprocess.run(
        [sys.executable, "-c", CTRL_C_SIDE_BY_SIDE], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    result = json.loads(out.stdout.splitlines()[-1]) if out.stdout else None
    assert result is not None, out.stderr
    assert result["side_by_side"] and result["same"], result
    assert result["latency"] is not None and result["latency"] < 1.0, result


def test_without_gradients_traces_record_the_inference_op():
    """Under torch.no_grad(), compile, export and make_fx record derive::recurrent_inference (no tape in
    the graph), with the training path's values."""
    from torch.fx.experimental.proxy_tensor import make_fx

    layer = LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
    x = torch.randn(3, 5, I, dtype=torch.float64)
    y_ref, (h_ref, c_ref) = layer(x)
    with torch.no_grad():
        graph = make_fx(lambda x: layer(x)[0])(x)
        exported = torch.export.export(layer, (x,))
        compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
        y, (h, c) = compiled(x)
    for nodes in (graph.graph.nodes, exported.graph.nodes):
        targets = [str(node.target) for node in nodes]
        assert any("derive.recurrent_inference" in t for t in targets)
        assert not any("derive.recurrent.default" in t for t in targets)
    for got, want in ((graph(x), y_ref), (exported.module()(x)[0], y_ref), (y, y_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(got, want.detach(), rtol=0, atol=0)


def test_benchmark_section_runs_and_renders(tmp_path):
    """derive/tools/bench/torch_layers.py at a tiny size, as `python -m derive bench` runs it."""
    from derive.tools.bench import torch_layers
    from derive.tools.bench.report import _table
    from derive.tools.bench.run import worker_env

    results = torch_layers.measure([(3, 2, 4)], 1, worker_env({"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}))
    text = "\n".join(line for section in torch_layers.sections(results) for line in _table(*section))
    assert [e["cell"] for e in results["overhead"]] == ["lstm", "gru"] and [e["layer"] for e in results["layers"]] == [
        "LSTM",
        "GRU",
    ]
    assert "| lstm | 3×2×4 |" in text and "| GRU | 3×2×4 |" in text
    assert "One layer at T×B×H = 3×2×4 (I = H)" in text
    assert all(e["derive_inference"][0] > 0 and e["torch_inference"][0] > 0 for e in results["layers"])
    assert "| no_grad: derive.torch ms |" in text


def test_benchmark_overhead_rows_are_at_the_issues_point_when_the_grid_has_it():
    from derive.tools.bench.torch_layers import overhead_size

    assert overhead_size([(64, 32, 32), (64, 32, 128), (32, 32, 512)]) == (64, 32, 128)
    assert overhead_size([(3, 2, 4), (5, 2, 4)]) == (3, 2, 4)


def count_backward_calls(monkeypatch) -> list[int]:
    """The steps of every backward kernel call from now on (RecurrentCell._gradients)."""
    from derive.runtime.cell import RecurrentCell

    calls, original = [], RecurrentCell._gradients
    monkeypatch.setattr(
        RecurrentCell,
        "_gradients",
        lambda self, tape, *rest: calls.append(tape.x.shape[0]) or original(self, tape, *rest),
    )
    return calls


def test_gradients_of_every_steps_states_take_one_backward_call_and_equal_an_eager_loop(monkeypatch):
    """Gradients reaching h_t and c_t of every step (all_states), with initial states: one backward
    kernel call for the sequence, and the gradients of x, the parameters and (h_0, c_0) equal
    torch autograd through an eager loop of the cell."""
    from derive.tools.torch_reference import run as eager

    layer = Recurrent("lstm", I, H, dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(6, 2, I, generator=generator, dtype=torch.float64, requires_grad=True)
    h0, c0 = (torch.randn(1, 2, H, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(2))
    w_y, w_h, w_c = (torch.randn(6, 2, H, generator=generator, dtype=torch.float64) for _ in range(3))
    calls = count_backward_calls(monkeypatch)
    y, _, (hs, cs) = layer(x, (h0, c0), all_states=True)
    inputs = [x, h0, c0, *layer.parameters()]
    ours = torch.autograd.grad((y * w_y).sum() + (hs * w_h).sum() + (cs**2 * w_c).sum(), inputs)
    assert calls == [6]
    params = {p.name: getattr(layer, f"{p.torch[:-3]}_l0") for p in layer.cell_class.parameters}
    state, every = (h0[0], c0[0]), []
    for t in range(6):
        _, state = eager("lstm", params, x[t : t + 1], state)
        every.append(state)
    h_all, c_all = torch.stack([s[0] for s in every]), torch.stack([s[1] for s in every])
    expected = torch.autograd.grad((h_all * w_y).sum() + (h_all * w_h).sum() + (c_all**2 * w_c).sum(), inputs)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gradients_of_every_steps_states_pass_gradcheck_packed_and_reversed(monkeypatch):
    """all_states gradients at some steps of unsorted variable-length sequences, both directions:
    one backward call per run of equal batch size, and gradcheck passes."""
    layer = Recurrent("lstm", I, H, bidirectional=True, dtype=torch.float64)
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(5, 3, I, generator=generator, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, 5, 2])
    names = [n for n, _ in layer.named_parameters()]

    def function(x, *params):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        y, _, (_, every_c) = torch.func.functional_call(
            layer, dict(zip(names, params)), (packed,), {"all_states": True}
        )
        c, _ = pad_packed_sequence(every_c)
        return pad_packed_sequence(y)[0].sum() + c[1].sum() + (c[2] ** 2).sum()

    calls = count_backward_calls(monkeypatch)
    function(x, *layer.parameters()).backward()
    assert sorted(calls) == [1, 1, 2, 2, 2, 2]  # per direction: runs of 2, 1 and 2 steps (batch 3, 2, 1)
    assert torch.autograd.gradcheck(function, (x, *layer.parameters()), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_a_layer_passes_the_cells_constants_to_every_layer():
    layer = Recurrent("cornn", I, H, num_layers=2, dtype=torch.float64, dt=0.1, gamma=2.0)
    assert layer.constants == {"dt": 0.1, "gamma": 2.0, "epsilon": 4.7}
    assert repr(layer) == "Recurrent('cornn', 3, 4, num_layers=2, dt=0.1, gamma=2.0)"
    x = torch.randn(5, 2, I, dtype=torch.float64)
    y, _ = layer(x)
    y_cell = x.numpy()
    for k in range(2):
        cell = CELLS["cornn"](I if k == 0 else H, H, dtype=np.float64, dt=0.1, gamma=2.0)
        cell.params = {p.name: getattr(layer, f"{p.name}_l{k}").detach().numpy().copy() for p in cell.parameters}
        y_cell, _, _ = cell.forward(y_cell)
    assert relative_error(y.detach().numpy(), y_cell) <= 1e-12
    default = Recurrent("cornn", I, H, num_layers=2, dtype=torch.float64)
    default.load_state_dict(layer.state_dict())
    assert relative_error(default(x)[0].detach().numpy(), y_cell) > 1e-3  # the constants matter


def test_a_layers_constants_are_checked():
    with pytest.raises(TypeError, match=r"CoRNN\(\) got unexpected keyword argument\(s\) \['delta'\]"):
        Recurrent("cornn", I, H, delta=0.1)
    with pytest.raises(ValueError, match=r"CoRNN constant 'dt' must be a finite number in float32, got inf"):
        Recurrent("cornn", I, H, dtype=torch.float32, dt=float("inf"))
    layer = Recurrent("cornn", I, H, dtype=torch.float64)
    layer.constants["dt"] = float("nan")  # set later: checked when the op runs
    with pytest.raises(ValueError, match=r"CoRNN constant 'dt' must be a finite number in float64, got nan"):
        layer(torch.zeros(2, 1, I, dtype=torch.float64))
