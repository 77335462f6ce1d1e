"""Where one training update of dqn_per_dueling_atari.py spends its time, phase by phase (median ms per update).

    python benchmarks/dqn_update_profile.py                    # batch 32, 200 updates, the script's defaults
    python benchmarks/dqn_update_profile.py --batch-size 64 --updates 100

Uses the script's own ReplayMemory (filled with random frames), QNetwork and double_dqn_target, and runs the same
update as its training loop: PER sample + stack rebuild, Q(s') by the online and the target net, Q(s), backward,
gradient clipping, fused Adam, priority update. The last line is one greedy action for the script's 8 envs, which
the loop runs once per vector step (every 8 agent steps), not once per update.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--updates", type=int, default=200, help="timed updates (after 20 warm-up updates)")
    opts = parser.parse_args()
    import dqn_per_dueling_atari as dqn

    args, rng = dqn.Args(), np.random.default_rng(0)
    memory = dqn.ReplayMemory(50_000, args.num_envs, args.frame_stack, args.n_step, args.gamma,
                              args.prioritized_replay_alpha, args.prioritized_replay_eps)  # fmt: skip
    no = np.zeros(args.num_envs, dtype=bool)
    for _ in range(2_000):
        frames = rng.integers(0, 256, size=(args.num_envs, 84, 84), dtype=np.uint8)
        memory.add(frames, rng.integers(0, 4, args.num_envs), rng.integers(-1, 2, args.num_envs), no, no, no, no, frames)
    q_network, target_network = (dqn.QNetwork(4, args.frame_stack).to(memory_format=torch.channels_last) for _ in range(2))
    optimizer = optim.Adam(q_network.parameters(), lr=args.learning_rate, eps=1.5e-4, fused=True)
    times: dict[str, list[float]] = {}

    def lap(name: str, t0: float) -> float:
        now = time.perf_counter()
        times.setdefault(name, []).append(now - t0)
        return now

    for _ in range(opts.updates + 20):
        t = time.perf_counter()
        idx, batch, weights, _ = memory.sample(opts.batch_size, 0.4)
        b_obs, b_actions, b_returns, b_discounts, b_next_obs = (torch.from_numpy(x) for x in batch)
        t = lap("PER sample + stack rebuild", t)
        with torch.no_grad():
            next_online, next_target = q_network(b_next_obs), target_network(b_next_obs)
            td_target = dqn.double_dqn_target(next_online, next_target, b_returns, b_discounts)
        t = lap("Q(s') online + target (no grad)", t)
        old_val = q_network(b_obs).gather(1, b_actions[:, None]).squeeze(1)
        loss = (torch.from_numpy(weights) * F.smooth_l1_loss(old_val, td_target, reduction="none")).mean()
        t = lap("Q(s) forward + loss", t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t = lap("backward", t)
        nn.utils.clip_grad_norm_(q_network.parameters(), args.max_grad_norm)
        optimizer.step()
        t = lap("clip + fused Adam", t)
        memory.update_priorities(idx, (td_target - old_val).detach().abs().numpy())
        t = lap("priority update (sum tree)", t)
        with torch.no_grad():
            q_network(torch.from_numpy(rng.integers(0, 256, (args.num_envs, 4, 84, 84), dtype=np.uint8))).argmax(1)
        lap(f"act: greedy Q for {args.num_envs} envs (per vector step)", t)

    print(f"torch {torch.__version__} | {torch.get_num_threads()} threads | batch {opts.batch_size} | {opts.updates} updates")
    total = 0.0
    for name, values in times.items():
        ms = statistics.median(values[20:]) * 1e3
        total += ms if not name.startswith("act") else 0.0
        print(f"{name:42s} {ms:8.2f} ms")
    act = statistics.median(times[next(k for k in times if k.startswith("act"))][20:]) * 1e3
    per_step = total / args.train_frequency + act / args.num_envs
    print(f"{'one update (sum of the phases above act)':42s} {total:8.2f} ms")
    print(f"learner bound at train_frequency {args.train_frequency}: {1e3 / per_step:.0f} agent steps/s (no env time)")


if __name__ == "__main__":
    main()
