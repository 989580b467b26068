"""Write what `flow.py` measured: two CSV files, a short table and a figure.

    gradient_flow.csv        one row per run and lag k: norm = ‖∂s_T/∂s_{T−k}‖₂ (mean over batch
                             rows), norm_min, norm_max, and norm_<state> = ‖∂a_T/∂a_{T−k}‖₂ per state
    gradient_flow_steps.csv  one row per run and step t: spectral radius and ‖J_t‖₂ of
                             J_t = ∂s_t/∂s_{t-1}, and the mean of each gate (gate_<name>)
    gradient_flow.png        norm against lag on a log scale, and ρ(J_t) against t (needs matplotlib)

and, for runs with Lyapunov exponents:

    lyapunov.csv             one row per run and step t past the warmup: lambda_1 … lambda_K, the
                             estimate of each exponent from the steps so far (mean over batch rows)
    lyapunov.png             that estimate against t for λ_1 … λ_4, and the final spectrum λ_i against i
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .flow import Flow

CSV_NAME, STEPS_CSV_NAME, PNG_NAME = "gradient_flow.csv", "gradient_flow_steps.csv", "gradient_flow.png"
LYAPUNOV_CSV_NAME, LYAPUNOV_PNG_NAME = "lyapunov.csv", "lyapunov.png"
CONVERGENCE_SHOWN = 4  # exponents whose convergence lyapunov.png draws (lyapunov.csv has them all)
NO_MATPLOTLIB = (
    "matplotlib is not installed, so no plot was drawn: pip install matplotlib (or pip install -e '.[plot]')"
)


def _union(lists) -> list[str]:
    names: list[str] = []
    for items in lists:
        names += [n for n in items if n not in names]
    return names


def _number(value: float) -> str:
    return repr(float(value))


def write_rows(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_csv(flows: list[Flow], out: Path) -> tuple[Path, ...]:
    """Write the CSV files into `out` (lyapunov.csv only if a run has a spectrum); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    states = _union(f.state_names for f in flows)
    rows = []
    for f in flows:
        for k in f.lags:
            per_state = [_number(f.state_norm[s][k]) if s in f.state_norm else "" for s in states]
            rows.append(
                [f.cell, f.label, k, _number(f.norm[k]), _number(f.norm_min[k]), _number(f.norm_max[k]), *per_state]
            )
    lags = out / CSV_NAME
    write_rows(lags, ["cell", "run", "lag", "norm", "norm_min", "norm_max", *(f"norm_{s}" for s in states)], rows)
    gates = _union(f.gates for f in flows)
    rows = []
    for f in flows:
        for k, t in enumerate(f.steps):
            per_gate = [_number(f.gates[g][k]) if g in f.gates else "" for g in gates]
            rows.append([f.cell, f.label, t, _number(f.spectral_radius[k]), _number(f.max_singular[k]), *per_gate])
    steps = out / STEPS_CSV_NAME
    write_rows(steps, ["cell", "run", "step", "spectral_radius", "max_singular", *(f"gate_{g}" for g in gates)], rows)
    spectra = [f for f in flows if f.spectrum is not None]
    if not spectra:
        return lags, steps
    K = max(f.spectrum.running.shape[1] for f in spectra)
    rows = []
    for f in spectra:
        k = f.spectrum.running.shape[1]
        for t, estimate in zip(f.spectrum.steps, f.spectrum.running):
            rows.append([f.cell, f.label, t, *map(_number, estimate), *[""] * (K - k)])
    exponents = out / LYAPUNOV_CSV_NAME
    write_rows(exponents, ["cell", "run", "step", *(f"lambda_{i}" for i in range(1, K + 1))], rows)
    return lags, steps, exponents


def table(flows: list[Flow]) -> str:
    """A few numbers per run: the lag norms at k = 1, 10, 100 and T, the per-step ρ and ‖J_t‖₂, the gates."""
    T = len(flows[0].norm) - 1
    lags = sorted({k for k in (1, 10, 100, T) if k <= T})
    width = max(len("run"), *(len(f.label) for f in flows))
    head = (
        f"{'run':<{width}}  "
        + "".join(f"{f'k={k}':>10}" for k in lags)
        + f"{'mean ρ(J_t)':>13}{'mean ‖J_t‖':>12}  mean gates"
    )
    lines = ["‖∂s_T/∂s_{T−k}‖₂ at lag k (mean over batch rows); ρ(J_t) and ‖J_t‖₂ per step, averaged over steps", head]
    for f in flows:
        gates = " ".join(f"{g}={v.mean():.2f}" for g, v in f.gates.items()) or "-"
        lines.append(
            f"{f.label:<{width}}  "
            + "".join(f"{f.norm[k]:>10.2e}" for k in lags)
            + f"{f.spectral_radius.mean():>13.3f}{f.max_singular.mean():>12.3f}  {gates}"
        )
    return "\n".join(lines)


