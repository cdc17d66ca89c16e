"""The attack contract: Byzantine messages crafted per recipient, for every Byzantine edge at once.

Byzantine node ``b`` may tell each neighbour ``i`` something different (equivocation). The
simulator lists every Byzantine edge ``b → i`` whose recipient runs the protocol this round as
``E`` rows of an :class:`AttackContext` and asks the attack for all ``E`` messages in one batched
call: ``attack.craft(ctx) -> [E, d]``. Only those inbox slots are overwritten.

Knowledge levels: an **omniscient** attack may read every honest model, the graph and the rule
deployed at the recipient; a **local** attack only what its own node received
(:meth:`AttackContext.sender_inbox`). Data poisoning (label flipping) is an attack that
``follows_protocol``: the Byzantine node trains and gossips like an honest node on poisoned data,
and its messages are its own model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from ..jit import row_means as jit_row_means


@dataclass(frozen=True)
class AttackContext:
    """What an attack may see at one round.

    Attributes
    ----------
    params : Tensor [n, d]
        Every node's current outgoing model (honest rows are the honest messages this round).
    is_byzantine : BoolTensor [n]
    idx, mask : LongTensor [n, k], BoolTensor [n, k]
        The neighbour table (slot ``j`` of node ``i`` receives from ``idx[i, j]``).
    senders, recipients : LongTensor [E]
        Byzantine sender and recipient of each attacked edge.
    slots : LongTensor [E]
        The recipient's inbox slot of each edge.
    round : int
    generator : torch.Generator
        The attack's own named random stream.
    rule : object
        The gossip rule deployed at the recipients (omniscient attacks may use it).
    num_classes : int
    weights : Tensor [n, k] or None
        Mixing weights of the neighbour table (omniscient).
    tolerance : LongTensor [n] or None
        The tolerance f each node's rule uses (omniscient).
    wiring_cache : dict or None
        The :attr:`~p2probust.wiring.Wiring.cache` of this round's graph, given when every round
        that uses it asks for the same edges (``idx``, ``mask``, ``weights``, ``tolerance``,
        ``is_byzantine``, ``senders``, ``recipients``, ``slots`` all equal): helpers store there
        what depends on the wiring only (e.g. the recipients' honest-neighbour adjacency, the
        spectral attack's Fiedler vector), under a key of their own. None (a round with dropped
        messages or offline nodes, an asynchronous inbox): computed afresh.
    graph_cache : dict or None
        A cache for what depends on ``idx``, ``mask`` and ``is_byzantine`` row by row, whatever
        edges are asked for (e.g. the honest members of every node's neighbourhood, indexed by
        node): given by the asynchronous kernel, which lists under ``"dirty"`` (LongTensor) the
        nodes whose rows changed since; a helper that keeps rows computes those again and removes
        the key. None: computed afresh.
    """

    params: Tensor
    is_byzantine: Tensor
    idx: Tensor
    mask: Tensor
    senders: Tensor
    recipients: Tensor
    slots: Tensor
    round: int
    generator: torch.Generator
    rule: Any = None
    num_classes: int = 0
    weights: Tensor | None = None
    tolerance: Tensor | None = None
    wiring_cache: dict | None = None
    graph_cache: dict | None = None

    @property
    def num_edges(self) -> int:
        return int(self.senders.numel())

    @property
    def honest_slots(self) -> Tensor:
        """``[n, k]``: slots that hold a real message from an honest node."""
        return self.mask & ~self.is_byzantine[self.idx]

    def honest_mean(self) -> Tensor:
        """``[d]``: mean of all honest models (omniscient)."""
        return self.params[~self.is_byzantine].mean(0)

    def recipient_honest_stats(self) -> tuple[Tensor, Tensor]:
        """``([E, d], [E, d])``: mean and unbiased std (divisor ``count − 1``, as Baruch et al. and
        the reference implementations use; 0 for a single model) of the honest models each
        recipient aggregates — its own model and its honest neighbours' messages.

        Computed once per distinct recipient (a recipient with several Byzantine neighbours
        appears on several edges) and gathered back to the edges."""
        uniq, inv = self.recipient_groups
        w = self.honest_slots[uniq].unsqueeze(-1).to(self.params.dtype)  # [R, k, 1]
        msgs = torch.where(w > 0, self.params[self.idx[uniq]], self.params.new_zeros(()))
        own = self.params[uniq]
        count = 1 + w.sum(1)
        mean = (own + msgs.sum(1)) / count
        var = ((own - mean) ** 2 + (w * (msgs - mean.unsqueeze(1)) ** 2).sum(1)) / (count - 1).clamp_min(1)
        return mean[inv], var.sqrt()[inv]

    def recipient_honest_mean(self, scale: float | None = None) -> Tensor:
        """``[E, d]``: the mean part of :meth:`recipient_honest_stats`, as one sparse product
        ``A @ params`` with ``A[r, j] = 1`` for recipient r itself and its honest neighbours j
        (no ``[R, k, d]`` gather of neighbour messages); on the CPU, the same sums in one compiled
        pass straight to the edges (:mod:`p2probust.jit.row_means`, same bits), from every node's
        list of members kept in the graph cache when there is one. With ``scale``, ``mean * scale``
        (the same bits, without a pass of its own on the CPU)."""
        factor = 1.0 if scale is None else scale
        fast = jit_row_means.usable(self.params, self.num_edges)
        if fast and self.graph_cache is not None:
            every = self._every_honest_members()
            if not bool(every["repeated"].any()):
                return jit_row_means.listed_means(self.params, every["members"], every["count"], self.recipients, factor,
                                                  per_edge=True)
        cached = None if self.wiring_cache is None else self.wiring_cache.get("recipient_members")
        if cached is None:
            uniq, inv = self.recipient_groups
            cached = {**self._honest_members(uniq), "inv": inv}
            if self.wiring_cache is not None:
                self.wiring_cache["recipient_members"] = cached
        members, count, inv = cached["members"], cached["count"], cached["inv"]
        if not bool(cached["repeated"].any()) and fast:
            return jit_row_means.listed_means(self.params, members, count, inv, factor)
        if "adjacency" not in cached:  # A[r, j] = 1 per listed member (a repeated one coalesces to weight 2)
            real = members >= 0
            rows = torch.arange(members.shape[0], device=members.device).unsqueeze(1).expand_as(members)[real]
            cached["adjacency"] = torch.sparse_coo_tensor(
                torch.stack([rows, members[real]]), torch.ones(rows.numel(), dtype=self.params.dtype, device=self.params.device),
                (members.shape[0], self.params.shape[0]), check_invariants=True, device=self.params.device,
            ).coalesce()
        mean = (torch.sparse.mm(cached["adjacency"], self.params) / count.unsqueeze(1))[inv]
        return mean if scale is None else mean.mul_(scale)

    def _honest_members(self, nodes: Tensor) -> dict[str, Any]:
        """For each of ``nodes [R]``: ``members [R, k + 1]``, the node and its honest neighbours
        ascending, padded with −1; ``count [R]`` their number (in the models' dtype); ``repeated
        [R]``, whether the row lists a node twice (a neighbour in two slots)."""
        honest = self.mask[nodes] & ~self.is_byzantine[self.idx[nodes]]  # [R, k]: honest_slots' rows
        n = self.params.shape[0]
        members = torch.cat([nodes.unsqueeze(1), torch.where(honest, self.idx[nodes], n)], 1).sort(1).values
        repeated = (members[:, 1:] == members[:, :-1]).logical_and_(members[:, 1:] < n).any(1)
        return {"members": members.masked_fill_(members == n, -1), "repeated": repeated,
                "count": (1 + honest.sum(1)).to(self.params.dtype)}

    def _every_honest_members(self) -> dict[str, Any]:
        """:meth:`_honest_members` of every node, kept in the graph cache; the rows of the nodes
        listed under ``"dirty"`` there (whose slots changed) are computed again."""
        cache = self.graph_cache
        every = cache.get("honest_members")
        if every is None:
            cache.pop("dirty", None)
            every = cache["honest_members"] = self._honest_members(torch.arange(self.params.shape[0], device=self.params.device))
        elif "dirty" in cache:
            rows = cache.pop("dirty").unique()
            for key, value in self._honest_members(rows).items():
                every[key][rows] = value
        return every

    def sender_inbox(self) -> tuple[Tensor, Tensor]:
        """``([E, k, d], [E, k])``: what each edge's Byzantine sender itself received (local view)."""
        s = self.senders
        return self.params[self.idx[s]], self.mask[s]

    # --- additions for the attack library (issue 4); every helper is batched over edges -------

    @property
    def dim(self) -> int:
        """``d``, the number of model parameters."""
        return int(self.params.shape[1])

    def global_honest_stats(self) -> tuple[Tensor, Tensor]:
        """``([E, d], [E, d])``: mean and unbiased std of all honest models (omniscient),
        broadcast to every edge."""
        honest = self.params[~self.is_byzantine]
        mean, std = honest.mean(0), honest.std(0, correction=1 if honest.shape[0] > 1 else 0)
        return mean.expand(self.num_edges, -1), std.expand(self.num_edges, -1)

    def sender_honest_stats(self) -> tuple[Tensor, Tensor]:
        """``([E, d], [E, d])``: mean and unbiased std of the honest messages each edge's
        Byzantine sender received itself (local view; its own model is not counted)."""
        msgs, mask = self.sender_inbox()
        w = (mask & ~self.is_byzantine[self.idx[self.senders]]).unsqueeze(-1).to(msgs.dtype)
        count = w.sum(1).clamp_min(1)
        mean = (w * msgs).sum(1) / count
        var = (w * (msgs - mean.unsqueeze(1)) ** 2).sum(1) / (count - 1).clamp_min(1)
        return mean, var.sqrt()

    def honest_stats(self, reference: str) -> tuple[Tensor, Tensor]:
        """Mean and std ``([E, d], [E, d])`` of the honest models seen from ``reference``:
        ``"recipient"`` (what the recipient aggregates), ``"global"`` (every honest model),
        ``"sender"`` (what the Byzantine sender received; the only local one) or ``"neighbours"``
        (the recipient's honest neighbours, itself excluded)."""
        if reference == "recipient":
            return self.recipient_honest_stats()
        if reference == "global":
            return self.global_honest_stats()
        if reference == "sender":
            return self.sender_honest_stats()
        if reference == "neighbours":
            return self.recipient_neighbour_stats()
        raise ValueError(f"reference = {reference!r} must be one of: recipient, global, sender, neighbours")

    def recipient_neighbour_mean(self) -> Tensor:
        """``[E, d]``: mean of the honest *neighbours'* messages at each edge's recipient, the
        recipient itself excluded (Wu et al.'s centre); the recipient's own model when it has
        no honest neighbour."""
        return self.recipient_neighbour_stats()[0]

    def recipient_neighbour_stats(self) -> tuple[Tensor, Tensor]:
        """``([E, d], [E, d])``: mean and unbiased std (divisor ``count − 1``; 0 for one model) of
        the honest *neighbours'* messages at each edge's recipient, the recipient itself excluded,
        as Wu et al.'s code (ByrdLab/IOS ``D_gaussian``, ``D_alie``: ``local_models[honest_neighbors]``);
        the recipient's own model and std 0 when it has no honest neighbour."""
        uniq, inv = self.recipient_groups
        w = self.honest_slots[uniq].unsqueeze(-1).to(self.params.dtype)  # [R, k, 1]
        zero = torch.zeros((), dtype=self.params.dtype, device=self.params.device)
        msgs = torch.where(w > 0, self.params[self.idx[uniq]], zero)
        count = w.sum(1)
        mean = torch.where(count > 0, msgs.sum(1) / count.clamp_min(1), self.params[uniq])
        var = (w * (msgs - mean.unsqueeze(1)) ** 2).sum(1) / (count - 1).clamp_min(1)
        return mean[inv], var.sqrt()[inv]

    def byzantine_counts(self) -> Tensor:
        """``LongTensor [n]``: number of Byzantine neighbours of every node."""
        return (self.mask & self.is_byzantine[self.idx]).sum(1)

    def slot_weights(self) -> Tensor:
        """``[n, k]``: the mixing weights (``weights``, or 1 on every real slot when absent), 0 on padding."""
        w = self.weights if self.weights is not None else torch.ones(self.mask.shape, dtype=self.params.dtype, device=self.params.device)
        return torch.where(self.mask, w.to(self.params.dtype), self.params.new_zeros(()))

    def node_tolerance(self) -> Tensor:
        """``LongTensor [n]``: the tolerance ``f`` of each node's rule (the oracle count when absent)."""
        return self.tolerance if self.tolerance is not None else self.byzantine_counts()

    @cached_property
    def recipient_groups(self) -> tuple[Tensor, Tensor]:
        """``(LongTensor [R], LongTensor [E])``: the distinct recipients (ascending) and, per edge,
        the position of its recipient among them (``recipients == uniq[inv]``). Per-recipient
        quantities are computed on ``R`` rows and gathered back to the edges with ``[inv]``."""
        uniq, inv = torch.unique(self.recipients, return_inverse=True)
        return uniq, inv

    def evaluate_rule(self, crafted: Tensor) -> Tensor:
        """The deployed rule's output at each edge's recipient if the Byzantine edges sent ``crafted``.

        Every Byzantine slot of recipient ``i`` is filled with the row of ``crafted`` of its edge,
        honest slots keep the honest messages, and ``rule.batched`` runs once over the distinct
        recipients with their weights and tolerances (omniscient).

        Parameters
        ----------
        crafted : Tensor [E, d]
            A candidate message for every attacked edge.

        Returns
        -------
        Tensor [E, d]
            Row ``e`` is the new model of ``recipients[e]``.
        """
        if self.rule is None:
            raise ValueError("evaluate_rule needs ctx.rule, the gossip rule deployed at the recipients; got None")
        uniq, inv = self.recipient_groups
        inbox = self.params[self.idx[uniq]].index_put((inv, self.slots), crafted.to(self.params.dtype))
        out = self.rule.for_nodes(uniq).batched(
            self.params[uniq], inbox, self.mask[uniq], self.slot_weights()[uniq], self.node_tolerance()[uniq]
        )
        return out[inv]


class AbstractAttack(ABC):
    """Crafts the Byzantine messages of every attacked edge in one call; the abstract base class
    of every attack.

    A subclass must implement :meth:`craft`, ``AttackContext -> [E, d]`` (row ``e`` is the message
    on edge ``ctx.senders[e] → ctx.recipients[e]``; draw random numbers only from
    ``ctx.generator``). Everything else has a default: :meth:`report` (no columns) and the class
    flags below (``knowledge``, ``sends``, ``broadcast``, ``follows_protocol``, ``flips_labels``,
    ``replica_safe``, ``report_columns``). Register it with
    :func:`p2probust.registry.register_attack` or, from another package, with an entry point in
    the group ``p2probust.attacks``. A subclass that misses :meth:`craft` cannot be instantiated
    (``TypeError``).
    """

    #: "omniscient" or "local"
    knowledge: str = "omniscient"
    #: True once tests/test_batched.py shows that a batched simulation gives byte-identical
    #: per-seed metrics with it (see :mod:`p2probust.batched`); unverified components run separately
    replica_safe: bool = False
    #: True for data poisoning: the Byzantine node trains and gossips like an honest node
    follows_protocol: bool = False
    #: True if the Byzantine node's training labels are flipped y → C−1−y
    flips_labels: bool = False
    #: False for a crashed (silent) node: its slots are absent from every inbox and ``craft`` is never called
    sends: bool = True
    #: per-round values the attack reports (metrics.csv columns, e.g. the line-searched factor)
    report_columns: tuple[str, ...] = ()
    #: True if a Byzantine sender's message does not depend on the recipient and crafting any subset
    #: of the edges returns those rows of the full call (no random draws, no per-recipient state):
    #: recipients that share an inbox then aggregate once (:mod:`p2probust.shared_inbox`)
    broadcast: bool = False

    @abstractmethod
    def craft(self, ctx: AttackContext) -> Tensor:
        """``[E, d]`` messages, row e for edge ``senders[e] → recipients[e]``."""

    def report(self) -> dict[str, float | None]:
        """The values of :attr:`report_columns` for the round just played (``None`` where the
        attack crafted nothing). Called by the simulator after each round; never changes the state."""
        return {}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "report_columns")
        return f"{type(self).__name__}({params})"


def describe_attack(factory: Any) -> str:
    """One line for ``p2probust list attacks``: the knowledge level and the parameters with defaults.

    Examples
    --------
    >>> from p2probust.attacks import IPM
    >>> describe_attack(IPM)
    "knowledge: omniscient (local with reference='sender'); params: epsilon=0.1, reference='recipient'"
    """
    import inspect

    try:
        sig = inspect.signature(factory)
        params = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except (TypeError, ValueError):
        params = []
    shown = ", ".join(f"{p.name}={p.default!r}" if p.default is not p.empty else p.name for p in params) or "none"
    level = getattr(factory, "knowledge", "?")
    if isinstance(level, property):  # knowledge follows a parameter: read it off a default instance
        level = factory().knowledge
        if any(p.name == "reference" for p in params):
            level += " (local with reference='sender')"
    return f"knowledge: {level}; params: {shown}"
