"""Tests for hybrid_atari.py: observation vs the sibling scripts, fusion and ablation, replay vs a naive buffer, smoke run,
resume, evaluate.py --ablate."""

import json
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

import dqn_ram_atari
import hybrid_atari as hy
import ppo_atari
from common.contract import EPSILON_EVAL
from common.episodes import EpisodeStats
from common.ram_features import FEATURES
from conftest import TINY as CONFTEST_TINY
from conftest import (
    check_agent_acts,
    check_resume_without_replay,
    live_replay_slots,
    naive_nstep,
    one_line_error,
    run_script,
    tally_step,
)

F = {name: i for i, name in enumerate(FEATURES)}
TINY = [f for f in CONFTEST_TINY["hybrid_atari"] if f not in ("--total-timesteps", "250")] + ["--eval-episodes", "0"]


def serve_or(obs_ram: np.ndarray, rng, p_random: float) -> np.ndarray:
    """FIRE while no ball is in play, else NOOP (each life ends fast) or, with p_random, a random action; [N] actions."""
    random = rng.integers(0, 4, size=len(obs_ram))
    return np.where(obs_ram[:, F["in_play"]] == 0, 1, np.where(rng.random(len(obs_ram)) < p_random, random, 0))


# ---------------------------------------------------------------- observation
def test_observation_is_ppo_pixels_plus_dqn_ram_features():
    envs = [mod.make_env(mod.Args(), seed=0)() for mod in (hy, ppo_atari, dqn_ram_atari)]
    (obs, info), (px, _), (ram, _) = (env.reset(seed=0) for env in envs)
    assert hy.NUM_FEATURES == len(FEATURES) and envs[0].observation_space.contains(obs)
    rng, steps, lost = np.random.default_rng(0), 0, 0
    for steps in range(1, 1500):
        assert obs["pixels"].dtype == np.uint8 and obs["pixels"].shape == (4, 84, 84)
        assert obs["ram"].dtype == np.float32 and obs["ram"].shape == (hy.NUM_FEATURES,)
        np.testing.assert_array_equal(obs["pixels"], px)
        np.testing.assert_array_equal(obs["ram"], ram)
        action = int(serve_or(obs["ram"][None], rng, 0.5)[0])
        (obs, r, term, trunc, info), (px, r2, term2, _, _), (ram, r3, _, _, info3) = (env.step(action) for env in envs)
        assert r == r2 == r3 and term == term2 and info["life_lost"] == info3["life_lost"] and info["lives"] == info3["lives"]
        lost += info["life_lost"]
        if term or trunc:
            break
    [env.close() for env in envs]
    assert lost >= 3 and steps > 100 and (obs["pixels"][0] > 0).any()  # compared over several lives, full stacks


def test_refuses_other_games_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match="^error: --env-id 'ALE/Pong-v5': hybrid_atari.py reads Breakout's RAM only"):
        hy.main(replace(hy.Args(), env_id="ALE/Pong-v5", runs_dir=str(tmp_path)))
    proc = run_script("hybrid_atari", "--env-id", "ALE/Pong-v5", "--ram-dropout", "0.5", cwd=tmp_path, check=False)
    assert "Breakout's RAM only" in one_line_error(proc) and not any(tmp_path.iterdir())
    with pytest.raises(SystemExit, match="error: --ram-dropout must be in"):
        hy.main(replace(hy.Args(), ram_dropout=1.5))


