"""common/events.py against the emulator: RAM decoding vs rendered pixels (the narrow paddle too), taps, bricks, score,
lives, serves, the frame-counter wrap."""

from __future__ import annotations

from pathlib import Path

import ale_py
import gymnasium as gym
import numpy as np
import pytest

from common.events import (
    PADDLE_NARROW,
    PADDLE_WIDE,
    TAP_MIN_Y,
    BreakoutEventWrapper,
    BreakoutState,
    TapDetector,
    decode_ram,
    int8,
)
from common.ram_features import paddle_point

gym.register_envs(ale_py)
ROW_POINTS = (1, 1, 4, 4, 7, 7)  # bottom/blue -> top/red
PADDLE_ROWS = slice(189, 193)  # screen rows of the paddle; the ball is searched between the bricks (<= 92) and them
PLAY_X = slice(8, 152)  # inside the side walls (the right wall's bottom is paddle-coloured)
# A game of checkpoints/dqn_ram_atari_breakout.pt up to the narrow paddle (docs/breakout_ram.md): "frames", one ALE action
# per emulator frame from reset; "ram", the RAM after the last one (ball just off the top wall, 3 lives, paddle at the left)
NARROW = Path(__file__).parent / "data" / "breakout_narrow_paddle.npz"


def make(env_id: str = "BreakoutNoFrameskip-v4", render: bool = False, **kw) -> BreakoutEventWrapper:
    """The make_env stack (frameskip 1 -> AtariPreprocessing(4) -> FrameStack) with the event wrapper outermost."""
    env = gym.make(env_id, frameskip=1, render_mode="rgb_array" if render else None, **kw)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=0, frame_skip=4, terminal_on_life_loss=False)
    env = gym.wrappers.FrameStackObservation(env, 4, padding_type="zero")
    return BreakoutEventWrapper(env)


def policy(s: BreakoutState, prev: BreakoutState | None, rng: np.random.Generator, eps: float) -> int:
    """FIRE on the serve; else move the paddle centre toward the ball one step ahead, with eps random actions."""
    if not s.in_play:
        return 1
    if rng.random() < eps:
        return int(rng.integers(4))
    target = s.ball_x + 1 + (s.ball_x - prev.ball_x if prev is not None and prev.in_play else 0.0)
    d = target - s.paddle_center
    return 2 if d > 8 else 3 if d < -8 else 0


def paddle_span(frame: np.ndarray) -> tuple[int, int] | None:
    """(first, last + 1) screen column of the paddle in a 210x160 RGB frame (clipped to PLAY_X), or None."""
    cols = np.nonzero(frame[PADDLE_ROWS, PLAY_X].any(-1).all(0))[0]
    return (int(cols[0]) + 8, int(cols[-1]) + 9) if len(cols) else None


def pixels(frame: np.ndarray) -> tuple[tuple[int, int] | None, int | None]:
    """(ball top-left (x, y) or None, paddle left edge or None) found in a 210x160 RGB frame."""
    ys, xs = np.nonzero(frame[93:189, PLAY_X].any(-1))
    ball, span = (int(xs.min()) + 8, int(ys.min()) + 93) if len(xs) else None, paddle_span(frame)
    return ball, (span[0] if span else None)


def paddle_error(s: BreakoutState, span: tuple[int, int] | None) -> tuple[float, int] | None:
    """(pixel centre - decoded centre, pixel width - decoded width) of the paddle; None where the screen cannot tell:
    no paddle found, its right end at the right wall (hidden behind it), or the ball overlapping the paddle rows."""
    if span is None or span[1] >= PLAY_X.stop or (s.in_play and 184 <= s.ball_y <= 193):
        return None
    return (span[0] + span[1]) / 2 - s.paddle_center, span[1] - span[0] - s.paddle_width


def play(env_id: str, seed: int, render: bool, eps: float = 0.1, max_steps: int = 4000) -> dict:
    """One scripted full game; per-step records (the step's action, reward, info, RAM and pixels after it)."""
    env = make(env_id, render)
    ale = env.unwrapped.ale
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    reset_ram, recs, prev, done = ale.getRAM().copy(), [], None, False
    while not done and len(recs) < max_steps:
        s = decode_ram(ale.getRAM())
        a = policy(s, prev, rng, eps)
        prev = s
        _, r, term, trunc, info = env.step(a)
        done = term or trunc
        frame = env.render() if render else None
        recs.append({"a": a, "r": float(r), "lives": info["lives"], "ev": info["events"], "ram": ale.getRAM().copy(),
                     "px": pixels(frame) if render else None, "span": paddle_span(frame) if render else None})  # fmt: skip
    env.close()
    return {"recs": recs, "done": done, "reset_ram": reset_ram}


