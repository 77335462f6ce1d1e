"""Tests for dqn_ram_atari.py: RAM features against the emulator, vector-env semantics, replay maths, smoke run, resume."""

import os
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_events import pixels

import dqn_ram_atari as dqn
from common.contract import EPSILON_EVAL
from common.episodes import EpisodeStats
from common.events import TAP_MIN_Y, decode_ram, int8
from common.ram_features import FEATURES
from conftest import TINY as CONFTEST_TINY
from conftest import check_agent_acts, check_resume_without_replay, interrupt_when_training, one_line_error, run_script

F = {name: i for i, name in enumerate(FEATURES)}
TINY = [f for f in CONFTEST_TINY["dqn_ram_atari"] if f not in ("--total-timesteps", "400")] + ["--eval-episodes", "0"]
# documented range of every feature (RamFeatureObservation's docstring)
RANGES = {"in_play": (0, 1), "ball_x": (-0.05, 1), "ball_y": (0, 1.05), "paddle_center": (0.1, 0.95), "tap_now": (0, 1),
          "steps_since_tap": (0, 1), "descending": (0, 1), "lives": (0, 1), "bricks_left": (0, 1),
          **{f"bricks_row{r}": (0, 1) for r in range(6)}}  # fmt: skip
VELOCITIES = ("ball_dx", "ball_dy", "ram_vy", "ram_vx")


def play(seed: int, steps: int, eps: float = 0.1, env_id: str = "BreakoutNoFrameskip-v4") -> list[dict]:
    """Scripted play through make_env: FIRE on the serve, else move to the predicted intercept (the ball while it rises),
    with eps random actions; per-step records
    (observation, RAM and pixels after the step), record 0 = the reset."""
    env = dqn.make_env(replace(dqn.Args(), env_id=env_id), seed)()
    ale, rng = env.unwrapped.ale, np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    recs = [{"obs": obs, "ram": ale.getRAM().copy(), "px": pixels(ale.getScreenRGB()), "lives": info["lives"], "lost": False}]
    for _ in range(steps):
        if not obs[F["in_play"]]:
            a = 1
        elif rng.random() < eps:
            a = int(rng.integers(4))
        else:
            d = 160 * obs[F["intercept_offset"] if obs[F["descending"]] else F["ball_offset"]]  # px to move
            a = 2 if d > 4 else 3 if d < -4 else 0
        obs, r, term, trunc, info = env.step(a)
        recs.append({"obs": obs, "ram": ale.getRAM().copy(), "px": pixels(ale.getScreenRGB()), "lives": info["lives"],
                     "lost": info["life_lost"], "r": r})  # fmt: skip
        if term or trunc:
            break
    env.close()
    return recs


@pytest.fixture(scope="module")
def episodes() -> list[list[dict]]:
    return [play(0, 1500, eps=0.05), play(1, 1500, eps=0.2, env_id="ALE/Breakout-v5")]


def test_positions_match_ram_and_pixels(episodes):
    bx, by, pad, n_ball = [], [], [], 0
    for rec in (r for ep in episodes for r in ep):
        o, s, (ball, paddle) = rec["obs"], decode_ram(rec["ram"]), rec["px"]
        assert o.dtype == np.float32 and o.shape == (dqn.NUM_FEATURES,)
        assert o[F["in_play"]] == s.in_play and o[F["lives"]] * 5 == pytest.approx(s.lives)
        assert o[F["ball_x"]] * 160 == pytest.approx(s.ball_x, abs=1e-3)
        assert o[F["ball_y"]] * 210 == pytest.approx(s.ball_y, abs=1e-3)
        assert o[F["paddle_center"]] * 160 == pytest.approx(s.paddle_center, abs=1e-3)
        assert o[F["bricks_left"]] * 108 == pytest.approx(s.bricks_left, abs=1e-3)
        np.testing.assert_allclose(o[F["bricks_row0"] :] * 18, s.bricks_per_row, atol=1e-3)
        offset = (s.ball_x + 1 - s.paddle_center) / 160 if s.in_play else 0.0
        assert o[F["ball_offset"]] == pytest.approx(offset, abs=1e-6)
        if s.in_play and 93 <= s.ball_y <= 184 and ball is not None:  # the ball between the bricks and the paddle rows
            n_ball += 1
            bx.append(abs(ball[0] - o[F["ball_x"]] * 160))
            by.append(abs(ball[1] - o[F["ball_y"]] * 210))
        if paddle is not None:
            pad.append(abs(paddle + 8 - o[F["paddle_center"]] * 160))  # centre = left edge + 8 (16 px wide)
    bx, by, pad = np.array(bx), np.array(by), np.array(pad)
    assert n_ball > 200 and len(pad) > 400
    assert np.mean(bx <= 2) >= 0.97 and np.mean(by <= 2) >= 0.97 and np.mean(pad <= 2) >= 0.97, (bx.max(), by.max(), pad.max())


