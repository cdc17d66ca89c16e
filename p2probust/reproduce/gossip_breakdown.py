r"""Result 3: the breakdown of robust gossip rules on averaging (Gaucher, Dieuleveut, Hendrikx 2025).

Two sweeps of :func:`~p2probust.reproduce.averaging.run_averaging`, settings in
``experiments/papers/gossip-breakdown/`` (taken from the authors' ``reproduce_averaging0.py`` and
``reproduce_averaging1.py``):

* Two Worlds, 26 honest nodes, ``f = 1..15`` Byzantine neighbours per honest node;
* Erdős–Rényi ``G(20, p)``, ``p ∈ linspace(0.3, 1, 15)``, ``f = 4``, BRIDGE-T included;

each under the line-searched spectral and dissensus attacks. The plotted quantity is the authors':
the error to the initial honest mean after 100 steps, :math:`\mathrm{MSE}_{100}`, divided by the
error at the start :math:`\mathrm{MSE}_0` (their ``analysis_acp.ipynb`` divides each curve by its
first value), mean ± std over seeds. A value ≥ 1 means the rule ended farther from the honest mean
than where it started: it has broken down. The paper has no table of numbers, so the table gives
ours and the qualitative claim with whether it holds.

Reference: R. Gaucher, A. Dieuleveut, H. Hendrikx, "Unified breakdown analysis for Byzantine
robust gossip", ICML 2025 (arXiv:2410.10418); code renaudgaucher/Byzantine-Robust-Gossip.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .. import registry  # noqa: E402
from ..gossip.registry import make_rule  # noqa: E402
from .averaging import gaucher_two_worlds, run_averaging  # noqa: E402
from .base import markdown_table, mean_std  # noqa: E402

LABELS = {"mh-gossip": "Gossip", "cs-plus": "CS+", "gts": "GTS", "cs-he": "CS_he", "bridge-t": "BRIDGE-T"}


#: a run whose error grows past this multiple of its start has broken down and stops early
STOP_ABOVE = 1e6


def graph_of(spec: tuple, seed: int) -> nx.Graph:
    """``("two-worlds", n, h)`` (the authors' graph, seed ignored) or ``("erdos-renyi", n, p)``
    (``networkx.erdos_renyi_graph(n, p, seed=seed)``, as their ``topology.create_graph``)."""
    kind, n, x = spec
    return gaucher_two_worlds(n, x) if kind == "two-worlds" else nx.erdos_renyi_graph(n, x, seed=seed)


def one_run(job: tuple) -> np.ndarray:
    """MSE_T / MSE_0 per seed of one ``(cfg, graph spec, f, attack, rule, seeds)``; ``nan`` if the
    rule is undefined on that graph, ``inf`` once it broke down (see :data:`STOP_ABOVE`). The
    two-worlds graph is the same for every seed, so its seeds run as replicas of one batched run."""
    cfg, spec, f, attack, rule, seeds = job
    torch.set_num_threads(1)
    groups = [seeds] if spec[0] == "two-worlds" else [[s] for s in seeds]
    out = []
    for group in groups:
        adversary = registry.attacks.create(attack, **cfg.get("attack_params", {}).get(attack, {}))
        gossip = make_rule(rule, **cfg.get("rule_params", {}).get(rule, {}))
        try:
            curves = run_averaging(graph_of(spec, group[0]), f, gossip, adversary, d=cfg["d"], steps=cfg["steps"],
                                   shift=cfg["shift"], weights=cfg["weights"], seeds=group, stop_above=STOP_ABOVE)
        except ValueError:
            out.extend([float("nan")] * len(group))
            continue
        rel = curves[:, -1] / curves[:, 0]
        out.extend(np.where(np.isfinite(rel) & (rel < STOP_ABOVE), rel, np.inf).tolist())
    return np.array(out)


def _worker_init() -> None:
    """Pool workers leave signals to the parent (the CLI's handlers would raise in them on shutdown)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN if sig == signal.SIGINT else signal.SIG_DFL)


def relative_errors(cfg: dict, points: list[tuple[tuple, int]], seeds: list[int], workers: int) -> dict:
    """``{(attack, rule): [len(points), len(seeds)]}`` of MSE_T / MSE_0 over ``points`` =
    ``[(graph spec, f), ...]``, runs spread over ``workers`` processes."""
    keys = [(a, r) for a in cfg["attacks"] for r in cfg["rules"]]
    jobs = [(cfg, spec, f, a, r, tuple(seeds)) for a, r in keys for spec, f in points]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init) as pool:
            vals = pool.map(one_run, jobs, chunksize=1)
    else:
        vals = [one_run(job) for job in jobs]
    arr = np.array(vals).reshape(len(keys), len(points), len(seeds))
    return {key: arr[i] for i, key in enumerate(keys)}


def breakdown(vals: np.ndarray, xs) -> float:
    """The first ``x`` at which the mean relative error reaches 1 (``inf`` if never)."""
    m = np.nanmean(np.where(np.isfinite(vals), vals, 1e6), axis=1)
    hit = np.nonzero(m >= 1.0)[0]
    return float(xs[hit[0]]) if hit.size else float("inf")


def plot_curves(res: dict, xs, cfg: dict, xlabel: str, path: Path, title: str) -> None:
    """One panel per attack: mean relative error (log scale) vs ``xs`` over the seeds where the
    rule is defined, a band from the smallest to the largest seed; a broken-down run (``inf``) is
    drawn at the stop level :data:`STOP_ABOVE`, an undefined point (``nan`` for every seed) left out."""
    fig, axes = plt.subplots(1, len(cfg["attacks"]), figsize=(5 * len(cfg["attacks"]), 3.6), sharey=True, squeeze=False)
    for ax, attack in zip(axes[0], cfg["attacks"]):
        for rule in cfg["rules"]:
            v = np.where(np.isposinf(res[(attack, rule)]), STOP_ABOVE, res[(attack, rule)])
            ok = ~np.isnan(v).all(1)
            rows = v[ok]
            x = np.asarray(xs, dtype=float)[ok]
            m = np.array([np.nanmean(r) for r in rows])
            line, = ax.plot(x, m, marker="o", ms=3, label=LABELS.get(rule, rule))
            ax.fill_between(x, [np.nanmin(r) for r in rows], [np.nanmax(r) for r in rows], color=line.get_color(), alpha=0.2)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(f"{title}: {attack}")
    axes[0][0].set_ylabel(f"MSE_T / MSE_0 (broken: {STOP_ABOVE:.0e})")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_results(path: Path, sweeps: dict) -> None:
    """Write the raw ratios ``{sweep: {"x": [...], "seeds": [...], "attack/rule": [[per seed] per x]}}``
    as JSON (``inf``: broken down, ``null``: undefined)."""
    def clean(a):
        return [[None if np.isnan(v) else (v if np.isfinite(v) else "inf") for v in row] for row in a.tolist()]

    out = {name: {"x": list(xs), "seeds": list(seeds), **{f"{a}/{r}": clean(v) for (a, r), v in res.items()}}
           for name, (xs, seeds, res) in sweeps.items()}
    path.write_text(json.dumps(out) + "\n")


def value_table(res: dict, xs, cfg: dict, xname: str) -> str:
    keys = [(a, r) for a in cfg["attacks"] for r in cfg["rules"]]
    header = [xname] + [f"{LABELS.get(r, r)} / {a}" for a, r in keys]
    rows = [[f"{x:g}"] + [mean_std(res[key][i]) for key in keys] for i, x in enumerate(xs)]
    return markdown_table(header, rows)


def claims(tw: dict, fs: list[int], cfg: dict) -> str:
    """The paper's headline, checked on the Two Worlds sweep."""
    robust = [r for r in cfg["rules"] if r != "mh-gossip"]
    bd = {(a, r): breakdown(tw[(a, r)], fs) for a in cfg["attacks"] for r in cfg["rules"]}
    rows = [[LABELS.get(r, r)] + [f"{bd[(a, r)]:g}" for a in cfg["attacks"]] for r in cfg["rules"]]
    lines = ["Breakdown f (first f where the mean MSE_T / MSE_0 ≥ 1; inf: not reached):", "",
             markdown_table(["rule"] + list(cfg["attacks"]), rows), ""]
    if "cs-plus" in robust:
        best = all(bd[(a, "cs-plus")] >= max(bd[(a, r)] for r in robust) for a in cfg["attacks"])
        where = ", ".join(f"{a}: {bd[(a, 'cs-plus')]:g}" for a in cfg["attacks"])
        lines.append(f"- Claim \"CS+ keeps the best (near-optimal) breakdown point\": CS+ breaks down at f = {where}; "
                     f"the highest of the robust rules under every attack: **{_verdict(best)}**.")
    if "gts" in robust and "spectral" in cfg["attacks"]:
        others = ", ".join(f"{LABELS[r]} {bd[('spectral', r)]:g}" for r in robust if r != "gts")
        first = bd[("spectral", "gts")] < min(bd[("spectral", r)] for r in robust if r != "gts")
        lines.append(f"- Claim \"GTS degrades first under the spectral attack\": GTS breaks down at "
                     f"f = {bd[('spectral', 'gts')]:g}, the others at {others}: **{_verdict(first)}**.")
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "holds" if ok else "does not hold"


def run(settings: dict, size: str, seeds: list[int], out: Path) -> list[str]:
    """Run both sweeps; draw ``repro_gossip_breakdown_two_worlds.png`` and ``..._erdos_renyi.png``."""
    tw_cfg, er_cfg = settings["two_worlds"], settings["erdos_renyi"]
    workers = min(2, os.cpu_count() or 1)
    fs = list(tw_cfg["f"])
    tw = relative_errors(tw_cfg, [(("two-worlds", tw_cfg["honest"], tw_cfg["h"]), f) for f in fs], seeds, workers)
    ps = list(er_cfg["p"])
    er_seeds = seeds[: er_cfg.get("max_seeds", len(seeds))]
    er = relative_errors(er_cfg, [(("erdos-renyi", er_cfg["honest"], p), er_cfg["f"]) for p in ps], er_seeds, workers)
    save_results(out / "results.json", {"two_worlds": (fs, seeds, tw), "erdos_renyi": (ps, er_seeds, er)})
    plot_curves(tw, fs, tw_cfg, "f (Byzantine neighbours per honest node)", out / "repro_gossip_breakdown_two_worlds.png",
                "Two Worlds")
    plot_curves(er, ps, er_cfg, "p (Erdős–Rényi edge probability)", out / "repro_gossip_breakdown_erdos_renyi.png",
                f"ER f={er_cfg['f']}")
    note = ("Value: MSE after the last step / MSE at the start (the authors' normalised error), mean ± std over seeds; "
            "≥ 1 means broken down; ∞: the error grew past 1e6 × its start (stopped); cells average the seeds on whose graph "
            "the rule is defined; — : undefined on every seed's graph (some node has too few neighbours for f). "
            "Raw values per seed: results.json.")
    return [
        "## Two Worlds", "", f"{tw_cfg['honest']} honest nodes (h = {tw_cfg['h']}), d = {tw_cfg['d']}, "
        f"{tw_cfg['steps']} steps, start N(0, I) ± ({tw_cfg['shift']:g}, 0, …), {tw_cfg['weights']} weights. {note}", "",
        value_table(tw, fs, tw_cfg, "f"), "", claims(tw, fs, tw_cfg), "",
        "![two worlds](repro_gossip_breakdown_two_worlds.png)", "",
        "## Erdős–Rényi", "", f"G({er_cfg['honest']}, p), graph seed = run seed (seeds {er_seeds}), f = {er_cfg['f']}, d = {er_cfg['d']}, "
        f"{er_cfg['steps']} steps, start N(0, I), {er_cfg['weights']} weights. {note}", "",
        value_table(er, ps, er_cfg, "p"), "", "![erdos renyi](repro_gossip_breakdown_erdos_renyi.png)", "",
    ]
