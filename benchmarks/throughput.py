"""Throughput benchmark: a script's training SPS against its compute floor (env + act + learn), all in one run.

    python benchmarks/throughput.py --script ppo_atari --steps 10240
    python benchmarks/throughput.py --script dqn_per_dueling_atari --steps 6000 -- --learning-starts 1000
    python benchmarks/throughput.py --script hybrid_atari --steps 6000 --against /tmp/base -- --learning-starts 1000
    (flags after -- go to the script; --against DIR also measures the scripts of another checkout DIR, interleaved)

Each repeat measures, in this order and in one process (the thread settings main() leaves are those of the floor):
- env: the script's training vector env (`make_vector_env`, same number of envs) stepped with random actions;
- train: the script's steady-state SPS, agent steps per second between its first and last `charts/SPS` point (set-up,
  the first iteration and a DQN's pre-learning phase are not counted), read back from its TensorBoard file;
- act: the batched forward the rollout makes per vector step, through the script's own network, and the action's copy
  to numpy; charged in full on every step (a DQN skips it while all its envs explore);
- learn: PPO: update_epochs x minibatches of forward + backward + clipping + Adam on minibatch-sized rollout batches;
  DQN family: per train_frequency agent steps, one update of batch_size: Q(s') by the online and the target net, Q(s)
  with grad, backward, clipping, Adam (and hybrid_atari's priority_td_errors). The networks come from the script's own
  classes; the loss is a surrogate of the same outputs (its elementwise arithmetic, GAE, the PER sample and priority
  update are the script's overhead, not floor). Act and learn are each timed on 1 torch thread, on the count main()
  left and on one per core, and the fastest counts: the floor is the best this machine does, whatever thread layout the
  script chose.
Floor model (seconds per agent step): serial, 1 / (env + act + learn); a script whose main() calls `envs.step_async(`
steps its games in another process while it learns, so 1 / (act + max(env, learn)). Either way the parts' CPU time
(this process, its threads and its child processes, from /proc) must fit on the machine's cores: per agent step no less
than (env_cpu + act_cpu + learn_cpu) / cores, which binds when parts that overlap use more cores together than there
are. The ratio is training / floor.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))  # after this folder; a --root checkout's scripts go before both (main)
from tools.grid import cores  # noqa: E402  (stdlib only: the cores this process may use)

BUILD = {  # the network each script's main() builds, from its own class: (n_actions, args, observation space) -> module
    "ppo_atari": lambda mod, n, args, space: mod.Agent(n, args.frame_stack),
    "dqn_per_dueling_atari": lambda mod, n, args, space: mod.QNetwork(n, args.frame_stack),
    "dqn_ram_atari": lambda mod, n, args, space: mod.QNetwork(n, space.shape[0]),
    "hybrid_atari": lambda mod, n, args, space: mod.QNetwork(n, args.frame_stack),
    "options_atari": lambda mod, n, args, space: mod.Agent(n, args.frame_stack, args.num_options),
    "slot_attn_atari": lambda mod, n, args, space: mod.QNetwork(
        n, len(mod.slot_checkpoint(args)["model"]["encoder.slot_attention.mu"]), args.slot_iters),
}  # fmt: skip
PPO_ADAM, DQN_ADAM = {"eps": 1e-5}, {"eps": 1.5e-4, "fused": True}  # the scripts' optimizer settings (CPU)
OPTIONS_RMSPROP = {"alpha": 0.99, "eps": 1e-5}


def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def make_envs(mod, args):
    if hasattr(mod, "make_vector_env"):  # ale-py's vector env / the RAM script's child-process one
        return mod.make_vector_env(args, args.num_envs)
    import gymnasium as gym  # hybrid_atari before it moved: a SyncVectorEnv of make_env, as its main() built it

    thunks = [mod.make_env(args, args.seed + i, i) for i in range(args.num_envs)]
    return gym.vector.SyncVectorEnv(thunks, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def cpu_seconds() -> float:
    """CPU seconds used so far by this process (all its threads) and its live child processes (Linux: /proc)."""
    total, tick = time.process_time(), os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for listing in Path("/proc/self/task").glob("*/children"):
        for pid in listing.read_text().split():
            try:  # after the ")" that ends the command name: utime and stime are fields 12 and 13 (0-based 11, 12)
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):  # the child exited meanwhile
                pass
    return total


def env_sps(mod, args, steps: int):
    """(agent steps per second of the env alone, its CPU seconds per agent step, its observation space, its actions)."""
    envs = make_envs(mod, args)
    envs.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, envs.single_action_space.n, size=(steps, args.num_envs))
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    for t in range(steps):
        envs.step(actions[t])
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    space, n = envs.single_observation_space, envs.single_action_space.n
    envs.close()
    return steps * args.num_envs / elapsed, cpu / (steps * args.num_envs), space, n


def train_sps(mod, args) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tempfile.TemporaryDirectory() as tmp:
        mod.main(replace(args, runs_dir=tmp))
        (run_dir,) = Path(tmp).iterdir()
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        points = acc.Scalars("charts/SPS")
        if len(points) < 2:
            sys.exit("error: fewer than 2 charts/SPS points; raise --steps")
        return (points[-1].step - points[0].step) / (points[-1].wall_time - points[0].wall_time)


def observations(space, n: int, rng):
    """A batch of n random observations as the network's positional inputs (a Dict space: its keys in order)."""
    import torch

    if hasattr(space, "spaces"):
        return tuple(x for s in space.spaces.values() for x in observations(s, n, rng))
    if space.dtype == np.uint8:
        return (torch.from_numpy(rng.integers(0, 256, (n, *space.shape), dtype=np.uint8)),)
    return (torch.from_numpy(rng.uniform(-1, 1, (n, *space.shape)).astype(space.dtype)),)


