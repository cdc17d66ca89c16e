r"""The softmax-regression gradient of every acting node in one compiled pass, torch's bits (numba).

For node ``i`` with parameters :math:`\theta_i = (W_i [C, p], b_i [C])` and its batch of sample
indices :math:`s_{i1}, \dots, s_{iB}` into the training set ``x [N, p]``, ``y [N]``, the torch path
(:func:`p2probust.local.closed_form_gradients`) gathers the batch ``X_i [B, p]`` and computes

.. math::
    Z_i = X_i W_i^\top + b_i,\qquad G_i = (\mathrm{softmax}(Z_i) - Y_i)/B,\qquad
    \nabla_{W_i} = G_i^\top X_i,\qquad \nabla_{b_i} = \textstyle\sum_s G_{i,s}

with ``torch.baddbmm``, :mod:`p2probust.jit.softmax`, ``torch.bmm`` and ``G.sum(1)``. This kernel
reads the batch rows straight from ``x`` (no ``[a, B, p]`` batch tensor) and repeats each step's
arithmetic (each was matched bit for bit against torch 2.13's CPU path, MKL ``sgemm`` under
``baddbmm``/``bmm``):

* a matrix product entry is a chain of fused multiply-adds over the contraction index in order,
  from zero: :math:`z_{sc} = \mathrm{fma}(x_{s,p-1}, w_{c,p-1}, \dots \mathrm{fma}(x_{s0}, w_{c0}, 0))`,
  then ``+ b_c`` once (``baddbmm`` with β = 1); :math:`\nabla_{W,ck}` likewise over ``s``. This
  holds while the contraction fits one of MKL's K-blocks (384 here: at p = 400 the bits differ) and
  for batches of at least 16 rows (below, MKL takes other kernels for some shapes: B = 7, p = 20,
  C = 3 differs), above ATen's own loop for small products (``B·p·C < 400``): :data:`MAX_CONTRACTION`,
  :data:`MIN_BATCH`, :data:`MIN_PRODUCT` and :func:`usable` keep to that range;
* the softmax residual is :func:`p2probust.jit.softmax.residual_block` (ATen's softmax);
* :math:`\nabla_{b,c} = \sum_s G_{sc}` is ATen's sum over the batch dimension (``cascade_sum`` in
  ``SumKernel.cpp``, registered for AVX2: 8 lanes). With fewer than 8 classes, whole groups of four
  columns are each one ``multi_row_sum`` cascade (running sums over chunks of
  :math:`2^{\max(4, \lceil\log_2 B\rceil/4)}` rows, merged level by level); every other column is a
  ``row_sum``: four such cascades over the rows ``s mod 4``, the leftover rows added to the first,
  then the four added in order (:func:`plain_columns`).

The products run on explicit 16-float vectors (``llvm.fma`` on ``<16 x float>``, emitted through a
numba intrinsic, in blocks of up to 8 accumulators held in registers): numba's own vectorized loops
keep the chain's running sums in memory and were no faster than torch.
Because MKL chooses its kernels by CPU, the first call of each shape ``(B, p, C)`` in a process
also runs the torch path on its first :data:`CHECK_ROWS` rows and compares the two, bit for bit
(:func:`gradients`): on a difference it warns once and that shape takes the torch path. That is
the case with MKL's AVX2 kernels (``MKL_ENABLE_INSTRUCTIONS=AVX2``, MKL's choice on CPUs without
AVX-512), which sum in another order. At n = 1000 (900 acting nodes, B = 32, p = 64,
C = 10, two threads) the pass takes 1.2–1.4 ms against 2.1–2.8 ms for the torch path's gather, two
matrix products, softmax and sum; within a round, where torch's calls also wake its workers, the
local step went from 4.4–4.8 ms to 2.6–3.1 ms.
"""

from __future__ import annotations

import threading
import warnings
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from . import CheckedKernel, available, same_bits, split_rows
from . import softmax as jit_softmax

