"""Compare agents across training seeds: evaluation scores and learning curves, grouped and aggregated.

    python -m tools.compare runs/grids/ppo_vs_ram --out runs/grids/ppo_vs_ram/compare
    python -m tools.compare docs/results --out docs/results/summary          # every committed evaluation
    python -m tools.compare runs/BreakoutNoFrameskip-v4__ppo_atari__* --last-games 100 --out /tmp/ppo

Reads evaluation folders (evaluate.py's summary.json + per_game.csv) and training run folders (TensorBoard events);
a PATH is one of them, or any folder searched recursively (a grid folder, docs/results). Groups:

- evaluations by agent (script), variant (the grid's override set, else the run's --exp-name when it is not the
  script's name), env id trained on, training steps and protocol (env played, mode, ablation, games per seed and
  evaluation seeds); per group the final-score IQM with its 95% stratified-bootstrap CI (common.stats.score_stats;
  games are resampled within their training seed and evaluation seed, so that one evaluation's CI is evaluate.py's
  own), median and mean (with its CI);
- training runs by agent (the grid cell's script, else --exp-name), variant and env id; per group the same statistics
  of the last --last-games training games of each run (`--tag`, charts/episodic_return: raw full-game scores), and
  learning curves (a --window-game rolling mean per run, their IQM across seeds with its 95% bootstrap band when
  there are several seeds) against agent steps and against hours running (gaps longer than --pause-minutes between two
  logged points, a stopped and resumed run, left out).

Writes OUT/compare.md (the tables, also printed), OUT/compare.json (every number, with the member folders) and
OUT/curves.png; with --per-folder also evaluate.py --compare's per-folder table and OUT/compare.png.
evaluate.py --compare and tools/plot_curves.py call into this module; the statistics are common/stats.py's.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also as `python tools/compare.py`

from common.stats import score_stats  # noqa: E402

DEFAULT_EPSILON = 0.001  # evaluate.py's epsilon for value agents; a row names any other
CURVE_POINTS = 60


# ---------------------------------------------------------------- TensorBoard runs (also tools/plot_curves.py)


def load_scalars(run_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, values, wall times) of one scalar from all event files in a run folder, in step order (stable);
    ValueError when the folder has none."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        raise ValueError(f"{run_dir} has no {tag!r} scalars")
    events = acc.Scalars(tag)
    steps, values, wall = (np.array([e.step for e in events]), np.array([e.value for e in events]),
                           np.array([e.wall_time for e in events]))  # fmt: skip
    order = np.argsort(steps, kind="stable")
    return steps[order], values[order], wall[order]


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each run of `window` consecutive values (fewer values: one window of all of them)."""
    w = min(window, len(values))
    return np.convolve(values, np.ones(w) / w, mode="valid")


def running_seconds(wall: np.ndarray, pause_s: float) -> tuple[np.ndarray, int]:
    """Cumulative running seconds at each point, gaps longer than pause_s (pauses) left out; and the pause count."""
    gaps = np.diff(wall, prepend=wall[0])
    return np.cumsum(np.where(gaps > pause_s, 0.0, gaps)), int((gaps > pause_s).sum())


