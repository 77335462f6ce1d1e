"""Option-critic on Atari (Breakout by default): synchronous n-step A2OC, one file. Parent: ppo_atari.py (diff them). Papers:
Bacon, Harb & Precup 2017, "The Option-Critic Architecture" (arXiv:1609.05140); Harb et al. 2018, "When Waiting is Not an
Option: Learning Options with a Deliberation Cost" (arXiv:1709.04571, A2OC). Code: github.com/jeanharb/option_critic and
jeanharb/a2oc_delib; CleanRL's cleanrl/oc/a2oc_atari_envpool.py. A2OC's update, not PPO's epochs: a sample costs the acting
forward plus one forward and one backward (PPO: 4 epochs of both); measured on the shared 2-core CPU VM, one session: 222 and
347 SPS (before / after) vs ppo_atari.py's 129 (docs/results/options_atari.md).
Example: python options_atari.py --total-timesteps 2000000
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
NEAR_EVENT = 4  # options/switch_near_life_loss: a switch at most this many agent steps into a life


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
    learning_rate: float = 7e-4
    """the learning rate of RMSprop (alpha 0.99, eps 1e-5), A2C's in ikostrikov/pytorch-a2c-ppo-acktr-gail; A2OC: 7e-4"""
    num_envs: int = 16
    """the number of parallel game environments (A2OC's 16 threads)"""
    num_steps: int = 5
    """steps per env per update: the n of the n-step returns (A3C's t_max 5)"""
    anneal_lr: bool = True
    """toggle linear learning-rate annealing to 0 over the run"""
    gamma: float = 0.99
    """the discount factor gamma"""
    ent_coef: float = 0.01
    """coefficient of the intra-option entropy bonus"""
    vf_coef: float = 0.5
    """coefficient of the Q_Omega (critic) loss"""
    max_grad_norm: float = 0.5
    """the maximum norm for gradient clipping"""
    log_interval: int = 16
    """updates between TensorBoard logs: losses of the last update, options/... over the steps since the last log"""

    # Options
    num_options: int = 4
    """number of options (each: a termination head and an intra-option policy)"""
    termination_margin: float = 0.01
    """xi, added to the termination advantage Q(s', w) - V(s') (Bacon et al.'s termination_reg 0.01): > 0 lengthens options"""
    option_start_e: float = 1.0
    """the starting epsilon of the epsilon-greedy policy over options"""
    option_end_e: float = 0.1
    """the final epsilon over options (A2OC: 0.1); also the stochastic evaluation's"""
    option_exploration_fraction: float = 0.1
    """fraction of the first run's total-timesteps for the linear decay of the option epsilon"""
    deliberation_cost: float = 0.0
    """eta: deliberation cost of a termination, in the returns, U(s', w) and the termination advantage (Harb et al. 2018)"""


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


# Copied from ppo_atari.layer_init
def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


def option_returns(rewards, switches, dones, next_value, next_done, gamma: float, cost: float):
    """Critic targets over a [T, N] rollout, A2OC's n-step returns: G_t = r_t + gamma (G_{t+1} - cost * switches[t+1]), cut
    where obs t+1 starts a life (dones[t+1], next_done); G_T = next_value = U(s_T, w_{T-1}), with the cost in expectation."""
    returns, ret, last = torch.zeros_like(rewards), next_value, torch.zeros_like(next_done)[None]
    alive, switched = 1.0 - torch.cat([dones[1:], next_done[None]]), torch.cat([switches[1:], last])  # [T, N]
    for t in reversed(range(len(rewards))):
        ret = returns[t] = rewards[t] + gamma * alive[t] * (ret - cost * switched[t])
    return returns


def pick(x, option):
    """x[..., option]: each row's entry for its option; x [..., K], option long [...]."""
    return x.gather(-1, option.unsqueeze(-1)).squeeze(-1)


def option_value(q, epsilon: float):
    """V(s) = sum_w pi_Omega(w|s) Q_Omega(s, w), pi_Omega epsilon-greedy: [..., K] -> [...]. Not the max (Bacon et al.'s
    code): with the expectation, Q(s', w') of the sampled next option w' is an unbiased sample of U(s', w)."""
    return (1.0 - epsilon) * q.max(-1).values + epsilon * q.mean(-1)


