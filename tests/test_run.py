"""common/run.py (the run harness) and common/envs.py: resume merging, checks, schedules, signals, final save."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dqn_per_dueling_atari as dqn
import ppo_atari
from common.checkpoint import save_checkpoint
from common.run import Linear, Run, at_least, check_free_memory, check_run_args, require, resume_args, typed_flags
from conftest import REPO, TINY, one_line_error, run_script, tb_scalars


def saved_run(tmp_path, **changes) -> str:
    """A resumable ppo_atari checkpoint whose Args differ from the defaults by `changes`."""
    args = dataclasses.replace(ppo_atari.Args(), **changes)
    path = save_checkpoint(tmp_path / "ppo_atari.pt", script="ppo_atari", args=args, protocol={}, global_step=2048,
                           model={}, resume={"rng": None})  # fmt: skip
    return str(path)


def test_typed_flags_come_from_argv_or_from_changed_fields():
    args = dataclasses.replace(ppo_atari.Args(), seed=7)
    argv = ["/x/ppo_atari.py", "--total-timesteps", "10000000", "--no-track", "--learning_rate=1e-3", "pos"]
    assert typed_flags(args, "ppo_atari", argv) == {"seed", "total_timesteps", "track", "learning_rate"}
    assert typed_flags(args, "ppo_atari", ["pytest", "--total-timesteps", "5"]) == {"seed"}  # not this script's argv


def test_resume_applies_a_typed_flag_equal_to_its_default(tmp_path):
    """Resuming a 2M run with --total-timesteps 10000000 (the dataclass default) targets 10M."""
    path = saved_run(tmp_path, total_timesteps=2_000_000, num_envs=4)
    typed = dataclasses.replace(ppo_atari.Args(), resume=path)  # total_timesteps == its default: 10M
    args, _ = resume_args(typed, "ppo_atari", ["ppo_atari.py", "--resume", path, "--total-timesteps", "10000000"])
    assert args.total_timesteps == 10_000_000 and args.num_envs == 4 and args.resume == path
    args, _ = resume_args(typed, "ppo_atari", ["ppo_atari.py", "--resume", path])  # not typed: the saved 2M
    assert args.total_timesteps == 2_000_000


def test_resume_refuses_another_scripts_checkpoint(tmp_path):
    args = dataclasses.replace(dqn.Args(), resume=saved_run(tmp_path))
    with pytest.raises(SystemExit, match=r"^error: --resume: checkpoint .*ppo_atari\.pt: written by ppo_atari\.py, not dqn_"):
        resume_args(args, "dqn_per_dueling_atari", ["dqn_per_dueling_atari.py"])


def test_resume_refuses_a_changed_flag_it_cannot_apply(tmp_path):
    path = saved_run(tmp_path, learning_rate=1e-3)
    same = dataclasses.replace(ppo_atari.Args(), resume=path, learning_rate=1e-3)  # equal to the saved run: fine
    assert resume_args(same, "ppo_atari", ["ppo_atari.py"])[0].learning_rate == 1e-3
    with pytest.raises(SystemExit, match=r"--learning-rate 0.00025 differs from the saved run's 0.001"):
        resume_args(dataclasses.replace(ppo_atari.Args(), resume=path), "ppo_atari",
                    ["ppo_atari.py", "--resume", path, "--learning-rate", "0.00025"])  # fmt: skip
    # on the command line: one line, no traceback
    msg = one_line_error(run_script("ppo_atari", "--resume", path, "--gamma", "0.9", cwd=tmp_path, check=False))
    assert "--gamma 0.9 differs" in msg and "--total-timesteps" in msg


def test_linear_schedule_and_its_stretch_is_continuous():
    sched = Linear(0, 1.0, 100, 0.0)
    assert [sched(t) for t in (0, 50, 100, 150)] == [1.0, 0.5, 0.0, 0.0]
    longer = sched.stretched(40, 200)
    assert longer(40) == pytest.approx(sched(40)) and longer(200) == 0.0 and longer(120) == pytest.approx(0.3)
    assert sched.stretched(40, 100) is sched and sched.stretched(100, 200) is sched  # same end / already finished


def test_require_and_shared_checks():
    args = ppo_atari.Args()
    require(args, positive=("learning_rate",), at_least_0=("noop_max",), unit=("gamma",))
    for change, match in [({"learning_rate": 0.0}, "--learning-rate must be positive"), ({"gamma": 1.5}, "in \\[0, 1\\]")]:
        with pytest.raises(SystemExit, match=match):
            require(dataclasses.replace(args, **change), positive=("learning_rate",), unit=("gamma",))
    check_run_args(args)
    for change, match in [({"seed": -1}, "--seed must be in"), ({"total_timesteps": 4, "num_envs": 8}, "at least --num-envs"),
                          ({"keep_checkpoints": True, "checkpoint_every": 0}, "--keep-checkpoints keeps"),
                          ({"keep_checkpoints": True, "save_model": False}, "--keep-checkpoints keeps")]:  # fmt: skip
        with pytest.raises(SystemExit, match=match):
            check_run_args(dataclasses.replace(args, **change))
    with pytest.raises(SystemExit, match="--save-buffer writes"):
        check_run_args(dataclasses.replace(dqn.Args(), save_buffer=True, save_model=False))


def test_at_least_raises_only_what_is_below_its_minimum_and_says_why(capsys):
    args = dataclasses.replace(dqn.Args(), learning_starts=10, buffer_size=5000)
    out = at_least(args, "the first updates need it", learning_starts=64, buffer_size=4000)
    assert (out.learning_starts, out.buffer_size, args.learning_starts) == (64, 5000, 10)
    assert capsys.readouterr().err == "note: --learning-starts 10 -> 64: the first updates need it\n"


PAGE_FAULTS = """
import resource, sys
import numpy as np
from common.run import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
def step():  # a network step's temporaries: eight 4 MB arrays alive at once, all freed at its end
    xs = [np.ones(1 << 19) for _ in range(8)]
    del xs
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_stops_the_page_faults_of_each_steps_temporaries():
    import subprocess

    def faults(mode: str, **env: str) -> tuple[str, int]:
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **env}
        out = subprocess.run([sys.executable, "-c", PAGE_FAULTS, mode], capture_output=True, text=True, check=True,
                             cwd=REPO, env=env).stdout.split()  # fmt: skip
        return out[0], int(out[1])

    applied, kept = faults("keep")
    _, default = faults("default")
    assert applied == "True" and kept < 100 and default > 20 * 8 * 1024 // 4, (kept, default)  # 1024 pages per 4 MB
    assert faults("keep", MALLOC_ARENA_MAX="2")[0] == "False"  # a MALLOC_* variable set by the user wins