def run_hparams(run_dir: Path) -> dict[str, str]:
    """The Args a run logged as its "hyperparameters" text (common/run.py), as strings; {} when absent."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0, "scalars": 1})
    acc.Reload()
    if "hyperparameters/text_summary" not in acc.Tags().get("tensors", []):
        return {}
    text = tensor_util.make_ndarray(acc.Tensors("hyperparameters/text_summary")[0].tensor_proto).item().decode()
    rows = (line.strip("|").split("|", 1) for line in text.splitlines()[2:] if line.count("|") >= 3)
    return {k: v for k, v in rows}


def grid_cell(path: Path) -> Optional[dict]:
    """The grid cell (tools/grid.py) a run or evaluation folder belongs to: its state.json, or None."""
    for up in (path.parent, path.parent.parent):
        state = up / "state.json"
        if state.exists() and (up.parent.parent / "manifest.json").exists():
            return json.loads(state.read_text()) | {"grid": up.parent.parent.name}
    return None


# ---------------------------------------------------------------- finding folders


def find(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """(run folders, evaluation folders) named by paths or found below them."""
    runs, evals = set(), set()
    for p in map(Path, paths):
        if not p.is_dir():
            raise ValueError(f"{p} is not a folder")
        own_eval, own_run = (p / "summary.json").exists(), any(p.glob("events.out.tfevents.*"))
        if own_eval:
            evals.add(p)
        if own_run:
            runs.add(p)
        if not (own_eval or own_run):
            evals |= {s.parent for s in p.rglob("summary.json")}
            runs |= {e.parent for e in p.rglob("events.out.tfevents.*")}
    return sorted(runs), sorted(evals)


# ---------------------------------------------------------------- evaluations


@dataclass
class Evaluation:
    path: Path
    agent: str
    variant: str
    trained_on: str
    steps: int
    protocol: str
    games_per_seed: int
    eval_seeds: tuple
    train_seed: int
    scores: list[float]
    game_seeds: list[int]  # the evaluation seed of each game (per_game.csv)
    wall_s: Optional[float]

    @property
    def key(self) -> tuple:
        return (self.agent, self.variant, self.trained_on, self.steps, self.protocol, self.games_per_seed, self.eval_seeds)


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def protocol_label(summary: dict) -> str:
    """Env played, mode, and whatever else differs from evaluate.py's defaults (ablation, epsilon, stall guard)."""
    ev, pr = summary["evaluation"], summary["protocol"]
    label = [pr.get("env_id_override") or pr["env_id"], ev["mode"]]
    if ev.get("ablate"):
        label.append(f"no {ev['ablate']}")
    if ev.get("epsilon") is not None and not math.isclose(ev["epsilon"], DEFAULT_EPSILON):
        label.append(f"eps {ev['epsilon']:g}")
    default_stall = 2000 if ev["mode"] == "deterministic" else 0
    if ev.get("stall_steps", default_stall) != default_stall:
        label.append(f"stall {ev['stall_steps']}")
    return ", ".join(label)


def read_evaluation(path: Path) -> Evaluation:
    s = json.loads((path / "summary.json").read_text())
    ck, cell = s["checkpoint"], grid_cell(path)
    exp_name = ck["args"].get("exp_name", ck["script"])
    variant = (cell["set"] if cell["set"] != "default" else "-") if cell else (exp_name if exp_name != ck["script"] else "-")
    games = read_csv(path / "per_game.csv")
    return Evaluation(path, ck["script"], variant, s["protocol"]["env_id"], int(ck["global_step"]), protocol_label(s),
                      int(s["evaluation"]["num_games_per_seed"]), tuple(s["evaluation"]["seeds"]),
                      int(ck["args"].get("seed", 0)), [float(r["score"]) for r in games], [int(r["seed"]) for r in games],
                      s["evaluation"].get("wall_seconds"))  # fmt: skip


def aggregate_evaluations(evals: list[Evaluation]) -> list[dict]:
    """One row per group: score_stats of the pooled games, stratified by training seed and, within it, by evaluation
    seed (strata = the (training seed, evaluation seed) pairs, numbered in sorted order: for one run this is
    evaluate.py's own headline CI, summary.json's pooled.iqm_ci95), plus each training seed's IQM. A second
    evaluation of the same training seed under the same protocol (a re-run of evaluate.py) is not pooled with the
    first: it makes a row of its own (its folder in "members")."""
    groups: dict[tuple, list[Evaluation]] = {}
    for e in sorted(evals, key=lambda e: str(e.path)):
        repeat = 0
        while any(m.train_seed == e.train_seed for m in groups.get((e.key, repeat), [])):
            repeat += 1
        groups.setdefault((e.key, repeat), []).append(e)
    rows = []
    for (key, _), members in sorted(groups.items()):
        scores = [x for m in members for x in m.scores]
        pairs = [(m.train_seed, g) for m in members for g in m.game_seeds]
        number = {p: i for i, p in enumerate(sorted(set(pairs)))}
        strata = [number[p] for p in pairs]
        train = [t for t, _ in pairs]
        seeds = sorted({m.train_seed for m in members})
        agent, variant, trained_on, steps, protocol, per_seed, eval_seeds = key
        rows.append({"agent": agent, "variant": variant, "trained_on": trained_on, "steps": steps, "protocol": protocol,
                     "games_per_seed": per_seed, "eval_seeds": list(eval_seeds), "training_seeds": seeds,
                     "stats": score_stats(scores, strata=strata),
                     "per_training_seed_iqm": {str(s): score_stats([x for x, t in zip(scores, train) if t == s],
                                                                   ci=False)["iqm"] for s in seeds},
                     "eval_wall_s": sum(m.wall_s or 0.0 for m in members),
                     "members": [str(m.path) for m in members]})  # fmt: skip
    return rows


def sources(paths: list[str], show: int = 2) -> str:
    """Member folders for a table cell: the last two parts of the first `show` paths, then "+N"."""
    names = ["/".join(Path(p).parts[-2:]) for p in paths]
    return ", ".join(names[:show]) + (f" +{len(names) - show}" if len(names) > show else "")


