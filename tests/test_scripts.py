"""Every algorithm script: a tiny training run, then evaluate.py on its checkpoint through the contract."""

from __future__ import annotations

import csv
import json

import pytest

from common.contract import available_scripts
from conftest import run_script


@pytest.mark.parametrize("script", available_scripts())
def test_train_then_evaluate(script, trained, tmp_path):
    ckpt = trained(script)
    out = tmp_path / "eval"
    proc = run_script("evaluate", "--checkpoint", str(ckpt), "--num-games", "2", "--num-envs", "2", "--events",
                      "--stall-steps", "300", "--output-dir", str(out), cwd=tmp_path)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "per_game.csv") as f:
        games = list(csv.DictReader(f))
    assert summary["checkpoint"]["script"] == script and len(games) == 2 and summary["pooled"]["n"] == 2
    value_agent = summary["evaluation"]["score_kind"] == "q_values"
    assert summary["qgap"]["label"] == ("Q-value gap" if value_agent else "logit margin (not a Q-value)")
    assert summary["evaluation"]["epsilon"] == (0.001 if value_agent else None)
    assert f"{script} @ {summary['checkpoint']['global_step']} steps" in proc.stdout