def timed(fn, reps: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds, all threads) of fn() over reps calls, after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times, cpus = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpus)


def floor_parts(mod, script: str, args, space, n_actions: int, reps: int) -> dict:
    """Seconds per agent step of acting and of learning, through the script's own network (see the module docstring)."""
    import torch
    import torch.nn as nn
    import torch.optim as optim

    rng, pixels = np.random.default_rng(0), len(space.shape or ()) == 3 or "pixels" in getattr(space, "spaces", {})
    layout = torch.channels_last if pixels else torch.preserve_format
    net, target = (BUILD[script](mod, n_actions, args, space).to(memory_format=layout) for _ in range(2))
    act_obs = observations(space, args.num_envs, rng)
    if hasattr(net, "get_action_and_value"):  # PPO
        optimizer = optim.Adam(net.parameters(), lr=args.learning_rate, **PPO_ADAM)
        batch_size = args.num_envs * args.num_steps
        minibatch_size = -(-batch_size // args.num_minibatches)
        rollout, rollout_actions = observations(space, batch_size, rng)[0], torch.zeros(batch_size, dtype=torch.long)

        @torch.no_grad()
        def act():
            net.get_action_and_value(*act_obs)[0].cpu().numpy()

        def update():
            mb = torch.randperm(batch_size)[:minibatch_size]
            _, logprob, entropy, value = net.get_action_and_value(rollout[mb], rollout_actions[mb])
            loss = -logprob.mean() - args.ent_coef * entropy.mean() + value.square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), args.max_grad_norm)
            optimizer.step()

        updates_per_step = args.update_epochs * -(-batch_size // minibatch_size) / batch_size
    elif hasattr(net, "get_action_and_option"):  # options_atari: one update over the whole rollout (and next_obs)
        optimizer = optim.RMSprop(net.parameters(), lr=args.learning_rate, **OPTIONS_RMSPROP)
        batch_size, n = args.num_envs * args.num_steps, args.num_envs
        rollout, option, first = observations(space, batch_size + n, rng)[0], torch.zeros(n, dtype=torch.long), torch.ones(n)

        @torch.no_grad()
        def act():
            net.get_action_and_option(*act_obs, option, first.bool(), 0.1)[2].cpu().numpy()

        def update():
            q, beta, logits = net.heads(net.trunk(rollout))
            loss = q.square().mean() + beta.mean() + torch.log_softmax(logits, -1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), args.max_grad_norm)
            optimizer.step()

        updates_per_step = 1 / batch_size
    else:  # the DQN family
        optimizer = optim.Adam(net.parameters(), lr=args.learning_rate, **DQN_ADAM)
        b_obs, b_next = observations(space, args.batch_size, rng), observations(space, args.batch_size, rng)
        b_actions, b_returns = torch.zeros(args.batch_size, dtype=torch.long), torch.zeros(args.batch_size)
        slots = hasattr(net, "encoder")  # slot_attn_atari: its replay holds slot features, its acting encodes frames
        if slots:  # (the default frozen-slot DQN; --end-to-end's learning, which encodes too, is not modelled)
            K, D = net.encoder.slot_attention.mu.shape
            b_obs, b_next = ((torch.randn(args.batch_size, K, D + 4).half(),) for _ in range(2))
            state, first = torch.zeros(args.num_envs, K, D + 4), torch.zeros(args.num_envs, dtype=torch.bool)
        ram_keep = "ram_keep" in inspect.signature(net.forward).parameters  # hybrid_atari's modality dropout

        def q_values(network, inputs, **kw):
            out = network(*inputs, **kw)
            return out if isinstance(out, tuple) else (out,)  # (Q [B, A], any further output)

        @torch.no_grad()
        def act():
            if slots:  # its QAgent.act: the last 2 frames and each env's slot state -> slot features -> Q
                return net(net.encoder.encode(act_obs[0][:, -2:], state, first)[0]).argmax(1).cpu().numpy()
            q_values(net, act_obs)[0].argmax(1).cpu().numpy()

        def update():
            with torch.no_grad():
                next_online, next_target = q_values(net, b_next)[0], q_values(target, b_next)[0]
                td_target = b_returns + args.gamma * next_target.gather(1, next_online.argmax(1, keepdim=True)).squeeze(1)
            keep = (torch.rand(args.batch_size) >= getattr(args, "ram_dropout", 0.0)).float()
            q, *extra = q_values(net, b_obs, **({"ram_keep": keep} if ram_keep else {}))
            old_val = q.gather(1, b_actions[:, None]).squeeze(1)
            loss = (old_val - td_target).square().mean() + sum(o.mean() for o in extra if o.requires_grad)
            if hasattr(mod, "priority_td_errors"):  # hybrid_atari: Q(s) again for the samples whose RAM was dropped
                mod.priority_td_errors(net, *b_obs, b_actions, td_target, old_val, keep).numpy()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), args.max_grad_norm)
            optimizer.step()

        updates_per_step = 1 / args.train_frequency
    threads, out = torch.get_num_threads(), {}  # the count main() left
    for name, fn, calls, scale in (("act", act, reps * 10, 1 / args.num_envs), ("learn", update, reps, updates_per_step)):
        for t in sorted({1, threads, cores()}):  # the fastest of 1 thread, the script's count, one per core: a floor
            torch.set_num_threads(t)
            wall, cpu = timed(fn, calls)
            if wall * scale < out.get(name, np.inf):
                out[name], out[f"{name}_cpu"], out[f"{name}_threads"] = wall * scale, cpu * scale, t
    torch.set_num_threads(threads)
    return out


