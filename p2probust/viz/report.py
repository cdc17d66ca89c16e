"""``p2probust report``: one self-contained HTML page about one or several run folders.

Images are embedded as base64 PNG (curves, heatmap) and GIF (the animation), so the file can be
mailed or archived alone. For each run: status and final values, the placement summary (how many
honest nodes have 0, 1, 2, ... Byzantine neighbours, the nodes at risk), where the attack bites
(per-node values grouped by hops to the nearest Byzantine node, when recorded), the metric curves
(with the theory overlay on tasks with a known optimum), the heatmap, the animation and the
resolved configuration. With several runs, a comparison table and overlaid curves come first.
"""

from __future__ import annotations

import base64
import html
import io
import json
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from ..plots import load_run, plot_metric, plot_theory
from .animate import animate
from .data import load_recording
from .heatmap import hop_summary, plot_heatmap

__all__ = ["build_report"]

#: columns of the comparison table: (metrics.csv column, header)
COMPARED = (("accuracy", "accuracy"), ("node_acc_min", "worst node acc."), ("consensus_distance", "consensus dist."),
            ("dist_to_opt", "‖θ̄−θ*‖²"), ("loss", "loss"))

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.row>figure{margin:0;flex:1 1 420px}
figcaption{font-size:.9em;color:#555}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
.note{color:#555;font-size:.95em}.bad{color:#b00020;font-weight:600}"""


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(src: str, caption: str) -> str:
    return f'<figure><img src="{src}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _curves(runs: list[dict], metric: str, theory: bool = False) -> str | None:
    import matplotlib.pyplot as plt

    runs = [r for r in runs if metric in r["columns"] and any(v is not None for v in r["columns"][metric])]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.8))
    plot_metric(runs, metric, ax=ax)
    if theory:
        try:
            plot_theory(runs, metric, ax=ax)
        except (ValueError, FileNotFoundError):
            pass  # no theory for this run (e.g. a rule without a κ); the curve alone
    return _figure(_png(fig), f"{metric.replace('_', ' ')} per round" + (" with the theory overlay" if theory else ""))


def _placement(config: dict) -> str:
    byz = config.get("byzantine", {})
    per_node = {int(k): v for k, v in byz.get("neighbors_per_honest_node", {}).items()}
    hist = sorted(Counter(per_node.values()).items())
    exposed = sorted(i for i, b in per_node.items() if b > 0)
    out = [f"<p>Byzantine nodes: {_fmt(byz.get('nodes'))} (placement {_fmt(byz.get('placement'))}); "
           f"tolerance: {_fmt(config.get('rule', {}).get('tolerance_used'))}.</p>",
           _table(["Byzantine neighbours", "honest nodes"], hist),
           f"<p>Honest nodes with a Byzantine neighbour: {_fmt(exposed) if exposed else 'none'}.</p>"]
    if byz.get("at_risk"):
        out.append(f'<p class="bad">At risk (half or more of their neighbours Byzantine): {_fmt(byz["at_risk"])}</p>')
    return "\n".join(out)


def _recorded(run: dict, frames: int) -> str:
    """Where the attack bites, heatmap and animation of a recorded run ('' otherwise)."""
    import matplotlib.pyplot as plt

    try:
        rec = load_recording(run["path"])
    except FileNotFoundError:
        return '<p class="note">Not recorded per node: rerun with <code>--record-nodes every=5</code> for the heatmap and animation.</p>'
    rows = hop_summary(rec)
    table = _table(["hops to nearest Byzantine", "honest nodes", "relative distance (mean over rounds)",
                    "mean ‖θᵢ−θ̄_H‖² (last round)", "mean accuracy", "at round"],
                   [[("no Byzantine" if r["hops"] < 0 else r["hops"]), r["nodes"], r["relative"], r["distance"],
                     r["accuracy"], r["accuracy_round"] if r["accuracy"] is not None else r["distance_round"]] for r in rows])
    figs = [_bite(rows)]
    captions = {"relative": "distance to the honest mean ÷ consensus distance (red: farther than average)",
                "distance": "distance to the honest mean", "accuracy": "test accuracy"}
    for metric, caption in captions.items():
        try:
            fig, ax = plt.subplots(figsize=(6.4, 4))
            plot_heatmap(rec, metric, ax=ax)
            figs.append(_figure(_png(fig), f"{caption} per honest node and round, nearest to the attack on top"))
        except ValueError:
            plt.close(fig)
    with tempfile.TemporaryDirectory() as tmp:
        gif = animate(rec, Path(tmp) / "a.gif", metric="relative", max_frames=frames, dpi=70, fps=4)
        src = "data:image/gif;base64," + base64.b64encode(gif.read_bytes()).decode()
    anim = _figure(src, "distance to the honest mean ÷ consensus distance on the graph, over the recorded rounds "
                        "(red: farther than the average honest node; crosses: Byzantine nodes, red lines: their links)")
    return (f"<h3>Where the attack bites</h3>{figs.pop(0)}{table}<div class=\"row\">{''.join(figs)}</div>"
            f"<h3>Consensus on the graph</h3><div class=\"row\">{anim}</div>")


