"""The task and the partition of a run, from its configuration (used by :func:`p2probust.simulate`)."""

from __future__ import annotations

import inspect

import numpy as np
import torch

from p2probust import registry
from p2probust.data.partition import pad_holders, pad_partition
from p2probust.data.tasks import Task
from p2probust.rng import numpy_stream

__all__ = ["build_partition", "build_task"]


def build_task(cfg) -> Task:
    """The registered task ``cfg.data.task``, with ``data.normalize`` passed to the tasks that take
    pixel inputs (a task without a ``normalize`` parameter accepts only ``"auto"``). Built on the
    CPU whatever torch's default device is (:func:`p2probust.assembly.assemble` moves it)."""
    extra = dict(cfg.data.params)
    if "normalize" in inspect.signature(registry.tasks.get(cfg.data.task).factory).parameters:
        extra["normalize"] = cfg.data.normalize
    elif cfg.data.normalize != "auto":
        raise ValueError(f"data.normalize = {cfg.data.normalize!r} needs a pixel task; task {cfg.data.task!r} takes only 'auto'")
    with torch.device("cpu"):
        return registry.tasks.create(
            cfg.data.task, data_dir=cfg.data.data_dir, test_fraction=cfg.data.test_fraction, split_seed=cfg.data.split_seed,
            **extra,
        )


def build_partition(cfg, task: Task, honest: torch.Tensor) -> tuple[list[np.ndarray], torch.Tensor, torch.Tensor]:
    """``(parts, table [n, L], lengths [n])`` of the run's partition.

    ``data.split_among = "all"``: one part per node. ``"honest"``: one part per honest node, handed
    out in increasing node id (the IOS code's ``DistributedDataSets``); Byzantine rows have length 0
    and ``parts`` holds the honest parts only. The partition draws from the run's ``partition`` stream.
    """
    name = cfg.data.partition
    params = {"dirichlet": {"alpha": cfg.data.dirichlet_alpha}, "shards": {"shards_per_node": cfg.data.shards_per_node},
              "class-groups": {"groups": cfg.data.groups}}
    holders = honest.numpy() if cfg.data.split_among == "honest" else np.ones(honest.numel(), dtype=bool)
    parts = registry.partitions.create(
        name, labels=np.asarray(task.partition_labels), n=int(holders.sum()),
        seed=int(numpy_stream(cfg.seed, "partition").integers(2**31)), **params.get(name, {}),
    )
    table, lengths = pad_partition(parts) if holders.all() else pad_holders(parts, holders)
    return parts, table, lengths
