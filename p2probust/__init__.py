"""p2probust: serverless peer-to-peer learning under Byzantine attack, simulated fast.

>>> import p2probust as pr
>>> result = pr.simulate(pr.RunConfig(), rounds=5)   # doctest: +SKIP
"""

from ._version import __version__

import os as _os

# The compiled kernels (p2probust.jit) run on their own threads between torch calls. By default,
# torch's OpenMP workers spin for a while after each parallel op and steal those cores (a round at
# n = 1000 took 24 ms instead of 18 here). Sleeping workers cost torch nothing measurable. This only
# takes effect if torch is not imported yet, and never overrides a value the user set.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import aggregators, attacks, data, gossip, registry, topology  # noqa: E402  (registration)
from .aggregators import (  # noqa: E402
    ARC,
    AbstractAggregator,
    AbstractPreAggregator,
    FABA,
    NeighbourTrimmedMean,
    Bucketing,
    Bulyan,
    CenteredClipping,
    CoordinateWiseMedian,
    GeometricMedian,
    Krum,
    MDA,
    MeaMed,
    Mean,
    MultiKrum,
    NNM,
    SMEA,
    SelfCenteredClipping,
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
    Honest,
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
    Silent,
    SpectralHeterogeneity,
    Stale,
    ZeroVector,
)
from .config import (  # noqa: E402
    AttackConfig,
    ByzantineConfig,
    ConfigError,
    DataConfig,
    EngineConfig,
    RecordConfig,
    PrivacyConfig,
    RuleConfig,
    RunConfig,
    TopologyConfig,
    TrainConfig,
    load_config,
)
from .gossip import (  # noqa: E402
    AbstractGossipRule,
    AggregateAndMix,
    BridgeScreening,
    CSHe,
    CSPlus,
    ClippedGossip,
    GTS,
    Gossip,
    IOS,
    SCC,
    make_rule,
)
from .robustness import empirical_kappa  # noqa: E402
from .simulation import Result, simulate  # noqa: E402
from .checkpoint import resume  # noqa: E402
from .batched import batch_blocker, simulate_seeds  # noqa: E402


from .renames import module_getattr as _module_getattr  # noqa: E402

__getattr__ = _module_getattr(__name__, ("p2probust.aggregators",))  #: old public names (deprecated): p2probust.renames


__all__ = [
    "ALIE",
    "ARC",
    "FABA",
    "NeighbourTrimmedMean",
    "SCC",
    "AbstractAggregator",
    "AbstractAttack",
    "AbstractGossipRule",
    "AbstractPreAggregator",
    "AggregateAndMix",
    "AttackConfig",
    "AttackContext",
    "BridgeScreening",
    "Bucketing",
    "Bulyan",
    "ByzantineConfig",
    "CSHe",
    "CSPlus",
    "CenteredClipping",
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
    "Honest",
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
    "PrivacyConfig",
    "Result",
    "RuleConfig",
    "RunConfig",
    "SMEA",
    "SampleDuplication",
    "SelfCenteredClipping",
    "SignFlip",
    "Silent",
    "SpectralHeterogeneity",
    "Stale",
    "StaticClipping",
    "TopologyConfig",
    "TrainConfig",
    "TrimmedMean",
    "ZeroVector",
    "__version__",
    "aggregators",
    "attacks",
    "batch_blocker",
    "chain",
    "data",
    "empirical_kappa",
    "gossip",
    "load_config",
    "make_rule",
    "registry",
    "resume",
    "simulate",
    "simulate_seeds",
    "topology",
]
