"""Figures: weight trajectories, mixtures side by side, per-domain losses. PNG via matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from tandem.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_trajectories(steps: list[int], weights: np.ndarray, names: list[str], path: Path, title: str = "",
                      distance: list[float] | None = None,
                      intervals: dict[str, tuple[float, float]] | None = None) -> None:
    """weights: [episodes, M]. One line per domain; the twins' distance on a second panel if given; each learned
    weight's interval (weights.json) as a bar at the last episode if given."""
    plt = _plt()
    panels = 2 if distance is not None else 1
    fig, axes = plt.subplots(panels, 1, figsize=(7, 3.2 * panels), squeeze=False)
    ax = axes[0, 0]
    for j, d in enumerate(names):
        line, = ax.plot(steps, weights[:, j], label=d, lw=1.6)
        if intervals is not None and d in intervals and len(steps):
            lo, hi = intervals[d]
            ax.errorbar([steps[-1]], [weights[-1, j]], yerr=[[max(weights[-1, j] - lo, 0)], [max(hi - weights[-1, j], 0)]],
                        color=line.get_color(), capsize=3, lw=1.2)
    ax.axhline(1.0 / len(names), color="grey", ls=":", lw=1, label="uniform")
    ax.set_xlabel("proxy step")
    ax.set_ylabel("domain weight")
    ax.set_title(title or "mixture trajectory")
    ax.legend(fontsize=8, ncol=2 if len(names) > 5 else 1, loc="best")
    if distance is not None:
        ax2 = axes[1, 0]
        ax2.plot(steps, distance, color="black", lw=1.2)
        ax2.set_yscale("log")
        ax2.set_xlabel("proxy step")
        ax2.set_ylabel("||w - u|| at Delta")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_weight_bars(mixtures: dict[str, dict[str, float]], path: Path, title: str = "domain weights",
                     ylabel: str = "weight", errors: dict[str, dict[str, float]] | None = None,
                     zoom: bool = False) -> None:
    """Grouped bars: one group per domain, one bar per mixture (method); `errors` draws error bars; `zoom` starts
    the y-axis near the smallest value, so differences of a few hundredths stay visible. The legend sits outside
    the axes, where it cannot cover a bar."""
    plt = _plt()
    labels = list(mixtures)
    names = list(next(iter(mixtures.values())))
    x = np.arange(len(names))
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) + 2) + 1.6, 3.4))
    for k, lab in enumerate(labels):
        err = None if errors is None else [float(np.nan_to_num(errors.get(lab, {}).get(d, 0.0))) for d in names]
        ax.bar(x + k * width - 0.4 + width / 2, [mixtures[lab][d] for d in names], width, label=lab, yerr=err,
               capsize=2 if err is not None else 0)
    if zoom:
        vals = np.array([mixtures[lab][d] for lab in labels for d in names], dtype=np.float64)
        errs = np.nan_to_num([0.0 if errors is None else errors.get(lab, {}).get(d, 0.0) for lab in labels for d in names])
        lo, hi = float(np.nanmin(vals - errs)), float(np.nanmax(vals + errs))
        pad = 0.1 * (hi - lo) or 0.05 * abs(hi) or 0.1
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_domain_losses(losses: dict[str, dict[str, float]], path: Path, title: str = "test loss per domain",
                       errors: dict[str, dict[str, float]] | None = None) -> None:
    """Grouped bars of per-domain losses, one bar per mixture/method, with error bars (standard deviation over
    seeds) where given; the y-axis spans the losses, not 0 to the largest."""
    plot_weight_bars(losses, path, title, ylabel="loss (nats per token)", errors=errors, zoom=True)


def plot_trajectories_grid(trajectories: dict[str, list[tuple[list[int], np.ndarray]]], names: list[str],
                           path: Path) -> None:
    """One panel per method: its domain weights over proxy steps, one line per domain for every seed (the first seed
    drawn solid and labelled, the others thinner in the same colour)."""
    plt = _plt()
    n = len(trajectories)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (method, runs) in zip(axes[0], trajectories.items()):
        if isinstance(runs, tuple):  # one seed given as (steps, weights)
            runs = [runs]
        for k, (steps, w) in enumerate(runs):
            for j, d in enumerate(names):
                ax.plot(steps, w[:, j], label=d if k == 0 else None, lw=1.4 if k == 0 else 0.7,
                        alpha=1.0 if k == 0 else 0.5, color=colors[j % len(colors)])
        ax.axhline(1.0 / len(names), color="grey", ls=":", lw=1)
        ax.set_title(f"{method} ({len(runs)} seed{'s' if len(runs) != 1 else ''})")
        ax.set_xlabel("proxy step")
    axes[0, 0].set_ylabel("domain weight")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_training(records: list[dict], path: Path, title: str = "target training") -> None:
    """The target's training loss over steps, and its validation loss per domain where train.eval_interval
    recorded it."""
    plt = _plt()
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    valid = [r for r in records if "valid_loss" in r]
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    if train:
        ax.plot(*zip(*train), color="black", lw=1.2, label="train (batch)")
    if valid:
        steps = [r["step"] for r in valid]
        for d in valid[0]["valid_loss"]:
            ax.plot(steps, [r["valid_loss"].get(d) for r in valid], lw=1.2, marker="o", ms=3, label=f"valid {d}")
    ax.set_xlabel("target step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
