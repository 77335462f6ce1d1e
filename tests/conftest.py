"""Shared test helpers: run a script as a subprocess, read TensorBoard scalars, tiny smoke-run flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Flags that make each script's smoke run take a few seconds on a 2-core CPU.
TINY = {
    "ppo_atari": ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "1", "--total-timesteps", "128"],
}


def run_script(script: str, *args: str, cwd: Path, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python <repo>/<script>.py args...` in cwd without a TTY; raise with its output on failure when check."""
    proc = subprocess.run([sys.executable, str(REPO / f"{script}.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def tb_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one scalar from all event files in a run folder, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return sorted((e.step, e.value) for e in acc.Scalars(tag)) if tag in acc.Tags()["scalars"] else []


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Assert a non-zero exit with a single `error: ...` line on stderr and no traceback; return the line."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="session")
def trained_ppo(tmp_path_factory) -> Path:
    """A checkpoint from a tiny ppo_atari run, shared by the evaluation tests."""
    cwd = tmp_path_factory.mktemp("ppo_ckpt")
    run_script("ppo_atari", *TINY["ppo_atari"], "--eval-episodes", "0", cwd=cwd)
    (ckpt,) = cwd.glob("runs/*/ppo_atari.pt")
    return ckpt
