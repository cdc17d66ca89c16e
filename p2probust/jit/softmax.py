r"""The softmax-regression residual in one compiled pass, the bits of ``torch.softmax`` (numba).

The closed-form gradient of multinomial logistic regression
(:func:`p2probust.local.closed_form_gradients`) needs, for logits ``z [R, C]`` (one row per sample),
labels ``y [R]`` and the batch size ``B``, the residual

.. math:: G_{rc} = \big(\mathrm{softmax}(z_r)_c - [c = y_r]\big) / B .

``torch.softmax`` over a last dimension of 10 classes is slow on the CPU (about 16 ns per element
here: it reduces each 10-value row on its own), and it was the largest single cost of a round at
n = 1000 (2.5 ms of 10.5). A written-out softmax gives other bits. This kernel repeats ATen's
arithmetic exactly instead (``_vec_softmax_lastdim`` in ``aten/src/ATen/native/cpu/SoftMaxKernel.cpp``
with the headers ``ATen/cpu/vec/functional_base.h`` and ``vec512/vec512_float.h`` shipped in the
wheel), for a row of fewer than ``W`` classes, ``W`` being the float lanes of the capability torch
dispatched to (16 on AVX-512, 8 on AVX2):

* ``m = max_c z_rc`` (order-free; NaN if any value is NaN, as ``vec::maximum``);
* ``e_c = exp(z_rc - m)`` with SLEEF's ``expf`` (``Sleef_expf16_u10``: Cody–Waite reduction
  :math:`q = \mathrm{rint}(x \log_2 e)`, :math:`s = x - q\,\ln 2` in two fused multiply-adds, a
  degree-6 polynomial by Horner in fused multiply-adds, :math:`2^q` in two factors, 0 below −104);
  the fused multiply-adds are LLVM's ``llvm.fma`` (exactly rounded, as ``vfmadd``);
* ``S = ((e_0 + e_1) + e_2) + ...`` in float32, left to right (``vec::reduce_all`` on a row
  shorter than a vector runs lane 0 sequentially);
* ``softmax_c = e_c · (1/S)`` (a multiply by the reciprocal, not a divide);
* then, as the torch path, ``g_{r,y_r} += (−1)`` and ``g /= B`` (a float32 divide).

So the result is bit-identical to ``torch.softmax`` + ``scatter_add_`` + ``div_`` (tested over
scales, class counts, batch sizes, NaN and ±inf; and checked again on this machine the first time
the kernel loads: if the bits differ, for instance under a torch whose softmax changed, it warns
once and the torch path is used). Rows are processed in blocks of 512 transposed into a
``[C, 512]`` scratch, so each step is a contiguous loop that LLVM vectorizes: 0.66 ms for
``[32000, 10]`` on one core here, against 5.4 ms for the torch path (2.5 ms on two threads).
Rows are split over ``torch.get_num_threads()`` threads (the kernel releases the GIL).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from . import FMA_SOURCE, CheckedKernel, available, same_bits, split_rows

#: logits (R · C values) from which the compiled pass is used (a smaller call is not worth its
#: one-off compilation, about 2 s once per machine)
MIN_VALUES = 1 << 14

#: float32 lanes of a vector per ATen CPU capability (the rows a kernel reproduces are shorter)
LANES = {"AVX512": 16, "AVX2": 8}

SOURCE = FMA_SOURCE + '''from llvmlite import ir
from numba import njit
import numpy as np


@intrinsic
def pow2i(typingctx, q):
    """2**q as the float32 with exponent bits q + 127 (SLEEF's vpow2i)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        bits = builder.shl(builder.add(args[0], ir.Constant(ir.IntType(32), 127)), ir.Constant(ir.IntType(32), 23))
        return builder.bitcast(bits, ir.FloatType())

    return sig, codegen


f32 = np.float32
R_LN2 = f32(1.442695040888963407359924681001892137426645954152985934135449406931)
NEG_L2U = f32(-0.693145751953125)
NEG_L2L = f32(-1.428606765330187045e-06)
C0 = f32(0.000198527617612853646278381)
C1 = f32(0.00139304355252534151077271)
C2 = f32(0.00833336077630519866943359)
C3 = f32(0.0416664853692054748535156)
C4 = f32(0.166666671633720397949219)
C5 = f32(0.5)
ONE = f32(1.0)
ZERO = f32(0.0)
MINUS_ONE = f32(-1.0)
LOW = f32(-104.0)
RINT = f32(12582912.0)  # 1.5 * 2**23: (p + RINT) - RINT rounds |p| < 2**22 to the nearest even integer
BLOCK = 512


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def residual_block(w, m, s, labels, nb, bsz):
    """w[:, r] <- (softmax(w[:, r]) - onehot(labels[r])) / bsz for the columns r < nb of w [C, >= nb],
    in place (m, s: scratch of >= nb floats); ATen's arithmetic, see the module docstring."""
    C = w.shape[0]
    for r in range(nb):
        m[r] = w[0, r]
    for c in range(1, C):
        wc = w[c]
        for r in range(nb):
            v = wc[r]
            a = m[r]
            larger = a if a > v else v
            m[r] = larger if (a == a and v == v) else a + v  # NaN if either is NaN
    for c in range(C):
        wc = w[c]
        for r in range(nb):
            x = wc[r] - m[r]
            inside = x >= LOW
            xc = x if inside else LOW  # keeps the integer conversion defined; the value is replaced below
            p = xc * R_LN2
            q = (p + RINT) - RINT
            qi = np.int32(q)
            t = fma(q, NEG_L2U, xc)
            t = fma(q, NEG_L2L, t)
            u = fma(C0, t, C1)
            u = fma(u, t, C2)
            u = fma(u, t, C3)
            u = fma(u, t, C4)
            u = fma(u, t, C5)
            u = ONE + fma(t * t, u, t)
            h = qi >> 1
            u = (u * pow2i(h)) * pow2i(qi - h)
            wc[r] = u if inside else (x if x != x else ZERO)
    for r in range(nb):
        s[r] = w[0, r]
    for c in range(1, C):
        wc = w[c]
        for r in range(nb):
            s[r] = s[r] + wc[r]
    for r in range(nb):
        s[r] = ONE / s[r]
    for c in range(C):
        wc = w[c]
        for r in range(nb):
            g = wc[r] * s[r]
            if c == labels[r]:
                g = g + MINUS_ONE
            wc[r] = g / bsz


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def softmax_residual(z, y, bsz, start, stop):
    """z[r] <- (softmax(z[r]) - onehot(y[r])) / bsz for the rows r in [start, stop), in place."""
    C = z.shape[1]
    w = np.empty((C, BLOCK), np.float32)
    m = np.empty(BLOCK, np.float32)
    s = np.empty(BLOCK, np.float32)
    for b0 in range(start, stop, BLOCK):
        nb = min(BLOCK, stop - b0)
        for r in range(nb):
            for c in range(C):
                w[c, r] = z[b0 + r, c]
        residual_block(w, m, s, y[b0:b0 + nb], nb, bsz)
        for r in range(nb):
            for c in range(C):
                z[b0 + r, c] = w[c, r]
'''


def lanes() -> int:
    """Float32 lanes of the vectors torch's CPU kernels run with here (0: a capability whose softmax
    this kernel does not reproduce)."""
    capability = torch.backends.cpu.get_cpu_capability()
    return next((w for name, w in LANES.items() if capability.startswith(name)), 0)


def usable(logits: Tensor) -> bool:
    """Whether :func:`softmax_residual` takes the compiled pass for ``logits [..., C]``: float32 on
    the CPU, at least :data:`MIN_VALUES` values (or the kernel already loaded in this process), ``C``
    shorter than a vector, numba importable, and the kernel matched torch on this machine."""
    return (logits.device.type == "cpu" and logits.dtype == torch.float32 and not logits.requires_grad
            and (logits.numel() >= MIN_VALUES or _KERNEL.loaded)
            and 2 <= logits.shape[-1] < lanes() and available() and _KERNEL.get() is not None)


def softmax_residual(logits: Tensor, labels: Tensor, batch_size: int) -> Tensor:
    """``(softmax(logits) − onehot(labels)) / batch_size`` for ``logits [..., C]`` and integer
    ``labels [...]``: the bits of the torch lines below, which are also the path for every call
    :func:`usable` turns down. The compiled pass writes the result over ``logits`` and returns it."""
    if not usable(logits) or not logits.is_contiguous():
        g = torch.softmax(logits, -1)
        return g.scatter_add_(-1, labels.unsqueeze(-1), g.new_full((*labels.shape, 1), -1.0)).div_(batch_size)
    z = logits.view(-1, logits.shape[-1]).numpy()
    y = labels.reshape(-1).contiguous().numpy()
    if y.size and not 0 <= int(y.min()) <= int(y.max()) < z.shape[1]:  # as scatter_add_ refuses them
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise RuntimeError(f"index {bad} is out of bounds for dimension {logits.dim() - 1} with size {z.shape[1]}")
    kernel, bsz = _KERNEL.get(), np.float32(batch_size)
    split_rows(z.shape[0], lambda s, e: kernel(z, y, bsz, s, e), min_rows=2048)
    return logits


def _matches_torch(kernel) -> bool:
    """Compare the kernel with the torch path, bit for bit, on seeded logits of every class count it
    may serve, at several scales, with NaN, ±inf and underflowing rows; warn once if they differ."""
    gen = torch.Generator().manual_seed(0)
    for classes in range(2, lanes()):
        z = torch.randn(2048, classes, generator=gen) * torch.logspace(-2, 2.5, 2048).unsqueeze(1)
        z[0, 0], z[1, :], z[2, -1], z[3, 0] = float("nan"), float("-inf"), float("inf"), float("-inf")
        z[4, 0] = 200.0  # the other classes underflow (subnormal or zero)
        y = torch.randint(0, classes, (2048,), generator=gen)
        want = torch.softmax(z, -1).scatter_add_(-1, y.unsqueeze(-1), torch.full((2048, 1), -1.0)).div_(7)
        got = z.clone()
        kernel(got.numpy(), y.numpy(), np.float32(7), 0, 2048)
        if not same_bits(got, want):
            warnings.warn(f"p2probust: the compiled softmax kernel differs from torch.softmax here (torch {torch.__version__}, "
                          f"{torch.backends.cpu.get_cpu_capability()}, {classes} classes); using torch's", RuntimeWarning,
                          stacklevel=5)
            return False
    return True


_KERNEL = CheckedKernel(SOURCE, "softmax", "softmax_residual", "the softmax-residual kernel (once per machine, about 2 s",
                        _matches_torch)
