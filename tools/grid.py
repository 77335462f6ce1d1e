"""Grids of training runs: scripts x env ids x override sets x seeds, each run then evaluated; resumable; run on this
machine (a pool of worker processes) or as a Slurm job array (submitit).

    python -m tools.grid --name ppo_vs_ram --scripts ppo_atari dqn_ram_atari --seeds 1 2 3 --workers 2 \\
        --eval-games 30 --eval-seeds 0 1 2 -- --total-timesteps 1000000
    python -m tools.grid --name ppo_vs_ram            # again: finished cells skipped, interrupted ones resumed
    python -m tools.grid --name ppo_vs_ram --status   # the cells' state; starts nothing
    python -m tools.grid --name lr --scripts ppo_atari --seeds 1 2 --set lr1e-4="--learning-rate 1e-4" \\
        --set lr3e-4="--learning-rate 3e-4" -- --total-timesteps 500000
    python -m tools.grid --name ppo_vs_ram --launcher slurm --timeout-min 720 --slurm-partition gpu --gpus-per-task 1

A cell is one training run (`python SCRIPT.py FLAGS`) followed by `evaluate.py` on its final checkpoint. Flags after
`--` go to every run, `--flags SCRIPT="FLAGS"` to one script's runs, and each `--set NAME="FLAGS"` (an override set)
makes one cell per script and seed with its flags (later flags win, as on a command line).
Layout of the grid folder (`--root`/`--name`, default runs/grids/NAME/): `manifest.json` (the grid's spec and cell
list), `cells.tsv` (one line per cell: id and command), and per cell `cells/<id>/` with `log.txt` (every attempt's
output, appended), `state.json`, `runs/<run folder>/` (TensorBoard events, checkpoint) and `eval/` (evaluate.py's
summary.json, per_game.csv). Running it again skips finished cells, resumes interrupted ones from their checkpoint
(`--resume CKPT` plus the cell's resumable flags: `--total-timesteps`, ...), and retries a failed one `--retries`
times (resuming from its last periodic checkpoint if it has one); then reports it. Ctrl-C (or SIGTERM) stops the
workers cleanly, each saving its checkpoint, and a rerun resumes them; a second Ctrl-C aborts them unsaved.

Exit status: 0 every cell done, 1 some cell failed (listed with its log), 130 interrupted (rerun to resume), 2 usage.
Each worker gets OMP_NUM_THREADS = MKL_NUM_THREADS = cores // workers (`--threads` overrides) and
OMP_WAIT_POLICY=PASSIVE. `--track` logs every run to W&B with the grid name as its group and the script as its job
type (WANDB_RUN_GROUP, WANDB_JOB_TYPE, which wandb.init reads). Guide: docs/experiments.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = Path("runs/grids")
STOPPED_MARK = "stopped; checkpoint: "  # common/run.py Run.finish prints it when a signal stopped the run
STATUS_RE = re.compile(rb"global_step=(\d+)/(\d+) SPS=")  # common/run.py Run.log's status line (no terminal)
STEP_RE = re.compile(rb"global_step=(\d+)")  # the status line, and Run.episodes' line for each finished game
RESERVED = ("--seed", "--env-id", "--runs-dir", "--resume", "--no-save-model")  # the grid sets these itself
POLL_S = 0.2


def cores() -> int:
    """CPU cores this process may use (its affinity: a Slurm allocation's, say)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


DEFAULT_WORKERS = cores()  # docs/benchmarks.md, "Grid runner": on the 2-core VM, 2 workers gave 1.34x (PPO) and 1.57x
# (RAM DQN) the total steps/s of 1; a third gave PPO nothing


def flag_name(token: str) -> Optional[str]:
    """`--total-timesteps=5` -> "total_timesteps"; None for a value."""
    return token[2:].split("=", 1)[0].replace("-", "_") if token.startswith("--") and len(token) > 2 else None


def flag_groups(flags: list[str]) -> list[list[str]]:
    """Split a flag list into [flag, values...] groups."""
    groups: list[list[str]] = []
    for token in flags:
        if flag_name(token) or not groups:
            groups.append([token])
        else:
            groups[-1].append(token)
    return groups


def flag_value(flags: list[str], name: str) -> Optional[str]:
    """The last value given to --name in flags (None if absent)."""
    value = None
    for group in flag_groups(flags):
        if flag_name(group[0]) == name:
            value = group[0].split("=", 1)[1] if "=" in group[0] else (group[1] if len(group) > 1 else "")
    return value


def resumable_flags(flags: list[str]) -> list[str]:
    """The flags of a cell that a resume may (and should) repeat: those in common.run.RESUMABLE."""
    from common.run import RESUMABLE  # lazy: only a resume needs it

    out = []
    for group in flag_groups(flags):
        name = flag_name(group[0]) or ""
        if name in RESUMABLE or (name.startswith("no_") and name[3:] in RESUMABLE):
            out += group
    return out


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


@dataclasses.dataclass
class Cell:
    """One run of the grid: `python SCRIPT.py FLAGS` with FLAGS = the grid's defaults, the set's, the extra ones, and
    the cell's seed and env id (the run folder goes under the cell's folder)."""

    id: str
    script: str
    env_id: Optional[str]
    set: str
    seed: int
    flags: list[str]


def make_cells(spec: dict) -> list[Cell]:
    """Seed-major order: every (script, env, set) at the first seed before any at the second, so that a grid stopped
    half-way has comparable results."""
    sets = spec["sets"] or {"default": []}
    cells = []
    for seed in spec["seeds"]:
        for script in spec["scripts"]:
            for env in spec["env_ids"] or [None]:
                for name, set_flags in sets.items():
                    parts = [script] + ([slug(env)] if env else []) + ([slug(name)] if spec["sets"] else [])
                    flags = ["--eval-episodes", "0", *spec["script_flags"].get(script, []), *set_flags, *spec["extra"],
                             "--seed", str(seed)]  # fmt: skip
                    flags += ["--env-id", env] if env else []
                    cells.append(Cell("__".join(parts + [f"seed{seed}"]), script, env, name, seed, flags))
    return cells


def write_json(path: Path, data: dict) -> None:
    """Atomic write (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class Grid:
    """A grid folder: its manifest, cells and their state files (see the module doc)."""

    def __init__(self, path: Path, manifest: dict):
        self.dir, self.manifest = path, manifest
        self.name, self.spec = manifest["name"], manifest["spec"]
        self.cells = [Cell(**c) for c in manifest["cells"]]

    @classmethod
    def open(cls, path: Path, spec: Optional[dict] = None) -> "Grid":
        """Load the grid at path; with spec, create it (or check that an existing one has the same spec)."""
        path = Path(path)
        mpath = path / "manifest.json"
        if mpath.exists():
            manifest = json.loads(mpath.read_text())
            if spec is not None and spec != manifest["spec"]:
                diff = ", ".join(k for k in spec if spec[k] != manifest["spec"].get(k))
                raise ValueError(f"grid {path} exists with another {diff}; rerun it with just --name "
                                 f"{manifest['name']} (or the same flags), or choose a new --name")  # fmt: skip
            return cls(path, manifest)
        if spec is None:
            raise ValueError(f"no grid at {path}: give --scripts (and --seeds) to create it")
        for script in spec["scripts"]:
            if not (REPO / f"{script}.py").exists():
                raise ValueError(f"no script {script}.py in {REPO}")
        unknown = set(spec["script_flags"]) - set(spec["scripts"])
        if unknown:
            raise ValueError(f"--flags {sorted(unknown)[0]}=...: not one of --scripts")
        for flags in [spec["extra"], *spec["sets"].values(), *spec["script_flags"].values()]:
            bad = [t for t in flags if t.split("=", 1)[0] in RESERVED]
            if bad:
                raise ValueError(f"{bad[0]} is set by the grid (use --seeds, --env-ids; runs go to the grid folder)")
        cells = make_cells(spec)
        if len({c.id for c in cells}) != len(cells):
            raise ValueError("two cells would share a folder: give the override sets distinct names")
        manifest = {"name": path.name, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "repo": str(REPO), "spec": spec,
                    "cells": [dataclasses.asdict(c) for c in cells]}  # fmt: skip
        (path / "cells").mkdir(parents=True, exist_ok=True)
        write_json(mpath, manifest)
        lines = [f"{c.id}\tpython {c.script}.py {shlex.join(c.flags)}" for c in cells]
        (path / "cells.tsv").write_text("\n".join(lines) + "\n")
        return cls(path, manifest)

    def cell(self, cell_id: str) -> Cell:
        return next(c for c in self.cells if c.id == cell_id)

    def cell_dir(self, cell: Cell) -> Path:
        return self.dir / "cells" / cell.id

    def state(self, cell: Cell) -> dict:
        path = self.cell_dir(cell) / "state.json"
        base = {"status": "pending", "trained": False, "failures": 0, "attempts": [], "script": cell.script,
                "env_id": cell.env_id, "set": cell.set, "seed": cell.seed}  # fmt: skip
        return base | (json.loads(path.read_text()) if path.exists() else {})

    def save_state(self, cell: Cell, state: dict) -> None:
        self.cell_dir(cell).mkdir(parents=True, exist_ok=True)
        write_json(self.cell_dir(cell) / "state.json", state)

    def run_dirs(self, cell: Cell) -> list[Path]:
        runs = self.cell_dir(cell) / "runs"
        return sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime) if runs.is_dir() else []

    def checkpoint(self, cell: Cell) -> Optional[Path]:
        """The cell's resumable checkpoint: <run folder>/<exp_name>.pt of its newest run folder that has one."""
        exp_name = flag_value(cell.flags, "exp_name") or cell.script
        found = [d / f"{exp_name}.pt" for d in self.run_dirs(cell) if (d / f"{exp_name}.pt").exists()]
        return found[-1] if found else None

    def eval_dir(self, cell: Cell) -> Path:
        return self.cell_dir(cell) / "eval"

    def evaluates(self) -> bool:
        return self.spec["eval"]["games"] != 0

    def plan(self, cell: Cell, track: bool = False) -> Optional[tuple[str, list[str]]]:
        """What the cell runs next, as (phase, argv after `python`): ("train" | "resume" | "eval", ...), or None when
        it is done."""
        st = self.state(cell)
        if st["status"] == "done":
            return None
        ckpt = self.checkpoint(cell)
        if st["trained"] and ckpt is not None:
            if not self.evaluates():
                return None
            ev = self.spec["eval"]
            argv = [str(REPO / "evaluate.py"), "--checkpoint", str(ckpt.resolve()), "--output-dir",
                    str(self.eval_dir(cell).resolve())]  # fmt: skip
            argv += ["--num-games", str(ev["games"])] if ev["games"] is not None else []
            argv += ["--seeds", *map(str, ev["seeds"])] if ev["seeds"] else []
            return "eval", argv + ev["flags"]
        script = str(REPO / f"{cell.script}.py")
        if ckpt is not None:
            return "resume", [script, "--resume", str(ckpt.resolve()), *resumable_flags(cell.flags)] + ["--track"] * track
        for stale in self.run_dirs(cell):  # an attempt stopped before its first checkpoint: nothing to resume
            shutil.rmtree(stale)
        runs_dir = str((self.cell_dir(cell) / "runs").resolve())
        return "train", [script, *cell.flags, "--runs-dir", runs_dir] + ["--track"] * track

    def record(self, cell: Cell, phase: str, rc: int, output: str, seconds: float, stopping: bool,
               retries: int) -> str:  # fmt: skip
        """Book an attempt; returns the cell's outcome: "next" (train done, evaluation next), "done", "interrupted",
        "retry" or "failed"."""
        st = self.state(cell)
        st["attempts"].append({"phase": phase, "rc": rc, "seconds": round(seconds, 2), "end": time.strftime("%F %T")})
        key = "eval_s" if phase == "eval" else "train_s"
        st[key] = round(st.get(key, 0.0) + seconds, 2)
        if phase == "eval":
            ok = rc == 0 and (self.eval_dir(cell) / "summary.json").exists()
            interrupted = not ok and (stopping or rc == 130)
        else:
            ckpt = self.checkpoint(cell)
            stopped = STOPPED_MARK in output
            ok = rc == 0 and not stopped and ckpt is not None
            interrupted = not ok and (stopping or (rc == 0 and stopped))
            if ok:
                st["trained"], st["checkpoint"] = True, str(ckpt.relative_to(self.dir))  # the grid folder may move
        if ok:
            st["status"] = "done" if phase == "eval" or not self.evaluates() else "evaluating"
            outcome = "done" if st["status"] == "done" else "next"
        elif interrupted:
            st["status"], outcome = "interrupted", "interrupted"
        else:
            st["failures"] += 1
            st["status"] = outcome = "retry" if st["failures"] <= retries else "failed"
            st["last_error"] = last_error(output) or f"exit code {rc}"
        self.save_state(cell, st)
        return outcome


def last_error(output: str) -> str:
    """The line of a failed attempt's output that says why: its last `error:` line, else its last line with words."""
    lines = [line.strip(" │|") for line in output.splitlines() if re.search(r"[A-Za-z]{2}", line)]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1][-300:]