def test_every_feature_in_range_and_velocities_zeroed(episodes):
    checked = {"serve": 0, "after_loss": 0, "moving": 0, "losses": 0}
    for ep in episodes:
        assert sum(r["lost"] for r in ep) >= 2  # the scripted play loses lives
        for j, rec in enumerate(ep):
            o = rec["obs"]
            assert np.isfinite(o).all()
            for name, (lo, hi) in RANGES.items():
                assert lo - 1e-6 <= o[F[name]] <= hi + 1e-6, (name, o[F[name]], j)
            assert (np.abs(o) <= 1.05 + 1e-6).all(), (j, o)
            prev = ep[j - 1] if j else None
            moving = prev is not None and rec["obs"][F["in_play"]] and prev["obs"][F["in_play"]] and not rec["lost"]
            vel = o[[F[v] for v in VELOCITIES]]
            if not moving:
                assert (vel == 0).all(), (j, vel)
                checked["serve"] += not o[F["in_play"]]
                checked["after_loss"] += prev is not None and prev["lost"]
                checked["losses"] += rec["lost"]
            else:
                s = decode_ram(rec["ram"])
                dy = s.ball_y - decode_ram(prev["ram"]).ball_y
                assert vel[2] * 4 == s.vy and vel[3] * 2 == s.vx and vel[1] * 16 == pytest.approx(dy, abs=1e-4)
                checked["moving"] += 1
            if not o[F["descending"]]:
                assert o[F["intercept_offset"]] == 0
    assert min(checked.values()) >= 2 and checked["moving"] > 500, checked


def test_tap_flag_marks_paddle_reversals(episodes):
    n_taps = 0
    for ep in episodes:
        vy = [int8(r["ram"][103]) if r["ram"][101] else 0 for r in ep]
        for j, rec in enumerate(ep):
            y = int(rec["ram"][101])
            fell = j > 0 and (vy[j - 1] > 0 or (j > 1 and vy[j - 1] == 0 and vy[j - 2] > 0))
            reversal = vy[j] < 0 and y >= TAP_MIN_Y and fell
            if rec["obs"][F["tap_now"]]:
                n_taps += 1
                # a tap: the ball rises near the paddle and fell 1 or 2 steps before (TapDetector's 0/1-step lag)
                assert vy[j] < 0 and y >= TAP_MIN_Y and (vy[j - 1] > 0 or vy[j - 2] > 0), (j, vy[j - 2 : j + 1], y)
                assert rec["obs"][F["steps_since_tap"]] == 0
            elif reversal:  # every RAM velocity reversal near the paddle is flagged on that step or the next
                assert ep[j + 1]["obs"][F["tap_now"]] if j + 1 < len(ep) else True, (j, vy[j - 2 : j + 2])
            else:
                prev = ep[j - 1]["obs"][F["steps_since_tap"]] if j else 1.0
                assert rec["obs"][F["steps_since_tap"]] == pytest.approx(min(prev + 0.01, 1.0), abs=1e-6)
    assert n_taps >= 10


