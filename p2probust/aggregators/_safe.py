"""Shared numerics of the robust rules: malformed inputs, safe norms, distances, ranks.

Every helper works on arbitrary leading (node) axes, so one code path serves one node
(``[m, d]``) and all nodes at once (``[n, m, d]``).

**Malformed inputs.** A vector with a NaN or an infinite coordinate is *unreadable*: it has no
meaningful distance to anything, so distance-based rules treat it as infinitely far from every
other vector (it is never among the nearest, it gets an infinite score or zero weight), and
clipping rules replace it by the clipping centre (a clipped difference of 0). A finite vector
whose squared norm overflows (``1e30`` in float32) is readable; its distances are ``+inf``, which
the same rules handle without producing a NaN. Selections use ``torch.where``, never a product with
a 0/1 mask, so an unselected ``inf`` can never turn into ``0 * inf = NaN``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .sorting import select_ranks, sort_masked


def is_batched(t: Tensor) -> bool:
    """True inside ``torch.func.vmap`` (then data-dependent shortcuts must not be taken)."""
    return bool(torch._C._functorch.is_batchedtensor(t))


def any_(t: Tensor) -> bool:
    """``bool(t.any())``, but True under ``vmap`` (used only to skip optional work)."""
    return True if is_batched(t) else bool(t.any())


def readable(x: Tensor, mask: Tensor) -> Tensor:
    """Real slots whose vector is all finite: ``[..., m, d], [..., m] -> [..., m]`` bool."""
    return mask & torch.isfinite(x).all(-1)


def zero_unless(x: Tensor, ok: Tensor) -> Tensor:
    """Rows where ``ok`` is False set to 0 (``[..., m, d], [..., m] -> [..., m, d]``)."""
    return torch.where(ok.unsqueeze(-1), x, x.new_zeros(()))


def safe_norm(x: Tensor) -> Tensor:
    """Euclidean norm along the last axis that does not overflow for finite vectors.

    ``[..., d] -> [...]``. A vector with ``1e30`` coordinates in float32 gets its true (finite)
    norm by rescaling with its largest absolute coordinate; NaN gives NaN and ``inf`` gives ``inf``.
    """
    nrm = torch.linalg.vector_norm(x, dim=-1)
    over = torch.isinf(nrm) & torch.isfinite(x).all(-1)
    if not any_(over):
        return nrm
    big = x.abs().amax(-1).clamp_min(torch.finfo(x.dtype).tiny)
    scaled = big * torch.linalg.vector_norm(x / big.unsqueeze(-1), dim=-1)
    return torch.where(over, scaled, nrm)


def clip_rows(v: Tensor, tau: Tensor, ok: Tensor | None = None) -> Tensor:
    r"""Row-wise clipping :math:`v \min(1, \tau / \|v\|)`; unreadable rows become 0.

    ``v: [..., m, d]``, ``tau: [..., m]`` or broadcastable (``inf`` = no clipping, 0 = all to 0).
    """
    ok = torch.isfinite(v).all(-1) if ok is None else ok & torch.isfinite(v).all(-1)
    v = zero_unless(v, ok)
    nrm = safe_norm(v)
    tau = torch.as_tensor(tau, dtype=v.dtype, device=v.device)
    scale = torch.where(nrm > tau, tau / nrm.clamp_min(torch.finfo(v.dtype).tiny), v.new_ones(()))
    return v * scale.unsqueeze(-1)


def coordinate_median(x: Tensor, mask: Tensor) -> Tensor:
    """Coordinate-wise median of the real rows (NaN sorts as +inf): ``[..., m, d] -> [..., d]``.

    With no real row at all the result is 0.
    """
    s = sort_masked(x, mask)
    m = mask.sum(-1, keepdim=True)
    ranks = torch.arange(x.shape[-2], device=x.device)
    keep = ((ranks == (m - 1) // 2) | (ranks == m // 2)) & (m > 0)
    out = select_ranks(s, keep) / keep.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
    return torch.where(torch.isfinite(out), out, x.new_zeros(()))


def _gram_sq_dists(g: Tensor, ok: Tensor) -> Tensor:
    """Squared distances from a Gram matrix; ``+inf`` off the ``ok`` rows/columns and for NaN."""
    sq = torch.diagonal(g, dim1=-2, dim2=-1)
    d2 = (sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * g).clamp_min(0)
    inf = g.new_tensor(float("inf"))
    return torch.where(ok.unsqueeze(-1) & ok.unsqueeze(-2) & ~torch.isnan(d2), d2, inf)


def central_row(g: Tensor, ok: Tensor) -> Tensor:
    """Index of a central ``ok`` row: the least median distance to the rows (itself included),
    from a Gram matrix ``[..., m, m] -> [..., 1]`` long.

    While more than half the rows are honest, the chosen row has a majority of rows, hence an
    honest one, within the honest diameter: it lies within twice the honest spread of the honest
    inputs, whatever the others send. Approximate (uncentred) distances suffice to pick it.
    """
    d2 = _gram_sq_dists(g, ok)
    q = (ok.sum(-1, keepdim=True) // 2).unsqueeze(-1)  # rank of the median, itself (0) included
    kth = torch.gather(torch.sort(d2, dim=-1).values, -1, q.expand(*d2.shape[:-1], 1)).squeeze(-1)
    kth = torch.where(ok, kth, g.new_tensor(float("inf")))
    return kth.argmin(-1, keepdim=True)


def centred_gram(x: Tensor, ok: Tensor) -> Tensor:
    r"""Float64 Gram matrix :math:`G_{ij} = (x_i - x_c)^\top (x_j - x_c)` of the ``ok`` rows (0
    elsewhere), centred at a central input :math:`x_c` (:func:`central_row`):
    ``[..., m, d], [..., m] -> [..., m, m]``.

    Centring keeps :math:`G_{ii} + G_{jj} - 2G_{ij}` exact to relative precision near consensus:
    uncentred, the squared norms carry an absolute error of :math:`\epsilon\|x\|^2`, which swamps
    :math:`\|x_i - x_j\|^2` once :math:`\|x\|/\|x_i - x_j\| \gtrsim \epsilon^{-1/2}`
    (:math:`10^8` in float64). Cost: two batched Gram products (the first, uncentred, picks
    :math:`x_c`) — cheaper than a coordinate-wise median, which needs a sort over ``d``.
    """
    y = zero_unless(x, ok).to(torch.float64)
    c = central_row(y @ y.transpose(-1, -2), ok)  # [..., 1]
    yc = torch.gather(y, -2, c.unsqueeze(-1).expand(*c.shape, y.shape[-1]))  # [..., 1, d]
    y = zero_unless(y - yc, ok)
    return y @ y.transpose(-1, -2)


def sq_dists(x: Tensor, ok: Tensor) -> Tensor:
    r"""Pairwise squared distances :math:`\|x_i - x_j\|^2` through a batched float64 Gram matrix.

    ``[..., m, d], [..., m] -> [..., m, m]`` float64. Rows or columns of slots that are not ``ok``
    (padding, unreadable) are ``+inf``, overflow gives ``+inf``, the diagonal of ``ok`` slots is 0.
    Never NaN. The Gram matrix is centred at a central input (:func:`centred_gram`), so distances
    keep their relative precision near consensus (:math:`\|x\|/\|x_i - x_j\| = 10^8` in
    float64), and an adversarial input of huge norm, which cannot be chosen as the centre while
    honest inputs are a majority, degrades no other entry.
    """
    d2 = _gram_sq_dists(centred_gram(x, ok), ok)
    d2 = 0.5 * (d2 + d2.transpose(-1, -2))  # exactly symmetric, so mutual ties are exact
    both = ok.unsqueeze(-1) & ok.unsqueeze(-2)
    eye = torch.eye(x.shape[-2], dtype=torch.bool, device=x.device)
    return torch.where(eye & both, torch.zeros((), dtype=torch.float64, device=x.device), d2)


def ranks(v: Tensor, tie: Tensor | None = None) -> Tensor:
    """Rank of each entry along the last axis; ties broken by ``tie`` (smaller first), then by
    lower index.

    ``[..., m] -> [..., m]`` long; rank 0 is the smallest. NaN must not occur (use ``inf``).
    O(m²) comparisons per row, which is cheaper than a sort for the short rows used here.
    """
    m = v.shape[-1]
    idx = torch.arange(m, device=v.device)
    a, b = v.unsqueeze(-1), v.unsqueeze(-2)
    later = idx.unsqueeze(0) < idx.unsqueeze(1)
    if tie is not None:
        ta, tb = tie.unsqueeze(-1), tie.unsqueeze(-2)
        later = (tb < ta) | ((tb == ta) & later)
    before = (b < a) | ((b == a) & later)
    return before.sum(-1)


def weighted_select(x: Tensor, sel: Tensor) -> Tensor:
    """Mean of the selected rows (unselected rows never read): ``[..., m, d], [..., m] -> [..., d]``."""
    count = sel.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
    return torch.where(sel.unsqueeze(-1), x, x.new_zeros(())).sum(-2) / count


def as_long(f: Tensor | int) -> Tensor:
    """The tolerance as a long tensor (0-d for one node, ``[n]`` batched)."""
    return f.long() if isinstance(f, Tensor) else torch.tensor(f, dtype=torch.long)
