"""How many evaluation games a stable headline needs: the IQM's 95% CI against the number of games per seed.

    nice -n 10 python benchmarks/eval_games_needed.py --checkpoint checkpoints/ppo_atari_breakout.pt --num-games 30 \
        --seeds 0 1 2 3 4 5 --output-dir runs/eval/games_needed
    python benchmarks/eval_games_needed.py --from-dir runs/eval/games_needed  # re-tabulate, no games played

Plays --num-games games per seed once with evaluate.py (any evaluate.py flag applies; its default protocol otherwise),
then for k games per seed (--per-seed) cuts each seed's games into blocks of k consecutive games. The first block is
what a k-games-per-seed evaluation would have reported: IQM, its 95% CI (stratified over seeds, common/stats.py) and
width, median, mean and its CI width. Across the blocks, the range of the IQM and of the mean shows how far two such
evaluations land apart. Prints a markdown table and writes it to <output dir>/games_needed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.throughput import cpu_model  # noqa: E402
from common.checkpoint import CheckpointError  # noqa: E402
from common.contract import ContractError  # noqa: E402
from common.stats import score_stats  # noqa: E402
from evaluate import EvalArgs, check_opts, read_csv, run  # noqa: E402


def table(games: list[dict], per_seed: list[int]) -> str:
    """Markdown table of the IQM / mean and their CIs for blocks of k games per seed (games: per_game.csv rows)."""
    num = min(sum(g["seed"] == s for g in games) for s in {g["seed"] for g in games})
    head = ["games/seed", "games", "IQM", "IQM 95% CI", "CI width", "width / IQM", "median", "mean", "mean CI width",
            "blocks", "IQM over blocks", "mean over blocks"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in [k for k in per_seed if 2 <= k <= num]:  # a CI needs 2 games per seed
        blocks = []
        for b in range(num // k):
            sub = [g for g in games if b * k <= int(g["game"]) < (b + 1) * k]
            blocks.append(score_stats([float(g["score"]) for g in sub], strata=[g["seed"] for g in sub], ci=not blocks))
        s, (lo, hi) = blocks[0], blocks[0]["iqm_ci95"]
        iqms, means = [b["iqm"] for b in blocks], [b["mean"] for b in blocks]
        lines.append(f"| {k} | {s['n']} | {s['iqm']:.2f} | {lo:.2f}..{hi:.2f} | {hi - lo:.2f} | {(hi - lo) / s['iqm']:.2f} | "
                     f"{s['median']:.1f} | {s['mean']:.2f} | {s['ci95'][1] - s['ci95'][0]:.2f} | {len(blocks)} | "
                     f"{min(iqms):.2f}..{max(iqms):.2f} | {min(means):.2f}..{max(means):.2f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    """Play (or read --from-dir) the games, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-dir", help="an evaluate.py output dir to tabulate instead of playing")
    parser.add_argument("--per-seed", type=int, nargs="+", default=[2, 5, 10, 15, 30], help="games per seed (k >= 2)")
    ours, rest = parser.parse_known_args()
    try:
        if ours.from_dir:
            out_dir = Path(ours.from_dir)
        else:
            opts = tyro.cli(EvalArgs, args=rest)
            check_opts(opts)
            out_dir = Path(run(opts)["output_dir"])
        games = read_csv(out_dir / "per_game.csv")
    except (CheckpointError, ContractError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    wall = json.loads((out_dir / "summary.json").read_text())["evaluation"]["wall_seconds"]
    text = (f"{len(games)} games from {out_dir}, played in {wall / 60:.1f} min on {cpu_model()} ({os.cpu_count()} cores)\n\n"
            + table(games, ours.per_seed))  # fmt: skip
    print(text)
    (out_dir / "games_needed.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
