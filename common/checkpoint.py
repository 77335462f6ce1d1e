"""The one checkpoint format shared by every script and by evaluate.py.

A checkpoint is a plain dict of tensors and Python builtins, so it loads with
``torch.load(path, weights_only=True)`` and never unpickles code:

    format_version  int, FORMAT_VERSION
    script          module name of the script that wrote it ("ppo_atari")
    args            dataclasses.asdict(Args) (plain types only)
    protocol        environment protocol (env id, frameskip, sticky actions, life-loss handling,
                    fire reset, reward clipping, frame stack, noop max, frame cap)
    global_step     agent steps summed over all envs
    model           the network's state_dict
    versions        python / torch / gymnasium / ale-py / numpy versions
    git_commit      the repo's HEAD when it was written, or None
    created         UNIX time
    resume          optional: what a resumed run needs (optimizer, RNG states, W&B run id, ...).
                    ``strip_checkpoint`` drops it for a small, shareable file.
    model_dtype     optional: "float16" when ``strip_checkpoint(half=True)`` stored the float weights
                    in half precision (half the size); ``load_checkpoint`` returns them as float32.

Files are written atomically (temp file in the same folder + ``os.replace``), so an interrupted
save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "script", "args", "protocol", "global_step", "model")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line naming the file and the problem."""


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide what a checkpoint means."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "gymnasium", "ale-py", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def git_commit() -> str | None:
    """HEAD of the repository this file lives in, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain data (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``rng_state``."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | os.PathLike,
    *,
    script: str,
    args: Any,
    protocol: dict[str, Any],
    global_step: int,
    model: dict[str, torch.Tensor],
    resume: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically and return its path. ``args`` is the script's Args dataclass."""
    payload = {
        "format_version": FORMAT_VERSION,
        "script": script,
        "args": dataclasses.asdict(args) if dataclasses.is_dataclass(args) else dict(args),
        "protocol": dict(protocol),
        "global_step": int(global_step),
        "model": {k: v.detach().cpu() for k, v in model.items()},
        "versions": package_versions(),
        "git_commit": git_commit(),
        "created": time.time(),
    }
    if resume is not None:
        payload["resume"] = resume
    return write_atomic(payload, Path(path))


def write_atomic(payload: dict[str, Any], path: Path) -> Path:
    """torch.save to a temp file in the same folder, fsync it, rename it over `path`, fsync the folder: never a truncated
    file, and the rename is on disk when this returns. Any exception, a signal handler's KeyboardInterrupt included,
    removes the temp file and leaves an existing `path` as it was. A SIGTERM whose action is the default (kill) is held
    while writing, on the main thread, and delivered once the file is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")  # named before it exists: removable
    held: list[int] = []
    hold = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    if hold:
        signal.signal(signal.SIGTERM, lambda signum, frame: held.append(signum))
    try:
        with open(tmp, "xb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if hold:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if held:
                signal.raise_signal(signal.SIGTERM)
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", script: str | None = None
) -> dict[str, Any]:
    """Load and validate a checkpoint (written by ``script``.py, if given); raise CheckpointError with a one-line reason
    otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path}: is a directory, expected a .pt file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated / foreign / pickled-code files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path}: not a readable checkpoint ({type(e).__name__}: {reason[:160]})") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"checkpoint {path}: not written by this project (no format_version; a bare state_dict?)")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format version {ckpt['format_version']!r}, this code reads version {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing keys {missing}")
    if script is not None and ckpt["script"] != script:
        raise CheckpointError(f"checkpoint {path}: written by {ckpt['script']}.py, not {script}.py")
    if ckpt.get("model_dtype") == "float16":  # a half-precision shared checkpoint: the networks run in float32
        ckpt["model"] = {k: v.float() if v.dtype == torch.float16 else v for k, v in ckpt["model"].items()}
    return ckpt


def strip_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, half: bool = False) -> Path:
    """Copy a checkpoint without its resume state (optimizer, RNG, replay): small and shareable. ``half`` also stores
    the float32 weights as float16 (half the size; evaluate the stripped file, since actions can change)."""
    ckpt = load_checkpoint(src)
    ckpt.pop("resume", None)
    if half:
        ckpt["model"] = {k: v.half() if v.dtype == torch.float32 else v for k, v in ckpt["model"].items()}
        ckpt["model_dtype"] = "float16"
    return write_atomic(ckpt, Path(dst))


def main(argv: list[str] | None = None) -> int:
    """``python -m common.checkpoint strip IN OUT [--half]`` and ``python -m common.checkpoint show IN``."""
    argv = sys.argv[1:] if argv is None else argv
    half = argv[3:] == ["--half"]
    try:
        if len(argv) == 3 + half and argv[0] == "strip":
            out = strip_checkpoint(argv[1], argv[2], half=half)
            print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
            return 0
        if len(argv) == 2 and argv[0] == "show":
            ckpt = load_checkpoint(argv[1])
            n_params = sum(v.numel() for v in ckpt["model"].values())
            print(
                f"script={ckpt['script']} global_step={ckpt['global_step']} params={n_params} commit={ckpt.get('git_commit')}"
            )
            print(f"protocol={ckpt['protocol']}")
            resume, stored = "yes" if "resume" in ckpt else "no", ckpt.get("model_dtype", "float32")
            print(f"resume state: {resume}; weights stored as {stored}; versions={ckpt.get('versions')}")
            return 0
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("usage: python -m common.checkpoint strip IN.pt OUT.pt [--half] | show IN.pt", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
