"""The benchmark's logic without timing anything: the best-peer table from synthetic results,
skipping peers whose packages are missing, repeating noisy turns, and (where the peers are
installed: `pip install '.[bench-peers]'`) that every peer computes what torch.nn computes."""

import itertools
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from derive.tools.bench import interference, load, report, run, sides
from derive.tools.bench.workloads import PEERS, Point, _inputs, build, derive_inference


def entry(cell, medians_ms):
    """A result record of one point: {side: {mode: ms}} as the driver stores it (seconds)."""
    times = {
        side: {mode: {"median": ms / 1e3, "best": ms / 1e3, "samples": 3} for mode, ms in modes.items()}
        for side, modes in medians_ms.items()
    }
    return {
        "point": Point(cell, "float32", 64, 32, 128).as_dict(),
        "times": times,
        "flops": {"inference": 1e9, "forward": 1e9, "forward_backward": 3e9},
    }


def synthetic_results():
    return {
        "command": "python -m derive bench",
        "date": "today",
        "note": "",
        "seconds": 60.0,
        "load_average": {"start": [0.1, 0.1, 0.1], "end": [0.2, 0.2, 0.2]},
        "blas_gflops": {"float32": 200.0},
        "blas_gflops_median": {"float32": 190.0},
        "facts": {
            "derive": {
                "machine": "m",
                "cpu": "c",
                "cores": 2,
                "versions": {"numpy": "2"},
                "threads": {},
                "inference": "cell.forward(x, tape=False)",
            }
        },
        "points": [
            entry(
                "lstm",
                {
                    "derive": {"inference": 4.0, "forward": 5.0, "forward_backward": 10.0},
                    "eager": {"inference": 1.0, "forward": 1.0, "forward_backward": 1.0},  # ours: never a peer
                    "torch": {"inference": 6.0, "forward": 6.0, "forward_backward": 12.0},
                    "jax": {"inference": 5.0, "forward_backward": 8.0},
                    "onnxruntime": {"inference": 2.0},  # inference only
                },
            ),
            entry(
                "gru",
                {
                    "derive": {"inference": 3.0, "forward": 3.0, "forward_backward": 6.0},
                    "keras": {"inference": 6.0, "forward_backward": 24.0},
                },
            ),
            entry(
                "lstm_peephole",
                {  # no built-in anywhere: no peer row
                    "derive": {"inference": 3.0, "forward": 3.0, "forward_backward": 6.0},
                    "eager": {"inference": 9.0, "forward": 9.0, "forward_backward": 30.0},
                },
            ),
        ],
    }


def test_best_peer_per_point_and_mode():
    best = report.best_peers(synthetic_results())
    fwd_bwd = [(r["label"], r["peer"], r["peer_ms"], r["ours_ms"], r["ratio"]) for r in best["forward_backward"]]
    inference = [(r["label"], r["peer"], r["ratio"]) for r in best["inference"]]
    assert fwd_bwd == [
        ("lstm float32 64×32×128", "jax", 8.0, 10.0, 0.8),
        ("gru float32 64×32×128", "keras", 24.0, 6.0, 4.0),
    ]
    assert inference == [("lstm float32 64×32×128", "onnxruntime", 0.5), ("gru float32 64×32×128", "keras", 2.0)]


def test_best_peer_table_is_the_first_table_with_geometric_means():
    text = report.markdown(synthetic_results(), None)
    assert (
        text.index("## Ours against the best peer at each point") < text.index("## The run") < text.index("## Targets")
    )
    assert "| **geometric mean** over 2 points | fwd+bwd |  |  |  | **1.79x** (worst 0.80x) |" in text  # √(0.8·4)
    assert "| **geometric mean** over 2 points | inference |  |  |  | **1.00x** (worst 0.50x) |" in text  # √(0.5·2)
    assert "| lstm float32 64×32×128 | inference | onnxruntime | 2.00 | 4.00 | 0.50x |" in text
    assert "ours: `cell.forward(x, tape=False)`" in text


def test_busy_thread_and_ctrl_c_targets_and_table():
    """The slowdown is against the faster of the two calls alone; the busy process is shown beside it."""
    results = synthetic_results()
    results["interference"] = {
        "busy": {
            "alone": 10.0,
            "busy_thread": 10.8,
            "busy_process": 12.0,
            "alone_again": 11.0,
            "switch_interval_ms": 5.0,
        },
        "interrupt": {"interrupted": True, "latency": 0.02, "call_seconds": 4.0, "usable": True},
        "repeats": 15,
    }
    text = report.markdown(results, None)
    assert "| a busy Python thread slows a call by at most 10% | +8% (a busy other process" in text
    assert (
        "| Ctrl-C interrupts a long call within 1 s and leaves the cell usable | 0.02 s; cell unchanged | met |" in text
    )
    assert "| beside a busy Python thread | 10.80 | +8% |" in text
    results["interference"]["busy"]["busy_thread"] = 50.0
    results["interference"]["interrupt"].update(interrupted=False, latency=None)
    rows = {target: ok for target, _, ok in interference.targets(results["interference"])}
    assert list(rows.values()) == [False, False]


