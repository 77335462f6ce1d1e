"""The run harness: the plumbing around a training loop, and nothing of the algorithm.

A script's ``main`` keeps every algorithmic step and calls the harness only at the seams (CleanRL order):

    run = Run(args, __file__, check=check_args)          # --resume merge, flag checks, run folder, TensorBoard, W&B
    args, global_step = run.args, run.global_step
    ...seeding, device, envs, networks, optimizer...
    run.attach(agent, optimizer, extra_state)            # what checkpoints hold; on a resume: weights, optimizer, RNG
    lr_at = run.schedule("learning_rate", Linear(0, args.learning_rate, end, 0.0), stretch=True)
    with run.loop(total_steps):                          # progress bar; Ctrl-C/SIGTERM: the first stops, a second aborts
        for ...:
            if run.stopping: break
            ...act, step...
            games = run.episodes(global_step, rewards, terminations, truncations, infos["lives"])
            ...learn...
            run.log(global_step, {"losses/...": ...})    # + charts/SPS, the progress bar's SPS and return
            run.checkpoint_due(global_step)              # --checkpoint-every, --keep-checkpoints
    return run.finish(global_step, device)               # final save, final evaluation or the resume hint, close

Resume (``--resume PATH``) starts from the saved ``Args`` and applies exactly the flags typed on the command line (or,
for an in-process call, the fields that differ from the dataclass defaults): those in ``RESUMABLE`` apply even when
they equal a default; any other that differs from the saved run stops with one line naming it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Optional

import numpy as np

from common.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state, strip_checkpoint
from common.contract import env_protocol
from common.episodes import EpisodeStats

# flags a resume may change: how long and how the run goes on, never what it learns
RESUMABLE = ("total_timesteps", "checkpoint_every", "keep_checkpoints", "progress", "device", "track", "save_buffer",
             "eval_episodes", "capture_video")  # fmt: skip
LOG_EVERY_S = 30.0  # without a progress bar (no terminal), one status line at most this often


@dataclasses.dataclass
class RunArgs:
    """The harness's flags: the `# Experiment` group that every script's ``Args(RunArgs)`` starts with."""

    exp_name: str = "run"
    """the name of this experiment (run folder, checkpoint file, W&B run); each script defaults it to its file name"""
    seed: int = 1
    """seed of the experiment (python, numpy, torch and the environments)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    """where the network runs; auto picks cuda, then mps, then cpu"""
    track: bool = False
    """if toggled, log to Weights & Biases (works offline with WANDB_MODE=offline)"""
    wandb_project_name: str = "atari-playground"
    """the W&B project name"""
    wandb_entity: Optional[str] = None
    """the W&B entity (team); None uses your default"""
    capture_video: bool = False
    """if toggled, the final evaluation records its first game to <run dir>/videos"""
    save_model: bool = True
    """if toggled, save checkpoints to <run dir>/<exp_name>.pt (off: the final evaluation still runs, on a temporary file)"""
    eval_episodes: int = 10
    """full games played by the final evaluation (0 skips it)"""
    checkpoint_every: int = 250_000
    """write a checkpoint every this many agent steps (0: only at the end and on Ctrl-C)"""
    keep_checkpoints: bool = False
    """if toggled, also keep each periodic checkpoint's weights as <run dir>/steps/<exp_name>_<step>.pt (for evaluate.py)"""
    resume: Optional[str] = None
    """path of a checkpoint of this script to continue (same run folder, step count, schedules, RNG); with it, only
    --total-timesteps, --checkpoint-every, --keep-checkpoints, --progress, --device, --track, --save-buffer,
    --eval-episodes and --capture-video may change"""
    progress: bool = True
    """show a progress bar with SPS and recent return (only when stderr is a terminal)"""
    runs_dir: str = "runs"
    """folder that holds the run folders"""


