"""ProcessVectorEnv: a script's ``make_env`` games stepped in one child process, with ale-py AtariVectorEnv semantics.

For observations ale-py's C++ vector env cannot give (RAM features): ALE holds the GIL, so a child process is how the
games overlap with learning on a second core. Semantics as ``AtariVectorEnv(life_loss_info=True, autoreset_mode=
"SameStep")``: ``terminated`` on every life loss (the ``info["life_lost"]`` of the env) while the game goes on; a finished
game resets at once, and infos carry the new game's ``"lives"`` and ``"final_obs"`` (zeros where no game ended), plus
the ``info_keys`` asked for (the new game's value where one ended). ``RamInfo`` puts Breakout's RAM features there.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from typing import Any, Callable, Optional

import gymnasium as gym
import numpy as np

from common.ram_features import RamFeatureObservation


def serve_games(pipe, make_env: Callable, args: Any, num_envs: int, info_keys: tuple[str, ...] = (),
                wrap: Optional[Callable] = None) -> None:  # fmt: skip
    """The child process: answers ("reset", seed) and ("step", actions) until None; an exception is sent back. Infos:
    "lives" (and "final_obs" on steps) and the info_keys, as the vector env stacks them ([num_envs, ...])."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle (it saves, then closes us)
    try:
        thunks = [make_env(args, args.seed + i, i) for i in range(num_envs)]
        envs = gym.vector.SyncVectorEnv([(lambda t=t: wrap(t())) if wrap else t for t in thunks],
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)  # fmt: skip
        pipe.send((envs.single_action_space, envs.single_observation_space))
        while (msg := pipe.recv()) is not None:
            if msg[0] == "reset":
                obs, info = envs.reset(seed=msg[1])
                pipe.send((obs, {"lives": info["lives"], **{k: info[k] for k in info_keys}}))
                continue
            obs, rewards, game_over, truncs, info = envs.step(msg[1])
            final = np.zeros_like(obs)
            for i in np.flatnonzero(info.get("_final_obs", [])):
                final[i] = info["final_obs"][i]
            terms = game_over | info.get("life_lost", False)
            extra = {k: info[k] for k in info_keys}
            pipe.send((obs, rewards, terms, truncs, {"lives": info["lives"], "final_obs": final, **extra}))
    except Exception as e:  # noqa: BLE001 - handed to the trainer, which raises it
        pipe.send(e)


class ProcessVectorEnv:
    """``make_env(args, seed, idx)`` games in one child process: ``step_async(actions)``, learn, then ``step_wait()``;
    ``step()`` does both at once. info_keys: the env's info entries to forward besides "lives" and "final_obs"; wrap: a
    wrapper put around each ``make_env`` env in the child (``RamInfo``, say)."""

    def __init__(self, make_env: Callable, args: Any, num_envs: int, info_keys: tuple[str, ...] = (),
                 wrap: Optional[Callable] = None):  # fmt: skip
        self.pipe, child = mp.Pipe()
        self.process = mp.Process(target=serve_games, args=(child, make_env, args, num_envs, tuple(info_keys), wrap),
                                  daemon=True)  # fmt: skip
        self.process.start()
        self.single_action_space, self.single_observation_space = self.step_wait()  # the first answer

    def reset(self, seed: Optional[int] = None):
        self.pipe.send(("reset", seed))
        return self.step_wait()

    def step_async(self, actions) -> None:
        self.pipe.send(("step", np.asarray(actions)))

    def step_wait(self):
        if isinstance(out := self.pipe.recv(), Exception):
            raise out
        return out

    def step(self, actions):
        self.step_async(actions)
        return self.step_wait()

    def close(self) -> None:
        if self.process.is_alive():
            self.pipe.send(None)
        self.process.join()


class RamInfo(gym.Wrapper):
    """A Breakout env's observation unchanged; info["ram"]: the 22 RAM features of ``common.ram_features`` (float32) after
    each reset and step, and info["life_lost"] (what ProcessVectorEnv turns into ``terminated``)."""

    def __init__(self, env: gym.Env):
        super().__init__(RamFeatureObservation(env, keep_pixels=True))
        self.observation_space = env.observation_space

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs["pixels"], {**info, "ram": obs["ram"]}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs["pixels"], reward, terminated, truncated, {**info, "ram": obs["ram"]}
