"""The daemon's byte-level shortcuts for its most frequent small messages agree with the codec."""

from __future__ import annotations

import random

import msgpack  # type: ignore[import-untyped]
import pytest

from cclpilot.daemon.server import heartbeat_frame, is_plain_heartbeat
from cclpilot.proto.codec import decode, encode
from cclpilot.proto.errors import ProtocolError
from cclpilot.proto.messages import U64_MAX, Heartbeat

_EDGES = (0, 1, 127, 128, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, U64_MAX)


@pytest.mark.parametrize("seq", _EDGES)
@pytest.mark.parametrize("time_ns", (0, 128, U64_MAX))
def test_heartbeat_frame_is_the_canonical_encoding(seq: int, time_ns: int) -> None:
    frame = heartbeat_frame(seq, time_ns)
    assert frame == encode(Heartbeat(seq=seq, time_ns=time_ns))
    assert is_plain_heartbeat(frame)


def _accepted_as_heartbeat(data: bytes) -> bool:
    try:
        return isinstance(decode(data), Heartbeat)
    except ProtocolError:
        return False


def test_non_canonical_but_valid_widths_are_taken_too() -> None:
    # seq 5 written as uint64: valid, not canonical; the shortcut reads any unsigned width
    data = (b"\x83\xa1t\xa9HEARTBEAT\xa3seq\xcf" + (5).to_bytes(8, "big")
            + b"\xa7time_ns\xcc\x80")
    assert _accepted_as_heartbeat(data) and is_plain_heartbeat(data)


@pytest.mark.parametrize("data", [
    b"",
    b"\x83\xa1t\xa9HEARTBEAT\xa3seq\x05\xa7time_ns",              # time_ns value missing
    b"\x83\xa1t\xa9HEARTBEAT\xa3seq\x05\xa7time_ns\x05\x00",      # trailing byte
    b"\x83\xa1t\xa9HEARTBEAT\xa3seq\xff\xa7time_ns\x05",          # seq = -1 (negative fixint)
    b"\x83\xa1t\xa9HEARTBEAT\xa3seq\xc3\xa7time_ns\x05",          # seq = true
    b"\x83\xa1t\xa9HEARTBEAT\xa3seq\xcb" + b"\x00" * 8 + b"\xa7time_ns\x05",  # seq a float
    b"\x83\xa1t\xa9HEARTBEAT\xa3seq\xcd\x01\xa7time_ns\x05",      # truncated uint16
    b"\x84\xa1t\xa9HEARTBEAT\xa3seq\x05\xa7time_ns\x05\xa1x\x01",  # an extra field
])
def test_invalid_or_unusual_heartbeats_take_the_exact_path(data: bytes) -> None:
    assert not is_plain_heartbeat(data)


@pytest.mark.parametrize("seed", range(3))
def test_shortcut_never_accepts_what_the_codec_rejects(seed: int) -> None:
    rng = random.Random(seed)
    base = [heartbeat_frame(rng.choice(_EDGES), rng.choice(_EDGES)) for _ in range(50)]
    base.append(msgpack.packb({"t": "HEARTBEAT", "time_ns": 1, "seq": 2}))
    for _ in range(4000):
        data = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            pos = rng.randrange(len(data) + 1)
            if op < 0.4 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif op < 0.7:
                data.insert(pos, rng.randrange(256))
            elif data:
                del data[min(pos, len(data) - 1)]
        frame = bytes(data)
        if is_plain_heartbeat(frame):
            assert _accepted_as_heartbeat(frame), frame
