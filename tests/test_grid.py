"""tools/grid.py: a tiny grid with two workers, stopped mid-run by SIGTERM and run again; submitit's local executor;
the cell bookkeeping (retries, spec checks, worker environment) without training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common.stats import score_stats
from conftest import ENV, REPO, TINY
from tools import compare, grid

SCRIPTS = {"ppo_atari": [*TINY["ppo_atari"], "--total-timesteps", "128"],
           "dqn_ram_atari": [*TINY["dqn_ram_atari"], "--total-timesteps", "2000"]}  # fmt: skip
TOTAL = {"ppo_atari": 128, "dqn_ram_atari": 2000}  # long enough that a RAM cell is caught in its loop
PYENV = ENV | {"PYTHONPATH": str(REPO)}  # for python -m tools.grid outside the repo


def grid_cmd(root: Path, name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "tools.grid", "--name", name, "--root", str(root), *args]


def tiny_grid(root: Path, *extra: str) -> list[str]:
    flags = [f'--flags={s}={" ".join(f)}' for s, f in SCRIPTS.items()]
    return grid_cmd(root, "tiny", "--scripts", *SCRIPTS, "--seeds", "1", "2", "--workers", "2", "--no-eval",
                    "--progress-every", "2", *flags, *extra)  # fmt: skip


def states(gdir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(gdir.glob("cells/*/state.json"))}


def in_training_loop(log: Path) -> bool:
    """The cell's current attempt printed a status line from inside the training loop (its signal handlers are set)."""
    return log.exists() and "SPS=" in log.read_text().rsplit("=== ", 1)[-1]


