"""Run records a researcher can trust: honest status, safe run folders, stopped runs that keep
their status, reproducible metrics.csv (issue: run records)."""

from __future__ import annotations

import csv
import errno
import filecmp
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import p2probust as pr
from p2probust.cli import main
from p2probust.rundir import RunDir, write_atomic

SMALL = ["--nodes", "9", "--byzantine", "1", "--rounds", "4", "-q"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def summary(folder) -> dict:
    return json.loads((Path(folder) / "summary.json").read_text())


def rows(folder) -> list[dict]:
    with open(Path(folder) / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


# --- a diverged run never looks like a good one ------------------------------------------------


def test_non_finite_attack_on_the_mean_is_diverged_with_nan_finals(tmp_path):
    out = tmp_path / "r"
    res = invoke("run", "--rule", "mean", "--attack", "non-finite", "--nodes", "9", "--byzantine", "1",
                 "--rounds", "20", "-q", "--out", out)
    assert res.exit_code == 3
    s = summary(out)
    assert s["status"] == "diverged" and s["diverged_round"] == 1 and s["rounds_done"] == 1
    assert math.isnan(s["final"]["consensus_distance"]) and math.isnan(s["final"]["accuracy"])
    assert rows(out)[-1]["consensus_distance"] == "nan"
    assert "diverged at round 1" in res.output and "consensus distance nan" in res.output


def test_on_diverge_continue_runs_every_round_and_still_says_diverged(tmp_path):
    out = tmp_path / "r"
    res = invoke("run", "--rule", "mean", "--attack", "non-finite", *SMALL, "--on-diverge", "continue", "--out", out)
    assert res.exit_code == 3
    s = summary(out)
    assert s["status"] == "diverged" and s["diverged_round"] == 1 and s["rounds_done"] == 4
    assert len(rows(out)) == 5


def test_huge_sign_flip_reports_the_last_value_not_a_stale_finite_one(tmp_path):
    out = tmp_path / "r"
    res = invoke("run", "--rule", "mean", "--attack", "sign-flip", "--attack-param", "scale=1e6", "--rounds", "40",
                 "-q", "--out", out)
    s = summary(out)
    assert res.exit_code == 3 and s["status"] == "diverged"
    last = rows(out)[-1]["consensus_distance"]
    assert s["final"]["consensus_distance"] != s["final"]["consensus_distance"] and last == "nan"


def test_infinite_lr_is_bad_input_and_overflowing_lr_is_diverged(tmp_path):
    res = invoke("run", "--lr", "inf", *SMALL, "--out", tmp_path / "a")
    assert res.exit_code == 2 and "train.lr = inf" in res.output and not (tmp_path / "a").exists()
    res = invoke("run", "--lr", "1e300", *SMALL, "--out", tmp_path / "b")
    assert res.exit_code == 3 and "Traceback" not in res.output
    s = summary(tmp_path / "b")
    assert s["status"] == "diverged" and "overflow" in s["diverged_reason"]


def test_python_api_returns_a_diverged_result():
    res = pr.simulate(pr.RunConfig(), rounds=5, rule=pr.Mean(), attack=pr.registry.attacks.create("non-finite"))
    assert res.summary["status"] == "diverged" and res.summary["diverged_round"] == 1


# --- run folders are never overwritten, mixed or lost ----------------------------------------


def test_a_non_empty_out_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "r"
    assert invoke("run", *SMALL, "--out", out).exit_code == 0
    (out / "stale-note.txt").write_text("from an older run")
    before = (out / "metrics.csv").read_bytes()
    res = invoke("run", *SMALL, "--seed", "1", "--out", out)
    assert res.exit_code == 2 and "not empty" in res.output and "--overwrite" in res.output
    assert (out / "metrics.csv").read_bytes() == before  # untouched
    assert invoke("run", *SMALL, "--seed", "1", "--out", out, "--overwrite").exit_code == 0
    assert not (out / "stale-note.txt").exists() and summary(out)["status"] == "completed"
    assert json.loads((out / "config.json").read_text())["seed"] == 1


def test_overwrite_never_clears_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    res = invoke("run", *SMALL, "--out", tmp_path, "--overwrite")
    assert res.exit_code == 2 and "run folders only" in res.output
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_overwrite_clears_a_run_killed_while_writing_its_config(tmp_path):
    """A process killed inside the atomic write of config.json leaves only its temporary: still a run folder."""
    (tmp_path / ".config.json.tmp-4242").write_text("{half")
    (tmp_path / "notes.txt").write_text("x")  # a run folder may hold other files; overwrite clears them with it
    assert invoke("run", *SMALL, "--out", tmp_path, "--overwrite").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "metrics.csv", "params.pt", "summary.json", "timing.csv"]
    (tmp_path.parent / "other").mkdir()
    (tmp_path.parent / "other" / ".thesis.tex.tmp-1").write_text("not ours")
    assert invoke("run", *SMALL, "--out", tmp_path.parent / "other", "--overwrite").exit_code == 2


def test_a_second_writer_fails_with_one_line(tmp_path):
    held = RunDir(tmp_path / "r")  # another run holds the folder
    try:
        res = invoke("run", *SMALL, "--out", tmp_path / "r", "--overwrite")
        assert res.exit_code == 2 and "in use by another run" in res.output
        assert f"pid {os.getpid()}" in res.output and res.output.count("\n") == 1
    finally:
        held.release()
    assert invoke("run", *SMALL, "--out", tmp_path / "r").exit_code == 0  # free again


def test_default_folder_names_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = pr.RunConfig()
    import p2probust.rundir as rd

    class Frozen:  # two runs in the same millisecond
        @staticmethod
        def now():
            from datetime import datetime

            return datetime(2026, 1, 2, 3, 4, 5, 6000)

    monkeypatch.setattr(rd, "datetime", Frozen)
    a, b = pr.simulation.default_out_dir(cfg), pr.simulation.default_out_dir(cfg)
    assert a != b and a.is_dir() and b.is_dir() and b.name == a.name + "-2"
    assert a.name.startswith("20260102-030405.006-torus-trimmed-mean-sign-flip-s0-")
    c = pr.simulation.default_out_dir(cfg.replace(**{"train.lr": 0.1}))
    assert c.name.split("-")[-1] != a.name.split("-")[-1]  # the config hash differs


def test_cli_default_folder_is_removed_when_the_input_is_bad(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("run", "--attack-param", "scal=1", *SMALL).exit_code == 2
    assert not any((tmp_path / "runs").iterdir())


def test_json_is_written_atomically(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    target.write_text('{"status": "old"}')

    def broken_replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(target, b'{"status": "new"}')
    assert target.read_text() == '{"status": "old"}' and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_disk_full_ends_the_run_failed_with_whole_rows(tmp_path, monkeypatch):
    import p2probust.recorder as rec

    real_write, calls = os.write, {"n": 0}

    def filling_write(fd, data):
        calls["n"] += 1
        if calls["n"] == 9:  # headers (2), then rows and timings: fail in the middle of round 3
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(rec.os, "write", filling_write)
    res = invoke("run", *SMALL, "--out", tmp_path / "r")
    assert res.exit_code == 4 and "No space left on device" in res.output and "Traceback" not in res.output
    text = (tmp_path / "r" / "metrics.csv").read_text()
    assert text.endswith("\n")
    widths = {len(r) for r in csv.reader(text.splitlines())}
    assert len(widths) == 1  # every row whole
    s = summary(tmp_path / "r")
    assert s["status"] == "failed" and "No space left" in s["error"]


def test_metrics_csv_is_reproducible_byte_for_byte(tmp_path):
    for name in ("a", "b"):
        assert invoke("run", *SMALL, "--out", tmp_path / name).exit_code == 0
    assert filecmp.cmp(tmp_path / "a" / "metrics.csv", tmp_path / "b" / "metrics.csv", shallow=False)
    assert "wall_s" not in rows(tmp_path / "a")[0]
    with open(tmp_path / "a" / "timing.csv") as fh:
        timing = list(csv.DictReader(fh))
    assert [t["round"] for t in timing] == [r["round"] for r in rows(tmp_path / "a")]
    assert all(float(t["wall_s"]) >= 0 for t in timing)


def test_final_parameters_are_saved_in_a_safe_format(tmp_path):
    res = pr.simulate(pr.RunConfig(), rounds=3, out=tmp_path / "r")
    saved = torch.load(tmp_path / "r" / "params.pt", weights_only=True)
    assert torch.equal(saved["params"], res.params) and torch.equal(saved["is_byzantine"], res.is_byzantine)
    assert not (tmp_path / "r" / ".lock").exists()


# --- stopped runs keep their status --------------------------------------------------------------


def _start(tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "p2probust.cli", "run", "--rounds", "100000", "--eval-every", "1000", "-q", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if (out / "metrics.csv").exists() and len((out / "metrics.csv").read_text().splitlines()) > 3:
            return proc, out
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the run did not start")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_signals_stop_the_run_with_status_interrupted(tmp_path, sig, code):
    proc, out = _start(tmp_path)
    proc.send_signal(sig)
    if sig == signal.SIGINT:  # a second Ctrl-C right after the first: still no traceback
        time.sleep(0.002)
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and err.strip().count("\n") == 0 and signal.Signals(sig).name in err
    s = summary(out)
    assert s["status"] == "interrupted" and s["stopped_by"] == signal.Signals(sig).name
    text = (out / "metrics.csv").read_text()
    assert text.endswith("\n") and len({len(r) for r in csv.reader(text.splitlines())}) == 1
    assert torch.load(out / "params.pt", weights_only=True)["params"].shape[0] == 16


def test_log_lines_reach_the_stderr_of_every_command_in_one_process(tmp_path):
    """The CLI's log handler writes to the current sys.stderr, not to the stream of the first command
    run in the process (click's runner swaps sys.stderr per invocation)."""
    args = ["--nodes", "9", "--byzantine", "1", "--rounds", "2"]
    for i in range(2):
        res = CliRunner().invoke(main, ["run", *args, "--out", str(tmp_path / f"r{i}")])
        assert res.exit_code == 0 and "byzantine nodes: 1 of 9" in res.output, (i, res.output)
