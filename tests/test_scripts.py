"""Every algorithm script: a tiny training run, then evaluate.py on its checkpoint through the contract."""

from __future__ import annotations

import csv
import importlib
import json
from dataclasses import replace

import pytest
import torch

from common.contract import available_scripts
from conftest import TINY, check_agent_acts, run_script


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


@pytest.mark.parametrize("script", available_scripts())
def test_keep_checkpoints(script, trained):
    """--keep-checkpoints: each periodic checkpoint's weights, without resume state, stay in steps/; the last one is the
    final checkpoint's weights, and a kept one loads and acts through the contract."""
    final = torch.load(trained(script), weights_only=True)
    total = int(TINY[script][TINY[script].index("--total-timesteps") + 1])
    kept = {int(p.stem.rsplit("_", 1)[1]): p for p in trained(script).parent.glob(f"steps/{script}_*.pt")}
    assert len(kept) == 2 and total // 2 <= min(kept) < total and max(kept) == total == final["global_step"], kept
    for step, path in kept.items():
        ckpt = torch.load(path, weights_only=True)
        assert "resume" not in ckpt and ckpt["global_step"] == step and ckpt["script"] == script
    last = torch.load(kept[total], weights_only=True)["model"]
    assert all(torch.equal(last[k], v) for k, v in final["model"].items())
    check_agent_acts(kept[min(kept)])


@pytest.mark.parametrize("script", available_scripts())
@pytest.mark.parametrize("change", [{"checkpoint_every": 0}, {"save_model": False}])
def test_keep_checkpoints_without_periodic_checkpoints_is_refused(script, change):
    module = importlib.import_module(script)
    module.check_args(replace(module.Args(), keep_checkpoints=True))  # the defaults keep periodic checkpoints
    with pytest.raises(SystemExit, match="--keep-checkpoints keeps the periodic checkpoints"):
        module.check_args(replace(module.Args(), keep_checkpoints=True, **change))
