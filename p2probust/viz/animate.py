"""``p2probust animate``: the recorded rounds as frames of one drawing, saved as GIF or MP4.

GIF through Pillow (matplotlib's ``PillowWriter``); MP4 through ffmpeg when it is installed.
Frames are the recorded rounds where the metric was measured (accuracy and loss only on
evaluation rounds), thinned evenly to at most ``max_frames``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import Recording
from .graph import GraphFrame

__all__ = ["animate", "frame_indices"]


def frame_indices(rec: Recording, metric: str, max_frames: int) -> np.ndarray:
    """Indices of the recorded rounds to show: those with a measured value, thinned to ``max_frames``."""
    if max_frames < 1:
        raise ValueError(f"max_frames = {max_frames} must be >= 1")
    vals = rec.values(metric)[:, ~rec.byzantine[rec.nodes]]
    have = np.flatnonzero(np.isfinite(vals).any(1))
    if have.size == 0:
        raise ValueError(f"metric {metric!r} was never measured per node in {rec.name!r} (accuracy and loss: only on eval rounds)")
    if have.size > max_frames:
        have = have[np.unique(np.linspace(0, have.size - 1, max_frames).round().astype(int))]
    return have


def animate(rec: Recording, out: str | Path, *, metric: str = "distance", layout: str = "auto", fps: float = 5.0,
            max_frames: int = 120, dpi: int = 90, positions: str | Path | None = None) -> Path:
    """Write the animation of ``metric`` over the recorded rounds to ``out`` (``.gif`` or ``.mp4``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import animation

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"--out {str(out)!r} must end in .gif (Pillow) or .mp4 (ffmpeg)")
    if suffix == ".mp4" and not animation.writers.is_available("ffmpeg"):
        raise ValueError(f"--out {str(out)!r} needs ffmpeg, which is not installed here; write a .gif instead (Pillow)")
    frames = frame_indices(rec, metric, max_frames)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    drawing = GraphFrame(rec, metric=metric, layout=layout, ax=ax, positions=positions)
    fig.tight_layout()
    anim = animation.FuncAnimation(fig, lambda t: drawing.show(int(t)), frames=frames.tolist(), blit=False)
    writer = animation.PillowWriter(fps=fps) if suffix == ".gif" else animation.FFMpegWriter(fps=fps)
    anim.save(str(out), writer=writer, dpi=dpi)
    plt.close(fig)
    return out