# ---------------------------------------------------------------- training runs


@dataclass
class TrainingRun:
    path: Path
    agent: str
    variant: str
    env_id: str
    seed: int
    steps: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)
    hours: np.ndarray = field(repr=False)
    pauses: int = 0


def read_run(path: Path, tag: str, pause_minutes: float) -> TrainingRun:
    hp, cell = run_hparams(path), grid_cell(path)
    parts = path.name.split("__")  # <env>__<exp_name>__<seed>__<time> (common/run.py)
    exp_name = hp.get("exp_name", parts[1] if len(parts) == 4 else path.name)
    agent = cell["script"] if cell else exp_name
    variant = (cell["set"] if cell["set"] != "default" else "-") if cell else "-"
    seed = int(hp.get("seed", parts[2] if len(parts) == 4 else 0))
    steps, values, wall = load_scalars(path, tag)
    running, pauses = running_seconds(wall, 60 * pause_minutes)
    return TrainingRun(path, agent, variant, hp.get("env_id", parts[0]), seed, steps, values, running / 3600, pauses)


def aggregate_runs(runs: list[TrainingRun], last_games: int) -> list[dict]:
    """One row per (agent, variant, env id): the last `last_games` values of each run pooled, score_stats with strata =
    training seed; steps, hours running and agent steps/s per run."""
    groups: dict[tuple, list[TrainingRun]] = {}
    for r in runs:
        groups.setdefault((r.agent, r.variant, r.env_id), []).append(r)
    rows = []
    for (agent, variant, env_id), members in sorted(groups.items()):
        tails = [r.values[-last_games:] for r in members]
        scores = [float(x) for t in tails for x in t]
        strata = [r.seed for r, t in zip(members, tails) for _ in t]
        hours = [float(r.hours[-1]) for r in members]
        sps = [float((r.steps[-1] - r.steps[0]) / (3600 * h)) if h > 0 else None for r, h in zip(members, hours)]
        rows.append({"agent": agent, "variant": variant, "env_id": env_id, "training_seeds": sorted({r.seed for r in members}),
                     "runs": len(members), "last_games": last_games, "final_step": [int(r.steps[-1]) for r in members],
                     "stats": score_stats(scores, strata=strata), "hours_running": hours, "steps_per_s": sps,
                     "members": [str(r.path) for r in members]})  # fmt: skip
    return rows


def band(members: list[TrainingRun], axis: str, window: int) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """A group's learning curve: x, the IQM across runs of their rolling means, and its 95% bootstrap band ([2, n]:
    score_stats over the runs at each x), on a grid where every run has data; one run: its own curve, no band."""
    curves = []
    for r in members:
        w = min(window, len(r.values))
        x = (r.steps if axis == "steps" else r.hours)[w - 1 :]
        curves.append((x.astype(float), rolling_mean(r.values, window)))
    if len(curves) == 1:
        return curves[0][0], curves[0][1], None
    lo, hi = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)
    if not hi > lo:
        return np.array([]), np.array([]), None
    xs = np.linspace(lo, hi, CURVE_POINTS)
    ys = np.stack([np.interp(xs, x, y) for x, y in curves])
    stats = [score_stats(ys[:, j]) for j in range(len(xs))]
    ci = np.array([s["iqm_ci95"] or [s["iqm"]] * 2 for s in stats]).T
    return xs, np.array([s["iqm"] for s in stats]), ci


def plot_curves(runs: list[TrainingRun], out: Path, window: int, tag: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[TrainingRun]] = {}
    for r in runs:
        groups.setdefault((r.agent, r.variant, r.env_id), []).append(r)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for k, ((agent, variant, env_id), members) in enumerate(sorted(groups.items())):
        label = f"{agent}" + (f" [{variant}]" if variant != "-" else "") + f", {env_id} ({len(members)} seeds)"
        for ax, axis in zip(axes, ("steps", "hours")):
            x, y, ci = band(members, axis, window)
            if len(x):
                ax.plot(x, y, color=f"C{k}", label=label)
            if ci is not None:
                ax.fill_between(x, ci[0], ci[1], color=f"C{k}", alpha=0.2)
    axes[0].set_xlabel("agent steps")
    axes[1].set_xlabel("hours running (pauses left out)")
    for ax in axes:
        ax.set_ylabel(f"{tag}, rolling mean of {window} (IQM across seeds, 95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# ---------------------------------------------------------------- tables


def fmt_ci(ci: Optional[list[float]]) -> str:
    """A 95% CI as "lo..hi" ("-" when there is none: a seed with fewer than 2 games, or a summary older than the key)."""
    return f"{ci[0]:.2f}..{ci[1]:.2f}" if ci else "-"


def with_ci(value: float, ci: Optional[list[float]]) -> str:
    return f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.2f} [-]"