def test_check_free_memory_names_a_value_that_fits():
    args = dqn.Args()
    check_free_memory(args, "buffer_size", need=10**9, bytes_per_unit=7000, available=16 * 10**9)
    msg = r"--buffer-size 1000000 needs 7.00 GB of memory, 4.00 GB is free; try --buffer-size \d+"
    with pytest.raises(SystemExit, match=msg):
        check_free_memory(args, "buffer_size", need=7 * 10**9, bytes_per_unit=7000, available=4 * 10**9)


def test_first_signal_stops_second_aborts(tmp_path):
    args = dataclasses.replace(ppo_atari.Args(), runs_dir=str(tmp_path), num_envs=1, total_timesteps=8, eval_episodes=0)
    run = Run(args, ppo_atari.__file__)
    # a known handler to restore: the process running this test (a pytest-xdist worker) may hold another one
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), run.loop(8):
            os.kill(os.getpid(), signal.SIGINT)
            assert run.stopping
            os.kill(os.getpid(), signal.SIGTERM)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored after an exception
    finally:
        signal.signal(signal.SIGINT, old)
    run.writer.close()


def test_no_save_model_still_evaluates_and_leaves_no_file(tmp_path):
    out = run_script("ppo_atari", *TINY["ppo_atari"], "--no-save-model", "--eval-episodes", "1", cwd=tmp_path).stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "eval: 1 games" in out and len(tb_scalars(run_dir, "eval/episodic_return")) == 1
    assert not list(run_dir.rglob("*.pt")) and not list(run_dir.glob(".*"))


