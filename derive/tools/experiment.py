"""The adding problem: which cells learn a dependency `lag` steps long, next to their gradient flow.

The task (Hochreiter & Schmidhuber 1997; the form of Le et al. 2015 and Arjovsky et al. 2016): a
sequence of `lag` pairs (value ~ U[0, 1], marker); exactly two markers are 1, one at a uniform
position in the first half (t < lag // 2), one in the second half; the target is the sum of the two
marked values. Predicting the mean, 1, gives MSE = 2 · Var U[0, 1] = 1/6 ≈ 0.167 (BASELINE_MSE);
a model that learns the task goes far below it, and to do so it must carry the first value across
more than lag / 2 steps.

`run` trains each cell as a `derive.torch.Recurrent` layer with a linear readout of h_T, by
`torch.optim.Adam` on fresh batches (the same batches for every cell at a lag), and evaluates the
MSE on a fixed test set. Before training and after it, the trained weights are loaded into the
generated NumPy cell and its gradient flow measured on test sequences (`derive.flow`):
‖∂s_T/∂s_0‖₂, the gradient of the last state that reaches the start of the sequence (the first
marker lies between lag / 2 and lag steps back), and λ₁, the largest Lyapunov exponent per step
along the same trajectories. `write_csv` and `plot` write the results.

Needs PyTorch (imported on first use: `derive.tools.experiment` imports without it) and, for the plot,
matplotlib.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from derive.analysis import flow
from derive.analysis.flow_report import pyplot, save_figure, write_rows

BASELINE_MSE = 1 / 6  # of the constant prediction 1: Var(u1 + u2) for u ~ U[0, 1]
CSV_NAME, FLOW_CSV_NAME, PNG_NAME = "adding.csv", "adding_flow.csv", "adding.png"
NO_TORCH = "the adding experiment trains with PyTorch, an optional extra: pip install 'rnn-derive[torch]'"


@dataclass(frozen=True)
class Settings:
    """What `run` trains and measures; every run uses the same seed."""

    cells: tuple[str, ...] = ("rnn", "lstm", "gru")
    lags: tuple[int, ...] = (50, 100, 200)
    steps: int = 800  # Adam steps per run
    batch: int = 64
    hidden: int = 64
    lr: float = 0.01
    clip: float = 1.0  # largest gradient norm per step (0: no clipping)
    forget_bias: tuple[float, ...] = ()  # each value: one run of every cell with a forget gate f (else its own init)
    seed: int = 0
    test_size: int = 512
    eval_every: int = 0  # steps between test evaluations (0: steps // 20)
    flow_batch: int = 8  # test sequences the gradient flow is measured on

    def __post_init__(self):
        import generated

        if not self.cells:
            raise ValueError("cells must name at least one cell")
        unknown = [c for c in self.cells if c not in generated.CELLS]
        if unknown:
            raise ValueError(f"cells: unknown cell(s) {unknown}; generated cells: {', '.join(generated.CELLS)}")
        if not self.lags or not all(_is_integer(k) and k >= 2 for k in self.lags):
            raise ValueError(
                f"lags must be integers >= 2 (one marker in each half of the sequence), got {list(self.lags)}"
            )
        for name in ("steps", "batch", "hidden", "test_size", "flow_batch"):
            value = getattr(self, name)
            if not _is_integer(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("eval_every", "seed"):
            value = getattr(self, name)
            if not _is_integer(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (isinstance(self.clip, (int, float)) and math.isfinite(self.clip) and self.clip >= 0):
            raise ValueError(f"clip must be a finite number >= 0 (0: no clipping), got {self.clip!r}")
        if not all(isinstance(b, (int, float)) and math.isfinite(b) for b in self.forget_bias):
            raise ValueError(f"forget_bias must be finite numbers, got {list(self.forget_bias)}")
        if self.flow_batch > self.test_size:
            raise ValueError(f"flow_batch must be at most test_size = {self.test_size}, got {self.flow_batch}")

    @property
    def every(self) -> int:
        return self.eval_every or max(1, self.steps // 20)


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass
class Result:
    """One cell trained at one lag: learning curve and gradient flow before and after training."""

    cell: str
    lag: int
    forget_bias: float | None  # None: the cell's own initialization
    steps: list[int] = field(default_factory=list)  # evaluation steps, 0 first
    train_mse: list[float] = field(default_factory=list)  # mean training loss since the previous evaluation (nan at 0)
    test_mse: list[float] = field(default_factory=list)
    norms: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # "init"/"end" -> (lag+1,) ‖∂s_T/∂s_{T−k}‖₂, mean over rows
    lyapunov: dict[str, float] = field(default_factory=dict)  # "init"/"end" -> λ₁ per step, mean over rows
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return self.cell if self.forget_bias is None else f"{self.cell} (forget bias {self.forget_bias:g})"


# -- the task ---------------------------------------------------------------------------------
def adding_problem(rng: np.random.Generator, length: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch of the adding problem: x (length, batch, 2) float32 of (value, marker), y (batch,) the
    sum of the two marked values; one marker at t < length // 2, the other at t >= length // 2."""
    if not _is_integer(length) or length < 2:
        raise ValueError(f"length must be an integer >= 2, got {length!r}")
    half = length // 2
    x = np.zeros((length, batch, 2), dtype=np.float32)
    x[:, :, 0] = rng.random((length, batch))
    rows = np.arange(batch)
    first = rng.integers(0, half, batch)
    second = rng.integers(half, length, batch)
    x[first, rows, 1] = 1.0
    x[second, rows, 1] = 1.0
    return x, x[first, rows, 0] + x[second, rows, 0]


