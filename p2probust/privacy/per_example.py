r"""Clipped means of per-example gradients, for every acting node at once.

For node ``i`` with batch slots ``s`` (a padded batch: ``keep_is = 0`` on empty slots):

.. math::
    \bar g_i = \frac{1}{B_i}\sum_s \mathrm{keep}_{is}\, \min\!\Big(1, \frac{C}{\lVert g_{is}\rVert}\Big)\, g_{is},
    \qquad g_{is} = \nabla_\theta \ell(\theta_i; x_{is}, y_{is})

(the clipping of DP-SGD, Abadi et al., "Deep learning with differential privacy", CCS 2016,
Algorithm 1; Opacus' ``GradSampleModule`` computes the same per-sample gradients), divided by ``denom_i``
(the batch size); ``keep [a, B]`` is 1 on real batch slots and 0 on padding, so the caller gets
the clipped *mean* :math:`\frac1{B_i}\sum_s \mathrm{keep}_{is}\,\mathrm{clip}_C(g_{is})`.

Linear models use a closed form that never builds the ``[a, B, d]`` per-example tensor: the
per-example gradient of softmax regression is an outer product :math:`g_s = r_s \otimes (x_s, 1)`
(residual :math:`r_s = \mathrm{softmax}(W x_s + b) - e_{y_s}`), so
:math:`\lVert g_s\rVert^2 = \lVert r_s\rVert^2(\lVert x_s\rVert^2 + 1)`; for least squares
:math:`g_s = (x_s^\top\theta - y_s)\, x_s`. Scaling the residuals by the clip factors and then
multiplying by ``X`` gives the clipped sum in one ``bmm``, with the same arithmetic as the non-DP
closed form of :func:`p2probust.local.closed_form_gradients` when every factor is 1 (so C = ∞ is
bit for bit the non-DP step). The two-layer ``MLP`` gets the same treatment by hand-written
backpropagation. Any other model: ``vmap`` over nodes of ``vmap(grad)`` over examples.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..jit import softmax as jit_softmax

#: ``(theta [a, d], xb [a, B, ...], yb [a, B], keep [a, B], denom [a], clip) -> [a, d]``
ClippedMean = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, float], Tensor]


def clip_factors(sq_norms: Tensor, clip: float) -> Tensor:
    """``min(1, C/‖g‖)`` from squared norms ``[...]``; exactly 1 when ``C = ∞`` (or ‖g‖ = 0)."""
    if clip == float("inf"):
        return torch.ones_like(sq_norms)
    return (clip / sq_norms.sqrt()).clamp(max=1.0)  # ‖g‖ = 0 gives inf → 1


def _logreg(c: int, p: int) -> ClippedMean:
    def clipped_mean(theta: Tensor, xb: Tensor, yb: Tensor, keep: Tensor, denom: Tensor, clip: float) -> Tensor:
        a, bsz = xb.shape[0], xb.shape[1]
        xb = xb.reshape(a, bsz, p)
        w, b = theta[:, : c * p].view(a, c, p), theta[:, c * p :]
        logits = torch.baddbmm(b.unsqueeze(1), xb, w.transpose(1, 2))
        r = jit_softmax.softmax_residual(logits, yb, 1)  # softmax − e_y [a, B, C], torch's bits (compiled)
        if clip != float("inf"):
            sq = (r * r).sum(-1) * ((xb * xb).sum(-1) + 1.0)
            keep = keep * clip_factors(sq, clip)
        g = r * keep.unsqueeze(-1) / denom.view(a, 1, 1)  # keep = 1: the non-DP G = R / B, bit for bit
        return torch.cat([torch.bmm(g.transpose(1, 2), xb).reshape(a, c * p), g.sum(1)], 1)

    return clipped_mean


def _mlp(p: int, h: int, c: int) -> ClippedMean:
    """``MLP`` (Linear → ReLU → Linear, cross-entropy) by hand-written backpropagation: per example,
    δ₂ = softmax − e_y, δ₁ = (W₂ᵀδ₂) ⊙ 1[z > 0], and each layer's gradient is δ ⊗ (input, 1), so
    ‖g_s‖² = ‖δ₂‖²(‖h_s‖² + 1) + ‖δ₁‖²(‖x_s‖² + 1) (the "ghost norm" of Goodfellow, "Efficient
    per-example gradient computations", 2015); the clipped sum is two weighted batched products."""

    def clipped_mean(theta: Tensor, xb: Tensor, yb: Tensor, keep: Tensor, denom: Tensor, clip: float) -> Tensor:
        a, bsz = xb.shape[0], xb.shape[1]
        xb = xb.reshape(a, bsz, p)
        w1, b1, w2, b2 = torch.split(theta, [h * p, h, c * h, c], dim=1)
        z = torch.baddbmm(b1.unsqueeze(1), xb, w1.view(a, h, p).transpose(1, 2))  # [a, B, h]
        hid = torch.relu(z)
        logits = torch.baddbmm(b2.unsqueeze(1), hid, w2.view(a, c, h).transpose(1, 2))
        d2 = jit_softmax.softmax_residual(logits, yb, 1)  # softmax − e_y [a, B, c], torch's bits (compiled)
        d1 = torch.bmm(d2, w2.view(a, c, h)) * (z > 0)  # [a, B, h]
        if clip != float("inf"):
            sq = (d2 * d2).sum(-1) * ((hid * hid).sum(-1) + 1.0) + (d1 * d1).sum(-1) * ((xb * xb).sum(-1) + 1.0)
            keep = keep * clip_factors(sq, clip)
        scale = (keep / denom.unsqueeze(1)).unsqueeze(-1)
        g1, g2 = d1 * scale, d2 * scale
        return torch.cat([torch.bmm(g1.transpose(1, 2), xb).reshape(a, h * p), g1.sum(1),
                          torch.bmm(g2.transpose(1, 2), hid).reshape(a, c * h), g2.sum(1)], 1)

    return clipped_mean


def _lsq(theta: Tensor, xb: Tensor, yb: Tensor, keep: Tensor, denom: Tensor, clip: float) -> Tensor:
    resid = torch.bmm(xb, theta.unsqueeze(-1)).squeeze(-1) - yb  # [a, B]
    if clip != float("inf"):
        keep = keep * clip_factors(resid * resid * (xb * xb).sum(-1), clip)
    return torch.bmm((resid * keep).unsqueeze(1), xb).squeeze(1) / denom.unsqueeze(1)


def per_example_gradients(model: nn.Module, criterion: Callable, spec) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """``(theta [a, d], xb [a, B, ...], yb [a, B]) -> [a, B, d]``: every example's own gradient,
    by ``vmap`` (nodes) of ``vmap`` (examples) of ``grad`` of the one-example loss."""

    def example_loss(theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        out = torch.func.functional_call(model, spec.unflatten(theta), (x.unsqueeze(0),))
        return criterion(out, y.unsqueeze(0))

    per_node = torch.func.vmap(torch.func.grad(example_loss), in_dims=(None, 0, 0))
    return torch.func.vmap(per_node)


def _generic(model: nn.Module, criterion: Callable, spec) -> ClippedMean:
    grads = per_example_gradients(model, criterion, spec)

    def clipped_mean(theta: Tensor, xb: Tensor, yb: Tensor, keep: Tensor, denom: Tensor, clip: float) -> Tensor:
        g = grads(theta, xb, yb)  # [a, B, d]
        if clip != float("inf"):
            keep = keep * clip_factors((g * g).sum(-1), clip)
        return torch.bmm(keep.unsqueeze(1), g).squeeze(1) / denom.unsqueeze(1)

    return clipped_mean


def clipped_mean_fn(model: nn.Module, loss: str, criterion: Callable, spec) -> ClippedMean:
    """The clipped per-example gradient mean for ``model``: closed form for
    ``LogisticRegression`` (cross-entropy), ``LinearRegression`` (mse) and ``MLP`` (cross-entropy),
    vmap otherwise."""
    from ..models import MLP, LinearRegression, LogisticRegression

    names = [name for name, _ in model.named_parameters()]
    if type(model) is MLP and loss == "cross_entropy" and names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]:
        h, p = model.fc1.weight.shape
        return _mlp(p, h, model.fc2.weight.shape[0])
    if isinstance(model, LogisticRegression) and loss == "cross_entropy":
        c, p = model.linear.weight.shape
        return _logreg(c, p)
    if isinstance(model, LinearRegression) and loss == "mse":
        return _lsq
    return _generic(model, criterion, spec)
