"""The fast MEASUREMENTS validator agrees with the pydantic path (accept/reject and kind)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from cclpilot.daemon.fastmeas import validate_measurements
from cclpilot.proto.codec import decode, unpack
from cclpilot.proto.errors import ProtocolError

VECTORS = Path(__file__).resolve().parent.parent / "proto" / "vectors"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())


def fast(data: bytes) -> str | None:
    """The daemon's path: generic unpack, then the fast schema check for MEASUREMENTS."""
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
        if a != b:
            disagreements.append((msg, a, b))
    assert not disagreements, disagreements[:3]
    # The mutations reach every schema-stage kind, and valid messages too.
    assert {None, "missing_field", "extra_field", "wrong_type", "bad_value", "limit"} <= kinds