def typed_flags(args: Any, script: str, argv: Optional[list[str]] = None) -> set[str]:
    """Args fields the user set: named in ``argv`` when the script runs as a program, else those off their defaults."""
    argv = sys.argv if argv is None else argv
    fields = {f.name: f for f in dataclasses.fields(args)}
    typed = {n for n, f in fields.items() if f.default is not dataclasses.MISSING and getattr(args, n) != f.default}
    if argv and Path(argv[0]).stem == script:
        for token in argv[1:]:
            name = token[2:].split("=", 1)[0].replace("-", "_") if token.startswith("--") else ""
            typed |= {n for n in (name, name[3:] if name.startswith("no_") else None) if n in fields}
    return typed


def resume_args(args: Any, script: str, argv: Optional[list[str]] = None) -> tuple[Any, dict]:
    """``--resume``: the saved Args with the typed RESUMABLE flags applied; one-line exit for anything else."""
    try:
        ckpt = load_checkpoint(args.resume, script=script)
    except CheckpointError as e:
        sys.exit(f"error: --resume: {e}")
    if "resume" not in ckpt:
        sys.exit(f"error: --resume: {args.resume} has no resume state (a stripped checkpoint); evaluate it instead")
    fields = {f.name: f for f in dataclasses.fields(args)}
    saved = {n: ckpt["args"].get(n, f.default) for n, f in fields.items()}
    typed = typed_flags(args, script, argv) - {"resume"}
    changed = sorted(n for n in typed - set(RESUMABLE) if getattr(args, n) != saved[n])
    if changed:
        n, may = changed[0], ", --".join(r.replace("_", "-") for r in RESUMABLE if r in fields)
        sys.exit(f"error: --resume: --{n.replace('_', '-')} {getattr(args, n)} differs from the saved run's {saved[n]}; "
                 f"a resume may change only --{may}")  # fmt: skip
    new = {n: getattr(args, n) for n in typed & set(RESUMABLE)}
    return dataclasses.replace(type(args)(**saved), resume=args.resume, **new), ckpt


def require(args: Any, positive: Iterable[str] = (), at_least_0: Iterable[str] = (), unit: Iterable[str] = ()) -> None:
    """One-line exit unless each named field is > 0, >= 0, or in [0, 1]."""
    for names, ok, rule in ((positive, lambda v: v > 0, "positive"), (at_least_0, lambda v: v >= 0, ">= 0"),
                            (unit, lambda v: 0 <= v <= 1, "in [0, 1]")):  # fmt: skip
        for name in names:
            if not ok(getattr(args, name)):
                sys.exit(f"error: --{name.replace('_', '-')} must be {rule}, got {getattr(args, name)}")


def check_run_args(args: Any) -> None:
    """The checks every script shares: step budget, seed, cadence, final evaluation, kept checkpoints."""
    require(args, positive=("total_timesteps", "num_envs"), at_least_0=("eval_episodes", "checkpoint_every", "noop_max"))
    if args.total_timesteps < args.num_envs:
        sys.exit(f"error: --total-timesteps must be at least --num-envs = {args.num_envs}")
    if not 0 <= args.seed < 2**32:
        sys.exit(f"error: --seed must be in [0, 2**32), got {args.seed}")
    if args.keep_checkpoints and not (args.checkpoint_every and args.save_model):
        sys.exit("error: --keep-checkpoints keeps the periodic checkpoints: it needs --checkpoint-every > 0 and --save-model")
    if getattr(args, "save_buffer", False) and not args.save_model:
        sys.exit("error: --save-buffer writes the replay memory with each checkpoint: it needs --save-model")


def check_free_memory(args: Any, flag: str, need: int, bytes_per_unit: int, available: Optional[int] = None) -> None:
    """One-line exit when ``need`` bytes (what --flag allocates) exceed MemAvailable (/proc/meminfo) less 1 GiB, with
    the value that fits; no check where MemAvailable is unknown."""
    if available is None:
        try:
            with open("/proc/meminfo") as f:
                available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
        except (OSError, StopIteration, ValueError):
            return
    spare = available - 2**30
    if need > spare:
        fit = max(spare, 0) // bytes_per_unit // 10_000 * 10_000
        hint = f"try --{flag.replace('_', '-')} {fit}" if fit else "free some memory first"
        sys.exit(f"error: --{flag.replace('_', '-')} {getattr(args, flag)} needs {need / 1e9:.2f} GB of memory, "
                 f"{available / 1e9:.2f} GB is free; {hint}")  # fmt: skip


