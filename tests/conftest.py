"""Shared test helpers: run a script as a subprocess, read TensorBoard scalars, tiny smoke-run flags."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

# OpenMP threads spin while they wait; on a CPU shared with another process (a training run) that costs ~10x.
# Set before torch is imported, for this process and the scripts it starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ENV = dict(os.environ)
REPO = Path(__file__).resolve().parents[1]

# Flags that make each script's smoke run take a few seconds on a 2-core CPU.
TINY = {
    "ppo_atari": ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "1",
                  "--total-timesteps", "128"],
    "dqn_per_dueling_atari": ["--num-envs", "2", "--buffer-size", "4000", "--learning-starts", "64", "--batch-size", "4",
                              "--train-frequency", "1", "--target-network-frequency", "50", "--checkpoint-every", "0",
                              "--total-timesteps", "250"],
    "dqn_ram_atari": ["--num-envs", "2", "--buffer-size", "4000", "--learning-starts", "64", "--batch-size", "8",
                      "--train-frequency", "1", "--target-network-frequency", "50", "--checkpoint-every", "0",
                      "--total-timesteps", "400"],
    "hybrid_atari": ["--num-envs", "2", "--buffer-size", "4000", "--learning-starts", "64", "--batch-size", "4",
                     "--train-frequency", "1", "--target-network-frequency", "50", "--checkpoint-every", "0",
                     "--total-timesteps", "250"],
    "options_atari": ["--num-envs", "2", "--num-steps", "8", "--log-interval", "1", "--total-timesteps", "128"],
    "slot_attn_atari": ["--num-envs", "2", "--buffer-size", "4000", "--learning-starts", "64", "--batch-size", "4",
                        "--train-frequency", "1", "--target-network-frequency", "50", "--checkpoint-every", "0",
                        "--total-timesteps", "250"],  # the slots: checkpoints/slot_pretrain_atari_breakout.pt
    "slot_pretrain_atari": ["--num-envs", "2", "--pretrain-frames", "64", "--batch-size", "2", "--log-masks-every", "2",
                            "--checkpoint-every", "0", "--total-timesteps", "4"],  # updates
}  # fmt: skip


def check_agent_acts(ckpt_path) -> None:
    """Load a checkpoint through the contract and act on 2 observations of its make_env env (reset, one FIRE step):
    actions [2], finite float32 scores [2, 4]. Dict observations (the hybrid's) are batched per key."""
    from common.contract import load_agent

    loaded = load_agent(ckpt_path, torch.device("cpu"))
    env = loaded.module.make_env(loaded.args, seed=0)()
    first, _ = env.reset(seed=0)
    second = env.step(1)[0]
    env.close()
    batch = {k: np.stack([first[k], second[k]]) for k in first} if isinstance(first, dict) else np.stack([first, second])
    actions, q = loaded.agent.act(batch, greedy=False)
    assert actions.shape == (2,) and q.shape == (2, 4) and q.dtype == np.float32 and np.isfinite(q).all()


def live_replay_slots(memory, naive: list, written, L: int, n: int, stack: int = 4):
    """(leaf, trajectory, index) of each naive transition whose slot a frame-store replay memory can still sample;
    asserts priority 0 for the others (an older frame of its stack overwritten, or its n-step window not written yet).
    naive[e]: env e's transitions as dicts with the "slot" (writes before it) the memory should have used."""
    for e, traj in enumerate(naive):
        for j, tr in enumerate(traj):
            leaf, age = e * L + tr["slot"] % L, written[e] - tr["slot"]  # age: writes since (1 = newest)
            if age > L:
                continue  # its slot now holds a newer transition
            if age > L - (stack - 1) or tr["slot"] + n >= written[e]:
                assert memory.tree.leaves(leaf) == 0
                continue
            assert memory.tree.leaves(leaf) > 0
            yield leaf, traj, j


def naive_nstep(traj: list, j: int, n: int, gamma: float):
    """n-step return, discount and bootstrap "next" of traj[j], by a plain loop over dicts with r, term, trunc, next."""
    ret = 0.0
    for k in range(n):
        t = traj[j + k]
        ret += gamma**k * t["r"]
        if t["term"]:
            return ret, 0.0, None
        if t["trunc"] or k == n - 1:
            return ret, gamma ** (k + 1), t["next"]


def tally_step(ends: dict, written, e: int, over, term, trunc) -> None:
    """Book env e's step in a naive-buffer test: the memory writes one slot, two at a game end (the final frame too);
    count how the step ended (game over, time limit, or a life lost inside a game)."""
    written[e] += 1 + over[e]
    ends["game_over"] += over[e] and term[e] and not trunc[e]
    ends["truncated"] += trunc[e]
    ends["life"] += term[e] and not over[e]


def run_script(script: str, *args: str, cwd: Path, timeout: float = 300, check: bool = True,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """Run `python <repo>/<script>.py args...` in cwd without a TTY; raise with its output on failure when check."""
    proc = subprocess.run([sys.executable, str(REPO / f"{script}.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=ENV | (env or {}))  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def interrupt_when_training(script: str, *args: str, cwd: Path, timeout: float = 300,
                            group: bool = False) -> tuple[subprocess.Popen, str]:  # fmt: skip
    """Start a script, wait for its first status line `global_step=... SPS=...` (printed from inside the training loop,
    so after the harness installed its signal handlers), send SIGINT (to its whole process group, as a terminal's
    Ctrl-C does, with `group`); return (the finished process, stdout + stderr)."""
    proc = subprocess.Popen([sys.executable, str(REPO / f"{script}.py"), *args], cwd=cwd, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=group)  # fmt: skip
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("global_step=") and "SPS=" in line:
            os.killpg(proc.pid, signal.SIGINT) if group else proc.send_signal(signal.SIGINT)
            break
    out = "".join(lines) + proc.communicate()[0]
    watchdog.cancel()
    return proc, out


def tb_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one scalar from all event files in a run folder, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return sorted((e.step, e.value) for e in acc.Scalars(tag)) if tag in acc.Tags()["scalars"] else []


def check_resume_without_replay(script: str, ckpt_path: Path, total: int, tags: tuple[str, ...]) -> dict[str, list]:
    """Resume a smoke run saved at N steps (epsilon decaying over 2 N, learning-starts 64) to `total` steps with no replay
    file: the step count and epsilon's schedule continue, learning restarts once 64 transitions are stored again, and
    each tag is logged, finite, as often as epsilon. Returns each tag's values."""
    first = torch.load(ckpt_path, weights_only=True)
    N = first["global_step"]
    out = run_script(script, "--resume", str(ckpt_path), "--total-timesteps", str(total), cwd=ckpt_path.parents[2]).stdout
    assert f"at global_step {N} of {total}" in out and "the replay memory starts empty" in out
    second = torch.load(ckpt_path, weights_only=True)
    assert second["global_step"] == total
    assert second["resume"]["num_updates"] >= first["resume"]["num_updates"] + (total - N) - 64 - 10
    eps = tb_scalars(ckpt_path.parent, "charts/epsilon")
    assert eps[0][0] <= N < eps[-1][0]
    for step, e in eps:  # epsilon continues the first run's schedule across the resume
        assert e == pytest.approx(max(1.0 - 0.99 * step / (2.0 * N), 0.01), abs=1e-6), step
    values = {tag: [v for _, v in tb_scalars(ckpt_path.parent, tag)] for tag in tags}
    for tag, v in values.items():
        assert len(v) == len(eps) and np.isfinite(v).all(), (tag, len(v), len(eps))
    return values


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Assert a non-zero exit with a single `error: ...` line on stderr and no traceback; return the line."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-3000:]
    return lines[0]


_TRAINED: dict[str, Path] = {}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """trained(script) -> checkpoint of a tiny run of that script, trained once per test session, with
    --keep-checkpoints and a periodic checkpoint halfway."""

    def get(script: str) -> Path:
        if script not in _TRAINED:
            assert script in TINY, f"add smoke-run flags for {script}.py to TINY in tests/conftest.py"
            cwd = tmp_path_factory.mktemp(script)
            flags = dict(zip(TINY[script][::2], TINY[script][1::2]))  # flag -> value
            flags["--checkpoint-every"] = str(int(flags["--total-timesteps"]) // 2)  # one kept checkpoint mid-run
            run_script(script, *(x for kv in flags.items() for x in kv), "--keep-checkpoints", "--eval-episodes", "0", cwd=cwd)
            (_TRAINED[script],) = cwd.glob(f"runs/*/{script}.pt")
        return _TRAINED[script]

    return get


@pytest.fixture(scope="session")
def trained_ppo(trained) -> Path:
    return trained("ppo_atari")
