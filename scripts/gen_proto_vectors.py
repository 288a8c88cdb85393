#!/usr/bin/env python3
"""Regenerates proto/vectors/ (golden msgpack vectors and manifest.json) deterministically.

Valid vectors are the canonical encoding of hand-picked messages; invalid ones are built from a
valid message with exactly one defect, so every decoder must reject them with the kind named in
the manifest. Run after any protocol change: `python3 scripts/gen_proto_vectors.py`; tests fail
when the checked-in vectors differ from what this script produces.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python"))

import msgpack  # type: ignore[import-untyped]  # noqa: E402

from cclpilot.proto import (  # noqa: E402
    PROTOCOL_MAJOR, PROTOCOL_MINOR, SEQ_HASH_INIT, encode, seq_hash_update)
from cclpilot.proto.messages import (  # noqa: E402
    COST_IGNORE, HIST_BUCKETS, MAX_ARMS, MAX_DEPTH, MAX_MESSAGE_BYTES, Abort, Ack, Arm, Commit,
    Error, Heartbeat, Hello, KeyReport, Measurements, MeasurementsPacked, Message, PackedStat,
    Prepare, Rule, Stat, Welcome)

COMM = 0x9E3779B97F4A7C15  # above 2^63: exercises the full unsigned 64-bit range


def _cost() -> list[list[float]]:
    # Shaped like a real table: tree and ring available, CollNet/NVLS/PAT ignored.
    rows = [[12.5, 9.25, 30.0], [15.0, 8.75, 21.5]]
    rows += [[COST_IGNORE] * 3 for _ in range(5)]
    return rows


def _hist(samples: dict[int, int]) -> list[int]:
    h = [0] * HIST_BUCKETS
    for b, n in samples.items():
        h[b] = n
    return h


def valid_messages() -> list[tuple[str, str, Message]]:
    v = [PROTOCOL_MAJOR, PROTOCOL_MINOR]
    arm = Arm(algo=1, proto=2, n_channels=16, chunk_size=0)
    rules = [
        Rule(coll=4, min_bytes=0, max_bytes=65535, n_nodes=-1, n_ranks=-1, num_pipe_ops=-1,
             arms=[Arm(algo=0, proto=0, n_channels=0, chunk_size=0)]),
        Rule(coll=4, min_bytes=65536, max_bytes=(1 << 64) - 1, n_nodes=2, n_ranks=16,
             num_pipe_ops=1, arms=[arm, Arm(algo=1, proto=1, n_channels=8, chunk_size=131072),
                                   Arm(algo=-1, proto=-1, n_channels=32, chunk_size=0)]),
        Rule(coll=2, min_bytes=1024, max_bytes=1 << 30, n_nodes=-1, n_ranks=-1, num_pipe_ops=-1,
             arms=[Arm(algo=1, proto=2, n_channels=c, chunk_size=0) for c in range(1, MAX_ARMS + 1)]),
    ]
    stat = Stat(coll=4, n_bytes=1 << 20, algo=1, proto=2, n_channels=16, count=3,
                sum_ns=300000.0, sum_sq_ns=30002000000.0, min_ns=99000, max_ns=101000,
                hist=_hist({16: 3}), untimed=0)
    empty = Stat(coll=0, n_bytes=8, algo=0, proto=0, n_channels=0, count=0, sum_ns=0.0,
                 sum_sq_ns=0.0, min_ns=0, max_ns=0, hist=_hist({}), untimed=5)
    low = Stat(coll=2, n_bytes=4096, algo=0, proto=0, n_channels=2, count=7, sum_ns=21000.0,
               sum_sq_ns=63100000.0, min_ns=1, max_ns=4000, hist=_hist({0: 1, 11: 5, 12: 1}),
               untimed=1)
    top = Stat(coll=3, n_bytes=(1 << 64) - 1, algo=6, proto=1, n_channels=64, count=2,
               sum_ns=3.0e19, sum_sq_ns=4.5e38, min_ns=1 << 62, max_ns=(1 << 64) - 1,
               hist=_hist({46: 1, 47: (1 << 32) - 1}), untimed=(1 << 64) - 1)
    return [
        ("hello", "HELLO with every field known", Hello(
            version=v, features=["measure", "plans", "packed_stats"], job="job-42", comm=COMM, n_ranks=16,
            n_nodes=2, rank=3, host="node-a", pid=4242, nccl_version=22703, tuner_abi=5,
            profiler_abi=4)),
        ("hello_minimal", "HELLO with rank and ABI versions unknown (nil), no features", Hello(
            version=[PROTOCOL_MAJOR, PROTOCOL_MINOR + 7], features=[], job="j", comm=0,
            n_ranks=1, n_nodes=1, rank=None, host="h", pid=1, nccl_version=0, tuner_abi=None,
            profiler_abi=None)),
        ("welcome", "WELCOME accepting one feature", Welcome(
            version=v, features=["measure"], comm=COMM, session=7, heartbeat_ms=1000,
            report_ms=100)),
        ("key_report", "KEY_REPORT for allreduce 1 MiB with a realistic cost table", KeyReport(
            comm=COMM, coll=4, n_bytes=1 << 20, num_pipe_ops=1, call=17, cost=_cost())),
        ("measurements", "MEASUREMENTS with one timed and one untimed slot", Measurements(
            comm=COMM, calls=1000, dropped=2, stats=[stat, empty])),
        ("measurements_empty", "MEASUREMENTS with no slots", Measurements(
            comm=COMM, calls=0, dropped=0, stats=[])),
        ("measurements_packed", "MEASUREMENTS_PACKED: one run in the middle, one untimed slot "
         "(empty run), one run from bucket 0 with a zero inside, one ending at bucket 47",
         MeasurementsPacked(comm=COMM, calls=1000, dropped=2, stats=[
             PackedStat.from_stat(x) for x in (stat, empty, low, top)])),
        ("measurements_packed_empty", "MEASUREMENTS_PACKED with no slots", MeasurementsPacked(
            comm=COMM, calls=0, dropped=0, stats=[])),
        ("prepare", "PREPARE with three rules, one with MAX_ARMS candidates", Prepare(
            comm=COMM, plan=3, activate_at=5000, rules=rules)),
        ("prepare_empty", "PREPARE of an empty plan (back to NCCL's defaults)", Prepare(
            comm=COMM, plan=4, activate_at=(1 << 64) - 1, rules=[])),
        ("ack_ok", "ACK accepting a plan", Ack(
            comm=COMM, plan=3, ok=True, calls=4100, seq_hash=0xFEDCBA9876543210, reason="")),
        ("ack_refused", "ACK refusing a plan whose activation point has passed", Ack(
            comm=COMM, plan=3, ok=False, calls=5001, seq_hash=1,
            reason="call count 5001 is past activate_at 5000")),
        ("commit", "COMMIT", Commit(comm=COMM, plan=3, activate_at=5000)),
        ("abort", "ABORT", Abort(comm=COMM, plan=3, reason="rank timed out")),
        ("heartbeat", "HEARTBEAT", Heartbeat(seq=12, time_ns=1_700_000_000_123_456_789)),
        ("error", "ERROR about a communicator", Error(
            code="unknown_comm", message="no HELLO for this communicator", ref="KEY_REPORT",
            comm=COMM)),
        ("error_generic", "ERROR with no reference", Error(
            code="malformed", message="Ünïcode text is fine", ref=None, comm=None)),
    ]


def _pack(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def _base(name: str) -> dict[str, Any]:
    for n, _, msg in valid_messages():
        if n == name:
            d: dict[str, Any] = msg.model_dump(mode="python")
            return d
    raise KeyError(name)


def _with(name: str, **changes: Any) -> dict[str, Any]:
    d = _base(name)
    d.update(changes)
    return d


def _without(name: str, key: str) -> dict[str, Any]:
    d = _base(name)
    del d[key]
    return d


def invalid_messages() -> list[tuple[str, str, str, bytes]]:
    """(name, expected kind, description, bytes)."""
    key = _base("key_report")
    nan_cost = [row[:] for row in key["cost"]]
    nan_cost[1][2] = float("nan")
    neg_cost = [row[:] for row in key["cost"]]
    neg_cost[0][0] = -0.5
    prep = _base("prepare")
    many_arms = json.loads(json.dumps(prep))
    many_arms["rules"][0]["arms"] = many_arms["rules"][0]["arms"] * (MAX_ARMS + 1)
    bad_algo = json.loads(json.dumps(prep))
    bad_algo["rules"][1]["arms"][0]["algo"] = 7
    meas = _base("measurements")
    short_hist = json.loads(json.dumps(meas))
    short_hist["stats"][0]["hist"] = short_hist["stats"][0]["hist"][:-1]
    packed = _base("measurements_packed")

    def row(change: Any) -> bytes:
        # measurements_packed with its first PackedStat replaced by change(first row)
        d = json.loads(json.dumps(packed))
        d["stats"][0] = change(list(d["stats"][0]))
        return _pack(d)

    def with_hist(run: Any) -> Any:
        return lambda r: r[:10] + [run] + r[11:]
    deep: Any = 0
    for _ in range(MAX_DEPTH):  # with the top-level map: MAX_DEPTH + 1 containers
        deep = [deep]
    hb = _pack(_base("heartbeat"))
    kr = _pack(key)
    return [
        ("unknown_type", "unknown_type", "type tag not defined by the protocol",
         _pack({"t": "GOODBYE", "seq": 1})),
        ("missing_tag", "missing_field", "map without 't'",
         _pack({"seq": 1, "time_ns": 2})),
        ("tag_not_string", "wrong_type", "'t' is an integer", _pack({"t": 1})),
        ("missing_field", "missing_field", "KEY_REPORT without num_pipe_ops",
         _pack(_without("key_report", "num_pipe_ops"))),
        ("extra_field", "extra_field", "HEARTBEAT with an undeclared field",
         _pack(_with("heartbeat", color="blue"))),
        ("wrong_type_int_as_str", "wrong_type", "KEY_REPORT n_bytes sent as a string",
         _pack(_with("key_report", n_bytes="1048576"))),
        ("wrong_type_int_as_float", "wrong_type", "COMMIT activate_at sent as a float",
         _pack(_with("commit", activate_at=5000.0))),
        ("wrong_type_float_as_int", "wrong_type", "cost entry sent as an integer",
         _pack(_with("key_report", cost=[[12, 9.25, 30.0]] + key["cost"][1:]))),
        ("wrong_type_bool_as_int", "wrong_type", "HEARTBEAT seq sent as a boolean",
         _pack(_with("heartbeat", seq=True))),
        ("wrong_type_code_as_int", "wrong_type", "ERROR code sent as an integer",
         _pack(_with("error", code=5))),
        ("oversize_array", "limit", "a rule with MAX_ARMS + 1 candidate arms",
         _pack(many_arms)),
        ("oversize_generic_array", "limit", "MEASUREMENTS stats longer than MAX_ARRAY_LEN",
         _pack(_with("measurements", stats=[0] * 1025))),
        ("oversize_string", "limit", "ABORT reason above MAX_STR_BYTES",
         _pack(_with("abort", reason="x" * 1025))),
        ("oversize_message", "limit", "frame larger than MAX_MESSAGE_BYTES",
         hb + b"\xc0" * (MAX_MESSAGE_BYTES + 1 - len(hb))),
        ("too_deep", "limit", f"nesting depth MAX_DEPTH + 1 = {MAX_DEPTH + 1}",
         _pack(_with("heartbeat", seq=deep))),
        ("truncated", "malformed", "KEY_REPORT cut in the middle", kr[: len(kr) // 2]),
        ("trailing_bytes", "malformed", "a valid HEARTBEAT followed by one more byte", hb + b"\x00"),
        ("empty", "malformed", "zero-length frame", b""),
        ("reserved_byte", "malformed", "0xc1, never used in msgpack", b"\xc1"),
        ("ext_type", "malformed", "a field holding a msgpack ext value",
         _pack(_with("heartbeat", seq=msgpack.ExtType(1, b"abcd")))),
        ("bin_type", "malformed", "ABORT reason sent as bin instead of str",
         _pack(_with("abort", reason=b"rank timed out"))),
        ("int_key", "malformed", "map with an integer key",
         _pack({"t": "HEARTBEAT", "seq": 1, "time_ns": 2, 7: 0})),
        ("duplicate_key", "malformed", "HEARTBEAT with 'seq' twice",
         b"\x84" + _pack("t") + _pack("HEARTBEAT") + _pack("seq") + _pack(1)
         + _pack("seq") + _pack(2) + _pack("time_ns") + _pack(3)),
        ("bad_utf8", "malformed", "string that is not UTF-8",
         b"\x81\xa1t\xa2\xff\xfe"),
        ("top_level_array", "wrong_type", "top level is an array", _pack(["HEARTBEAT", 1, 2])),
        ("top_level_int", "wrong_type", "top level is an integer", _pack(42)),
        ("version_major_mismatch", "version", "HELLO from protocol major + 1 (with a field "
         "this major does not know: the version is reported, not the field)",
         _pack(_with("hello", version=[PROTOCOL_MAJOR + 1, 0], shiny=True))),
        ("welcome_version_mismatch", "version", "WELCOME from protocol major 0",
         _pack(_with("welcome", version=[0, 9]))),
        ("version_short", "bad_value", "HELLO version with one element",
         _pack(_with("hello", version=[PROTOCOL_MAJOR]))),
        ("negative_size", "bad_value", "KEY_REPORT n_bytes = -1", _pack(_with("key_report", n_bytes=-1))),
        ("negative_count", "bad_value", "MEASUREMENTS dropped = -3",
         _pack(_with("measurements", dropped=-3))),
        ("nan_cost", "bad_value", "NaN in a cost table", _pack(_with("key_report", cost=nan_cost))),
        ("inf_sum", "bad_value", "infinite sum_ns",
         _pack(_with("measurements", stats=[dict(meas["stats"][0], sum_ns=float("inf"))]))),
        ("negative_cost", "bad_value", "cost -0.5 (only -1.0 means ignored)",
         _pack(_with("key_report", cost=neg_cost))),
        ("cost_shape", "limit", "cost table with 8 algorithm rows",
         _pack(_with("key_report", cost=key["cost"] + [[1.0, 1.0, 1.0]]))),
        ("hist_short", "bad_value", "histogram with HIST_BUCKETS - 1 buckets", _pack(short_hist)),
        ("bad_coll", "bad_value", "collective 7 (valid: 0..4)", _pack(_with("key_report", coll=7))),
        ("bad_algo", "bad_value", "arm algorithm 7 (valid: -1..6)", _pack(bad_algo)),
        ("bad_error_code", "bad_value", "ERROR with an undefined code",
         _pack(_with("error", code="oops"))),
        ("rank_out_of_range", "bad_value", "HELLO rank equal to n_ranks",
         _pack(_with("hello", rank=16))),
        ("plan_zero", "bad_value", "COMMIT of plan 0 (plan ids start at 1)",
         _pack(_with("commit", plan=0))),
        ("ack_inconsistent", "bad_value", "ACK refusing without a reason",
         _pack(_with("ack_ok", ok=False))),
        ("packed_row_not_array", "wrong_type", "MEASUREMENTS_PACKED with a Stat as a map",
         row(lambda r: _base("measurements")["stats"][0])),
        ("packed_row_short", "missing_field", "PackedStat of 11 values (untimed absent)",
         row(lambda r: r[:11])),
        ("packed_row_long", "extra_field", "PackedStat of 13 values", row(lambda r: r + [0])),
        ("packed_hist_not_array", "wrong_type", "PackedStat hist as an integer",
         row(with_hist(16))),
        ("packed_hist_first_only", "bad_value", "run holding only its first bucket",
         row(with_hist([16]))),
        ("packed_hist_past_end", "bad_value", "run from bucket 46 with three counts",
         row(with_hist([46, 1, 1, 1]))),
        ("packed_hist_too_long", "limit", "run of 1 + HIST_BUCKETS + 1 values",
         row(with_hist([0] + [1] * (HIST_BUCKETS + 1)))),
        ("packed_hist_first_out_of_range", "bad_value", "run starting at bucket HIST_BUCKETS",
         row(with_hist([HIST_BUCKETS, 3]))),
        ("packed_hist_count_not_int", "wrong_type", "run count sent as a float",
         row(with_hist([16, 3.0]))),
        ("packed_count_zero_with_hist", "bad_value", "count 0 with a non-empty run",
         row(lambda r: r[:5] + [0, 0.0, 0.0] + r[8:10] + [[16, 3]] + r[11:])),
        ("packed_min_above_max", "bad_value", "PackedStat min_ns above max_ns",
         row(lambda r: r[:8] + [r[9] + 1, r[9]] + r[10:])),
        ("min_above_max", "bad_value", "rule with min_bytes above max_bytes",
         _pack(_with("prepare", rules=[dict(prep["rules"][0], min_bytes=70000)]))),
    ]


def seq_hash_vectors() -> list[dict[str, Any]]:
    calls = [(4, 1 << 20, 1), (2, 4096, 1), (4, 1 << 20, 2), (0, 8, 1)]
    out: list[dict[str, Any]] = [{"calls": [], "hash": f"{SEQ_HASH_INIT:#018x}"}]
    h = SEQ_HASH_INIT
    for i, c in enumerate(calls):
        h = seq_hash_update(h, *c)
        out.append({"calls": [list(x) for x in calls[: i + 1]], "hash": f"{h:#018x}"})
    return out


def generate(dest: Path) -> None:
    if dest.exists():
        for sub in ("valid", "invalid"):
            if (dest / sub).exists():
                shutil.rmtree(dest / sub)
    (dest / "valid").mkdir(parents=True, exist_ok=True)
    (dest / "invalid").mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "protocol": f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}",
        "generator": "scripts/gen_proto_vectors.py",
        "valid": [], "invalid": [], "seq_hash": seq_hash_vectors(),
    }
    for name, desc, msg in valid_messages():
        (dest / "valid" / f"{name}.msgpack").write_bytes(encode(msg))
        manifest["valid"].append({"file": f"valid/{name}.msgpack", "type": msg.t,
                                  "description": desc})
    for name, kind, desc, data in invalid_messages():
        (dest / "invalid" / f"{name}.msgpack").write_bytes(data)
        manifest["invalid"].append({"file": f"invalid/{name}.msgpack", "kind": kind,
                                    "description": desc})
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=REPO / "proto" / "vectors",
                    help="directory to write (default: proto/vectors)")
    args = ap.parse_args(argv)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
