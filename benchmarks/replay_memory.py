"""Bytes per transition of dqn_per_dueling_atari's replay memory, measured on a filled buffer.

    python benchmarks/replay_memory.py --buffer-size 1000000      # fills 1M transitions (needs ~7.5 GB free)
    python benchmarks/replay_memory.py --buffer-size 200000

Fills the memory through `ReplayMemory.add` with random frames (all slots touched) and reports the resident-memory
growth of the process (VmRSS, Linux) and the arrays' own `nbytes`, each divided by the number of transitions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buffer-size", type=int, default=200_000)
    parser.add_argument("--num-envs", type=int, default=8)
    opts = parser.parse_args()
    import dqn_per_dueling_atari as dqn

    args = dqn.Args()
    before = rss_bytes()
    memory = dqn.ReplayMemory(opts.buffer_size, opts.num_envs, args.frame_stack, args.n_step, args.gamma,
                              args.prioritized_replay_alpha, args.prioritized_replay_eps)  # fmt: skip
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(opts.num_envs, 84, 84), dtype=np.uint8)
    no = np.zeros(opts.num_envs, dtype=bool)
    actions, rewards = np.zeros(opts.num_envs, dtype=np.int64), np.zeros(opts.num_envs)
    for _ in range(opts.buffer_size // opts.num_envs):
        memory.add(frames, actions, rewards, no, no, no, no, frames)
    n = len(memory)
    grown = rss_bytes() - before
    print(f"transitions stored: {n} ({opts.num_envs} envs)")
    print(f"RSS growth: {grown / 1e9:.3f} GB = {grown / n:.1f} B per transition")
    print(f"arrays' nbytes: {memory.nbytes / 1e9:.3f} GB = {memory.nbytes / n:.1f} B per transition")
    print(f"a 4x84x84 uint8 stack for s and s' (CleanRL's layout) would take {2 * 4 * 84 * 84} B per transition")


if __name__ == "__main__":
    main()