#: the longest contraction (features p, batch size B) whose MKL product is one chain of fused
#: multiply-adds (larger ones are cut into K-blocks whose partial sums are added separately)
MAX_CONTRACTION = 384
#: rows of the first call of a shape that are compared with the torch path
CHECK_ROWS = 2048
#: float32 lanes of ATen's sum kernel, registered for AVX2 (so 8 on AVX-512 machines too)
SUM_LANES = 8
#: logits (a·B·C) from which the compiled pass is used (a smaller call is not worth its one-off
#: compilation, a few seconds once per machine), unless the kernel is loaded already
MIN_VALUES = 1 << 14
#: ATen computes a batched product of fewer multiply-adds per matrix (B·p·C) in its own loop
MIN_PRODUCT = 400
#: the smallest batch for which every shape tried (p ≤ 384, C < 16) gave MKL's bits
MIN_BATCH = 16


def _dispatch(name: str, vectors: int, most: int) -> str:
    """Source of ``name(R, ...)``: the intrinsic ``block_R_vectors`` for R = 1 .. most (numba cannot
    index a tuple of intrinsics by a run-time value)."""
    lines = ["", "", '@njit(cache=True, nogil=True, boundscheck=False)',
             f"def {name}(R, out, oo, ro, a, ao, ak, b, bo, br, n):"]
    for r in range(most, 0, -1):
        lines.append(f"    {'if' if r == most else 'elif'} R == {r}:" if r > 1 else "    else:")
        lines.append(f"        block_{r}_{vectors}(out, oo, ro, a, ao, ak, b, bo, br, n)")
    return "\n".join(lines) + "\n"


_DISPATCH = _dispatch("wide", 2, 4) + _dispatch("narrow", 1, 8)

