r"""Metrics over honest nodes only: pure functions of the stacked parameters and masks.

* consensus distance :math:`\frac{1}{|H|}\sum_{i\in H}\lVert\theta_i-\bar\theta_H\rVert^2`;
* loss and accuracy of the averaged honest model :math:`\bar\theta_H` on held-out data;
* mean / min / max of per-node accuracy, batched over nodes with ``vmap``;
* on tasks with a known optimum: :math:`\lVert\bar\theta_H-\theta^\star\rVert^2` and
  :math:`\mathcal L(\bar\theta_H)-\mathcal L^\star`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .jit import moments as jit_moments
from .models import ParamSpec


def consensus_distance(params: Tensor, honest: Tensor) -> float:
    """:math:`\\frac1{|H|}\\sum_{i\\in H}\\lVert\\theta_i-\\bar\\theta_H\\rVert^2` for ``params [n, d]``, ``honest [n]``.

    Large calls (at least 2^18 honest values, numba importable, on the CPU) take one compiled pass
    with no copies (:mod:`p2probust.jit.moments`: same formula, equal to float64 rounding);
    the others run the torch reference below."""
    rows = torch.nonzero(honest).squeeze(1) if honest.dtype == torch.bool else honest
    if rows.numel() == 0:
        return float("nan")
    if params.device.type == "cpu" and jit_moments.worth_compiling(rows.numel(), params.shape[1]):
        return jit_moments.consensus_distance(params, rows)
    return _consensus_distance_torch(params, rows)


def _consensus_distance_torch(params: Tensor, rows: Tensor) -> float:
    """The reference: the honest rows in float64, shifted, centred, squared and summed."""
    h = params.index_select(0, rows).double()
    h -= h[0].clone()  # shift by one honest model: exact 0 when all agree, less cancellation otherwise
    h -= h.mean(0)
    return float(h.pow_(2).sum() / h.shape[0])


class Evaluator:
    """Evaluates models on a held-out set: one model, or many stacked models in one batched call.

    ``node_points`` (LongTensor, optional): the test points that per-node accuracies use (all of
    them by default); the one-model metrics always use every test point.
    """

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, *, loss: str, classification: bool, chunk: int = 256,
                 node_points: Tensor | None = None):
        self.model = model
        self.spec = ParamSpec.from_module(model)
        self.x, self.y = x, y
        self.loss = loss
        self.classification = classification
        self.chunk = chunk
        x_node = x if node_points is None else x[node_points]
        self._y_node = y if node_points is None else y[node_points]

        def outputs(theta: Tensor) -> Tensor:
            return torch.func.functional_call(model, self.spec.unflatten(theta), (self.x,))

        def node_outputs(theta: Tensor) -> Tensor:
            return torch.func.functional_call(model, self.spec.unflatten(theta), (x_node,))

        self._outputs = outputs
        self._batched = torch.func.vmap(node_outputs)
        from .models import LogisticRegression

        # a linear classifier's logits for a chunk of nodes are one matrix product
        # X [N, p] @ W^T [p, b·C]: twice as fast as the vmap at n = 1000
        self._linear = model.linear.weight.shape if isinstance(model, LogisticRegression) else None
        self._x_flat = x_node.reshape(x_node.shape[0], -1)

    def _loss(self, out: Tensor) -> Tensor:
        if self.loss == "cross_entropy":
            return F.cross_entropy(out, self.y)
        return 0.5 * ((out - self.y) ** 2).mean()

    @torch.no_grad()
    def model_metrics(self, theta: Tensor) -> dict[str, float]:
        """Loss (and accuracy) of one flat model ``theta [d]``."""
        out = self._outputs(theta)
        res = {"loss": float(self._loss(out))}
        if self.classification:
            res["accuracy"] = float((out.argmax(-1) == self.y).double().mean())
        return res

    @torch.no_grad()
    def node_accuracies(self, params: Tensor) -> Tensor:
        """``[a]`` accuracy of every row of ``params [a, d]``, in chunks of ``chunk`` nodes."""
        accs = []
        for start in range(0, params.shape[0], self.chunk):
            theta = params[start : start + self.chunk]
            if self._linear is not None:
                (c, p), b = self._linear, theta.shape[0]
                out = torch.addmm(theta[:, c * p :].reshape(b * c), self._x_flat, theta[:, : c * p].reshape(b * c, p).t())
                pred = out.view(-1, b, c).argmax(-1).t()  # [b, N]
            else:
                pred = self._batched(theta).argmax(-1)
            accs.append((pred == self._y_node).double().mean(-1))
        return torch.cat(accs)


def evaluation_sample(cfg, honest: Tensor, test_points: int) -> tuple[Tensor | None, Tensor | None]:
    """What per-node accuracies are computed on when the run is large: ``(points, rows)``.

    ``points`` [eval_points]: a seeded sample of the test points (None: all of them, when there are
    at most ``cfg.eval_points``); ``rows`` [n] bool: a seeded sample of ``cfg.eval_nodes`` honest
    nodes (None: every honest node). Both are drawn once per run from the ``evaluation`` stream, so
    they never change what any other stream draws. ``node_acc_mean/min/max`` are then estimates
    over the sample (a minimum over 1,000 of 99,000 nodes is not the minimum); the averaged model's
    ``loss`` and ``accuracy`` always use every test point.
    """
    import numpy as np

    from .rng import numpy_stream

    rng = numpy_stream(cfg.seed, "evaluation")
    points = None
    if cfg.eval_points and test_points > cfg.eval_points:
        points = torch.from_numpy(np.sort(rng.choice(test_points, cfg.eval_points, replace=False)))
    ids = torch.nonzero(honest).squeeze(1)
    rows = None
    if cfg.eval_nodes and ids.numel() > cfg.eval_nodes:
        pick = np.sort(rng.choice(ids.numel(), cfg.eval_nodes, replace=False))
        rows = torch.zeros_like(honest)
        rows[ids[torch.from_numpy(pick)]] = True
    return points, rows


def honest_objective(model, spec, loss: str, x, y, table, lengths):
    """Average over honest nodes of their local training loss, at one flat model ``theta [d]``."""

    @torch.no_grad()
    def objective(theta: torch.Tensor) -> float:
        out = torch.func.functional_call(model, spec.unflatten(theta), (x,))
        if loss == "cross_entropy":
            per_sample = torch.nn.functional.cross_entropy(out, y, reduction="none")
        else:
            per_sample = 0.5 * (out - y) ** 2
        per_sample = per_sample.double()
        valid = torch.arange(table.shape[1], device=table.device).unsqueeze(0) < lengths.unsqueeze(1)
        node_loss = torch.where(valid, per_sample[table], 0.0).sum(1) / lengths
        return float(node_loss.mean())

    return objective
