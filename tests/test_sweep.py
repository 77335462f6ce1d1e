"""tools/sweep.py: a two-trial Optuna study on a journal file, offline; pruning on TensorBoard values; the sweep files
under sweeps/ (Optuna and W&B) name only real flags of their scripts."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys

import numpy as np
import optuna
import pytest
import tyro
import yaml
from torch.utils.tensorboard import SummaryWriter

from conftest import ENV, REPO, TINY, tb_scalars
from tools import grid, sweep

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def test_two_trial_sweep_on_a_journal_file_records_the_best_trial(tmp_path):
    cfg = {"script": "ppo_atari", "study_name": "tiny", "seeds": [1],
           "flags": [f for f in TINY["ppo_atari"] if f not in ("--total-timesteps", "128")] + ["--total-timesteps", "256"],
           "objective": {"metric": "train_mean", "tag": "charts/life_return", "last_games": 5}, "eval": {"games": 0},
           "space": {"learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}, "ent_coef": {"choices": [0.0, 0.02]}},
           "pruner": {"type": "median"}, "sampler": {"type": "random", "seed": 0}}  # fmt: skip
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, "-m", "tools.sweep", "tiny.yaml", "--n-trials", "2", "--root", "sweeps", "--quiet"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=ENV | {"PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}, text=True,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "study tiny: 2 complete" in proc.stdout and "best: trial " in proc.stdout
    journal = tmp_path / "sweeps" / "tiny" / "journal.log"
    study = optuna.load_study(study_name="tiny", storage=sweep.make_storage(str(journal), tmp_path))
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for t in trials:  # the objective: mean of each run's last 5 life returns, read back from TensorBoard
        g = grid.Grid.open(tmp_path / t.user_attrs["grid_dir"])
        assert t.user_attrs["flags"].startswith("--learning-rate ")
        assert g.spec["sets"] == {f"trial{t.number:04d}": mock_flags(t)}
        (run_dir,) = g.run_dirs(g.cells[0])
        values = [v for _, v in tb_scalars(run_dir, "charts/life_return")][-5:]
        assert t.value == pytest.approx(np.mean(values))
    best = max(trials, key=lambda t: t.value)
    assert study.best_trial.number == best.number and f"best: trial {best.number}, value {best.value:.3f}" in proc.stdout


def mock_flags(trial) -> list[str]:
    """The flags a trial's parameters turn into (sweep.suggest on a FixedTrial)."""
    space = {"learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}, "ent_coef": {"choices": [0.0, 0.02]}}
    return sweep.suggest(optuna.trial.FixedTrial(trial.params), space, {"learning_rate": float, "ent_coef": float})


def test_pruning_reports_tensorboard_values_and_stops(tmp_path):
    g = grid.Grid.open(tmp_path / "g", {"scripts": ["ppo_atari"], "env_ids": [], "seeds": [1], "sets": {},
                                        "script_flags": {}, "extra": [], "eval": {"games": 0, "seeds": None,
                                                                                  "flags": []}})  # fmt: skip
    writer = SummaryWriter(str(g.cell_dir(g.cells[0]) / "runs" / "BreakoutNoFrameskip-v4__ppo_atari__1__0"))
    for i, r in enumerate([1.0, 2.0, 3.0, 5.0]):
        writer.add_scalar("charts/episodic_return", r, 100 * (i + 1))
    writer.close()
    assert sweep.training_value(g, "charts/episodic_return", 2) == (4.0, 400)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=10.0))
    trial = study.ask()
    monitor = sweep.Monitor(trial, "charts/episodic_return", 2, every_s=0.0)
    assert monitor(g, []) is True and monitor.pruned and monitor.step == 400
    assert study.get_trials()[0].intermediate_values == {400: 4.0}
    keep = sweep.Monitor(study.ask(), "charts/episodic_return", 2, every_s=0.0)
    keep.trial.study.pruner = optuna.pruners.NopPruner()
    assert keep(g, []) is False and keep(g, []) is False  # no new step: nothing reported again


def fields_of(script: str) -> dict:
    return {f.name: f for f in dataclasses.fields(importlib.import_module(script).Args)}


@pytest.mark.parametrize("path", [p for p in SWEEPS if p.name.endswith(".wandb.yaml")], ids=lambda p: p.name)
def test_wandb_sweep_file_names_only_real_flags(path):
    cfg = yaml.safe_load(path.read_text())
    script = cfg["program"].removesuffix(".py")
    assert (REPO / cfg["program"]).exists() and {"${program}", "${args}"} <= set(cfg["command"])
    mod, fields = importlib.import_module(script), fields_of(script)
    argv = []
    for name, spec in cfg["parameters"].items():
        field = name.replace("-", "_")
        assert field in fields, f"{path.name}: {name} is not a flag of {script}.py"
        assert fields[field].type is not bool, f"{path.name}: {name}: the agent's --{name}=True is not a tyro flag"
        sample = spec["value"] if "value" in spec else spec["values"][0] if "values" in spec else spec["min"]
        argv.append(f"--{name}={sample}")  # as `wandb agent` passes ${args}
    args = tyro.cli(mod.Args, args=argv)  # the script's own parser accepts every parameter
    for token in argv:
        name, value = token[2:].split("=", 1)
        assert getattr(args, name.replace("-", "_")) == type(getattr(args, name.replace("-", "_")))(value)


@pytest.mark.parametrize("path", [p for p in SWEEPS if p.name.endswith(".optuna.yaml")], ids=lambda p: p.name)
def test_optuna_sweep_file_checks_against_the_script(path):
    cfg = sweep.load_config(path)
    fields = sweep.script_fields(cfg["script"])
    sweep.check_space(cfg["space"], fields, cfg["script"])
    sweep.make_pruner(cfg.get("pruner"))
    sweep.make_sampler(cfg.get("sampler"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    flags = sweep.suggest(study.ask(), cfg["space"], fields)
    tyro.cli(importlib.import_module(cfg["script"]).Args, args=flags + list(map(str, cfg.get("flags", []))))
    with pytest.raises(ValueError, match="not a field of"):
        sweep.check_space({"learning_rat": {"low": 0, "high": 1}}, fields, cfg["script"])