# -- running the experiment -------------------------------------------------------------------
def runs(settings: Settings) -> list[tuple[str, int, float | None]]:
    """(cell, lag, forget bias) of every run, lag by lag: one per forget bias for cells with a gate f."""
    import generated

    out = []
    for lag in settings.lags:
        for cell in settings.cells:
            has_f = "f" in flow.gate_names(generated.CELLS[cell])
            for bias in settings.forget_bias if has_f and settings.forget_bias else [None]:
                out.append((cell, lag, bias))
    return out


def run(settings: Settings, progress=None) -> list[Result]:
    """Train and measure every run of `settings`; `progress` (a `Progress`) is told how far each is."""
    torch = require_torch()
    results = []
    plan = runs(settings)
    for k, (cell, lag, bias) in enumerate(plan):
        result = Result(cell, lag, bias)
        if progress:
            progress.start(k, len(plan), result.label, lag)
        train(result, settings, torch, progress)
        results.append(result)
    if progress:
        progress.done(results)
    return results


def require_torch():
    try:
        import torch
    except ImportError:
        raise ImportError(NO_TORCH) from None
    return torch


def train(result: Result, settings: Settings, torch, progress=None) -> None:
    """Fill `result`: train its cell on its lag, evaluating every `settings.every` steps."""
    from derive.torch import Recurrent

    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    layer = Recurrent(result.cell, 2, settings.hidden)
    head = torch.nn.Linear(settings.hidden, 1)
    if result.forget_bias is not None:
        cell = numpy_cell(layer)
        flow.set_gate_bias(cell, result.forget_bias, "f")
        load_layer(layer, cell)
    x_test, y_test = (
        torch.from_numpy(a)
        for a in adding_problem(np.random.default_rng([settings.seed, 1]), result.lag, settings.test_size)
    )
    flow_x = x_test[:, : settings.flow_batch].numpy()
    batches = np.random.default_rng([settings.seed, 2, result.lag])

    def predict(x):
        output, _ = layer(x)
        return head(output[-1]).squeeze(1)

    def evaluate(step, losses):
        with torch.no_grad():
            test = torch.nn.functional.mse_loss(predict(x_test), y_test).item()
        result.steps.append(step)
        result.train_mse.append(float(np.mean(losses)) if losses else math.nan)
        result.test_mse.append(test)
        if progress:
            progress.update(step, settings.steps, test)

    measure_flow(result, "init", numpy_cell(layer), flow_x)
    parameters = [*layer.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=settings.lr)
    evaluate(0, [])
    losses = []
    for step in range(1, settings.steps + 1):
        x, y = (torch.from_numpy(a) for a in adding_problem(batches, result.lag, settings.batch))
        loss = torch.nn.functional.mse_loss(predict(x), y)
        optimizer.zero_grad()
        loss.backward()
        if settings.clip:
            torch.nn.utils.clip_grad_norm_(parameters, settings.clip)
        optimizer.step()
        losses.append(loss.item())
        if step % settings.every == 0 or step == settings.steps:
            evaluate(step, losses)
            losses = []
    measure_flow(result, "end", numpy_cell(layer), flow_x)
    result.seconds = time.perf_counter() - started