def _bite(rows: list[dict]) -> str:
    """One sentence comparing the honest neighbours of Byzantine nodes (1 hop) with the nodes farther away."""
    near = next((r for r in rows if r["hops"] == 1), None)
    far = [r for r in rows if r["hops"] > 1]
    if near is None or not far:
        return ""
    n_far = sum(r["nodes"] for r in far)
    words = []
    if near["relative"] is not None and all(r["relative"] is not None for r in far):
        r_far = sum(r["relative"] * r["nodes"] for r in far) / n_far
        words.append(f"Averaged over the recorded rounds, the {near['nodes']} honest neighbours of Byzantine nodes sit "
                     f"at {near['relative']:.2f}× the consensus distance from the honest mean, the {n_far} honest nodes "
                     f"two or more hops away at {r_far:.2f}×.")
    if near["accuracy"] is not None and all(r["accuracy"] is not None for r in far):
        a_far = sum(r["accuracy"] * r["nodes"] for r in far) / n_far
        words.append(f"At round {near['accuracy_round']} their accuracy is {near['accuracy']:.3f} against {a_far:.3f}.")
    return f"<p>{' '.join(words)}</p>" if words else ""


def _run_section(run: dict, frames: int) -> str:
    cfg, summ = run["config"], run["summary"]
    final = summ.get("final", {})
    status = summ.get("status", "unknown")
    title = (f"{cfg.get('topology', {}).get('name')} · n = {cfg.get('topology', {}).get('nodes')} · "
             f"{cfg.get('attack', {}).get('repr', cfg.get('attack', {}).get('name'))} vs "
             f"{cfg.get('rule', {}).get('repr', cfg.get('rule', {}).get('name'))}")
    finals = _table(["status", "rounds"] + [h for c, h in COMPARED if c in final],
                    [[status, summ.get("rounds_done")] + [final[c] for c, _ in COMPARED if c in final]])
    theory = "dist_to_opt" in run["columns"]
    curves = [_curves([run], m, theory=(m == "dist_to_opt")) for m in
              (("dist_to_opt", "consensus_distance") if theory else ("accuracy", "consensus_distance", "node_acc_min"))]
    conf = html.escape(json.dumps(cfg, indent=2, default=str))
    return (f"<h2>{html.escape(run['name'])}</h2><p>{html.escape(title)}</p>{finals}"
            f"<h3>Placement</h3>{_placement(cfg)}"
            f"<h3>Metric curves</h3><div class=\"row\">{''.join(c for c in curves if c)}</div>"
            f"{_recorded(run, frames)}"
            f"<details><summary>Resolved configuration</summary><pre>{conf}</pre></details>")


def _comparison(runs: list[dict]) -> str:
    rows = []
    for r in runs:
        c, f = r["config"], r["summary"].get("final", {})
        rows.append([r["name"], c.get("rule", {}).get("name"), c.get("attack", {}).get("name"),
                     len(c.get("byzantine", {}).get("nodes", [])), r["summary"].get("status")]
                    + [f.get(col) for col, _ in COMPARED])
    table = _table(["run", "rule", "attack", "Byzantine", "status"] + [h for _, h in COMPARED], rows)
    curves = [_curves(runs, m) for m in ("accuracy", "node_acc_min", "consensus_distance", "dist_to_opt")]
    return f"<h2>Comparison</h2>{table}<div class=\"row\">{''.join(c for c in curves if c)}</div>"


def build_report(runs: Sequence[str | Path], out: str | Path = "report.html", *, frames: int = 40) -> Path:
    """Write the HTML report of ``runs`` (run folders) to ``out`` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    if not runs:
        raise ValueError("report needs at least one run folder")
    loaded = [load_run(r) for r in runs]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>p2probust report</title>"
             f"<style>{CSS}</style></head><body><h1>p2probust report</h1>"
             f"<p class=\"note\">{len(loaded)} run{'s' if len(loaded) > 1 else ''}: "
             f"{html.escape(', '.join(r['name'] for r in loaded))} · generated {stamp}</p>"]
    if len(loaded) > 1:
        parts.append(_comparison(loaded))
    parts += [_run_section(r, frames) for r in loaded]
    parts.append("</body></html>")
    out = Path(out)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
