"""Devices (issue 15): ``device = "cpu" | "cuda" | "cuda:N"`` (``--device``, ``simulate(device=...)``).

No GPU is needed here. What is checked on the CPU:

* ``device = "cpu"`` written out gives the same bytes as the default;
* a run does not depend on torch's default device: with ``torch.set_default_device("meta")``, any
  tensor that a round, the wiring or the metrics made without an explicit device would be a meta
  tensor (no data), and the run would fail or differ; every configuration below gives the same
  metrics, bit for bit, as without it;
* the assembled run's tensors are all on the run's device (walked, under the same meta default);
* ``cuda`` where no GPU is usable, and a malformed device, are one-line errors (CLI exit code 2);
  the compiled kernels are not used off the CPU (``jit = "auto"``) and refused there (``"on"``).
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
import math

import pytest
import torch
from click.testing import CliRunner

import p2probust as pr
from p2probust.assembly import assemble
from p2probust.cli import main
from p2probust.config import ConfigError
from p2probust.device import check_form, from_numpy, resolve, to_numpy
from p2probust.jit import check_mode

SMALL = {"topology.name": "random-regular", "topology.params": {"degree": 4}, "topology.nodes": 10,
         "byzantine.count": 2, "train.rounds": 2, "eval_every": 1}


def _same_rows(a: list[dict], b: list[dict]) -> bool:
    def eq(x, y):
        return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
    return len(a) == len(b) and all(r.keys() == s.keys() and all(eq(r[k], s[k]) for k in r) for r, s in zip(a, b))


def test_explicit_cpu_writes_the_default_run_byte_for_byte(tmp_path):
    cfg = pr.RunConfig().replace(**{**SMALL, "train.rounds": 4, "train.momentum": 0.9})
    default = pr.simulate(cfg, out=tmp_path / "default")
    explicit = pr.simulate(cfg, device="cpu", out=tmp_path / "cpu")
    assert filecmp.cmp(tmp_path / "default" / "metrics.csv", tmp_path / "cpu" / "metrics.csv", shallow=False)
    assert torch.equal(default.params, explicit.params)
    # recorded in the run's records, but not in the config hash (CPU runs keep their folder names)
    assert json.loads((tmp_path / "cpu" / "config.json").read_text())["device"] == "cpu"
    assert explicit.summary["device"] == "cpu" and "device_name" not in explicit.summary
    assert "device" not in cfg.to_dict() and cfg.replace(device="cuda").to_dict()["device"] == "cuda"


#: one configuration per distinct path of a round: engines, churn, time-varying graphs, the
#: server, privacy, samplers, phase order, oracle rules, attacks with memory or graph knowledge,
#: a vmap model, a task with a known optimum, the compiled kernel (CPU), a chain with bucketing
PATHS = {
    "default": {},
    "async": {"engine.mode": "async", "engine.clock": "poisson:rate=100", "engine.drop": 0.2},
    "churn-replay": {"engine.churn": "up=0.05,down=0.02", "engine.timing_attack": "replay:lag=0.01"},
    "dynamics": {"engine.dynamics": "random-regular:degree=4", "engine.drop": 0.3},
    "server": {"topology.name": "server", "topology.params": {}},
    "dp-poisson": {"privacy.noise_multiplier": 1.0, "privacy.sampling": "poisson"},
    "epoch-momentum": {"train.sampling": "epoch", "train.momentum": 0.9, "attack.name": "mimic"},
    "slice-gossip-then-step": {"train.sampling": "slice", "train.order": "gossip-then-step", "attack.name": "ipm"},
    "clipped-gossip-oracle": {"rule.name": "clipped-gossip", "rule.params": {"tau": "oracle"}, "attack.name": "dissensus"},
    "ios-spectral": {"rule.name": "ios", "attack.name": "spectral"},
    "krum-label-flip": {"rule.name": "krum", "topology.params": {"degree": 8}, "byzantine.count": 1,
                        "attack.name": "label-flip"},
    "mlp-copying": {"data.task": "digits-mlp", "attack.name": "duplicate"},
    "least-squares": {"data.task": "least-squares", "rule.name": "cs-he", "attack.name": "alie"},
    "jit-on": {"jit": "on", "rule.name": "median", "topology.params": {"degree": 8}, "byzantine.count": 1},
    "bucketing-chain": {"rule.name": "bucketing+nnm+median", "topology.params": {"degree": 6}, "byzantine.count": 1},
    "record-nodes": {"record.every": 1, "record.max_nodes": 4, "attack.name": "gaussian"},
}


def _under_meta_default(call):
    """``call()`` with torch's default device set to ``meta`` (restored afterwards)."""
    torch.set_default_device("meta")
    try:
        return call()
    finally:
        torch.set_default_device(None)


