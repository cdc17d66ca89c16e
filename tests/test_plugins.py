"""Plugins for real: a tiny installed distribution (a module plus a ``*.dist-info`` folder with
``METADATA`` and ``entry_points.txt``) put on ``sys.path`` adds an aggregator, a gossip rule, an
attack and a topology that the registries, ``p2probust list`` and ``p2probust run`` see; a broken
entry point is one line naming the plugin and its group."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

import p2probust as pr
from p2probust import registry
from p2probust.cli import main
from p2probust.gossip import AggregateAndMix, make_rule
from p2probust.testing import check_aggregator

MODULE = "p2probust_demo_plugin"

PLUGIN_CODE = '''
"""A third-party package adding one component to four families."""
import networkx as nx
import torch

import p2probust as pr
from p2probust.gossip import Gossip


class HalfMean(pr.AbstractAggregator):
    """demo: half the masked mean"""

    robust = False
    fixed_point = False

    def __call__(self, x, mask, f):
        w = mask.to(x.dtype).unsqueeze(-1)
        return 0.5 * (w * torch.where(mask.unsqueeze(-1), x, torch.zeros(()))).sum(0) / w.sum()

    def max_tolerance(self, m):
        return m


def plain_gossip(alpha: float = 1.0):
    """demo: unweighted gossip"""
    return Gossip(alpha, weighted=False)


class DoubleFlip(pr.AbstractAttack):
    """demo: -2 x the recipient's honest mean"""

    def craft(self, ctx):
        return -2.0 * ctx.recipient_honest_mean()


def cycle(n: int, *, seed=None):
    """demo: the cycle on n nodes"""
    return nx.cycle_graph(n)
