"""The native MEASUREMENTS path (libcclpilot-ingest through daemon/ingest.py) against the
pure-Python reference (fastmeas.py + registry.CommState.absorb_cols / absorb_raw).

Both paths must turn the same report stream into the same observations on both channels, down
to the last bit of every float: the C library repeats the Python arithmetic operation for
operation in IEEE double (no multiplications, so no fused multiply-add can sneak in), so exact
equality is asserted, never a tolerance.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

pytest.importorskip("zmq")
pytest.importorskip("cffi")

from cclpilot import paths
from cclpilot.daemon import ingest as ingest_mod
from cclpilot.daemon import registry
from cclpilot.daemon.brain import ArmRan, CommInfo, Key, NullBrain, Observation
from cclpilot.daemon.fastmeas import (
    FastMeasurements,
    columns_of,
    parse_measurements,
    validate_measurements,
)
from cclpilot.daemon.ingest import (
    BRAIN,
    OBS_DTYPE,
    SUMMARY,
    IngestError,
    NativeIngest,
    ReportHead,
    load_native_ingest,
)
from cclpilot.daemon.peer import Peer
from cclpilot.daemon.registry import CommState, RankReg, StatKey
from cclpilot.daemon.server import Daemon, DaemonConfig
from cclpilot.errors import PluginLoadError
from cclpilot.proto.codec import decode, encode, unpack
from cclpilot.proto.errors import ProtocolError
from cclpilot.proto.messages import (
    HIST_BUCKETS,
    KeyReport,
    Measurements,
    MeasurementsPacked,
    PackedStat,
    Stat,
    Welcome,
)

REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO / "proto" / "vectors"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text())
HEADER = REPO / "plugin" / "ingest" / "cpi_ingest.h"

pytestmark = pytest.mark.usefixtures("ingest_library")

COMM = 0xFEED_0000_0000_0042
U64_MAX = (1 << 64) - 1


# ---- building reports -----------------------------------------------------------------------------


def stat(sk: StatKey, count: int, sum_ns: float, sum_sq_ns: float, lo: int, hi: int,
         untimed: int) -> dict[str, Any]:
    """One Stat as a plain dict in canonical field order."""
    hist = [0] * HIST_BUCKETS
    if count:
        hist[(sk[1] + count) % HIST_BUCKETS] = min(count, 2**32 - 1)
    return {"coll": sk[0], "n_bytes": sk[1], "algo": sk[2], "proto": sk[3],
            "n_channels": sk[4], "count": count, "sum_ns": sum_ns, "sum_sq_ns": sum_sq_ns,
            "min_ns": lo, "max_ns": hi, "hist": hist, "untimed": untimed}


def report(comm: int, calls: int, stats: list[dict[str, Any]], dropped: int = 0
           ) -> dict[str, Any]:
    return {"t": "MEASUREMENTS", "comm": comm, "calls": calls, "dropped": dropped,
            "stats": stats}


def _pack_custom(obj: Any, wide_ints: bool, wide_containers: bool) -> bytes:
    """msgpack by hand, for encodings msgpack.packb never writes: every integer as uint64 /
    int64, and optionally str8 strings, map16 maps and array32 arrays. All valid (PROTOCOL.md:
    decoders accept any valid form); only the first keeps the native fast path."""
    if obj is None:
        return b"\xc0"
    if obj is True or obj is False:
        return b"\xc3" if obj else b"\xc2"
    if isinstance(obj, int):
        if not wide_ints:
            return bytes(msgpack.packb(obj))
        return (b"\xcf" + obj.to_bytes(8, "big") if obj >= 0
                else b"\xd3" + obj.to_bytes(8, "big", signed=True))
    if isinstance(obj, float):
        return b"\xcb" + struct.pack(">d", obj)
    if isinstance(obj, str):
        raw = obj.encode()
        if wide_containers:
            return b"\xd9" + bytes([len(raw)]) + raw
        return bytes(msgpack.packb(obj))
    if isinstance(obj, list):
        head = (b"\xdd" + len(obj).to_bytes(4, "big") if wide_containers
                else b"\xdc" + len(obj).to_bytes(2, "big"))
        return head + b"".join(_pack_custom(x, wide_ints, wide_containers) for x in obj)
    if isinstance(obj, dict):
        head = (b"\xde" + len(obj).to_bytes(2, "big") if wide_containers
                else bytes([0x80 | len(obj)]))
        return head + b"".join(_pack_custom(k, wide_ints, wide_containers)
                               + _pack_custom(v, wide_ints, wide_containers)
                               for k, v in obj.items())
    raise TypeError(type(obj))


def _reordered(obj: Any, rng: random.Random) -> Any:
    """The same maps with their fields shuffled (recursively into `stats`)."""
    if type(obj) is list:
        return [_reordered(x, rng) for x in obj]
    if type(obj) is not dict:
        return obj
    keys = list(obj)
    rng.shuffle(keys)
    return {k: (_reordered(obj[k], rng) if k == "stats" else obj[k]) for k in keys}


# Encodings of one valid report: (name, whether the native fast path should take it).
ENCODINGS: list[tuple[str, bool]] = [
    ("canonical", True), ("packb", True), ("wide_ints", True), ("float32", True),
    ("reordered", False), ("wide_all", False)]


def encode_as(how: str, obj: dict[str, Any], rng: random.Random) -> bytes:
    if how == "canonical":
        return encode(Measurements.model_validate(obj))
    if how == "packb":
        return bytes(msgpack.packb(obj, use_bin_type=True))
    if how == "wide_ints":
        return _pack_custom(obj, wide_ints=True, wide_containers=False)
    if how == "float32":
        # Only exact for float32-representable sums; the stream generator makes sure of that
        # when it picks this encoding.
        return bytes(msgpack.packb(obj, use_bin_type=True, use_single_float=True))
    if how == "reordered":
        return bytes(msgpack.packb(_reordered(obj, rng), use_bin_type=True))
    if how == "wide_all":
        return _pack_custom(obj, wide_ints=True, wide_containers=True)
    raise ValueError(how)


def python_columns(data: bytes) -> FastMeasurements:
    """The daemon's Python path (server._on_frames with native ingestion off)."""
    cols = parse_measurements(data)
    if cols is not None:
        return cols
    obj = unpack(data)
    validate_measurements(obj)
    return columns_of(obj)


# ---- two communicator states fed the same stream --------------------------------------------------


