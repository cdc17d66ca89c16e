"""Aggregate once per distinct inbox (same bits as every node aggregating) and the server topology."""

from __future__ import annotations

import pytest
import torch

import p2probust as pr
from p2probust import shared_inbox


def _cfg(**kw) -> pr.RunConfig:
    base = {"topology.name": "complete", "topology.nodes": 40, "byzantine.count": 5, "train.rounds": 3,
            "eval_every": 3, "data.task": "blobs", "rule.name": "trimmed-mean", "rule.alpha": 0.7,
            "attack.name": "sign-flip", "attack.params": {"reference": "global"}, "train.init": "per-node"}
    return pr.RunConfig().replace(**{**base, **kw})


def _with_and_without_groups(cfg: pr.RunConfig, monkeypatch) -> tuple[pr.Result, pr.Result, list]:
    found = []
    detect = shared_inbox.detect
    monkeypatch.setattr(shared_inbox, "detect", lambda kern: found.append(detect(kern)) or found[-1])
    grouped = pr.simulate(cfg)
    monkeypatch.setattr(shared_inbox, "detect", lambda kern: None)
    return grouped, pr.simulate(cfg), found


@pytest.mark.parametrize("jit", ["on", "off"])
@pytest.mark.parametrize("rule, attack, reference", [
    ("trimmed-mean", "sign-flip", "global"), ("median", "sign-flip", "sender"), ("trimmed-mean", "alie", "global"),
])
def test_one_aggregate_per_inbox_is_bit_identical(rule, attack, reference, jit, monkeypatch):
    """Complete graph (41 inputs per node: the wide compiled kernel with jit on), a broadcast
    attack: one aggregation for all honest nodes, and the same parameters and metrics as before."""
    cfg = _cfg(**{"rule.name": rule, "attack.name": attack, "attack.params": {"reference": reference}, "jit": jit})
    grouped, plain, found = _with_and_without_groups(cfg, monkeypatch)
    assert found[0] is not None and found[0].reps.numel() == 1  # all 35 honest nodes share one inbox
    assert torch.equal(grouped.params, plain.params)
    assert grouped.history == plain.history
    assert not torch.equal(plain.params[0], plain.params[1])  # per-node starts, alpha < 1: rows differ


@pytest.mark.parametrize("change", [
    {"attack.name": "silent", "attack.params": {}},  # crashed senders: their slots are absent
    {"train.order": "gossip-then-step", "train.momentum": 0.9},
])
def test_grouping_with_silent_senders_and_the_other_order(change, monkeypatch):
    grouped, plain, found = _with_and_without_groups(_cfg(**change), monkeypatch)
    assert found[0] is not None and found[0].reps.numel() == 1
    assert torch.equal(grouped.params, plain.params) and grouped.history == plain.history


def test_protocol_following_byzantine_nodes_form_their_own_group(monkeypatch):
    """Label flipping: Byzantine nodes act too, with a smaller tolerance (one fewer Byzantine
    neighbour), so two groups; the messages are the senders' own models."""
    cfg = _cfg(**{"attack.name": "label-flip", "attack.params": {}, "rule.name": "median", "data.split_among": "all"})
    grouped, plain, found = _with_and_without_groups(cfg, monkeypatch)
    assert found[0].reps.numel() == 2
    assert torch.equal(grouped.params, plain.params)


@pytest.mark.parametrize("change", [
    {"attack.params": {"reference": "recipient"}},  # the message depends on the recipient
    {"attack.name": "gaussian", "attack.params": {"reference": "global"}},  # a fresh draw per edge
    {"topology.name": "torus", "topology.nodes": 16, "byzantine.count": 2},  # no two closed neighbourhoods coincide
    {"rule.name": "krum"},  # not an order-statistics rule
])
def test_groups_are_not_used_when_not_provably_equal(change, monkeypatch):
    found = []
    detect = shared_inbox.detect
    monkeypatch.setattr(shared_inbox, "detect", lambda kern: found.append(detect(kern)) or found[-1])
    pr.simulate(_cfg(**{"train.rounds": 1, **change}))
    assert found == [None]


def test_attack_broadcast_flags():
    assert pr.attacks.SignFlip(reference="global").broadcast and not pr.attacks.SignFlip().broadcast
    assert not pr.attacks.GaussianNoise(reference="global").broadcast
    assert pr.attacks.LabelFlip().broadcast and pr.attacks.Stale().broadcast


def test_server_equals_complete_graph_alpha_one_with_a_broadcast_attack():
    cfg = _cfg(**{"rule.alpha": 1.0, "train.init": "shared"})
    server = pr.simulate(cfg.replace(**{"topology.name": "server"}))
    complete = pr.simulate(cfg)
    assert torch.equal(server.params, complete.params)
    assert [r["accuracy"] for r in server.history] == [r["accuracy"] for r in complete.history]
    assert server.history[-1]["messages"] == 40 + 35  # 40 uploads, 35 broadcasts to honest clients
    assert complete.history[-1]["messages"] == 40 * 39


def test_server_counts_no_upload_from_crashed_clients():
    res = pr.simulate(_cfg(**{"topology.name": "server", "rule.alpha": 1.0, "attack.name": "silent", "attack.params": {},
                              "train.rounds": 1}))
    assert res.history[-1]["messages"] == 35 + 35  # 35 honest uploads, 35 broadcasts


def test_server_crafts_once_per_byzantine_client_and_all_clients_adopt_one_model():
    """A recipient-relative attack at the server: the representative client sees all n models,
    as the server does; every honest client ends with the same model."""
    res = pr.simulate(_cfg(**{"topology.name": "server", "rule.alpha": 1.0, "attack.params": {"reference": "recipient"},
                              "rule.name": "krum"}))
    honest = res.params[~res.is_byzantine]
    assert torch.equal(honest, honest[:1].expand_as(honest))
    assert res.history[-1]["consensus_distance"] == 0.0


@pytest.mark.parametrize("change, message", [
    ({"rule.alpha": 0.5}, "rule.alpha = 0.5 must be 1"),
    ({"rule.name": "clipped-gossip"}, "aggregates with an aggregator"),
    ({"engine.mode": "async"}, "unset engine.mode = 'async'"),
    ({"engine.drop": 0.1}, "unset engine.drop"),
])
def test_server_rejects_what_it_cannot_run(change, message):
    with pytest.raises(ValueError, match=message):
        pr.simulate(_cfg(**{"topology.name": "server", "rule.alpha": 1.0, **change}))


def test_cli_server_bad_alpha_is_one_line_exit_2(tmp_path):
    from click.testing import CliRunner

    from p2probust.cli import main

    res = CliRunner().invoke(main, ["run", "--topology", "server", "--alpha", "0.5", "--rounds", "1", "-q",
                                    "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "rule.alpha = 0.5 must be 1" in res.output and "Traceback" not in res.output