class Lock:
    """An exclusive, non-blocking flock on a cell (so a local grid and a Slurm job never run one cell twice)."""

    def __init__(self, path: Path):
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.held = True
        except OSError:
            self.held = False
            self.file.close()

    def release(self) -> None:
        if self.held:
            self.file.close()  # closing drops the flock
            self.held = False


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM (save and exit) if the grid process dies, e.g. by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def cell_env(grid: Grid, cell: Cell, threads: int, track: bool) -> dict[str, str]:
    """The environment of a cell's processes: torch threads, passive OpenMP waits, unbuffered output, W&B group."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE",
               PYTHONUNBUFFERED="1")  # fmt: skip
    if track:
        env |= {"WANDB_RUN_GROUP": grid.name, "WANDB_JOB_TYPE": cell.script}
    return env


class Attempt:
    """One phase of one cell running as a child process, output appended to the cell's log."""

    def __init__(self, grid: Grid, cell: Cell, phase: str, argv: list[str], env: dict[str, str]):
        self.grid, self.cell, self.phase, self.started = grid, cell, phase, time.time()
        self.log = grid.cell_dir(cell) / "log.txt"
        with open(self.log, "ab") as f:
            f.write(f"=== {time.strftime('%F %T')} {phase}: python {shlex.join(argv)}\n".encode())
            self.offset = f.tell()
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen([sys.executable, *argv], stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                         preexec_fn=_die_with_parent)  # fmt: skip

    def signal(self, sig: int) -> None:
        """Send sig to the child's process group (as a terminal's Ctrl-C reaches a script and its env workers)."""
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def output(self, limit: int = 65536) -> str:
        """This attempt's output (its last `limit` bytes)."""
        with open(self.log, "rb") as f:
            f.seek(max(self.offset, f.seek(0, 2) - limit))
            return f.read().decode(errors="replace")

    def fraction(self) -> Optional[float]:
        """Training progress from the run's last status line (None before the first one, or while evaluating)."""
        if self.phase == "eval":
            return None
        tail = self.output(8192).encode()
        total, steps = STATUS_RE.findall(tail), STEP_RE.findall(tail)
        return int(steps[-1]) / max(int(total[-1][1]), 1) if total else None


