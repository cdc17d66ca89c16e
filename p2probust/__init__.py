"""p2probust: serverless peer-to-peer learning under Byzantine attack, simulated fast.

>>> import p2probust as pr
>>> result = pr.simulate(pr.RunConfig(), rounds=5)   # doctest: +SKIP
"""

__version__ = "0.1.0"

import os as _os

# The compiled kernels (p2probust.jit) run on their own threads between torch calls. By default,
# torch's OpenMP workers spin for a while after each parallel op and steal those cores (a round at
# n = 1000 took 24 ms instead of 18 here). Sleeping workers cost torch nothing measurable. This only
# takes effect if torch is not imported yet, and never overrides a value the user set.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import aggregators, attacks, data, gossip, registry, topology  # noqa: E402  (registration)
from .aggregators import (  # noqa: E402
    ARC,
    Bucketing,
    Bulyan,
    CentredClipping,
    CoordinateWiseMedian,
    GeometricMedian,
    Krum,
    MDA,
    MeaMed,
    Mean,
    MultiKrum,
    NNM,
    SMEA,
    SelfCentredClipping,
    StaticClipping,
    TrimmedMean,
    chain,
)
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
    RecordConfig,
    RuleConfig,
    RunConfig,
    TopologyConfig,
    TrainConfig,
    load_config,
)
from .gossip import (  # noqa: E402
    AggregateAndMix,
    BridgeScreening,
    CSHe,
    CSPlus,
    ClippedGossip,
    GTS,
    Gossip,
    IOS,
    make_rule,
)
from .robustness import empirical_kappa  # noqa: E402
from .simulation import Result, simulate  # noqa: E402

__all__ = [
    "ALIE",
    "ARC",
    "AbstractAttack",
    "AggregateAndMix",
    "AttackConfig",
    "AttackContext",
    "BridgeScreening",
    "Bucketing",
    "Bulyan",
    "ByzantineConfig",
    "CSHe",
    "CSPlus",
    "CentredClipping",
    "ClippedGossip",
    "ConfigError",
    "CoordinateWiseMedian",
    "DataConfig",
    "Dissensus",
    "EngineConfig",
    "GTS",
    "GaussianNoise",
    "GeometricMedian",
    "Gossip",
    "HugeValue",
    "IOS",
    "IPM",
    "Isolation",
    "Krum",
    "LabelFlip",
    "MDA",
    "MeaMed",
    "Mean",
    "Mimic",
    "MultiKrum",
    "NNM",
    "NonFinite",
    "OptimalALIE",
    "OptimalIPM",
    "RecordConfig",
    "Result",
    "RuleConfig",
    "RunConfig",
    "SMEA",
    "SampleDuplication",
    "SelfCentredClipping",
    "SignFlip",
    "SpectralHeterogeneity",
    "StaticClipping",
    "TopologyConfig",
    "TrainConfig",
    "TrimmedMean",
    "ZeroVector",
    "__version__",
    "aggregators",
    "attacks",
    "chain",
    "data",
    "empirical_kappa",
    "gossip",
    "load_config",
    "make_rule",
    "registry",
    "simulate",
    "topology",
]
