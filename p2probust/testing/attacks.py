"""``check_attack``: a public conformance check for attacks, in the spirit of scikit-learn's
``check_estimator``.

Run it on your own attack before using it in experiments::

    from p2probust.testing import check_attack
    check_attack(MyAttack())

It raises ``AssertionError`` with a one-line message naming the first contract that fails.
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import torch
from torch import Tensor

from ..attacks.base import AbstractAttack, AttackContext
from ..gossip.base import AbstractGossipRule

__all__ = ["check_attack", "make_attack_context"]

KNOWLEDGE_LEVELS = ("omniscient", "local")


def _test_graph(n: int) -> tuple[nx.Graph, Tensor]:
    """A circulant graph (offsets 1 and 2, degree 4) with Byzantine nodes 0 and ``n // 2``: every
    honest node has at most one Byzantine neighbour, and some honest nodes are invisible to each
    Byzantine node (needed by the locality check)."""
    G = nx.circulant_graph(n, [1, 2])
    byz = torch.zeros(n, dtype=torch.bool)
    byz[[0, n // 2]] = True
    return G, byz


def make_attack_context(
    G: nx.Graph,
    is_byzantine: Tensor,
    params: Tensor,
    *,
    rule: Any = None,
    seed: int = 0,
    round: int = 0,
    include_byzantine_recipients: bool = False,
    num_classes: int = 10,
) -> AttackContext:
    """The :class:`AttackContext` the simulator would build for one round.

    Every Byzantine edge ``b → i`` whose recipient acts (honest recipients, plus Byzantine ones when
    ``include_byzantine_recipients``) becomes one row; weights are Metropolis–Hastings, the
    tolerance is the oracle count (capped so that the default trimmed mean accepts it), and the
    generator is seeded with ``seed``.

    Parameters
    ----------
    G : networkx.Graph on the nodes ``0 .. n-1``
    is_byzantine : BoolTensor [n]
    params : Tensor [n, d]
    rule : gossip rule, optional
        Stored as ``ctx.rule``; defaults to trimmed-mean aggregate-and-mix.

    Returns
    -------
    AttackContext
    """
    from ..aggregators import TrimmedMean
    from ..gossip import AggregateAndMix
    from ..topology import NeighbourTable

    table = NeighbourTable.from_graph(G, dtype=params.dtype)
    acting = torch.ones_like(is_byzantine) if include_byzantine_recipients else ~is_byzantine
    rows, slots = torch.nonzero(table.mask & is_byzantine[table.idx] & acting.unsqueeze(1), as_tuple=True)
    f = table.byzantine_counts(is_byzantine).minimum((table.degree) // 2)
    return AttackContext(
        params=params, is_byzantine=is_byzantine, idx=table.idx, mask=table.mask,
        senders=table.idx[rows, slots], recipients=rows, slots=slots, round=round,
        generator=torch.Generator().manual_seed(seed),
        rule=rule if rule is not None else AggregateAndMix(TrimmedMean(), alpha=0.5),
        num_classes=num_classes, weights=table.weights, tolerance=f,
    )


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal shapes and values, NaN equal to NaN."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    return torch.equal(nan_a, nan_b) and torch.equal(torch.where(nan_a, 0, a), torch.where(nan_b, 0, b))


def _craft(attack: AbstractAttack, ctx: AttackContext) -> Tensor:
    params_before = ctx.params.clone()
    out = attack.craft(ctx)
    name = type(attack).__name__
    assert isinstance(out, Tensor), f"{name}.craft returned {type(out).__name__}, expected a Tensor"
    expected = (ctx.num_edges, ctx.dim)
    assert tuple(out.shape) == expected, f"{name}.craft returned shape {tuple(out.shape)}, expected [E, d] = {expected}"
    assert out.dtype == ctx.params.dtype, f"{name}.craft returned dtype {out.dtype}, expected {ctx.params.dtype}"
    assert torch.equal(ctx.params, params_before), f"{name}.craft modified ctx.params in place"
    return out


def _visible(ctx: AttackContext, b: int) -> Tensor:
    """BoolTensor [n]: the nodes whose models sender ``b`` sees (itself and its neighbours)."""
    seen = torch.zeros_like(ctx.is_byzantine)
    seen[ctx.idx[b][ctx.mask[b]]] = True
    seen[b] = True
    return seen


def _check_locality(attack: AbstractAttack, G: nx.Graph, byz: Tensor, params: Tensor, seed: int) -> None:
    ctx = make_attack_context(G, byz, params, seed=seed, include_byzantine_recipients=attack.follows_protocol)
    base = _craft(attack, ctx)
    shift = torch.linspace(1.0, 3.0, params.shape[1], dtype=params.dtype)
    for b in torch.unique(ctx.senders).tolist():
        hidden = ~_visible(ctx, b) & ~byz
        if not bool(hidden.any()):
            continue
        moved = torch.where(hidden.unsqueeze(1), params * 2.0 + shift, params)
        out = _craft(attack, make_attack_context(G, byz, moved, seed=seed, include_byzantine_recipients=attack.follows_protocol))
        rows = ctx.senders == b
        assert _same(out[rows], base[rows]), (
            f"{type(attack).__name__} declares knowledge='local' but the messages of Byzantine node {b} "
            "changed when honest models it cannot see changed"
        )


class _InboxRecorder(AbstractGossipRule):
    """A gossip rule that records every inbox it is given and delegates to ``inner``."""

    def __init__(self, inner: AbstractGossipRule):
        self.inner = inner
        self.alpha = inner.alpha
        self.robust = inner.robust
        self.calls: list[tuple[Tensor, Tensor, Tensor]] = []
        self.paused = False  # True while the attack itself evaluates the rule (line searches)

    def batched(self, own, inbox, mask, weights, f):
        if not self.paused:
            self.calls.append((own.clone(), inbox.clone(), mask.clone()))
        return self.inner.batched(own, inbox, mask, weights, f)

    __call__ = batched

    def bind(self, table, is_byzantine):
        self.inner = self.inner.bind(table, is_byzantine)
        return self

    def check_tolerance(self, degree, f):
        self.inner.check_tolerance(degree, f)


class _Pausing(AbstractAttack):
    """Wraps an attack so that the recorder ignores the rule calls made inside ``craft``."""

    def __init__(self, attack: AbstractAttack, recorder: _InboxRecorder):
        self.attack, self.recorder = attack, recorder
        self.knowledge = attack.knowledge
        self.follows_protocol = attack.follows_protocol
        self.flips_labels = attack.flips_labels
        self.sends = attack.sends
        self.report_columns = attack.report_columns

    def report(self):
        return self.attack.report()

    def craft(self, ctx: AttackContext) -> Tensor:
        self.recorder.paused = True
        try:
            return self.attack.craft(ctx)
        finally:
            self.recorder.paused = False


def _check_simulation(attack: AbstractAttack, G: nx.Graph, byz: Tensor, seed: int) -> None:
    """In a real run, every honest slot of every inbox holds its sender's model."""
    import p2probust as pr
    from ..topology import NeighbourTable

    nodes = torch.nonzero(byz).squeeze(1).tolist()
    cfg = pr.RunConfig().replace(**{
        "data.task": "least-squares", "train.rounds": 2, "eval_every": 2, "seed": seed,
        "byzantine.count": len(nodes), "byzantine.placement": "list", "byzantine.nodes": nodes,
    })
    rule = _InboxRecorder(pr.make_rule("trimmed-mean", alpha=0.5))
    res = pr.simulate(cfg, graph=G, rule=rule, attack=_Pausing(attack, rule))
    table = NeighbourTable.from_graph(res.graph)
    actors = torch.arange(G.number_of_nodes()) if attack.follows_protocol else torch.nonzero(~res.is_byzantine).squeeze(1)
    pos = torch.full((G.number_of_nodes(),), -1, dtype=torch.long)
    pos[actors] = torch.arange(actors.numel())
    idx, mask = table.idx[actors], table.mask[actors]
    honest_slot = mask & ~res.is_byzantine[idx]
    assert rule.calls, "the simulation never called the gossip rule"
    for own, inbox, inbox_mask in rule.calls:
        expected = own[pos[idx].clamp_min(0)]  # the sender's model (every honest sender acts)
        assert torch.equal(inbox[honest_slot], expected[honest_slot]), (
            f"{type(attack).__name__}: a simulated round changed an inbox slot whose sender is honest"
        )
        if not attack.sends:
            assert not bool((inbox_mask & ~honest_slot).any()), (
                f"{type(attack).__name__} sends nothing (sends=False) but a Byzantine slot was present in an inbox"
            )
    for name in attack.report_columns:
        assert name in res.history[-1], f"{type(attack).__name__} reports {name!r} but metrics have no such column"


