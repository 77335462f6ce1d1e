"""evaluate.py: Q-gap maths, end-to-end outputs, stall guard, bad input, notebook, compare mode (statistics:
test_evaluate_stats.py)."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import tyro
from scipy import stats as sps

import evaluate
from common.checkpoint import CheckpointError, save_checkpoint
from common.contract import load_agent
from conftest import REPO, one_line_error, run_script


def test_top2_gap_and_ties():
    scores = np.array([[1.0, 3.0, 2.0, 0.0], [5.0, 5.0, 1.0, 0.0], [-1.0, -2.0, -3.0, -4.0]])
    np.testing.assert_allclose(evaluate.top2_gap(scores), [1.0, 0.0, 1.0])


def test_merged_gap_treats_noop_and_fire_as_one_action_in_play():
    # NOOP=0, FIRE=1, RIGHT=2, LEFT=3; NOOP and FIRE tie at the top, RIGHT is 0.5 below
    q = np.array([[2.0, 2.0, 1.5, 0.0], [2.0, 2.0, 1.5, 0.0]])
    in_play = np.array([True, False])
    np.testing.assert_allclose(evaluate.top2_gap(q), [0.0, 0.0])
    np.testing.assert_allclose(evaluate.merged_gap(q, in_play, 0, 1, "q_values"), [0.5, 0.0])
    # logits merge by log-sum-exp: the merged pair carries the probability mass of both
    z = np.array([[1.0, 1.0, 1.5, 0.0]])
    np.testing.assert_allclose(evaluate.merged_gap(z, np.array([True]), 0, 1, "logits"), [np.logaddexp(1, 1) - 1.5])


def test_longest_streak():
    assert evaluate.longest_streak(list("bbtbbbtb")) == 3
    assert evaluate.longest_streak([]) == 0


@pytest.fixture(scope="module")
def eval_dir(trained_ppo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "stoch"
    run_script("evaluate", "--checkpoint", str(trained_ppo), "--num-games", "2", "--seeds", "0", "1", "--events",
               "--plots", "--output-dir", str(out), "--stall-steps", "300", cwd=out.parent)  # fmt: skip
    return out


def read(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_outputs_are_complete_and_consistent(eval_dir):
    lives, games = read(eval_dir / "per_life.csv"), read(eval_dir / "per_game.csv")
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert len(games) == 4 and sorted({g["seed"] for g in games}) == ["1", "2"]  # checkpoint seed 1 + offsets 0, 1
    for g in games:
        mine = [r for r in lives if r["game"] == g["game"] and r["seed"] == g["seed"]]
        assert sum(float(r["return"]) for r in mine) == float(g["score"]), "per-life returns sum to the game score"
        assert sum(int(r["length"]) for r in mine) == int(g["length"])
        assert int(g["lives_used"]) == len(mine)
        if g["end_reason"] == "game_over":
            assert len(mine) == 5, "a finished Breakout game has 5 lives"
        assert int(g["zero_reward_lives"]) == sum(r["return"] == "0.0" for r in mine)
    assert all(r["serve_latency"] == "" or int(r["serve_latency"]) >= 1 for r in lives)
    scores, p = [float(g["score"]) for g in games], summary["pooled"]
    assert p["n"] == 4 and p["strata"] == 2 and p["mean"] == pytest.approx(np.mean(scores))
    assert p["iqm"] == pytest.approx(sps.trim_mean(scores, 0.25)) and p["median"] == np.median(scores)
    assert p["iqm_ci95"][0] <= p["iqm"] <= p["iqm_ci95"][1] and p["ci95"][0] <= p["mean"] <= p["ci95"][1]
    assert set(summary["per_seed"]) == {"0", "1"} and summary["per_seed"]["0"]["n"] == 2
    assert summary["evaluation"]["stall_steps"] == 300
    ev = summary["evaluator"]  # the evaluating code, beside the checkpoint's own commit and versions
    assert ev["git_commit"] == summary["checkpoint"]["git_commit"] and {"torch", "numpy", "scipy"} <= set(ev["versions"])
    # Q-gaps per game first: each game's mean / median over its steps, then statistics across the games
    q = summary["qgap"]
    assert q["gap"]["n"] == q["gap_median"]["n"] == 4 and "per game first" in q["aggregation"]
    assert q["gap"]["mean"] == pytest.approx(np.mean([float(g["mean_qgap"]) for g in games]))
    assert q["gap_median"]["median"] == pytest.approx(np.median([float(g["median_qgap"]) for g in games]))
    step_weighted = sum(float(r["mean_qgap"]) * int(r["length"]) for r in lives) / sum(int(r["length"]) for r in lives)
    assert step_weighted == pytest.approx(np.average([float(g["mean_qgap"]) for g in games],
                                                     weights=[int(g["length"]) for g in games]))  # fmt: skip
    assert summary["qgap"]["label"].startswith("logit margin") and summary["evaluation"]["epsilon"] is None
    assert summary["human_normalized"]["human"] == 30.5 and "events" in summary
    assert summary["zero_reward_life_fraction"] == pytest.approx(np.mean([r["zero_reward"] == "1" for r in lives]))
    for png in ["score_hist", "return_by_life", "serve_latency_hist", "fire_per_life", "brick_streaks", "qgap_hist"]:
        assert (eval_dir / f"{png}.png").stat().st_size > 1000


def test_console_headline_is_the_iqm(eval_dir):
    summary = json.loads((eval_dir / "summary.json").read_text())
    p, lines = summary["pooled"], evaluate.console_summary(summary).splitlines()
    lo, hi = p["iqm_ci95"]
    assert lines[1].startswith(f"  IQM {p['iqm']:.2f} (95% CI {lo:.2f}..{hi:.2f}) over 4 games, 2 evaluation seeds | median ")
    assert f"| mean {p['mean']:.2f} +- {p['std']:.2f} (95% CI " in lines[1] and lines[2].startswith("  seed +0: 2 games, IQM")
    assert "human-normalised: IQM" in lines[4] and any("per game: mean" in line for line in lines)


def test_stall_guard_ends_a_never_fire_policy(trained_ppo):
    loaded = load_agent(trained_ppo, torch.device("cpu"))
    loaded.agent.act = lambda obs, greedy: (np.zeros(len(obs), dtype=np.int64), np.zeros((len(obs), 4), np.float32))
    # posing as a value agent with epsilon 1: evaluate must not add exploration of its own (the agent's act does it)
    loaded.agent.score_kind, loaded.agent.epsilon = "q_values", 1.0
    opts = evaluate.EvalArgs(num_games=2, num_envs=2, stall_steps=40, events=True)
    lives, games = evaluate.play(loaded, seed=0, opts=opts, video_root=None)
    assert [g["end_reason"] for g in games] == ["stall", "stall"]
    assert all(g["length"] == 40 and g["score"] == 0 for g in games)
    assert all(r["agent_fire"] == 0 and r["serve_latency"] == "" for r in lives)
    # the default: greedy play (a stall is permanent) is cut after 2000 steps, stochastic play runs to the frame cap
    greedy = evaluate.EvalArgs(num_games=1, num_envs=1, deterministic=True)
    assert evaluate.stall_limit(greedy) == 2000 and evaluate.stall_limit(evaluate.EvalArgs()) == 0
    assert evaluate.stall_limit(evaluate.EvalArgs(stall_steps=500)) == 500
    _, (game,) = evaluate.play(loaded, seed=0, opts=greedy, video_root=None)
    assert game["end_reason"] == "stall" and game["length"] == 2000


def test_a_game_out_of_play_after_the_frame_counter_wraps_ends_as_frame_wrap(trained_ppo, monkeypatch):
    """Breakout's frame counter wraps at 65,536 frames and the ball never comes back (test_events.py): from then on a
    game out of play is over. Checked with the threshold lowered to 200 frames and a never-FIRE policy."""
    loaded = load_agent(trained_ppo, torch.device("cpu"))
    loaded.agent.act = lambda obs, greedy: (np.zeros(len(obs), dtype=np.int64), np.zeros((len(obs), 4), np.float32))
    monkeypatch.setattr(evaluate, "FRAME_COUNTER_WRAP", 200)
    _, (game,) = evaluate.play(loaded, seed=0, opts=evaluate.EvalArgs(num_games=1, num_envs=1), video_root=None)
    assert game["end_reason"] == "frame_wrap" and 200 <= int(game["frames"]) < 200 + 8 and game["score"] == 0


def test_notebook_executes(eval_dir, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("EVAL_DIR", str(eval_dir))
    monkeypatch.setenv("REPO_ROOT", str(REPO))
    nb = nbformat.read(REPO / "notebooks" / "breakout_eval_dashboard.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "4 games" in text and "life 0:" in text
    assert sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs) == 6


def test_compare_mode(eval_dir, tmp_path):
    proc = run_script("evaluate", "--compare", str(eval_dir), str(eval_dir), "--output-dir", str(tmp_path), cwd=tmp_path)
    assert proc.stdout.count("ppo_atari") == 2 and "median gap" in proc.stdout
    assert proc.stdout.split()[6:10] == ["games", "seeds", "IQM", "IQM"]  # the headline first, then median and mean
    summary = json.loads((eval_dir / "summary.json").read_text())
    p, row = summary["pooled"], proc.stdout.splitlines()[1].split()
    assert row[3:7] == ["BreakoutNoFrameskip-v4", "stochastic", "4", "2"] and float(row[7]) == round(p["iqm"], 2)
    assert row[8] == evaluate.fmt_ci(p["iqm_ci95"]) and float(row[10]) == round(p["mean"], 2)
    assert (tmp_path / "compare.png").stat().st_size > 1000 and "by training step" not in proc.stdout
    width = int.from_bytes((tmp_path / "compare.png").read_bytes()[16:20], "big")  # PNG IHDR

    # the same script at a second training step: compare.png gains an IQM-by-step panel; a summary written before the
    # IQM's CI and per-game Q-gaps (committed results) still compares, with "-" for the missing CI
    later = tmp_path / "later"
    shutil.copytree(eval_dir, later)
    summary["checkpoint"]["global_step"] += 1000
    del summary["pooled"]["iqm_ci95"], summary["qgap"]["gap_median"]
    (later / "summary.json").write_text(json.dumps(summary))
    proc = run_script("evaluate", "--compare", str(eval_dir), str(later), "--output-dir", str(tmp_path / "c2"), cwd=tmp_path)
    assert proc.stdout.endswith("(per-game scores; IQM score by training step)\n")
    assert proc.stdout.splitlines()[2].split()[8] == "-"
    assert int.from_bytes((tmp_path / "c2" / "compare.png").read_bytes()[16:20], "big") > width + 300


def test_bad_input_one_line_errors(trained_ppo, tmp_path, capsys, monkeypatch):
    """One real process (no traceback, exit status), then the other cases in-process (the same main(), 8 fewer starts)."""
    assert "no such file" in one_line_error(run_script("evaluate", "--checkpoint", "missing.pt", cwd=tmp_path, check=False))
    monkeypatch.chdir(tmp_path)

    def err(*args):
        capsys.readouterr()
        assert evaluate.main(tyro.cli(evaluate.EvalArgs, args=list(args))) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), lines
        return lines[0]

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(trained_ppo.read_bytes()[:5000])
    assert "corrupt.pt" in err("--checkpoint", str(corrupt))
    ckpt = torch.load(trained_ppo, weights_only=True)
    torch.save({**ckpt, "format_version": 99}, tmp_path / "v99.pt")
    assert "format version 99" in err("--checkpoint", str(tmp_path / "v99.pt"))
    torch.save({**ckpt, "script": "gone_atari"}, tmp_path / "gone.pt")
    assert "gone_atari" in err("--checkpoint", str(tmp_path / "gone.pt"))
    assert "--num-games" in err("--checkpoint", str(trained_ppo), "--num-games", "0")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "not writable" in err("--checkpoint", str(trained_ppo), "--output-dir", str(blocker / "sub"))
    assert "contradicts" in err("--checkpoint", str(trained_ppo), "--env-id", "PongNoFrameskip-v4")
    assert "value agents" in err("--checkpoint", str(trained_ppo), "--epsilon", "0.05")
    assert "no such input branch" in err("--checkpoint", str(trained_ppo), "--ablate", "ram")


@pytest.mark.parametrize("flags, message", [
    (["--checkpoint", "x.pt", "--epsilon", "0.01", "--deterministic"], "error: --epsilon does nothing with --deterministic"),
    (["--compare", "a", "--checkpoint", "x.pt"], "error: --checkpoint cannot be used with --compare"),
    (["--compare", "a", "--plots"], "error: --plots cannot be used with --compare"),
    (["--compare", "a", "--video", "--num-games", "5"], "error: --num-games, --video cannot be used with --compare"),
])  # fmt: skip
def test_flags_that_would_do_nothing_are_errors(flags, message, capsys):
    assert evaluate.main(tyro.cli(evaluate.EvalArgs, args=flags)) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.splitlines() == [out.err.strip()] and out.err.startswith(message)


def test_help_states_the_stall_guard_default(tmp_path):
    text = " ".join(run_script("evaluate", "--help", cwd=tmp_path).stdout.replace("│", " ").split())
    assert "default: 2000 if --deterministic, else never" in text and "108k-frame cap" in text


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_loading_never_executes_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format_version": 1, "payload": _Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_agent(tmp_path / "evil.pt", torch.device("cpu"))
    assert not (tmp_path / "pwned").exists()


def test_sticky_override_is_allowed_and_recorded(trained_ppo, tmp_path):
    out = tmp_path / "v5"
    proc = run_script("evaluate", "--checkpoint", str(trained_ppo), "--env-id", "ALE/Breakout-v5", "--num-games", "1",
                      "--stall-steps", "100", "--output-dir", str(out), cwd=tmp_path)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"]["env_id_override"] == "ALE/Breakout-v5"
    assert summary["protocol"]["repeat_action_probability"] == 0.0  # trained without sticky actions ...
    assert summary["protocol"]["played_repeat_action_probability"] == 0.25  # ... evaluated with them
    assert "| ALE/Breakout-v5 (trained on BreakoutNoFrameskip-v4) |" in proc.stdout


def test_checkpoint_of_unknown_module_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "x.pt", script="os", args={}, protocol={}, global_step=0, model={})
    with pytest.raises(Exception, match="does not exist"):
        load_agent(path, torch.device("cpu"))


@pytest.mark.parametrize("name, games", [("dqn_ram_atari", 3), ("dqn_per_dueling_atari", 2), ("hybrid_atari", 2),
                                         ("ppo_atari", 2), ("dqn_per_dueling_atari_400000", 2)])  # fmt: skip
def test_committed_checkpoints_reproduce_their_results(name, games, tmp_path):
    """docs/results/<name>.md: the committed checkpoint (float16 weights for the pixel nets) replays the first greedy v4
    games of seed offset 0 of its documented evaluation (score, length, frames, end reason). The RAM agent's first two
    are one trajectory after different no-op starts, which distinct_games and the console point out."""
    documented = read(REPO / f"docs/results/{name}_eval_det/per_game.csv")[:games]
    out = tmp_path / "det"
    ckpt = next(p for p in (REPO / f"checkpoints/{name}_breakout.pt", REPO / f"checkpoints/{name}.pt") if p.exists())
    proc = run_script("evaluate", "--checkpoint", str(ckpt), "--num-games", str(games),
                      "--seeds", "0", "--deterministic", "--output-dir", str(out), cwd=tmp_path)  # fmt: skip
    key = ("score", "length", "frames", "end_reason")
    assert [[g[k] for k in key] for g in read(out / "per_game.csv")] == [[g[k] for k in key] for g in documented]
    distinct = len({(g["score"], g["length"]) for g in documented})
    assert json.loads((out / "summary.json").read_text())["distinct_games"] == distinct
    assert (f"only {distinct} distinct games of {games} (same score and length)" in proc.stdout) == (distinct < games)
    if name == "dqn_ram_atari":
        assert distinct == 2  # 109, 109 and 409 points (dqn_ram_atari.md)
