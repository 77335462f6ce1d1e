"""Evaluate any checkpoint of this repo: per-life, per-game, Q-gap and Breakout event statistics.

    python evaluate.py --checkpoint checkpoints/ppo_atari_breakout.pt --seeds 0 1 2 --events --output-dir runs/eval/ppo_stoch
    python evaluate.py --checkpoint checkpoints/ppo_atari_breakout.pt --deterministic --output-dir runs/eval/ppo_det
    python evaluate.py --compare runs/eval/ppo_det runs/eval/ppo_stoch --output-dir runs/eval/compare

The checkpoint names its script; that script's `make_env` and `make_agent` rebuild the env protocol and the
agent (common/contract.py). A game is a full game (all lives) with the raw, unclipped score. The headline is the
IQM (interquartile mean) of the game scores with a 95% bootstrap CI stratified over --seeds, then median and mean.
Stall guard: greedy (--deterministic) play that leaves the ball out of play for 2000 agent steps never serves again and
is ended as "stall"; stochastic play (epsilon-greedy or sampled) serves again by chance, so by default its games run
to the env's 108k-frame cap, unbiased against the standard protocol (--stall-steps N cuts them too). After Breakout's
frame counter wraps at 65,536 frames the ball never comes back (docs/breakout_ram.md): a game out of play from then
on is ended as "frame_wrap" in either mode, with the score it would have had at the cap. Outputs and
every column are documented in docs/evaluation_tooling.md.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import scipy
import torch
import tyro

from common.checkpoint import CheckpointError, git_commit, package_versions
from common.contract import ContractError, LoadedAgent, load_agent
from common.episodes import NEAR_EVENT_STEPS
from common.events import FRAME_COUNTER_WRAP, BreakoutEventWrapper, decode_ram
from common.run import keep_freed_memory
from common.stats import score_stats

HUMAN, RANDOM = 30.5, 1.7  # Breakout human / random scores (DQN Zoo atari_data.py; Atari-100k, rliable)
LIFE_FIELDS = ["game", "seed", "life", "return", "length", "serve_latency", "agent_fire", "scripted_fire",
               "first_hit_step", "paddle_hits", "bricks_hit", "longest_brick_streak", "mean_qgap", "mean_merged_qgap",
               "zero_reward"]  # fmt: skip
GAME_FIELDS = ["game", "seed", "score", "length", "frames", "lives_used", "zero_reward_lives", "end_reason", "mean_qgap",
               "median_qgap", "mean_merged_qgap"]  # fmt: skip
GREEDY_STALL_STEPS = 2000  # --stall-steps default for --deterministic play
END_REASONS = ("game_over", "frame_cap", "stall", "frame_wrap")
# per_life.csv's extra columns for agents that report option ids (`agent.last_options`, docs/contract.md)
OPTION_FIELDS = ["option_switches", "switches_near_life_start", "switches_near_paddle_hit", "mean_dwell", "dominant_option",
                 "dominant_option_share", "option_runs"]  # fmt: skip


@dataclass
class EvalArgs:
    checkpoint: Optional[str] = None
    """checkpoint (.pt) written by any *_atari.py script"""
    num_games: int = 60
    """full games (all lives) per seed (60 by default: docs/evaluation_tooling.md, section "How many games")"""
    seeds: tuple[int, ...] = (0,)
    """seed offsets added to the checkpoint's seed; each is reported, then all pooled (the CIs resample within seeds)"""
    deterministic: bool = False
    """greedy actions; otherwise sampled (policy agents) or epsilon-greedy (value agents)"""
    epsilon: Optional[float] = None
    """value agents' exploration rate when not --deterministic (default 0.001: tuned Double DQN, van Hasselt et al. 2016)"""
    events: bool = False
    """record Breakout events per life: serve latency, FIRE presses, paddle hits, brick streaks"""
    output_dir: Optional[str] = None
    """where per_life.csv, per_game.csv and summary.json go (default runs/eval/<checkpoint name>_<mode>)"""
    plots: bool = False
    """also write PNG plots to the output dir"""
    video: bool = False
    """record the first game of the first seed to <output dir>/videos"""
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    """where the network runs"""
    num_envs: int = 8
    """games played at once"""
    stall_steps: Optional[int] = None
    """agent steps out of play that end a Breakout game as "stall"; 0: never; default: 2000 if --deterministic, else never"""
    high_fire: int = 10
    """a life with more agent FIRE presses than this counts as a high-FIRE retry"""
    env_id: Optional[str] = None
    """evaluate on another env id of the same game and action set (e.g. ALE/Breakout-v5 for sticky actions)"""
    ablate: Optional[str] = None
    """zero one input branch of agents that have several (hybrid: ram or pixels)"""
    compare: tuple[str, ...] = ()
    """compare mode: output dirs of earlier evaluations; prints a table and writes compare.png (only --output-dir applies)"""