class Stopper:
    """Counts SIGINT/SIGTERM: 1 asks the runs to save and stop, 2 aborts them."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum=None, frame=None) -> None:
        self.count += 1
        what = "asking the runs to save and stop (again to abort them)" if self.count == 1 else "aborting the runs"
        print(f"\ngrid: interrupt: {what}", file=sys.stderr, flush=True)

    def install(self) -> dict:
        return {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}


def hms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def eta(running: list[Attempt], pending: int, durations: list[float], workers: int) -> Optional[float]:
    """Seconds left: the running cells' rest (from their progress, or the mean cell time) plus the pending cells at the
    mean cell time (of the cells finished by this invocation; else estimated from the running ones), over workers."""
    now = time.time()
    guesses = [(now - a.started) / f for a in running if (f := a.fraction()) and a.phase != "eval" and f > 0.02]
    mean = sum(durations) / len(durations) if durations else (sum(guesses) / len(guesses) if guesses else None)
    if mean is None:
        return None
    left = 0.0
    for a in running:
        f = a.fraction()
        left += (now - a.started) * (1 - f) / f if f and f > 0.02 else max(mean - (now - a.started), 0.0)
    return (left + pending * mean) / max(workers, 1)


def run_local(grid: Grid, workers: int, threads: Optional[int] = None, track: bool = False, retries: int = 1,
              progress_every: float = 30.0, stopper: Optional[Stopper] = None,
              on_poll: Optional[Callable[[Grid, list[Attempt]], Optional[bool]]] = None, quiet: bool = False) -> dict:
    """Run the grid's unfinished cells with `workers` child processes at a time. `stopper` (installed as the SIGINT and
    SIGTERM handler unless given) stops them; `on_poll(grid, running)` returning True stops them too (a pruned
    sweep trial). Returns {"done", "failed", "interrupted", "pending", "busy"} lists of cell ids."""
    threads = threads or max(1, cores() // workers)
    own = stopper is None
    stopper = stopper or Stopper()
    old = stopper.install() if own else {}
    queue = [c for c in grid.cells if grid.state(c)["status"] != "done"]
    done = [c.id for c in grid.cells if c not in queue]
    result: dict[str, list[str]] = {"done": done, "failed": [], "interrupted": [], "pending": [], "busy": []}
    running: dict[str, tuple[Attempt, Lock]] = {}
    durations, start, last, sent, cell_start = [], time.time(), 0.0, 0, {}

    def say(text: str) -> None:
        if not quiet:
            print(f"[grid {grid.name}] {text}", flush=True)

    say(f"{len(grid.cells)} cells, {len(done)} done already; {workers} workers x {threads} torch threads; "
        f"folder {grid.dir}")  # fmt: skip
    try:
        while queue or running:
            if on_poll is not None and running and on_poll(grid, [a for a, _ in running.values()]) and not stopper.count:
                stopper.count = 1
            if stopper.count > sent:  # forward each new interrupt: the first saves, the second aborts
                for attempt, _ in running.values():
                    attempt.signal(signal.SIGINT)
                sent = stopper.count
                if stopper.count >= 3:
                    for attempt, _ in running.values():
                        attempt.signal(signal.SIGKILL)
            changed = False
            for cid, (attempt, lock) in list(running.items()):
                rc = attempt.proc.poll()
                if rc is None:
                    continue
                del running[cid]
                lock.release()
                changed = True
                outcome = grid.record(attempt.cell, attempt.phase, rc, attempt.output(), time.time() - attempt.started,
                                      bool(stopper.count), retries)  # fmt: skip
                if outcome == "next":
                    queue.insert(0, attempt.cell)
                    continue
                if outcome == "retry":
                    say(f"{cid}: {attempt.phase} failed (exit {rc}); retrying; log {attempt.log}")
                    queue.append(attempt.cell)
                    continue
                if outcome == "done":
                    durations.append(time.time() - cell_start.pop(cid))
                result[outcome].append(cid)
                if outcome == "failed":
                    say(f"{cid}: failed (exit {rc}) after {grid.state(attempt.cell)['failures']} attempts; log {attempt.log}")
            while not stopper.count and queue and len(running) < workers:
                cell = queue.pop(0)
                lock = Lock(grid.cell_dir(cell) / ".lock")
                if not lock.held:
                    say(f"{cell.id}: running in another process; skipped")
                    result["busy"].append(cell.id)
                    continue
                step = grid.plan(cell, track)
                if step is None:
                    lock.release()
                    st = grid.state(cell)
                    st["status"] = "done"
                    grid.save_state(cell, st)
                    result["done"].append(cell.id)
                    continue
                phase, argv = step
                st = grid.state(cell)
                st["status"] = "evaluating" if phase == "eval" else "running"
                grid.save_state(cell, st)
                cell_start.setdefault(cell.id, time.time())
                running[cell.id] = (Attempt(grid, cell, phase, argv, cell_env(grid, cell, threads, track)), lock)
                changed = True
            if stopper.count and not running:
                break
            if changed or time.time() - last >= progress_every:
                last = time.time()
                left = eta([a for a, _ in running.values()], len(queue), durations, workers)
                say(f"{len(result['done'])}/{len(grid.cells)} done | {len(running)} running | {len(result['failed'])} "
                    f"failed | {len(queue)} pending | {hms(time.time() - start)} elapsed | ETA {hms(left)}")  # fmt: skip
            time.sleep(POLL_S)
    finally:
        for attempt, lock in running.values():  # only on an exception in this loop: don't leave orphans
            attempt.signal(signal.SIGKILL)
            lock.release()
        for s, h in old.items():
            signal.signal(s, h)
    result["pending"] = [c.id for c in queue]
    return result


class CellJob:
    """One cell as a Slurm job (submitit): runs its phases in order. Checkpointable (submitit looks for `checkpoint`):
    on Slurm's timeout or preemption signal it asks the run to save, then submitit requeues the job, which resumes."""

    def __init__(self) -> None:
        self.attempt: Optional[Attempt] = None

    def __call__(self, grid_dir: str, cell_id: str, track: bool = False, retries: int = 1) -> str:
        grid = Grid.open(Path(grid_dir))
        cell = grid.cell(cell_id)
        lock = Lock(grid.cell_dir(cell) / ".lock")
        if not lock.held:
            return "busy"
        stopper = Stopper()
        signal.signal(signal.SIGINT, stopper)
        try:
            while (step := grid.plan(cell, track)) is not None:
                phase, argv = step
                st = grid.state(cell)
                st["status"], st["slurm_job"] = "evaluating" if phase == "eval" else "running", os.environ.get("SLURM_JOB_ID")
                grid.save_state(cell, st)
                self.attempt = Attempt(grid, cell, phase, argv, cell_env(grid, cell, cores(), track))
                while (rc := self.attempt.proc.poll()) is None:
                    if stopper.count:
                        self.attempt.signal(signal.SIGINT)
                        rc = self.attempt.proc.wait()
                        break
                    time.sleep(POLL_S)
                outcome = grid.record(cell, phase, rc, self.attempt.output(), time.time() - self.attempt.started,
                                      bool(stopper.count), retries)  # fmt: skip
                if outcome in ("interrupted", "failed"):
                    return outcome
            st = grid.state(cell)
            if st["status"] != "done":
                st["status"] = "done"
                grid.save_state(cell, st)
            return "done"
        finally:
            lock.release()

    def checkpoint(self, *args, **kwargs):
        """submitit calls this on the timeout/preemption signal: the run saves (up to 60 s), then the job requeues."""
        import submitit

        if self.attempt is not None and self.attempt.proc.poll() is None:
            self.attempt.signal(signal.SIGINT)
            try:
                self.attempt.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        return submitit.helpers.DelayedSubmission(CellJob(), *args, **kwargs)


