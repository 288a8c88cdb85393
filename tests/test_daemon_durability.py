"""Journal recovery from a torn last line, and the CURVE secret key file's protection."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from cclpilot.daemon.journal import Journal
from cclpilot.daemon.security import generate_curve_keys, read_secret_key, write_secret_key


def test_torn_last_line_is_cut_so_later_restarts_still_load(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    j = Journal(path, fsync=False)
    j.record_prepare("job", 7, 1, 100, "first")
    j.decide("job", 7, 1, True, 100, "all ranks prepared")
    j.close()
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"schema":"cclpilot.live/1","event":"prep')  # a crash in mid-write
    again = Journal(path, fsync=False)  # first restart: drops the torn tail
    again.record_prepare("job", 7, 2, 200, "second")
    again.decide("job", 7, 2, False, 200, "a rank refused")
    again.close()
    third = Journal(path, fsync=False)  # second restart: every record readable
    assert third.decisions[(7, 1)].committed and not third.decisions[(7, 2)].committed
    assert third.max_plan[7] == 2
    third.close()


def test_secret_key_is_private_even_over_an_old_lax_file(tmp_path: Path) -> None:
    old = tmp_path / "curve_secret.key"
    old.write_text("stale\n")
    os.chmod(old, 0o644)
    keys = generate_curve_keys()
    path = write_secret_key(keys, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secret_key(path).public == keys.public


def test_secret_key_never_written_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "curve_secret.key").symlink_to(target)
    with pytest.raises(OSError):
        write_secret_key(generate_curve_keys(), tmp_path)
    assert target.read_text() == ""


# ---- hostile numbers and plan attribution (review findings) -----------------------------------

from cclpilot.daemon.brain import PlanProposal  # noqa: E402
from cclpilot.daemon.registry import CommState, RankReg  # noqa: E402
from cclpilot.proto.messages import Abort, Commit, Measurements  # noqa: E402

from test_daemon_plans import COMM, RULE, ScriptedBrain, get_prepares, make_daemon, register  # noqa: E402,I001

U64_MAX = (1 << 64) - 1


def test_wild_plan_id_from_a_stranger_is_answered_without_touching_the_journal(
        tmp_path: Path) -> None:
    brain = ScriptedBrain([PlanProposal(rules=(RULE,), reason="later")])
    d = make_daemon(tmp_path, brain)
    try:
        from cclpilot.daemon.peer import Peer
        stranger = Peer(d.endpoint)
        stranger.ack(COMM, U64_MAX, True, calls=5, seq_hash=1)
        assert isinstance(stranger.recv(), Abort)
        lines = (tmp_path / "run" / "decisions.jsonl").read_text().splitlines()
        assert [json.loads(x)["event"] for x in lines] == ["life"]   # only the daemon's start
        # The daemon is unharmed: a normal round still commits, with plan id 1.
        peers = register(d.endpoint, 2)
        preps = get_prepares(peers)
        assert preps[0].plan == 1
        for p in peers:
            p.ack(COMM, 1, True, calls=0, seq_hash=0xCBF29CE484222325)
        assert all(isinstance(p.recv(), Commit) for p in peers)
    finally:
        d.stop()


def test_call_counts_at_the_end_of_u64_refuse_the_proposal_not_the_daemon(tmp_path: Path) -> None:
    brain = ScriptedBrain([])
    d = make_daemon(tmp_path, brain)
    try:
        peers = register(d.endpoint, 2)
        for p in peers:
            p.send(Measurements(comm=COMM, calls=U64_MAX, dropped=0, stats=[]))
        import time
        time.sleep(0.2)
        brain.plans.append(PlanProposal(rules=(RULE,), reason="cannot activate"))
        assert brain.outcome_event.wait(5)
        plan, committed, reason = brain.outcomes[0]
        assert (plan, committed) == (0, False) and "not prepared" in reason
        lines = (tmp_path / "run" / "decisions.jsonl").read_text().splitlines()
        assert [json.loads(x)["event"] for x in lines] == ["life"]   # only the daemon's start
        assert d._thread is not None and d._thread.is_alive()
    finally:
        d.stop()


def test_samples_straddling_a_plan_change_are_not_credited() -> None:
    st = CommState("job", COMM, 1, 1, 0)
    reg = RankReg(("r", 0), b"id", 0, "h", 1, frozenset(), 1)
    st.slots[reg.slot] = reg
    key = (4, 1 << 20, 1, 2, 8)
    st.absorb_raw(reg, key, (10, 1000.0, 1e5, 90, 110, 0))
    assert st.agg[key].count == 10
    st.agg.clear()
    st.activating = (1, 100, "r")
    st.absorb_raw(reg, key, (15, 1500.0, 1.5e5, 90, 110, 0))  # old and new plan mixed
    assert not st.agg
    st.activating = None
    st.absorb_raw(reg, key, (18, 1800.0, 1.8e5, 90, 110, 0))
    assert st.agg[key].count == 3  # only what ran after the activation


# ---- overload: cumulative reports superseded, plan answers first ------------------------------

def test_queued_reports_of_one_sender_collapse_to_the_newest(tmp_path: Path) -> None:
    from cclpilot.daemon.server import Daemon, DaemonConfig, _measurement_owner, _urgent
    from cclpilot.proto.codec import encode
    from cclpilot.proto.messages import Ack, Hello

    d = Daemon(DaemonConfig(run_dir=tmp_path / "run", ipc_dir=tmp_path / "ipc"))  # not started
    try:
        hello = Hello(version=[1, 0], features=["measure", "plans"], job="j", comm=COMM,
                      n_ranks=2, n_nodes=1, rank=0, host="h", pid=1, nccl_version=0,
                      tuner_abi=6, profiler_abi=6)
        reports = [[b"peer-a", encode(Measurements(comm=COMM, calls=c, dropped=0, stats=[]))]
                   for c in (10, 20, 30)]
        other = [b"peer-b", encode(Measurements(comm=COMM, calls=5, dropped=0, stats=[]))]
        ack = [b"peer-a", encode(Ack(comm=COMM, plan=1, ok=True, calls=30, seq_hash=0,
                                     reason=""))]
        assert _urgent(ack) and not _urgent(reports[0])
        assert _measurement_owner(reports[0]) == _measurement_owner(reports[2])
        assert _measurement_owner(reports[0]) != _measurement_owner(other)
        assert _measurement_owner(ack) is None
        d._on_batch([[b"peer-a", encode(hello)]])
        d._on_batch([*reports, other])
        st = d.comms[COMM]
        assert st.slots[("r", 0)].last_calls == 30  # the newest report was the one read
        assert d.stats.superseded == 2 and d.stats.received == 5
    finally:
        d._shutdown()


def test_quiet_connections_without_registrations_are_forgotten(tmp_path: Path) -> None:
    import time

    from cclpilot.daemon.registry import Peer as PeerState
    from cclpilot.daemon.server import Daemon, DaemonConfig

    d = Daemon(DaemonConfig(run_dir=tmp_path / "run", ipc_dir=tmp_path / "ipc"))  # not started
    try:
        now = time.monotonic()
        d.peers[b"old"] = PeerState(b"old", now - 120.0)
        d.peers[b"recent"] = PeerState(b"recent", now - 1.0)
        d.peers[b"registered"] = PeerState(b"registered", now - 120.0, regs={COMM})
        d._timers(now)
        assert set(d.peers) == {b"recent", b"registered"}
    finally:
        d._shutdown()


def test_decisions_leave_only_after_one_fsync_covers_them(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Group commit: every decision of a loop phase is written at once, one fsync makes them all
    # durable, and only then does any COMMIT or ABORT leave (a restarted daemon must be able
    # to stand by each one).
    from cclpilot.daemon.server import Daemon, DaemonConfig

    d = Daemon(DaemonConfig(run_dir=tmp_path / "run", ipc_dir=tmp_path / "ipc"))  # not started
    events: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(d, "_send_bytes", lambda ident, data: events.append(f"send {ident!r}"))
    try:
        for plan in range(1, 6):
            dec = d.journal.decide("job", COMM, plan, plan % 2 == 1, 100 * plan, "test")
            d._send_decision(b"r%d" % plan, COMM, plan, dec.committed, dec.activate_at,
                             dec.reason)
        assert events == []                       # nothing left before the sync
        assert d.journal.unsynced
        d._flush_outbox()
        assert events == ["fsync"] + [f"send {b'r%d' % p!r}" for p in range(1, 6)]
        assert not d.journal.unsynced
        d._flush_outbox()                         # nothing queued: no fsync, no send
        assert events.count("fsync") == 1
        # An answer from the journal (an earlier phase's decision) also waits for a flush.
        d._send_decision(b"late", COMM, 1, True, 100, "test")
        assert events[-1] != "send b'late'"
        d._flush_outbox()
        assert events[-1] == "send b'late'" and events.count("fsync") == 1  # already durable
    finally:
        d._shutdown()
    again = Journal(tmp_path / "run" / "decisions.jsonl", fsync=False)
    assert sorted(p for (_, p) in again.decisions) == [1, 2, 3, 4, 5]


def test_every_start_is_a_new_life_with_its_own_plan_ids(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    first = Journal(path, fsync=False)
    assert first.life == 1 and first.next_plan_id(7) == 1
    first.record_prepare("j", 7, 1, 100, "a")
    first.decide("j", 7, 1, True, 100, "ok")
    first.close()
    second = Journal(path, fsync=False)
    assert second.life == 2
    assert second.next_plan_id(7) == (1 << 32) + 1      # after every id of life 1
    assert second.next_plan_id(8) == (1 << 32) + 1      # a communicator new to the journal too
    second.close()
    # A journal written before life records existed counts as life 1.
    legacy = tmp_path / "legacy.jsonl"
    legacy.write_text(json.dumps({"schema": "cclpilot.live/1", "event": "prepare", "job": "j",
                                  "comm": 7, "plan": 5, "activate_at": 9, "reason": "r",
                                  "time": 0.0}) + "\n")
    assert Journal(legacy, fsync=False).next_plan_id(7) == (1 << 32) + 1


def test_possible_orphans_are_one_id_per_communicator_and_earlier_life(tmp_path: Path) -> None:
    # Life 1 journaled plans 1..3 of comm 7 and nothing of comm 8; PREPARE(4) of comm 7 and
    # PREPARE(1) of comm 8 may have left without their records reaching the disk.
    path = tmp_path / "decisions.jsonl"
    j = Journal(path, fsync=False)
    for plan in (1, 2, 3):
        j.record_prepare("j", 7, plan, 10 * plan, "r")
        j.decide("j", 7, plan, True, 10 * plan, "ok")
    j.close()
    j = Journal(path, fsync=False)          # life 2
    assert j.possible_orphan(7, 4) and j.possible_orphan(8, 1)
    for plan in (1, 3, 5, 1 << 20):          # known, or never sent by life 1
        assert not j.possible_orphan(7, plan)
    assert not j.possible_orphan(8, 2)
    for plan in (0, (1 << 32) + 1, (1 << 64) - 1):   # not an id, this life's, a wild one
        assert not j.possible_orphan(7, plan)
    # Journaling the orphan's abort does not make the next id plausible (the bound holds).
    j.note_plan_seen(7, 4)
    j.decide("j", 7, 4, False, 40, "unknown plan")
    assert not j.possible_orphan(7, 5)
    assert j.next_plan_id(7) == (1 << 32) + 1
    j.close()
    j = Journal(path, fsync=False)          # life 3: life 2 issued nothing for comm 7
    assert j.possible_orphan(7, (1 << 32) + 1) and j.possible_orphan(7, 5) is False
    assert j.next_plan_id(7) == (2 << 32) + 1
