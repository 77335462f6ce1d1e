"""Throughput benchmark: env-only SPS of a script's training env and the script's own training SPS, in one run.

    python benchmarks/throughput.py --script ppo_atari --steps 20480
    python benchmarks/throughput.py --script dqn_per_dueling_atari --steps 12000 -- --learning-starts 2000
    (flags after -- go to the script)

Env-only SPS steps the script's training vector env (`make_vector_env`, same number of envs) with uniformly random
actions. Training SPS is the script's steady-state rate: agent steps per second between the first and the last
`charts/SPS` point it logs (so set-up, the first iteration and a DQN's pre-learning phase are not counted), read back
from its TensorBoard file. Each figure is the median of --repeats runs, and the ratio is of the medians.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def env_sps(mod, args, steps: int) -> float:
    if hasattr(mod, "make_vector_env"):  # ale-py's vector env / the RAM script's child-process one
        envs = mod.make_vector_env(args, args.num_envs)
    else:  # hybrid_atari: a SyncVectorEnv of make_env, as its main() builds it
        import gymnasium as gym

        thunks = [mod.make_env(args, args.seed + i, i) for i in range(args.num_envs)]
        envs = gym.vector.SyncVectorEnv(thunks, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, envs.single_action_space.n, size=(steps, args.num_envs))
    t0 = time.perf_counter()
    for t in range(steps):
        envs.step(actions[t])
    elapsed = time.perf_counter() - t0
    envs.close()
    return steps * args.num_envs / elapsed


def train_sps(mod, args) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tempfile.TemporaryDirectory() as tmp:
        mod.main(replace(args, runs_dir=tmp))
        (run_dir,) = Path(tmp).iterdir()
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        points = acc.Scalars("charts/SPS")
        if len(points) < 2:
            sys.exit("error: fewer than 2 charts/SPS points; raise --steps")
        return (points[-1].step - points[0].step) / (points[-1].wall_time - points[0].wall_time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", default="ppo_atari", help="module name of the algorithm script")
    parser.add_argument("--steps", type=int, default=20480, help="agent steps of training to run")
    parser.add_argument("--env-steps", type=int, default=2000, help="vector steps for the env-only measurement")
    parser.add_argument("--repeats", type=int, default=3, help="repeat each measurement; the median is reported")
    parser.add_argument("script_args", nargs="*", help="extra flags for the script (after --)")
    opts = parser.parse_args()
    mod = importlib.import_module(opts.script)
    base = tyro.cli(mod.Args, args=opts.script_args)
    steps = opts.steps
    args = replace(base, total_timesteps=steps, eval_episodes=0, save_model=False, progress=False, checkpoint_every=0)

    env_runs, train_runs = [], []
    for _ in range(opts.repeats):
        env_runs.append(env_sps(mod, args, opts.env_steps))
        train_runs.append(train_sps(mod, args))
    env_med, train_med = statistics.median(env_runs), statistics.median(train_runs)
    threads = torch.get_num_threads()
    print(f"machine: {cpu_model()} | {os.cpu_count()} cores | {threads} torch threads | torch {torch.__version__}")
    print(f"script: {opts.script} {' '.join(opts.script_args)} | {args.num_envs} envs | {steps} agent steps")
    print(f"env-only SPS   (median of {opts.repeats}): {env_med:8.0f}   runs: {', '.join(f'{x:.0f}' for x in env_runs)}")
    print(f"training SPS   (median of {opts.repeats}): {train_med:8.0f}   runs: {', '.join(f'{x:.0f}' for x in train_runs)}")
    print(f"training / env-only: {train_med / env_med:.3f}")


if __name__ == "__main__":
    main()
