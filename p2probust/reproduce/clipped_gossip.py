r"""Result 2: the ClippedGossip dumbbell (He, Karimireddy, Jaggi 2022), ours against the paper.

Two 10-cliques joined by one edge, 20 honest nodes, no attack: plain gossip, self-centred clipping
with τ = 1 (SCClip), a geometric median by 8 smoothed Weiszfeld iterations (GM, ``rfa``) and a
trimmed mean with b = 1 (TM), trained with heavy-ball momentum 0.9 (no dampening), lr 0.01, batch
32 for 900 iterations, on IID data and on non-IID data where each clique holds 5 classes. The
table is the test accuracy of the average of all honest models (their ``AverageEvaluator``), and
on non-IID data of the average model of each clique. The paper's message: weight-blind robust
rules (GM, TM) cut the bridge under heterogeneity, so each clique learns only its own classes
(per-clique accuracy near 50%), while gossip and SCClip carry the other clique's classes across.

Reference: L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning via
ClippedGossip", arXiv:2202.01545, 2022; code epfml/byzantine-robust-decentralized-optimizer
(``dumbbell.py``; settings in ``experiments/papers/clipped-gossip/dumbbell.toml``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .base import PAPERS_DIR, markdown_table, mean_std  # noqa: E402
from .training import cached_run, cell_config, group_accuracy  # noqa: E402

COLUMNS = (("iid", "IID"), ("non-iid", "non-IID"))
CLIQUES = (("clique1", "clique 1"), ("clique2", "clique 2"))


def measure(cfg: dict, seeds: list[int], out: Path) -> dict:
    """``{(partition, rule label): [per-seed run rows]}`` (see :func:`training.cached_run`)."""
    n = int(cfg["base"]["topology"]["nodes"])
    cliques = {"clique1": list(range(n // 2)), "clique2": list(range(n // 2, n))}
    res = {}
    for part, part_keys in cfg["partitions"].items():
        for rule in cfg["rules"]:
            rows = []
            for seed in seeds:
                keys = {**rule["keys"], **part_keys, "train.rounds": cfg["rounds"], "eval_every": cfg["eval_every"],
                        "seed": seed}
                run_cfg = cell_config(cfg["base"], keys)
                key = f"{part}-{rule['keys']['rule.name']}-s{seed}"
                rows.append(cached_run(run_cfg, out, key, group_accuracy(run_cfg, cliques)))
            res[part, rule["label"]] = rows
    return res


def _cell(values: list[float], paper: float) -> list[str]:
    v = 100 * np.asarray(values, dtype=float)
    return [mean_std(v), f"{paper:.2f}", f"{v.mean() - paper:+.2f}"]


def _ours_paper_table(cfg: dict, columns, values) -> str:
    """One row per rule, three cells per column: ours (``values(rule, key)``), the paper's, the difference."""
    head, rows = ["rule"], []
    for _, name in columns:
        head += [f"{name} (ours)", f"{name} (paper)", "diff"]
    for rule in cfg["rules"]:
        row = [rule["label"]]
        for key, _ in columns:
            row += _cell(values(rule, key), rule["paper"][key])
        rows.append(row)
    return markdown_table(head, rows)


def tables(cfg: dict, res: dict) -> tuple[str, str, list[str]]:
    """The IID / non-IID table, the per-clique table and the claim lines."""
    averaged = _ours_paper_table(cfg, COLUMNS, lambda rule, part: [r["accuracy"] for r in res[part, rule["label"]]])
    cliques = _ours_paper_table(cfg, CLIQUES, lambda rule, key: [r[key] for r in res["non-iid", rule["label"]]])
    return averaged, cliques, claims(cfg, res)


