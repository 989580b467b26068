"""`python -m derive experiment adding`: the task's data, the experiment end to end at a tiny size, its errors."""

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from derive.tools import cli, experiment

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--cells",
    "rnn",
    "lstm",
    "--lags",
    "6",
    "9",
    "--steps",
    "5",
    "--batch",
    "4",
    "--hidden",
    "3",
    "--test-size",
    "8",
    "--eval-every",
    "2",
    "--forget-bias",
    "0",
    "1",
]


# -- the task ---------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [2, 3, 10, 51])
def test_adding_problem_has_two_markers_one_per_half_and_the_target_is_their_sum(length):
    x, y = experiment.adding_problem(np.random.default_rng(length), length, 300)
    assert x.shape == (length, 300, 2) and x.dtype == np.float32 and y.shape == (300,)
    values, markers = x[..., 0], x[..., 1]
    assert set(np.unique(markers)) <= {0.0, 1.0}
    assert np.array_equal(markers.sum(axis=0), np.full(300, 2.0))
    half = length // 2
    assert np.array_equal(markers[:half].sum(axis=0), np.ones(300))  # one in each half
    assert np.array_equal(y, (values * markers).sum(axis=0))
    assert values.min() >= 0 and values.max() < 1


def test_adding_problem_baseline_is_one_sixth():
    """Predicting the mean target 1 gives MSE 1/6: what the docs compare test MSEs with."""
    _, y = experiment.adding_problem(np.random.default_rng(0), 20, 200_000)
    assert abs(y.mean() - 1.0) < 0.01
    assert abs(((y - 1.0) ** 2).mean() - experiment.BASELINE_MSE) < 0.002


def test_adding_problem_rejects_a_length_below_two():
    with pytest.raises(ValueError, match="length must be an integer >= 2, got 1"):
        experiment.adding_problem(np.random.default_rng(0), 1, 4)


