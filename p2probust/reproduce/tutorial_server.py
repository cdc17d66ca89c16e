r"""Result 4, parts 1-2: the robust-learning tutorial's server-style claims, on the complete graph
with α = 1 (each honest node aggregates all ``n`` models: robust D-SGD with a parameter server).

* **Momentum** (n = 15, f = 5, CWTM and CWMed, β = 0 vs 0.9, no attack / label flipping / sign
  flipping): "local momentum closes most of the gap to no attack". Checked per rule and attack:
  the gap ``acc(no attack) − acc(attack)`` at β = 0.9 is at most half the gap at β = 0 (a gap
  under 1 point at β = 0 leaves nothing to close).
* **NNM** (n = 17, f = 4, Dirichlet α = 10 vs 0.1, CWTM with and without nearest-neighbour
  mixing, no attack / ALIE / sign flipping): "NNM recovers most of the accuracy lost at α = 0.1".
  Checked per attack (and without attack): NNM's gain at α = 0.1 is at least half of CWTM's loss
  from α = 10 to 0.1.

Both are the *qualitative* claims of the tutorial, which prints no numeric table for them.

References: R. Guerraoui, N. Gupta, R. Pinot, *Robust Machine Learning*, Springer 2024, ch. 5–6;
Y. Allouah, S. Farhadkhani, R. Guerraoui, N. Gupta, R. Pinot, J. Stephan, "Fixing by mixing: a
recipe for optimal Byzantine ML under heterogeneity", AISTATS 2023 (code LPD-EPFL/byzfl);
S. P. Karimireddy, L. He, M. Jaggi, "Learning from history for Byzantine robust optimization",
ICML 2021 (momentum).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .base import markdown_table, mean_std  # noqa: E402
from .training import cached_run, cell_config  # noqa: E402


def _runs(cfg: dict, part: dict, keys: dict, seeds: list[int], out: Path, key: str) -> list[dict]:
    rows = []
    for seed in seeds:
        changes = {"topology.nodes": part["nodes"], "byzantine.count": part["byzantine"], "train.rounds": cfg["rounds"],
                   "eval_every": cfg["eval_every"], "seed": seed, **keys}
        rows.append(cached_run(cell_config(cfg["base"], changes), out, f"{key}-s{seed}"))
    return rows


def _acc(rows: list[dict]) -> float:
    return 100 * float(np.mean([r["accuracy"] for r in rows]))


def _verdict(claim: str, lines: list[str], failed: str) -> str:
    """The claim line: holds when no case above is marked ``failed``."""
    bad = sum(f"**{failed}**" in line for line in lines)
    if not bad:
        return f"- Claim \"{claim}\": **holds** in every case above."
    return f"- Claim \"{claim}\": **does not hold** in {bad} of the {len(lines)} cases above."


def momentum_part(cfg: dict, seeds: list[int], out: Path) -> tuple[list[str], dict]:
    part = cfg["momentum"]
    res, lines = {}, []
    head = ["rule", "β"] + [name for name, _ in part["attacks"]]
    rows = []
    for label, rule in part["rules"]:
        for beta in part["betas"]:
            row = [label, f"{beta:g}"]
            for name, keys in part["attacks"]:
                k = {"rule.name": rule, "train.momentum": beta, "data.partition": part["data.partition"], **keys}
                tag = f"momentum-{rule}-b{beta:g}-{keys['attack.name']}"
                res[label, beta, name] = r = _runs(cfg, part, k, seeds, out, tag)
                row.append(mean_std([100 * x["accuracy"] for x in r]))
            rows.append(row)
    for label, _ in part["rules"]:
        for name, _ in part["attacks"][1:]:
            b0, b1 = part["betas"][0], part["betas"][-1]
            none0, none1 = _acc(res[label, b0, part["attacks"][0][0]]), _acc(res[label, b1, part["attacks"][0][0]])
            gap0, gap1 = none0 - _acc(res[label, b0, name]), none1 - _acc(res[label, b1, name])
            ok = gap0 < 1.0 or gap1 <= 0.5 * gap0
            verdict = "no gap to close at β = 0" if gap0 < 1.0 else ("closed" if ok else "**not closed**")
            lines.append(f"- {label}, {name}: gap to no attack {gap0:.1f} points at β = {b0:g}, {gap1:.1f} at β = {b1:g}: {verdict}.")
    lines.append(_verdict("momentum closes most of the gap to no attack", lines, "not closed"))
    return [markdown_table(head, rows), "", *lines], res


def nnm_part(cfg: dict, seeds: list[int], out: Path) -> tuple[list[str], dict]:
    part = cfg["nnm"]
    res, rows = {}, []
    head = ["Dirichlet α", "rule"] + [name for name, _ in part["attacks"]]
    for alpha in part["alphas"]:
        for label, rule in part["rules"]:
            row = [f"{alpha:g}", label]
            for name, keys in part["attacks"]:
                k = {"rule.name": rule, "train.momentum": part["momentum"], "data.partition": "dirichlet",
                     "data.dirichlet_alpha": alpha, **keys}
                tag = f"nnm-{rule}-a{alpha:g}-{keys['attack.name']}"
                res[alpha, label, name] = r = _runs(cfg, part, k, seeds, out, tag)
                row.append(mean_std([100 * x["accuracy"] for x in r]))
            rows.append(row)
    (plain, _), (mixed, _) = part["rules"]
    hi, lo = part["alphas"]
    lines = []
    for name, _ in part["attacks"]:  # the cost of heterogeneity without attack too
        lost = _acc(res[hi, plain, name]) - _acc(res[lo, plain, name])
        gain = _acc(res[lo, mixed, name]) - _acc(res[lo, plain, name])
        ok = lost < 1.0 or gain >= 0.5 * lost
        verdict = "nothing lost" if lost < 1.0 else ("recovered" if ok else "**not recovered**")
        lines.append(f"- {name}: {plain} loses {lost:.1f} points from α = {hi:g} to α = {lo:g}; {mixed} gains {gain:.1f} at α = {lo:g}: {verdict}.")
    lines.append(_verdict(f"NNM recovers most of the accuracy lost at α = {lo:g}", lines, "not recovered"))
    return [markdown_table(head, rows), "", *lines], res


def figure(res_m: dict, res_n: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for (label, beta, name), rows in res_m.items():
        if name == "no attack":
            continue
        x = [t for t, _ in rows[0]["curve"]]
        axes[0].plot(x, 100 * np.mean([[v for _, v in r["curve"]] for r in rows], axis=0),
                     ls="-" if beta else "--", label=f"{label} β={beta:g} {name}")
    for (alpha, label, name), rows in res_n.items():
        if name == "no attack":
            continue
        x = [t for t, _ in rows[0]["curve"]]
        axes[1].plot(x, 100 * np.mean([[v for _, v in r["curve"]] for r in rows], axis=0),
                     ls="-" if "NNM" in label else "--", label=f"{label} α={alpha:g} {name}")
    axes[0].set_title("n = 15, f = 5: momentum")
    axes[1].set_title("n = 17, f = 4: NNM under heterogeneity")
    for ax in axes:
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0].set_ylabel("test accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(settings: dict, size: str, seeds: list[int], out: Path) -> list[str]:
    """The momentum table, the NNM table, their claims and ``repro_tutorial_server.png``."""
    cfg = settings["server"]
    mom, res_m = momentum_part(cfg, seeds, out)
    nnm, res_n = nnm_part(cfg, seeds, out)
    figure(res_m, res_n, out / "repro_tutorial_server.png")
    t = cfg["base"]["train"]
    walls = [r["wall_seconds"] for d in (res_m, res_n) for rows in d.values() for r in rows]
    common = (f"Complete graph, α = 1 (server-style), task `{cfg['base']['data']['task']}`, lr {t['lr']}, batch "
              f"{t['batch_size']}, {cfg['rounds']} rounds, dampened momentum m ← βm + (1 − β)g; MNIST t10k split 8,000 "
              f"train / 2,000 test (stratified, `test_fraction = {cfg['base']['data']['test_fraction']}`, "
              f"`split_seed = {cfg['base']['data']['split_seed']}`), shared among all n nodes. Value: final test "
              "accuracy (%) of the honest model, mean ± std over seeds. \"no attack\": the f Byzantine-labelled nodes "
              f"follow the protocol. Runs: {len(walls)}, {sum(walls):.0f} s of simulation in all.")
    m, n_ = cfg["momentum"], cfg["nnm"]
    return [
        f"## Momentum: n = {m['nodes']}, f = {m['byzantine']}, IID", "", common, "", *mom, "",
        f"## NNM under heterogeneity: n = {n_['nodes']}, f = {n_['byzantine']}, β = {n_['momentum']:g}", "", *nnm, "",
        "![tutorial server](repro_tutorial_server.png)", "",
    ]