SOURCE = jit_softmax.SOURCE + '''
from numba.core import cgutils

VEC = 16


def _products_block(R, V):
    """An intrinsic: out[oo + r ro + 16v + l] = fma chain over k < n of a[ao + k ak + 16v + l] times
    b[bo + r br + k], from zero, in order of k, for r < R, v < V, lanes l < 16 (R V vector
    accumulators kept in registers)."""

    @intrinsic
    def block(typingctx, out, oo, ro, a, ao, ak, b, bo, br, n):
        sig = types.void(out, oo, ro, a, ao, ak, b, bo, br, n)

        def codegen(context, builder, signature, args):
            out_, oo_, ro_, a_, ao_, ak_, b_, bo_, br_, n_ = args
            i64, vec = ir.IntType(64), ir.VectorType(ir.FloatType(), VEC)
            data = [context.make_array(signature.args[j])(context, builder, value=args[j]).data for j in (0, 3, 6)]
            po, pa, pb = data
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{VEC}f32")
            zero = ir.Constant(vec, [0.0] * VEC)
            accs = [[cgutils.alloca_once_value(builder, zero) for v in range(V)] for r in range(R)]
            splat = ir.Constant(ir.VectorType(ir.IntType(32), VEC), [0] * VEC)

            def at(ptr, offset):
                return builder.bitcast(builder.gep(ptr, [offset]), vec.as_pointer())

            with cgutils.for_range(builder, n_) as loop:
                k = loop.index
                abase = builder.add(ao_, builder.mul(k, ak_))
                avs = [builder.load(at(pa, builder.add(abase, ir.Constant(i64, VEC * v))), align=4) for v in range(V)]
                for r in range(R):
                    bs = builder.load(builder.gep(pb, [builder.add(builder.add(bo_, builder.mul(ir.Constant(i64, r), br_)), k)]))
                    bv = builder.shuffle_vector(builder.insert_element(ir.Constant(vec, None), bs, ir.Constant(ir.IntType(32), 0)),
                                                ir.Constant(vec, None), splat)
                    for v in range(V):
                        builder.store(builder.call(fma, [avs[v], bv, builder.load(accs[r][v])]), accs[r][v])
            for r in range(R):
                obase = builder.add(oo_, builder.mul(ir.Constant(i64, r), ro_))
                for v in range(V):
                    builder.store(builder.load(accs[r][v]), at(po, builder.add(obase, ir.Constant(i64, VEC * v))), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return block


for _r in range(1, 9):  # blocks of up to 8 rows by 16 columns, or 4 rows by 32 columns: 8 accumulators
    globals()[f"block_{_r}_1"] = _products_block(_r, 1)
    if _r <= 4:
        globals()[f"block_{_r}_2"] = _products_block(_r, 2)
''' + _DISPATCH + '''


@njit(cache=True, nogil=True, boundscheck=False)
def products(out, oo, ro, rows, cols, a, ao, ak, b, bo, br, n):
    """out[oo + r ro + c] = sum over k < n of b[bo + r br + k] a[ao + k ak + c], each a chain of
    fused multiply-adds in order of k from zero (MKL's sgemm), for r < rows and c < cols (a multiple
    of 16; a and out padded): blocks of 4 rows by 32 columns, then of 8 rows by the last 16."""
    c0 = 0
    while cols - c0 >= 2 * VEC:
        for r0 in range(0, rows, 4):
            wide(min(4, rows - r0), out, oo + r0 * ro + c0, ro, a, ao + c0, ak, b, bo + r0 * br, br, n)
        c0 += 2 * VEC
    if c0 < cols:
        for r0 in range(0, rows, 8):
            narrow(min(8, rows - r0), out, oo + r0 * ro + c0, ro, a, ao + c0, ak, b, bo + r0 * br, br, n)


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def cascade_rows(g, first, stride, size, acc, total):
    """total[c] = sum of g[first + i stride, c] over i < size, for every column c of g [rows, cols],
    as ATen's multi_row_sum: running sums over chunks of 2**max(4, ceil(log2 size) / 4) rows,
    merged level by level into three more sums (acc: [4, cols] scratch)."""
    cols = g.shape[1]
    bits = 1
    if size > 2:
        bits = 0
        v = size - 1
        while v > 0:
            v >>= 1
            bits += 1
    power = max(4, bits // 4)
    step = 1 << power
    mask = step - 1
    acc[:, :] = ZERO
    a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
    i = 0
    while i + step <= size:
        for j in range(step):
            row = g[first + i * stride]
            for c in range(cols):
                a0[c] += row[c]
            i += 1
        for c in range(cols):
            a1[c] += a0[c]
            a0[c] = ZERO
        if (i & (mask << power)) == 0:
            for c in range(cols):
                a2[c] += a1[c]
                a1[c] = ZERO
            if (i & (mask << (2 * power))) == 0:
                for c in range(cols):
                    a3[c] += a2[c]
                    a2[c] = ZERO
    while i < size:
        row = g[first + i * stride]
        for c in range(cols):
            a0[c] += row[c]
        i += 1
    for c in range(cols):
        total[c] = ((a0[c] + a1[c]) + a2[c]) + a3[c]


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def column_sums(g, B, plain, acc, parts, out):
    """out[c] = sum of g[:B, c] as ATen sums a reduced dimension of B rows: one cascade where
    plain[c], else row_sum (four cascades over the rows t mod 4, the rows left over added to the
    first, then the four added in order). acc: [4, cols], parts: [5, cols] scratch."""
    cols = g.shape[1]
    size = B // 4
    if size < 16:  # fewer rows than one chunk: each partial is one running sum from zero
        parts[:4, :] = ZERO
        for t in range(4 * size):
            row, part = g[t], parts[t & 3]
            for c in range(cols):
                part[c] += row[c]
    else:
        for k in range(4):
            cascade_rows(g, k, 4, size, acc, parts[k])
    p0, p1, p2, p3 = parts[0], parts[1], parts[2], parts[3]
    for t in range(4 * size, B):
        row = g[t]
        for c in range(cols):
            p0[c] += row[c]
    any_plain = False
    for c in range(plain.size):
        any_plain = any_plain or plain[c]
    if any_plain:
        cascade_rows(g, 0, 1, B, acc, parts[4])
    for c in range(plain.size):
        out[c] = parts[4, c] if plain[c] else ((p0[c] + p1[c]) + p2[c]) + p3[c]


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def logreg_gradients(x, y, samples, flip, top, plain, theta, out, start, stop):
    """out[i] <- the gradient (W then b) of node row i of theta on the rows samples[i] of x, y
    (labels c -> top - c where flip[i]; plain[c]: how column c of the bias gradient is summed), for i
    in [start, stop)."""
    B = samples.shape[1]
    p = x.shape[1]
    C = theta.shape[1] // (p + 1)
    pp = (p + VEC - 1) // VEC * VEC
    cp = (C + VEC - 1) // VEC * VEC
    bsz = np.float32(B)
    xg = np.zeros(B * pp, np.float32)  # the batch, rows padded to pp
    wt = np.zeros(p * cp, np.float32)  # W transposed, rows padded to cp
    zt = np.empty(B * cp, np.float32)  # X W^T, rows padded
    zf = np.empty(C * B, np.float32)
    z = zf.reshape((C, B))  # logits, then the residual G^T
    gw = np.empty(C * pp, np.float32)
    m = np.empty(B, np.float32)
    s = np.empty(B, np.float32)
    labels = np.empty(B, np.int64)
    gt = np.zeros((B, cp), np.float32)  # the residual G, rows padded to cp
    acc = np.empty((4, cp), np.float32)
    parts = np.empty((5, cp), np.float32)
    bias = np.empty(C, np.float32)
    for i in range(start, stop):
        for t in range(B):
            r = samples[i, t]
            labels[t] = top - y[r] if flip[i] else y[r]
            xr = x[r]
            o = t * pp
            for k in range(p):
                xg[o + k] = xr[k]
        w = theta[i]
        for c in range(C):
            for k in range(p):
                wt[k * cp + c] = w[c * p + k]
        products(zt, 0, cp, B, cp, wt, 0, cp, xg, 0, pp, p)  # zt[t, c] = sum_k x[t, k] w[c, k]
        for c in range(C):
            bc = w[C * p + c]
            for t in range(B):
                z[c, t] = zt[t * cp + c] + bc
        residual_block(z, m, s, labels, B, bsz)
        o = out[i]
        if p == pp:  # gw[c, k] = sum_t g[t, c] x[t, k], straight into the row
            products(o, 0, p, C, p, xg, 0, pp, zf, 0, B, B)
        else:
            products(gw, 0, pp, C, pp, xg, 0, pp, zf, 0, B, B)
            for c in range(C):
                for k in range(p):
                    o[c * p + k] = gw[c * pp + k]
        for c in range(C):
            for t in range(B):
                gt[t, c] = z[c, t]
        column_sums(gt, B, plain, acc, parts, bias)
        for c in range(C):
            o[C * p + c] = bias[c]
'''


