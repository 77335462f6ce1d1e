"""Phase 1 of slot_attn_atari.py: pre-trains its Slot Attention encoder (Locatello et al. 2020; warm-started along each
game as in SAVi, Kipf et al. 2022) on Breakout frames with three auxiliary losses: a spatial broadcast decoder's motion-
weighted reconstruction (Watters et al. 2019), RAM-supervised ball and paddle positions on Hungarian-matched slots, and a
temporal slot contrast (Manasyan et al. 2024). A variant of slot_attn_atari.py (its encoder classes are marked copies);
its checkpoint is what slot_attn_atari.py's --slot-checkpoint reads. Example: python slot_pretrain_atari.py
"""

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

from common.checkpoint import CheckpointError
from common.contract import ContractError, env_protocol, load_agent, overlay_masks
from common.events import decode_ram
from common.run import Run, RunArgs, note, require

gym.register_envs(ale_py)


@dataclass
class Args(RunArgs):
    # Experiment: the harness's flags (seed, device, track, checkpoint_every, resume, ...) come from common.run.RunArgs
    exp_name: str = Path(__file__).stem
    """the name of this experiment (run folder, checkpoint file, W&B run)"""
    eval_episodes: int = 0
    """must stay 0: this script trains no agent (evaluate slot_attn_atari.py's checkpoints)"""

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
    total_timesteps: int = 1_000
    """Adam updates of the slot autoencoder (this script's step count: --checkpoint-every, --resume, charts/SPS)"""
    learning_rate: float = 4e-4
    """Adam learning rate (Slot Attention's 4e-4)"""
    num_envs: int = 8
    """games played side by side to collect the frames: each is one frame stream"""
    pretrain_frames: int = 16_000
    """frames collected for training (all streams); a tenth more, from other games (env seeds), are held out"""
    play_checkpoint: Optional[str] = "checkpoints/ppo_atari_breakout.pt"
    """a pixel agent's checkpoint whose games (through the evaluation contract) give --play-fraction of the streams
    (longer rallies than random play); relative paths: from here, else from the repo; None: random play only"""
    play_fraction: float = 0.5
    """fraction of the streams played by --play-checkpoint's agent; the others play uniformly random actions"""
    play_epsilon: float = 0.05
    """probability of a random action in the agent's streams (more varied games)"""
    batch_size: int = 8
    """frame streams per update, each continued from the last update's frame and slots (truncated backprop in time)"""
    seq_len: int = 3
    """steps per stream per update (backprop through the slots' warm starts)"""
    num_slots: int = 6
    """K, the number of slots (ball, paddle, bricks, walls and score, background, ...)"""
    slot_iters: int = 3
    """Slot Attention iterations per step (Locatello et al.: 3); each step starts from the last one's slots (SAVi)"""
    recon_weight: float = 1.0
    """weight of the spatial-broadcast decoder's motion-weighted reconstruction loss on each sequence's last step (0: off)"""
    position_weight: float = 1.0
    """weight of KL(Gaussian at the RAM ball / paddle || its Hungarian-matched slot's attention), slots/position_loss"""
    spread_weight: float = 1.0
    """weight of the matched slots' attention-weighted mean distance to the RAM position (per 10 px), slots/spread_loss"""
    contrast_weight: float = 0.1
    """weight of the temporal slot-contrast loss (Manasyan et al. 2024), slots/contrast_loss (0: off)"""
    max_grad_norm: float = 10.0
    """the maximum norm for gradient clipping"""
    log_masks_every: int = 250
    """updates between held-out tracking accuracies (slots/ball_track_acc, slots/paddle_track_acc) and mask grids"""


# Copied from slot_attn_atari.FireOnReset
class FireOnReset(gym.Wrapper):
    """Presses FIRE for one frame after each game reset, as AtariVectorEnv's use_fire_reset does; marks it as scripted."""

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            return self.reset(**kwargs)
        return obs, {**info, "scripted_fire": 1}


# Copied from slot_attn_atari.make_env
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


