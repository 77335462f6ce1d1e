"""Object-centric DQN on Atari Breakout: Slot Attention slots that track the ball and the paddle, under the prioritized
dueling Double DQN of dqn_per_dueling_atari.py, its parent (boilerplate copied, marked and checked). Papers: Locatello et
al. 2020 (Slot Attention), Kipf et al. 2022 (SAVi: warm-started slots), Watters et al. 2019 (spatial broadcast decoder),
Manasyan et al. 2024 (temporal slot contrast), Jia et al. 2023 (BO-QSA: per-slot learnable initial slots).
Phase 1 pre-trains the slot autoencoder on random-play frames; phase 2 trains the DQN on frozen slots, stored in the replay.
Example: python slot_attn_atari.py --total-timesteps 1000000
"""

import os
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import tyro
from scipy.optimize import linear_sum_assignment

from common.contract import EPSILON_EVAL, env_protocol
from common.events import decode_ram
from common.run import Linear, Run, RunArgs, check_free_memory, note, require

gym.register_envs(ale_py)


@dataclass
class Args(RunArgs):
    # Experiment: the harness's flags (seed, device, track, checkpoint_every, resume, ...) come from common.run.RunArgs
    exp_name: str = Path(__file__).stem
    """the name of this experiment (run folder, checkpoint file, W&B run)"""

    # Environment
    env_id: str = "BreakoutNoFrameskip-v4"
    """ALE env id: `XNoFrameskip-v4` (classic, no sticky actions) or `ALE/X-v5` (sticky actions 0.25)"""
    fire_reset: bool = False
    """if toggled, the environment presses FIRE after each game reset; off: the agent serves every ball itself"""
    noop_max: int = 30
    """at most this many random NOOPs at the start of each game"""
    frame_stack: int = 4
    """number of 84x84 grey frames stacked into one observation"""

    # Algorithm
    total_timesteps: int = 2_000_000
    """total agent steps, summed over envs (frames = 4x)"""
    learning_rate: float = 1e-4
    """Adam learning rate (CleanRL dqn_atari: 1e-4; Rainbow: 6.25e-5 for 50M steps); Adam eps 1.5e-4 as in Rainbow"""
    num_envs: int = 8
    """parallel games; 8 batch the acting forward pass (the slot encoder runs on every env at every step)"""
    buffer_size: int = 1_000_000
    """replay memory capacity in transitions (DQN/Rainbow: 1M); 819 B each with 6 slots (0.8 GB at 1M): slots, not frames"""
    gamma: float = 0.99
    """the discount factor gamma"""
    target_network_frequency: int = 2_000
    """agent steps between hard target copies (CleanRL dqn_atari: 1000; Rainbow/Dopamine: 8000); between, for a short run"""
    batch_size: int = 32
    """transitions per gradient update (DQN, Rainbow)"""
    start_e: float = 1.0
    """the starting epsilon for exploration"""
    end_e: float = 0.01
    """the final epsilon (Rainbow/Dopamine: 0.01); evaluation uses common.contract.EPSILON_EVAL (0.001)"""
    exploration_fraction: float = 0.10
    """fraction of the first run's total-timesteps for the linear epsilon decay (CleanRL; 200k steps ~ Dopamine's 250k)"""
    learning_starts: int = 20_000
    """agent steps stored before learning starts (Rainbow/Dopamine: 80k frames = 20k agent steps)"""
    train_frequency: int = 4
    """agent steps per gradient update (replay ratio of DQN, Rainbow and CleanRL)"""
    n_step: int = 3
    """n-step returns; 3 as in Rainbow (Dopamine, CleanRL), whose ablation ranks multi-step and PER its two most vital parts"""
    prioritized_replay_alpha: float = 0.6
    """priority exponent alpha (PER proportional variant; methods.md section 7)"""
    prioritized_replay_beta: float = 0.4
    """initial importance-sampling exponent beta, annealed linearly to 1 over the first run's total-timesteps (PER)"""
    prioritized_replay_eps: float = 1e-6
    """added to |TD error| so that no transition gets priority 0"""
    max_grad_norm: float = 10.0
    """the maximum norm for gradient clipping (dueling paper: 10)"""

    # Slots
    num_slots: int = 6
    """K, the number of slots (ball, paddle, bricks, walls and score, background, ...)"""
    slot_iters: int = 3
    """Slot Attention iterations per step (Locatello et al.: 3); each step starts from the last one's slots (SAVi)"""
    pretrain_steps: int = 3_000
    """phase 1: Adam updates (lr 4e-4, Slot Attention's) of the slot autoencoder (0: none; at most --total-timesteps)"""
    pretrain_frames: int = 20_000
    """phase 1: random-play frames it trains on (at most --total-timesteps); a tenth more are held out for tracking"""
    pretrain_batch: int = 16
    """phase 1: sequences of 3 consecutive steps per update"""
    recon_weight: float = 1.0
    """weight of the spatial-broadcast decoder's motion-weighted reconstruction loss, slots/recon_loss (0: off)"""
    position_weight: float = 1.0
    """weight of the RAM-supervised positions: KL(Gaussian at the ball / paddle || its Hungarian-matched slot's attention)"""
    contrast_weight: float = 0.1
    """weight of the temporal slot-contrast loss (Manasyan et al. 2024), slots/contrast_loss (0: off)"""
    end_to_end: bool = False
    """if toggled, phase 2 fine-tunes the encoder with the TD loss (replay: frames and slot state, 29 KB each; for GPUs)"""
    log_masks_every: int = 1_000
    """updates between mask-grid images in TensorBoard (phase 1: also the held-out tracking accuracy)"""


