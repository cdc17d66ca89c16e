"""Communication graphs for peer-to-peer learning: builders, custom files, neighbour tables,
spectral diagnostics and Byzantine placement.

Importing this package registers the built-in topologies (``ring``, ``torus``, ``random-regular``,
``erdos-renyi``, ``small-world``, ``complete``) and placements (``random``, ``list``, ``degree``,
``betweenness``) in :mod:`p2probust.registry`.

Examples
--------
>>> from p2probust.topology import build_topology, NeighbourTable, place_byzantine
>>> G = build_topology("torus", 16, seed=0)
>>> table = NeighbourTable.from_graph(G)
>>> byz = place_byzantine(G, 2, "degree")
>>> table.byzantine_counts(byz).shape
torch.Size([16])
"""

from p2probust.topology.adversarial import (  # registers two-cliques, two-worlds, ring-of-cliques, attach
    attach_byzantine,
    ring_of_cliques_graph,
    two_cliques_graph,
    two_worlds_graph,
)
from p2probust.topology.builders import (
    complete_graph,
    erdos_renyi_graph,
    random_regular_graph,
    ring_graph,
    small_world_graph,
    torus_graph,
)
from p2probust.topology.checks import validate_graph
from p2probust.topology.custom import build_topology, is_topology_path, load_topology
from p2probust.topology.errors import PlacementError, TopologyError
from p2probust.topology.placement import (
    PlacementReport,
    betweenness_placement,
    cut_placement,
    degree_placement,
    eigenvector_placement,
    list_placement,
    place_byzantine,
    placement_report,
    random_placement,
)
from p2probust.topology.spectral import algebraic_connectivity, laplacian_max_eigenvalue, spectral_gap
from p2probust.topology.table import NeighbourTable

__all__ = [
    "TopologyError",
    "PlacementError",
    "ring_graph",
    "torus_graph",
    "random_regular_graph",
    "erdos_renyi_graph",
    "small_world_graph",
    "complete_graph",
    "load_topology",
    "is_topology_path",
    "build_topology",
    "validate_graph",
    "NeighbourTable",
    "laplacian_max_eigenvalue",
    "algebraic_connectivity",
    "spectral_gap",
    "random_placement",
    "list_placement",
    "degree_placement",
    "betweenness_placement",
    "place_byzantine",
    "attach_byzantine",
    "eigenvector_placement",
    "cut_placement",
    "two_cliques_graph",
    "two_worlds_graph",
    "ring_of_cliques_graph",
    "PlacementReport",
    "placement_report",
]

from p2probust.renames import module_getattr  # noqa: E402

__getattr__ = module_getattr(__name__)  #: NeighborTable (deprecated): p2probust.renames
