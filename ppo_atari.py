"""PPO on Atari (Breakout by default): one file, read top to bottom.

Paper: Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (arXiv:1707.06347); Atari details from
Huang et al. 2022, "The 37 Implementation Details of PPO" (ICLR blog track). Parent: CleanRL's ppo_atari.py.
Example: python ppo_atari.py --total-timesteps 200000
"""

import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import tyro
from torch.distributions.categorical import Categorical
from torch.utils.tensorboard import SummaryWriter

from common.checkpoint import load_for_resume, rng_state, save_checkpoint, set_rng_state, strip_checkpoint
from common.episodes import EpisodeStats

gym.register_envs(ale_py)


@dataclass
class Args:
    # Experiment
    exp_name: str = Path(__file__).stem
    """the name of this experiment (run folder, checkpoint file, W&B run)"""
    seed: int = 1
    """seed of the experiment (python, numpy, torch and the environments)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    """where the network runs; auto picks cuda, then mps, then cpu"""
    track: bool = False
    """if toggled, log to Weights & Biases (works offline with WANDB_MODE=offline)"""
    wandb_project_name: str = "atari-playground"
    """the W&B project name"""
    wandb_entity: Optional[str] = None
    """the W&B entity (team); None uses your default"""
    capture_video: bool = False
    """if toggled, the final evaluation records its first game to <run dir>/videos"""
    save_model: bool = True
    """if toggled, save checkpoints to <run dir>/<exp_name>.pt"""
    eval_episodes: int = 10
    """full games played by the final evaluation (0 skips it)"""
    checkpoint_every: int = 250_000
    """write a checkpoint every this many agent steps (0: only at the end and on Ctrl-C)"""
    keep_checkpoints: bool = False
    """if toggled, also keep each periodic checkpoint's weights as <run dir>/steps/<exp_name>_<step>.pt (for evaluate.py)"""
    resume: Optional[str] = None
    """path of a checkpoint of this script to continue (same run folder, step count, schedules, RNG)"""
    progress: bool = True
    """show a progress bar with SPS and recent return (only when stderr is a terminal)"""
    runs_dir: str = "runs"
    """folder that holds the run folders"""

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


def env_protocol(args) -> dict:
    """The environment protocol, from the env id's ale-py registration plus the script's settings."""
    try:
        spec = gym.spec(args.env_id)
    except gym.error.Error as e:
        sys.exit(f"error: unknown --env-id {args.env_id!r} ({e}); try BreakoutNoFrameskip-v4 or ALE/Breakout-v5")
    kw = spec.kwargs
    if spec.entry_point != "ale_py.env:AtariEnv" or kw.get("obs_type", "rgb") != "rgb":
        sys.exit(f"error: --env-id {args.env_id!r} is not a pixel ALE env; try BreakoutNoFrameskip-v4 or ALE/Breakout-v5")
    if not isinstance(kw.get("frameskip", 4), int):
        sys.exit(f"error: --env-id {args.env_id!r} has a random frameskip; use BreakoutNoFrameskip-v4 or ALE/Breakout-v5")
    return {
        "env_id": args.env_id, "game": kw["game"], "frameskip": 4, "max_pool": True,
        "repeat_action_probability": float(kw.get("repeat_action_probability", 0.25)),
        "full_action_space": bool(kw.get("full_action_space", False)),
        "max_num_frames_per_episode": int(kw.get("max_num_frames_per_episode") or 108_000),
        "noop_max": args.noop_max, "fire_reset": args.fire_reset, "frame_stack": args.frame_stack,
        "life_loss": "terminal for bootstrapping only; the game goes on",
        "reward_clipping": "sign, for learning only; logged returns are raw", "observation": "grey 84x84 uint8",
    }  # fmt: skip


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


def open_run(args, ckpt):
    """Run folder and TensorBoard writer (+ W&B with --track); a resumed run continues its folder and W&B run."""
    if ckpt is not None:
        run_dir, wandb_id = Path(args.resume).resolve().parent, ckpt["resume"]["wandb_run_id"]
    else:
        run_dir = Path(args.runs_dir) / f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
        wandb_id = None
    if args.track:
        import wandb

        run_dir.mkdir(parents=True, exist_ok=True)
        wandb_id = wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                              config=vars(args), name=run_dir.name, id=wandb_id, resume="allow", dir=str(run_dir),
                              save_code=True).id  # fmt: skip
    # a resumed run drops what the old run logged after its checkpoint (an unfinished rollout, say)
    writer = SummaryWriter(str(run_dir), purge_step=ckpt["global_step"] + 1 if ckpt is not None else None)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))
    return run_dir, writer, wandb_id


