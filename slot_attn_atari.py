"""Object-centric DQN on Atari Breakout: dqn_per_dueling_atari.py's dueling Double DQN (its parent; uniform replay) on the
frozen slots of a Slot Attention encoder (Locatello et al. 2020; SAVi warm starts, Kipf et al. 2022; slot positions as in
Biza et al. 2023) that slot_pretrain_atari.py pre-trained to track the ball and the paddle (--slot-checkpoint).
Example: python slot_attn_atari.py --total-timesteps 1000000
"""

import os
import random
import sys
from dataclasses import dataclass
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

from common.checkpoint import CheckpointError, load_checkpoint
from common.contract import EPSILON_EVAL, env_protocol, overlay_masks
from common.run import Linear, Run, RunArgs, at_least, check_free_memory, require

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
    max_grad_norm: float = 10.0
    """the maximum norm for gradient clipping (dueling paper: 10)"""
    slot_checkpoint: str = "checkpoints/slot_pretrain_atari_breakout.pt"
    """slot_pretrain_atari.py's checkpoint: the slot encoder (K slots from it); relative: from here, else from the repo"""
    slot_iters: int = 3
    """Slot Attention iterations per step (Locatello et al.: 3, more allowed at test time); warm starts from the last step"""
    end_to_end: bool = False
    """if toggled, the TD loss fine-tunes the encoder too (replay: its inputs, 29 KB per step, not slots; for GPU machines)"""


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


TERM, TRUNC, FINAL, REPO = 1, 2, 8, Path(__file__).resolve().parent  # flag bits: terminated, truncated, a game's final obs
SLOT_DIM, GRID, VEL_SCALE, PRIOR_SCALE = 64, 42, 10.0, 0.1  # slot size D, 42x42 tokens, velocity scale, warm slots' scale


def replay_rows(features, inputs, end_to_end: bool) -> np.ndarray:
    """A step's float16 replay rows: slot features [B, K, D + 4]; --end-to-end: encode()'s (state, first, frames), flat."""
    rows = torch.cat([x.reshape(len(x), -1).half().cpu() for x in inputs], 1) if end_to_end else features
    return rows.half().cpu().numpy()


class ReplayMemory:
    """dqn_per_dueling_atari.ReplayMemory (env e owns slots [e*L, (e+1)*L), a FINAL one per game end), uniform, storing
    a step's float16 row, a whole observation: slot features [K, D + 4], 816 B (--end-to-end: 29 KB). Not checkpointed."""

    def __init__(self, buffer_size, num_envs, row_shape, n_step, gamma):
        self.L, self.num_envs, self.n, self.gamma = buffer_size // num_envs, num_envs, n_step, gamma
        self.rows = np.zeros((self.L * num_envs, *row_shape), dtype=np.float16)  # rewards sign-clipped, as learning sees them
        self.actions, self.flags, self.rewards = (np.zeros(self.L * num_envs, dtype=t) for t in (np.uint8, np.uint8, np.int8))
        self.written = np.zeros(num_envs, dtype=np.int64)  # slots ever written, per env

    # Copied from dqn_per_dueling_atari.ReplayMemory.__len__
    def __len__(self) -> int:
        return int(np.minimum(self.written, self.L).sum())

    def _write(self, env, rows, actions, rewards, flags) -> None:
        slot = env * self.L + self.written[env] % self.L
        self.rows[slot], self.actions[slot], self.rewards[slot], self.flags[slot] = rows, actions, rewards, flags
        self.written[env] += 1

    def add(self, rows, actions, rewards, terms, truncs, game_over, final_rows) -> None:
        """One vector step: rows [N, ...] of s_t; final_rows those of infos["final_obs"] of the games that ended."""
        self._write(np.arange(self.num_envs), rows, actions, np.sign(rewards), (terms * TERM | truncs * TRUNC).astype(int))
        if game_over.any():
            self._write(np.flatnonzero(game_over), final_rows, 0, 0, FINAL)

    def sample(self, batch: int):
        """(obs, actions, n-step returns, discounts, bootstrap obs) of `batch` transitions whose rows are all written."""
        lo, hi = np.maximum(self.written - self.L, 0), self.written - self.n  # env e's starts: lo <= step < hi
        idx = np.zeros(0, np.int64)
        while len(idx) < batch:
            e = np.random.choice(self.num_envs, 2 * batch, p=(hi - lo).clip(0) / (hi - lo).clip(0).sum())
            i = e * self.L + np.random.randint(lo[e], hi[e]) % self.L
            idx = np.concatenate([idx, i[self.flags[i] & FINAL == 0]])
        idx, base, t = idx[:batch], idx[:batch] // self.L * self.L, idx[:batch] % self.L
        win = base[:, None] + (t[:, None] + np.arange(self.n)) % self.L  # [B, n]
        returns, steps, discounts = nstep_targets(self.rewards[win], self.flags[win] & TERM > 0, self.flags[win] & TRUNC > 0,
                                                  self.gamma)  # fmt: skip
        return self.rows[idx], self.actions[idx].astype(np.int64), returns, discounts, self.rows[base + (t + steps) % self.L]


