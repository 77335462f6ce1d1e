"""The RAM-feature observation of dqn_ram_atari.py and hybrid_atari.py: 22 features of Breakout's RAM (docs/breakout_ram.md),
decoded by common.events. One definition for both scripts; its version is part of each checkpoint's protocol."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from common.events import PADDLE_WIDE, BreakoutState, TapDetector, decode_ram

VERSION = "Breakout RAM features v1"
FEATURES = ("in_play", "ball_x", "ball_y", "paddle_center", "paddle_velocity", "ball_offset", "ball_dx", "ball_dy", "ram_vy",
            "ram_vx", "tap_now", "steps_since_tap", "descending", "intercept_offset", "lives", "bricks_left",
            *(f"bricks_row{r}" for r in range(6)))  # fmt: skip
NUM_FEATURES, TAP, INTERCEPT = len(FEATURES), FEATURES.index("tap_now"), FEATURES.index("intercept_offset")
PADDLE_Y = 180  # raw ram[101] of a paddle contact (175-182, docs/breakout_ram.md)


def paddle_point(s: BreakoutState) -> float:
    """v1's paddle position: left edge + 8 px, the 16 px paddle's centre. The narrow (12 px) paddle's centre is 2 px left
    of it; v1 keeps this point so that the committed checkpoints see the inputs they were trained on."""
    return s.paddle_x + PADDLE_WIDE / 2


class RamFeatureObservation(gym.Wrapper):
    """Observation = 22 features of the RAM after each reset / step (docs/breakout_ram.md), fixed scaling, no stack; with
    keep_pixels {"pixels": the observation below, "ram": the features}. Adds info["life_lost"].
    Ranges (screen px): in_play, tap_now, descending {0,1}; ball_x (ram[99]-49)/160 in [-0.05, 1], ball_y (ram[101]+9)/210
    in [0, 1.05] (0 without a ball); paddle_center = ``paddle_point`` = (ram[72]-39)/160 in [0.1, 0.95] for both paddle
    widths; paddle_velocity = its change/16; ball_offset (ball x + 1 - point)/160; ball_dx, ball_dy = frame differences/16
    px; ram_vy int8(ram[103])/4, ram_vx -int8(ram[105])/2: all in [-1, 1], the 4 ball velocities 0 unless the ball was in
    play before and after the step in one life. steps_since_tap/100 (clip 1); intercept_offset (x_hit + 1 - point)/160 in
    [-1, 1], x_hit = ball x at ram[101] = 180 with the last |dx|, reflected at the walls (8, 152 px), 0 unless descending;
    lives/5, bricks_left/108, bricks per row/18 (bottom row first) in [0, 1]."""

    def __init__(self, env: gym.Env, keep_pixels: bool = False):
        super().__init__(env)
        self.keep_pixels, ram = keep_pixels, gym.spaces.Box(-2.0, 2.0, (NUM_FEATURES,), np.float32)
        self.observation_space = gym.spaces.Dict({"pixels": env.observation_space, "ram": ram}) if keep_pixels else ram

    def features(self, ram: np.ndarray) -> np.ndarray:
        s, prev = decode_ram(ram), self.prev
        tap = self.tap.update(int(ram[101]))
        self.since_tap = 0 if tap else self.since_tap + 1
        moving = prev is not None and s.in_play and prev.in_play and s.lives == prev.lives
        pc, x_hit = paddle_point(s), None
        if s.in_play and s.vy > 0:  # frames to the paddle's y (vy is px/frame); x unfolded between the walls, at the
            speed = abs(s.ball_x - prev.ball_x) / 4 if moving else abs(s.vx)  # last |dx|: RAM vx gives only the direction
            u = (s.ball_x + np.sign(s.vx) * speed * max(PADDLE_Y - int(ram[101]), 0) / s.vy - 8) % 288
            x_hit = 8 + (u if u <= 144 else 288 - u)
        v = [s.in_play, s.ball_x / 160, s.ball_y / 210, pc / 160,
             min(max((pc - paddle_point(prev)) / 16, -1), 1) if prev is not None else 0,
             (s.ball_x + 1 - pc) / 160 if s.in_play else 0,
             min(max((s.ball_x - prev.ball_x) / 16, -1), 1) if moving else 0,
             min(max((s.ball_y - prev.ball_y) / 16, -1), 1) if moving else 0,
             s.vy / 4 if moving else 0, s.vx / 2 if moving else 0,
             tap, min(self.since_tap, 100) / 100, x_hit is not None, (x_hit + 1 - pc) / 160 if x_hit is not None else 0,
             s.lives / 5, s.bricks_left / 108, *(b / 18 for b in s.bricks_per_row)]  # fmt: skip
        self.prev = s
        return np.array(v, dtype=np.float32)

    def observe(self, below):
        """The features of the RAM now; with keep_pixels also `below`, the wrapped env's observation (a frame stack)."""
        ram = self.features(self.env.unwrapped.ale.getRAM())
        return {"pixels": below, "ram": ram} if self.keep_pixels else ram

    def reset(self, **kwargs):
        below, info = self.env.reset(**kwargs)
        self.tap, self.prev, self.since_tap = TapDetector(), None, 100
        return self.observe(below), info

    def step(self, action):
        below, reward, terminated, truncated, info = self.env.step(action)
        lives = self.prev.lives
        return self.observe(below), reward, terminated, truncated, {**info, "life_lost": self.prev.lives < lives}
