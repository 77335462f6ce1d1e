"""Hyper-parameter search with Optuna over a training script's Args; every trial is a grid (tools/grid.py).

    python -m tools.sweep sweeps/ppo_atari.optuna.yaml --n-trials 20
    python -m tools.sweep sweeps/ppo_atari.optuna.yaml --n-trials 10 &     # a second process joins the same study
    python -m tools.sweep sweeps/ppo_atari.optuna.yaml --storage postgresql://user:pass@host/optuna --n-trials 10
    python -m tools.sweep sweeps/ppo_atari.optuna.yaml --n-trials 0        # print the best trial so far
    python -m tools.sweep sweeps/ppo_atari.optuna.yaml -- --device cpu     # flags after -- go to every run

The file (YAML or JSON) names the script, the search space over fields of its `Args` (checked against them), the
seeds and fixed flags of every trial, the objective and the pruner; `sweeps/ppo_atari.optuna.yaml` documents every
key. A trial suggests values, runs them as a grid (its seeds x one override set named after the trial) under
ROOT/<study>/trialNNNN/, and returns the objective: `eval_iqm`, the evaluation IQM of its final checkpoints
(evaluate.py, pooled over seeds: tools.compare's aggregation, common.stats.score_stats), or `train_mean`, the mean of
the last N training values of a TensorBoard tag (charts/episodic_return: full-game scores) over its runs. While a
trial trains, that training value is reported every `prune_every_s` seconds at the runs' step, and the pruner
(median, percentile, hyperband, threshold or none) may stop it: its runs save and the trial ends PRUNED. TensorBoard
flushes its event files every 2 minutes, so intermediate values lag by up to that much.

Storage: by default an Optuna JournalStorage file, ROOT/<study>/journal.log, which several processes on one machine
(or on a shared file system with working file locks) can use at once; `--storage FILE` names another journal file;
`--storage URL` uses any Optuna RDB URL (postgresql://, mysql://, sqlite:///) to share a study across machines. A
trial stopped by Ctrl-C ends FAIL with its runs saved; the next `python -m tools.sweep` on the study runs its
parameters again in the same grid folder, so its runs resume from their checkpoints. Guide: docs/experiments.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import signal
import sys
import time
import typing
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import compare, grid  # noqa: E402

DEFAULT_ROOT = Path("runs/sweeps")
KEYS = {"script", "study_name", "direction", "seeds", "env_ids", "flags", "objective", "eval", "space", "pruner",
        "sampler", "prune_every_s", "trial_workers"}  # fmt: skip


def load_config(path: Path) -> dict:
    """Read a sweep file (YAML, or JSON, which YAML also reads)."""
    import yaml

    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: {e}") from None
    if not isinstance(cfg, dict) or "script" not in cfg or "space" not in cfg:
        raise ValueError(f"{path}: a sweep file needs at least `script:` and `space:`")
    unknown = set(cfg) - KEYS
    if unknown:
        raise ValueError(f"{path}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(KEYS))})")
    return cfg


def script_fields(script: str) -> dict[str, Any]:
    """Field name -> type of SCRIPT.Args (Optional[X] -> X)."""
    mod = importlib.import_module(script)
    hints = typing.get_type_hints(mod.Args)
    out = {}
    for f in dataclasses.fields(mod.Args):
        t = hints[f.name]
        args = [a for a in typing.get_args(t) if a is not type(None)]
        out[f.name] = args[0] if typing.get_origin(t) is typing.Union and len(args) == 1 else t
    return out


def check_space(space: dict, fields: dict[str, Any], script: str) -> None:
    """Each key a field of SCRIPT.Args; numeric ranges for int / float fields, `choices` otherwise."""
    for name, spec in space.items():
        if name not in fields:
            raise ValueError(f"space: {name!r} is not a field of {script}.Args (a flag --{name.replace('_', '-')})")
        if name in ("seed", "resume", "runs_dir", "env_id"):
            raise ValueError(f"space: {name!r} is set by the sweep and the grid")
        if not isinstance(spec, dict) or not ("choices" in spec or {"low", "high"} <= set(spec)):
            raise ValueError(f"space: {name}: give {{low, high[, log, step]}} or {{choices: [...]}}")
        if "choices" not in spec and fields[name] not in (int, float):
            raise ValueError(f"space: {name} is a {getattr(fields[name], '__name__', fields[name])} field: give choices")


def suggest(trial, space: dict, fields: dict[str, Any]) -> list[str]:
    """Suggest every parameter; return them as command-line flags."""
    flags = []
    for name, spec in space.items():
        if "choices" in spec:
            value = trial.suggest_categorical(name, spec["choices"])
        elif fields[name] is int:
            value = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)),
                                      log=bool(spec.get("log", False)))  # fmt: skip
        else:
            value = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), step=spec.get("step"),
                                        log=bool(spec.get("log", False)))  # fmt: skip
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            flags += [flag, repr(value) if isinstance(value, float) else str(value)]
    return flags


def make_pruner(spec: Optional[dict]):
    import optuna

    spec = dict(spec or {"type": "median"})
    kind = spec.pop("type", "median")
    makers = {"median": optuna.pruners.MedianPruner, "percentile": optuna.pruners.PercentilePruner,
              "hyperband": optuna.pruners.HyperbandPruner, "threshold": optuna.pruners.ThresholdPruner,
              "none": optuna.pruners.NopPruner}  # fmt: skip
    if kind not in makers:
        raise ValueError(f"pruner: unknown type {kind!r} (one of {', '.join(makers)})")
    return makers[kind](**spec)


def make_sampler(spec: Optional[dict]):
    import optuna

    spec = dict(spec or {"type": "tpe"})
    kind = spec.pop("type", "tpe")
    makers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
              "cmaes": optuna.samplers.CmaEsSampler}  # fmt: skip
    if kind not in makers:
        raise ValueError(f"sampler: unknown type {kind!r} (one of {', '.join(makers)})")
    return makers[kind](**spec)


def make_storage(arg: Optional[str], study_dir: Path):
    """An RDB URL as it is; otherwise a JournalStorage on a file (default STUDY_DIR/journal.log)."""
    if arg and "://" in arg:
        return arg
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(arg) if arg else study_dir / "journal.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def training_value(g: grid.Grid, tag: str, last: int) -> tuple[Optional[float], int]:
    """(mean over the grid's runs of the mean of each run's last `last` values of tag, the smallest latest step)."""
    means, steps = [], []
    for cell in g.cells:
        for run_dir in g.run_dirs(cell):
            try:
                s, v, _ = compare.load_scalars(run_dir, tag)
            except ValueError:
                continue
            means.append(float(v[-last:].mean()))
            steps.append(int(s[-1]))
    return (sum(means) / len(means), min(steps)) if means else (None, -1)


class Monitor:
    """on_poll hook of the trial's grid: report the training value to Optuna; True (stop the runs) when pruned."""

    def __init__(self, trial, tag: str, last: int, every_s: float):
        self.trial, self.tag, self.last, self.every_s = trial, tag, last, every_s
        self.polled, self.step, self.pruned = time.time(), -1, False

    def __call__(self, g: grid.Grid, running: list) -> bool:
        if time.time() - self.polled < self.every_s:
            return False
        self.polled = time.time()
        value, step = training_value(g, self.tag, self.last)
        if value is None or step <= self.step:
            return False
        self.trial.report(value, step)
        self.step = step
        self.pruned = self.trial.should_prune()
        if self.pruned:
            print(f"[sweep] trial {self.trial.number}: pruned at step {step} ({self.tag} {value:.2f})", flush=True)
        return self.pruned


