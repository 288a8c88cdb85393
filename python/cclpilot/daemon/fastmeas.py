"""A hand-written schema check for MEASUREMENTS, the one message that arrives at volume.

pydantic validation costs about 1 ms per 100-stat report, which caps a daemon core far below
the capacity target (1,024 ranks x 100 keys every 100 ms). This validator enforces exactly the
rules of cclpilot.proto.messages.Measurements and Stat on the already unpacked map (the generic
stages of cclpilot.proto.codec.unpack ran before it) and raises the same ProtocolError kinds;
tests/test_daemon_fastmeas.py checks that it agrees with the pydantic path on every golden
vector and on random mutations. Anything that changes the Stat schema must change this too.
"""

from __future__ import annotations

import math
from typing import Any

from cclpilot.proto.errors import ProtocolError
from cclpilot.proto.messages import (
    COST_ALGOS,
    COST_PROTOS,
    HIST_BUCKETS,
    MAX_CHANNELS,
    MAX_STATS,
    U32_MAX,
    U64_MAX,
)

_TOP = frozenset(("t", "comm", "calls", "dropped", "stats"))
_STAT = ("coll", "n_bytes", "algo", "proto", "n_channels", "count", "sum_ns", "sum_sq_ns",
         "min_ns", "max_ns", "hist", "untimed")
_STAT_SET = frozenset(_STAT)
_RANGES: dict[str, tuple[int, int]] = {
    "coll": (0, 4), "n_bytes": (0, U64_MAX), "algo": (0, COST_ALGOS - 1),
    "proto": (0, COST_PROTOS - 1), "n_channels": (0, MAX_CHANNELS), "count": (0, U64_MAX),
    "min_ns": (0, U64_MAX), "max_ns": (0, U64_MAX), "untimed": (0, U64_MAX),
}
_INT_FIELDS = tuple(_RANGES.items())
_INT_ONLY = frozenset((int,))


def _fail(kind: str, path: str, text: str) -> ProtocolError:
    return ProtocolError(kind, f"MEASUREMENTS: {text}; see PROTOCOL.md, message MEASUREMENTS",
                         path)


def _fields(obj: dict[str, Any], expected: frozenset[str], where: str) -> None:
    keys = obj.keys()
    if keys == expected:
        return
    missing = expected - keys
    if missing:
        name = sorted(missing)[0]
        raise _fail("missing_field", f"{where}{name}", f"field '{name}' is missing")
    extra = sorted(keys - expected)[0]
    raise _fail("extra_field", f"{where}{extra}", f"field '{extra}' is not declared")


def _u64(obj: dict[str, Any], name: str, where: str = "") -> None:
    v = obj[name]
    if type(v) is not int:
        raise _fail("wrong_type", f"{where}{name}", f"'{name}' must be an integer, got "
                    f"{type(v).__name__}")
    if not 0 <= v <= U64_MAX:
        raise _fail("bad_value", f"{where}{name}", f"'{name}' = {v} is outside 0..2^64-1")


def validate_measurements(obj: dict[str, Any]) -> None:
    """Raises ProtocolError unless `obj` (an unpacked map with t == MEASUREMENTS) is valid."""
    _fields(obj, _TOP, "")
    _u64(obj, "comm")
    _u64(obj, "calls")
    _u64(obj, "dropped")
    stats = obj["stats"]
    if type(stats) is not list:
        raise _fail("wrong_type", "stats", f"'stats' must be an array, got "
                    f"{type(stats).__name__}")
    if len(stats) > MAX_STATS:
        raise _fail("limit", "stats", f"{len(stats)} stats, above MAX_STATS={MAX_STATS}")
    for i, s in enumerate(stats):
        if type(s) is not dict:
            raise _fail("wrong_type", f"stats.{i}", f"a Stat must be a map, got "
                        f"{type(s).__name__}")
        where = f"stats.{i}."
        _fields(s, _STAT_SET, where)
        for name, (lo, hi) in _INT_FIELDS:
            v = s[name]
            if type(v) is not int:
                raise _fail("wrong_type", where + name, f"'{name}' must be an integer, got "
                            f"{type(v).__name__}")
            if not lo <= v <= hi:
                raise _fail("bad_value", where + name, f"'{name}' = {v} is outside {lo}..{hi}")
        for name in ("sum_ns", "sum_sq_ns"):
            f = s[name]
            if type(f) is not float:
                raise _fail("wrong_type", where + name, f"'{name}' must be a msgpack float, got "
                            f"{type(f).__name__}")
            if not math.isfinite(f) or f < 0.0:
                raise _fail("bad_value", where + name, f"'{name}' = {f} must be finite and >= 0")
        hist = s["hist"]
        if type(hist) is not list:
            raise _fail("wrong_type", where + "hist", "'hist' must be an array")
        n = len(hist)
        if n != HIST_BUCKETS:
            raise _fail("limit" if n > HIST_BUCKETS else "bad_value", where + "hist",
                        f"'hist' has {n} buckets, expected exactly {HIST_BUCKETS}")
        if set(map(type, hist)) != _INT_ONLY:
            bad = next(x for x in hist if type(x) is not int)
            raise _fail("wrong_type", where + "hist", f"histogram buckets are integers, got "
                        f"{type(bad).__name__}")
        if min(hist) < 0 or max(hist) > U32_MAX:
            raise _fail("bad_value", where + "hist", "histogram buckets are u32 (0..2^32-1)")
        count = s["count"]
        if count > 0:
            if s["min_ns"] > s["max_ns"]:
                raise _fail("bad_value", where.rstrip("."), f"min_ns ({s['min_ns']}) exceeds "
                            f"max_ns ({s['max_ns']})")
        elif s["sum_ns"] != 0.0 or s["sum_sq_ns"] != 0.0 or any(hist):
            raise _fail("bad_value", where.rstrip("."), "count is 0 but sums or histogram are "
                        "not empty")
