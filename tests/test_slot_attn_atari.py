"""Tests for slot_attn_atari.py: Slot Attention (shapes, slot equivariance, softmax over slots, reparameterised init), the
permutation-invariant Q head, Hungarian matching, the mask overlay, a smoke run through evaluate.py (events, overlay
video), resume without re-pre-training, Ctrl-C in phase 1."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import slot_attn_atari as sa
from conftest import ENV, REPO, TINY, check_agent_acts, run_script, tb_scalars

FLAGS = TINY["slot_attn_atari"] + ["--eval-episodes", "0"]


# ---------------------------------------------------------------- Slot Attention
def test_slot_attention_shapes_and_softmax_over_slots():
    torch.manual_seed(0)
    attention = sa.SlotAttention(num_slots=5, dim=16, iters=2)
    slots, attn = attention(torch.randn(3, 20, 16), attention.init(3, torch.randn(3, 5, 16)))
    assert slots.shape == (3, 5, 16) and attn.shape == (3, 5, 20)
    torch.testing.assert_close(attn.sum(1), torch.ones(3, 20))  # each input is shared out among the slots
    encoder = sa.SlotEncoder(num_slots=4, iters=1)
    frames, first = torch.randint(0, 255, (2, 2, 84, 84), dtype=torch.uint8), torch.tensor([True, False])
    features, attn = encoder.encode(frames, torch.rand(2, 4, sa.SLOT_DIM + 4), first)
    assert features.shape == (2, 4, sa.SLOT_DIM + 4) and attn.shape == (2, 4, sa.GRID**2)
    c = features[..., sa.SLOT_DIM : sa.SLOT_DIM + 2]
    assert ((c >= 0) & (c <= 1)).all() and (features[0, :, sa.SLOT_DIM + 2 :] == 0).all()  # a new game: no motion yet
    assert encoder.decode(features[..., : sa.SLOT_DIM]).shape == (2, 2, sa.GRID, sa.GRID)


def test_slot_attention_is_equivariant_under_slot_permutations():
    """Permuting the slots' initial means and scales and their noise the same way permutes the outputs (slots and
    attention) the same way: no slot index is special inside the module."""
    torch.manual_seed(0)
    attention, inputs, noise = sa.SlotAttention(6, 16, 3), torch.randn(2, 30, 16), torch.randn(2, 6, 16)
    perm = torch.randperm(6)
    slots, attn = attention(inputs, attention.init(2, noise))
    with torch.no_grad():
        attention.mu.copy_(attention.mu[perm])
        attention.log_sigma.copy_(attention.log_sigma[perm])
    slots_p, attn_p = attention(inputs, attention.init(2, noise[:, perm]))
    torch.testing.assert_close(slots_p, slots[:, perm], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(attn_p, attn[:, perm], rtol=1e-4, atol=1e-6)


def test_reparameterised_init_passes_gradients_to_mu_and_sigma():
    torch.manual_seed(0)
    attention = sa.SlotAttention(4, 8, 1)
    slots, _ = attention(torch.randn(2, 10, 8), attention.init(2, torch.randn(2, 4, 8)))
    slots.square().sum().backward()
    assert attention.mu.grad.abs().sum() > 0 and attention.log_sigma.grad.abs().sum() > 0
    torch.testing.assert_close(attention.init(3), attention.mu.expand(3, -1, -1))  # no noise: the deterministic mean


def test_q_head_is_invariant_under_slot_permutations():
    torch.manual_seed(0)
    net, features = sa.QNetwork(n_actions=4, num_slots=6).eval(), torch.randn(5, 6, sa.SLOT_DIM + 4)
    q = net(features)
    assert q.shape == (5, 4)
    for _ in range(3):
        torch.testing.assert_close(net(features[:, torch.randperm(6)]), q, rtol=1e-4, atol=1e-5)
    assert (net(features[:, :, torch.randperm(sa.SLOT_DIM + 4)]) - q).abs().max() > 1e-4  # features do matter


# ---------------------------------------------------------------- matching, overlay
def test_hungarian_matching_on_hand_made_positions():
    """Slot 0 is the nearest to both the ball and the paddle: the optimal assignment gives it the ball, the paddle slot 1
    (nearest-slot matching would give both to slot 0). Without a ball in play only the paddle is matched."""
    c = np.array([[[75, 188], [90, 191], [40, 100], [150, 20]]] * 2, np.float32)  # [2 frames, 4 slots, (x, y)]
    targets = np.array([[70, 185, 1, 80], [70, 185, 0, 36]], np.float32)  # frame 1: no ball in play, paddle at x 36
    xy, present = sa.object_xy(targets)
    np.testing.assert_array_equal(xy[0], [[70, 185], [80, sa.PADDLE_Y]])
    assert present.tolist() == [[True, True], [False, True]]
    b, k, o = sa.object_pairs(((c[:, :, None] - xy[:, None]) ** 2).sum(3), present)
    assert b.tolist() == [0, 0, 1] and k.tolist() == [0, 1, 0] and o.tolist() == [0, 1, 1]
    c[0, 0], c[0, 1] = (71, 187), (77, 190)  # now within 4 px of the ball and of the paddle
    b, k, o = sa.object_pairs(((c[:1, :, None] - xy[:1, None]) ** 2).sum(3), present[:1])
    assert k.tolist() == [0, 1] and (np.linalg.norm(c[b, k] - xy[b, o], axis=1) <= sa.TRACK_PX).all()


def test_tracking_accuracy_counts_hits_per_object():
    hits = np.array([[0, 1], [0, 0], [1, 1], [1, 1], [0, 1], [1, 0]])
    assert sa.track_accuracy(hits) == pytest.approx((2 / 3, 2 / 3))
    ball, paddle = sa.track_accuracy(np.array([[1, 1]]))
    assert np.isnan(ball) and paddle == 1.0


def test_overlay_writes_each_slot_colour_where_its_mask_is_1():
    frame = np.full((8, 6, 3), 100, np.uint8)
    masks = np.zeros((3, 4, 3), np.float32)  # K = 3 masks on a coarser 4x3 grid: each cell covers 2x2 frame pixels
    masks[1, 0, 0] = masks[2, 3, 2] = 1.0
    masks[0] = 1 - masks[1] - masks[2]
    out = sa.overlay_masks(frame, masks, alpha=0.5)
    assert out.shape == frame.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:2, :2], np.broadcast_to(50 + sa.COLOURS[1] / 2, (2, 2, 3)).astype(np.uint8))
    np.testing.assert_array_equal(out[6:, 4:], np.broadcast_to(50 + sa.COLOURS[2] / 2, (2, 2, 3)).astype(np.uint8))
    np.testing.assert_array_equal(out[3, 3], (50 + sa.COLOURS[0] / 2).astype(np.uint8))
    np.testing.assert_array_equal(sa.overlay_masks(frame, masks, alpha=1.0)[0, 0], sa.COLOURS[1].astype(np.uint8))
    grid = sa.mask_grid(np.zeros((5, 2, 84, 84), np.uint8), torch.softmax(torch.randn(5, 3, sa.GRID**2), 1), rows=2)
    assert grid.shape == (2 * 84, 4 * 84, 3) and grid.dtype == np.uint8


# ---------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("slot_attn")
    proc = run_script("slot_attn_atari", *FLAGS, cwd=cwd)
    (ckpt,) = cwd.glob("runs/*/slot_attn_atari.pt")
    return ckpt, proc.stdout


def test_smoke_run_logs_slots_and_evaluates_with_events_and_overlay_video(smoke, tmp_path):
    ckpt, out = smoke
    state = torch.load(ckpt, weights_only=True)
    assert state["resume"]["pretrain_updates"] == 4 and state["resume"]["num_updates"] > 50 and "pretrain update 4/4" in out
    for tag in ("slots/recon_loss", "slots/position_loss", "slots/contrast_loss", "slots/ball_track_acc",
                "slots/paddle_track_acc"):  # fmt: skip
        assert tb_scalars(ckpt.parent / "pretrain", tag), tag
    paddle = [v for _, v in tb_scalars(ckpt.parent / "pretrain", "slots/paddle_track_acc")]
    assert all(0 <= v <= 1 for v in paddle) and tb_scalars(ckpt.parent, "losses/td_loss")
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


def test_resume_mid_phase_2_does_not_pre_train_again(tmp_path):
    run_script("slot_attn_atari", *FLAGS, cwd=tmp_path)
    (ckpt,) = tmp_path.glob("runs/*/slot_attn_atari.pt")
    first = torch.load(ckpt, weights_only=True)
    out = run_script("slot_attn_atari", "--resume", str(ckpt), "--total-timesteps", "400", cwd=tmp_path).stdout
    second = torch.load(ckpt, weights_only=True)
    assert "phase 1: 4 of 4 updates done" in out and "pretrain update" not in out and second["global_step"] == 400
    encoder = [k for k in first["model"] if k.startswith("encoder.")]
    assert encoder and all(torch.equal(first["model"][k], second["model"][k]) for k in encoder)  # frozen, not re-trained
    assert not torch.equal(first["model"]["advantage.2.weight"], second["model"]["advantage.2.weight"])


def test_ctrl_c_in_phase_1_saves_and_the_resume_continues_phase_1(tmp_path):
    flags = FLAGS + ["--pretrain-steps", "40", "--log-masks-every", "1", "--total-timesteps", "100"]
    proc = subprocess.Popen([sys.executable, str(REPO / "slot_attn_atari.py"), *flags], cwd=tmp_path, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    for line in proc.stdout:
        if line.startswith("pretrain update 2/40"):
            os.kill(proc.pid, signal.SIGINT)
            break
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0 and "resume with: python slot_attn_atari.py --resume" in out, out[-2000:]
    (ckpt,) = tmp_path.glob("runs/*/slot_attn_atari.pt")
    done = torch.load(ckpt, weights_only=True)["resume"]["pretrain_updates"]
    assert 2 <= done < 40 and torch.load(ckpt, weights_only=True)["global_step"] == 0
    out = run_script("slot_attn_atari", "--resume", str(ckpt), cwd=tmp_path).stdout
    assert f"phase 1: {done} of 40 updates done" in out and f"; {done}/40" in out and "pretrain update 40/40" in out
    final = torch.load(ckpt, weights_only=True)
    assert final["resume"]["pretrain_updates"] == 40 and final["global_step"] == 100


def test_end_to_end_fine_tunes_the_encoder_from_packed_replay_rows(tmp_path):
    """--end-to-end: replay rows pack the 2 frames and the warm-start state; the TD loss then trains the encoder too."""
    run_script("slot_attn_atari", *FLAGS, "--end-to-end", "--checkpoint-every", "150", "--keep-checkpoints", cwd=tmp_path)
    (mid,) = tmp_path.glob("runs/*/steps/slot_attn_atari_150.pt")
    first, last = (torch.load(p, weights_only=True)["model"] for p in (mid, mid.parents[1] / "slot_attn_atari.pt"))
    assert not torch.equal(first["encoder.cnn.0.weight"], last["encoder.cnn.0.weight"])
    assert torch.equal(first["encoder.decoder.3.weight"], last["encoder.decoder.3.weight"])  # phase 1's decoder only
    rows = sa.row_shape(6, end_to_end=True)
    assert rows == (6 * (sa.SLOT_DIM + 4) + 1 + 2 * 84 * 84,)
    check_agent_acts(mid.parents[1] / "slot_attn_atari.pt")
