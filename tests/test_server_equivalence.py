"""The complete graph with α = 1 is a parameter server, checked against an independent server loop.

The reference below shares nothing with the simulator's round: it keeps one server model, lets
each client take its local SGD steps with torch autograd (not the closed-form gradients), and
aggregates with ``torch.mean`` or a ``torch.sort``-based trimmed mean (not the sorting network),
then broadcasts. Only the data, the partition, the initial model and the documented sampling
rule (uniform with replacement: ``pos = floor(u · len)``, ``u`` from the run's ``batches``
stream) are shared. D-SGD is the case of one local step, FedAvg of several with the mean.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import p2probust as pr
from p2probust import registry
from p2probust.data.partition import pad_partition
from p2probust.models import init_stacked
from p2probust.rng import numpy_stream, torch_stream

N, ROUNDS, LR, BATCH = 8, 4, 0.3, 16


def _config(rule: str, local_steps: int, tolerance: int | str, topology: str = "complete") -> pr.RunConfig:
    return pr.RunConfig().replace(**{
        "topology.name": topology, "topology.nodes": N, "byzantine.count": 0, "rule.name": rule, "rule.alpha": 1.0,
        "rule.tolerance": tolerance, "train.lr": LR, "train.batch_size": BATCH, "train.local_steps": local_steps,
        "train.rounds": ROUNDS, "eval_every": 1000,
    })


def _server_loop(cfg: pr.RunConfig, aggregate) -> list[torch.Tensor]:
    """The server's model after each round, computed without the simulator's round."""
    task = registry.tasks.create(cfg.data.task, test_fraction=cfg.data.test_fraction, split_seed=cfg.data.split_seed)
    ds = task.dataset
    parts = registry.partitions.create(cfg.data.partition, labels=np.asarray(task.partition_labels), n=N,
                                       seed=int(numpy_stream(cfg.seed, "partition").integers(2**31)))
    table, lengths = pad_partition(parts)
    model = task.make_model()
    spec = pr.models.ParamSpec.from_module(model)
    theta = init_stacked(task.make_model, N, generator=torch_stream(cfg.seed, "init"))[0]
    batches = torch_stream(cfg.seed, "batches")

    def grad(th: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        th = th.detach().requires_grad_(True)
        out = torch.func.functional_call(model, spec.unflatten(th), (xb,))
        torch.nn.functional.cross_entropy(out, yb).backward()
        return th.grad

    trajectory = []
    for _ in range(cfg.train.rounds):
        clients = theta.expand(N, -1).clone()
        for _ in range(cfg.train.local_steps):
            u = torch.rand((N, BATCH), generator=batches, dtype=torch.float64)
            pos = (u * lengths.unsqueeze(1)).long()
            samples = torch.gather(table, 1, pos)
            for i in range(N):  # a reference may loop: clarity over speed
                clients[i] = clients[i] - LR * grad(clients[i], ds.x_train[samples[i]], ds.y_train[samples[i]])
        theta = aggregate(clients)
        trajectory.append(theta)
    return trajectory


def _trimmed(f: int):
    return lambda x: torch.sort(x, dim=0).values[f: x.shape[0] - f].mean(0)


@pytest.mark.parametrize("topology", ["complete", "server"])
@pytest.mark.parametrize("name, rule, steps, tolerance, aggregate", [
    ("D-SGD, mean", "mean", 1, "oracle", lambda x: x.mean(0)),
    ("robust D-SGD, trimmed mean f=1", "trimmed-mean", 1, 1, _trimmed(1)),
    ("FedAvg, 3 local steps", "mean", 3, "oracle", lambda x: x.mean(0)),
])
def test_complete_graph_alpha_one_is_the_server_loop(name, rule, steps, tolerance, aggregate, topology):
    """The complete graph with alpha = 1, and the ``server`` topology (one aggregation, broadcast)."""
    cfg = _config(rule, steps, tolerance, topology)
    reference = _server_loop(cfg, aggregate)
    assert not torch.allclose(reference[0], reference[-1], atol=1e-3)  # the model moves: the test can fail
    for rounds in (1, ROUNDS):
        res = pr.simulate(cfg.replace(**{"train.rounds": rounds}))
        assert torch.allclose(res.params, reference[rounds - 1].expand_as(res.params), atol=1e-6, rtol=0), name