# Copied from dqn_per_dueling_atari.FireOnReset
class FireOnReset(gym.Wrapper):
    """Presses FIRE for one frame after each game reset, as AtariVectorEnv's use_fire_reset does; marks it as scripted."""

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            return self.reset(**kwargs)
        return obs, {**info, "scripted_fire": 1}


# Copied from dqn_per_dueling_atari.make_env
def make_env(args, seed: int, idx: int = 0, capture_video: bool = False, run_dir: Optional[str] = None):
    """A gymnasium single env with the same protocol as the training vector env: full games, raw rewards."""

    def thunk():
        p = env_protocol(args)
        env = gym.make(args.env_id, frameskip=1, repeat_action_probability=p["repeat_action_probability"],
                       full_action_space=p["full_action_space"], max_num_frames_per_episode=p["max_num_frames_per_episode"],
                       render_mode="rgb_array" if capture_video else None)  # fmt: skip
        if capture_video and idx == 0:
            env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", episode_trigger=lambda e: e == 0, disable_logger=True)
        if args.fire_reset:
            env = FireOnReset(env)
        env = gym.wrappers.AtariPreprocessing(env, noop_max=args.noop_max, frame_skip=4, terminal_on_life_loss=False)
        env = gym.wrappers.FrameStackObservation(env, args.frame_stack, padding_type="zero")
        env.action_space.seed(seed)
        return env

    return thunk


# Copied from dqn_per_dueling_atari.make_vector_env
def make_vector_env(args, num_envs: int):
    """ale-py's C++ AtariVectorEnv (threads): raw rewards, life loss flagged as `terminated`, SameStep autoreset."""
    from ale_py.vector_env import AtariVectorEnv

    p = env_protocol(args)
    return AtariVectorEnv(
        p["game"], num_envs, num_threads=min(num_envs, os.cpu_count() or 1), frameskip=4, maxpool=True,
        stack_num=args.frame_stack, noop_max=args.noop_max, use_fire_reset=args.fire_reset,
        repeat_action_probability=p["repeat_action_probability"], full_action_space=p["full_action_space"],
        max_num_frames_per_episode=p["max_num_frames_per_episode"], life_loss_info=True, reward_clipping=False,
        autoreset_mode="SameStep",
    )  # fmt: skip


# Copied from dqn_per_dueling_atari.pick_device
def pick_device(name: str) -> torch.device:
    """cuda -> mps -> cpu for "auto"; a clear error when the asked-for device is missing."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[name]:
        sys.exit(f"error: --device {name} is not available on this machine (try --device auto)")
    return torch.device(name)


# Copied from dqn_per_dueling_atari.nstep_targets
def nstep_targets(rewards, terms, truncs, gamma: float):
    """n-step windows [B, n] -> (returns, steps to the bootstrap obs, discounts). A window ends after a terminated step
    (life loss or game over: discount 0) or a truncated one (bootstrap from the game's final observation)."""
    alive = np.ones_like(terms)
    alive[:, 1:] = np.cumprod(~(terms | truncs)[:, :-1], axis=1)  # [B, n]: step k is inside the window
    returns, steps = (alive * gamma ** np.arange(rewards.shape[1]) * rewards).sum(1), alive.sum(1)
    return returns.astype(np.float32), steps, np.where((alive & terms).any(1), 0.0, gamma**steps).astype(np.float32)


# Copied from dqn_per_dueling_atari.double_dqn_target
def double_dqn_target(next_q_online, next_q_target, returns, discounts):
    """y = R + discount * Q_target(s', argmax_a Q_online(s', a)) (van Hasselt et al. 2016); q [B, A], others [B]."""
    return returns + discounts * next_q_target.gather(1, next_q_online.argmax(1, keepdim=True)).squeeze(1)


# Copied from dqn_per_dueling_atari.SumTree
class SumTree:
    """Sum tree in one float64 array (root 1, children 2i and 2i+1, leaf j at size + j); batched: one numpy step a level."""

    def __init__(self, capacity: int):
        self.depth = max(1, (capacity - 1).bit_length())
        self.size, self.nodes = 1 << self.depth, np.zeros(2 << self.depth)

    def leaves(self, idx):
        return self.nodes[np.asarray(idx) + self.size]

    def update(self, idx, values) -> None:
        i = np.asarray(idx, dtype=np.int64) + self.size
        self.nodes[i] = values
        for _ in range(self.depth):
            i = i >> 1  # duplicate parents all get the same recomputed sum
            self.nodes[i] = self.nodes[2 * i] + self.nodes[2 * i + 1]

    def find(self, u):
        """Leaves whose cumulative-sum intervals hold the values u [B]; never a zero-priority leaf."""
        i = np.ones(len(u), dtype=np.int64)
        for _ in range(self.depth):
            left, right = self.nodes[2 * i], self.nodes[2 * i + 1]
            go_right = ((u >= left) & (right > 0)) | (left <= 0)
            u, i = np.where(go_right, u - left, u), 2 * i + go_right
        return i - self.size

    def sample(self, batch: int):
        """Stratified (PER appendix B.2.1): one uniform draw in each of `batch` equal segments of the total."""
        return self.find((np.arange(batch) + np.random.random(batch)) * (self.nodes[1] / batch))


TERM, TRUNC, FIRST, FINAL = 1, 2, 4, 8  # flag bits: terminated, truncated, a game's first obs, a game's final obs
SLOT_DIM, GRID, SEQ_LEN, PRETRAIN_LR = 64, 42, 3, 4e-4  # slot size D; 42x42 tokens; steps per phase-1 sequence; its lr
SCREEN, PADDLE_Y, TRACK_PX = np.array([160.0, 210.0], np.float32), 191.0, 4.0  # ALE screen px; paddle rows 189..192
SIGMA = torch.tensor([[3.0, 4.0], [6.0, 4.0]])  # px, x and y, of the Gaussians at the ball (2x4 px) and the paddle (16x4)
MOTION_WEIGHT, VEL_SCALE, TAU = 10.0, 10.0, 0.1  # extra weight of changed pixels; centroid-change scale; contrast temp.
COLOURS = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                    (70, 240, 240), (240, 50, 230)], np.float32)  # per slot, cycled (Trubetskoy's colours)  # fmt: skip


