"""Training SPS of this repo's PPO and DQN against Stable-Baselines3's, same hyperparameters, alternating in one run.

    pip install --target /tmp/sb3 --no-deps stable-baselines3==2.9.2 pandas pytz tzdata   # not a dependency of this repo
    PYTHONPATH=/tmp/sb3 OMP_WAIT_POLICY=PASSIVE python benchmarks/sb3_peer.py --algo ppo --steps 8192 --repeats 3
    PYTHONPATH=/tmp/sb3 OMP_WAIT_POLICY=PASSIVE python benchmarks/sb3_peer.py --algo dqn --steps 4000 --repeats 3

Each repeat runs ours, then SB3's, each in a fresh process (so neither inherits the other's threads or memory), and
prints both steady-state rates and their ratio; the medians and the per-pair ratios close the report. Absolute speeds on
a shared machine drift, so the claim is the ratio of one run.

- ours: `ppo_atari.py` / `dqn_per_dueling_atari.py` with their defaults (PPO: 8 envs x 128 steps, 4 epochs x 4
  minibatches; DQN: 8 envs, one update of 32 per 4 agent steps, Double DQN + dueling + PER + 3-step returns), training SPS
  as `benchmarks/throughput.py` reads it: agent steps per second between the first and last `charts/SPS` point.
- SB3: `make_atari_env(env_id, n_envs=8)` (its AtariWrapper; a DummyVecEnv, SB3's default) + `VecFrameStack(4)`, CnnPolicy
  (the same Nature CNN). PPO as RL Zoo's Atari settings, which are ours: n_steps 128, batch 256, 4 epochs, lr 2.5e-4,
  clip 0.1, ent 0.01, vf 0.5, GAE 0.95. DQN: SB3's plain DQN (no PER, dueling or n-step: it has none), lr 1e-4, batch 32,
  train_freq 1 vector step with 2 gradient steps (one update per 4 agent steps over 8 envs, as ours), target update 2000,
  grad clip 10. Rate: agent steps per second between its first and last progress record (each rollout for PPO, every
  800 agent steps after learning starts for DQN).
Both sides: the same torch thread count (the cores), `--buffer-size`/`--learning-starts` for the DQNs alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
SCRIPT = {"ppo": "ppo_atari", "dqn": "dqn_per_dueling_atari"}


def ours(algo: str, steps: int, buffer_size: int, learning_starts: int) -> float:
    import tyro

    sys.path.insert(0, str(REPO))
    import throughput  # the same steady-state reading as the throughput benchmark

    mod = __import__(SCRIPT[algo])
    flags = ["--total-timesteps", str(steps), "--eval-episodes", "0", "--no-save-model", "--checkpoint-every", "0"]
    if algo == "dqn":
        flags += ["--buffer-size", str(buffer_size), "--learning-starts", str(learning_starts)]
    return throughput.train_sps(mod, tyro.cli(mod.Args, args=[*flags, "--no-progress"]))


def sb3(algo: str, steps: int, buffer_size: int, learning_starts: int) -> float:
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    marks: list[tuple[int, float]] = []

    class Marks(BaseCallback):
        def _on_rollout_end(self) -> None:
            if algo == "ppo":
                marks.append((self.num_timesteps, time.perf_counter()))

        def _on_step(self) -> bool:
            if algo == "dqn" and self.num_timesteps > learning_starts and self.num_timesteps % 800 == 0:
                marks.append((self.num_timesteps, time.perf_counter()))
            return True

    env = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=8, seed=1), n_stack=4)
    if algo == "ppo":
        model = PPO("CnnPolicy", env, n_steps=128, batch_size=256, n_epochs=4, learning_rate=2.5e-4, clip_range=0.1,
                    ent_coef=0.01, vf_coef=0.5, gae_lambda=0.95, max_grad_norm=0.5, device="cpu", seed=1)  # fmt: skip
    else:
        model = DQN("CnnPolicy", env, learning_rate=1e-4, buffer_size=buffer_size, learning_starts=learning_starts,
                    batch_size=32, train_freq=1, gradient_steps=2, target_update_interval=2000, max_grad_norm=10,
                    optimize_memory_usage=False, device="cpu", seed=1)  # fmt: skip
    model.learn(total_timesteps=steps, callback=Marks())
    env.close()
    if len(marks) < 2:
        sys.exit("error: fewer than 2 progress records; raise --steps")
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    return (s1 - s0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=sorted(SCRIPT), default="ppo", help="ppo: ppo_atari.py; dqn: dqn_per_dueling")
    parser.add_argument("--steps", type=int, default=8192, help="agent steps per training run")
    parser.add_argument("--repeats", type=int, default=3, help="pairs (ours, SB3) to run, alternating")
    parser.add_argument("--buffer-size", type=int, default=50_000, help="DQN replay size, both sides")
    parser.add_argument("--learning-starts", type=int, default=800, help="DQN steps before learning, both sides")
    parser.add_argument("--side", choices=["ours", "sb3"], help=argparse.SUPPRESS)  # one measurement, as a JSON line
    opts = parser.parse_args()
    if opts.steps <= 0 or opts.repeats <= 0 or opts.buffer_size <= 0 or opts.learning_starts < 0:
        sys.exit("error: --steps, --repeats and --buffer-size must be positive, --learning-starts >= 0")
    if opts.side:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        fn = ours if opts.side == "ours" else sb3
        print(json.dumps({"sps": fn(opts.algo, opts.steps, opts.buffer_size, opts.learning_starts)}), flush=True)
        return
    try:
        import stable_baselines3
    except ImportError:
        sys.exit("error: stable-baselines3 is not importable (not a dependency of this repo); see this file's docstring")
    wait = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"{opts.algo}: {SCRIPT[opts.algo]} vs stable-baselines3 {stable_baselines3.__version__} | {opts.steps} agent "
          f"steps | {os.cpu_count()} cores | OMP_WAIT_POLICY={wait} | load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    flags = ["--algo", opts.algo, "--steps", str(opts.steps), "--buffer-size", str(opts.buffer_size),
             "--learning-starts", str(opts.learning_starts)]  # fmt: skip
    sps: dict[str, list[float]] = {"ours": [], "sb3": []}
    for _ in range(opts.repeats):
        for side in sps:
            out = subprocess.run([sys.executable, __file__, *flags, "--side", side], check=True, cwd=REPO,
                                 stdout=subprocess.PIPE, text=True).stdout  # fmt: skip
            sps[side].append(json.loads(next(x for x in out.splitlines() if x.startswith("{")))["sps"])
            print(f"  {side}: {sps[side][-1]:.1f} SPS", flush=True)
    pairs = [a / b for a, b in zip(sps["ours"], sps["sb3"])]
    med = {k: statistics.median(v) for k, v in sps.items()}
    print(f"median SPS: ours {med['ours']:.1f}, SB3 {med['sb3']:.1f}; ours / SB3 {med['ours'] / med['sb3']:.3f} "
          f"(pairs: {', '.join(f'{p:.3f}' for p in pairs)}) | load {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
