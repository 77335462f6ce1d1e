"""Option-critic (Bacon, Harb & Precup 2017, arXiv:1609.05140) as synchronous n-step A2OC (Harb et al. 2018, arXiv:1709.04571;
code: jeanharb/option_critic, a2oc_delib); parent ppo_atari.py. One update per rollout, not PPO's epochs: 1.7-2.7x ppo's SPS in
one session; RAM path (--ram-info, shaping): games 0.7x (docs/results/options_atari.md). Example: python options_atari.py"""

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
import tyro
from torch.distributions.categorical import Categorical

from common.contract import env_protocol
from common.envs import ProcessVectorEnv, RamInfo
from common.episodes import OptionStats
from common.ram_features import FEATURES, INTERCEPT, TAP
from common.run import Linear, Run, RunArgs, note, require

gym.register_envs(ale_py)
DESCENDING = FEATURES.index("descending")  # RAM feature: 1 while the ball in play moves down


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
    num_options: int = 4
    """number of options (each: a termination head and an intra-option policy)"""
    option_diversity: float = 0.0
    """weight of a bonus for intra-option policies that differ: their Jensen-Shannon divergence at s (see `diversity`)"""
    option_diversity_cap: float = 0.0
    """the bonus counts a state's divergence up to this many nats (0: no cap; the most, log min(K, A): an action per option)"""
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
    ram_info: bool = False
    """if toggled, the games run in a child process with Breakout's RAM (common/envs.py): options/..._paddle_hit diagnostics"""
    intercept_shaping: float = 0.0
    """c_i of the potential -c_i |ball x at the paddle - paddle x| / 160 while the ball descends (on: --ram-info implied)"""
    tap_shaping: float = 0.0
    """c_t of the potential c_t while the ball rises after a paddle hit (--ram-info implied); see `shaping`"""


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


def shaping(phi, ram, done, args):
    """F = gamma Phi(s') - Phi(s) (Ng, Harada & Russell 1999: optimal policies stay optimal), Phi of RAM features [N, 22]: -c_i
    |intercept_offset| while the ball descends, c_t while it rises, 0 with no ball or where s' ends a life. -> F, Phi(s')."""
    phi_next = np.where(ram[:, DESCENDING] > 0, -args.intercept_shaping * abs(ram[:, INTERCEPT]), args.tap_shaping * ram[:, 0])
    return args.gamma * phi_next * (1 - done) - phi, phi_next


def diversity(logits):
    """Generalised Jensen-Shannon divergence of the K intra-option policies at each state, H(mean_w pi_w) - mean_w H(pi_w) in
    [0, log K]: [B, K, A] -> [B]. A bonus on it rules out K copies of one policy (Kamat & Precup 2020 reward diversity)."""
    return Categorical(probs=logits.softmax(-1).mean(1)).entropy() - Categorical(logits=logits).entropy().mean(1)


def pick(x, option):
    return x.gather(-1, option.unsqueeze(-1)).squeeze(-1)  # x[..., option]: each row's entry for its option, x [..., K]


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
        if x.device.type == "cpu":  # channels_last, the CPU weights' layout: permuted as uint8, 4x fewer bytes than float
            x = x.contiguous(memory_format=torch.channels_last)
        return self.network(x.float() / 255.0)

    def heads(self, hidden):  # Q_Omega [B, K], beta [B, K] in (0, 1), intra-option logits [B, K, A]
        logits = self.actor(hidden).view(len(hidden), self.critic.out_features, -1)
        return self.critic(hidden), torch.sigmoid(self.termination(hidden)), logits

    def get_action_and_option(self, x, option, first, epsilon: float, greedy: bool = False):
        """One call-and-return step (greedy: terminate where beta > 1/2, argmax action): option, terminated, action, logits."""
        q, beta, logits = self.heads(self.trunk(x))
        option, terminated = select_options(q, (beta > 0.5).float() if greedy else beta, option, first, epsilon)
        logits = logits[torch.arange(len(x), device=x.device), option]
        return option, terminated, logits.argmax(1) if greedy else Categorical(logits=logits).sample(), logits