class ReplayMemory:
    """dqn_per_dueling_atari.ReplayMemory (prioritized; env e owns slots [e*L, (e+1)*L), one more FINAL slot per game end)
    storing each step's slot features [K, D + 4] float16, 816 B, instead of its frame. A row is a whole observation (no
    stacks to rebuild); --end-to-end rows pack the 2 frames and the warm-start slot state. Not saved with checkpoints."""

    def __init__(self, buffer_size, num_envs, row_shape, n_step, gamma, alpha, eps):
        self.L, self.num_envs, self.n, self.gamma = buffer_size // num_envs, num_envs, n_step, gamma
        self.alpha, self.eps, self.max_priority, capacity = alpha, eps, 1.0, self.L * num_envs
        self.rows, self.tree = np.zeros((capacity, *row_shape), dtype=np.float16), SumTree(capacity)
        self.actions, self.flags = np.zeros(capacity, dtype=np.uint8), np.zeros(capacity, dtype=np.uint8)
        self.rewards = np.zeros(capacity, dtype=np.int8)  # sign-clipped: learning never sees raw rewards
        self.written = np.zeros(num_envs, dtype=np.int64)  # slots ever written, per env

    # Copied from dqn_per_dueling_atari.ReplayMemory.__len__
    def __len__(self) -> int:
        return int(np.minimum(self.written, self.L).sum())

    def _write(self, env, rows, actions, rewards, flags) -> None:
        w, base = self.written[env], env * self.L
        slot = base + w % self.L
        self.rows[slot], self.actions[slot], self.rewards[slot], self.flags[slot] = rows, actions, rewards, flags
        self.written[env] += 1
        ready = base + (w - self.n) % self.L  # its n-step window is now written: in at max priority (PER)
        ready = ready[(w >= self.n) & (self.flags[ready] & FINAL == 0)]
        values = np.concatenate([np.zeros(len(slot)), np.full(len(ready), self.max_priority**self.alpha)])
        self.tree.update(np.concatenate([slot, ready]), values)  # the overwritten slot's old transition is gone

    def add(self, rows, actions, rewards, terms, truncs, firsts, game_over, final_rows) -> None:
        """One vector step: rows [N, ...] of s_t; final_rows those of infos["final_obs"] of the games that ended."""
        flags = terms * TERM | truncs * TRUNC | firsts * FIRST
        self._write(np.arange(self.num_envs), rows, actions, np.sign(rewards), flags.astype(np.uint8))
        if game_over.any():
            self._write(np.flatnonzero(game_over), final_rows, 0, 0, FINAL)

    def transitions(self, idx):
        """(obs, actions, n-step returns, discounts, bootstrap obs) of the transitions starting at slots idx [B]."""
        base, t = idx // self.L * self.L, idx % self.L
        win = base[:, None] + (t[:, None] + np.arange(self.n)) % self.L  # [B, n]
        flags = self.flags[win]
        returns, steps, discounts = nstep_targets(self.rewards[win], flags & TERM > 0, flags & TRUNC > 0, self.gamma)
        return self.rows[idx], self.actions[idx].astype(np.int64), returns, discounts, self.rows[base + (t + steps) % self.L]

    # Copied from dqn_per_dueling_atari.ReplayMemory.sample
    def sample(self, batch: int, beta: float):
        """Proportional sample with IS weights (N*P(i))^-beta over their batch max (CleanRL rainbow, Dopamine)."""
        idx = self.tree.sample(batch)
        p = self.tree.leaves(idx)  # N*P(i) = N*p_i/total: N and the total cancel in the weights' ratio
        priorities = p ** (1 / self.alpha) if self.alpha else np.ones_like(p)  # alpha 0: uniform replay
        return idx, self.transitions(idx), ((p / p.min()) ** -beta).astype(np.float32), priorities

    # Copied from dqn_per_dueling_atari.ReplayMemory.update_priorities
    def update_priorities(self, idx, td_errors) -> None:
        priorities = np.abs(td_errors) + self.eps
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.update(idx, priorities**self.alpha)


def row_shape(num_slots: int, end_to_end: bool) -> tuple:
    """A replay row: slot features [K, D + 4]; --end-to-end: [warm-start state K * (D + 4), first flag, 2 frames]."""
    return (num_slots * (SLOT_DIM + 4) + 1 + 2 * 84 * 84,) if end_to_end else (num_slots, SLOT_DIM + 4)


