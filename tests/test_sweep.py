"""Sweeps: grid expansion and its errors, run folders by config hash, the index, resume after a
kill, failed runs, worst-case tables and heatmaps, and a real local Ray (issue: sweeps)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2probust.cli import main
from p2probust.sweep import Index, load_grid, read_index, run_id, table_text
from p2probust.sweep.index import VOLATILE

GRID = """
seeds = 2
[train]
rounds = 3
[topology]
nodes = 9
[byzantine]
count = 1
[grid]
"rule.name" = ["trimmed-mean", "mean"]
"attack.name" = ["sign-flip", "gaussian"]
[[exclude]]
"rule.name" = "mean"
"attack.name" = "gaussian"
[[include]]
"rule.name" = "median"
"attack.name" = "alie"
"""


def write(tmp_path, text=GRID, name="grid.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_grid_expands_to_product_minus_exclusions_plus_inclusions_times_seeds(tmp_path):
    grid = load_grid(write(tmp_path))
    points = grid.points()
    combos = {(p.values["rule.name"], p.values["attack.name"]) for p in points}
    assert combos == {("trimmed-mean", "sign-flip"), ("trimmed-mean", "gaussian"), ("mean", "sign-flip"), ("median", "alie")}
    assert len(points) == 8 and sorted({p.values["seed"] for p in points}) == [0, 1]
    assert all(p.config.topology.nodes == 9 and p.config.train.rounds == 3 for p in points)
    assert len({p.run_id for p in points}) == 8  # one folder per run
    again = load_grid(write(tmp_path, name="again.toml")).points()
    assert [p.run_id for p in again] == [p.run_id for p in points]  # the id is the config's hash
    assert run_id(points[0].config.replace(out="elsewhere")) == points[0].run_id


@pytest.mark.parametrize("grid, expect", [
    ('[grid]\n"train.lrr" = [0.1]\n', "unknown key 'lrr' in [train]"),
    ('[grid]\n"rule.name" = []\n', "[grid] rule.name is an empty list"),
    ('[grid]\n"attack.scal" = [1.0]\n', "has no parameter 'scal' (did you mean 'scale'?)"),
    ('[grid]\n"rule.name" = ["mean"]\n[[exclude]]\n"rule.name" = "mean"\n', "expands to zero runs"),
    ('[grid]\n"rule.name" = "mean"\n', "must be a list of values"),
    ('seeds = 0\n', "seeds = 0 is invalid"),
    ('[grid]\n"rule.name" = ["mean"]\n[[exclude]]\n"attack.name" = "alie"\n', "[[exclude]] key 'attack.name' is not a [grid] key"),
])
def test_bad_grids_are_one_line_and_start_nothing(tmp_path, grid, expect):
    res = invoke("sweep", write(tmp_path, grid), "--out", tmp_path / "s")
    assert res.exit_code == 2 and expect in res.output and res.output.count("\n") == 1, res.output
    assert not (tmp_path / "s" / "runs").exists()


def test_max_runs_and_dry_run(tmp_path):
    res = invoke("sweep", write(tmp_path), "--out", tmp_path / "s", "--max-runs", 5)
    assert res.exit_code == 2 and "expands to 8 runs, more than --max-runs 5" in res.output
    res = invoke("sweep", write(tmp_path), "--out", tmp_path / "s", "--dry-run")
    assert res.exit_code == 0 and "8 runs (4 points x 2 seeds [0, 1]); 8 to run" in res.output
    assert "estimated memory per run" in res.output and not (tmp_path / "s" / "runs").exists()


def test_unreachable_ray_address_is_one_line(tmp_path):
    pytest.importorskip("ray")
    res = invoke("sweep", write(tmp_path), "--out", tmp_path / "s", "--executor", "ray", "--address", "127.0.0.1:1")
    assert res.exit_code == 2 and "cannot reach the Ray cluster at --address '127.0.0.1:1'" in res.output


def _index_rows(folder):
    index = Index(folder)
    try:
        return index.rows(drop=VOLATILE)
    finally:
        index.close()


def test_sweep_runs_indexes_and_resumes(tmp_path):
    out = tmp_path / "s"
    res = invoke("sweep", write(tmp_path), "--out", out, "--workers", 1)
    assert res.exit_code == 0 and "8 completed" in res.output
    rows = _index_rows(out)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"completed"}
    for r in rows:  # each run's folder is named by its id and holds a whole run
        summary = json.loads((out / "runs" / r["id"] / "summary.json").read_text())
        assert summary["final"]["accuracy"] == r["accuracy"] and r["rule.name"] in ("trimmed-mean", "mean", "median")
    again = invoke("sweep", write(tmp_path), "--out", out)
    assert again.exit_code == 0 and "0 to run, 8 already done" in again.output and "nothing to run" in again.output
    df = read_index(out)
    assert len(df) == 8 and {"rule.name", "attack.name", "seed", "accuracy", "wall_s", "host"} <= set(df.columns)


def test_a_killed_sweep_loses_only_runs_in_flight(tmp_path):
    grid = write(tmp_path, GRID.replace("rounds = 3", "rounds = 30"))
    whole = tmp_path / "whole"
    assert invoke("sweep", grid, "--out", whole, "--workers", 1).exit_code == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "p2probust.cli", "sweep", str(grid), "--out", str(killed),
                             "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (killed / "index.sqlite").exists() and len(_index_rows(killed)) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= len(_index_rows(killed)) < 8
    assert invoke("sweep", grid, "--out", killed, "--workers", 1).exit_code == 0
    assert _index_rows(killed) == _index_rows(whole)


def test_failed_runs_are_recorded_and_retried_only_when_asked(tmp_path):
    script = tmp_path / "flaky.py"
    script.write_text("def build(n, seed=None):\n    raise RuntimeError('no graph')\n")
    grid = write(tmp_path, f'seeds = 1\n[byzantine]\ncount = 1\n[train]\nrounds = 2\n'
                           f'[grid]\n"topology.name" = ["ring", "{script}"]\n')
    out = tmp_path / "s"
    res = invoke("sweep", grid, "--out", out, "--workers", 1)
    assert res.exit_code == 0 and "1 completed, 1 failed" in res.output
    failed = [r for r in _index_rows(out) if r["status"] == "failed"]
    assert len(failed) == 1 and "line 2: RuntimeError: no graph" in failed[0]["error"]
    assert "0 to run" in invoke("sweep", grid, "--out", out, "--dry-run").output
    res = invoke("sweep", grid, "--out", out, "--retry-failed")
    assert "1 to run" in res.output and "1 failed" in res.output


def _fake_index(folder):
    """A hand-made index: accuracy of rule × attack × f × lr × seed (values chosen by hand)."""
    index = Index(folder)
    acc = {("cwtm", "sf"): 0.9, ("cwtm", "alie"): 0.7, ("mean", "sf"): 0.2, ("mean", "alie"): 0.8}
    n = 0
    for (rule, attack), base in acc.items():
        for lr, shift in ((0.1, 0.0), (0.5, -0.1)):
            for seed, noise in ((0, -0.01), (1, 0.01)):
                values = {"rule.name": rule, "attack.name": attack, "train.lr": lr, "seed": seed}
                index.record(values, {"id": f"r{n}", "status": "completed", "final": {"accuracy": base + shift + noise},
                                      "config": values})
                n += 1
    index.close()


def test_worst_case_table_with_byzfl_tuning_is_hand_checked(tmp_path):
    _fake_index(tmp_path)
    df = read_index(tmp_path)
    text = table_text(df, "accuracy", ["rule"], worst_over="attack", tune=["train.lr"], digits=3)
    # cwtm: worst attack alie; lr 0.1 gives 0.70 ± 0.014, lr 0.5 gives 0.60: keep lr 0.1
    # mean: worst attack sf; lr 0.1 gives 0.20, lr 0.5 gives 0.10: keep lr 0.1
    assert "| cwtm | 0.700 ± 0.014 (attack.name=alie, train.lr=0.1) |" in text
    assert "| mean | 0.200 ± 0.014 (attack.name=sf, train.lr=0.1) |" in text
    wide = table_text(df[df["train.lr"] == 0.5], "accuracy", ["rule"], ["attack"], digits=3)
    assert wide.splitlines()[0] == "| rule.name | alie | sf |" and "| mean | 0.700 ± 0.014 | 0.100 ± 0.014 |" in wide
    csv_text = table_text(df, "accuracy", ["rule"], ["attack"], fmt="csv", digits=2)
    assert csv_text.splitlines()[0].startswith("rule.name,train.lr,")  # lr varies: kept as a row key, never averaged


def test_heatmap_draws_the_mean_over_seeds(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from p2probust.sweep import plot_heatmap

    _fake_index(tmp_path)
    df = read_index(tmp_path)
    fig, ax = plt.subplots()
    image = plot_heatmap(df[df["train.lr"] == 0.1], "attack", "rule", "accuracy", ax=ax)
    assert np.allclose(image.get_array(), [[0.7, 0.9], [0.8, 0.2]])  # rows cwtm, mean; columns alie, sf
    plt.close(fig)
    res = invoke("heatmap", tmp_path, "--x", "attack", "--y", "rule", "--out", tmp_path / "h.png")
    assert res.exit_code == 2 and "fix them with --where" in res.output
    res = invoke("heatmap", tmp_path, "--x", "attack", "--y", "rule", "--where", "train.lr=0.1", "--out", tmp_path / "h.png")
    assert res.exit_code == 0 and (tmp_path / "h.png").stat().st_size > 1000


def test_process_pool_gives_the_same_index_as_one_process(tmp_path):
    grid = write(tmp_path)
    assert invoke("sweep", grid, "--out", tmp_path / "a", "--workers", 1).exit_code == 0
    assert invoke("sweep", grid, "--out", tmp_path / "b", "--workers", 2).exit_code == 0
    assert _index_rows(tmp_path / "a") == _index_rows(tmp_path / "b")


@pytest.mark.slow
def test_ray_executor_on_a_real_local_ray(tmp_path):
    pytest.importorskip("ray")
    grid = write(tmp_path, GRID.replace("seeds = 2", "seeds = 1"))
    env = {**os.environ, "RAY_ADDRESS": ""}
    res = subprocess.run([sys.executable, "-m", "p2probust.cli", "sweep", str(grid), "--out", str(tmp_path / "r"),
                          "--executor", "ray", "--workers", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "4 completed" in res.stdout
    assert invoke("sweep", grid, "--out", tmp_path / "l", "--workers", 1).exit_code == 0
    assert _index_rows(tmp_path / "r") == _index_rows(tmp_path / "l")


@pytest.mark.parametrize("grid", sorted((Path(__file__).resolve().parents[1] / "experiments" / "sweeps").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_every_example_grid_is_valid_and_its_first_point_runs(tmp_path, grid):
    points = load_grid(grid).points()
    assert len(points) > 1
    (tmp_path / "first.toml").write_text(_as_run_toml(points[0].config))
    res = invoke("run", "--config", tmp_path / "first.toml", "--rounds", 3, "--out", tmp_path / "r", "-q")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["rule"]["name"] == points[0].config.rule.name


def _as_run_toml(cfg) -> str:
    """A run TOML of a config (tables of scalars and lists only)."""
    data = cfg.to_dict()
    data.pop("out", None)
    lines = [f"{k} = {json.dumps(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    for part, table in data.items():
        if isinstance(table, dict):
            lines.append(f"[{part}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()
                      if v is not None and not isinstance(v, dict) and v not in (float("inf"),)]
            params = table.get("params") or {}
            lines += [f"{k} = {json.dumps(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"
