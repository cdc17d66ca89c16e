"""Seeing a run: the graph coloured per node over time, heatmaps, theory overlays, an HTML report.

Everything here reads a saved run folder (``nodes.npz`` and ``graph.json`` come from
``--record-nodes``); drawing functions take ``ax=`` and return their artists, never ``show()``.
"""

from .animate import animate, frame_indices
from .data import METRICS, Recording, hops_to_byzantine, load_recording
from .graph import LAYOUTS, GraphFrame, draw_graph, layout_positions
from .heatmap import ORDERS, hop_summary, node_order, plot_heatmap
from .report import build_report
from .theory import gossip_envelope, honest_mixing_matrix, run_kappa, theory_floor

__all__ = [
    "LAYOUTS", "METRICS", "ORDERS", "GraphFrame", "Recording", "animate", "build_report", "draw_graph",
    "frame_indices", "gossip_envelope", "honest_mixing_matrix", "hop_summary", "hops_to_byzantine",
    "layout_positions", "load_recording", "node_order", "plot_heatmap", "run_kappa", "theory_floor",
]
