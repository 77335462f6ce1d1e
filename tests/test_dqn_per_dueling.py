"""Tests for dqn_per_dueling_atari.py: sum tree, frame store, n-step / dueling / Double-DQN maths, smoke run, resume."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import dqn_per_dueling_atari as dqn
from common.contract import EPSILON_EVAL, load_agent
from common.episodes import EpisodeStats
from common.run import check_free_memory
from conftest import TINY as CONFTEST_TINY
from conftest import live_replay_slots, naive_nstep, one_line_error, run_script, tally_step, tb_scalars

SCRIPT = Path(dqn.__file__).resolve()
TINY = [f for f in CONFTEST_TINY["dqn_per_dueling_atari"] if f not in ("--total-timesteps", "250")] + ["--eval-episodes", "0"]


# ---------------------------------------------------------------- sum tree
def test_sum_tree_sampling_is_proportional():
    rng = np.random.default_rng(0)
    priorities = np.array([0.0, 1.0, 2.0, 0.5, 0.0, 4.0, 0.25, 3.0, 1.5, 0.0, 6.0])
    tree = dqn.SumTree(len(priorities))
    tree.update(np.arange(len(priorities)), rng.random(len(priorities)))
    tree.update(rng.permutation(len(priorities)), 0.0)
    tree.update(np.arange(len(priorities)), priorities)  # overwrites: only the last values count
    assert tree.nodes[1] == pytest.approx(priorities.sum())
    np.testing.assert_array_equal(tree.leaves(np.arange(len(priorities))), priorities)
    np.random.seed(0)
    counts = np.zeros(len(priorities))
    for _ in range(500):  # 500 batches of 64: many independent stratified draws
        counts += np.bincount(tree.sample(64), minlength=len(priorities))
    n = counts.sum()
    assert counts[priorities == 0].sum() == 0  # zero priority: never sampled
    nz = priorities > 0

    def chi2(p):
        expected = n * p[nz] / p[nz].sum()
        return ((counts[nz] - expected) ** 2 / expected).sum()

    # df = 7: a correct sampler exceeds 40 with probability < 1e-5 (stratified draws sit well below the multinomial's)
    assert chi2(priorities) < 40, chi2(priorities)
    # and the test has power: sampling by p^0.9 instead of p, or uniformly over the non-zero leaves, fails it
    assert chi2(priorities**0.9) > 100, chi2(priorities**0.9)
    assert chi2(np.ones_like(priorities)) > 1000, chi2(np.ones_like(priorities))


def test_sum_tree_updates_and_total():
    rng = np.random.default_rng(1)
    tree = dqn.SumTree(1000)
    ref = np.zeros(1000)
    for _ in range(50):
        idx = rng.integers(0, 1000, size=40)
        values = rng.random(40)
        idx, first = np.unique(idx, return_index=True)
        tree.update(idx, values[first])
        ref[idx] = values[first]
        assert tree.nodes[1] == pytest.approx(ref.sum(), rel=1e-12)
    # every internal node is the sum of its children
    nodes, size = tree.nodes, tree.size
    np.testing.assert_allclose(nodes[1:size], nodes[2 : 2 * size : 2] + nodes[3 : 2 * size : 2])
    # find: the leaf whose cumulative interval holds u
    u = rng.random(200) * ref.sum()
    np.testing.assert_array_equal(tree.find(u), np.searchsorted(np.cumsum(ref), u, side="right"))


def test_importance_weights_match_brute_force():
    memory = dqn.ReplayMemory(600, 2, 4, 3, 0.99, alpha=0.6, eps=1e-6)
    rng = np.random.default_rng(2)
    valid = rng.choice(600, size=400, replace=False)
    raw = rng.random(400) * 5 + 0.01
    memory.tree.update(valid, raw**0.6)
    np.random.seed(3)
    beta = 0.55
    idx, _, weights, priorities = memory.sample(32, beta)
    p = np.zeros(600)
    p[valid] = raw**0.6
    probs = p / p.sum()  # P(i) = p_i^alpha / sum_k p_k^alpha
    w = (len(valid) * probs[idx]) ** -beta  # (N * P(i))^-beta
    np.testing.assert_allclose(weights, w / w.max(), rtol=1e-6)
    np.testing.assert_allclose(priorities, (p[idx]) ** (1 / 0.6), rtol=1e-9)


# ---------------------------------------------------------------- frame store vs a naive buffer on the real env
def test_frame_store_matches_naive_buffer(monkeypatch):
    """Real AtariVectorEnv (3 envs, 800-frame cap so games end by truncation and by game over), tiny memory that wraps.

    The naive buffer keeps full (obs, next_obs) stacks as the env returned them; every sampleable slot's rebuilt obs,
    n-step return, discount and bootstrap obs must equal the naive ones.
    """
    orig = dqn.env_protocol
    monkeypatch.setattr(dqn, "env_protocol", lambda a: {**orig(a), "max_num_frames_per_episode": 800})
    args = dqn.Args()
    num_envs, n, gamma, L = 3, 3, 0.9, 250
    envs = dqn.make_vector_env(args, num_envs)
    memory = dqn.ReplayMemory(L * num_envs, num_envs, 4, n, gamma, alpha=0.6, eps=1e-6)
    stats = EpisodeStats(num_envs)
    naive = [[] for _ in range(num_envs)]  # per env: dicts of one transition, with the slot the memory should use
    written = np.zeros(num_envs, dtype=int)
    rng = np.random.default_rng(0)
    obs, _ = envs.reset(seed=0)
    first = np.ones(num_envs, dtype=bool)
    ends = {"game_over": 0, "truncated": 0, "life": 0}
    for _ in range(700):
        actions = rng.integers(0, 4, size=num_envs)
        next_obs, reward, term, trunc, infos = envs.step(actions)
        games, _ = stats.step(reward, term, trunc, infos["lives"])
        over = np.zeros(num_envs, dtype=bool)
        over[[i for i, _, _ in games]] = True
        final = infos["final_obs"][:, -1] if over.any() else None
        memory.add(obs[:, -1], actions, reward, term, trunc, first, over, final)
        for e in range(num_envs):
            nxt = infos["final_obs"][e] if over[e] else next_obs[e]
            naive[e].append(dict(obs=obs[e].copy(), a=actions[e], r=np.sign(reward[e]), term=term[e], trunc=trunc[e],
                                 next=nxt.copy(), slot=written[e]))  # fmt: skip
            tally_step(ends, written, e, over, term, trunc)
        obs, first = next_obs, over
    envs.close()
    assert ends["game_over"] and ends["truncated"] and ends["life"] and written.min() > 2 * L  # wrapped twice

    checked = 0
    for leaf, traj, j in live_replay_slots(memory, naive, written, L, n):
        ret, disc, boot = naive_nstep(traj, j, n, gamma)
        o, a, r, d, nxt = memory.transitions(np.array([leaf]))
        np.testing.assert_array_equal(o[0], traj[j]["obs"])
        assert a[0] == traj[j]["a"] and r[0] == pytest.approx(ret) and d[0] == pytest.approx(disc)
        if boot is not None:
            np.testing.assert_array_equal(nxt[0], boot)
        checked += 1
    assert checked > 0.8 * num_envs * (L - 10) and (memory.tree.leaves(np.arange(L * num_envs)) > 0).sum() == checked


# ---------------------------------------------------------------- n-step, dueling, Double DQN
def test_nstep_targets_match_naive_loop():
    rng = np.random.default_rng(4)
    B, n, gamma = 500, 4, 0.97
    rewards = rng.integers(-1, 2, size=(B, n)).astype(np.int8)
    terms, truncs = rng.random((B, n)) < 0.15, rng.random((B, n)) < 0.1
    returns, steps, discounts = dqn.nstep_targets(rewards, terms, truncs, gamma)
    for b in range(B):
        ret, k = 0.0, 0
        while True:
            ret += gamma**k * rewards[b, k]
            k += 1
            if terms[b, k - 1]:
                disc = 0.0
                break
            if truncs[b, k - 1] or k == n:
                disc = gamma**k
                break
        assert returns[b] == pytest.approx(ret, abs=1e-6) and steps[b] == k and discounts[b] == pytest.approx(disc)
    assert (discounts == 0).any() and (steps < n).any() and (steps == n).any()


def test_dueling_aggregation():
    torch.manual_seed(0)
    net = dqn.QNetwork(n_actions=4)
    x = torch.randint(0, 255, (5, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():  # hand-set heads: V = 2, A = [1, 2, 3, 6] -> Q = V + A - mean(A) = [0, 1, 2, 5] for any input
        for head, bias in ((net.value[2], [2.0]), (net.advantage[2], [1.0, 2.0, 3.0, 6.0])):
            head.weight.zero_()
            head.bias.copy_(torch.tensor(bias))
    torch.testing.assert_close(net(x), torch.tensor([[0.0, 1.0, 2.0, 5.0]] * 5))


def test_double_dqn_target():
    online = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, 4.0]])
    target = torch.tensor([[10.0, 20.0, 30.0], [7.0, 8.0, 9.0]])
    returns, discounts = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.0])
    y = dqn.double_dqn_target(online, target, returns, discounts)
    # online argmax picks 1 and 2; the target net evaluates them (vanilla DQN would take max target = 30)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.5 * 20.0, 2.0]))


# ---------------------------------------------------------------- memory and argument checks
def test_memory_budget_and_refusal(tmp_path):
    assert dqn.replay_bytes(1_000_000, 8) / 1_000_000 <= 7500  # <= 7.5 KB per transition (CleanRL dqn_atari: 28 KB)
    memory = dqn.ReplayMemory(20_000, 4, 4, 3, 0.99, 0.6, 1e-6)
    frames, no = np.full((4, 84, 84), 7, dtype=np.uint8), np.zeros(4, dtype=bool)
    for _ in range(5_001):  # filled and wrapped
        memory.add(frames, np.zeros(4), np.ones(4), no, no, no, no, None)
    assert len(memory) == 20_000 and memory.nbytes == dqn.replay_bytes(20_000, 4) and memory.nbytes / len(memory) <= 7500
    per_slot = 84 * 84 + 3 + 32
    with pytest.raises(SystemExit) as e:
        check_free_memory(dqn.Args(), "buffer_size", dqn.replay_bytes(1_000_000, 8), per_slot, available=4 * 10**9)
    msg = str(e.value)
    assert msg.startswith("error: --buffer-size 1000000") and "\n" not in msg
    suggested = int(msg.split("try --buffer-size ")[1])
    assert 0 < suggested < 1_000_000
    check_free_memory(dqn.Args(), "buffer_size", dqn.replay_bytes(suggested, 8), per_slot, available=4 * 10**9)  # it fits
    # the script refuses in one line before it creates anything
    proc = run(tmp_path, "--buffer-size", str(10**13), check=False)
    assert one_line_error(proc).startswith("error: --buffer-size 10000000000000 needs") and not any(tmp_path.iterdir())


@pytest.mark.parametrize("flag,value", [("total_timesteps", -5), ("batch_size", 0), ("end_e", 1.5), ("learning_starts", -1)])
def test_bad_flags_exit_with_one_line(flag, value):
    with pytest.raises(SystemExit, match=f"error: --{flag.replace('_', '-')}"):
        dqn.main(replace(dqn.Args(), **{flag: value}))


def test_resume_refuses_foreign_checkpoint(tmp_path):
    from common.checkpoint import save_checkpoint

    foreign = save_checkpoint(tmp_path / "p.pt", script="ppo_atari", args={}, protocol={}, global_step=1, model={}, resume={})
    with pytest.raises(SystemExit, match="not dqn_per_dueling_atari.py"):
        dqn.main(replace(dqn.Args(), resume=str(foreign)))
    stripped = save_checkpoint(tmp_path / "s.pt", script=dqn.__name__, args={}, protocol={}, global_step=1, model={})
    with pytest.raises(SystemExit, match="no resume state"):
        dqn.main(replace(dqn.Args(), resume=str(stripped)))


# ---------------------------------------------------------------- smoke run, contract, resume, Ctrl-C
def run(cwd, *flags, check=True):
    return run_script("dqn_per_dueling_atari", *flags, cwd=cwd, check=check)


def test_smoke_contract_and_resume(tmp_path):
    N = 250
    run(tmp_path, *TINY, "--total-timesteps", str(N), "--exploration-fraction", "2.0", "--save-buffer")
    (ckpt_path,) = tmp_path.glob("runs/*/*.pt")  # exactly one checkpoint; the replay file is not a *.pt
    assert (ckpt_path.parent / "dqn_per_dueling_atari.replay").exists()
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["script"] == "dqn_per_dueling_atari" and ckpt["global_step"] == N
    first_updates = ckpt["resume"]["num_updates"]
    assert first_updates > 100

    loaded = load_agent(ckpt_path, torch.device("cpu"))
    agent = loaded.agent
    assert agent.score_kind == "q_values" and agent.epsilon == EPSILON_EVAL
    env = loaded.module.make_env(loaded.args, seed=0)()
    obs, _ = env.reset(seed=0)
    n_actions = env.action_space.n
    agent.reset(2)
    batch = np.stack([obs, env.step(1)[0]])
    env.close()
    for greedy in (True, False):
        actions, q = agent.act(batch, greedy=greedy)
        assert actions.dtype == np.int64 and actions.shape == (2,) and ((0 <= actions) & (actions < n_actions)).all()
        assert q.dtype == np.float32 and q.shape == (2, n_actions) and np.isfinite(q).all()
    agent.epsilon = 1.0
    assert len({int(agent.act(batch, greedy=False)[0][0]) for _ in range(40)}) > 1  # epsilon-greedy explores

    out = run(tmp_path, "--resume", str(ckpt_path), "--total-timesteps", str(2 * N)).stdout
    assert f"at global_step {N} of {2 * N}" in out and "starts empty" not in out  # the replay memory came back
    ckpt2 = torch.load(ckpt_path, weights_only=True)
    assert ckpt2["global_step"] == 2 * N and ckpt2["resume"]["num_updates"] >= first_updates + N - 10  # learning went on
    # epsilon continues the first run's schedule (over 2.0 * N steps); beta had reached 1 at N and stays there
    eps, beta = tb_scalars(ckpt_path.parent, "charts/epsilon"), tb_scalars(ckpt_path.parent, "charts/beta")
    assert eps[0][0] <= N < eps[-2][0] and [s for s, _ in beta] == [s for s, _ in eps]
    for (step, e), (_, b) in zip(eps, beta):
        assert e == pytest.approx(max(1.0 - 0.99 * step / (2.0 * N), 0.01), abs=1e-6), step
        assert b == pytest.approx(min(0.4 + 0.6 * step / N, 1.0), abs=1e-6), step
    for tag in ("losses/td_loss", "losses/q_values", "charts/mean_priority", "charts/SPS"):
        assert np.isfinite([v for _, v in tb_scalars(ckpt_path.parent, tag)]).all() and tb_scalars(ckpt_path.parent, tag)