# Copied from slot_attn_atari.pick_device
def pick_device(name: str) -> torch.device:
    """cuda -> mps -> cpu for "auto"; a clear error when the asked-for device is missing."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[name]:
        sys.exit(f"error: --device {name} is not available on this machine (try --device auto)")
    return torch.device(name)


SLOT_DIM, GRID, VEL_SCALE, PRIOR_SCALE = 64, 42, 10.0, 0.1  # slot size D, 42x42 tokens, velocity scale, warm slots' scale
SCREEN, PADDLE_Y, TRACK_PX = np.array([160.0, 210.0], np.float32), 191.0, 4.0  # ALE screen px; paddle rows 189..192
BALL_MAX_Y = 196  # the ball is drawn only while its top row is at most 196 (OCAtari ocatari/ram/breakout.py; checked)
SIGMA = torch.tensor([[3.0, 4.0], [6.0, 4.0]])  # px, x and y, of the Gaussians at the ball (2x4 px) and the paddle (16x4)
MOTION_WEIGHT, TAU = 10.0, 0.1  # extra reconstruction weight of the pixels that changed; contrast temperature


# Copied from slot_attn_atari.SlotAttention
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


# Copied from slot_attn_atari.SlotEncoder
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


class SlotAutoencoder(nn.Module):
    """slot_attn_atari.py's SlotEncoder and a spatial broadcast decoder (Watters et al. 2019) of its slots: a per-pixel
    MLP of each slot broadcast with the pixel's position (DINOSAUR's MLP decoder, Seitzer et al. 2023), alpha-composited."""

    def __init__(self, num_slots: int, iters: int, dim: int = SLOT_DIM):
        super().__init__()
        self.encoder = SlotEncoder(num_slots, iters, dim)
        self.dec_slot, self.dec_position = nn.Linear(dim, 32), nn.Linear(4, 32)
        self.decoder = nn.Sequential(nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))  # 2 frames, mask logit

    def decode(self, slots):
        """slots [B, K, D] -> reconstruction [B, 2, 42, 42] of the 2x2-max-pooled frames (masks softmaxed over slots)."""
        out = self.decoder(self.dec_slot(slots)[:, :, None] + self.dec_position(self.encoder.grid))  # [B, K, N, 3]
        return (out[..., 2:].softmax(1) * out[..., :2]).sum(1).transpose(1, 2).reshape(-1, 2, GRID, GRID)


def mask_grid(frames, attn, rows: int = 4):
    """TensorBoard image uint8 [rows * 84, (K + 1) * 84, 3]: per frame, all slots' masks on it, then each slot's alone."""
    K, out = attn.shape[1], []
    for x, a in zip(frames[:rows], attn[:rows].detach().float().cpu().numpy()):
        rgb, m = np.repeat(np.asarray(x[-1])[..., None], 3, 2), a.reshape(K, GRID, GRID)
        out.append(np.concatenate([overlay_masks(rgb, m)] + [overlay_masks(rgb, m * (np.arange(K) == k)[:, None, None], 1.0)
                                                              for k in range(K)], 1))  # fmt: skip
    return np.concatenate(out, 0)


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
    """Ball and paddle centres [B, 2, 2] (screen px) and which are present [B, 2] (the ball: on screen) of targets [B, 5]."""
    xy = np.stack([targets[:, :2], np.stack([targets[:, 3], np.full(len(targets), PADDLE_Y, np.float32)], 1)], 1)
    return xy, np.stack([targets[:, 2] > 0, np.ones(len(targets), bool)], 1)


def play_agent(args):
    """--play-checkpoint's agent through the evaluation contract (common/contract.py), or None; one-line exit when it
    is missing or sees other observations than make_env's."""
    if args.play_checkpoint is None or round(args.play_fraction * args.num_envs) == 0:
        return None
    path = Path(args.play_checkpoint)
    path = path if path.exists() or path.is_absolute() else Path(__file__).resolve().parent / path
    try:
        loaded = load_agent(path, torch.device("cpu"))
    except (CheckpointError, ContractError) as e:  # one line each
        sys.exit(f"error: --play-checkpoint: {e}")
    p = loaded.checkpoint["protocol"]
    if p.get("observation") != "grey 84x84 uint8" or p.get("frame_stack") != args.frame_stack:
        sys.exit(f"error: --play-checkpoint {args.play_checkpoint}: its agent does not see {args.frame_stack} stacked "
                 "grey 84x84 frames (try a ppo_atari.py or dqn_per_dueling_atari.py checkpoint, or None)")  # fmt: skip
    return loaded.agent


