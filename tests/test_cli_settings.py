"""The paper-setting flags and TOML keys as a user reaches them, and the console's final line."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from p2probust.cli import main


@pytest.fixture()
def runner():
    return CliRunner()


def test_flags_reach_the_config_and_the_final_line_reports_node_accuracies(runner, tmp_path):
    out = tmp_path / "r"
    res = runner.invoke(main, [
        "run", "--rounds", "4", "--eval-every", "2", "--weight-decay", "0.01", "--partition", "shards",
        "--shards-per-node", "3", "--init", "per-node", "--init-scheme", "normal", "--init-scale", "0.5",
        "--sampling", "epoch", "--order", "gossip-then-step", "--lr-schedule", "multistep", "--lr-milestones", "2,3",
        "--lr-decay", "0.1", "--normalize", "symmetric", "--out", str(out), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    t = json.loads((out / "config.json").read_text())["train"]
    assert (t["weight_decay"], t["init"], t["init_scheme"], t["sampling"], t["order"]) == (
        0.01, "per-node", "normal", "epoch", "gossip-then-step")
    assert t["lr_milestones"] == [2, 3]
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    assert [float(r["lr"]) for r in rows[1:]] == pytest.approx([0.5, 0.5, 0.05, 0.005])
    last = rows[-1]
    line = res.output.splitlines()[0]
    assert line.startswith("round 4: accuracy of the averaged honest model ")
    assert f"honest node accuracy: mean {float(last['node_acc_mean']):.4g}, min {float(last['node_acc_min']):.4g}" in line


def test_toml_keys(runner, tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('[data]\npartition = "one-class"\nsplit_among = "honest"\n'
                    '[train]\nrounds = 2\nsampling = "slice"\nlr_schedule = "inv-sqrt"\nlr_offset = 4.0\n'
                    'init_scheme = "zero"\n')
    out = tmp_path / "t"
    res = runner.invoke(main, ["run", "--config", str(toml), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    assert [float(r["lr"]) for r in rows[1:]] == pytest.approx([0.25, 0.5 / 5**0.5])


@pytest.mark.parametrize("args, fragment", [
    (["--weight-decay", "-1"], "train.weight_decay = -1.0"),
    (["--init-scale", "0"], "train.init_scale = 0.0"),
    (["--lr-offset", "0"], "train.lr_offset = 0.0"),
    (["--lr-milestones", "5,2"], "train.lr_milestones = (5, 2)"),
    (["--lr-milestones", "a"], "--lr-milestones 'a'"),
    (["--shards-per-node", "0"], "data.shards_per_node = 0"),
    (["--sampling", "random"], "'random' is not one of"),
    (["--task", "least-squares", "--normalize", "unit"], "data.normalize = 'unit'"),
])
def test_bad_values_exit_2_with_one_line(runner, tmp_path, args, fragment):
    res = runner.invoke(main, ["run", *args, "--rounds", "1", "--out", str(tmp_path / "bad"), "-q"])
    assert res.exit_code == 2, res.output
    assert fragment in res.output and "Traceback" not in res.output
