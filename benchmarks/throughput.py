"""Throughput benchmark: env-only SPS of a script's training env and the script's own training SPS, in one run.

    python benchmarks/throughput.py --script ppo_atari --iterations 20
    python benchmarks/throughput.py --script ppo_atari --iterations 20 -- --num-envs 16   # extra script flags after --

Env-only SPS steps the script's training vector env (`make_vector_env`) with uniformly random actions.
Training SPS is what the script logs as `charts/SPS` (agent steps per second, measured from the end of its
set-up to the last iteration), read back from its TensorBoard file. Each figure is the median of --repeats runs.
"""

from __future__ import annotations

import argparse
import importlib
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


def env_sps(mod, args, steps: int) -> float:
    envs = mod.make_vector_env(args, args.num_envs)
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
        acc = EventAccumulator(str(run_dir))
        acc.Reload()
        return float(acc.Scalars("charts/SPS")[-1].value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", default="ppo_atari", help="module name of the algorithm script")
    parser.add_argument("--iterations", type=int, default=20, help="training iterations (PPO rollouts) to time")
    parser.add_argument("--env-steps", type=int, default=2000, help="vector steps for the env-only measurement")
    parser.add_argument("--repeats", type=int, default=3, help="repeat each measurement; the median is reported")
    parser.add_argument("script_args", nargs="*", help="extra flags for the script (after --)")
    opts = parser.parse_args()
    mod = importlib.import_module(opts.script)
    base = tyro.cli(mod.Args, args=opts.script_args)
    steps = opts.iterations * base.num_envs * base.num_steps
    args = replace(base, total_timesteps=steps, eval_episodes=0, save_model=False, progress=False, checkpoint_every=0)

    env_runs, train_runs = [], []
    for _ in range(opts.repeats):
        env_runs.append(env_sps(mod, args, opts.env_steps))
        train_runs.append(train_sps(mod, args))
    env_med, train_med = statistics.median(env_runs), statistics.median(train_runs)
    print(f"machine: {platform.machine()} {platform.processor() or ''} | {torch.get_num_threads()} torch threads | torch {torch.__version__}")
    print(f"script: {opts.script} {' '.join(opts.script_args)} | {args.num_envs} envs | {opts.iterations} iterations ({steps} agent steps)")
    print(f"env-only SPS   (median of {opts.repeats}): {env_med:8.0f}   runs: {', '.join(f'{x:.0f}' for x in env_runs)}")
    print(f"training SPS   (median of {opts.repeats}): {train_med:8.0f}   runs: {', '.join(f'{x:.0f}' for x in train_runs)}")
    print(f"training / env-only: {train_med / env_med:.3f}")


if __name__ == "__main__":
    main()
