"""PPO on Atari (Breakout by default): one file, read top to bottom. Plumbing lives in common/run.py.
Paper: Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (arXiv:1707.06347); Atari details from
Huang et al. 2022, "The 37 Implementation Details of PPO" (ICLR blog track). Parent: CleanRL's ppo_atari.py.
Example: python ppo_atari.py --total-timesteps 200000
"""

import os
import random
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import tyro
from torch.distributions.categorical import Categorical

from common.contract import env_protocol
from common.run import Linear, Run, RunArgs, note, require

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
    total_timesteps: int = 10_000_000
    """total agent steps, summed over envs (frames = 4x)"""
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: int = 8
    """the number of parallel game environments"""
    num_steps: int = 128
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """toggle linear learning-rate annealing to 0 over the run"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: int = 4
    """the number of mini-batches per epoch"""
    update_epochs: int = 4
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """toggle advantage normalization"""
    clip_coef: float = 0.1
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """toggle the clipped value loss of the PPO paper's code"""
    ent_coef: float = 0.01
    """coefficient of the entropy bonus"""
    vf_coef: float = 0.5
    """coefficient of the value function loss"""
    max_grad_norm: float = 0.5
    """the maximum norm for gradient clipping"""
    target_kl: Optional[float] = None
    """stop an update's epochs early when the approximate KL exceeds this (None: never)"""


class FireOnReset(gym.Wrapper):
    """Presses FIRE for one frame after each game reset, as AtariVectorEnv's use_fire_reset does; marks it as scripted."""

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            return self.reset(**kwargs)
        return obs, {**info, "scripted_fire": 1}


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


def pick_device(name: str) -> torch.device:
    """cuda -> mps -> cpu for "auto"; a clear error when the asked-for device is missing."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[name]:
        sys.exit(f"error: --device {name} is not available on this machine (try --device auto)")
    return torch.device(name)


def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


def compute_gae(rewards, values, dones, next_value, next_done, gamma, gae_lambda):
    """GAE(lambda) over a [T, N] rollout; dones[t] = 1 when obs[t] starts a new episode. Returns (advantages, returns)."""
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    lastgaelam = 0
    for t in reversed(range(num_steps)):
        if t == num_steps - 1:
            nextnonterminal, nextvalues = 1.0 - next_done, next_value
        else:
            nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
        delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
        advantages[t] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
    return advantages, advantages + values


class Agent(nn.Module):
    """Nature-CNN trunk with an actor (logits) and a critic (value) head; input uint8 [B, 4, 84, 84]."""

    def __init__(self, n_actions: int, frame_stack: int = 4):
        super().__init__()
        self.network = nn.Sequential(layer_init(nn.Conv2d(frame_stack, 32, 8, stride=4)), nn.ReLU(),
                                     layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
                                     layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(), nn.Flatten(),
                                     layer_init(nn.Linear(64 * 7 * 7, 512)), nn.ReLU())  # fmt: skip
        self.actor = layer_init(nn.Linear(512, n_actions), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1)

    def trunk(self, x):
        if x.device.type == "cpu":  # channels_last, the CPU weights' layout: permuted as uint8, 4x fewer bytes than float
            x = x.contiguous(memory_format=torch.channels_last)
        return self.network(x.float() / 255.0)

    def get_value(self, x):
        return self.critic(self.trunk(x))

    def get_action_and_value(self, x, action=None):
        hidden = self.trunk(x)
        probs = Categorical(logits=self.actor(hidden))
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(hidden)


class PolicyAgent:
    """The evaluation side of the contract (common/contract.py): scores are the policy's logits."""

    score_kind = "logits"

    def __init__(self, net: Agent, device: torch.device):
        self.net, self.device = net.eval(), device

    def reset(self, num_envs: int) -> None:
        """Feed-forward policy: no per-env state."""

    @torch.no_grad()
    def act(self, obs, greedy: bool):
        logits = self.net.actor(self.net.trunk(torch.as_tensor(np.asarray(obs), device=self.device)))  # [N, A]
        actions = logits.argmax(1) if greedy else Categorical(logits=logits).sample()
        return actions.cpu().numpy(), logits.float().cpu().numpy()


def make_agent(checkpoint: dict, device: torch.device) -> PolicyAgent:
    """Rebuild the trained policy from a checkpoint dict (see common/checkpoint.py)."""
    state = checkpoint["model"]
    net = Agent(n_actions=state["actor.weight"].shape[0], frame_stack=state["network.0.weight"].shape[1]).to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    net.load_state_dict(state)
    return PolicyAgent(net, device)