def at_least(args: Any, why: str, **minimums: int) -> Any:
    """``args`` with each named field raised to its minimum where below it, with a one-line note saying why."""
    for name, value in minimums.items():
        if value > getattr(args, name):
            note(f"--{name.replace('_', '-')} {getattr(args, name)} -> {value}: {why}")
            args = dataclasses.replace(args, **{name: value})
    return args


def keep_freed_memory(threshold: int = 64 << 20) -> bool:
    """glibc: serve allocations under ``threshold`` bytes from the heap and keep what is freed in the process (trim above
    8x, pad the heap by ``threshold``), instead of mapping and unmapping it each time: the networks' large temporaries
    are freed and allocated again at every step, and each fresh mapping costs a page fault per 4 KB page. Nothing where
    a MALLOC_* variable is set (it wins) or off glibc. Returns whether it applied."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim, top_pad, mmap_threshold = -1, -2, -3  # glibc's M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD
        settings = ((mmap_threshold, threshold), (trim, 8 * threshold), (top_pad, threshold))
        return all(libc.mallopt(option, value) == 1 for option, value in settings)
    except (OSError, AttributeError):  # no C library found, or one without mallopt
        return False


def note(message: str) -> None:
    """A one-line notice on stderr, e.g. for a setting adjusted to fit a small budget."""
    print(f"note: {message}", file=sys.stderr)


@dataclasses.dataclass
class Linear:
    """value(step): linear from (start_step, start) to (end_step, end), flat outside; plain data in a checkpoint."""

    start_step: int
    start: float
    end_step: int
    end: float

    def __call__(self, step: float) -> float:
        span = self.end_step - self.start_step
        frac = 1.0 if span <= 0 else min(max((step - self.start_step) / span, 0.0), 1.0)
        return self.start + frac * (self.end - self.start)

    def stretched(self, step: int, end_step: int) -> "Linear":
        """The same schedule from ``step`` on, reaching ``end`` at ``end_step`` instead: no jump at ``step``."""
        return self if end_step == self.end_step or step >= self.end_step else Linear(step, self(step), end_step, self.end)


class Run:
    """One training run: its folder, loggers, signals, progress, checkpoints and final evaluation (see module doc)."""

    def __init__(self, args: Any, script_file: str, check: Optional[Callable[[Any], Any]] = None,
                 protocol: Callable[[Any], dict] = env_protocol):  # fmt: skip
        self.script = Path(script_file).stem
        keep_freed_memory()  # a page fault per page of every step's temporaries otherwise (docs/benchmarks.md)
        self.args, self.checkpoint = resume_args(args, self.script) if args.resume else (args, None)
        check_run_args(self.args)
        if check is not None:
            self.args = check(self.args) or self.args  # a check may return adjusted Args (with a printed note)
        args = self.args
        self.protocol = protocol(args)
        self.state: dict[str, Any] = self.checkpoint["resume"] if self.checkpoint else {}
        self.global_step = self.checkpoint["global_step"] if self.checkpoint else 0
        if self.checkpoint:
            self.dir, self.wandb_id = Path(args.resume).resolve().parent, self.state.get("wandb_run_id")
        else:
            slug = args.env_id.replace("/", "-")
            self.dir, self.wandb_id = Path(args.runs_dir) / f"{slug}__{args.exp_name}__{args.seed}__{int(time.time())}", None
        self.path = self.dir / f"{args.exp_name}.pt"
        if args.track:
            import wandb

            self.dir.mkdir(parents=True, exist_ok=True)
            self.wandb_id = wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                                       config=vars(args), name=self.dir.name, id=self.wandb_id, resume="allow",
                                       dir=str(self.dir), save_code=True).id  # fmt: skip
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run drops what the old run logged after its checkpoint (an unfinished rollout, say)
        self.writer = SummaryWriter(str(self.dir), purge_step=self.global_step + 1 if self.checkpoint else None)
        table = "\n".join(f"|{k}|{v}|" for k, v in vars(args).items())
        self.writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
        self.stats, self.schedules, self.stopping, self.pbar = EpisodeStats(args.num_envs), {}, False, None
        if self.checkpoint:
            print(f"resumed {args.resume} at global_step {self.global_step} of {args.total_timesteps}")

    def attach(self, model: Any, optimizer: Any, extra_state: Optional[Callable[[int], dict]] = None) -> None:
        """What checkpoints hold: ``model``'s weights, ``optimizer``, ``extra_state(step)`` (the script's resume data).
        On a resume, load the weights, the optimizer and the RNG states (call it after seeding)."""
        self.model, self.optimizer, self.extra_state = model, optimizer, extra_state or (lambda step: {})
        if self.checkpoint:
            model.load_state_dict(self.checkpoint["model"])
            optimizer.load_state_dict(self.state["optimizer"])
            set_rng_state(self.state["rng"])

    def schedule(self, name: str, fresh: Linear, stretch: bool) -> Linear:
        """A schedule saved with every checkpoint. On a resume the saved one continues; ``stretch``: a new
        --total-timesteps moves its end there from the current step on, without a jump (else it keeps its steps)."""
        saved = self.state.get("schedules", {}).get(name)
        sched = fresh if saved is None else Linear(**saved)
        if saved is not None and stretch:
            sched = sched.stretched(self.global_step, fresh.end_step)
        self.schedules[name] = sched
        return sched

    def save(self, step: int) -> Path:
        """Write the checkpoint: the attached weights and optimizer, the script's extra state, RNG, W&B id, schedules."""
        resume = {**self.extra_state(step), "optimizer": self.optimizer.state_dict(), "rng": rng_state(),
                  "wandb_run_id": self.wandb_id, "schedules": {k: dataclasses.asdict(v) for k, v in self.schedules.items()}}
        return save_checkpoint(self.path, script=self.script, args=self.args, protocol=self.protocol, global_step=step,
                               model=self.model.state_dict(), resume=resume)  # fmt: skip

    def loop(self, total_steps: int) -> "Run":
        """``with run.loop(total):`` shows progress and turns the first SIGINT/SIGTERM into ``run.stopping``."""
        self.total_steps, self.start_time, self.start_step, self.last_line = total_steps, time.time(), self.global_step, 0.0
        return self

    def __enter__(self) -> "Run":
        self.old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        if self.args.progress and sys.stderr.isatty():
            from tqdm import tqdm

            self.pbar = tqdm(total=self.total_steps, initial=self.start_step, unit="step", dynamic_ncols=True)
        self.next_ckpt = None
        if self.args.checkpoint_every:
            self.next_ckpt = (self.start_step // self.args.checkpoint_every + 1) * self.args.checkpoint_every
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self.pbar:
            self.pbar.close()
        if exc_type is not None:  # on success the handlers stay until finish() has saved
            self._restore_handlers()

    def _on_signal(self, signum, frame) -> None:
        if self.stopping:
            raise KeyboardInterrupt
        self.stopping = True
        print("\ninterrupt: saving a checkpoint at the end of this step (interrupt again to abort)", file=sys.stderr)

    def _restore_handlers(self) -> None:
        for s, h in getattr(self, "old_handlers", {}).items():
            signal.signal(s, h)
        self.old_handlers = {}

    def sps(self, global_step: int) -> int:
        """Agent steps per second since this process started its loop."""
        return int((global_step - self.start_step) / max(time.time() - self.start_time, 1e-9))

    def episodes(self, global_step: int, rewards, terminations, truncations, lives) -> list[tuple[int, float, int]]:
        """Feed one vector step's raw rewards; log finished lives and games (charts/episodic_return: the raw game
        score); return the finished games as (env index, return, length)."""
        games, lives_done = self.stats.step(rewards, terminations, truncations, lives)
        for _, life_return in lives_done:
            self.writer.add_scalar("charts/life_return", life_return, global_step)
        for _, game_return, game_length in games:
            (self.pbar.write if self.pbar else print)(f"global_step={global_step}, episodic_return={game_return:g}")
            self.writer.add_scalar("charts/episodic_return", game_return, global_step)
            self.writer.add_scalar("charts/episodic_length", game_length, global_step)
        if self.pbar:
            self.pbar.update(global_step - self.pbar.n)
        return games

    def log(self, global_step: int, scalars: dict[str, float]) -> None:
        """Write scalars and charts/SPS at global_step; refresh the progress bar (or print a status line)."""
        sps = self.sps(global_step)
        for tag, value in {**scalars, "charts/SPS": sps}.items():
            self.writer.add_scalar(tag, value, global_step)
        ret = self.stats.recent_mean()
        if self.pbar:
            self.pbar.update(global_step - self.pbar.n)
            self.pbar.set_postfix(SPS=sps, ret=f"{ret:.1f}")
        elif time.time() - self.last_line >= LOG_EVERY_S:
            self.last_line = time.time()
            print(f"global_step={global_step}/{self.total_steps} SPS={sps} recent_return={ret:.2f}", flush=True)

    def checkpoint_due(self, global_step: int) -> None:
        """Periodic checkpoint (--checkpoint-every); with --keep-checkpoints its weights also go to steps/."""
        if self.args.save_model and self.next_ckpt is not None and global_step >= self.next_ckpt:
            path = self.save(global_step)
            if self.args.keep_checkpoints:  # weights only (no resume state): one file per step for evaluate.py
                strip_checkpoint(path, self.dir / "steps" / f"{self.args.exp_name}_{global_step}.pt")
            self.next_ckpt = (global_step // self.args.checkpoint_every + 1) * self.args.checkpoint_every

    def finish(self, global_step: int, device: Any = "cpu") -> Optional[Path]:
        """Final checkpoint (also without --save-model when stopped); then the resume hint, or the final evaluation
        (eval/episodic_return, video with --capture-video); close the loggers. Returns the checkpoint's path."""
        evaluate = self.args.eval_episodes > 0 and not self.stopping
        if not (self.args.save_model or self.stopping) and evaluate:  # --no-save-model: evaluate a temporary file
            self.path = self.dir / f".{self.args.exp_name}.final-eval.pt"
        try:
            path = self.save(global_step) if self.args.save_model or self.stopping or evaluate else None
            if self.args.keep_checkpoints and path is not None and not self.stopping:
                strip_checkpoint(path, self.dir / "steps" / f"{self.args.exp_name}_{global_step}.pt")
        finally:
            self._restore_handlers()
        if self.stopping:
            print(f"stopped; checkpoint: {path}\nresume with: python {self.script}.py --resume {path}")
        elif evaluate:
            self.final_evaluation(path, device)
        if not (self.args.save_model or self.stopping) and path is not None:
            path.unlink(missing_ok=True)
            path = None
        self.writer.close()
        if self.args.track:
            import wandb

            wandb.finish()
        return path

    def final_evaluation(self, path: Path, device: Any) -> None:
        """evaluate.py's protocol on the final checkpoint, stochastic play, seed 0; logged as eval/episodic_return."""
        from evaluate import evaluate_checkpoint  # lazy: evaluation is not needed to train

        try:
            video_root = str(self.dir) if self.args.capture_video else None
            result = evaluate_checkpoint(path, num_games=self.args.eval_episodes, seeds=[0], deterministic=False,
                                         video_root=video_root, device=str(device))  # fmt: skip
        except KeyboardInterrupt:
            print(f"final evaluation interrupted; the checkpoint is saved: {path}", file=sys.stderr)
            return
        for i, score in enumerate(result["scores"]):
            self.writer.add_scalar("eval/episodic_return", score, i)
        print(f"eval: {self.args.eval_episodes} games, mean return {np.mean(result['scores']):.2f}")
