"""The daemon at its boundary: handshake, version negotiation, bad input, transports."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import msgpack  # type: ignore[import-untyped]
import pytest

zmq = pytest.importorskip("zmq")

from cclpilot.daemon.peer import Peer
from cclpilot.daemon.server import Daemon, DaemonConfig
from cclpilot.errors import ConfigError
from cclpilot.proto.messages import Abort, Error, Hello, Measurements, Welcome

VECTORS = Path(__file__).resolve().parent.parent / "proto" / "vectors"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(DaemonConfig(run_dir=tmp_path / "run", ipc_dir=tmp_path / "ipc",
                            heartbeat_ms=100)).start()
    yield d
    d.stop()


def test_handshake_negotiates_features(daemon: Daemon) -> None:
    p = Peer(daemon.endpoint)
    p.hello(7, 2, None, features=("plans", "future-thing", "measure"))
    w = p.recv()
    assert isinstance(w, Welcome)
    assert w.features == ["plans", "measure"]  # unknown features are not granted
    assert w.comm == 7 and w.heartbeat_ms == 100 and w.session >= 1
    # The daemon sends heartbeats to registered processes.
    hb = p.recv(skip_heartbeats=False)
    assert hb.t == "HEARTBEAT"


def test_version_mismatch_is_rejected(daemon: Daemon) -> None:
    p = Peer(daemon.endpoint)
    hello = {"t": "HELLO", "version": [99, 0], "anything": "else"}
    p.send_raw(msgpack.packb(hello))
    m = p.recv()
    assert isinstance(m, Error) and m.code == "version" and m.ref == "HELLO"


def test_every_invalid_vector_is_counted_answered_and_survived(daemon: Daemon) -> None:
    p = Peer(daemon.endpoint)
    expected: dict[str, int] = {}
    for entry in MANIFEST["invalid"]:
        p.send_raw((VECTORS / entry["file"]).read_bytes())
        m = p.recv()
        assert isinstance(m, Error), entry
        assert m.code == entry["kind"], (entry, m)
        expected[entry["kind"]] = expected.get(entry["kind"], 0) + 1
    # Two payload frames: malformed at the framing level.
    p.send_raw(b"a", b"b")
    m = p.recv()
    assert isinstance(m, Error) and m.code == "malformed"
    expected["malformed"] = expected.get("malformed", 0) + 1
    assert dict(daemon.stats.rejected) == expected
    # Still serving.
    p.hello(8, 1, 0)
    assert isinstance(p.recv(), Welcome)


def test_valid_vectors_never_get_a_codec_error(daemon: Daemon) -> None:
    p = Peer(daemon.endpoint)
    for entry in MANIFEST["valid"]:
        p.send_raw((VECTORS / entry["file"]).read_bytes())
    p.hello(9, 1, 0)
    while True:
        m = p.recv()
        if isinstance(m, Welcome) and m.comm == 9:
            break
        # Valid messages may be refused for their state (no HELLO, wrong direction), never
        # for their encoding.
        # (an ACK of a plan never prepared is answered with ABORT: always safe)
        assert isinstance(m, (Error, Welcome, Abort)) and (
            not isinstance(m, Error) or m.code in ("unknown_comm", "state")), m
    assert sum(daemon.stats.rejected[k] for k in MANIFEST_KINDS()) == 0


def MANIFEST_KINDS() -> set[str]:
    return {e["kind"] for e in MANIFEST["invalid"]}


def test_inconsistent_registration_is_refused(daemon: Daemon) -> None:
    a, b = Peer(daemon.endpoint), Peer(daemon.endpoint)
    a.hello(5, 2, 0)
    assert isinstance(a.recv(), Welcome)
    b.hello(5, 3, 1)
    m = b.recv()
    assert isinstance(m, Error) and m.code == "state" and "2 ranks" in m.message


def test_ipc_directory_is_private(daemon: Daemon) -> None:
    sock = Path(daemon.endpoint[len("ipc://"):])
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700


def test_public_ipc_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o755)
    with pytest.raises(ConfigError, match="private"):
        Daemon(DaemonConfig(run_dir=tmp_path / "run", ipc_dir=d))


def test_tcp_uses_curve(tmp_path: Path) -> None:
    d = Daemon(DaemonConfig(run_dir=tmp_path / "run", tcp="127.0.0.1:0")).start()
    try:
        assert d.curve is not None
        key_file = tmp_path / "run" / "curve_secret.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        env = (tmp_path / "run" / "env.sh").read_text()
        assert f"CCLPILOT_DAEMON_PUBLIC_KEY='{d.curve.public}'" in env
        assert "CCLPILOT_DAEMON=tcp://127.0.0.1:" in env
        good = Peer(d.endpoint, server_public_key=d.curve.public)
        good.hello(1, 1, 0)
        assert isinstance(good.recv(), Welcome)
        plain = Peer(d.endpoint)  # no CURVE: the handshake fails, nothing gets through
        plain.sock.setsockopt(zmq.SNDTIMEO, 500)
        try:
            plain.hello(2, 1, 0)   # queued, or refused once the failed handshake dropped the pipe
        except zmq.Again:
            pass
        with pytest.raises(TimeoutError):
            plain.recv(timeout=0.5)
        assert 2 not in d.comms
    finally:
        d.stop()


def test_insecure_tcp_only_when_asked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = Daemon(DaemonConfig(run_dir=tmp_path / "run", tcp="127.0.0.1:0", insecure=True)).start()
    try:
        assert d.curve is None
        assert any("--insecure" in r.message for r in caplog.records)
        assert "CCLPILOT_DAEMON_INSECURE=1" in (tmp_path / "run" / "env.sh").read_text()
        p = Peer(d.endpoint)
        p.hello(1, 1, 0)
        assert isinstance(p.recv(), Welcome)
    finally:
        d.stop()


def test_cli_refuses_insecure_without_tcp() -> None:
    from cclpilot.cli import main
    assert main(["daemon", "--insecure"]) == 2


def test_measurements_fast_path_reaches_registry(daemon: Daemon) -> None:
    p = Peer(daemon.endpoint)
    p.hello(3, 1, 0)
    assert isinstance(p.recv(), Welcome)
    p.send_raw((VECTORS / "valid" / "measurements.msgpack").read_bytes())
    p.send(Measurements(comm=3, calls=10, dropped=0, stats=[]))
    p.send(Hello(version=[1, 0], features=[], job="j", comm=4, n_ranks=1, n_nodes=1, rank=0,
                 host="h", pid=1, nccl_version=0, tuner_abi=None, profiler_abi=None))
    seen = []
    while True:
        m = p.recv()
        seen.append(m)
        if isinstance(m, Welcome) and m.comm == 4:
            break
    # HELLOs (and ACKs) are handled ahead of queued reports, so the WELCOME can overtake the
    # report's processing: wait for it rather than assume arrival order.
    import time
    deadline = time.monotonic() + 5
    st = daemon.comm_state(3)
    while (st is None or st.max_calls != 10) and time.monotonic() < deadline:
        time.sleep(0.01)
        st = daemon.comm_state(3)
    assert st is not None and st.max_calls == 10
