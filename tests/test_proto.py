"""Wire protocol: golden vectors, codec strictness, round trips, and PROTOCOL.md agreeing with code."""

from __future__ import annotations

import json
import random
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable

import msgpack  # type: ignore[import-untyped]
import pytest
from pydantic import BaseModel

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "scripts"))

from cclpilot.errors import CclpilotError  # noqa: E402
from cclpilot.proto import (  # noqa: E402
    ERROR_KINDS, FEATURES, LIMITS, MESSAGE_TYPES, PROTOCOL_VERSION, SEQ_HASH_INIT, Abort, Ack,
    Arm, Commit, Error, Heartbeat, Hello, KeyReport, Measurements, Message, Prepare,
    ProtocolError, Rule, Stat, Welcome, decode, encode, seq_hash_update)
from cclpilot.proto import messages as M  # noqa: E402
from cclpilot.proto.version import parse_version  # noqa: E402

import gen_proto_vectors  # noqa: E402

PROTO = REPO / "proto"
VECTORS = PROTO / "vectors"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))


# ---- golden vectors -----------------------------------------------------------------------------

@pytest.mark.parametrize("entry", MANIFEST["valid"], ids=lambda e: e["file"])
def test_valid_vector_decodes_and_reencodes_identically(entry: dict[str, str]) -> None:
    data = (VECTORS / entry["file"]).read_bytes()
    msg = decode(data)
    assert msg.t == entry["type"]
    assert type(msg) is MESSAGE_TYPES[entry["type"]]
    assert encode(msg) == data


@pytest.mark.parametrize("entry", MANIFEST["invalid"], ids=lambda e: e["file"])
def test_invalid_vector_rejected_with_expected_kind(entry: dict[str, str]) -> None:
    assert entry["kind"] in ERROR_KINDS
    data = (VECTORS / entry["file"]).read_bytes()
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert info.value.kind == entry["kind"], str(info.value)
    assert isinstance(info.value, CclpilotError)
    assert entry["kind"] in str(info.value)


def test_manifest_lists_exactly_the_files_present() -> None:
    for sub in ("valid", "invalid"):
        on_disk = {f"{sub}/{p.name}" for p in (VECTORS / sub).iterdir()}
        listed = {e["file"] for e in MANIFEST[sub]}
        assert on_disk == listed, f"{sub}: unlisted {on_disk - listed}, missing {listed - on_disk}"
    assert MANIFEST["protocol"] == "%d.%d" % PROTOCOL_VERSION


def test_every_message_type_and_rejection_kind_has_a_vector() -> None:
    assert {e["type"] for e in MANIFEST["valid"]} == set(MESSAGE_TYPES)
    assert {e["kind"] for e in MANIFEST["invalid"]} == set(ERROR_KINDS)


def test_checked_in_vectors_match_the_generator(tmp_path: Path) -> None:
    gen_proto_vectors.generate(tmp_path)
    produced = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    expected = sorted(p.relative_to(VECTORS) for p in VECTORS.rglob("*")
                      if p.is_file() and p.name != "README.md")
    assert produced == expected
    for rel in produced:
        assert (tmp_path / rel).read_bytes() == (VECTORS / rel).read_bytes(), (
            f"{rel} is stale: run python3 scripts/gen_proto_vectors.py")


# ---- codec behaviour beyond the vectors ---------------------------------------------------------

def test_decoder_accepts_any_field_order_and_non_canonical_ints() -> None:
    canonical = (VECTORS / "valid/commit.msgpack").read_bytes()
    fields = msgpack.unpackb(canonical)
    reordered = dict(reversed(list(fields.items())))
    msg = decode(msgpack.packb(reordered))
    # plan 3 as uint64 instead of a positive fixint: same value, different bytes
    wide = canonical.replace(b"\xa4plan\x03", b"\xa4plan\xcf" + (3).to_bytes(8, "big"))
    assert wide != canonical
    assert decode(wide) == msg == decode(canonical)
    assert encode(decode(wide)) == canonical