def test_grid_stopped_by_sigterm_resumes_without_redoing_finished_runs(tmp_path):
    root = tmp_path / "grids"
    proc = subprocess.Popen(tiny_grid(root), cwd=tmp_path, env=PYENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    gdir = root / "tiny"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # one cell done while another trains: stop the grid
        st = states(gdir) if gdir.exists() else {}
        running = [c for c, s in st.items() if s["status"] == "running" and in_training_loop(gdir / "cells" / c / "log.txt")]
        if any(s["status"] == "done" for s in st.values()) and running:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.1)
    out = proc.communicate(timeout=240)[0]
    assert proc.returncode == 130, out
    first = states(gdir)
    done = {c for c, s in first.items() if s["status"] == "done"}
    stopped = {c for c, s in first.items() if s["status"] == "interrupted"}
    assert done and stopped, out
    assert "rerun to resume" in out and "| ETA " in out and "2 workers x 1 torch threads" in out
    logs = {c: (gdir / "cells" / c / "log.txt").read_text() for c in done}
    resumable = {c for c in stopped if "stopped; checkpoint: " in (gdir / "cells" / c / "log.txt").read_text()}
    assert resumable, out  # at least one run was stopped inside its loop and saved a checkpoint

    again = subprocess.run(grid_cmd(root, "tiny"), cwd=tmp_path, env=PYENV, text=True,
                           capture_output=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(done)} done already" in again.stdout and "4/4 done, 0 failed" in again.stdout
    final = states(gdir)
    assert all(s["status"] == "done" for s in final.values())
    for c in done:  # finished cells were not run again
        assert (gdir / "cells" / c / "log.txt").read_text() == logs[c] and final[c]["attempts"] == first[c]["attempts"]
    for c in resumable:  # interrupted cells went on from their checkpoint, in the same run folder
        log = (gdir / "cells" / c / "log.txt").read_text()
        assert "resume: python" in log and "resumed " in log
    for c, s in final.items():
        (run_dir,) = (gdir / "cells" / c / "runs").iterdir()
        ckpt = torch.load(gdir / s["checkpoint"], weights_only=True, map_location="cpu")
        assert ckpt["global_step"] == TOTAL[s["script"]] and ckpt["args"]["seed"] == s["seed"]
        assert (gdir / s["checkpoint"]).parent == run_dir

    # tools.compare on the grid: one row per script, both seeds; the numbers are score_stats' on the same values (a tag
    # that every tiny run logs at least twice)
    result = compare.compare([gdir], tmp_path / "cmp", tag="charts/SPS", last_games=2, window=2)
    assert (tmp_path / "cmp" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert sorted(r["agent"] for r in result["training"]) == ["dqn_ram_atari", "ppo_atari"]
    for row in result["training"]:
        runs = [compare.read_run(Path(m), "charts/SPS", 10.0) for m in row["members"]]
        values = [float(v) for r in runs for v in r.values[-2:]]
        expected = score_stats(values, strata=[r.seed for r in runs for _ in r.values[-2:]])
        assert row["training_seeds"] == [1, 2] and row["stats"] == expected
        assert f"| {compare.with_ci(expected['iqm'], expected['iqm_ci95'])} |" in md
        assert expected["iqm_ci95"] is not None


def test_submitit_local_executor_runs_and_evaluates_one_cell(tmp_path):
    root = tmp_path / "grids"
    flags = " ".join([*TINY["ppo_atari"], "--total-timesteps", "128"])
    cmd = grid_cmd(root, "one", "--scripts", "ppo_atari", "--seeds", "3", "--launcher", "submitit-local",
                   "--eval-games", "2", "--eval-flags", "--stall-steps 100 --num-envs 2", f"--flags=ppo_atari={flags}")
    proc = subprocess.run(cmd, cwd=tmp_path, env=PYENV, text=True, capture_output=True, timeout=300,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted 1 cells (local)" in proc.stdout and "ppo_atari__seed3: done" in proc.stdout
    (state,) = states(root / "one").values()
    assert state["status"] == "done" and [a["phase"] for a in state["attempts"]] == ["train", "eval"]
    summary = json.loads((root / "one" / "cells" / "ppo_atari__seed3" / "eval" / "summary.json").read_text())
    assert summary["checkpoint"]["args"]["seed"] == 3 and summary["pooled"]["n"] == 2
    assert any((root / "one" / "submitit").glob("*_log.out"))
    # the grid's --status table names the evaluation's IQM
    assert f"{summary['pooled']['iqm']:.2f}" in grid.status_table(grid.Grid.open(root / "one")).splitlines()[1]


def spec(**kw) -> dict:
    base = {"scripts": ["ppo_atari", "dqn_ram_atari"], "env_ids": [], "seeds": [1, 2], "sets": {}, "script_flags": {},
            "extra": ["--total-timesteps", "500"], "eval": {"games": 4, "seeds": [0, 1], "flags": []}}  # fmt: skip
    return base | kw


def test_cells_commands_retries_and_spec_checks(tmp_path):
    g = grid.Grid.open(tmp_path / "g", spec(sets={"a": ["--learning-rate", "1e-4"], "b": []}))
    assert [c.id for c in g.cells[:4]] == ["ppo_atari__a__seed1", "ppo_atari__b__seed1", "dqn_ram_atari__a__seed1",
                                           "dqn_ram_atari__b__seed1"]  # seed-major  # fmt: skip
    cell = g.cells[0]
    phase, argv = g.plan(cell, track=True)
    assert phase == "train" and argv[0] == str(REPO / "ppo_atari.py") and argv[-1] == "--track"
    assert argv[1:9] == ["--eval-episodes", "0", "--learning-rate", "1e-4", "--total-timesteps", "500", "--seed", "1"]
    # a resume repeats only the flags a resume may change
    assert grid.resumable_flags(cell.flags) == ["--eval-episodes", "0", "--total-timesteps", "500"]
    env = grid.cell_env(g, cell, threads=3, track=True)
    assert (env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"], env["OMP_WAIT_POLICY"]) == ("3", "3", "PASSIVE")
    assert (env["WANDB_RUN_GROUP"], env["WANDB_JOB_TYPE"]) == ("g", "ppo_atari")
    assert "WANDB_RUN_GROUP" not in grid.cell_env(g, cell, threads=1, track=False)
    # a failure is retried once, then reported with its error line
    assert g.record(cell, "train", 1, "Traceback\nerror: --foo is bad\n", 1.0, False, retries=1) == "retry"
    assert g.record(cell, "train", 1, "error: --foo is bad\n", 1.0, False, retries=1) == "failed"
    st = g.state(cell)
    assert st["status"] == "failed" and st["failures"] == 2 and st["last_error"] == "error: --foo is bad"
    # a stop (the grid's, or a signal to the run) is not a failure
    assert g.record(g.cells[1], "train", 0, "stopped; checkpoint: x.pt\n", 1.0, False, retries=1) == "interrupted"
    assert g.record(g.cells[1], "train", -15, "", 1.0, True, retries=1) == "interrupted"
    # reopening with another spec is refused; with none, the manifest's is used
    with pytest.raises(ValueError, match="exists with another seeds"):
        grid.Grid.open(tmp_path / "g", spec(sets={"a": ["--learning-rate", "1e-4"], "b": []}, seeds=[1]))
    assert grid.Grid.open(tmp_path / "g").spec == g.spec
    for bad in (spec(extra=["--seed", "3"]), spec(scripts=["nope_atari"]), spec(script_flags={"x": []})):
        with pytest.raises(ValueError):
            grid.Grid.open(tmp_path / "bad", bad)
    assert grid.eta([], 4, [10.0, 20.0], workers=2) == 30.0 and grid.hms(3725) == "1:02:05"


def test_grid_cli_usage_errors(tmp_path):
    assert grid.main(["--name", "x", "--root", str(tmp_path)]) == 2  # no such grid, no --scripts
    assert grid.main(["--name", "x", "--root", str(tmp_path), "--scripts", "ppo_atari", "--workers", "0"]) == 2
    assert grid.main(["--name", "x", "--root", str(tmp_path), "--scripts", "ppo_atari", "--dry-run", "--", "--x"]) == 0
    assert (tmp_path / "x" / "cells.tsv").read_text().startswith("ppo_atari__seed1\tpython ppo_atari.py --eval-episodes 0")
    assert os.path.exists(tmp_path / "x" / "manifest.json")