def _check_independent(cfg) -> None:
    reference = pr.simulate(cfg)
    audited = _under_meta_default(lambda: pr.simulate(cfg))
    assert _same_rows(reference.history, audited.history)
    assert audited.params.device.type == "cpu" and torch.equal(audited.params, reference.params)


@pytest.mark.parametrize("extra", list(PATHS.values()), ids=list(PATHS))
def test_a_run_does_not_depend_on_torchs_default_device(extra):
    _check_independent(pr.RunConfig().replace(**{**SMALL, **extra}))


@pytest.mark.slow
@pytest.mark.parametrize("rule", pr.registry.rules.names() + pr.registry.aggregators.names())
def test_every_rule_does_not_depend_on_torchs_default_device(rule):
    _check_independent(pr.RunConfig().replace(**{**SMALL, "topology.params": {"degree": 8}, "byzantine.count": 1,
                                                 "rule.name": rule, "attack.name": "alie"}))


@pytest.mark.slow
@pytest.mark.parametrize("attack", pr.registry.attacks.names())
def test_every_attack_does_not_depend_on_torchs_default_device(attack):
    _check_independent(pr.RunConfig().replace(**{**SMALL, "attack.name": attack}))


def test_a_batched_run_does_not_depend_on_torchs_default_device():
    cfgs = [pr.RunConfig().replace(**{**SMALL, "byzantine.count": 1, "attack.name": "alie", "seed": s}) for s in (0, 1)]
    reference = pr.simulate_seeds(cfgs)
    audited = _under_meta_default(lambda: pr.simulate_seeds(cfgs))
    assert all(_same_rows(a.history, b.history) for a, b in zip(reference, audited))


def _tensors(obj, seen: set, path: str = "run", depth: int = 0):
    """``(path, tensor)`` of every tensor reachable from ``obj`` through dataclass fields,
    attributes of p2probust objects, tuples, lists and dicts."""
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, (tuple, list)):
        for i, item in enumerate(obj):
            yield from _tensors(item, seen, f"{path}[{i}]", depth + 1)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from _tensors(item, seen, f"{path}[{key!r}]", depth + 1)
    elif isinstance(obj, torch.nn.Module):
        for name, t in [*obj.named_parameters(), *obj.named_buffers()]:
            yield f"{path}.{name}", t
    elif dataclasses.is_dataclass(obj) or type(obj).__module__.startswith("p2probust."):
        for name, item in vars(obj).items() if hasattr(obj, "__dict__") else ():
            yield from _tensors(item, seen, f"{path}.{name}", depth + 1)


@pytest.mark.parametrize("extra", [{}, PATHS["dp-poisson"], PATHS["least-squares"], PATHS["clipped-gossip-oracle"]],
                         ids=["default", "dp", "optimum", "oracle"])
def test_every_tensor_of_the_assembled_run_is_on_its_device(extra):
    run = _under_meta_default(lambda: assemble(pr.RunConfig().replace(**{**SMALL, **extra})))
    found = dict(_tensors(run, set()))
    assert {"run.params", "run.momentum", "run.is_byz", "run.table.idx", "run.part_table", "run.f", "run.actors",
            "run.task.dataset.x_train", "run.evaluator._x_flat"} <= set(found)
    off = {path: str(t.device) for path, t in found.items() if t.device != torch.device("cpu")}
    assert off == {}
    if run.privacy is not None:
        assert run.privacy.generator.device == torch.device("cpu")


def test_every_tensor_of_the_built_simulation_is_on_its_device():
    """``build`` (the frozen Simulation, its Wiring and the initial SimState), under a meta default."""
    from p2probust.state import build

    sim, state = _under_meta_default(lambda: build(pr.RunConfig().replace(**{**SMALL, "attack.name": "alie"})))
    found = dict(_tensors((sim, state), set(), "sim"))
    assert {"sim[0].wiring.idx", "sim[0].wiring.edge_rows", "sim[0].wiring.f", "sim[0].run.params"} <= set(found)
    assert state.params is sim.run.params and state.momentum.device == torch.device("cpu")
    assert {path: str(t.device) for path, t in found.items() if t.device != torch.device("cpu")} == {}
    assert sim.gen_batches.device == sim.gen_attack.device == torch.device("cpu")


