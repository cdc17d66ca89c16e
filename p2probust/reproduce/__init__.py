"""Reproductions of published results, side by side with the papers: ``p2probust reproduce``.

Each reproduction is a module with a ``run`` function and TOML files in
``experiments/papers/<name>/``; :data:`REPRODUCTIONS` lists them by name and
:func:`run_reproduction` runs one and writes ``table.md``, its figures and ``wall_time.json``.

>>> from p2probust.reproduce import REPRODUCTIONS, run_reproduction
>>> sorted(REPRODUCTIONS)                                   # doctest: +SKIP
>>> run_reproduction(REPRODUCTIONS["gossip-breakdown"], size="smoke", seeds=1, out="repro")  # doctest: +SKIP
"""

from __future__ import annotations

from .base import SIZES, Reproduction, run_reproduction


def _gossip_breakdown(settings, size, seeds, out):
    from .gossip_breakdown import run

    return run(settings, size, seeds, out)


def _clipped_gossip(settings, size, seeds, out):
    from .clipped_gossip import run

    return run(settings, size, seeds, out)


def _tutorial_server(settings, size, seeds, out):
    from .tutorial_server import run

    return run(settings, size, seeds, out)


def _tutorial_kappa(settings, size, seeds, out):
    from .tutorial_kappa import run

    return run(settings, size, seeds, out)


#: name -> :class:`Reproduction`, in the order of issue 11
REPRODUCTIONS: dict[str, Reproduction] = {
    rep.name: rep
    for rep in (
        Reproduction(
            "gossip-breakdown", "Robust gossip breakdown on averaging (result 3)",
            "R. Gaucher, A. Dieuleveut, H. Hendrikx, \"Unified breakdown analysis for Byzantine robust gossip\", "
            "ICML 2025 (arXiv:2410.10418); code renaudgaucher/Byzantine-Robust-Gossip",
            _gossip_breakdown,
        ),
        Reproduction(
            "clipped-gossip", "ClippedGossip on the dumbbell: the cost of weight-blind robust rules (result 2)",
            "L. He, S. P. Karimireddy, M. Jaggi, \"Byzantine-robust decentralized learning via ClippedGossip\", "
            "arXiv:2202.01545, 2022; code epfml/byzantine-robust-decentralized-optimizer",
            _clipped_gossip, default_seeds=2,
        ),
        Reproduction(
            "tutorial-server", "The tutorial's server-style results: momentum and NNM (result 4, parts 1-2)",
            "R. Guerraoui, N. Gupta, R. Pinot, Robust Machine Learning (Springer 2024); Allouah et al., "
            "\"Fixing by mixing\", AISTATS 2023 (code LPD-EPFL/byzfl)",
            _tutorial_server, default_seeds=2,
        ),
        Reproduction(
            "tutorial-kappa", "The tutorial's (f, κ) table: empirical κ against the proven bounds (result 4, part 3)",
            "R. Guerraoui, N. Gupta, R. Pinot, Robust Machine Learning (Springer 2024), ch. 4; "
            "Allouah et al., \"Fixing by mixing\", AISTATS 2023 (code LPD-EPFL/byzfl)",
            _tutorial_kappa, default_seeds=3,
        ),
    )
}


def get_reproduction(name: str) -> Reproduction:
    """The reproduction called ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; choose one of: {', '.join(REPRODUCTIONS)}")
    return REPRODUCTIONS[name]


__all__ = ["REPRODUCTIONS", "SIZES", "Reproduction", "get_reproduction", "run_reproduction"]
