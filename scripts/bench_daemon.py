"""Daemon capacity: many virtual ranks speaking the protocol against one daemon process.

Target (issue 4, item 9): 1,024 ranks x 100 keys reporting every 100 ms (10,240 MEASUREMENTS/s of
100 Stat entries each) handled on one core, with plan commit latency p99 under 100 ms.

The daemon runs in a subprocess pinned to one CPU; this process, the load generator, is pinned to
another (when there are two). Every virtual rank has its own DEALER socket, registers with HELLO,
reports cumulative, protocol-valid MEASUREMENTS every 100 ms at its own phase, sends HEARTBEAT at
the WELCOME's interval and answers PREPARE at once with its current call count and the call-sequence
hash of the modelled training loop. Only a steady window after registration and a warm-up counts:
the daemon's counters are read at the window's edges through a signal handler that the bench's
brain module installs inside the daemon process (the daemon has no other way to report mid-run).

Exit status: 0 when the run is valid (whether or not the target was met), 1 when it is not
(rejected messages, a daemon that died, registrations that never completed, reports that fail the
reference decoder).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import selectors
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

import msgpack  # type: ignore[import-untyped]  # noqa: E402
import zmq  # noqa: E402

from cclpilot.daemon.peer import DaemonProcess, run_daemon_process  # noqa: E402
from cclpilot.errors import CclpilotError  # noqa: E402
from cclpilot.proto.codec import decode, encode  # noqa: E402
from cclpilot.proto.messages import (  # noqa: E402
    HIST_BUCKETS,
    MAX_CHANNELS,
    MAX_STATS,
    Hello,
    Measurements,
    MeasurementsPacked,
    pack_run,
)
from cclpilot.proto.seqhash import SEQ_HASH_INIT, seq_hash_update  # noqa: E402

TARGET_RANKS, TARGET_KEYS, TARGET_PERIOD_S = 1024, 100, 0.1
TARGET_MSGS_S = TARGET_RANKS / TARGET_PERIOD_S
TARGET_P99_S = 0.1
TARGET_CORES = 1.05
SWEEP_RANKS = (256, 512, 1024)
# Reports are spread over the period at each rank's own phase (a plugin's timer starts at its
# WELCOME), in this many slots; all ranks of one slot and one position in their communicator
# share a freshly built report body, so the generator's cost does not grow with the rank count.
SLOTS_PER_PERIOD = 10
# Small per-socket queue: a stalled daemon then costs the generator at most
# ranks x SNDHWM x ~17 KB, and reports it could not queue are counted, not hidden.
SNDHWM = 16

_PRIME_SNAPSHOT, _START_SNAPSHOT, _END_SNAPSHOT = 1, 2, 3
# Taken before the bench pins itself: later runs of a sweep must see every CPU again.
_CPUS = sorted(os.sched_getaffinity(0))


class BenchError(CclpilotError):
    """The benchmark could not run or its result is not valid."""


# ---- the modelled training loop -------------------------------------------------------------

StatKey = tuple[int, int, int, int, int]  # coll, n_bytes, algo, proto, n_channels

# allreduce, allgather, reducescatter, broadcast first; reduce only when more keys are asked for
_MAIN_COLLS = (4, 2, 3, 0)
_POW2_SIZES = tuple(1024 << j for j in range(25))            # 1 KiB .. 16 GiB
_MID_SIZES = tuple(3 * (512 << j) for j in range(1, 25))     # 3 KiB .. 24 GiB, between powers


def nccl_like_arm(coll: int, n_bytes: int) -> tuple[int, int, int]:
    """The (algo, proto, n_channels) NCCL would typically pick on one node: LL for latency-bound
    sizes, LL128 in the middle, Simple for bandwidth; more channels as sizes grow."""
    algo = 0 if coll == 4 and n_bytes < 64 << 10 else 1          # tree for small allreduce
    if n_bytes < 64 << 10:
        return algo, 0, 2
    if n_bytes < 4 << 20:
        return algo, 1, 8
    return algo, 2, 16 if n_bytes < 256 << 20 else 32


def stat_grid(n: int) -> list[StatKey]:
    """n distinct stat keys: 4 collectives x 25 powers of two from 1 KiB (the default 100), then
    reduce, then sizes between the powers, then other arms that ran for the same keys (the arms
    an earlier plan chose)."""
    if not 1 <= n <= MAX_STATS:
        raise BenchError(f"--keys {n}: must be 1..{MAX_STATS} (MAX_STATS; more would need several "
                         "MEASUREMENTS per report)")
    keys: list[tuple[int, int]] = [(c, s) for c in _MAIN_COLLS for s in _POW2_SIZES]
    keys += [(1, s) for s in _POW2_SIZES]
    keys += [(c, s) for c in (*_MAIN_COLLS, 1) for s in _MID_SIZES]
    out: list[StatKey] = []
    for alt in range(5):
        for coll, size in keys:
            algo, proto, ch = nccl_like_arm(coll, size)
            if alt:
                proto = (proto + alt) % 3
                ch = ch if alt < 3 else max(1, ch // 2)
            out.append((coll, size, algo, proto, min(ch, MAX_CHANNELS)))
            if len(out) == n:
                if len(set(out)) != n:
                    raise BenchError("internal: stat grid has duplicate keys")
                return out
    raise BenchError(f"--keys {n}: the grid holds only {len(out)} keys")


def base_duration_ns(key: StatKey) -> float:
    coll, n_bytes, _, proto, n_channels = key
    latency = (5_000.0, 8_000.0, 15_000.0)[proto]
    bus_gb_s = (40.0 if coll == 4 else 80.0) * min(1.0, n_channels / 16.0 + 0.25)
    return latency + n_bytes / bus_gb_s                             # 1 GB/s = 1 byte/ns


_CALLS_KEY: bytes = msgpack.packb("calls")
_TAGS = {False: "MEASUREMENTS", True: "MEASUREMENTS_PACKED"}


def report_head(packed: bool) -> bytes:
    """A report's map header and fields up to comm's value (a 5-entry map)."""
    out: bytes = (b"\x85" + msgpack.packb("t") + msgpack.packb(_TAGS[packed])
                  + msgpack.packb("comm"))
    return out


def _array_header(n: int) -> bytes:
    return b"\x90" if n == 0 else msgpack.packb([None] * n)[:-n]  # each nil is one byte


class RankModel:
    """Cumulative counters of one rank position (its calls lag the communicator's by `lag`; its
    durations differ by `jitter`), advanced call by call; only stats that changed are re-encoded.
    """

    def __init__(self, grid: list[StatKey], lag: int, jitter: float, noise: list[float],
                 noise_shift: int) -> None:
        self.grid = grid
        self.packed = False
        self.lag = lag
        self.base = [base_duration_ns(k) * jitter for k in grid]
        self.noise = noise
        self.noise_shift = noise_shift
        k = len(grid)
        self.calls = 0
        self.count = [0] * k
        self.sum_ns = [0.0] * k
        self.sum_sq = [0.0] * k
        self.min_ns = [0] * k
        self.max_ns = [0] * k
        self.hist = [[0] * HIST_BUCKETS for _ in range(k)]
        self.segs = [self._segment(i) for i in range(k)]
        self._array = _array_header(k)
        self._tail: bytes = msgpack.packb("dropped") + msgpack.packb(0) + msgpack.packb("stats")

    def set_packed(self, packed: bool) -> None:
        """Reports as MEASUREMENTS_PACKED (what a plugin sends once packed_stats is granted)."""
        self.packed = packed
        self.segs = [self._segment(i) for i in range(len(self.grid))]

    def _segment(self, i: int) -> bytes:
        coll, n_bytes, algo, proto, n_channels = self.grid[i]
        if self.packed:
            row: bytes = msgpack.packb([
                coll, n_bytes, algo, proto, n_channels, self.count[i], self.sum_ns[i],
                self.sum_sq[i], self.min_ns[i], self.max_ns[i], pack_run(self.hist[i]), 0],
                use_bin_type=True)
            return row
        # Dict built in PROTOCOL.md's table order: msgpack keeps it, so this is canonical.
        data: bytes = msgpack.packb({
            "coll": coll, "n_bytes": n_bytes, "algo": algo, "proto": proto,
            "n_channels": n_channels, "count": self.count[i], "sum_ns": self.sum_ns[i],
            "sum_sq_ns": self.sum_sq[i], "min_ns": self.min_ns[i], "max_ns": self.max_ns[i],
            "hist": self.hist[i], "untimed": 0}, use_bin_type=True)
        return data

    def advance(self, calls: int) -> None:
        k = len(self.grid)
        noise, n_noise = self.noise, len(self.noise)
        dirty = set()
        for c in range(self.calls, calls):
            i = c % k
            d = int(self.base[i] * noise[(c // k * 7 + i + self.noise_shift) % n_noise])
            d = max(1, d)
            n = self.count[i]
            self.count[i] = n + 1
            self.sum_ns[i] += float(d)
            self.sum_sq[i] += float(d) * float(d)
            if n == 0 or d < self.min_ns[i]:
                self.min_ns[i] = d
            if d > self.max_ns[i]:
                self.max_ns[i] = d
            self.hist[i][min(d.bit_length() - 1, HIST_BUCKETS - 1)] += 1
            dirty.add(i)
        if calls > self.calls:
            self.calls = calls
        for i in dirty:
            self.segs[i] = self._segment(i)

    def body(self) -> bytes:
        """Everything of a MEASUREMENTS after `comm`'s value: the rank prefix goes in front."""
        calls: bytes = msgpack.packb(self.calls)
        return _CALLS_KEY + calls + self._tail + self._array + b"".join(self.segs)


