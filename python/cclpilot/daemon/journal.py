"""The durable journal of plan decisions: append-only JSON lines, fsync'ed before any send.

A rank that reached a plan's activation point waits, asking again with its ACK, until it learns
the decision. If the daemon dies between deciding and sending, or after sending to some ranks
only, the restarted daemon must give every rank the same answer, so a decision is on disk before
the first COMMIT or ABORT leaves. Records are written at once and made durable by sync(): the
daemon holds every message that depends on a record until the next sync() (group commit, one
fsync for all the decisions of a loop phase; see Daemon._flush_outbox). PREPAREs are journaled too (before they are sent), so that a
restarted daemon never reuses a plan id, and so that a plan that was prepared but never decided
is aborted on restart: no rank can have received its COMMIT, because that would be on disk.

Line format (docs/live-artifacts.md, "decisions.jsonl"): one JSON object per line with
``schema``, ``event`` ("prepare" | "commit" | "abort"), ``job``, ``comm``, ``plan``,
``activate_at``, ``reason``, ``time`` (Unix seconds). A torn last line (crash mid-write) is
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
        self._load()
        self._file: IO[str] = open(path, "a", encoding="utf-8")
        self._unsynced = False

    def _load(self) -> None:
        if not self.path.exists():
            return
        text = self.path.read_text(encoding="utf-8")
        lines = text.split("\n")
        good_end = 0  # bytes up to the end of the last complete record
        offset = 0
        for i, line in enumerate(lines):
            offset += len(line.encode("utf-8")) + (1 if i < len(lines) - 1 else 0)
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
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
            self.max_plan[comm] = max(self.max_plan.get(comm, 0), plan)
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
        return self.max_plan.get(comm, 0) + 1

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
