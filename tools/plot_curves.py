"""Learning curves from TensorBoard run folders: raw full-game return vs agent steps (and wall time).

    python tools/plot_curves.py runs/BreakoutNoFrameskip-v4__ppo_atari__1__* --out docs/results/ppo_atari_curve.png

Each run is drawn as a rolling mean over `--window` games of `charts/episodic_return`, with the individual games faint.
Prints the last rolling mean of each run, so the number next to a plot comes from the same command, and its running
time: a resumed run's pauses (gaps of more than `--pause-minutes` between two logged points) are left out of it and of the
wall-clock axis. Reading and smoothing are tools/compare.py's (which also aggregates runs across seeds with CI bands:
`python -m tools.compare`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tools/plot_curves.py`

from tools.compare import load_scalars, rolling_mean, running_seconds  # noqa: E402  (one implementation)


def load(run_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, values, wall times) in step order: tools/compare.py's reader, with a one-line exit."""
    try:
        return load_scalars(run_dir, tag)
    except ValueError as e:
        sys.exit(f"error: {e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with events.out.tfevents.* files)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--tag", default="charts/episodic_return", help="the scalar to plot (one point per game for returns)")
    parser.add_argument("--window", type=int, default=100, help="points (games) in the rolling mean")
    parser.add_argument("--title", default="Breakout: raw full-game return during training")
    parser.add_argument("--pause-minutes", type=float, default=10.0, help="a longer gap between two logged points is a pause")
    parser.add_argument("--labels", nargs="+", help="one legend label per run (default: the exp_name in its folder name)")
    parser.add_argument("--at", nargs="+", type=int, default=[], help="also print the rolling mean at these agent steps")
    opts = parser.parse_args()
    if opts.labels and len(opts.labels) != len(opts.runs):
        sys.exit(f"error: {len(opts.labels)} --labels for {len(opts.runs)} runs")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = "games" if opts.tag.endswith("episodic_return") else "points"  # other tags: losses, norms, ...
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(11, 4))
    for k, run in enumerate(opts.runs):
        if not run.is_dir():
            sys.exit(f"error: {run} is not a run folder")
        steps, values, wall = load(run, opts.tag)
        w = min(opts.window, len(values))
        smooth = rolling_mean(values, opts.window)
        label = opts.labels[k] if opts.labels else run.name.split("__")[1] if "__" in run.name else run.name
        ax.plot(steps, values, ".", alpha=0.08, ms=2, color=f"C{k}")  # one colour per run in both panels
        ax.plot(steps[w - 1 :], smooth, label=label, color=f"C{k}")
        running, pauses = running_seconds(wall, 60 * opts.pause_minutes)  # seconds, pauses left out
        ax_t.plot(running[w - 1 :] / 3600, smooth, label=label, color=f"C{k}")
        span = wall[-1] - wall[0]
        rate = f"{(steps[-1] - steps[0]) / running[-1]:.0f} agent steps/s" if running[-1] > 0 else "n/a"
        print(
            f"{run.name}: {len(values)} {unit}, last step {steps[-1]}, rolling mean of last {w} {unit} {smooth[-1]:.2f}, "
            f"max {values.max():g}, {running[-1] / 3600:.2f} h running from first to last point ({rate}; "
            f"{span / 3600:.2f} h wall clock with {pauses} pauses)"
        )
        if opts.at:  # the rolling mean ending at the last point at or before each step; "-" before the first full
            # window and past the run's end (by more than its median gap between points)
            ends = [np.searchsorted(steps, s, side="right") - 1 for s in opts.at]
            gap = np.median(np.diff(steps)) if len(steps) > 1 else 0
            at = [f"{s}: {smooth[e - w + 1]:.3f}" if w - 1 <= e and s <= steps[-1] + gap else f"{s}: -"
                  for s, e in zip(opts.at, ends)]  # fmt: skip
            print(f"  {label}, rolling mean of {w} {unit} at steps: {', '.join(at)}")
    ax.set_xlabel("agent steps")
    ax_t.set_xlabel(f"hours running (gaps > {opts.pause_minutes:g} min between {unit} left out)")
    for a in (ax, ax_t):
        a.set_ylabel(f"{opts.tag} (rolling mean)")
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(opts.title)
    fig.tight_layout()
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(opts.out, dpi=100)
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