def check_attack(attack: AbstractAttack, *, n: int = 12, d: int = 6, seed: int = 0, simulate_round: bool = True) -> None:
    """Check that ``attack`` honours the attack contract.

    Checks, in order:

    1. it is an :class:`~p2probust.attacks.AbstractAttack` with ``knowledge`` in
       ``{"omniscient", "local"}``;
    2. ``craft(ctx)`` returns exactly ``[E, d]`` in the dtype of ``ctx.params`` (float32 and
       float64), one row per Byzantine edge, and does not modify ``ctx.params``;
    3. it is deterministic: the same context and generator seed give the same messages;
    4. a ``local`` attack's messages from Byzantine node ``b`` do not change when honest models
       that ``b`` cannot see (not its neighbours) change;
    5. (``simulate_round``) in a two-round :func:`p2probust.simulate` run, the gossip rule receives
       every honest sender's model unchanged: the attack writes only Byzantine inbox slots; an
       attack with ``sends = False`` (crash) is never asked to craft and its slots are absent
       from every inbox (checks 2–4 are skipped for it); every name in ``report_columns`` is a
       column of the run's metrics.

    Parameters
    ----------
    attack : AbstractAttack
    n : int, default 12
        Nodes of the test graph (a circulant graph of degree 4, Byzantine nodes ``0`` and ``n//2``).
    d : int, default 6
        Model dimension of the synthetic contexts.
    seed : int, default 0
    simulate_round : bool, default True

    Raises
    ------
    AssertionError
        Naming the attack and the first failed check.

    Examples
    --------
    >>> from p2probust.attacks import ALIE
    >>> check_attack(ALIE())
    """
    name = type(attack).__name__
    assert isinstance(attack, AbstractAttack), f"{attack!r} is not an AbstractAttack"
    assert attack.knowledge in KNOWLEDGE_LEVELS, f"{name}.knowledge = {attack.knowledge!r}, expected one of {KNOWLEDGE_LEVELS}"
    assert isinstance(attack.follows_protocol, bool), f"{name}.follows_protocol must be a bool"
    assert n >= 10, f"check_attack needs n >= 10 nodes, got n = {n}"
    assert isinstance(attack.sends, bool), f"{name}.sends must be a bool"
    G, byz = _test_graph(n)
    if not attack.sends:  # a crashed node: nothing to craft; the run must mask its slots
        if simulate_round:
            _check_simulation(attack, G, byz, seed)
        return
    gen = torch.Generator().manual_seed(seed)
    for dtype in (torch.float32, torch.float64):
        params = torch.randn(n, d, generator=gen, dtype=torch.float64).to(dtype)
        ctx = make_attack_context(G, byz, params, seed=seed, include_byzantine_recipients=attack.follows_protocol)
        assert ctx.num_edges > 0
        first = _craft(attack, ctx)
        again = _craft(attack, make_attack_context(G, byz, params.clone(), seed=seed,
                                                   include_byzantine_recipients=attack.follows_protocol))
        assert _same(first, again), f"{name} is not deterministic: the same seed gave different messages"
    if attack.knowledge == "local":
        _check_locality(attack, G, byz, torch.randn(n, d, generator=gen, dtype=torch.float64), seed)
    if simulate_round:
        _check_simulation(attack, G, byz, seed)
