"""Robustness under DP noise, with and without local momentum (issue 13).

The claim (Guerraoui, Gupta, Pinot, *Robust Machine Learning*, 2024, privacy chapter; Allouah et
al., "On the privacy-robustness-utility trilemma in distributed learning", ICML 2023): with DP
noise, a robust rule's error over the mean *without any attack* grows with the number of rounds T
when nodes use plain DP-SGD, and stays bounded with local momentum, which averages the noise out
before the robust rule sees it.

Set-up: ``experiments/dp_least_squares.toml`` (least squares, known optimum θ*; 16-node torus;
no Byzantine node; DP-SGD with C = 1, σ = 8, Poisson sampling at q = 0.08), run for every rule in
``RULES`` (declared tolerance f = 1) and momentum β ∈ {0, 0.9}, over several seeds. The gap at
round t is

    gap(t) = E_seed[ ‖θ̄_H(rule) − θ*‖² − ‖θ̄_H(mean) − θ*‖² ]

(same seed: same data, batches and noise for every rule). Writes ``docs/dp_momentum.png`` and
``docs/dp_momentum.json``.

    python experiments/dp_robust_momentum.py            # full size (a few minutes on 2 cores)
    python experiments/dp_robust_momentum.py --smoke    # tiny, what the tests run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import p2probust as pr

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "experiments" / "dp_least_squares.toml"
RULES = ("trimmed-mean", "smea")
MOMENTA = (0.0, 0.9)


def distances(rule: str, beta: float, seed: int, rounds: int) -> np.ndarray:
    """‖θ̄_H − θ*‖² after each round 0..rounds of one run."""
    cfg = pr.load_config(BASE, {"rule.name": rule, "train.momentum": beta, "seed": seed, "train.rounds": rounds})
    res = pr.simulate(cfg, progress=False)
    return np.array([v for _, v in res.metric("dist_to_opt")])


def run(rounds: int, seeds: int) -> dict:
    """Gap curves ``{beta: {rule: [rounds + 1]}}`` (mean and standard error over seeds) and the
    mean's own distance curve."""
    out: dict = {"rounds": rounds, "seeds": seeds, "gap": {}, "stderr": {}, "mean_dist": {}}
    for beta in MOMENTA:
        base = np.stack([distances("mean", beta, s, rounds) for s in range(seeds)])
        out["mean_dist"][str(beta)] = base.mean(0).tolist()
        for rule in RULES:
            gaps = np.stack([distances(rule, beta, s, rounds) for s in range(seeds)]) - base
            out["gap"].setdefault(str(beta), {})[rule] = gaps.mean(0).tolist()
            out["stderr"].setdefault(str(beta), {})[rule] = (gaps.std(0, ddof=1) / np.sqrt(seeds)).tolist() \
                if seeds > 1 else [0.0] * (rounds + 1)
    return out


def smooth(values, width: int) -> np.ndarray:
    """Centred moving average over ``width`` rounds (shorter at the ends)."""
    v = np.asarray(values, dtype=float)
    if width <= 1:
        return v
    kernel = np.ones(width)
    return np.convolve(v, kernel, "same") / np.convolve(np.ones_like(v), kernel, "same")


def window(values, t: int, half: int) -> float:
    """Mean of ``values`` over rounds t − half .. t + half (clipped to the run)."""
    v = np.asarray(values, dtype=float)
    return float(v[max(0, t - half) : t + half + 1].mean())


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    t = np.arange(result["rounds"] + 1)
    width = max(1, result["rounds"] // 24)
    for ax, beta in zip(axes, MOMENTA):
        for rule in RULES:
            g = smooth(result["gap"][str(beta)][rule], width)
            e = smooth(result["stderr"][str(beta)][rule], width)
            ax.plot(t, g, label=rule)
            ax.fill_between(t, g - e, g + e, alpha=0.25)
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_title(f"DP-SGD, momentum β = {beta} (moving average over {width} rounds)", fontsize=9)
        ax.set_xlabel("round T")
    axes[0].set_ylabel("‖θ̄_H − θ*‖² (rule) − (mean), no attack")
    axes[0].legend()
    fig.suptitle(f"Cost of robustness under DP noise (least squares, 16-node torus, σ = 8, C = 1, {result['seeds']} seeds)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="4 rounds, 2 seeds")
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dp_momentum")
    args = parser.parse_args(argv)
    rounds, seeds = (4, 2) if args.smoke else (args.rounds, args.seeds)
    result = run(rounds, seeds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result) + "\n")
    plot(result, args.out.with_suffix(".png"))
    half = max(1, rounds // 30)
    marks = sorted({max(1, r) for r in (rounds // 6, rounds // 3, 2 * rounds // 3, rounds)})
    print(f"gap (mean over seeds and rounds T ± {half}; ± standard error over seeds) at T = {marks}")
    for beta in MOMENTA:
        base = result["mean_dist"][str(beta)]
        print(f"β = {beta}: mean rule's ‖θ̄_H − θ*‖²: " + ", ".join(f"{window(base, r, half):.3g}" for r in marks))
        for rule in RULES:
            g, e = result["gap"][str(beta)][rule], result["stderr"][str(beta)][rule]
            print(f"β = {beta}: {rule:13s} gap: " + ", ".join(f"{window(g, r, half):.3g} ± {window(e, r, half):.2g}"
                                                            for r in marks))
    return result


if __name__ == "__main__":
    main()
