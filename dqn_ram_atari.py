"""RAM-tap detector DQN: prioritized dueling Double DQN, n-step, on Breakout RAM features (docs/breakout_ram.md), tap head.
Papers: Sygnowski & Michalewski 2016 (DQN on Atari RAM), Delfosse et al. 2023 (OCAtari). Parent: dqn_per_dueling_atari.py.
Example: python dqn_ram_atari.py --total-timesteps 3000000
"""

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

from common.contract import EPSILON_EVAL, env_protocol
from common.envs import ProcessVectorEnv
from common.episodes import EpisodeStats
from common.ram_features import INTERCEPT, NUM_FEATURES, TAP, VERSION, RamFeatureObservation
from common.run import Linear, Run, RunArgs, at_least, require

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
    frame_stack: tyro.conf.Suppress[int] = 1
    """not a flag here: one step's features, no stack (the features carry the ball's and the paddle's velocities)"""

    # Algorithm
    total_timesteps: int = 3_000_000
    """total agent steps, summed over envs (frames = 4x)"""
    learning_rate: float = 1e-4
    """Adam learning rate (CleanRL dqn_atari); Adam eps 1.5e-4 as in Rainbow"""
    num_envs: int = 8
    """parallel games, stepped in turn in one child process; 8 batch the acting forward pass"""
    buffer_size: int = 1_000_000
    """replay memory capacity in transitions (DQN/Rainbow: 1M); 94 B each (94 MB: no memory check, no --save-buffer)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    target_network_frequency: int = 8_000
    """agent steps between hard target copies (Rainbow, Hessel et al. 2018 / Dopamine: 8000)"""
    batch_size: int = 64
    """transitions per gradient update (the MLP is cheap, so twice DQN's 32)"""
    start_e: float = 1.0
    """the starting epsilon for exploration"""
    end_e: float = 0.01
    """the final epsilon (Rainbow/Dopamine: 0.01); evaluation uses common.contract.EPSILON_EVAL (0.001)"""
    exploration_fraction: float = 0.08
    """fraction of the first run's total-timesteps for the linear epsilon decay (240k of 3M steps ~ Dopamine's 250k)"""
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
    aux_tap_coef: float = 0.1
    """weight of the auxiliary BCE loss "paddle hit within the next 8 agent steps" (0: off)"""
    shaping_coef: float = 0.0
    """potential-based shaping F = c(gamma*Phi(s') - Phi(s)), Phi = -|intercept offset| (Ng et al. 1999); 0: off"""


# Copied from ppo_atari.FireOnReset
class FireOnReset(gym.Wrapper):
    """Presses FIRE for one frame after each game reset, as AtariVectorEnv's use_fire_reset does; marks it as scripted."""

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            return self.reset(**kwargs)
        return obs, {**info, "scripted_fire": 1}


def ram_protocol(args) -> dict:
    """env_protocol plus this script's observation; refuses games other than Breakout, whose RAM map this reads."""
    p = env_protocol(args)
    if p["game"] != "breakout":
        sys.exit(f"error: --env-id {args.env_id!r}: dqn_ram_atari.py reads Breakout's RAM only; try ALE/Breakout-v5")
    return {**p, "observation": f"{VERSION} ({NUM_FEATURES} float32)"}


class NoopStart(gym.Wrapper):
    """AtariPreprocessing's NOOP start for a frameskip-4 env: 1..noop_max raw NOOP frames after each reset (ALE calls)."""

    def __init__(self, env: gym.Env, noop_max: int):
        super().__init__(env)
        self.noop_max = noop_max

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for _ in range(self.unwrapped.np_random.integers(1, self.noop_max + 1) if self.noop_max > 0 else 0):
            self.unwrapped.ale.act(0)  # a Breakout game cannot end before its first serve
        return obs, info


def make_env(args, seed: int, idx: int = 0, capture_video: bool = False, run_dir: Optional[str] = None):
    """A gymnasium env with ppo_atari's protocol (full games, raw rewards) observing RAM features: no screen work at all."""

    def thunk():
        p = ram_protocol(args)
        env = gym.make(args.env_id, obs_type="ram", frameskip=4, repeat_action_probability=p["repeat_action_probability"],
                       full_action_space=p["full_action_space"], max_num_frames_per_episode=p["max_num_frames_per_episode"],
                       render_mode="rgb_array" if capture_video else None)  # fmt: skip
        if capture_video and idx == 0:
            env = gym.wrappers.RecordVideo(env, f"{run_dir}/videos", episode_trigger=lambda e: e == 0, disable_logger=True)
        if args.fire_reset:
            env = FireOnReset(env)  # here one agent step of FIRE: 4 frames
        env = RamFeatureObservation(NoopStart(env, args.noop_max))
        env.action_space.seed(seed)
        return env

    return thunk


def make_vector_env(args, num_envs: int):
    """make_env games in one child process, with AtariVectorEnv's semantics (common/envs.py): ale-py's has no RAM."""
    return ProcessVectorEnv(make_env, args, num_envs)


# Copied from ppo_atari.pick_device
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


TERM, TRUNC, FINAL = 1, 2, 8  # flag bits: terminated, truncated, a game's final obs
TAP_HORIZON = 8  # k of the auxiliary tap target: a paddle hit within the next k agent steps (docs/breakout_ram.md)


class ReplayMemory:
    """Prioritized replay of feature vectors (88 B each). Env e owns the circular slots [e*L, (e+1)*L); slot t holds s_t,
    a_t, the learning reward and flags; a game's final obs takes one more (FINAL) slot. A slot is sampled (priority > 0)
    from when the next max(n_step, k) slots of its env (its n-step window and tap target) are written until overwritten."""

    def __init__(self, buffer_size, num_envs, obs_dim, n_step, gamma, alpha, eps, tap_horizon=TAP_HORIZON):
        self.L, self.num_envs, self.n, self.k, self.gamma = buffer_size // num_envs, num_envs, n_step, tap_horizon, gamma
        self.alpha, self.eps, self.max_priority, self.delay = alpha, eps, 1.0, max(n_step, tap_horizon)
        capacity = self.L * num_envs
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions, self.flags = np.zeros(capacity, dtype=np.uint8), np.zeros(capacity, dtype=np.uint8)
        self.rewards = np.zeros(capacity, dtype=np.float32)  # sign-clipped (+ shaping): learning never sees raw rewards
        self.written, self.tree = np.zeros(num_envs, dtype=np.int64), SumTree(capacity)  # slots ever written, per env
        self.nbytes = sum(a.nbytes for a in (self.obs, self.actions, self.flags, self.rewards, self.tree.nodes))

    # Copied from dqn_per_dueling_atari.ReplayMemory.__len__
    def __len__(self) -> int:
        return int(np.minimum(self.written, self.L).sum())

    def _write(self, env, obs, actions, rewards, flags) -> None:
        w, base = self.written[env], env * self.L
        slot = base + w % self.L
        self.obs[slot], self.actions[slot], self.rewards[slot], self.flags[slot] = obs, actions, rewards, flags
        self.written[env] += 1
        ready = base + (w - self.delay) % self.L  # its n-step window and tap target are now written: max priority (PER)
        ready = ready[(w >= self.delay) & (self.flags[ready] & FINAL == 0)]
        values = np.concatenate([np.zeros(len(slot)), np.full(len(ready), self.max_priority**self.alpha)])
        self.tree.update(np.concatenate([slot, ready]), values)

    def add(self, obs, actions, rewards, terms, truncs, game_over, final_obs) -> None:
        """One vector step: obs [N, D] are s_t, rewards the learning rewards; final_obs those of infos["final_obs"]."""
        flags = terms * TERM | truncs * TRUNC
        self._write(np.arange(self.num_envs), obs, actions, rewards, flags.astype(np.uint8))
        if game_over.any():
            self._write(np.flatnonzero(game_over), final_obs[game_over], 0, 0, FINAL)

    def transitions(self, idx):
        """(obs, actions, n-step returns, discounts, bootstrap obs, tap targets) of the transitions at slots idx [B]."""
        base, t = idx // self.L * self.L, idx % self.L
        win = base[:, None] + (t[:, None] + np.arange(self.n)) % self.L  # [B, n]
        flags = self.flags[win]
        returns, steps, discounts = nstep_targets(self.rewards[win], flags & TERM > 0, flags & TRUNC > 0, self.gamma)
        next_obs = self.obs[base + (t + steps) % self.L]
        # tap target (common/ram_features.py): tap_now in one of s_{t+1..t+k}, up to and including the game's FINAL slot
        ahead = base[:, None] + (t[:, None] + np.arange(1, self.k + 1)) % self.L  # [B, k]
        same_game = np.cumsum(self.flags[ahead] & FINAL > 0, axis=1) - (self.flags[ahead] & FINAL > 0) == 0  # [B, k]
        taps = (same_game & (self.obs[ahead, TAP] > 0.5)).any(1).astype(np.float32)
        return self.obs[idx], self.actions[idx].astype(np.int64), returns, discounts, next_obs, taps

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


class QNetwork(nn.Module):
    """Dueling MLP on RAM features (common/ram_features.py): in -> 256 -> 256 (ReLU), V and A heads, an auxiliary tap head."""

    def __init__(self, n_actions: int, obs_dim: int):
        super().__init__()
        self.network = nn.Sequential(nn.Linear(obs_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.value, self.advantage, self.tap = nn.Linear(256, 1), nn.Linear(256, n_actions), nn.Linear(256, 1)

    def forward(self, x):
        """(Q-values [B, A], tap logits [B])."""
        hidden = self.network(x)  # [B, 256]
        if hidden.requires_grad:  # two streams' gradients enter the trunk: rescale by 1/sqrt(2) (Wang et al. 2016)
            hidden.register_hook(lambda grad: grad / np.sqrt(2))
        value, advantage = self.value(hidden), self.advantage(hidden)  # [B, 1], [B, A]
        return value + advantage - advantage.mean(1, keepdim=True), self.tap(hidden).squeeze(1)


class QAgent:
    """The evaluation side of the contract (common/contract.py): scores are Q-values, epsilon-greedy unless greedy."""

    score_kind = "q_values"

    def __init__(self, net: QNetwork, device: torch.device):
        self.net, self.device, self.epsilon = net.eval(), device, EPSILON_EVAL

    def reset(self, num_envs: int) -> None:
        """The env keeps the feature history: no per-env state here."""

    @torch.no_grad()
    def act(self, obs, greedy: bool):
        q = self.net(torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device))[0].float().cpu().numpy()  # [N, A]
        explore = np.random.random(len(q)) < (0.0 if greedy else self.epsilon)
        return np.where(explore, np.random.randint(q.shape[1], size=len(q)), q.argmax(1)).astype(np.int64), q


def make_agent(checkpoint: dict, device: torch.device) -> QAgent:
    """Rebuild the trained Q-network from a checkpoint dict (see common/checkpoint.py)."""
    state = checkpoint["model"]
    net = QNetwork(n_actions=state["advantage.weight"].shape[0], obs_dim=state["network.0.weight"].shape[1]).to(device)
    net.load_state_dict(state)
    return QAgent(net, device)


def check_args(args: Args) -> Args:
    """Bad values stop with one line; a replay too small for the budget's first updates grows (with a note)."""
    require(args, positive=("buffer_size", "batch_size", "train_frequency", "target_network_frequency", "n_step",
                            "learning_rate", "max_grad_norm"),
            at_least_0=("learning_starts", "exploration_fraction", "prioritized_replay_alpha", "prioritized_replay_eps",
                        "aux_tap_coef", "shaping_coef"),
            unit=("gamma", "start_e", "end_e", "prioritized_replay_beta"))  # fmt: skip
    starts = max(args.learning_starts, args.num_envs * (max(args.n_step, TAP_HORIZON) + 1))  # full windows: n-step, tap
    size = max(args.buffer_size, args.num_envs * (starts // args.num_envs + 1))
    args = at_least(args, "the first updates need it", learning_starts=starts, buffer_size=size)
    return args


def main(args: Args) -> Path:
    run = Run(args, __file__, check=check_args, protocol=ram_protocol)  # BOILERPLATE: --resume, checks, folder, loggers
    args, global_step = run.args, run.global_step
    num_iterations = args.total_timesteps // args.num_envs

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = pick_device(args.device)
    print(f"device: {device} | run folder: {run.dir}")

    envs = make_vector_env(args, args.num_envs)
    if device.type == "cpu":
        torch.set_num_threads(1)  # a tiny MLP runs fastest on one thread; the games' process has the other core
    n_actions = envs.single_action_space.n
    q_network, target_network = (QNetwork(n_actions, NUM_FEATURES).to(device) for _ in range(2))
    target_network.load_state_dict(q_network.state_dict())
    optimizer = optim.Adam(q_network.parameters(), lr=args.learning_rate, eps=1.5e-4, fused=device.type in ("cpu", "cuda"))
    memory = ReplayMemory(args.buffer_size, args.num_envs, NUM_FEATURES, args.n_step, args.gamma,
                          args.prioritized_replay_alpha, args.prioritized_replay_eps)  # fmt: skip
    num_updates, update_due = 0, 0

    def extra_state(step: int) -> dict:
        return {"target_model": target_network.state_dict(), "num_updates": num_updates, "update_due": update_due}

    run.attach(q_network, optimizer, extra_state)  # what checkpoints hold; on a resume: weights, optimizer and RNG states
    if run.checkpoint:
        target_network.load_state_dict(run.state["target_model"])
        num_updates, update_due = run.state["num_updates"], run.state["update_due"]
        print("the replay memory starts empty (94 MB at 1M: rebuilt in minutes, so not saved)")
    # epsilon decays over the first run's steps; beta reaches 1 at the end, a longer resume stretches it (common/run.py)
    epsilon_at = run.schedule("epsilon", Linear(0, args.start_e, int(args.exploration_fraction * args.total_timesteps),
                                                args.end_e), stretch=False)  # fmt: skip
    beta_at = run.schedule("beta", Linear(0, args.prioritized_replay_beta, args.total_timesteps, 1.0), stretch=True)

    shaping_stats = EpisodeStats(args.num_envs)  # the shaping reward, logged apart from the score
    next_obs, _ = envs.reset(seed=args.seed + global_step)
    with run.loop(num_iterations * args.num_envs):
        for iteration in range(global_step // args.num_envs + 1, num_iterations + 1):
            if run.stopping:
                break
            global_step += args.num_envs
            obs = next_obs

            # ALGO LOGIC: epsilon-greedy action (the network runs only when some env acts greedily)
            epsilon = epsilon_at(global_step)
            explore, actions = np.random.random(args.num_envs) < epsilon, np.random.randint(n_actions, size=args.num_envs)
            if not explore.all():
                with torch.no_grad():
                    greedy = q_network(torch.from_numpy(obs).to(device))[0].argmax(1).cpu().numpy()
                actions = np.where(explore, actions, greedy)

            envs.step_async(actions)  # the games step in their process while this one learns (common/envs.py)

            # ALGO LOGIC: one update of batch_size per train_frequency agent steps, from the memory so far
            if len(memory) > args.learning_starts:
                update_due += args.num_envs
                beta = beta_at(global_step)
                while update_due >= args.train_frequency:
                    update_due -= args.train_frequency
                    idx, batch, weights, priorities = memory.sample(args.batch_size, beta)
                    batch = (torch.from_numpy(x).to(device) for x in batch)
                    b_obs, b_actions, b_returns, b_discounts, b_next_obs, b_taps = batch
                    with torch.no_grad():
                        next_online, next_target = q_network(b_next_obs)[0], target_network(b_next_obs)[0]  # [B, A]
                        td_target = double_dqn_target(next_online, next_target, b_returns, b_discounts)
                    q, tap_logits = q_network(b_obs)  # [B, A], [B]
                    old_val = q.gather(1, b_actions[:, None]).squeeze(1)  # [B]
                    huber = F.smooth_l1_loss(old_val, td_target, reduction="none")  # [B]
                    loss = (torch.from_numpy(weights).to(device) * huber).mean()  # importance-weighted (PER)
                    tap_loss = F.binary_cross_entropy_with_logits(tap_logits, b_taps)  # auxiliary: not IS-weighted
                    optimizer.zero_grad(set_to_none=True)
                    (loss + args.aux_tap_coef * tap_loss).backward()
                    nn.utils.clip_grad_norm_(q_network.parameters(), args.max_grad_norm)
                    optimizer.step()
                    memory.update_priorities(idx, (td_target - old_val).detach().abs().cpu().numpy())
                    num_updates += 1
                    if num_updates % 100 == 0:  # the only host syncs of the loss
                        run.log(global_step, {"losses/td_loss": loss.item(), "losses/q_values": old_val.mean().item(),
                                              "losses/tap_bce": tap_loss.item(), "charts/tap_rate": b_taps.mean().item(),
                                              "charts/mean_priority": priorities.mean(), "charts/epsilon": epsilon,
                                              "charts/beta": beta})  # fmt: skip
                if global_step % args.target_network_frequency < args.num_envs:  # hard copy, once per period
                    target_network.load_state_dict(q_network.state_dict())

            next_obs, reward, terminations, truncations, infos = envs.step_wait()
            games = run.episodes(global_step, reward, terminations, truncations, infos["lives"])
            game_over = np.isin(np.arange(args.num_envs), [i for i, _, _ in games])
            learn_reward = np.sign(reward)  # + F = c(gamma*Phi(s') - Phi(s)), Phi(terminal) = 0 (Ng, Harada & Russell 1999)
            if args.shaping_coef:  # Phi = -|intercept offset|; the s' of a finished game is its final obs
                after = np.where(game_over[:, None], infos["final_obs"], next_obs)[:, INTERCEPT]
                shaping = args.shaping_coef * (np.abs(obs[:, INTERCEPT]) - args.gamma * ~terminations * np.abs(after))
                learn_reward = learn_reward + shaping
                for _, shaping_return, _ in shaping_stats.step(shaping, terminations, truncations, infos["lives"])[0]:
                    run.writer.add_scalar("charts/shaping_return", shaping_return, global_step)
            # a life loss is `terminated` (no bootstrap); at game over (SameStep autoreset) next_obs starts the next game
            memory.add(obs, actions, learn_reward, terminations, truncations, game_over, infos["final_obs"])
            run.checkpoint_due(global_step)
    envs.close()
    return run.finish(global_step, device)


if __name__ == "__main__":
    main(tyro.cli(Args))
