"""The cost of the slot agent's two phases and its slots' held-out tracking accuracy, and slot_attn_atari.py's DQN SPS
against dqn_per_dueling_atari.py's, in one run.

    python benchmarks/slot_attn_phases.py --pretrain-updates 1000 --repeats 0 --save /tmp/slots.pt
    python benchmarks/slot_attn_phases.py --slot-checkpoint /tmp/slots.pt --track-only
    python benchmarks/slot_attn_phases.py --slot-checkpoint /tmp/slots.pt --dqn-steps 6000 --learning-starts 2000 --repeats 3
    python benchmarks/slot_attn_phases.py --slot-checkpoint /tmp/slots.pt --track-frames 0 --end-to-end --dqn-steps 3000

Phase 1 runs slot_pretrain_atari.main (frame collection, then the slot autoencoder's updates) with its defaults except the
flags given here: its wall times and updates per second. Then (or for --slot-checkpoint) the tracking accuracy on held-out
games that neither phase 1 nor its held-out set played (env seeds 30,000 on), three ways: random play, --play-checkpoint's
agent, and phase 1's mix; the fraction of in-play frames whose Hungarian-matched ball slot's attention centroid is within
4 screen px of the RAM ball position, and of frames whose paddle slot's is within 4 px of the paddle. Phase 2 is
slot_attn_atari.main on those slots, and the pixel DQN dqn_per_dueling_atari.main with the same --dqn-steps,
--learning-starts and the scripts' other defaults: training SPS as benchmarks/throughput.py measures it (agent steps
between the first and the last charts/SPS point over their wall time), alternated, the median of --repeats. Set
OMP_WAIT_POLICY=PASSIVE on a shared CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dqn_per_dueling_atari as dqn  # noqa: E402
import slot_attn_atari as sa  # noqa: E402
import slot_pretrain_atari as sp  # noqa: E402
from benchmarks.throughput import cpu_model, train_sps  # noqa: E402
from common.checkpoint import load_checkpoint  # noqa: E402


def phase_1(args: sp.Args, save: str | None) -> tuple[str, dict]:
    """slot_pretrain_atari.main in a temporary runs folder -> (checkpoint path, last value of each scalar, wall_s)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tmp = tempfile.mkdtemp()
    t0 = time.time()
    path = sp.main(replace(args, runs_dir=tmp))
    wall = time.time() - t0
    acc = EventAccumulator(str(path.parent), size_guidance={"scalars": 0})
    acc.Reload()
    last = {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}
    if save:
        shutil.copy(path, save)
        path = Path(save)
    return str(path), {"wall_s": wall, **last}


