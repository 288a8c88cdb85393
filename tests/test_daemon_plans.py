"""Daemon end to end over real sockets, the plugin side played by DEALER peers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

pytest.importorskip("zmq")

from cclpilot.daemon.brain import Brain, CommInfo, Key, Observation, PlanProposal
from cclpilot.daemon.peer import Peer, run_daemon_process
from cclpilot.daemon.server import Daemon, DaemonConfig
from cclpilot.proto.messages import (
    Abort, Arm, Commit, Error, KeyReport, Measurements, Prepare, Rule, Stat, Welcome,
)

COMM = 0x1234_5678_9ABC_DEF0
RULE = Rule(coll=4, min_bytes=0, max_bytes=(1 << 64) - 1, n_nodes=-1, n_ranks=-1,
            num_pipe_ops=-1, arms=[Arm(algo=1, proto=2, n_channels=0, chunk_size=0)])


class ScriptedBrain(Brain):
    """Proposes the scripted plans one after another; records what it was told."""

    def __init__(self, plans: list[PlanProposal]) -> None:
        self.plans = list(plans)
        self.keys: list[Key] = []
        self.obs: list[Observation] = []
        self.outcomes: list[tuple[int, bool, str]] = []
        self.outcome_event = threading.Event()

    def on_key(self, key: Key, cost_table: tuple[tuple[float, ...], ...], first_call: int) -> None:
        self.keys.append(key)

    def tell(self, observations: Sequence[Observation]) -> None:
        self.obs.extend(observations)

    def ask(self) -> PlanProposal | None:
        return self.plans.pop(0) if self.plans else None

    def on_plan_outcome(self, plan_id: int, committed: bool, reason: str) -> None:
        self.outcomes.append((plan_id, committed, reason))
        self.outcome_event.set()

    def snapshot(self) -> dict[str, object]:
        return {"brain": "scripted", "outcomes": self.outcomes}


def make_daemon(tmp_path: Path, brain: Brain | None, **kw: object) -> Daemon:
    cfg = DaemonConfig(run_dir=tmp_path / "run", ipc_dir=tmp_path / "ipc", heartbeat_ms=200,
                       ack_timeout_ms=kw.pop("ack_timeout_ms", 1500),  # type: ignore[arg-type]
                       ask_interval_ms=20, brain_factory=(lambda info: brain) if brain else None,
                       **kw)  # type: ignore[arg-type]
    return Daemon(cfg).start()


def register(endpoint: str, n: int, comm: int = COMM) -> list[Peer]:
    peers = [Peer(endpoint) for _ in range(n)]
    for r, p in enumerate(peers):
        p.hello(comm, n, r, pid=1000 + r)
        w = p.recv()
        assert isinstance(w, Welcome) and w.comm == comm and w.features == ["measure", "plans"]
    return peers


def get_prepares(peers: list[Peer]) -> list[Prepare]:
    out = []
    for p in peers:
        m = p.recv()
        assert isinstance(m, Prepare), m
        out.append(m)
    return out


@pytest.fixture
def brain() -> ScriptedBrain:
    return ScriptedBrain([PlanProposal(rules=(RULE,), reason="try ring/simple")])


@pytest.fixture
def daemon(tmp_path: Path, brain: ScriptedBrain) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, brain)
    yield d
    d.stop()


def test_full_round_commits(daemon: Daemon, brain: ScriptedBrain, tmp_path: Path) -> None:
    peers = register(daemon.endpoint, 4)
    preps = get_prepares(peers)
    assert len({(p.plan, p.activate_at) for p in preps}) == 1
    assert preps[0].rules == [RULE]
    for p in peers:
        p.ack(COMM, preps[0].plan, True, calls=0, seq_hash=0xCBF29CE484222325)
    for p in peers:
        m = p.recv()
        assert isinstance(m, Commit) and m.plan == preps[0].plan
        assert m.activate_at == preps[0].activate_at
    # The brain hears of the commit only once every rank has run past the activation point:
    # samples before it still ran the old plan.
    assert not brain.outcome_event.wait(0.5)
    for p in peers[:3]:
        p.send(Measurements(comm=COMM, calls=preps[0].activate_at, dropped=0, stats=[]))
    assert not brain.outcome_event.wait(0.5)
    peers[3].send(Measurements(comm=COMM, calls=preps[0].activate_at + 1, dropped=0, stats=[]))
    assert brain.outcome_event.wait(5)
    assert brain.outcomes[0][:2] == (preps[0].plan, True)
    # The journal holds the decision; an ACK re-sent as the question gets the same answer.
    peers[2].ack(COMM, preps[0].plan, True, calls=5, seq_hash=1)
    again = peers[2].recv()
    assert isinstance(again, Commit) and again.activate_at == preps[0].activate_at
    lines = [json.loads(x) for x in (tmp_path / "run" / "decisions.jsonl").read_text().split("\n")
             if x]
    assert [x["event"] for x in lines] == ["life", "prepare", "commit"]


def test_refusal_aborts(daemon: Daemon, brain: ScriptedBrain) -> None:
    peers = register(daemon.endpoint, 4)
    preps = get_prepares(peers)
    peers[0].ack(COMM, preps[0].plan, True, 0, 7)
    peers[1].ack(COMM, preps[0].plan, False, 0, 7, reason="another plan is pending")
    for p in peers:
        m = p.recv()
        assert isinstance(m, Abort) and "rank 1 refused" in m.reason
    assert brain.outcome_event.wait(5)
    assert brain.outcomes[0][1] is False


def test_seq_hash_disagreement_freezes(daemon: Daemon, brain: ScriptedBrain) -> None:
    brain.plans.append(PlanProposal(rules=(), reason="second plan, must never be prepared"))
    peers = register(daemon.endpoint, 4)
    preps = get_prepares(peers)
    peers[0].ack(COMM, preps[0].plan, True, 10, 111)
    peers[1].ack(COMM, preps[0].plan, True, 10, 222)
    for p in peers:
        m = p.recv()
        assert isinstance(m, Abort) and "disagree" in m.reason
    st = daemon.comm_state(COMM)
    assert st is not None
    assert st.frozen is not None
    with pytest.raises(TimeoutError):  # frozen: the second plan is never prepared
        peers[0].recv(timeout=0.5)


def test_missing_ack_times_out(tmp_path: Path, brain: ScriptedBrain) -> None:
    d = make_daemon(tmp_path, brain, ack_timeout_ms=300)
    try:
        peers = register(d.endpoint, 4)
        preps = get_prepares(peers)
        for p in peers[:3]:
            p.ack(COMM, preps[0].plan, True, 0, 5)
        # The daemon re-sends PREPARE to the silent rank once, then gives up.
        m = peers[3].recv()
        assert isinstance(m, Prepare) and m.plan == preps[0].plan
        for p in peers:
            m = p.recv(timeout=3)
            assert isinstance(m, Abort) and "no ACK" in m.reason and "rank 3" in m.reason
    finally:
        d.stop()


def test_activation_point_follows_call_rate(tmp_path: Path) -> None:
    brain = ScriptedBrain([])
    d = make_daemon(tmp_path, brain)
    try:
        peers = register(d.endpoint, 2)
        import time
        for step in range(1, 6):
            for p in peers:
                p.send(Measurements(comm=COMM, calls=1000 * step, dropped=0, stats=[]))
            time.sleep(0.05)
        brain.plans.append(PlanProposal(rules=(RULE,), reason="now"))
        preps = get_prepares(peers)
        # ~20,000 calls/s: two round trips plus a 200 ms margin is thousands of calls ahead.
        assert preps[0].activate_at > 5000 + 0.2 * 10000
    finally:
        d.stop()


def test_keys_measurements_and_artifacts(tmp_path: Path) -> None:
    brain = ScriptedBrain([])
    d = make_daemon(tmp_path, brain)
    peers = register(d.endpoint, 2)
    cost = [[1.0, 2.0, -1.0]] * 7
    for p in peers:
        p.send(KeyReport(comm=COMM, coll=4, n_bytes=1 << 20, num_pipe_ops=1, call=0, cost=cost))
    hist = [0] * 48
    hist[10] = 4
    stat = dict(coll=4, n_bytes=1 << 20, algo=1, proto=2, n_channels=8, count=4, sum_ns=4000.0,
                sum_sq_ns=4e6, min_ns=900, max_ns=1100, hist=hist, untimed=0)
    for p in peers:
        p.send(Measurements(comm=COMM, calls=4, dropped=0, stats=[Stat(**stat)]))  # type: ignore[arg-type]
    stat2 = dict(stat, count=6, sum_ns=6000.0, sum_sq_ns=6e6, hist=[0] * 10 + [6] + [0] * 37)
    peers[0].send(Measurements(comm=COMM, calls=6, dropped=0, stats=[Stat(**stat2)]))  # type: ignore[arg-type]
    import time
    deadline = time.monotonic() + 5
    while sum(o.count for o in brain.obs) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    d.stop()
    assert brain.keys == [Key(4, 1 << 20, 1)]
    assert sum(o.count for o in brain.obs) == 10  # 4 + 4, then a difference of 2
    assert abs(sum(o.sum_ns for o in brain.obs) - 10000.0) < 1e-6
    assert all(o.key == Key(4, 1 << 20, 1) and not o.key_ambiguous for o in brain.obs)
    run = tmp_path / "run"
    doc = json.loads((run / "run.json").read_text())
    assert doc["schema"] == "cclpilot.live/1" and doc["hosts"] == ["node0"]
    # Reports are cumulative: one queued behind a newer one from the same sender is skipped
    # unread (counted as superseded), and nothing is lost.
    assert doc["stats"]["by_type"]["MEASUREMENTS"] + doc["stats"]["superseded"] == 3
    cdir = run / doc["comms"][0]["dir"]
    keys = [json.loads(x) for x in (cdir / "keys.jsonl").read_text().splitlines()]
    assert keys[0]["cost"][0] == [1.0, 2.0, -1.0] and len(keys) == 1
    meas = [json.loads(x) for x in (cdir / "measurements.jsonl").read_text().splitlines()]
    assert sum(o["count"] for m in meas for o in m["observations"]) == 10
    assert json.loads((cdir / "brain.json").read_text())["brain"] == "scripted"
    assert (run / "env.sh").read_text().startswith("export CCLPILOT_MODE=live\n")


def test_unknown_comm_gets_error(daemon: Daemon) -> None:
    p = Peer(daemon.endpoint)
    p.send(Measurements(comm=99, calls=1, dropped=0, stats=[]))
    m = p.recv()
    assert isinstance(m, Error) and m.code == "unknown_comm" and m.comm == 99


def test_restart_answers_identically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kill the daemon after its decision; the restarted one answers the waiting rank the same."""
    brain_mod = tmp_path / "scripted_brain_mod.py"
    brain_mod.write_text(
        "from cclpilot.daemon.brain import NullBrain, PlanProposal\n"
        "from cclpilot.proto.messages import Arm, Rule\n"
        "class B(NullBrain):\n"
        "    done = False\n"
        "    def ask(self):\n"
        "        if self.done: return None\n"
        "        self.done = True\n"
        "        return PlanProposal(rules=(Rule(coll=4, min_bytes=0, max_bytes=100, n_nodes=-1,"
        " n_ranks=-1, num_pipe_ops=-1, arms=[Arm(algo=0, proto=0, n_channels=0, "
        "chunk_size=0)]),), reason='scripted')\n"
        "def factory(info):\n    return B(info)\n")
    import os
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    run = tmp_path / "run"
    ipc = tmp_path / "ipc"
    args = ["--ipc-dir", str(ipc), "--brain", "scripted_brain_mod:factory"]
    dp = run_daemon_process(run, args)
    try:
        peers = register(dp.endpoint, 2)
        preps = get_prepares(peers)
        for p in peers:
            p.ack(COMM, preps[0].plan, True, 3, 42)
        first = [p.recv() for p in peers]
        assert all(isinstance(m, Commit) for m in first)
    finally:
        dp.kill()
    for p in peers:
        p.close()
    dp2 = run_daemon_process(run, ["--ipc-dir", str(ipc)])
    try:
        q = Peer(dp2.endpoint)
        q.ack(COMM, preps[0].plan, True, 3, 42)  # no HELLO: a waiting rank only asks
        again = q.recv()
        assert again == first[0]
        # A plan the new life never prepared is aborted, durably, and stays aborted.
        q.ack(COMM, preps[0].plan + 5, True, 3, 42)
        m = q.recv()
        assert isinstance(m, Abort)
    finally:
        dp2.stop()
    dp3 = run_daemon_process(run, ["--ipc-dir", str(ipc)])
    try:
        q = Peer(dp3.endpoint)
        q.ack(COMM, preps[0].plan + 5, True, 3, 42)
        assert isinstance(q.recv(), Abort)
    finally:
        dp3.stop()


