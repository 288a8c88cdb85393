"""Daemon capacity: many virtual ranks speaking the protocol against one daemon process.

Target (issue 4, item 9): 1,024 ranks x 100 keys reporting every 100 ms handled on one core,
plan commit latency p99 under 100 ms. The load generator runs in this process (its own core on
a multi-core machine); the daemon runs in a subprocess. Prints achieved rates beside the target.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

import msgpack  # type: ignore[import-untyped]  # noqa: E402
import zmq  # noqa: E402

from cclpilot.daemon.peer import run_daemon_process  # noqa: E402
from cclpilot.proto.codec import decode, encode  # noqa: E402
from cclpilot.proto.messages import Ack, Hello  # noqa: E402

TARGET_RANKS, TARGET_KEYS, TARGET_PERIOD_S = 1024, 100, 0.1


def measurement(comm: int, calls: int, keys: int, step: int) -> bytes:
    stats = []
    for k in range(keys):
        count = step * 10
        hist = [0] * 48
        hist[12] = count
        stats.append({"coll": 4, "n_bytes": 1024 << (k % 20), "algo": 1, "proto": 2,
                      "n_channels": 8, "count": count, "sum_ns": 5000.0 * count,
                      "sum_sq_ns": 2.5e7 * count, "min_ns": 4000, "max_ns": 6000,
                      "hist": hist, "untimed": 0})
    return msgpack.packb({"t": "MEASUREMENTS", "comm": comm, "calls": calls, "dropped": 0,
                          "stats": stats}, use_bin_type=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ranks", type=int, default=TARGET_RANKS)
    ap.add_argument("--keys", type=int, default=TARGET_KEYS)
    ap.add_argument("--ranks-per-comm", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="cclpilot-bench-"))
    brain_mod = tmp / "bench_brain.py"
    brain_mod.write_text(
        "from cclpilot.daemon.brain import NullBrain, PlanProposal\n"
        "class B(NullBrain):\n"
        "    def ask(self):\n"
        "        return PlanProposal(rules=(), reason='bench: re-plan continuously')\n"
        "def factory(info):\n    return B(info)\n")
    import os
    os.environ["PYTHONPATH"] = f"{tmp}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    dp = run_daemon_process(tmp / "run", ["--ipc-dir", str(tmp / "ipc"), "--brain",
                                          "bench_brain:factory", "--no-fsync",
                                          "--ack-timeout-ms", "5000"])
    ctx = zmq.Context()
    n_comms = max(1, args.ranks // args.ranks_per_comm)
    socks = []
    comm_of = []
    for r in range(args.ranks):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 1000)
        s.connect(dp.endpoint)
        comm = 1000 + r % n_comms
        rank = r // n_comms
        s.send(encode(Hello(version=[1, 0], features=["measure", "plans"], job="bench",
                            comm=comm, n_ranks=args.ranks_per_comm, n_nodes=1, rank=rank,
                            host="h", pid=r + 1, nccl_version=0, tuner_abi=5, profiler_abi=5)))
        socks.append(s)
        comm_of.append(comm)
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    sent = step = 0
    commits = aborts = 0
    t0 = time.monotonic()
    next_tick = t0
    behind = 0
    calls = 0
    while time.monotonic() - t0 < args.seconds:
        now = time.monotonic()
        if now >= next_tick:
            step += 1
            calls += 1000
            payload = {c: measurement(c, calls, args.keys, step) for c in set(comm_of)}
            for s, c in zip(socks, comm_of):
                try:
                    s.send(payload[c], zmq.NOBLOCK)
                    sent += 1
                except zmq.Again:
                    behind += 1
            next_tick += TARGET_PERIOD_S
            if time.monotonic() > next_tick:
                behind += 1
        for s, _ in poller.poll(5):
            for _ in range(100):
                try:
                    data = s.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                m = decode(data)
                if m.t == "PREPARE":
                    s.send(encode(Ack(comm=m.comm, plan=m.plan, ok=True, calls=calls,  # type: ignore[union-attr]
                                      seq_hash=rng.getrandbits(0) or 7, reason="")))
                elif m.t == "COMMIT":
                    commits += 1
                elif m.t == "ABORT":
                    aborts += 1
    elapsed = time.monotonic() - t0
    dp.stop()
    import json
    stats = json.loads((tmp / "run" / "run.json").read_text())["stats"]
    handled = stats["by_type"].get("MEASUREMENTS", 0)
    target_msgs = TARGET_RANKS / TARGET_PERIOD_S
    got_rate = handled / elapsed
    p99 = stats["commit_latency_p99_s"]
    print(f"{'':34}{'achieved':>14}{'target':>14}")
    print(f"{'ranks x keys':34}{args.ranks:>8} x {args.keys:<4}{TARGET_RANKS:>8} x "
          f"{TARGET_KEYS:<4}")
    print(f"{'MEASUREMENTS handled / s':34}{got_rate:>14.0f}{target_msgs:>14.0f}")
    print(f"{'stats handled / s':34}{got_rate * args.keys:>14.0f}"
          f"{target_msgs * TARGET_KEYS:>14.0f}")
    print(f"{'sent / s (generator)':34}{sent / elapsed:>14.0f}")
    print(f"{'plan commit latency p99 (ms)':34}"
          f"{(p99 * 1000 if p99 is not None else float('nan')):>14.1f}{100.0:>14.1f}")
    print(f"{'plans committed / aborted':34}{stats['plans_committed']:>8} / "
          f"{stats['plans_aborted']}")
    print(f"{'rejected':34}{sum(stats['rejected'].values()):>14}")
    ok = got_rate * args.keys >= target_msgs * TARGET_KEYS and p99 is not None and p99 < 0.1
    print("target met" if ok else "target NOT met on this machine")
    ctx.destroy(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