def markdown(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head)] + rows)


def evaluation_table(rows: list[dict]) -> str:
    head = ["agent", "variant", "trained on", "steps", "protocol (env played, mode)", "games", "training seeds",
            "IQM [95% CI]", "median", "mean [95% CI]", "folders"]  # fmt: skip
    body = []
    for r in rows:
        s, seeds = r["stats"], r["eval_seeds"]
        games = f"{s['n']} ({r['games_per_seed']} × eval seed{'s' * (len(seeds) > 1)} {' '.join(map(str, seeds))})"
        body.append([r["agent"], r["variant"], r["trained_on"], f"{r['steps']:,}", r["protocol"], games,
                     " ".join(map(str, r["training_seeds"])), with_ci(s["iqm"], s.get("iqm_ci95")), f"{s['median']:.1f}",
                     with_ci(s["mean"], s.get("ci95")), sources(r["members"])])  # fmt: skip
    return markdown(head, body)


def training_table(rows: list[dict], tag: str) -> str:
    head = ["agent", "variant", "env id", "training seeds", "final step", f"last games ({tag})", "IQM [95% CI]", "median",
            "mean [95% CI]", "hours running", "agent steps/s", "folders"]  # fmt: skip
    body = []
    for r in rows:
        s = r["stats"]
        steps = sorted(set(r["final_step"]))
        sps = [x for x in r["steps_per_s"] if x is not None]
        body.append([r["agent"], r["variant"], r["env_id"], " ".join(map(str, r["training_seeds"])),
                     f"{steps[0]:,}" + (f"..{steps[-1]:,}" if len(steps) > 1 else ""),
                     f"{s['n']} (≤ {r['last_games']} per run)", with_ci(s["iqm"], s.get("iqm_ci95")), f"{s['median']:.1f}",
                     with_ci(s["mean"], s.get("ci95")), f"{np.mean(r['hours_running']):.2f}",
                     f"{np.mean(sps):.0f}" if sps else "-", sources(r["members"])])  # fmt: skip
    return markdown(head, body)


# ---------------------------------------------------------------- evaluate.py --compare


