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
from cclpilot.daemon.plans import PlanRound
from cclpilot.proto.messages import Measurements

SlotKey = tuple[object, ...]
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
    cumul: dict[StatKey, Cumul] = field(default_factory=dict)
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
    agg: dict[StatKey, Accum] = field(default_factory=dict)
    frozen: str | None = None
    round: PlanRound | None = None
    max_calls: int = 0
    max_calls_time: float = 0.0
    rate: float = 0.0                       # calls per second (EWMA over report intervals)
    rtt_max: float = 0.0                    # slowest ACK round trip seen, seconds
    seq_seen: dict[int, tuple[int, SlotKey]] = field(default_factory=dict)
    brain_busy: bool = False
    last_ask: float = 0.0
    plans_committed: int = 0
    plans_aborted: int = 0
    # A committed plan that some rank has not reached yet: (plan, activate_at, reason). Ranks
    # hold one pending plan at a time, and samples before activate_at still ran the old plan,
    # so no new plan is prepared and the brain hears of the commit only once every rank is past.
    activating: tuple[int, int, str] | None = None

    def min_calls(self) -> int:
        """The call count every registered rank has reported reaching (0 before any report)."""
        return min((reg.last_calls for reg in self.slots.values()), default=0)

    @property
    def complete(self) -> bool:
        return len(self.slots) >= self.n_ranks

    def slot_of(self, identity: bytes) -> SlotKey | None:
        for slot, reg in self.slots.items():
            if reg.identity == identity:
                return slot
        return None

    def note_calls(self, calls: int, now: float) -> None:
        if calls > self.max_calls:
            if self.max_calls_time > 0.0 and now > self.max_calls_time:
                inst = (calls - self.max_calls) / (now - self.max_calls_time)
                self.rate = inst if self.rate == 0.0 else 0.7 * self.rate + 0.3 * inst
            self.max_calls = calls
            self.max_calls_time = now

    def absorb(self, reg: RankReg, msg: Measurements) -> None:
        """Adds the new samples of one cumulative report to the pending aggregate."""
        for s in msg.stats:
            sk: StatKey = (s.coll, s.n_bytes, s.algo, s.proto, s.n_channels)
            self.absorb_raw(reg, sk, (s.count, s.sum_ns, s.sum_sq_ns, s.min_ns, s.max_ns,
                                      s.untimed))

    def absorb_cols(self, reg: RankReg, m: FastMeasurements) -> None:
        """absorb_raw over a whole report's columns, in report order (the same arithmetic,
        without a call and two tuples per stat: this loop runs for every stat at volume)."""
        cumul = reg.cumul
        if self.activating is not None:
            # Between a commit and its activation on every rank, a rank's new samples mix the
            # old plan and the new one: keep the counters current, credit nothing.
            for sk, c, s, q, lo, hi, u in zip(m.keys, m.counts, m.sum_ns, m.sum_sq_ns, m.min_ns,
                                              m.max_ns, m.untimed):
                cumul[sk] = (c, s, q, lo, hi, u)
            return
        agg = self.agg
        slot = reg.slot
        for sk, c, s, q, lo, hi, u in zip(m.keys, m.counts, m.sum_ns, m.sum_sq_ns, m.min_ns,
                                          m.max_ns, m.untimed):
            prev = cumul.get(sk)
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
            a = agg.get(sk)
            if a is None:
                a = agg[sk] = Accum(min_ns=lo, max_ns=hi)
            a.count += dc
            a.sum_ns += ds if ds > 0.0 else 0.0
            a.sum_sq_ns += dq if dq > 0.0 else 0.0
            a.untimed += du
            if c > 0:
                a.min_ns = (lo if lo < a.min_ns else a.min_ns) if a.count > dc else lo
                if hi > a.max_ns:
                    a.max_ns = hi
            a.ranks.add(slot)

    def absorb_raw(self, reg: RankReg, sk: StatKey, cur: Cumul) -> None:
        prev = reg.cumul.get(sk)
        if prev is not None and cur[0] >= prev[0] and cur[5] >= prev[5]:
            dc, ds, dq, du = cur[0] - prev[0], cur[1] - prev[1], cur[2] - prev[2], cur[5] - prev[5]
        else:  # first report, or counters went back (a restarted plugin): take it whole
            dc, ds, dq, du = cur[0], cur[1], cur[2], cur[5]
        reg.cumul[sk] = cur
        if (dc == 0 and du == 0) or self.activating is not None:
            return  # nothing new, or samples that straddle a plan change (see absorb_cols)
        a = self.agg.get(sk)
        if a is None:
            a = self.agg[sk] = Accum(min_ns=cur[3], max_ns=cur[4])
        a.count += dc
        a.sum_ns += max(ds, 0.0)
        a.sum_sq_ns += max(dq, 0.0)
        a.untimed += du
        if cur[0] > 0:
            a.min_ns = min(a.min_ns, cur[3]) if a.count > dc else cur[3]
            a.max_ns = max(a.max_ns, cur[4])
        a.ranks.add(reg.slot)

    def take_observations(self) -> list[Observation]:
        out: list[Observation] = []
        for (coll, n_bytes, algo, proto, nch), a in self.agg.items():
            pipes = self.pipe_ops.get((coll, n_bytes), set())
            ambiguous = len(pipes) != 1
            npo = next(iter(pipes)) if len(pipes) == 1 else 1
            out.append(Observation(
                key=Key(coll, n_bytes, npo), arm=ArmRan(algo, proto, nch), count=a.count,
                sum_ns=a.sum_ns, sum_sq_ns=a.sum_sq_ns, min_ns=a.min_ns, max_ns=a.max_ns,
                untimed=a.untimed, ranks=len(a.ranks), calls=self.max_calls,
                key_ambiguous=ambiguous))
        self.agg.clear()
        return out
