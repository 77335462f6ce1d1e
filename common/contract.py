"""The script <-> evaluation contract (also in docs/contract.md).

Every algorithm script (a top-level ``*_atari.py`` file) exports:

``Args``
    its tyro dataclass; ``Args(**checkpoint["args"])`` rebuilds the training settings.
``env_protocol(args) -> dict``
    the environment protocol (env id, frameskip, sticky actions, life-loss handling, fire reset, ...),
    stored in every checkpoint: ``env_protocol`` below, imported by each script (the RAM scripts extend it).
``make_env(args, seed, idx=0, capture_video=False, run_dir=None) -> thunk``
    one signature in every script. The thunk builds a gymnasium single env with the checkpoint's
    protocol that plays *full games* (no termination on life loss), returns *raw* rewards and
    ``info["lives"]``, whose ``unwrapped`` is ale-py's ``AtariEnv`` (so RAM can be read), and marks a
    FIRE pressed by the environment with ``info["scripted_fire"]`` in the reset info.
``make_agent(checkpoint, device) -> agent``
    the trained agent, rebuilt from the checkpoint dict alone, with
      - ``score_kind``: ``"q_values"`` (value agents) or ``"logits"`` (policy agents); Q-gap statistics
        call the latter a logit margin, never a Q-value;
      - ``reset(num_envs)``: called before a batch of games (clears recurrent / option / slot state);
      - ``act(obs, greedy) -> (actions, scores)``: ``obs`` is a batch of ``make_env`` observations,
        ``actions`` int64 ``[N]``, ``scores`` float32 ``[N, A]`` (per-action values or logits).
        ``greedy=False`` samples policy agents and is epsilon-greedy for value agents, with
        ``agent.epsilon`` (default ``EPSILON_EVAL``);
      - optional ``reset_env(i)``: called when game slot ``i`` starts a new game;
      - optional ``overlay(frame_rgb) -> frame_rgb``: the agent's view drawn on a frame (videos/overlay.mp4);
      - optional ``last_options``: int64 ``[N]``, the option each env acted under in the last ``act`` (per_life.csv
        option columns);
      - optional ``ablations``: names of input branches that ``agent.ablate = name`` zeroes
        (the hybrid agent's ``"ram"`` / ``"pixels"``).

Loading never executes code from the checkpoint: the file is read with ``weights_only=True`` and
the module it names must be one of the repo's own top-level ``*_atari.py`` scripts.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from common.checkpoint import load_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
EPSILON_EVAL = 0.001  # value agents' evaluation epsilon (van Hasselt et al. 2016, tuned Double DQN; Dopamine)
SCORE_KINDS = ("q_values", "logits")
MASK_COLOURS = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                         (70, 240, 240), (240, 50, 230)], np.float32)  # per mask, cycled (Trubetskoy's colours)  # fmt: skip


def overlay_masks(frame_rgb: np.ndarray, masks: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """For an agent's ``overlay``: each mask of ``masks`` [K, h, w] (in [0, 1], resized to the frame, nearest) in its own
    colour of MASK_COLOURS over ``frame_rgb`` uint8 [H, W, 3], at opacity ``alpha`` where the mask is 1."""
    m = F.interpolate(torch.as_tensor(masks, dtype=torch.float32)[None], size=frame_rgb.shape[:2], mode="nearest")[0].numpy()
    colour = np.einsum("khw,kc->hwc", m, MASK_COLOURS[np.arange(len(m)) % len(MASK_COLOURS)])
    return (frame_rgb * (1 - alpha * m.sum(0)[..., None]) + alpha * colour).clip(0, 255).astype(np.uint8)


def env_protocol(args: Any) -> dict[str, Any]:
    """The environment protocol of a pixel ALE env id (its ale-py registration) plus the script's settings; stored in
    every checkpoint. A one-line exit for an unknown env id or one this project cannot play."""
    import ale_py

    gym.register_envs(ale_py)
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


class ContractError(Exception):
    """A checkpoint or script that does not meet the contract; one-line message."""


def available_scripts() -> list[str]:
    """Module names of the algorithm scripts in the repo root."""
    return sorted(p.stem for p in REPO_ROOT.glob("*_atari.py"))


def load_script(name: str) -> ModuleType:
    """Import an algorithm script by module name; only the repo's own ``*_atari.py`` files are allowed."""
    if name not in available_scripts():
        raise ContractError(f"script {name!r} does not exist in {REPO_ROOT} (available: {', '.join(available_scripts())})")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    mod = importlib.import_module(name)
    missing = [attr for attr in ("Args", "env_protocol", "make_env", "make_agent") if not hasattr(mod, attr)]
    if missing:
        raise ContractError(f"script {name}.py does not export {', '.join(missing)}")
    return mod


def args_from_checkpoint(mod: ModuleType, ckpt: dict[str, Any]) -> Any:
    """Rebuild the script's Args; fields added since the checkpoint keep their defaults, removed ones are dropped."""
    known = {f.name for f in dataclasses.fields(mod.Args)}
    return mod.Args(**{k: v for k, v in ckpt["args"].items() if k in known})


@dataclass
class LoadedAgent:
    """What ``load_agent`` returns."""

    path: Path
    checkpoint: dict[str, Any]
    module: ModuleType
    args: Any
    agent: Any


def load_agent(path: str | Path, device: torch.device) -> LoadedAgent:
    """Checkpoint -> (script module, Args, agent); CheckpointError / ContractError on any mismatch."""
    ckpt = load_checkpoint(path, map_location="cpu")
    mod = load_script(ckpt["script"])
    args = args_from_checkpoint(mod, ckpt)
    try:
        agent = mod.make_agent(ckpt, device)
    except (KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ContractError(f"checkpoint {path}: weights do not fit {ckpt['script']}.py's network ({first[:160]})") from None
    if getattr(agent, "score_kind", None) not in SCORE_KINDS:
        raise ContractError(f"{ckpt['script']}.make_agent returned an agent without score_kind in {SCORE_KINDS}")
    if getattr(agent, "score_kind") == "q_values" and not hasattr(agent, "epsilon"):
        agent.epsilon = EPSILON_EVAL
    return LoadedAgent(Path(path), ckpt, mod, args, agent)