def pick_device(name: str) -> torch.device:
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[name]:
        raise ValueError(f"--device {name} is not available on this machine")
    return torch.device(name)


def top2_gap(scores: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 of each row of [N, A] scores (0 on ties)."""
    part = np.partition(scores, -2, axis=1)
    return part[:, -1] - part[:, -2]


def merged_gap(scores: np.ndarray, in_play: np.ndarray, noop: int, fire: int, kind: str) -> np.ndarray:
    """Gap with NOOP and FIRE merged into one action while the ball is in play (they are identical then)."""
    out = top2_gap(scores)
    rows = np.flatnonzero(in_play)
    if len(rows) and scores.shape[1] > 2:
        s = np.delete(scores[rows], [noop, fire], axis=1)
        pair = scores[rows][:, [noop, fire]]
        merged = np.logaddexp(pair[:, 0], pair[:, 1]) if kind == "logits" else pair.max(1)
        out[rows] = top2_gap(np.column_stack([merged, s]))
    return out


def longest_streak(events: list[str]) -> int:
    """Most bricks hit between two paddle touches (events: "b" brick, "t" tap, in order)."""
    best = run = 0
    for e in events:
        run = 0 if e == "t" else run + 1
        best = max(best, run)
    return best


def option_columns(life_rows: list[dict], lives: list[dict]) -> None:
    """Add OPTION_FIELDS to one game's per-life rows where the agent reported option ids. A run is a stretch of one option
    id, cut at the life's ends (option_runs "id:steps ...", mean_dwell its mean length); a switch is an id change between
    consecutive steps, a life's first step compared with the previous life's last (none at the game's first step);
    near: at most NEAR_EVENT_STEPS steps into the life / after a paddle hit in the life ("" without --events)."""
    prev = None
    for row, life in zip(life_rows, lives):
        ids, hits, runs = life.get("options"), life.get("hits"), []
        if not ids:
            return
        switches = [t for t, o in enumerate(ids) if (ids[t - 1] if t else prev) not in (None, o)]
        for o in ids:
            if runs and runs[-1][0] == o:
                runs[-1][1] += 1
            else:
                runs.append([o, 1])
        counts, near_hit = np.bincount(ids), None if hits is None else [any(hits[max(t - 1 - NEAR_EVENT_STEPS, 0) : t])
                                                                       for t in switches]  # fmt: skip
        row.update(option_switches=len(switches), switches_near_life_start=sum(t <= NEAR_EVENT_STEPS for t in switches),
                   switches_near_paddle_hit="" if near_hit is None else sum(near_hit),
                   mean_dwell=float(np.mean([n for _, n in runs])), dominant_option=int(counts.argmax()),
                   dominant_option_share=float(counts.max() / len(ids)),
                   option_runs=" ".join(f"{o}:{n}" for o, n in runs))  # fmt: skip
        prev = ids[-1]


def option_runs(lives: list[dict]) -> list[tuple[int, int]]:
    """(option, steps) of every run in per-life rows (dicts or read_csv rows) that have option columns."""
    return [(int(o), int(n)) for r in lives for o, n in (x.split(":") for x in str(r.get("option_runs", "")).split())]


def draw_option_timeline(ax, lives: list[dict]) -> None:
    """The first game's options along its agent steps, one colour per option; thin lines mark lost lives."""
    t, first = 0, [r for r in lives if (r["game"], r["seed"]) == (lives[0]["game"], lives[0]["seed"])]
    for r in first:
        for o, n in option_runs([r]):
            ax.broken_barh([(t, n)], (o - 0.4, 0.8), color=f"C{o % 10}")
            t += n
        ax.axvline(t, color="k", lw=0.5)
    ax.set(xlabel=f"agent step (game {lives[0]['game']}, seed {lives[0]['seed']})", ylabel="option")


class Game:
    """Accumulates one game's per-step records and splits them into lives."""

    def __init__(self, index: int, seed: int, scripted_fire: int, lives_left: int):
        self.index, self.seed, self.lives, self.lives_left = index, seed, [], lives_left
        self.score, self.length, self.frames, self.end_reason, self.out_of_play = 0.0, 0, 0, "", 0
        self.gaps: list[float] = []
        self.mgaps: list[float] = []
        self._new_life(scripted_fire)

    def _new_life(self, scripted_fire: int = 0) -> None:
        self.life = dict(ret=0.0, length=0, serve_latency=None, agent_fire=0, scripted_fire=scripted_fire, first_hit=None,
                         taps=0, bricks=0, seq=[], gaps=[], mgaps=[])  # fmt: skip

    def step(self, reward: float, gap: float, mgap: float, ev: dict | None) -> None:
        life = self.life
        life["ret"] += reward
        life["length"] += 1
        life["gaps"].append(gap)
        life["mgaps"].append(mgap)
        self.gaps.append(gap)
        self.mgaps.append(mgap)
        self.score += reward
        self.length += 1
        if ev is not None:
            life["agent_fire"] += int(ev["fire"])
            if ev["launched"] and life["serve_latency"] is None:
                life["serve_latency"] = life["length"]
            if ev["tap"]:
                life["taps"] += 1
                life["seq"].append("t")
                if life["first_hit"] is None:
                    life["first_hit"] = life["length"]
            life["bricks"] += ev["bricks_hit"]
            life["seq"].extend("b" * ev["bricks_hit"])

    def end_life(self) -> None:
        self.lives.append(self.life)
        self._new_life()

    def rows(self, events: bool) -> tuple[list[dict], dict]:
        """Per-life rows and the per-game row (Q-gaps: each life's / game's own mean and median over its steps)."""

        def ev(v):
            return (v if v is not None else "") if events else ""

        def nanmean(v):
            return float(np.nanmean(v)) if not np.all(np.isnan(v)) else ""

        lives = []
        for i, lf in enumerate(self.lives):
            lives.append({
                "game": self.index, "seed": self.seed, "life": i, "return": lf["ret"], "length": lf["length"],
                "serve_latency": ev(lf["serve_latency"]), "agent_fire": ev(lf["agent_fire"]),
                "scripted_fire": lf["scripted_fire"],
                "first_hit_step": ev(lf["first_hit"]), "paddle_hits": ev(lf["taps"]), "bricks_hit": ev(lf["bricks"]),
                "longest_brick_streak": ev(longest_streak(lf["seq"])), "mean_qgap": float(np.mean(lf["gaps"])),
                "mean_merged_qgap": nanmean(lf["mgaps"]),
                "zero_reward": int(lf["ret"] == 0),
            })  # fmt: skip
        game = {"game": self.index, "seed": self.seed, "score": self.score, "length": self.length, "frames": self.frames,
                "lives_used": len(lives), "zero_reward_lives": sum(r["zero_reward"] for r in lives),
                "end_reason": self.end_reason, "mean_qgap": float(np.mean(self.gaps)),
                "median_qgap": float(np.median(self.gaps)), "mean_merged_qgap": nanmean(self.mgaps)}  # fmt: skip
        return lives, game


def stall_limit(opts: EvalArgs) -> int:
    """Agent steps out of play that end a Breakout game as "stall": --stall-steps, else 2000 greedy and 0 (never) otherwise."""
    return opts.stall_steps if opts.stall_steps is not None else GREEDY_STALL_STEPS * opts.deterministic


def play(loaded: LoadedAgent, seed: int, opts: EvalArgs, video_root: str | None) -> tuple[list[dict], list[dict]]:
    """Play opts.num_games full games with seeds derived from `seed`; return per-life rows and per-game rows."""
    mod, args, agent = loaded.module, loaded.args, loaded.agent
    greedy, stall_steps = opts.deterministic, stall_limit(opts)
    n = min(opts.num_envs, opts.num_games)
    envs = [
        mod.make_env(args, seed, i, capture_video=video_root is not None and i == 0, run_dir=video_root)() for i in range(n)
    ]
    breakout = mod.env_protocol(args)["game"] == "breakout"
    if opts.events and breakout:
        envs = [BreakoutEventWrapper(e) for e in envs]
    meanings = envs[0].unwrapped.get_action_meanings()
    noop, fire = meanings.index("NOOP"), meanings.index("FIRE") if "FIRE" in meanings else -1
    np.random.seed(seed)  # the agents' sampling / epsilon-greedy draws
    torch.manual_seed(seed)
    agent.reset(n)
    games: list[Game | None] = [None] * n
    obs, next_game, done_games = [None] * n, 0, []
    in_play = np.zeros(n, dtype=bool)  # Breakout: ball in play (RAM byte 101), for the stall guard and the merged gap
    overlay = getattr(agent, "overlay", None) if video_root is not None else None  # optional: frame -> frame + agent's view
    overlay_frames: list[np.ndarray] = []  # game 0 as the agent sees it (slot masks, say), to videos/overlay.mp4

    def start(i: int) -> None:
        nonlocal next_game
        if next_game >= opts.num_games:
            games[i] = None
            return
        o, info = envs[i].reset(seed=seed * 100_003 + next_game)
        obs[i], games[i] = o, Game(next_game, seed, int(info.get("scripted_fire", 0)), int(info["lives"]))
        in_play[i] = breakout and decode_ram(envs[i].unwrapped.ale.getRAM()).in_play
        if hasattr(agent, "reset_env"):
            agent.reset_env(i)
        next_game += 1

    for i in range(n):
        start(i)
    while any(g is not None for g in games):
        batch = np.stack(obs) if not isinstance(obs[0], dict) else {k: np.stack([o[k] for o in obs]) for k in obs[0]}
        actions, scores = agent.act(batch, greedy)  # value agents are epsilon-greedy themselves when not greedy
        if overlay is not None and games[0] is not None and games[0].index == 0:  # the screen the agent just acted on
            overlay_frames.append(overlay(envs[0].render()))
        options = getattr(agent, "last_options", None)  # the optional option hook (docs/contract.md)
        scores = np.asarray(scores, dtype=np.float64)
        gaps = top2_gap(scores)
        mgaps = merged_gap(scores, in_play, noop, fire, agent.score_kind) if breakout and fire >= 0 else np.full(n, np.nan)
        for i, game in enumerate(games):
            if game is None:
                continue
            obs[i], reward, terminated, truncated, info = envs[i].step(int(actions[i]))
            ev = info.get("events") if opts.events and breakout else None
            game.step(float(reward), float(gaps[i]), float(mgaps[i]), ev)
            if options is not None:  # per-step option ids (and paddle hits) of this life, for option_columns
                game.life.setdefault("options", []).append(int(options[i]))
                if ev is not None:
                    game.life.setdefault("hits", []).append(bool(ev["tap"]))
            game.frames = int(info.get("episode_frame_number", game.length * 4))
            if breakout:
                in_play[i] = decode_ram(envs[i].unwrapped.ale.getRAM()).in_play
                game.out_of_play = 0 if in_play[i] else game.out_of_play + 1
            stalled = stall_steps > 0 and breakout and game.out_of_play >= stall_steps
            wrapped = breakout and game.out_of_play > 0 and game.frames >= FRAME_COUNTER_WRAP  # no serve ever again
            if terminated or truncated or stalled or wrapped:
                reason = "stall" if stalled else "frame_wrap"
                game.end_reason = "game_over" if terminated else "frame_cap" if truncated else reason
                game.end_life()
                done_games.append(game)
                start(i)
            elif info["lives"] < game.lives_left:
                game.end_life()
            game.lives_left = info["lives"]
    for e in envs:
        e.close()
    if overlay_frames:  # one frame per agent step (4 emulator frames): 15 fps is real time
        from moviepy.video.io.ImageSequenceClip import ImageSequenceClip

        ImageSequenceClip(overlay_frames, fps=15).write_videofile(f"{video_root}/videos/overlay.mp4", logger=None)
    done_games.sort(key=lambda g: g.index)
    life_rows, game_rows = [], []
    for g in done_games:
        lives, row = g.rows(opts.events and breakout)
        option_columns(lives, g.lives)
        life_rows += lives
        game_rows.append(row)
    return life_rows, game_rows


def summarize(loaded: LoadedAgent, opts: EvalArgs, lives: list[dict], games: list[dict], wall: float) -> dict:
    """summary.json: the headline is `pooled` (IQM and its CI stratified over evaluation seeds); Q-gaps per game first."""
    ck, breakout = loaded.checkpoint, loaded.checkpoint["protocol"].get("game") == "breakout"
    ev = [r for r in lives if r["agent_fire"] != ""]
    col = lambda rows, k: [r[k] for r in rows if r[k] != ""]  # noqa: E731
    game_gaps = col(games, "mean_qgap")
    out = {
        "checkpoint": {
            "path": str(loaded.path),
            "script": ck["script"],
            "global_step": ck["global_step"],
            "git_commit": ck.get("git_commit"),
            "versions": ck.get("versions"),
            "args": ck["args"],
        },
        "evaluator": {"git_commit": git_commit(), "versions": package_versions() | {"scipy": scipy.__version__}},
        "protocol": ck["protocol"]
        | (
            {
                "env_id_override": opts.env_id,  # and the sticky-action rate actually played
                "played_repeat_action_probability": loaded.module.env_protocol(loaded.args)["repeat_action_probability"],
            }
            if opts.env_id
            else {}
        ),
        "evaluation": {
            "mode": "deterministic" if opts.deterministic else "stochastic",
            "num_games_per_seed": opts.num_games,
            "seeds": list(opts.seeds),
            "base_seed": loaded.args.seed,
            "stall_steps": stall_limit(opts),
            "epsilon": None if opts.deterministic or loaded.agent.score_kind != "q_values" else loaded.agent.epsilon,
            "score_kind": loaded.agent.score_kind,
            "ablate": opts.ablate,
            "events": opts.events,
            "wall_seconds": wall,
            "games_per_minute": 60 * len(games) / wall if wall else None,
        },
        "per_seed": {
            str(s): score_stats([g["score"] for g in games if g["seed"] == loaded.args.seed + s]) for s in opts.seeds
        },
        "pooled": score_stats(col(games, "score"), strata=col(games, "seed")),
        "life_return": score_stats(col(lives, "return"), strata=col(lives, "seed")),
        "zero_reward_life_fraction": float(np.mean([r["zero_reward"] for r in lives])) if lives else None,
        "end_reasons": {k: sum(g["end_reason"] == k for g in games) for k in END_REASONS},
        # games with the same score and length (in agent steps) replayed one trajectory after their no-ops: a deterministic
        # protocol (v4, greedy) can turn N games into a few distinct ones, and the CIs above then overstate the evidence
        "distinct_games": len({(g["score"], g["length"]) for g in games}),
        "qgap": {
            "label": "Q-value gap" if loaded.agent.score_kind == "q_values" else "logit margin (not a Q-value)",
            "aggregation": "per game first (each game's mean and median over its steps), then across games",
            "gap": score_stats(game_gaps, ci=False)
            | {"p10": float(np.quantile(game_gaps, 0.1)), "p90": float(np.quantile(game_gaps, 0.9))},
            "gap_median": score_stats(col(games, "median_qgap"), ci=False),
            "merged": score_stats(col(games, "mean_merged_qgap"), ci=False),
        },  # fmt: skip
    }
    if lives and "option_runs" in lives[0]:  # agents with options: all runs pooled, each option's share of the steps
        dwell, steps = [n for _, n in option_runs(lives)], np.bincount(*zip(*option_runs(lives)))
        out["options"] = {"switches_per_life": score_stats(col(lives, "option_switches"), ci=False),
                          "dwell": score_stats(dwell, ci=False) | {"p90": float(np.quantile(dwell, 0.9))},
                          "time_share": {str(o): float(v / steps.sum()) for o, v in enumerate(steps)},
                          "dominant_option_share": score_stats(col(lives, "dominant_option_share"), ci=False)}  # fmt: skip
    if breakout:
        hns = {k: (out["pooled"][k] - RANDOM) / (HUMAN - RANDOM) for k in ("iqm", "median", "mean")}
        out["human_normalized"] = hns | {"random": RANDOM, "human": HUMAN,
                                         "source": "DQN Zoo atari_data.py (human 30.5, random 1.7)"}  # fmt: skip
    if ev:
        out["events"] = {
            "serve_failures": sum(r["paddle_hits"] == 0 for r in ev),
            "serve_failure_definition": "a life that ended without a single paddle hit",
            "high_fire_retries": sum(r["agent_fire"] > opts.high_fire for r in ev),
            "high_fire_definition": f"a life with more than {opts.high_fire} agent FIRE presses (FIRE only acts on a serve)",
            "serve_latency": score_stats(col(ev, "serve_latency")),
            "paddle_hits_per_life": score_stats(col(ev, "paddle_hits")),
            "longest_brick_streak": score_stats(col(ev, "longest_brick_streak")),
        }
    return out


def write_outputs(out_dir: Path, lives: list[dict], games: list[dict], summary: dict) -> None:
    life_cols = LIFE_FIELDS + [c for c in OPTION_FIELDS if lives and c in lives[0]]  # option columns: agents with options
    for name, rows, cols in (("per_life.csv", lives, life_cols), ("per_game.csv", games, GAME_FIELDS)):
        with open(out_dir / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))


def fmt_ci(ci: list[float] | None) -> str:
    """A 95% CI as "lo..hi" ("-" when there is none: a seed with fewer than 2 games, or a summary older than the key)."""
    return f"{ci[0]:.2f}..{ci[1]:.2f}" if ci else "-"


def console_summary(s: dict) -> str:
    """The console report; its first score line is the headline: IQM, 95% CI, games and seeds."""
    p, e = s["pooled"], s.get("events", {})
    eps = f" eps={s['evaluation']['epsilon']}" if s["evaluation"]["epsilon"] else ""
    env = s["protocol"]["env_id"]
    if s["protocol"].get("env_id_override"):  # trained on one env id, evaluated on another
        env = f"{s['protocol']['env_id_override']} (trained on {env})"
    lines = [f"{s['checkpoint']['script']} @ {s['checkpoint']['global_step']} steps | {env} | {s['evaluation']['mode']}{eps}"]
    lines.append(f"  IQM {p['iqm']:.2f} (95% CI {fmt_ci(p['iqm_ci95'])}) over {p['n']} games, {p['strata']} evaluation seed"
                 f"{'s' * (p['strata'] > 1)} | median {p['median']:.1f} | mean {p['mean']:.2f} +- {p['std']:.2f} "
                 f"(95% CI {fmt_ci(p['ci95'])}) | range {p['min']:g}..{p['max']:g}")  # fmt: skip
    for seed, st in s["per_seed"].items():
        lines.append(f"  seed +{seed}: {st['n']} games, IQM {st['iqm']:.2f} (95% CI {fmt_ci(st['iqm_ci95'])}), "
                     f"median {st['median']:.1f}, mean {st['mean']:.2f} +- {st['std']:.2f}")  # fmt: skip
    if "human_normalized" in s:
        h = s["human_normalized"]
        lines.append(f"  human-normalised: IQM {h['iqm']:.3f}, median {h['median']:.3f}, mean {h['mean']:.3f}")
    lines.append(f"  zero-reward lives: {100 * s['zero_reward_life_fraction']:.1f}% | end reasons: {s['end_reasons']}")
    if s["distinct_games"] < p["n"]:
        lines.append(f"  only {s['distinct_games']} distinct games of {p['n']} (same score and length): the protocol repeats "
                     "itself; sticky actions (--env-id ALE/Breakout-v5) give independent games")  # fmt: skip
    if e:
        lines.append(f"  serve failures (no paddle hit): {e['serve_failures']} | high-FIRE retries: {e['high_fire_retries']}"
                     f" | median serve latency {e['serve_latency'].get('median', float('nan')):.0f} steps")  # fmt: skip
    q = s["qgap"]
    lines.append(f"  {q['label']}, per game: mean {q['gap']['mean']:.4f}, median {q['gap_median']['median']:.4f} "
                 f"(of the games' means / medians over their steps)"
                 + (f" | merged NOOP/FIRE: mean {q['merged']['mean']:.4f}" if q["merged"].get("n") else ""))  # fmt: skip
    if "options" in s:
        o = s["options"]
        lines.append(f"  options: {o['switches_per_life']['mean']:.2f} switches per life, dwell mean {o['dwell']['mean']:.1f}"
                     f" / p90 {o['dwell']['p90']:.0f} steps, time share {o['time_share']}")  # fmt: skip
    lines.append(f"  {s['evaluation']['games_per_minute']:.1f} games/minute")
    return "\n".join(lines)


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def make_plots(out_dir: str | Path) -> list[Path]:
    """PNG plots from an output dir's CSVs (also used by notebooks/breakout_eval_dashboard.ipynb)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    lives, games = read_csv(out_dir / "per_life.csv"), read_csv(out_dir / "per_game.csv")
    col = lambda rows, k: [float(r[k]) for r in rows if r[k] != ""]  # noqa: E731
    by_life = {}
    for r in lives:
        by_life.setdefault(int(r["life"]), []).append(float(r["return"]))
    specs = [
        ("score_hist.png", "per-game score", lambda ax: ax.hist(col(games, "score"), bins=20)),
        ("return_by_life.png", "return by life index",
         lambda ax: ax.boxplot([by_life[k] for k in sorted(by_life)], tick_labels=[str(k) for k in sorted(by_life)])),
        ("serve_latency_hist.png", "serve latency (agent steps)", lambda ax: ax.hist(col(lives, "serve_latency"), bins=30)),
        ("fire_per_life.png", "agent FIRE presses per life", lambda ax: ax.hist(col(lives, "agent_fire"), bins=30)),
        ("brick_streaks.png", "longest brick streak per life",
         lambda ax: ax.hist(col(lives, "longest_brick_streak"), bins=20)),
        ("qgap_hist.png", "mean Q-gap / logit margin per life", lambda ax: ax.hist(col(lives, "mean_qgap"), bins=30)),
    ]  # fmt: skip
    if lives and "option_runs" in lives[0]:  # agents with options
        specs += [("option_dwell_hist.png", "option dwell time (agent steps, runs cut at lost lives)",
                   lambda ax: ax.hist([n for _, n in option_runs(lives)], bins=30)),
                  ("option_timeline.png", "options over one game", lambda ax: draw_option_timeline(ax, lives))]  # fmt: skip
    written = []
    for name, title, draw in specs:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        draw(ax)
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        written.append(out_dir / name)
    return written


def compare(dirs: tuple[str, ...], out_dir: Path) -> str:
    """--compare: side-by-side table of evaluation output dirs plus compare.png (with an IQM-by-training-step panel when
    they evaluate one script at several steps). One implementation, in tools/compare.py (which also aggregates
    across training seeds: python -m tools.compare)."""
    from tools.compare import compare_evaluations

    return compare_evaluations(dirs, out_dir)


def check_opts(opts: EvalArgs, loaded: LoadedAgent | None = None) -> None:
    """Raise ValueError (a one-line `error:`) for bad values and for flags that would do nothing."""
    if opts.compare:
        unused = [f"--{f.name.replace('_', '-')}" for f in fields(EvalArgs)
                  if f.name not in ("compare", "output_dir") and getattr(opts, f.name) != f.default]  # fmt: skip
        if unused:
            raise ValueError(f"{', '.join(unused)} cannot be used with --compare (it only reads earlier output dirs)")
        return
    if opts.num_games <= 0:
        raise ValueError(f"--num-games must be positive, got {opts.num_games}")
    if opts.num_envs <= 0 or (opts.stall_steps or 0) < 0 or not opts.seeds:
        raise ValueError("--num-envs must be positive, --stall-steps >= 0 and --seeds non-empty")
    if opts.epsilon is not None and not 0 <= opts.epsilon <= 1:
        raise ValueError(f"--epsilon must be in [0, 1], got {opts.epsilon}")
    if opts.epsilon is not None and opts.deterministic:
        raise ValueError("--epsilon does nothing with --deterministic (greedy actions); drop one of them")
    if loaded is None:
        return
    if opts.epsilon is not None and loaded.agent.score_kind != "q_values":
        raise ValueError(f"--epsilon applies to value agents; {loaded.checkpoint['script']} is a policy agent")
    if opts.ablate is not None and opts.ablate not in getattr(loaded.agent, "ablations", ()):
        raise ValueError(f"--ablate {opts.ablate}: {loaded.checkpoint['script']} has no such input branch "
                         f"(it has: {', '.join(getattr(loaded.agent, 'ablations', ())) or 'none'})")  # fmt: skip


def apply_env_override(loaded: LoadedAgent, env_id: str) -> None:
    """Switch to another env id of the same game and action set (a sticky-action robustness check, say)."""
    old = loaded.checkpoint["protocol"]
    new_args = replace(loaded.args, env_id=env_id)
    try:
        new = loaded.module.env_protocol(new_args)
    except SystemExit as e:
        raise ValueError(str(e).removeprefix("error: ")) from None
    for key in ("game", "full_action_space"):  # the observation pipeline is the script's own, unchanged
        if new.get(key) != old.get(key):
            raise ValueError(
                f"--env-id {env_id} contradicts the checkpoint's protocol: {key} {old.get(key)!r} -> {new.get(key)!r}"
            )
    loaded.args = new_args


def evaluate_checkpoint(path: str | Path, num_games: int = 10, seeds=(0,), deterministic: bool = False,
                        video_root: str | None = None, device: str = "auto", **kw) -> dict:  # fmt: skip
    """Library entry point (used at the end of training): evaluate, write outputs, return the summary + "scores"."""
    opts = EvalArgs(checkpoint=str(path), num_games=num_games, seeds=tuple(seeds), deterministic=deterministic,
                    video=video_root is not None, device=device, **kw)  # fmt: skip
    if opts.output_dir is None:
        opts.output_dir = str(Path(path).parent / "eval")
    return run(opts, video_root=video_root)


def run(opts: EvalArgs, video_root: str | None = None) -> dict:
    """Evaluate opts.checkpoint: play every seed, write the CSVs and summary.json, print the console summary."""
    check_opts(opts)
    device = pick_device(opts.device)
    loaded = load_agent(opts.checkpoint, device)
    check_opts(opts, loaded)
    if opts.env_id:
        apply_env_override(loaded, opts.env_id)
    if opts.epsilon is not None:
        loaded.agent.epsilon = opts.epsilon
    if opts.ablate:
        loaded.agent.ablate = opts.ablate
    mode = "det" if opts.deterministic else "stoch"
    out_dir = Path(opts.output_dir or Path("runs") / "eval" / f"{Path(opts.checkpoint).stem}_{mode}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / ".write_test").touch()
        (out_dir / ".write_test").unlink()
    except OSError as e:
        raise ValueError(f"--output-dir {out_dir} is not writable ({e.strerror})") from None
    if opts.video and video_root is None:
        video_root = str(out_dir)
    start = time.time()
    lives, games = [], []
    for k, offset in enumerate(opts.seeds):
        l_rows, g_rows = play(loaded, loaded.args.seed + offset, opts, video_root if k == 0 else None)
        lives += l_rows
        games += g_rows
    summary = summarize(loaded, opts, lives, games, time.time() - start)
    write_outputs(out_dir, lives, games, summary)
    if opts.plots:
        make_plots(out_dir)
    print(console_summary(summary))
    print(f"wrote {out_dir}/per_life.csv, per_game.csv, summary.json" + (" and plots" if opts.plots else ""))
    return summary | {"scores": [g["score"] for g in games], "output_dir": str(out_dir)}


def main(opts: EvalArgs) -> int:
    """CLI: evaluate or --compare; bad input is a one-line `error:` and exit code 2."""
    keep_freed_memory()  # as training does (common/run.py): no page faults for the networks' per-step temporaries
    try:
        check_opts(opts)
        if opts.compare:
            print(compare(opts.compare, Path(opts.output_dir or "runs/eval/compare")))
            return 0
        if opts.checkpoint is None:
            raise ValueError("--checkpoint is required (or --compare DIR ...)")
        run(opts)
    except (CheckpointError, ContractError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no output written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(tyro.cli(EvalArgs, description=__doc__)))