class SlotAttention(nn.Module):
    """Slot Attention (Locatello et al. 2020, Algorithm 1; google-research slot_attention): attention softmaxed over the
    slots, a weighted mean over the inputs, GRU + residual MLP; slot-permutation equivariant. Initial slots mu_k + sigma_k
    * eps, reparameterised, per slot (BO-QSA, Jia et al. 2023). With token positions, a slot's position and scale are its
    attention's weighted mean and std (Biza et al. 2023), whose Gaussian log-kernel (learned weight) joins its logits."""

    def __init__(self, num_slots: int, dim: int, iters: int, min_scale: float = 0.02):
        super().__init__()
        self.iters, self.scale, self.min_scale = iters, dim**-0.5, min_scale
        self.mu, self.log_sigma = (nn.Parameter(nn.init.xavier_uniform_(torch.empty(num_slots, dim))) for _ in range(2))
        self.norm_inputs, self.norm_slots, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.gru, self.mlp = nn.GRUCell(dim, dim), nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.position_weight = nn.Parameter(torch.tensor(0.5413))  # softplus: 1.0 at the start

    def init(self, batch: int, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Initial slots [B, K, D]: mu + sigma * noise (noise [B, K, D] ~ N(0, 1)); without noise, the mean."""
        return self.mu.expand(batch, -1, -1) if noise is None else self.mu + self.log_sigma.exp() * noise

    def forward(self, inputs, slots, grid=None, where=None):
        """inputs [B, N, D], slots [B, K, D], optional token positions grid [N, 2] and the slots' initial positions and
        scales where [B, K, 4] -> (slots [B, K, D], last round's attention [B, K, N], summing to 1 over K)."""
        inputs = self.norm_inputs(inputs)
        k, v = self.k(inputs), self.v(inputs)  # [B, N, D]
        for _ in range(self.iters):
            logits = self.q(self.norm_slots(slots)) @ k.transpose(1, 2) * self.scale  # [B, K, N]
            if where is not None:  # the slots' Gaussian log-kernels over the token positions
                d2 = ((grid - where[..., None, :2]) / where[..., None, 2:]).square().sum(3)  # [B, K, N]
                logits = logits - F.softplus(self.position_weight) * d2 / 2
            attn = torch.softmax(logits, dim=1)  # over the slots: they compete for each input
            w = (attn + 1e-8) / (attn + 1e-8).sum(2, keepdim=True)  # [B, K, N]: weighted means of the inputs
            if grid is not None:  # [B, K, 4]: each slot's attention centroid and standard deviation
                where = torch.cat([w @ grid, (w @ grid.square() - (w @ grid).square()).clamp_min(self.min_scale**2).sqrt()], 2)
            slots = self.gru((w @ v).flatten(0, 1), slots.flatten(0, 1)).view_as(slots)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attn


class SlotEncoder(nn.Module):
    """CNN over the last 2 grey frames (motion visible) -> 42x42 tokens + soft position embedding -> Slot Attention
    (Locatello et al. 2020), warm-started from the last step's slots (SAVi, Kipf et al. 2022), moved on by their velocity."""

    def __init__(self, num_slots: int, iters: int, dim: int = SLOT_DIM):
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv2d(2, 32, 5, stride=2, padding=2), nn.ReLU(True), nn.Conv2d(32, 32, 3, padding=1),
                                 nn.ReLU(True))  # [B, 32, 42, 42]  # fmt: skip
        self.position = nn.Linear(4, 32)  # of (x, y, 1 - x, 1 - y), added to the features (Locatello et al. 2020)
        self.mlp = nn.Sequential(nn.LayerNorm(32), nn.Linear(32, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.slot_attention = SlotAttention(num_slots, dim, iters)
        y, x = torch.meshgrid(*[(torch.arange(GRID) + 0.5) / GRID] * 2, indexing="ij")
        self.register_buffer("grid", torch.stack([x.flatten(), y.flatten(), 1 - x.flatten(), 1 - y.flatten()], 1), False)

    def encode(self, frames, state, first, noise=None):
        """frames uint8 [B, 2, 84, 84], state [B, K, D + 4] the last step's features, first [B] (a game starts: the initial
        slots, + sigma * noise [B, K, D] if given; else the warm start) -> (features [B, K, D + 4]: slot, attention centroid
        x, y in [0, 1], its change since the last step * VEL_SCALE; attention [B, K, N = 42 * 42])."""
        x, D = (frames.float() / 255.0).contiguous(memory_format=torch.channels_last), self.slot_attention.mu.shape[1]
        tokens = self.mlp(self.cnn(x).flatten(2).transpose(1, 2) + self.position(self.grid))  # [B, N, D]
        init = torch.where(first[:, None, None], self.slot_attention.init(len(x), noise), state[..., :D])
        c = state[..., D : D + 2] + state[..., D + 2 :] / VEL_SCALE  # [B, K, 2]: where the slots should be now
        scale = torch.where(first[:, None, None], torch.inf, PRIOR_SCALE).expand_as(c)  # a new game: no positions yet
        slots, attn = self.slot_attention(tokens, init, self.grid[:, :2], torch.cat([c, scale], 2))
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
        """Q-values [B, A] of slot features [B, K, D + 4], or of --end-to-end replay rows [B, P], encoded here (with grad)."""
        if x.dim() == 2:  # the TD loss reaches the encoder through this step; backprop stops at the last step's slots
            state, first, frames = x.float().split([x.shape[1] - 1 - 2 * 84 * 84, 1, 2 * 84 * 84], 1)
            x = self.encoder.encode(frames.view(-1, 2, 84, 84), state.view(len(x), -1, SLOT_DIM + 4), first[:, 0] > 0)[0]
        hidden = self.transformer(torch.cat([self.cls.expand(len(x), -1, -1), self.embed(x.float())], 1))[:, 0]  # [B, D]
        if hidden.requires_grad:  # two streams' gradients enter the trunk: rescale by 1/sqrt(2) (Wang et al. 2016)
            hidden.register_hook(lambda grad: grad / np.sqrt(2))
        value, advantage = self.value(hidden), self.advantage(hidden)  # [B, 1], [B, A]
        return value + advantage - advantage.mean(1, keepdim=True)  # the identifiable dueling aggregation


class QAgent:
    """The contract's agent (common/contract.py): Q-value scores, epsilon-greedy; per game slot its slot state (warm
    start; the mean initialisation when reset_env marks a new game); overlay() draws game 0's last attention masks."""

    score_kind = "q_values"

    def __init__(self, net: QNetwork, device: torch.device, num_envs: int = 0):
        self.net, self.device, self.epsilon = net.eval(), device, EPSILON_EVAL
        self.reset(num_envs)

    def reset(self, num_envs: int) -> None:  # every game slot starts a game: the mean initialisation at its next act
        K, D = self.net.encoder.slot_attention.mu.shape
        self.state, self.attn = torch.zeros(num_envs, K, D + 4, device=self.device), None
        self.first = torch.ones(num_envs, dtype=torch.bool, device=self.device)

    def reset_env(self, i: int) -> None:
        self.first[i] = True

    @torch.no_grad()
    def act(self, obs, greedy: bool):
        frames = torch.as_tensor(np.asarray(obs)[:, -2:], device=self.device)
        if len(frames) != len(self.state):
            self.reset(len(frames))
        self.state, self.attn = self.net.encoder.encode(frames, self.state, self.first)
        self.first[:] = False
        q = self.net(self.state).float().cpu().numpy()  # [N, A]
        explore = np.random.random(len(q)) < (0.0 if greedy else self.epsilon)
        return np.where(explore, np.random.randint(q.shape[1], size=len(q)), q.argmax(1)).astype(np.int64), q

    def overlay(self, frame_rgb):
        """frame_rgb [H, W, 3] of game slot 0 with each slot's attention mask over its last observation, in its colour."""
        return frame_rgb if self.attn is None else overlay_masks(frame_rgb, self.attn[0].view(-1, GRID, GRID).cpu().numpy())


def make_agent(checkpoint: dict, device: torch.device) -> QAgent:
    """Rebuild the trained Q-network from a checkpoint dict (see common/checkpoint.py)."""
    state = checkpoint["model"]
    net = QNetwork(len(state["advantage.2.weight"]), len(state["encoder.slot_attention.mu"]), checkpoint["args"]["slot_iters"])
    net = net.to(device, memory_format=torch.channels_last if device.type == "cpu" else torch.preserve_format)
    net.load_state_dict(state)
    return QAgent(net, device)


def slot_checkpoint(args: Args) -> dict:
    """--slot-checkpoint (relative: from here, else from the repo), loaded; a one-line exit unless slot_pretrain_atari.py's."""
    path = Path(args.slot_checkpoint) if Path(args.slot_checkpoint).exists() else REPO / args.slot_checkpoint
    try:
        return load_checkpoint(path, script="slot_pretrain_atari")
    except CheckpointError as e:
        sys.exit(f"error: --slot-checkpoint: {e} (pre-train one with: python slot_pretrain_atari.py)")


def check_args(args: Args) -> Args:
    """Bad values and a --slot-checkpoint not slot_pretrain_atari.py's (not read on a resume) stop with one line; a replay
    too small for the budget's first updates grows (with a note)."""
    require(args, positive=("buffer_size", "batch_size", "train_frequency", "target_network_frequency", "n_step",
                            "frame_stack", "learning_rate", "max_grad_norm", "slot_iters"),
            at_least_0=("learning_starts", "exploration_fraction"), unit=("gamma", "start_e", "end_e"))  # fmt: skip
    if args.frame_stack < 2 or env_protocol(args)["game"] != "breakout":
        sys.exit("error: slot_attn_atari.py's slots see Breakout's last 2 frames: --frame-stack >= 2, a Breakout env id")
    num_slots = 8 if args.resume else len(slot_checkpoint(args)["model"]["encoder.slot_attention.mu"])  # 8: a bound
    starts = max(args.learning_starts, args.num_envs * (args.n_step + 1))  # each env has a full n-step window
    size = max(args.buffer_size, args.num_envs * (max(starts // args.num_envs, args.n_step) + 1))
    args = at_least(args, "the first updates need it", learning_starts=starts, buffer_size=size)
    row = 2 * (num_slots * (SLOT_DIM + 4) + args.end_to_end * (1 + 2 * 84 * 84)) + 3  # float16 row, action, reward, flags
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
    torch.set_num_threads(1 if device.type == "cpu" else torch.get_num_threads())  # CPU: 1.14x the SPS of 2 threads
    layout = torch.channels_last if device.type == "cpu" else torch.preserve_format  # faster CPU convolutions
    phase_1 = (run.checkpoint or slot_checkpoint(args))["model"]  # the pre-trained encoder; a resume's checkpoint has it too
    num_slots = len(phase_1["encoder.slot_attention.mu"])
    q_network, target_network = (QNetwork(envs.single_action_space.n, num_slots, args.slot_iters).to(device,
                                 memory_format=layout) for _ in range(2))  # fmt: skip
    q_network.encoder.load_state_dict({k[8:]: v for k, v in phase_1.items() if k.startswith("encoder.")})
    target_network.load_state_dict(q_network.state_dict())
    optimizer = optim.Adam(q_network.parameters(), lr=args.learning_rate, eps=1.5e-4, fused=device.type in ("cpu", "cuda"))
    shape = (num_slots * (SLOT_DIM + 4) + 1 + 2 * 84 * 84,) if args.end_to_end else (num_slots, SLOT_DIM + 4)  # a row
    memory = ReplayMemory(args.buffer_size, args.num_envs, shape, args.n_step, args.gamma)
    num_updates, update_due = 0, 0

    run.attach(q_network, optimizer, lambda step: {"target_model": target_network.state_dict(), "num_updates": num_updates,
                                                   "update_due": update_due})  # what checkpoints hold  # fmt: skip
    if run.checkpoint:
        target_network.load_state_dict(run.state["target_model"])
        num_updates, update_due = run.state["num_updates"], run.state["update_due"]
        print("the replay memory starts empty")
    epsilon_at = run.schedule("epsilon", Linear(0, args.start_e, int(args.exploration_fraction * args.total_timesteps),
                                                args.end_e), stretch=False)  # fmt: skip

    agent = QAgent(q_network, device, args.num_envs)  # evaluate.py's agent: warm-started slots, the mean init per game
    next_obs, _ = envs.reset(seed=args.seed + global_step)
    q_network.encoder.requires_grad_(args.end_to_end)  # default: the DQN on frozen slots (OCRL's "frozen", Yoon et al. 2023)
    with run.loop(num_iterations * args.num_envs):
        for iteration in range(global_step // args.num_envs + 1, num_iterations + 1):
            if run.stopping:
                break
            global_step += args.num_envs

            # ALGO LOGIC: epsilon-greedy action on the slots of s_t
            agent.epsilon = epsilon = epsilon_at(global_step)
            inputs = agent.state, agent.first.clone(), torch.from_numpy(next_obs[:, -2:])  # the encoder's (--end-to-end)
            actions, slots = agent.act(next_obs, greedy=False)[0], agent.state  # slots [N, K, D + 4]
            next_obs, reward, terminations, truncations, infos = envs.step(actions)
            games = run.episodes(global_step, reward, terminations, truncations, infos["lives"])
            # a life loss is `terminated` (no bootstrap); at game over (SameStep autoreset) next_obs starts the next game
            over = np.isin(np.arange(args.num_envs), [i for i, _, _ in games])
            final = None  # the replay rows of the games' final obs, whose slots go on from s_t's
            if over.any():
                with torch.no_grad():
                    frames = torch.from_numpy(infos["final_obs"][over, -2:]).to(device)  # agent.first[over]: all False
                    final = q_network.encoder.encode(frames, slots[over], agent.first[over])[0]
                    final = replay_rows(final, (slots[over], agent.first[over], frames), args.end_to_end)
                agent.first[torch.from_numpy(over)] = True  # the next game: the mean initialisation
            memory.add(replay_rows(slots, inputs, args.end_to_end), actions, reward, terminations, truncations, over, final)

            # ALGO LOGIC: one update of batch_size per train_frequency agent steps
            if len(memory) > args.learning_starts:
                update_due += args.num_envs
                while update_due >= args.train_frequency:
                    update_due -= args.train_frequency
                    batch = memory.sample(args.batch_size)  # uniform, n-step
                    b_obs, b_actions, b_returns, b_discounts, b_next_obs = (torch.from_numpy(x).to(device) for x in batch)
                    with torch.no_grad():  # Double DQN (van Hasselt et al. 2016): the online argmax, the target's value
                        next_online, next_target = q_network(b_next_obs), target_network(b_next_obs)  # [B, A]
                        td_target = b_returns + b_discounts * next_target.gather(1, next_online.argmax(1, keepdim=True))[:, 0]
                    old_val = q_network(b_obs).gather(1, b_actions[:, None]).squeeze(1)  # [B]
                    loss = F.smooth_l1_loss(old_val, td_target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(q_network.parameters(), args.max_grad_norm)
                    optimizer.step()
                    num_updates += 1
                    if num_updates % 100 == 0:  # the only host syncs of the loss
                        run.log(global_step, {"losses/td_loss": loss.item(), "losses/q_values": old_val.mean().item(),
                                              "charts/epsilon": epsilon})  # fmt: skip
                if global_step % args.target_network_frequency < args.num_envs:  # hard copy, once per period
                    target_network.load_state_dict(q_network.state_dict())
            run.checkpoint_due(global_step)
    envs.close()
    return run.finish(global_step, device)


if __name__ == "__main__":
    main(tyro.cli(Args))
