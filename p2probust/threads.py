"""Small calls run on one thread: torch's intra-op threads cost more than they save below a size.

p2probust sets torch's OpenMP workers to wait passively (:mod:`p2probust`'s ``__init__``): a
spinning worker steals a core from the compiled kernels and, on a shared machine, from every other
process (measured here with one competing busy process: a synchronous round at n = 1000 took
28–32 ms with torch's default spinning against 19–21 ms passive, and an asynchronous Poisson round
200–230 ms against 48–55 ms). A sleeping worker must be woken for every parallel op, though: an
asynchronous instant that steps or aggregates a batch of 130 nodes (d = 650) issues dozens of small
ops and spends more time waking the worker than computing. So the two phases of a round run with
one torch thread when their arithmetic is small, and the thread count is put back after them:

* a **local step** of fewer than :data:`STEP_FLOPS` floating-point operations, counted as
  ``node-steps × (3 B F + 4 d)``: ``F`` is the model's forward FLOPs per sample, counted once by
  :class:`torch.utils.flop_counter.FlopCounterMode` on one training sample (:func:`forward_flops`;
  the backward pass costs about twice the forward), ``B`` the batch size, ``4 d`` the momentum
  and update. Logistic regression on 64 features (F = 1,280) stays on one thread up to about 270
  nodes; the 5,994-parameter MNIST CNN (F = 645,120) never does (16 nodes: 36 ms a round on two
  threads, 58 ms on one);
* a **gossip phase** (attack and rule) over fewer than :data:`MIX_VALUES` inbox values,
  ``rows × (k + 1) × d``.

Break-even here (2 cores, passive workers, logistic regression, d = 650, k = 10): a local step of
130 nodes took 1.5 ms on one thread against 2.2 ms on two, of 300 nodes 3.5 against 3.1 ms.

The results do not depend on it: torch's element-wise, matrix-product, softmax and indexing ops,
and the compiled kernels, give the same bits on one thread and on two (checked on 60 asynchronous
runs, 3 clocks × 4 attacks × 5 rules, parameters and metrics byte-identical; the metrics, whose
reductions may depend on the thread count, are computed outside these calls).
"""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

#: a local step of fewer floating-point operations runs on one torch thread
STEP_FLOPS = 1 << 25
#: a gossip phase over fewer inbox values (rows × (k + 1) × d) runs on one torch thread
MIX_VALUES = 1 << 21

_lock = threading.Lock()
_inside = 0  # calls currently running on one thread (several Python threads may be in one)
_saved = 0  # the thread count to put back when the last of them ends


def forward_flops(model: nn.Module, sample: torch.Tensor) -> int | None:
    """FLOPs of ``model``'s forward pass on one input ``sample [1, ...]`` (matrix products and
    convolutions, as :class:`~torch.utils.flop_counter.FlopCounterMode` counts them), or None
    when the model cannot run on it alone (a model whose forward needs more: no estimate). The
    pass runs on a copy in evaluation mode: no buffer of ``model`` changes (batch-norm statistics)
    and no dropout mask is drawn from torch's global generator.

    p2probust's own models (:func:`p2probust.models.layers_only`: their forward is their linear
    and convolution layers) are counted with forward hooks and the same library formulas
    (``mm_flop``, ``conv_flop_count``): a dispatch mode's first use imports ``torch._dynamo``,
    about a second of every run's set-up. Any other model goes through the mode."""
    from torch.utils.flop_counter import FlopCounterMode

    from .models import layers_only

    try:
        if layers_only(model):
            return _layer_flops(copy.deepcopy(model).eval(), sample)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            copy.deepcopy(model).eval()(sample)
    except Exception:  # e.g. a plugin model with required extra inputs
        return None
    return int(counter.get_total_flops())


def _layer_flops(model: nn.Module, sample: torch.Tensor) -> int:
    """FLOPs of the linear and convolution layers of ``model`` on ``sample`` (forward hooks)."""
    from torch.utils.flop_counter import conv_flop_count, mm_flop

    total = [0]

    def linear(m: nn.Linear, inputs: tuple, out: torch.Tensor) -> None:
        total[0] += mm_flop((inputs[0].numel() // m.in_features, m.in_features), (m.in_features, m.out_features))

    def conv(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        total[0] += conv_flop_count(list(inputs[0].shape), list(m.weight.shape), list(out.shape), transposed=False)

    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.register_forward_hook(linear)
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            m.register_forward_hook(conv)
    with torch.no_grad():
        model(sample)
    return int(total[0])


def small_step(trainer: Any, node_steps: int) -> bool:
    """Whether ``node_steps`` local steps of ``trainer`` are below :data:`STEP_FLOPS` (False when
    the trainer has no estimate, ``flops_per_node`` None or absent)."""
    per_node = getattr(trainer, "flops_per_node", None)
    return per_node is not None and node_steps * per_node < STEP_FLOPS


def small_mix(rows: int, k: int, d: int) -> bool:
    """Whether a gossip phase over ``rows`` nodes with ``k`` inbox slots of ``d`` values is below
    :data:`MIX_VALUES`."""
    return rows * (k + 1) * d < MIX_VALUES


@contextmanager
def one_thread_if(small: bool) -> Iterator[None]:
    """Run the body with one torch thread when ``small``; the thread count is put back after the
    last of the overlapping small calls (from any Python thread) ends."""
    global _inside, _saved
    if not small:
        yield
        return
    with _lock:
        if _inside == 0:
            _saved = torch.get_num_threads()
            if _saved > 1:
                torch.set_num_threads(1)
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0 and _saved > 1:
                torch.set_num_threads(_saved)