def _new_state(n_ranks: int) -> CommState:
    return CommState("job", COMM, n_ranks, 1, 22703)


def _reg(slot: int) -> RankReg:
    return RankReg(("r", slot), bytes([slot]), slot, "node0", 1000 + slot, frozenset(), 1)


class Pair:
    """A native CommState and a Python one with identical registrations and keys."""

    def __init__(self, ingest: NativeIngest, n_ranks: int) -> None:
        self.ingest = ingest
        self.nat, self.py = _new_state(n_ranks), _new_state(n_ranks)
        self.regs: list[tuple[RankReg, RankReg]] = []
        for r in range(n_ranks):
            a, b = _reg(r), _reg(r)
            self.nat.register(a.slot, a)
            self.py.register(b.slot, b)
            self.regs.append((a, b))
        self.exact_seen: dict[str, set[bool]] = {}

    def add_key(self, coll: int, n_bytes: int, npo: int) -> None:
        """What server._on_key does with a KEY_REPORT."""
        for st in (self.nat, self.py):
            key = Key(coll, n_bytes, npo)
            if key in st.keys:
                continue
            st.keys[key] = ()
            st.pipe_ops.setdefault((coll, n_bytes), set()).add(npo)
            st.pending_keys.append((key, (), 0))

    def set_activating(self, on: bool) -> None:
        for st in (self.nat, self.py):
            st.activating = (7, 1 << 40, "test") if on else None

    def note_calls(self, calls: int, now: float) -> None:
        self.nat.note_calls(calls, now)
        self.py.note_calls(calls, now)

    def absorb(self, rank: int, data: bytes, how: str = "canonical") -> None:
        ra, rb = self.regs[rank]
        head = self.ingest.decode(data)
        assert head is not None, f"native decoder refused a valid {how} report"
        self.exact_seen.setdefault(how, set()).add(head.exact)
        cols = python_columns(data)
        assert (head.comm, head.calls, head.n_stats) == (cols.comm, cols.calls, len(cols.keys))
        assert self.nat.absorb_native(ra, self.ingest)
        self.py.absorb_cols(rb, cols)

    def take(self, channel: int) -> list[Observation]:
        a = self.nat.take_observations(channel)
        b = self.py.take_observations(channel)
        assert self.nat.agg == {} and self.nat.agg_summary == {}, "native state used Python agg"
        assert a == b, _first_difference(a, b)
        return a


def _first_difference(a: list[Observation], b: list[Observation]) -> str:
    if len(a) != len(b):
        return f"native took {len(a)} observations, Python {len(b)}:\n{a}\n{b}"
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"observation {i}: native {x} != Python {y}"
    return "equal"


@pytest.fixture(scope="module")
def native() -> NativeIngest:
    return NativeIngest()


# The stat keys of the random streams: several arms per (coll, n_bytes), so rows share a key.
UNIVERSE: list[StatKey] = [
    (4, 1 << 20, 1, 2, 8), (4, 1 << 20, 0, 2, 8), (4, 1 << 20, 1, 0, 16),
    (4, 4096, 1, 2, 2), (4, 4096, 6, 1, 2), (2, 1 << 30, 1, 2, 32), (0, 0, 0, 0, 0),
    (3, U64_MAX, 5, 2, 64), (1, 65536, 2, 1, 4), (1, 65536, 3, 1, 4), (2, 12345, 4, 0, 1),
]
# Keys reported during the stream, in this order: (4, 1 MiB) and (1, 64 KiB) become ambiguous
# after their rows were cached, (2, 12345) is never reported (ambiguous by absence).
KEY_REPORTS: list[tuple[int, int, int]] = [
    (4, 1 << 20, 1), (4, 4096, 2), (1, 65536, 1), (4, 1 << 20, 3), (2, 1 << 30, 1),
    (0, 0, 1), (3, U64_MAX, 2), (1, 65536, 4)]


class SenderState:
    """One rank's cumulative counters, as its plugin's statistics table holds them."""

    def __init__(self) -> None:
        self.cumul: dict[StatKey, tuple[int, float, float, int, int, int]] = {}
        self.older: dict[StatKey, tuple[int, float, float, int, int, int]] = {}

    def advance(self, rng: random.Random, sk: StatKey, whole_ns: bool) -> None:
        """New samples of sk; whole_ns: integral durations, so that every sum, and every
        difference of sums, is exact in double and totals can be compared with ==."""
        c, s, q, lo, hi, u = self.cumul.get(sk, (0, 0.0, 0.0, 0, 0, 0))
        self.older[sk] = (c, s, q, lo, hi, u)
        untimed_only = sk[1] == 4096 and sk[2] == 6
        dc = 0 if untimed_only else rng.choice([0, 0, 1, 3, 17, 250])
        du = rng.choice([0, 0, 0, 1, 2]) if not untimed_only else rng.choice([0, 1, 5])
        for _ in range(dc):
            d = rng.randint(5, 9000) if whole_ns else rng.uniform(5.0, 9000.0)
            d = float(d)
            s += d
            q += d * d
            ns = int(d)
            lo = ns if c == 0 or ns < lo else lo
            hi = ns if ns > hi else hi
            c += 1
        u += du
        self.cumul[sk] = (c, s, q, lo, hi, u)

    def restart(self) -> None:
        self.cumul.clear()
        self.older.clear()