def lyapunov_table(flows: list[Flow], shown: int = 5) -> str:
    """The final Lyapunov exponents of each run with a spectrum (the first `shown` and the last)."""
    spectra = [f for f in flows if f.spectrum is not None]
    if not spectra:
        return ""
    K = max(f.spectrum.exponents.shape[1] for f in spectra)
    columns = list(range(min(K, shown))) + ([K - 1] if K > shown else [])
    width = max(len("run"), *(len(f.label) for f in spectra))
    head = f"{'run':<{width}}  " + "".join(f"{f'λ{i + 1}':>10}" for i in columns) + f"{'e^λ1':>10}"
    warmups = sorted({f.spectrum.warmup for f in spectra})
    caption = (
        f"Lyapunov exponents per step (natural log, mean over batch rows; warmup {', '.join(map(str, warmups))} steps "
        "not averaged); e^λ1: growth of the gradient per step over long products"
    )
    lines = [caption, head]
    for f in spectra:
        mean = f.spectrum.exponents.mean(axis=0)
        lines.append(
            f"{f.label:<{width}}  "
            + "".join(f"{mean[i]:>10.4f}" if i < len(mean) else f"{'':>10}" for i in columns)
            + f"{np.exp(mean[0]):>10.4f}"
        )
    return "\n".join(lines)


def pyplot():
    """matplotlib.pyplot drawing to files, or None if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(plt, fig, path: Path, title: str) -> Path:
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def plot(flows: list[Flow], out: Path, title: str = "") -> Path | None:
    """Draw `gradient_flow.png` into `out`; None (and nothing drawn) without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    fig, (lags, steps) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    for f in flows:
        shown = np.where(np.isfinite(f.norm) & (f.norm > 0), f.norm, np.nan)
        (line,) = lags.plot(f.lags, shown, label=f.label, lw=1.8)
        if np.any(f.norm_min != f.norm_max):
            lags.fill_between(f.lags, f.norm_min, f.norm_max, color=line.get_color(), alpha=0.15, lw=0)
        steps.plot(f.steps, f.spectral_radius, color=line.get_color(), lw=1.2, label=f.label)
    lags.set_yscale("log")
    lags.axhline(1.0, color="0.5", lw=0.8, ls=":")
    lags.set_xlabel("lag k (steps back from the last step T)")
    lags.set_ylabel(r"$\Vert\partial s_T / \partial s_{T-k}\Vert_2$  (log scale)")
    lags.set_title("How much gradient reaches k steps back")
    lags.grid(True, which="major", alpha=0.3)
    lags.legend(fontsize="small")
    steps.axhline(1.0, color="0.5", lw=0.8, ls=":")
    steps.set_xlabel("step t")
    steps.set_ylabel(r"spectral radius $\rho(J_t)$,  $J_t = \partial s_t / \partial s_{t-1}$")
    steps.set_title("Per-step Jacobian")
    steps.set_ylim(bottom=0)
    steps.grid(True, alpha=0.3)
    return save_figure(plt, fig, Path(out) / PNG_NAME, title)


def plot_lyapunov(flows: list[Flow], out: Path, title: str = "") -> Path | None:
    """Draw `lyapunov.png` into `out` if a run has a spectrum; None without one or without matplotlib."""
    spectra = [f for f in flows if f.spectrum is not None]
    plt = pyplot() if spectra else None
    if plt is None:
        return None
    fig, (running, final) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    for f in spectra:
        s = f.spectrum
        (line,) = running.plot(s.steps, s.running[:, 0], lw=1.8)
        for i in range(1, min(s.running.shape[1], CONVERGENCE_SHOWN)):
            running.plot(s.steps, s.running[:, i], color=line.get_color(), lw=0.8, alpha=0.5)
        mean = s.exponents.mean(axis=0)
        final.plot(np.arange(1, len(mean) + 1), mean, "o-", ms=3, color=line.get_color(), label=f.label)
    for ax in (running, final):
        ax.axhline(0.0, color="0.5", lw=0.8, ls=":")
        ax.grid(True, alpha=0.3)
    running.set_xlabel("step t")
    running.set_ylabel(r"estimate of $\lambda_i$ from the steps so far")
    shown = min(CONVERGENCE_SHOWN, max(f.spectrum.running.shape[1] for f in spectra))
    running.set_title("Convergence (thick: λ1" + (f", thin: λ2 … λ{shown})" if shown > 1 else ")"))
    final.set_xlabel("i")
    final.xaxis.get_major_locator().set_params(integer=True)
    final.set_ylabel(r"Lyapunov exponent $\lambda_i$ per step (natural log)")
    final.set_title("Spectrum at the last step")
    final.legend(fontsize="small")
    return save_figure(plt, fig, Path(out) / LYAPUNOV_PNG_NAME, title)


def describe(settings, varying: tuple[str, ...] = ()) -> str:
    """The settings every run shares, for the figure's title (`varying` names those that differ)."""
    parts = [
        f"T = {settings.steps}",
        f"H = {settings.hidden_size}",
        f"batch {settings.batch}",
        f"input scale {settings.input_scale:g}",
        f"seed {settings.seed}",
    ]
    if settings.gate_bias is not None and "gate_bias" not in varying:
        parts.append(f"gate bias {settings.gate_bias:g}")
    if settings.weight_scale is not None and "weight_scale" not in varying:
        parts.append(f"recurrent spectral radius {settings.weight_scale:g}")
    if settings.lyapunov:
        parts.append(f"Lyapunov warmup {settings.warmup}")
    if "weight_scale" in varying:
        parts.append("ρ: spectral radius of each H×H block of the recurrent weights")
    return ", ".join(parts)
