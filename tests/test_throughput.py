"""benchmarks/throughput.py: the floor it reports is built from positive parts and agrees with its own model."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import throughput  # noqa: E402

TINY = {  # a few seconds each: two PPO iterations; a DQN with two logged SPS points
    "ppo_atari": ["--num-envs", "2", "--num-steps", "16", "--num-minibatches", "2", "--update-epochs", "1"],
    "dqn_ram_atari": ["--num-envs", "2", "--buffer-size", "2000", "--learning-starts", "64", "--batch-size", "8",
                      "--train-frequency", "1"],
    "slot_attn_atari": ["--num-envs", "2", "--buffer-size", "2000", "--learning-starts", "64", "--batch-size", "8",
                        "--train-frequency", "1"],  # acting: the slot encoder on each env's slot state
}  # fmt: skip
STEPS = {"ppo_atari": 96, "dqn_ram_atari": 480, "slot_attn_atari": 320}


@pytest.mark.parametrize("script", sorted(TINY))
def test_floor_is_positive_and_consistent(script):
    r = throughput.measure(script, TINY[script], STEPS[script], env_steps=20, reps=2)
    assert r["script"] == script and r["num_envs"] == 2
    assert min(r["env_ms"], r["act_ms"], r["learn_ms"], r["train_sps"]) > 0
    parts = {"env": r["env_ms"], "act": r["act_ms"], "learn": r["learn_ms"]}
    if script == "dqn_ram_atari":  # its games step in a child process while it learns
        assert r["model"] == "act + max(env, learn)"
        per_step_ms = parts["act"] + max(parts["env"], parts["learn"])
    else:
        assert r["model"] == "env + act + learn"
        per_step_ms = sum(parts.values())
    cpu = r["env_cpu_ms"] + r["act_cpu_ms"] + r["learn_cpu_ms"]
    assert min(r["act_cpu_ms"], r["learn_cpu_ms"]) > 0 and r["env_cpu_ms"] >= 0  # env: /proc's 10 ms ticks for a child
    assert r["cpu_bound_ms"] == pytest.approx(cpu / r["cores"])
    assert r["floor_sps"] == pytest.approx(1e3 / max(per_step_ms, r["cpu_bound_ms"]))
    assert r["bound"] == ("cores" if r["cpu_bound_ms"] > per_step_ms else "parts")
    assert r["env_sps"] == pytest.approx(1e3 / r["env_ms"])
    assert r["ratio"] == pytest.approx(r["train_sps"] / r["floor_sps"])


def test_cpu_seconds_counts_a_busy_child_process():
    import subprocess
    import time

    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    try:
        time.sleep(0.2)  # the child's interpreter is up
        before, t0 = throughput.cpu_seconds(), time.perf_counter()
        time.sleep(0.8)  # this process idles: what is counted is the child's
        used, wall = throughput.cpu_seconds() - before, time.perf_counter() - t0
    finally:
        child.wait()
    assert 0.4 * wall < used < 1.1 * wall + 0.05, (used, wall)


def test_sb3_peer_says_in_one_line_what_is_missing():
    """benchmarks/sb3_peer.py needs stable-baselines3, which this repo does not install: one line, no traceback."""
    import importlib.util
    import subprocess

    def run(*flags: str):
        return subprocess.run([sys.executable, str(REPO / "benchmarks/sb3_peer.py"), *flags], capture_output=True,
                              text=True, cwd=REPO, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""})  # fmt: skip

    bad = run("--steps", "0")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "error: --steps, --repeats and --buffer-size must be positive, --learning-starts >= 0"]  # fmt: skip
    if importlib.util.find_spec("stable_baselines3") is not None:
        pytest.skip("stable-baselines3 is installed here: the benchmark would run")
    missing = run("--algo", "dqn")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert (
        missing.stderr.strip()
        == "error: stable-baselines3 is not importable (not a dependency of this repo); see this file's docstring"
    )