def numpy_cell(layer):
    """The generated NumPy cell (float32) holding the weights of a one-layer `derive.torch.Recurrent`."""
    from derive.torch.layers import parameter_name

    cls = layer.cell_class
    cell = cls(layer.input_size, layer.hidden_size, dtype=np.float32)
    for p in cls.parameters:
        cell.params[p.name][...] = getattr(layer, parameter_name(p, 0, False)).detach().numpy()
    return cell


def load_layer(layer, cell) -> None:
    """Copy the NumPy cell's weights into the one-layer `derive.torch.Recurrent` (the inverse of `numpy_cell`)."""
    import torch

    from derive.torch.layers import parameter_name

    with torch.no_grad():
        for p in layer.cell_class.parameters:
            getattr(layer, parameter_name(p, 0, False)).copy_(torch.from_numpy(cell.params[p.name]))


def measure_flow(result: Result, when: str, cell, x: np.ndarray) -> None:
    """‖∂s_T/∂s_{T−k}‖₂ for k = 0..T and λ₁ of `cell` on x (T, B, 2), means over the B rows."""
    _, _, tape = cell.forward(x)
    norms, _ = flow.lag_norms(cell.jacobian(tape).astype(np.float64))
    result.norms[when] = norms.mean(axis=0)
    result.lyapunov[when] = float(flow.lyapunov(cell, x, 1)[:, 0].mean())


# -- progress ---------------------------------------------------------------------------------
class Progress:
    """A progress bar on a stream (stderr): redrawn in place on a terminal, one line per run elsewhere."""

    WIDTH = 24

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.perf_counter()

    def start(self, index: int, total: int, label: str, lag: int) -> None:
        self.head = f"[{index + 1}/{total}] {label}, lag {lag}"

    def update(self, step: int, steps: int, test_mse: float) -> None:
        filled = round(self.WIDTH * step / steps)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = f"{self.head} |{bar}| step {step}/{steps}, test MSE {test_mse:.4f}, {self._clock()}"
        if self.live:
            self.stream.write(f"\r\033[K{line}")
        elif step == steps:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self, results: list[Result]) -> None:
        if self.live:
            self.stream.write("\n")
        self.stream.write(f"{len(results)} runs in {self._clock()}\n")
        self.stream.flush()

    def _clock(self) -> str:
        seconds = int(time.perf_counter() - self.started)
        return f"{seconds // 60}:{seconds % 60:02d} elapsed"