@pytest.fixture(scope="module")
def games() -> list[dict]:
    # v4: no sticky actions, rendered (pixel checks); v5: sticky actions 0.25 (Machado et al. 2018)
    return [play("BreakoutNoFrameskip-v4", 0, render=True), play("ALE/Breakout-v5", 1, render=False)]


def test_int8_and_reset_state():
    assert int8(255) == -1 and int8(np.uint8(128)) == -128 and int8(127) == 127
    assert int8(np.array([0, 1, 254, 255], np.uint8)).tolist() == [0, 1, -2, -1]
    env = make()
    _, info = env.reset(seed=0)
    s = decode_ram(env.unwrapped.ale.getRAM())
    assert (s.bricks_left, s.bricks_per_row, s.lives, s.score) == (108, (18,) * 6, 5, 0)
    assert (s.in_play, s.ball_x, s.ball_y, s.vy, s.vx) == (False, 0.0, 0.0, 0, 0)
    assert (s.paddle_x, s.paddle_center, s.paddle_width) == (99.0, 107.0, PADDLE_WIDE)
    ev = info["events"]
    assert ev["paddle_center"] == 107.0 and ev["paddle_width"] == PADDLE_WIDE
    assert not (ev["launched"] or ev["fire"] or ev["tap"] or ev["life_lost"]) and ev["bricks_hit"] == 0 and ev["lives"] == 5
    assert all(type(v) in (bool, int, float) for v in ev.values())


def test_ram_positions_match_pixels(games):
    bx, by, pad, n_ball = [], [], [], 0
    centre = [e for r in games[0]["recs"] if (e := paddle_error(decode_ram(r["ram"]), r["span"])) is not None]
    assert len(centre) > 1000 and all(abs(c) <= 1 and w == 0 for c, w in centre), "paddle centre or width off the screen"
    for rec in games[0]["recs"]:
        s, (ball, paddle) = decode_ram(rec["ram"]), rec["px"]
        if s.in_play and 93 <= s.ball_y <= 184:  # ball entirely between the bricks and the paddle rows
            n_ball += 1
            if ball is not None:
                bx.append(ball[0] - s.ball_x)
                by.append(ball[1] - s.ball_y)
        if not (s.in_play and 184 <= s.ball_y <= 193) and paddle is not None:  # ball not overlapping the paddle
            pad.append(paddle - s.paddle_x)
    bx, by, pad = np.abs(bx), np.abs(by), np.abs(pad)
    assert n_ball > 300 and len(bx) >= 0.98 * n_ball, f"ball found in {len(bx)}/{n_ball} frames"
    msg = (
        f"exact/<=1px agreement: ball x {np.mean(bx == 0):.3f}/{np.mean(bx <= 1):.3f}, ball y {np.mean(by == 0):.3f}/"
        f"{np.mean(by <= 1):.3f} (n={len(bx)}), paddle {np.mean(pad == 0):.3f}/{np.mean(pad <= 1):.3f} (n={len(pad)})"
    )
    assert np.mean(bx <= 1) >= 0.97 and np.mean(by <= 1) >= 0.97 and np.mean(pad <= 1) >= 0.97, msg
    assert np.mean(bx == 0) >= 0.9 and np.mean(by == 0) >= 0.9 and np.mean(pad == 0) >= 0.9, msg


def replay_narrow(ale: ale_py.ALEInterface) -> None:
    """Play the recorded NARROW game on a freshly reset BreakoutNoFrameskip-v4 emulator, checking its final RAM."""
    data = np.load(NARROW)
    for a in data["frames"]:
        ale.act(ale_py.Action(int(a)))
    assert (ale.getRAM() == data["ram"]).all(), f"{NARROW.name} no longer replays to its RAM (ale-py changed?): re-record it"


def agent_step(ale: ale_py.ALEInterface, a: int) -> BreakoutState:
    """Minimal-set action `a` for 4 frames; the decoded RAM after them."""
    for _ in range(4):
        ale.act(ale.getMinimalActionSet()[a])
    return decode_ram(ale.getRAM())


