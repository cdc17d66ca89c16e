"""The empirical robustness coefficient κ and the `p2probust kappa` command."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from p2probust.aggregators import CoordinateWiseMedian, GeometricMedian, Krum, Mean, TrimmedMean
from p2probust.cli import main
from p2probust.robustness import SCENARIOS, empirical_kappa, kappa_bound, make_inputs


@pytest.mark.parametrize("m,f", [(7, 1), (9, 2), (11, 3), (15, 5)])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_cwtm_and_cwmed_stay_below_their_bounds(m, f, scenario):
    x = make_inputs(scenario, 8, m, f, 6, seed=m + f)
    assert float(empirical_kappa(TrimmedMean(), x, f).max()) <= kappa_bound("trimmed-mean", m, f)
    assert float(empirical_kappa(CoordinateWiseMedian(), x, f).max()) <= kappa_bound("median", m, f)


def test_mean_is_not_robust_and_identical_inputs_give_zero():
    x = make_inputs("outliers", 3, 9, 2, 4, seed=0)
    assert float(empirical_kappa(Mean(), x, 2).min()) > 20
    same = torch.ones(9, 4, dtype=torch.float64)
    assert float(empirical_kappa(TrimmedMean(), same, 2)) == 0.0


def test_kappa_by_hand_and_sampled_subsets():
    x = torch.tensor([[0.0], [2.0], [100.0]], dtype=torch.float64)
    # median 2; G = {0, 2}: mean 1, spread 1 -> ratio 1; G = {2, 100}: mean 51, spread 49^2 -> (49/49)^2 = 1
    # G = {0, 100}: mean 50, spread 2500 -> 48^2 / 2500
    assert float(empirical_kappa(CoordinateWiseMedian(), x, 1)) == pytest.approx(1.0)
    x = make_inputs("alie", 2, 16, 6, 3, seed=1)
    a = empirical_kappa(TrimmedMean(), x, 6, max_subsets=50, seed=3)
    b = empirical_kappa(TrimmedMean(), x, 6, max_subsets=50, seed=3)
    assert torch.equal(a, b) and bool((a <= empirical_kappa(TrimmedMean(), x, 6)).all())
    with pytest.raises(ValueError, match="f = 9"):
        empirical_kappa(Mean(), x[0][:9], 9)


def test_cli_kappa_table_and_errors():
    runner = CliRunner()
    res = runner.invoke(main, ["kappa", "--rule", "trimmed-mean", "--m", "9", "--f", "2", "--trials", "3"])
    assert res.exit_code == 0, res.output
    assert "outliers" in res.output and "bound" in res.output
    res = runner.invoke(main, ["kappa", "--rule", "nnm+median", "--m", "7", "--f", "1", "--trials", "2", "--d", "3"])
    assert res.exit_code == 0, res.output
    for args, msg in ((["--rule", "ios"], "gossip rule"), (["--rule", "krum", "--m", "7", "--f", "3"], "at most f = 2"),
                      (["--rule", "nope"], "unknown"), (["--m", "5", "--f", "5"], "--f"),
                      (["--n", "15"], "No such option '--n'")):
        res = runner.invoke(main, ["kappa", *args, "--trials", "1"])
        assert res.exit_code == 2, res.output
        assert msg in res.output and len(res.output.strip().splitlines()) == 1


def test_tutorial_bounds_by_hand():
    # n = 15, f = 5: r = f / (n - 2f) = 1
    assert kappa_bound("trimmed-mean", 15, 5) == 12.0  # 6 r (1 + r)
    assert kappa_bound("median", 15, 5) == kappa_bound("geomed", 15, 5) == 16.0  # 4 (1 + r)^2
    assert kappa_bound("krum", 15, 5) == 24.0  # 6 (1 + r)^2
    assert kappa_bound("krum", 10, 5) is None and kappa_bound("mda", 15, 5) is None


@pytest.mark.parametrize("m,f", [(9, 2), (11, 3)])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_geomed_and_krum_stay_below_their_bounds(m, f, scenario):
    x = make_inputs(scenario, 6, m, f, 5, seed=10 * m + f)
    assert float(empirical_kappa(GeometricMedian(), x, f).max()) <= kappa_bound("geomed", m, f)
    assert float(empirical_kappa(Krum(), x, f).max()) <= kappa_bound("krum", m, f)


def test_cli_kappa_prints_geomed_and_krum_bounds():
    for rule, bound in (("geomed", "16"), ("krum", "24")):
        res = CliRunner().invoke(main, ["kappa", "--rule", rule, "--m", "15", "--f", "5", "--trials", "2", "--d", "3"])
        assert res.exit_code == 0, res.output
        assert all(line.split()[-1] == bound for line in res.output.splitlines()[2:5])
        assert "Robust Machine Learning" in res.output.splitlines()[-1]