def test_cuda_without_a_gpu_is_one_line_naming_what_is_available(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = pr.RunConfig().replace(device="cuda")  # valid as a config: the machine is asked when the run starts
    with pytest.raises(ValueError) as err:
        pr.simulate(cfg, **{"train.rounds": 1})
    msg = str(err.value)
    assert "\n" not in msg and "'cuda'" in msg and "available: cpu" in msg
    res = CliRunner().invoke(main, ["run", "--device", "cuda:1", "--rounds", "1", "--out", str(tmp_path / "r"), "-q"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines == ["Error: device = 'cuda:1' is not available: no CUDA device is usable here "
                     "(torch.cuda.is_available() is False); available: cpu"]


def test_the_dry_run_says_whether_the_device_is_usable(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = CliRunner().invoke(main, ["run", "--dry-run", "--device", "cuda"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == ("device: cuda is NOT usable here: no CUDA device is usable here "
                                           "(torch.cuda.is_available() is False); available: cpu")
    res = CliRunner().invoke(main, ["run", "--dry-run"])
    assert res.output.splitlines()[-1] == "device: cpu (available here)"


def test_a_gpu_index_beyond_the_machines_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve("cuda") == torch.device("cuda", 0) and resolve("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"^device = 'cuda:2' is not available: this machine has 2 GPU\(s\); "
                                         r"available: cpu, cuda:0, cuda:1$"):
        resolve("cuda:2")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "CPU", "cuda:0:1", "mps", " cpu"])
def test_a_malformed_device_is_a_config_error(bad):
    assert check_form(bad) is not None
    with pytest.raises(ConfigError, match=r"^device = .* is invalid; expected 'cpu', 'cuda' or 'cuda:N'"):
        pr.RunConfig(device=bad)
    with pytest.raises(ConfigError, match=r"^device = 0 is invalid"):
        pr.RunConfig(device=0)


def test_the_cli_refuses_a_malformed_device_with_exit_2(tmp_path):
    res = CliRunner().invoke(main, ["run", "--device", "tpu", "--rounds", "1", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert [ln for ln in res.output.splitlines() if ln.strip()] == [
        "Error: device = 'tpu' is invalid; expected 'cpu', 'cuda' or 'cuda:N' (N a GPU index)"]


def test_the_device_is_a_toml_key(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('device = "cuda:0"\n[train]\nrounds = 3\n')
    cfg = pr.load_config(path)
    assert cfg.device == "cuda:0" and cfg.train.rounds == 3
    assert pr.load_config(path, {"device": "cpu"}).device == "cpu"  # a flag wins over the file


def test_compiled_kernels_are_for_cpu_tensors_only():
    assert check_mode("auto", True, "cpu") == check_mode("auto", True)  # numba availability decides on the CPU
    assert check_mode("auto", True, "cuda") is False and check_mode("auto", True, torch.device("meta")) is False
    with pytest.raises(ValueError, match="^jit = 'on' needs the run on the cpu, not on 'cuda:0'"):
        check_mode("on", True, torch.device("cuda", 0))
    with pytest.raises(ConfigError, match=r"^jit = 'on' is invalid; expected 'auto' or 'off' with device 'cuda'"):
        pr.RunConfig(device="cuda", jit="on")
    assert pr.RunConfig(device="cuda", jit="auto").jit == "auto"


def test_numpy_crossings_keep_values_and_land_on_the_device():
    import numpy as np

    arr = np.array([[3, -1], [0, 7]], dtype=np.int64)[:, ::-1]  # not contiguous
    t = from_numpy(arr, "cpu")
    assert t.device.type == "cpu" and t.tolist() == [[-1, 3], [7, 0]]
    assert np.array_equal(to_numpy(t), arr)


@pytest.mark.parametrize("extra", [{}, {"engine.mode": "async", "engine.clock": "poisson:rate=100",
                                       "engine.drop": 0.2, "engine.churn": "up=0.05,down=0.02"}], ids=["sync", "async"])
def test_a_resumed_run_restores_onto_the_runs_device(tmp_path, extra):
    """Checkpoint tensors are CPU copies; restoring moves them to the run's device (here the CPU;
    written and resumed under a meta default device, so that a tensor left on the default device
    would fail); the asynchronous engine's arrays and inbox bookkeeping stay on the CPU."""
    cfg = pr.RunConfig().replace(**{**SMALL, "train.rounds": 6, "train.momentum": 0.9, "attack.name": "mimic",
                                    "topology.params": {"degree": 6}, "byzantine.count": 1,
                                    "rule.name": "bucketing+trimmed-mean", "train.sampling": "epoch", **extra})
    reference = pr.simulate(cfg, out=tmp_path / "ref")
    _under_meta_default(lambda: pr.simulate(cfg.replace(checkpoint_every=3), out=tmp_path / "a"))
    ckpt = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert {str(t.device) for t in ckpt["tensors"].values()} == {"cpu"}
    for name in ("summary.json", "params.pt"):
        (tmp_path / "a" / name).unlink()
    resumed = _under_meta_default(lambda: pr.resume(tmp_path / "a"))
    assert filecmp.cmp(tmp_path / "ref" / "metrics.csv", tmp_path / "a" / "metrics.csv", shallow=False)
    assert torch.equal(resumed.params, reference.params)


#: the modules a round runs, and the ``torch.from_numpy`` calls they may keep: each of these makes
#: a tensor that is meant to stay on the CPU or is moved by its caller (say why when adding one)
ROUND_PATH = ("state.py", "step.py", "wiring.py", "simulation.py", "batched.py", "async_kernel.py", "network_state.py",
              "shared_inbox.py", "observer.py", "sampling.py", "local.py", "node_recorder.py", "metrics.py", "gossip",
              "aggregators", "attacks", "privacy")
CPU_ON_PURPOSE = {
    "async_kernel.py": 1,  # indices into the inbox buffer's CPU bookkeeping (has, crafted, sender)
    "network_state.py": 2,  # the inbox buffer's checkpoint arrays (sent_at, handle): CPU bookkeeping
    "metrics.py": 2,  # the evaluation sample, drawn during the CPU set-up and moved by assemble
    "attacks/spectral.py": 2,  # the Fiedler vector (scipy), moved by SpectralHeterogeneity.direction
}


def test_the_round_path_crosses_from_numpy_through_the_device_helper():
    from pathlib import Path

    root = Path(pr.__file__).parent
    files = [p for name in ROUND_PATH for p in ((root / name).rglob("*.py") if (root / name).is_dir() else [root / name])]
    found = {str(p.relative_to(root)): p.read_text().count("torch.from_numpy(") for p in files}
    found = {name: count for name, count in found.items() if count}
    assert found == CPU_ON_PURPOSE, ("use p2probust.device.from_numpy(array, device) on the round path, so that the "
                                     "tensor lands on the run's device")


def test_the_inbox_buffer_keeps_bookkeeping_on_the_cpu_and_restores_its_pool_onto_its_device():
    """``meta`` stands in for a GPU: the buffer's pool (and a restored pool) is on the buffer's
    device, its bookkeeping (has, crafted, sender) on the CPU, where the engine writes it."""
    import numpy as np

    from p2probust.engine.inflight import Deliveries
    from p2probust.network_state import InboxBuffer

    idx = torch.tensor([[1, 2], [0, 2], [0, 1]])
    src = InboxBuffer(idx, 4, torch.float32)
    src.store(np.array([0, 1]), torch.arange(8, dtype=torch.float32).reshape(2, 4), torch.arange(2))
    src.deliver(Deliveries(np.array([0, 1]), np.array([1, 0]), np.array([2, 0]), np.array([0.5, 0.25]), np.array([1, -1])))
    saved = src.state()
    assert {k for k, v in saved.items() if v.device.type != "cpu"} == set()
    dst = InboxBuffer(idx, 4, torch.float32, device="meta")
    assert {x.device.type for x in (dst.has, dst.crafted, dst.sender)} == {"cpu"} and dst.pool.device.type == "meta"
    dst.restore(saved)
    assert dst.pool.device.type == "meta" and tuple(dst.pool.shape) == tuple(src.pool.shape)
    assert torch.equal(dst.has, src.has) and torch.equal(dst.crafted, src.crafted) and torch.equal(dst.sender, src.sender)
    assert np.array_equal(dst.handle, src.handle) and np.array_equal(dst.sent_at, src.sent_at)
