"""Graph frames, animation and heatmap drawn from a recorded run: what is drawn is what was recorded."""

from __future__ import annotations

import csv
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from PIL import Image  # noqa: E402

import p2probust as pr  # noqa: E402
from p2probust.cli import main  # noqa: E402
from p2probust.config import RunConfig  # noqa: E402
from p2probust.viz import (  # noqa: E402
    animate, draw_graph, hop_summary, hops_to_byzantine, layout_positions, load_recording, node_order, plot_heatmap,
)


@pytest.fixture(scope="module")
def torus_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("torus")
    cfg = RunConfig().replace(**{"train.rounds": 10, "eval_every": 5, "record.every": 2, "byzantine.nodes": (2, 12)})
    pr.simulate(cfg, out=out)
    return out


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ring")
    cfg = RunConfig().replace(**{"topology.name": "ring", "topology.nodes": 9, "train.rounds": 4, "record.every": 2,
                                 "byzantine.nodes": (0,)})
    pr.simulate(cfg, out=out)
    return out


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_frame_colours_are_the_recorded_values(torus_run):
    rec = load_recording(torus_run)
    frame = draw_graph(rec, 6)
    t = rec.frame(6)
    honest = np.flatnonzero(~rec.byzantine)
    np.testing.assert_allclose(frame.nodes.get_array(), rec.arrays["distance"][t, honest], rtol=1e-6)
    assert frame.nodes.norm.__class__.__name__ == "LogNorm" and frame.colorbar is not None
    assert "round 6" in frame.title.get_text()
    # torus on its grid: node i*4 + j at (j, -i); Byzantine nodes 2 and 12 drawn as crosses there
    np.testing.assert_array_equal(frame.byzantine.get_offsets(), [[2, 0], [0, -3]])
    np.testing.assert_array_equal(frame.nodes.get_offsets()[:2], [[0, 0], [1, 0]])


def test_relative_distance_is_distance_over_consensus_distance(torus_run):
    rec = load_recording(torus_run)
    rel = rec.values("relative")
    honest = ~rec.byzantine
    with open(torus_run / "metrics.csv") as fh:
        cd = {int(r["round"]): float(r["consensus_distance"]) for r in csv.DictReader(fh)}
    assert np.isnan(rel[0]).all()  # round 0: one common initial model, no distance to compare
    for t in range(1, len(rec.rounds)):
        np.testing.assert_allclose(rel[t, honest], rec.arrays["distance"][t, honest] / cd[int(rec.rounds[t])], rtol=1e-5)
    frame = draw_graph(rec, 4, metric="relative")
    assert frame.nodes.norm.vmin == pytest.approx(1 / frame.nodes.norm.vmax)  # log scale centred on 1
    attacked = frame.edges.get_colors()[:, 0] > 0.8  # links of Byzantine nodes are red
    assert attacked.sum() == 5 + 2 * 3  # 8 links of nodes 2 and 12; the wrap-arounds 2-14, 12-15, 12-0 as two stubs


def test_torus_wrap_links_become_border_stubs(torus_run):
    frame = draw_graph(load_recording(torus_run))
    segs = np.asarray(frame.edges.get_segments())
    lengths = np.linalg.norm(segs[:, 1] - segs[:, 0], axis=1)
    assert len(segs) == 32 + 8  # 32 links; the 8 wrap-around links as two stubs each
    assert np.isclose(lengths, 1.0).sum() == 24 and np.isclose(lengths, 0.4).sum() == 16


def test_ring_is_circular_in_cyclic_order(ring_run):
    rec = load_recording(ring_run)
    pos = layout_positions(rec)
    angles = np.unwrap(np.arctan2(pos[:, 1], pos[:, 0]))
    assert np.allclose(np.linalg.norm(pos, axis=1), 1.0)
    assert np.allclose(np.diff(angles), 2 * np.pi / 9)


