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
from array import array
from itertools import chain
from operator import itemgetter
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]

from cclpilot.proto.errors import ProtocolError
from cclpilot.proto.messages import (
    COST_ALGOS,
    COST_PROTOS,
    HIST_BUCKETS,
    MAX_ARRAY_LEN,
    MAX_CHANNELS,
    MAX_MAP_LEN,
    MAX_MESSAGE_BYTES,
    MAX_STATS,
    MAX_STR_BYTES,
    U32_MAX,
    U64_MAX,
    Stat,
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


# ---- the whole fast path: bytes -> columns -------------------------------------------------------
#
# unpack() + validate_measurements() cost about 0.9 ms for a 100-stat report: the codec's
# per-key duplicate hook and its generic type census walk every container in Python, then the
# schema check walks every stat again. parse_measurements() does the same job with C-level
# passes over whole columns. It is an *accepting* filter only: it returns None on anything it
# does not positively recognise as a valid MEASUREMENTS, and the caller then runs the exact
# path (codec.unpack + validate_measurements, or codec.decode), which produces the error with
# its proper kind. So it must never accept what that path rejects, and it may decline freely.


class FastMeasurements(NamedTuple):
    comm: int
    calls: int
    keys: tuple[tuple[int, int, int, int, int], ...]   # (coll, n_bytes, algo, proto, n_channels)
    counts: tuple[int, ...]     # (count would shadow tuple.count)
    sum_ns: tuple[float, ...]
    sum_sq_ns: tuple[float, ...]
    min_ns: tuple[int, ...]
    max_ns: tuple[int, ...]
    untimed: tuple[int, ...]


class _Decline(Exception):
    pass


def _pairs_unique(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    # One C-level dict build per map; a repeated key shows as a shorter dict. Key types are not
    # checked here: the exact key-set comparisons below only admit the schema's string names.
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _Decline
    return d


_TAG = b"\xacMEASUREMENTS"    # the type tag as a msgpack fixstr, present in every MEASUREMENTS
_GET = itemgetter(*_STAT)
_EMPTY: tuple[tuple[Any, ...], ...] = ((),) * len(_STAT)
_U64_COLS = (1, 5, 8, 9, 11)  # n_bytes, count, min_ns, max_ns, untimed
_SMALL_COLS = ((0, _RANGES["coll"][1]), (2, _RANGES["algo"][1]), (3, _RANGES["proto"][1]),
               (4, _RANGES["n_channels"][1]))
_INT_TYPE = frozenset((int,))
_FLOAT_TYPE = frozenset((float,))
_LIST_TYPE = frozenset((list,))
_DICT_TYPE = frozenset((dict,))
_HIST_LEN = frozenset((HIST_BUCKETS,))
assert array("I").itemsize == 4, "histogram range check relies on a 32-bit array('I')"


def _u64_ok(v: Any) -> bool:
    return type(v) is int and 0 <= v <= U64_MAX


def parse_measurements(data: bytes) -> FastMeasurements | None:
    """A valid MEASUREMENTS frame as columns, or None (not MEASUREMENTS, or invalid, or
    something this filter does not vouch for: the caller must then take the exact path)."""
    if len(data) > MAX_MESSAGE_BYTES or _TAG not in data:
        return None
    try:
        obj = msgpack.unpackb(
            data, raw=False, strict_map_key=False, use_list=True, object_pairs_hook=_pairs_unique,
            max_str_len=MAX_STR_BYTES, max_bin_len=MAX_STR_BYTES, max_array_len=MAX_ARRAY_LEN,
            max_map_len=MAX_MAP_LEN, max_ext_len=0)
    except Exception:  # _Decline, msgpack errors, ext types, limits: the exact path explains
        return None
    if type(obj) is not dict or obj.keys() != _TOP or obj["t"] != "MEASUREMENTS":
        return None
    comm, calls, stats = obj["comm"], obj["calls"], obj["stats"]
    if not (_u64_ok(comm) and _u64_ok(calls) and _u64_ok(obj["dropped"])
            and type(stats) is list and len(stats) <= MAX_STATS):
        return None
    if not stats:
        return FastMeasurements(comm, calls, (), (), (), (), (), (), ())
    if set(map(type, stats)) != _DICT_TYPE:
        return None
    for s in stats:
        if s.keys() != _STAT_SET:
            return None
    cols = list(zip(*map(_GET, stats)))
    if set(map(type, chain.from_iterable(cols[i] for i in (0, 2, 3, 4) + _U64_COLS))) \
            != _INT_TYPE:
        return None
    for i in _U64_COLS:
        if min(cols[i]) < 0 or max(cols[i]) > U64_MAX:
            return None
    for i, hi in _SMALL_COLS:
        if min(cols[i]) < 0 or max(cols[i]) > hi:
            return None
    sums, sqs = cols[6], cols[7]
    if set(map(type, chain(sums, sqs))) != _FLOAT_TYPE \
            or not all(map(math.isfinite, chain(sums, sqs))) or min(sums) < 0.0 \
            or min(sqs) < 0.0:
        return None
    hists = cols[10]
    if set(map(type, hists)) != _LIST_TYPE or set(map(len, hists)) != _HIST_LEN:
        return None
    flat = list(chain.from_iterable(hists))
    if set(map(type, flat)) != _INT_TYPE:   # bool is excluded here: array('I') would take it
        return None
    try:
        array("I", flat)                      # 0..2^32-1, in C
    except OverflowError:
        return None
    count, mins, maxs = cols[5], cols[8], cols[9]
    for c, lo, hi, s, q, h in zip(count, mins, maxs, sums, sqs, hists):
        if c:
            if lo > hi:
                return None
        elif s or q or any(h):
            return None
    return FastMeasurements(comm, calls, tuple(zip(cols[0], cols[1], cols[2], cols[3], cols[4])),
                            count, sums, sqs, mins, maxs, cols[11])


def columns_of(obj: dict[str, Any]) -> FastMeasurements:
    """The same columns from an already validated MEASUREMENTS map (the exact path's result)."""
    stats = obj["stats"]
    cols = list(zip(*map(_GET, stats))) if stats else list(_EMPTY)
    return FastMeasurements(obj["comm"], obj["calls"],
                            tuple(zip(cols[0], cols[1], cols[2], cols[3], cols[4])),
                            cols[5], cols[6], cols[7], cols[8], cols[9], cols[11])


def columns_of_stats(comm: int, calls: int, stats: Sequence[Stat]) -> FastMeasurements:
    """The same columns from validated Stat models (a MEASUREMENTS_PACKED decoded by pydantic)."""
    return FastMeasurements(
        comm, calls, tuple((s.coll, s.n_bytes, s.algo, s.proto, s.n_channels) for s in stats),
        tuple(s.count for s in stats), tuple(s.sum_ns for s in stats),
        tuple(s.sum_sq_ns for s in stats), tuple(s.min_ns for s in stats),
        tuple(s.max_ns for s in stats), tuple(s.untimed for s in stats))