def run_submitit(grid: Grid, opts: argparse.Namespace) -> dict:
    """Submit the unfinished cells as one job array (Slurm, or submitit's local/debug executors) and wait for them."""
    import submitit

    from tools import grid as module  # pickled by reference, also when this file runs as __main__

    cluster = {"slurm": "slurm", "submitit-local": "local", "submitit-debug": "debug"}[opts.launcher]
    ex = submitit.AutoExecutor(folder=grid.dir / "submitit", cluster=cluster)
    params = {"name": f"grid_{grid.name}", "timeout_min": opts.timeout_min, "cpus_per_task": opts.cpus_per_task,
              "gpus_per_node": opts.gpus_per_task, "mem_gb": opts.mem_gb}  # fmt: skip
    if cluster == "slurm":
        params |= {"slurm_array_parallelism": opts.workers, "slurm_partition": opts.slurm_partition,
                   "slurm_account": opts.slurm_account, "slurm_qos": opts.slurm_qos}  # fmt: skip
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    todo = [c for c in grid.cells if grid.state(c)["status"] != "done"]
    result: dict[str, list[str]] = {"done": [c.id for c in grid.cells if c not in todo], "failed": [], "interrupted": [],
                                    "pending": [], "busy": []}  # fmt: skip
    if not todo:
        return result
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # for the jobs
    n = len(todo)
    jobs = ex.map_array(module.CellJob(), [str(grid.dir.resolve())] * n, [c.id for c in todo], [opts.track] * n,
                        [opts.retries] * n)  # fmt: skip
    print(f"[grid {grid.name}] submitted {len(jobs)} cells ({cluster}): job {jobs[0].job_id.split('_')[0]}; "
          f"logs in {grid.dir / 'submitit'}", flush=True)  # fmt: skip
    try:
        for cell, job in zip(todo, jobs):
            try:
                outcome = job.result()
            except Exception as e:  # the job itself died (node failure, out of memory, ...)
                print(f"[grid {grid.name}] {cell.id}: job {job.job_id} failed: {str(e).strip().splitlines()[-1]}")
                outcome = "failed"
            result.setdefault(outcome, []).append(cell.id)
            print(f"[grid {grid.name}] {cell.id}: {outcome} (job {job.job_id})", flush=True)
    except KeyboardInterrupt:
        print(f"\n[grid {grid.name}] stopped waiting; the jobs go on (scancel {jobs[0].job_id.split('_')[0]} stops "
              f"them; they save). Check with: python -m tools.grid --name {grid.name} --status")  # fmt: skip
        result["interrupted"] = [c.id for c in todo if c.id not in sum(result.values(), [])]
    return result