def test_intercept_predicts_where_the_ball_meets_the_paddle(episodes):
    errors = []
    for ep in episodes:
        for j, rec in enumerate(ep):
            o = rec["obs"]
            if o[F["descending"]] and 120 <= rec["ram"][101] < 150:  # on the way down: the x where it meets the paddle
                k = next((k for k in range(j + 1, min(j + 30, len(ep))) if ep[k]["obs"][F["tap_now"]]), None)
                if k is not None:
                    pred = (o[F["intercept_offset"]] + o[F["paddle_center"]]) * 160 - 1
                    low = max(range(j, k + 1), key=lambda m: ep[m]["ram"][101])  # the step nearest the contact
                    errors.append(abs(pred - decode_ram(ep[low]["ram"]).ball_x))
    errors = np.array(errors)
    # median 4 px here; the tail: random paddle moves that bounce the ball early, brick bounces on the way down
    assert len(errors) >= 100 and np.median(errors) <= 6 and np.mean(errors <= 8) >= 0.6, (len(errors), np.median(errors))


def test_vector_env_life_loss_and_game_over_semantics():
    args = replace(dqn.Args(), noop_max=0)
    envs = dqn.make_vector_env(args, 2)
    obs, info = envs.reset(seed=3)
    assert obs.shape == (2, dqn.NUM_FEATURES) and info["lives"].tolist() == [5, 5]
    stats = EpisodeStats(2)
    lives_lost, games, raw = 0, [], np.zeros(2)
    for _ in range(3000):  # FIRE, then stand still: each life ends fast
        actions = np.where(obs[:, F["in_play"]] > 0, 0, 1)
        before = obs.copy()
        obs, reward, term, trunc, info = envs.step(actions)
        raw += reward
        done, _ = stats.step(reward, term, trunc, info["lives"])
        lives_lost += int(term.sum())
        for i, ret, _ in done:
            games.append(ret)
            assert ret == raw[i] and info["final_obs"][i][F["lives"]] == 0 and obs[i][F["lives"]] == 1  # reset at once
            assert (info["final_obs"][i] != 0).any() and before[i][F["lives"]] == 0.2
            raw[i] = 0
        if len(games) >= 2:
            break
    envs.close()
    assert len(games) >= 2 and lives_lost >= 10


# ---------------------------------------------------------------- replay: n-step and tap targets vs naive loops
def test_replay_transitions_and_tap_targets_match_naive():
    rng = np.random.default_rng(0)
    num_envs, n, k, gamma, L = 2, 3, 4, 0.9, 60
    memory = dqn.ReplayMemory(num_envs * L, num_envs, dqn.NUM_FEATURES, n, gamma, 0.6, 1e-6, tap_horizon=k)
    streams = [[] for _ in range(num_envs)]  # per env: the slots as written (obs, reward, term, trunc, final)
    for step in range(150):
        obs = rng.random((num_envs, dqn.NUM_FEATURES)).astype(np.float32)
        obs[:, F["tap_now"]] = rng.random(num_envs) < 0.15
        rewards = rng.integers(-1, 2, num_envs).astype(np.float32)
        terms, truncs = rng.random(num_envs) < 0.1, rng.random(num_envs) < 0.04
        over = (terms & (rng.random(num_envs) < 0.4)) | truncs
        final = rng.random((num_envs, dqn.NUM_FEATURES)).astype(np.float32)
        final[:, F["tap_now"]] = rng.random(num_envs) < 0.5
        memory.add(obs, np.zeros(num_envs), rewards, terms, truncs, over, final)
        for e in range(num_envs):
            streams[e].append((obs[e], rewards[e], terms[e], truncs[e], False))
            if over[e]:
                streams[e].append((final[e], 0.0, False, False, True))
    checked = 0
    for e in range(num_envs):
        st, written = streams[e], len(streams[e])
        for j in range(max(0, written - L), written):
            leaf = e * L + j % L
            p = memory.tree.leaves(leaf)
            if st[j][4] or j + max(n, k) >= written:
                assert p == 0  # a FINAL slot, or its n-step window / tap target is not written yet
                continue
            assert p > 0
            ret, disc, boot = 0.0, None, None
            for m in range(n):
                ret += gamma**m * st[j + m][1]
                if st[j + m][2]:
                    disc = 0.0
                    break
                if st[j + m][3] or m == n - 1:
                    disc, boot = gamma ** (m + 1), st[j + m + 1][0]
                    break
            tap = 0.0
            for m in range(1, k + 1):
                tap = max(tap, float(st[j + m][0][F["tap_now"]]))
                if st[j + m][4]:
                    break
            o, _, r, d, nxt, taps = memory.transitions(np.array([leaf]))
            np.testing.assert_array_equal(o[0], st[j][0])
            assert r[0] == pytest.approx(ret) and d[0] == pytest.approx(disc) and taps[0] == tap
            if boot is not None:
                np.testing.assert_array_equal(nxt[0], boot)
            checked += 1
    assert checked > 80