class Objective:
    def __init__(self, cfg: dict, fields: dict, study_dir: Path, extra: list[str], threads: Optional[int],
                 stopper: grid.Stopper, quiet: bool):  # fmt: skip
        self.cfg, self.fields, self.study_dir, self.extra, self.threads = cfg, fields, study_dir, extra, threads
        self.stopper, self.quiet = stopper, quiet
        obj = cfg.get("objective") or {}
        self.metric, self.tag = obj.get("metric", "eval_iqm"), obj.get("tag", "charts/episodic_return")
        self.last = int(obj.get("last_games", 100))
        if self.metric not in ("eval_iqm", "train_mean"):
            raise ValueError(f"objective: metric {self.metric!r} is not eval_iqm or train_mean")
        ev = cfg.get("eval") or {}
        self.eval = {"games": ev.get("games"), "seeds": ev.get("seeds"), "flags": list(map(str, ev.get("flags", [])))}
        if self.metric == "eval_iqm" and self.eval["games"] == 0:
            raise ValueError("objective eval_iqm needs an evaluation: eval.games must not be 0")

    def __call__(self, trial) -> float:
        import optuna

        flags = suggest(trial, self.cfg["space"], self.fields)
        resumed = trial.user_attrs.get("grid_dir")
        path = Path(resumed) if resumed else self.study_dir / f"trial{trial.number:04d}"
        fixed = self.cfg.get("flags") or []
        spec = {"scripts": [self.cfg["script"]], "env_ids": list(self.cfg.get("env_ids") or []),
                "seeds": list(self.cfg.get("seeds") or [1]), "sets": {path.name: flags}, "script_flags": {},
                "extra": [*map(str, fixed.split() if isinstance(fixed, str) else fixed), *self.extra],
                "eval": self.eval}  # fmt: skip
        g = grid.Grid.open(path) if resumed else grid.Grid.open(path, spec)
        trial.set_user_attr("grid_dir", str(path))
        trial.set_user_attr("flags", " ".join(flags))
        print(f"[sweep] trial {trial.number}: {' '.join(flags)} -> {path}", flush=True)
        monitor = Monitor(trial, self.tag, self.last, float(self.cfg.get("prune_every_s", 60)))
        result = grid.run_local(g, int(self.cfg.get("trial_workers", 1)), self.threads, retries=1,
                                stopper=self.stopper, on_poll=monitor, quiet=self.quiet)  # fmt: skip
        if monitor.pruned:
            raise optuna.TrialPruned(f"pruned at step {monitor.step}")
        if self.stopper.count:
            trial.set_user_attr("interrupted", True)
            raise KeyboardInterrupt
        if result["failed"] or result["busy"]:
            raise RuntimeError(f"trial {trial.number}: cells {'failed' if result['failed'] else 'busy elsewhere'}: "
                               f"{', '.join(result['failed'] or result['busy'])} (logs under {path}/cells)")  # fmt: skip
        if self.metric == "eval_iqm":
            (row,) = compare.aggregate_evaluations([compare.read_evaluation(g.eval_dir(c)) for c in g.cells])
            stats = row["stats"]
            trial.set_user_attr("iqm_ci95", stats.get("iqm_ci95"))
            trial.set_user_attr("games", stats["n"])
            value = stats["iqm"]
        else:
            runs = [compare.read_run(d, self.tag, 10.0) for c in g.cells for d in g.run_dirs(c)]
            (row,) = compare.aggregate_runs(runs, self.last)
            stats = row["stats"]
            trial.set_user_attr("games", stats["n"])
            value = stats["mean"]
        trial.set_user_attr("median", stats["median"])
        trial.set_user_attr("mean", stats["mean"])
        print(f"[sweep] trial {trial.number}: {self.metric} = {value:.3f}", flush=True)
        return value