def upon_arrival(q, beta, option, epsilon: float, cost: float = 0.0):
    """U(s', w) = (1 - beta_w(s')) Q(s', w) + beta_w(s') (V(s') - cost) (Bacon et al. 2017; cost: Harb et al. 2018)."""
    b = pick(beta, option)
    return (1.0 - b) * pick(q, option) + b * (option_value(q, epsilon) - cost)


def termination_loss(q_next, beta_next, option, epsilon: float, margin: float, mask):
    """Termination gradient (Bacon et al. 2017, theorem 2) as a loss at s' = s_{t+1}, not s_t (a popular port's bug):
    beta_w(s') (Q(s', w) - V(s') + margin), advantage fixed. q_next, beta_next [T, N, K]; option, mask (0: s' new game)."""
    advantage = pick(q_next, option) - option_value(q_next, epsilon) + margin
    return (pick(beta_next, option) * advantage.detach() * mask).mean()


def select_options(q, beta, prev_option, first, epsilon: float):
    """Call-and-return: the previous option ends with probability beta; there and where a game starts (first [N]) an epsilon-
    greedy choice over Q_Omega picks the next. q, beta [N, K]; prev_option [N]. Returns options, terminated (by beta) [N]."""
    n, k = q.shape
    terminated = (torch.rand(n, device=q.device) < pick(beta, prev_option)) & ~first
    choice = torch.where(torch.rand(n, device=q.device) < epsilon, torch.randint(k, (n,), device=q.device), q.argmax(1))
    return torch.where(terminated | first, choice, prev_option), terminated


class Agent(nn.Module):
    """Nature-CNN trunk, heads: Q_Omega, termination (sigmoid), intra-option policies; input uint8 [B, 4, 84, 84]."""

    def __init__(self, n_actions: int, frame_stack: int = 4, num_options: int = 4):
        super().__init__()
        self.network = nn.Sequential(layer_init(nn.Conv2d(frame_stack, 32, 8, stride=4)), nn.ReLU(),
                                     layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
                                     layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(), nn.Flatten(),
                                     layer_init(nn.Linear(64 * 7 * 7, 512)), nn.ReLU())  # fmt: skip
        self.actor = layer_init(nn.Linear(512, num_options * n_actions), std=0.01)
        self.critic = layer_init(nn.Linear(512, num_options), std=1)
        self.termination = layer_init(nn.Linear(512, num_options), std=0.01)

    # Copied from ppo_atari.Agent.trunk
    def trunk(self, x):
        x = x.float() / 255.0
        if x.device.type == "cpu":  # channels_last: the layout of the CPU weights
            x = x.contiguous(memory_format=torch.channels_last)
        return self.network(x)

    def heads(self, hidden):
        """Q_Omega [B, K], beta [B, K] in (0, 1), intra-option logits [B, K, A]."""
        logits = self.actor(hidden).view(len(hidden), self.critic.out_features, -1)
        return self.critic(hidden), torch.sigmoid(self.termination(hidden)), logits

    def get_action_and_option(self, x, option, first, epsilon: float, greedy: bool = False):
        """One call-and-return step (greedy: terminate where beta > 1/2, argmax action): option, terminated, action, logits."""
        q, beta, logits = self.heads(self.trunk(x))
        option, terminated = select_options(q, (beta > 0.5).float() if greedy else beta, option, first, epsilon)
        logits = logits[torch.arange(len(x), device=x.device), option]
        return option, terminated, logits.argmax(1) if greedy else Categorical(logits=logits).sample(), logits


class PolicyAgent:
    """The evaluation side of the contract (common/contract.py): scores are the current option's logits; `last_options`
    (int64 [N]): each env's option in the last act(). Stochastic: as in training at the final option epsilon; greedy:
    terminate where beta > 1/2, greedy option and action. Only a new game forces a fresh option, as in training."""

    score_kind = "logits"

    def __init__(self, net: Agent, device: torch.device, option_epsilon: float):
        self.net, self.device, self.option_epsilon = net.eval(), device, option_epsilon
        self.reset(1)

    def reset(self, num_envs: int) -> None:
        self.option = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.first, self.last_options = torch.ones(num_envs, dtype=torch.bool, device=self.device), None

    def reset_env(self, i: int) -> None:
        self.first[i] = True

    @torch.no_grad()
    def act(self, obs, greedy: bool):
        x = torch.as_tensor(np.asarray(obs), device=self.device)
        if len(x) != len(self.option):
            self.reset(len(x))
        epsilon = 0.0 if greedy else self.option_epsilon
        self.option, _, actions, logits = self.net.get_action_and_option(x, self.option, self.first, epsilon, greedy)
        self.first[:], self.last_options = False, self.option.cpu().numpy()
        return actions.cpu().numpy(), logits.float().cpu().numpy()