def stopped_run(monkeypatch, main, args, at: int) -> Path:
    """Run main(args) until its first log point at or after `at` agent steps, as if Ctrl-C came then; the checkpoint."""
    log = Run.log

    def stop_at(self, step, scalars):
        log(self, step, scalars)
        self.stopping = self.stopping or step >= at

    monkeypatch.setattr(Run, "log", stop_at)
    path = main(args)
    monkeypatch.setattr(Run, "log", log)
    return path


def test_lr_is_continuous_across_a_resume_with_a_larger_budget(tmp_path, monkeypatch):
    """Stop a 4-iteration PPO run after iteration 2, resume it as 8 iterations: the learning rate continues from where it
    was (0.5 of the base rate at step 2048) towards 0 at the new end, instead of jumping back to 0.75 (1 - 2/8)."""
    flags = dict(num_envs=8, num_steps=128, num_minibatches=4, update_epochs=1, eval_episodes=0, runs_dir=str(tmp_path))
    path = stopped_run(monkeypatch, ppo_atari.main, dataclasses.replace(ppo_atari.Args(), total_timesteps=4096, **flags), 2048)
    assert torch.load(path, weights_only=True)["global_step"] == 2048
    monkeypatch.setattr(sys, "argv", ["ppo_atari.py", "--resume", str(path), "--total-timesteps", "8192"])
    ppo_atari.main(dataclasses.replace(ppo_atari.Args(), resume=str(path), total_timesteps=8192))
    lrs = [v / 2.5e-4 for _, v in tb_scalars(path.parent, "charts/learning_rate")]
    np.testing.assert_allclose(lrs, [1.0, 0.75] + [0.5 * (8192 - s) / 6144 for s in range(2048, 8192, 1024)], atol=1e-6)


def test_epsilon_and_beta_are_continuous_across_a_resume_with_a_larger_budget(tmp_path, monkeypatch):
    """epsilon keeps the first run's decay (in agent steps); beta continues from its value at the stop up to 1 at the new
    end of the run: no jump in either."""
    flags = dict(num_envs=2, buffer_size=4000, learning_starts=64, batch_size=4, train_frequency=1, eval_episodes=0,
                 target_network_frequency=50, checkpoint_every=0, exploration_fraction=0.5,
                 runs_dir=str(tmp_path))  # fmt: skip
    path = stopped_run(monkeypatch, dqn.main, dataclasses.replace(dqn.Args(), total_timesteps=600, **flags), 300)
    stopped = torch.load(path, weights_only=True)["global_step"]
    dqn.main(dataclasses.replace(dqn.Args(), resume=str(path), total_timesteps=1200))
    eps, beta = (tb_scalars(path.parent, f"charts/{k}") for k in ("epsilon", "beta"))
    assert eps[0][0] < stopped < eps[-1][0]
    for step, e in eps:  # one schedule: 1 -> 0.01 over 300 steps, whatever the budget
        assert e == pytest.approx(max(1 - 0.99 * step / 300, 0.01), abs=1e-6), step
    b_stop = 0.4 + 0.6 * stopped / 600
    for step, b in beta:
        expected = 0.4 + 0.6 * step / 600 if step <= stopped else b_stop + (1 - b_stop) * (step - stopped) / (1200 - stopped)
        assert b == pytest.approx(expected, abs=1e-6), step


def test_process_vector_env_reports_errors_and_closes():
    import dqn_ram_atari
    from common.envs import ProcessVectorEnv

    envs = ProcessVectorEnv(dqn_ram_atari.make_env, dqn_ram_atari.Args(), 2)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (2, dqn_ram_atari.NUM_FEATURES) and info["lives"].tolist() == [5, 5]
    with pytest.raises(Exception):
        envs.step(np.array([9, 9]))  # an invalid action: the child's error is raised here
    envs.close()
    assert not envs.process.is_alive()
