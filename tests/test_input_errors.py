"""Bad input is one line naming the value and what is allowed, exit code 2, never a traceback, and
a run that cannot fit in memory is refused before it allocates (issue: run records)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from p2probust.cli import main
from p2probust.config import ConfigError, RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--rounds", "1", "-q"]


def bad(*args, expect: str, tmp_path=None) -> str:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "Traceback" not in res.output, res.output
    assert expect in lines[-1], lines[-1]
    return lines[-1]


@pytest.mark.parametrize("out, expect", [
    ("/dev/null", "is an existing file, not a folder"),
    ("/dev/null/run", "cannot create run folder '/dev/null/run'"),
])
def test_unusable_out(out, expect):
    bad("run", *SMALL, "--out", out, expect=expect)


def test_out_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    bad("run", *SMALL, "--out", tmp_path / "f", expect="is an existing file")


@pytest.mark.parametrize("name, text, expect", [
    ("g.graphml", "", "is not valid GraphML"),
    ("g.graphml", "<graphml><graph", "is not valid GraphML"),
    ("g.json", '{"nodes": [{"name": 0}, {"name": 1}], "links": []}', "each entry of 'nodes' needs an 'id'"),
    ("g.txt", "# nothing here\n", "holds no nodes or edges"),
])
def test_malformed_graph_files(tmp_path, name, text, expect):
    (tmp_path / name).write_text(text)
    bad("run", "--topology", tmp_path / name, *SMALL, "--out", tmp_path / "r", expect=expect)


def test_nodes_that_contradict_a_graph_file(tmp_path):
    (tmp_path / "g.txt").write_text("0 1\n1 2\n2 3\n3 0\n")
    bad("run", "--topology", tmp_path / "g.txt", "--nodes", 7, "--byzantine", 1, *SMALL, "--out", tmp_path / "r",
        expect="gives 4 nodes but n = 7")


@pytest.mark.parametrize("body, expect", [
    ("def build(n, seed=None):\n    x = 1\n    raise RuntimeError('no graph today')\n", "line 3: RuntimeError: no graph today"),
    ("def build(n:\n", "line 1: syntax error"),
    ("import sys\nsys.exit(3)\n", "line 2: called sys.exit(3)"),
])
def test_topology_scripts_that_fail(tmp_path, body, expect):
    (tmp_path / "topo.py").write_text(body)
    line = bad("run", "--topology", tmp_path / "topo.py", *SMALL, "--out", tmp_path / "r", expect=expect)
    assert "topo.py" in line


def test_a_topology_script_is_named_before_it_runs_even_when_quiet(tmp_path):
    import subprocess
    import sys

    script = ROOT / "topologies" / "two_cliques.py"
    res = subprocess.run([sys.executable, "-m", "p2probust.cli", "run", "--topology", str(script), "--nodes", "10",
                          "--byzantine", "1", *SMALL, "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"running topology script {script}" in res.stderr


@pytest.mark.parametrize("param, expect", [
    ("scale=abc", "parameter scale = 'abc' is invalid; expected a number"),
    ("scal=10", "has no parameter 'scal' (did you mean 'scale'?); its parameters: scale"),
])
def test_attack_parameters(tmp_path, param, expect):
    bad("run", "--attack-param", param, *SMALL, "--out", tmp_path / "r", expect=expect)


@pytest.mark.parametrize("flag, value, expect", [
    ("--rule", "trimmed-maen", "(did you mean 'trimmed-mean'?)"),
    ("--attack", "sign-flp", "(did you mean 'sign-flip'?)"),
    ("--rule", "nmm+median", "(did you mean 'nnm'?)"),
])
def test_unknown_names_suggest_the_closest(tmp_path, flag, value, expect):
    bad("run", flag, value, *SMALL, "--out", tmp_path / "r", expect=expect)


@pytest.mark.parametrize("toml, expect", [
    ('[topology]\nnodes = "9"\n', "topology.nodes = '9' is invalid; expected an integer"),
    ('[byzantine]\nnodes = "12"\n', "byzantine.nodes = '12' is invalid; expected a list of integers"),
    ("[byzantine]\nnodes = [1.7, 2.2]\n", "1.7 is not an integer node id"),
    ("eval_every = 2.5\n", "eval_every = 2.5 is invalid; expected an integer"),
    ("seed = true\n", "seed = True is invalid; expected an integer"),
    ('[train]\nlr = "fast"\n', "train.lr = 'fast' is invalid; expected a number"),
])
def test_toml_values_of_the_wrong_type(tmp_path, toml, expect):
    (tmp_path / "c.toml").write_text(toml)
    bad("run", "--config", tmp_path / "c.toml", *SMALL, "--out", tmp_path / "r", expect=expect)


def test_a_malformed_table_is_an_error_whatever_flags_are_given(tmp_path):
    (tmp_path / "c.toml").write_text('topology = "ring"\n')
    bad("run", "--config", tmp_path / "c.toml", "--nodes", 9, *SMALL, "--out", tmp_path / "r",
        expect="[topology] must be a table of keys")


def test_integers_are_accepted_for_floats_and_tilde_is_expanded(tmp_path):
    (tmp_path / "c.toml").write_text('out = "~/somewhere"\n[train]\nlr = 1\n')
    cfg = load_config(tmp_path / "c.toml")
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.out == str(Path.home() / "somewhere")
    with pytest.raises(ConfigError, match="on_diverge"):
        RunConfig(on_diverge="ignore")


# --- memory ------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--nodes", "1000000000000"],
    ["--batch-size", "1000000000"],
    ["--task", "digits-mlp", "--task-param", "hidden=100000000"],
])
def test_runs_that_cannot_fit_are_refused_before_allocating(tmp_path, args):
    line = bad("run", *args, *SMALL, "--out", tmp_path / "r", expect="of memory")
    assert "--max-memory" in line and not (tmp_path / "r").exists()


def test_max_memory_is_the_limit_and_is_validated(tmp_path):
    bad("run", "--max-memory", "1MB", *SMALL, "--out", tmp_path / "r", expect="1 MB is --max-memory")
    bad("run", "--max-memory", "lots", *SMALL, "--out", tmp_path / "r", expect="size 'lots' is not understood")


def test_dry_run_prints_config_graph_and_estimate_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["run", "--dry-run", "--nodes", "100"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert '"nodes": 100' in res.output and "graph: 100 nodes, 200 edges" in res.output
    assert "estimated peak memory" in res.output and "memory: fits" in res.output
    assert not (tmp_path / "runs").exists()


def test_memory_estimate_counts_the_big_parts():
    from p2probust.memory import estimate, model_footprint, parse_size
    from p2probust.models import MLP

    est = estimate(n=1000, k=10, d=650, batch=32, local=64, activations=10)
    assert est.parts["node state (params, momentum, gradients)"] == 6 * 1000 * 650 * 4
    assert est.parts["inboxes"] == 2 * 1000 * 10 * 650 * 4
    assert parse_size("8GB") == 8e9 and parse_size("16GiB") == 16 * 2**30 and parse_size("auto", allow_auto=True) is None
    # parameters of Linear(64, 32) and Linear(32, 10); activations: the outputs of the two layers
    assert model_footprint(lambda: MLP(64, 32, 10), (64,)) == (64 * 32 + 32 + 32 * 10 + 10, 32 + 10)
