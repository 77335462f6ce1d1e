"""Tests for the slot agent: slot_pretrain_atari.py (phase 1: Slot Attention shapes, slot equivariance with and without
slot positions, softmax over slots, reparameterised init, the position kernel, Hungarian matching, tracking, the ball's
visibility, fresh streams, Ctrl-C and resume) and slot_attn_atari.py (phase 2: the permutation-invariant Q head, the
--slot-checkpoint errors, a smoke run through evaluate.py with events and the overlay video, per-game slot state, resume
with the encoder frozen). The two scripts share their encoder classes as marked copies (tests/test_consistency.py)."""

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import slot_attn_atari as sa
import slot_pretrain_atari as sp
from common.contract import MASK_COLOURS, overlay_masks
from conftest import ENV, REPO, TINY, check_agent_acts, one_line_error, run_script, tb_scalars

PRETRAIN = TINY["slot_pretrain_atari"]
FLAGS = TINY["slot_attn_atari"] + ["--eval-episodes", "0"]


# ---------------------------------------------------------------- Slot Attention (shared by both scripts)
def test_shared_constants_are_the_same_in_both_scripts():
    for name in ("SLOT_DIM", "GRID", "VEL_SCALE", "PRIOR_SCALE"):
        np.testing.assert_array_equal(getattr(sa, name), getattr(sp, name), err_msg=name)


def test_slot_attention_shapes_and_softmax_over_slots():
    torch.manual_seed(0)
    attention = sa.SlotAttention(num_slots=5, dim=16, iters=2)
    slots, attn = attention(torch.randn(3, 20, 16), attention.init(3, torch.randn(3, 5, 16)))
    assert slots.shape == (3, 5, 16) and attn.shape == (3, 5, 20)
    torch.testing.assert_close(attn.sum(1), torch.ones(3, 20))  # each input is shared out among the slots
    model = sp.SlotAutoencoder(num_slots=4, iters=1)
    frames, first = torch.randint(0, 255, (2, 2, 84, 84), dtype=torch.uint8), torch.tensor([True, False])
    features, attn = model.encoder.encode(frames, torch.rand(2, 4, sa.SLOT_DIM + 4), first)
    assert features.shape == (2, 4, sa.SLOT_DIM + 4) and attn.shape == (2, 4, sa.GRID**2)
    torch.testing.assert_close(attn.sum(1), torch.ones(2, sa.GRID**2))
    c = features[..., sa.SLOT_DIM : sa.SLOT_DIM + 2]
    assert ((c >= 0) & (c <= 1)).all() and (features[0, :, sa.SLOT_DIM + 2 :] == 0).all()  # a new game: no motion yet
    assert model.decode(features[..., : sa.SLOT_DIM]).shape == (2, 2, sa.GRID, sa.GRID)


