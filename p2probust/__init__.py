"""p2probust: serverless peer-to-peer learning under Byzantine attack, simulated fast.

>>> import p2probust as pr
>>> result = pr.simulate(pr.RunConfig(), rounds=5)   # doctest: +SKIP
"""

__version__ = "0.1.0"

from . import aggregators, attacks, data, gossip, registry, topology  # noqa: E402  (registration)
from .aggregators import CoordinateWiseMedian, Mean, TrimmedMean, chain  # noqa: E402
from .attacks import (  # noqa: E402
    ALIE,
    AbstractAttack,
    AttackContext,
    Dissensus,
    GaussianNoise,
    HugeValue,
    IPM,
    Isolation,
    LabelFlip,
    Mimic,
    NonFinite,
    OptimalALIE,
    OptimalIPM,
    SampleDuplication,
    SignFlip,
    SpectralHeterogeneity,
    ZeroVector,
)
from .config import (  # noqa: E402
    AttackConfig,
    ByzantineConfig,
    ConfigError,
    DataConfig,
    EngineConfig,
    RuleConfig,
    RunConfig,
    TopologyConfig,
    TrainConfig,
    load_config,
)
from .gossip import AggregateAndMix, Gossip, make_rule  # noqa: E402
from .simulation import Result, simulate  # noqa: E402

__all__ = [
    "ALIE",
    "AbstractAttack",
    "AggregateAndMix",
    "AttackConfig",
    "AttackContext",
    "ByzantineConfig",
    "ConfigError",
    "CoordinateWiseMedian",
    "DataConfig",
    "Dissensus",
    "EngineConfig",
    "GaussianNoise",
    "Gossip",
    "HugeValue",
    "IPM",
    "Isolation",
    "LabelFlip",
    "Mean",
    "Mimic",
    "NonFinite",
    "OptimalALIE",
    "OptimalIPM",
    "Result",
    "RuleConfig",
    "RunConfig",
    "SampleDuplication",
    "SignFlip",
    "SpectralHeterogeneity",
    "TopologyConfig",
    "TrainConfig",
    "TrimmedMean",
    "ZeroVector",
    "__version__",
    "aggregators",
    "attacks",
    "chain",
    "data",
    "gossip",
    "load_config",
    "make_rule",
    "registry",
    "simulate",
    "topology",
]
