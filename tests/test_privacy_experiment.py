"""The robust + DP experiment (experiments/dp_robust_momentum.py) at smoke size."""

from __future__ import annotations

import json

import numpy as np
import pytest

@pytest.mark.slow  # 12 short runs, ~15 s on 2 shared cores
def test_experiment_smoke_writes_gaps_and_figure(tmp_path, load_script):
    exp = load_script("experiments/dp_robust_momentum.py")
    result = exp.main(["--smoke", "--out", str(tmp_path / "dp")])
    saved = json.loads((tmp_path / "dp.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert (tmp_path / "dp.png").stat().st_size > 10_000
    for beta in ("0.0", "0.9"):
        for rule in exp.RULES:
            gap = saved["gap"][beta][rule]
            assert len(gap) == 5 and all(np.isfinite(gap))
            assert gap[0] == 0.0  # same seed: every rule starts from the same models
            assert any(g != 0.0 for g in gap[1:])  # the rule does change the trajectory (f = 1 trims)
    assert exp.window([0, 1, 2, 3, 4], 2, 1) == 2.0
    np.testing.assert_allclose(exp.smooth([0.0, 3.0, 0.0], 3), [1.5, 1.0, 1.5])
