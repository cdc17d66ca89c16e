r"""The batched local step: per-node stochastic gradients for all acting nodes in one call.

For every acting node ``i`` at once:

.. math::
    g_i = \nabla_\theta \tfrac1B \textstyle\sum_{s \in \mathcal B_i} \ell(\theta_i; x_s, y_s)
          + \lambda\theta_i,\qquad
    m_i \leftarrow \beta m_i + (1-\beta) g_i,\qquad \theta_i \leftarrow \theta_i - \eta_t m_i

(local Polyak momentum in its dampened form, as in Karimireddy, He, Jaggi, "Learning from history
for Byzantine robust optimization", ICML 2021; β = 0 is plain SGD). ``momentum_form="heavy-ball"``
(``[train] momentum_form``) drops the dampening: :math:`m_i \leftarrow \beta m_i + g_i`, the form of
``torch.optim.SGD(momentum=β)`` with ``dampening=0`` and of He, Karimireddy, Jaggi's ClippedGossip
code (epfml/byzantine-robust-decentralized-optimizer, ``SGDMWorker``: ``buf.mul_(β).add_(grad)``,
the first buffer being the first gradient, which is the same as starting from :math:`m = 0`); its
steps are :math:`1/(1-\beta)` times longer at equilibrium. Weight decay λ (ℓ2,
``[train] weight_decay``) is added to the gradient *before* momentum, as ``torch.optim.SGD`` does;
with β = 0 the step is :math:`\theta \leftarrow (1-\eta\lambda)\theta - \eta\nabla f`, the IOS
code's ``param.mul_(1 - weight_decay*lr); param.sub_(grad, alpha=lr)``. Batches come from each
node's own partition with the ``batches`` stream (:mod:`p2probust.sampling`: uniform with
replacement by default, epochs without replacement, or contiguous slices). Gradients come from
``torch.func.vmap(torch.func.grad(...))`` over the stacked parameters — no Python loop over nodes.
"""

from __future__ import annotations

import bisect
import math
import typing
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config.parts import LRScheduleKind, MomentumForm
from .jit import logreg as jit_logreg
from .jit import sgd as jit_sgd
from .jit import softmax as jit_softmax
from .models import LinearRegression, LogisticRegression, ParamSpec
from .profiling import timed
from .sampling import BatchSampler
from .threads import forward_flops


