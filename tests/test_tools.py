"""The commands behind the figures in docs/: benchmarks and the learning-curve plot, on tiny inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from conftest import run_script


def numbers(pattern: str, text: str) -> list[float]:
    found = re.findall(pattern, text)
    assert found, f"{pattern!r} not in:\n{text}"
    return [float(x) for x in found]


def test_dqn_update_profile_phases_add_up(tmp_path):
    out = run_script("benchmarks/dqn_update_profile", "--updates", "3", cwd=tmp_path).stdout
    phases = numbers(r"\s([\d.]+) ms", "\n".join(out.splitlines()[1:7]))  # the 6 phases of one update
    (total,) = numbers(r"one update \(sum of the phases above act\)\s+([\d.]+) ms", out)
    assert len(phases) == 6 and all(p > 0 for p in phases) and total == pytest.approx(sum(phases), abs=0.05)
    (bound,) = numbers(r"learner bound at train_frequency 4: (\d+) agent steps/s", out)
    assert bound > 0


def test_replay_memory_bytes_per_transition(tmp_path):
    out = run_script("benchmarks/replay_memory", "--buffer-size", "16000", cwd=tmp_path).stdout
    assert "transitions stored: 16000" in out
    (per_transition,) = numbers(r"arrays' nbytes: [\d.]+ GB = ([\d.]+) B per transition", out)
    assert 84 * 84 + 3 <= per_transition <= 7_500  # one frame + action, reward, flags, plus the sum tree's share


def test_plot_curves_rolling_mean_and_png(tmp_path):
    run = tmp_path / "BreakoutNoFrameskip-v4__demo__1__0"
    writer = SummaryWriter(str(run))
    returns = np.arange(30, dtype=float)
    for i, r in enumerate(returns):  # a game every 10 s, and a 2-hour pause (a stopped and resumed run) after game 15
        writer.add_scalar("charts/episodic_return", r, 100 * (i + 1), walltime=1e9 + 10 * i + 7200 * (i >= 15))
    writer.close()
    out = run_script("tools/plot_curves", str(run), "--out", str(tmp_path / "curve.png"), "--window", "10", "--at", "950",
                     "1000", "2050", "3100", "9000", "--labels", "mine", cwd=tmp_path).stdout  # fmt: skip
    # at step 2050: the window of the 10 games ending at step 2000 (returns 10..19); before 1000: no full window yet
    # 3100: one gap (100 steps) past the last game still counts; 9000: past the run's end
    at = f"950: -, 1000: 4.500, 2050: {returns[10:20].mean():.3f}, 3100: 24.500, 9000: -"
    assert f"mine, rolling mean of 10 games at steps: {at}" in out
    assert f"30 games, last step 3000, rolling mean of last 10 games {returns[-10:].mean():.2f}, max 29" in out
    assert "0.08 h running from first to last point (10 agent steps/s; 2.08 h wall clock with 1 pauses)" in out
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = run_script("tools/plot_curves", str(tmp_path / "missing"), "--out", str(tmp_path / "x.png"), cwd=tmp_path,
                      check=False)  # fmt: skip
    assert proc.returncode != 0 and "is not a run folder" in proc.stderr
    proc = run_script("tools/plot_curves", str(run), "--out", str(tmp_path / "x.png"), "--labels", "a", "b", cwd=tmp_path,
                      check=False)  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.strip() == "error: 2 --labels for 1 runs"
