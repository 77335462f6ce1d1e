"""Breakout game state and events decoded from the Atari RAM (the byte map with its evidence: docs/breakout_ram.md).

RAM bytes used (index into ``env.unwrapped.ale.getRAM()``, read after the last frame of an agent step):

- 99 / 101: ball x / y; screen pixels of the ball's 2x4 px top-left corner = ``ram[99] - 49`` / ``ram[101] + 9``;
  ``ram[101] == 0`` means no ball in play (serve pending, or the ball was just lost).
- 72: paddle; screen left edge = ``ram[72] - 47`` (8..144), centre = left edge + width / 2.
- 97, bit 7: narrow paddle: set when the ball hits the top wall, cleared when the ball leaves play; the paddle is 16 px
  wide without it, 12 px with it (``ram[108]`` = width / 2 follows it).
- 103 / 105: ball velocity bytes, int8: ``vy = int8(ram[103])`` (+ = down), ``vx = -int8(ram[105])`` (+ = right).
- 57: lives (5 -> 0).  76, 77: BCD score, ``100*(r76 & 0xF) + 10*(r77 >> 4) + (r77 & 0xF)`` (ALE's formula).
- 0..35: brick bitmap; row r (0 = bottom/blue, 5 = top/red) = bytes r, r+6, ..., r+30, 2 bits per brick, the low
  nibble of ``ram[12 + r]`` unused; 6 rows x 18 bricks = 108 per wall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

TAP_MIN_Y = 150  # raw ram[101]; taps are seen at 157-178 after the step, reversals at bricks or the ceiling below 100
PADDLE_WIDE, PADDLE_NARROW = 16, 12  # paddle width in screen px without / with the narrow flag (ram[97] bit 7)
FRAME_COUNTER_WRAP = 65_536  # ram[90..91] wraps here (frames since the game's reset): the ball never comes back into play
_BRICK_MASK = int.from_bytes(bytes(0xF0 if 12 <= i < 18 else 0xFF for i in range(36)), "big")  # brick bits of ram[0:36]


def int8(x: Any) -> Any:
    """Two's-complement int8 of a byte: a Python int for a scalar, an int16 array for an array (vectorised)."""
    if isinstance(x, (int, np.integer)):
        return ((int(x) + 128) & 0xFF) - 128
    return (np.asarray(x).astype(np.int16) + 128) % 256 - 128


def _brick_bits(ram: np.ndarray) -> int:
    """The 288 brick bits of ram[0:36] as one Python int (unused nibbles cleared)."""
    return int.from_bytes(ram[:36].tobytes(), "big") & _BRICK_MASK


@dataclass(frozen=True, slots=True)
class BreakoutState:
    """Decoded Breakout state. Positions are screen pixels (y down); ball fields are 0.0 when not ``in_play``."""

    ball_x: float
    ball_y: float
    in_play: bool
    paddle_x: float
    paddle_center: float
    paddle_width: int
    vy: int
    vx: int
    lives: int
    score: int
    bricks_left: int
    bricks_per_row: tuple[int, ...]


def decode_ram(ram: np.ndarray) -> BreakoutState:
    """Decode the 128-byte Breakout RAM (``env.unwrapped.ale.getRAM()``)."""
    r = ram.tolist()
    in_play, width = r[101] != 0, PADDLE_NARROW if r[97] & 0x80 else PADDLE_WIDE
    rows = tuple(
        (sum(r[i].bit_count() for i in range(row, 36, 6)) - (r[12 + row] & 0x0F).bit_count()) // 2 for row in range(6)
    )
    return BreakoutState(
        ball_x=float(r[99] - 49) if in_play else 0.0,
        ball_y=float(r[101] + 9) if in_play else 0.0,
        in_play=in_play,
        paddle_x=float(r[72] - 47),
        paddle_center=r[72] - 47 + width / 2,
        paddle_width=width,
        vy=int8(r[103]),
        vx=-int8(r[105]),
        lives=r[57],
        score=100 * (r[76] & 0xF) + 10 * (r[77] >> 4) + (r[77] & 0xF),
        bricks_left=sum(rows),
        bricks_per_row=rows,
    )


