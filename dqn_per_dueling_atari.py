"""Prioritized dueling Double DQN with n-step returns on Atari (Breakout by default): one file, read top to bottom.
Papers: Schaul et al. 2016 (prioritized replay), Wang et al. 2016 (dueling), van Hasselt et al. 2016 (Double DQN),
Hessel et al. 2018 (Rainbow: n-step, Adam settings). Parent: ppo_atari.py (boilerplate copied, marked and checked).
Example: python dqn_per_dueling_atari.py --total-timesteps 1000000
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

from common.checkpoint import write_atomic
from common.contract import EPSILON_EVAL, env_protocol
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
    """parallel games; 8 batch the acting forward pass (benchmarks/dqn_update_profile.py), same replay ratio"""
    buffer_size: int = 1_000_000
    """replay memory capacity in transitions (DQN/Rainbow: 1M); 7076 B each (7.1 GB at 1M) as each frame is stored once"""
    save_buffer: bool = False
    """if toggled, checkpoints also write the replay memory and priorities to <run dir>/<exp_name>.replay (~7 GB at 1M)"""
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
    """priority exponent alpha (Schaul et al. 2016, proportional variant)"""
    prioritized_replay_beta: float = 0.4
    """initial importance-sampling exponent beta, annealed linearly to 1 over the first run's total-timesteps (PER)"""
    prioritized_replay_eps: float = 1e-6
    """added to |TD error| so that no transition gets priority 0"""
    max_grad_norm: float = 10.0
    """the maximum norm for gradient clipping (dueling paper: 10)"""


# Copied from ppo_atari.FireOnReset
class FireOnReset(gym.Wrapper):
    """Presses FIRE for one frame after each game reset, as AtariVectorEnv's use_fire_reset does; marks it as scripted."""

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            return self.reset(**kwargs)
        return obs, {**info, "scripted_fire": 1}


# Copied from ppo_atari.make_env
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


# Copied from ppo_atari.make_vector_env
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


