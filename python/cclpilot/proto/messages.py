"""Logical messages of the cclpilot wire protocol (PROTOCOL.md is the authority).

Every model is strict (no coercion: a msgpack int is not a float, a bool is not an int), forbids
unknown fields and bounds every size, so a message that validates here fits the fixed-size
structures of the C plugin (cp_rule, cp_arm, cp_stat_slot) without truncation.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, model_serializer,
                      model_validator)
from pydantic_core import PydanticCustomError

# ---- limits (PROTOCOL.md "Limits"; tests compare the two) -------------------------------------

MAX_MESSAGE_BYTES = 1 << 20  # a full PREPARE or MEASUREMENTS fits; one ZeroMQ frame stays small
MAX_DEPTH = 8                # containers, the top-level map being 1; the schema needs 5
MAX_ARRAY_LEN = 1024         # any array
MAX_MAP_LEN = 32             # any map (the widest message has 13 fields)
MAX_STR_BYTES = 1024         # any string, UTF-8 bytes
MAX_FEATURES = 32
MAX_FEATURE_BYTES = 64
MAX_NAME_BYTES = 256         # job, host, plugin version
MAX_RULES = 1024
MAX_ARMS = 16                # CP_MAX_ARMS in plugin/src/cp_table.h
MAX_STATS = 1024
HIST_BUCKETS = 48            # CP_STATS_BUCKETS in plugin/src/cp_stats.h
COST_ALGOS = 7               # NCCL_NUM_ALGORITHMS
COST_PROTOS = 3              # NCCL_NUM_PROTOCOLS
MAX_CHANNELS = 64            # CP_MAX_CHANNELS
COST_IGNORE = -1.0           # NCCL_ALGO_PROTO_IGNORE

LIMITS: dict[str, int] = {
    "MAX_MESSAGE_BYTES": MAX_MESSAGE_BYTES,
    "MAX_DEPTH": MAX_DEPTH,
    "MAX_ARRAY_LEN": MAX_ARRAY_LEN,
    "MAX_MAP_LEN": MAX_MAP_LEN,
    "MAX_STR_BYTES": MAX_STR_BYTES,
    "MAX_FEATURES": MAX_FEATURES,
    "MAX_FEATURE_BYTES": MAX_FEATURE_BYTES,
    "MAX_NAME_BYTES": MAX_NAME_BYTES,
    "MAX_RULES": MAX_RULES,
    "MAX_ARMS": MAX_ARMS,
    "MAX_STATS": MAX_STATS,
    "HIST_BUCKETS": HIST_BUCKETS,
    "COST_ALGOS": COST_ALGOS,
    "COST_PROTOS": COST_PROTOS,
    "MAX_CHANNELS": MAX_CHANNELS,
}

# Features defined by this protocol version (PROTOCOL.md, "Version negotiation"). A HELLO may
# list others (from a newer minor); the daemon accepts only these.
FEATURES: tuple[str, ...] = ("measure", "plans", "packed_stats")

U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
I32_MAX = (1 << 31) - 1

# Error codes an ERROR message may carry: the codec's rejection kinds plus daemon-level ones.
ERROR_CODES: tuple[str, ...] = (
    "malformed", "limit", "unknown_type", "missing_field", "extra_field", "wrong_type",
    "bad_value", "version", "unknown_comm", "state", "internal",
)
ErrorCode = Literal["malformed", "limit", "unknown_type", "missing_field", "extra_field",
                    "wrong_type", "bad_value", "version", "unknown_comm", "state", "internal"]


def _strict_float(value: Any) -> Any:
    # pydantic's strict float still takes ints; the wire demands a msgpack float so that a decoded
    # message re-encodes to the same bytes and C decoders need not accept two encodings.
    if type(value) is not float:
        raise PydanticCustomError("float_type", "expected a msgpack float, got {got}",
                                  {"got": type(value).__name__})
    return value


def _utf8_bytes(limit: int) -> BeforeValidator:
    # Limits are stated in UTF-8 bytes (what C buffers hold), not in Python characters.
    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value.encode("utf-8")) > limit:
            raise PydanticCustomError("string_too_long", "string longer than {limit} UTF-8 bytes",
                                      {"limit": limit})
        return value
    return BeforeValidator(check)


U64 = Annotated[int, Field(ge=0, le=U64_MAX)]
U32 = Annotated[int, Field(ge=0, le=U32_MAX)]
Positive32 = Annotated[int, Field(ge=1, le=I32_MAX)]
Coll = Annotated[int, Field(ge=0, le=4)]          # CP_COLL_*: the five with cost tables
Algo = Annotated[int, Field(ge=0, le=COST_ALGOS - 1)]
Proto = Annotated[int, Field(ge=0, le=COST_PROTOS - 1)]
ArmAlgo = Annotated[int, Field(ge=-1, le=COST_ALGOS - 1)]    # -1 keeps NCCL's choice
ArmProto = Annotated[int, Field(ge=-1, le=COST_PROTOS - 1)]  # -1 keeps NCCL's choice
Filter = Annotated[int, Field(ge=-1, le=I32_MAX)]            # -1 = any; 0 is rejected below
F64 = Annotated[float, BeforeValidator(_strict_float), Field(allow_inf_nan=False)]
Name = Annotated[str, _utf8_bytes(MAX_NAME_BYTES), Field(min_length=1)]
Text = Annotated[str, _utf8_bytes(MAX_STR_BYTES)]
Feature = Annotated[str, _utf8_bytes(MAX_FEATURE_BYTES),
                    Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
Version = Annotated[list[Annotated[int, Field(ge=0, le=0xFFFF)]],
                    Field(min_length=2, max_length=2)]
AbiVersion = Annotated[int, Field(ge=1, le=255)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _Msg(_Strict):
    TAG: ClassVar[str]


class Hello(_Msg):
    """Plugin -> daemon, once per communicator the process joins."""

    TAG: ClassVar[str] = "HELLO"
    t: Literal["HELLO"] = "HELLO"
    version: Version
    features: Annotated[list[Feature], Field(max_length=MAX_FEATURES)]
    job: Name
    comm: U64
    n_ranks: Positive32
    n_nodes: Positive32
    rank: Annotated[int, Field(ge=0, le=I32_MAX)] | None
    host: Name
    pid: Annotated[int, Field(ge=1, le=U32_MAX)]
    nccl_version: U32
    tuner_abi: AbiVersion | None
    profiler_abi: AbiVersion | None

    @model_validator(mode="after")
    def _consistent(self) -> Hello:
        if self.n_nodes > self.n_ranks:
            raise ValueError(f"n_nodes ({self.n_nodes}) exceeds n_ranks ({self.n_ranks})")
        if self.rank is not None and self.rank >= self.n_ranks:
            raise ValueError(f"rank ({self.rank}) must be below n_ranks ({self.n_ranks})")
        if len(set(self.features)) != len(self.features):
            raise ValueError("features lists a name twice")
        return self


class Welcome(_Msg):
    """Daemon -> plugin: the registration of one communicator is accepted."""

    TAG: ClassVar[str] = "WELCOME"
    t: Literal["WELCOME"] = "WELCOME"
    version: Version
    features: Annotated[list[Feature], Field(max_length=MAX_FEATURES)]
    comm: U64
    session: U64
    heartbeat_ms: Annotated[int, Field(ge=1, le=600_000)]
    report_ms: Annotated[int, Field(ge=1, le=600_000)]


CostRow = Annotated[list[F64], Field(min_length=COST_PROTOS, max_length=COST_PROTOS)]


class KeyReport(_Msg):
    """Plugin -> daemon: a key (collective, size, numPipeOps) seen for the first time."""

    TAG: ClassVar[str] = "KEY_REPORT"
    t: Literal["KEY_REPORT"] = "KEY_REPORT"
    comm: U64
    coll: Coll
    n_bytes: U64
    num_pipe_ops: Positive32
    call: U64
    cost: Annotated[list[CostRow], Field(min_length=COST_ALGOS, max_length=COST_ALGOS)]

    @model_validator(mode="after")
    def _cost_entries(self) -> KeyReport:
        for a, row in enumerate(self.cost):
            for p, v in enumerate(row):
                if v < 0.0 and v != COST_IGNORE:
                    raise ValueError(f"cost[{a}][{p}] = {v}: a cost is >= 0, or exactly -1.0 "
                                     "for a combination NCCL ignores")
        return self


class Stat(_Strict):
    """One (key, arm) summary, cumulative since the communicator started (cp_stat_slot)."""

    coll: Coll
    n_bytes: U64
    algo: Algo
    proto: Proto
    n_channels: Annotated[int, Field(ge=0, le=MAX_CHANNELS)]
    count: U64
    sum_ns: Annotated[F64, Field(ge=0.0)]
    sum_sq_ns: Annotated[F64, Field(ge=0.0)]
    min_ns: U64
    max_ns: U64
    hist: Annotated[list[U32], Field(min_length=HIST_BUCKETS, max_length=HIST_BUCKETS)]
    untimed: U64

    @model_validator(mode="after")
    def _consistent(self) -> Stat:
        if self.count > 0 and self.min_ns > self.max_ns:
            raise ValueError(f"min_ns ({self.min_ns}) exceeds max_ns ({self.max_ns})")
        if self.count == 0 and (self.sum_ns != 0.0 or self.sum_sq_ns != 0.0 or any(self.hist)):
            raise ValueError("count is 0 but sums or histogram are not empty")
        return self


class Measurements(_Msg):
    """Plugin -> daemon: snapshot of one communicator's measurement slots."""

    TAG: ClassVar[str] = "MEASUREMENTS"
    t: Literal["MEASUREMENTS"] = "MEASUREMENTS"
    comm: U64
    calls: U64
    dropped: U64
    stats: Annotated[list[Stat], Field(max_length=MAX_STATS)]