@dataclass(frozen=True)
class LRSchedule:
    r"""Learning rate at round ``t`` (counted from 0; local steps of one round share it).

    * ``constant``: :math:`\eta`;
    * ``inv-sqrt``: :math:`\eta/\sqrt{t+b}` (``offset`` b, default 1: :math:`\eta/\sqrt{k}` with
      k = t + 1 counted from 1). The IOS code's ``one_over_sqrt_k_lr(a=1, b=1)`` with initial lr
      0.9 gives :math:`0.9/\sqrt{k+1}` at iteration k from 0: ``lr = 0.9``, ``offset = 1`` here
      (its general :math:`\eta\,a/\sqrt{k+b}` is ``lr = ηa``, ``offset = b``);
    * ``step``: :math:`\eta\gamma^{\lfloor t/s\rfloor}` (``decay`` γ every ``step`` s rounds,
      ``torch.optim.lr_scheduler.StepLR``);
    * ``multistep``: :math:`\eta\gamma^{|\{m \in M : m \le t\}|}` (``milestones`` M,
      ``torch.optim.lr_scheduler.MultiStepLR``).
    """

    lr: float = 0.1
    kind: str = "constant"
    decay: float = 0.5
    step: int = 50
    offset: float = 1.0
    milestones: tuple[int, ...] = ()

    KINDS = typing.get_args(LRScheduleKind)  # the one list: p2probust.config.parts

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"lr schedule {self.kind!r} must be one of: {', '.join(self.KINDS)}")
        if not self.offset > 0:
            raise ValueError(f"inv-sqrt offset b = {self.offset!r} is invalid; expected b > 0")

    def __call__(self, t: int) -> float:
        if self.kind == "inv-sqrt":
            return self.lr / math.sqrt(t + self.offset)
        if self.kind == "step":
            return self.lr * self.decay ** (t // self.step)
        if self.kind == "multistep":
            return self.lr * self.decay ** bisect.bisect_right(self.milestones, t)
        return self.lr


def _loss_fn(kind: str):
    if kind == "cross_entropy":
        return F.cross_entropy
    if kind == "mse":
        return lambda pred, y: 0.5 * ((pred - y) ** 2).mean()
    raise ValueError(f"unknown loss {kind!r}; choose cross_entropy or mse")


def is_softmax_regression(model: nn.Module, loss: str) -> bool:
    """Multinomial logistic regression trained with cross-entropy: the model with a closed-form
    gradient (:func:`closed_form_gradients`) and a compiled one (:mod:`p2probust.jit.logreg`)."""
    return isinstance(model, LogisticRegression) and loss == "cross_entropy"


def closed_form_gradients(model: nn.Module, loss: str):
    r"""Hand-batched gradients for linear models, or None for any other model.

    Multinomial logistic regression (``LogisticRegression``, cross-entropy), for ``W [C, p]``,
    ``b [C]`` and a batch ``X [B, p]``, ``Y`` one-hot ``[B, C]``:
    :math:`G = (\mathrm{softmax}(XW^\top + b) - Y)/B`, :math:`\nabla_W = G^\top X`,
    :math:`\nabla_b = \sum_s G_s`. Least squares (``LinearRegression``, mse):
    :math:`\nabla_\theta = X^\top (X\theta - y)/B`. Both equal ``vmap(grad(loss))`` (tested) and
    avoid its one-off start-up cost. :math:`G` comes from one compiled pass with the bits of
    ``torch.softmax`` (:mod:`p2probust.jit.softmax`: 8× faster over 10 classes).
    """
    if is_softmax_regression(model, loss):
        linear = model.linear
        c, p = linear.weight.shape

        def logreg(theta: Tensor, xb: Tensor, yb: Tensor) -> Tensor:
            a, bsz = xb.shape[0], xb.shape[1]
            xb = xb.reshape(a, bsz, p)
            w, b = theta[:, : c * p].view(a, c, p), theta[:, c * p :]
            # torch.softmax's bits (stored results pin them), from one compiled pass where it can
            g = jit_softmax.softmax_residual(torch.baddbmm(b.unsqueeze(1), xb, w.transpose(1, 2)), yb, bsz)
            # (a bmm with out= a column slice of the result runs per node: 2× slower than this cat)
            return torch.cat([torch.bmm(g.transpose(1, 2), xb).reshape(a, c * p), g.sum(1)], 1)

        return logreg
    if isinstance(model, LinearRegression) and loss == "mse":

        def lsq(theta: Tensor, xb: Tensor, yb: Tensor) -> Tensor:
            resid = torch.bmm(xb, theta.unsqueeze(-1)).squeeze(-1) - yb
            return torch.bmm(resid.unsqueeze(1), xb).squeeze(1) / xb.shape[1]

        return lsq
    return None


#: forms of local momentum: m ← βm + (1−β)g, or m ← βm + g (heavy ball without dampening)
MOMENTUM_FORMS = typing.get_args(MomentumForm)  # the one list: p2probust.config.parts

#: the local step computes gradients over blocks of nodes whose batches take about this many bytes
BATCH_BYTES = 64 << 20


class LocalTrainer:
    """Batched SGD with local momentum over stacked parameters.

    Parameters
    ----------
    model : nn.Module
        A template; its parameters are replaced per node through ``functional_call``.
    x, y : Tensor [N, ...], Tensor [N]
        The training set.
    table, lengths : LongTensor [n, L], LongTensor [n]
        Each node's sample indices (padded) and how many are real.
    loss : str
        ``"cross_entropy"`` or ``"mse"``.
    batch_size : int
    flipped : BoolTensor [n] or None
        Nodes whose labels are flipped y → C−1−y (label-flipping Byzantine nodes).
    num_classes : int
    weight_decay : float
        λ ≥ 0, added as ``λθ`` to the gradient before momentum (after the DP noise: it depends on
        no data, so it costs no privacy).
    sampling : str
        ``uniform`` | ``epoch`` | ``slice`` (:mod:`p2probust.sampling`).
    momentum_form : str
        ``"dampened"`` (m ← βm + (1−β)g, default) or ``"heavy-ball"`` (m ← βm + g).
    privacy : object or None
        A DP mechanism (:class:`p2probust.privacy.GaussianDP`): when given, it draws the batches and
        turns per-example gradients into the noisy clipped mean, ``privacy.gradients(trainer, theta,
        nodes, generator) -> [a, d]``, before momentum.
    sampler : callable or None
        ``sampler(nodes, generator) -> [a, B]`` sample indices instead of a
        :class:`~p2probust.sampling.BatchSampler` over ``table`` (a batched simulation passes one
        that draws per replica, :class:`~p2probust.batched.ReplicaSampler`).
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        table: Tensor,
        lengths: Tensor,
        *,
        loss: str,
        batch_size: int,
        flipped: Tensor | None = None,
        num_classes: int = 0,
        weight_decay: float = 0.0,
        sampling: str = "uniform",
        privacy: Any = None,
        sampler: Any = None,
        momentum_form: str = "dampened",
    ):
        if momentum_form not in MOMENTUM_FORMS:
            raise ValueError(f"momentum_form = {momentum_form!r} must be one of: {', '.join(MOMENTUM_FORMS)}")
        self.heavy_ball = momentum_form == "heavy-ball"
        self.model = model
        self.spec = ParamSpec.from_module(model)
        self.x, self.y = x, y
        self.table, self.lengths = table, lengths
        self.batch_size = batch_size
        self.flipped = flipped
        self.num_classes = num_classes
        self.weight_decay = float(weight_decay)
        self.sampler = sampler if sampler is not None else BatchSampler(table, lengths, batch_size, sampling)
        criterion = _loss_fn(loss)
        self.loss, self.criterion = loss, criterion
        model_ = model

        def node_loss(theta: Tensor, xb: Tensor, yb: Tensor) -> Tensor:
            out = torch.func.functional_call(model_, self.spec.unflatten(theta), (xb,))
            return criterion(out, yb)

        self._grads = closed_form_gradients(model, loss) or torch.func.vmap(torch.func.grad(node_loss))
        self._compiled_logreg = is_softmax_regression(model, loss)  # one compiled pass may serve it (same bits)
        # a model with dropout (DropoutCNN) takes its masks as inputs, drawn here from the batches stream
        self._draw_masks = getattr(model, "draw_masks", None)
        if self._draw_masks is not None:
            if privacy is not None:
                raise ValueError(f"{type(model).__name__} (dropout) does not support [privacy]: per-example DP gradients take no dropout masks")

            def masked_loss(theta: Tensor, xb: Tensor, yb: Tensor, *masks: Tensor) -> Tensor:
                out = torch.func.functional_call(model_, self.spec.unflatten(theta), (xb,), {"masks": masks})
                return criterion(out, yb)

            self._grads = torch.func.vmap(torch.func.grad(masked_loss))
        self.privacy = privacy.bind(self) if privacy is not None else None
        forward = forward_flops(model, x[:1])
        #: FLOPs of one node's local step, 3 B F + 4 d (forward F per sample and a backward of about
        #: twice that, then momentum and update), or None without an estimate (:mod:`p2probust.threads`)
        self.flops_per_node = None if forward is None else 3 * batch_size * forward + 4 * self.spec.dim

    def sample(self, nodes: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """One batch per node: ``([a, B, ...], [a, B])``."""
        return self._batch(nodes, self.sampler(nodes, generator))

    def _batch(self, nodes: Tensor, samples: Tensor) -> tuple[Tensor, Tensor]:
        """The inputs and labels of the sample indices ``samples [a, B]`` of ``nodes``."""
        yb = self.y[samples]
        if self.flipped is not None and self.num_classes:
            flip = self.flipped[nodes].unsqueeze(1)
            yb = torch.where(flip, self.num_classes - 1 - yb, yb)
        return self.x.index_select(0, samples.reshape(-1)).reshape(samples.shape + self.x.shape[1:]), yb

    def gradients(self, params: Tensor, nodes: Tensor, generator: torch.Generator) -> Tensor:
        """``[a, d]`` stochastic gradients of the acting ``nodes`` (the DP ones with ``privacy``;
        weight decay included)."""
        theta = params[nodes]
        if self.privacy is not None:
            g = self.privacy.gradients(self, theta, nodes, generator)
        else:
            g = self._chunked_gradients(theta, nodes, self.sampler(nodes, generator), generator)
        return torch.add(g, theta, alpha=self.weight_decay) if self.weight_decay else g

    def _chunked_gradients(self, theta: Tensor, nodes: Tensor, samples: Tensor, generator: torch.Generator) -> Tensor:
        """Gradients of ``nodes`` at ``theta [a, d]`` on their batches ``samples [a, B]``, computed
        over blocks of nodes whose batches take about :data:`BATCH_BYTES` (the batches, and the
        dropout masks of a dropout model, are drawn once, before, from ``generator``, so the draws
        do not depend on the blocks). At n = 100,000 this keeps the ``[a, B, ...]`` batch tensor
        (0.8 GB for digits-sized inputs) from existing all at once."""
        masks = self._draw_masks(nodes.numel(), samples.shape[1], generator) if self._draw_masks is not None else ()
        if self._compiled_logreg and jit_logreg.usable(self.x, theta, samples.shape[1]):
            flipped = self.flipped[nodes] if self.flipped is not None and self.num_classes else None
            return jit_logreg.gradients(self.x, self.y, samples, flipped, self.num_classes - 1, theta,
                                        lambda m: self._block_gradients(theta[:m], nodes[:m], samples[:m], masks))
        return self._block_gradients(theta, nodes, samples, masks)

    def _block_gradients(self, theta: Tensor, nodes: Tensor, samples: Tensor, masks: tuple) -> Tensor:
        """The torch path of :meth:`_chunked_gradients` (gathered batches, over blocks of nodes)."""
        per_node = max(1, samples.shape[1] * self.x[0].numel() * self.x.element_size())
        block = max(1, BATCH_BYTES // per_node)
        if block >= nodes.numel():
            return self._grads(theta, *self._batch(nodes, samples), *masks)
        g = theta.new_empty(theta.shape)
        for s in range(0, nodes.numel(), block):
            e = s + block
            g[s:e] = self._grads(theta[s:e], *self._batch(nodes[s:e], samples[s:e]), *(m[s:e] for m in masks))
        return g

    @timed("local step")
    def step(
        self, params: Tensor, momentum: Tensor, nodes: Tensor, lr: float, beta: float, generator: torch.Generator,
        *, inplace: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """One local step of ``nodes``; returns new ``(params, momentum)`` (inputs untouched), or,
        with ``inplace``, writes the rows of ``nodes`` into ``params`` and ``momentum`` and returns
        them (no ``[n, d]`` copies: 260 MB each at n = 100,000; same bits). With ``beta = 0``
        (plain SGD) ``momentum`` is returned as it is: there is no momentum to keep."""
        theta = params.index_select(0, nodes)
        if self.privacy is not None:  # noisy clipped mean, before momentum
            g = self.privacy.gradients(self, theta, nodes, generator)
        else:
            g = self._chunked_gradients(theta, nodes, self.sampler(nodes, generator), generator)
        # g and theta are this call's own: updated in place, same bits
        update = dict(lr=lr, beta=beta, weight_decay=self.weight_decay, heavy_ball=self.heavy_ball)
        if inplace and jit_sgd.usable(params, nodes.numel()):  # one compiled pass, the same bits
            jit_sgd.sgd_rows_(params, momentum, g, theta, nodes, **update)
            return params, momentum
        return jit_sgd.torch_update(params, momentum, g, theta, nodes, **update, inplace=inplace)