def claims(cfg: dict, res: dict) -> list[str]:
    """Does the paper's pattern hold: on non-IID data the weight-blind rules (GM, TM) end with
    lower global and per-clique accuracy than gossip and SCClip, their cliques near 50%?"""
    def mean(label: str, key: str) -> float:
        return 100 * float(np.mean([r[key] for r in res["non-iid", label]]))

    labels = [r["label"] for r in cfg["rules"]]
    weighted, blind = labels[:2], labels[2:]
    per_clique = {lab: min(mean(lab, "clique1"), mean(lab, "clique2")) for lab in labels}
    top_blind = max(max(mean(lab, "clique1"), mean(lab, "clique2")) for lab in blind)
    ok_clique = min(per_clique[lab] for lab in weighted) > top_blind
    ok_global = min(mean(lab, "accuracy") for lab in weighted) > max(mean(lab, "accuracy") for lab in blind)
    fmt = ", ".join(f"{lab}: {mean(lab, 'clique1'):.1f} / {mean(lab, 'clique2'):.1f}" for lab in labels)
    return [
        f"- Claim \"weight-blind robust rules (GM, TM) cut the bridge under heterogeneity: each clique learns only "
        f"its own classes\" (non-IID per-clique accuracy, clique 1 / clique 2: {fmt}): "
        f"**{'holds' if ok_clique else 'does not hold'}** (every clique of Gossip and SCClip above every clique of GM and TM).",
        f"- Claim \"on non-IID data GM and TM end below Gossip and SCClip\": **{'holds' if ok_global else 'does not hold'}**.",
    ]


def paper_curves() -> dict:
    """``{(rule, non_iid, group): (iterations, accuracy %)}`` of the authors' ``acc.csv`` (their label
    ``(E − 1)·30`` moved to the iteration after which they evaluate, ``E·30``); empty if absent."""
    path = PAPERS_DIR / "clipped-gossip" / "paper_acc.csv"
    if not path.is_file():
        return {}
    out: dict = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or line.startswith("iteration"):
            continue
        it, acc, rule, non_iid, group = line.split(",")
        xs, ys = out.setdefault((rule, non_iid == "True", group), ([], []))
        xs.append(int(it) + 30)
        ys.append(float(acc))
    return out


def figure(cfg: dict, res: dict, path: Path) -> None:
    """Accuracy of the averaged model against iterations, ours (solid) and the paper's (dashed)."""
    paper = paper_curves()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, (part, name) in zip(axes, COLUMNS):
        for rule in cfg["rules"]:
            rows = res[part, rule["label"]]
            x = [t for t, _ in rows[0]["curve"]]
            y = 100 * np.mean([[v for _, v in r["curve"]] for r in rows], axis=0)
            line, = ax.plot(x, y, label=rule["label"])
            published = paper.get((rule.get("curve"), part == "non-iid", "global"))
            if published:
                ax.plot(*published, ls="--", lw=0.9, color=line.get_color())
        ax.set_title(f"{name}: average honest model (dashed: paper)")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(settings: dict, size: str, seeds: list[int], out: Path) -> list[str]:
    """The two tables, the claims and ``repro_clipped_gossip.png``."""
    cfg = settings["dumbbell"]
    res = measure(cfg, seeds, out)
    main_table, clique_table, claim_lines = tables(cfg, res)
    figure(cfg, res, out / "repro_clipped_gossip.png")
    base = cfg["base"]
    walls = [r["wall_seconds"] for rows in res.values() for r in rows]
    setting = (f"Dumbbell of two {base['topology']['nodes'] // 2}-cliques, no Byzantine node, task `{base['data']['task']}`, "
               f"heavy-ball momentum {base['train']['momentum']} (no dampening), lr {base['train']['lr']}, batch "
               f"{base['train']['batch_size']}, {cfg['rounds']} iterations; MNIST t10k split 8,000 train / 2,000 test "
               f"(stratified, `test_fraction = {base['data']['test_fraction']}`, `split_seed = {base['data']['split_seed']}`). "
               "Value: test accuracy (%) of the average of the honest models at the last iteration, mean ± std over "
               f"seeds; diff = our mean − paper. Runs: {len(walls)}, {sum(walls):.0f} s of simulation in all.")
    return [
        "## Final accuracy of the averaged model", "", setting, "", main_table, "",
        "## Non-IID: average model of each clique", "",
        "Clique 1 holds classes 0–4, clique 2 classes 5–9; each clique's average model on the whole test set.", "",
        clique_table, "", *claim_lines, "", "![clipped gossip](repro_clipped_gossip.png)", "",
    ]