class MeasurementsPacked(_Msg):
    """Plugin -> daemon (feature packed_stats): MEASUREMENTS with every Stat as a PackedStat."""

    TAG: ClassVar[str] = "MEASUREMENTS_PACKED"
    t: Literal["MEASUREMENTS_PACKED"] = "MEASUREMENTS_PACKED"
    comm: U64
    calls: U64
    dropped: U64
    stats: Annotated[list[PackedStat], Field(max_length=MAX_STATS)]


# PackedStat (MEASUREMENTS_PACKED): a Stat's values in this order, as one array.
PACKED_STAT_ORDER: tuple[str, ...] = (
    "coll", "n_bytes", "algo", "proto", "n_channels", "count", "sum_ns", "sum_sq_ns", "min_ns",
    "max_ns", "hist", "untimed")


def _row_to_fields(value: Any) -> Any:
    # Naming the positions lets pydantic check each value exactly as for a Stat map, with paths
    # like stats.3.hist; positions past the last are named by index so they fail as extra fields.
    if type(value) is not list:
        raise PydanticCustomError("list_type", "a PackedStat is an array of {n} values, got {got}",
                                  {"n": len(PACKED_STAT_ORDER), "got": type(value).__name__})
    names = PACKED_STAT_ORDER
    out = {names[i] if i < len(names) else str(i): v for i, v in enumerate(value)}
    return out