def test_narrow_paddle_from_the_top_wall_until_the_ball_is_lost():
    """The reset state's 16 px paddle; a recorded game (NARROW) up to the ball's first hit of the top wall: a 12 px paddle
    (ram[97] bit 7), its screen centre at left edge + 6, as long as that ball is in play; 16 px again for the next serve."""
    env = gym.make("BreakoutNoFrameskip-v4")
    env.reset(seed=0)
    ale = env.unwrapped.ale

    def look(s: BreakoutState) -> tuple[int, tuple[float, int] | None]:
        return s.paddle_width, paddle_error(s, paddle_span(ale.getScreenRGB()))

    wide, narrow = [look(decode_ram(ale.getRAM()))], []
    replay_narrow(ale)
    s, prev, rng = decode_ram(ale.getRAM()), None, np.random.default_rng(0)
    assert (s.paddle_width, s.paddle_x, s.paddle_center, s.lives) == (PADDLE_NARROW, 8.0, 14.0, 3)
    assert paddle_point(s) == 16.0  # RAM features v1 keep the wide paddle's centre, left edge + 8
    for t in range(300):  # the scripted policy (which keeps this ball in play), then NOOPs until it is lost
        narrow.append(look(s))
        prev, s = s, agent_step(ale, policy(s, prev, rng, 0.0) if t < 150 else 0)
        if s.lives < 3:
            break
    for a in (0, 0, 3, 3, 3, 2, 2):  # serve pending, paddle moving
        wide.append(look(s))
        s = agent_step(ale, a)
    assert s.lives == 2 and {w for w, _ in narrow} == {PADDLE_NARROW} and {w for w, _ in wide} == {PADDLE_WIDE}
    for checks, n in ((wide, 5), (narrow, 100)):
        seen = [e for _, e in checks if e is not None]
        assert len(seen) >= n and all(abs(c) <= 1 and dw == 0 for c, dw in seen), seen


def test_frame_counter_wrap_ends_play():
    """ram[90] / ram[91], a 16-bit frame counter: when it wraps, the ball leaves play with no life lost, the narrow paddle
    flag clears, and FIRE serves no more (docs/breakout_ram.md). Forced here by writing the counter just before 65,536."""
    env = gym.make("BreakoutNoFrameskip-v4")
    env.reset(seed=0)
    ale = env.unwrapped.ale
    replay_narrow(ale)
    frame = int(ale.getRAM()[90])
    assert [agent_step(ale, 0).in_play for _ in range(3)] == [True] * 3 and int(ale.getRAM()[90]) == (frame + 12) % 256
    ale.setRAM(91, 255)
    ale.setRAM(90, 250)
    s = agent_step(ale, 0)
    assert s.in_play and s.paddle_width == PADDLE_NARROW
    s = agent_step(ale, 0)
    assert not s.in_play and s.lives == 3 and s.paddle_width == PADDLE_WIDE and ale.getRAM()[91] == 0
    states = [agent_step(ale, a) for _ in range(6) for a in (1,) + (0,) * 15]  # FIRE, then 15 NOOP steps, 6 times
    assert not any(s.in_play for s in states) and {s.lives for s in states} == {3} and not ale.game_over()


def test_taps_match_velocity_rule(games):
    n_vel = n_matched = n_tap = n_tap_matched = 0
    for g in games:
        recs = g["recs"]
        y = np.array([int(r["ram"][101]) for r in recs])
        vy = np.array([int8(r["ram"][103]) for r in recs])
        taps = np.array([r["ev"]["tap"] for r in recs])
        vel = np.zeros_like(taps)
        vel[1:] = (vy[:-1] > 0) & (vy[1:] < 0) & (y[1:] >= TAP_MIN_Y)
        assert (y[taps] >= TAP_MIN_Y).all() and (vy[taps] < 0).all(), "a tap away from the paddle or with the ball falling"
        t_tap, t_vel = np.nonzero(taps)[0], np.nonzero(vel)[0]
        n_tap, n_vel = n_tap + len(t_tap), n_vel + len(t_vel)
        n_matched += sum(bool(taps[t : t + 2].any()) for t in t_vel)  # detector fires on the same step or one later
        n_tap_matched += sum(bool(vel[max(t - 1, 0) : t + 1].any()) for t in t_tap)
    msg = f"velocity-rule taps found {n_matched}/{n_vel}, detector taps confirmed {n_tap_matched}/{n_tap}"
    assert n_vel >= 40 and n_matched >= 0.9 * n_vel and n_tap_matched >= 0.9 * n_tap, msg


def test_tap_detector_rule():
    det = TapDetector()
    # falling, reversal inside a frame skip (dy = 0), rising: tap one step late, once
    assert [det.update(y) for y in (113, 150, 170, 178, 178, 166, 154, 140)] == [False] * 5 + [True, False, False]
    det.reset()
    assert [det.update(y) for y in (120, 100, 80, 86, 92)] == [False] * 5  # brick/ceiling bounces: no tap
    assert [det.update(y) for y in (170, 180, 0, 170)] == [False] * 4  # 0 (no ball) clears the sign
    assert [det.update(y) for y in (186, 198, 140)] == [False, False, False]  # y < 150 after the reversal: no tap