# -- end to end -------------------------------------------------------------------------------
def test_experiment_end_to_end_at_a_tiny_size(torch, tmp_path):
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", stdout)
        patch.setattr(sys, "stderr", stderr)
        assert cli.main(["experiment", "adding", *TINY, "--out", str(tmp_path)]) == 0
    runs = [("rnn", ""), ("lstm", "0.0"), ("lstm", "1.0")]  # the rnn has no forget gate: one run at its own init
    with open(tmp_path / experiment.CSV_NAME, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["cell", "forget_bias", "lag", "step", "train_mse", "test_mse", "grad_norm", "lambda_1"]
    assert len(rows) == 2 * len(runs) * 4  # evaluations at steps 0, 2, 4, 5
    assert [(r["cell"], r["forget_bias"]) for r in rows[::4]] == runs * 2
    assert [r["lag"] for r in rows[::4]] == ["6"] * 3 + ["9"] * 3
    assert [r["step"] for r in rows[:4]] == ["0", "2", "4", "5"]
    for r in rows:
        measured = r["step"] in ("0", "5")  # at initialization and after training only
        assert (r["grad_norm"] != "") == measured and (r["lambda_1"] != "") == measured
        assert (r["train_mse"] == "") == (r["step"] == "0")
        assert np.isfinite(float(r["test_mse"]))
        if measured:
            assert float(r["grad_norm"]) >= 0 and np.isfinite(float(r["lambda_1"]))
    with open(tmp_path / experiment.FLOW_CSV_NAME, newline="") as f:
        curves = list(csv.DictReader(f))
    assert list(curves[0]) == ["cell", "forget_bias", "lag", "time", "k", "norm"]
    assert len(curves) == len(runs) * 2 * (7 + 10)  # k = 0..lag, init and end, per run and lag
    assert all(float(c["norm"]) == 1.0 for c in curves if c["k"] == "0")
    # the norm at k = lag in adding_flow.csv is adding.csv's grad_norm
    for r in (r for r in rows if r["grad_norm"]):
        time = "init" if r["step"] == "0" else "end"
        match = [
            c
            for c in curves
            if (c["cell"], c["forget_bias"], c["lag"], c["time"], c["k"])
            == (r["cell"], r["forget_bias"], r["lag"], time, r["lag"])
        ]
        assert [c["norm"] for c in match] == [r["grad_norm"]]
    assert "[6/6] lstm (forget bias 1), lag 9" in stderr.getvalue()
    assert "6 runs in" in stderr.getvalue()
    assert "test MSE after training" in stdout.getvalue()
    pytest.importorskip("matplotlib")
    assert (tmp_path / experiment.PNG_NAME).read_bytes().startswith(b"\x89PNG")


def test_trained_weights_measured_are_the_layers(torch):
    """The gradient flow is measured on a NumPy cell holding exactly the layer's weights, and the
    forget bias goes in as a total bias of the f gate."""
    from derive.torch import Recurrent

    layer = Recurrent("lstm", 2, 5)
    cell = experiment.numpy_cell(layer)
    x = torch.rand(7, 3, 2)
    y, _ = layer(x)
    np.testing.assert_array_equal(cell.forward(x.numpy())[0], y.detach().numpy())
    experiment.flow.set_gate_bias(cell, 1.5, "f")
    experiment.load_layer(layer, cell)
    f = slice(5, 10)  # gates i, f, g, o
    assert torch.all(layer.bias_ih_l0[f] == 1.5) and torch.all(layer.bias_hh_l0[f] == 0)
    np.testing.assert_array_equal(experiment.numpy_cell(layer).params["b_ih"], cell.params["b_ih"])


def test_flow_at_initialization_is_that_of_the_initial_weights_on_test_sequences(torch):
    """grad_norm and lambda_1 at step 0 are derive.flow's numbers for the untrained layer on the first
    flow_batch test sequences; after training they are those of other (the trained) weights."""
    from derive.torch import Recurrent

    settings = experiment.Settings(
        cells=("gru",), lags=(7,), steps=3, batch=2, hidden=3, test_size=5, flow_batch=4, seed=3
    )
    result = experiment.Result("gru", 7, None)
    experiment.train(result, settings, torch)
    torch.manual_seed(3)
    cell = experiment.numpy_cell(Recurrent("gru", 2, 3))
    x = experiment.adding_problem(np.random.default_rng([3, 1]), 7, 5)[0][:, :4]
    expected = experiment.flow.measure(cell, x, lyapunov_exponents=1)
    np.testing.assert_allclose(result.norms["init"], expected.norm, rtol=1e-12)
    assert result.lyapunov["init"] == pytest.approx(expected.spectrum.exponents[:, 0].mean(), rel=1e-12)
    assert not np.allclose(result.norms["end"], expected.norm, rtol=1e-6)
    assert result.steps == [0, 1, 2, 3] and len(result.test_mse) == 4


def test_settings_give_one_run_per_forget_bias_for_cells_with_a_forget_gate():
    settings = experiment.Settings(cells=("gru", "lstm"), lags=(4,), forget_bias=(0.0, 2.0))
    assert experiment.runs(settings) == [("gru", 4, None), ("lstm", 4, 0.0), ("lstm", 4, 2.0)]
    assert experiment.runs(experiment.Settings(cells=("lstm",), lags=(4, 5))) == [("lstm", 4, None), ("lstm", 5, None)]


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        (["--cells", "rnn", "lstmm"], "cells: unknown cell(s) ['lstmm']"),
        (["--lags", "50", "1"], "lags must be integers >= 2"),
        (["--steps", "0"], "steps must be a positive integer, got 0"),
        (["--batch", "-3"], "batch must be a positive integer, got -3"),
        (["--hidden", "0"], "hidden must be a positive integer, got 0"),
        (["--lr", "0"], "lr must be a positive finite number, got 0.0"),
        (["--clip", "-1"], "clip must be a finite number >= 0"),
        (["--test-size", "0"], "test_size must be a positive integer, got 0"),
        (["--eval-every", "-1"], "eval_every must be a non-negative integer, got -1"),
        (["--threads", "0"], "--threads must be from 1 to"),
    ],
)
def test_bad_arguments_are_one_line_errors_naming_them(torch, tmp_path, capsys, options, message):
    assert cli.main(["experiment", "adding", *TINY, *options, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("experiment: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_bad_settings_in_python_name_the_argument():
    with pytest.raises(ValueError, match=r"lags must be integers >= 2 .* got \[10, 1\]"):
        experiment.Settings(lags=(10, 1))
    with pytest.raises(ValueError, match="forget_bias must be finite numbers, got \\[nan\\]"):
        experiment.Settings(forget_bias=(float("nan"),))
    with pytest.raises(ValueError, match="flow_batch must be at most test_size = 4, got 8"):
        experiment.Settings(test_size=4)


def test_without_torch_the_command_names_the_extra(tmp_path):
    """torch is optional: `--help` works without it, and the experiment exits with one line naming the extra."""
    hide_torch = (
        "import sys; sys.modules['torch'] = None; from derive.tools import cli; sys.exit(cli.main(sys.argv[1:]))"
    )
    help = subprocess.run(
        [sys.executable, "-c", hide_torch, "experiment", "adding", "--help"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert help.returncode == 0 and "--forget-bias" in help.stdout
    run = subprocess.run(
        [sys.executable, "-c", hide_torch, "experiment", "adding", "--out", str(tmp_path / "out")],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert run.stderr == f"experiment: {experiment.NO_TORCH}\n"
    assert not (tmp_path / "out").exists()


def test_help_states_the_defaults_of_settings(capsys):
    with pytest.raises(SystemExit):
        cli.main(["experiment", "adding", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = experiment.Settings()
    for option, value in (
        ("cells", " ".join(defaults.cells)),
        ("lags", " ".join(map(str, defaults.lags))),
        ("steps", defaults.steps),
        ("batch", defaults.batch),
        ("hidden", defaults.hidden),
        ("lr", defaults.lr),
        ("clip", defaults.clip),
        ("seed", defaults.seed),
        ("test_size", defaults.test_size),
    ):
        assert f"(default: {value})" in text, option


def test_progress_redraws_one_line_on_a_terminal_and_writes_one_line_per_run_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, live in ((Terminal(), True), (io.StringIO(), False)):
        progress = experiment.Progress(stream)
        progress.start(0, 2, "gru", 50)
        for step in (0, 5, 10):
            progress.update(step, 10, 0.25)
        progress.done([])
        text = stream.getvalue()
        assert text.count("[1/2] gru, lag 50 |") == (3 if live else 1)
        assert ("|" + "#" * 12 + "." * 12 + "| step 5/10, test MSE 0.2500" in text) == live
        assert "|" + "#" * 24 + "| step 10/10, test MSE 0.2500" in text
        assert text.count("\r") == (3 if live else 0) and text.endswith("0 runs in 0:00 elapsed\n")