def test_first_plan_waits_for_the_call_rate(daemon: Daemon) -> None:
    # Without a measured rate the activation point could only be min_lead_calls (32) ahead,
    # and a job making thousands of calls a second passes that before the PREPARE arrives.
    rate = 4000.0
    peers = register(daemon.endpoint, 2)
    t0 = time.monotonic()
    prep: Prepare | None = None
    calls = 0
    while prep is None and time.monotonic() - t0 < 5.0:
        calls = int(rate * (time.monotonic() - t0))
        for p in peers:
            p.send(Measurements(comm=COMM, calls=calls, dropped=0, stats=[]))
        try:
            m = peers[0].recv(timeout=0.05)
        except TimeoutError:
            continue
        if isinstance(m, Prepare):
            prep = m
    assert prep is not None, "no PREPARE within 5 s"
    calls_now = int(rate * (time.monotonic() - t0))
    # Two round trips plus the 200 ms margin at the measured rate: hundreds of calls ahead.
    assert prep.activate_at >= calls_now + 0.1 * rate, (prep.activate_at, calls_now)


def test_first_plan_of_a_silent_job_comes_after_the_grace(daemon: Daemon) -> None:
    t0 = time.monotonic()
    peers = register(daemon.endpoint, 2)
    prep = get_prepares(peers)[0]
    grace = 3 * daemon.config.report_ms / 1000.0
    assert time.monotonic() - t0 >= grace
    assert prep.activate_at == daemon.config.min_lead_calls
