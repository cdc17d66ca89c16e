"""Public conformance checks for user components (aggregators, attacks, topologies)."""

from .attacks import check_attack
from .rules import check_aggregator, check_gossip_rule, check_node_subsets

__all__ = ["check_aggregator", "check_attack", "check_gossip_rule", "check_node_subsets"]
