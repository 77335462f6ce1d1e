"""tools/compare.py on made-up evaluation and run folders: grouping, the statistics (common.stats.score_stats, scipy),
the markdown table, the curves; evaluate.py --compare as a thin call into it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from torch.utils.tensorboard import SummaryWriter

from common.stats import score_stats
from tools import compare


def make_eval(path: Path, script: str, train_seed: int, scores: dict[int, list[float]], steps: int = 1000,
              env_played: str | None = None, exp_name: str | None = None) -> Path:  # fmt: skip
    """An evaluation folder as evaluate.py writes it (the keys tools.compare reads): eval seed offset -> game scores."""
    path.mkdir(parents=True)
    games = [{"game": i, "seed": train_seed + off, "score": s} for off, v in scores.items() for i, s in enumerate(v)]
    with open(path / "per_game.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["game", "seed", "score"])
        w.writeheader()
        w.writerows(games)
    all_scores = [g["score"] for g in games]
    summary = {
        "checkpoint": {"script": script, "global_step": steps, "args": {"seed": train_seed, "exp_name": exp_name or script}},
        "protocol": {"env_id": "BreakoutNoFrameskip-v4"} | ({"env_id_override": env_played} if env_played else {}),
        "evaluation": {"mode": "stochastic", "num_games_per_seed": len(scores[0]), "seeds": list(scores),
                       "stall_steps": 0, "epsilon": None, "ablate": None, "wall_seconds": 10.0},
        "pooled": score_stats(all_scores, strata=[g["seed"] for g in games]),
        "zero_reward_life_fraction": 0.0, "qgap": {"gap": {"mean": 0.1}, "gap_median": {"median": 0.05}},
    }  # fmt: skip
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_evaluations_grouped_by_agent_with_seed_stratified_iqm(tmp_path):
    rng = np.random.default_rng(0)
    scores = {seed: {0: list(rng.integers(0, 50, 6).astype(float)), 1: list(rng.integers(0, 50, 6).astype(float))}
              for seed in (1, 2, 3)}  # fmt: skip
    for seed, s in scores.items():
        make_eval(tmp_path / "evals" / f"ppo_s{seed}", "ppo_atari", seed, s)
    make_eval(tmp_path / "evals" / "ppo_s1_again", "ppo_atari", 1, scores[1])  # a second evaluation of seed 1
    make_eval(tmp_path / "evals" / "ppo_v5", "ppo_atari", 1, scores[1], env_played="ALE/Breakout-v5")
    make_eval(tmp_path / "evals" / "ram", "dqn_ram_atari", 1, {0: [200.0, 300.0, 250.0]}, steps=5000, exp_name="ram_3m")
    result = compare.compare([tmp_path / "evals"], tmp_path / "out")
    rows = {(r["agent"], r["protocol"], len(r["members"])): r for r in result["evaluations"]}
    assert len(result["evaluations"]) == 4 and not result["training"]
    main = rows[("ppo_atari", "BreakoutNoFrameskip-v4, stochastic", 3)]
    pooled = [x for seed in (1, 2, 3) for off in (0, 1) for x in scores[seed][off]]
    strata = [2 * (seed - 1) + off for seed in (1, 2, 3) for off in (0, 1) for _ in range(6)]  # (training, eval seed)
    expected = score_stats(pooled, strata=strata)
    assert main["training_seeds"] == [1, 2, 3] and main["stats"] == expected
    assert main["stats"]["iqm"] == pytest.approx(sps.trim_mean(pooled, 0.25))
    assert main["stats"]["median"] == np.median(pooled)
    ci = expected["iqm_ci95"]
    assert ci[0] < expected["iqm"] < ci[1] and main["per_training_seed_iqm"]["2"] == pytest.approx(
        sps.trim_mean(scores[2][0] + scores[2][1], 0.25))
    again = rows[("ppo_atari", "BreakoutNoFrameskip-v4, stochastic", 1)]
    assert again["members"][0].endswith("ppo_s1_again")  # not pooled with the first evaluation of seed 1
    summary = json.loads((tmp_path / "evals" / "ppo_s1_again" / "summary.json").read_text())
    assert again["stats"] == summary["pooled"]  # one evaluation: its own headline, IQM CI included
    assert rows[("ppo_atari", "ALE/Breakout-v5, stochastic", 1)]["stats"]["n"] == 12
    ram = rows[("dqn_ram_atari", "BreakoutNoFrameskip-v4, stochastic", 1)]
    assert ram["variant"] == "ram_3m" and ram["stats"]["iqm_ci95"] is not None  # one seed, one stratum of 3 games
    md = (tmp_path / "out" / "compare.md").read_text()
    line = next(row for row in md.splitlines() if "| 36 (6 × eval seeds 0 1) | 1 2 3 |" in row)
    assert f"| {expected['iqm']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] | {expected['median']:.1f} |" in line
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved["evaluations"][0]["stats"] == result["evaluations"][0]["stats"]


def make_run(root: Path, seed: int, returns: np.ndarray, pause_after: int | None = None) -> Path:
    run = root / f"BreakoutNoFrameskip-v4__demo__{seed}__0"
    writer = SummaryWriter(str(run))
    table = f"|exp_name|demo|\n|seed|{seed}|\n|env_id|BreakoutNoFrameskip-v4|"
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")  # as common/run.py logs the Args
    for i, r in enumerate(returns):  # a game every 10 s, 100 agent steps each; a 2-hour pause after game pause_after
        pause = 7200 * (pause_after is not None and i > pause_after)
        writer.add_scalar("charts/episodic_return", r, 100 * (i + 1), walltime=1e9 + 10 * i + pause)
    writer.close()
    return run


def test_training_runs_final_scores_and_curves_with_a_band(tmp_path):
    rng = np.random.default_rng(1)
    returns = {1: np.arange(40.0) + rng.normal(0, 2, 40), 2: np.arange(40.0) * 1.5}
    for seed, r in returns.items():
        make_run(tmp_path / "runs", seed, r, pause_after=20 if seed == 2 else None)
    result = compare.compare([tmp_path / "runs"], tmp_path / "out", last_games=10, window=5)
    (row,) = result["training"]
    values = [float(x) for seed in (1, 2) for x in returns[seed][-10:].astype(np.float32)]
    assert row["agent"] == "demo" and row["training_seeds"] == [1, 2] and row["final_step"] == [4000, 4000]
    assert row["stats"] == score_stats(values, strata=[1] * 10 + [2] * 10)
    assert row["hours_running"] == pytest.approx([390 / 3600, 380 / 3600])  # gaps of 10 s; seed 2's pause left out
    assert row["steps_per_s"] == pytest.approx([3900 / 390, 3900 / 380])
    runs = [compare.read_run(Path(m), "charts/episodic_return", 10.0) for m in row["members"]]
    x, y, band = compare.band(runs, "steps", window=5)
    assert x[0] == 500 and x[-1] == 4000 and band.shape == (2, len(x)) and (band[0] <= y).all() and (y <= band[1]).all()
    assert (tmp_path / "out" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| demo | - | BreakoutNoFrameskip-v4 | 1 2 | 4,000 | 20 (≤ 10 per run) |" in result["markdown"]


def test_evaluate_compare_is_a_thin_call(tmp_path):
    import evaluate

    dirs = tuple(str(make_eval(tmp_path / f"e{s}", "ppo_atari", s, {0: [1.0, 2.0, 3.0]}, steps=100 * s)) for s in (1, 2))
    text = evaluate.compare(dirs, tmp_path / "c")
    assert text == compare.compare_evaluations(dirs, tmp_path / "c2").replace(str(tmp_path / "c2"), str(tmp_path / "c"))
    assert text.splitlines()[0].split()[:5] == ["run", "script", "steps", "env", "played"]
    assert text.endswith("(per-game scores; IQM score by training step)")
    assert compare.main([str(tmp_path / "nothing_here")]) == 2
