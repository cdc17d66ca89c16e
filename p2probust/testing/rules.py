"""Conformance checks for aggregators and gossip rules, in the spirit of scikit-learn's
``check_estimator``: run them on your own rule before using it in a simulation.

>>> from p2probust.aggregators import TrimmedMean
>>> from p2probust.testing import check_aggregator
>>> check_aggregator(TrimmedMean())

Each check raises ``AssertionError`` naming the property that failed:

1. output shape ``[d]`` (one node) and ``[n, d]`` (batched) and the input dtype;
2. the batched call equals a Python loop of one-node calls;
3. permutation invariance of the inputs (slot 0 kept in place for ``anchored`` rules, weights
   permuted with their slots for gossip rules);
4. padding independence: garbage (NaN, ±inf, 1e30, noise) in masked slots changes nothing;
5. identical honest inputs are a fixed point (unless ``fixed_point = False``: static clipping);
6. the input tensors are not modified;
7. with ``f`` inputs set to NaN, ±inf or ±1e30 the output is finite, and inside the honest
   inputs' bounding box for ``coordinatewise`` rules (skipped for non-robust rules: ``robust =
   False``, the plain mean and plain gossip);
8. determinism: the same input gives the same output (randomized rules are rebuilt with
   ``reseeded()``, so their generator restarts);
9. (gossip rules) node subsets: bound to a small graph with Byzantine nodes, the rule called on a
   subset of the nodes, in any order, through ``rule.for_nodes(nodes).batched(...)`` returns the
   matching rows of the call over all nodes (async batches, churn and an attack's
   ``evaluate_rule`` make such calls); :func:`check_node_subsets`.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import Tensor

__all__ = ["check_aggregator", "check_gossip_rule", "check_node_subsets"]

BAD_VALUES = (float("nan"), float("inf"), float("-inf"), 1e30, -1e30)


def _fresh(rule):
    """A copy whose randomness restarts (reseeded) or the rule itself."""
    if getattr(rule, "randomized", False):
        return rule.reseeded()
    agg = getattr(rule, "aggregator", None)
    if agg is not None and getattr(agg, "randomized", False):
        new = copy.copy(rule)
        new.aggregator = agg.reseeded()
        return new
    return rule


def _same(a: Tensor, b: Tensor, what: str, atol: float) -> None:
    scale = 1.0 + float(torch.nan_to_num(a.abs(), posinf=0.0).max()) if a.numel() else 1.0
    ok = torch.allclose(a, b, rtol=0, atol=atol * scale, equal_nan=True)
    assert ok, f"{what}: max difference {float((a - b).abs().nan_to_num(nan=float('inf')).max()):.3g}"


def _unchanged(before: list[Tensor], after: list[Tensor], name: str) -> None:
    for a, b in zip(before, after):
        same = (a == b) | (torch.isnan(a) & torch.isnan(b)) if a.is_floating_point() else a == b
        assert bool(same.all()), f"{name} modified its input in place"


def _pick_f(fits: Callable[[int], bool], want: int) -> int:
    for f in range(want, -1, -1):
        if fits(f):
            return f
    return 0


def check_aggregator(agg, *, n: int = 4, m: int = 9, d: int = 5, f: int | None = None,
                     dtype: torch.dtype = torch.float64, seed: int = 0, atol: float = 1e-9) -> None:
    """Run the conformance checks on an aggregator (or chain); see the module notes.

    Parameters
    ----------
    agg : AbstractAggregator
        The rule under test; ``agg(x[m, d], mask[m], f[]) -> [d]`` and ``agg.batched``.
    n, m, d : int
        Nodes, slots per node and dimension of the test inputs (node 1 has 2 padding slots).
    f : int, optional
        Tolerance; default the largest value up to 2 that the rule accepts with ``m - 2`` inputs.
    """
    name = repr(agg)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, m, d, generator=g, dtype=dtype)
    mask = torch.ones(n, m, dtype=torch.bool)
    mask[1, -2:] = False
    if f is None:
        f = _pick_f(lambda v: bool((agg.max_tolerance(mask.sum(-1)) >= v).all()), 2)
    fv = torch.full((n,), f, dtype=torch.long)

    def run(xx: Tensor, mm: Tensor, ff: Tensor) -> Tensor:
        return _fresh(agg).batched(xx, mm, ff)

    out = _aggregator_batched_is_the_loop(agg, run, x, mask, fv, name, atol)  # 1, 2, 6
    _same(run(x, mask, fv), out, f"{name}: not deterministic", 0.0)  # 8
    if not getattr(agg, "randomized", False):  # 3
        perm = _slot_permutation(n, m, g, anchored=getattr(agg, "anchored", False))
        xp = torch.gather(x, 1, perm.unsqueeze(-1).expand(n, m, d))
        _same(run(xp, torch.gather(mask, 1, perm), fv), out, f"{name}: not permutation invariant", 1e-7)
    _check_padding(lambda junk: run(torch.where(mask.unsqueeze(-1), x, junk), mask, fv), out, name, atol, dtype)  # 4
    v = torch.randn(n, 1, d, generator=g, dtype=dtype) * 3 + 1  # 5
    same = torch.where(mask.unsqueeze(-1), v.expand(n, m, d), x)
    if getattr(agg, "fixed_point", True):
        _same(run(same, mask, fv), v.squeeze(1), f"{name}: identical inputs are not a fixed point", 1e-7)
    if getattr(agg, "robust", True) and f > 0:  # 7
        bad = _last_real_slots(mask, f)
        lo, hi = _bounding_box(x, mask & ~bad)
        _check_malformed(lambda xb: run(xb, mask, fv), x, bad, (lo, hi) if getattr(agg, "coordinatewise", False) else None,
                         f"{name}: {f} input(s)")


def _aggregator_batched_is_the_loop(agg, run, x: Tensor, mask: Tensor, fv: Tensor, name: str, atol: float) -> Tensor:
    """Checks 1, 2 and 6: shapes, dtype, batched == a loop of one-node calls, inputs untouched;
    returns the batched output."""
    n, _, d = x.shape
    inputs = [x.clone(), mask.clone(), fv.clone()]
    out = run(x, mask, fv)
    _unchanged(inputs, [x, mask, fv], name)
    assert out.shape == (n, d), f"{name}: batched output shape {tuple(out.shape)}, expected {(n, d)}"
    assert out.dtype == x.dtype, f"{name}: output dtype {out.dtype}, expected {x.dtype}"
    randomized = getattr(agg, "randomized", False)
    one = _fresh(agg)
    loop = []
    for i in range(n):
        y = (_fresh(agg) if randomized else one)(x[i], mask[i], fv[i])
        assert y.shape == (d,), f"{name}: one-node output shape {tuple(y.shape)}, expected {(d,)}"
        loop.append(y)
    if not randomized:
        _same(out, torch.stack(loop), f"{name}: batched differs from the loop over nodes", atol)
    else:  # every node draws the first keys of a restarted generator, as a lone call does
        for i in range(n):
            alone = _fresh(agg).batched(x[i:i + 1], mask[i:i + 1], fv[i:i + 1])[0]
            _same(alone, loop[i], f"{name}: batched differs from the one-node call", atol)
    return out


def _slot_permutation(n: int, m: int, g: torch.Generator, *, anchored: bool = False) -> Tensor:
    """``[n, m]``: a random permutation of the slots per node (slot 0 kept in place if ``anchored``)."""
    perm = torch.stack([torch.randperm(m, generator=g) for _ in range(n)])
    if anchored:
        perm = torch.cat([torch.zeros(n, 1, dtype=torch.long), 1 + torch.stack(
            [torch.randperm(m - 1, generator=g) for _ in range(n)])], 1)
    return perm


def _check_padding(call: Callable[[Tensor], Tensor], out: Tensor, name: str, atol: float, dtype: torch.dtype) -> None:
    """Check 4: ``call(junk)`` (the inputs with every padding slot set to ``junk``) equals ``out``."""
    for junk in (*BAD_VALUES, 7.0):
        _same(call(torch.tensor(junk, dtype=dtype)), out, f"{name}: padding filled with {junk} changed the output", atol)


def _last_real_slots(mask: Tensor, f: int) -> Tensor:
    """``[n, m]``: the last ``f`` real slots of every row, the ones check 7 makes malformed."""
    bad = torch.zeros_like(mask)
    for i in range(mask.shape[0]):
        bad[i, torch.nonzero(mask[i]).squeeze(1)[-f:]] = True
    return bad


def _bounding_box(x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """``([n, d], [n, d])``: coordinate-wise min and max of the rows of ``x [n, m, d]`` where ``keep``."""
    lo = torch.where(keep.unsqueeze(-1), x, torch.tensor(float("inf"), dtype=x.dtype)).amin(1)
    hi = torch.where(keep.unsqueeze(-1), x, torch.tensor(float("-inf"), dtype=x.dtype)).amax(1)
    return lo, hi


def _check_malformed(call: Callable[[Tensor], Tensor], x: Tensor, bad: Tensor, box: tuple[Tensor, Tensor] | None,
                     what: str) -> None:
    """Check 7: with the ``bad`` slots of ``x`` set to each of :data:`BAD_VALUES` (all coordinates,
    or only the first), ``call`` gives a finite output, inside ``box`` (the honest bounding box) if given."""
    d = x.shape[-1]
    for value in BAD_VALUES:
        for partial in (False, True):
            coords = torch.zeros(d, dtype=torch.bool)
            coords[: (1 if partial else d)] = True
            y = call(torch.where(bad.unsqueeze(-1) & coords, torch.tensor(value, dtype=x.dtype), x))
            case = f"{what} {'with one coordinate ' if partial else ''}set to {value}"
            assert bool(torch.isfinite(y).all()), f"{case} gave a non-finite output"
            if box is not None:
                lo, hi = box
                tol = 1e-9 * (1 + hi.abs().max())
                assert bool(((y >= lo - tol) & (y <= hi + tol)).all()), f"{case} left the honest bounding box"


def _rule_f(rule, degree: Tensor, want: int) -> int:
    agg = getattr(rule, "aggregator", None)

    def fits(v: int) -> bool:
        ff = torch.full_like(degree, v)
        if agg is not None and not bool((agg.max_tolerance(degree + 1) >= v).all()):
            return False
        try:
            rule.check_tolerance(degree, ff)
        except ValueError:
            return False
        return True

    return _pick_f(fits, want)


def check_gossip_rule(rule, *, n: int = 4, k: int = 8, d: int = 5, f: int | None = None,
                      dtype: torch.dtype = torch.float64, seed: int = 0, atol: float = 1e-9) -> None:
    """Run the conformance checks on a gossip rule; see the module notes.

    ``rule(own[d], inbox[k, d], mask[k], weights[k], f[]) -> [d]`` and ``rule.batched`` over
    ``[n, ...]``. Weights are Metropolis-like (``1/(k+1)`` per real slot); node 1 has 2 padding
    slots. ``f`` defaults to the largest value up to 2 that the rule accepts.
    """
    name = repr(rule)
    g = torch.Generator().manual_seed(seed)
    own = torch.randn(n, d, generator=g, dtype=dtype)
    inbox = torch.randn(n, k, d, generator=g, dtype=dtype)
    mask = torch.ones(n, k, dtype=torch.bool)
    mask[1, -2:] = False
    w = torch.where(mask, torch.tensor(1.0 / (k + 1), dtype=dtype), torch.zeros((), dtype=dtype))
    if f is None:
        f = _rule_f(rule, mask.sum(-1), 2)
    fv = torch.full((n,), f, dtype=torch.long)

    def run(o, mm, msk, ww, ff):
        return _fresh(rule).batched(o, mm, msk, ww, ff)

    randomized = getattr(rule, "randomized", False) or getattr(getattr(rule, "aggregator", None), "randomized", False)
    out = _rule_batched_is_the_loop(rule, run, (own, inbox, mask, w, fv), name, atol, randomized)  # 1, 2, 6
    _same(run(own, inbox, mask, w, fv), out, f"{name}: not deterministic", 0.0)  # 8
    if not randomized:  # 3
        perm = _slot_permutation(n, k, g)
        pm = torch.gather(inbox, 1, perm.unsqueeze(-1).expand(n, k, d))
        got = run(own, pm, torch.gather(mask, 1, perm), torch.gather(w, 1, perm), fv)
        _same(got, out, f"{name}: not invariant to a permutation of the neighbour slots", 1e-7)
    wj = torch.where(mask, w, torch.tensor(5.0, dtype=dtype))
    _check_padding(lambda junk: run(own, torch.where(mask.unsqueeze(-1), inbox, junk), mask, wj, fv), out, name, atol, dtype)
    check_node_subsets(rule, d=d, dtype=dtype, seed=seed, atol=atol)  # 9
    v = torch.randn(n, d, generator=g, dtype=dtype) * 3 + 1  # 5
    same = torch.where(mask.unsqueeze(-1), v.unsqueeze(1).expand(n, k, d), inbox)
    if getattr(getattr(rule, "aggregator", rule), "fixed_point", True):
        _same(run(v, same, mask, w, fv), v, f"{name}: identical inputs are not a fixed point", 1e-7)
    if getattr(rule, "robust", True) and f > 0:  # 7: the own model counts as honest
        bad = _last_real_slots(mask, f)
        honest = torch.cat([torch.ones(n, 1, dtype=torch.bool), mask & ~bad], 1)
        box = _bounding_box(torch.cat([own.unsqueeze(1), inbox], 1), honest)
        coordinatewise = getattr(getattr(rule, "aggregator", None), "coordinatewise", False)
        _check_malformed(lambda mb: run(own, mb, mask, w, fv), inbox, bad, box if coordinatewise else None,
                         f"{name}: {f} message(s)")


def _rule_batched_is_the_loop(rule, run, inputs: tuple[Tensor, ...], name: str, atol: float, randomized: bool) -> Tensor:
    """Checks 1, 2 and 6 for a gossip rule: shapes, dtype, batched == one-node calls, inputs
    untouched; returns the batched output."""
    own = inputs[0]
    n, d = own.shape
    before = [t.clone() for t in inputs]
    out = run(*inputs)
    _unchanged(before, list(inputs), name)
    assert out.shape == (n, d), f"{name}: batched output shape {tuple(out.shape)}, expected {(n, d)}"
    assert out.dtype == own.dtype, f"{name}: output dtype {out.dtype}, expected {own.dtype}"
    for i in range(n):
        y = _fresh(rule)(*(t[i] for t in inputs))
        assert y.shape == (d,), f"{name}: one-node output shape {tuple(y.shape)}, expected {(d,)}"
        ref = run(*(t[i:i + 1] for t in inputs))[0] if randomized else out[i]
        _same(ref, y, f"{name}: batched differs from the loop over nodes (node {i})", atol)
    return out


def check_node_subsets(rule, *, n: int = 10, degree: int = 4, d: int = 3, f: int | None = None,
                       dtype: torch.dtype = torch.float64, seed: int = 0, atol: float = 1e-9) -> None:
    """Check 9: on a random ``degree``-regular graph of ``n`` nodes with two Byzantine nodes, the
    bound rule (``rule.bind(table, is_byzantine)``) called on subsets of the nodes (a shuffled
    half, one node, the honest nodes in descending order) returns the rows of the full call.

    Byzantine slots hold crafted far-away messages; ``f`` defaults to the largest value up to 2
    that the rule accepts with ``degree`` neighbours.
    """
    import networkx as nx

    from ..topology.table import NeighbourTable

    name = repr(rule)
    g = torch.Generator().manual_seed(seed)
    table = NeighbourTable.from_graph(nx.random_regular_graph(degree, n, seed=seed), dtype=dtype)
    is_byz = torch.zeros(n, dtype=torch.bool)
    is_byz[torch.randperm(n, generator=g)[:2]] = True
    params = torch.randn(n, d, generator=g, dtype=dtype)
    byz_slots = table.byzantine_slots(is_byz)
    inbox = params[table.idx].clone()
    inbox[byz_slots] = 10 + 5 * torch.randn(int(byz_slots.sum()), d, generator=g, dtype=dtype)
    if f is None:
        f = _rule_f(rule, table.degree, 2)
    fv = torch.full((n,), f, dtype=torch.long)
    bound = _fresh(rule).bind(table, is_byz)

    def call(nodes: Tensor) -> Tensor:
        r = _fresh(bound).for_nodes(nodes)
        return r.batched(params[nodes], inbox[nodes], table.mask[nodes], table.weights[nodes], fv[nodes])

    full = call(torch.arange(n))
    honest = torch.nonzero(~is_byz).squeeze(1)
    for what, nodes in (("a shuffled half of the nodes", torch.randperm(n, generator=g)[: n // 2]),
                        ("one node", torch.tensor([int(honest[0])])),
                        ("the honest nodes in descending order", honest.flip(0))):
        _same(call(nodes), full[nodes], f"{name}: a call on {what} differs from the rows of the full call", atol)