def random_stream_run(native: NativeIngest, seed: int, steps: int, n_ranks: int = 4) -> Pair:
    """Feeds both states a seeded stream and compares at random takes; returns the pair."""
    rng = random.Random(seed)
    pair = Pair(native, n_ranks)
    senders = [SenderState() for _ in range(n_ranks)]
    known: list[set[StatKey]] = [set() for _ in range(n_ranks)]
    key_reports = list(KEY_REPORTS)
    calls = [0] * n_ranks
    now = 1000.0
    taken = {BRAIN: 0, SUMMARY: 0}
    for step in range(steps):
        r = rng.randrange(n_ranks)
        sender = senders[r]
        how, _ = rng.choice(ENCODINGS)
        roll = rng.random()
        if roll < 0.03:
            sender.restart()          # a restarted plugin: counters begin again from zero
            calls[r] = 0
        elif roll < 0.2 and len(known[r]) < len(UNIVERSE):
            known[r].add(rng.choice([k for k in UNIVERSE if k not in known[r]]))
        for sk in sorted(known[r]):
            if rng.random() < 0.7:
                sender.advance(rng, sk, whole_ns=False)
            elif sk not in sender.cumul:
                sender.cumul[sk] = (0, 0.0, 0.0, 0, 0, 0)   # a zero-count slot
        stats = [stat(sk, *sender.cumul[sk]) for sk in sorted(sender.cumul)]
        rng.shuffle(stats)
        if stats and rng.random() < 0.1:
            # The same key twice in one report: once as now, once as the previous report had
            # it (either order); the second is differenced against the first.
            sk = rng.choice(sorted(sender.cumul))
            old = stat(sk, *sender.older.get(sk, sender.cumul[sk]))
            stats.insert(rng.randrange(len(stats) + 1), old)
        if how == "float32":
            # Only when float32 carries every sum exactly (in practice: all zero); float32
            # values proper are compared in test_mutated_frames_decode_alike.
            if any(s["sum_ns"] != float(struct.unpack(">f", struct.pack(">f", s["sum_ns"]))[0])
                   or s["sum_sq_ns"] != float(
                       struct.unpack(">f", struct.pack(">f", s["sum_sq_ns"]))[0])
                   for s in stats):
                how = "canonical"
        calls[r] += rng.randint(0, 40)
        pair.note_calls(calls[r], now)
        now += 0.01
        pair.absorb(r, encode_as(how, report(COMM, calls[r], stats), rng), how)
        if key_reports and rng.random() < 0.05:
            pair.add_key(*key_reports.pop(0))
        if rng.random() < 0.04:
            pair.set_activating(pair.nat.activating is None)
        if rng.random() < 0.12:
            ch = rng.choice([BRAIN, SUMMARY])
            taken[ch] += len(pair.take(ch))
        if step == steps // 2:
            pair.set_activating(False)
    pair.set_activating(False)
    for ch in (BRAIN, SUMMARY):
        taken[ch] += len(pair.take(ch))
        assert pair.take(ch) == []     # a take clears its channel
    # Not vacuous: many observations went through both channels.
    assert taken[BRAIN] > steps // 4 and taken[SUMMARY] > steps // 4, taken
    return pair


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_streams_native_equals_python(native: NativeIngest, seed: int) -> None:
    pair = random_stream_run(native, seed, steps=350)
    # The encodings took the decoder paths they were meant to: canonical forms (any integer
    # width) the fast path, the others the full decoder.
    for how, fast in ENCODINGS:
        if how in pair.exact_seen:
            assert pair.exact_seen[how] == {not fast}, (how, pair.exact_seen[how])
    assert pair.py.stats_dropped == 0
    assert pair.nat.native is not None
    assert pair.nat.native.info()["stats_dropped"] == 0