def measure(script: str, script_args: list[str], steps: int, env_steps: int, reps: int) -> dict:
    """One repeat: env SPS, training SPS, act and learn seconds per agent step, the floor SPS and training / floor."""
    import torch
    import tyro

    if script not in BUILD:
        sys.exit(f"error: no floor for {script} (benchmarks/throughput.py BUILD lists the scripts it knows)")
    mod = importlib.import_module(script)
    base = tyro.cli(mod.Args, args=script_args)
    args = replace(base, total_timesteps=steps, eval_episodes=0, save_model=False, progress=False, checkpoint_every=0)
    env, env_cpu, space, n_actions = env_sps(mod, args, env_steps)
    train = train_sps(mod, args)
    parts = floor_parts(mod, script, args, space, n_actions, reps)
    overlap = "envs.step_async(" in inspect.getsource(mod.main)
    env_s, n_cores = 1 / env, cores()
    wall = parts["act"] + (max(env_s, parts["learn"]) if overlap else env_s + parts["learn"])
    cpu_bound = (env_cpu + parts["act_cpu"] + parts["learn_cpu"]) / n_cores  # the parts' CPU time spread over every core
    per_step = max(wall, cpu_bound)
    return {"script": script, "num_envs": args.num_envs, "threads": torch.get_num_threads(), "env_sps": env,
            "act_ms": parts["act"] * 1e3, "learn_ms": parts["learn"] * 1e3, "env_ms": env_s * 1e3,
            "env_cpu_ms": env_cpu * 1e3, "act_cpu_ms": parts["act_cpu"] * 1e3, "learn_cpu_ms": parts["learn_cpu"] * 1e3,
            "cores": n_cores, "cpu_bound_ms": cpu_bound * 1e3, "bound": "cores" if cpu_bound > wall else "parts",
            "act_threads": parts["act_threads"], "learn_threads": parts["learn_threads"],
            "model": "act + max(env, learn)" if overlap else "env + act + learn", "floor_sps": 1 / per_step,
            "train_sps": train, "ratio": train * per_step}  # fmt: skip