def test_float32_accepted_for_f64() -> None:
    key = msgpack.unpackb((VECTORS / "valid/key_report.msgpack").read_bytes())
    data = msgpack.packb(key, use_single_float=True)
    assert decode(data) == decode(msgpack.packb(key))


def test_u64_extremes() -> None:
    top = Commit(comm=M.U64_MAX, plan=M.U64_MAX, activate_at=M.U64_MAX)
    assert decode(encode(top)) == top
    with pytest.raises(ProtocolError) as info:
        decode(msgpack.packb({"t": "COMMIT", "comm": -1, "plan": 1, "activate_at": 0}))
    assert info.value.kind == "bad_value" and info.value.path == "comm"


def test_unknown_feature_in_hello_is_allowed_but_not_in_tag_syntax() -> None:
    hello = msgpack.unpackb((VECTORS / "valid/hello.msgpack").read_bytes())
    hello["features"] = ["measure", "from-a-newer-minor"]
    decoded = decode(msgpack.packb(hello))
    assert isinstance(decoded, Hello) and decoded.features == ["measure", "from-a-newer-minor"]
    hello["features"] = ["Bad Name"]
    with pytest.raises(ProtocolError) as info:
        decode(msgpack.packb(hello))
    assert info.value.kind == "bad_value" and info.value.path == "features.0"


def test_newer_minor_same_major_is_accepted() -> None:
    hello = msgpack.unpackb((VECTORS / "valid/hello.msgpack").read_bytes())
    hello["version"] = [PROTOCOL_VERSION[0], PROTOCOL_VERSION[1] + 1]
    decoded = decode(msgpack.packb(hello))
    assert isinstance(decoded, Hello) and decoded.version == hello["version"]