def collect(args, seed: int, steps: int, agent=None):
    """num_envs make_env games, `steps` frames in all; the first round(play_fraction * num_envs) streams are the agent's
    (epsilon-greedy), the others random play. -> (newest frames uint8 [T, E, 84, 84], a game's first frame [T, E], targets
    float32 [T, E, 5] from the RAM: ball centre x, y, ball in play and on screen, paddle centre x (screen px), in play)."""
    envs, rng = [make_env(args, seed + i, i)() for i in range(args.num_envs)], np.random.default_rng(seed)
    (T, E), n = (steps // len(envs), len(envs)), 0 if agent is None else round(args.play_fraction * args.num_envs)
    frames, first, targets = np.zeros((T, E, 84, 84), np.uint8), np.zeros((T + 1, E), bool), np.zeros((T, E, 5), np.float32)
    obs, first[0] = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)], True
    if n:
        agent.reset(n)
    for t in range(T):
        actions = rng.integers(envs[0].action_space.n, size=E)
        if n:
            greedy = agent.act(np.stack(obs[:n]), greedy=True)[0]
            actions[:n] = np.where(rng.random(n) < args.play_epsilon, actions[:n], greedy)
        for e, env in enumerate(envs):
            s = decode_ram(env.unwrapped.ale.getRAM())
            seen = s.in_play and s.ball_y <= BALL_MAX_Y  # past the paddle, a ball still in play is not drawn
            frames[t, e], targets[t, e] = obs[e][-1], (s.ball_x + 1, s.ball_y + 2, seen, s.paddle_center, s.in_play)
            obs[e], _, terminated, truncated, _ = env.step(int(actions[e]))
            if terminated or truncated:
                obs[e], first[t + 1, e] = env.reset()[0], True
                if e < n and hasattr(agent, "reset_env"):
                    agent.reset_env(e)
    return frames, first[:T], targets