def expand_run(value: Any) -> Any:
    """A histogram run ([] or [first, c0, c1, ...]) -> HIST_BUCKETS dense counts. Values that are
    not ints are passed through for the strict int check to name them."""
    if type(value) is not list:
        raise PydanticCustomError("list_type", "hist is a run [first, counts...], got {got}",
                                  {"got": type(value).__name__})
    if not value:
        return [0] * HIST_BUCKETS
    if len(value) > 1 + HIST_BUCKETS:
        raise PydanticCustomError("too_long", "a run holds at most 1 + {n} values",
                                  {"n": HIST_BUCKETS})
    first = value[0]
    if type(first) is not int:
        raise PydanticCustomError("int_type", "a run's first bucket must be an integer, got "
                                  "{got}", {"got": type(first).__name__})
    if len(value) == 1:
        raise PydanticCustomError("value_error", "a run needs at least one count after its first "
                                  "bucket (an empty histogram is [])")
    if not 0 <= first < HIST_BUCKETS:
        raise PydanticCustomError("value_error", "a run's first bucket must be in 0..{hi}",
                                  {"hi": HIST_BUCKETS - 1})
    if first + len(value) - 1 > HIST_BUCKETS:
        raise PydanticCustomError("value_error", "the run reaches past bucket {hi}",
                                  {"hi": HIST_BUCKETS - 1})
    return [0] * first + value[1:] + [0] * (HIST_BUCKETS - first - len(value) + 1)


def pack_run(hist: list[int]) -> list[int]:
    """Dense counts -> the canonical (shortest) run."""
    lo = next((i for i, c in enumerate(hist) if c), None)
    if lo is None:
        return []
    hi = max(i for i, c in enumerate(hist) if c)
    return [lo, *hist[lo:hi + 1]]