def held_out_tracking(path: str, frames: int, png: str | None, seed: int = 30_000) -> dict[str, tuple[float, ...]]:
    """(ball, paddle, fraction of frames with the ball on screen, of those with it in play) of the checkpoint's slots on
    fresh games: random play, the agent's, the mix; png: the masks on 4 frames of the agent's games, 40 steps in."""
    ckpt = load_checkpoint(path)
    args = sp.Args(**ckpt["args"])
    model = sp.SlotAutoencoder(args.num_slots, args.slot_iters).to(memory_format=torch.channels_last)
    model.load_state_dict(ckpt["model"])
    model.eval()
    out = {}
    for name, fraction in (("random play", 0.0), ("agent play", 1.0), ("phase 1's mix", args.play_fraction)):
        play = replace(args, play_fraction=fraction)
        data = sp.collect(play, seed, frames, sp.play_agent(play))
        out[name] = (*sp.tracking(model, data, torch.device("cpu")), data[2][..., 2].mean(), data[2][..., 4].mean())
        if png and fraction == 1.0:
            from PIL import Image

            E, (K, D) = data[1].shape[1], model.encoder.slot_attention.mu.shape
            with torch.no_grad():
                state = torch.zeros(E, K, D + 4)
                _, _, x, _, attn = sp.slot_pass(model, data, np.zeros(E, int), np.arange(E), state, 40, "cpu")
            Image.fromarray(sp.mask_grid(x.numpy(), attn)).save(png)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-updates", type=int, default=1000, help="phase 1's --total-timesteps (updates)")
    parser.add_argument("--pretrain-flags", default="", help="more slot_pretrain_atari.py flags, e.g. '--recon-weight 0'")
    parser.add_argument("--slot-checkpoint", default=None, help="skip phase 1: measure this slot_pretrain_atari.py checkpoint")
    parser.add_argument("--save", default=None, help="copy phase 1's checkpoint here")
    parser.add_argument("--track-frames", type=int, default=1600, help="held-out frames per tracking measurement (0: none)")
    parser.add_argument("--track-only", action="store_true", help="no DQN phases")
    parser.add_argument("--masks-png", default=None, help="write the slots' masks on 4 held-out frames here (PNG)")
    parser.add_argument("--dqn-steps", type=int, default=6000, help="agent steps of each DQN run")
    parser.add_argument("--learning-starts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1, help="DQN runs of each script (0: none)")
    parser.add_argument("--end-to-end", action="store_true", help="also time slot_attn_atari.py --end-to-end (a third row)")
    opts = parser.parse_args()
    print(f"machine: {cpu_model()} | {os.cpu_count()} cores | {torch.get_num_threads()} torch threads | torch "
          f"{torch.__version__} | load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    path = opts.slot_checkpoint
    if path is None:
        import tyro

        args = tyro.cli(sp.Args, args=["--total-timesteps", str(opts.pretrain_updates), *opts.pretrain_flags.split()])
        path, r = phase_1(replace(args, progress=False), opts.save)
        collect, updates = r["slots/collect_seconds"], r["wall_s"] - r["slots/collect_seconds"]
        print(f"phase 1: {args.pretrain_frames} + {args.pretrain_frames // 10} frames collected in {collect:.0f} s; "
              f"{opts.pretrain_updates} updates of {args.batch_size} streams x {args.seq_len} steps (held-out tracking "
              f"every {args.log_masks_every} included) in {updates:.0f} s ({opts.pretrain_updates / updates:.2f} updates/s); "
              f"phase 1 wall {r['wall_s']:.0f} s; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        print(f"phase 1's own held-out tracking (its mix): ball {r['slots/ball_track_acc']:.3f}, paddle "
              f"{r['slots/paddle_track_acc']:.3f}; last losses: recon {r['slots/recon_loss']:.4f}, position "
              f"{r['slots/position_loss']:.4f}, spread {r['slots/spread_loss']:.4f}, contrast "
              f"{r['slots/contrast_loss']:.4f}")  # fmt: skip
    t0 = time.time()
    tracking = held_out_tracking(path, opts.track_frames, opts.masks_png) if opts.track_frames else {}  # 0: not measured
    for name, (ball, paddle, seen, in_play) in tracking.items():
        print(f"tracking within {sp.TRACK_PX:g} px on {opts.track_frames} new frames, {name:14s}: ball {ball:.3f} "
              f"(ball on screen in {seen:.1%} of frames, in play in {in_play:.1%}: of the in-play frames, >= "
              f"{ball * seen / in_play:.3f}), paddle {paddle:.3f}")  # fmt: skip
    print(f"(tracking measured in {time.time() - t0:.0f} s; load average {os.getloadavg()[0]:.1f})")
    if opts.track_only or not opts.repeats:
        return
    common = dict(total_timesteps=opts.dqn_steps, learning_starts=opts.learning_starts, eval_episodes=0, save_model=False,
                  progress=False, checkpoint_every=0)  # fmt: skip
    runs = {"slot_attn_atari (frozen slots)": [], "dqn_per_dueling_atari": []} | ({"slot_attn_atari --end-to-end": []}
                                                                                   if opts.end_to_end else {})  # fmt: skip
    threads = torch.get_num_threads()  # each run starts with it: slot_attn_atari.main sets 1 on CPU, the others keep it
    for _ in range(opts.repeats):
        torch.set_num_threads(threads)
        runs["slot_attn_atari (frozen slots)"].append(train_sps(sa, replace(sa.Args(), slot_checkpoint=path, **common)))
        torch.set_num_threads(threads)
        runs["dqn_per_dueling_atari"].append(train_sps(dqn, replace(dqn.Args(), **common)))
        if opts.end_to_end:  # its replay holds 29 KB per step: the buffer is what the run needs, not the default 1M
            e2e = replace(sa.Args(), slot_checkpoint=path, end_to_end=True, buffer_size=opts.dqn_steps + 64, **common)
            runs["slot_attn_atari --end-to-end"].append(train_sps(sa, e2e))
    for name, sps in runs.items():
        print(f"{name:31s} training SPS (median of {opts.repeats}): {statistics.median(sps):7.1f}   runs: "
              f"{', '.join(f'{x:.1f}' for x in sps)}")  # fmt: skip
    med = [statistics.median(v) for v in runs.values()]
    if opts.end_to_end:
        print(f"slot DQN --end-to-end / frozen slots: {med[2] / med[0]:.3f}, / pixel DQN: {med[2] / med[1]:.3f}")
    print(f"slot DQN / pixel DQN: {med[0] / med[1]:.2f}  ({opts.dqn_steps} agent steps, learning starts "
          f"{opts.learning_starts}, 8 envs, the scripts' defaults otherwise; load average "
          f"{os.getloadavg()[0]:.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