class GracefulStop:
    """Context manager: the first SIGINT/SIGTERM sets `requested` (the loop saves and stops), a second one aborts."""

    def __enter__(self):
        self.requested = False
        self.old = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: saving a checkpoint at the end of this step (interrupt again to abort)", file=sys.stderr)

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


def finish_run(args, module: str, path: Optional[Path], stopped: bool, writer, run_dir: Path, device: torch.device) -> None:
    """Print how to resume a stopped run, or evaluate the final checkpoint (eval/episodic_return); close the loggers."""
    if stopped:
        print(f"stopped; checkpoint: {path}\nresume with: python {module}.py --resume {path}")
    elif path is not None and args.eval_episodes > 0:
        from evaluate import evaluate_checkpoint  # lazy: evaluation is not needed to train

        try:
            video_root = str(run_dir) if args.capture_video else None
            result = evaluate_checkpoint(path, num_games=args.eval_episodes, seeds=[0], deterministic=False,
                                         video_root=video_root, device=str(device))  # fmt: skip
        except KeyboardInterrupt:
            print(f"final evaluation interrupted; the checkpoint is saved: {path}", file=sys.stderr)
        else:
            for i, score in enumerate(result["scores"]):
                writer.add_scalar("eval/episodic_return", score, i)
            print(f"eval: {args.eval_episodes} games, mean return {np.mean(result['scores']):.2f}")
    writer.close()
    if args.track:
        import wandb

        wandb.finish()


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
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(frame_stack, 32, 8, stride=4)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
            layer_init(nn.Linear(64 * 7 * 7, 512)),
            nn.ReLU(),
        )
        self.actor = layer_init(nn.Linear(512, n_actions), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1)

    def trunk(self, x):
        x = x.float() / 255.0
        if x.device.type == "cpu":  # channels_last convolutions are ~1.6x faster on x86 CPUs (docs/benchmarks.md)
            x = x.contiguous(memory_format=torch.channels_last)
        return self.network(x)

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
        pass  # feed-forward policy: no per-env state

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


def check_args(args: Args) -> None:
    for name in ["total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "frame_stack",
                 "learning_rate", "eval_episodes", "checkpoint_every", "noop_max"]:  # fmt: skip
        value, may_be_zero = getattr(args, name), name in ("eval_episodes", "checkpoint_every", "noop_max")
        if value < 0 or (value == 0 and not may_be_zero):
            sys.exit(f"error: --{name.replace('_', '-')} must be {'>= 0' if may_be_zero else 'positive'}, got {value}")
    if args.num_envs * args.num_steps % args.num_minibatches:
        sys.exit(f"error: num_envs*num_steps={args.num_envs * args.num_steps} is not divisible by --num-minibatches")
    if args.total_timesteps < args.num_envs * args.num_steps:
        sys.exit(f"error: --total-timesteps must be at least num_envs*num_steps = {args.num_envs * args.num_steps}")
    if args.keep_checkpoints and not (args.checkpoint_every and args.save_model):
        sys.exit("error: --keep-checkpoints keeps the periodic checkpoints: it needs --checkpoint-every > 0 and --save-model")


