"""The run artifacts directory (format: docs/live-artifacts.md, schema "cclpilot.live/1").

Everything the replay tool needs to reconstruct a live run: the context (run.json), and per
communicator the keys with NCCL's cost tables, every plan with its reason, every decision (the
journal, run-wide) and the measurement summaries the brain was told, over time. Files are JSON
lines, appended as events happen, so a crashed run still leaves a readable record.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO

from cclpilot import __version__
from cclpilot.daemon.brain import CommInfo, Key, Observation
from cclpilot.proto.messages import Rule
from cclpilot.proto.version import PROTOCOL_VERSION

SCHEMA = "cclpilot.live/1"


def comm_dir_name(job: str, comm: int) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in job)[:64]
    return f"{safe}-{comm:016x}"


# One observation of measurements.jsonl, in measurement_record()'s field order.
_OBS_JSON = ('{"coll":%d,"n_bytes":%d,"num_pipe_ops":%d,"algo":%d,"proto":%d,"n_channels":%d,'
             '"count":%d,"sum_ns":%r,"sum_sq_ns":%r,"min_ns":%d,"max_ns":%d,"untimed":%d,'
             '"ranks":%d,"calls":%d,"key_ambiguous":%s}')


def measurement_record(o: Observation) -> dict[str, object]:
    """One observation as measurements.jsonl holds it (docs/live-artifacts.md)."""
    return {"coll": o.key.coll, "n_bytes": o.key.n_bytes, "num_pipe_ops": o.key.num_pipe_ops,
            "algo": o.arm.algo, "proto": o.arm.proto, "n_channels": o.arm.n_channels,
            "count": o.count, "sum_ns": o.sum_ns, "sum_sq_ns": o.sum_sq_ns, "min_ns": o.min_ns,
            "max_ns": o.max_ns, "untimed": o.untimed, "ranks": o.ranks, "calls": o.calls,
            "key_ambiguous": o.key_ambiguous}


class RunArtifacts:
    """Writer of one run directory. Used from the daemon's loop thread only."""

    def __init__(self, run_dir: Path, settings: dict[str, object], seed: int) -> None:
        self.run_dir = run_dir
        self.settings = settings
        self.seed = seed
        self.started = time.time()
        self.hosts: set[str] = set()
        self.comms: dict[int, dict[str, object]] = {}
        self._files: dict[tuple[int, str], IO[str]] = {}
        self._comm_dirs: dict[int, Path] = {}
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "comms").mkdir(exist_ok=True)
        self.write_run_json()

    def write_run_json(self, extra: dict[str, object] | None = None) -> None:
        doc: dict[str, object] = {
            "schema": SCHEMA,
            "cclpilot_version": __version__,
            "protocol_version": f"{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}",
            "python": sys.version.split()[0],
            "daemon_host": platform.node(),
            "started": self.started,
            "seed": self.seed,
            "settings": self.settings,
            "hosts": sorted(self.hosts),
            "comms": list(self.comms.values()),
        }
        if extra:
            doc.update(extra)
        tmp = self.run_dir / "run.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.run_dir / "run.json")  # readers never see half a file

    def _dir(self, job: str, comm: int) -> Path:
        d = self._comm_dirs.get(comm)
        if d is None:
            d = self.run_dir / "comms" / comm_dir_name(job, comm)
            d.mkdir(parents=True, exist_ok=True)
            self._comm_dirs[comm] = d
        return d

    def _file(self, job: str, comm: int, name: str) -> IO[str]:
        f = self._files.get((comm, name))
        if f is None:
            f = open(self._dir(job, comm) / name, "a", encoding="utf-8", buffering=1)
            self._files[(comm, name)] = f
        return f

    def _append(self, job: str, comm: int, name: str, rec: dict[str, object]) -> None:
        f = self._file(job, comm, name)
        rec = {"schema": SCHEMA, "time": time.time(), **rec}
        f.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def comm_complete(self, info: CommInfo) -> None:
        self.hosts.update(info.hosts)
        doc: dict[str, object] = {**asdict(info), "hosts": list(info.hosts),
                                  "dir": f"comms/{comm_dir_name(info.job, info.comm)}"}
        self.comms[info.comm] = doc
        (self._dir(info.job, info.comm) / "comm.json").write_text(
            json.dumps({"schema": SCHEMA, **doc}, indent=2) + "\n", encoding="utf-8")
        self.write_run_json()

    def key(self, job: str, comm: int, key: Key, cost: tuple[tuple[float, ...], ...],
            first_call: int) -> None:
        self._append(job, comm, "keys.jsonl", {
            "coll": key.coll, "n_bytes": key.n_bytes, "num_pipe_ops": key.num_pipe_ops,
            "first_call": first_call, "cost": [list(r) for r in cost]})

    def plan(self, job: str, comm: int, plan: int, activate_at: int, rules: tuple[Rule, ...],
             reason: str) -> None:
        self._append(job, comm, "plans.jsonl", {
            "plan": plan, "activate_at": activate_at, "reason": reason,
            "rules": [r.model_dump(mode="json") for r in rules]})

    def decision(self, job: str, comm: int, plan: int, committed: bool, activate_at: int,
                 reason: str) -> None:
        self._append(job, comm, "decisions.jsonl", {
            "event": "commit" if committed else "abort", "plan": plan,
            "activate_at": activate_at, "reason": reason})

    def event(self, job: str, comm: int, kind: str, detail: dict[str, object]) -> None:
        """Anything else worth replaying: freezes, absent ranks."""
        self._append(job, comm, "events.jsonl", {"event": kind, **detail})

    def measurements(self, job: str, comm: int, obs: list[Observation]) -> None:
        # Written by hand: at a thousand ranks this is ~10,000 rows a second, and json.dumps of
        # a dict per row cost three times as much. Every value is an int, a finite float (the
        # protocol rejects NaN and infinities) or a bool, whose JSON spellings are below;
        # tests/test_daemon_summaries.py checks the line parses to measurement_record()'s dict.
        rows = ",".join([_OBS_JSON % (
            o.key.coll, o.key.n_bytes, o.key.num_pipe_ops, o.arm.algo, o.arm.proto,
            o.arm.n_channels, o.count, float(o.sum_ns), float(o.sum_sq_ns), o.min_ns, o.max_ns,
            o.untimed, o.ranks, o.calls, "true" if o.key_ambiguous else "false") for o in obs])
        f = self._file(job, comm, "measurements.jsonl")
        f.write('{"schema":"%s","time":%r,"observations":[%s]}\n' % (SCHEMA, time.time(), rows))

    def brain_snapshot(self, job: str, comm: int, snap: dict[str, object]) -> None:
        path = self._dir(job, comm) / "brain.json"
        path.write_text(json.dumps({"schema": SCHEMA, **snap}, indent=2, default=str) + "\n",
                        encoding="utf-8")

    def close(self, stats: dict[str, object]) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self.write_run_json({"stopped": time.time(), "stats": stats})
