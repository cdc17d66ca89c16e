"""Checkpoint and resume (issue 15): a resumed run writes a metrics.csv identical byte for byte to
the uninterrupted run's (filecmp, never allclose); bad input is one line and exit code 2."""

from __future__ import annotations

import filecmp
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

import p2probust as pr
import p2probust.checkpoint
from p2probust.checkpoint import FILE, object_memory
from p2probust.cli import main

#: momentum, an attack with memory (mimic's running mean and direction) and a rule with state
#: (bucketing's generator), epoch sampling (the sampler's permutations)
MEMORY = {"train.momentum": 0.9, "attack.name": "mimic", "rule.name": "bucketing+trimmed-mean",
          "train.sampling": "epoch", "train.rounds": 11, "eval_every": 3}


def _interrupted_copy(src, dst):
    """``dst``: the folder ``src`` would be if its process had died after its last checkpoint
    (no summary.json; rows after the checkpoint, and a torn last line, still in the files)."""
    shutil.copytree(src, dst)
    (dst / "summary.json").unlink()
    (dst / "params.pt").unlink()
    with open(dst / "metrics.csv", "a") as fh:
        fh.write("12,0.1")
    return dst


def interrupt_and_resume(cfg, tmp_path, every=4):
    """Run ``cfg`` uninterrupted (``ref``) and with checkpoints (``a``), resume a copy of ``a`` cut
    back to its last checkpoint (``b``); check both metrics.csv against ``ref`` byte for byte and
    the final models; return ``(reference, resumed, b)``."""
    reference = pr.simulate(cfg, out=tmp_path / "ref")
    pr.simulate(cfg.replace(checkpoint_every=every), out=tmp_path / "a")
    assert filecmp.cmp(tmp_path / "ref" / "metrics.csv", tmp_path / "a" / "metrics.csv", shallow=False)
    b = _interrupted_copy(tmp_path / "a", tmp_path / "b")
    resumed = pr.resume(b)
    assert filecmp.cmp(tmp_path / "ref" / "metrics.csv", b / "metrics.csv", shallow=False)
    assert torch.equal(resumed.params, reference.params)
    assert resumed.summary["status"] == "completed" and resumed.summary["best"] == reference.summary["best"]
    return reference, resumed, b


@pytest.mark.parametrize("extra", [
    {},
    {"engine.latency": "lognormal:mean=0.05,sigma=0.5", "engine.drop": 0.1, "engine.churn": "up=5,down=1",
     "attack.name": "ipm"},
    {"engine.dynamics": "random-regular:degree=4", "engine.timing_attack": "replay:lag=0.05",
     "privacy.clip": 1.0, "privacy.noise_multiplier": 1.0, "train.sampling": "uniform"},
], ids=["memory", "random-network", "dynamics-replay-dp"])
def test_resumed_run_writes_the_uninterrupted_metrics(tmp_path, extra):
    _, _, b = interrupt_and_resume(pr.RunConfig().replace(**{**MEMORY, **extra}), tmp_path)
    timing = (b / "timing.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in timing] == ["round", *map(str, range(12))]


def test_checkpoint_is_safe_and_holds_the_state(tmp_path):
    cfg = pr.RunConfig().replace(**MEMORY, checkpoint_every=5)
    pr.simulate(cfg, out=tmp_path / "a")
    ckpt = torch.load(tmp_path / "a" / FILE, weights_only=True)
    meta, tensors = json.loads(ckpt["meta"]), ckpt["tensors"]
    assert meta["round"] == 10 and len(meta["rows"]) == 11  # the last due round before the end (11)
    assert meta["now"] == pytest.approx(10 * 0.015)
    assert tensors["params"].shape == tensors["momentum"].shape == (16, 650) and bool(tensors["momentum"].any())
    assert {"gen.batches", "gen.attack", "sampler.perm", "sampler.cursor", "attack._mu", "attack._z"} <= set(tensors)
    assert meta["attack"]["_t"] >= 1 and any(k.endswith("generator") for k in tensors if k.startswith("rule."))
    assert not list((tmp_path / "a").glob(".checkpoint.pt.tmp-*"))  # written atomically, nothing left over


def test_object_memory_round_trips_an_attack_and_a_rule():
    attack = pr.Mimic()
    attack._t, attack._mu, attack._target = 3, torch.arange(4.0), 7
    rule = pr.make_rule("bucketing+median")
    memory = object_memory(rule)
    gen_paths = [p for p in memory if p.endswith("generator")]
    assert gen_paths, memory
    state = {p: v.clone() if isinstance(v, torch.Tensor) else v for p, v in object_memory(attack).items()}
    expected = torch.randn(5, generator=_walk(rule, gen_paths[0]))  # draw, then rewind and draw again
    pr.checkpoint.restore_memory(rule, memory)
    assert torch.equal(torch.randn(5, generator=_walk(rule, gen_paths[0])), expected)
    fresh = pr.registry.attacks.create("mimic")
    pr.checkpoint.restore_memory(fresh, state)
    assert fresh._t == 3 and fresh._target == 7 and torch.equal(fresh._mu, torch.arange(4.0))


def _walk(obj, path):
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, (tuple, list)) else getattr(obj, part)
    return obj


