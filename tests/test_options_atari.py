"""options_atari.py: option selection and termination on hand-made values, dwell accounting (training and evaluate.py agree),
the termination gradient's sign, critic targets against a naive loop, potential-based shaping (it telescopes), smoke runs
(C++ env; RAM path with shaping) + evaluate with option columns, Ctrl-C + resume."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import json

import numpy as np
import pytest
import scipy
import torch

import evaluate
import options_atari as oa
from common.envs import RamInfo
from common.episodes import OptionStats
from common.ram_features import FEATURES, TAP
from conftest import TINY, check_agent_acts, interrupt_when_training, one_line_error, run_script, tb_scalars


def test_select_options_on_hand_made_values():
    q = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 5.0]])
    beta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    prev, first = torch.tensor([0, 0, 1, 2]), torch.tensor([False, False, False, True])
    options, terminated = oa.select_options(q, beta, prev, first, epsilon=0.0)
    # beta_0 = 1 ends option 0 (greedy: 1); beta_0 = 0 keeps it; beta_1 = 1 ends option 1 (greedy: 2); a new game picks
    # greedily whatever beta says, and that is no termination
    assert options.tolist() == [1, 0, 2, 2] and terminated.tolist() == [True, False, True, False]

    torch.manual_seed(0)
    n = 40_000
    q, beta = torch.tensor([[0.0, 1.0, 0.0, 0.0]]).repeat(n, 1), torch.full((n, 4), 0.3)
    prev, first = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.bool)
    options, terminated = oa.select_options(q, beta, prev, first, epsilon=0.4)
    assert terminated.float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert (options[~terminated] == 0).all()  # call-and-return: no termination, the same option
    freq = torch.bincount(options[terminated], minlength=4).float() / terminated.sum()
    np.testing.assert_allclose(freq.numpy(), [0.1, 0.7, 0.1, 0.1], atol=0.015)  # epsilon-greedy: 0.6 + 0.4 / 4 greedy


def test_upon_arrival_is_the_expected_value_of_the_sampled_next_option():
    """U(s', w) = (1 - beta) Q(s', w) + beta (V(s') - cost), V epsilon-greedy: the mean of Q(s', w') - cost [terminated]
    over the next options that select_options samples (what the n-step returns see)."""
    q, beta, eps, cost = torch.tensor([[0.5, 2.0, -1.0]]), torch.tensor([[0.25, 0.9, 0.6]]), 0.3, 0.2
    v = (1 - eps) * 2.0 + eps * (0.5 + 2.0 - 1.0) / 3
    assert oa.option_value(q, eps).item() == pytest.approx(v)
    for w in range(3):
        b = beta[0, w].item()
        u = oa.upon_arrival(q, beta, torch.tensor([w]), eps, cost).item()
        assert u == pytest.approx((1 - b) * q[0, w].item() + b * (v - cost))
        torch.manual_seed(w)
        n = 200_000
        nxt, terminated = oa.select_options(q.repeat(n, 1), beta.repeat(n, 1), torch.full((n,), w),
                                            torch.zeros(n, dtype=torch.bool), eps)  # fmt: skip
        assert (q[0, nxt] - cost * terminated).mean().item() == pytest.approx(u, abs=0.02)


def test_evaluation_agent_keeps_options_until_beta_ends_them():
    net = oa.Agent(4, 4, num_options=3)
    agent = oa.PolicyAgent(net, torch.device("cpu"), option_epsilon=1.0)
    obs = np.random.default_rng(0).integers(0, 255, size=(5, 4, 84, 84), dtype=np.uint8)
    with torch.no_grad():
        net.termination.weight.zero_(), net.termination.bias.fill_(-30.0)  # beta ~ 0: options never end
    agent.reset(5)
    agent.act(obs, greedy=False)
    first = agent.last_options.copy()
    assert first.dtype == np.int64 and first.shape == (5,)
    for _ in range(5):  # epsilon 1 would pick at random, but nothing terminates
        actions, scores = agent.act(obs, greedy=False)
        assert (agent.last_options == first).all() and scores.shape == (5, 4) and scores.dtype == np.float32
    with torch.no_grad():
        net.termination.bias.fill_(30.0)  # beta ~ 1: greedy play re-picks argmax Q_Omega every step
        greedy_option = net.critic(net.trunk(torch.as_tensor(obs))).argmax(1).numpy()
    actions, scores = agent.act(obs, greedy=True)
    assert (agent.last_options == greedy_option).all() and (actions == scores.argmax(1)).all()


# one env's steps: (option, life_start, game_start, chosen); the option continues across the lost life at step 8, a
# termination that re-picks option 1 at step 7 is no switch, and step 10 starts a new game with the same option id
SCRIPT = [(0, 0, 1, 1), (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0), (1, 0, 0, 1), (1, 0, 0, 1),
          (1, 1, 0, 0), (2, 0, 0, 1),
          (2, 1, 1, 1), (0, 0, 0, 1), (0, 0, 0, 0)]  # fmt: skip
LIVES = [[0, 0, 0, 0, 0, 0, 1, 1], [1, 2], [2, 0, 0]]  # the same steps as evaluate.py splits them: game 0 (2 lives), game 1


def test_dwell_accounting_on_a_scripted_sequence_agrees_with_evaluate():
    plain, stats = OptionStats(1, 4), OptionStats(1, 4, hits=True)
    for t, (option, life_start, game_start, chosen) in enumerate(SCRIPT):
        step = [torch.tensor([x]) for x in (option, bool(chosen), bool(life_start), bool(game_start))]
        plain.step(*step)  # the C++ env path: no paddle hits
        stats.step(*step, hit=np.array([t == 4]))  # observation 4 shows the paddle hit of step 3 (evaluate's "hits")
    assert not any("paddle_hit" in tag for tag in plain.summary())
    closed = [tuple(r) for r in np.concatenate(stats.dwells).tolist()]
    assert closed == [(0, 6), (1, 2), (1, 1), (2, 1), (2, 1)]  # runs cut at lost lives; the last run (0, 2) is open
    s = stats.summary()
    assert s["options/switches_per_life"] == 1.0 and stats.per_life == [] and stats.switches == 0  # a new window
    assert [s[f"options/{w}/selections"] for w in range(4)] == [2, 2, 2, 0]
    assert [s[f"options/{w}/time_share"] for w in range(4)] == pytest.approx([8 / 13, 3 / 13, 2 / 13, 0])
    assert s["options/0/dwell_mean"] == 6 and s["options/1/dwell_mean"] == 1.5 and s["options/2/dwell_p90"] == 1
    assert "options/3/dwell_mean" not in s and s["options/max_time_share"] == pytest.approx(8 / 13)
    assert s["options/switch_near_life_loss"] == pytest.approx(2 / 3)  # steps 9 and 11 switch 1 step into a life
    assert s["options/time_near_life_loss"] == pytest.approx(5 / 13)  # steps 8-12
    assert s["options/switch_near_paddle_hit"] == pytest.approx(1 / 3)  # step 6, 2 steps after the hit; not 9 or 11
    assert s["options/time_near_paddle_hit"] == pytest.approx(5 / 13)  # steps 4-8

    games = [[{"options": LIVES[0], "hits": [0, 0, 0, 1, 0, 0, 0, 0]}, {"options": LIVES[1]}], [{"options": LIVES[2]}]]
    rows = [[{} for _ in g] for g in games]
    for r, g in zip(rows, games):
        evaluate.option_columns(r, g)
    rows = rows[0] + rows[1]
    assert [r["option_runs"] for r in rows] == ["0:6 1:2", "1:1 2:1", "2:1 0:2"]
    assert evaluate.option_runs(rows)[:-1] == closed  # training's closed runs are evaluate.py's runs
    assert [r["option_switches"] for r in rows] == [1, 1, 1]  # the lost life continues option 1: no switch there
    assert [r["switches_near_life_start"] for r in rows] == [0, 1, 1]
    assert [r["switches_near_paddle_hit"] for r in rows] == [1, "", ""]  # a hit at step 3, the switch at step 6
    assert s["options/switch_near_paddle_hit"] * 3 == rows[0]["switches_near_paddle_hit"]  # training's count: 1 of 3
    assert [r["dominant_option"] for r in rows] == [0, 1, 0] and rows[0]["dominant_option_share"] == 0.75
    assert [r["mean_dwell"] for r in rows] == [4.0, 1.0, 1.5]


def test_termination_gradient_sign_and_margin_lengthen_options():
    q_next = torch.tensor([[[1.0, 0.9]]])  # [T, N, K]: option 0 is the greedy one, V = 1 with epsilon 0
    for option, margin, descent_raises_beta in ((1, 0.0, True), (1, 0.2, False), (0, 0.05, False)):
        logits = torch.zeros(1, 1, 2, requires_grad=True)
        oa.termination_loss(q_next, torch.sigmoid(logits), torch.tensor([[option]]), 0.0, margin, torch.ones(1, 1)).backward()
        assert (logits.grad[0, 0, option] < 0) == descent_raises_beta, (option, margin)  # descent: -grad
    assert "termination_loss(q[1:], beta[1:]" in inspect.getsource(oa.main)  # at s' = s_{t+1}, not at s_t

    def mean_duration(margin: float) -> float:
        """Learn one state's two betas by the termination gradient while running the options (Q fixed); then the mean
        number of steps between terminations."""
        torch.manual_seed(0)
        n, theta, ends = 32, torch.zeros(2, requires_grad=True), 0
        opt, q = torch.optim.SGD([theta], lr=40.0), torch.tensor([[1.0, 0.9]]).repeat(n, 1)
        option, first = torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.bool)
        for it in range(200):
            beta = torch.sigmoid(theta).expand(n, 2)
            new, terminated = oa.select_options(q, beta.detach(), option, first, 0.1)
            loss = oa.termination_loss(q[None], beta[None], option[None], 0.1, margin, (~first).float()[None])
            opt.zero_grad()
            loss.backward()
            opt.step()
            ends += terminated.sum().item() if it >= 100 else 0
            option, first = new, torch.zeros_like(first)
        return 100 * n / (ends + n)  # the open runs counted

    shorter, plain, longer = mean_duration(-0.2), mean_duration(0.0), mean_duration(0.2)
    assert shorter < 1.5 < 5 < plain < longer / 4, (shorter, plain, longer)  # measured: 1.0, 17.0, 100.0 (no termination)


def test_diversity_is_the_jensen_shannon_divergence_of_the_option_policies():
    same = torch.randn(5, 1, 4).expand(5, 3, 4)  # [B, K, A]: three copies of one policy per state
    assert torch.allclose(oa.diversity(same), torch.zeros(5), atol=1e-6)
    apart = torch.eye(4)[None] * 50.0  # four options, each one action for sure: the maximum, log K
    assert torch.allclose(oa.diversity(apart), torch.tensor([np.log(4.0)], dtype=torch.float32), atol=1e-4)
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.1, 0.3, 0.6])  # against scipy's JS distance (its square)
    js = torch.tensor(scipy.spatial.distance.jensenshannon(p.numpy(), q.numpy()) ** 2, dtype=torch.float32)
    assert torch.allclose(oa.diversity(torch.stack([p, q]).log()[None]), js[None], atol=1e-5)
    logits = torch.randn(8, 2, 4, requires_grad=True)  # the bonus's gradient pushes two policies apart
    oa.diversity(logits).mean().backward()
    with torch.no_grad():
        assert (oa.diversity(logits + 0.5 * logits.grad) > oa.diversity(logits)).all()


def test_critic_targets_match_a_naive_loop():
    rng = np.random.default_rng(0)
    T, N, K, gamma, cost, eps = 7, 3, 4, 0.9, 0.05, 0.2
    rewards, switches, dones = rng.normal(size=(T, N)), rng.random((T, N)) < 0.4, rng.random((T, N)) < 0.2
    next_done, q_last, beta_last = np.array([0.0, 1.0, 0.0]), rng.normal(size=(N, K)), rng.random((N, K))
    last_option = rng.integers(K, size=N)
    u_last = oa.upon_arrival(torch.tensor(q_last), torch.tensor(beta_last), torch.tensor(last_option), eps, cost)
    returns = oa.option_returns(*(torch.tensor(a, dtype=torch.float64) for a in (rewards, switches, dones)), u_last,
                                torch.tensor(next_done), gamma, cost)  # fmt: skip
    for n in range(N):
        v = (1 - eps) * q_last[n].max() + eps * q_last[n].mean()
        b, w = beta_last[n, last_option[n]], last_option[n]
        u = (1 - b) * q_last[n, w] + b * (v - cost)  # U(s_T, w_{T-1}), written out
        for t in range(T):
            total, discount = 0.0, 1.0
            for j in range(t, T):
                total += discount * rewards[j, n]
                if next_done[n] if j == T - 1 else dones[j + 1, n]:
                    break  # obs j+1 starts a new life: no bootstrap, no switching cost
                total += discount * gamma * (u if j == T - 1 else -cost * switches[j + 1, n])
                discount *= gamma
            assert returns[t, n].item() == pytest.approx(total, abs=1e-10), (t, n)


def play_one_game(args, steps: int = 3000):
    """A RamInfo game of make_env (the RAM path's env) under a noisy ball-tracking policy: the RAM features of each
    observation and whether the step into it ended a life."""
    env, rng = RamInfo(oa.make_env(args, 0)()), np.random.default_rng(0)
    ram, done = [env.reset(seed=3)[1]["ram"]], [False]
    offset = FEATURES.index("ball_offset")
    for _ in range(steps):
        r = ram[-1]
        a = rng.integers(4) if rng.random() < 0.3 else 1 if not r[0] else 2 if r[offset] > 0 else 3  # FIRE, RIGHT, LEFT
        _, _, term, trunc, info = env.step(a)
        ram.append(info["ram"])
        done.append(info["life_lost"] or term or trunc)
        if term or trunc:
            break
    env.close()
    return np.array(ram), np.array(done)


def test_shaping_is_potential_based_and_telescopes_over_each_life():
    """F = gamma Phi(s') - Phi(s) with Phi(end of a life) = 0: from every state s_t of a life, the discounted sum of F to
    the life's end is -Phi(s_t) (Ng, Harada & Russell 1999), so shaped values are the game's minus Phi(s) and the greedy
    actions stay the same; Phi(s_0) = 0 at a life's start (no ball), so a life's shaped return is its game return."""
    args = dataclasses.replace(oa.Args(), intercept_shaping=1.0, tap_shaping=0.3, gamma=0.9)
    ram, done = play_one_game(args)
    assert done[-1] and done.sum() == 5  # a whole game: 5 lives
    f, phi = np.zeros(len(ram)), np.zeros(len(ram))  # f[t]: F of the step into observation t; phi[t] = Phi(observation t)
    phi[0] = oa.shaping(0, ram[:1], np.ones(1), args)[1][0]
    for t in range(1, len(ram)):  # one env at a time, as main feeds the vector env's [N] arrays
        (f[t],), (phi[t],) = oa.shaping(phi[t - 1 : t], ram[t : t + 1], done[t : t + 1], args)
    starts = [0] + [t for t in range(1, len(ram)) if done[t]]  # observation t after a lost life starts the next life
    for a, b in zip(starts, starts[1:]):
        assert phi[a] == 0  # no ball in play at a life's start
        for t in range(a, b):
            tail = sum(args.gamma ** (k - t - 1) * f[k] for k in range(t + 1, b + 1))
            assert tail == pytest.approx(-phi[t], abs=1e-5), (a, t)  # Phi: float32 RAM features
    taps, descending = ram[:, TAP] > 0, ram[:, FEATURES.index("descending")] > 0
    assert taps.sum() >= 3 and phi[taps] == pytest.approx(0.3)  # the ball rises after a paddle hit: Phi = c_t
    assert (phi[descending] <= 0).all() and (phi[descending] < 0).mean() > 0.5 and (phi[~(ram[:, 0] > 0)] == 0).all()
    assert np.abs(f).max() > 0.05
    off = dataclasses.replace(args, intercept_shaping=0.0, tap_shaping=0.0)
    f_off, phi_off = oa.shaping(np.zeros(len(ram) - 1), ram[1:], done[1:], off)
    assert not f_off.any() and not phi_off.any()  # flags off: Phi = 0, no shaping


def test_smoke_run_logs_option_diagnostics_and_evaluate_adds_option_columns(trained, tmp_path):
    ckpt_path = trained("options_atari")
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["script"] == "options_atari" and ckpt["global_step"] == 128 and ckpt["model"]["critic.weight"].shape[0] == 4
    run_dir = ckpt_path.parent
    assert len(tb_scalars(run_dir, "charts/SPS")) == 8  # 8 updates of 2 envs x 8 steps, --log-interval 1
    for tag in ("losses/termination_loss", "charts/option_epsilon", "options/termination_rate", "options/max_time_share",
                "options/time_near_life_loss", "options/0/selections", "options/3/time_share"):  # fmt: skip
        assert len(tb_scalars(run_dir, tag)) == 8 and np.isfinite([v for _, v in tb_scalars(run_dir, tag)]).all(), tag
    for tag in ("dwell_mean", "dwell_p90", "termination_prob"):  # logged where an option ran / ended
        assert any(tb_scalars(run_dir, f"options/{w}/{tag}") for w in range(4)), tag
    assert not tb_scalars(run_dir, "options/time_near_paddle_hit")  # the C++ env has no RAM
    entropy = [v for w in range(4) for _, v in tb_scalars(run_dir, f"options/{w}/entropy")]  # logged where w acted
    assert entropy and all(0 <= v <= np.log(4) + 1e-6 for v in entropy)
    last = {w: tb_scalars(run_dir, f"options/{w}/time_share")[-1][1] for w in range(4)}
    assert sum(last.values()) == pytest.approx(1.0)
    raw, shaped = tb_scalars(run_dir, "charts/episodic_return"), tb_scalars(run_dir, "charts/shaped_episodic_return")
    assert [s for s, _ in raw] == [s for s, _ in shaped] and all(b <= a for (_, a), (_, b) in zip(raw, shaped))
    check_agent_acts(ckpt_path)

    out = tmp_path / "eval"
    proc = run_script("evaluate", "--checkpoint", str(ckpt_path), "--num-games", "2", "--num-envs", "2", "--events", "--plots",
                      "--stall-steps", "300", "--output-dir", str(out), cwd=tmp_path)  # fmt: skip
    assert "options: " in proc.stdout and (out / "option_timeline.png").exists() and (out / "option_dwell_hist.png").exists()
    with open(out / "per_life.csv") as f:
        lives = list(csv.DictReader(f))
    assert lives and set(evaluate.OPTION_FIELDS) <= set(lives[0])
    for r in lives:  # consistent with the game: the runs tile the life, switches are run changes
        runs = evaluate.option_runs([r])
        assert sum(n for _, n in runs) == int(r["length"]) and all(0 <= o < 4 for o, _ in runs)
        assert len(runs) - 1 <= int(r["option_switches"]) <= len(runs)  # +1: the life's first step may switch
        assert int(r["switches_near_paddle_hit"]) <= int(r["option_switches"])
        assert max((n for o, n in runs if o == int(r["dominant_option"])), default=0) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["options"]["time_share"].values()) == pytest.approx(1.0)
    assert summary["options"]["dwell"]["n"] == len(evaluate.option_runs(lives))


def test_ram_path_with_shaping_logs_paddle_hit_diagnostics(tmp_path):
    """Shaping flags: the games run in ProcessVectorEnv with RamInfo; options/..._paddle_hit logged, checkpoint evaluable."""
    flags = dict(num_envs=2, num_steps=8, log_interval=1, total_timesteps=96, eval_episodes=0, runs_dir=str(tmp_path))
    ckpt_path = oa.main(dataclasses.replace(oa.Args(), intercept_shaping=1.0, tap_shaping=0.1, option_diversity=0.3,
                                            option_diversity_cap=0.5, **flags))  # fmt: skip
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["args"]["ram_info"] and ckpt["global_step"] == 96  # implied by the shaping flags
    assert ckpt["args"]["option_diversity_cap"] == 0.5
    for tag in ("options/time_near_paddle_hit", "options/time_near_life_loss", "losses/value_loss", "options/diversity"):
        assert len(tb_scalars(ckpt_path.parent, tag)) == 6, tag
    assert all(0 <= v <= np.log(4) + 1e-6 for _, v in tb_scalars(ckpt_path.parent, "options/diversity"))  # uncapped
    for bad, message in ((dict(option_diversity=-0.1), "must be >= 0"), (dict(option_diversity_cap=-1.0), "must be >= 0"),
                         (dict(option_diversity_cap=0.4), "needs --option-diversity > 0")):  # fmt: skip
        with pytest.raises(SystemExit, match=message):  # the last: a cap on no bonus would do nothing
            oa.check_args(dataclasses.replace(oa.Args(), **bad))
    check_agent_acts(ckpt_path)  # evaluation: make_env, pixels only, the game score
    with pytest.raises(SystemExit, match="Breakout's RAM only"):
        oa.check_args(dataclasses.replace(oa.Args(), env_id="ALE/Pong-v5", tap_shaping=0.1))


def test_ctrl_c_then_resume_continues_the_option_epsilon_schedule(tmp_path):
    flags = dict(zip(TINY["options_atari"][::2], TINY["options_atari"][1::2]))
    flags |= {"--total-timesteps": "1000000", "--option-exploration-fraction": "0.001", "--eval-episodes": "0"}
    proc, out = interrupt_when_training("options_atari", *(x for kv in flags.items() for x in kv), cwd=tmp_path)
    assert proc.returncode == 0, out
    (ckpt_path,) = tmp_path.glob("runs/*/options_atari.pt")
    n = torch.load(ckpt_path, weights_only=True)["global_step"]
    assert 0 < n < 1_000_000 and n % 16 == 0 and "resume with: python options_atari.py --resume" in out
    run_script("options_atari", "--resume", str(ckpt_path), "--total-timesteps", str(n + 64), cwd=tmp_path)
    assert torch.load(ckpt_path, weights_only=True)["global_step"] == n + 64
    eps = tb_scalars(ckpt_path.parent, "charts/option_epsilon")
    assert eps[0][0] <= n < eps[-1][0] == n + 64
    for step, e in eps:  # Linear(0, 1.0, 0.001 * 1M = 1000, 0.1) of the first run, across the resume
        assert e == pytest.approx(max(1.0 - 0.9 * step / 1000, 0.1), abs=1e-6), step
    assert "--num-options must be positive" in one_line_error(run_script("options_atari", "--num-options", "0", cwd=tmp_path,
                                                                         check=False))  # fmt: skip