def compare_evaluations(dirs: tuple[str, ...], out_dir: Path) -> str:
    """evaluate.py --compare: side-by-side table of several evaluation output dirs plus one combined plot
    (compare.png). When dirs evaluate one script at several training steps, a second panel plots the IQM and its 95%
    CI against the step, one line per (env played, mode): a learning curve measured by evaluate.py rather than by
    training returns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, scores, curves = [], [], {}
    for d in dirs:
        path = Path(d) / "summary.json"
        if not path.exists():
            raise ValueError(f"--compare: {path} does not exist (run evaluate.py --output-dir {d} first)")
        s = json.loads(path.read_text())
        scores.append([float(r["score"]) for r in read_csv(Path(d) / "per_game.csv")])
        p, e, ev = s["pooled"], s.get("events", {}), s["evaluation"]
        mode = ev["mode"] + (f", no {ev['ablate']}" if ev.get("ablate") else "")
        iqm_ci = p.get("iqm_ci95")  # absent from summaries written before the IQM became the headline
        rows.append([Path(d).name, s["checkpoint"]["script"], str(s["checkpoint"]["global_step"]),
                     s["protocol"].get("env_id_override") or s["protocol"]["env_id"], mode, str(p["n"]),
                     str(len(ev["seeds"])), f"{p['iqm']:.2f}", fmt_ci(iqm_ci), f"{p['median']:.1f}", f"{p['mean']:.2f}",
                     fmt_ci(p.get("ci95")), f"{100 * s['zero_reward_life_fraction']:.1f}%", str(e.get("serve_failures", "-")),
                     f"{s['qgap']['gap']['mean']:.4f}", f"{s['qgap'].get('gap_median', s['qgap']['gap'])['median']:.4f}"])
        curves.setdefault((s["checkpoint"]["script"], rows[-1][3], mode), []).append(
            (s["checkpoint"]["global_step"], p["iqm"], *(iqm_ci or [p["iqm"]] * 2))
        )
    head = ["run", "script", "steps", "env played", "mode", "games", "seeds", "IQM", "IQM 95% CI", "median", "mean",
            "mean 95% CI", "zero-rew lives", "serve fails", "mean gap", "median gap"]  # fmt: skip
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head] + rows)
    by_step = len({script for script, _, _ in curves}) == 1 and any(len({c[0] for c in v}) > 1 for v in curves.values())
    fig, axes = plt.subplots(1, 1 + by_step, figsize=(1.6 * len(dirs) + 3 + 5 * by_step, 4), squeeze=False)
    axes[0, 0].boxplot(scores, tick_labels=[Path(d).name for d in dirs], showmeans=True)
    axes[0, 0].set_ylabel("per-game score")
    plt.setp(axes[0, 0].get_xticklabels(), rotation=20, ha="right")
    if by_step:
        ax = axes[0, 1]
        for (_, env, mode), points in sorted(curves.items()):
            step, iqm, lo, hi = np.array(sorted(points)).T
            ax.errorbar(step, iqm, yerr=[iqm - lo, hi - iqm], marker="o", capsize=3, label=f"{env}, {mode}")
        ax.set(xlabel="training step (global_step)", ylabel="IQM score, 95% stratified bootstrap CI",
               title=next(iter(curves))[0])  # fmt: skip
        ax.xaxis.set_major_formatter(lambda x, _: f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k")
        ax.legend(fontsize=8)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / "compare.png", dpi=90)
    plt.close(fig)
    panels = " (per-game scores; IQM score by training step)" if by_step else ""
    return table + f"\nplot: {out_dir / 'compare.png'}{panels}"


# ---------------------------------------------------------------- CLI


def compare(paths: Iterable[Path], out: Optional[Path], tag: str = "charts/episodic_return", window: int = 100,
            last_games: int = 100, pause_minutes: float = 10.0, per_folder: bool = False,
            title: str = "Breakout: training return") -> dict:  # fmt: skip
    """Find, group and aggregate; write OUT/compare.md, compare.json, curves.png. Returns the JSON's content plus
    "markdown"."""
    run_dirs, eval_dirs = find(paths)
    if not run_dirs and not eval_dirs:
        raise ValueError("no run folders (events.out.tfevents.*) or evaluation folders (summary.json) found")
    evals = aggregate_evaluations([read_evaluation(d) for d in eval_dirs])
    runs, skipped = [], []
    for d in run_dirs:
        try:
            runs.append(read_run(d, tag, pause_minutes))
        except ValueError:
            skipped.append(str(d))  # no finished game yet, say
    trains = aggregate_runs(runs, last_games)
    parts = []
    if evals:
        parts.append("### Evaluations (final checkpoints; 95% CIs: bootstrap stratified by training and evaluation seed)"
                     "\n\n" + evaluation_table(evals))  # fmt: skip
    if trains:
        parts.append(f"### Training (last {last_games} values of {tag} per run; CI strata = training seed)\n\n"
                     + training_table(trains, tag))  # fmt: skip
    if skipped:
        parts.append(f"runs without {tag} (left out): " + ", ".join(skipped))
    result = {"evaluations": evals, "training": trains, "skipped_runs": skipped, "tag": tag, "window": window,
              "last_games": last_games}  # fmt: skip
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if runs:
            parts.append(f"curves: {plot_curves(runs, out / 'curves.png', window, tag, title)}")
        if per_folder and eval_dirs:
            parts.append("### Per evaluation folder (evaluate.py --compare)\n\n```\n"
                         + compare_evaluations(tuple(map(str, eval_dirs)), out) + "\n```")  # fmt: skip
        (out / "compare.json").write_text(json.dumps(result, indent=2, default=str))
        (out / "compare.md").write_text("\n\n".join(parts) + "\n")
    return result | {"markdown": "\n\n".join(parts)}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("paths", nargs="+", type=Path, help="run folders, evaluation folders, or folders to search")
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder (default runs/compare)")
    p.add_argument("--tag", default="charts/episodic_return", help="training scalar (one point per game for returns)")
    p.add_argument("--window", type=int, default=100, help="games in each run's rolling mean (curves)")
    p.add_argument("--last-games", type=int, default=100, help="last values of each run in the training table")
    p.add_argument("--pause-minutes", type=float, default=10.0, help="a longer gap between two points is a pause")
    p.add_argument("--per-folder", action="store_true", help="also evaluate.py --compare's per-folder table + plot")
    p.add_argument("--title", default="Breakout: training return")
    opts = p.parse_args(argv)
    if opts.window < 1 or opts.last_games < 1:
        print("error: --window and --last-games must be positive", file=sys.stderr)
        return 2
    try:
        result = compare(opts.paths, opts.out, opts.tag, opts.window, opts.last_games, opts.pause_minutes,
                         opts.per_folder, opts.title)  # fmt: skip
    except (ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result["markdown"])
    print(f"wrote {opts.out / 'compare.md'}, compare.json" + (", curves.png" if result["training"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
