"""The device a run computes on (``RunConfig.device``, ``--device``, ``simulate(device=...)``).

A run's set-up (graph, placement, partition, data loading, initial models, evaluation sample) is
made on the CPU, then every tensor a round touches is moved once to the run's device
(:func:`p2probust.assembly.assemble`): models, momentum, the training and test sets, the partition
table, the neighbour table, masks, weights and tolerances. Tensors made during a round are made
on the device of the tensors they come from (``device=params.device``), and the engine's integer
index sets (numpy, the engine has no torch) cross into torch through :func:`from_numpy` only. The
random generators drawn every round (``batches``, ``attack``, ``noise``) live on the run's device
(:func:`p2probust.rng.torch_stream`), so their draws are made where they are used.

What is guaranteed: a CPU run gives the same bits whether or not ``device = "cpu"`` is written and
whatever ``torch.set_default_device`` says (tested). A CUDA run with the same seed gives the same
run on the same GPU model, driver and torch version, as far as torch's CUDA kernels are
deterministic (scatter/index-add with atomics are not always); it does not give the same bits as
the CPU run: CUDA generators draw other numbers from the same seed (Philox, not the CPU's
Mersenne Twister) and floating-point sums are ordered differently. The initial models, partition
and evaluation sample are drawn on the CPU, so they are the same on every device.

The compiled kernels (:mod:`p2probust.jit`, numba) read CPU memory: on another device ``jit =
"auto"`` takes the torch path and ``jit = "on"`` is an error.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

#: the forms ``RunConfig.device`` accepts, as error messages name them
FORMS = "'cpu', 'cuda' or 'cuda:N' (N a GPU index)"
_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


def check_form(value: Any) -> str | None:
    """None if ``value`` is a device name this simulator accepts, else what is wrong with it (the
    machine is not consulted: a config naming ``cuda`` is valid on a machine without one)."""
    if not isinstance(value, str) or _PATTERN.fullmatch(value) is None:
        return f"device = {value!r} is invalid; expected {FORMS}"
    return None


def available() -> str:
    """The devices this machine offers, as one phrase (``cpu``, or ``cpu, cuda:0, cuda:1``)."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ", ".join(["cpu"] + [f"cuda:{i}" for i in range(gpus)])


def resolve(value: str) -> torch.device:
    """The ``torch.device`` of ``value``; a ``ValueError`` of one line naming the value and the
    available devices when this machine does not have it (``cuda`` without a usable GPU)."""
    problem = check_form(value)
    if problem is not None:
        raise ValueError(problem)
    if value == "cpu":
        return torch.device("cpu")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(value.split(":")[1]) if ":" in value else 0
    if index >= gpus:
        why = f"this machine has {gpus} GPU(s)" if gpus else "no CUDA device is usable here (torch.cuda.is_available() is False)"
        raise ValueError(f"device = {value!r} is not available: {why}; available: {available()}")
    return torch.device("cuda", index)


def device_record(device: torch.device) -> dict[str, str]:
    """What a run's summary records about where it ran: ``device`` (``cpu``, ``cuda:0``) and, on
    a GPU, ``device_name`` (e.g. ``NVIDIA H200``)."""
    out = {"device": str(device)}
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(device)
    return out


def from_numpy(array: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """The one crossing from the engine's numpy arrays (index sets, masks, times) to torch: a
    tensor of the same values on ``device`` (no copy on the CPU)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The crossing back: a numpy array of ``tensor``'s values (copied to the CPU when needed)."""
    return tensor.detach().cpu().numpy()