@pytest.mark.slow
def test_run_killed_by_sigkill_after_a_checkpoint_resumes_identically(tmp_path):
    kill_after_checkpoint_and_resume(["--rounds", "200", "--eval-every", "25", "--momentum", "0.9", "--attack", "mimic"],
                                     tmp_path)


def kill_after_checkpoint_and_resume(flags, tmp_path):
    """``p2probust run FLAGS --checkpoint-every 25`` killed by SIGKILL once its checkpoint exists,
    then ``--resume``: metrics.csv is that of the uninterrupted run, byte for byte."""
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "p2probust.cli", "run", *flags, "--checkpoint-every", "25",
                             "-q", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (out / FILE).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (out / "summary.json").exists()
    res = CliRunner().invoke(main, ["run", "--resume", str(out), "-q"])
    assert res.exit_code == 0, res.output
    ref = CliRunner().invoke(main, ["run", *flags, "-q", "--out", str(tmp_path / "ref")])
    assert ref.exit_code == 0, ref.output
    assert filecmp.cmp(tmp_path / "ref" / "metrics.csv", out / "metrics.csv", shallow=False)
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


# --- bad input: one line, exit code 2 ----------------------------------------------------------


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ck") / "a"
    pr.simulate(pr.RunConfig().replace(**MEMORY, checkpoint_every=5), out=folder)
    return folder


def _fails(args, *words):
    res = CliRunner().invoke(main, ["run", *args])
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line and "Traceback" not in line, line
    for w in words:
        assert w in line, line


def test_resume_refuses_a_folder_without_a_checkpoint(tmp_path):
    _fails(["--resume", str(tmp_path / "nowhere")], "does not exist")
    pr.simulate(pr.RunConfig(), rounds=2, out=tmp_path / "plain")
    _fails(["--resume", str(tmp_path / "plain")], "no checkpoint.pt", "--checkpoint-every")


def test_resume_refuses_a_completed_run(checkpointed):
    _fails(["--resume", str(checkpointed)], "completed", "nothing to resume")


def test_resume_refuses_a_changed_config(checkpointed, tmp_path):
    b = _interrupted_copy(checkpointed, tmp_path / "b")
    cfg = json.loads((b / "config.json").read_text())
    cfg["train"]["lr"] = 0.01
    (b / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    _fails(["--resume", str(b)], "config.json changed")


def test_resume_refuses_a_checkpoint_of_another_version(checkpointed, tmp_path):
    b = _interrupted_copy(checkpointed, tmp_path / "b")
    ckpt = torch.load(b / FILE, weights_only=True)
    meta = json.loads(ckpt["meta"])
    meta["version"] = "0.0.1"
    torch.save({**ckpt, "meta": json.dumps(meta)}, b / FILE)
    _fails(["--resume", str(b)], "0.0.1", "resume it with that version")
    (b / FILE).write_bytes(b"not a checkpoint")
    _fails(["--resume", str(b)], "not a readable p2probust checkpoint")


def test_resume_refuses_other_flags_and_bad_checkpoint_periods(checkpointed, tmp_path):
    _fails(["--resume", str(checkpointed), "--rounds", "3"], "no other run flags")
    _fails(["--checkpoint-every", "-1", "--out", str(tmp_path / "y")], "checkpoint_every", ">= 0")


def test_checkpointed_runs_are_not_batched_over_seeds():
    cfg = pr.RunConfig().replace(checkpoint_every=2)
    assert "checkpoint" in pr.batch_blocker(cfg) and pr.batch_blocker(pr.RunConfig()) is None


def test_toml_key_and_cli_flag_write_the_checkpoint(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text("checkpoint_every = 3\n[train]\nrounds = 5\n")
    assert pr.load_config(toml).checkpoint_every == 3
    res = CliRunner().invoke(main, ["run", "--config", str(toml), "-q", "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    assert json.loads(torch.load(tmp_path / "t" / FILE, weights_only=True)["meta"])["round"] == 3
    res = CliRunner().invoke(main, ["run", "--rounds", "5", "--checkpoint-every", "2", "-q", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0 and json.loads(torch.load(tmp_path / "c" / FILE, weights_only=True)["meta"])["round"] == 4
    assert json.loads((tmp_path / "c" / "config.json").read_text())["checkpoint_every"] == 2