class SlotAttention(nn.Module):
    """Slot Attention (Locatello et al. 2020, Algorithm 1; google-research/google-research slot_attention): rounds of
    attention normalised over the slots, a weighted mean over the inputs, GRU + residual MLP; equivariant under a
    permutation of the initial slots. Initial slots mu_k + sigma_k * eps, reparameterised (gradients reach mu and sigma);
    per slot, as BO-QSA's learnable queries (Jia et al. 2023), because from one shared mean the deterministic mean
    initialisation would be K identical slots, and every iteration keeps identical slots identical."""

    def __init__(self, num_slots: int, dim: int, iters: int):
        super().__init__()
        self.iters, self.scale = iters, dim**-0.5
        self.mu, self.log_sigma = (nn.Parameter(nn.init.xavier_uniform_(torch.empty(num_slots, dim))) for _ in range(2))
        self.norm_inputs, self.norm_slots, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.gru, self.mlp = nn.GRUCell(dim, dim), nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def init(self, batch: int, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Initial slots [B, K, D]: mu + sigma * noise (noise [B, K, D] ~ N(0, 1)); without noise, the mean."""
        mu = self.mu.expand(batch, -1, -1)
        return mu if noise is None else mu + self.log_sigma.exp() * noise

    def forward(self, inputs, slots):
        """inputs [B, N, D], slots [B, K, D] -> (slots [B, K, D], last round's attention [B, K, N], summing to 1 over K)."""
        inputs = self.norm_inputs(inputs)
        k, v = self.k(inputs), self.v(inputs)  # [B, N, D]
        for _ in range(self.iters):
            attn = torch.softmax(self.q(self.norm_slots(slots)) @ k.transpose(1, 2) * self.scale, dim=1)  # over the slots
            updates = ((attn + 1e-8) / (attn + 1e-8).sum(2, keepdim=True)) @ v  # [B, K, D]: weighted means of the inputs
            slots = self.gru(updates.flatten(0, 1), slots.flatten(0, 1)).view_as(slots)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attn


class SlotEncoder(nn.Module):
    """CNN over the last 2 grey frames (motion visible) -> 42x42 tokens + soft position embedding -> Slot Attention
    (Locatello et al. 2020). Phase 1's spatial broadcast decoder (Watters et al. 2019) is a per-pixel MLP of each slot
    broadcast with the pixel's position (DINOSAUR's MLP decoder, Seitzer et al. 2023), alpha-composited, at 42x42."""

    def __init__(self, num_slots: int, iters: int, dim: int = SLOT_DIM):
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv2d(2, 32, 5, stride=2, padding=2), nn.ReLU(True), nn.Conv2d(32, 32, 3, padding=1),
                                 nn.ReLU(True))  # [B, 32, 42, 42]  # fmt: skip
        self.position = nn.Linear(4, 32)  # of (x, y, 1 - x, 1 - y), added to the features (Locatello et al. 2020)
        self.mlp = nn.Sequential(nn.LayerNorm(32), nn.Linear(32, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.slot_attention = SlotAttention(num_slots, dim, iters)
        self.dec_slot, self.dec_position = nn.Linear(dim, 32), nn.Linear(4, 32)
        self.decoder = nn.Sequential(nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))  # 2 frames, mask logit
        y, x = torch.meshgrid(*[(torch.arange(GRID) + 0.5) / GRID] * 2, indexing="ij")
        self.register_buffer("grid", torch.stack([x.flatten(), y.flatten(), 1 - x.flatten(), 1 - y.flatten()], 1), False)

    def decode(self, slots):
        """slots [B, K, D] -> reconstruction [B, 2, 42, 42] of the 2x2-max-pooled frames (masks softmaxed over slots)."""
        out = self.decoder(self.dec_slot(slots)[:, :, None] + self.dec_position(self.grid))  # [B, K, N, 3]
        return (out[..., 2:].softmax(1) * out[..., :2]).sum(1).transpose(1, 2).reshape(-1, 2, GRID, GRID)

    def encode(self, frames, state, first):
        """One step of a game: frames uint8 [B, 2, 84, 84], state [B, K, D + 4] the previous step's features, first [B]
        (a game starts: the mean initialisation; else SAVi's warm start) -> (features [B, K, D + 4]: slot, attention
        centroid x, y in [0, 1], its change since the last step * VEL_SCALE; attention [B, K, N = 42 * 42])."""
        x, D = frames.float() / 255.0, self.slot_attention.mu.shape[1]
        if x.device.type == "cpu":  # channels_last convolutions are ~1.6x faster on x86 CPUs (docs/benchmarks.md)
            x = x.contiguous(memory_format=torch.channels_last)
        tokens = self.mlp(self.cnn(x).flatten(2).transpose(1, 2) + self.position(self.grid))  # [B, N, D]
        init = torch.where(first[:, None, None], self.slot_attention.init(len(x)), state[..., :D])
        slots, attn = self.slot_attention(tokens, init)
        c = (attn + 1e-8) / (attn + 1e-8).sum(2, keepdim=True) @ self.grid[:, :2]  # [B, K, 2] attention centroids
        return torch.cat([slots, c, torch.where(first[:, None, None], 0.0, (c - state[..., D : D + 2]) * VEL_SCALE)], 2), attn


class QNetwork(nn.Module):
    """The slot encoder, then a dueling head (Wang et al. 2016) invariant under slot permutations: one transformer layer
    over [CLS; embedded slot features], no slot order anywhere (Set Transformer, Lee et al. 2019), V and A of the CLS."""

    def __init__(self, n_actions: int, num_slots: int = 6, slot_iters: int = 3, dim: int = SLOT_DIM):
        super().__init__()
        self.encoder = SlotEncoder(num_slots, slot_iters, dim)
        self.embed, self.cls = nn.Linear(dim + 4, dim), nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.transformer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.value = nn.Sequential(nn.Linear(dim, 512), nn.ReLU(), nn.Linear(512, 1))
        self.advantage = nn.Sequential(nn.Linear(dim, 512), nn.ReLU(), nn.Linear(512, n_actions))

    def forward(self, x):
        """Q-values [B, A] of slot features [B, K, D + 4], or of --end-to-end replay rows [B, P] (encoded here)."""
        if x.dim() == 2:
            K, W = self.encoder.slot_attention.mu.shape[0], self.embed.in_features
            state, first, frames = x[:, : K * W].view(-1, K, W).float(), x[:, K * W] > 0, x[:, K * W + 1 :].view(-1, 2, 84, 84)
            x = self.encoder.encode(frames, state, first)[0]
        hidden = self.transformer(torch.cat([self.cls.expand(len(x), -1, -1), self.embed(x.float())], 1))[:, 0]  # [B, D]
        if hidden.requires_grad:  # two streams' gradients enter the trunk: rescale by 1/sqrt(2) (Wang et al. 2016)
            hidden.register_hook(lambda grad: grad / np.sqrt(2))
        value, advantage = self.value(hidden), self.advantage(hidden)  # [B, 1], [B, A]
        return value + advantage - advantage.mean(1, keepdim=True)  # the identifiable dueling aggregation


def overlay_masks(frame_rgb, masks, alpha: float = 0.5):
    """Each slot's mask [K, h, w] (in [0, 1], resized to the frame) in its own colour over frame_rgb uint8 [H, W, 3]."""
    m = F.interpolate(torch.as_tensor(masks, dtype=torch.float32)[None], size=frame_rgb.shape[:2], mode="nearest")[0].numpy()
    colour = np.einsum("khw,kc->hwc", m, COLOURS[np.arange(len(m)) % len(COLOURS)])
    return (frame_rgb * (1 - alpha * m.sum(0)[..., None]) + alpha * colour).clip(0, 255).astype(np.uint8)


def mask_grid(frames, attn, rows: int = 4):
    """TensorBoard image uint8 [rows * 84, (K + 1) * 84, 3]: per frame, all slots' masks on it, then each slot's alone."""
    K, out = attn.shape[1], []
    for x, a in zip(frames[:rows], attn[:rows].detach().float().cpu().numpy()):
        rgb, m = np.repeat(np.asarray(x[-1])[..., None], 3, 2), a.reshape(K, GRID, GRID)
        out.append(np.concatenate([overlay_masks(rgb, m)] + [overlay_masks(rgb, m * (np.arange(K) == k)[:, None, None], 1.0)
                                                              for k in range(K)], 1))  # fmt: skip
    return np.concatenate(out, 0)


class QAgent:
    """The contract's agent (common/contract.py): Q-value scores, epsilon-greedy; per game slot its slot state (warm
    start; the mean initialisation when reset_env marks a new game); overlay() draws game 0's last attention masks."""

    score_kind = "q_values"

    def __init__(self, net: QNetwork, device: torch.device):
        self.net, self.device, self.epsilon = net.eval(), device, EPSILON_EVAL
        self.reset(0)

    def reset(self, num_envs: int) -> None:
        """Every game slot starts a game: the mean initialisation at its next act."""
        K, D = self.net.encoder.slot_attention.mu.shape
        self.state, self.attn = torch.zeros(num_envs, K, D + 4, device=self.device), None
        self.first = torch.ones(num_envs, dtype=torch.bool, device=self.device)

    def reset_env(self, i: int) -> None:
        self.first[i] = True

    @torch.no_grad()
    def act(self, obs, greedy: bool):
        obs = np.asarray(obs)
        if len(obs) != len(self.state):
            self.reset(len(obs))
        frames = torch.as_tensor(obs[:, -2:], device=self.device)
        self.state, self.attn = self.net.encoder.encode(frames, self.state, self.first)
        self.first[:] = False
        q = self.net(self.state).float().cpu().numpy()  # [N, A]
        explore = np.random.random(len(q)) < (0.0 if greedy else self.epsilon)
        return np.where(explore, np.random.randint(q.shape[1], size=len(q)), q.argmax(1)).astype(np.int64), q

    def overlay(self, frame_rgb):
        """frame_rgb [H, W, 3] of game slot 0 with each slot's attention mask over its last observation, in its colour."""
        masks = None if self.attn is None else self.attn[0].view(-1, GRID, GRID).float().cpu().numpy()  # [K, 42, 42]
        return frame_rgb if masks is None else overlay_masks(frame_rgb, masks)


def make_agent(checkpoint: dict, device: torch.device) -> QAgent:
    """Rebuild the trained Q-network from a checkpoint dict (see common/checkpoint.py)."""
    state = checkpoint["model"]
    net = QNetwork(state["advantage.2.weight"].shape[0], state["encoder.slot_attention.mu"].shape[0],
                   checkpoint["args"]["slot_iters"]).to(device)  # fmt: skip
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    net.load_state_dict(state)
    return QAgent(net, device)


def object_pairs(cost, present):
    """Hungarian matching (scipy.optimize.linear_sum_assignment) of the objects present [B, M] to distinct slots by cost
    [B, K, M] -> (frame, slot, object) [P] of each matched pair."""
    pairs = []
    for b in range(len(cost)):
        objects = np.flatnonzero(present[b])
        slots, i = linear_sum_assignment(cost[b][:, objects])
        pairs += [(b, k, objects[j]) for k, j in zip(slots, i)]
    return np.array(pairs, np.int64).reshape(-1, 3).T


def object_xy(targets):
    """Ball and paddle centres [B, 2, 2] (screen px) and which are present [B, 2] (the ball: in play) of targets [B, 4]."""
    xy = np.stack([targets[:, :2], np.stack([targets[:, 3], np.full(len(targets), PADDLE_Y, np.float32)], 1)], 1)
    return xy, np.stack([targets[:, 2] > 0, np.ones(len(targets), bool)], 1)


def collect(args, seed: int, steps: int):
    """Random play in num_envs make_env games, `steps` frames in all: (newest frames uint8 [T, E, 84, 84], a game's first
    frame [T, E], targets float32 [T, E, 4]: ball centre x, y, ball in play, paddle centre x in screen px, from the RAM)."""
    envs, rng = [make_env(args, seed + i, i)() for i in range(args.num_envs)], np.random.default_rng(seed)
    T, E = steps // len(envs), len(envs)
    frames, first, targets = np.zeros((T, E, 84, 84), np.uint8), np.zeros((T + 1, E), bool), np.zeros((T, E, 4), np.float32)
    obs, first[0] = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)], True
    for t in range(T):
        for e, env in enumerate(envs):
            s = decode_ram(env.unwrapped.ale.getRAM())
            frames[t, e], targets[t, e] = obs[e][-1], (s.ball_x + 1, s.ball_y + 2, s.in_play, s.paddle_center)
            obs[e], _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            if terminated or truncated:
                obs[e], first[t + 1, e] = env.reset()[0], True
    return frames, first[:T], targets


