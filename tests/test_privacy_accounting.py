"""Privacy accounting (dp-accounting), calibration, the [privacy] config, and DP runs end to end."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from click.testing import CliRunner
from scipy.optimize import brentq
from scipy.stats import norm

import p2probust as pr
from p2probust.cli import main
from p2probust.config import ConfigError, from_dict
from p2probust.privacy import calibrate_noise, epsilon, tutorial_noise

dp_accounting = pytest.importorskip("dp_accounting")

CASES = [(0.05, 1.0, 100, 1e-5), (0.01, 0.7, 1000, 1e-6), (1.0, 2.0, 10, 1e-5), (0.3, 5.0, 1, 1e-3)]


@pytest.mark.parametrize("q, sigma, steps, delta", CASES)
def test_epsilon_equals_the_library_called_directly(q, sigma, steps, delta):
    accountant = dp_accounting.rdp.RdpAccountant()
    gaussian = dp_accounting.GaussianDpEvent(sigma)
    accountant.compose(gaussian if q == 1 else dp_accounting.PoissonSampledDpEvent(q, gaussian), steps)
    assert epsilon(q, sigma, steps, delta) == accountant.get_epsilon(delta)


@pytest.mark.parametrize("sigma", [0.8, 2.0, 5.0])
def test_one_gaussian_step_is_bounded_by_the_exact_curve(sigma):
    """q = 1, T = 1 is the Gaussian mechanism, whose exact (ε, δ) curve is known in closed form
    (Balle & Wang, ICML 2018, Thm 8): δ(ε) = Φ(1/(2σ) − εσ) − e^ε Φ(−1/(2σ) − εσ). The RDP bound
    must lie above it, and not far (RDP conversion loses a little)."""
    delta = 1e-5

    def exact_delta(eps):
        return norm.cdf(0.5 / sigma - eps * sigma) - math.exp(eps) * norm.cdf(-0.5 / sigma - eps * sigma) - delta

    exact = brentq(exact_delta, 1e-9, 100.0)
    got = epsilon(1.0, sigma, 1, delta)
    assert exact <= got <= 1.6 * exact


def test_epsilon_grows_with_steps_and_edge_cases():
    eps = [epsilon(0.1, 1.1, t, 1e-5) for t in (0, 1, 10, 100)]
    assert eps[0] == 0.0 and eps[1] < eps[2] < eps[3]
    assert epsilon(0.1, 0.0, 5, 1e-5) == math.inf


@pytest.mark.parametrize("target, q, steps", [(1.0, 0.05, 200), (4.0, 0.2, 50)])
def test_calibrated_sigma_is_the_smallest_that_reaches_the_target(target, q, steps):
    sigma = calibrate_noise(target, 1e-5, q, steps)
    assert epsilon(q, sigma, steps, 1e-5) <= target
    assert epsilon(q, sigma - 0.002, steps, 1e-5) > target  # library tolerance 1e-3 on σ


def test_tutorial_calibration_by_hand():
    # √(100 · ln 1e5) / (10 · 1) = √1151.2925 / 10 = 3.39307
    assert tutorial_noise(1.0, 1e-5, 100, 10) == pytest.approx(3.39307, abs=1e-5)
    assert tutorial_noise(10.0, 1e-5, 100, 100) == 1.0  # the max{1, ·}


@pytest.mark.parametrize("table, word", [
    ({"epsilon": 0}, "privacy.epsilon"), ({"epsilon": -1.0}, "privacy.epsilon"), ({"delta": 1.0}, "privacy.delta"),
    ({"delta": 0}, "privacy.delta"), ({"clip": -1.0}, "privacy.clip"), ({"noise_multiplier": -0.5}, "noise_multiplier"),
    ({"sampling": "shuffle"}, "privacy.sampling"), ({"calibration": "magic"}, "privacy.calibration"),
    ({"clip": math.inf, "epsilon": 1.0}, "finite clip"), ({"epsilon": "1"}, "privacy.epsilon"),
    ({"sample_rate": 2.0}, "privacy.sample_rate"), ({"eps": 1.0}, "unknown key 'eps'"),
])
def test_bad_privacy_values_are_one_line_errors(table, word):
    with pytest.raises(ConfigError, match=word) as err:
        from_dict({"privacy": table})
    assert "\n" not in str(err.value)


def test_privacy_table_is_off_by_default_and_kept_out_of_old_configs():
    cfg = pr.RunConfig()
    assert not cfg.privacy.enabled and "privacy" not in cfg.to_dict()
    on = from_dict({"privacy": {"epsilon": 2, "clip": 1}})
    assert on.privacy.enabled and on.privacy.epsilon == 2.0
    assert from_dict(on.to_dict()) == on


def _lsq(**privacy):
    return pr.RunConfig().replace(**{
        "data.task": "least-squares", "topology.nodes": 8, "topology.name": "ring", "byzantine.count": 0,
        "train.rounds": 4, "train.local_steps": 2, "train.lr": 0.05, "train.batch_size": 8, "eval_every": 2,
        **{f"privacy.{k}": v for k, v in privacy.items()},
    })


def test_sigma_that_cannot_reach_the_target_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"privacy.noise_multiplier = 0.3 reaches ε = .* > privacy.epsilon = 0.5"):
        pr.simulate(_lsq(epsilon=0.5, noise_multiplier=0.3), progress=False)


def test_dp_run_reports_the_accountants_epsilon_every_round():
    res = pr.simulate(_lsq(epsilon=3.0, clip=1.0), progress=False)
    info = res.summary["privacy"]
    q, sigma = info["sample_rate"], info["noise_multiplier"]
    assert q == pytest.approx(8 / (1600 / 8))  # batch / mean local size (2000 × 0.8 samples over 8 nodes)
    eps = res.metric("epsilon")
    assert [r for r, _ in eps] == [0, 1, 2, 3, 4]
    assert [e for _, e in eps] == [epsilon(q, sigma, 2 * r, 1e-5) for r in range(5)]
    assert eps[-1][1] <= 3.0 and eps[-1][1] > 2.9  # calibrated for the 4 × 2 planned steps
    assert info["epsilon"] == eps[-1][1] and res.config["privacy"]["noise_multiplier_used"] == sigma
    assert res.summary["final"]["epsilon"] == eps[-1][1] and "epsilon" not in res.summary["best"]  # spent, not a score


def test_sigma_zero_infinite_clip_run_equals_the_non_dp_run():
    plain = pr.simulate(_lsq(), progress=False)
    dp = pr.simulate(_lsq(clip=math.inf, sampling="fixed"), progress=False)
    for a, b in zip(plain.history, dp.history):
        assert {k: v for k, v in b.items() if k != "epsilon"} == a
    assert torch.equal(plain.params, dp.params)


def test_cli_flags_turn_dp_on_and_bad_targets_exit_2(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(main, ["run", "--task", "least-squares", "--nodes", "8", "--topology", "ring", "--rounds", "3",
                               "--byzantine", "0", "--dp-epsilon", "4", "--dp-delta", "1e-6", "--dp-clip", "2",
                               "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "privacy: noise multiplier" in res.output
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[-1]["epsilon"]) <= 4.0 and float(rows[1]["epsilon"]) > 0
    for flag, value in (("--dp-epsilon", "0"), ("--dp-delta", "1"), ("--dp-clip", "-1")):
        bad = runner.invoke(main, ["run", "--rounds", "2", flag, value, "--out", str(tmp_path / "bad")])
        assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1, bad.output


def test_missing_accounting_library_is_a_one_line_error(monkeypatch):
    import sys

    from p2probust.privacy.accountant import MissingDependency

    monkeypatch.setitem(sys.modules, "dp_accounting", None)  # as if not installed
    with pytest.raises(MissingDependency, match=r"pip install 'p2probust\[privacy\]'") as err:
        epsilon(0.123, 1.7, 3, 1e-5)
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)  # the CLI's exit 2


def test_epsilon_is_that_of_the_busiest_node_among_those_asked():
    """Asynchronous nodes take different numbers of steps: ε is the largest among the given nodes."""
    from p2probust.privacy import GaussianDP

    dp = GaussianDP(clip=1.0, noise_multiplier=1.3, sample_rate=0.1, delta=1e-5, steps=torch.tensor([3, 7, 5]))
    honest = torch.tensor([True, False, True])
    assert dp.epsilon(honest) == epsilon(0.1, 1.3, 5, 1e-5)
    assert dp.epsilon() == epsilon(0.1, 1.3, 7, 1e-5) > dp.epsilon(honest)
    assert dp.summary(honest)["epsilon"] == dp.epsilon(honest)
