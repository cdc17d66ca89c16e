"""The command line as a user meets it: defaults, flags, TOML, errors (exit 2), plot, list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2probust.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def runner():
    return CliRunner()


def run_ok(runner, *args):
    res = runner.invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def test_help_documents_every_option_with_its_default(runner):
    out = " ".join(run_ok(runner, "run", "--help").output.split())  # undo line wrapping
    for flag in ("--topology", "--nodes", "--byzantine", "--attack", "--rule", "--alpha", "--rounds", "--lr",
                 "--momentum", "--partition", "--dirichlet-alpha", "--task", "--seed", "--out", "--config",
                 "--quiet", "--tolerance", "--data-dir", "--eval-every", "--local-steps", "--lr-schedule"):
        assert flag in out
    assert "[default: torus]" in out and "[default: 16]" in out and "[default: trimmed-mean]" in out


def test_the_readme_flag_example_runs(runner, tmp_path):
    out = tmp_path / "x"
    res = run_ok(runner, "run", "--topology", "torus", "--nodes", "64", "--byzantine", "6", "--attack", "gaussian",
                 "--rule", "trimmed-mean", "--alpha", "0.5", "--rounds", "3", "--lr", "0.1", "--momentum", "0.9",
                 "--partition", "dirichlet", "--dirichlet-alpha", "0.1", "--task", "digits-mlp", "--seed", "3",
                 "--out", str(out), "--quiet")
    assert f"results written to {out}" in res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["topology"]["nodes"] == 64 and cfg["byzantine"]["count"] == 6 and cfg["rule"]["alpha"] == 0.5
    assert cfg["data"]["task"] == "digits-mlp" and cfg["train"]["momentum"] == 0.9 and cfg["seed"] == 3


def test_toml_file_and_flags_override_it(runner, tmp_path):
    out = tmp_path / "t"
    run_ok(runner, "run", "--config", str(ROOT / "experiments" / "example.toml"), "--rounds", "2", "--seed", "5",
           "--out", str(out), "-q")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["rounds"] == 2 and cfg["seed"] == 5  # flags win
    assert cfg["topology"]["nodes"] == 64 and cfg["attack"]["params"] == {"sigma": 1.0}  # file values kept


@pytest.mark.parametrize("toml", sorted((ROOT / "experiments").glob("*.toml")), ids=lambda p: p.stem)
def test_every_experiment_runs_at_smoke_size(runner, tmp_path, toml):
    """Each experiment runs, completes, and runs what its file says (every value it sets is in config.json)."""
    import tomllib

    run_ok(runner, "run", "--config", str(toml), "--rounds", "3", "--out", str(tmp_path / "e"), "-q")
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds_done"] == 3
    assert len((tmp_path / "e" / "metrics.csv").read_text().splitlines()) == 1 + 4  # header, rounds 0 to 3
    written = json.loads((tmp_path / "e" / "config.json").read_text())
    for key, value in tomllib.loads(toml.read_text()).items():
        tables = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in tables:
            if (key, sub) == ("train", "rounds"):
                continue  # overridden by --rounds
            got = written[key] if sub is None else written[key].get(sub, written[key].get("params", {}).get(sub))
            if key == "topology" and sub == "name":
                continue  # a file path, resolved
            assert got == v or (isinstance(v, list) and list(got) == v), (key, sub, got, v)


def test_attack_and_rule_params(runner, tmp_path):
    out = tmp_path / "p"
    run_ok(runner, "run", "--attack", "sign-flip", "--attack-param", "scale=10", "--attack-param", "reference=global",
           "--rounds", "2", "--out", str(out), "-q")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["attack"]["params"] == {"reference": "global", "scale": 10}
    assert "scale=10.0" in cfg["attack"]["repr"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--alpha", "1.5"], "rule.alpha = 1.5"),
        (["--alpha", "0"], "rule.alpha = 0"),
        (["--rule", "nonsense"], "unknown rule 'nonsense'"),
        (["--attack", "nonsense"], "unknown attack 'nonsense'"),
        (["--topology", "nonsense"], "unknown topology 'nonsense'"),
        (["--task", "nonsense"], "unknown task 'nonsense'"),
        (["--partition", "nonsense"], "unknown partition 'nonsense'"),
        (["--byzantine", "16"], "byzantine.count = 16"),
        (["--byzantine", "-1"], "byzantine.count = -1"),
        (["--nodes", "17"], "17"),
        (["--tolerance", "3"], "tolerance f = 3"),
        (["--tolerance", "many"], "rule.tolerance = 'many'"),
        (["--task", "mnist-cnn"], "--data-dir"),
        (["--task", "mnist-cnn", "--data-dir", "/does/not/exist"], "/does/not/exist"),
        (["--momentum", "1.0"], "train.momentum = 1.0"),
        (["--dirichlet-alpha", "0", "--partition", "dirichlet"], "data.dirichlet_alpha = 0"),
        (["--config", "/no/such.toml"], "/no/such.toml"),
        (["--attack-param", "scale"], "key=value"),
        (["--attack-param", "bogus=1"], "bogus"),
        (["--topology", "/no/such/graph.json"], "/no/such/graph.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runner, tmp_path, args, fragment):
    res = runner.invoke(main, ["run", *args, "--rounds", "1", "--out", str(tmp_path / "bad"), "-q"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert "Traceback" not in res.output
    assert fragment in res.output
    assert lines[-1].startswith("Error")


def test_bad_toml_key_is_an_error(runner, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nrounds = 2\nlearning_rate = 0.1\n")
    res = runner.invoke(main, ["run", "--config", str(bad)])
    assert res.exit_code == 2 and "learning_rate" in res.output and "allowed" in res.output


def test_custom_topology_files(runner, tmp_path):
    run_ok(runner, "run", "--topology", str(ROOT / "topologies" / "two_cliques.py"), "--nodes", "12",
           "--byzantine", "1", "--rounds", "2", "--out", str(tmp_path / "c"), "-q")
    edges = tmp_path / "g.edgelist"
    edges.write_text("".join(f"n{i} n{(i + 1) % 8}\nn{i} n{(i + 2) % 8}\n" for i in range(8)))
    run_ok(runner, "run", "--topology", str(edges), "--byzantine", "1", "--rounds", "2", "--out", str(tmp_path / "e"), "-q")
    cfg = json.loads((tmp_path / "e" / "config.json").read_text())
    assert cfg["topology"]["nodes"] == 8


def test_plot_draws_several_runs(runner, tmp_path):
    for rule in ("trimmed-mean", "mean"):
        run_ok(runner, "run", "--rule", rule, "--rounds", "5", "--eval-every", "1", "--out", str(tmp_path / rule), "-q")
    for metric in ("consensus_distance", "accuracy"):
        fig = tmp_path / f"{metric}.png"
        run_ok(runner, "plot", str(tmp_path / "trimmed-mean"), str(tmp_path / "mean"), "--metric", metric, "--out", str(fig))
        assert fig.stat().st_size > 1000
    fig = tmp_path / "time.png"
    run_ok(runner, "plot", str(tmp_path / "mean"), "--metric", "consensus_distance", "--x", "time", "--out", str(fig))
    assert fig.stat().st_size > 1000
    res = runner.invoke(main, ["plot", str(tmp_path / "mean"), "--metric", "nope", "--out", str(tmp_path / "n.png")])
    assert res.exit_code == 2 and "no metric 'nope'" in res.output


def test_list_prints_every_family(runner):
    out = run_ok(runner, "list").output
    for name in ("torus", "ring", "random-regular", "erdos-renyi", "small-world", "complete", "digits", "digits-mlp",
                 "mnist-cnn", "least-squares", "iid", "dirichlet", "extreme", "trimmed-mean", "median", "mean",
                 "gossip", "mh-gossip", "sign-flip", "gaussian", "label-flip", "random", "degree"):
        assert f"  {name} " in out, name


SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="the shared MNIST copy is not beside the checkout")
def test_mnist_cnn_runs_from_the_shared_idx_files(runner, tmp_path):
    out = tmp_path / "mnist"
    run_ok(runner, "run", "--task", "mnist-cnn", "--data-dir", str(SHARED_MNIST), "--rounds", "2", "--eval-every", "2",
           "--lr", "0.1", "--out", str(out), "-q")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["parameters"] > 5000 and cfg["data"]["task"] == "mnist-cnn"


def test_topology_and_task_params(runner, tmp_path):
    out = tmp_path / "tw"
    run_ok(runner, "run", "--topology", "two-worlds", "--nodes", "12", "--topology-param", "h=2", "--byzantine", "1",
           "--task", "digits-mlp", "--task-param", "hidden=8", "--rounds", "2", "--out", str(out), "-q")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["topology"]["params"] == {"h": 2} and cfg["data"]["params"] == {"hidden": 8}
    assert cfg["parameters"] == 64 * 8 + 8 + 8 * 10 + 10
    res = runner.invoke(main, ["run", "--topology", "ring", "--topology-param", "h=2", "--rounds", "1", "-q",
                               "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "has no parameter 'h'" in res.output
    res = runner.invoke(main, ["run", "--task-param", "hidden=8", "--rounds", "1", "-q", "--out", str(tmp_path / "b2")])
    assert res.exit_code == 2 and "hidden" in res.output


@pytest.mark.parametrize("argv, needle", [
    (["run", "--jit", "fast"], "'fast' is not one of"),
    (["run", "--nodes", "abc"], "'abc' is not a valid integer"),
    (["run", "--no-such-flag"], "No such option"),
    (["bogus"], "No such command 'bogus'"),
])
def test_usage_errors_are_one_line(argv, needle):
    """Click's own usage errors follow the project's rule: one line on stderr, exit code 2."""
    out = subprocess.run([sys.executable, "-m", "p2probust.cli", *argv], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and needle in out.stderr and out.stderr.startswith("Error: ")
