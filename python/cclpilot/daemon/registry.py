"""The daemon's registry: peers (routing identities), communicators and their ranks.

A rank registration is keyed by (routing identity, comm) on the wire; inside a communicator it
occupies a *slot*: its rank when HELLO carried one, else its (host, pid). A process that
reconnects gets a new identity but keeps its slot, so the registration is replaced instead of
counted twice. A communicator is complete when it has n_ranks slots.

Measurement reports are cumulative per (rank, stat key); the registry turns them into
differences and sums them over ranks (brain.Observation), ready for the next tell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cclpilot.daemon.brain import ArmRan, CommInfo, Key, Observation
from cclpilot.daemon.fastmeas import FastMeasurements
from cclpilot.daemon.ingest import BRAIN, MAX_ROWS, NativeAgg, NativeIngest
from cclpilot.daemon.plans import PlanRound
from cclpilot.proto.messages import U64_MAX, Measurements

SlotKey = tuple[object, ...]
RATE_WINDOW_S = 0.05   # shortest interval a call-rate estimate is taken over
StatKey = tuple[int, int, int, int, int]          # coll, n_bytes, algo, proto, n_channels
Cumul = tuple[int, float, float, int, int, int]   # count, sum, sum_sq, min, max, untimed


@dataclass
class Peer:
    identity: bytes
    last_seen: float
    hb_seq: int = 0
    last_hb_sent: float = 0.0
    absent: bool = False
    regs: set[int] = field(default_factory=set)      # comms registered through this identity


@dataclass
class RankReg:
    slot: SlotKey
    identity: bytes
    rank: int | None
    host: str
    pid: int
    features: frozenset[str]
    session: int
    cumul: dict[StatKey, Cumul] = field(default_factory=dict)   # Python path only
    last_calls: int = 0
    last_report: float = 0.0


@dataclass
class Accum:
    count: int = 0
    sum_ns: float = 0.0
    sum_sq_ns: float = 0.0
    min_ns: int = 0
    max_ns: int = 0
    untimed: int = 0
    ranks: set[SlotKey] = field(default_factory=set)
    has_extremes: bool = False   # a contributor with timed samples set min_ns / max_ns


@dataclass
class CommState:
    job: str
    comm: int
    n_ranks: int
    n_nodes: int
    nccl_version: int
    slots: dict[SlotKey, RankReg] = field(default_factory=dict)
    info: CommInfo | None = None
    keys: dict[Key, tuple[tuple[float, ...], ...]] = field(default_factory=dict)
    pipe_ops: dict[tuple[int, int], set[int]] = field(default_factory=dict)
    pending_keys: list[tuple[Key, tuple[tuple[float, ...], ...], int]] = field(
        default_factory=list)
    pending_outcomes: list[tuple[int, bool, str]] = field(default_factory=list)
    # Python path: pending windows of the brain's tells and of the artifact summaries (the
    # native path keeps both inside `native`, as channels BRAIN and SUMMARY).
    agg: dict[StatKey, Accum] = field(default_factory=dict)
    agg_summary: dict[StatKey, Accum] = field(default_factory=dict)
    frozen: str | None = None
    round: PlanRound | None = None
    max_calls: int = 0
    max_calls_time: float = 0.0
    rate: float = 0.0                       # calls per second (EWMA over report intervals)
    rate_anchor: tuple[int, float] = (0, 0.0)  # (max_calls, time) where the current interval began
    rtt_max: float = 0.0                    # slowest ACK round trip seen, seconds
    complete_at: float = 0.0                # monotonic time the last rank registered
    seq_seen: dict[int, tuple[int, SlotKey]] = field(default_factory=dict)
    brain_busy: bool = False
    last_ask: float = 0.0
    last_summary: float = 0.0
    plans_committed: int = 0
    plans_aborted: int = 0
    # A committed plan that some rank has not reached yet: (plan, activate_at, reason). Ranks
    # hold one pending plan at a time, and samples before activate_at still ran the old plan,
    # so no new plan is prepared and the brain hears of the commit only once every rank is past.
    activating: tuple[int, int, str] | None = None
    activating_restored: bool = False   # `activating` came from the journal of an earlier life
    by_identity: dict[bytes, SlotKey] = field(default_factory=dict)
    # Native path (ingest.py): the C aggregate, and each slot's dense sender number there. A
    # slot keeps its number across reconnects, so cumulative counters continue.
    native: NativeAgg | None = None
    sender_ids: dict[SlotKey, int] = field(default_factory=dict)
    next_sender: int = 0
    # Python path: each slot's last cumulative counters (RankReg.cumul is the same dict).
    cumuls: dict[SlotKey, dict[StatKey, Cumul]] = field(default_factory=dict)
    rows_seen: set[StatKey] = field(default_factory=set)   # Python path: distinct (key, arm)
    stats_dropped: int = 0   # Python path: stat entries beyond MAX_ROWS per sender
    # Native path: (Key, ArmRan, key_ambiguous) per aggregate row id, rebuilt when keys change.
    _meta: list[tuple[Key, ArmRan, bool] | None] = field(default_factory=list)
    _meta_version: int = 0

    def register(self, slot: SlotKey, reg: RankReg) -> None:
        """Puts reg in slot, replacing (and unindexing) whatever held it. Cumulative counters
        belong to the slot, not to one registration: a rank that reconnects (or registers again
        after its slot was dropped) continues the counters its plugin kept, on both paths."""
        old = self.slots.get(slot)
        if old is not None and self.by_identity.get(old.identity) == slot:
            del self.by_identity[old.identity]
        self.slots[slot] = reg
        self.by_identity[reg.identity] = slot
        reg.cumul = self.cumuls.setdefault(slot, {})

    def move_counters(self, src: SlotKey, dst: SlotKey) -> None:
        """dst takes over src's cumulative counters (Python path) and sender number (native)."""
        if src in self.cumuls:
            self.cumuls[dst] = self.cumuls.pop(src)
            reg = self.slots.get(dst)
            if reg is not None:
                reg.cumul = self.cumuls[dst]
        if src in self.sender_ids:
            self.sender_ids[dst] = self.sender_ids.pop(src)

    def unregister(self, slot: SlotKey) -> None:
        old = self.slots.pop(slot, None)
        if old is not None and self.by_identity.get(old.identity) == slot:
            del self.by_identity[old.identity]

    def sender_id(self, slot: SlotKey) -> int:
        sid = self.sender_ids.get(slot)
        if sid is None:
            # Numbers are never reused (a moved slot leaves its old number unused), so two
            # slots can never share counters; max_senders bounds the total.
            sid = self.sender_ids[slot] = self.next_sender
            self.next_sender += 1
        return sid

    def max_senders(self) -> int:
        # Slots are ranks, or (host, pid) for ranks registered before their rank was known;
        # room for every rank twice over covers re-registrations under a new slot key.
        return 2 * self.n_ranks + 64

    def absorb_native(self, reg: RankReg, ingest: NativeIngest) -> bool:
        """The ingest's last decoded report, absorbed as reg's cumulative counters (see
        absorb_cols for the arithmetic, which the C library repeats). False when the sender
        table is exhausted (the report is ignored)."""
        if self.native is None:
            self.native = ingest.new_agg(self.max_senders())
        sid = self.sender_id(reg.slot)
        if sid >= self.native.max_senders:
            return False
        return self.native.absorb(sid, credit=self.activating is None)

    def min_calls(self) -> int:
        """The call count every registered rank has reported reaching (0 before any report)."""
        return min((reg.last_calls for reg in self.slots.values()), default=0)

    @property
    def complete(self) -> bool:
        return len(self.slots) >= self.n_ranks

    def slot_of(self, identity: bytes) -> SlotKey | None:
        return self.by_identity.get(identity)

    def note_calls(self, calls: int, now: float) -> None:
        if calls > self.max_calls:
            self.max_calls = calls
            self.max_calls_time = now
        # The rate is measured over at least RATE_WINDOW_S. Reports of different ranks (or
        # ACKs) handled microseconds apart would otherwise divide a few calls by almost no time,
        # and one such estimate put an activation point minutes ahead.
        anchor_calls, anchor_time = self.rate_anchor
        if anchor_time == 0.0:
            self.rate_anchor = (self.max_calls, now)
        elif now - anchor_time >= RATE_WINDOW_S:
            inst = (self.max_calls - anchor_calls) / (now - anchor_time)
            self.rate = inst if self.rate == 0.0 else 0.7 * self.rate + 0.3 * inst
            self.rate_anchor = (self.max_calls, now)

    def absorb(self, reg: RankReg, msg: Measurements) -> None:
        """Adds the new samples of one cumulative report to the pending aggregate."""
        for s in msg.stats:
            sk: StatKey = (s.coll, s.n_bytes, s.algo, s.proto, s.n_channels)
            self.absorb_raw(reg, sk, (s.count, s.sum_ns, s.sum_sq_ns, s.min_ns, s.max_ns,
                                      s.untimed))

    def absorb_cols(self, reg: RankReg, m: FastMeasurements) -> None:
        """absorb_raw over a whole report's columns, in report order (the same arithmetic,
        without a call and two tuples per stat)."""
        cumul = reg.cumul
        if self.activating is not None:
            # Between a commit and its activation on every rank, a rank's new samples mix the
            # old plan and the new one: keep the counters current, credit nothing.
            for sk, c, s, q, lo, hi, u in zip(m.keys, m.counts, m.sum_ns, m.sum_sq_ns, m.min_ns,
                                              m.max_ns, m.untimed):
                if sk in cumul or self._admit(cumul, sk):
                    cumul[sk] = (c, s, q, lo, hi, u)
            return
        slot = reg.slot
        for sk, c, s, q, lo, hi, u in zip(m.keys, m.counts, m.sum_ns, m.sum_sq_ns, m.min_ns,
                                          m.max_ns, m.untimed):
            prev = cumul.get(sk)
            if prev is None and not self._admit(cumul, sk):
                continue
            cumul[sk] = (c, s, q, lo, hi, u)
            if prev is not None and c >= prev[0] and u >= prev[5]:
                dc = c - prev[0]
                du = u - prev[5]
                if dc == 0 and du == 0:
                    continue
                ds = s - prev[1]
                dq = q - prev[2]
            else:  # first report, or counters went back (a restarted plugin): take it whole
                if c == 0 and u == 0:
                    continue
                dc, ds, dq, du = c, s, q, u
            _credit(self.agg, sk, slot, dc, ds, dq, du, c, lo, hi)
            _credit(self.agg_summary, sk, slot, dc, ds, dq, du, c, lo, hi)

    def _admit(self, cumul: dict[StatKey, Cumul], sk: StatKey) -> bool:
        """Whether a sender's new stat key fits the limits (cpi_ingest.c entry_of/row_of): at
        most MAX_ROWS per sender and MAX_ROWS distinct (key, arm) in the communicator."""
        if len(cumul) >= MAX_ROWS or (sk not in self.rows_seen
                                      and len(self.rows_seen) >= MAX_ROWS):
            self.stats_dropped += 1
            return False
        self.rows_seen.add(sk)
        return True

    def absorb_raw(self, reg: RankReg, sk: StatKey, cur: Cumul) -> None:
        """One stat of a cumulative report: the per-stat reference for absorb_cols."""
        prev = reg.cumul.get(sk)
        if prev is None and not self._admit(reg.cumul, sk):
            return
        if prev is not None and cur[0] >= prev[0] and cur[5] >= prev[5]:
            dc, ds, dq, du = cur[0] - prev[0], cur[1] - prev[1], cur[2] - prev[2], cur[5] - prev[5]
        else:  # first report, or counters went back (a restarted plugin): take it whole
            dc, ds, dq, du = cur[0], cur[1], cur[2], cur[5]
        reg.cumul[sk] = cur
        if (dc == 0 and du == 0) or self.activating is not None:
            return  # nothing new, or samples that straddle a plan change (see absorb_cols)
        for agg in (self.agg, self.agg_summary):
            _credit(agg, sk, reg.slot, dc, ds, dq, du, cur[0], cur[3], cur[4])

    def rows_known(self) -> int:
        """Distinct (key, arm) pairs seen, on whichever path is in use."""
        if self.native is not None:
            return self.native.info()["rows"]
        return len(self.rows_seen)

    def has_pending(self, channel: int = BRAIN) -> bool:
        if self.native is not None and self.native.pending(channel) > 0:
            return True
        return bool(self.agg if channel == BRAIN else self.agg_summary)

    def _row_meta(self, row: int, coll: int, n_bytes: int, algo: int, proto: int,
                  nch: int) -> tuple[Key, ArmRan, bool]:
        meta = self._meta
        if row >= len(meta):
            meta.extend([None] * (row + 1 - len(meta)))
        pipes = self.pipe_ops.get((coll, n_bytes), set())
        npo = next(iter(pipes)) if len(pipes) == 1 else 1
        m = meta[row] = (Key(coll, n_bytes, npo), ArmRan(algo, proto, nch), len(pipes) != 1)
        return m

    def take_observations(self, channel: int = BRAIN) -> list[Observation]:
        """What arrived since this channel's previous take, one Observation per (key, arm)."""
        out: list[Observation] = []
        calls = self.max_calls
        if self.native is not None:
            meta = self._meta
            if self._meta_version != len(self.keys):
                meta.clear()  # a new key may have made a (coll, n_bytes) ambiguous, or resolved it
                self._meta_version = len(self.keys)
            n_meta = len(meta)
            append = out.append
            for n_bytes, count, untimed, lo, hi, s, q, coll, algo, proto, nch, ranks, row \
                    in self.native.take(channel):
                m = meta[row] if row < n_meta else None
                if m is None:
                    m = self._row_meta(row, coll, n_bytes, algo, proto, nch)
                    n_meta = len(meta)
                append(Observation(m[0], m[1], count, s, q, lo, hi, untimed, ranks, calls, m[2]))
        agg = self.agg if channel == BRAIN else self.agg_summary
        for (coll, n_bytes, algo, proto, nch), a in agg.items():
            pipes = self.pipe_ops.get((coll, n_bytes), set())
            ambiguous = len(pipes) != 1
            npo = next(iter(pipes)) if len(pipes) == 1 else 1
            out.append(Observation(
                key=Key(coll, n_bytes, npo), arm=ArmRan(algo, proto, nch), count=a.count,
                sum_ns=a.sum_ns, sum_sq_ns=a.sum_sq_ns, min_ns=a.min_ns, max_ns=a.max_ns,
                untimed=a.untimed, ranks=len(a.ranks), calls=calls, key_ambiguous=ambiguous))
        agg.clear()
        return out


def _credit(agg: dict[StatKey, Accum], sk: StatKey, slot: SlotKey, dc: int, ds: float, dq: float,
            du: int, count: int, lo: int, hi: int) -> None:
    """Adds one sender's new samples of sk to a pending window (cpi_ingest.c credit_row)."""
    a = agg.get(sk)
    if a is None:
        a = agg[sk] = Accum()
    # Counts saturate at the wire's u64, as in C: no sum of real counters gets there, and a
    # hostile one must not produce a value the protocol and the artifacts cannot carry.
    a.count = min(a.count + dc, U64_MAX)
    a.sum_ns += ds if ds > 0.0 else 0.0
    a.sum_sq_ns += dq if dq > 0.0 else 0.0
    a.untimed = min(a.untimed + du, U64_MAX)
    if count > 0:
        # The extremes over the contributing senders that have timed samples, of their
        # cumulative extremes: per-window extremes cannot be recovered from cumulative
        # summaries. (0 / 0 when no contributor has any.)
        if not a.has_extremes or lo < a.min_ns:
            a.min_ns = lo
        if not a.has_extremes or hi > a.max_ns:
            a.max_ns = hi
        a.has_extremes = True
    a.ranks.add(slot)
