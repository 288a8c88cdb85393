"""The per-communicator plan state machine (two-phase activation, PROTOCOL.md "Sessions and plans").

States: IDLE (no round) -> PREPARING (one PlanRound: PREPARE sent to every rank, collecting
ACKs) -> decided (COMMIT or ABORT, journaled first) -> IDLE; or FROZEN, for good, when ranks
disagree on the call sequence. The rules implemented here are pure functions of the round, so
they are tested without sockets:

- commit only when every slot answered ok=true, no ACK's ``calls`` is past ``activate_at``, and
  all ``seq_hash`` values agree wherever two ranks report the same ``calls`` (across every ACK
  of the communicator's life, not only this round's);
- any ok=false -> abort at once (waiting cannot make it commit);
- a seq_hash disagreement -> abort and freeze;
- missing ACKs at the deadline -> abort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cclpilot.proto.messages import Ack, Rule

SlotKey = tuple[object, ...]


@dataclass
class PlanRound:
    plan: int
    activate_at: int
    rules: tuple[Rule, ...]
    reason: str
    sent_at: float
    deadline: float
    targets: frozenset[SlotKey]
    frame: bytes            # the PREPARE as encoded once, sent to every rank (and re-sent)
    acks: dict[SlotKey, Ack] = field(default_factory=dict)
    ack_times: dict[SlotKey, float] = field(default_factory=dict)
    resent: bool = False


@dataclass(frozen=True)
class Verdict:
    committed: bool
    reason: str
    freeze: bool = False


def slot_name(slot: SlotKey) -> str:
    if slot and slot[0] == "r":
        return f"rank {slot[1]}"
    return f"{slot[1]}:{slot[2]}" if len(slot) == 3 else str(slot)


def check_sequence(seen: dict[int, tuple[int, SlotKey]], slot: SlotKey, ack: Ack) -> str | None:
    """Records (calls, seq_hash) and returns a description of a disagreement, if any."""
    prior = seen.get(ack.calls)
    if prior is None:
        if len(seen) > 4096:  # bounded memory; old points matter less than fresh ones
            seen.pop(min(seen))
        seen[ack.calls] = (ack.seq_hash, slot)
        return None
    if prior[0] != ack.seq_hash:
        return (f"ranks disagree on the call sequence: after {ack.calls} calls {slot_name(slot)} "
                f"has seq_hash {ack.seq_hash:#018x}, {slot_name(prior[1])} {prior[0]:#018x}")
    return None


def evaluate(rnd: PlanRound, mismatch: str | None) -> Verdict | None:
    """The decision as soon as it is certain, else None (keep collecting)."""
    if mismatch is not None:
        return Verdict(False, mismatch + "; communicator frozen on its current plan", True)
    for slot, ack in rnd.acks.items():
        if not ack.ok:
            return Verdict(False, f"{slot_name(slot)} refused: {ack.reason}")
        if ack.calls > rnd.activate_at:
            return Verdict(False, f"{slot_name(slot)} acknowledged at call {ack.calls}, past "
                                  f"activate_at {rnd.activate_at}")
    if rnd.targets <= rnd.acks.keys():
        return Verdict(True, f"all {len(rnd.targets)} ranks prepared")
    return None


def timeout_verdict(rnd: PlanRound, timeout_s: float) -> Verdict:
    missing = sorted(slot_name(s) for s in rnd.targets - rnd.acks.keys())
    shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    return Verdict(False, f"no ACK within {timeout_s * 1000:.0f} ms from {shown}")


def choose_activate_at(max_calls: int, max_calls_time: float, rate: float, now: float,
                       rtt_max: float, margin_s: float, min_lead_calls: int) -> int:
    """The first call of the new plan: far enough ahead that every rank can prepare in time.

    The largest call count reported is stale by the age of its report, so it is extrapolated at
    the observed rate; then the plan must survive two ACK round trips (PREPARE out and ACK back,
    and COMMIT out) plus a margin, at the fastest rank's rate, and never fewer than
    min_lead_calls calls ahead.
    """
    age = max(0.0, now - max_calls_time) if max_calls_time > 0.0 else 0.0
    now_calls = max_calls + rate * age
    lead = rate * (2.0 * rtt_max + margin_s)
    return int(math.ceil(now_calls + lead)) + min_lead_calls