def test_string_limits_count_utf8_bytes() -> None:
    ok = Abort(comm=1, plan=1, reason="é" * (M.MAX_STR_BYTES // 2))
    assert decode(encode(ok)) == ok
    raw = {"t": "ABORT", "comm": 1, "plan": 1, "reason": "é" * (M.MAX_STR_BYTES // 2 + 1)}
    with pytest.raises(ProtocolError) as info:
        decode(msgpack.packb(raw))
    assert info.value.kind == "limit"


def test_deep_nesting_far_beyond_limits_is_rejected_not_crashing() -> None:
    data = b"\x81\xa1t" + b"\x91" * 100_000 + b"\x00"
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert info.value.kind == "limit"


def test_encoder_refuses_oversize_output(monkeypatch: pytest.MonkeyPatch) -> None:
    import cclpilot.proto.codec as codec
    msg = Heartbeat(seq=1, time_ns=2)
    monkeypatch.setattr(codec, "MAX_MESSAGE_BYTES", len(encode(msg)) - 1)
    with pytest.raises(ProtocolError) as info:
        codec.encode(msg)
    assert info.value.kind == "limit"


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(TypeError):
        decode("HELLO")  # type: ignore[arg-type]


def _worst_case() -> list[Message]:
    u, u32 = M.U64_MAX, M.U32_MAX
    arm = Arm(algo=-1, proto=-1, n_channels=M.MAX_CHANNELS, chunk_size=u32)
    rule = Rule(coll=4, min_bytes=u, max_bytes=u, n_nodes=M.I32_MAX, n_ranks=M.I32_MAX,
                num_pipe_ops=M.I32_MAX, arms=[arm] * M.MAX_ARMS)
    stat = Stat(coll=4, n_bytes=u, algo=6, proto=2, n_channels=64, count=u, sum_ns=1e300,
                sum_sq_ns=1e300, min_ns=u, max_ns=u, hist=[u32] * M.HIST_BUCKETS, untimed=u)
    big = "x" * M.MAX_STR_BYTES
    name = "n" * M.MAX_NAME_BYTES
    feats = [f"{i:02d}" + "f" * (M.MAX_FEATURE_BYTES - 2) for i in range(M.MAX_FEATURES)]
    return [
        Prepare(comm=u, plan=u, activate_at=u, rules=[rule] * M.MAX_RULES),
        Measurements(comm=u, calls=u, dropped=u, stats=[stat] * M.MAX_STATS),
        M.MeasurementsPacked(comm=u, calls=u, dropped=u,
                             stats=[M.PackedStat.from_stat(stat)] * M.MAX_STATS),
        Hello(version=[PROTOCOL_VERSION[0], 65535], features=feats, job=name, comm=u, n_ranks=M.I32_MAX,
              n_nodes=M.I32_MAX, rank=M.I32_MAX - 1, host=name, pid=u32, nccl_version=u32,
              tuner_abi=255, profiler_abi=255),
        Error(code="internal", message=big, ref="y" * 32, comm=u),
        Ack(comm=u, plan=u, ok=False, calls=u, seq_hash=u, reason=big),
    ]


@pytest.mark.parametrize("msg", _worst_case(), ids=lambda m: m.t)
def test_largest_schema_valid_messages_fit_the_limits(msg: Message) -> None:
    # The document promises that no valid message must be split; this is that promise.
    assert decode(encode(msg)) == msg


# ---- seeded random round trips and mutations ---------------------------------------------------

def _u64(rng: random.Random) -> int:
    return rng.choice([0, 1, 255, 65536, M.U32_MAX, M.U64_MAX, rng.getrandbits(rng.randint(1, 64))])


def _text(rng: random.Random, lo: int, hi: int) -> str:
    alphabet = "abcXYZ019 _-é€😀"
    out = ""
    target = rng.randint(lo, hi)
    while True:
        ch = rng.choice(alphabet)
        if len((out + ch).encode()) > target:
            break
        out += ch
    return out or "a"


def _float(rng: random.Random) -> float:
    return rng.choice([0.0, 1e-9, 3.5, 1e300, rng.random() * 1e6])


def _arm(rng: random.Random) -> Arm:
    return Arm(algo=rng.randint(-1, 6), proto=rng.randint(-1, 2), n_channels=rng.randint(0, 64),
               chunk_size=rng.choice([0, 512, M.U32_MAX]))


def _filter(rng: random.Random) -> int:
    return rng.choice([-1, 1, rng.randint(1, M.I32_MAX)])


def _rule(rng: random.Random) -> Rule:
    lo = _u64(rng)
    return Rule(coll=rng.randint(0, 4), min_bytes=lo, max_bytes=rng.randint(lo, M.U64_MAX),
                n_nodes=_filter(rng), n_ranks=_filter(rng), num_pipe_ops=_filter(rng),
                arms=[_arm(rng) for _ in range(rng.randint(1, M.MAX_ARMS))])


def _stat(rng: random.Random, sparse: bool = False) -> Stat:
    count = rng.choice([0, rng.randint(1, 10**6)])
    lo = rng.randint(0, 10**9)
    timed = count > 0
    if sparse and timed:  # a run somewhere, zeros inside it allowed
        first = rng.randrange(M.HIST_BUCKETS)
        last = rng.randint(first, M.HIST_BUCKETS - 1)
        hist = [0] * M.HIST_BUCKETS
        for b in range(first, last + 1):
            hist[b] = rng.choice([0, 1, rng.randint(1, M.U32_MAX)])
        hist[first] = hist[first] or 1
        return Stat(coll=rng.randint(0, 4), n_bytes=_u64(rng), algo=rng.randint(0, 6),
                    proto=rng.randint(0, 2), n_channels=rng.randint(0, 64), count=count,
                    sum_ns=_float(rng), sum_sq_ns=_float(rng), min_ns=lo,
                    max_ns=lo + rng.randint(0, 10**9), hist=hist, untimed=_u64(rng))
    return Stat(coll=rng.randint(0, 4), n_bytes=_u64(rng), algo=rng.randint(0, 6),
                proto=rng.randint(0, 2), n_channels=rng.randint(0, 64), count=count,
                sum_ns=_float(rng) if timed else 0.0, sum_sq_ns=_float(rng) if timed else 0.0,
                min_ns=lo if timed else rng.randint(0, 5), max_ns=lo + rng.randint(0, 10**9),
                hist=[rng.randint(0, M.U32_MAX) if timed else 0 for _ in range(M.HIST_BUCKETS)],
                untimed=_u64(rng))


def _cost(rng: random.Random) -> list[list[float]]:
    return [[rng.choice([M.COST_IGNORE, _float(rng)]) for _ in range(M.COST_PROTOS)]
            for _ in range(M.COST_ALGOS)]


def _random_message(rng: random.Random, tag: str) -> Message:
    v = [rng.randint(0, 65535) for _ in range(2)]
    v[0] = PROTOCOL_VERSION[0]
    feats = rng.sample(["measure", "plans", "x1", "a.b-c_d"], rng.randint(0, 4))
    n_ranks = rng.randint(1, 1 << 20)
    builders: dict[str, Callable[[], Message]] = {
        "HELLO": lambda: Hello(
            version=v, features=feats, job=_text(rng, 1, M.MAX_NAME_BYTES), comm=_u64(rng),
            n_ranks=n_ranks, n_nodes=rng.randint(1, n_ranks),
            rank=rng.choice([None, rng.randint(0, n_ranks - 1)]),
            host=_text(rng, 1, M.MAX_NAME_BYTES), pid=rng.randint(1, M.U32_MAX),
            nccl_version=rng.randint(0, 30000), tuner_abi=rng.choice([None, 2, 5, 6]),
            profiler_abi=rng.choice([None, 1, 4, 6])),
        "WELCOME": lambda: Welcome(
            version=v, features=feats, comm=_u64(rng), session=_u64(rng),
            heartbeat_ms=rng.randint(1, 600_000), report_ms=rng.randint(1, 600_000)),
        "KEY_REPORT": lambda: KeyReport(
            comm=_u64(rng), coll=rng.randint(0, 4), n_bytes=_u64(rng),
            num_pipe_ops=rng.randint(1, M.I32_MAX), call=_u64(rng), cost=_cost(rng)),
        "MEASUREMENTS": lambda: Measurements(
            comm=_u64(rng), calls=_u64(rng), dropped=_u64(rng),
            stats=[_stat(rng) for _ in range(rng.randint(0, 20))]),
        "MEASUREMENTS_PACKED": lambda: M.MeasurementsPacked(
            comm=_u64(rng), calls=_u64(rng), dropped=_u64(rng),
            stats=[M.PackedStat.from_stat(_stat(rng, sparse=True))
                   for _ in range(rng.randint(0, 20))]),
        "PREPARE": lambda: Prepare(
            comm=_u64(rng), plan=rng.randint(1, M.U64_MAX), activate_at=_u64(rng),
            rules=[_rule(rng) for _ in range(rng.randint(0, 20))]),
        "ACK": lambda: (lambda ok: Ack(
            comm=_u64(rng), plan=rng.randint(1, M.U64_MAX), ok=ok, calls=_u64(rng),
            seq_hash=_u64(rng), reason="" if ok else _text(rng, 1, M.MAX_STR_BYTES)))(
                rng.random() < 0.5),
        "COMMIT": lambda: Commit(comm=_u64(rng), plan=rng.randint(1, M.U64_MAX),
                                 activate_at=_u64(rng)),
        "ABORT": lambda: Abort(comm=_u64(rng), plan=rng.randint(1, M.U64_MAX),
                               reason=_text(rng, 1, M.MAX_STR_BYTES)),
        "HEARTBEAT": lambda: Heartbeat(seq=_u64(rng), time_ns=_u64(rng)),
        "ERROR": lambda: Error(
            code=rng.choice(M.ERROR_CODES), message=_text(rng, 1, M.MAX_STR_BYTES),  # type: ignore[arg-type]
            ref=rng.choice([None, rng.choice(list(MESSAGE_TYPES))]),
            comm=rng.choice([None, _u64(rng)])),
    }
    return builders[tag]()


@pytest.mark.parametrize("seed", range(8))
def test_random_messages_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        for tag in MESSAGE_TYPES:
            msg = _random_message(rng, tag)
            data = encode(msg)
            back = decode(data)
            assert back == msg
            assert encode(back) == data


@pytest.mark.parametrize("seed", range(4))
def test_random_corruptions_only_raise_protocol_errors(seed: int) -> None:
    # Whatever bytes arrive, the decoder answers with a message or a ProtocolError, nothing else.
    rng = random.Random(1000 + seed)
    sources = [(VECTORS / e["file"]).read_bytes() for e in MANIFEST["valid"]]
    for _ in range(400):
        data = bytearray(rng.choice(sources))
        op = rng.randrange(3)
        if op == 0:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1:
            del data[rng.randrange(len(data)):]
        else:
            pos = rng.randrange(len(data) + 1)
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        try:
            msg = decode(bytes(data))
        except ProtocolError as e:
            assert e.kind in ERROR_KINDS
        else:
            assert decode(encode(msg)) == msg


# ---- call-sequence hash -----------------------------------------------------------------------

def _word_fold(words: list[int]) -> int:
    # Written from PROTOCOL.md's definition, independently of cclpilot.proto.seqhash.
    h = 0xCBF29CE484222325
    for w in words:
        h = ((h ^ (w % (1 << 64))) * 0x100000001B3) % (1 << 64)
    return h


def test_seq_hash_is_the_word_wise_fnv_fold() -> None:
    calls = [(4, 1 << 20, 1), (2, 4096, 1), (0, M.U64_MAX, M.I32_MAX), (-1, 0, 1)]
    h = SEQ_HASH_INIT
    words: list[int] = []
    for c in calls:
        h = seq_hash_update(h, *c)
        words += list(c)
        assert h == _word_fold(words)
    for entry in MANIFEST["seq_hash"]:
        h = SEQ_HASH_INIT
        for c in entry["calls"]:
            h = seq_hash_update(h, *c)
        assert f"{h:#018x}" == entry["hash"]


def test_seq_hash_tells_apart_any_single_differing_call() -> None:
    import random
    rng = random.Random(5)
    for _ in range(2000):
        calls = [(rng.randrange(5), rng.randrange(1 << 40), rng.randrange(1, 9)) for _ in range(6)]
        other = list(calls)
        i = rng.randrange(6)
        other[i] = (other[i][0], other[i][1] + rng.randrange(1, 1 << 20), other[i][2])
        ha = hb = SEQ_HASH_INIT
        for a, b in zip(calls, other):
            ha, hb = seq_hash_update(ha, *a), seq_hash_update(hb, *b)
        assert ha != hb


def test_seq_hash_depends_on_order() -> None:
    a, b = (4, 1024, 1), (2, 1024, 1)
    assert seq_hash_update(seq_hash_update(SEQ_HASH_INIT, *a), *b) != \
        seq_hash_update(seq_hash_update(SEQ_HASH_INIT, *b), *a)


# ---- version file -----------------------------------------------------------------------------

def test_version_file_parsing() -> None:
    assert parse_version("1.0\n") == (1, 0)
    assert parse_version("12.345") == (12, 345)
    for bad in ("1", "1.0.0\n", "v1.0", " 1.0", "1.0\n\n", "99999.0", ""):
        with pytest.raises(ProtocolError, match="version"):
            parse_version(bad)
    text = (PROTO / "VERSION").read_text(encoding="ascii")
    assert parse_version(text) == PROTOCOL_VERSION


# ---- PROTOCOL.md agrees with the code ---------------------------------------------------------

DOC = (PROTO / "PROTOCOL.md").read_text(encoding="utf-8")


def _sections() -> dict[str, list[list[str]]]:
    """Heading text -> rows (cells, backticks removed) of the first table under that heading."""
    out: dict[str, list[list[str]]] = {}
    heading = ""
    for line in DOC.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            continue
        if line.startswith("|") and heading and not re.match(r"^\|[-| ]+\|$", line):
            rows = out.setdefault(heading, [])
            rows.append([c.strip().replace("`", "") for c in line.strip().strip("|").split("|")])
    # drop header rows
    return {h: rows[1:] for h, rows in out.items()}


SECTIONS = _sections()


def test_doc_message_types_match_code() -> None:
    tags = [row[0] for row in SECTIONS["Message types"]]
    assert tags == list(MESSAGE_TYPES)


def _render(tp: Any) -> tuple[str, bool]:
    """(doc type, nullable) of a pydantic field type, in PROTOCOL.md's vocabulary."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        bounds: dict[str, Any] = {}
        for m in meta:
            for c in getattr(m, "metadata", [m]):
                for attr in ("ge", "le"):
                    if getattr(c, attr, None) is not None:
                        bounds[attr] = getattr(c, attr)
        inner, nullable = _render(base)
        if inner == "int" and bounds.get("le") == M.U64_MAX:
            inner = "u64"
        elif inner == "int" and bounds.get("le") == M.U32_MAX and bounds.get("ge", -1) >= 0:
            inner = "u32"
        return inner, nullable
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        assert len(args) == 1
        return _render(args[0])[0], True
    if origin is list:
        return "[" + _render(typing.get_args(tp)[0])[0] + "]", False
    if origin is typing.Literal:
        assert all(isinstance(a, str) for a in typing.get_args(tp))
        return "str", False
    simple = {int: "int", bool: "bool", float: "f64", str: "str"}
    if tp in simple:
        return simple[tp], False
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.__name__, False
    raise AssertionError(f"no doc rendering for {tp!r}")


def _model_fields(cls: type[BaseModel]) -> list[tuple[str, str, bool]]:
    out = []
    for name, field in cls.model_fields.items():
        tp: Any = field.annotation
        if field.metadata:
            annotated: Any = typing.Annotated
            tp = annotated[(tp,) + tuple(field.metadata)]
        kind, nullable = _render(tp)
        out.append((name, kind, nullable))
    return out


@pytest.mark.parametrize("name", list(MESSAGE_TYPES) + list(M.STRUCT_TYPES))
def test_doc_field_tables_match_models(name: str) -> None:
    cls = MESSAGE_TYPES.get(name) or M.STRUCT_TYPES[name]
    doc = [(row[0], row[1], row[2] == "yes") for row in SECTIONS[name]]
    assert doc == _model_fields(cls), f"PROTOCOL.md table for {name} differs from the model"


def test_doc_limits_match_code() -> None:
    doc = {row[0]: int(row[1]) for row in SECTIONS["Limits"]}
    assert doc == LIMITS


def test_doc_rejection_kinds_and_error_codes_match_code() -> None:
    kinds = [row[0] for row in SECTIONS["Rejection kinds"]]
    assert kinds == list(ERROR_KINDS)
    extra = [row[0] for row in SECTIONS["Error codes"]]
    assert tuple(kinds + extra) == M.ERROR_CODES


def test_doc_features_match_code() -> None:
    assert tuple(row[0] for row in SECTIONS["Version negotiation"]) == FEATURES


def test_doc_changelog_top_entry_is_the_version_file() -> None:
    tail = DOC.split("## Changelog", 1)[1]
    first = re.search(r"^### (\d+)\.(\d+)\s*$", tail, re.M)
    assert first is not None, "PROTOCOL.md changelog has no '### MAJOR.MINOR' entry"
    assert (int(first.group(1)), int(first.group(2))) == PROTOCOL_VERSION


def test_doc_enum_ranges_match_models() -> None:
    # The conventions list 5 collectives, 7 algorithms, 3 protocols; the models must bound the same.
    fields = Stat.model_fields
    def le(name: str) -> int:
        return int(next(c.le for c in fields[name].metadata if getattr(c, "le", None) is not None))
    assert le("coll") == 4 and le("algo") == M.COST_ALGOS - 1 and le("proto") == M.COST_PROTOS - 1
    assert "4 allreduce" in DOC and "6 pat" in DOC and "2 simple" in DOC


# ---- MEASUREMENTS_PACKED (1.1) ----------------------------------------------------------------

def test_packed_stat_order_is_the_stat_table_order() -> None:
    assert M.PACKED_STAT_ORDER == tuple(Stat.model_fields)
    prose = DOC.split("#### PackedStat", 1)[1].split("|", 1)[0]
    named = re.findall(r"`([a-z_]+)`", prose)
    assert tuple(n for n in named if n in Stat.model_fields)[:12] == M.PACKED_STAT_ORDER


@pytest.mark.parametrize("seed", range(4))
def test_packed_and_map_forms_carry_the_same_stats(seed: int) -> None:
    rng = random.Random(seed)
    stats = [_stat(rng, sparse=rng.random() < 0.7) for _ in range(30)]
    plain = Measurements(comm=1, calls=2, dropped=3, stats=stats)
    packed = M.MeasurementsPacked(comm=1, calls=2, dropped=3,
                                  stats=[M.PackedStat.from_stat(s) for s in stats])
    back = decode(encode(packed))
    assert isinstance(back, M.MeasurementsPacked)
    fields = M.PACKED_STAT_ORDER
    assert [[getattr(b, f) for f in fields] for b in back.stats] == \
        [[getattr(s, f) for f in fields] for s in plain.stats]


def test_packed_run_is_canonical_and_ends_may_hold_zeros() -> None:
    h = [0] * M.HIST_BUCKETS
    h[3], h[5] = 2, 9
    assert M.pack_run(h) == [3, 2, 0, 9]
    assert M.pack_run([0] * M.HIST_BUCKETS) == []
    assert M.expand_run([3, 2, 0, 9]) == h
    assert M.expand_run([2, 0, 2, 0, 9, 0]) == h   # zeros at both ends: valid, not canonical
    row = [4, 8, 1, 2, 16, 11, 1.0, 1.0, 1, 1, [2, 0, 2, 0, 9, 0], 0]
    msg = {"t": "MEASUREMENTS_PACKED", "comm": 1, "calls": 1, "dropped": 0, "stats": [row]}
    back = decode(msgpack.packb(msg))
    assert isinstance(back, M.MeasurementsPacked) and back.stats[0].hist == h
    assert msgpack.unpackb(encode(back))["stats"][0][10] == [3, 2, 0, 9]


def test_packed_report_is_under_forty_percent_of_the_map_form() -> None:
    rng = random.Random(7)
    stats = []
    for i in range(100):
        first = rng.randint(8, 30)
        hist = [0] * M.HIST_BUCKETS
        for b in range(first, first + rng.randint(3, 5)):
            hist[b] = rng.randint(1, 5000)
        stats.append(Stat(coll=i % 5, n_bytes=1 << (10 + i % 20), algo=1, proto=2, n_channels=16,
                          count=sum(hist), sum_ns=float(sum(hist)) * 1e5, sum_sq_ns=1e15,
                          min_ns=1 << first, max_ns=1 << (first + 5), hist=hist, untimed=0))
    plain = len(encode(Measurements(comm=M.U64_MAX, calls=10**7, dropped=0, stats=stats)))
    packed = len(encode(M.MeasurementsPacked(comm=M.U64_MAX, calls=10**7, dropped=0,
                                             stats=[M.PackedStat.from_stat(s) for s in stats])))
    assert packed < 0.4 * plain, (packed, plain)


def test_packed_stat_keyword_construction_is_refused() -> None:
    with pytest.raises(Exception):
        M.PackedStat(coll=0, n_bytes=0, algo=0, proto=0, n_channels=0, count=0, sum_ns=0.0,
                     sum_sq_ns=0.0, min_ns=0, max_ns=0, hist=[], untimed=0)