def status_table(grid: Grid) -> str:
    """One line per cell: status, training steps, train / eval time, evaluation IQM, log."""
    head = ["cell", "status", "steps", "train h", "eval min", "eval IQM", "log"]
    rows = []
    for cell in grid.cells:
        st = grid.state(cell)
        summary = grid.eval_dir(cell) / "summary.json"
        iqm = f"{json.loads(summary.read_text())['pooled']['iqm']:.2f}" if summary.exists() else "-"
        steps = "-"
        log = grid.cell_dir(cell) / "log.txt"
        if log.exists():
            with open(log, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 8192))
                found = STATUS_RE.findall(f.read())
            steps = f"{int(found[-1][0])}/{int(found[-1][1])}" if found else steps
        rows.append([cell.id, st["status"] + (f" ({st['failures']} failures)" if st["failures"] else ""), steps,
                     f"{st.get('train_s', 0) / 3600:.2f}", f"{st.get('eval_s', 0) / 60:.1f}", iqm,
                     str(log) if log.exists() else "-"])  # fmt: skip
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + rows)


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="python -m tools.grid", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--name", required=True, help="the grid's name (its folder: ROOT/NAME)")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder holding the grids (default runs/grids)")
    p.add_argument("--scripts", nargs="+", help="training scripts (ppo_atari or ppo_atari.py); needed to create a grid")
    p.add_argument("--env-ids", nargs="+", default=[], help="env ids (default: each script's own default)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1], help="training seeds (default 1)")
    p.add_argument("--set", action="append", default=[], metavar='NAME="FLAGS"',
                   help="a named override set: its flags go to its cells (repeat for more sets)")
    p.add_argument("--flags", action="append", default=[], metavar='SCRIPT="FLAGS"',
                   help="flags for one script's cells only (repeat for more scripts)")
    p.add_argument("--eval-games", type=int, default=None,
                   help="evaluate.py --num-games per seed (default: evaluate.py's, 60); 0 skips the evaluation")
    p.add_argument("--eval-seeds", nargs="+", type=int, default=None, help="evaluate.py --seeds (default: its, 0)")
    p.add_argument("--eval-flags", default="", help='more evaluate.py flags, e.g. "--deterministic" or "--env-id X"')
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation (as --eval-games 0)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help=f"runs at once (default: the cores here, "
                   f"{DEFAULT_WORKERS}; with slurm: most array tasks at once)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads per run (default cores // workers)")
    p.add_argument("--retries", type=int, default=1, help="tries after a failure before a cell is reported failed")
    p.add_argument("--track", action="store_true", help="log to W&B: group = grid name, job type = script")
    p.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines")
    p.add_argument("--status", action="store_true", help="print the cells' state and exit")
    p.add_argument("--dry-run", action="store_true", help="create the grid folder, print the cells' commands, exit")
    p.add_argument("--launcher", choices=["local", "slurm", "submitit-local", "submitit-debug"], default="local",
                   help="local: worker processes here; slurm: a job array; submitit-*: the same path on this machine")
    g = p.add_argument_group("slurm (and the submitit launchers)")
    g.add_argument("--timeout-min", type=int, default=24 * 60, help="time limit per cell (a timeout saves and requeues)")
    g.add_argument("--cpus-per-task", type=int, default=None)
    g.add_argument("--gpus-per-task", type=int, default=None)
    g.add_argument("--mem-gb", type=int, default=None)
    g.add_argument("--slurm-partition", default=None)
    g.add_argument("--slurm-account", default=None)
    g.add_argument("--slurm-qos", default=None)
    return p.parse_args(own), extra


