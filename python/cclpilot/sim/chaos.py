"""A fault-injecting relay between plugins and the daemon, for the live loop's fault tests.

Plugins connect their DEALER sockets to the relay's ROUTER; for every plugin identity the relay
opens its own DEALER towards the daemon, so the daemon still sees one peer per plugin socket.
Frames in either direction can be dropped, delayed, or replaced by garbage (malformed messages
in both directions), all from one seeded generator so a failing run can be replayed. The relay
can also be paused (the daemon looks dead) and resumed.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from dataclasses import dataclass, field

import zmq


@dataclass
class ChaosSettings:
    drop: float = 0.0  # probability of dropping a frame
    delay_prob: float = 0.0  # probability of delaying a frame
    delay_ms: tuple[float, float] = (0.0, 0.0)  # uniform delay range when delayed
    garbage: float = 0.0  # probability of sending a malformed frame before the real one
    seed: int = 0


@dataclass
class ChaosCounters:
    forwarded: int = 0
    dropped: int = 0
    delayed: int = 0
    garbage: int = 0
    held: int = 0  # frames swallowed while paused


_GARBAGE = [b"", b"\xc1", b"\x81\xa1t\xa5HELLO", b"\x92\x01\x02", b"\xdd\xff\xff\xff\xff",
            b"not msgpack at all"]


@dataclass(order=True)
class _Pending:
    due: float
    order: int
    to_daemon: bool = field(compare=False)
    identity: bytes = field(compare=False)
    payload: bytes = field(compare=False)


class ChaosRelay:
    """Relays frames between `front` (plugins connect here) and `daemon` (the real endpoint)."""

    def __init__(self, front: str, daemon: str, settings: ChaosSettings | None = None) -> None:
        self.front_endpoint = front
        self.daemon_endpoint = daemon
        self.settings = settings or ChaosSettings()
        self.counters = ChaosCounters()
        self._rng = random.Random(self.settings.seed)
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cclpilot-chaos", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> ChaosRelay:
        self._thread.start()
        if not self._ready.wait(5.0):
            raise RuntimeError("chaos relay did not start")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def pause(self) -> None:
        """Swallow every frame, both ways: to the plugins the daemon is gone."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def __enter__(self) -> ChaosRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _fate(self) -> tuple[bool, float, bool]:
        s, rng = self.settings, self._rng
        drop = rng.random() < s.drop
        delay = rng.uniform(*s.delay_ms) / 1000.0 if rng.random() < s.delay_prob else 0.0
        garbage = rng.random() < s.garbage
        return drop, delay, garbage

    def _loop(self) -> None:
        ctx = zmq.Context()
        front = ctx.socket(zmq.ROUTER)
        backs: dict[bytes, zmq.Socket[bytes]] = {}
        owners: dict[zmq.Socket[bytes], bytes] = {}
        poller = zmq.Poller()
        pending: list[_Pending] = []
        order = itertools.count()
        try:
            front.setsockopt(zmq.LINGER, 0)
            front.bind(self.front_endpoint)
            poller.register(front, zmq.POLLIN)
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            ctx.destroy(linger=0)
            return
        self._ready.set()

        def send(item: _Pending) -> None:
            if item.to_daemon:
                sock = backs.get(item.identity)
                if sock is not None:
                    sock.send(item.payload, zmq.NOBLOCK)
            else:
                front.send_multipart([item.identity, item.payload], zmq.NOBLOCK)
            self.counters.forwarded += 1

        def route(to_daemon: bool, identity: bytes, payload: bytes) -> None:
            if self._paused.is_set():
                self.counters.held += 1
                return
            drop, delay, garbage = self._fate()
            if garbage:
                self.counters.garbage += 1
                junk = self._rng.choice(_GARBAGE)
                heapq.heappush(pending, _Pending(time.monotonic(), next(order), to_daemon,
                                                 identity, junk))
            if drop:
                self.counters.dropped += 1
                return
            if delay > 0:
                self.counters.delayed += 1
            heapq.heappush(pending, _Pending(time.monotonic() + delay, next(order), to_daemon,
                                             identity, payload))

        try:
            while not self._stop.is_set():
                timeout = 20
                if pending:
                    timeout = max(0, min(20, int((pending[0].due - time.monotonic()) * 1000)))
                for sock, _ in poller.poll(timeout):
                    if sock is front:
                        frames = front.recv_multipart()
                        if len(frames) != 2:
                            continue
                        identity, payload = frames
                        if identity not in backs:
                            back = ctx.socket(zmq.DEALER)
                            back.setsockopt(zmq.LINGER, 0)
                            back.connect(self.daemon_endpoint)
                            backs[identity] = back
                            owners[back] = identity
                            poller.register(back, zmq.POLLIN)
                        route(True, identity, payload)
                    else:
                        payload = sock.recv()
                        route(False, owners[sock], payload)
                now = time.monotonic()
                while pending and pending[0].due <= now:
                    item = heapq.heappop(pending)
                    try:
                        send(item)
                    except zmq.Again:
                        self.counters.dropped += 1
        finally:
            ctx.destroy(linger=0)
