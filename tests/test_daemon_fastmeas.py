"""The fast MEASUREMENTS validator agrees with the pydantic path (accept/reject and kind)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from cclpilot.daemon.fastmeas import columns_of, parse_measurements, validate_measurements
from cclpilot.daemon.registry import CommState, RankReg
from cclpilot.proto.codec import decode, unpack
from cclpilot.proto.errors import ProtocolError

VECTORS = Path(__file__).resolve().parent.parent / "proto" / "vectors"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())


def fast(data: bytes) -> str | None:
    """The daemon's path: the column parser, else generic unpack then the fast schema check for
    MEASUREMENTS. Whatever the column parser accepts, the exact path must accept with the same
    numbers."""
    cols = parse_measurements(data)
    if cols is not None:
        obj = unpack(data)
        validate_measurements(obj)
        decode(data)
        assert cols == columns_of(obj)
        return None
    try:
        obj = unpack(data)
        if type(obj) is dict and obj.get("t") == "MEASUREMENTS":
            validate_measurements(obj)
            return None
        decode(data)
        return None
    except ProtocolError as e:
        return e.kind


def slow(data: bytes) -> str | None:
    try:
        decode(data)
        return None
    except ProtocolError as e:
        return e.kind


@pytest.mark.parametrize("entry", MANIFEST["valid"] + MANIFEST["invalid"],
                         ids=lambda e: e["file"])
def test_golden_vectors_agree(entry: dict[str, str]) -> None:
    data = (VECTORS / entry["file"]).read_bytes()
    assert fast(data) == slow(data) == entry.get("kind")


def base_message(rng: random.Random) -> dict[str, Any]:
    stats = []
    for _ in range(rng.randint(0, 5)):
        count = rng.choice([0, rng.randint(1, 1000)])
        hist = [0] * 48
        if count:
            hist[rng.randrange(48)] = count
        lo = rng.randint(0, 10**6)
        stats.append({"coll": rng.randint(0, 4), "n_bytes": rng.randint(0, 2**40),
                      "algo": rng.randint(0, 6), "proto": rng.randint(0, 2),
                      "n_channels": rng.randint(0, 64), "count": count,
                      "sum_ns": float(count * lo), "sum_sq_ns": float(count * lo * lo),
                      "min_ns": lo if count else 0, "max_ns": lo + rng.randint(0, 99) if count
                      else 0, "hist": hist, "untimed": rng.randint(0, 5)})
    return {"t": "MEASUREMENTS", "comm": rng.randint(0, 2**64 - 1), "calls": rng.randint(0, 9),
            "dropped": 0, "stats": stats}


BAD_VALUES: list[Any] = [-1, 2**64 - 1, 65, 7, 5, 3, 1.5, float("nan"), float("inf"), -0.5,
                         True, None, "x", [], {}, [0] * 47, [0] * 49, [1.0] * 48, [-1] * 48,
                         [2**32] * 48, 0, 0.0, 10**6]


def mutate(rng: random.Random, msg: dict[str, Any]) -> dict[str, Any]:
    m = copy.deepcopy(msg)
    target: dict[str, Any] = m
    if m["stats"] and rng.random() < 0.8:
        target = rng.choice(m["stats"])
    op = rng.random()
    key = rng.choice(sorted(target))
    if op < 0.1 and key != "t":
        del target[key]
    elif op < 0.2:
        target["extra"] = 1
    else:
        if key == "t":
            return m
        target[key] = rng.choice(BAD_VALUES)
    return m


def test_random_single_mutations_agree() -> None:
    rng = random.Random(20240611)
    disagreements = []
    kinds: set[str | None] = set()
    for _ in range(4000):
        msg = base_message(rng)
        if rng.random() < 0.8:
            msg = mutate(rng, msg)
        data = msgpack.packb(msg, use_bin_type=True)
        a, b = fast(data), slow(data)
        kinds.add(b)
        # The column parser declines nothing valid (else the daemon silently runs slow).
        assert (parse_measurements(data) is not None) == (b is None)
        if a != b:
            disagreements.append((msg, a, b))
    assert not disagreements, disagreements[:3]
    # The mutations reach every schema-stage kind, and valid messages too.
    assert {None, "missing_field", "extra_field", "wrong_type", "bad_value", "limit"} <= kinds


def _map(pairs: list[tuple[Any, Any]]) -> bytes:
    """A msgpack map written pair by pair, so a key can repeat (packb of a dict cannot)."""
    n = len(pairs)
    head = bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
    return head + b"".join(msgpack.packb(k) + v for k, v in pairs)


def _raw(msg: dict[str, Any], dup_top: str | None, dup_stat: str | None) -> bytes:
    stats = []
    for st in msg["stats"]:
        pairs = [(k, msgpack.packb(v)) for k, v in st.items()]
        if dup_stat is not None:
            pairs.append((dup_stat, msgpack.packb(st[dup_stat])))
        stats.append(_map(pairs))
    body = b"\xdc" + len(stats).to_bytes(2, "big") + b"".join(stats)
    pairs = [(k, msgpack.packb(v) if k != "stats" else body) for k, v in msg.items()]
    if dup_top is not None:
        pairs.append((dup_top, msgpack.packb(msg[dup_top])))
    return _map(pairs)


def test_duplicate_keys_and_odd_encodings_agree() -> None:
    rng = random.Random(7)
    seen: set[str | None] = set()
    for i in range(600):
        msg = base_message(rng)
        while not msg["stats"]:
            msg = base_message(rng)
        dup_top = rng.choice(sorted(msg)) if i % 3 == 0 else None
        dup_stat = rng.choice(sorted(msg["stats"][0])) if i % 3 == 1 else None
        data = _raw(msg, dup_top, dup_stat)
        a, b = fast(data), slow(data)
        assert a == b, (msg, dup_top, dup_stat, a, b)
        seen.add(b)
    assert seen == {None, "malformed"}   # i % 3 == 2: a valid but non-minimal array header


@pytest.mark.parametrize("value", [True, False, None, 1.0, "1", b"1", [1], {"a": 1}, -1,
                                   2**32, 2**64 - 1])
def test_histogram_bucket_types_agree(value: Any) -> None:
    msg = base_message(random.Random(3))
    while not msg["stats"]:
        msg = base_message(random.Random(len(msg["stats"]) + 4))
    msg["stats"][-1]["hist"][5] = value
    data = msgpack.packb(msg, use_bin_type=True)
    assert fast(data) == slow(data) is not None


def test_column_absorb_matches_per_stat_absorb() -> None:
    """absorb_cols (the daemon's loop) and absorb_raw (the per-stat reference) leave the same
    aggregate and cumulative state, including repeated keys within a report and counters that
    go back."""
    rng = random.Random(99)
    for _ in range(50):
        a, b = CommState("j", 1, 2, 1, 0), CommState("j", 1, 2, 1, 0)
        regs = [(RankReg(("r", r), bytes([r]), r, "h", r, frozenset(), 1),
                 RankReg(("r", r), bytes([r]), r, "h", r, frozenset(), 1)) for r in range(2)]
        keys = [(4, 1 << k, 1, 2, 8) for k in range(4)]
        for _step in range(8):
            for ra, rb in regs:
                stats = []
                for _ in range(rng.randint(0, 6)):
                    c = rng.choice([0, rng.randint(1, 50)])
                    lo = rng.randint(1, 100)
                    stats.append({"coll": 4, "n_bytes": 0, "algo": 1, "proto": 2,
                                  "n_channels": 8, "count": c, "sum_ns": float(c * lo),
                                  "sum_sq_ns": float(c * lo * lo) * rng.random(),
                                  "min_ns": lo if c else 0, "max_ns": lo + 5 if c else 0,
                                  "hist": [0] * 48, "untimed": rng.randint(0, 2)})
                    sk = rng.choice(keys)
                    stats[-1]["n_bytes"] = sk[1]
                obj = {"t": "MEASUREMENTS", "comm": 1, "calls": 0, "dropped": 0, "stats": stats}
                a.absorb_cols(ra, columns_of(obj))
                for s in stats:
                    b.absorb_raw(rb, (s["coll"], s["n_bytes"], s["algo"], s["proto"],
                                      s["n_channels"]),
                                 (s["count"], s["sum_ns"], s["sum_sq_ns"], s["min_ns"],
                                  s["max_ns"], s["untimed"]))
                assert ra.cumul == rb.cumul
            assert a.agg == b.agg
            if rng.random() < 0.5:
                assert a.take_observations() == b.take_observations()