class PolicyAgent:
    """The contract's evaluation side (common/contract.py): scores = the option's logits, last_options (int64 [N]) = each env's
    option; stochastic: training's play at the final option epsilon; greedy: beta > 1/2 ends, argmax option and action."""

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
    net = Agent(state["actor.weight"].shape[0] // num_options, state["network.0.weight"].shape[1], num_options).to(device)
    net.load_state_dict(state)
    net = net.to(memory_format=torch.channels_last) if device.type == "cpu" else net
    return PolicyAgent(net, device, checkpoint["args"].get("option_end_e", Args.option_end_e))


def check_args(args: Args) -> Args:
    """Bad values stop with one line; a budget below one rollout shortens the rollout (with a note)."""
    require(args, positive=("num_steps", "frame_stack", "learning_rate", "num_options", "log_interval"),
            unit=("option_start_e", "option_end_e", "option_exploration_fraction"),
            at_least_0=("option_diversity", "option_diversity_cap"))  # fmt: skip
    if args.total_timesteps < args.num_envs * args.num_steps:
        note(f"--num-steps {args.num_steps} -> {args.total_timesteps // args.num_envs}: the budget is one rollout")
        args = replace(args, num_steps=args.total_timesteps // args.num_envs)
    if args.option_diversity_cap and not args.option_diversity:
        sys.exit("error: --option-diversity-cap caps the diversity bonus: it needs --option-diversity > 0")
    args = replace(args, ram_info=args.ram_info or bool(args.intercept_shaping or args.tap_shaping))  # Phi reads the RAM
    if args.ram_info and env_protocol(args)["game"] != "breakout":
        sys.exit(f"error: --env-id {args.env_id!r}: --ram-info and the shaping flags read Breakout's RAM only")
    return args


# Copied from ppo_atari.bootstrap_truncated
def bootstrap_truncated(rewards, terminations, truncations, final_values, gamma: float):
    """Rewards [N] + gamma*V(final obs) where the frame cap cut a game: no end of the MDP (Pardo et al. 2018)."""
    return rewards + gamma * final_values * torch.as_tensor(truncations & ~terminations, device=rewards.device)


def main(args: Args) -> Path:
    run = Run(args, __file__, check=check_args)  # BOILERPLATE: --resume, flag checks, run folder, TensorBoard, W&B
    args, global_step = run.args, run.global_step
    batch_size, n, k = args.num_envs * args.num_steps, args.num_envs, args.num_options
    num_iterations = args.total_timesteps // batch_size

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = pick_device(args.device)
    print(f"device: {device} | run folder: {run.dir}")

    envs = ProcessVectorEnv(make_env, args, n, ("ram",), wrap=RamInfo) if args.ram_info else make_vector_env(args, n)
    agent = Agent(envs.single_action_space.n, args.frame_stack, k).to(device)
    agent = agent.to(memory_format=torch.channels_last) if device.type == "cpu" else agent
    optimizer = torch.optim.RMSprop(agent.parameters(), lr=args.learning_rate, alpha=0.99, eps=1e-5)
    run.attach(agent, optimizer)  # what checkpoints hold; on a resume: weights, optimizer and RNG states
    # linear to 0 at the last iteration; a resume with a new --total-timesteps stretches the rest (common/run.py)
    lr_at = run.schedule("learning_rate", Linear(0, args.learning_rate, num_iterations * batch_size, 0.0), stretch=True)
    # the epsilon over options decays over the first run's steps, as the DQN scripts' epsilon (a resume keeps its steps)
    option_epsilon_at = run.schedule("option_epsilon", Linear(0, args.option_start_e, int(
        args.option_exploration_fraction * args.total_timesteps), args.option_end_e), stretch=False)  # fmt: skip

    # ALGO LOGIC: rollout storage, uint8 observations (4x smaller than float32)
    obs = torch.zeros((args.num_steps, n) + envs.single_observation_space.shape, dtype=torch.uint8, device=device)
    actions, options = (torch.zeros((args.num_steps, n), dtype=torch.long, device=device) for _ in range(2))
    rewards, dones, firsts, switches = (torch.zeros((args.num_steps, n), device=device) for _ in range(4))

    next_obs_np, infos = envs.reset(seed=args.seed + global_step)
    next_obs, next_done = torch.from_numpy(next_obs_np).to(device), torch.zeros(n, device=device)
    next_first = torch.ones(n, dtype=torch.bool, device=device)  # next_obs starts a game: a fresh option
    option, shaped_return = torch.zeros(n, dtype=torch.long, device=device), np.zeros(n)
    stats, f, hit = OptionStats(n, k, hits=args.ram_info), np.zeros(n), None  # RAM path: F, paddle hits seen in next_obs
    phi = shaping(0, infos["ram"], 0, args)[1] if args.ram_info else 0  # Phi(next_obs)
    with run.loop(num_iterations * batch_size):
        for iteration in range(global_step // batch_size + 1, num_iterations + 1):
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = lr_at((iteration - 1) * batch_size)

            for step in range(args.num_steps):
                if run.stopping:
                    break
                global_step += n
                obs[step], dones[step], firsts[step] = next_obs, next_done, next_first
                epsilon = option_epsilon_at(global_step)
                with torch.no_grad():
                    option, switched, action, _ = agent.get_action_and_option(next_obs, option, next_first, epsilon)
                options[step], switches[step], actions[step] = option, switched, action
                stats.step(option, switched | next_first, next_done > 0, next_first, hit)  # next_done: a life was just lost

                next_obs_np, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
                if args.ram_info:  # potential-based shaping; the paddle hits seen in next_obs
                    (f, phi), hit = shaping(phi, infos["ram"], terminations | truncations, args), infos["ram"][:, TAP] > 0
                rewards[step] = torch.from_numpy(np.sign(reward) + f).to(device)  # clipped (+ F) for learning only
                if truncations.any():  # the frame cap: bootstrap from the cut game's final observation
                    with torch.no_grad():
                        q_final, beta_final, _ = agent.heads(agent.trunk(torch.from_numpy(infos["final_obs"]).to(device)))
                        final_values = upon_arrival(q_final, beta_final, option, epsilon, args.deliberation_cost)
                    rewards[step] = bootstrap_truncated(rewards[step], terminations, truncations, final_values, args.gamma)
                next_done = torch.from_numpy(terminations | truncations).to(device, torch.float32)
                next_obs = torch.from_numpy(next_obs_np).to(device)
                games = [i for i, _, _ in run.episodes(global_step, reward, terminations, truncations, infos["lives"])]
                shaped_return += np.sign(reward) + f - args.deliberation_cost * switched.cpu().numpy()  # what the critic sums
                for i in games:
                    run.writer.add_scalar("charts/shaped_episodic_return", shaped_return[i], global_step)
                shaped_return[games], next_first = 0.0, torch.from_numpy(np.isin(np.arange(n), games)).to(device)
            if run.stopping:
                global_step = (iteration - 1) * batch_size  # the unfinished rollout is dropped
                break

            # ALGO LOGIC: one forward over the rollout and next_obs: Q_Omega, beta, intra-option policies
            q, beta, logits = agent.heads(agent.trunk(torch.cat([obs.flatten(0, 1), next_obs])))
            q, beta = q.view(-1, n, k), beta.view(-1, n, k)  # [T + 1, N, K]
            div = diversity(logits[:batch_size])  # [T * N]: of the K policies at s_t (the options not acted under too)
            bonus, div = (div.clamp(max=args.option_diversity_cap) if args.option_diversity_cap else div).mean(), div.mean()
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
            loss = pg_loss - args.ent_coef * entropy.mean() - args.option_diversity * bonus + v_loss * args.vf_coef + term_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
            optimizer.step()

            stats.update(options.cpu().numpy(), pick(beta[1:], options).detach().cpu().numpy(), entropy.detach().cpu().numpy())
            if (iteration - 1) % args.log_interval == 0:
                y_pred, y_true = q_taken.detach().cpu().numpy(), returns.cpu().numpy()
                explained_var = np.nan if np.var(y_true) == 0 else 1 - np.var(y_true - y_pred) / np.var(y_true)
                run.log(global_step, {"charts/option_epsilon": epsilon, "losses/value_loss": v_loss.item(),
                                      "charts/learning_rate": optimizer.param_groups[0]["lr"], **stats.summary(),
                                      "losses/entropy": entropy.mean().item(), "losses/termination_loss": term_loss.item(),
                                      "losses/explained_variance": explained_var, "losses/policy_loss": pg_loss.item(),
                                      "options/termination_rate": switches.mean().item(),
                                      "options/diversity": div.item()})  # fmt: skip
            run.checkpoint_due(global_step)
    envs.close()
    return run.finish(global_step, device)


if __name__ == "__main__":
    main(tyro.cli(Args))