'''

ENTRY_POINTS = f"""
[p2probust.aggregators]
demo-half-mean = {MODULE}:HalfMean

[p2probust.rules]
demo-gossip = {MODULE}:plain_gossip

[p2probust.attacks]
demo-flip = {MODULE}:DoubleFlip

[p2probust.topologies]
demo-cycle = {MODULE}:cycle
"""


def _install(root, name: str, entry_points: str, code: str | None) -> None:
    """Write a distribution as an installer leaves it in site-packages."""
    if code is not None:
        (root / f"{name}.py").write_text(textwrap.dedent(code))
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def fresh_registries(monkeypatch):
    """Registries that load entry points again, and forget what the test added."""
    for family in registry.FAMILIES:
        reg = getattr(registry, family)
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))
        monkeypatch.setattr(reg, "_plugins_loaded", False)
    yield
    sys.modules.pop(MODULE, None)


@pytest.fixture
def plugin(tmp_path, monkeypatch, fresh_registries):
    site = tmp_path / "site"
    site.mkdir()
    _install(site, MODULE, ENTRY_POINTS, PLUGIN_CODE)
    monkeypatch.syspath_prepend(str(site))
    return site


def test_every_family_has_its_entry_point_group():
    assert registry.FAMILIES == ("topologies", "placements", "tasks", "partitions", "rules",
                                 "aggregators", "preaggregators", "attacks")
    for family in registry.FAMILIES:
        assert getattr(registry, family).group == f"p2probust.{family}"


def test_registries_see_the_plugin(plugin):
    agg = registry.aggregators.create("demo-half-mean")
    assert isinstance(agg, pr.AbstractAggregator)
    x, mask = torch.tensor([[2.0, 4.0], [6.0, 8.0], [9.0, 9.0]]), torch.tensor([True, True, False])
    assert torch.equal(agg(x, mask, torch.tensor(0)), torch.tensor([2.0, 3.0]))
    check_aggregator(agg)  # the conformance suite accepts it (it claims no robustness, no fixed point)
    assert isinstance(make_rule("demo-half-mean", alpha=0.5), AggregateAndMix)  # an aggregator is a rule
    rule = make_rule("demo-gossip", alpha=0.25)
    assert isinstance(rule, pr.AbstractGossipRule) and rule.alpha == 0.25
    assert isinstance(registry.attacks.create("demo-flip"), pr.AbstractAttack)
    assert sorted(registry.topologies.create("demo-cycle", n=5).edges) == [(0, 1), (0, 4), (1, 2), (2, 3), (3, 4)]
    assert registry.aggregators.get("demo-half-mean").description == "demo: half the masked mean"


def test_list_shows_the_plugins(plugin):
    res = CliRunner().invoke(main, ["list"])
    assert res.exit_code == 0, res.output
    for name, description in [("demo-half-mean", "demo: half the masked mean"), ("demo-gossip", "demo: unweighted gossip"),
                              ("demo-flip", "demo: -2 x the recipient's honest mean"), ("demo-cycle", "demo: the cycle on n nodes")]:
        line = next(line for line in res.output.splitlines() if line.split() and line.split()[0] == name)
        assert line.endswith(description), line


def test_run_with_plugins_equals_run_with_the_builtins_they_copy(plugin, tmp_path):
    """demo-gossip, demo-flip and demo-cycle are the built-in gossip, sign flip (scale 2) and ring:
    the runs agree byte for byte."""
    common = ["run", "--nodes", "10", "--byzantine", "1", "--rounds", "3", "--seed", "1", "--alpha", "0.3"]
    runner = CliRunner()
    mine = runner.invoke(main, [*common, "--rule", "demo-gossip", "--attack", "demo-flip", "--topology", "demo-cycle",
                                "--out", str(tmp_path / "plugin")])
    assert mine.exit_code == 0, mine.output
    builtin = runner.invoke(main, [*common, "--rule", "gossip", "--attack", "sign-flip", "--attack-param", "scale=2",
                                   "--topology", "ring", "--out", str(tmp_path / "builtin")])
    assert builtin.exit_code == 0, builtin.output
    metrics = (tmp_path / "plugin" / "metrics.csv").read_bytes()
    assert len(metrics.splitlines()) == 5  # header and rounds 0..3
    assert metrics == (tmp_path / "builtin" / "metrics.csv").read_bytes()
    assert '"demo-flip"' in (tmp_path / "plugin" / "config.json").read_text()


@pytest.mark.parametrize("value, reason", [
    ("p2probust_no_such_module:Thing", "ModuleNotFoundError: No module named 'p2probust_no_such_module'"),
    (f"{MODULE}:NoSuchThing", "AttributeError"),
    (f"{MODULE}:VALUE", "is 3, not a class or function"),
])
def test_a_broken_entry_point_is_one_line_naming_plugin_and_group(tmp_path, monkeypatch, fresh_registries, value, reason):
    site = tmp_path / "site"
    site.mkdir()
    _install(site, MODULE, f"[p2probust.aggregators]\nbroken = {value}\n", "VALUE = 3\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(registry.PluginError, match="plugin 'broken'.*group 'p2probust.aggregators'") as err:
        registry.aggregators.names()
    assert reason in str(err.value) and len(str(err.value).splitlines()) == 1
    with pytest.raises(registry.PluginError):  # not silently skipped on the next lookup
        registry.aggregators.get("trimmed-mean")
    assert "sign-flip" in registry.attacks  # other families are unaffected
    for args in (["list", "aggregators"], ["run", "--rule", "trimmed-mean", "--rounds", "1", "--out", str(tmp_path / "r")]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, (args, res.output)
        errors = [line for line in res.stderr.splitlines() if "Error" in line or "Traceback" in line]
        assert len(errors) == 1 and errors[0].startswith("Error: plugin 'broken'"), res.stderr
        assert "p2probust.aggregators" in errors[0] and errors[0] == res.stderr.strip().splitlines()[-1]


def test_the_readme_plugin_example_installs_lists_and_conforms(tmp_path, monkeypatch, fresh_registries):
    """The README's plugin package, as written: its pyproject's entry points and its module."""
    import tomllib
    from pathlib import Path

    from p2probust.testing import check_attack

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Plugins\n", 1)[1].split("\n## ", 1)[0]
    pyproject = tomllib.loads(section.split("# pyproject.toml\n", 1)[1].split("```", 1)[0])
    code = section.split("# p2probust_halfmean.py\n", 1)[1].split("```", 1)[0]
    groups = pyproject["project"]["entry-points"]
    assert set(groups) <= {f"p2probust.{family}" for family in registry.FAMILIES}
    ini = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items())
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "p2probust_halfmean", ini, code)
    monkeypatch.syspath_prepend(str(site))
    try:
        res = CliRunner().invoke(main, ["list"])
        assert res.exit_code == 0 and " half-mean " in res.output and " double-flip " in res.output, res.output
        check_aggregator(registry.aggregators.create("half-mean"))
        check_attack(registry.attacks.create("double-flip", scale=3.0))
    finally:
        sys.modules.pop("p2probust_halfmean", None)


def test_a_broken_topology_plugin_met_while_building_help_is_one_line(tmp_path, monkeypatch, fresh_registries):
    site = tmp_path / "site"
    site.mkdir()
    _install(site, MODULE, "[p2probust.topologies]\nbroken-graph = p2probust_no_such_module:graph\n", None)
    monkeypatch.syspath_prepend(str(site))
    res = CliRunner().invoke(main, ["run", "--help"])  # the help lists the topology names
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr.strip().splitlines() == [
        "Error: plugin 'broken-graph' (entry point 'p2probust_no_such_module:graph' in group 'p2probust.topologies') "
        "failed to load: ModuleNotFoundError: No module named 'p2probust_no_such_module'"]
