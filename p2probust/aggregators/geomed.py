r"""Geometric median by Weiszfeld iterations with Vardi and Zhang's modification at data points,
hand-batched over nodes."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..registry import register_aggregator
from .base import AbstractAggregator
from ._safe import any_, coordinate_median, is_batched, readable, safe_norm, zero_unless

_STARTS = ("median", "mean")


@register_aggregator("geomed", "geometric median (Weiszfeld–Vardi–Zhang from the coordinate-wise median; start=mean)")
class GeometricMedian(AbstractAggregator):
    r"""Geometric median :math:`\arg\min_z \sum_j \|z - x_j\|` by the modified Weiszfeld algorithm.

    With :math:`D(z)` the inputs at :math:`z` (within :math:`\nu\cdot\mathrm{scale}`),
    :math:`\eta(z) = |D(z)|`, and over the other inputs

    .. math:: \tilde T(z) = \frac{\sum_{j\notin D} x_j/\|x_j - z\|}{\sum_{j\notin D} 1/\|x_j - z\|},\qquad
              R(z) = \sum_{j\notin D}\frac{x_j - z}{\|x_j - z\|},\qquad
              z_{t+1} = \Big(1 - \min\big(1, \tfrac{\eta}{\|R\|}\big)\Big)\tilde T(z_t)
                        + \min\big(1, \tfrac{\eta}{\|R\|}\big) z_t .

    Away from the inputs this is Weiszfeld's step; at an input point it moves unless
    :math:`\|R(z)\| \le \eta(z)`, which is exactly the optimality condition there (Vardi and Zhang),
    so an iteration started at an input point (the coordinate-wise median often is one) does not
    stop there wrongly: for :math:`(0,0), (1,0), (0,1)` it reaches the Fermat point
    :math:`\frac{3-\sqrt3}{6}(1, 1)`. A node stops when :math:`\|R\| \le \eta` at an input point, or
    when :math:`\|z_{t+1} - z_t\| \le \mathrm{tol}\cdot\max(\|z_t - z_0\|, \mathrm{scale})`
    (``scale`` the median distance of the inputs to :math:`z_0`), or after ``max_iter`` iterations.

    Start :math:`z_0` (``start``): ``"median"`` (default), the coordinate-wise median — robust, so
    no Byzantine input can place the start far away; ``"mean"``, the mean of the readable inputs, as
    Pillutla et al.'s RFA and the IOS code's ``geometric_median`` do (both then iterate Weiszfeld;
    the IOS code stops at 80 iterations or a step of 1e-5: ``max_iter=80, tol=...`` reproduces
    the cap). Both converge to the same minimiser; the start matters under an iteration cap.

    Batching: all nodes iterate together; a node that has converged is frozen with
    ``torch.where`` (no per-node Python control flow), and the loop ends when every node has
    converged or at ``max_iter``, so each node's result equals its one-node computation.
    Distances are computed directly from differences (``[..., m, d]`` per iteration), so they
    keep full relative precision near an input. Unreadable inputs, and inputs whose distance
    overflows, get weight 0. Ignores ``f``; breakdown point 1/2.

    Parameters
    ----------
    nu : float
        Inputs within ``nu * scale`` of the iterate count as at it (:math:`D(z)` above).
    tol : float
        Relative tolerance of the stopping rule (at least 8 machine epsilons of the input dtype:
        1e-8 in float64, about 1e-6 in float32).
    max_iter : int
        Iteration cap.
    start : {"median", "mean"}
        The start :math:`z_0`.

    References: Y. Vardi, C.-H. Zhang, "The multivariate L1-median and associated data depth",
    PNAS 97(4), 2000; E. Weiszfeld, Tohoku Math. J. 43 (1937); V. Pillutla, S. M. Kakade,
    Z. Harchaoui, "Robust aggregation for federated learning", IEEE Trans. Signal Processing 70
    (2022); Z. Wu, T. Chen, Q. Ling, IEEE TSP 71 (2023) and their code (ByrdLab/IOS,
    ``geometric_median``: start at the mean).
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    def __init__(self, nu: float = 1e-10, tol: float = 1e-8, max_iter: int = 1000, start: str = "median"):
        for name, v in (("nu", nu), ("tol", tol)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"geomed {name} = {v!r} must be a finite number > 0")
        if int(max_iter) != max_iter or max_iter < 1:
            raise ValueError(f"geomed max_iter = {max_iter!r} must be an integer >= 1")
        if start not in _STARTS:
            raise ValueError(f"geomed start = {start!r} must be one of: {', '.join(_STARTS)}")
        self.nu, self.tol, self.max_iter, self.start = float(nu), float(tol), int(max_iter), start

    def _start(self, x: Tensor, ok: Tensor) -> Tensor:
        z0 = coordinate_median(x, ok)
        if self.start == "mean":
            cnt = ok.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
            mean = zero_unless(x, ok).sum(-2) / cnt
            z0 = torch.where(torch.isfinite(mean).all(-1, keepdim=True), mean, z0)
        return z0

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        ok = readable(x, mask)
        z0 = self._start(x, ok)
        y = zero_unless(x - z0.unsqueeze(-2), ok)  # inputs relative to z0
        dist0 = safe_norm(y)
        ok = ok & torch.isfinite(dist0)
        y = zero_unless(y, ok)
        inf = x.new_tensor(float("inf"))
        scale = _masked_median(torch.where(ok, dist0, inf), ok)
        eps = self.nu * torch.where(scale > 0, scale, x.new_ones(()))
        zero = x.new_zeros(())
        u = torch.zeros_like(z0)  # z − z0
        done = ~ok.any(-1)
        shortcut = not is_batched(x)
        tol = max(self.tol, 8 * torch.finfo(x.dtype).eps)  # float32 steps cannot resolve 1e-8
        for _ in range(self.max_iter):
            diff = y - u.unsqueeze(-2)  # [..., m, d]
            dist = torch.linalg.vector_norm(diff, dim=-1)
            at = ok & (dist <= eps.unsqueeze(-1))
            inv = torch.where(ok & ~at, 1.0 / torch.where(at, x.new_ones(()), dist), zero)
            wsum = inv.sum(-1, keepdim=True)
            t_tilde = (inv.unsqueeze(-1) * y).sum(-2) / torch.where(wsum > 0, wsum, x.new_ones(()))
            r = torch.linalg.vector_norm((inv.unsqueeze(-1) * diff).sum(-2), dim=-1)
            eta = at.sum(-1).to(x.dtype)
            lam = torch.where(eta > 0, torch.clamp(eta / r.clamp_min(torch.finfo(x.dtype).tiny), max=1.0), zero)
            new = torch.where(wsum > 0, (1 - lam).unsqueeze(-1) * t_tilde + lam.unsqueeze(-1) * u, u)
            optimal = (eta > 0) & (r <= eta)  # Vardi–Zhang: an input point that is the median
            near, near_ok = self._nearest_is_median(y, ok, dist, eps)
            step = torch.linalg.vector_norm(new - u, dim=-1)
            new = torch.where(near_ok.unsqueeze(-1), near, torch.where(optimal.unsqueeze(-1), u, new))
            u = torch.where(done.unsqueeze(-1), u, new)
            optimal = optimal | near_ok
            ref = torch.maximum(torch.linalg.vector_norm(u, dim=-1), scale)
            done = done | optimal | (step <= tol * ref)
            if shortcut and not any_(~done):
                break
        return z0 + u

    @staticmethod
    def _nearest_is_median(y: Tensor, ok: Tensor, dist: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        r"""The input nearest the iterate, and whether Vardi–Zhang's test says it is the median.

        Weiszfeld approaches a median that is an input point only sublinearly; testing the nearest
        input point exactly (:math:`\|R(x_k)\| \le \eta(x_k)`) ends the iteration there.
        """
        inf = y.new_tensor(float("inf"))
        k = torch.where(ok, dist, inf).argmin(-1, keepdim=True)  # [..., 1]
        yk = torch.gather(y, -2, k.unsqueeze(-1).expand(*k.shape, y.shape[-1])).squeeze(-2)
        diff = y - yk.unsqueeze(-2)
        dk = torch.linalg.vector_norm(diff, dim=-1)
        at = ok & (dk <= eps.unsqueeze(-1))
        inv = torch.where(ok & ~at, 1.0 / torch.where(at, y.new_ones(()), dk), y.new_zeros(()))
        r = torch.linalg.vector_norm((inv.unsqueeze(-1) * diff).sum(-2), dim=-1)
        eta = at.sum(-1).to(y.dtype)
        return yk, (eta > 0) & (r <= eta) & ok.any(-1)

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return (m - 1) // 2

    def __repr__(self) -> str:
        return (f"GeometricMedian(nu={self.nu:g}, tol={self.tol:g}, max_iter={self.max_iter}, "
                f"start={self.start!r})")


def _masked_median(v: Tensor, ok: Tensor) -> Tensor:
    """Lower median of the ``ok`` entries of the last axis (0 when none): ``[..., m] -> [...]``."""
    big = v.new_tensor(float("inf"))
    s = torch.sort(torch.where(ok, v, big), dim=-1).values
    k = ((ok.sum(-1) - 1).clamp_min(0) // 2).unsqueeze(-1)
    med = torch.gather(s, -1, k).squeeze(-1)
    return torch.where(torch.isfinite(med), med, v.new_zeros(()))