def slot_pass(model, data, t, e, state, steps: int, device, fresh=None, recon: bool = True):
    """The slots along frame streams data = (frames, first, targets) of collect(), `steps` steps from t [B] of streams e
    [B] and slot state [B, K, D + 4] (fresh [B]: start from initial slots). With gradients: noisy initial slots and the
    losses [4] (reconstruction if recon, position KL, spread, contrast; step means). -> (losses, the matched slots' hits
    (object, within TRACK_PX) [P, 2], the last step's frames, slot state and attention)."""
    (frames, first, targets), encoder = data, model.encoder
    K, D = encoder.slot_attention.mu.shape
    losses, hits, train = torch.zeros(4, device=device), [], torch.is_grad_enabled()
    tokens = encoder.grid[:, :2] * encoder.grid.new_tensor(SCREEN)  # [N, 2] token centres, screen px
    for j in range(steps):
        x = torch.from_numpy(np.stack([frames[t + j - 1, e] * ~first[t + j, e, None, None], frames[t + j, e]], 1)).to(device)
        new = torch.from_numpy(first[t + j, e] | (j == 0) & (fresh if fresh is not None else False)).to(device)
        noise = torch.randn(len(x), K, D, device=device) if train else None  # Locatello et al.: noisy in training only
        prev, (state, attn) = state, encoder.encode(x, state, new, noise)
        xy, present = object_xy(targets[t + j, e])  # the ball and the paddle from the RAM, [B, 2, 2] screen px
        c = (state[..., D : D + 2] * state.new_tensor(SCREEN)).detach().cpu().numpy()  # [B, K, 2] attention centroids
        b, k, o = object_pairs(((c[:, :, None] - xy[:, None]) ** 2).sum(3), present)  # tracking: the nearest centroids
        hits.append(np.stack([o, np.linalg.norm(c[b, k] - xy[b, o], axis=1) <= TRACK_PX], 1))
        if not train:  # held-out frames: tracking only
            continue
        if recon and j == steps - 1:  # the decoder (the costliest part) on each sequence's last step
            target = F.max_pool2d(x.float() / 255.0, 2)  # [B, 2, 42, 42]: the 2x4 px ball survives the pooling
            weight = 1 + MOTION_WEIGHT * (target[:, 1:] != target[:, :1]).float()  # the pixels that changed count more
            losses[0] += (weight * (model.decode(state[..., :D]) - target) ** 2).mean() / weight.mean()
        # position: KL(a Gaussian at the object || its slot's attention) and the attention's mean distance to it
        offsets = tokens - torch.from_numpy(xy).to(device)[:, :, None]  # [B, 2, N, 2] px
        h = torch.softmax(-((offsets / SIGMA.to(device)[:, None]) ** 2).sum(3) / 2, 2)  # [B, 2, N]
        w = (attn + 1e-8) / (attn + 1e-8).sum(2, keepdim=True)  # [B, K, N] each slot's attention over the tokens
        kl = (h * torch.log(h + 1e-12)).sum(2)[:, None] - torch.log(w) @ h.transpose(1, 2)  # [B, K, 2]
        spread = w @ offsets.norm(dim=3).transpose(1, 2) / 10  # [B, K, 2]: E_w |token - object| in 10 px
        b, k, o = object_pairs((kl + spread).detach().cpu().numpy(), present)  # slots matched by that cost (Hungarian)
        losses[1] += kl[b, k, o].mean() / steps
        losses[2] += spread[b, k, o].mean() / steps
        if j:  # temporal slot contrast: slot k one step on is the positive, every other slot in the batch a negative
            a, b = F.normalize(prev[..., :D].flatten(0, 1), dim=1), F.normalize(state[..., :D].flatten(0, 1), dim=1)
            losses[3] += F.cross_entropy(a @ b.T / TAU, torch.arange(len(a), device=device)) / (steps - 1)
    return losses, np.concatenate(hits), x, state, attn


def track_accuracy(hits) -> tuple[float, float]:
    """(ball, paddle) tracking accuracy: the fraction of matched pairs (ball: frames with it on screen) within TRACK_PX."""
    return tuple(float(hits[hits[:, 0] == o, 1].mean()) if (hits[:, 0] == o).any() else float("nan") for o in (0, 1))


@torch.no_grad()
def tracking(model, data, device) -> tuple[float, float]:
    """Held-out (ball, paddle) tracking accuracy: every stream from its first frame, as in a game (the mean
    initialisation at each game start, warm starts in between)."""
    E, (K, D) = data[1].shape[1], model.encoder.slot_attention.mu.shape
    state = torch.zeros(E, K, D + 4, device=device)
    return track_accuracy(slot_pass(model, data, np.zeros(E, int), np.arange(E), state, len(data[1]), device)[1])


def check_args(args: Args) -> Args:
    """Bad values stop with one line; too few frames for one stream's sequence grow (with a note)."""
    require(args, positive=("learning_rate", "batch_size", "seq_len", "num_slots", "slot_iters", "max_grad_norm",
                            "log_masks_every", "frame_stack"),
            at_least_0=("pretrain_frames", "recon_weight", "position_weight", "spread_weight", "contrast_weight"),
            unit=("play_fraction", "play_epsilon"))  # fmt: skip
    if args.eval_episodes:
        sys.exit("error: --eval-episodes: slot_pretrain_atari.py trains no agent; evaluate slot_attn_atari.py's checkpoints")
    if args.frame_stack < 2 or env_protocol(args)["game"] != "breakout":
        sys.exit("error: slot_pretrain_atari.py reads Breakout's RAM and 2 frames: --frame-stack >= 2, a Breakout env id")
    frames = max(args.pretrain_frames, args.num_envs * (args.seq_len + 2))
    if frames != args.pretrain_frames:
        note(f"--pretrain-frames {args.pretrain_frames} -> {frames}: each stream needs a sequence of --seq-len frames")
        args = replace(args, pretrain_frames=frames)
    return args


