"""A daemon restarted on its run directory holds new plans until its last commit is in effect."""

from __future__ import annotations

import time
from pathlib import Path

from cclpilot.daemon.brain import PlanProposal
from cclpilot.daemon.journal import Journal
from cclpilot.daemon.peer import Peer
from cclpilot.proto.codec import decode
from cclpilot.proto.messages import Measurements, Prepare

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
        assert all(isinstance(m, Prepare) and m.plan == 4 for m in prepares), prepares
        assert st.activating is None
        assert all(plan != 3 for plan, _, _ in brain.outcomes)
    finally:
        d.stop()
