"""The HTML report: well formed, every embedded image decodes, the sections a reader needs are there."""

from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner
from PIL import Image

import p2probust as pr
from p2probust.cli import main
from p2probust.config import RunConfig
from p2probust.viz import build_report

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}


class Checker(HTMLParser):
    """Tag balance (every opened element closed in order) and the ``src`` of every image."""

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    cfg = RunConfig().replace(**{"train.rounds": 10, "eval_every": 5, "record.every": 5})
    pr.simulate(cfg, out=base / "cwtm")
    pr.simulate(cfg.replace(**{"rule.name": "mean"}), out=base / "mean")
    pr.simulate(cfg.replace(**{"record.every": 0}), out=base / "plain")  # not recorded: the report says so
    return base


def _check_images(images):
    """Every image is an inline base64 PNG or GIF that Pillow decodes; returns ``[(format, frames)]``."""
    kinds = []
    for src in images:
        match = re.fullmatch(r"data:image/(png|gif);base64,([A-Za-z0-9+/=]+)", src)
        assert match, src[:60]  # self-contained: no file or network references
        with Image.open(io.BytesIO(base64.b64decode(match.group(2)))) as im:
            im.load()
            assert im.format.lower() == match.group(1) and im.size[0] > 100
            kinds.append((im.format, getattr(im, "n_frames", 1)))
    return kinds


def _parse(path):
    text = path.read_text(encoding="utf-8")
    checker = Checker()
    checker.feed(text)
    checker.close()
    return text, checker


@pytest.mark.slow
def test_comparison_report_of_three_runs(runs, tmp_path):
    out = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["report", str(runs / "cwtm"), str(runs / "mean"), str(runs / "plain"),
                                    "--out", str(out), "--frames", "3"])
    assert res.exit_code == 0, res.output
    text, checker = _parse(out)
    assert text.startswith("<!DOCTYPE html>") and checker.errors == [] and checker.stack == []
    kinds = _check_images(checker.images)
    assert kinds.count(("GIF", 2)) == 2  # one animation per recorded run: rounds 5 and 10 (round 0 has no relative distance)
    for needle in ("Comparison", "Placement", "Byzantine neighbours", "Where the attack bites", "Resolved configuration",
                   "hops to nearest Byzantine", "rerun with <code>--record-nodes every=5</code>", "AggregateAndMix(Mean()"):
        assert needle in text, needle
    assert text.count("<tr><td>cwtm</td>") == 1 and "<tr><td>mean</td>" in text  # the comparison table rows


def test_report_is_well_formed_and_every_image_decodes(runs, tmp_path):
    out = tmp_path / "one.html"
    build_report([runs / "cwtm"], out, frames=2)
    text, checker = _parse(out)
    assert text.startswith("<!DOCTYPE html>") and checker.errors == [] and checker.stack == []
    kinds = _check_images(checker.images)
    assert ("GIF", 2) in kinds and sum(k == ("PNG", 1) for k in kinds) == 6  # 3 curves, 3 heatmaps
    assert "Comparison" not in text and "Where the attack bites" in text
    config = json.loads((runs / "cwtm" / "config.json").read_text())["byzantine"]
    assert f"Byzantine nodes: {config['nodes']}" in text
    hist = Counter(config["neighbors_per_honest_node"].values())
    for b, count in hist.items():  # the placement table: honest nodes per number of Byzantine neighbours
        assert f"<tr><td>{b}</td><td>{count}</td></tr>" in text


def test_report_errors_are_one_line(tmp_path):
    res = CliRunner().invoke(main, ["report", str(tmp_path), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "has no metrics.csv" in res.output
