"""The fault-injecting relay used by the live-loop fault tests."""

from __future__ import annotations

import time
from pathlib import Path

import zmq

from cclpilot.sim.chaos import ChaosRelay, ChaosSettings


def _pair(tmp_path: Path, settings: ChaosSettings) -> tuple[ChaosRelay, zmq.Context[zmq.Socket[bytes]],
                                                           zmq.Socket[bytes], zmq.Socket[bytes]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    daemon = ctx.socket(zmq.ROUTER)
    daemon.bind(f"ipc://{tmp_path}/d.sock")
    relay = ChaosRelay(f"ipc://{tmp_path}/f.sock", f"ipc://{tmp_path}/d.sock", settings).start()
    plugin = ctx.socket(zmq.DEALER)
    plugin.connect(f"ipc://{tmp_path}/f.sock")
    for s in (daemon, plugin):
        s.setsockopt(zmq.RCVTIMEO, 2000)
        s.setsockopt(zmq.LINGER, 0)
    return relay, ctx, daemon, plugin


def test_relay_forwards_both_ways(tmp_path: Path) -> None:
    relay, ctx, daemon, plugin = _pair(tmp_path, ChaosSettings())
    try:
        plugin.send(b"ping")
        identity, payload = daemon.recv_multipart()
        assert payload == b"ping"
        daemon.send_multipart([identity, b"pong"])
        assert plugin.recv() == b"pong"
        relay.pause()
        plugin.send(b"lost")
        time.sleep(0.2)
        assert daemon.poll(200) == 0 and relay.counters.held == 1
        relay.resume()
        plugin.send(b"back")
        assert daemon.recv_multipart()[1] == b"back"
    finally:
        relay.stop()
        ctx.destroy(linger=0)


def test_relay_drops_delays_and_corrupts_reproducibly(tmp_path: Path) -> None:
    def run(sub: str) -> tuple[list[bytes], int, int]:
        d = tmp_path / sub
        d.mkdir()
        relay, ctx, daemon, plugin = _pair(d, ChaosSettings(drop=0.3, delay_prob=0.3,
                                                            delay_ms=(1, 5), garbage=0.2, seed=3))
        try:
            for i in range(100):
                plugin.send(b"m%d" % i)
            got = []
            while daemon.poll(300):
                got.append(daemon.recv_multipart()[1])
            return got, relay.counters.dropped, relay.counters.garbage
        finally:
            relay.stop()
            ctx.destroy(linger=0)

    first, dropped, garbage = run("a")
    real = [m for m in first if m.startswith(b"m")]
    assert 50 <= len(real) <= 85 and dropped == 100 - len(real)
    assert garbage > 0 and len(first) == len(real) + garbage
    again, _, _ = run("b")
    assert sorted(again) == sorted(first)  # same seed, same fate for every frame
