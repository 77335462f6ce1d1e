"""common/: checkpoint format, RNG state, episode statistics, contract helpers, ProcessVectorEnv's info keys and RamInfo."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from common import checkpoint as ck
from common.contract import ContractError, args_from_checkpoint, available_scripts, load_script
from common.envs import ProcessVectorEnv, RamInfo
from common.episodes import EpisodeStats
from conftest import ENV, REPO


@dataclass
class _Args:
    seed: int = 1
    env_id: str = "BreakoutNoFrameskip-v4"


def _save(path, **kw):
    fields = dict(script="ppo_atari", args=_Args(), protocol={"env_id": "BreakoutNoFrameskip-v4"}, global_step=42,
                  model={"w": torch.arange(6.0).reshape(2, 3)})  # fmt: skip
    return ck.save_checkpoint(path, **(fields | kw))


def test_round_trip_is_plain_data_and_atomic(tmp_path):
    path = _save(tmp_path / "sub" / "a.pt", resume={"optimizer": {"lr": 1e-4}, "rng": ck.rng_state()})
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.pt"], "no temp file left behind"
    raw = torch.load(path, weights_only=True)  # never unpickles code
    assert raw["format_version"] == ck.FORMAT_VERSION and raw["args"] == {"seed": 1, "env_id": "BreakoutNoFrameskip-v4"}
    assert raw["versions"]["torch"] == version("torch") and raw["versions"]["ale-py"] == version("ale-py")
    loaded = ck.load_checkpoint(path, script="ppo_atari")
    assert loaded["global_step"] == 42 and torch.equal(loaded["model"]["w"], torch.arange(6.0).reshape(2, 3))
    with pytest.raises(ck.CheckpointError, match=r"a\.pt: written by ppo_atari\.py, not dqn_ram_atari\.py$"):
        ck.load_checkpoint(path, script="dqn_ram_atari")


def test_write_fsyncs_the_file_then_renames_then_fsyncs_the_folder(tmp_path, monkeypatch):
    calls, fsync, replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: calls.append(("replace", str(a), str(b))) or replace(a, b))
    path = _save(tmp_path / "a.pt")
    (_, tmp), (_, src, dst), (_, folder) = calls
    assert [c[0] for c in calls] == ["fsync", "replace", "fsync"] and (tmp, dst, folder) == (src, str(path), str(tmp_path))
    assert Path(tmp).name.startswith(".a.pt.") and tmp.endswith(".tmp") and not Path(tmp).exists()


def _raises(exc: BaseException | type[BaseException]):
    def fail(*a, **k):
        raise exc

    return fail


def _sigterm(*a, **k):
    """A SIGTERM arriving mid-write; the test's handler raises KeyboardInterrupt (as a training loop's second one does)."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # interrupted: the handler raises first


@pytest.mark.parametrize(
    "target, fail, expected",
    [("torch.save", _raises(KeyboardInterrupt), KeyboardInterrupt), ("torch.save", _sigterm, KeyboardInterrupt),
     ("os.fsync", _raises(OSError("disk full")), OSError), ("os.replace", _raises(OSError("busy")), OSError)],
)  # fmt: skip
def test_failed_write_leaves_no_temp_file_and_keeps_the_old_file(tmp_path, monkeypatch, target, fail, expected):
    path = _save(tmp_path / "a.pt")
    before = path.read_bytes()
    monkeypatch.setattr(target, fail)
    old = signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt
    try:
        with pytest.raises(expected):
            _save(path, global_step=99)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_default_sigterm_waits_for_the_write_to_finish(tmp_path):
    """With SIGTERM's default action the save completes (no temp file), then the process dies of the signal."""
    code = (
        "import os, signal, sys, torch\n"
        "from pathlib import Path\n"
        "from common.checkpoint import write_atomic\n"
        "save = torch.save\n"
        "def save_then_term(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    save(*a, **k)\n"
        "torch.save = save_then_term\n"
        "write_atomic({'w': torch.arange(3)}, Path(sys.argv[1]))\n"
        "print('survived')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.pt")], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=ENV)  # fmt: skip
    assert proc.returncode == -signal.SIGTERM and "survived" not in proc.stdout, proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], torch.arange(3))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "not a readable checkpoint"),
        (lambda p: torch.save({"w": torch.zeros(1)}, p), "no format_version"),
        (lambda p: torch.save({"format_version": 7}, p), "format version 7"),
        (lambda p: torch.save({"format_version": 1, "script": "x"}, p), "missing keys"),
    ],
)
def test_bad_checkpoints_give_one_line_errors(tmp_path, make, message):
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(ck.CheckpointError) as e:
        ck.load_checkpoint(path)
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_truncated_checkpoint(tmp_path):
    path = _save(tmp_path / "a.pt")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ck.CheckpointError, match="not a readable checkpoint"):
        ck.load_checkpoint(path)


