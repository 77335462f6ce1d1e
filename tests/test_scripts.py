"""Every algorithm script: a tiny training run, then evaluate.py on its checkpoint through the contract."""

from __future__ import annotations

import csv
import importlib
import json
from dataclasses import replace

import pytest
import torch

from common.contract import available_scripts
from common.run import check_run_args
from conftest import TINY, check_agent_acts, interrupt_when_training, one_line_error, run_script

# scripts whose checkpoints are agents (make_agent); slot_pretrain_atari.py trains slot_attn_atari.py's encoder, no agent
AGENTS = [s for s in available_scripts() if hasattr(importlib.import_module(s), "make_agent")]


@pytest.mark.parametrize("script", AGENTS)
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
    if script in AGENTS:
        check_agent_acts(kept[min(kept)])


@pytest.mark.parametrize("script", available_scripts())
@pytest.mark.parametrize("change", [{"checkpoint_every": 0}, {"save_model": False}])
def test_keep_checkpoints_without_periodic_checkpoints_is_refused(script, change):
    module = importlib.import_module(script)
    check_run_args(replace(module.Args(), keep_checkpoints=True))  # the defaults keep periodic checkpoints
    with pytest.raises(SystemExit, match="--keep-checkpoints keeps the periodic checkpoints"):
        check_run_args(replace(module.Args(), keep_checkpoints=True, **change))


@pytest.mark.parametrize("script", available_scripts())
def test_ctrl_c_saves_exits_0_and_prints_the_resume_command(script, tmp_path):
    flags = dict(zip(TINY[script][::2], TINY[script][1::2])) | {"--total-timesteps": "1000000", "--eval-episodes": "0"}
    proc, out = interrupt_when_training(script, *(x for kv in flags.items() for x in kv), cwd=tmp_path)
    assert proc.returncode == 0, out
    (ckpt_path,) = tmp_path.glob(f"runs/*/{script}.pt")
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert 0 < ckpt["global_step"] < 1_000_000 and "resume" in ckpt and ckpt["resume"]["rng"] is not None
    assert f"resume with: python {script}.py --resume {ckpt_path.relative_to(tmp_path)}" in out, out[-2000:]
    assert not list(ckpt_path.parent.glob(".*.tmp")), "no stray temp file"


@pytest.mark.parametrize("script", available_scripts())
def test_smallest_budgets_run(script, tmp_path):
    """Command lines other projects smoke-test with (1 env, 16 steps, batch 4, a replay of a few transitions) run,
    adjusting what they must with a note."""
    replay = ["--buffer-size", "8", "--batch-size", "4", "--learning-starts", "2"]
    policy = {"ppo_atari": ["--num-steps", "128", "--num-minibatches", "4"], "options_atari": ["--num-steps", "128"],
              "slot_pretrain_atari": ["--pretrain-frames", "2", "--batch-size", "2"]}  # fmt: skip
    small = policy.get(script, replay)
    proc = run_script(script, "--num-envs", "1", "--total-timesteps", "16", "--eval-episodes", "0", *small, cwd=tmp_path)
    assert "note: " in proc.stderr
    (ckpt_path,) = tmp_path.glob(f"runs/*/{script}.pt")
    assert torch.load(ckpt_path, weights_only=True)["global_step"] == 16


@pytest.mark.parametrize("script", [s for s in available_scripts() if "dqn" in s or "hybrid" in s])
def test_uniform_replay_ablation_runs(script, tmp_path):
    """--prioritized-replay-alpha 0 is uniform replay (every priority**0 = 1): it runs and learns."""
    run_script(script, *TINY[script], "--prioritized-replay-alpha", "0", "--eval-episodes", "0", cwd=tmp_path)
    (ckpt_path,) = tmp_path.glob(f"runs/*/{script}.pt")
    assert torch.load(ckpt_path, weights_only=True)["resume"]["num_updates"] > 50


@pytest.mark.parametrize("script", available_scripts())
def test_bad_seed_is_one_line(script, tmp_path):
    proc = run_script(script, "--seed", "-1", cwd=tmp_path, check=False)
    assert "--seed must be in" in one_line_error(proc) and not any(tmp_path.iterdir())