def test_channels_are_independent_and_sum_to_the_stream(native: NativeIngest) -> None:
    """Many takes on one channel, one take on the other: the per-(key, arm) totals agree, and
    equal the senders' final cumulative counters (monotone stream, nothing straddles a plan)."""
    rng = random.Random(11)
    pair = Pair(native, 3)
    senders = [SenderState() for _ in range(3)]
    for sk in UNIVERSE:
        pair.add_key(sk[0], sk[1], 1)
    brain: dict[tuple[Key, ArmRan], list[float]] = {}
    for step in range(120):
        r = step % 3
        for sk in UNIVERSE[: 3 + step // 20]:
            senders[r].advance(rng, sk, whole_ns=True)
        stats = [stat(sk, *senders[r].cumul[sk]) for sk in sorted(senders[r].cumul)]
        pair.absorb(r, encode(Measurements.model_validate(report(COMM, step, stats))))
        if rng.random() < 0.3:
            for o in pair.take(BRAIN):
                t = brain.setdefault((o.key, o.arm), [0, 0.0, 0])
                t[0] += o.count
                t[1] += o.sum_ns
                t[2] += o.untimed
    for o in pair.take(BRAIN):
        t = brain.setdefault((o.key, o.arm), [0, 0.0, 0])
        t[0] += o.count
        t[1] += o.sum_ns
        t[2] += o.untimed
    summary = {(o.key, o.arm): [o.count, o.sum_ns, o.untimed] for o in pair.take(SUMMARY)}
    truth: dict[tuple[Key, ArmRan], list[float]] = {}
    for s in senders:
        for sk, (c, su, _q, _lo, _hi, u) in s.cumul.items():
            t = truth.setdefault((Key(sk[0], sk[1], 1), ArmRan(sk[2], sk[3], sk[4])), [0, 0.0, 0])
            t[0] += c
            t[1] += su
            t[2] += u
    truth = {k: v for k, v in truth.items() if v[0] or v[2]}
    assert brain == summary == truth


def _obs(pair: Pair, channel: int = BRAIN) -> list[tuple[Key, bool, int]]:
    return [(o.key, o.key_ambiguous, o.count) for o in pair.take(channel)]


def test_new_key_after_rows_were_cached(native: NativeIngest) -> None:
    """The native path caches each row's key; a KEY_REPORT arriving later (a second
    num_pipe_ops for the same coll and size, or the first one) must show in the next take."""
    pair = Pair(native, 1)
    sk = (4, 1024, 1, 2, 8)
    other = (4, 2048, 1, 2, 8)
    n = [0]

    def send(*keys: StatKey) -> None:
        n[0] += 1
        pair.absorb(0, encode(Measurements.model_validate(report(
            COMM, n[0], [stat(k, n[0], float(n[0]), float(n[0]), 1, 1, 0) for k in keys]))))

    send(sk)
    assert _obs(pair) == [(Key(4, 1024, 1), True, 1)]        # no key reported: ambiguous
    pair.add_key(4, 1024, 3)
    send(sk)
    assert _obs(pair) == [(Key(4, 1024, 3), False, 1)]       # now resolved
    pair.add_key(4, 1024, 5)
    send(sk, other)
    assert _obs(pair) == [(Key(4, 1024, 1), True, 1), (Key(4, 2048, 1), True, 3)]
    pair.add_key(4, 2048, 2)                                 # unrelated to (4, 1024)
    send(sk, other)
    assert _obs(pair) == [(Key(4, 1024, 1), True, 1), (Key(4, 2048, 2), False, 1)]
    # The summary window spans all of it and takes the keys as they are at its take.
    assert _obs(pair, SUMMARY) == [(Key(4, 1024, 1), True, 4), (Key(4, 2048, 2), False, 4)]


def test_per_sender_row_limit_drops_alike(native: NativeIngest,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender inventing more keys than the table holds: both paths keep the first ones (in
    report order) and count the rest as dropped."""
    monkeypatch.setattr(registry, "MAX_ROWS", 4)
    pair = Pair(native, 1)
    pair.nat.native = native.new_agg(pair.nat.max_senders(), max_rows=4)
    keys = [(4, 1 << k, 1, 2, 8) for k in range(6)]
    for n in (1, 2):
        stats = [stat(k, n, float(n), float(n), 1, 1, 0) for k in keys]
        pair.absorb(0, encode(Measurements.model_validate(report(COMM, n, stats))))
        assert [o.key.n_bytes for o in pair.take(BRAIN)] == [1, 2, 4, 8]
    assert pair.py.stats_dropped == pair.nat.native.info()["stats_dropped"] == 4


# ---- decoder agreement ----------------------------------------------------------------------------


def native_view(ingest: NativeIngest, data: bytes
                ) -> tuple[tuple[int, int, int, int], list[tuple[Any, ...]]] | None:
    """The native decoder's head and, through a fresh aggregate, the stats it decoded."""
    head = ingest.decode(data)
    if head is None:
        return None
    agg = ingest.new_agg(1)
    assert agg.absorb(0, True)
    names = OBS_DTYPE.names
    assert names is not None
    rows = []
    for row in agg.take(BRAIN):
        r = dict(zip(names, row, strict=True))
        rows.append((r["coll"], r["n_bytes"], r["algo"], r["proto"], r["n_channels"],
                     r["count"], r["sum_ns"], r["sum_sq_ns"], r["min_ns"], r["max_ns"],
                     r["untimed"], r["ranks"]))
    return (head.comm, head.calls, head.dropped, head.n_stats), rows


def python_view(data: bytes) -> tuple[tuple[int, int, int, int], list[tuple[Any, ...]]] | None:
    """The same through codec.decode and the per-stat reference (CommState.absorb_raw)."""
    try:
        msg = decode(data)
    except ProtocolError:
        return None
    if not isinstance(msg, (Measurements, MeasurementsPacked)):
        return None
    st = _new_state(1)
    reg = _reg(0)
    st.register(reg.slot, reg)
    st.absorb(reg, msg)
    rows = [(o.key.coll, o.key.n_bytes, o.arm.algo, o.arm.proto, o.arm.n_channels, o.count,
             o.sum_ns, o.sum_sq_ns, o.min_ns, o.max_ns, o.untimed, o.ranks)
            for o in st.take_observations(BRAIN)]
    return (msg.comm, msg.calls, msg.dropped, len(msg.stats)), rows


@pytest.mark.parametrize("entry", MANIFEST["valid"] + MANIFEST["invalid"],
                         ids=lambda e: e["file"])
def test_golden_vectors(native: NativeIngest, entry: dict[str, str]) -> None:
    data = (VECTORS / entry["file"]).read_bytes()
    nat, py = native_view(native, data), python_view(data)
    is_meas = entry in MANIFEST["valid"] and entry["type"] in ("MEASUREMENTS",
                                                               "MEASUREMENTS_PACKED")
    assert (nat is not None) == is_meas
    assert nat == py
    if is_meas:
        head = native.decode(data)
        assert head is not None and not head.exact   # the vectors are canonical


def _random_report(rng: random.Random) -> dict[str, Any]:
    stats = []
    for _ in range(rng.choice([0, 1, 2, 3, 17])):
        sk = (rng.randint(0, 4), rng.choice([0, 1, 127, 128, 65535, 1 << 40, U64_MAX]),
              rng.randint(0, 6), rng.randint(0, 2), rng.choice([0, 1, 15, 64]))
        c = rng.choice([0, 1, 200, 70000, 1 << 33])
        lo = rng.choice([0, 1, 300, 1 << 32])
        stats.append(stat(sk, c, float(c * lo) if c else 0.0, float(c * lo * lo) if c else 0.0,
                          lo if c else 0, lo + rng.randint(0, 99) if c else 0,
                          rng.choice([0, 0, 3, U64_MAX])))
    return report(rng.choice([0, 5, COMM, U64_MAX]), rng.choice([0, 1, 1 << 20, U64_MAX]), stats,
                  rng.choice([0, 9]))


_TYPE_BYTES = [0x00, 0x05, 0x7F, 0x80, 0x85, 0x8C, 0x90, 0x9F, 0xA0, 0xA5, 0xBF, 0xC0, 0xC1,
               0xC2, 0xC3, 0xC4, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD3, 0xD9, 0xDC,
               0xDD, 0xDE, 0xDF, 0xE0, 0xFF]
_BAD_VALUES: list[Any] = [-1, 2**64 - 1, 65, 7, 5, 3, 1.5, -0.0, float("nan"), float("inf"),
                          -0.5, True, None, "x", [], {}, [0] * 47, [0] * 49, [1.0] * 48,
                          [2**32] * 48, [2**32 - 1] * 48, 0, 0.0, 10**6, 2.5e300]


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.random()
        i = rng.randrange(len(b))
        if op < 0.35:
            b[i] = rng.choice(_TYPE_BYTES)
        elif op < 0.6:
            b[i] = rng.randrange(0x80)          # a fixint: often still valid, maybe out of range
        elif op < 0.7:
            b[i] = rng.randrange(256)
        elif op < 0.8:
            b.insert(i, rng.choice(_TYPE_BYTES))
        elif op < 0.87:
            del b[i]
        elif op < 0.94:
            b += bytes([rng.choice(_TYPE_BYTES)])   # trailing data after the one object
        else:
            del b[i:]
        if not b:
            break
    return bytes(b)


def _mutate_fields(rng: random.Random, obj: dict[str, Any]) -> dict[str, Any]:
    m: dict[str, Any] = json.loads(json.dumps(obj))   # a deep copy; these floats survive JSON
    target: dict[str, Any] = m
    if m["stats"] and rng.random() < 0.8:
        target = rng.choice(m["stats"])
    key = rng.choice(list(target))
    op = rng.random()
    if op < 0.1 and key != "t":
        del target[key]
    elif op < 0.2:
        target["extra"] = 1
    elif key != "t":
        target[key] = rng.choice(_BAD_VALUES)
    return m


def test_mutated_frames_decode_alike(native: NativeIngest) -> None:
    rng = random.Random(4242)
    outcomes = {"both_accept": 0, "both_reject": 0, "u64_overflow": 0}
    for i in range(2500):
        obj = _random_report(rng)
        if i % 2:
            data = _mutate_bytes(rng, encode(Measurements.model_validate(obj)))
        else:
            how = rng.choice(["packb", "wide_ints", "reordered", "float32"])
            bad = _mutate_fields(rng, obj)
            try:
                data = encode_as(how, bad, rng)
            except OverflowError:   # a float beyond float32's range
                data = encode_as("packb", bad, rng)
        outcomes[_agree(native, data, i)] += 1
    # Both outcomes are well represented, so neither direction is tested vacuously.
    assert outcomes["both_accept"] > 300 and outcomes["both_reject"] > 1000, outcomes


def _agree(native: NativeIngest, data: bytes, i: int) -> str:
    """Asserts that the native and the Python path see the same frame alike; says how."""
    nat, py = native_view(native, data), python_view(data)
    if nat is not None and py is not None and any(
            row[5] > U64_MAX or row[10] > U64_MAX for row in py[1]):
        # A key repeated within the report summed past 64 bits: the paths are known to differ
        # there (test_window_sums_beyond_u64_alike); the decoders still agree.
        assert nat[0] == py[0], (i, data.hex())
        return "u64_overflow"
    assert nat == py, (i, data.hex())
    return "both_accept" if nat is not None else "both_reject"


def _packed_msg(obj: dict[str, Any]) -> MeasurementsPacked:
    msg = Measurements.model_validate(obj)
    return MeasurementsPacked(comm=msg.comm, calls=msg.calls, dropped=msg.dropped,
                              stats=[PackedStat.from_stat(s) for s in msg.stats])


def _packed(obj: dict[str, Any]) -> bytes:
    return encode(_packed_msg(obj))


def _mutate_row(rng: random.Random, data: bytes) -> bytes:
    """A packed report with one PackedStat element (or its run) replaced or the row resized."""
    m = msgpack.unpackb(data, raw=False)
    if not m["stats"]:
        m["dropped"] = rng.choice(_BAD_VALUES)
        return bytes(msgpack.packb(m, use_bin_type=True))
    row = rng.choice(m["stats"])
    op = rng.random()
    if op < 0.15:
        del row[rng.randrange(len(row))]
    elif op < 0.25:
        row.append(rng.choice([0, 1, []]))
    elif op < 0.6:
        run = row[10]
        choices: list[Any] = [[], [0], [47, 1], [46, 1, 1, 1], [0] + [1] * 48, [0] + [1] * 49,
                              [48, 1], [-1, 1], [3, 0, 5, 0], [3, 1.0], [3, 2**32], {}, 5,
                              run[:1], run + [0], [run[0] - 1, 0, *run[1:]] if run else [1, 1]]
        row[10] = rng.choice(choices)
    else:
        row[rng.randrange(len(row))] = rng.choice(_BAD_VALUES)
    return bytes(msgpack.packb(m, use_bin_type=True))


def test_mutated_packed_frames_decode_alike(native: NativeIngest) -> None:
    rng = random.Random(777)
    outcomes = {"both_accept": 0, "both_reject": 0, "u64_overflow": 0}
    for i in range(2500):
        data = _packed(_random_report(rng))
        data = _mutate_bytes(rng, data) if i % 2 else _mutate_row(rng, data)
        outcomes[_agree(native, data, i)] += 1
    assert outcomes["both_accept"] > 300 and outcomes["both_reject"] > 1000, outcomes


def test_packed_and_map_reports_absorb_alike(native: NativeIngest) -> None:
    rng = random.Random(99)
    for _ in range(200):
        obj = _random_report(rng)
        plain, packed = native_view(native, encode(Measurements.model_validate(obj))), \
            native_view(native, _packed(obj))
        assert plain is not None and plain == packed
        assert native.decode(_packed(obj)) is not None


# ---- layout and exports ---------------------------------------------------------------------------


def test_obs_dtype_matches_cffi_layout(native: NativeIngest) -> None:
    ffi = native.ffi
    assert OBS_DTYPE.itemsize == ffi.sizeof("cpi_obs")
    assert OBS_DTYPE.names is not None
    for name in OBS_DTYPE.names:
        assert OBS_DTYPE.fields is not None
        assert OBS_DTYPE.fields[name][1] == ffi.offsetof("cpi_obs", name), name
    # NativeAgg.take's rows are in OBS_DTYPE's field order, one value per field.
    agg = native.new_agg(1)
    sk = (3, 77, 5, 1, 9)
    native.decode(encode(Measurements.model_validate(report(
        COMM, 1, [stat(sk, 2, 20.0, 200.0, 9, 11, 4)]))))
    assert agg.absorb(0, True)
    (row,) = agg.take(BRAIN)
    assert dict(zip(OBS_DTYPE.names, row, strict=True)) == {
        "n_bytes": 77, "count": 2, "untimed": 4, "min_ns": 9, "max_ns": 11, "sum_ns": 20.0,
        "sum_sq_ns": 200.0, "coll": 3, "algo": 5, "proto": 1, "n_channels": 9, "ranks": 1,
        "row": 0}


def test_cdef_matches_the_compiled_header(native: NativeIngest, tmp_path: Path) -> None:
    """cffi's ABI mode lays structs out from ingest.py's restatement of the header, not from the
    header: compile the real header and compare, so the two cannot drift apart unnoticed."""
    text = HEADER.read_text()
    assert f"#define CPI_API_VERSION {ingest_mod.API_VERSION}\n" in text
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to compile cpi_ingest.h with")
    fields = {"cpi_obs": OBS_DTYPE.names or (),
              "cpi_report_head": ("comm", "calls", "dropped", "n_stats", "exact"),
              "cpi_agg_info": ("rows", "pending", "senders", "stats_dropped")}
    lines = []
    for struct_name, names in fields.items():
        lines.append(f'printf("{struct_name} %zu\\n", sizeof({struct_name}));')
        for f in names:
            lines.append(f'printf("{struct_name}.{f} %zu\\n", offsetof({struct_name}, {f}));')
    src = tmp_path / "layout.c"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include \"cpi_ingest.h\"\n"
                   "int main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n")
    exe = tmp_path / "layout"
    done = subprocess.run([cc, "-I", str(HEADER.parent), str(src), "-o", str(exe)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    got = dict(line.split() for line in subprocess.run(
        [str(exe)], capture_output=True, text=True, check=True).stdout.splitlines())
    ffi = native.ffi
    for struct_name, names in fields.items():
        assert int(got[struct_name]) == ffi.sizeof(struct_name), struct_name
        for f in names:
            assert int(got[f"{struct_name}.{f}"]) == ffi.offsetof(struct_name, f), (struct_name, f)


EXPORTS = {"cpi_api_version", "cpi_decoder_new", "cpi_decoder_free", "cpi_decode_measurements",
           "cpi_agg_new", "cpi_agg_free", "cpi_agg_absorb", "cpi_agg_take", "cpi_agg_get_info"}


def test_exported_symbols_are_exactly_the_api(ingest_library: Path) -> None:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed: cannot list the library's dynamic symbols")
    out = subprocess.run([nm, "-D", "--defined-only", str(ingest_library)], capture_output=True,
                         text=True, check=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert names == EXPORTS
    # ...and the cdef declares exactly these, so every one is reachable from Python.
    assert {n for n in EXPORTS if hasattr(NativeIngest().lib, n)} == EXPORTS


# ---- fallback and errors --------------------------------------------------------------------------


def test_missing_library_falls_back_with_one_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    def missing() -> Path:
        raise PluginLoadError("libcclpilot-ingest.so not found (looked in: nowhere)")

    monkeypatch.setattr(paths, "ingest_library", missing)
    with caplog.at_level(logging.WARNING, logger="cclpilot.daemon"):
        assert load_native_ingest() is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Python path" in warnings[0].getMessage()
    assert "not found" in warnings[0].getMessage()

    # A path that exists nowhere, and a file that is not a library: IngestError naming the path
    # and the remedy; load_native_ingest turns either into the fallback.
    bad = tmp_path / "nowhere" / "libcclpilot-ingest.so"
    junk = tmp_path / "junk.so"
    junk.write_text("not an ELF file\n")
    for path in (bad, junk):
        with pytest.raises(IngestError) as err:
            NativeIngest(path)
        assert str(path) in str(err.value) and "rebuild" in str(err.value)
        monkeypatch.setattr(paths, "ingest_library", lambda p=path: p)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cclpilot.daemon"):
            assert load_native_ingest() is None
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1

    # The daemon runs on the Python path then, and says so.
    monkeypatch.setattr(paths, "ingest_library", missing)
    d = Daemon(DaemonConfig(run_dir=tmp_path / "run", ipc_dir=tmp_path / "ipc", fsync=False))
    try:
        assert d.stats.ingest == "python" and d.stats.as_dict()["ingest"] == "python"
    finally:
        d.start()
        d.stop()


def test_api_version_mismatch_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    built = ingest_mod.API_VERSION   # what the library reports (test_header_... checks it)
    monkeypatch.setattr(ingest_mod, "API_VERSION", 97)
    with pytest.raises(IngestError) as err:
        NativeIngest()
    text = str(err.value)
    assert f"API {built}" in text and "97" in text and str(paths.ingest_library()) in text
    assert load_native_ingest() is None


# ---- daemon level ---------------------------------------------------------------------------------


class RecordingBrain(NullBrain):
    """Never proposes; keeps every observation it is told."""

    def __init__(self, info: CommInfo, sink: list[Observation]) -> None:
        super().__init__(info)
        self.sink = sink

    def tell(self, observations: Sequence[Observation]) -> None:
        super().tell(observations)
        self.sink.extend(observations)


def _recording_factory(sink: list[Observation]) -> Callable[[CommInfo], RecordingBrain]:
    return lambda info: RecordingBrain(info, sink)


Totals = dict[tuple[Key, ArmRan], tuple[int, float, int]]


def _totals(obs: Iterator[Observation] | list[Observation]) -> Totals:
    t: dict[tuple[Key, ArmRan], list[Any]] = {}
    for o in obs:
        v = t.setdefault((o.key, o.arm), [0, 0.0, 0])
        v[0] += o.count
        v[1] += o.sum_ns
        v[2] += o.untimed
    return {k: (v[0], v[1], v[2]) for k, v in t.items() if v[0] or v[2]}


def _summary_lines(run_dir: Path) -> list[list[Observation]]:
    files = list((run_dir / "comms").glob("*/measurements.jsonl"))
    if not files:
        return []
    assert len(files) == 1, files
    out = []
    for line in files[0].read_text().splitlines():
        out.append([Observation(Key(o["coll"], o["n_bytes"], o["num_pipe_ops"]),
                                ArmRan(o["algo"], o["proto"], o["n_channels"]), o["count"],
                                o["sum_ns"], o["sum_sq_ns"], o["min_ns"], o["max_ns"],
                                o["untimed"], o["ranks"], o["calls"], o["key_ambiguous"])
                    for o in json.loads(line)["observations"]])
    return out


class Fleet:
    """Daemons fed the same messages by their own DEALER peers, one per rank."""

    def __init__(self, tmp_path: Path, configs: dict[str, dict[str, Any]], n_ranks: int) -> None:
        self.daemons: dict[str, Daemon] = {}
        self.told: dict[str, list[Observation]] = {}
        self.peers: dict[str, list[Peer]] = {}
        for name, kw in configs.items():
            sink: list[Observation] = []
            self.told[name] = sink
            factory = _recording_factory(sink)
            cfg = DaemonConfig(run_dir=tmp_path / name / "run", ipc_dir=tmp_path / name / "ipc",
                               fsync=False, brain_factory=factory, **kw)
            self.daemons[name] = Daemon(cfg).start()
        self.n_ranks = n_ranks

    def register(self) -> None:
        for name, d in self.daemons.items():
            self.peers[name] = [Peer(d.endpoint) for _ in range(self.n_ranks)]
            for r, p in enumerate(self.peers[name]):
                p.hello(COMM, self.n_ranks, r, pid=2000 + r)
                w = p.recv()
                assert isinstance(w, Welcome), w

    def send(self, rank: int, data: bytes) -> None:
        for peers in self.peers.values():
            peers[rank].send_raw(data)

    def wait(self, cond: Callable[[Daemon], bool], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for name, d in self.daemons.items():
            while not cond(d):
                assert time.monotonic() < deadline, f"{name}: timed out waiting for {what}"
                time.sleep(0.01)

    def stop(self) -> None:
        for peers in self.peers.values():
            for p in peers:
                p.close()
        for d in self.daemons.values():
            d.stop()


def _key_report(coll: int, n_bytes: int, npo: int) -> bytes:
    cost = [[1.0, 2.0, 3.0]] * 7
    return encode(KeyReport(comm=COMM, coll=coll, n_bytes=n_bytes, num_pipe_ops=npo, call=0,
                            cost=cost))


def _truth(senders: list[SenderState], reported: list[tuple[int, int, int]]) -> Totals:
    pipes: dict[tuple[int, int], set[int]] = {}
    for coll, n_bytes, npo in reported:
        pipes.setdefault((coll, n_bytes), set()).add(npo)
    t: dict[tuple[Key, ArmRan], list[Any]] = {}
    for s in senders:
        for sk, (c, su, _q, _lo, _hi, u) in s.cumul.items():
            p = pipes.get((sk[0], sk[1]), set())
            key = Key(sk[0], sk[1], next(iter(p)) if len(p) == 1 else 1)
            v = t.setdefault((key, ArmRan(sk[2], sk[3], sk[4])), [0, 0.0, 0])
            v[0] += c
            v[1] += su
            v[2] += u
    return {k: (v[0], v[1], v[2]) for k, v in t.items() if v[0] or v[2]}


def _drive(fleet: Fleet, rng: random.Random, rounds: int, period_s: float,
           final_calls: int) -> list[SenderState]:
    """Monotone cumulative reports (integer durations, so float sums are exact), every rank
    each round; some non-canonical. The last round reports calls == final_calls."""
    senders = [SenderState() for _ in range(fleet.n_ranks)]
    for rnd in range(rounds):
        for r, s in enumerate(senders):
            for sk in UNIVERSE[: 4 + rnd * len(UNIVERSE) // rounds]:
                if rng.random() < 0.8:
                    s.advance(rng, sk, whole_ns=True)
            stats = [stat(sk, *s.cumul[sk]) for sk in sorted(s.cumul)]
            calls = final_calls if rnd == rounds - 1 else rnd * 10 + 1
            how = rng.choice(["canonical", "canonical", "reordered", "wide_ints"])
            fleet.send(r, encode_as(how, report(COMM, calls, stats), rng))
        time.sleep(period_s)
    return senders


def test_daemons_native_and_python_agree(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, {"native": {"summary_ms": 150, "ask_interval_ms": 20},
                             "python": {"summary_ms": 150, "ask_interval_ms": 20,
                                        "native_ingest": False}}, n_ranks=4)
    try:
        assert fleet.daemons["native"].stats.ingest == "native"
        assert fleet.daemons["python"].stats.ingest == "python"
        fleet.register()
        reported = [k for k in KEY_REPORTS if k != (3, U64_MAX, 2)]
        for k in reported:
            fleet.send(0, _key_report(*k))
        fleet.wait(lambda d: (st := d.comm_state(COMM)) is not None
                   and len(st.keys) == len(reported), "the KEY_REPORTs")
        senders = _drive(fleet, random.Random(5), rounds=24, period_s=0.02, final_calls=10**6)
        fleet.wait(lambda d: (st := d.comm_state(COMM)) is not None
                   and st.min_calls() == 10**6, "the last reports")
        truth = _truth(senders, reported)
        assert len(truth) == len(UNIVERSE)
        # The brain hears of everything (tells are asynchronous: wait for the last).
        deadline = time.monotonic() + 10
        while any(_totals(list(t)) != truth for t in fleet.told.values()) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        for name, told in fleet.told.items():
            assert _totals(list(told)) == truth, name
        nat, py = fleet.daemons["native"], fleet.daemons["python"]
        st_nat, st_py = nat.comm_state(COMM), py.comm_state(COMM)
        assert st_nat is not None and st_py is not None
        assert st_nat.native is not None and st_py.native is None
        assert all(not reg.cumul for reg in st_nat.slots.values())
        assert all(reg.cumul for reg in st_py.slots.values())
        assert nat.stats.measurements_exact > 0     # the reordered reports took the full decoder
    finally:
        fleet.stop()
    for name, d in fleet.daemons.items():
        assert d.stats.internal_errors == 0 and not d.stats.rejected, (name, d.stats)
        lines = _summary_lines(d.run_dir)
        assert len(lines) >= 2, (name, len(lines))
        assert _totals([o for line in lines for o in line]) == truth, name
    # Each tell and each summary line holds at most one observation per (key, arm).
    for name, told in fleet.told.items():
        assert len(told) > len(truth), name


def test_summary_interval_bounds_lines_and_shutdown_keeps_the_rest(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, {"often": {"summary_ms": 500}, "never": {"summary_ms": 100_000},
                             "often_py": {"summary_ms": 500, "native_ingest": False}},
                  n_ranks=2)
    try:
        fleet.register()
        time.sleep(0.1)   # the first timer pass after registration, with nothing pending yet
        t0 = time.monotonic()
        senders = _drive(fleet, random.Random(8), rounds=30, period_s=0.05, final_calls=77)
        fleet.wait(lambda d: (st := d.comm_state(COMM)) is not None and st.min_calls() == 77,
                   "the last reports")
        elapsed = time.monotonic() - t0
    finally:
        fleet.stop()
    truth = _truth(senders, [])
    for name, d in fleet.daemons.items():
        lines = _summary_lines(d.run_dir)
        assert _totals([o for line in lines for o in line]) == truth, name
        if name == "never":
            assert len(lines) == 1, len(lines)            # written at shutdown, all of it
        else:
            # About one line per 500 ms of reports, plus the last partial window at shutdown.
            assert 2 <= len(lines) <= int(elapsed / 0.5) + 2, (name, len(lines), elapsed)


def test_native_refusal_of_a_valid_report_drops_it(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """server._on_frames: the native decoder refusing a MEASUREMENTS that the Python decoder
    accepts is a daemon bug; the report is dropped and counted, never absorbed on either path
    (a Python absorb would difference against counters the native path does not share)."""
    d = Daemon(DaemonConfig(run_dir=tmp_path / "run", ipc_dir=tmp_path / "ipc",
                            fsync=False)).start()
    try:
        ingest = d._ingest
        assert ingest is not None
        real_decode = ingest.decode
        refused = threading.Event()

        def refuse(data: bytes) -> ReportHead | None:
            refused.set()
            return None

        monkeypatch.setattr(ingest, "decode", refuse)
        p = Peer(d.endpoint)
        p.hello(COMM, 1, 0)
        assert isinstance(p.recv(), Welcome)
        sk = (4, 1 << 20, 1, 2, 8)
        p.send(Measurements.model_validate(report(COMM, 50, [stat(sk, 3, 30.0, 300.0, 10, 10,
                                                                   1)])))
        deadline = time.monotonic() + 5
        while d.stats.internal_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert refused.is_set() and d.stats.internal_errors == 1
        st = d.comm_state(COMM)
        assert st is not None
        assert st.native is None                           # nothing absorbed natively
        assert not st.agg and not st.agg_summary           # nor on the Python path
        assert all(not reg.cumul and reg.last_calls == 0 for reg in st.slots.values())
        assert d.stats.by_type["MEASUREMENTS"] == 0 and not d.stats.rejected
        # The same for the packed form (which the Python side decodes through pydantic).
        p.send(_packed_msg(report(COMM, 55, [stat(sk, 4, 40.0, 400.0, 10, 10, 1)])))
        while d.stats.internal_errors < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert d.stats.internal_errors == 2 and st.native is None
        assert d.stats.by_type["MEASUREMENTS_PACKED"] == 0 and not d.stats.rejected
        # With the decoder back, the next report goes through natively.
        monkeypatch.setattr(ingest, "decode", real_decode)
        p.send(Measurements.model_validate(report(COMM, 60, [stat(sk, 5, 50.0, 500.0, 10, 10,
                                                                   1)])))
        # max_calls is noted before the report is absorbed: wait for the absorb itself.
        while (st.native is None or st.native.info()["senders"] != 1) and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        assert st.max_calls == 60
        assert st.native is not None and st.native.info()["senders"] == 1
        assert d.stats.internal_errors == 2   # the two refused above, nothing since
        p.close()
    finally:
        d.stop()
    lines = _summary_lines(d.run_dir)
    # The refused report's samples never reached the artifacts: the first report the daemon
    # absorbed is taken whole (5 samples), not 5 on top of 3.
    assert _totals([o for line in lines for o in line]) == {
        (Key(4, 1 << 20, 1), ArmRan(1, 2, 8)): (5, 50.0, 1)}


# ---- divergences this file found, fixed: each keeps the smallest input that showed it ----------


def test_reregistered_slot_differences_alike(native: NativeIngest) -> None:
    sk = (4, 1024, 1, 2, 8)
    pair = Pair(native, 2)
    pair.absorb(0, encode(Measurements.model_validate(report(
        COMM, 1, [stat(sk, 10, 100.0, 1000.0, 10, 10, 0)]))))
    pair.take(BRAIN)
    for st in (pair.nat, pair.py):
        st.unregister(("r", 0))
    ra, rb = _reg(0), _reg(0)
    pair.nat.register(ra.slot, ra)
    pair.py.register(rb.slot, rb)
    pair.regs[0] = (ra, rb)
    pair.absorb(0, encode(Measurements.model_validate(report(
        COMM, 2, [stat(sk, 15, 150.0, 1500.0, 10, 10, 0)]))))
    # Counters belong to the slot: the re-registered rank continues them (5 new samples).
    assert [o.count for o in pair.take(BRAIN)] == [5]


def test_window_sums_beyond_u64_alike(native: NativeIngest) -> None:
    sk = (4, 1024, 1, 2, 8)
    pair = Pair(native, 2)
    for r in range(2):
        pair.absorb(r, encode(Measurements.model_validate(report(
            COMM, 1, [stat(sk, 0, 0.0, 0.0, 0, 0, 1 << 63)]))))
    assert [o.untimed for o in pair.take(BRAIN)] == [(1 << 64) - 1]   # saturated, not wrapped


def test_communicator_row_limit_alike(native: NativeIngest,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "MAX_ROWS", 4)
    pair = Pair(native, 2)
    pair.nat.native = native.new_agg(pair.nat.max_senders(), max_rows=4)
    for r in range(2):
        stats = [stat((4, 1 << (k + 3 * r), 1, 2, 8), 1, 1.0, 1.0, 1, 1, 0) for k in range(3)]
        pair.absorb(r, encode(Measurements.model_validate(report(COMM, 1, stats))))
    assert len(pair.take(BRAIN)) == 4   # the communicator's limit; 2 stats dropped on each path
    assert pair.py.stats_dropped == 2


def test_counters_follow_a_connection_that_changes_slot(native: NativeIngest) -> None:
    """HELLO without a rank, then with it (the rank became known): same plugin, same counters."""
    sk = (4, 1024, 1, 2, 8)
    pair = Pair(native, 2)
    pair.absorb(0, encode(Measurements.model_validate(report(
        COMM, 1, [stat(sk, 10, 100.0, 1000.0, 10, 10, 0)]))))
    assert [o.count for o in pair.take(BRAIN)] == [10]
    for st, reg in zip((pair.nat, pair.py), pair.regs[0]):
        new_slot = ("p", "node0", 4242)
        st.unregister(reg.slot)
        st.move_counters(reg.slot, new_slot)
        moved = RankReg(new_slot, reg.identity, None, "node0", 4242, frozenset(), 2)
        st.register(new_slot, moved)
    pair.regs[0] = (pair.nat.slots[("p", "node0", 4242)], pair.py.slots[("p", "node0", 4242)])
    pair.absorb(0, encode(Measurements.model_validate(report(
        COMM, 2, [stat(sk, 12, 120.0, 1200.0, 10, 10, 0)]))))
    assert [o.count for o in pair.take(BRAIN)] == [2]   # not 12: nothing counted twice


def test_window_extremes_come_from_contributors_with_timed_samples(native: NativeIngest) -> None:
    """A window opened by a sender whose news is untimed only still keeps that sender's
    cumulative minimum; a sender without timed samples never sets the extremes."""
    sk = (4, 1024, 1, 2, 8)
    pair = Pair(native, 3)

    def send(rank: int, calls: int, count: int, lo: int, hi: int, untimed: int) -> None:
        pair.absorb(rank, encode(Measurements.model_validate(report(
            COMM, calls, [stat(sk, count, 10.0 * count, 100.0 * count, lo, hi, untimed)]))))

    send(0, 1, 5, 10, 20, 0)
    pair.take(BRAIN)
    send(0, 2, 5, 10, 20, 1)       # untimed news only: opens the window
    send(1, 2, 3, 15, 18, 0)       # first report: 3 timed samples
    send(2, 2, 0, 0, 0, 4)         # no timed samples at all
    (o,) = pair.take(BRAIN)
    assert (o.count, o.untimed, o.min_ns, o.max_ns, o.ranks) == (3, 5, 10, 20, 3)
    send(2, 3, 0, 0, 0, 6)
    (o,) = pair.take(BRAIN)
    assert (o.count, o.min_ns, o.max_ns) == (0, 0, 0)