def test_strip_drops_resume_state_and_keeps_provenance(tmp_path):
    src = _save(tmp_path / "full.pt", resume={"optimizer": {"state": torch.zeros(1000)}})
    dst = ck.strip_checkpoint(src, tmp_path / "small.pt")
    full, small = ck.load_checkpoint(src), ck.load_checkpoint(dst)
    assert "resume" in full and "resume" not in small
    assert small["git_commit"] == full["git_commit"] and small["created"] == full["created"]
    assert dst.stat().st_size < src.stat().st_size
    assert ck.main(["show", str(dst)]) == 0 and ck.main(["show", str(tmp_path / "none.pt")]) == 2


def test_strip_half_stores_float16_and_loads_float32(tmp_path):
    weights = {"w": torch.randn(256, 256), "steps": torch.arange(3)}
    src = _save(tmp_path / "full.pt", model=weights)
    assert ck.main(["strip", str(src), str(tmp_path / "half.pt"), "--half"]) == 0
    raw = torch.load(tmp_path / "half.pt", weights_only=True)
    assert raw["model"]["w"].dtype == torch.float16 and raw["model"]["steps"].dtype == torch.int64
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * src.stat().st_size
    model = ck.load_checkpoint(tmp_path / "half.pt")["model"]
    assert model["w"].dtype == torch.float32 and torch.equal(model["steps"], weights["steps"])
    assert torch.allclose(model["w"], weights["w"], rtol=1e-3, atol=1e-4) and not torch.equal(model["w"], weights["w"])
    assert ck.main(["strip", str(src), str(tmp_path / "x.pt"), "--halve"]) == 2


