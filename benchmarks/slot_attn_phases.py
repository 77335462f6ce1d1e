"""The cost of slot_attn_atari.py's two phases, and its DQN phase's SPS against dqn_per_dueling_atari.py's, in one run.

    python benchmarks/slot_attn_phases.py --pretrain-steps 300 --pretrain-frames 8000 --dqn-steps 6000 --learning-starts 2000
    python benchmarks/slot_attn_phases.py --skip-pretrain --dqn-steps 6000 --learning-starts 2000 --repeats 3

Phase 1 runs slot_attn_atari.pretrain (random-play collection, then the slot autoencoder's updates, with the held-out
tracking accuracy at the end): its wall times and updates per second. Phase 2 is slot_attn_atari.main with
--pretrain-steps 0 (a DQN phase costs the same with any encoder weights), and the pixel DQN is dqn_per_dueling_atari.main
with the same --dqn-steps, --learning-starts and the scripts' other defaults: training SPS as benchmarks/throughput.py
measures it (agent steps between the first and the last charts/SPS point over their wall time), alternated, the median of
--repeats. Set OMP_WAIT_POLICY=PASSIVE on a shared CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dqn_per_dueling_atari as dqn  # noqa: E402
import slot_attn_atari as sa  # noqa: E402
from benchmarks.throughput import cpu_model, train_sps  # noqa: E402


def phase_1(args: sa.Args, save: str | None) -> dict:
    """slot_attn_atari.pretrain on a fresh network: collection and update wall times, final held-out tracking."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    net = sa.QNetwork(4, args.num_slots, args.slot_iters).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=sa.PRETRAIN_LR, eps=1.5e-4, fused=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        sa.pretrain(args, SimpleNamespace(stopping=False, dir=Path(tmp)), net, optimizer, 0, torch.device("cpu"))
        wall = time.time() - t0
        acc = EventAccumulator(str(Path(tmp) / "pretrain"), size_guidance={"scalars": 0})
        acc.Reload()
        last = {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}
    if save:
        torch.save(net.state_dict(), save)
    return {"wall_s": wall, **last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--pretrain-frames", type=int, default=8000)
    parser.add_argument("--pretrain-batch", type=int, default=16)
    parser.add_argument("--log-masks-every", type=int, default=100, help="phase 1: updates between tracking evaluations")
    parser.add_argument("--skip-pretrain", action="store_true", help="only the DQN phases' SPS")
    parser.add_argument("--save", default=None, help="write phase 1's network state_dict here")
    parser.add_argument("--dqn-steps", type=int, default=6000, help="agent steps of each DQN run")
    parser.add_argument("--learning-starts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1, help="DQN runs of each script (0: phase 1 only)")
    opts = parser.parse_args()
    print(f"machine: {cpu_model()} | {os.cpu_count()} cores | {torch.get_num_threads()} torch threads | torch "
          f"{torch.__version__} | load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    if not opts.skip_pretrain:
        args = replace(sa.Args(), pretrain_steps=opts.pretrain_steps, pretrain_frames=opts.pretrain_frames,
                       pretrain_batch=opts.pretrain_batch, log_masks_every=opts.log_masks_every)  # fmt: skip
        r = phase_1(args, opts.save)
        print(f"phase 1: {opts.pretrain_frames} + {max(opts.pretrain_frames // 10, args.num_envs)} random-play frames in "
              f"{r['slots/collect_seconds']:.1f} s; {opts.pretrain_steps} updates of {opts.pretrain_batch} x {sa.SEQ_LEN} "
              f"steps: {r['slots/pretrain_updates_per_s']:.2f} updates/s; phase 1 wall {r['wall_s']:.0f} s")  # fmt: skip
        print(f"phase 1 held-out tracking within {sa.TRACK_PX:g} px: ball {r['slots/ball_track_acc']:.3f}, paddle "
              f"{r['slots/paddle_track_acc']:.3f}; last losses recon {r['slots/recon_loss']:.4f} position "
              f"{r['slots/position_loss']:.4f} contrast {r['slots/contrast_loss']:.4f}")  # fmt: skip
    if not opts.repeats:
        return
    common = dict(total_timesteps=opts.dqn_steps, learning_starts=opts.learning_starts, eval_episodes=0, save_model=False,
                  progress=False, checkpoint_every=0)  # fmt: skip
    runs = {"slot_attn_atari (phase 2)": [], "dqn_per_dueling_atari": []}
    for _ in range(opts.repeats):
        runs["slot_attn_atari (phase 2)"].append(train_sps(sa, replace(sa.Args(), pretrain_steps=0, **common)))
        runs["dqn_per_dueling_atari"].append(train_sps(dqn, replace(dqn.Args(), **common)))
    for name, sps in runs.items():
        print(f"{name:28s} training SPS (median of {opts.repeats}): {statistics.median(sps):7.1f}   runs: "
              f"{', '.join(f'{x:.1f}' for x in sps)}")  # fmt: skip
    med = [statistics.median(v) for v in runs.values()]
    print(f"slot DQN phase / pixel DQN: {med[0] / med[1]:.2f}  ({opts.dqn_steps} agent steps, learning starts "
          f"{opts.learning_starts}, 8 envs, the scripts' defaults otherwise)")  # fmt: skip


if __name__ == "__main__":
    main()