def test_layout_errors(torus_run, tmp_path):
    rec = load_recording(torus_run)
    with pytest.raises(ValueError, match="layout 'hex' is unknown"):
        layout_positions(rec, "hex")
    with pytest.raises(ValueError, match="needs a positions file"):
        layout_positions(rec, "file")
    bad = tmp_path / "pos.json"
    bad.write_text(json.dumps([[0, 0]] * 3))
    with pytest.raises(ValueError, match="expected 16 pairs"):
        layout_positions(rec, "file", positions=bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({str(i): [i, 2 * i] for i in range(16)}))
    assert layout_positions(rec, "file", positions=good)[5].tolist() == [5, 10]
    with pytest.raises(ValueError, match="round 3 was not recorded"):
        rec.frame(3)


def test_hops_to_byzantine_by_hand():
    G = nx.path_graph(6)
    G.add_node(6)  # isolated
    byz = np.zeros(7, dtype=bool)
    byz[[0, 4]] = True
    assert hops_to_byzantine(G, byz).tolist() == [0, 1, 2, 1, 0, 1, -1]
    assert hops_to_byzantine(G, np.zeros(7, dtype=bool)).tolist() == [-1] * 7


def test_heatmap_rows_sorted_by_hops_and_coloured_by_recorded_values(ring_run):
    rec = load_recording(ring_run)
    cols, groups, _ = node_order(rec, "byzantine")
    assert rec.nodes[cols].tolist() == [1, 8, 2, 7, 3, 6, 4, 5]  # ring of 9, Byzantine node 0
    assert groups.tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    fig, ax = plt.subplots()
    art = plot_heatmap(rec, "distance", ax=ax)
    shown = np.asarray(art["mesh"].get_array()).reshape(8, -1)
    np.testing.assert_allclose(shown[:, 1:], rec.arrays["distance"][1:, cols].T, rtol=1e-6)
    assert len(art["separators"]) == 3 and art["colorbar"] is not None
    summary = hop_summary(rec)
    assert [r["hops"] for r in summary] == [1, 2, 3, 4]
    assert summary[0]["distance"] == pytest.approx(float(rec.arrays["distance"][-1, [1, 8]].mean()), rel=1e-6)
    comm_cols, comm_groups, name = node_order(rec, "community")
    assert name == "community" and sorted(comm_cols.tolist()) == sorted(cols.tolist())
    assert (np.diff(comm_groups) >= 0).all()


def test_animation_gif_has_one_frame_per_recorded_round(torus_run, tmp_path, monkeypatch):
    rec = load_recording(torus_run)
    gif = animate(rec, tmp_path / "a.gif", dpi=40)
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == len(rec.rounds) == 6
    acc = animate(rec, tmp_path / "acc.gif", metric="accuracy", dpi=40)
    with Image.open(acc) as im:  # recorded rounds 0, 2, ..., 10; evaluated 0, 5, 10: accuracy frames at 0 and 10
        assert im.n_frames == 2
    with Image.open(animate(rec, tmp_path / "few.gif", dpi=40, max_frames=3)) as im:
        assert im.n_frames == 3
    from matplotlib import animation

    monkeypatch.setattr(animation.writers, "is_available", lambda name: False)
    with pytest.raises(ValueError, match="needs ffmpeg.*write a .gif"):
        animate(rec, tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="must end in .gif"):
        animate(rec, tmp_path / "a.avi")


def test_cli_animate_heatmap_and_graph_frame(torus_run, tmp_path):
    runner = CliRunner()
    for args, name in ((["animate", str(torus_run), "--out"], "c.gif"), (["heatmap", str(torus_run), "--out"], "h.png"),
                       (["plot", "--graph", str(torus_run), "--round", "4", "--out"], "g.png"),
                       (["heatmap", str(torus_run), "--metric", "accuracy", "--order", "community", "--out"], "a.png")):
        res = runner.invoke(main, args + [str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        with Image.open(tmp_path / name) as im:
            assert im.size[0] > 100
    res = runner.invoke(main, ["plot", "--graph", str(torus_run), "--round", "3", "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "round 3 was not recorded" in res.output