@pytest.mark.parametrize("positions", [False, True])
def test_slot_attention_is_equivariant_under_slot_permutations(positions):
    """Permuting the slots' initial means and scales, their noise and (with token positions) their initial positions
    the same way permutes the outputs (slots and attention) the same way: no slot index is special inside the module."""
    torch.manual_seed(0)
    attention, inputs, noise = sa.SlotAttention(6, 16, 3), torch.randn(2, 30, 16), torch.randn(2, 6, 16)
    grid, where = [None] * 2
    if positions:  # token positions and the slots' initial positions and scales
        grid, where = torch.rand(30, 2), torch.cat([torch.rand(2, 6, 2), torch.full((2, 6, 2), 0.2)], 2)
    perm = torch.randperm(6)
    slots, attn = attention(inputs, attention.init(2, noise), grid, where)
    with torch.no_grad():
        attention.mu.copy_(attention.mu[perm])
        attention.log_sigma.copy_(attention.log_sigma[perm])
    slots_p, attn_p = attention(inputs, attention.init(2, noise[:, perm]), grid, None if where is None else where[:, perm])
    torch.testing.assert_close(slots_p, slots[:, perm], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(attn_p, attn[:, perm], rtol=1e-4, atol=1e-6)


def test_reparameterised_init_passes_gradients_to_mu_and_sigma():
    torch.manual_seed(0)
    attention = sa.SlotAttention(4, 8, 1)
    slots, _ = attention(torch.randn(2, 10, 8), attention.init(2, torch.randn(2, 4, 8)))
    slots.square().sum().backward()
    assert attention.mu.grad.abs().sum() > 0 and attention.log_sigma.grad.abs().sum() > 0
    torch.testing.assert_close(attention.init(3), attention.mu.expand(3, -1, -1))  # no noise: the deterministic mean


def test_position_kernel_keeps_each_slot_near_its_position_and_inf_scale_turns_it_off():
    """With content-blind queries (q = 0: equal logits) only the slots' Gaussian log-kernels decide: each token goes to
    the nearest slot, and every slot's attention centroid stays by its given position. An inf scale: no kernel."""
    torch.manual_seed(0)
    attention = sa.SlotAttention(3, 8, 1)
    torch.nn.init.zeros_(attention.q.weight)
    y, x = torch.meshgrid(*[(torch.arange(20) + 0.5) / 20] * 2, indexing="ij")
    grid, centres = torch.stack([x.flatten(), y.flatten()], 1), torch.tensor([[0.2, 0.2], [0.8, 0.3], [0.5, 0.8]])
    where, inputs = torch.cat([centres, torch.full((3, 2), 0.1)], 1)[None], torch.randn(1, 400, 8)
    attn = attention(inputs, attention.init(1), grid, where)[1]  # round 1: each token to the nearest slot position
    assert (attn.argmax(1)[0] == (grid[:, None] - centres).norm(dim=2).argmin(1)).all()
    attention.iters = 3  # later rounds: each slot's own centroid and spread; it stays in its region
    attn = attention(inputs, attention.init(1), grid, where)[1]
    assert ((attn[0] / attn[0].sum(1, keepdim=True) @ grid - centres).norm(dim=1) < 0.15).all()
    unknown = torch.cat([where[..., :2], torch.full((1, 3, 2), float("inf"))], 2)  # inf scales: no kernel in round 1
    flat = attention(inputs, attention.init(1), grid, unknown)[1]
    assert (flat.amax(1) < (attn.amax(1) - 0.3)).float().mean() > 0.9  # ... and so much softer attention


def test_q_head_is_invariant_under_slot_permutations():
    torch.manual_seed(0)
    net, features = sa.QNetwork(n_actions=4, num_slots=6).eval(), torch.randn(5, 6, sa.SLOT_DIM + 4)
    q = net(features)
    assert q.shape == (5, 4)
    for _ in range(3):
        torch.testing.assert_close(net(features[:, torch.randperm(6)]), q, rtol=1e-4, atol=1e-5)
    assert (net(features[:, :, torch.randperm(sa.SLOT_DIM + 4)]) - q).abs().max() > 1e-4  # features do matter


def test_uniform_replay_samples_only_written_windows_with_naive_n_step_returns():
    """Rows tag (env, write count): every sampled start is a live non-FINAL row whose n-step window and bootstrap row
    are written, and its return and discount match a plain loop over the writes (FINAL rows end the game)."""
    rng, n, gamma, L = np.random.default_rng(0), 3, 0.9, 16
    memory, log = sa.ReplayMemory(2 * L, 2, (1, 2), n, gamma), [[], []]  # log[e]: (reward, term, trunc, final) per write
    for step in range(60):
        rewards, terms, truncs = rng.integers(0, 2, 2), rng.random(2) < 0.1, rng.random(2) < 0.03
        over = (terms | truncs) & (rng.random(2) < 0.5)
        rows = np.array([[[e, len(log[e])]] for e in range(2)], np.float32)
        final = np.array([[[e, len(log[e]) + 1]] for e in np.flatnonzero(over)], np.float32)
        memory.add(rows, np.zeros(2, int), rewards, terms, truncs, over, final)
        for e in range(2):
            log[e] += [(rewards[e], terms[e], truncs[e], False)] + [(0, False, False, True)] * int(over[e])
    obs, _, returns, discounts, boot = memory.sample(500)
    for (e, k), ret, disc, (e2, k2) in zip(obs[:, 0].astype(int), returns, discounts, boot[:, 0].astype(int)):
        assert not log[e][k][3] and len(log[e]) - L <= k < k2 < len(log[e]) and e2 == e and k2 - k <= n
        want, d = 0.0, gamma**n
        for j in range(n):
            r, term, trunc, _ = log[e][k + j]
            want += gamma**j * r
            if term or trunc:
                d = 0.0 if term else gamma ** (j + 1)
                break
        assert ret == pytest.approx(want) and disc == pytest.approx(d) and k2 == k + min(j + 1, n), (e, k)


# ---------------------------------------------------------------- matching, tracking, data, overlay
def test_hungarian_matching_on_hand_made_positions():
    """Slot 0 is the nearest to both the ball and the paddle: the optimal assignment gives it the ball, the paddle slot 1
    (nearest-slot matching would give both to slot 0). Without a ball on screen only the paddle is matched."""
    c = np.array([[[75, 188], [90, 191], [40, 100], [150, 20]]] * 2, np.float32)  # [2 frames, 4 slots, (x, y)]
    targets = np.array([[70, 185, 1, 80], [70, 185, 0, 36]], np.float32)  # frame 1: no ball on screen, paddle at x 36
    xy, present = sp.object_xy(targets)
    np.testing.assert_array_equal(xy[0], [[70, 185], [80, sp.PADDLE_Y]])
    assert present.tolist() == [[True, True], [False, True]]
    b, k, o = sp.object_pairs(((c[:, :, None] - xy[:, None]) ** 2).sum(3), present)
    assert b.tolist() == [0, 0, 1] and k.tolist() == [0, 1, 0] and o.tolist() == [0, 1, 1]
    c[0, 0], c[0, 1] = (71, 187), (77, 190)  # now within 4 px of the ball and of the paddle
    b, k, o = sp.object_pairs(((c[:1, :, None] - xy[:1, None]) ** 2).sum(3), present[:1])
    assert k.tolist() == [0, 1] and (np.linalg.norm(c[b, k] - xy[b, o], axis=1) <= sp.TRACK_PX).all()


def test_tracking_accuracy_counts_hits_per_object():
    hits = np.array([[0, 1], [0, 0], [1, 1], [1, 1], [0, 1], [1, 0]])
    assert sp.track_accuracy(hits) == pytest.approx((2 / 3, 2 / 3))
    ball, paddle = sp.track_accuracy(np.array([[1, 1]]))
    assert np.isnan(ball) and paddle == 1.0


@pytest.fixture(scope="module")
def random_play():
    return sp.collect(replace(sp.Args(), num_envs=2, play_checkpoint=None), 5, 400)


def test_collect_marks_the_ball_absent_past_the_paddle(random_play):
    """RAM targets: the ball counts only while it is drawn (top row <= 196, OCAtari's rule), and then its centre has a
    lit pixel of the frame next to it; the paddle centre is always inside the screen."""
    frames, first, targets = random_play
    assert frames.shape == (200, 2, 84, 84) and first[0].all() and targets.shape == (200, 2, 5)
    seen = targets[..., 2] > 0
    assert seen.any() and (targets[..., 1][seen] - 2 <= sp.BALL_MAX_Y).all()
    for t, e in np.argwhere(seen):
        r, c = int(targets[t, e, 1] * 84 / 210), int(targets[t, e, 0] * 84 / 160)
        assert frames[t, e, max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3].max() > 10, (t, e)  # (dim: at the edge)
    assert ((targets[..., 3] > 0) & (targets[..., 3] < 160)).all()


def test_slot_pass_fresh_streams_ignore_the_old_state_and_give_losses_and_hits(random_play):
    torch.manual_seed(0)
    model, D = sp.SlotAutoencoder(4, 2), sa.SLOT_DIM
    t, e, fresh = np.array([5, 9]), np.array([0, 1]), np.ones(2, bool)
    with torch.no_grad():
        out = [sp.slot_pass(model, random_play, t, e, s, 3, "cpu", fresh) for s in (torch.zeros(2, 4, D + 4),
                                                                                     torch.randn(2, 4, D + 4))]  # fmt: skip
    torch.testing.assert_close(out[0][3], out[1][3])  # the same slots from either state: initial slots at a fresh start
    losses, hits, x, state, attn = sp.slot_pass(model, random_play, t, e, torch.zeros(2, 4, D + 4), 3, "cpu", fresh)
    assert losses.shape == (4,) and torch.isfinite(losses).all() and (losses > 0).all() and losses.requires_grad
    assert hits.shape[1] == 2 and set(hits[:, 0]) <= {0, 1} and x.shape == (2, 2, 84, 84) and attn.shape == (2, 4, 42 * 42)


def test_overlay_writes_each_slot_colour_where_its_mask_is_1():
    frame = np.full((8, 6, 3), 100, np.uint8)
    masks = np.zeros((3, 4, 3), np.float32)  # K = 3 masks on a coarser 4x3 grid: each cell covers 2x2 frame pixels
    masks[1, 0, 0] = masks[2, 3, 2] = 1.0
    masks[0] = 1 - masks[1] - masks[2]
    out = overlay_masks(frame, masks, alpha=0.5)
    assert out.shape == frame.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:2, :2], np.broadcast_to(50 + MASK_COLOURS[1] / 2, (2, 2, 3)).astype(np.uint8))
    np.testing.assert_array_equal(out[6:, 4:], np.broadcast_to(50 + MASK_COLOURS[2] / 2, (2, 2, 3)).astype(np.uint8))
    np.testing.assert_array_equal(out[3, 3], (50 + MASK_COLOURS[0] / 2).astype(np.uint8))
    np.testing.assert_array_equal(overlay_masks(frame, masks, alpha=1.0)[0, 0], MASK_COLOURS[1].astype(np.uint8))
    grid = sp.mask_grid(np.zeros((5, 2, 84, 84), np.uint8), torch.softmax(torch.randn(5, 3, sa.GRID**2), 1), rows=2)
    assert grid.shape == (2 * 84, 4 * 84, 3) and grid.dtype == np.uint8