# -- output -----------------------------------------------------------------------------------
def write_csv(results: list[Result], out: Path) -> tuple[Path, Path]:
    """Write into `out`:

    adding.csv       one row per run and evaluation step: cell, forget_bias, lag, step, train_mse (mean
                     training loss since the previous evaluation), test_mse; at step 0 (initialization)
                     and the last step also grad_norm = ‖∂s_T/∂s_{T−lag}‖₂ = ‖∂s_T/∂s_0‖₂ and lambda_1
    adding_flow.csv  one row per run, time (init, end) and lag k: norm = ‖∂s_T/∂s_{T−k}‖₂
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in results:
        bias = "" if r.forget_bias is None else repr(float(r.forget_bias))
        flow_at = {r.steps[0]: "init", r.steps[-1]: "end"}
        for step, train_mse, test_mse in zip(r.steps, r.train_mse, r.test_mse):
            when = flow_at.get(step)
            measured = [repr(float(r.norms[when][-1])), repr(r.lyapunov[when])] if when else ["", ""]
            rows.append(
                [r.cell, bias, r.lag, step, "" if math.isnan(train_mse) else repr(train_mse), repr(test_mse), *measured]
            )
    table = out / CSV_NAME
    write_rows(table, ["cell", "forget_bias", "lag", "step", "train_mse", "test_mse", "grad_norm", "lambda_1"], rows)
    rows = [
        [r.cell, "" if r.forget_bias is None else repr(float(r.forget_bias)), r.lag, when, k, repr(float(norm))]
        for r in results
        for when in ("init", "end")
        for k, norm in enumerate(r.norms[when])
    ]
    curves = out / FLOW_CSV_NAME
    write_rows(curves, ["cell", "forget_bias", "lag", "time", "k", "norm"], rows)
    return table, curves


def table(results: list[Result]) -> str:
    """The final test MSE of each run against the baseline, and its gradient flow before and after."""
    width = max(len("run"), *(len(r.label) for r in results))
    caption = (
        f"test MSE after training (baseline, predicting the mean: {BASELINE_MSE:.3f}); ‖∂s_T/∂s_0‖₂ and λ₁ "
        "at initialization → after training"
    )
    lines = [
        caption,
        f"{'run':<{width}}  {'lag':>5}  {'test MSE':>9}  {'‖∂s_T/∂s_0‖ init → end':>24}  {'λ₁ init → end':>17}  {'time':>6}",
    ]
    for r in results:
        lines.append(
            f"{r.label:<{width}}  {r.lag:>5}  {r.test_mse[-1]:>9.4f}  "
            f"{r.norms['init'][-1]:>10.2e} → {r.norms['end'][-1]:<10.2e}  "
            f"{r.lyapunov['init']:>7.3f} → {r.lyapunov['end']:<7.3f}  {r.seconds:>5.0f}s"
        )
    return "\n".join(lines)


def plot(results: list[Result], out: Path, title: str = "") -> Path | None:
    """Draw `adding.png` into `out`, one row per lag: test MSE against step, and the gradient
    ‖∂s_T/∂s_{T−k}‖₂ against k at initialization (dashed) and after training (solid).
    None (nothing drawn) without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    lags = sorted({r.lag for r in results})
    labels = list(dict.fromkeys(r.label for r in results))
    colors = {label: f"C{i}" for i, label in enumerate(labels)}
    fig, axes = plt.subplots(len(lags), 2, figsize=(12, 3.6 * len(lags)), squeeze=False)
    for (curves, flows), lag in zip(axes, lags):
        for r in (r for r in results if r.lag == lag):
            color = colors[r.label]
            curves.plot(r.steps, r.test_mse, color=color, lw=1.6, label=r.label)
            k = np.arange(len(r.norms["end"]))
            for when, style in (("init", "--"), ("end", "-")):
                shown = np.where(r.norms[when] > 0, r.norms[when], np.nan)
                flows.plot(
                    k,
                    shown,
                    style,
                    color=color,
                    lw=1.4 if when == "end" else 1.0,
                    label=f"{r.label}: λ₁ {r.lyapunov['init']:.3f} → {r.lyapunov['end']:.3f}"
                    if when == "end"
                    else None,
                )
        curves.axhline(BASELINE_MSE, color="0.4", lw=0.9, ls=":", label="predict the mean (1/6)")
        curves.set_yscale("log")
        curves.set_xlabel("Adam step")
        curves.set_ylabel("test MSE (log scale)")
        curves.set_title(f"Adding problem, T = {lag}")
        curves.grid(True, which="major", alpha=0.3)
        curves.legend(fontsize="small")
        flows.axvspan(lag - lag // 2, lag, color="0.5", alpha=0.1, lw=0)
        flows.set_yscale("log")
        flows.axhline(1.0, color="0.5", lw=0.8, ls=":")
        flows.set_xlabel("lag k (steps back from T; shaded: where the first marker is)")
        flows.set_ylabel(r"$\Vert\partial s_T / \partial s_{T-k}\Vert_2$ (dashed: init, solid: trained)")
        flows.set_title(f"Gradient reaching k steps back, T = {lag}")
        flows.grid(True, which="major", alpha=0.3)
        flows.legend(fontsize="x-small")
    return save_figure(plt, fig, Path(out) / PNG_NAME, title)


def describe(settings: Settings) -> str:
    """The settings every run shares, for the figure's title."""
    clip = f"clip {settings.clip:g}" if settings.clip else "no clipping"
    return (
        f"H = {settings.hidden}, batch {settings.batch}, {settings.steps} Adam steps (lr {settings.lr:g}, {clip}), "
        f"seed {settings.seed}"
    )
