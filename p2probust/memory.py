"""How much memory a run will need, estimated before anything large is allocated.

A run that cannot fit must be refused with one line, not grow until the kernel kills it (and
perhaps the user's other work with it). The estimate counts what scales with the problem:

* stacked node state: parameters, momentum, the rule's output, the gradient and the local step's
  temporaries — about ``6 · n · d`` values;
* inboxes: the gathered ``[a, k, d]`` neighbour models and the rule's working copy — ``2 · n · k · d``;
* local batches: inputs and activations of ``n · B`` samples, forward and backward — ``3 · n · B · (x + h)``
  with ``x`` the input size and ``h`` the activations of one sample (measured on the ``meta`` device,
  which allocates nothing);
* the training data and the partition table, the graph (networkx: about 400 B per node and 300 B
  per edge) and the interpreter with torch loaded (about 450 MB).

It is a rough estimate (benchmarks/bench_round.py measured peaks of 0.48 GB at n = 100 and 1.02 GB at
n = 10,000 where it says 0.46 and 1.43 GB), meant to catch runs that are off by orders of magnitude,
not to budget tightly.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

BASE_BYTES = 450e6  #: Python, torch, numba and the package loaded
_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
SIZE_FORMS = "auto, inf, or a size such as 512MB, 8GB, 16GiB"


def parse_size(spec: Any, *, allow_auto: bool = False) -> float | None:
    """Bytes from ``8GB`` / ``512MiB`` / a number of bytes / ``inf``; ``auto`` gives None."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not spec > 0:
            raise ValueError(f"size {spec!r} must be > 0; expected {SIZE_FORMS}")
        return float(spec)
    text = str(spec).strip().lower()
    if text == "auto" and allow_auto:
        return None
    if text in ("inf", "infinity", "none"):
        return math.inf
    m = re.fullmatch(r"([0-9.]+(?:e[+-]?[0-9]+)?)\s*([kmgt]i?)?b?", text)
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(f"size {spec!r} is not understood; expected {SIZE_FORMS}")
    return float(m.group(1)) * _UNITS[m.group(2) or ""]


def human(nbytes: float) -> str:
    """``1.23 GB`` style (powers of 1000)."""
    if not math.isfinite(nbytes):
        return "inf"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.0f} B"


def available_bytes() -> float:
    """Memory available to this process: ``MemAvailable`` of ``/proc/meminfo``, capped by a cgroup
    limit if one is set; the physical size elsewhere."""
    avail = math.inf
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = float(line.split()[1]) * 1024
    except OSError:
        try:
            avail = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            text = fh.read().strip()
        if text.isdigit():
            avail = min(avail, float(text))
    except OSError:
        pass
    return avail


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per part of a run (see the module docstring)."""

    parts: dict[str, float]

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()))

    def lines(self) -> list[str]:
        return [f"estimated peak memory: {human(self.total)}"] + [
            f"  {name}: {human(v)}" for name, v in self.parts.items() if v >= 1e5
        ]

    def check(self, limit: str | float = "auto") -> None:
        """Raise ``ValueError`` (one line) when the estimate exceeds ``limit`` (``auto``: available)."""
        cap = parse_size(limit, allow_auto=True)
        source = "--max-memory" if cap is not None else "available on this machine"
        cap = available_bytes() if cap is None else cap
        if self.total > cap:
            big = max(self.parts, key=self.parts.get)
            raise ValueError(
                f"this run needs about {human(self.total)} of memory ({big}: {human(self.parts[big])}) "
                f"but {human(cap)} is {source}; reduce the nodes, batch size or model, or pass "
                f"--max-memory SIZE (TOML max_memory) to run anyway"
            )


def estimate(*, n: int, k: float, d: int, batch: int, local: float, activations: float,
             data_values: float = 0.0, edges: float = 0.0, itemsize: int = 4) -> MemoryEstimate:
    """Estimate for ``n`` nodes with ``k`` neighbour slots, ``d`` parameters, batches of ``batch``
    samples of ``local`` input values and ``activations`` activation values each."""
    return MemoryEstimate({
        "node state (params, momentum, gradients)": 6.0 * n * d * itemsize,
        "inboxes": 2.0 * n * k * d * itemsize,
        "local batches": 3.0 * n * batch * (local + activations) * itemsize,
        "training data": float(data_values) * itemsize,
        "graph": 400.0 * n + 300.0 * edges + n * (k + 1) * 13.0,
        "interpreter and libraries": BASE_BYTES,
    })


def model_footprint(make_model: Callable[[], Any], input_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(d, activations per sample)`` of the model, measured on torch's ``meta`` device (no memory).
    p2probust's own models of up to 2^24 parameters run on the CPU instead, one copy on one zero
    sample, torch's global random state put back after building it: on the ``meta`` device a
    linear layer runs through torch's Python decompositions, whose first call imports
    ``torch._dynamo`` (about a second of every run's set-up)."""
    import torch

    from .models import layers_only

    with torch.device("meta"):
        model = make_model()
    d = sum(p.numel() for p in model.parameters())
    device = "meta"
    if layers_only(model) and d <= 1 << 24:  # at most 64 MB of float32 parameters
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            model, device = make_model(), "cpu"
    seen = [0]

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            seen[0] += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    except Exception:  # a model the meta device cannot run: count its parameters as activations
        seen[0] = d
    finally:
        for h in handles:
            h.remove()
    return d, seen[0]


def estimate_run(cfg: Any, task: Any, table: Any) -> MemoryEstimate:
    """The estimate of a configured run once its graph (``table``: ``[n, k]`` neighbour slots) and
    task (its data set, which is small for every built-in task) exist, before any node state."""
    x = task.dataset.x_train
    d, activations = model_footprint(task.make_model, tuple(x.shape[1:]))
    n, k = table.idx.shape
    local = int(x[0].numel()) if x.shape[0] else 1
    return estimate(n=n, k=k, d=d, batch=cfg.train.batch_size, local=local, activations=activations,
                    data_values=float(x.numel()), edges=float(table.mask.sum()) / 2,
                    itemsize=x.element_size() if x.is_floating_point() else 4)
