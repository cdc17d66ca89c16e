"""The run configuration: frozen dataclasses, TOML loading, one-line validation errors.

A :class:`RunConfig` has one part per concern. A TOML file uses one table per part; keys of the
``[attack]`` and ``[rule]`` tables other than the documented ones are that component's parameters::

    seed = 3
    eval_every = 10

    [topology]
    name = "torus"          # or a path to a .py / .json / .graphml / edge-list file
    nodes = 64

    [byzantine]
    count = 6
    placement = "random"    # random | list | degree

    [attack]
    name = "gaussian"
    sigma = 1.0             # parameter of the attack

    [rule]
    name = "trimmed-mean"
    alpha = 0.5
    tolerance = "oracle"    # or an integer

    [data]
    task = "digits-mlp"
    partition = "dirichlet"
    dirichlet_alpha = 0.1

    [train]
    rounds = 200
    lr = 0.1
    momentum = 0.9
    weight_decay = 0.0      # λ: g ← ∇f + λθ, then momentum
    sampling = "uniform"    # or "epoch" (without replacement), "slice" (contiguous)
    init = "shared"         # or "per-node"; init_scheme = "torch" | "normal" | "zero"
    order = "step-then-gossip"  # or "gossip-then-step"

    [engine]
    compute_time = 0.01
    latency = 0.005         # or "lognormal:mean=0.05,sigma=0.5", "uniform:low=0.01,high=0.1"
    mode = "sync"           # or "async" (with clock = "poisson:rate=50", "wait:k=3", ...)
    bandwidth = "10MB/s"
    drop = 0.05
    churn = "up=50,down=5"
    stragglers = "0.1x5"
    duration = "300s"

    [record]
    every = 5               # per-node values every 5 rounds into nodes.npz (0: off)
    max_nodes = 1000        # beyond this, a seeded sample of nodes

    [privacy]               # DP-SGD at every node (off unless epsilon, clip or noise_multiplier is set)
    epsilon = 2.0           # target ε: σ is calibrated for train.rounds × train.local_steps steps
    delta = 1e-5
    clip = 1.0
"""

from __future__ import annotations

from .base import DEFAULT_NODES, ConfigError, Params
from .engine import EngineConfig
from .observe import PrivacyConfig, RecordConfig
from .parts import AttackConfig, ByzantineConfig, DataConfig, RuleConfig, TopologyConfig, TrainConfig
from .run import RunConfig, from_dict, from_overrides, load_config, load_toml

__all__ = [
    "DEFAULT_NODES", "AttackConfig", "ByzantineConfig", "ConfigError", "DataConfig", "EngineConfig", "Params",
    "PrivacyConfig", "RecordConfig", "RuleConfig", "RunConfig", "TopologyConfig", "TrainConfig", "from_dict",
    "from_overrides", "load_config", "load_toml",
]