def test_bricks_and_score(games):
    for g in games:
        cum, prev = 0.0, decode_ram(g["reset_ram"])
        for t, rec in enumerate(g["recs"]):
            s, ev = decode_ram(rec["ram"]), rec["ev"]
            cum += rec["r"]
            assert s.score == cum, f"step {t}: RAM score {s.score} != cumulative reward {cum}"
            assert (rec["r"] > 0) == (ev["bricks_hit"] > 0), f"step {t}: reward {rec['r']}, bricks_hit {ev['bricks_hit']}"
            drops = [a - b for a, b in zip(prev.bricks_per_row, s.bricks_per_row)]
            msg = f"step {t}: rows {prev.bricks_per_row} -> {s.bricks_per_row}, reward {rec['r']}"
            assert min(drops) >= 0 and sum(drops) == ev["bricks_hit"], msg
            assert sum(d * p for d, p in zip(drops, ROW_POINTS)) == rec["r"], msg  # 1/4/7 points: row 0 is the bottom
            prev = s
        hits = sum(r["ev"]["bricks_hit"] for r in g["recs"])
        assert hits > 20 and hits == 108 - decode_ram(g["recs"][-1]["ram"]).bricks_left


def test_new_wall_and_cleared_bricks_count():
    env = make()
    ale = env.unwrapped.ale
    env.reset(seed=0)
    for _ in range(20):  # serve pending; past the wall-building frames after reset
        env.step(0)
    full = ale.getRAM()[:36].copy()
    for i, v in ((0, 0x0F), (20, 0x3F), (33, 0x00)):  # row 0: 1 brick; row 2: 1 brick; row 3: 1 brick (2 bits each)
        ale.setRAM(i, v)
    ev = env.step(0)[4]["events"]
    assert ev["bricks_hit"] == 3 and decode_ram(ale.getRAM()).bricks_per_row == (17, 18, 17, 17, 18, 18)
    for i in range(36):  # a new wall appears
        ale.setRAM(i, int(full[i]))
    ev = env.step(0)[4]["events"]
    assert ev["bricks_hit"] == 0 and decode_ram(ale.getRAM()).bricks_left == 108


def test_life_loss(games):
    for g in games:
        recs = g["recs"]
        lives = [5] + [r["lives"] for r in recs]
        dec = [i for i in range(len(recs)) if lives[i + 1] < lives[i]]
        lost = [i for i, r in enumerate(recs) if r["ev"]["life_lost"]]
        assert lost == dec and all(r["ev"]["lives"] == r["lives"] for r in recs)
        assert all(not recs[i]["ev"]["in_play"] for i in lost), "ball still in play on a life-loss step"
        assert g["done"] and len(lost) == 5 and recs[-1]["lives"] == 0


def test_fire_and_launch(games):
    recs = games[0]["recs"]  # no sticky actions: every FIRE on a serve launches within its step
    serves = [t for t in range(1, len(recs)) if not recs[t - 1]["ev"]["in_play"]]
    assert len(serves) == 4 and all(recs[t]["ev"]["launched"] == (recs[t]["a"] == 1) for t in serves)
    for g in games:
        assert all(r["ev"]["fire"] == (r["a"] == 1) for r in g["recs"])
        launched = [r for r in g["recs"] if r["ev"]["launched"]]
        assert len(launched) == 5 and all(r["ev"]["fire"] and r["ev"]["in_play"] for r in launched)

    env = make()
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    evs = [env.step(int(rng.choice([0, 2, 3])))[4]["events"] for _ in range(150)]
    assert not any(e["in_play"] or e["launched"] or e["fire"] for e in evs), "the ball launched without FIRE"
    ev = env.step(1)[4]["events"]
    assert ev["fire"] and ev["launched"] and ev["in_play"] and ev["vy"] > 0


def test_full_action_space_fire_and_other_games():
    env = make(full_action_space=True)
    names = env.unwrapped.get_action_meanings()
    env.reset(seed=0)
    ev = env.step(names.index("RIGHTFIRE"))[4]["events"]
    assert ev["fire"] and ev["launched"]
    assert not env.step(names.index("RIGHT"))[4]["events"]["fire"]
    with pytest.raises(ValueError, match="pong"):
        BreakoutEventWrapper(gym.make("PongNoFrameskip-v4"))


def test_with_ppo_make_env_fire_reset():
    import ppo_atari as ppo
    env = BreakoutEventWrapper(ppo.make_env(ppo.Args(fire_reset=True, noop_max=5), seed=0)())
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and info["scripted_fire"] == 1
    assert info["events"]["in_play"] and not info["events"]["launched"] and info["events"]["lives"] == 5