# ---------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("slot_pretrain")
    proc = run_script("slot_pretrain_atari", *PRETRAIN, cwd=cwd)
    (ckpt,) = cwd.glob("runs/*/slot_pretrain_atari.pt")
    return ckpt, proc.stdout


def test_pretrain_logs_the_losses_and_the_held_out_tracking(pretrained):
    ckpt, out = pretrained
    state = torch.load(ckpt, weights_only=True)
    assert state["script"] == "slot_pretrain_atari" and state["global_step"] == 4 and "update 4/4" in out
    for tag in ("slots/recon_loss", "slots/position_loss", "slots/spread_loss", "slots/contrast_loss",
                "slots/ball_track_acc", "slots/paddle_track_acc", "slots/collect_seconds"):  # fmt: skip
        assert tb_scalars(ckpt.parent, tag), tag
    assert all(0 <= v <= 1 for _, v in tb_scalars(ckpt.parent, "slots/paddle_track_acc"))
    assert {k.split(".")[0] for k in state["model"]} >= {"encoder", "decoder"}


def test_pretrain_checkpoint_is_not_an_agent(pretrained, tmp_path):
    proc = run_script("evaluate", "--checkpoint", str(pretrained[0]), "--num-games", "1", cwd=tmp_path, check=False)
    assert "make_agent" in one_line_error(proc)


