"""ppo_atari.py: GAE maths, env equivalence, smoke run, Ctrl-C + resume, bad input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import ppo_atari
from common.checkpoint import save_checkpoint
from common.contract import load_agent
from conftest import TINY, one_line_error, run_script, tb_scalars


def naive_gae(rewards, values, dones, next_value, next_done, gamma, lam):
    """Textbook GAE, one env at a time, written independently of the script's loop."""
    T, N = rewards.shape
    values_ext = np.vstack([values, next_value[None]])
    starts_ext = np.vstack([dones, next_done[None]])  # starts_ext[t] = 1 if obs t begins a new episode
    adv = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, discount = 0.0, 1.0
            for k in range(t, T):
                alive = 1.0 - starts_ext[k + 1, n]
                delta = rewards[k, n] + gamma * values_ext[k + 1, n] * alive - values_ext[k, n]
                total += discount * delta
                if not alive:
                    break
                discount *= gamma * lam
            adv[t, n] = total
    return adv, adv + values


def test_gae_matches_naive_loop():
    rng = np.random.default_rng(0)
    T, N = 17, 3
    rewards, values = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    dones = (rng.random((T, N)) < 0.2).astype(np.float64)
    next_value, next_done = rng.normal(size=N), np.array([0.0, 1.0, 0.0])
    adv, ret = ppo_atari.compute_gae(*(torch.tensor(a) for a in (rewards, values, dones, next_value, next_done)), 0.99, 0.95)
    ref_adv, ref_ret = naive_gae(rewards, values, dones, next_value, next_done, 0.99, 0.95)
    np.testing.assert_allclose(adv.numpy(), ref_adv, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret.numpy(), ref_ret, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fire_reset", [False, True])
def test_vector_and_single_env_give_identical_observations(fire_reset):
    """Same seed and actions: ale-py's AtariVectorEnv and the gymnasium make_env stack agree pixel for pixel.

    noop_max=0 because the two draw their random no-op counts from different generators; on the step a game ends
    the vector env (SameStep autoreset) returns the next game's first observation, so that step is compared with
    info["final_obs"].
    """
    args = replace(ppo_atari.Args(), noop_max=0, fire_reset=fire_reset)
    venv = ppo_atari.make_vector_env(args, 1)
    env = ppo_atari.make_env(args, seed=3)()
    vobs, _ = venv.reset(seed=3)
    obs, _ = env.reset(seed=3)
    np.testing.assert_array_equal(vobs[0], obs)
    rng = np.random.default_rng(0)
    steps, life_losses, total_reward = 0, 0, 0.0
    for _ in range(3000):
        ram = env.unwrapped.ale.getRAM()  # serve, then follow the ball with some noise, so the game scores
        a = 1 if ram[101] == 0 else int(rng.integers(0, 4)) if rng.random() < 0.2 else 2 if ram[99] - 49 > ram[72] - 39 else 3
        vobs, vrew, vterm, vtrunc, vinfo = venv.step(np.array([a]))
        obs, rew, term, trunc, info = env.step(a)
        steps += 1
        total_reward += rew
        assert vrew[0] == rew and vinfo["lives"][0] == info["lives"] or term
        if term or trunc:
            np.testing.assert_array_equal(vinfo["final_obs"][0], obs)
            break
        life_losses += bool(vterm[0])  # life_loss_info: terminated on every life loss, the game goes on
        np.testing.assert_array_equal(vobs[0], obs, err_msg=f"step {steps}")
    assert term, "the scripted game did not finish in 3000 steps"
    assert life_losses == 4 and total_reward > 0


def test_noop_starts_reach_the_same_states_in_both_envs():
    """With no-ops on (30), the two envs draw their counts from different generators (gymnasium's AtariPreprocessing
    1..30 raw frames; ale-py's vector env its own draw), so games differ game by game. What a count changes is only the
    frame-skip phase (count mod 4): before the serve the screen is static, so pixels after FIRE + 12 steps identify the
    phase and nothing more. Both envs reach all 4 phases, and every start state of the vector env is one the single
    env reaches with some count: the start-state distributions share their support."""
    acts = [1] + [0] * 12

    def after(env_step, first):
        obs = first
        for a in acts:
            obs = env_step(a)
        return obs.tobytes()

    phases = {}
    for k in range(4):  # the single env after exactly k raw no-op frames (AtariPreprocessing counts raw frames)
        env = ppo_atari.make_env(replace(ppo_atari.Args(), noop_max=0), seed=0)()
        env.reset(seed=0)
        for _ in range(k):
            env.unwrapped.ale.act(0)
        phases[after(lambda a: env.step(a)[0], None)] = k
    assert len(phases) == 4
    venv = ppo_atari.make_vector_env(replace(ppo_atari.Args(), noop_max=30), 1)
    single = ppo_atari.make_env(replace(ppo_atari.Args(), noop_max=30), seed=0)()
    seen = {"vector": set(), "single": set()}
    for s in range(24):
        venv.reset(seed=s)
        seen["vector"].add(phases.get(after(lambda a: venv.step(np.array([a]))[0][0], None), "unknown"))
        single.reset(seed=s)
        seen["single"].add(phases.get(after(lambda a: single.step(a)[0], None), "unknown"))
    assert seen == {"vector": {0, 1, 2, 3}, "single": {0, 1, 2, 3}}, seen


def test_smoke_run_writes_checkpoint_and_events(tmp_path):
    proc = run_script("ppo_atari", *TINY["ppo_atari"], "--eval-episodes", "1", cwd=tmp_path)
    (run_dir,) = (tmp_path / "runs").iterdir()
    ckpt_path = run_dir / "ppo_atari.pt"
    assert ckpt_path.exists() and list(run_dir.glob("events.out.tfevents.*"))
    assert "device: cpu" in proc.stdout and "eval: 1 games" in proc.stdout
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["script"] == "ppo_atari" and ckpt["global_step"] == 128
    assert ckpt["protocol"]["env_id"] == "BreakoutNoFrameskip-v4" and ckpt["protocol"]["fire_reset"] is False
    assert {"optimizer", "rng", "wandb_run_id"} <= set(ckpt["resume"])
    assert len(tb_scalars(run_dir, "charts/SPS")) == 2  # 2 iterations of 64 steps
    assert len(tb_scalars(run_dir, "losses/value_loss")) == 2 and len(tb_scalars(run_dir, "charts/learning_rate")) == 2
    assert len(tb_scalars(run_dir, "eval/episodic_return")) == 1

    loaded = load_agent(ckpt_path, torch.device("cpu"))
    env = loaded.module.make_env(loaded.args, seed=0)()
    obs, _ = env.reset(seed=0)
    loaded.agent.reset(2)
    actions, scores = loaded.agent.act(np.stack([obs, obs]), greedy=True)
    assert actions.dtype == np.int64 and actions.shape == (2,) and scores.shape == (2, 4)
    assert np.isfinite(scores).all() and (actions == scores.argmax(1)).all()


def test_truncation_at_the_frame_cap_bootstraps_from_the_final_observation(tmp_path, monkeypatch):
    """A game cut by the frame cap is not an end of the MDP: its reward gets gamma*V(final obs) (terminal games do not)."""
    r = ppo_atari.bootstrap_truncated(torch.tensor([1.0, 0.0, 1.0]), np.array([False, True, True]),
                                      np.array([True, False, True]), torch.tensor([2.0, 3.0, 4.0]), 0.9)  # fmt: skip
    torch.testing.assert_close(r, torch.tensor([1.0 + 0.9 * 2.0, 0.0, 1.0]))
    calls = []
    orig_protocol, orig_bootstrap = ppo_atari.env_protocol, ppo_atari.bootstrap_truncated
    monkeypatch.setattr(ppo_atari, "env_protocol", lambda a: {**orig_protocol(a), "max_num_frames_per_episode": 400})
    monkeypatch.setattr(ppo_atari, "bootstrap_truncated", lambda *a: calls.append(a[2].copy()) or orig_bootstrap(*a))
    args = replace(ppo_atari.Args(), num_envs=2, num_steps=64, num_minibatches=2, update_epochs=1, total_timesteps=384,
                   eval_episodes=0, runs_dir=str(tmp_path))  # fmt: skip
    ppo_atari.main(args)  # 100 agent steps a game: every env is cut by the cap at least once
    assert calls and sum(c.sum() for c in calls) >= 2


def test_bad_inputs_fail_with_one_line(tmp_path):
    assert "Nope-v0" in one_line_error(run_script("ppo_atari", "--env-id", "Nope-v0", cwd=tmp_path, check=False))
    assert "must be positive" in one_line_error(run_script("ppo_atari", "--total-timesteps", "-5", cwd=tmp_path, check=False))
    missing = one_line_error(run_script("ppo_atari", "--resume", "nowhere.pt", cwd=tmp_path, check=False))
    assert "nowhere.pt" in missing and "no such file" in missing
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    assert "corrupt.pt" in one_line_error(run_script("ppo_atari", "--resume", str(corrupt), cwd=tmp_path, check=False))
    foreign = save_checkpoint(tmp_path / "dqn.pt", script="dqn_per_dueling_atari", args={}, protocol={}, global_step=0,
                              model={}, resume={})  # fmt: skip
    msg = one_line_error(run_script("ppo_atari", "--resume", str(foreign), cwd=tmp_path, check=False))
    assert "dqn_per_dueling_atari" in msg


def test_wandb_offline_tracking_and_resume_keep_one_run_id(tmp_path):
    wandb_env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    run_script("ppo_atari", *TINY["ppo_atari"], "--eval-episodes", "0", "--track", cwd=tmp_path, env=wandb_env)
    (ckpt_path,) = tmp_path.glob("runs/*/ppo_atari.pt")
    run_id = torch.load(ckpt_path, weights_only=True)["resume"]["wandb_run_id"]
    (offline_run,) = ckpt_path.parent.glob(f"wandb/offline-run-*-{run_id}")
    assert list(offline_run.glob("*.wandb")), "the offline run holds its synced data"
    run_script("ppo_atari", "--resume", str(ckpt_path), "--total-timesteps", "256", "--track", cwd=tmp_path, env=wandb_env)
    assert torch.load(ckpt_path, weights_only=True)["resume"]["wandb_run_id"] == run_id
    runs = list(ckpt_path.parent.glob("wandb/offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(f"-{run_id}") for r in runs), runs  # the resume continues the same run
