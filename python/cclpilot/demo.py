"""`cclpilot demo`: live tuning beside NCCL's default and the oracle, on a simulated cluster.

It starts a daemon with the online tuner, runs the same simulated multi-rank job three times
(the real plugin in observe mode = NCCL's default; in live mode against the daemon; in static
mode with the oracle's table), and reports communication time per step over the run, the speedup
once live tuning has converged, and how many steps it took to get there.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .daemon.server import Daemon, DaemonConfig
from .errors import ConfigError
from .sim.cli import _workload as resolve_workload
from .sim.clusters import cluster as cluster_preset
from .sim.policies import oracle_policy
from .sim.runner import JobResult, JobSpec, TruthSpec, default_plugin_path, run_job
from .tuner.online import TunerConfig, online_tuner_factory

ProgressFn = Callable[[int, int], None]

DEFAULT_CLUSTER = "a100-2x4"
DEFAULT_WORKLOAD = "ddp-gpt-1.3b-bf16"
DEFAULT_STEPS = 300


@dataclass
class DemoResult:
    cluster: str
    workload: str
    steps: int
    seed: int
    series_us: dict[str, np.ndarray]  # policy -> communication time per step
    converged_step: int | None  # first step from which live stays within 3% of its final level
    plans_committed: int
    plans_aborted: int
    run_dir: Path
    live_wall_s: float

    def steady_mean(self, policy: str) -> float:
        s = self.series_us[policy]
        # Every policy over the same stretch: from convergence (or the first step after warm-up).
        start = self.converged_step if self.converged_step is not None else 1
        start = min(start, len(s) - 1)
        return float(s[start:].mean())

    def speedup_after_convergence(self) -> float:
        return self.steady_mean("default") / self.steady_mean("live")

    def as_dict(self) -> dict[str, object]:
        return {
            "schema": "cclpilot.demo/1", "cluster": self.cluster, "workload": self.workload,
            "steps": self.steps, "seed": self.seed, "run_dir": str(self.run_dir),
            "converged_step": self.converged_step, "plans_committed": self.plans_committed,
            "plans_aborted": self.plans_aborted,
            "mean_us_after_convergence": {p: self.steady_mean(p) for p in self.series_us},
            "speedup_after_convergence": self.speedup_after_convergence(),
            "regret_vs_oracle": self.steady_mean("live") / self.steady_mean("oracle") - 1.0,
            "series_us": {p: [float(x) for x in s] for p, s in self.series_us.items()},
        }


def converged_step(series: np.ndarray, tolerance: float = 0.03, window: int = 5) -> int | None:
    """First step after which the rolling median stays within `tolerance` of the final level.

    The demo passes the live run's time relative to NCCL's default, step by step: both runs see
    the same seeded noise and interference, which the ratio cancels."""
    n = len(series)
    if n < 4 * window:
        return None
    final = float(np.median(series[-max(window, n // 5):]))
    rolling = np.array([np.median(series[i:i + window]) for i in range(n - window + 1)])
    ok = np.abs(rolling / final - 1.0) <= tolerance
    for i in range(len(ok)):
        if ok[i:].all():
            # The window starting at i is centred on i + window // 2: its median flips to the
            # new level once most of the window is there.
            return i + window // 2
    return None


def _decisions(run_dir: Path, calls_per_step: dict[int, int]) -> tuple[int, int, int | None]:
    """Plans committed and aborted, and the step at which the last committed plan took effect
    (its activation call index over the communicator's collectives per step)."""
    path = run_dir / "decisions.jsonl"
    committed = aborted = 0
    last_step: int | None = None
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            event = str(rec.get("event", ""))
            committed += event == "commit"
            aborted += event == "abort"
            per_step = calls_per_step.get(int(rec.get("comm", -1)), 0)
            if event == "commit" and per_step > 0:
                step = -(-int(rec["activate_at"]) // per_step)
                last_step = step if last_step is None else max(last_step, step)
    return committed, aborted, last_step


def run_demo(cluster: str = DEFAULT_CLUSTER, workload: str = DEFAULT_WORKLOAD,
             steps: int = DEFAULT_STEPS, seed: int = 0, out_dir: Path | None = None,
             progress: ProgressFn | None = None, plugin_path: str | None = None) -> DemoResult:
    if steps < 20:
        raise ConfigError(f"--steps {steps}: the demo needs at least 20 steps to show tuning")
    c = cluster_preset(cluster)
    t = c.topology
    resolved = resolve_workload(workload, t.n_ranks, t.n_nodes)
    out = out_dir or Path("runs") / time.strftime(f"%Y%m%d-%H%M%S-demo-{cluster}")
    out.mkdir(parents=True, exist_ok=True)
    plugin = plugin_path or default_plugin_path()
    truth = TruthSpec(cluster)
    oracle = oracle_policy(truth, t, resolved)
    oracle_table = out / "oracle.conf"
    oracle_table.write_text(oracle.text(["oracle: best arm per key under the noise-free truth"]))

    total = 3 * steps

    def phase(i: int) -> ProgressFn:
        def report(done: int, whole: int) -> None:
            if progress is not None:
                progress(i * steps + done * steps // max(whole, 1), total)
        return report

    # One process per node keeps every rank of a node in one process, with the processes in
    # lockstep in live mode as NCCL's collectives would keep them.
    rpp = max(1, t.n_ranks // t.n_nodes)

    def job(env: dict[str, str], i: int, lockstep: bool = False) -> JobResult:
        spec = JobSpec(truth, t, resolved, steps, seed, env, plugin, ranks_per_process=rpp,
                       lockstep=lockstep)
        return run_job(spec, phase(i))

    default = job({"CCLPILOT_MODE": "observe"}, 0)
    daemon_dir = out / "daemon"
    daemon = Daemon(DaemonConfig(run_dir=daemon_dir, seed=seed,
                                 brain_factory=online_tuner_factory(TunerConfig(seed=seed)))).start()
    try:
        t0 = time.perf_counter()
        live = job({"CCLPILOT_MODE": "live", "CCLPILOT_DAEMON": daemon.endpoint,
                    "CCLPILOT_JOB_ID": f"demo-{cluster}"}, 1, lockstep=True)
        live_wall = time.perf_counter() - t0
    finally:
        daemon.stop()
    best = job({"CCLPILOT_MODE": "static", "CCLPILOT_TABLE": str(oracle_table.resolve())}, 2)
    calls_per_step = {inst.comm_id: sum(1 for op in resolved.ops if op.comm == inst.comm)
                      for inst in live.instances}
    committed, aborted, last_plan_step = _decisions(daemon_dir, calls_per_step)
    series = {"default": default.step_comm_us, "live": live.step_comm_us,
              "oracle": best.step_comm_us}
    # Converged = the step from which the final plan is in effect (the tuner stops proposing once
    # every key has converged). Without any committed plan, the step from which the live/default
    # ratio stopped moving (both runs see the same seeded noise, which the ratio cancels).
    steps_to_converge = last_plan_step
    if steps_to_converge is not None and steps_to_converge >= steps:
        steps_to_converge = None  # the final plan was committed for a step the run never reached
    elif steps_to_converge is None:
        settled = converged_step(live.step_comm_us[1:] / default.step_comm_us[1:])
        steps_to_converge = None if settled is None else settled + 1
    result = DemoResult(cluster, resolved.name, steps, seed, series, steps_to_converge,
                        committed, aborted, out, live_wall)
    (out / "demo.json").write_text(json.dumps(result.as_dict(), indent=1) + "\n")
    return result


def format_demo(r: DemoResult, buckets: int = 10) -> str:
    lines = [f"cclpilot demo: cluster {r.cluster}, workload {r.workload}, {r.steps} steps, "
             f"seed {r.seed}", "",
             "communication time per step (ms), mean over each stretch of the run:",
             f"{'steps':>13}  {'NCCL default':>12}  {'live':>10}  {'oracle':>10}"]
    edges = np.linspace(0, r.steps, buckets + 1).astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi <= lo:
            continue
        row = [float(r.series_us[p][lo:hi].mean()) / 1000.0 for p in ("default", "live", "oracle")]
        lines.append(f"{lo:>5} - {hi - 1:<5}  {row[0]:>12.3f}  {row[1]:>10.3f}  {row[2]:>10.3f}")
    lines.append("")
    if r.converged_step is None:
        lines.append("live tuning did not settle within the run (try more --steps)")
    else:
        lines.append(f"live tuning converged after {r.converged_step} steps "
                     f"({r.plans_committed} plan(s) committed, {r.plans_aborted} aborted)")
    stretch = "after convergence" if r.converged_step is not None else "over the run (not converged)"
    lines.append(f"{stretch}: NCCL default {r.steady_mean('default') / 1000:.3f} ms, "
                 f"live {r.steady_mean('live') / 1000:.3f} ms, oracle "
                 f"{r.steady_mean('oracle') / 1000:.3f} ms per step")
    lines.append(f"speedup over NCCL default {r.speedup_after_convergence():.3f}x, regret against "
                 f"the oracle {100 * (r.steady_mean('live') / r.steady_mean('oracle') - 1):+.1f}%")
    lines.append(f"artifacts: {r.run_dir} (daemon run: {r.run_dir / 'daemon'})")
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    from .sim.cli import ProgressBar

    bar = ProgressBar(f"demo {args.cluster}")
    try:
        result = run_demo(args.cluster, args.workload, args.steps, args.seed,
                          Path(args.out) if args.out else None, progress=bar)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(format_demo(result))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser("demo", help="live tuning vs NCCL's default vs the oracle, simulated")
    demo.add_argument("--cluster", default=DEFAULT_CLUSTER,
                      help=f"cluster preset (default {DEFAULT_CLUSTER}; see `cclpilot sim presets`)")
    demo.add_argument("--workload", default=DEFAULT_WORKLOAD,
                      help=f"workload preset or file (default {DEFAULT_WORKLOAD})")
    demo.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps per run")
    demo.add_argument("--seed", type=int, default=0, help="seed of every random component")
    demo.add_argument("--out", help="artifacts directory (default runs/<time>-demo-<cluster>)")
    demo.add_argument("--json", action="store_true", help="print one JSON document")
    demo.set_defaults(func=cmd_demo)
