"""The daemon's message loop: one ROUTER socket, one loop thread, one brain worker thread.

The loop thread owns the socket, the registry, the plan rounds, the journal and the artifact
writer; nothing else touches them. Brains run on a separate worker thread fed through a queue,
so a slow brain delays only its own proposals, never the protocol (docs/daemon.md, "Threads").
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgpack  # type: ignore[import-untyped]  # ships no type information
import zmq

from cclpilot.daemon.artifacts import RunArtifacts
from cclpilot.daemon.brain import Brain, BrainFactory, CommInfo, Key, NullBrain, Observation
from cclpilot.daemon.brain import PlanProposal
from cclpilot.daemon.fastmeas import (
    FastMeasurements,
    columns_of,
    columns_of_stats,
    parse_measurements,
    validate_measurements,
)
from cclpilot.daemon.ingest import BRAIN, SUMMARY, NativeIngest, ReportHead, load_native_ingest
from cclpilot.daemon.journal import Journal
from cclpilot.daemon.plans import (
    PlanRound,
    Verdict,
    check_sequence,
    choose_activate_at,
    evaluate,
    timeout_verdict,
)
from cclpilot.daemon.registry import RATE_WINDOW_S, CommState, Peer, RankReg, SlotKey
from cclpilot.daemon.security import (
    CurveKeys,
    check_private_dir,
    generate_curve_keys,
    ipc_endpoint,
    parse_tcp,
    private_ipc_dir,
    write_secret_key,
)
from cclpilot.errors import ConfigError
from cclpilot.proto.codec import decode, encode, unpack
from cclpilot.proto.errors import ProtocolError
from cclpilot.proto.messages import (
    FEATURES,
    Abort,
    Ack,
    Commit,
    Error,
    Heartbeat,
    Hello,
    KeyReport,
    Measurements,
    MeasurementsPacked,
    Message,
    Prepare,
    Welcome,
)
from cclpilot.proto.version import PROTOCOL_MAJOR, PROTOCOL_MINOR

log = logging.getLogger("cclpilot.daemon")


# Canonical encodings start with the map header and the "t" field (PROTOCOL.md part 2), so an
# ACK or HELLO can be recognised from its first bytes without decoding. A non-canonical one is
# simply not fast-tracked; it is decoded in its turn like everything else.
_ACK_HEAD = b"\xa1t\xa3ACK"
_HELLO_HEAD = b"\xa1t\xa5HELLO"


# The canonical openings of MEASUREMENTS and MEASUREMENTS_PACKED, up to the comm value.
_MEAS_HEADS = (b"\xa1t\xacMEASUREMENTS\xa4comm", b"\xa1t\xb3MEASUREMENTS_PACKED\xa4comm")
_MEAS_TAG = b"MEASUREMENTS"  # inside either type tag, wherever a non-canonical encoder put it
_PACKED_TAG = b"\xb3MEASUREMENTS_PACKED"
_UINT_LEN = {0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9}


def _measurement_owner(frames: list[bytes]) -> tuple[bytes, bytes] | None:
    """(connection, encoded comm) of a canonically encoded MEASUREMENTS, else None."""
    if len(frames) != 2:
        return None
    data = frames[1]
    for head in _MEAS_HEADS:
        start = 1 + len(head)
        if data[1:start] == head:
            break
    else:
        return None
    if len(data) <= start:
        return None
    kind = data[start]
    size = 1 if kind < 0x80 else _UINT_LEN.get(kind, 0)
    if size == 0 or len(data) < start + size:
        return None
    return frames[0], data[start:start + size]


_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)

# Longest stretch of queued reports handled before the socket is read again.
_SLICE_S = 0.005
# A stats dump (SIGUSR1, stats.json) carries the newest commit latencies, at most this many.
_DUMP_LATENCIES = 100_000
STATS_SCHEMA = "cclpilot.daemon-stats/1"

# Heartbeats, absence and stale connections are checked this often.
_PEER_CHECK_S = 0.05
# (key, arm) rows all communicators' tells may carry per second. A told row costs about 1 us to
# take and more in the brain thread, which shares the loop's core and GIL; at 50,000 a second
# tells and summaries took a fifth of the core at 1,024 ranks, and plan answers queued behind
# them. A small job stays at the ask interval (10 ms): feedback that fast is what lets a
# simulated job, whose steps take milliseconds, converge in a few hundred steps.
_TELL_ROWS_PER_S = 10_000
# Rows a second all communicators' measurement summaries may write to the artifacts; past it the
# summary interval grows beyond --summary-ms (no sample is lost, lines just cover more time).
_SUMMARY_ROWS_PER_S = 10_000
# Communicator timers (tells, summaries) are looked at this often: nothing in them needs a finer
# grain than the ask interval, and scanning every communicator on every loop pass (hundreds a
# second under load) cost more than the work it found.
_COMM_CHECK_S = 0.01


_HB_HEAD = b"\x83\xa1t\xa9HEARTBEAT\xa3seq"
_HB_TIME = b"\xa7time_ns"


def _uint_end(data: bytes, at: int) -> int:
    """End offset of the msgpack unsigned integer starting at `at` (any valid width), or -1."""
    if at >= len(data):
        return -1
    kind = data[at]
    if kind < 0x80:
        return at + 1
    size = _UINT_LEN.get(kind, 0)
    return at + size if size and at + size <= len(data) else -1


def heartbeat_frame(seq: int, time_ns: int) -> bytes:
    """The canonical encoding of HEARTBEAT(seq, time_ns), without building a model: the
    daemon sends one per connected process per heartbeat period. Both are u64 by construction
    (a counter and a monotonic clock)."""
    out: bytes = msgpack.packb({"t": "HEARTBEAT", "seq": seq, "time_ns": time_ns})
    return out


def is_plain_heartbeat(data: bytes) -> bool:
    """True only for a valid HEARTBEAT in the field order every encoder uses: a map of exactly
    t, seq and time_ns holding unsigned integers and nothing after them. Each plugin process
    sends one a second; anything else (other orders, signed or invalid values) takes the exact
    path, which names the error."""
    if not data.startswith(_HB_HEAD):
        return False
    end = _uint_end(data, len(_HB_HEAD))
    if end < 0 or data[end:end + len(_HB_TIME)] != _HB_TIME:
        return False
    return _uint_end(data, end + len(_HB_TIME)) == len(data)


def _call_rate(st: CommState) -> float:
    """The measured call rate, or until reports measured one (two of them at least
    RATE_WINDOW_S apart) the calls made since the communicator was complete over the time
    they took: low when the job started late, never far too high."""
    if st.rate > 0.0:
        return st.rate
    elapsed = st.max_calls_time - st.complete_at
    return st.max_calls / elapsed if st.max_calls > 0 and elapsed >= RATE_WINDOW_S else 0.0


def _decision_frame(comm: int, plan: int, committed: bool, activate_at: int, reason: str
                    ) -> bytes:
    if committed:
        return encode(Commit(comm=comm, plan=plan, activate_at=activate_at))
    return encode(Abort(comm=comm, plan=plan, reason=reason[:1000] or "aborted"))


def _urgent(frames: list[bytes]) -> bool:
    if len(frames) != 2:
        return False
    head = frames[1][1:9]
    return head.startswith(_ACK_HEAD) or head == _HELLO_HEAD


@dataclass
class DaemonConfig:
    """Everything a daemon run depends on; recorded in run.json (except the brain factory)."""

    run_dir: Path | None = None          # default: ./cclpilot-runs/live-<time>-<pid>
    tcp: str | None = None               # "HOST:PORT": TCP with CURVE (or insecure, see below)
    insecure: bool = False               # allow plain TCP (never the default)
    ipc_dir: Path | None = None          # default: a fresh 0700 dir under $XDG_RUNTIME_DIR
    heartbeat_ms: int = 1000
    report_ms: int = 100
    ack_timeout_ms: int = 2000
    lead_margin_ms: int = 200
    min_lead_calls: int = 32
    ask_interval_ms: int = 10            # new samples reach the brain at most this often
    summary_ms: int = 1000               # measurement summaries written to the artifacts
    brain_budget_ms: int = 50            # a brain call slower than this is logged
    fsync: bool = True
    seed: int = 0
    # False forces the pure-Python MEASUREMENTS path (the reference; tests compare the two).
    native_ingest: bool = True
    # Grant packed_stats (MEASUREMENTS_PACKED) to plugins that offer it. Only with the native
    # reader: the Python path validates packed reports through pydantic, ten times slower than
    # its hand-written check of the map form, so without the native library maps are cheaper.
    packed_stats: bool = True
    brain_factory: BrainFactory | None = None

    def settings(self) -> dict[str, object]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self).items()
                if k != "brain_factory"} | {
            "brain": getattr(self.brain_factory, "__name__", type(self.brain_factory).__name__)
            if self.brain_factory is not None else "null"}


class _RateLimitedLog:
    """At most `per_window` lines per kind per window; the rest are counted and summarised."""

    def __init__(self, per_window: int = 5, window_s: float = 10.0) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self.state: dict[str, tuple[float, int, int]] = {}

    def warn(self, kind: str, text: str, *args: object) -> None:
        now = time.monotonic()
        start, shown, hidden = self.state.get(kind, (now, 0, 0))
        if now - start > self.window_s:
            if hidden:
                log.warning("%d more %s messages suppressed", hidden, kind)
            start, shown, hidden = now, 0, 0
        if shown < self.per_window:
            log.warning(text, *args)
            shown += 1
        else:
            hidden += 1
        self.state[kind] = (start, shown, hidden)


@dataclass
class _BrainJob:
    comm: int
    info: CommInfo
    keys: list[tuple[Key, tuple[tuple[float, ...], ...], int]]
    outcomes: list[tuple[int, bool, str]]
    observations: list[Observation]
    may_ask: bool


@dataclass
class DaemonStats:
    received: int = 0
    sent: int = 0
    send_dropped: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    errors_from_peers: int = 0
    plans_committed: int = 0
    plans_aborted: int = 0
    comms_frozen: int = 0
    brain_failures: int = 0
    brain_slow: int = 0
    internal_errors: int = 0
    superseded: int = 0  # MEASUREMENTS skipped because a newer one of the same sender was queued
    ingest: str = "python"  # which MEASUREMENTS path ran: "native" or "python"
    measurements_exact: int = 0  # native path: reports not canonically encoded (full decoder)
    reports_unabsorbed: int = 0  # reports ignored: a communicator's sender table was full
    stats_dropped: int = 0  # stat entries ignored: a sender's or communicator's table was full
    commit_latency_s: list[float] = field(default_factory=list)
    commits_total: int = 0   # commit_latency_s is trimmed; this counts every commit
    # Seconds the loop spent receiving (and answering plan messages), handling queued reports,
    # and in timers (heartbeats, rounds, brain hand-offs, summaries).
    loop_s: dict[str, float] = field(default_factory=lambda: {
        "receive": 0.0, "reports": 0.0, "timers": 0.0})

    def as_dict(self) -> dict[str, object]:
        lat = sorted(self.commit_latency_s)
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None
        return {"received": self.received, "sent": self.sent, "send_dropped": self.send_dropped,
                "rejected": dict(self.rejected), "by_type": dict(self.by_type),
                "errors_from_peers": self.errors_from_peers,
                "plans_committed": self.plans_committed, "plans_aborted": self.plans_aborted,
                "comms_frozen": self.comms_frozen, "brain_failures": self.brain_failures,
                "brain_slow": self.brain_slow, "internal_errors": self.internal_errors,
                "superseded": self.superseded, "ingest": self.ingest,
                "measurements_exact": self.measurements_exact,
                "reports_unabsorbed": self.reports_unabsorbed,
                "stats_dropped": self.stats_dropped, "commit_latency_p99_s": p99,
                "loop_s": {k: round(v, 3) for k, v in self.loop_s.items()}}


def default_run_dir() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path.cwd() / "cclpilot-runs" / f"live-{stamp}-{os.getpid()}"


class Daemon:
    """`Daemon(config).start()` binds and serves on a thread; `.stop()` ends it cleanly."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.run_dir = (config.run_dir or default_run_dir()).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.stats = DaemonStats()
        self.curve: CurveKeys | None = None
        self.endpoint = ""
        self._ctx = zmq.Context()
        self._sock: zmq.Socket[bytes] = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, 100_000)
        self._sock.setsockopt(zmq.RCVHWM, 100_000)
        self._bind()
        self.journal = Journal(self.run_dir / "decisions.jsonl", fsync=config.fsync)
        self._outbox: list[tuple[bytes, bytes]] = []
        orphans = self.journal.abort_orphans()
        if orphans:
            log.warning("journal: aborted %d plan(s) prepared before a restart and never decided",
                        orphans)
        self.artifacts = RunArtifacts(self.run_dir, config.settings() | {
            "endpoint": self.endpoint}, config.seed)
        self.comms: dict[int, CommState] = {}
        self.peers: dict[bytes, Peer] = {}
        self._session = 0
        self._warn = _RateLimitedLog()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs: queue.Queue[_BrainJob | None] = queue.Queue()
        self._results: queue.Queue[tuple[int, PlanProposal | None]] = queue.Queue()
        self._brains: dict[int, Brain] = {}      # owned by the worker thread while it runs
        self._worker: threading.Thread | None = None
        self._ingest: NativeIngest | None = load_native_ingest() if config.native_ingest else None
        self._features = frozenset(f for f in FEATURES if f != "packed_stats"
                                   or (config.packed_stats and self._ingest is not None))
        # Received messages waiting to be handled: (sequence, report owner or None, frames).
        self._backlog: deque[tuple[int, tuple[bytes, bytes] | None, list[bytes]]] = deque()
        self._newest: dict[tuple[bytes, bytes], int] = {}  # owner -> its newest queued report
        self._seq = 0
        self._next_peer_check = 0.0
        self._rr_next = 0   # where the next pass of communicator timers starts
        self._tell_every = config.ask_interval_ms / 1000.0
        self._summary_every = config.summary_ms / 1000.0
        self._rate_grace_s = 3 * config.report_ms / 1000.0 + RATE_WINDOW_S
        self._next_comm_check = 0.0
        self._dump_requested = False
        self._dumps = 0
        self._in_round: dict[int, CommState] = {}   # communicators with a plan round in flight
        # Whether handling messages took more than half of the last second (see _comm_timers).
        self.stats.ingest = "native" if self._ingest is not None else "python"
        self._write_env()

    # ---- setup ------------------------------------------------------------------------------

    def _bind(self) -> None:
        cfg = self.config
        if cfg.tcp is not None:
            host, port = parse_tcp(cfg.tcp)
            if cfg.insecure:
                log.warning("!!! plain TCP without CURVE (--insecure): anyone who can reach "
                            "%s:%d can send plans to this job's ranks. Use only on a trusted, "
                            "isolated network. !!!", host, port)
            else:
                self.curve = generate_curve_keys()
                write_secret_key(self.curve, self.run_dir)
                self._sock.curve_server = True
                self._sock.curve_secretkey = self.curve.secret.encode("ascii")
                self._sock.curve_publickey = self.curve.public.encode("ascii")
            try:
                if port == 0:
                    self._sock.bind(f"tcp://{host}:*")
                else:
                    self._sock.bind(f"tcp://{host}:{port}")
            except zmq.ZMQError as e:
                raise ConfigError(f"cannot listen on tcp://{host}:{port}: {e}; pick a free "
                                  "port or another address") from None
            self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
            if host in ("0.0.0.0", "*", "::"):
                # Peers on other nodes need a reachable name, not the wildcard.
                import socket as _socket
                self.endpoint = self.endpoint.replace(host, _socket.getfqdn(), 1)
        else:
            d = cfg.ipc_dir or private_ipc_dir()
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            check_private_dir(d)
            self.endpoint = ipc_endpoint(d)
            try:
                self._sock.bind(self.endpoint)
            except zmq.ZMQError as e:
                raise ConfigError(f"cannot bind {self.endpoint}: {e}") from None

    def env_lines(self) -> list[str]:
        lines = ["export CCLPILOT_MODE=live", f"export CCLPILOT_DAEMON={self.endpoint}"]
        if self.curve is not None:
            lines.append(f"export CCLPILOT_DAEMON_PUBLIC_KEY='{self.curve.public}'")
        elif self.config.tcp is not None:
            lines.append("export CCLPILOT_DAEMON_INSECURE=1")
        return lines

    def _write_env(self) -> None:
        (self.run_dir / "env.sh").write_text("\n".join(self.env_lines()) + "\n", encoding="utf-8")

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> Daemon:
        self._worker = threading.Thread(target=self._brain_worker, name="cclpilot-brain",
                                        daemon=True)
        self._worker.start()
        self._thread = threading.Thread(target=self._run, name="cclpilot-daemon", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Runs the loop on the calling thread (the CLI); returns after stop()."""
        self._worker = threading.Thread(target=self._brain_worker, name="cclpilot-brain",
                                        daemon=True)
        self._worker.start()
        self._run()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _shutdown(self) -> None:
        self._jobs.put(None)
        if self._worker is not None:
            self._worker.join(5.0)
        for comm, brain in self._brains.items():
            st = self.comms.get(comm)
            try:
                snap = brain.snapshot()
            except Exception as e:  # a brain bug must not lose the rest of the artifacts
                snap = {"error": f"snapshot failed: {e!r}"}
            if st is not None:
                self.artifacts.brain_snapshot(st.job, comm, snap)
        try:
            self._drain_backlog(None)  # reports received before the stop still count
            self._flush_outbox()
        except Exception:
            log.exception("handling the last queued reports failed")
        for st in self.comms.values():
            try:
                self._write_summary(st, time.monotonic())  # the last, partial window too
            except Exception:  # one communicator's failure must not lose the others' artifacts
                log.exception("comm %016x: writing the last measurement summary failed", st.comm)
        self.stats.stats_dropped = sum(
            st.stats_dropped + (st.native.info()["stats_dropped"] if st.native is not None else 0)
            for st in self.comms.values())
        self.artifacts.close(self.stats.as_dict())
        self.journal.close()
        self._sock.close(0)
        self._ctx.term()

    # ---- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                # Receiving is cheap and handling reports is not: read everything that arrived
                # (answering HELLOs and ACKs on the spot), then handle queued reports for at most
                # a slice of time; the socket is read again between every two phases of the
                # pass, so a plan answer waits for at most one phase, not a whole pass.
                loop = self.stats.loop_s
                if poller.poll(0 if self._backlog else 10):
                    self._receive()
                if self._backlog:
                    t0 = time.monotonic()
                    self._drain_backlog(t0 + _SLICE_S)
                    loop["reports"] += time.monotonic() - t0
                    self._receive_if_ready()
                now = time.monotonic()
                self._drain_results(now)
                self._receive_if_ready()
                t0 = time.monotonic()
                self._timers(t0)
                self._flush_outbox()  # rounds that timed out
                loop["timers"] += time.monotonic() - now
                if self._dump_requested:
                    self._dump_requested = False
                    self._write_stats_dump()
        except Exception:
            log.exception("daemon loop failed")
            raise
        finally:
            self._shutdown()

    def _receive_if_ready(self) -> None:
        events = self._sock.getsockopt(_EVENTS)
        if isinstance(events, int) and events & _POLLIN:
            self._receive()

    def _receive(self) -> None:
        """Reads what arrived, for at most a slice: HELLOs and ACKs are answered now (and the
        decisions they complete sent, after one journal sync), everything else is queued."""
        t0 = time.monotonic()
        deadline = t0 + _SLICE_S
        n = 0
        recv, more = self._sock.recv, self._sock.getsockopt
        while True:  # bounded in time, so timers and reports still run under flood
            # recv_multipart by hand, with plain-int flags: pyzmq's converts its enums on every
            # call, a third of its cost at ten thousand a second.
            try:
                frames = [recv(_NOBLOCK)]
            except zmq.Again:
                break
            while more(_RCVMORE):
                frames.append(recv(_NOBLOCK))
            self._enqueue(frames)
            n += 1
            if n % 64 == 0 and time.monotonic() >= deadline:
                break
        self._flush_outbox()  # decisions taken on ACKs just received
        self.stats.loop_s["receive"] += time.monotonic() - t0

    def request_stats_dump(self) -> None:
        """Asks the loop to write RUN_DIR/stats.json at its next turn (safe from a signal
        handler: it only sets a flag; the counters are read on the loop thread)."""
        self._dump_requested = True

    def _write_stats_dump(self) -> None:
        self._dumps += 1
        lat = self.stats.commit_latency_s
        doc = {"schema": STATS_SCHEMA, "dump": self._dumps, "time": time.time(),
               "monotonic": time.monotonic(), "cpu_s": time.process_time(),
               "stats": self.stats.as_dict(), "commits_total": self.stats.commits_total,
               "commit_latencies_s": lat[-_DUMP_LATENCIES:]}
        tmp = self.run_dir / "stats.json.tmp"
        try:
            tmp.write_text(json.dumps(doc), encoding="utf-8")
            tmp.replace(self.run_dir / "stats.json")  # readers never see half a file
        except OSError as e:
            self._warn.warn("stats-dump", "cannot write %s: %s", tmp, e)

    def _timers(self, now: float) -> None:
        # The loop comes here every few milliseconds under load; walking a thousand peers that
        # often would cost more than the heartbeats need (their periods are seconds).
        if now >= self._next_peer_check:
            self._next_peer_check = now + _PEER_CHECK_S
            self._peer_timers(now)
            rows = sum(st.rows_known() for st in self.comms.values())
            # A tell costs per (key, arm) told. With many communicators and keys the interval
            # grows so that tells stay within a budget of rows per second (new samples only
            # wait longer; none is lost); a job of a few communicators never notices.
            self._tell_every = max(self.config.ask_interval_ms / 1000.0,
                                   rows / _TELL_ROWS_PER_S)
            self._summary_every = max(self.config.summary_ms / 1000.0,
                                      rows / _SUMMARY_ROWS_PER_S)
        for st in list(self._in_round.values()):
            try:
                self._round_timers(st, now)
            except Exception:  # one communicator's failure must not stop the others' plans
                self.stats.internal_errors += 1
                log.exception("comm %016x: plan round timer failed", st.comm)
        if now < self._next_comm_check:
            return
        self._next_comm_check = now + _COMM_CHECK_S
        # Brain hand-offs and summaries fall due together for communicators that registered
        # together; done all at once they stalled the loop for a hundred milliseconds and more
        # (ACKs waiting meanwhile). So they get a slice per pass, round-robin; what does not fit
        # is done on the next pass, a few milliseconds later.
        ask_every = self._tell_every
        comms = list(self.comms.values())
        n = len(comms)
        deadline = time.monotonic() + _SLICE_S
        start = self._rr_next % n if n else 0
        for i in range(n):
            st = comms[(start + i) % n]
            try:
                self._comm_timers(st, now, ask_every)
            except Exception:  # one communicator's failure must not stop the others' plans
                self.stats.internal_errors += 1
                log.exception("comm %016x: timer work failed", st.comm)
            if time.monotonic() >= deadline:
                self._rr_next = start + i + 1
                break

    def _peer_timers(self, now: float) -> None:
        hb = self.config.heartbeat_ms / 1000.0
        # Connections that registered nothing (left behind by a reconnect, or that only ever
        # sent junk) are forgotten once quiet, so reconnects and scans never grow memory.
        stale = [ident for ident, peer in self.peers.items()
                 if not peer.regs and now - peer.last_seen > max(30.0, 10 * hb)]
        for ident in stale:
            del self.peers[ident]
        for peer in self.peers.values():
            if not peer.regs:
                continue
            if now - peer.last_hb_sent >= hb:
                peer.hb_seq += 1
                peer.last_hb_sent = now
                self._send_bytes(peer.identity, heartbeat_frame(peer.hb_seq,
                                                                time.monotonic_ns()))
            if not peer.absent and now - peer.last_seen > 3 * hb:
                peer.absent = True
                for comm in peer.regs:
                    st = self.comms.get(comm)
                    if st is not None:
                        log.warning("comm %016x: a rank process has been silent for %.1f s; "
                                    "marked absent", comm, now - peer.last_seen)
                        self.artifacts.event(st.job, comm, "rank_absent",
                                             {"silent_s": now - peer.last_seen})

    def _round_timers(self, st: CommState, now: float) -> None:
        rnd = st.round
        if rnd is not None:
            if now >= rnd.deadline:
                self._decide(st, timeout_verdict(rnd, self.config.ack_timeout_ms / 1000.0))
            elif not rnd.resent and now - rnd.sent_at > (rnd.deadline - rnd.sent_at) / 3:
                # PREPARE is idempotent: a lost one costs a third of the timeout, not a plan.
                rnd.resent = True
                self._send_prepare(st, rnd, only_missing=True)

    def _comm_timers(self, st: CommState, now: float, ask_every: float) -> None:
        # New keys and plan outcomes go to the brain at once; samples wait for the ask
        # interval, accumulating meanwhile, which bounds the per-(key, arm) work per second at
        # any report rate. (Telling samples "whenever the loop had time to spare" made tells
        # expand to fill the core, and the brain thread's share of the GIL with them: ACKs
        # then waited behind tells that nobody needed sooner than the interval.)
        if st.info is not None and not st.brain_busy and (
                st.pending_keys or st.pending_outcomes or now - st.last_ask >= ask_every):
            self._submit(st, now)
        if now - st.last_summary >= self._summary_every:
            self._write_summary(st, now)

    def _write_summary(self, st: CommState, now: float) -> None:
        st.last_summary = now
        if st.info is not None and st.has_pending(SUMMARY):
            self.artifacts.measurements(st.job, st.comm, st.take_observations(SUMMARY))

    # ---- sending ----------------------------------------------------------------------------

    def _send(self, identity: bytes, msg: Message) -> None:
        self._send_bytes(identity, encode(msg))

    def _send_bytes(self, identity: bytes, data: bytes) -> None:
        # Two sends with plain-int flags rather than send_multipart: pyzmq converts its flag
        # enums on every call, which at thousands of messages a second is most of the cost.
        try:
            self._sock.send(identity, _SNDMORE_NOBLOCK)
            self._sock.send(data, _NOBLOCK)
            self.stats.sent += 1
        except zmq.Again:
            self.stats.send_dropped += 1
        except zmq.ZMQError as e:
            self.stats.send_dropped += 1
            self._warn.warn("send", "send to a peer failed: %s", e)

    def _error(self, identity: bytes, code: str, message: str, ref: str | None,
               comm: int | None) -> None:
        self._send(identity, Error(code=code, message=message[:1000],  # type: ignore[arg-type]
                                   ref=ref[:32] if ref else None, comm=comm))

    # ---- receiving --------------------------------------------------------------------------

    def _on_frames(self, frames: list[bytes], report: bool = False) -> None:
        """One received message. report: its first bytes are a canonical MEASUREMENTS head
        (_measurement_owner), so the tag need not be searched for."""
        self.stats.received += 1
        if len(frames) != 2:
            self.stats.rejected["malformed"] += 1
            self._warn.warn("malformed", "dropped a ZeroMQ message of %d frames (a message is "
                            "one frame after the routing identity)", len(frames))
            if len(frames) >= 2:
                self._error(frames[0], "malformed", f"{len(frames) - 1} payload frames; a "
                            "message is exactly one frame", None, None)
            return
        identity, data = frames
        if not report and is_plain_heartbeat(data):
            self.stats.by_type["HEARTBEAT"] += 1
            self._touch(identity)
            return
        tag: str | None = None
        ingest = self._ingest
        if ingest is not None:
            head = ingest.decode(data) if report or _MEAS_TAG in data else None
            if head is not None:
                self.stats.by_type["MEASUREMENTS_PACKED" if _PACKED_TAG in data
                                   else "MEASUREMENTS"] += 1
                self._touch(identity)
                try:
                    self._on_measurements_native(identity, head, ingest)
                except Exception:  # as for _dispatch: one bad report never ends the loop
                    self.stats.internal_errors += 1
                    log.exception("internal error handling MEASUREMENTS")
                return
        fast = parse_measurements(data) if ingest is None else None
        if fast is not None:
            self.stats.by_type["MEASUREMENTS"] += 1
            self._touch(identity)
            try:
                self._on_measurements_raw(identity, fast)
            except Exception:  # as for _dispatch: one bad report never ends the loop
                self.stats.internal_errors += 1
                log.exception("internal error handling MEASUREMENTS")
            return
        try:
            # The fast parser declined: not MEASUREMENTS, or invalid, or unusual in a way it
            # does not vouch for. The exact path below accepts or names the error.
            obj = unpack(data)
            if type(obj) is dict and obj.get("t") == "MEASUREMENTS":
                tag = "MEASUREMENTS"
                validate_measurements(obj)
                if ingest is not None:
                    self._refused_natively("MEASUREMENTS")
                    return
                self.stats.by_type["MEASUREMENTS"] += 1
                self._touch(identity)
                self._on_measurements_raw(identity, columns_of(obj))
                return
            msg = decode(data)
        except ProtocolError as e:
            self.stats.rejected[e.kind] += 1
            self._warn.warn(e.kind, "rejected a message: %s", e)
            comm = None
            if tag is None:
                try:
                    o = unpack(data)
                    if type(o) is dict:
                        t = o.get("t")
                        tag = t if type(t) is str else None
                        c = o.get("comm")
                        comm = c if type(c) is int and 0 <= c < 1 << 64 else None
                except ProtocolError:
                    pass
            self._error(identity, e.kind, str(e), tag, comm)
            return
        if isinstance(msg, MeasurementsPacked) and ingest is not None:
            self._refused_natively(msg.t)
            return
        self.stats.by_type[msg.t] += 1
        self._touch(identity)
        try:
            self._dispatch(identity, msg)
        except Exception as e:  # a daemon bug on one message must not end the job's tuning
            log.exception("internal error handling %s", msg.t)
            self._error(identity, "internal", f"daemon failed on {msg.t}: {e!r}", msg.t,
                        getattr(msg, "comm", None))

    def _refused_natively(self, tag: str) -> None:
        """The native reader refused a report the Python decoder accepts: a daemon bug. Absorbing
        it on the Python path would difference it against counters the native path does not
        share, so it is dropped and counted."""
        self.stats.internal_errors += 1
        self._warn.warn("ingest-disagree", "the native decoder refused a %s report that the "
                        "Python decoder accepts; report dropped (please file a bug with the "
                        "frame)", tag)

    def _on_batch(self, batch: list[list[bytes]]) -> None:
        """Handles a batch of received messages completely (tests; the loop interleaves)."""
        for frames in batch:
            self._enqueue(frames)
        self._drain_backlog(None)
        self._flush_outbox()

    def _enqueue(self, frames: list[bytes]) -> None:
        """Answers plan ACKs and registrations at once (behind a backlog of reports an ACK
        waiting its turn would time its round out); queues everything else, in order.
        MEASUREMENTS are cumulative (PROTOCOL.md), so of several queued reports from one
        connection about one communicator only the newest will be read: that is what keeps a
        daemon that falls behind from falling further behind."""
        if _urgent(frames):
            self._on_frames(frames)
            return
        self._seq += 1
        owner = _measurement_owner(frames)
        if owner is not None:
            self._newest[owner] = self._seq
        self._backlog.append((self._seq, owner, frames))

    def _drain_backlog(self, deadline: float | None) -> None:
        backlog = self._backlog
        newest = self._newest
        n = 0
        while backlog:
            seq, owner, frames = backlog.popleft()
            if owner is not None:
                if newest[owner] != seq:
                    self.stats.received += 1
                    self.stats.superseded += 1
                    self._touch(frames[0])
                    continue
                del newest[owner]
            self._on_frames(frames, owner is not None)
            n += 1
            if deadline is not None and n % 8 == 0 and time.monotonic() >= deadline:
                return

    def _touch(self, identity: bytes) -> None:
        now = time.monotonic()
        peer = self.peers.get(identity)
        if peer is None:
            peer = self.peers[identity] = Peer(identity, now)
        peer.last_seen = now
        if peer.absent:
            peer.absent = False
            log.info("a silent rank process is back")

    def _dispatch(self, identity: bytes, msg: Message) -> None:
        if isinstance(msg, Hello):
            self._on_hello(identity, msg)
        elif isinstance(msg, Heartbeat):
            pass  # _touch did the bookkeeping
        elif isinstance(msg, Ack):
            self._on_ack(identity, msg)
        elif isinstance(msg, KeyReport):
            st = self._registered(identity, msg.comm, "KEY_REPORT")
            if st is not None:
                self._on_key(st, msg)
        elif isinstance(msg, Measurements):
            self._on_measurements_raw(identity, columns_of(msg.model_dump()))
        elif isinstance(msg, MeasurementsPacked):  # the Python path (_on_frames drops it else)
            self._on_measurements_raw(identity, columns_of_stats(msg.comm, msg.calls, msg.stats))
        elif isinstance(msg, Error):
            self.stats.errors_from_peers += 1
            self._warn.warn("peer-error", "a plugin reported %s about %s (comm %s): %s",
                            msg.code, msg.ref, msg.comm, msg.message)
        else:  # WELCOME, PREPARE, COMMIT, ABORT travel daemon -> plugin only
            self.stats.rejected["direction"] += 1
            self._error(identity, "state", f"{msg.t} is sent by the daemon, never to it",
                        msg.t, getattr(msg, "comm", None))

    def _registered(self, identity: bytes, comm: int, tag: str) -> CommState | None:
        st = self.comms.get(comm)
        if st is None or st.slot_of(identity) is None:
            self._error(identity, "unknown_comm", f"comm {comm:#018x} has no accepted HELLO on "
                        "this connection; send HELLO first", tag, comm)
            return None
        return st

    def _on_hello(self, identity: bytes, msg: Hello) -> None:
        st = self.comms.get(msg.comm)
        if st is None:
            st = self.comms[msg.comm] = CommState(msg.job, msg.comm, msg.n_ranks, msg.n_nodes,
                                                  msg.nccl_version)
            last = self.journal.last_commit(msg.comm)
            if last is not None:
                # A previous life of this daemon committed it; some ranks may not have reached
                # its activation point yet, and they would refuse any new plan until they do.
                st.activating = (last.plan, last.activate_at, last.reason)
                st.activating_restored = True
        elif (st.job, st.n_ranks, st.n_nodes) != (msg.job, msg.n_ranks, msg.n_nodes):
            self._error(identity, "state", f"comm {msg.comm:#018x} was registered as job "
                        f"{st.job!r} with {st.n_ranks} ranks on {st.n_nodes} nodes; this HELLO "
                        f"says job {msg.job!r}, {msg.n_ranks} ranks, {msg.n_nodes} nodes",
                        "HELLO", msg.comm)
            return
        slot: SlotKey = ("r", msg.rank) if msg.rank is not None else ("p", msg.host, msg.pid)
        old = st.slots.get(slot)
        if old is None and st.complete:
            self._error(identity, "state", f"comm {msg.comm:#018x} already has all "
                        f"{st.n_ranks} ranks registered", "HELLO", msg.comm)
            return
        prior_slot = st.slot_of(identity)
        if prior_slot is not None and prior_slot != slot:
            # The same connection now registers under another slot (its rank became known):
            # its reports continue the same cumulative counters.
            st.unregister(prior_slot)
            st.move_counters(prior_slot, slot)
        self._session += 1
        features = frozenset(msg.features) & self._features
        reg = RankReg(slot, identity, msg.rank, msg.host, msg.pid, features, self._session)
        if old is not None:
            if old.identity != identity:
                oldpeer = self.peers.get(old.identity)
                if oldpeer is not None:
                    oldpeer.regs.discard(msg.comm)
        st.register(slot, reg)
        self.peers[identity].regs.add(msg.comm)
        self._send(identity, Welcome(
            version=[PROTOCOL_MAJOR, PROTOCOL_MINOR],
            features=[f for f in msg.features if f in features], comm=msg.comm,
            session=self._session, heartbeat_ms=self.config.heartbeat_ms,
            report_ms=self.config.report_ms))
        if st.complete and st.info is None:
            st.complete_at = time.monotonic()
            st.info = CommInfo(job=st.job, comm=st.comm, n_ranks=st.n_ranks, n_nodes=st.n_nodes,
                               hosts=tuple(sorted({r.host for r in st.slots.values()})),
                               nccl_version=st.nccl_version, session=self._session)
            self.artifacts.comm_complete(st.info)
            log.info("comm %016x of job %s complete: %d ranks on %d nodes", st.comm, st.job,
                     st.n_ranks, st.n_nodes)

    def _on_key(self, st: CommState, msg: KeyReport) -> None:
        key = Key(msg.coll, msg.n_bytes, msg.num_pipe_ops)
        if key in st.keys:
            return  # every rank reports the same key; the first report is the record
        cost = tuple(tuple(row) for row in msg.cost)
        st.keys[key] = cost
        st.pipe_ops.setdefault((msg.coll, msg.n_bytes), set()).add(msg.num_pipe_ops)
        st.pending_keys.append((key, cost, msg.call))
        self.artifacts.key(st.job, st.comm, key, cost, msg.call)

    def _report_from(self, identity: bytes, comm: int, calls: int
                     ) -> tuple[CommState, RankReg] | None:
        """The sender's registration, with its call count noted; None (answered with ERROR)
        when the connection never registered comm."""
        st = self._registered(identity, comm, "MEASUREMENTS")
        if st is None:
            return None
        slot = st.slot_of(identity)
        assert slot is not None
        reg = st.slots[slot]
        now = time.monotonic()
        reg.last_calls = calls
        reg.last_report = now
        st.note_calls(calls, now)
        self._check_activation(st)
        return st, reg

    def _on_measurements_native(self, identity: bytes, head: ReportHead,
                                ingest: NativeIngest) -> None:
        """MEASUREMENTS accepted by the native decoder, its stats still inside `ingest`."""
        found = self._report_from(identity, head.comm, head.calls)
        if found is None:
            return
        st, reg = found
        if head.exact:
            self.stats.measurements_exact += 1
        if not st.absorb_native(reg, ingest):
            self.stats.reports_unabsorbed += 1
            self._warn.warn("senders", "comm %016x: more rank registrations than its sender table "
                            "holds (%d); a report was ignored", head.comm, st.max_senders())

    def _on_measurements_raw(self, identity: bytes, m: FastMeasurements) -> None:
        """MEASUREMENTS, already validated (fast path or pydantic), as columns."""
        found = self._report_from(identity, m.comm, m.calls)
        if found is not None:
            st, reg = found
            st.absorb_cols(reg, m)

    # ---- plans ------------------------------------------------------------------------------

    def _on_ack(self, identity: bytes, msg: Ack) -> None:
        decided = self.journal.decisions.get((msg.comm, msg.plan))
        if decided is not None:
            # Waiting ranks re-send ACK as the question; repeat the decision exactly.
            self._send_decision(identity, msg.comm, msg.plan, decided.committed,
                                decided.activate_at, decided.reason)
            return
        st = self.comms.get(msg.comm)
        rnd = st.round if st is not None else None
        if st is not None and rnd is not None and rnd.plan == msg.plan:
            slot = st.slot_of(identity)
            if slot is None:
                self._error(identity, "unknown_comm", f"comm {msg.comm:#018x} has no accepted "
                            "HELLO on this connection; send HELLO first", "ACK", msg.comm)
                return
            now = time.monotonic()
            if slot not in rnd.acks:
                rnd.ack_times[slot] = now
                st.rtt_max = max(st.rtt_max, now - rnd.sent_at)
            rnd.acks[slot] = msg
            st.note_calls(msg.calls, now)
            verdict = evaluate(rnd, check_sequence(st.seq_seen, slot, msg))
            if verdict is not None:
                self._decide(st, verdict)
            return
        # A plan this daemon never prepared (or prepared in an earlier life that crashed before
        # its record reached the disk): no COMMIT for it can exist, since commits are journaled
        # first, so aborting is safe. Only a registered rank's ACK for a plausible plan id (the
        # one id per earlier life that can be missing from the journal, or this life's next) is
        # journaled; anything else is answered without touching the disk, so a flood or a wild
        # id cannot grow the journal or push the next plan id out of range.
        registered = st is not None and st.slot_of(identity) is not None
        plausible = (self.journal.possible_orphan(msg.comm, msg.plan)
                     or msg.plan == self.journal.next_plan_id(msg.comm))
        if not registered or not plausible:
            self._send_decision(identity, msg.comm, msg.plan, False, msg.calls,
                                "unknown plan: not prepared by this daemon")
            return
        self.journal.note_plan_seen(msg.comm, msg.plan)
        job = st.job if st is not None else "?"
        d = self.journal.decide(job, msg.comm, msg.plan, False, msg.calls,
                                "unknown plan: not prepared by this daemon")
        if st is not None:
            self.artifacts.decision(st.job, st.comm, d.plan, False, d.activate_at, d.reason)
        self._send_decision(identity, msg.comm, msg.plan, d.committed, d.activate_at, d.reason)

    def _send_decision(self, identity: bytes, comm: int, plan: int, committed: bool,
                       activate_at: int, reason: str) -> None:
        self._send_durable(identity, _decision_frame(comm, plan, committed, activate_at, reason))

    def _send_durable(self, identity: bytes, data: bytes) -> None:
        """Sends after the journal's next sync: COMMIT and ABORT, which a restarted daemon must
        stand by. (Every one of them waits, not only those of records written since the last
        sync: a decision read from the journal may be from this phase.)"""
        self._outbox.append((identity, data))

    def _flush_outbox(self) -> None:
        """Group commit: one fsync makes every record of this phase durable, then the messages
        that depend on them go out. Called after each loop phase that can decide or prepare."""
        if not self._outbox:
            return
        self.journal.sync()
        out, self._outbox = self._outbox, []
        for identity, data in out:
            self._send_bytes(identity, data)

    def _decide(self, st: CommState, verdict: Verdict) -> None:
        rnd = st.round
        assert rnd is not None
        # Durable first: a restarted daemon must answer exactly this (see journal.py).
        d = self.journal.decide(st.job, st.comm, rnd.plan, verdict.committed, rnd.activate_at,
                                verdict.reason)
        self.artifacts.decision(st.job, st.comm, d.plan, d.committed, d.activate_at, d.reason)
        if verdict.freeze and st.frozen is None:
            st.frozen = verdict.reason
            self.stats.comms_frozen += 1
            log.warning("comm %016x of job %s FROZEN on its current plan: %s", st.comm, st.job,
                        verdict.reason)
            self.artifacts.event(st.job, st.comm, "frozen", {"reason": verdict.reason})
        frame = _decision_frame(st.comm, d.plan, d.committed, d.activate_at, d.reason)
        for ident in sorted({reg.identity for reg in st.slots.values()}):
            self._send_durable(ident, frame)
        st.round = None
        self._in_round.pop(st.comm, None)
        if d.committed:
            st.activating = (d.plan, d.activate_at, d.reason)
            self._check_activation(st)
        else:
            st.pending_outcomes.append((d.plan, d.committed, d.reason))
        if d.committed:
            st.plans_committed += 1
            self.stats.plans_committed += 1
            self.stats.commit_latency_s.append(time.monotonic() - rnd.sent_at)
            self.stats.commits_total += 1
            if len(self.stats.commit_latency_s) > 100_000:
                del self.stats.commit_latency_s[:50_000]
            log.info("comm %016x: plan %d committed at call %d (%s)", st.comm, d.plan,
                     d.activate_at, rnd.reason)
        else:
            st.plans_aborted += 1
            self.stats.plans_aborted += 1
            log.info("comm %016x: plan %d aborted: %s", st.comm, d.plan, d.reason)

    def _check_activation(self, st: CommState) -> None:
        if st.activating is not None and st.complete and st.min_calls() >= st.activating[1]:
            plan, _, reason = st.activating
            st.activating = None
            if st.activating_restored:
                st.activating_restored = False  # this life's brain never proposed it
            else:
                st.pending_outcomes.append((plan, True, reason))

    def _can_prepare(self, st: CommState) -> str | None:
        if st.frozen is not None:
            return "frozen"
        if st.round is not None:
            return "a plan is in flight"
        self._check_activation(st)
        if st.activating is not None:
            return "the last committed plan has not activated on every rank yet"
        if not st.complete:
            return "communicator incomplete"
        if st.max_calls == 0 and time.monotonic() - st.complete_at < self._rate_grace_s:
            # Without a call count the activation point can only be min_lead_calls ahead, which
            # a fast job passes before the PREPARE arrives: every rank would refuse. The first
            # report gives one (and a first estimate of the rate, see _call_rate); a job that
            # sends none, or makes no calls, gets its plans after the grace period.
            return "no call count reported yet"
        for reg in st.slots.values():
            if "plans" not in reg.features:
                return "a rank does not apply plans"
            peer = self.peers.get(reg.identity)
            if peer is None or peer.absent:
                return "a rank is absent"
        return None

    def _start_plan(self, st: CommState, prop: PlanProposal) -> None:
        # Every decision taken so far must be on disk before a PREPARE leaves unsynced: that is
        # what bounds the ids a crash can lose to one per communicator and life (journal.py).
        # The loop flushes after every phase that decides, so this is normally a no-op.
        self._flush_outbox()
        why_not = self._can_prepare(st)
        if why_not is not None:
            st.pending_outcomes.append((0, False, f"not prepared: {why_not}"))
            return
        now = time.monotonic()
        cfg = self.config
        rtt = st.rtt_max if st.rtt_max > 0.0 else 0.05
        activate_at = choose_activate_at(st.max_calls, st.max_calls_time, _call_rate(st), now, rtt,
                                         cfg.lead_margin_ms / 1000.0, cfg.min_lead_calls)
        plan = self.journal.next_plan_id(st.comm)
        # The message is built (and so validated) before anything is journaled: a proposal the
        # protocol cannot carry (too many rules, call counts at the end of the u64 range) is
        # refused here and told to the brain, never half-recorded.
        try:
            frame = encode(Prepare(comm=st.comm, plan=plan, activate_at=activate_at,
                                   rules=list(prop.rules)))
        except (ValueError, ProtocolError) as e:
            self._warn.warn("proposal", "comm %016x: proposal not sent: %s", st.comm, e)
            st.pending_outcomes.append((0, False, f"not prepared: {e}"))
            return
        self.journal.record_prepare(st.job, st.comm, plan, activate_at, prop.reason)
        self.artifacts.plan(st.job, st.comm, plan, activate_at, prop.rules, prop.reason)
        timeout = cfg.ack_timeout_ms / 1000.0
        rnd = PlanRound(plan=plan, activate_at=activate_at, rules=prop.rules,
                        reason=prop.reason, sent_at=now, deadline=now + timeout,
                        targets=frozenset(st.slots), frame=frame)
        st.round = rnd
        self._in_round[st.comm] = st
        self._send_prepare(st, rnd, only_missing=False)

    def _send_prepare(self, st: CommState, rnd: PlanRound, only_missing: bool) -> None:
        for slot, reg in st.slots.items():
            if only_missing and slot in rnd.acks:
                continue
            # At once, not after a journal sync: plan ids are unique across daemon lives, so a
            # PREPARE whose record is lost in a crash cannot be confused with a later plan (see
            # journal.py); its decision is synced before any rank hears it.
            self._send_bytes(reg.identity, rnd.frame)

    # ---- brain worker -----------------------------------------------------------------------

    def _submit(self, st: CommState, now: float) -> None:
        assert st.info is not None
        obs = st.take_observations(BRAIN)
        job = _BrainJob(st.comm, st.info, st.pending_keys, st.pending_outcomes, obs,
                        may_ask=self._can_prepare(st) is None)
        st.pending_keys = []
        st.pending_outcomes = []
        st.brain_busy = True
        st.last_ask = now
        self._jobs.put(job)

    def _brain_worker(self) -> None:
        factory = self.config.brain_factory or NullBrain
        budget = self.config.brain_budget_ms / 1000.0
        while True:
            job = self._jobs.get()
            if job is None:
                return
            proposal: PlanProposal | None = None
            t0 = time.monotonic()
            try:
                brain = self._brains.get(job.comm)
                if brain is None:
                    brain = self._brains[job.comm] = factory(job.info)
                for key, cost, first in job.keys:
                    brain.on_key(key, cost, first)
                for plan, committed, reason in job.outcomes:
                    # Plan 0: the proposal was refused before any PREPARE; the brain must still
                    # hear of it, or it would wait for that outcome for ever.
                    brain.on_plan_outcome(plan, committed, reason)
                if job.observations:
                    brain.tell(job.observations)
                if job.may_ask:
                    proposal = brain.ask()
            except Exception:
                self.stats.brain_failures += 1
                log.exception("brain of comm %016x failed; it is replaced by one that never "
                              "proposes (the job keeps its current plan)", job.comm)
                self._brains[job.comm] = NullBrain(job.info)
                proposal = None
            took = time.monotonic() - t0
            if took > budget:
                self.stats.brain_slow += 1
                self._warn.warn("brain-slow", "brain of comm %016x took %.0f ms (budget %.0f "
                                "ms); proposals are delayed, messages are not", job.comm,
                                took * 1000, budget * 1000)
            self._results.put((job.comm, proposal))

    def _drain_results(self, now: float) -> None:
        # Each proposal costs a journal fsync; a slice per pass, like the communicator timers.
        deadline = time.monotonic() + _SLICE_S
        while time.monotonic() < deadline:
            try:
                comm, proposal = self._results.get_nowait()
            except queue.Empty:
                return
            st = self.comms[comm]
            st.brain_busy = False
            if proposal is not None:
                try:
                    self._start_plan(st, proposal)
                except Exception:  # a daemon bug on one communicator must not stop the rest
                    self.stats.internal_errors += 1
                    log.exception("comm %016x: starting a plan failed", comm)

    # ---- introspection (tests, benchmarks) --------------------------------------------------

    def comm_state(self, comm: int) -> CommState | None:
        return self.comms.get(comm)


def serve(config: DaemonConfig, argv_env: Sequence[str] = ()) -> None:
    """Foreground daemon until SIGINT/SIGTERM (used by the CLI)."""
    import signal

    import gc

    # The daemon allocates a tuple per report and per (key, arm) per tell and frees them at
    # once; with the default thresholds the cyclic collector ran hundreds of times a second
    # for nothing. (Only in the daemon's own process: an embedded Daemon leaves gc alone.)
    gc.set_threshold(100_000, 50, 50)
    d = Daemon(config)

    def _stop(signum: int, frame: object) -> None:
        d.stop()

    def _dump(signum: int, frame: object) -> None:
        d.request_stats_dump()

    # Installed before the endpoint is printed: whoever waits for that line may signal at once.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGUSR1, _dump)
    for line in d.env_lines():
        print(line, flush=True)
    print(f"# run directory: {d.run_dir}", flush=True)
    d.serve_forever()