def slot_pass(encoder: SlotEncoder, data, t, e, state, steps: int, device):
    """The slots along frame streams data = (frames, first, targets) of collect(), `steps` steps from t [B] of streams e
    [B], from slot state [B, K, D + 4]: phase 1's losses [3] (reconstruction, position, contrast; step means), the
    matched slots' hits (object, within TRACK_PX) [P, 2], and the last step's frames and attention."""
    (frames, first, targets), D = data, encoder.slot_attention.mu.shape[1]
    losses, hits = torch.zeros(3, device=device), []
    for j in range(steps):
        x = torch.from_numpy(np.stack([frames[t + j - 1, e] * ~first[t + j, e, None, None], frames[t + j, e]], 1)).to(device)
        prev, (state, attn) = state, encoder.encode(x, state, torch.from_numpy(first[t + j, e]).to(device))
        xy, present = object_xy(targets[t + j, e])  # the ball and the paddle from the RAM, [B, 2, 2] screen px
        c = (state[..., D : D + 2] * state.new_tensor(SCREEN)).detach().cpu().numpy()  # [B, K, 2] attention centroids
        b, k, o = object_pairs(((c[:, :, None] - xy[:, None]) ** 2).sum(3), present)  # tracking: the nearest centroids
        hits.append(np.stack([o, np.linalg.norm(c[b, k] - xy[b, o], axis=1) <= TRACK_PX], 1))
        if torch.is_grad_enabled():  # the losses (not on the held-out frames)
            target = F.max_pool2d(x.float() / 255.0, 2)  # [B, 2, 42, 42]: the 2x4 px ball survives the pooling
            weight = 1 + MOTION_WEIGHT * (target[:, 1:] != target[:, :1]).float()  # the pixels that changed count more
            losses[0] += (weight * (encoder.decode(state[..., :D]) - target) ** 2).mean() / weight.mean() / steps
            # position: KL(a Gaussian at the object || its slot's attention), slots Hungarian-matched by that cost
            sq = (encoder.grid[:, :2] * state.new_tensor(SCREEN) - torch.from_numpy(xy).to(device)[:, :, None]) ** 2
            h = torch.softmax(-(sq / SIGMA.to(device)[:, None] ** 2).sum(3) / 2, 2)  # [B, 2, N]
            w = (attn + 1e-8) / (attn + 1e-8).sum(2, keepdim=True)  # [B, K, N] each slot's attention over the tokens
            kl = (h * torch.log(h + 1e-12)).sum(2)[:, None] - torch.log(w) @ h.transpose(1, 2)  # [B, K, 2]
            b, k, o = object_pairs(kl.detach().cpu().numpy(), present)
            losses[1] += kl[b, k, o].mean() / steps
        if j:  # temporal slot contrast: slot k one step on is the positive, every other slot in the batch a negative
            a, b = F.normalize(prev[..., :D].flatten(0, 1), dim=1), F.normalize(state[..., :D].flatten(0, 1), dim=1)
            losses[2] += F.cross_entropy(a @ b.T / TAU, torch.arange(len(a), device=device)) / (steps - 1)
    return losses, np.concatenate(hits), x, attn