class SeqFold:
    """The call-sequence hash (PROTOCOL.md) of the modelled loop after n calls. Every
    communicator runs the same loop, so one fold serves them all."""

    def __init__(self, grid: list[StatKey]) -> None:
        self.words = [(k[0], k[1], 1) for k in grid]   # (coll, n_bytes, numPipeOps)
        self.after = [SEQ_HASH_INIT]

    def at(self, calls: int) -> int:
        after, words, k = self.after, self.words, len(self.words)
        h = after[-1]
        for c in range(len(after) - 1, calls):
            h = seq_hash_update(h, *words[c % k])
            after.append(h)
        return after[calls]


# ---- the daemon side: brain module, snapshots, CPU ------------------------------------------

# Loaded by the daemon (--brain bench_brain:factory): every communicator's brain proposes a new
# plan whenever it is asked and at least PLAN_INTERVAL_S passed since its last proposal (0: every
# time, so a round is always in flight). The daemon's counters come from its own stats dump
# (SIGUSR1 writes RUN_DIR/stats.json, docs/daemon.md).
_BRAIN_MODULE = '''
import time
from cclpilot.daemon.brain import NullBrain, PlanProposal

PLAN_INTERVAL_S = {interval!r}

class B(NullBrain):
    last = -1e9

    def ask(self):
        now = time.monotonic()
        if now - self.last < PLAN_INTERVAL_S:
            return None
        self.last = now
        return PlanProposal(rules=(), reason="bench: re-plan")

def factory(info):
    return B(info)
'''


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, all its threads, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_run_delay_s(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a CPU (schedstat), summed:
    other work on the pinned CPU shows here, and makes the other numbers pessimistic."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def pin_process(pid: int, cpu: int) -> None:
    """Every thread of the process: a thread's affinity is its own, and the daemon's ZeroMQ I/O
    thread and brain thread exist before the bench can pin anything."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class Snapshot:
    t: float
    stats: dict[str, Any]
    lat_new: list[float]
    lat_reset: bool
    frozen: int


# ---- the load generator ---------------------------------------------------------------------


@dataclass
class Counters:
    offered: int = 0          # MEASUREMENTS queued
    offered_bytes: int = 0    # their bytes
    hwm_full: int = 0         # MEASUREMENTS not queued: the socket's queue was full
    heartbeats: int = 0
    acks: int = 0
    acks_refused: int = 0
    commits_seen: int = 0     # COMMIT messages (one per rank and plan)
    aborts_seen: int = 0
    late_decisions: int = 0   # decisions that reached a rank already past activate_at
    errors: int = 0
    slots_skipped: int = 0    # report slots dropped because the generator was a period late
    reports_skipped: int = 0

    def minus(self, other: Counters) -> Counters:
        return Counters(**{k: v - getattr(other, k) for k, v in vars(self).items()})


@dataclass
class PlanSeen:
    first_prepare: float
    commits: int = 0
    aborts: int = 0
    last_decision: float = 0.0
    # Wall-clock times (time.time(), the clock of the daemon's artifacts) to split a plan's
    # latency between the daemon and the generator: see latency_split().
    prepare_rx_wall: list[float] = field(default_factory=list)
    decision_rx_wall: list[float] = field(default_factory=list)


class Generator:
    """Every virtual rank's socket and state, on one thread."""

    def __init__(self, args: argparse.Namespace, ranks: int, endpoint: str,
                 rng: random.Random) -> None:
        self.args = args
        self.ranks = ranks
        self.endpoint = endpoint
        self.rng = rng
        rpc = self.args.ranks_per_comm
        if rpc < 1 or self.ranks % rpc:
            raise BenchError(f"--ranks {self.ranks} is not a multiple of --ranks-per-comm {rpc}")
        self.grid = stat_grid(self.args.keys)
        self.period = TARGET_PERIOD_S
        self.rate = float(self.args.call_rate)
        # Offered like the plugin does; the daemon decides (run_once tells it which to grant).
        self.offer = ["measure", "plans", "packed_stats"]
        comms: set[int] = set()
        while len(comms) < self.ranks // rpc:
            comms.add(self.rng.getrandbits(64) or 1)
        self.comm_ids = sorted(comms)
        self.comm_of = [self.comm_ids[r // rpc] for r in range(self.ranks)]
        self.pos_of = [r % rpc for r in range(self.ranks)]
        noise = [min(1.6, max(0.7, self.rng.lognormvariate(0.0, 0.08))) for _ in range(251)]
        # Ranks of one communicator are a few calls apart and a little faster or slower.
        self.models = [RankModel(self.grid, lag=p % 4, jitter=1.0 + 0.013 * p, noise=noise,
                                 noise_shift=17 * p) for p in range(rpc)]
        self.fold = SeqFold(self.grid)
        self.slot_of = [self.rng.randrange(SLOTS_PER_PERIOD) for _ in range(self.ranks)]
        self.slot_ranks: list[list[int]] = [[] for _ in range(SLOTS_PER_PERIOD)]
        for r, s in enumerate(self.slot_of):
            self.slot_ranks[s].append(r)
        self.packed = False   # settled by the WELCOMEs: what the daemon granted
        self.prefix = [report_head(False) + msgpack.packb(c) for c in self.comm_of]
        self.ctx = zmq.Context()
        # ZeroMQ refuses sockets past MAX_SOCKETS (1023 by default); set before the first one.
        self.ctx.set(zmq.MAX_SOCKETS, self.ranks + 64)
        self.socks: list[zmq.Socket[bytes]] = []
        self.rank_of: dict[zmq.Socket[bytes], int] = {}
        # Readiness through epoll on each socket's ZMQ_FD: zmq.Poller walks all 1,024 sockets
        # on every call (0.7 ms here), and a generator polling after every message spent most
        # of its core there, answering PREPAREs late. ZMQ_FD is edge-triggered and any send or
        # receive may consume its signal, so a socket used since is re-checked (`recheck`).
        self.selector = selectors.EpollSelector()
        self.recheck: set[int] = set()
        self.welcomed = [False] * self.ranks
        self.granted: list[frozenset[str]] = [frozenset()] * self.ranks
        self.heartbeat_s = 1.0
        self.report_ms = 100
        self.next_hb = [0.0] * self.ranks
        self.hb_seq = [0] * self.ranks
        self.pending: list[tuple[int, int, bytes] | None] = [None] * self.ranks
        self.plans: dict[tuple[int, int], PlanSeen] = {}
        self.c = Counters()
        self.error_samples: list[str] = []
        self.abort_reasons: dict[str, int] = {}
        self.t0 = 0.0
        self.next_slot = 0.0
        self.slot_index = 0
        self.max_lag_s = 0.0
        self.validated = 0

    # -- time and calls --

    def calls_at(self, pos: int, now: float) -> int:
        if not self.t0:
            return 0  # the loop starts once every rank is registered
        return max(0, int((now - self.t0) * self.rate) - self.models[pos].lag)

    # -- registration --

    def connect_all(self, timeout_s: float = 60.0) -> float:
        rpc = self.args.ranks_per_comm
        for r in range(self.ranks):
            s = self.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, SNDHWM)
            s.connect(self.endpoint)
            self.socks.append(s)
            self.rank_of[s] = r
            self.selector.register(s.getsockopt(zmq.FD), selectors.EVENT_READ, r)
        t_start = time.monotonic()
        for r, s in enumerate(self.socks):
            hosts = {(r - self.pos_of[r] + p) // 8 for p in range(rpc)}
            s.send(encode(Hello(version=[1, 1], features=self.offer, job="bench",
                                comm=self.comm_of[r], n_ranks=rpc, n_nodes=len(hosts),
                                rank=self.pos_of[r], host=f"bench-node{r // 8:04d}",
                                pid=1000 + r, nccl_version=22703, tuner_abi=5,
                                profiler_abi=5)))
            self.recheck.add(r)
        deadline = t_start + timeout_s
        while not all(self.welcomed):
            if time.monotonic() > deadline:
                raise BenchError(f"only {sum(self.welcomed)} of {self.ranks} ranks were "
                                 f"welcomed within {timeout_s:.0f} s")
            self.receive(0.01)
        grants = set(self.granted)
        if len(grants) != 1:
            raise BenchError(f"the daemon granted different features to different ranks: {grants}")
        self.packed = "packed_stats" in self.granted[0]
        if self.packed != (self.args.encoding == "packed"):
            raise BenchError(f"asked for {self.args.encoding} reports but the daemon granted "
                             f"{sorted(self.granted[0])}")
        for m in self.models:
            m.set_packed(self.packed)
        self.prefix = [report_head(self.packed) + msgpack.packb(c) for c in self.comm_of]
        return time.monotonic() - t_start

    # -- the loop --

    def run(self, until: float, on_slot: Any = None) -> None:
        """Reports and heartbeats on schedule, answers everything received, until `until`."""
        slot_dt = self.period / SLOTS_PER_PERIOD
        while True:
            now = time.monotonic()
            if now >= until:
                return
            if now >= self.next_slot:
                late = now - self.next_slot
                if late > self.period:
                    # A whole period late: those reports are gone (a plugin's timer would fire
                    # once, late, not catch up), and the offered rate shows it.
                    self.c.slots_skipped += 1
                    self.c.reports_skipped += len(self.slot_ranks[self.slot_index])
                else:
                    self.max_lag_s = max(self.max_lag_s, late)
                    self.send_slot(self.slot_index, now)
                self.slot_index = (self.slot_index + 1) % SLOTS_PER_PERIOD
                self.next_slot += slot_dt
                if on_slot is not None:
                    on_slot()
                continue
            wait = min(self.next_slot, until) - now
            self.receive(max(0.0, wait))

    def start_clock(self) -> None:
        self.t0 = time.monotonic()
        self.next_slot = self.t0
        self.slot_index = 0
        for r in range(self.ranks):
            self.next_hb[r] = self.t0 + self.heartbeat_s * self.slot_of[r] / SLOTS_PER_PERIOD

    def send_slot(self, slot: int, now: float) -> None:
        bodies: dict[int, bytes] = {}
        c = self.c
        for r in self.slot_ranks[slot]:
            pos = self.pos_of[r]
            body = bodies.get(pos)
            if body is None:
                m = self.models[pos]
                m.advance(self.calls_at(pos, now))
                body = bodies[pos] = m.body()
            sock = self.socks[r]
            try:
                frame = self.prefix[r] + body
                sock.send(frame, zmq.NOBLOCK)
                self.recheck.add(r)
                c.offered += 1
                c.offered_bytes += len(frame)
            except zmq.Again:
                c.hwm_full += 1
            if now >= self.next_hb[r]:
                self.next_hb[r] += self.heartbeat_s
                self.hb_seq[r] += 1
                try:
                    sock.send(msgpack.packb({"t": "HEARTBEAT", "seq": self.hb_seq[r],
                                             "time_ns": time.monotonic_ns()}), zmq.NOBLOCK)
                    self.recheck.add(r)
                    c.heartbeats += 1
                except zmq.Again:
                    pass

    def receive(self, timeout_s: float) -> None:
        ranks = self.recheck
        self.recheck = set()
        # Messages waiting on a socket used since its last signal: no wait for the epoll.
        timeout = 0.0 if any(self.socks[r].getsockopt(zmq.EVENTS) & zmq.POLLIN
                             for r in ranks) else timeout_s
        for key, _ in self.selector.select(timeout):
            ranks.add(key.data)
        for r in ranks:
            sock = self.socks[r]
            while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                try:
                    data = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.on_message(r, data)

    def on_message(self, r: int, data: bytes) -> None:
        m = msgpack.unpackb(data, raw=False)
        t = m.get("t")
        now = time.monotonic()
        if t == "PREPARE":
            self.on_prepare(r, m, now)
        elif t == "COMMIT" or t == "ABORT":
            key = (m["comm"], m["plan"])
            seen = self.plans.get(key)
            if seen is None:
                seen = self.plans[key] = PlanSeen(first_prepare=now)
            seen.last_decision = now
            seen.decision_rx_wall.append(time.time())
            pend = self.pending[r]
            if pend is not None and pend[0] == m["plan"]:
                self.pending[r] = None
                if self.calls_at(self.pos_of[r], now) >= pend[1]:
                    self.c.late_decisions += 1
            if t == "COMMIT":
                seen.commits += 1
                self.c.commits_seen += 1
            else:
                seen.aborts += 1
                self.c.aborts_seen += 1
                reason = str(m.get("reason", ""))[:120]
                self.abort_reasons[reason] = self.abort_reasons.get(reason, 0) + 1
        elif t == "HEARTBEAT":
            pass
        elif t == "WELCOME":
            self.welcomed[r] = True
            self.granted[r] = frozenset(m["features"])
            self.heartbeat_s = m["heartbeat_ms"] / 1000.0
            self.report_ms = m["report_ms"]
        elif t == "ERROR":
            self.c.errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(f"{m.get('code')}: {m.get('message')}")

    def on_prepare(self, r: int, m: dict[str, Any], now: float) -> None:
        plan, activate_at, comm = m["plan"], m["activate_at"], m["comm"]
        seen = self.plans.setdefault((comm, plan), PlanSeen(first_prepare=now))
        seen.prepare_rx_wall.append(time.time())
        pend = self.pending[r]
        if pend is not None and pend[0] == plan:
            self.socks[r].send(pend[2], zmq.NOBLOCK)  # a repeated PREPARE: the same answer
            self.recheck.add(r)
            return
        pos = self.pos_of[r]
        calls = self.calls_at(pos, now)
        if pend is not None:
            ok, reason = False, f"plan {pend[0]} is still pending"
        elif calls > activate_at:
            ok, reason = False, f"already at call {calls}, past activate_at {activate_at}"
        else:
            ok, reason = True, ""
        ack: bytes = msgpack.packb({"t": "ACK", "comm": comm, "plan": plan, "ok": ok,
                                    "calls": calls, "seq_hash": self.fold.at(calls),
                                    "reason": reason}, use_bin_type=True)
        if ok:
            self.pending[r] = (plan, activate_at, ack)
        else:
            self.c.acks_refused += 1
        self.c.acks += 1
        try:
            self.socks[r].send(ack, zmq.NOBLOCK)
            self.recheck.add(r)
        except zmq.Again:
            pass

    # -- self-check --

    def validate_samples(self) -> None:
        """Current report of every rank position through the reference decoder, and re-packed:
        identical bytes mean canonical form."""
        now = time.monotonic()
        for pos, m in enumerate(self.models):
            r = self.pos_of.index(pos)
            m.advance(self.calls_at(pos, now))
            data = self.prefix[r] + m.body()
            msg = decode(data)
            kind = MeasurementsPacked if self.packed else Measurements
            if not isinstance(msg, kind) or len(msg.stats) != len(self.grid):
                raise BenchError(f"self-check: a report did not decode as {kind.TAG}")
            if encode(msg) != data:
                raise BenchError("self-check: a report is not in canonical form")
            keys = {(s.coll, s.n_bytes, s.algo, s.proto, s.n_channels) for s in msg.stats}
            if len(keys) != len(self.grid):
                raise BenchError("self-check: a report repeats a stat key")
            for s in msg.stats:
                if sum(s.hist) != s.count:
                    raise BenchError("self-check: a histogram does not sum to its count")
            self.validated += 1

    def close(self) -> None:
        self.selector.close()
        self.ctx.destroy(linger=0)


# ---- one run ----------------------------------------------------------------------------------


@dataclass
class Result:
    ranks: int
    keys: int
    encoding: str = "packed"
    report_bytes: float = 0.0
    window_s: float = 0.0
    offered_s: float = 0.0
    handled_s: float = 0.0
    superseded_s: float = 0.0
    committed: int = 0
    aborted: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    gen_p50_ms: float | None = None
    gen_p99_ms: float | None = None
    cores: float | None = None
    gen_cores: float = 0.0
    rejected: int = 0
    rejected_run: int = 0
    frozen: int = 0
    slots_missed: int = 0
    reports_missed: int = 0
    not_queued: int = 0
    max_lag_ms: float = 0.0
    window_source: str = "daemon counters at the window's edges"
    notes: list[str] = field(default_factory=list)
    valid: bool = True

    @property
    def _slack(self) -> float:
        # The daemon's window edges (its stats dumps) and the generator's fall a few ms apart,
        # between two ticks: two ticks' reports of slack, or an exact comparison would be a
        # coin toss for a daemon that handles every report.
        return 2 * self.ranks / SLOTS_PER_PERIOD / self.window_s if self.window_s else 0.0

    @property
    def offered_met(self) -> bool:
        """The generator offered the target rate (else the run did not test the target)."""
        goal = TARGET_MSGS_S * min(1.0, self.ranks / TARGET_RANKS)  # a sweep's smaller rows
        return bool(self.window_s) and self.offered_s >= goal - self._slack

    @property
    def rate_met(self) -> bool:
        """Handled what was offered, at the target rate and stat count."""
        if not self.window_s:
            return False
        want = min(self.offered_s, TARGET_MSGS_S) - self._slack
        return self.handled_s >= want and self.keys >= TARGET_KEYS

    def misses(self) -> list[str]:
        out = [] if self.valid else ["run not valid"]
        out += [] if self.offered_met else ["offered rate (generator too slow)"]
        out += [] if self.rate_met else ["handled rate"]
        out += [] if self.p99_ms is not None and self.p99_ms < TARGET_P99_S * 1000.0 \
            else ["commit p99"]
        out += [] if self.rejected == 0 and self.rejected_run == 0 else ["rejections"]
        out += [] if self.aborted == 0 else ["aborts"]
        out += [] if self.cores is not None and self.cores <= TARGET_CORES else ["CPU"]
        return out

    @property
    def target_met(self) -> bool:
        return not self.misses()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def _reports(stats: dict[str, Any]) -> int:
    by_type = stats["by_type"]
    return int(by_type.get("MEASUREMENTS", 0) + by_type.get("MEASUREMENTS_PACKED", 0))


def _rejected(stats: dict[str, Any]) -> int:
    return int(sum(stats.get("rejected", {}).values()))


class DaemonWatch:
    """The daemon subprocess: pinning, CPU time, its stats dumps, its death."""

    def __init__(self, dp: DaemonProcess) -> None:
        self.dp = dp
        self.pid = dp.proc.pid
        self.path = dp.run_dir / "stats.json"
        self.sent = 0
        self.dumps: dict[int, dict[str, Any]] = {}
        self._next_poll = 0.0

    @property
    def can_snapshot(self) -> bool:
        return True  # `cclpilot daemon` handles SIGUSR1 from before it prints its endpoint

    def check_alive(self) -> None:
        rc = self.dp.proc.poll()
        if rc is not None:
            tail = (self.dp.run_dir / "daemon.log").read_text(encoding="utf-8")[-1500:]
            raise BenchError(f"the daemon exited with status {rc} during the run; its log "
                             f"ends:\n{tail}")
        # Each dump replaces the last: read them as they come, so none is missed.
        now = time.monotonic()
        if self.sent > len(self.dumps) and now >= self._next_poll:
            self._next_poll = now + 0.02
            self._poll()

    def _poll(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        self.dumps.setdefault(int(doc["dump"]), doc)

    def request(self) -> int:
        self.sent += 1
        os.kill(self.pid, signal.SIGUSR1)
        return self.sent

    def snapshot(self, n: int) -> Snapshot | None:
        if n not in self.dumps:
            self._poll()
        doc = self.dumps.get(n)
        if doc is None:
            return None
        prev = self.dumps.get(n - 1)
        lat: list[float] = doc["commit_latencies_s"]
        new = int(doc["commits_total"]) - (int(prev["commits_total"]) if prev else 0)
        reset = prev is None or new > len(lat)
        return Snapshot(float(doc["monotonic"]), doc["stats"], lat[-new:] if new > 0 else [],
                        reset, int(doc["stats"]["comms_frozen"]))


_BASE_PYTHONPATH = os.environ.get("PYTHONPATH", "")


def run_once(args: argparse.Namespace, ranks: int) -> Result:
    res = Result(ranks=ranks, keys=args.keys, encoding=args.encoding)
    tmp = Path(tempfile.mkdtemp(prefix="cclpilot-bench-"))
    (tmp / "bench_brain.py").write_text(_BRAIN_MODULE.format(interval=args.plan_interval))
    os.environ["PYTHONPATH"] = f"{tmp}{os.pathsep}{_BASE_PYTHONPATH}"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * ranks + 512  # both processes: a socket, its pipe and its mailbox per rank
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    daemon_args = ["--ipc-dir", str(tmp / "ipc"), "--brain", "bench_brain:factory",
                   "--seed", str(args.seed)]
    if args.no_fsync:
        daemon_args.append("--no-fsync")
    if args.encoding == "map":
        daemon_args.append("--no-packed-stats")
    dp = run_daemon_process(tmp / "run", daemon_args)
    watch = DaemonWatch(dp)
    gen: Generator | None = None
    t_start_wall = t_end_wall = 0.0
    snap1: Snapshot | None = None
    try:
        cpus = _CPUS
        if len(cpus) >= 2 and not args.no_pin:
            pin_process(dp.proc.pid, cpus[0])
            pin_process(os.getpid(), cpus[1])
            print(f"  pinned: daemon pid {dp.proc.pid} -> CPU {cpus[0]}, generator -> CPU "
                  f"{cpus[1]}")
        else:
            res.notes.append("not pinned (fewer than 2 CPUs or --no-pin)")
        gen = Generator(args, ranks, dp.endpoint, random.Random(args.seed))
        reg_s = gen.connect_all()
        print(f"  registered {ranks} ranks in {reg_s:.2f} s "
              f"({len(gen.comm_ids)} communicators x {args.ranks_per_comm})")
        if gen.report_ms != round(TARGET_PERIOD_S * 1000):
            res.notes.append(f"daemon asks report_ms={gen.report_ms}; the bench reports every "
                             f"{TARGET_PERIOD_S * 1000:.0f} ms (the target's period)")
        if len(cpus) >= 2 and not args.no_pin:
            pin_process(dp.proc.pid, cpus[0])  # threads started since
        gen.start_clock()
        snapshots_ok = watch.can_snapshot
        if snapshots_ok:
            watch.request()  # finds the daemon object now, in the warm-up, not at the window
        else:
            res.notes.append("the daemon's snapshot handler is missing: whole-run counters")
            res.window_source = "whole run (registration and warm-up included)"
        gen.run(time.monotonic() + args.warmup / 2, on_slot=watch.check_alive)
        gen.validate_samples()
        gen.run(time.monotonic() + args.warmup / 2, on_slot=watch.check_alive)
        if snapshots_ok and watch.snapshot(_PRIME_SNAPSHOT) is None:
            gen.run(time.monotonic() + 2.0, on_slot=watch.check_alive)
            if watch.snapshot(_PRIME_SNAPSHOT) is None:
                raise BenchError("the daemon did not answer the warm-up snapshot in time")

        c0, gen_cpu0, cpu0 = Counters(**vars(gen.c)), time.process_time(), proc_cpu_s(watch.pid)
        wait0 = (proc_run_delay_s(watch.pid), proc_run_delay_s(os.getpid()))
        t_start = time.monotonic()
        t_start_wall = time.time()
        if snapshots_ok:
            watch.request()
        gen.run(t_start + args.seconds, on_slot=watch.check_alive)
        t_end = time.monotonic()
        t_end_wall = time.time()
        cpu1, gen_cpu1 = proc_cpu_s(watch.pid), time.process_time()
        wait1 = (proc_run_delay_s(watch.pid), proc_run_delay_s(os.getpid()))
        if snapshots_ok:
            watch.request()
        c = gen.c.minus(c0)
        window = t_end - t_start
        res.window_s = window
        res.offered_s = c.offered / window
        res.report_bytes = c.offered_bytes / c.offered if c.offered else 0.0
        res.cores = (cpu1 - cpu0) / window
        res.gen_cores = (gen_cpu1 - gen_cpu0) / window
        res.notes.append(f"run-queue wait (threads ready but not running) per second of window: "
                         f"daemon {(wait1[0] - wait0[0]) / window * 1e3:.0f} ms, generator "
                         f"{(wait1[1] - wait0[1]) / window * 1e3:.0f} ms")

        snap0: Snapshot | None = None
        if snapshots_ok:
            deadline = time.monotonic() + 10.0
            while (snap1 := watch.snapshot(_END_SNAPSHOT)) is None:
                if time.monotonic() > deadline:
                    raise BenchError("the daemon did not answer the end-of-window snapshot")
                watch.check_alive()
                gen.receive(0.01)  # reports stop; answers to plans still go out
            snap0 = watch.snapshot(_START_SNAPSHOT)
        gen.validate_samples()

        lat_gen = [p.last_decision - p.first_prepare for p in gen.plans.values()
                   if p.commits == args.ranks_per_comm and t_start <= p.first_prepare < t_end]
        res.gen_p50_ms = _ms(_percentile(lat_gen, 0.50))
        res.gen_p99_ms = _ms(_percentile(lat_gen, 0.99))
        if snap0 is not None and snap1 is not None:
            dwin = snap1.t - snap0.t
            s0, s1 = snap0.stats, snap1.stats
            res.handled_s = (_reports(s1) - _reports(s0)) / dwin
            res.superseded_s = (s1.get("superseded", 0) - s0.get("superseded", 0)) / dwin
            res.committed = s1["plans_committed"] - s0["plans_committed"]
            res.aborted = s1["plans_aborted"] - s0["plans_aborted"]
            res.rejected = _rejected(s1) - _rejected(s0)
            res.frozen = snap1.frozen
            lat = snap1.lat_new
            if snap1.lat_reset:
                res.notes.append("the daemon trimmed its latency list: p50/p99 over its tail")
            res.p50_ms = _ms(_percentile(lat, 0.50))
            res.p99_ms = _ms(_percentile(lat, 0.99))

        res.slots_missed, res.reports_missed = c.slots_skipped, c.reports_skipped
        res.not_queued = c.hwm_full
        res.max_lag_ms = gen.max_lag_s * 1000.0
        res.notes += [f"{c.late_decisions} decisions reached a rank already past activate_at "
                      "(a real rank would have stalled waiting)"] if c.late_decisions else []
        res.notes += [f"{c.acks_refused} PREPAREs refused by ranks"] if c.acks_refused else []
        if c.errors:
            res.notes.append(f"{c.errors} ERROR messages from the daemon, e.g. "
                             f"{gen.error_samples[:2]}")
        if gen.abort_reasons:
            top = sorted(gen.abort_reasons.items(), key=lambda kv: -kv[1])[:2]
            res.notes.append(f"abort reasons the ranks saw (whole run, per rank): {top}")
        res.notes.append(f"{gen.validated} reports checked by the reference decoder "
                         "(valid, canonical, distinct keys, histograms sum to counts)")
        gen_counts = (c.commits_seen // args.ranks_per_comm, c.aborts_seen // args.ranks_per_comm)
        res.notes.append(f"ranks saw ~{gen_counts[0]} commits / ~{gen_counts[1]} aborts "
                         f"(decisions / ranks per comm) in the window")
        watch.check_alive()
    finally:
        if gen is not None:
            gen.close()
        try:
            rc = dp.stop()
        except Exception:  # noqa: BLE001 - a daemon that will not stop is killed, and said
            dp.kill()
            rc = -9
    run_json = tmp / "run" / "run.json"
    stats = json.loads(run_json.read_text()).get("stats") if run_json.exists() else None
    if stats is None:
        res.valid = False
        res.notes.append(f"the daemon left no stats in run.json (exit status {rc})")
    else:
        res.rejected_run = _rejected(stats)
        if snap1 is None:  # no window counters: whole-run numbers, marked as such
            span = time.monotonic() - gen.t0 if gen is not None else 1.0
            res.handled_s = _reports(stats) / span
            res.superseded_s = stats.get("superseded", 0) / span
            res.committed, res.aborted = stats["plans_committed"], stats["plans_aborted"]
            res.rejected = res.rejected_run
            p99 = stats.get("commit_latency_p99_s")
            res.p99_ms = _ms(p99)
        if stats.get("comms_frozen"):
            res.frozen = max(res.frozen, int(stats["comms_frozen"]))
    if rc != 0:
        res.notes.append(f"daemon exit status {rc}")
    if res.rejected or res.rejected_run:
        res.valid = False
        res.notes.append(f"INVALID RUN: the daemon rejected {res.rejected_run} messages "
                         f"({stats.get('rejected') if stats else '?'})")
    if res.frozen:
        res.notes.append(f"{res.frozen} communicators frozen (ranks disagreed on seq_hash)")
    if gen is not None and gen.t0:
        split = latency_split(tmp / "run", gen.plans, t_start_wall, t_end_wall)
        if split:
            res.notes.append(split)
    res.notes.append(f"artifacts: {tmp}")
    return res


def latency_split(run_dir: Path, plans: dict[tuple[int, int], PlanSeen], t0_wall: float,
                  t1_wall: float) -> str | None:
    """Where the slowest plans' time went, from the daemon's artifacts (PREPARE sent, decision
    taken) and the generator's receipts: p99 over the window's committed plans of (a) the last
    rank's PREPARE arriving, (b) the daemon deciding after the last ACK left that rank (ACK
    delivery plus the daemon's own delay), (c) the last rank's decision arriving."""
    sent: dict[tuple[int, int], float] = {}
    decided: dict[tuple[int, int], float] = {}
    for comm_dir in (run_dir / "comms").glob("*"):
        try:
            comm = json.loads((comm_dir / "comm.json").read_text())["comm"]
            for line in (comm_dir / "plans.jsonl").read_text().splitlines():
                rec = json.loads(line)
                sent[(comm, rec["plan"])] = rec["time"]
            for line in (comm_dir / "decisions.jsonl").read_text().splitlines():
                rec = json.loads(line)
                decided.setdefault((comm, rec["plan"]), rec["time"])
        except (OSError, ValueError, KeyError):
            continue
    parts: list[tuple[float, float, float]] = []
    for key, seen in plans.items():
        if key not in sent or key not in decided or not seen.prepare_rx_wall \
                or not seen.decision_rx_wall or not t0_wall <= sent[key] < t1_wall:
            continue
        last_ack = max(seen.prepare_rx_wall)
        parts.append((last_ack - sent[key], decided[key] - last_ack,
                      max(seen.decision_rx_wall) - decided[key]))
    if not parts:
        return None
    p = [_percentile([x[i] for x in parts], 0.99) or 0.0 for i in range(3)]
    return (f"commit latency split, p99 over {len(parts)} plans (ms): PREPARE to the last rank "
            f"{p[0] * 1e3:.1f}, last ACK sent to decision {p[1] * 1e3:.1f}, decision to the "
            f"last rank {p[2] * 1e3:.1f}")


def _ms(s: float | None) -> float | None:
    return None if s is None else s * 1000.0


def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "n/a" if v is None else format(v, spec)


def print_result(r: Result) -> None:
    w = 36
    print(f"  {'':{w}}{'measured':>14}{'target':>14}")
    print(f"  {'ranks x keys':{w}}{f'{r.ranks} x {r.keys}':>14}"
          f"{f'{TARGET_RANKS} x {TARGET_KEYS}':>14}")
    print(f"  {'window (s)':{w}}{r.window_s:>14.1f}")
    print(f"  {'report encoding, bytes':{w}}{f'{r.encoding} {r.report_bytes:.0f}':>14}")
    print(f"  {'MEASUREMENTS offered / s':{w}}{r.offered_s:>14.0f}{TARGET_MSGS_S:>14.0f}")
    print(f"  {'MEASUREMENTS handled / s':{w}}{r.handled_s:>14.0f}{TARGET_MSGS_S:>14.0f}")
    print(f"  {'MEASUREMENTS superseded / s':{w}}{r.superseded_s:>14.0f}{'(not handled)':>14}")
    print(f"  {'stats handled / s':{w}}{r.handled_s * r.keys:>14.0f}"
          f"{TARGET_MSGS_S * TARGET_KEYS:>14.0f}")
    print(f"  {'plans committed / s':{w}}{r.committed / r.window_s if r.window_s else 0:>14.1f}")
    print(f"  {'plans committed / aborted':{w}}{f'{r.committed} / {r.aborted}':>14}"
          f"{'- / 0':>14}")
    print(f"  {'plan commit latency p50 (ms)':{w}}{_fmt(r.p50_ms):>14}")
    print(f"  {'plan commit latency p99 (ms)':{w}}{_fmt(r.p99_ms):>14}{TARGET_P99_S * 1e3:>14.1f}")
    print(f"  {'  as the ranks saw it p50 / p99':{w}}"
          f"{f'{_fmt(r.gen_p50_ms)} / {_fmt(r.gen_p99_ms)}':>14}")
    print(f"  {'daemon CPU use (cores)':{w}}{_fmt(r.cores, '.2f'):>14}{TARGET_CORES:>14.2f}")
    print(f"  {'generator CPU use (cores)':{w}}{r.gen_cores:>14.2f}")
    print(f"  {'generator: ticks missed (reports)':{w}}"
          f"{f'{r.slots_missed} ({r.reports_missed})':>14}{0:>14}")
    print(f"  {'generator: max tick lag (ms)':{w}}{r.max_lag_ms:>14.1f}")
    print(f"  {'reports not queued (HWM full)':{w}}{r.not_queued:>14}{0:>14}")
    print(f"  {'rejected (window / whole run)':{w}}{f'{r.rejected} / {r.rejected_run}':>14}"
          f"{0:>14}")
    print(f"  counters: {r.window_source}")
    for n in r.notes:
        print(f"  - {n}")
    if not r.valid:
        print("  BENCH FAILED: this run is not valid")
    print("  target met" if r.target_met else f"  target NOT met ({', '.join(r.misses())})")


def _cpu_us_per_report(r: Result) -> float | None:
    return None if r.cores is None or not r.handled_s else r.cores / r.handled_s * 1e6


def print_comparison(results: list[Result]) -> None:
    """Maps against packed, run after run at the same rank count, as ratios packed / map."""
    print("\n== packed vs map reports, same rank count, back to back (ratio = packed / map)")
    print(f"{'ranks':>6}{'bytes map':>11}{'packed':>8}{'ratio':>7}"
          f"{'CPU us/report map':>19}{'packed':>8}{'ratio':>7}"
          f"{'p99 ms map':>12}{'packed':>8}{'handled/s map':>15}{'packed':>8}")
    for plain, packed in zip(results[0::2], results[1::2]):
        cu0, cu1 = _cpu_us_per_report(plain), _cpu_us_per_report(packed)
        ratio = (f"{cu1 / cu0:.2f}" if cu0 and cu1 else "n/a")
        print(f"{plain.ranks:>6}{plain.report_bytes:>11.0f}{packed.report_bytes:>8.0f}"
              f"{packed.report_bytes / plain.report_bytes if plain.report_bytes else 0:>7.2f}"
              f"{_fmt(cu0):>19}{_fmt(cu1):>8}{ratio:>7}"
              f"{_fmt(plain.p99_ms):>12}{_fmt(packed.p99_ms):>8}"
              f"{plain.handled_s:>15.0f}{packed.handled_s:>8.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=TARGET_RANKS)
    ap.add_argument("--keys", type=int, default=TARGET_KEYS, help="distinct stats per report")
    ap.add_argument("--ranks-per-comm", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0, help="measured window")
    ap.add_argument("--warmup", type=float, default=3.0, help="after registration, not measured")
    ap.add_argument("--call-rate", type=float, default=1000.0,
                    help="collective calls per second of every rank (the modelled loop)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sweep", action="store_true",
                    help=f"run {', '.join(map(str, SWEEP_RANKS))} ranks in turn")
    ap.add_argument("--plan-interval", type=float, default=1.0,
                    help="seconds between a communicator's plans (at 1,024 ranks, 128 "
                    "communicators: about 100 plans a second with the default 1; far more than "
                    "a tuner makes); 0 re-plans as fast as rounds complete")
    ap.add_argument("--no-fsync", action="store_true",
                    help="daemon journal without fsync (default: the daemon's own default)")
    ap.add_argument("--no-pin", action="store_true", help="leave CPU affinity alone")
    ap.add_argument("--encoding", choices=("packed", "map", "compare"), default="packed",
                    help="report form: MEASUREMENTS_PACKED (protocol 1.1, what plugins send "
                    "when the daemon grants packed_stats; default), MEASUREMENTS maps (what "
                    "1.0 peers send), or compare: each rank count with maps, then packed, and "
                    "their ratios")
    args = ap.parse_args()
    if args.seconds <= 0 or args.warmup < 0 or args.call_rate <= 0 or args.plan_interval < 0:
        ap.error("--seconds and --call-rate must be > 0, --warmup and --plan-interval >= 0")
    results: list[Result] = []
    encodings = ("map", "packed") if args.encoding == "compare" else (args.encoding,)
    try:
        for ranks in (SWEEP_RANKS if args.sweep else (args.ranks,)):
            for encoding in encodings:
                args.encoding = encoding
                print(f"== {ranks} ranks x {args.keys} keys, {encoding} reports, "
                      f"{args.ranks_per_comm} ranks per communicator, {args.call_rate:.0f} "
                      f"calls/s per rank, a plan every {args.plan_interval:g} s per "
                      f"communicator, warm-up {args.warmup:.0f} s, window {args.seconds:.0f} s")
                r = run_once(args, ranks)
                print_result(r)
                results.append(r)
    except BenchError as e:
        print(f"BENCH FAILED: {e}", file=sys.stderr)
        return 1
    if len(encodings) == 2:
        print_comparison(results)
    if args.sweep:
        print("\n== sweep summary (target: 1024 ranks, handled 10240/s, p99 < 100 ms, "
              f"<= {TARGET_CORES} cores, 0 rejected, 0 aborted)")
        print(f"{'ranks':>6}{'form':>7}{'offered/s':>11}{'handled/s':>11}{'supersed/s':>11}"
              f"{'stats/s':>11}{'commit':>8}{'abort':>7}{'p50 ms':>8}{'p99 ms':>8}"
              f"{'cores':>7}{'rej':>5}  verdict")
        for r in results:
            verdict = "met" if r.target_met else ("INVALID" if not r.valid else "not met")
            if r.ranks < TARGET_RANKS and r.valid:
                verdict += " (at this size)"
            print(f"{r.ranks:>6}{r.encoding:>7}{r.offered_s:>11.0f}{r.handled_s:>11.0f}{r.superseded_s:>11.0f}"
                  f"{r.handled_s * r.keys:>11.0f}{r.committed:>8}{r.aborted:>7}"
                  f"{_fmt(r.p50_ms):>8}{_fmt(r.p99_ms):>8}{_fmt(r.cores, '.2f'):>7}"
                  f"{r.rejected_run:>5}  {verdict}")
    return 0 if all(r.valid for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
