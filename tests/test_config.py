"""RunConfig: defaults, validation messages, TOML loading and dotted overrides."""

from __future__ import annotations

import pytest

from p2probust.config import ConfigError, RunConfig, from_dict, load_config


def test_defaults_are_the_documented_experiment():
    c = RunConfig()
    assert (c.topology.name, c.topology.nodes, c.byzantine.count) == ("torus", None, 2)  # None: 16 for builders
    from p2probust.config import DEFAULT_NODES

    assert DEFAULT_NODES == 16
    assert (c.attack.name, c.rule.name, c.data.task, c.train.rounds) == ("sign-flip", "trimmed-mean", "digits", 100)
    assert c.rule.tolerance == "oracle"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"rule.alpha": 0.0}, "rule.alpha = 0.0"),
        ({"rule.alpha": 1.01}, "rule.alpha = 1.01"),
        ({"train.rounds": 0}, "train.rounds = 0"),
        ({"train.lr": -1.0}, "train.lr = -1.0"),
        ({"train.lr_schedule": "cosine"}, "train.lr_schedule = 'cosine'"),
        ({"data.dirichlet_alpha": 0.0}, "data.dirichlet_alpha = 0.0"),
        ({"rule.tolerance": -1}, "rule.tolerance = -1"),
        ({"seed": -3}, "seed = -3"),
        ({"eval_every": 0}, "eval_every = 0"),
        ({"train.rounds": "ten"}, "train.rounds = 'ten'"),
    ],
)
def test_invalid_values_name_key_value_and_what_is_allowed(changes, message):
    with pytest.raises(ConfigError) as err:
        RunConfig().replace(**changes)
    text = str(err.value)
    assert message in text and "\n" not in text


def test_toml_loading_with_params_and_overrides(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text(
        'seed = 4\n[attack]\nname = "gaussian"\nsigma = 2.5\n[rule]\nname = "median"\ntolerance = 1\n'
        "[train]\nrounds = 7\nlr = 1\n"
    )
    cfg = load_config(path, {"train.rounds": 3, "attack.params": {"reference": "global"}})
    assert cfg.seed == 4 and cfg.train.rounds == 3 and cfg.train.lr == 1.0
    assert dict(cfg.attack.params) == {"sigma": 2.5, "reference": "global"}
    assert cfg.rule.tolerance == 1


def test_unknown_keys_are_errors():
    with pytest.raises(ConfigError, match="unknown config key 'rounds'"):
        from_dict({"rounds": 3})
    with pytest.raises(ConfigError, match=r"unknown key 'h' in \[train\]"):
        from_dict({"train": {"h": 3}})
    # open tables: extra keys are the component's parameters
    cfg = from_dict({"topology": {"name": "two-worlds", "h": 3}, "data": {"task": "digits-mlp", "hidden": 8}})
    assert dict(cfg.topology.params) == {"h": 3} and dict(cfg.data.params) == {"hidden": 8}


def test_byzantine_list_placement():
    cfg = from_dict({"byzantine": {"nodes": [1, 5, 7]}})
    assert cfg.byzantine.placement == "list" and cfg.byzantine.count == 3
    with pytest.raises(ConfigError, match="make them agree"):
        from_dict({"byzantine": {"nodes": [1, 5], "count": 3}})


def test_round_trip_through_dict():
    cfg = RunConfig().replace(**{"attack.params": {"scale": 3.0}, "byzantine.nodes": (2, 3)})
    assert from_dict(cfg.to_dict() | {}) == cfg