# ---------------------------------------------------------------- fusion network, ablation, modality dropout
def test_fusion_shapes_ablation_and_modality_dropout():
    torch.manual_seed(0)
    net = hy.QNetwork(n_actions=4)
    pixels, ram = torch.randint(0, 255, (5, 4, 84, 84), dtype=torch.uint8), torch.rand(5, hy.NUM_FEATURES) * 2 - 1
    q, pixel_emb, ram_emb = net(pixels, ram)
    assert q.shape == (5, 4) and pixel_emb.shape == (5, 512) and ram_emb.shape == (5, 64)
    assert isinstance(net.ram[0], torch.nn.LayerNorm) and net.fusion[0].in_features == 512 + 64
    for branch in ("ram", "pixels"):
        ablated = net(pixels, ram, ablate=branch)[0]
        assert (ablated - q).abs().max() > 1e-4, branch  # the branch matters
        hook = getattr(net, branch).register_forward_hook(lambda m, i, out: torch.zeros_like(out))
        torch.testing.assert_close(ablated, net(pixels, ram)[0])  # == feeding that branch a zero embedding
        hook.remove()
    keep = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
    dropped = net(pixels, ram, ram_keep=keep)[0]
    torch.testing.assert_close(dropped[keep > 0], q[keep > 0])
    torch.testing.assert_close(dropped[keep == 0], net(pixels, ram, ablate="ram")[0][keep == 0])

    agent = hy.make_agent({"model": net.state_dict()}, torch.device("cpu"))
    assert agent.score_kind == "q_values" and agent.epsilon == EPSILON_EVAL and agent.ablations == ("ram", "pixels")
    obs = {"pixels": pixels.numpy(), "ram": ram.numpy()}
    actions, scores = agent.act(obs, greedy=True)
    np.testing.assert_allclose(scores, q.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert actions.dtype == np.int64 and (actions == scores.argmax(1)).all()
    for branch in ("ram", "pixels"):
        agent.ablate = branch
        np.testing.assert_allclose(agent.act(obs, greedy=True)[1], net(pixels, ram, ablate=branch)[0].detach().numpy(),
                                   rtol=1e-5, atol=1e-6)  # fmt: skip


def test_priorities_come_from_the_undropped_q_values():
    """Modality dropout changes the online Q(s, a) the loss trains, not the TD errors PER samples by."""
    torch.manual_seed(0)
    net = hy.QNetwork(n_actions=4)
    pixels, ram = torch.randint(0, 255, (6, 4, 84, 84), dtype=torch.uint8), torch.rand(6, hy.NUM_FEATURES)
    actions, target = torch.tensor([0, 1, 2, 3, 0, 1]), torch.rand(6)
    keep = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    dropped_q = net(pixels, ram, ram_keep=keep)[0].gather(1, actions[:, None]).squeeze(1)
    full_q = net(pixels, ram)[0].gather(1, actions[:, None]).squeeze(1)
    assert (dropped_q - full_q)[keep == 0].abs().min() > 1e-5  # dropout does change Q(s, a) here
    td = hy.priority_td_errors(net, pixels, ram, actions, target, dropped_q, keep)
    torch.testing.assert_close(td, (target - full_q).abs().detach())
    assert dropped_q.requires_grad and not td.requires_grad


def test_replay_memory_is_checked_against_free_memory(tmp_path):
    proc = run_script("hybrid_atari", "--buffer-size", str(10**13), cwd=tmp_path, check=False)
    assert one_line_error(proc).startswith("error: --buffer-size 10000000000000 needs") and not any(tmp_path.iterdir())


# ---------------------------------------------------------------- replay vs a naive buffer on the real envs
def test_replay_stacks_and_ram_match_naive_buffer(monkeypatch):
    """The training loop's vector env (3 games, 600-frame cap: ends by truncation and game over), a memory that wraps;
    every sampleable slot's pixels, RAM features, n-step return, discount and bootstrap obs equal the naive buffer's."""
    orig = hy.env_protocol
    monkeypatch.setattr(hy, "env_protocol", lambda a: {**orig(a), "max_num_frames_per_episode": 600})
    args = replace(hy.Args(), noop_max=5)
    num_envs, n, gamma, L = 3, 3, 0.9, 120
    envs = gym.vector.SyncVectorEnv([hy.make_env(args, i, i) for i in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)  # fmt: skip
    memory = hy.ReplayMemory(L * num_envs, num_envs, 4, n, gamma, alpha=0.6, eps=1e-6)
    stats = EpisodeStats(num_envs)
    naive, written = [[] for _ in range(num_envs)], np.zeros(num_envs, dtype=int)
    rng = np.random.default_rng(0)
    obs, _ = envs.reset(seed=0)
    first, ends = np.ones(num_envs, dtype=bool), {"game_over": 0, "truncated": 0, "life": 0}
    for _ in range(330):
        actions = serve_or(obs["ram"], rng, np.array([0.1, 0.5, 0.1]))  # game 2 follows the ball: truncated at the cap
        offset = obs["ram"][2, F["ball_offset"]]
        actions[2] = actions[2] if obs["ram"][2, F["in_play"]] == 0 else 2 if offset > 0.02 else 3 if offset < -0.02 else 0
        next_obs, reward, game_end, trunc, infos = envs.step(actions)
        term = game_end | infos.get("life_lost", False)
        games, _ = stats.step(reward, term, trunc, infos["lives"])
        over = np.isin(np.arange(num_envs), [i for i, _, _ in games])
        np.testing.assert_array_equal(over, game_end | trunc)
        final = {k: np.stack([o[k] for o in infos["final_obs"][over]]) for k in obs} if over.any() else None
        memory.add(obs, actions, reward, term, trunc, first, over, final)
        for e in range(num_envs):
            nxt = infos["final_obs"][e] if over[e] else {k: v[e] for k, v in next_obs.items()}
            naive[e].append(dict(px=obs["pixels"][e].copy(), ram=obs["ram"][e].copy(), a=actions[e], r=np.sign(reward[e]),
                                 term=term[e], trunc=trunc[e], next=nxt, slot=written[e]))  # fmt: skip
            tally_step(ends, written, e, over, term, trunc)
        obs, first = next_obs, over
    envs.close()
    assert ends["game_over"] and ends["truncated"] and ends["life"] and written.min() > 2 * L, (ends, written)

    checked = 0
    for leaf, traj, j in live_replay_slots(memory, naive, written, L, n):
        ret, disc, boot = naive_nstep(traj, j, n, gamma)
        px, ram, a, r, d, next_px, next_ram = memory.transitions(np.array([leaf]))
        np.testing.assert_array_equal(px[0], traj[j]["px"])
        np.testing.assert_array_equal(ram[0], traj[j]["ram"])
        assert a[0] == traj[j]["a"] and r[0] == pytest.approx(ret) and d[0] == pytest.approx(disc)
        if boot is not None:
            np.testing.assert_array_equal(next_px[0], boot["pixels"])
            np.testing.assert_array_equal(next_ram[0], boot["ram"])
        checked += 1
    assert checked > 0.8 * num_envs * (L - 10) and (memory.tree.leaves(np.arange(L * num_envs)) > 0).sum() == checked


# ---------------------------------------------------------------- smoke run, contract, resume, evaluate --ablate
def test_smoke_contract_resume_and_ablated_evaluation(tmp_path):
    N = 250
    run_script("hybrid_atari", *TINY, "--total-timesteps", str(N), "--exploration-fraction", "2.0", cwd=tmp_path)
    (ckpt_path,) = tmp_path.glob("runs/*/*.pt")
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["script"] == "hybrid_atari" and ckpt["global_step"] == N
    assert ckpt["protocol"]["observation"] == "grey 84x84 uint8 x4 + Breakout RAM features v1 (22 float32)"
    assert ckpt["resume"]["num_updates"] > 150

    check_agent_acts(ckpt_path)

    tags = ("losses/td_loss", "charts/pixel_embedding_norm", "charts/ram_embedding_norm", "charts/SPS")
    logged = check_resume_without_replay("hybrid_atari", ckpt_path, 2 * N, tags)
    assert all(min(v) > 0 for v in logged.values())

    for branch in ("ram", "pixels"):
        run_script("evaluate", "--checkpoint", str(ckpt_path), "--num-games", "1", "--num-envs", "1", "--stall-steps", "100",
                   "--ablate", branch, "--output-dir", str(tmp_path / branch), cwd=tmp_path)  # fmt: skip
        summary = json.loads((tmp_path / branch / "summary.json").read_text())
        assert summary["evaluation"]["ablate"] == branch and summary["pooled"]["n"] == 1
    proc = run_script("evaluate", "--checkpoint", str(ckpt_path), "--ablate", "bricks", cwd=tmp_path, check=False)
    assert "no such input branch" in one_line_error(proc)