def build_spec(opts: argparse.Namespace, extra: list[str]) -> Optional[dict]:
    if not opts.scripts:
        return None
    sets = {}
    for item in opts.set:
        name, _, flags = item.partition("=")
        if not name or not _:
            raise ValueError(f'--set {item!r}: expected NAME="FLAGS"')
        sets[name] = shlex.split(flags)
    script_flags = {}
    for item in opts.flags:
        name, _, flags = item.partition("=")
        if not name or not _:
            raise ValueError(f'--flags {item!r}: expected SCRIPT="FLAGS"')
        script_flags[Path(name).name.removesuffix(".py")] = shlex.split(flags)
    games = 0 if opts.no_eval else opts.eval_games
    return {"scripts": [Path(s).name.removesuffix(".py") for s in opts.scripts], "env_ids": opts.env_ids,
            "seeds": opts.seeds, "sets": sets, "script_flags": script_flags, "extra": extra,
            "eval": {"games": games, "seeds": opts.eval_seeds, "flags": shlex.split(opts.eval_flags)}}  # fmt: skip


def report(grid: Grid, result: dict) -> int:
    print(f"[grid {grid.name}] {len(result['done'])}/{len(grid.cells)} done, {len(result['failed'])} failed, "
          f"{len(result['interrupted'])} interrupted, {len(result['pending'])} not started; folder {grid.dir}")  # fmt: skip
    for cid in result["failed"]:
        st = grid.state(grid.cell(cid))
        print(f"  failed: {cid}: {st.get('last_error', '')}\n    log: {grid.cell_dir(grid.cell(cid)) / 'log.txt'}")
    if result["failed"]:
        return 1
    if result["interrupted"] or result["pending"] or result["busy"]:
        print(f"  rerun to resume: python -m tools.grid --name {grid.name} --root {grid.dir.parent}")
        return 130
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    opts, extra = parse(sys.argv[1:] if argv is None else argv)
    try:
        if opts.workers < 1 or (opts.threads is not None and opts.threads < 1) or opts.retries < 0:
            raise ValueError("--workers and --threads must be positive, --retries >= 0")
        grid = Grid.open(opts.root / opts.name, build_spec(opts, extra))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if opts.status:
        print(status_table(grid))
        return 0
    if opts.dry_run:
        print((grid.dir / "cells.tsv").read_text(), end="")
        return 0
    if opts.launcher == "local":
        result = run_local(grid, opts.workers, opts.threads, opts.track, opts.retries, opts.progress_every)
    else:
        result = run_submitit(grid, opts)
    return report(grid, result)


if __name__ == "__main__":
    sys.exit(main())