def test_rng_state_round_trip():
    state = ck.rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    ck.set_rng_state(torch.load(_roundtrip(state), weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def _roundtrip(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_episode_stats_split_games_and_lives():
    stats = EpisodeStats(2)
    lives = np.array([5, 5])
    no = np.array([False, False])
    # env 0: +1, life lost (5 -> 4), +2, then game over (SameStep reset reports 5 lives again)
    stats.step(np.array([1.0, 0.0]), no, no, lives)
    games, lost = stats.step(np.array([0.0, 3.0]), np.array([True, False]), no, np.array([4, 5]))
    assert games == [] and lost == [(0, 1.0)]
    stats.step(np.array([2.0, 0.0]), no, no, np.array([4, 5]))
    games, lost = stats.step(np.array([0.0, 0.0]), np.array([True, False]), np.array([False, True]), np.array([5, 5]))
    assert games == [(0, 3.0, 4), (1, 3.0, 4)] and lost == [(0, 2.0), (1, 3.0)]
    assert stats.recent_mean() == 3.0
    games, _ = stats.step(np.array([1.0, 1.0]), no, no, lives)  # counters restarted
    assert games == [] and list(stats.game_return) == [1.0, 1.0]


def test_episode_stats_game_without_lives():
    stats = EpisodeStats(1)
    stats.step(np.array([1.0]), np.array([False]), np.array([False]), np.array([0]))
    games, _ = stats.step(np.array([-1.0]), np.array([True]), np.array([False]), np.array([0]))
    assert games == [(0, 0.0, 2)]


def test_contract_refuses_unknown_scripts_and_drops_unknown_args():
    assert "ppo_atari" in available_scripts()
    with pytest.raises(ContractError, match="does not exist"):
        load_script("os")
    mod = load_script("ppo_atari")
    args = args_from_checkpoint(mod, {"args": {"seed": 7, "removed_flag": 1}})
    assert args.seed == 7 and args.env_id == "BreakoutNoFrameskip-v4"


class _CountEnv(gym.Env):
    """Two 3-step lives per game; obs and info["count"] follow the step count t (count = 10 t), life_lost every 3 steps."""

    observation_space, action_space = gym.spaces.Box(0, 100, (1,), np.float32), gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.lives = 0, 2
        return np.zeros(1, np.float32), {"lives": 2, "count": 0}

    def step(self, action):
        self.t += 1
        lost = self.t % 3 == 0
        self.lives -= lost
        info = {"lives": self.lives, "life_lost": lost, "count": 10 * self.t, "other": 1}
        return np.full(1, self.t, np.float32), float(action), self.lives == 0, False, info


class _DoubleCount(gym.Wrapper):
    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "count": 2 * info["count"]}


def _count_env(args, seed: int, idx: int = 0):
    return _CountEnv


def test_process_vector_env_forwards_info_keys_and_wraps_each_env():
    envs = ProcessVectorEnv(_count_env, _Args(), 2, info_keys=("count",), wrap=_DoubleCount)
    obs, info = envs.reset(seed=0)
    assert set(info) == {"lives", "count"} and info["count"].tolist() == [0, 0]
    for t in range(1, 7):
        obs, reward, term, trunc, info = envs.step(np.array([0, 1]))
        assert set(info) == {"lives", "final_obs", "count"} and reward.tolist() == [0.0, 1.0] and not trunc.any()
        assert term.tolist() == [t % 3 == 0] * 2  # every life loss, as AtariVectorEnv(life_loss_info=True)
        if t < 6:  # the wrapped env's count, doubled in the child
            assert info["count"].tolist() == [20 * t] * 2 and obs[:, 0].tolist() == [t] * 2 and not info["final_obs"].any()
    # the game ended at t = 6: reset at once (SameStep); the new game's info and obs, the old game's final obs
    assert info["count"].tolist() == [0, 0] and info["lives"].tolist() == [2, 2] and obs[:, 0].tolist() == [0, 0]
    assert info["final_obs"][:, 0].tolist() == [6, 6]
    envs.close()
    assert not envs.process.is_alive()


def test_ram_info_keeps_the_observation_and_adds_the_ram_features():
    import ppo_atari
    from common.ram_features import NUM_FEATURES, RamFeatureObservation

    args = ppo_atari.Args()
    plain = ppo_atari.make_env(args, 0)()
    ram = RamInfo(ppo_atari.make_env(args, 0)())
    ref = RamFeatureObservation(ppo_atari.make_env(args, 0)(), keep_pixels=True)
    assert ram.observation_space == plain.observation_space and ram.action_space == plain.action_space
    (o1, _), (o2, i2), (o3, _) = plain.reset(seed=5), ram.reset(seed=5), ref.reset(seed=5)
    assert np.array_equal(o1, o2) and i2["ram"].shape == (NUM_FEATURES,) and np.array_equal(i2["ram"], o3["ram"])
    lost = 0
    for t in range(300):
        a = 1 if t % 20 == 0 else t % 4  # serve now and then
        (o1, r1, *_), (o2, r2, _, _, i2), (o3, *_, i3) = plain.step(a), ram.step(a), ref.step(a)
        assert np.array_equal(o1, o2) and r1 == r2 and np.array_equal(i2["ram"], o3["ram"])
        assert i2["life_lost"] == i3["life_lost"] and i2["lives"] == i3["lives"]
        lost += i2["life_lost"]
    assert lost >= 1  # the features and life_lost were compared across a lost life
    for e in (plain, ram, ref):
        e.close()
