"""benchmarks/eval_games_needed.py: the IQM-CI-by-number-of-games table, on made-up games (no evaluation played)."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np

from common.stats import score_stats
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import eval_games_needed  # noqa: E402


def test_table_cuts_each_seed_into_blocks(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    games = [{"game": str(g), "seed": str(s), "score": str(float(rng.integers(20, 60) + 300 * (g == 3)))}
             for s in (1, 2) for g in range(10)]  # fmt: skip
    with open(tmp_path / "per_game.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["game", "seed", "score"])
        w.writeheader()
        w.writerows(games)
    (tmp_path / "summary.json").write_text(json.dumps({"evaluation": {"wall_seconds": 60.0}}))
    monkeypatch.setattr(sys, "argv", ["eval_games_needed.py", "--from-dir", str(tmp_path), "--per-seed", "1", "2", "5", "10"])
    assert eval_games_needed.main() == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [(r[0], r[1], r[9]) for r in rows] == [("| 2", "4", "5"), ("| 5", "10", "2"), ("| 10", "20", "1")]  # k=1: no CI
    full = score_stats([float(g["score"]) for g in games], strata=[g["seed"] for g in games])
    assert float(rows[-1][2]) == round(full["iqm"], 2) and rows[-1][3] == "{:.2f}..{:.2f}".format(*full["iqm_ci95"])
    first_two = [float(g["score"]) for g in games if int(g["game"]) < 2]
    assert float(rows[0][7]) == round(np.mean(first_two), 2)  # block 0 of k=2: games 0 and 1 of each seed
    assert (tmp_path / "games_needed.md").read_text().startswith("20 games from ")