def report(label: str, runs: list[dict]) -> None:
    keys = ("env_ms", "act_ms", "learn_ms", "env_cpu_ms", "act_cpu_ms", "learn_cpu_ms", "cpu_bound_ms", "floor_sps",
            "train_sps")  # fmt: skip
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    r, ratios, threads = runs[0], [x["ratio"] for x in runs], [f"{x['act_threads']}/{x['learn_threads']}" for x in runs]
    print(f"{label}: {r['script']} | {r['num_envs']} envs | {r['threads']} torch threads | floor = 1 / ({r['model']})")
    print(f"  ms per agent step (median of {len(runs)}): env {med['env_ms']:.3f} | act {med['act_ms']:.3f} | "
          f"learn {med['learn_ms']:.3f} (the floor's act/learn torch threads: {', '.join(threads)})")  # fmt: skip
    print(f"  CPU ms per agent step: env {med['env_cpu_ms']:.3f} | act {med['act_cpu_ms']:.3f} | learn "
          f"{med['learn_cpu_ms']:.3f} -> on {r['cores']} cores at least {med['cpu_bound_ms']:.3f} ms per agent step "
          f"(the floor's binding bound, per run: {', '.join(x['bound'] for x in runs)})")  # fmt: skip
    print(f"  floor SPS {med['floor_sps']:.0f} | training SPS {med['train_sps']:.0f} | training / floor "
          f"{statistics.median(ratios):.3f} (runs: {', '.join(f'{x:.3f}' for x in ratios)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--script", default="ppo_atari", help="module name of the algorithm script")
    parser.add_argument("--steps", type=int, default=20480, help="agent steps of training to run")
    parser.add_argument("--env-steps", type=int, default=2000, help="vector steps for the env-only measurement")
    parser.add_argument("--reps", type=int, default=20, help="timed updates for the floor (acting: 10x as many)")
    parser.add_argument("--repeats", type=int, default=3, help="repeat each measurement; medians are reported")
    parser.add_argument("--against", type=Path, help="another checkout: measured too, alternating, each repeat a process")
    parser.add_argument("--root", type=Path, default=REPO, help=argparse.SUPPRESS)  # whose scripts to import
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one repeat, printed as a JSON line
    parser.add_argument("script_args", nargs="*", help="extra flags for the script (after --)")
    opts = parser.parse_args()
    import torch

    wait = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"machine: {cpu_model()} | {os.cpu_count()} cores | torch {torch.__version__} | OMP_WAIT_POLICY={wait} | "
          f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    print(f"flags: {opts.script} {' '.join(opts.script_args)} | {opts.steps} agent steps", flush=True)
    if opts.against is None:
        sys.path.insert(0, str(opts.root))
        os.chdir(opts.root)  # what the scripts read relative to the repo
        runs = [measure(opts.script, opts.script_args, opts.steps, opts.env_steps, opts.reps) for _ in range(opts.repeats)]
        if opts.json:
            print(json.dumps(runs[0]), flush=True)
        return report(str(opts.root), runs)
    flags = ["--script", opts.script, "--steps", opts.steps, "--env-steps", opts.env_steps, "--reps", opts.reps]
    flags += ["--repeats", 1]
    results: dict[Path, list] = {opts.against: [], REPO: []}
    for _ in range(opts.repeats):
        for root in results:  # alternating: the machine's load drifts over both alike
            cmd = [sys.executable, __file__, *map(str, flags), "--root", str(root), "--json", "--", *opts.script_args]
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
            results[root].append(json.loads(next(line for line in out.splitlines() if line.startswith("{"))))
    for root, runs in results.items():
        report(str(root), runs)
    new, old = (statistics.median(r["train_sps"] for r in results[k]) for k in (REPO, opts.against))
    pairs = [a["train_sps"] / b["train_sps"] for a, b in zip(results[REPO], results[opts.against])]
    print(f"training SPS, {REPO} / {opts.against}: {new / old:.3f} (medians; pairs: {', '.join(f'{p:.3f}' for p in pairs)})")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