def main(args: Args) -> Path:
    """Train; return the path of the final checkpoint (or of the Ctrl-C checkpoint)."""
    module = Path(__file__).stem
    args, ckpt = load_for_resume(args, module) if args.resume else (args, None)
    check_args(args)
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches
    num_iterations = args.total_timesteps // batch_size
    protocol = env_protocol(args)

    # BOILERPLATE: run folder, logging, seeding, device
    run_dir, writer, wandb_id = open_run(args, ckpt)
    global_step, ckpt_path = ckpt["global_step"] if ckpt is not None else 0, run_dir / f"{args.exp_name}.pt"

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = pick_device(args.device)
    print(f"device: {device} | run folder: {run_dir}")

    envs = make_vector_env(args, args.num_envs)
    obs_shape = envs.single_observation_space.shape
    agent = Agent(envs.single_action_space.n, args.frame_stack).to(device)
    if device.type == "cpu":
        agent = agent.to(memory_format=torch.channels_last)
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    start_iteration = 1
    if ckpt is not None:
        agent.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["resume"]["optimizer"])
        set_rng_state(ckpt["resume"]["rng"])
        start_iteration = global_step // batch_size + 1
        print(f"resumed {args.resume} at global_step {global_step}")

    def save(step: int) -> Path:
        resume = {"optimizer": optimizer.state_dict(), "rng": rng_state(), "wandb_run_id": wandb_id}
        return save_checkpoint(ckpt_path, script=module, args=args, protocol=protocol, global_step=step,
                               model=agent.state_dict(), resume=resume)  # fmt: skip

    # ALGO LOGIC: rollout storage, uint8 observations (4x smaller than float32)
    obs = torch.zeros((args.num_steps, args.num_envs) + obs_shape, dtype=torch.uint8, device=device)
    actions = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long, device=device)
    logprobs, rewards, dones, values = (torch.zeros((args.num_steps, args.num_envs), device=device) for _ in range(4))

    stats = EpisodeStats(args.num_envs)
    next_obs_np, _ = envs.reset(seed=args.seed + global_step)
    next_obs = torch.from_numpy(next_obs_np).to(device)
    next_done = torch.zeros(args.num_envs, device=device)
    pbar = None
    if args.progress and sys.stderr.isatty():
        from tqdm import tqdm

        pbar = tqdm(total=num_iterations * batch_size, initial=global_step, unit="step", dynamic_ncols=True)
    start_time, start_step = time.time(), global_step
    next_ckpt = (global_step // args.checkpoint_every + 1) * args.checkpoint_every if args.checkpoint_every else None
    with GracefulStop() as stop:
        for iteration in range(start_iteration, num_iterations + 1):
            if args.anneal_lr:
                frac = 1.0 - (iteration - 1.0) / num_iterations
                optimizer.param_groups[0]["lr"] = frac * args.learning_rate

            for step in range(args.num_steps):
                if stop.requested:
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
                next_done = torch.from_numpy(terminations | truncations).to(device, torch.float32)
                next_obs = torch.from_numpy(next_obs_np).to(device)
                games, lives = stats.step(reward, terminations, truncations, infos["lives"])
                for _, life_return in lives:
                    writer.add_scalar("charts/life_return", life_return, global_step)
                for _, game_return, game_length in games:
                    (pbar.write if pbar else print)(f"global_step={global_step}, episodic_return={game_return:g}")
                    writer.add_scalar("charts/episodic_return", game_return, global_step)
                    writer.add_scalar("charts/episodic_length", game_length, global_step)
            if stop.requested:
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
            var_y = np.var(y_true)
            explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
            sps = int((global_step - start_step) / (time.time() - start_time))
            clipfrac = torch.stack(clipfracs).mean().item()
            for tag, value in [("charts/learning_rate", optimizer.param_groups[0]["lr"]), ("charts/SPS", sps),
                               ("losses/value_loss", v_loss.item()), ("losses/policy_loss", pg_loss.item()),
                               ("losses/entropy", entropy_loss.item()), ("losses/old_approx_kl", old_approx_kl.item()),
                               ("losses/approx_kl", approx_kl.item()), ("losses/clipfrac", clipfrac),
                               ("losses/explained_variance", explained_var)]:  # fmt: skip
                writer.add_scalar(tag, value, global_step)
            if pbar:
                pbar.update(global_step - pbar.n)
                pbar.set_postfix(SPS=sps, ret=f"{stats.recent_mean():.1f}")
            elif iteration % 10 == 0:
                print(f"global_step={global_step} SPS={sps} recent_return={stats.recent_mean():.2f}")
            if args.save_model and next_ckpt is not None and global_step >= next_ckpt:
                path = save(global_step)
                if args.keep_checkpoints:  # weights only (no resume state): one file per step for evaluate.py
                    strip_checkpoint(path, run_dir / "steps" / f"{args.exp_name}_{global_step}.pt")
                next_ckpt += args.checkpoint_every
    if pbar:
        pbar.close()
    envs.close()
    path = save(global_step) if args.save_model or stop.requested else None
    finish_run(args, module, path, stop.requested, writer, run_dir, device)
    return path


if __name__ == "__main__":
    main(tyro.cli(Args))