# Copied from ppo_atari.pick_device
def pick_device(name: str) -> torch.device:
    """cuda -> mps -> cpu for "auto"; a clear error when the asked-for device is missing."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[name]:
        sys.exit(f"error: --device {name} is not available on this machine (try --device auto)")
    return torch.device(name)


def nstep_targets(rewards, terms, truncs, gamma: float):
    """n-step windows [B, n] -> (returns, steps to the bootstrap obs, discounts). A window ends after a terminated step
    (life loss or game over: discount 0) or a truncated one (bootstrap from the game's final observation)."""
    alive = np.ones_like(terms)
    alive[:, 1:] = np.cumprod(~(terms | truncs)[:, :-1], axis=1)  # [B, n]: step k is inside the window
    returns, steps = (alive * gamma ** np.arange(rewards.shape[1]) * rewards).sum(1), alive.sum(1)
    return returns.astype(np.float32), steps, np.where((alive & terms).any(1), 0.0, gamma**steps).astype(np.float32)


def double_dqn_target(next_q_online, next_q_target, returns, discounts):
    """y = R + discount * Q_target(s', argmax_a Q_online(s', a)) (van Hasselt et al. 2016); q [B, A], others [B]."""
    return returns + discounts * next_q_target.gather(1, next_q_online.argmax(1, keepdim=True)).squeeze(1)


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


class ReplayMemory:
    """Prioritized replay storing each 84x84 frame once: 7076 B per transition (CleanRL dqn_atari: a 28 KB stack).

    Env e owns the circular slots [e*L, (e+1)*L). Slot t holds the newest frame of s_t, a_t, sign(r_t) and flags; a game
    that ends writes its final observation's frame into one more (FINAL) slot. Stacks are rebuilt from the last frames,
    zeroed before a game's first frame like the env's (which stacks across a life loss: the game goes on). A slot can be
    sampled (priority > 0) from when its n-step window is written until it, or a frame of its stack, is overwritten.
    """

    def __init__(self, buffer_size, num_envs, frame_stack, n_step, gamma, alpha, eps):
        self.L, self.num_envs, self.stack, self.n, self.gamma = buffer_size // num_envs, num_envs, frame_stack, n_step, gamma
        self.alpha, self.eps, self.max_priority = alpha, eps, 1.0
        capacity = self.L * num_envs
        self.frames = np.zeros((capacity, 84, 84), dtype=np.uint8)
        self.actions, self.flags = np.zeros(capacity, dtype=np.uint8), np.zeros(capacity, dtype=np.uint8)
        self.rewards = np.zeros(capacity, dtype=np.int8)  # sign-clipped: learning never sees raw rewards
        self.written = np.zeros(num_envs, dtype=np.int64)  # slots ever written, per env
        self.tree = SumTree(capacity)
        self.nbytes = sum(a.nbytes for a in (self.frames, self.actions, self.flags, self.rewards, self.tree.nodes))

    def __len__(self) -> int:
        return int(np.minimum(self.written, self.L).sum())

    def _write(self, env, frames, actions, rewards, flags) -> None:
        w, base = self.written[env], env * self.L
        slot = base + w % self.L
        self.frames[slot], self.actions[slot], self.rewards[slot], self.flags[slot] = frames, actions, rewards, flags
        self.written[env] += 1
        stale = base[:, None] + (w[:, None] + np.arange(self.stack)) % self.L  # [k, S]: this slot, stacks that needed it
        ready = base + (w - self.n) % self.L  # its n-step window is now written: in at max priority (PER)
        ready = ready[(w >= self.n) & (self.flags[ready] & FINAL == 0)]
        values = np.concatenate([np.zeros(stale.size), np.full(len(ready), self.max_priority**self.alpha)])
        self.tree.update(np.concatenate([stale.ravel(), ready]), values)

    def add(self, frames, actions, rewards, terms, truncs, firsts, game_over, final_frames) -> None:
        """One vector step: frames [N, 84, 84] are the newest frames of s_t; final_frames those of infos["final_obs"]."""
        flags = terms * TERM | truncs * TRUNC | firsts * FIRST
        self._write(np.arange(self.num_envs), frames, actions, np.sign(rewards), flags.astype(np.uint8))
        if game_over.any():
            self._write(np.flatnonzero(game_over), final_frames[game_over], 0, 0, FINAL)

    def stacks(self, idx):
        """Observations [B, S, 84, 84] rebuilt from slots idx [B]."""
        base, t = idx // self.L * self.L, idx % self.L
        win = base[:, None] + (t[:, None] + np.arange(1 - self.stack, 1)) % self.L  # [B, S]
        frames, first = self.frames[win], (self.flags[win] & FIRST) > 0
        frames[:, :-1][np.flip(np.logical_or.accumulate(np.flip(first[:, 1:], 1), axis=1), 1)] = 0  # a later game start
        return frames

    def transitions(self, idx):
        """(obs, actions, n-step returns, discounts, bootstrap obs) of the transitions starting at slots idx [B]."""
        base, t = idx // self.L * self.L, idx % self.L
        win = base[:, None] + (t[:, None] + np.arange(self.n)) % self.L  # [B, n]
        flags = self.flags[win]
        returns, steps, discounts = nstep_targets(self.rewards[win], flags & TERM > 0, flags & TRUNC > 0, self.gamma)
        next_obs = self.stacks(base + (t + steps) % self.L)
        return self.stacks(idx), self.actions[idx].astype(np.int64), returns, discounts, next_obs

    def sample(self, batch: int, beta: float):
        """Proportional sample with IS weights (N*P(i))^-beta over their batch max (CleanRL rainbow, Dopamine)."""
        idx = self.tree.sample(batch)
        p = self.tree.leaves(idx)  # N*P(i) = N*p_i/total: N and the total cancel in the weights' ratio
        priorities = p ** (1 / self.alpha) if self.alpha else np.ones_like(p)  # alpha 0: uniform replay
        return idx, self.transitions(idx), ((p / p.min()) ** -beta).astype(np.float32), priorities

    def update_priorities(self, idx, td_errors) -> None:
        priorities = np.abs(td_errors) + self.eps
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.update(idx, priorities**self.alpha)

    def state_dict(self, pending_frames, global_step: int) -> dict:
        """The memory, plus the next observations not stored yet: on load, each game ends there, truncated."""
        state = {k: torch.from_numpy(getattr(self, k)) for k in ("frames", "actions", "rewards", "flags", "written")}
        state["priorities"] = torch.from_numpy(self.tree.leaves(np.arange(len(self.flags))))
        state["pending"] = torch.from_numpy(np.ascontiguousarray(pending_frames))
        return {**state, "max_priority": self.max_priority, "global_step": global_step}

    def load_state_dict(self, state: dict) -> None:
        for k in ("frames", "actions", "rewards", "flags", "written"):
            np.copyto(getattr(self, k), state[k].numpy())
        self.tree.update(np.arange(len(self.flags)), state["priorities"].numpy())
        self.max_priority, last = state["max_priority"], np.arange(self.num_envs) * self.L + (self.written - 1) % self.L
        cut = (self.written > 0) & (self.flags[last] & FINAL == 0)  # games cut by the save: truncated at "pending"
        self.flags[last[cut]] |= TRUNC
        self._write(np.flatnonzero(cut), state["pending"].numpy()[cut], 0, 0, FINAL)


def replay_bytes(buffer_size: int, num_envs: int) -> int:
    """Bytes a ReplayMemory allocates: frame, action, reward and flags per slot, plus the sum tree."""
    capacity = buffer_size // num_envs * num_envs
    return capacity * (84 * 84 + 3) + 16 * (1 << max(1, (capacity - 1).bit_length()))


class QNetwork(nn.Module):
    """Dueling Nature-CNN Q-network (Wang et al. 2016), separate 512-unit V and A streams; input uint8 [B, 4, 84, 84]."""

    def __init__(self, n_actions: int, frame_stack: int = 4):
        super().__init__()
        self.network = nn.Sequential(nn.Conv2d(frame_stack, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2),
                                     nn.ReLU(), nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten())  # fmt: skip
        self.value = nn.Sequential(nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, 1))
        self.advantage = nn.Sequential(nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, n_actions))

    def forward(self, x):
        if x.device.type == "cpu":  # channels_last, the CPU weights' layout: permuted as uint8, 4x fewer bytes than float
            x = x.contiguous(memory_format=torch.channels_last)
        hidden = self.network(x.float() / 255.0)  # [B, 3136]
        if hidden.requires_grad:  # two streams' gradients enter the trunk: rescale by 1/sqrt(2) (Wang et al. 2016)
            hidden.register_hook(lambda grad: grad / np.sqrt(2))
        value, advantage = self.value(hidden), self.advantage(hidden)  # [B, 1], [B, A]
        return value + advantage - advantage.mean(1, keepdim=True)  # the identifiable dueling aggregation