def test_network_heads_and_agent_rebuild():
    torch.manual_seed(0)
    net = dqn.QNetwork(n_actions=4, obs_dim=dqn.NUM_FEATURES)
    x = torch.rand(5, dqn.NUM_FEATURES)
    q, tap = net(x)
    assert q.shape == (5, 4) and tap.shape == (5,)
    with torch.no_grad():  # hand-set heads: V = 2, A = [1, 2, 3, 6] -> Q = V + A - mean(A) = [0, 1, 2, 5] for any input
        for head, bias in ((net.value, [2.0]), (net.advantage, [1.0, 2.0, 3.0, 6.0])):
            head.weight.zero_()
            head.bias.copy_(torch.tensor(bias))
    torch.testing.assert_close(net(x)[0], torch.tensor([[0.0, 1.0, 2.0, 5.0]] * 5))
    q, tap = net(x)
    agent = dqn.make_agent({"model": net.state_dict()}, torch.device("cpu"))
    actions, scores = agent.act(x.numpy(), greedy=True)
    assert agent.score_kind == "q_values" and agent.epsilon == EPSILON_EVAL
    np.testing.assert_allclose(scores, q.detach().numpy(), rtol=1e-6)
    assert (actions == q.argmax(1).numpy()).all()


def test_refuses_other_games_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match="^error: --env-id 'ALE/Pong-v5': dqn_ram_atari.py reads Breakout's RAM only"):
        dqn.main(replace(dqn.Args(), env_id="ALE/Pong-v5", runs_dir=str(tmp_path)))
    proc = run_script("dqn_ram_atari", "--env-id", "ALE/Pong-v5", cwd=tmp_path, check=False)
    assert "Breakout's RAM only" in one_line_error(proc) and not any(tmp_path.iterdir())


# ---------------------------------------------------------------- smoke run, contract, resume
def test_smoke_contract_and_resume(tmp_path):
    N = 400
    run_script("dqn_ram_atari", *TINY, "--total-timesteps", str(N), "--exploration-fraction", "2.0", "--shaping-coef", "0.5",
               cwd=tmp_path)  # fmt: skip
    (ckpt_path,) = tmp_path.glob("runs/*/*.pt")
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["script"] == "dqn_ram_atari" and ckpt["global_step"] == N
    assert ckpt["protocol"]["observation"].startswith("Breakout RAM features v1 (22 float32")
    assert ckpt["resume"]["num_updates"] > 200

    check_agent_acts(ckpt_path)

    check_resume_without_replay(
        "dqn_ram_atari", ckpt_path, 3 * N, ("losses/td_loss", "losses/tap_bce", "charts/tap_rate", "charts/SPS")
    )


def test_ctrl_c_in_a_terminal_saves_and_leaves_no_env_process(tmp_path):
    """A terminal's Ctrl-C signals the whole process group: the games' process ignores it, the trainer saves, then
    closes it."""
    proc, out = interrupt_when_training("dqn_ram_atari", *TINY, "--total-timesteps", "1000000", cwd=tmp_path, group=True)
    assert proc.returncode == 0 and "resume with: python dqn_ram_atari.py --resume" in out, out
    (ckpt_path,) = tmp_path.glob("runs/*/*.pt")
    assert 0 < torch.load(ckpt_path, weights_only=True)["global_step"] < 1_000_000
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):  # nothing of the run is left in its process group
        os.killpg(proc.pid, 0)