@pytest.fixture(scope="module")
def smoke(pretrained, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("slot_attn")
    proc = run_script("slot_attn_atari", *FLAGS, "--slot-checkpoint", str(pretrained[0]), cwd=cwd)
    (ckpt,) = cwd.glob("runs/*/slot_attn_atari.pt")
    return ckpt, proc.stdout


def test_dqn_starts_from_the_pretrained_encoder_and_keeps_it_frozen(pretrained, smoke):
    phase_1, phase_2 = (torch.load(p, weights_only=True)["model"] for p in (pretrained[0], smoke[0]))
    encoder = [k for k in phase_2 if k.startswith("encoder.")]
    assert encoder and all(torch.equal(phase_1[k], phase_2[k]) for k in encoder)
    assert torch.load(smoke[0], weights_only=True)["resume"]["num_updates"] > 50
    assert tb_scalars(smoke[0].parent, "losses/td_loss")


def test_end_to_end_fine_tunes_the_encoder_from_replayed_inputs(pretrained, tmp_path):
    run_script("slot_attn_atari", *FLAGS, "--slot-checkpoint", str(pretrained[0]), "--end-to-end", cwd=tmp_path)
    (ckpt,) = tmp_path.glob("runs/*/slot_attn_atari.pt")
    phase_1, phase_2 = (torch.load(p, weights_only=True)["model"] for p in (pretrained[0], ckpt))
    changed = [k for k in phase_2 if k.startswith("encoder.") and not torch.equal(phase_1[k], phase_2[k])]
    assert any(k.startswith("encoder.cnn.") for k in changed) and any(".slot_attention.gru." in k for k in changed)
    check_agent_acts(ckpt)
    # a replay row holds what encode() took (last step's features, new-game flag, 2 frames): the network re-encodes it
    net = sa.make_agent(torch.load(ckpt, weights_only=True), torch.device("cpu")).net
    state, first = torch.randn(3, 6, sa.SLOT_DIM + 4), torch.tensor([True, False, False])
    frames = torch.randint(0, 256, (3, 2, 84, 84), dtype=torch.uint8)
    rows = torch.from_numpy(sa.replay_rows(None, (state, first, frames), end_to_end=True))
    assert rows.shape == (3, 6 * (sa.SLOT_DIM + 4) + 1 + 2 * 84 * 84)
    with torch.no_grad():
        features = net.encoder.encode(frames, state.half().float(), first)[0]
        torch.testing.assert_close(net(rows), net(features), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad", ["missing.pt", "checkpoints/ppo_atari_breakout.pt"])
def test_slot_checkpoint_missing_or_from_another_script_is_one_line(bad, tmp_path):
    proc = run_script("slot_attn_atari", "--slot-checkpoint", bad, cwd=tmp_path, check=False)
    line = one_line_error(proc)
    assert line.startswith("error: --slot-checkpoint:") and ("no such file" in line or "ppo_atari.py" in line), line
    assert not (tmp_path / "runs").exists()


def test_smoke_run_evaluates_with_events_and_overlay_video(smoke, tmp_path):
    ckpt = smoke[0]
    check_agent_acts(ckpt)
    proc = run_script("evaluate", "--checkpoint", str(ckpt), "--num-games", "1", "--num-envs", "1", "--events", "--video",
                      "--stall-steps", "150", "--output-dir", str(tmp_path), cwd=tmp_path)  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["checkpoint"]["script"] == "slot_attn_atari" and summary["evaluation"]["score_kind"] == "q_values"
    assert "serve_failures" in summary["events"] and "slot_attn_atari @ 250 steps" in proc.stdout
    assert (tmp_path / "videos" / "overlay.mp4").stat().st_size > 1000  # the agent's slot masks on game 0


def test_agent_slot_state_warm_starts_and_resets_per_game(smoke):
    from common.contract import load_agent

    agent = load_agent(smoke[0], torch.device("cpu")).agent
    obs = np.random.default_rng(0).integers(0, 255, (2, 4, 84, 84), dtype=np.uint8)
    agent.reset(2)
    q0 = agent.act(obs, greedy=True)[1]
    q1 = agent.act(obs, greedy=True)[1]  # warm start: the same frames, other initial slots and zero motion no more
    agent.reset_env(1)
    q2 = agent.act(obs, greedy=True)[1]
    np.testing.assert_allclose(q2[1], q0[1], rtol=1e-5, atol=1e-6)  # game slot 1 starts again from the mean
    assert not np.allclose(q1[0], q0[0]) and agent.overlay(np.zeros((210, 160, 3), np.uint8)).any()


def test_dqn_resume_keeps_the_encoder_frozen(pretrained, tmp_path):
    run_script("slot_attn_atari", *FLAGS, "--slot-checkpoint", str(pretrained[0]), cwd=tmp_path)
    (ckpt,) = tmp_path.glob("runs/*/slot_attn_atari.pt")
    first = torch.load(ckpt, weights_only=True)
    out = run_script("slot_attn_atari", "--resume", str(ckpt), "--total-timesteps", "400", cwd=tmp_path).stdout
    second = torch.load(ckpt, weights_only=True)
    assert "the replay memory starts empty" in out and second["global_step"] == 400
    encoder = [k for k in first["model"] if k.startswith("encoder.")]
    assert all(torch.equal(first["model"][k], second["model"][k]) for k in encoder)
    assert not torch.equal(first["model"]["advantage.2.weight"], second["model"]["advantage.2.weight"])


def test_pretrain_ctrl_c_saves_and_the_resume_continues(tmp_path):
    flags = PRETRAIN[:-2] + ["--total-timesteps", "40", "--log-masks-every", "1"]
    proc = subprocess.Popen([sys.executable, str(REPO / "slot_pretrain_atari.py"), *flags], cwd=tmp_path, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    for line in proc.stdout:
        if line.startswith("update 2/40"):
            os.kill(proc.pid, signal.SIGINT)
            break
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0 and "resume with: python slot_pretrain_atari.py --resume" in out, out[-2000:]
    (ckpt,) = tmp_path.glob("runs/*/slot_pretrain_atari.pt")
    done = torch.load(ckpt, weights_only=True)["global_step"]
    assert 2 <= done < 40
    out = run_script("slot_pretrain_atari", "--resume", str(ckpt), cwd=tmp_path).stdout
    assert f"update {done}/40" in out and "update 40/40" in out
    assert torch.load(ckpt, weights_only=True)["global_step"] == 40