def make_agent(checkpoint: dict, device: torch.device) -> PolicyAgent:
    """Rebuild the trained policy from a checkpoint dict (see common/checkpoint.py)."""
    state, num_options = checkpoint["model"], checkpoint["model"]["critic.weight"].shape[0]
    net = Agent(n_actions=state["actor.weight"].shape[0] // num_options, frame_stack=state["network.0.weight"].shape[1],
                num_options=num_options).to(device)  # fmt: skip
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    net.load_state_dict(state)
    return PolicyAgent(net, device, checkpoint["args"].get("option_end_e", Args.option_end_e))


class OptionStats:
    """options/... diagnostics, step() once per vector step. A run is a stretch of one option id, cut where a life ends (as
    evaluate.py's per_life.csv); its length is a dwell time. A switch is an id change within a game (not a new game's first
    choice, nor a termination that picks the same option again). switch_near_life_loss: the share of switches at most
    NEAR_EVENT steps into a life; time_near_life_loss: the share of steps there (what switches at random would get)."""

    def __init__(self, num_envs: int, num_options: int):
        self.k, self.option, self.run = num_options, np.full(num_envs, -1), np.zeros(num_envs, dtype=np.int64)
        self.life_switches, self.since = np.zeros(num_envs, dtype=np.int64), np.full(num_envs, 1 << 30)
        self.window()

    def window(self) -> None:
        self.dwells, self.per_life, self.switches, self.near = [np.zeros((0, 2), dtype=np.int64)], [], 0, np.zeros(2)
        self.steps, self.selected, self.beta, self.entropy = (np.zeros(self.k) for _ in range(4))

    def step(self, options, chosen, life_start, game_start) -> None:
        """Tensors [N]: options acted under, chosen (picked now), life_start / game_start (this observation begins one)."""
        options, chosen, life_start, game_start = (np.asarray(x.cpu()) for x in (options, chosen, life_start, game_start))
        ended = ((options != self.option) | life_start) & (self.option >= 0)
        switch = (options != self.option) & (self.option >= 0) & ~game_start
        self.dwells.append(np.stack([self.option[ended], self.run[ended]], 1))
        self.per_life += self.life_switches[life_start].tolist()
        self.life_switches = np.where(life_start, 0, self.life_switches) + switch
        self.run, self.option, self.switches = np.where(ended, 1, self.run + 1), options.copy(), self.switches + switch.sum()
        np.add.at(self.steps, options, 1)
        np.add.at(self.selected, options[chosen], 1)
        self.since = np.where(life_start, 0, self.since + 1)
        self.near += [(switch & (self.since <= NEAR_EVENT)).sum(), (self.since <= NEAR_EVENT).sum()]

    def update(self, options, beta_next, entropy) -> None:
        """A rollout's beta_w(s_{t+1}) and intra-option entropy at s_t, of the option w acted under: [T, N] each."""
        for total, value in ((self.beta, beta_next), (self.entropy, entropy)):
            np.add.at(total, options.ravel(), value.ravel())

    def summary(self) -> dict[str, float]:
        """The window's scalars (none without data); starts the next window."""
        d, total = np.concatenate(self.dwells), self.steps.sum()
        out = {"options/max_time_share": self.steps.max() / total}  # the collapse detector: 1 = one option does it all
        for w, m in enumerate(self.steps):
            dw = d[d[:, 0] == w, 1]
            out |= {f"options/{w}/selections": self.selected[w], f"options/{w}/time_share": m / total}
            if m:
                out |= {f"options/{w}/termination_prob": self.beta[w] / m, f"options/{w}/entropy": self.entropy[w] / m}
            out |= {f"options/{w}/dwell_mean": dw.mean(), f"options/{w}/dwell_p90": np.quantile(dw, 0.9)} if len(dw) else {}
        out |= {"options/switches_per_life": np.mean(self.per_life)} if self.per_life else {}
        out["options/time_near_life_loss"] = self.near[1] / total
        out |= {"options/switch_near_life_loss": self.near[0] / self.switches} if self.switches else {}
        self.window()
        return out


