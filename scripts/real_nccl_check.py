#!/usr/bin/env python3
"""Checks the built plugin inside real NCCL (needs a CUDA GPU, PyTorch with NCCL).

Two ranks share one GPU: each gets its own NCCL_HOSTID, so NCCL treats them as two hosts talking
over sockets (nNodes = 2), which is enough for the tuner and profiler to be called for real.
Runs the same all-reduce sweep in observe mode and in static mode with a table that forces one
arm, and checks what the statistics file says NCCL ran; with --live it also runs a longer sweep
in live mode against a real `cclpilot daemon` (online tuner) and checks that plans were
committed and activated inside real NCCL without a hang.

usage: real_nccl_check.py PLUGIN.so OUTDIR [--live]
Exit status 0 = all checks passed, 1 = a check failed, 77 = no GPU/NCCL here (skip).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

SIZES = [4096, 65536, 1 << 20, 16 << 20]
ITERS = int(os.environ.get("CCLPILOT_CHECK_ITERS", "20"))


def _rank_main(rank: int, port: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    os.environ["NCCL_HOSTID"] = f"cclpilot-fake-host-{rank}"
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    for size in SIZES:
        t = torch.ones(size // 4, dtype=torch.float32, device="cuda")
        for _ in range(ITERS):
            dist.all_reduce(t)
    torch.cuda.synchronize()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(plugin: Path, out: Path, label: str, extra_env: dict[str, str]) -> list[dict[str, object]]:
    import torch.multiprocessing as mp

    stats = out / f"stats-{label}.jsonl"
    stats.unlink(missing_ok=True)
    env = {
        "NCCL_TUNER_PLUGIN": str(plugin),
        "NCCL_PROFILER_PLUGIN": str(plugin),
        "NCCL_DEBUG": "INFO",
        "NCCL_DEBUG_SUBSYS": "INIT,TUNING,PROFILE",
        "NCCL_DEBUG_FILE": str(out / f"nccl-{label}.%h.%p.log"),
        "NCCL_SOCKET_IFNAME": "lo",
        "NCCL_IB_DISABLE": "1",
        "CCLPILOT_STATS_FILE": str(stats),
        **extra_env,
    }
    os.environ.update(env)
    mp.start_processes(_rank_main, args=(_free_port(), str(out)), nprocs=2, start_method="spawn")
    for key in ("CCLPILOT_MODE", "CCLPILOT_TABLE"):
        os.environ.pop(key, None)
    if not stats.is_file():
        raise SystemExit(f"FAIL {label}: no statistics file {stats} (was the profiler loaded?)")
    return [json.loads(line) for line in stats.read_text().splitlines() if line.strip()]


def _live(plugin: Path, out: Path) -> list[str]:
    import subprocess
    import time

    repo = Path(__file__).resolve().parent.parent
    run_dir = out / "daemon"
    env = dict(os.environ, PYTHONPATH=str(repo / "python") + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    daemon = subprocess.Popen([sys.executable, "-m", "cclpilot.cli", "daemon", "--run-dir",
                               str(run_dir), "--report-ms", "50", "--min-lead-calls", "8"],
                              stdout=subprocess.PIPE, stderr=open(out / "daemon.log", "w"),
                              text=True, env=env)
    assert daemon.stdout is not None
    settings: dict[str, str] = {}
    for line in daemon.stdout:
        if line.startswith("export "):
            name, _, value = line[len("export "):].strip().partition("=")
            settings[name] = value.strip("'")
        if line.startswith("# run directory"):
            break
    os.environ["CCLPILOT_CHECK_ITERS"] = "150"
    t0 = time.monotonic()
    try:
        lines = _run(plugin, out, "live", {**settings, "CCLPILOT_JOB_ID": "real-nccl-check",
                                            "CCLPILOT_COMMIT_WAIT_MS": "5000"})
    finally:
        daemon.terminate()
        daemon.wait(20)
    print(f"live: job finished in {time.monotonic() - t0:.1f} s")
    events = [e for e in (json.loads(x) for x in
                          (run_dir / "decisions.jsonl").read_text().splitlines())
              if e["event"] != "life"]   # the journal also records each daemon start
    commits = [e for e in events if e["event"] == "commit"]
    print(f"live: {len(events)} journal events, {len(commits)} commit(s)")
    for e in events:
        print(f"  {e['event']:8} plan {e['plan']} at call {e['activate_at']}: "
              f"{str(e.get('reason', ''))[:150]}")
    arms = {(r["algo"], r["proto"]) for r in lines if r.get("coll") == "allreduce"}
    print(f"live: arms that ran: {sorted(arms)}")
    problems = []
    stats = json.loads((run_dir / "run.json").read_text()).get("stats") or {}
    by_type = stats.get("by_type", {})
    print(f"live: daemon received {dict(by_type)}, ingest {stats.get('ingest')}, rejected "
          f"{dict(stats.get('rejected', {}))}")
    if not by_type.get("MEASUREMENTS_PACKED"):
        problems.append("live mode: no MEASUREMENTS_PACKED reached the daemon (packed_stats "
                        "not negotiated?)")
    if sum(stats.get("rejected", {}).values()):
        problems.append(f"live mode: the daemon rejected messages: {stats.get('rejected')}")
    if not commits:
        problems.append("live mode: the daemon committed no plan")
    if len(arms) < 2:
        problems.append("live mode: no arm other than NCCL's ran (no exploration took effect)")
    return problems


def main() -> int:
    try:
        import torch
    except ImportError:
        print("SKIP: PyTorch is not installed")
        return 77
    if not torch.cuda.is_available() or not torch.distributed.is_nccl_available():
        print("SKIP: no CUDA GPU or no NCCL")
        return 77
    plugin, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print("NCCL version:", torch.cuda.nccl.version())
    failures = []

    observed = _run(plugin, out, "observe", {"CCLPILOT_MODE": "observe"})
    arms = [r for r in observed if r.get("coll") == "allreduce"]
    print(f"observe: {len(arms)} (key, arm) lines")
    for r in arms:
        print(f"  rank {r['rank']} {r['n_bytes']:>10} B  {r['algo']}/{r['proto']}/{r['n_channels']}ch"
              f"  n={r['count']} mean={r['mean_us']:.1f}us untimed={r.get('untimed')}")
    if not any(int(r["count"]) > 0 for r in arms):
        failures.append("observe mode recorded no timed all-reduce")

    table = out / "force-ring-ll.conf"
    table.write_text("# force Ring/LL for every all-reduce\nallreduce,0,-1,ring,ll,-1,-1,-1\n")
    forced = _run(plugin, out, "static", {"CCLPILOT_MODE": "static", "CCLPILOT_TABLE": str(table)})
    arms = [r for r in forced if r.get("coll") == "allreduce"]
    print(f"static: {len(arms)} (key, arm) lines")
    for r in arms:
        print(f"  rank {r['rank']} {r['n_bytes']:>10} B  {r['algo']}/{r['proto']}/{r['n_channels']}ch"
              f"  n={r['count']} mean={r['mean_us']:.1f}us")
    wrong = [r for r in arms if (r["algo"], r["proto"]) != ("ring", "ll")]
    if not arms:
        failures.append("static mode recorded nothing")
    if wrong:
        failures.append(f"static table forcing ring/ll was not followed: {wrong[:3]}")
    if "--live" in sys.argv:
        failures += _live(plugin, out)
    for f in failures:
        print("FAIL:", f)
    print("OK" if not failures else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
