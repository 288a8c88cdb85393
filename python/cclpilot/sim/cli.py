"""`cclpilot sim`: simulated runs through the real plugin, presets, offline sweep tables."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigError
from . import artifacts
from .clusters import CLUSTER_PRESETS, cluster
from .policies import Comparison, parse_policies, run_policies, sweep_policy
from .runner import TruthSpec, default_plugin_path
from .workloads import WORKLOAD_PRESETS, ResolvedWorkload, load_workload, resolve, workload_preset

DEFAULT_CLUSTER = "a100-2x4"
DEFAULT_WORKLOAD = "ddp-gpt-1.3b-bf16"
DEFAULT_STEPS = 50
DEFAULT_POLICIES = "default,sweep,oracle"


class ProgressBar:
    """A one-line bar on a terminal; silent when the stream is not a terminal (logs, pipes)."""

    def __init__(self, label: str, stream: TextIO = sys.stderr, force: bool = False) -> None:
        self.label = label
        self.stream = stream
        self.enabled = force or stream.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        width = 30
        frac = min(1.0, done / total)
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        self.stream.write(f"\r{self.label} [{bar}] {100 * frac:5.1f}% {now - self.t0:6.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _workload(name: str, n_ranks: int, n_nodes: int) -> ResolvedWorkload:
    """A preset name, or a path to a workload file."""
    if name in WORKLOAD_PRESETS:
        return workload_preset(name).resolved(n_ranks, n_nodes)
    p = Path(name)
    if p.suffix == ".json" or p.exists():
        return resolve(load_workload(p), n_ranks, n_nodes)
    workload_preset(name)  # raises with the list of presets
    raise ConfigError(f"unknown workload {name!r}")  # pragma: no cover


def _truth(args: argparse.Namespace) -> TruthSpec:
    cluster(args.cluster)  # validates the name, listing the presets
    profile = None
    if args.profile is not None:
        p = Path(args.profile)
        if not p.is_file():
            raise ConfigError(f"--profile {args.profile}: no such file; give a measured profile "
                              "(NCCL example-tuner CSV or nccl-tests output)")
        profile = str(p.resolve())
    return TruthSpec(args.cluster, profile)


def _fmt_us(us: float) -> str:
    return f"{us / 1000:.3f} ms" if us >= 1000 else f"{us:.1f} us"


def format_summary(cmp: Comparison, out_dir: Path | None) -> str:
    lines = [f"cluster {cmp.cluster}, workload {cmp.workload}, {cmp.steps} steps, seed {cmp.seed}"
             + (" (first step = warm-up, excluded)" if cmp.steps > 1 else ""), ""]
    head = f"{'policy':<9} {'comm/step mean':>15} {'p50':>12} {'p95':>12} {'speedup':>8} " \
           f"{'regret':>8} {'sweep GPU':>10}"
    lines += [head, "-" * len(head)]
    for r in cmp.summary():
        sp = r["speedup_vs_default"]
        rg = r["regret_vs_oracle"]
        gpu = float(r["gpu_time_us"] or 0.0)
        lines.append(
            f"{r['policy']!s:<9} {_fmt_us(float(r['mean_us'] or 0)):>15} "
            f"{_fmt_us(float(r['p50_us'] or 0)):>12} {_fmt_us(float(r['p95_us'] or 0)):>12} "
            f"{(f'{float(sp):.3f}x' if sp is not None else '-'):>8} "
            f"{(f'{100 * float(rg):+.1f}%' if rg is not None else '-'):>8} "
            f"{(f'{gpu / 1e6:.2f} s' if gpu else '-'):>10}")
    lines += ["", "arm per key (most frequent):"]
    names = [o.name for o in cmp.outcomes]
    uses = {o.name: {u.key: u for u in o.key_uses()} for o in cmp.outcomes}
    keys = list(uses[names[0]]) if names else []
    width = max([len(k.label()) for k in keys] + [10])
    lines.append(f"  {'key':<{width}}  " + "  ".join(f"{n:<22}" for n in names))
    for k in keys:
        lines.append(f"  {k.label():<{width}}  "
                     + "  ".join(f"{uses[n][k].arm:<22}" for n in names))
    if out_dir is not None:
        lines += ["", f"artifacts: {out_dir}"]
    return "\n".join(lines)


def comparison_json(cmp: Comparison, out_dir: Path | None) -> dict[str, Any]:
    return {
        "schema": "cclpilot.sim-run/1",
        "cluster": cmp.cluster, "workload": cmp.workload, "steps": cmp.steps, "seed": cmp.seed,
        "artifacts": str(out_dir) if out_dir is not None else None,
        "policies": cmp.summary(),
        "keys": [
            {"policy": o.name, "comm": u.key.comm, "coll": u.key.coll.name.lower(),
             "n_bytes": u.key.n_bytes, "arm": u.arm, "count": u.count, "mean_us": u.mean_us}
            for o in cmp.outcomes for u in o.key_uses()
        ],
    }


def cmd_run(args: argparse.Namespace) -> int:
    truth = _truth(args)
    preset = cluster(args.cluster)
    topo = preset.topology
    wl = _workload(args.workload, topo.n_ranks, topo.n_nodes)
    if args.steps < 1:
        raise ConfigError(f"--steps {args.steps}: run at least one step")
    if args.ranks_per_process < 1:
        raise ConfigError(f"--ranks-per-process {args.ranks_per_process}: use at least 1")
    table = args.table
    if table is not None and not Path(table).is_file():
        raise ConfigError(f"--table {table}: no such file; give the path of a table file")
    policies = parse_policies(args.policies, table)
    out = Path(args.out) if args.out else artifacts.default_run_dir(args.cluster, wl.name)
    out = artifacts.prepare_dir(out)
    plugin = default_plugin_path()
    bar = ProgressBar(f"sim {args.cluster}/{wl.name}")
    try:
        cmp = run_policies(truth, topo, wl, args.steps, args.seed, policies, out, plugin,
                           static_table=table, ranks_per_process=args.ranks_per_process,
                           progress=bar)
    finally:
        bar.close()
    context = {
        "plugin": plugin,
        "profile": truth.profile,
        "static_table": str(Path(table).resolve()) if table else None,
        "ranks": topo.n_ranks, "nodes": topo.n_nodes,
        "ranks_per_process": args.ranks_per_process,
        "policy_names": policies,
        "command": sys.argv,
    }
    artifacts.write_artifacts(out, cmp, context)
    if args.json:
        print(json.dumps(comparison_json(cmp, out), indent=2))
    else:
        print(format_summary(cmp, out))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    print("clusters:")
    for name, c in CLUSTER_PRESETS.items():
        t = c.topology
        print(f"  {name:<20} {t.n_nodes} node(s) x {t.ppn} GPU(s)  {c.description}")
    print("workloads:")
    for name, w in WORKLOAD_PRESETS.items():
        print(f"  {name:<20} {w.description}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    truth = _truth(args)
    topo = cluster(args.cluster).topology
    wl = _workload(args.workload, topo.n_ranks, topo.n_nodes)
    sw = sweep_policy(truth, topo, wl, args.seed)
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a directory; give a file name such as sweep.conf")
    text = sw.text([f"offline sweep: cluster {args.cluster}, workload {wl.name}, seed {args.seed}"]
                   + ([f"profile {truth.profile}"] if truth.profile else [])
                   + [f"sweep GPU time {sw.gpu_time_us / 1e6:.3f} s over "
                      f"{len(sw.measurements)} (key, arm) measurements"])
    try:
        out.write_text(text)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write it: {e.strerror}") from None
    print(f"wrote {out}: {len(sw.rules)} rule(s), sweep GPU time {sw.gpu_time_us / 1e6:.3f} s",
          file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sim = sub.add_parser("sim", help="simulated cluster driving the real plugin")
    ssub = sim.add_subparsers(dest="sim_command", required=True)

    run = ssub.add_parser("run", help="run a workload under NCCL default, tables and the oracle")
    run.add_argument("--cluster", default=DEFAULT_CLUSTER,
                     help=f"cluster preset (default {DEFAULT_CLUSTER}; see `cclpilot sim presets`)")
    run.add_argument("--workload", default=DEFAULT_WORKLOAD,
                     help=f"workload preset or workload JSON file (default {DEFAULT_WORKLOAD})")
    run.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps to simulate")
    run.add_argument("--table", help="table file run as the 'static' policy")
    run.add_argument("--profile", help="measured profile used as the ground truth")
    run.add_argument("--seed", type=int, default=0, help="seed of every random component")
    run.add_argument("--ranks-per-process", type=int, default=8,
                     help="simulated ranks hosted by each worker process (default 8)")
    run.add_argument("--policies", default=DEFAULT_POLICIES,
                     help="comma-separated subset of default,static,sweep,oracle,live "
                     "(live: a real daemon with the online tuner)")
    run.add_argument("--json", action="store_true", help="print one JSON document")
    run.add_argument("--out", help="artifacts directory (default runs/<time>-<cluster>-<workload>)")
    run.set_defaults(func=cmd_run)

    pr = ssub.add_parser("presets", help="list cluster and workload presets")
    pr.set_defaults(func=cmd_presets)

    sw = ssub.add_parser("sweep", help="write an offline-sweep table file")
    sw.add_argument("--cluster", default=DEFAULT_CLUSTER)
    sw.add_argument("--workload", default=DEFAULT_WORKLOAD)
    sw.add_argument("--profile")
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--out", required=True, help="table file to write")
    sw.set_defaults(func=cmd_sweep)