def test_a_peer_with_a_missing_package_is_skipped_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "jax", None)  # as where jax is not installed
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert sides.missing("jax") == "jax"
    kept = run.installed(["torch", "eager", "jax", "onnxruntime"])
    assert kept == ["torch", "eager"]
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "skipping jax: jax is not installed (pip install 'rnn-derive[bench-peers]')",
        "skipping onnxruntime: onnx is not installed (pip install 'rnn-derive[bench-peers]')",
    ]


class FakeWorker:
    """Answers `time` with the attempt's number; the machine's busy ticks are scripted."""

    def __init__(self):
        self.attempt = 0

    def call(self, op, **request):
        return {"times": [self.attempt]}

    def cpu_ticks(self):
        return 0

    def wait_idle(self):
        self.attempt += 1


@pytest.mark.parametrize(
    "busy, kept, attempts",
    [
        ([0, 0], 0, 1),  # quiet: measured once
        ([0, 50, 50, 50], 1, 2),  # noisy, then quiet: the quiet repeat is kept
        ([0, 50, 50, 80, 80, 200], 1, 3),  # noisy throughout (0.5, 0.3, 1.2 cores): the quietest of 1 + RETRIES
    ],
)
def test_noisy_turns_are_repeated(monkeypatch, busy, kept, attempts):
    ticks, seconds = iter(busy), itertools.count()
    monkeypatch.setattr(load, "busy_ticks", lambda: next(ticks))
    monkeypatch.setattr(load, "TICKS_PER_SECOND", 100)
    monkeypatch.setattr(load, "time", SimpleNamespace(perf_counter=lambda: next(seconds)))  # 1 s per attempt
    times, turns = run.quiet_turn(FakeWorker(), Point("lstm", "float32", 2, 2, 4), ["inference"], calls=1)
    assert times == {"inference": [kept]}
    assert len(turns) == attempts and [t.noisy for t in turns] == [True] * (attempts - 1) + [busy[-1] > busy[-2]]


def test_derive_inference_uses_tape_false_where_the_runtime_has_it():
    class WithTape:
        def forward(self, x, state0=None, *, tape=True):
            return x, tape

    class WithoutTape:
        def forward(self, x, state0=None):
            return x, "tape"

    run_with, label_with = derive_inference(WithTape())
    run_without, label_without = derive_inference(WithoutTape())
    assert run_with(1) == (1, False) and label_with == "cell.forward(x, tape=False)"
    assert run_without(1) == (1, "tape") and "records the tape" in label_without


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn_relu"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("peer", PEERS)
def test_peer_computes_what_torch_computes(peer, cell, dtype):
    pytest.importorskip("torch")
    if sides.missing(peer):
        pytest.skip(f"{sides.missing(peer)} is not installed (pip install '.[bench-peers]')")
    point = Point(cell, dtype, 5, 3, 4)
    try:
        workload = build(peer, point)
    except sides.Unsupported as reason:
        assert peer == "onnxruntime" and dtype == "float64", reason  # ORT's CPU kernels: float only
        return
    tolerance = {"float32": 1e-6, "float64": 1e-14}[dtype]
    np.testing.assert_allclose(workload.output(), build("torch", point).output(), rtol=0, atol=tolerance)
    for mode in workload.modes():
        getattr(workload, mode)()


INPUT_GRADIENT = {  # dL/dx (T, B, I) from what each training-capable peer's forward_backward returns
    "keras": lambda gradients: np.asarray(gradients[0]).transpose(1, 0, 2),  # [dx, *weights], (B, T, I)
    "jax": lambda gradients: np.asarray(gradients[1]),  # (weights, dx)
}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn_relu"])
@pytest.mark.parametrize("peer", INPUT_GRADIENT)
def test_peer_backward_gives_torch_nn_gradient_of_x(peer, cell):
    torch = pytest.importorskip("torch")
    if sides.missing(peer):
        pytest.skip(f"{sides.missing(peer)} is not installed (pip install '.[bench-peers]')")
    point = Point(cell, "float64", 5, 3, 4)
    name, options, weights = sides.reference_weights(point)
    module = getattr(torch.nn, name)(4, 4, **options).double()
    module.load_state_dict({f"{k}_l0": torch.from_numpy(v) for k, v in weights.items()})
    x_np, dy_np = _inputs(point)
    x = torch.tensor(x_np, requires_grad=True)
    module(x)[0].backward(torch.tensor(dy_np))
    dx = INPUT_GRADIENT[peer](build(peer, point).forward_backward())
    np.testing.assert_allclose(dx, x.grad.numpy(), rtol=0, atol=1e-14)


def test_a_cell_with_another_size_runs_on_our_side_and_the_eager_one_and_is_skipped_by_peers():
    """lstm_proj's y has proj_size units: dL/dy has that width; torch.nn's built-in is not run."""
    pytest.importorskip("torch")
    point = Point("lstm_proj", "float64", 3, 2, 4)
    for side in ("derive", "eager"):
        workload = build(side, point)
        assert workload.output().shape == (3, 2, 2)  # proj_size = hidden_size // 2
        workload.forward_backward()
    np.testing.assert_allclose(build("derive", point).output(), build("eager", point).output(), rtol=0, atol=1e-14)
    with pytest.raises(sides.Unsupported, match="lstm_proj has sizes other than H"):
        build("torch", point)