def requeue_interrupted(study) -> int:
    """Enqueue once more the parameters of each trial stopped by Ctrl-C (its grid folder too: its runs resume)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    taken = {t.user_attrs.get("resumes") for t in trials}
    n = 0
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in taken:
            study.enqueue_trial(t.params, user_attrs={"grid_dir": t.user_attrs["grid_dir"], "resumes": t.number})
            n += 1
    return n


def describe_best(study) -> str:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    head = f"study {study.study_name}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    if not done:
        return head + "; no completed trial yet"
    b = study.best_trial
    ci = b.user_attrs.get("iqm_ci95")
    ci_text = f" (95% CI {ci[0]:.2f}..{ci[1]:.2f})" if ci else ""
    return (f"{head}\nbest: trial {b.number}, value {b.value:.3f}{ci_text}, flags: {b.user_attrs.get('flags', '')}\n"
            f"  its grid: {b.user_attrs.get('grid_dir')}  params: {json.dumps(b.params)}")  # fmt: skip


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="python -m tools.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("config", type=Path, help="sweep file (sweeps/*.optuna.yaml)")
    p.add_argument("--n-trials", type=int, default=10, help="trials this process runs (0: just print the best)")
    p.add_argument("--timeout-h", type=float, default=None, help="start no trial after this many hours")
    p.add_argument("--storage", default=None, help="journal file, or an RDB URL (default ROOT/STUDY/journal.log)")
    p.add_argument("--study-name", default=None, help="default: the file's study_name, else its file name")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder of the studies' trial grids (runs/sweeps)")
    p.add_argument("--workers", type=int, default=1, help="trials at once in this process")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default cores // runs at once)")
    p.add_argument("--quiet", action="store_true", help="no grid progress lines")
    opts = p.parse_args(own)
    try:
        import optuna

        cfg = load_config(opts.config)
        name = opts.study_name or cfg.get("study_name") or opts.config.name.split(".")[0]
        study_dir = opts.root / name
        fields = script_fields(cfg["script"])
        check_space(cfg["space"], fields, cfg["script"])
        storage = make_storage(opts.storage, study_dir)
        study = optuna.create_study(study_name=name, storage=storage, direction=cfg.get("direction", "maximize"),
                                    sampler=make_sampler(cfg.get("sampler")), pruner=make_pruner(cfg.get("pruner")),
                                    load_if_exists=True)  # fmt: skip
        stopper = grid.Stopper()
        runs_at_once = opts.workers * int(cfg.get("trial_workers", 1))
        threads = opts.threads or max(1, grid.cores() // runs_at_once)
        objective = Objective(cfg, fields, study_dir, extra, threads, stopper, opts.quiet)
    except (ValueError, TypeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if opts.n_trials:
        again = requeue_interrupted(study)
        if again:
            print(f"[sweep] {again} interrupted trial(s) queued again (their runs resume)")
        old = stopper.install()
        try:
            study.optimize(objective, n_trials=opts.n_trials, timeout=opts.timeout_h and 3600 * opts.timeout_h,
                           n_jobs=opts.workers, catch=(RuntimeError,))  # fmt: skip
        except KeyboardInterrupt:
            print(f"[sweep] interrupted; the trial's runs are saved. Resume: python -m tools.sweep {opts.config}"
                  + (f" --storage {opts.storage}" if opts.storage else ""))  # fmt: skip
            print(describe_best(study))
            return 130
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    print(describe_best(study))
    return 0


if __name__ == "__main__":
    sys.exit(main())