def track_accuracy(hits) -> tuple[float, float]:
    """(ball, paddle) tracking accuracy: the fraction of matched pairs (ball: frames in play) within TRACK_PX px."""
    return tuple(float(hits[hits[:, 0] == o, 1].mean()) if (hits[:, 0] == o).any() else float("nan") for o in (0, 1))


def pretrain(args: Args, run: Run, net: QNetwork, optimizer, start: int, device) -> int:
    """Phase 1: the slot autoencoder on random-play frames; slots/... scalars and images to <run dir>/pretrain (x: update).
    Returns the updates done: fewer on Ctrl-C, and a resume continues there, on the same frames (made again from the seed)."""
    from torch.utils.tensorboard import SummaryWriter

    t0, (K, D) = time.time(), net.encoder.slot_attention.mu.shape
    data = collect(args, args.seed + 10_000, args.pretrain_frames)  # env seeds disjoint from the held-out games'
    test = collect(args, args.seed + 20_000, max(args.pretrain_frames // 10, args.num_envs))
    (T, E), writer = data[1].shape, SummaryWriter(str(run.dir / "pretrain"), purge_step=start + 1 if start else None)
    starts = np.flatnonzero(~np.lib.stride_tricks.sliding_window_view(data[1], SEQ_LEN, 0).any(-1).ravel())  # no game start
    writer.add_scalar("slots/collect_seconds", time.time() - t0, start)
    print(f"phase 1: {T * E} + {test[1].size} random-play frames ({time.time() - t0:.0f} s); {start}/{args.pretrain_steps}")
    for group in optimizer.param_groups:
        group["lr"] = PRETRAIN_LR
    weights = torch.tensor([args.recon_weight, args.position_weight, args.contrast_weight], device=device)
    t0, done, test_state = time.time(), start, torch.zeros(E, K, D + 4, device=device)
    for update in range(start + 1, args.pretrain_steps + 1):
        if run.stopping:
            break
        i, B = starts[np.random.randint(len(starts), size=args.pretrain_batch)], args.pretrain_batch  # sequences inside a game
        noisy = F.pad(net.encoder.slot_attention.init(B, torch.randn(B, K, D, device=device)), (0, 4))  # [B, K, D + 4]
        losses, _, x, attn = slot_pass(net.encoder, data, i // E, i % E, noisy, SEQ_LEN, device)
        optimizer.zero_grad(set_to_none=True)
        (weights * losses).sum().backward()
        nn.utils.clip_grad_norm_(net.parameters(), args.max_grad_norm)
        optimizer.step()
        done = update
        if update % 50 == 0 or update == args.pretrain_steps:
            for name, value in zip(("recon", "position", "contrast"), losses.tolist()):
                writer.add_scalar(f"slots/{name}_loss", value, update)
            writer.add_scalar("slots/pretrain_updates_per_s", (update - start) / (time.time() - t0), update)
        if update % args.log_masks_every == 0 or update == args.pretrain_steps:
            with torch.no_grad():  # the held-out streams from their first frames, as in a game
                hits = slot_pass(net.encoder, test, np.zeros(E, int), np.arange(E), test_state, len(test[1]), device)[1]
            ball, paddle = track_accuracy(hits)
            writer.add_scalar("slots/ball_track_acc", ball, update)
            writer.add_scalar("slots/paddle_track_acc", paddle, update)
            writer.add_image("slots/masks", mask_grid(x.cpu().numpy(), attn), update, dataformats="HWC")
            print(f"pretrain update {update}/{args.pretrain_steps}: losses {np.round(losses.tolist(), 4).tolist()}, held-out "
                  f"tracking within {TRACK_PX:g} px: ball {ball:.3f}, paddle {paddle:.3f} ({time.time() - t0:.0f} s)",
                  flush=True)  # fmt: skip
    writer.close()
    return done


def check_args(args: Args) -> Args:
    """Bad values stop with one line; a replay too small for the budget's first updates grows, and phase 1 takes no more
    frames and updates than --total-timesteps has agent steps (with a note)."""
    require(args, positive=("buffer_size", "batch_size", "train_frequency", "target_network_frequency", "n_step",
                            "frame_stack", "learning_rate", "max_grad_norm", "num_slots", "slot_iters", "pretrain_batch",
                            "log_masks_every"),
            at_least_0=("learning_starts", "exploration_fraction", "prioritized_replay_alpha", "prioritized_replay_eps",
                        "pretrain_steps", "pretrain_frames", "recon_weight", "position_weight", "contrast_weight"),
            unit=("gamma", "start_e", "end_e", "prioritized_replay_beta"))  # fmt: skip
    if args.frame_stack < 2 or env_protocol(args)["game"] != "breakout":
        sys.exit("error: slot_attn_atari.py reads Breakout's RAM and the last 2 frames: --frame-stack >= 2, a Breakout env id")
    starts = max(args.learning_starts, args.num_envs * (args.n_step + 1))  # each env has a full n-step window
    size = max(args.buffer_size, args.num_envs * (max(starts // args.num_envs, args.n_step) + 1))
    steps = min(args.pretrain_steps, args.total_timesteps)
    frames = max(min(args.pretrain_frames, args.total_timesteps), args.num_envs * (SEQ_LEN + 1))
    frames = frames if steps else args.pretrain_frames  # no phase 1: nothing to adjust
    fixed = {"learning_starts": starts, "buffer_size": size, "pretrain_steps": steps, "pretrain_frames": frames}
    for name, value in fixed.items():
        if value != getattr(args, name):
            note(f"--{name.replace('_', '-')} {getattr(args, name)} -> {value}: the first updates need it (or the budget)")
            args = replace(args, **{name: value})
    row = 2 * int(np.prod(row_shape(args.num_slots, args.end_to_end))) + 3 + 32  # float16 row, action, reward, flags, tree
    check_free_memory(args, "buffer_size", args.buffer_size * row, row)
    return args


def main(args: Args) -> Path:
    run = Run(args, __file__, check=check_args)  # BOILERPLATE: --resume, flag checks, run folder, TensorBoard, W&B
    args, global_step = run.args, run.global_step
    num_iterations = args.total_timesteps // args.num_envs

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = pick_device(args.device)
    print(f"device: {device} | run folder: {run.dir}")

    envs = make_vector_env(args, args.num_envs)
    n_actions = envs.single_action_space.n
    layout = torch.channels_last if device.type == "cpu" else torch.preserve_format  # faster CPU convolutions
    q_network, target_network = (QNetwork(n_actions, args.num_slots, args.slot_iters).to(device, memory_format=layout)
                                 for _ in range(2))  # fmt: skip
    target_network.load_state_dict(q_network.state_dict())
    optimizer = optim.Adam(q_network.parameters(), lr=args.learning_rate, eps=1.5e-4, fused=device.type in ("cpu", "cuda"))
    memory = ReplayMemory(args.buffer_size, args.num_envs, row_shape(args.num_slots, args.end_to_end), args.n_step, args.gamma,
                          args.prioritized_replay_alpha, args.prioritized_replay_eps)  # fmt: skip
    num_updates, update_due = 0, 0
    pretrain_updates = 0  # phase 1's updates done; the pre-trained encoder is part of q_network's weights

    def extra_state(step: int) -> dict:
        return {"target_model": target_network.state_dict(), "num_updates": num_updates, "update_due": update_due,
                "pretrain_updates": pretrain_updates}  # fmt: skip

    run.attach(q_network, optimizer, extra_state)  # what checkpoints hold; on a resume: weights, optimizer and RNG states
    if run.checkpoint:
        target_network.load_state_dict(run.state["target_model"])
        num_updates, update_due = run.state["num_updates"], run.state["update_due"]
        pretrain_updates = run.state["pretrain_updates"]
        print(f"phase 1: {pretrain_updates} of {args.pretrain_steps} updates done; the replay memory starts empty")
    # epsilon decays over the first run's steps; beta reaches 1 at the end, a longer resume stretches it (common/run.py)
    epsilon_at = run.schedule("epsilon", Linear(0, args.start_e, int(args.exploration_fraction * args.total_timesteps),
                                                args.end_e), stretch=False)  # fmt: skip
    beta_at = run.schedule("beta", Linear(0, args.prioritized_replay_beta, args.total_timesteps, 1.0), stretch=True)

    def observe(frames, state, first):
        """Slot features [N, K, D + 4] and attention of observations' last 2 frames, and their replay rows."""
        frames, first = torch.from_numpy(frames).to(device), torch.from_numpy(first).to(device)
        with torch.no_grad():
            features, attn = q_network.encoder.encode(frames, state, first)
        rows = torch.cat([state.flatten(1), first[:, None], frames.flatten(1)], 1) if args.end_to_end else features
        return features, attn, rows.half().cpu().numpy()

    next_obs, _ = envs.reset(seed=args.seed + global_step)
    next_first = np.ones(args.num_envs, dtype=bool)  # next_obs starts a game
    with run.loop(num_iterations * args.num_envs):
        if pretrain_updates < args.pretrain_steps:  # PHASE 1: the slot autoencoder (Ctrl-C: saved, resumable)
            pretrain_updates = pretrain(args, run, q_network, optimizer, pretrain_updates, device)
            target_network.load_state_dict(q_network.state_dict())
            run.loop(num_iterations * args.num_envs)  # restarts the SPS clock: charts/SPS is phase 2's
        for group in optimizer.param_groups:  # PHASE 2: the DQN on frozen slots (--end-to-end: the encoder learns too)
            group["lr"] = args.learning_rate
        q_network.encoder.requires_grad_(args.end_to_end)
        no_state = torch.zeros(args.num_envs, args.num_slots, SLOT_DIM + 4, device=device)
        next_slots, next_attn, next_rows = observe(next_obs[:, -2:], no_state, next_first)
        for iteration in range(global_step // args.num_envs + 1, num_iterations + 1):
            if run.stopping:
                break
            global_step += args.num_envs
            obs, first = next_obs, next_first
            slots, attn, rows = next_slots, next_attn, next_rows

            # ALGO LOGIC: epsilon-greedy action (the network runs only when some env acts greedily)
            epsilon = epsilon_at(global_step)
            explore, actions = np.random.random(args.num_envs) < epsilon, np.random.randint(n_actions, size=args.num_envs)
            if not explore.all():
                with torch.no_grad():
                    greedy = q_network(slots).argmax(1).cpu().numpy()
                actions = np.where(explore, actions, greedy)

            next_obs, reward, terminations, truncations, infos = envs.step(actions)
            games = run.episodes(global_step, reward, terminations, truncations, infos["lives"])
            # a life loss is `terminated` (no bootstrap); at game over (SameStep autoreset) next_obs starts the next game
            next_first = np.isin(np.arange(args.num_envs), [i for i, _, _ in games])
            final = None  # the replay rows of the games' final obs, whose slots go on from s_t's
            if next_first.any():
                over = torch.from_numpy(next_first).to(device)
                final = observe(infos["final_obs"][next_first, -2:], slots[over], np.zeros(int(over.sum()), bool))[2]
            memory.add(rows, actions, reward, terminations, truncations, first, next_first, final)
            next_slots, next_attn, next_rows = observe(next_obs[:, -2:], slots, next_first)  # a new game's: the mean init

            # ALGO LOGIC: one update of batch_size per train_frequency agent steps
            if len(memory) > args.learning_starts:
                update_due += args.num_envs
                beta = beta_at(global_step)
                while update_due >= args.train_frequency:
                    update_due -= args.train_frequency
                    idx, batch, weights, priorities = memory.sample(args.batch_size, beta)
                    b_obs, b_actions, b_returns, b_discounts, b_next_obs = (torch.from_numpy(x).to(device) for x in batch)
                    with torch.no_grad():
                        next_online, next_target = q_network(b_next_obs), target_network(b_next_obs)  # [B, A]
                        td_target = double_dqn_target(next_online, next_target, b_returns, b_discounts)
                    old_val = q_network(b_obs).gather(1, b_actions[:, None]).squeeze(1)  # [B]
                    huber = F.smooth_l1_loss(old_val, td_target, reduction="none")  # [B]
                    loss = (torch.from_numpy(weights).to(device) * huber).mean()  # importance-weighted (PER)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(q_network.parameters(), args.max_grad_norm)
                    optimizer.step()
                    memory.update_priorities(idx, (td_target - old_val).detach().abs().cpu().numpy())
                    num_updates += 1
                    if num_updates % 100 == 0:  # the only host syncs of the loss
                        run.log(global_step, {"losses/td_loss": loss.item(), "losses/q_values": old_val.mean().item(),
                                              "charts/mean_priority": priorities.mean(), "charts/epsilon": epsilon,
                                              "charts/beta": beta})  # fmt: skip
                    if num_updates % args.log_masks_every == 0:  # the slots of the observations acted on
                        run.writer.add_image("slots/masks", mask_grid(obs[:, -2:], attn), global_step, dataformats="HWC")
                if global_step % args.target_network_frequency < args.num_envs:  # hard copy, once per period
                    target_network.load_state_dict(q_network.state_dict())
            run.checkpoint_due(global_step)
    envs.close()
    return run.finish(global_step, device)


if __name__ == "__main__":
    main(tyro.cli(Args))
