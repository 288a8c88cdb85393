"""A daemon restarted on its run directory holds new plans until its last commit is in effect."""

from __future__ import annotations

import json
import time
from pathlib import Path

from cclpilot.daemon.brain import PlanProposal
from cclpilot.daemon.journal import Journal
from cclpilot.daemon.peer import Peer
from cclpilot.proto.codec import decode
from cclpilot.proto.messages import Abort, Measurements, Prepare

from test_daemon_plans import COMM, RULE, ScriptedBrain, make_daemon, register  # noqa: I001


def _no_prepare_queued(p: Peer) -> bool:
    while p.sock.poll(0):
        if isinstance(decode(p.sock.recv()), Prepare):
            return False
    return True


def test_restart_waits_for_the_journaled_commit_to_take_effect(tmp_path: Path) -> None:
    # An earlier life committed plan 3 for call 1000; its ranks may still be short of it.
    (tmp_path / "run").mkdir()
    j = Journal(tmp_path / "run" / "decisions.jsonl", fsync=False)
    j.record_prepare("job", COMM, 3, 1000, "earlier life")
    j.decide("job", COMM, 3, True, 1000, "all ranks prepared")
    j.close()
    brain = ScriptedBrain([PlanProposal(rules=(RULE,), reason="next plan")])
    d = make_daemon(tmp_path, brain)
    try:
        peers = register(d.endpoint, 2)
        st = d.comm_state(COMM)
        assert st is not None and st.activating == (3, 1000, "all ranks prepared")
        # Rank 0 is past the activation point, rank 1 is not: no PREPARE may go out (rank 1
        # would refuse it while plan 3 is pending there).
        peers[0].send(Measurements(comm=COMM, calls=1200, dropped=0, stats=[]))
        peers[1].send(Measurements(comm=COMM, calls=900, dropped=0, stats=[]))
        time.sleep(0.3)
        assert st.activating is not None
        assert all(_no_prepare_queued(p) for p in peers)
        # Once every rank reported reaching it, plans flow again, and the new brain hears
        # nothing about a plan it never proposed.
        peers[1].send(Measurements(comm=COMM, calls=1001, dropped=0, stats=[]))
        prepares = [p.recv(5.0) for p in peers]
        # The journal above was the daemon's first life, this daemon its second: its plan ids
        # start after 2^32 (journal.py: no two lives share an id).
        assert all(isinstance(m, Prepare) and m.plan == (1 << 32) + 1 for m in prepares), prepares
        assert st.activating is None
        assert all(plan != 3 for plan, _, _ in brain.outcomes)
    finally:
        d.stop()


def test_a_lost_prepare_of_an_earlier_life_is_aborted_durably(tmp_path: Path) -> None:
    # Life 1 journaled plans 1..3 and then (say) sent PREPARE(4) and died before its record
    # reached the disk. A rank holding plan 4 asks about it: the restarted daemon aborts it and
    # journals the abort; an id no earlier life can have sent is answered without the disk.
    (tmp_path / "run").mkdir()
    j = Journal(tmp_path / "run" / "decisions.jsonl", fsync=False)
    for plan in (1, 2, 3):
        j.record_prepare("job", COMM, plan, 100 * plan, "earlier life")
        j.decide("job", COMM, plan, False, 100 * plan, "aborted")
    j.close()
    d = make_daemon(tmp_path, ScriptedBrain([]))
    try:
        peers = register(d.endpoint, 2)
        peers[0].ack(COMM, 4, True, calls=350, seq_hash=1)
        m = peers[0].recv()
        assert isinstance(m, Abort) and m.plan == 4
        peers[0].ack(COMM, 6, True, calls=350, seq_hash=1)
        m = peers[0].recv()
        assert isinstance(m, Abort) and m.plan == 6
    finally:
        d.stop()
    events = [json.loads(x) for x in
              (tmp_path / "run" / "decisions.jsonl").read_text().splitlines()]
    journaled = [(e["event"], e.get("plan")) for e in events if e["event"] != "prepare"]
    assert ("abort", 4) in journaled and ("abort", 6) not in journaled
    assert [e["life"] for e in events if e["event"] == "life"] == [1, 2]
