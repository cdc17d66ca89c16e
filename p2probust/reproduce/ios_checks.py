"""Targeted check for the IOS table's CC row: centred clipping as the authors' code runs it.

ByrdLab/IOS ``D_centered_clipping`` (ByrdLab/aggregation.py) keeps a memory ``v_i`` per node,
**zero at the start**, and each iteration sets

    v_i <- v_i + 1/(k_i + 1) * sum_{j in N(i) and i} Clip(x_j - v_i, tau),   the node's new model = v_i,

so its centre is the node's previous output (its model before this iteration's local step), and
its first iteration clips every 6·N(0, 1)-initialised model to within tau of 0. p2probust's
``centered-clipping`` (aggregate-and-mix) centres on the node's own *stepped* model and has no
memory. This script runs the IOS setting's CC cells with the code's form, as a rule object passed
to :func:`p2probust.simulate` (not a registered rule: it holds state across rounds)::

    python -m p2probust.reproduce.ios_checks --rounds 5000 --attacks sign_flip none --out /tmp/ccm

and prints the final mean honest-node accuracy per attack (the same grid files as
``p2probust reproduce ios``). Reference: Z. Wu, T. Chen, Q. Ling, IEEE TSP 71 (2023); S. P.
Karimireddy, L. He, M. Jaggi, "Learning from history for Byzantine robust optimization", ICML 2021.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from ..aggregators.clipping import CenteredClipping
from ..gossip.base import AbstractGossipRule
from ..simulation import simulate


class CodeCenteredClipping(AbstractGossipRule):
    """``D_centered_clipping`` of ByrdLab/IOS, batched over nodes: memory ``[n, d]`` (zeros),
    one clipping iteration from the memory over the node and its neighbours, the memory replaced
    by the result. Rows are matched to nodes through :meth:`for_nodes`."""

    row_independent = False

    def __init__(self, tau: float = 0.3):
        self.cc = CenteredClipping(tau)
        self.state: dict | None = None
        self.rows: torch.Tensor | None = None

    def bind(self, table, is_byzantine):
        bound = copy.copy(self)
        bound.state = {"n": table.n, "memory": None}
        return bound

    def for_nodes(self, nodes):
        view = copy.copy(self)
        view.rows = nodes
        return view

    def batched(self, own, inbox, mask, weights, f):
        if self.state is None:
            raise ValueError("CodeCenteredClipping needs bind(table, is_byzantine) first")
        rows = self.rows if self.rows is not None else torch.arange(own.shape[0])
        if self.state["memory"] is None:
            self.state["memory"] = torch.zeros(self.state["n"], own.shape[-1], dtype=own.dtype)
        x = torch.cat([own.unsqueeze(-2), inbox], dim=-2)
        m = torch.cat([torch.ones_like(mask[..., :1]), mask], dim=-1)
        new = self.cc(x, m, f, centre=self.state["memory"][rows])
        self.state["memory"][rows] = new
        return new

    __call__ = batched


def main(argv: list[str] | None = None) -> dict[str, float]:
    from . import ios

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5000)
    ap.add_argument("--attacks", nargs="+", default=list(ios.ATTACKS), choices=list(ios.ATTACKS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    cfg = {"rounds": args.rounds, "eval_every": 500 if args.rounds >= 500 else args.rounds, "rules": ["centered-clipping"]}
    res = {}
    for stem, point in ios.points(cfg, [args.seed]):
        if stem not in args.attacks:
            continue
        rule = CodeCenteredClipping(tau=dict(point.config.rule.params)["tau"])
        out = simulate(point.config, rule=rule, out=args.out / stem, overwrite=True)
        res[stem] = 100 * out.summary["final"]["node_acc_mean"]
        print(f"{stem}: {res[stem]:.2f}", flush=True)
    (args.out / "results.json").write_text(json.dumps({"rounds": args.rounds, "seed": args.seed, "ours": res}) + "\n")
    return res


if __name__ == "__main__":
    main()
