"""Simulator throughput through the real plugin.

1. Collective-rank decisions per second: every simulated rank's run_collective (cost table,
   getCollInfo, scheduler, getChunkSize, profiler events) in one process.
2. The CI target: a 1,000-step run of the fully sharded (FSDP) preset on 16 ranks
   (h100-2x8-ib) must finish in under 2 minutes, printed beside the same run with the plugin in
   off mode (the harness's own cost: no tuner decisions, no profiler events).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

from cclpilot.sim.clusters import cluster  # noqa: E402
from cclpilot.sim.runner import JobSpec, TruthSpec, default_plugin_path, run_job  # noqa: E402
from cclpilot.sim.workloads import workload_preset  # noqa: E402

CLUSTER = "h100-2x8-ib"
WORKLOAD = "fsdp-llama-2-7b"
LIMIT_S = 120.0


def decisions_per_second(mode: str, seconds: float) -> float:
    """One process, 8 ranks of one communicator, the FSDP sizes in turn."""
    os.environ["CCLPILOT_MODE"] = mode
    from cclpilot.sim.harness import SimNccl

    c = cluster(CLUSTER)
    wl = workload_preset(WORKLOAD).resolved(c.topology.n_ranks, c.topology.n_nodes)
    with SimNccl(c.topology, default_plugin_path()) as sim:
        comms = [sim.create_comm(0xBE7C4, r) for r in range(8)]
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for op in wl.ops:
                for comm in comms:
                    comm.run_collective(op.coll, op.n_bytes, duration_fn=lambda launch: 100.0)
                n += len(comms)
        return n / (time.perf_counter() - t0)


def timed_run(mode: str, steps: int, rpp: int) -> tuple[float, int]:
    c = cluster(CLUSTER)
    wl = workload_preset(WORKLOAD).resolved(c.topology.n_ranks, c.topology.n_nodes)
    spec = JobSpec(TruthSpec(CLUSTER), c.topology, wl, steps, 0, {"CCLPILOT_MODE": mode},
                   default_plugin_path(), ranks_per_process=rpp)
    t0 = time.perf_counter()
    res = run_job(spec)
    return time.perf_counter() - t0, res.decisions


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--ranks-per-process", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of the decisions/s probe")
    ap.add_argument("--skip-off", action="store_true", help="skip the off-mode baseline run")
    args = ap.parse_args()

    print(f"decisions/s, one process, 8 ranks, {WORKLOAD} sizes on {CLUSTER}:")
    for mode in ("observe", "off"):
        # Settings are read once per process: each probe gets its own interpreter.
        import subprocess

        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                f"import bench_sim; print(bench_sim.decisions_per_second({mode!r}, {args.seconds}))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        print(f"  plugin {mode:<8} {float(out.stdout.strip()):10.0f} decisions/s")

    n = cluster(CLUSTER).topology.n_ranks
    print(f"\n{args.steps}-step run, {WORKLOAD} on {CLUSTER} ({n} ranks, "
          f"{args.ranks_per_process} per process, {os.cpu_count()} CPUs):")
    rows = []
    for mode in ("observe",) + (() if args.skip_off else ("off",)):
        wall, dec = timed_run(mode, args.steps, args.ranks_per_process)
        rows.append((mode, wall, dec))
    print(f"  {'plugin mode':<12} {'wall':>9} {'decisions':>10} {'decisions/s':>12}")
    for mode, wall, dec in rows:
        print(f"  {mode:<12} {wall:8.1f}s {dec:10d} {dec / wall:12.0f}")
    wall = rows[0][1]
    ok = wall < LIMIT_S
    print(f"\nobserve-mode run: {wall:.1f} s, {'under' if ok else 'OVER'} the {LIMIT_S:.0f} s target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
