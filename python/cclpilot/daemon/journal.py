"""The durable journal of plan decisions: append-only JSON lines, fsync'ed before any send.

A rank that reached a plan's activation point waits, asking again with its ACK, until it learns
the decision. If the daemon dies between deciding and sending, or after sending to some ranks
only, the restarted daemon must give every rank the same answer, so a decision is on disk before
the first COMMIT or ABORT leaves. Records are written at once and made durable by sync(): the
daemon holds every COMMIT and ABORT until the next sync() (group commit, one fsync for all the
decisions of a loop phase; see Daemon._flush_outbox).

PREPAREs are journaled too, so that a plan that was prepared but never decided is aborted on
restart (no rank can have received its COMMIT, because that would be on disk), but a PREPARE
does not wait for its record to reach the disk. What must never happen is a restarted daemon
reusing a plan id that ranks may hold with other rules (a rank answers a repeated PREPARE as the
same plan). So every daemon start is a *life*, journaled and synced before anything else, and
plan ids of life L lie in ((L-1)·2^32, L·2^32]: no two lives share an id. Within a life a
communicator prepares its next plan only after the previous one's decision was synced, so at
most one id per communicator and life can be missing from the journal: the one after the
highest journaled id of that life (or the life's first). possible_orphan() names it, so that a
restarted daemon journals an abort for exactly those, and answers other unknown ids without
touching the disk.

Line format (docs/live-artifacts.md, "decisions.jsonl"): one JSON object per line with
``schema``, ``event`` ("prepare" | "commit" | "abort"), ``job``, ``comm``, ``plan``,
``activate_at``, ``reason``, ``time`` (Unix seconds); or ``schema``, ``event`` "life",
``life``, ``time`` at each daemon start. A journal without life records (written before they
existed) counts as life 1. A torn last line (crash mid-write) is
ignored with a warning; any other malformed line is an error, since guessing could change an
answer.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cclpilot.errors import ConfigError

SCHEMA = "cclpilot.live/1"
LIFE_SHIFT = 32   # plan ids of life L: ((L - 1) << LIFE_SHIFT, L << LIFE_SHIFT]


def life_of(plan: int) -> int:
    """The daemon life that issued a plan id (ids start at 1)."""
    return ((plan - 1) >> LIFE_SHIFT) + 1
log = logging.getLogger("cclpilot.daemon")


@dataclass(frozen=True)
class Decision:
    comm: int
    plan: int
    committed: bool
    activate_at: int
    reason: str


class Journal:
    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self.decisions: dict[tuple[int, int], Decision] = {}
        self.prepared: dict[tuple[int, int], tuple[str, int]] = {}  # undecided: (job, activate_at)
        self.max_plan: dict[int, int] = {}
        # Highest journaled plan id per (comm, life): what possible_orphan() needs.
        self._max_in_life: dict[tuple[int, int], int] = {}
        self.life = 0
        self._load()
        self._file: IO[str] = open(path, "a", encoding="utf-8")
        self._unsynced = False
        self.life += 1
        self._append({"schema": SCHEMA, "event": "life", "life": self.life, "time": time.time()})
        self.sync()
    def _load(self) -> None:
        if not self.path.exists():
            return
        text = self.path.read_text(encoding="utf-8")
        lines = text.split("\n")
        good_end = 0  # bytes up to the end of the last complete record
        writing_life = 1  # the life that wrote the records read (1 before any life record)
        offset = 0
        for i, line in enumerate(lines):
            offset += len(line.encode("utf-8")) + (1 if i < len(lines) - 1 else 0)
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if rec.get("event") == "life" and rec.get("schema") == SCHEMA:
                    self.life = max(self.life, int(rec["life"]))
                    writing_life = int(rec["life"])
                    good_end = offset
                    continue
                event, comm, plan = rec["event"], int(rec["comm"]), int(rec["plan"])
                activate_at, job = int(rec["activate_at"]), str(rec["job"])
                if rec.get("schema") != SCHEMA or event not in ("prepare", "commit", "abort"):
                    raise ValueError(f"schema {rec.get('schema')!r} event {event!r}")
            except (ValueError, KeyError, TypeError) as e:
                if i == len(lines) - 1:
                    # Cut it off: appending after it would glue the next record onto the torn
                    # text and make the following restart refuse the whole journal.
                    log.warning("journal %s: dropping a torn last line (%s)", self.path, e)
                    os.truncate(self.path, good_end)
                    continue
                raise ConfigError(f"journal {self.path} line {i + 1} is not a journal record "
                                  f"({e}); it must not be edited by hand") from None
            good_end = offset
            self.life = max(self.life, 1)  # records before life records existed: life 1
            self.max_plan[comm] = max(self.max_plan.get(comm, 0), plan)
            if life_of(plan) == writing_life:
                # Only what a life issued itself: a later life journaling the abort of an
                # earlier life's lost id must not make the id after it look plausible.
                key = (comm, writing_life)
                self._max_in_life[key] = max(self._max_in_life.get(key, 0), plan)
            if event == "prepare":
                if (comm, plan) not in self.decisions:
                    self.prepared[(comm, plan)] = (job, activate_at)
            else:
                self.prepared.pop((comm, plan), None)
                self.decisions.setdefault((comm, plan), Decision(
                    comm, plan, event == "commit", activate_at, str(rec.get("reason", ""))))

    def close(self) -> None:
        self.sync()
        self._file.close()

    def _append(self, rec: dict[str, object]) -> None:
        # Flushed to the OS at once (a crash of the daemon alone loses nothing written); on disk
        # at the next sync(), before any message that depends on it is sent.
        self._file.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self._file.flush()
        self._unsynced = True

    @property
    def unsynced(self) -> bool:
        """Records were written since the last sync()."""
        return self._unsynced

    def sync(self) -> None:
        """Makes every record written so far durable (one fsync, skipped when there is none)."""
        if self._unsynced:
            if self.fsync:
                os.fsync(self._file.fileno())
            self._unsynced = False

    def next_plan_id(self, comm: int) -> int:
        return max(self.max_plan.get(comm, 0), (self.life - 1) << LIFE_SHIFT) + 1

    def possible_orphan(self, comm: int, plan: int) -> bool:
        """Whether an earlier life may have sent PREPARE(plan) for comm without journaling it:
        the one id per communicator and life that can be missing (see the module doc)."""
        life = life_of(plan) if plan >= 1 else 0
        if not 1 <= life < self.life:
            return False
        highest = self._max_in_life.get((comm, life))
        return plan == (highest if highest is not None else (life - 1) << LIFE_SHIFT) + 1

    def note_plan_seen(self, comm: int, plan: int) -> None:
        """A plan id the daemon did not issue in this life (an ACK after a restart)."""
        self.max_plan[comm] = max(self.max_plan.get(comm, 0), plan)

    def record_prepare(self, job: str, comm: int, plan: int, activate_at: int,
                       reason: str) -> None:
        self._append({"schema": SCHEMA, "event": "prepare", "job": job, "comm": comm,
                      "plan": plan, "activate_at": activate_at, "reason": reason,
                      "time": time.time()})
        self.max_plan[comm] = max(self.max_plan.get(comm, 0), plan)
        self.prepared[(comm, plan)] = (job, activate_at)

    def decide(self, job: str, comm: int, plan: int, committed: bool, activate_at: int,
               reason: str) -> Decision:
        """Records a decision (durable at the next sync()) and returns it; a plan decided before
        keeps its decision."""
        known = self.decisions.get((comm, plan))
        if known is not None:
            return known
        self._append({"schema": SCHEMA, "event": "commit" if committed else "abort", "job": job,
                      "comm": comm, "plan": plan, "activate_at": activate_at, "reason": reason,
                      "time": time.time()})
        d = Decision(comm, plan, committed, activate_at, reason)
        self.decisions[(comm, plan)] = d
        self.prepared.pop((comm, plan), None)
        self.max_plan[comm] = max(self.max_plan.get(comm, 0), plan)
        return d

    def last_commit(self, comm: int) -> Decision | None:
        """The newest decided plan of comm, when it was a commit (ranks may still be waiting to
        reach its activation point)."""
        decided = [d for (c, _), d in self.decisions.items() if c == comm]
        if not decided:
            return None
        last = max(decided, key=lambda d: d.plan)
        return last if last.committed else None

    def abort_orphans(self) -> int:
        """Aborts every plan prepared in a previous life and never decided (see module doc)."""
        orphans = list(self.prepared.items())
        for (comm, plan), (job, activate_at) in orphans:
            self.decide(job, comm, plan, False, activate_at,
                        "daemon restarted before deciding this plan")
        self.sync()
        return len(orphans)
