"""Protocol 1.1's packed_stats: who gets it, and what the daemon does with packed reports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cclpilot.daemon.ingest import load_native_ingest
from cclpilot.daemon.peer import Peer
from cclpilot.daemon.server import Daemon, DaemonConfig
from cclpilot.proto.messages import (
    HIST_BUCKETS, Measurements, MeasurementsPacked, PackedStat, Stat, Welcome)

COMM = 0x5EED_0000_0000_0001
ALL = ("measure", "plans", "packed_stats")


def _stat(count: int) -> Stat:
    hist = [0] * HIST_BUCKETS
    hist[14] = count
    return Stat(coll=4, n_bytes=1 << 20, algo=1, proto=2, n_channels=8, count=count,
                sum_ns=2e4 * count, sum_sq_ns=4e8 * count, min_ns=16384, max_ns=30000,
                hist=hist, untimed=0)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def _start(tmp_path: Path, started: list[Daemon], name: str, **kw: object) -> Daemon:
    d = Daemon(DaemonConfig(run_dir=tmp_path / name, ipc_dir=tmp_path / f"{name}-ipc",
                            fsync=False, **kw)).start()  # type: ignore[arg-type]
    started.append(d)
    return d


def _granted(d: Daemon, offer: tuple[str, ...]) -> list[str]:
    p = Peer(d.endpoint)
    try:
        p.hello(COMM + len(offer), 1, 0, features=offer)
        w = p.recv()
        assert isinstance(w, Welcome)
        return list(w.features)
    finally:
        p.close()


def test_granted_only_with_the_native_reader_and_not_when_refused(
        tmp_path: Path, daemon_factory: list[Daemon]) -> None:
    if load_native_ingest() is None:
        pytest.skip("native ingestion library not built")
    assert _granted(_start(tmp_path, daemon_factory, "native"), ALL) == list(ALL)
    assert _granted(_start(tmp_path, daemon_factory, "refused", packed_stats=False),
                    ALL) == ["measure", "plans"]
    assert _granted(_start(tmp_path, daemon_factory, "python", native_ingest=False),
                    ALL) == ["measure", "plans"]
    # A 1.0 plugin does not offer it and gets what it offered.
    assert _granted(_start(tmp_path, daemon_factory, "old"), ("measure", "plans")) == \
        ["measure", "plans"]


@pytest.mark.parametrize("native", [True, False])
def test_packed_and_map_reports_count_alike(tmp_path: Path, daemon_factory: list[Daemon],
                                            native: bool) -> None:
    # Two ranks of one communicator, one reporting maps and one packed (the Python path takes
    # packed reports too, from a plugin that sends them unasked): both are counted by type, and
    # the samples of both reach the artifacts.
    d = _start(tmp_path, daemon_factory, "mixed", native_ingest=native, summary_ms=50)
    peers = [Peer(d.endpoint) for _ in range(2)]
    for r, p in enumerate(peers):
        p.hello(COMM, 2, r, features=ALL, pid=100 + r)
        assert isinstance(p.recv(), Welcome)
    for calls, count in ((10, 3), (20, 7)):
        peers[0].send(Measurements(comm=COMM, calls=calls, dropped=0, stats=[_stat(count)]))
        peers[1].send(MeasurementsPacked(comm=COMM, calls=calls, dropped=0,
                                         stats=[PackedStat.from_stat(_stat(count))]))
        time.sleep(0.1)
    deadline = time.monotonic() + 5
    while d.stats.by_type["MEASUREMENTS_PACKED"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert d.stats.by_type["MEASUREMENTS"] == 2 and d.stats.by_type["MEASUREMENTS_PACKED"] == 2
    assert sum(d.stats.rejected.values()) == 0 and d.stats.internal_errors == 0
    for p in peers:
        p.close()
    d.stop()
    daemon_factory.remove(d)
    import json
    lines = next((tmp_path / "mixed").rglob("measurements.jsonl")).read_text().splitlines()
    told = sum(o["count"] for line in lines for o in json.loads(line)["observations"])
    assert told == 14   # 7 samples from each rank, whichever form carried them


def test_tells_and_summaries_stay_within_their_row_budgets(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A small job is told every ask interval and summarised every --summary-ms; past 10,000
    # known (key, arm) rows both intervals grow so that at most 10,000 rows a second go each way
    # (at 1,024 ranks tells had grown to fill the daemon's core).
    from cclpilot.daemon import server
    from cclpilot.daemon.registry import CommState

    d = Daemon(DaemonConfig(run_dir=tmp_path / "run", ipc_dir=tmp_path / "ipc", fsync=False,
                            summary_ms=1000))  # not started
    try:
        rows = {"n": 20}
        monkeypatch.setattr(CommState, "rows_known", lambda self: rows["n"])
        for c in range(4):
            d.comms[c] = CommState("job", c, n_ranks=8, n_nodes=1, nccl_version=0)
        now = time.monotonic()
        d._next_peer_check = 0.0
        d._timers(now)
        assert d._tell_every == pytest.approx(0.010)
        assert d._summary_every == pytest.approx(1.0)
        rows["n"] = 3200   # 12,800 rows in all, as 128 communicators of 100 keys
        d._next_peer_check = 0.0
        d._timers(now + 1.0)
        assert d._tell_every == pytest.approx(12_800 / server._TELL_ROWS_PER_S)
        assert d._summary_every == pytest.approx(12_800 / server._SUMMARY_ROWS_PER_S)
        assert server._TELL_ROWS_PER_S == server._SUMMARY_ROWS_PER_S == 10_000
    finally:
        d._shutdown()