def check_args(args: Args) -> Args:
    """Bad values stop with one line; a budget below one rollout shortens the rollout (with a note)."""
    require(args, positive=("num_steps", "frame_stack", "learning_rate", "num_options", "log_interval"),
            unit=("option_start_e", "option_end_e", "option_exploration_fraction"))  # fmt: skip
    if args.total_timesteps < args.num_envs * args.num_steps:
        note(f"--num-steps {args.num_steps} -> {args.total_timesteps // args.num_envs}: the budget is one rollout")
        args = replace(args, num_steps=args.total_timesteps // args.num_envs)
    return args


# Copied from ppo_atari.bootstrap_truncated
def bootstrap_truncated(rewards, terminations, truncations, final_values, gamma: float):
    """Rewards [N] + gamma*V(final obs) where the frame cap cut a game: no end of the MDP (Pardo et al. 2018)."""
    return rewards + gamma * final_values * torch.as_tensor(truncations & ~terminations, device=rewards.device)


def main(args: Args) -> Path:
    run = Run(args, __file__, check=check_args)  # BOILERPLATE: --resume, flag checks, run folder, TensorBoard, W&B
    args, global_step = run.args, run.global_step
    batch_size = args.num_envs * args.num_steps
    num_iterations = args.total_timesteps // batch_size

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = pick_device(args.device)
    print(f"device: {device} | run folder: {run.dir}")

    envs = make_vector_env(args, args.num_envs)
    obs_shape, n, k = envs.single_observation_space.shape, args.num_envs, args.num_options
    agent = Agent(envs.single_action_space.n, args.frame_stack, k).to(device)
    if device.type == "cpu":
        agent = agent.to(memory_format=torch.channels_last)
    optimizer = optim.RMSprop(agent.parameters(), lr=args.learning_rate, alpha=0.99, eps=1e-5)
    run.attach(agent, optimizer)  # what checkpoints hold; on a resume: weights, optimizer and RNG states
    # linear to 0 at the last iteration; a resume with a new --total-timesteps stretches the rest (common/run.py)
    lr_at = run.schedule("learning_rate", Linear(0, args.learning_rate, num_iterations * batch_size, 0.0), stretch=True)
    # the epsilon over options decays over the first run's steps, as the DQN scripts' epsilon (a resume keeps its steps)
    option_epsilon_at = run.schedule("option_epsilon", Linear(0, args.option_start_e, int(
        args.option_exploration_fraction * args.total_timesteps), args.option_end_e), stretch=False)  # fmt: skip

    # ALGO LOGIC: rollout storage, uint8 observations (4x smaller than float32)
    obs = torch.zeros((args.num_steps, n) + obs_shape, dtype=torch.uint8, device=device)
    actions, options = (torch.zeros((args.num_steps, n), dtype=torch.long, device=device) for _ in range(2))
    rewards, dones, firsts, switches = (torch.zeros((args.num_steps, n), device=device) for _ in range(4))

    next_obs = torch.from_numpy(envs.reset(seed=args.seed + global_step)[0]).to(device)
    next_done = torch.zeros(n, device=device)
    next_first = torch.ones(n, dtype=torch.bool, device=device)  # next_obs starts a game: a fresh option
    option, stats, shaped_return = torch.zeros(n, dtype=torch.long, device=device), OptionStats(n, k), np.zeros(n)
    with run.loop(num_iterations * batch_size):
        for iteration in range(global_step // batch_size + 1, num_iterations + 1):
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = lr_at((iteration - 1) * batch_size)

            for step in range(args.num_steps):
                if run.stopping:
                    break
                global_step += n
                obs[step] = next_obs
                dones[step] = next_done
                firsts[step] = next_first
                epsilon = option_epsilon_at(global_step)
                with torch.no_grad():
                    option, switched, action, _ = agent.get_action_and_option(next_obs, option, next_first, epsilon)
                options[step], switches[step], actions[step] = option, switched, action
                stats.step(option, switched | next_first, next_done > 0, next_first)  # next_done: a life was lost just before

                next_obs_np, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
                rewards[step] = torch.from_numpy(np.sign(reward)).to(device)  # clipped for learning only
                if truncations.any():  # the frame cap: bootstrap from the cut game's final observation
                    with torch.no_grad():
                        q_final, beta_final, _ = agent.heads(agent.trunk(torch.from_numpy(infos["final_obs"]).to(device)))
                        final_values = upon_arrival(q_final, beta_final, option, epsilon, args.deliberation_cost)
                    rewards[step] = bootstrap_truncated(rewards[step], terminations, truncations, final_values, args.gamma)
                next_done = torch.from_numpy(terminations | truncations).to(device, torch.float32)
                next_obs = torch.from_numpy(next_obs_np).to(device)
                games = [i for i, _, _ in run.episodes(global_step, reward, terminations, truncations, infos["lives"])]
                shaped_return += np.sign(reward) - args.deliberation_cost * switched.cpu().numpy()  # what the critic sums
                for i in games:
                    run.writer.add_scalar("charts/shaped_episodic_return", shaped_return[i], global_step)
                shaped_return[games], next_first = 0.0, torch.from_numpy(np.isin(np.arange(n), games)).to(device)
            if run.stopping:
                global_step = (iteration - 1) * batch_size  # the unfinished rollout is dropped
                break

            # ALGO LOGIC: one forward over the rollout and next_obs: Q_Omega, beta, intra-option policies
            q, beta, logits = agent.heads(agent.trunk(torch.cat([obs.reshape((-1,) + obs_shape), next_obs])))
            q, beta = q.view(-1, n, k), beta.view(-1, n, k)  # [T + 1, N, K]
            logits = logits[torch.arange(batch_size, device=device), options.reshape(-1)].view(args.num_steps, n, -1)
            probs = Categorical(logits=logits)  # pi_w(. | s_t) of the option acted under, [T, N, A]
            q_taken = pick(q[:-1], options)  # [T, N]
            with torch.no_grad():  # critic targets: n-step returns, bootstrapped with U(s_T, w_{T-1})
                next_value = upon_arrival(q[-1], beta[-1], options[-1], epsilon, args.deliberation_cost)
                returns = option_returns(rewards, switches, dones, next_value, next_done, args.gamma, args.deliberation_cost)
                advantages = returns - q_taken

            # ALGO LOGIC: intra-option policy gradient (Q_Omega baseline), critic, termination gradient at s'
            pg_loss = -(advantages * probs.log_prob(actions)).mean()
            entropy = probs.entropy()
            v_loss = 0.5 * ((q_taken - returns) ** 2).mean()
            not_first = 1.0 - torch.cat([firsts[1:], next_first[None].float()])  # s_{t+1} starts no game
            term_loss = termination_loss(q[1:], beta[1:], options, epsilon, args.termination_margin + args.deliberation_cost,
                                         not_first)  # fmt: skip
            loss = pg_loss - args.ent_coef * entropy.mean() + v_loss * args.vf_coef + term_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
            optimizer.step()

            stats.update(options.cpu().numpy(), pick(beta[1:], options).detach().cpu().numpy(), entropy.detach().cpu().numpy())
            if (iteration - 1) % args.log_interval == 0:
                y_pred, y_true = q_taken.detach().cpu().numpy(), returns.cpu().numpy()
                explained_var = np.nan if np.var(y_true) == 0 else 1 - np.var(y_true - y_pred) / np.var(y_true)
                lr = optimizer.param_groups[0]["lr"]
                run.log(global_step, {"charts/learning_rate": lr, "charts/option_epsilon": epsilon,
                                      "losses/value_loss": v_loss.item(), "losses/policy_loss": pg_loss.item(),
                                      "losses/entropy": entropy.mean().item(), "losses/termination_loss": term_loss.item(),
                                      "losses/explained_variance": explained_var, **stats.summary(),
                                      "options/termination_rate": switches.mean().item()})  # fmt: skip
            run.checkpoint_due(global_step)
    envs.close()
    return run.finish(global_step, device)


if __name__ == "__main__":
    main(tyro.cli(Args))
