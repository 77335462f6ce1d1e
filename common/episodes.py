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
