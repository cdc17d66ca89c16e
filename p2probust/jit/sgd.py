r"""The end of a local step in one compiled pass over the acting rows, with torch's bits (numba).

After the gradients ``g [a, d]`` of the acting ``nodes [a]`` at their models ``theta [a, d]``, the
torch path of :meth:`p2probust.local.LocalTrainer.step` runs

.. math::
    g &\leftarrow g + \lambda\,\theta                     && \text{(weight decay, if } \lambda \ne 0) \\
    m &\leftarrow \mathrm{lerp}(g, m, \beta) = \beta m + (1-\beta) g
       \ \text{ or }\ \beta m + g                         && \text{(dampened or heavy-ball, if } \beta > 0) \\
    \theta &\leftarrow \theta - \gamma\, m

as ``add_``/``lerp_`` calls on gathered copies, then two ``index_copy_`` back into ``params [n, d]``
and ``momentum [n, d]``: six passes over ``[a, d]``. ATen computes each of these as one fused
multiply-add per element (``vec::fmadd`` in ``ufunc::add`` and ``lerp_vec``, and the compiler
contracts the scalar tails the same way): ``add_(y, alpha=s)`` is ``fma(y, s, x)``, ``lerp`` is
``fma(β, m − g, g)`` for ``|β| < 0.5`` and ``fma(β − 1, m − g, m)`` otherwise. This kernel does the
same arithmetic in one pass, writing the rows of ``params`` and ``momentum`` in place. The
equality is checked against torch on this machine the first time the kernel loads (if the bits
differ, it warns once and the torch path is used).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

from . import FMA_SOURCE, CheckedKernel, available, split_rows

#: acting rows × d from which the compiled pass is used (a smaller call is not worth its one-off
#: compilation, about 1 s once per machine)
MIN_VALUES = 1 << 16

#: momentum forms of the kernel: none (β = 0), dampened (lerp), heavy-ball
PLAIN, DAMPENED, HEAVY_BALL = 0, 1, 2

SOURCE = FMA_SOURCE + '''from numba import njit


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def sgd_rows(params, momentum, grads, theta, nodes, consts, form, decay, start, stop):
    """Rows nodes[i], i in [start, stop): weight decay, momentum (form) and the SGD step, in place."""
    weight_decay, beta, beta_minus_one, neg_lr = consts[0], consts[1], consts[2], consts[3]
    small = abs(beta) < 0.5
    d = params.shape[1]
    for i in range(start, stop):
        r = nodes[i]
        g = grads[i]  # row views: the loops over coordinates are contiguous and vectorize
        t = theta[i]
        p = params[r]
        m = momentum[r]
        for c in range(d):
            v = g[c]
            if decay:
                v = fma(t[c], weight_decay, v)
            if form == 1:
                v = fma(beta, m[c] - v, v) if small else fma(beta_minus_one, m[c] - v, m[c])
                m[c] = v
            elif form == 2:
                v = fma(m[c], beta, v)
                m[c] = v
            p[c] = fma(v, neg_lr, t[c])
'''


def usable(params: Tensor, rows: int) -> bool:
    """Whether :func:`sgd_rows_` takes the compiled pass for ``rows`` acting rows of ``params``:
    float32/float64 on the CPU, at least :data:`MIN_VALUES` values (or the kernel already loaded in
    this process), numba importable, and the kernel matched torch on this machine."""
    return (params.device.type == "cpu" and params.dtype in (torch.float32, torch.float64) and not params.requires_grad
            and (rows * params.shape[1] >= MIN_VALUES or _KERNEL.loaded) and available() and _KERNEL.get() is not None)


def sgd_rows_(params: Tensor, momentum: Tensor, grads: Tensor, theta: Tensor, nodes: Tensor, *, lr: float, beta: float,
              weight_decay: float, heavy_ball: bool) -> None:
    """Write the new rows ``nodes [a]`` (distinct) of ``params [n, d]`` and (if ``beta > 0``)
    ``momentum [n, d]`` in place, from the gradients ``grads [a, d]`` at ``theta [a, d]``
    (= ``params[nodes]``): the bits of the torch path in :meth:`p2probust.local.LocalTrainer.step`."""
    _run(_KERNEL.get(), params, momentum, grads, theta, nodes, lr=lr, beta=beta, weight_decay=weight_decay,
         heavy_ball=heavy_ball)


def _run(kernel, params: Tensor, momentum: Tensor, grads: Tensor, theta: Tensor, nodes: Tensor, *, lr: float,
         beta: float, weight_decay: float, heavy_ball: bool) -> None:
    form = PLAIN if beta <= 0 else HEAVY_BALL if heavy_ball else DAMPENED
    dtype = params.numpy().dtype
    _refuse_overflow([-lr] + ([weight_decay] if weight_decay else []) + ([beta] if form != PLAIN else []), dtype)
    with np.errstate(over="ignore"):  # (an unused scalar may overflow: torch never converts it)
        beta_ = dtype.type(beta)
        consts = np.array([weight_decay, beta_, beta_ - dtype.type(1), -lr], dtype=dtype)  # β − 1 rounded as lerp's
    arrays = [t.detach().contiguous().numpy() for t in (grads, theta)]
    rows = nodes.to(torch.int64).contiguous().numpy()
    p, m = params.numpy(), momentum.numpy()
    split_rows(rows.shape[0], lambda s, e: kernel(p, m, *arrays, rows, consts, form, weight_decay != 0, s, e), min_rows=64)


def _refuse_overflow(values: list[float], dtype: np.dtype) -> None:
    """Refuse ``values`` as ``dtype`` scalars as torch refuses a Python scalar it would round
    to ±inf (``RuntimeError: value cannot be converted to type float without overflow``, which a
    run reports as a divergence), so that a kernel sees what the torch path would have seen."""
    if all(abs(v) < 1e38 or not math.isfinite(v) for v in values):  # within float32's range: nothing to refuse
        return
    with np.errstate(over="ignore"):
        out = np.array(values, dtype=dtype)
    for value, rounded in zip(values, out):
        if math.isfinite(value) and not math.isfinite(rounded):
            raise RuntimeError(f"value cannot be converted to type {'float' if dtype == np.float32 else 'double'} without overflow")


def torch_update(params: Tensor, momentum: Tensor, g: Tensor, theta: Tensor, nodes: Tensor, *, lr: float,
                 beta: float, weight_decay: float, heavy_ball: bool, inplace: bool) -> tuple[Tensor, Tensor]:
    """The torch path (``g`` and ``theta`` are the caller's own and are overwritten); returns the
    new ``(params, momentum)``, written in place with ``inplace``."""
    if weight_decay:
        g.add_(theta, alpha=weight_decay)  # g ← ∇f + λθ, before momentum
    if beta > 0 and heavy_ball:
        g.add_(momentum.index_select(0, nodes), alpha=beta)  # m = βm + g (no dampening)
    elif beta > 0:
        g.lerp_(momentum.index_select(0, nodes), beta)  # m = βm + (1−β)g, one pass
    new = theta.add_(g, alpha=-lr)
    copy = Tensor.index_copy_ if inplace else Tensor.index_copy
    # β = 0 is plain SGD: no momentum buffer to keep (it stays as it was, zeros from the start)
    return copy(params, 0, nodes, new), (copy(momentum, 0, nodes, g) if beta > 0 else momentum)


def _matches_torch(kernel) -> bool:
    """Compare the kernel with :func:`torch_update`, bit for bit, on seeded rows (a row length that
    leaves vector tails; every momentum form, both lerp branches, with and without weight decay, in
    float32 and float64); warn once if they differ."""
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for beta, heavy_ball, weight_decay in ((0.9, False, 0.0), (0.3, False, 5e-4), (0.9, True, 1e-2), (0.0, False, 1e-3)):
            params, momentum = (torch.randn(50, 37, generator=gen, dtype=dtype) for _ in range(2))
            grads = torch.randn(20, 37, generator=gen, dtype=dtype) * 10
            nodes = torch.randperm(50, generator=gen)[:20]
            want = torch_update(params.clone(), momentum.clone(), grads.clone(), params[nodes], nodes, lr=0.07, beta=beta,
                                weight_decay=weight_decay, heavy_ball=heavy_ball, inplace=True)
            got = params.clone(), momentum.clone()
            _run(kernel, *got, grads, params[nodes], nodes, lr=0.07, beta=beta, weight_decay=weight_decay,
                 heavy_ball=heavy_ball)
            if not (torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])):
                warnings.warn(f"p2probust: the compiled local-step update differs from torch's here (torch {torch.__version__}, "
                              f"{torch.backends.cpu.get_cpu_capability()}, {dtype}, beta = {beta}); using torch's",
                              RuntimeWarning, stacklevel=5)
                return False
    return True


_KERNEL = CheckedKernel(SOURCE, "sgd", "sgd_rows", "the local-step update kernel (once per machine, about 1 s",
                        _matches_torch)
