"""Live loop under faults, with real processes: simulated ranks (the real plugin in live mode)
against a real daemon process, with the daemon absent, killed mid-commit and restarted, slowed,
or talking through a relay that drops, delays and corrupts messages in both directions.

In every case the multi-rank runner checks every collective instance for a cross-rank mismatch
(it raises on the first), the job must complete, and no collective may be held back longer than
the configured bounds (CCLPILOT_CONNECT_WAIT_MS at start, CCLPILOT_COMMIT_WAIT_MS at a plan
boundary) plus the simulator's own per-call cost.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cclpilot.daemon.peer import DaemonProcess, run_daemon_process
from cclpilot.sim.chaos import ChaosRelay, ChaosSettings
from cclpilot.sim.clusters import cluster
from cclpilot.sim.runner import JobResult, JobSpec, TruthSpec, run_job
from cclpilot.sim.workloads import workload_preset

CLUSTER = "a100-2x4"
STEPS = 120
CONNECT_WAIT_MS = 200
COMMIT_WAIT_MS = 500
# What one simulated collective call may take on a loaded 2-core CI machine, without any wait
# in the plugin (Python harness, cffi, profiler events).
HARNESS_SLACK_S = 1.5
DAEMON_ARGS = ["--report-ms", "50", "--heartbeat-ms", "200", "--ack-timeout-ms", "1000",
               "--min-lead-calls", "16", "--no-fsync"]


def _spec(plugin: Path, env: dict[str, str], steps: int = STEPS,
          commit_wait_ms: int = COMMIT_WAIT_MS) -> JobSpec:
    c = cluster(CLUSTER)
    wl = workload_preset("ddp-gpt-1.3b-bf16").resolved(c.topology.n_ranks, c.topology.n_nodes)
    full = {"CCLPILOT_MODE": "live", "CCLPILOT_JOB_ID": "faults",
            "CCLPILOT_CONNECT_WAIT_MS": str(CONNECT_WAIT_MS),
            "CCLPILOT_COMMIT_WAIT_MS": str(commit_wait_ms), **env}
    return JobSpec(TruthSpec(CLUSTER), c.topology, wl, steps, 7, full, str(plugin),
                   ranks_per_process=4, lockstep=True)


def _check_bounds(job: JobResult, commit_wait_ms: int = COMMIT_WAIT_MS) -> None:
    assert not job.violations, job.violations
    bound = (CONNECT_WAIT_MS + commit_wait_ms) / 1000.0 + HARNESS_SLACK_S
    assert job.max_call_s <= bound, f"a collective was held {job.max_call_s:.2f} s (> {bound} s)"


def _decisions(run_dir: Path) -> list[dict[str, object]]:
    path = run_dir / "decisions.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture
def ipc_dir(tmp_path: Path) -> Iterator[Path]:
    # ipc socket paths are limited to ~100 bytes: pytest's tmp paths can be longer.
    d = Path(f"/tmp/cclpilot-faults-{os.getpid()}-{time.monotonic_ns() % 10**9}")
    d.mkdir(mode=0o700)
    yield d
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


def _daemon(tmp_path: Path, ipc_dir: Path, extra: list[str] | None = None) -> DaemonProcess:
    return run_daemon_process(tmp_path / "daemon", ["--ipc-dir", str(ipc_dir), *DAEMON_ARGS,
                                                    *(extra or [])])


def test_daemon_absent_at_start(tmp_env: Path, plugin_library: Path, ipc_dir: Path) -> None:
    live = run_job(_spec(plugin_library, {"CCLPILOT_DAEMON": f"ipc://{ipc_dir}/nobody.sock"},
                         steps=20))
    _check_bounds(live)
    observe = run_job(_spec(plugin_library, {"CCLPILOT_MODE": "observe"}, steps=20))
    # Without a daemon the job runs on NCCL's own choices, collective for collective.
    assert live.choice_counts == observe.choice_counts
    assert np.allclose(live.step_comm_us, observe.step_comm_us)


# A rank waiting at a plan boundary asks again until CCLPILOT_COMMIT_WAIT_MS; the restarted
# daemon answers from its journal, so the wait must cover a daemon restart (a Python start).
RESTART_COMMIT_WAIT_MS = 5000


def test_daemon_killed_mid_commit_and_restarted(tmp_env: Path, plugin_library: Path,
                                                ipc_dir: Path) -> None:
    daemon = _daemon(tmp_env, ipc_dir)
    result: dict[str, JobResult] = {}
    errors: list[BaseException] = []

    def job() -> None:
        try:
            result["job"] = run_job(_spec(plugin_library, {"CCLPILOT_DAEMON": daemon.endpoint},
                                          steps=200, commit_wait_ms=RESTART_COMMIT_WAIT_MS))
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    t = threading.Thread(target=job)
    t.start()
    killed_at: int | None = None
    try:
        # Kill the daemon right after it journaled a PREPARE (the round is in flight: some
        # ranks may have ACKed, none or some may hold a COMMIT), then restart it on the same
        # journal and socket.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and t.is_alive():
            events = _decisions(tmp_env / "daemon")
            prepares = [e for e in events if e["event"] == "prepare"]
            if len(prepares) >= 2:
                killed_at = len(events)
                os.kill(daemon.proc.pid, signal.SIGKILL)
                daemon.proc.wait(10)
                break
            time.sleep(0.005)
        assert killed_at is not None, "the daemon never prepared a second plan"
        time.sleep(0.3)
        daemon = _daemon(tmp_env, ipc_dir)
        t.join(300)
    finally:
        daemon.stop()
    if errors:
        raise errors[0]
    assert not t.is_alive()
    _check_bounds(result["job"], RESTART_COMMIT_WAIT_MS)
    events = _decisions(tmp_env / "daemon")
    assert len(events) > killed_at, "the restarted daemon carried on from its journal"
    plans = {int(str(e["plan"])) for e in events if e["event"] == "prepare"}
    decided = {int(str(e["plan"])) for e in events if e["event"] in ("commit", "abort")}
    assert plans <= decided, "every prepared plan was decided, before or after the restart"


@pytest.mark.parametrize("name,settings", [
    ("slowed", ChaosSettings(delay_prob=1.0, delay_ms=(20.0, 150.0), seed=1)),
    ("dropped+delayed", ChaosSettings(drop=0.05, delay_prob=0.3, delay_ms=(1.0, 80.0), seed=2)),
    ("malformed both ways", ChaosSettings(garbage=0.05, seed=3)),
])
def test_unreliable_path_to_the_daemon(tmp_env: Path, plugin_library: Path, ipc_dir: Path,
                                       name: str, settings: ChaosSettings) -> None:
    daemon = _daemon(tmp_env, ipc_dir)
    front = f"ipc://{ipc_dir}/relay.sock"
    try:
        with ChaosRelay(front, daemon.endpoint, settings) as relay:
            job = run_job(_spec(plugin_library, {"CCLPILOT_DAEMON": front}))
            counters = relay.counters
    finally:
        daemon.stop()
    _check_bounds(job)
    assert counters.forwarded > 0
    if settings.garbage:
        assert counters.garbage > 0
        log = (tmp_env / "daemon" / "daemon.log").read_text()
        assert "malformed" in log or "rejected" in log or "bad" in log, log[-2000:]
    if settings.drop:
        assert counters.dropped > 0
