"""Episode statistics for ale-py's AtariVectorEnv with ``life_loss_info=True`` and SameStep autoreset.

With ``life_loss_info`` the vector env reports ``terminated`` on every life loss (for bootstrapping)
but keeps playing the same game. A whole game is over only at truncation (frame cap) or at a
termination after which the lives counter did not drop: with SameStep autoreset the env has already
reset, so it reports the new game's lives (5 in Breakout), never fewer than before. Games without
a lives counter (lives always 0) end on every termination, which the same rule covers.

``charts/episodic_return`` is the raw, unclipped sum over a whole game; per-life returns are
recorded separately.
"""

from __future__ import annotations

from collections import deque

import numpy as np

NEAR_EVENT_STEPS = 4  # a switch at most this many agent steps into a life / after a paddle hit is "near" it


class EpisodeStats:
    """Tracks raw per-game and per-life returns for a batch of envs."""

    def __init__(self, num_envs: int, window: int = 100):
        self.game_return = np.zeros(num_envs, dtype=np.float64)
        self.game_length = np.zeros(num_envs, dtype=np.int64)
        self.life_return = np.zeros(num_envs, dtype=np.float64)
        self.prev_lives: np.ndarray | None = None
        self.recent_games: deque[float] = deque(maxlen=window)

    def step(
        self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, lives: np.ndarray
    ) -> tuple[list[tuple[int, float, int]], list[tuple[int, float]]]:
        """Feed one vector step of raw rewards; return (finished games, finished lives).

        finished games: (env index, raw game return, game length in agent steps);
        finished lives: (env index, raw life return).
        """
        prev = lives if self.prev_lives is None else self.prev_lives
        self.game_return += rewards
        self.life_return += rewards
        self.game_length += 1
        life_over = terminated | truncated
        game_over = truncated | (terminated & (lives >= prev))
        games = [(int(i), float(self.game_return[i]), int(self.game_length[i])) for i in np.flatnonzero(game_over)]
        lives_done = [(int(i), float(self.life_return[i])) for i in np.flatnonzero(life_over)]
        self.recent_games.extend(r for _, r, _ in games)
        self.game_return[game_over] = 0.0
        self.game_length[game_over] = 0
        self.life_return[life_over] = 0.0
        self.prev_lives = np.array(lives, copy=True)
        return games, lives_done

    def recent_mean(self) -> float:
        """Mean raw return of the last ``window`` finished games (nan before the first)."""
        return float(np.mean(self.recent_games)) if self.recent_games else float("nan")


class OptionStats:
    """options_atari.py's options/... diagnostics, step() once per vector step. A run: a stretch of one option id, cut
    where a life ends (as in evaluate.py's per_life.csv), its length a dwell time; a switch: an id change within a game.
    switch_near_life_loss / _paddle_hit (RAM path): the share of switches <= NEAR_EVENT_STEPS steps into a life / after a
    hit; time_near_...: of steps."""

    def __init__(self, num_envs: int, num_options: int, hits: bool = False):
        self.k, self.hits, self.option, self.run = num_options, hits, np.full(num_envs, -1), np.zeros(num_envs, dtype=np.int64)
        self.life_switches, self.since = np.zeros(num_envs, dtype=np.int64), np.full((2, num_envs), 1 << 30)  # [life, hit]
        self.window()

    def window(self) -> None:  # near: [life start, paddle hit] x [switches near it, steps near it]
        self.dwells, self.per_life, self.switches, self.near = [np.zeros((0, 2), dtype=np.int64)], [], 0, np.zeros((2, 2))
        self.steps, self.selected, self.beta, self.ent = (np.zeros(self.k) for _ in range(4))

    def step(self, options, chosen, life_start, game_start, hit=None) -> None:
        """[N] each: options acted under, chosen (picked now), life_start / game_start / hit (this observation shows one)."""
        options, chosen, life_start, game_start = (np.asarray(x.cpu()) for x in (options, chosen, life_start, game_start))
        ended = ((options != self.option) | life_start) & (self.option >= 0)
        switch = (options != self.option) & (self.option >= 0) & ~game_start
        self.dwells.append(np.stack([self.option[ended], self.run[ended]], 1))
        self.per_life += self.life_switches[life_start].tolist()
        self.life_switches = np.where(life_start, 0, self.life_switches) + switch
        self.run, self.option, self.switches = np.where(ended, 1, self.run + 1), options.copy(), self.switches + switch.sum()
        np.add.at(self.steps, options, 1)
        np.add.at(self.selected, options[chosen], 1)
        self.since = np.where(np.stack([life_start, np.zeros_like(life_start) if hit is None else hit]), 0, self.since + 1)
        near = self.since <= NEAR_EVENT_STEPS  # [2, N]
        self.near += np.stack([(switch & near).sum(1), near.sum(1)], 1)

    def update(self, options, beta_next, entropy) -> None:  # [T, N] each: beta_w(s_{t+1}), entropy at s_t, w acted under
        for total, value in ((self.beta, beta_next), (self.ent, entropy)):
            np.add.at(total, options.ravel(), value.ravel())

    def summary(self) -> dict[str, float]:  # the window's scalars (none without data); starts the next window
        d, total = np.concatenate(self.dwells), self.steps.sum()
        out = {"options/max_time_share": self.steps.max() / total}  # the collapse detector: 1 = one option does it all
        for w, m in enumerate(self.steps):
            dw = d[d[:, 0] == w, 1]
            out |= {f"options/{w}/selections": self.selected[w], f"options/{w}/time_share": m / total}
            out |= {f"options/{w}/termination_prob": self.beta[w] / m, f"options/{w}/entropy": self.ent[w] / m} if m else {}
            out |= {f"options/{w}/dwell_mean": dw.mean(), f"options/{w}/dwell_p90": np.quantile(dw, 0.9)} if len(dw) else {}
        out |= {"options/switches_per_life": np.mean(self.per_life)} if self.per_life else {}
        for i, event in enumerate(("life_loss", "paddle_hit")[: 1 + self.hits]):
            out[f"options/time_near_{event}"] = self.near[i, 1] / total
            out |= {f"options/switch_near_{event}": self.near[i, 0] / self.switches} if self.switches else {}
        self.window()
        return out