class PackedStat(Stat):
    """A Stat that travels as an array of its values with its histogram as one run (protocol 1.1,
    MEASUREMENTS_PACKED). In memory it is a Stat: hist holds all HIST_BUCKETS counts. Build one
    with from_stat (or model_validate of a row): keyword construction would be a map, which the
    packed form rejects."""

    hist: Annotated[list[U32], BeforeValidator(expand_run),
                    Field(min_length=HIST_BUCKETS, max_length=HIST_BUCKETS)]

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, value: Any) -> Any:
        return _row_to_fields(value)

    @classmethod
    def from_stat(cls, stat: Stat) -> PackedStat:
        return cls.model_validate([pack_run(stat.hist) if name == "hist" else getattr(stat, name)
                                   for name in PACKED_STAT_ORDER])

    @model_serializer(mode="plain")
    def _to_row(self) -> list[Any]:
        return [pack_run(self.hist) if name == "hist" else getattr(self, name)
                for name in PACKED_STAT_ORDER]


class Arm(_Strict):
    """cp_arm: -1 / 0 keep NCCL's value."""

    algo: ArmAlgo
    proto: ArmProto
    n_channels: Annotated[int, Field(ge=0, le=MAX_CHANNELS)]
    chunk_size: U32


class Rule(_Strict):
    """cp_rule without source_line (a plan has no file)."""

    coll: Coll
    min_bytes: U64
    max_bytes: U64
    n_nodes: Filter
    n_ranks: Filter
    num_pipe_ops: Filter
    arms: Annotated[list[Arm], Field(min_length=1, max_length=MAX_ARMS)]

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.min_bytes > self.max_bytes:
            raise ValueError(f"min_bytes ({self.min_bytes}) exceeds max_bytes ({self.max_bytes})")
        for name in ("n_nodes", "n_ranks", "num_pipe_ops"):
            if getattr(self, name) == 0:
                raise ValueError(f"{name} is 0: use -1 for any, or a positive exact value")
        return self


class Prepare(_Msg):
    """Daemon -> plugin: phase one of a plan change."""

    TAG: ClassVar[str] = "PREPARE"
    t: Literal["PREPARE"] = "PREPARE"
    comm: U64
    plan: Annotated[int, Field(ge=1, le=U64_MAX)]
    activate_at: U64
    rules: Annotated[list[Rule], Field(max_length=MAX_RULES)]


class Ack(_Msg):
    """Plugin -> daemon: answer to PREPARE."""

    TAG: ClassVar[str] = "ACK"
    t: Literal["ACK"] = "ACK"
    comm: U64
    plan: Annotated[int, Field(ge=1, le=U64_MAX)]
    ok: bool
    calls: U64
    seq_hash: U64
    reason: Text

    @model_validator(mode="after")
    def _reason(self) -> Ack:
        if self.ok == (self.reason != ""):
            raise ValueError("reason must be empty when ok is true and non-empty when false")
        return self


class Commit(_Msg):
    """Daemon -> plugin: phase two, the plan takes effect at activate_at."""

    TAG: ClassVar[str] = "COMMIT"
    t: Literal["COMMIT"] = "COMMIT"
    comm: U64
    plan: Annotated[int, Field(ge=1, le=U64_MAX)]
    activate_at: U64


class Abort(_Msg):
    """Daemon -> plugin: phase two, the prepared plan is dropped."""

    TAG: ClassVar[str] = "ABORT"
    t: Literal["ABORT"] = "ABORT"
    comm: U64
    plan: Annotated[int, Field(ge=1, le=U64_MAX)]
    reason: Annotated[Text, Field(min_length=1)]


class Heartbeat(_Msg):
    """Either direction: liveness, per process (not per communicator)."""

    TAG: ClassVar[str] = "HEARTBEAT"
    t: Literal["HEARTBEAT"] = "HEARTBEAT"
    seq: U64
    time_ns: U64


class Error(_Msg):
    """Either direction: the peer's message was rejected or could not be served."""

    TAG: ClassVar[str] = "ERROR"
    t: Literal["ERROR"] = "ERROR"
    code: ErrorCode
    message: Annotated[Text, Field(min_length=1)]
    ref: Annotated[str, _utf8_bytes(32)] | None
    comm: U64 | None


Message = Union[Hello, Welcome, KeyReport, Measurements, Prepare, Ack, Commit, Abort, Heartbeat,
                Error, MeasurementsPacked]

MESSAGE_TYPES: dict[str, type[_Msg]] = {
    cls.TAG: cls
    for cls in (Hello, Welcome, KeyReport, Measurements, MeasurementsPacked, Prepare, Ack, Commit,
                Abort, Heartbeat, Error)
}

# Sub-structures documented with their own field tables.
STRUCT_TYPES: dict[str, type[_Strict]] = {"Stat": Stat, "Rule": Rule, "Arm": Arm}