class TapDetector:
    """Paddle hits ("taps") from the raw ball y byte ``ram[101]`` alone, one ``update`` per agent step.

    Keeps the sign of the last nonzero dy of ``ram[101]`` between consecutive agent steps while both values are
    nonzero (a 0, i.e. no ball, clears it). A tap is reported on the step where that sign is + (falling), the current
    dy is < 0 (rising) and the *current* (post-step) raw value ``ram[101]`` is >= ``TAP_MIN_Y`` (150). Carrying the
    sign over dy == 0 catches reversals inside a frame skip that leave y unchanged; those taps come one step late.
    """

    def __init__(self) -> None:
        self._prev_y = 0
        self._last_sign = 0

    def reset(self) -> None:
        """Forget the history (call at every game reset)."""
        self._prev_y = 0
        self._last_sign = 0

    def update(self, ball_y_raw: int) -> bool:
        """Feed ``ram[101]`` after an agent step; True if the paddle hit the ball."""
        y, prev = int(ball_y_raw), self._prev_y
        self._prev_y = y
        if y == 0 or prev == 0:
            self._last_sign = 0
            return False
        dy = y - prev
        tap = self._last_sign > 0 and dy < 0 and y >= TAP_MIN_Y
        if dy != 0:
            self._last_sign = 1 if dy > 0 else -1
        return tap


class BreakoutEventWrapper(gym.Wrapper):
    """Adds ``info["events"]``, a dict of plain Python scalars read from the RAM after each reset and step.

    Keys: ``in_play``; ``launched`` (serve: no ball before the step, a ball after); ``fire`` (the agent's action this
    step is a FIRE action); ``tap`` (see ``TapDetector``); ``bricks_hit`` (bricks removed this step, >= 0: brick bits
    that went from 1 to 0, so a new wall counts 0); ``life_lost``; ``lives``; ``ball_x``, ``ball_y``,
    ``paddle_center`` (screen px), ``paddle_width`` (16 or 12 px); ``vy``, ``vx``. Put it outermost around a
    ``make_env`` env. Raises ValueError when the game is not Breakout.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        base = env.unwrapped
        spec = getattr(base, "spec", None)
        game = getattr(base, "_game", None) or (spec.kwargs.get("game") if spec is not None else None)
        if str(game).lower() != "breakout" or not hasattr(base, "ale"):
            raise ValueError(f"BreakoutEventWrapper needs an ALE Breakout env, got game {game!r}")
        self._ale = base.ale
        self._fire_actions = frozenset(i for i, m in enumerate(base.get_action_meanings()) if "FIRE" in m)
        self._tap = TapDetector()
        self._prev: BreakoutState | None = None
        self._prev_bricks = 0

    def _events(self, action: Any) -> dict[str, Any]:
        ram = self._ale.getRAM()
        s, prev = decode_ram(ram), self._prev
        bricks = _brick_bits(ram)
        hit = (self._prev_bricks & ~bricks).bit_count() // 2 if prev is not None else 0
        self._prev, self._prev_bricks = s, bricks
        return {
            "in_play": s.in_play,
            "launched": prev is not None and s.in_play and not prev.in_play,
            "fire": action is not None and int(action) in self._fire_actions,
            "tap": self._tap.update(int(ram[101])),
            "bricks_hit": hit,
            "life_lost": prev is not None and s.lives < prev.lives,
            "lives": s.lives,
            "ball_x": s.ball_x,
            "ball_y": s.ball_y,
            "paddle_center": s.paddle_center,
            "paddle_width": s.paddle_width,
            "vy": s.vy,
            "vx": s.vx,
        }

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset the env and the detectors; ``info["events"]`` describes the initial state (no events)."""
        obs, info = self.env.reset(**kwargs)
        self._tap.reset()
        self._prev = None
        return obs, {**info, "events": self._events(None)}

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        """Step the env; ``info["events"]`` describes this agent step."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "events": self._events(action)}