def usable(x: Tensor, theta: Tensor, batch_size: int) -> bool:
    """Whether :func:`gradients` may take the compiled pass for ``theta [a, C(p+1)]``: float32 on the
    CPU, numba importable, ``C`` shorter than a vector (:mod:`p2probust.jit.softmax`),
    ``MIN_BATCH ≤ B ≤ MAX_CONTRACTION``, ``3 ≤ p ≤ MAX_CONTRACTION``, ``B·p·C ≥ MIN_PRODUCT``
    (ATen's own loop below), and at least :data:`MIN_VALUES` logits (``a·B·C``) or the kernel loaded
    in this process already."""
    p = x[0].numel()
    c = theta.shape[1] // (p + 1)
    return (x.device.type == "cpu" and x.dtype == theta.dtype == torch.float32 and not theta.requires_grad
            and theta.shape[1] == c * (p + 1) and 2 <= c < jit_softmax.lanes()
            and (theta.shape[0] * batch_size * c >= MIN_VALUES or _KERNEL.loaded)
            and MIN_BATCH <= batch_size <= MAX_CONTRACTION and 3 <= p <= MAX_CONTRACTION
            and batch_size * p * c >= MIN_PRODUCT
            and available() and _KERNEL.get() is not None)


def gradients(x: Tensor, y: Tensor, samples: Tensor, flipped: Tensor | None, top: int, theta: Tensor,
              reference: Callable[[int], Tensor]) -> Tensor:
    """``[a, d]`` gradients of the rows of ``theta [a, C(p+1)]`` on the batches ``samples [a, B]``
    of ``x [N, ...]``, ``y [N]`` (labels c → ``top`` − c for the rows where ``flipped [a]``, as the
    trainer flips them: ``top`` = its number of classes − 1).
    ``reference(m)`` is the torch path for the first ``m`` rows: the first call of a shape in a
    process is compared with it on up to :data:`CHECK_ROWS` rows, bit for bit (each row's result
    depends on that row alone), and it serves a shape that differed, and labels (flipped or not)
    outside ``[0, C)`` (for which it raises torch's error)."""
    a, bsz = samples.shape
    p = x[0].numel()
    shape = (bsz, p, theta.shape[1] // (p + 1))
    status = _checked.get(shape)
    low, high = _label_range(y)
    in_range = 0 <= low <= high < shape[2] and (flipped is None or 0 <= top - high <= top - low < shape[2])
    if status is False or not in_range:
        return reference(a)
    xs, ys = x.reshape(x.shape[0], p).contiguous().numpy(), y.contiguous().numpy()
    flip = np.zeros(a, np.bool_) if flipped is None else flipped.contiguous().numpy()
    idx, th = samples.contiguous().numpy(), theta.contiguous().numpy()
    out = np.empty(theta.shape, np.float32)
    kernel = _KERNEL.get()
    plain = plain_columns(shape[2])
    split_rows(a, lambda s, e: kernel(xs, ys, idx, flip, top, plain, th, out, s, e), min_rows=32)
    got = torch.from_numpy(out)
    if status is None:
        m = min(a, CHECK_ROWS)
        _verify(shape, got[:m], reference(m))
        if _checked[shape] is False:
            return reference(a)
    return got


def _label_range(y: Tensor) -> tuple[int, int]:
    """``(min, max)`` of the labels, kept while ``y`` is not written to (its version counter)."""
    key = (y.data_ptr(), y.numel(), y._version)
    value = _labels.get(key)
    if value is None:  # (another thread may clear the cache meanwhile: the value is returned, not re-read)
        value = (int(y.min()), int(y.max())) if y.numel() else (0, 0)
        _labels.clear()
        _labels[key] = value
    return value


_labels: dict[tuple[int, int, int], tuple[int, int]] = {}


@lru_cache(maxsize=None)
def plain_columns(classes: int) -> np.ndarray:
    """Which columns of ``G [B, C]`` ATen sums over ``B`` in one cascade (``scalar_outer_sum``: with
    fewer columns than :data:`SUM_LANES`, whole groups of four), the others by ``row_sum``
    (computed once per number of classes; read-only)."""
    plain = np.arange(classes) < (4 * (classes // 4) if classes < SUM_LANES else 0)
    plain.flags.writeable = False
    return plain


_checked: dict[tuple[int, int, int], bool] = {}
_check_lock = threading.Lock()


def _verify(shape: tuple[int, int, int], got: Tensor, want: Tensor) -> None:
    same = same_bits(got, want)
    with _check_lock:
        _checked[shape] = same
    if not same:
        warnings.warn(f"p2probust: the compiled logistic-regression gradient differs from torch's here (torch "
                      f"{torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, batch {shape[0]}, "
                      f"{shape[1]} features, {shape[2]} classes: MKL takes other kernels on this CPU); using "
                      "torch's path (the same results, slower)", RuntimeWarning, stacklevel=4)


_KERNEL = CheckedKernel(SOURCE, "logreg", "logreg_gradients",
                        "the logistic-regression gradient kernel (once per machine, about 3 s")