def check_args(args: Args) -> Args:
    """Bad values stop with one line; a budget below one rollout shortens the rollout (with a note)."""
    require(args, positive=("num_steps", "num_minibatches", "update_epochs", "frame_stack", "learning_rate"))
    if args.total_timesteps < args.num_envs * args.num_steps:
        note(f"--num-steps {args.num_steps} -> {args.total_timesteps // args.num_envs}: the budget is one rollout")
        args = replace(args, num_steps=args.total_timesteps // args.num_envs)
    return args


def bootstrap_truncated(rewards, terminations, truncations, final_values, gamma: float):
    """Rewards [N] + gamma*V(final obs) where the frame cap cut a game: no end of the MDP (Pardo et al. 2018)."""
    return rewards + gamma * final_values * torch.as_tensor(truncations & ~terminations, device=rewards.device)


def main(args: Args) -> Path:
    run = Run(args, __file__, check=check_args)  # BOILERPLATE: --resume, flag checks, run folder, TensorBoard, W&B
    args, global_step = run.args, run.global_step
    batch_size = args.num_envs * args.num_steps
    minibatch_size = -(-batch_size // args.num_minibatches)  # ceil: a batch that does not divide has a short last one
    num_iterations = args.total_timesteps // batch_size

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = pick_device(args.device)
    print(f"device: {device} | run folder: {run.dir}")

    envs = make_vector_env(args, args.num_envs)
    obs_shape = envs.single_observation_space.shape
    agent = Agent(envs.single_action_space.n, args.frame_stack).to(device)
    if device.type == "cpu":
        agent = agent.to(memory_format=torch.channels_last)
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    run.attach(agent, optimizer)  # what checkpoints hold; on a resume: weights, optimizer and RNG states
    # linear to 0 at the last iteration; a resume with a new --total-timesteps stretches the rest (common/run.py)
    lr_at = run.schedule("learning_rate", Linear(0, args.learning_rate, num_iterations * batch_size, 0.0), stretch=True)

    # ALGO LOGIC: rollout storage, uint8 observations (4x smaller than float32)
    obs = torch.zeros((args.num_steps, args.num_envs) + obs_shape, dtype=torch.uint8, device=device)
    actions = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long, device=device)
    logprobs, rewards, dones, values = (torch.zeros((args.num_steps, args.num_envs), device=device) for _ in range(4))

    next_obs = torch.from_numpy(envs.reset(seed=args.seed + global_step)[0]).to(device)
    next_done = torch.zeros(args.num_envs, device=device)
    # OpenMP workers spinning between the rollout's small forwards take the env's C++ threads' cores: unless they sleep
    # (OMP_WAIT_POLICY=PASSIVE, read when torch loads), the rollout runs on one torch thread (docs/benchmarks.md)
    learn_threads = torch.get_num_threads()
    spinning = device.type == "cpu" and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"
    with run.loop(num_iterations * batch_size):
        for iteration in range(global_step // batch_size + 1, num_iterations + 1):
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = lr_at((iteration - 1) * batch_size)

            torch.set_num_threads(1 if spinning else learn_threads)
            for step in range(args.num_steps):
                if run.stopping:
                    break
                global_step += args.num_envs
                obs[step] = next_obs
                dones[step] = next_done
                with torch.no_grad():
                    action, logprob, _, value = agent.get_action_and_value(next_obs)
                values[step] = value.flatten()
                actions[step] = action
                logprobs[step] = logprob

                next_obs_np, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
                rewards[step] = torch.from_numpy(np.sign(reward)).to(device)  # clipped for learning only
                if truncations.any():  # the frame cap: bootstrap from the cut game's final observation
                    with torch.no_grad():
                        final_values = agent.get_value(torch.from_numpy(infos["final_obs"]).to(device)).flatten()
                    rewards[step] = bootstrap_truncated(rewards[step], terminations, truncations, final_values, args.gamma)
                next_done = torch.from_numpy(terminations | truncations).to(device, torch.float32)
                next_obs = torch.from_numpy(next_obs_np).to(device)
                run.episodes(global_step, reward, terminations, truncations, infos["lives"])
            torch.set_num_threads(learn_threads)
            if run.stopping:
                global_step = (iteration - 1) * batch_size  # the unfinished rollout is dropped
                break

            # ALGO LOGIC: advantages and returns
            with torch.no_grad():
                next_value = agent.get_value(next_obs).reshape(1, -1)
                advantages, returns = compute_gae(rewards, values, dones, next_value, next_done, args.gamma, args.gae_lambda)

            b_obs = obs.reshape((-1,) + obs_shape)
            b_logprobs, b_actions = logprobs.reshape(-1), actions.reshape(-1)
            b_advantages, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)

            # ALGO LOGIC: optimize the policy and value network
            clipfracs = []
            for epoch in range(args.update_epochs):
                b_inds = torch.randperm(batch_size, device=device)
                for start in range(0, batch_size, minibatch_size):
                    mb_inds = b_inds[start : start + minibatch_size]
                    _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb_inds], b_actions[mb_inds])
                    logratio = newlogprob - b_logprobs[mb_inds]
                    ratio = logratio.exp()
                    with torch.no_grad():
                        # http://joschu.net/blog/kl-approx.html
                        old_approx_kl = (-logratio).mean()
                        approx_kl = ((ratio - 1) - logratio).mean()
                        clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean())

                    mb_advantages = b_advantages[mb_inds]
                    if args.norm_adv:
                        mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                    pg_loss1 = -mb_advantages * ratio
                    pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                    pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                    newvalue = newvalue.view(-1)
                    if args.clip_vloss:
                        v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                        v_delta = torch.clamp(newvalue - b_values[mb_inds], -args.clip_coef, args.clip_coef)
                        v_clipped = b_values[mb_inds] + v_delta
                        v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                        v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                    else:
                        v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()

                    entropy_loss = entropy.mean()
                    loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    optimizer.step()
                if args.target_kl is not None and approx_kl.item() > args.target_kl:
                    break

            y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
            explained_var = np.nan if np.var(y_true) == 0 else 1 - np.var(y_true - y_pred) / np.var(y_true)
            run.log(global_step, {"charts/learning_rate": optimizer.param_groups[0]["lr"], "losses/value_loss": v_loss.item(),
                                  "losses/policy_loss": pg_loss.item(), "losses/entropy": entropy_loss.item(),
                                  "losses/old_approx_kl": old_approx_kl.item(), "losses/approx_kl": approx_kl.item(),
                                  "losses/clipfrac": torch.stack(clipfracs).mean().item(),
                                  "losses/explained_variance": explained_var})  # fmt: skip
            run.checkpoint_due(global_step)
    envs.close()
    return run.finish(global_step, device)


if __name__ == "__main__":
    main(tyro.cli(Args))