class QAgent:
    """The evaluation side of the contract (common/contract.py): scores are Q-values, epsilon-greedy unless greedy."""

    score_kind = "q_values"

    def __init__(self, net: QNetwork, device: torch.device):
        self.net, self.device, self.epsilon = net.eval(), device, EPSILON_EVAL

    def reset(self, num_envs: int) -> None:
        """Feed-forward Q-network: no per-env state."""

    @torch.no_grad()
    def act(self, obs, greedy: bool):
        q = self.net(torch.as_tensor(np.asarray(obs), device=self.device)).float().cpu().numpy()  # [N, A]
        explore = np.random.random(len(q)) < (0.0 if greedy else self.epsilon)
        return np.where(explore, np.random.randint(q.shape[1], size=len(q)), q.argmax(1)).astype(np.int64), q


def make_agent(checkpoint: dict, device: torch.device) -> QAgent:
    """Rebuild the trained Q-network from a checkpoint dict (see common/checkpoint.py)."""
    state = checkpoint["model"]
    net = QNetwork(n_actions=state["advantage.2.weight"].shape[0], frame_stack=state["network.0.weight"].shape[1]).to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    net.load_state_dict(state)
    return QAgent(net, device)


def check_args(args: Args) -> Args:
    """Bad values stop with one line; a replay too small for the budget's first updates grows (with a note)."""
    require(args, positive=("buffer_size", "batch_size", "train_frequency", "target_network_frequency", "n_step",
                            "frame_stack", "learning_rate", "max_grad_norm"),
            at_least_0=("learning_starts", "exploration_fraction", "prioritized_replay_alpha", "prioritized_replay_eps"),
            unit=("gamma", "start_e", "end_e", "prioritized_replay_beta"))  # fmt: skip
    starts = max(args.learning_starts, args.num_envs * (args.n_step + 1))  # each env has a full n-step window
    size = max(args.buffer_size, args.num_envs * (max(starts // args.num_envs, args.n_step + args.frame_stack) + 1))
    args = at_least(args, "the first updates need it", learning_starts=starts, buffer_size=size)
    check_free_memory(args, "buffer_size", replay_bytes(args.buffer_size, args.num_envs), 84 * 84 + 3 + 32)  # 32: sum tree
    return args


def main(args: Args) -> Path:
    run = Run(args, __file__, check=check_args)  # BOILERPLATE: --resume, flag checks, run folder, TensorBoard, W&B
    args, global_step = run.args, run.global_step
    num_iterations = args.total_timesteps // args.num_envs
    replay_path = run.dir / f"{args.exp_name}.replay"  # not *.pt: a run folder holds one checkpoint

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = pick_device(args.device)
    print(f"device: {device} | run folder: {run.dir}")

    envs = make_vector_env(args, args.num_envs)
    n_actions = envs.single_action_space.n
    layout = torch.channels_last if device.type == "cpu" else torch.preserve_format  # faster CPU convolutions
    q_network, target_network = (QNetwork(n_actions, args.frame_stack).to(device, memory_format=layout) for _ in range(2))
    target_network.load_state_dict(q_network.state_dict())
    optimizer = optim.Adam(q_network.parameters(), lr=args.learning_rate, eps=1.5e-4, fused=device.type in ("cpu", "cuda"))
    memory = ReplayMemory(args.buffer_size, args.num_envs, args.frame_stack, args.n_step, args.gamma,
                          args.prioritized_replay_alpha, args.prioritized_replay_eps)  # fmt: skip
    num_updates, update_due = 0, 0

    def extra_state(step: int) -> dict:
        if args.save_buffer:  # first, so that a checkpoint never names a replay file older than itself
            write_atomic(memory.state_dict(next_obs[:, -1], step), replay_path)
        return {"target_model": target_network.state_dict(), "num_updates": num_updates, "update_due": update_due,
                "replay": replay_path.name if args.save_buffer else None}  # fmt: skip

    run.attach(q_network, optimizer, extra_state)  # what checkpoints hold; on a resume: weights, optimizer and RNG states
    if run.checkpoint:
        target_network.load_state_dict(run.state["target_model"])
        num_updates, update_due = run.state["num_updates"], run.state["update_due"]
        replay = run.dir / str(run.state["replay"])
        state = torch.load(replay, weights_only=True, mmap=True) if run.state["replay"] and replay.exists() else {}
        if state.get("global_step") == global_step:
            memory.load_state_dict(state)
        elif run.state["replay"]:
            print(f"warning: {replay} is missing or from another step; the replay memory starts empty")
    # epsilon decays over the first run's steps; beta reaches 1 at the end, a longer resume stretches it (common/run.py)
    epsilon_at = run.schedule("epsilon", Linear(0, args.start_e, int(args.exploration_fraction * args.total_timesteps),
                                                args.end_e), stretch=False)  # fmt: skip
    beta_at = run.schedule("beta", Linear(0, args.prioritized_replay_beta, args.total_timesteps, 1.0), stretch=True)

    next_obs, _ = envs.reset(seed=args.seed + global_step)
    next_first = np.ones(args.num_envs, dtype=bool)  # next_obs starts a game
    with run.loop(num_iterations * args.num_envs):
        for iteration in range(global_step // args.num_envs + 1, num_iterations + 1):
            if run.stopping:
                break
            global_step += args.num_envs
            obs, first = next_obs, next_first

            # ALGO LOGIC: epsilon-greedy action (the network runs only when some env acts greedily)
            epsilon = epsilon_at(global_step)
            explore, actions = np.random.random(args.num_envs) < epsilon, np.random.randint(n_actions, size=args.num_envs)
            if not explore.all():
                with torch.no_grad():
                    greedy = q_network(torch.from_numpy(obs).to(device)).argmax(1).cpu().numpy()
                actions = np.where(explore, actions, greedy)

            next_obs, reward, terminations, truncations, infos = envs.step(actions)
            games = run.episodes(global_step, reward, terminations, truncations, infos["lives"])
            # a life loss is `terminated` (no bootstrap); at game over (SameStep autoreset) next_obs starts the next game
            next_first = np.isin(np.arange(args.num_envs), [i for i, _, _ in games])
            final = infos["final_obs"][:, -1] if next_first.any() else None
            memory.add(obs[:, -1], actions, reward, terminations, truncations, first, next_first, final)

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
                if global_step % args.target_network_frequency < args.num_envs:  # hard copy, once per period
                    target_network.load_state_dict(q_network.state_dict())
            run.checkpoint_due(global_step)
    envs.close()
    return run.finish(global_step, device)


if __name__ == "__main__":
    main(tyro.cli(Args))
