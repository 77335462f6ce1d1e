"""The script <-> evaluation contract (also in docs/contract.md).

Every algorithm script (a top-level ``*_atari.py`` file) exports:

``Args``
    its tyro dataclass; ``Args(**checkpoint["args"])`` rebuilds the training settings.
``env_protocol(args) -> dict``
    the environment protocol (env id, frameskip, sticky actions, life-loss handling, fire reset, ...),
    stored in every checkpoint.
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

import torch

from common.checkpoint import load_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
EPSILON_EVAL = 0.001  # value agents' evaluation epsilon (Dopamine / tuned Double DQN; methods.md section 8)
SCORE_KINDS = ("q_values", "logits")


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
