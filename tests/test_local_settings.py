"""Paper settings of the local step: weight decay, learning-rate schedules, phase order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import p2probust as pr
from p2probust.config import ConfigError
from p2probust.data import pad_partition
from p2probust.local import LocalTrainer, LRSchedule
from p2probust.models import LogisticRegression, flatten_params, init_stacked
from p2probust.registry import partitions, tasks
from p2probust.rng import numpy_stream, torch_stream


def _trainer(weight_decay: float, rows: int = 2, per_node: int = 6):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(rows * per_node, 5, generator=g), torch.arange(rows * per_node) % 3
    table, lengths = pad_partition([np.arange(i * per_node, (i + 1) * per_node) for i in range(rows)])
    model = LogisticRegression(5, 3)
    trainer = LocalTrainer(model, x, y, table, lengths, loss="cross_entropy", batch_size=per_node,
                           weight_decay=weight_decay, sampling="slice")  # full batch: the node's own samples
    return trainer, model, x, y


def test_weight_decay_step_equals_torch_sgd():
    trainer, model, x, y = _trainer(0.1)
    theta = init_stacked(lambda: LogisticRegression(5, 3), 2, generator=torch.Generator().manual_seed(1), same=False)
    new, _ = trainer.step(theta, torch.zeros_like(theta), torch.arange(2), 0.3, 0.0, torch.Generator().manual_seed(2))
    for i in range(2):  # independent reference: torch.optim.SGD(weight_decay=0.1) on the module
        ref = LogisticRegression(5, 3)
        torch.nn.utils.vector_to_parameters(theta[i].clone(), ref.parameters())
        opt = torch.optim.SGD(ref.parameters(), lr=0.3, weight_decay=0.1)
        torch.nn.functional.cross_entropy(ref(x[i * 6 : (i + 1) * 6]), y[i * 6 : (i + 1) * 6]).backward()
        opt.step()
        assert torch.allclose(new[i], flatten_params(ref), atol=1e-6)


def test_weight_decay_enters_before_momentum():
    trainer, _, _, _ = _trainer(0.05)
    plain, _, _, _ = _trainer(0.0)
    theta = torch.randn(2, 18, generator=torch.Generator().manual_seed(3))
    m0 = torch.randn(2, 18, generator=torch.Generator().manual_seed(4))
    nodes = torch.arange(2)
    grad = plain.gradients(theta, nodes, torch.Generator().manual_seed(5))  # ∇f only
    new, m = trainer.step(theta, m0, nodes, 0.2, 0.9, torch.Generator().manual_seed(5))
    expected_m = 0.9 * m0 + 0.1 * (grad + 0.05 * theta)  # m ← βm + (1−β)(∇f + λθ)
    assert torch.allclose(m, expected_m, atol=1e-6)
    assert torch.allclose(new, theta - 0.2 * expected_m, atol=1e-6)


def test_lr_schedules_match_torch_schedulers_and_the_ios_code():
    ios = LRSchedule(0.9, "inv-sqrt", offset=1.0)
    assert [ios(k) for k in (0, 3, 99)] == pytest.approx([0.9, 0.45, 0.09])  # 0.9/√(k+1), k from 0
    assert LRSchedule(1.0, "inv-sqrt", offset=4.0)(12) == pytest.approx(0.25)
    for kind, sched, kw in (("step", torch.optim.lr_scheduler.StepLR, {"step_size": 3, "gamma": 0.5}),
                            ("multistep", torch.optim.lr_scheduler.MultiStepLR, {"milestones": [2, 5], "gamma": 0.1})):
        ours = LRSchedule(0.8, kind, decay=kw["gamma"], step=kw.get("step_size", 50), milestones=tuple(kw.get("milestones", ())))
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.8)
        ref = sched(opt, **kw)
        for t in range(9):
            assert ours(t) == pytest.approx(opt.param_groups[0]["lr"]), (kind, t)
            opt.step()
            ref.step()


def _order_run(order: str, attack: bool):
    cfg = pr.RunConfig().replace(**{
        "topology.name": "complete", "topology.nodes": 4, "byzantine.count": 1 if attack else 0,
        "attack.name": "sign-flip", "attack.params": {"scale": 1.0, "reference": "global"}, "rule.name": "mean",
        "data.task": "least-squares", "data.partition": "iid", "data.params": {"num_samples": 1200, "dim": 3},
        "data.split_among": "honest", "train.rounds": 1, "train.lr": 0.1, "train.batch_size": 960 // (3 if attack else 4),
        "train.sampling": "slice", "train.init": "per-node", "train.order": order, "seed": 2,
    })
    return cfg, pr.simulate(cfg)


@pytest.mark.parametrize("attack", [False, True])
def test_phase_order_and_what_the_attack_sees(attack):
    """One round on the complete graph with the plain mean, by hand: step-then-gossip gives
    mean(x − γ∇f(x)), gossip-then-step gives mean(x) − γ∇f_i(x_i); the sign-flip message is
    −(honest mean) of the stepped models, resp. of the models before the step."""
    cfg, _ = _order_run("step-then-gossip", attack)
    task = tasks.create("least-squares", num_samples=1200, dim=3)
    x, y = task.dataset.x_train.double(), task.dataset.y_train.double()
    res = {o: _order_run(o, attack)[1] for o in ("step-then-gossip", "gossip-then-step")}
    byz = res["step-then-gossip"].is_byzantine
    honest = torch.nonzero(~byz).squeeze(1)
    parts = partitions.get("iid").factory(task.partition_labels, int(honest.numel()),
                                          seed=int(numpy_stream(2, "partition").integers(2**31)))
    theta0 = init_stacked(task.make_model, 4, generator=torch_stream(2, "init"), same=False).double()
    grads = torch.zeros_like(theta0)
    for part, i in zip(parts, honest.tolist()):  # full-batch least-squares gradient X^T(Xθ − y)/B
        xi, yi = x[part], y[part]
        grads[i] = xi.T @ (xi @ theta0[i] - yi) / len(part)
    stepped = theta0 - 0.1 * grads

    def mixed(models):
        inbox = models.clone()
        if attack:
            inbox[byz] = -models[honest].mean(0)
        return inbox.mean(0)

    assert torch.allclose(res["step-then-gossip"].params[honest].double(), mixed(stepped).expand(len(honest), -1), atol=1e-5)
    assert torch.allclose(res["gossip-then-step"].params[honest].double(), mixed(theta0) - 0.1 * grads[honest], atol=1e-5)


def test_order_and_split_among_errors():
    with pytest.raises(ValueError, match="engine.mode 'async'"):
        pr.simulate(pr.RunConfig(), rounds=1, **{"train.order": "gossip-then-step", "engine.mode": "async"})
    with pytest.raises(ValueError, match="split_among = 'honest'"):
        pr.simulate(pr.RunConfig(), rounds=1, **{"data.split_among": "honest", "attack.name": "label-flip"})
    with pytest.raises(ConfigError, match="train.order = 'later'"):
        pr.RunConfig().replace(**{"train.order": "later"})