def main(args: Args) -> Path:
    run = Run(args, __file__, check=check_args)  # BOILERPLATE: --resume, flag checks, run folder, TensorBoard, W&B
    args, global_step = run.args, run.global_step

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = pick_device(args.device)
    print(f"device: {device} | run folder: {run.dir}")

    t0, agent = time.time(), play_agent(args)  # a resume collects the same frames again (from the seed)
    data = collect(args, args.seed + 10_000, args.pretrain_frames, agent)  # env seeds disjoint from the held-out games'
    test = collect(args, args.seed + 20_000, max(args.pretrain_frames // 10, 2 * args.num_envs), agent)
    print(f"{data[1].size} + {test[1].size} frames ({time.time() - t0:.0f} s); update {global_step}/{args.total_timesteps}")
    run.writer.add_scalar("slots/collect_seconds", time.time() - t0, global_step)
    layout = torch.channels_last if device.type == "cpu" else torch.preserve_format  # faster CPU convolutions
    model = SlotAutoencoder(args.num_slots, args.slot_iters).to(device, memory_format=layout)
    optimizer = optim.Adam(model.parameters(), lr=args.learning_rate, eps=1.5e-4, fused=device.type in ("cpu", "cuda"))
    run.attach(model, optimizer)  # what checkpoints hold; on a resume: weights, optimizer and RNG states
    weights = torch.tensor([args.recon_weight, args.position_weight, args.spread_weight, args.contrast_weight], device=device)
    (T, E), (K, D), B = data[1].shape, model.encoder.slot_attention.mu.shape, args.batch_size
    t, e, state = np.full(B, T), np.zeros(B, int), torch.zeros(B, K, D + 4, device=device)  # streams: all start afresh

    t0 = time.time()
    with run.loop(args.total_timesteps):
        for update in range(global_step + 1, args.total_timesteps + 1):
            if run.stopping:
                break
            global_step = update
            # ALGO LOGIC: each stream goes on from its last frame and slots; one at the data's end restarts elsewhere
            fresh = t + args.seq_len > T
            n = fresh.sum()
            t[fresh], e[fresh] = np.random.randint(1, T - args.seq_len + 1, n), np.random.randint(E, size=n)
            losses, _, x, state, attn = slot_pass(model, data, t, e, state, args.seq_len, device, fresh, args.recon_weight > 0)
            optimizer.zero_grad(set_to_none=True)
            (weights * losses).sum().backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            t, state = t + args.seq_len, state.detach()  # truncated backprop: the next update starts from these slots

            if update % 25 == 0 or update == args.total_timesteps:
                names = ("recon_loss", "position_loss", "spread_loss", "contrast_loss")
                run.log(global_step, {f"slots/{n}": v for n, v in zip(names, losses.tolist())})
            if update % args.log_masks_every == 0 or update == args.total_timesteps:
                ball, paddle = tracking(model, test, device)  # the held-out streams from their first frames
                run.log(global_step, {"slots/ball_track_acc": ball, "slots/paddle_track_acc": paddle})
                run.writer.add_image("slots/masks", mask_grid(x.cpu().numpy(), attn), global_step, dataformats="HWC")
                print(f"update {update}/{args.total_timesteps}: losses {np.round(losses.tolist(), 4).tolist()}, held-out "
                      f"tracking within {TRACK_PX:g} px: ball {ball:.3f}, paddle {paddle:.3f} ({time.time() - t0:.0f} s)",
                      flush=True)  # fmt: skip
            run.checkpoint_due(global_step)
    return run.finish(global_step, device)


if __name__ == "__main__":
    main(tyro.cli(Args))
