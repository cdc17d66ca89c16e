"""Figures of the IOS table reproduction (:mod:`p2probust.reproduce.ios`): the table as two
annotated heatmaps (ours, the paper's), and the accuracy curves of every cell."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_table(res: dict, rules: list[str], path: Path, rounds: int) -> None:
    """Ours (mean over seeds) and the published table side by side, one cell per rule × attack."""
    from .ios import ATTACKS, PUBLISHED, RULES

    ours = np.array([[np.nanmean(res[a][r]) if np.isfinite(res[a][r]).any() else np.nan for a in ATTACKS]
                     for r in rules])
    paper = np.array([PUBLISHED[r] for r in rules])
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rules) + 1.8), sharey=True)
    for ax, data, title in ((axes[0], ours, f"p2probust ({rounds:,} rounds)"), (axes[1], paper, "paper (50,000)")):
        ax.imshow(data, cmap="RdYlGn", vmin=10, vmax=92, aspect="auto")
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                ax.text(j, i, "—" if np.isnan(data[i, j]) else f"{data[i, j]:.1f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(ATTACKS)), list(ATTACKS.values()), rotation=30, ha="right")
        ax.set_title(title)
    axes[0].set_yticks(range(len(rules)), [RULES[r] for r in rules])
    fig.suptitle("IOS table (Wu, Chen, Ling 2023): mean honest-node test accuracy, %")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(sweeps: Path, rules: list[str], path: Path) -> None:
    """Mean honest-node accuracy against rounds, one panel per attack, one line per rule (the
    lowest seed's run of each cell, read from its ``metrics.csv``)."""
    import pandas as pd

    from ..sweep import read_index
    from .ios import ATTACKS, RULES

    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), sharex=True, sharey=True)
    for ax, (stem, title) in zip(axes.flat, ATTACKS.items()):
        try:
            df = read_index(sweeps / stem)
        except FileNotFoundError:
            df = None
        for rule in rules:
            if df is None or df.empty:
                break
            sel = df[df["rule.name"] == rule].sort_values("seed")
            csv = sweeps / stem / "runs" / str(sel["id"].iloc[0]) / "metrics.csv" if len(sel) else None
            if csv is None or not csv.is_file():
                continue
            m = pd.read_csv(csv).dropna(subset=["node_acc_mean"])
            ax.plot(m["round"], 100 * m["node_acc_mean"], label=RULES[rule], lw=1.2)
        ax.set_title(title)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("round")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
