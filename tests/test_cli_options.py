"""The options of ``p2probust run`` are generated from the config dataclasses: every option is a
real config key, every leaf has an option or says how it is reached, and every list of choices or
names that ``--help`` shows is exactly what validation accepts."""

from __future__ import annotations

import re

import click
import pytest

from p2probust import registry
from p2probust.cli import main
from p2probust.cli_options import RUN_OPTIONS, config_leaves, overrides_from_flags
from p2probust.config import ConfigError, RunConfig, from_overrides
from p2probust.config.base import Flag
from p2probust.registry import UnknownNameError
from p2probust.typecheck import choices, field_type

RUN = main.commands["run"]
GENERATED = {opt.flag: opt for opt in RUN_OPTIONS}


def _help(flag: str) -> tuple[str, str]:
    """(metavar column, help column) of ``flag`` as ``p2probust run --help`` prints them."""
    ctx = click.Context(RUN, info_name="run")
    param = next(p for p in RUN.params if flag in p.opts)
    return param.get_help_record(ctx)


def _parse(*args: str) -> RunConfig:
    """The config ``p2probust run ARGS`` would run, parsed as the command does (nothing is run)."""
    ctx = RUN.make_context("run", list(args))
    names = {o.key.replace(".", "__") for o in RUN_OPTIONS}
    flags = {k: v for k, v in ctx.params.items() if k in names}
    return from_overrides(overrides_from_flags(flags))


def _get(cfg: RunConfig, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def test_every_option_is_a_config_key_and_every_leaf_is_reachable():
    leaves = {key: f for key, _, f in config_leaves()}
    assert len(GENERATED) == len(RUN_OPTIONS)  # flags are unique
    run_flags = {o for p in RUN.params for o in p.opts}
    for opt in RUN_OPTIONS:
        assert opt.key in leaves and isinstance(leaves[opt.key].metadata["cli"], Flag)
        assert opt.flag in run_flags
    for key, f in leaves.items():
        how = f.metadata.get("cli")
        assert how is not None, f"{key} has neither an option (config.base.option) nor a no_flag reason"
        if isinstance(how, str):  # reached another way: another option, or a TOML key
            part, _, leaf = key.rpartition(".")
            assert how.split()[0] in run_flags or how == f"[{part}] {leaf}", (key, how)


@pytest.mark.parametrize("opt", RUN_OPTIONS, ids=lambda o: o.flag)
def test_the_shown_default_given_as_a_flag_is_the_default(opt):
    """``--help`` shows the dataclass default, and passing that text back gives the default config."""
    _, text = _help(opt.flag)
    if opt.default in (None, "", ()):
        assert "[default: " not in text or opt.flag == "--out"
        return
    assert text.endswith(f"[default: {opt.default}]")
    default = _get(RunConfig(), opt.key)
    given = _get(_parse(opt.flag, str(opt.default)), opt.key)
    assert given == (opt.default if default is None else default)  # --nodes shows 16 for "None: 16"


CHOICES = [o for o in RUN_OPTIONS if isinstance(o.type, click.Choice)]


def test_choice_options_are_the_literal_annotations():
    for key, cls, f in config_leaves():
        allowed = choices(field_type(cls, f.name))
        if allowed is not None:
            assert any(o.key == key for o in CHOICES), f"choice field {key} has no choice option"
    assert {o.key for o in CHOICES} >= {"jit", "engine.mode", "train.sampling", "data.normalize", "topology.weights"}


@pytest.mark.parametrize("opt", CHOICES, ids=lambda o: o.flag)
def test_choices_in_help_are_exactly_what_validation_accepts(opt):
    metavar, _ = _help(opt.flag)
    shown = re.fullmatch(rf"{opt.flag} \[(.*)\]", metavar).group(1).split("|")
    for value in shown:  # each shown choice is accepted, by the flag and by the config (TOML, Python)
        assert _get(_parse(opt.flag, value), opt.key) == value
        assert _get(from_overrides({opt.key: value}), opt.key) == value
    bad = "-".join(shown) + "-x"
    with pytest.raises(click.BadParameter):
        _parse(opt.flag, bad)
    with pytest.raises(ConfigError) as err:  # what a TOML file or Python caller gets
        from_overrides({opt.key: bad})
    message = str(err.value)
    assert message.startswith(f"{opt.key} = {bad!r} is invalid; expected ")
    listed = re.split(r", | or ", message.split("expected ", 1)[1])
    assert listed == shown


NAMED = [o for o in RUN_OPTIONS if o.names]


def test_registry_backed_options():
    assert {o.flag: o.names for o in NAMED} == {"--topology": "topologies", "--placement": "placements",
                                                 "--partition": "partitions"}


@pytest.mark.parametrize("opt", NAMED, ids=lambda o: o.flag)
def test_names_in_help_are_the_registered_names(opt):
    """The names ``--help`` lists are the registry's, which is what a run accepts: an unknown name is
    rejected with a message that lists the same names."""
    _, text = _help(opt.flag)
    reg = getattr(registry, opt.names)
    names = reg.names()
    assert ", ".join(names) in text and "{names}" not in text
    with pytest.raises(UnknownNameError) as err:
        reg.get("no-such-" + names[0])
    assert str(err.value).split("choose one of: ", 1)[1].split(";")[0] == ", ".join(names)


def test_list_options_parse_comma_separated_integers():
    cfg = _parse("--byzantine-nodes", "1,3", "--lr-milestones", "2,5")
    assert cfg.byzantine.nodes == (1, 3) and cfg.train.lr_milestones == (2, 5)
    with pytest.raises(ValueError, match="--byzantine-nodes '1,x' must be comma-separated integers"):
        _parse("--byzantine-nodes", "1,x")
