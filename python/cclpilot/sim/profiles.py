"""Measured profiles as the ground truth: a user's own cluster instead of a preset.

Two input formats:

(a) NCCL's example-tuner performance CSV (plugins/tuner/example/scripts):
    collective,size_bytes,algorithm,protocol,channels,nodes,ranks,pipeOps,regBuff,cost_metric,
    bandwidth_gbps,latency_us   (header optional; `#` starts a comment). The time of a row is
    latency_us; when that field is empty, size_bytes / bandwidth_gbps (taken as algorithm
    bandwidth). channels -1 means "NCCL's default". pipeOps must be 1 or -1 (a row timing an
    aggregate of several ops is not the time of one collective). regBuff is ignored: it is
    rank-local and must never influence a decision.

(b) nccl-tests text output (all_reduce_perf, all_gather_perf, ...) of a run with NCCL_ALGO and
    NCCL_PROTO forced. The arm comes from a `# cclpilot: coll=allreduce algo=ring proto=simple
    channels=16 nodes=2 ranks=16` line in the file or from arguments; ranks default to the
    number of "#  Rank" lines and nodes to the number of distinct hosts named there. The
    out-of-place time column is used.

Model: per (collective, algorithm, protocol, channels, ranks, nodes), time is interpolated
piecewise-linearly in log(size)-log(time) between measured sizes, clamped to the smallest
size's time below the range and extrapolated at constant bandwidth above it. A measured time
below a smaller size's time is treated as noise: the curve uses the running maximum, so time
never decreases with size. Channels the profile lacks map to the nearest measured channel
count (the default, -1, counts as matching any). Chunk size is not measured and is ignored.
Arms the profile lacks are unavailable.

Rejected (ConfigError naming file and line): wrong column counts, unknown tokens, non-numeric or
negative values, zero or negative times, the same key measured twice with values more than 2x
apart, and a time less than half that of a smaller size of the same arm (physically impossible
beyond noise).
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .topology import Algo, Coll, Proto
from .truth import NoiseSettings, PerformanceModel, QUIET

COLL_TOKENS: dict[str, Coll] = {
    "broadcast": Coll.BROADCAST, "reduce": Coll.REDUCE, "allgather": Coll.ALLGATHER,
    "reducescatter": Coll.REDUCESCATTER, "allreduce": Coll.ALLREDUCE,
}
ALGO_TOKENS: dict[str, Algo] = {
    "tree": Algo.TREE, "ring": Algo.RING, "collnet_direct": Algo.COLLNET_DIRECT,
    "collnet_chain": Algo.COLLNET_CHAIN, "nvls": Algo.NVLS, "nvls_tree": Algo.NVLS_TREE,
    "pat": Algo.PAT, "collnetdirect": Algo.COLLNET_DIRECT, "collnetchain": Algo.COLLNET_CHAIN,
    "nvlstree": Algo.NVLS_TREE,
}
PROTO_TOKENS: dict[str, Proto] = {"ll": Proto.LL, "ll128": Proto.LL128, "simple": Proto.SIMPLE}
# nccl-tests binary names -> collective, for the hint's coll= and for file names.
PERF_NAMES: dict[str, Coll] = {
    "all_reduce": Coll.ALLREDUCE, "all_gather": Coll.ALLGATHER,
    "reduce_scatter": Coll.REDUCESCATTER, "broadcast": Coll.BROADCAST, "reduce": Coll.REDUCE,
}
CSV_COLUMNS = ("collective", "size_bytes", "algorithm", "protocol", "channels", "nodes", "ranks",
               "pipeOps", "regBuff", "cost_metric", "bandwidth_gbps", "latency_us")
CONTRADICTION = 2.0  # repeated measurements further apart than this factor are contradictory
IMPOSSIBLE_DROP = 0.5  # a larger size faster than this fraction of a smaller one is nonsense

ArmKey = tuple[Coll, Algo, Proto, int, int, int]  # coll, algo, proto, channels (-1 any), ranks, nodes


@dataclass
class _Point:
    time_us: float
    where: str  # "file:line" of the first measurement, for error messages
    count: int = 1


@dataclass(frozen=True)
class _Curve:
    log_sizes: tuple[float, ...]
    log_times: tuple[float, ...]

    def at(self, n_bytes: int) -> float:
        xs, ys = self.log_sizes, self.log_times
        x = math.log(max(n_bytes, 1))
        if len(xs) == 1 or x <= xs[0]:
            if x > xs[0]:  # one point: constant bandwidth above it
                return math.exp(ys[0] + (x - xs[0]))
            return math.exp(ys[0])
        if x >= xs[-1]:
            return math.exp(ys[-1] + (x - xs[-1]))
        i = bisect.bisect_right(xs, x) - 1
        f = (x - xs[i]) / (xs[i + 1] - xs[i])
        return math.exp(ys[i] + f * (ys[i + 1] - ys[i]))


class ProfileData:
    """Measurements collected from one or more files, checked as they are added."""

    def __init__(self) -> None:
        self.points: dict[ArmKey, dict[int, _Point]] = {}

    def add(self, key: ArmKey, size: int, time_us: float, where: str) -> None:
        if not math.isfinite(time_us) or time_us <= 0:
            raise ConfigError(f"{where}: time {time_us} µs is not a positive number")
        per = self.points.setdefault(key, {})
        old = per.get(size)
        if old is None:
            per[size] = _Point(time_us, where)
            return
        mean = old.time_us
        if max(mean, time_us) / min(mean, time_us) > CONTRADICTION:
            raise ConfigError(
                f"{where}: {size} bytes of {_key_text(key)} measured {time_us:g} µs, but "
                f"{old.where} measured {mean:g} µs for the same key; remove one of them"
            )
        old.time_us = (mean * old.count + time_us) / (old.count + 1)
        old.count += 1

    def check(self) -> None:
        """Reject curves whose time drops by more than noise can explain as size grows."""
        if not self.points:
            raise ConfigError("the profile holds no measurements")
        for key, per in self.points.items():
            worst = 0.0
            worst_where = ""
            for size in sorted(per):
                pt = per[size]
                if pt.time_us < IMPOSSIBLE_DROP * worst:
                    raise ConfigError(
                        f"{pt.where}: {_key_text(key)} takes {pt.time_us:g} µs at {size} bytes, "
                        f"less than half the {worst:g} µs of a smaller size ({worst_where}); "
                        "check the columns or the forced NCCL_ALGO/NCCL_PROTO of this run"
                    )
                if pt.time_us > worst:
                    worst, worst_where = pt.time_us, pt.where

    def curves(self) -> dict[ArmKey, _Curve]:
        out: dict[ArmKey, _Curve] = {}
        for key, per in self.points.items():
            sizes = sorted(per)
            running = 0.0
            xs: list[float] = []
            ys: list[float] = []
            for s in sizes:
                running = max(running, per[s].time_us)
                xs.append(math.log(max(s, 1)))
                ys.append(math.log(running))
            out[key] = _Curve(tuple(xs), tuple(ys))
        return out


def _key_text(key: ArmKey) -> str:
    coll, algo, proto, ch, n, nn = key
    chs = "default channels" if ch < 0 else f"{ch} channels"
    return f"{coll.name.lower()} {algo.name.lower()}/{proto.name.lower()} ({chs}, {n} ranks, {nn} nodes)"


def _int(tok: str, what: str, where: str, minimum: int) -> int:
    try:
        v = int(tok)
    except ValueError:
        raise ConfigError(f"{where}: {what} {tok!r} is not an integer") from None
    if v < minimum:
        raise ConfigError(f"{where}: {what} {v} is below {minimum}")
    return v


def _float(tok: str, what: str, where: str) -> float | None:
    if tok == "":
        return None
    try:
        v = float(tok)
    except ValueError:
        raise ConfigError(f"{where}: {what} {tok!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"{where}: {what} {tok!r} must be a finite number >= 0")
    return v


def _token(table: dict[str, Coll] | dict[str, Algo] | dict[str, Proto], tok: str, what: str,
           where: str) -> int:
    t = tok.strip().lower()
    if t not in table:
        raise ConfigError(f"{where}: unknown {what} {tok!r}; expected one of "
                          + ", ".join(sorted(table)))
    return int(table[t])


def read_tuner_csv(path: str | Path, data: ProfileData | None = None,
                   default_ranks: int | None = None, default_nodes: int | None = None) -> ProfileData:
    """Add the rows of an example-tuner performance CSV. Rows with nodes/ranks -1 take
    default_nodes/default_ranks, which are then required."""
    p = Path(path)
    data = data if data is not None else ProfileData()
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read profile {p}: {e.strerror}") from None
    for no, raw in enumerate(lines, 1):
        where = f"{p}:{no}"
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        f = [x.strip() for x in line.split(",")]
        if f[0].lower() == "collective":
            if tuple(x.lower() for x in f) != tuple(c.lower() for c in CSV_COLUMNS):
                raise ConfigError(f"{where}: header must be {','.join(CSV_COLUMNS)}")
            continue
        if len(f) != len(CSV_COLUMNS):
            raise ConfigError(f"{where}: {len(f)} fields, expected {len(CSV_COLUMNS)} "
                              f"({','.join(CSV_COLUMNS)})")
        coll = Coll(_token(COLL_TOKENS, f[0], "collective", where))
        size = _int(f[1], "size_bytes", where, 1)
        algo = Algo(_token(ALGO_TOKENS, f[2], "algorithm", where))
        proto = Proto(_token(PROTO_TOKENS, f[3], "protocol", where))
        ch = _int(f[4], "channels", where, -1)
        if ch == 0:
            ch = -1  # 0 also means "NCCL's choice"
        nodes = _int(f[5], "nodes", where, -1)
        ranks = _int(f[6], "ranks", where, -1)
        pipe = _int(f[7], "pipeOps", where, -1)
        if pipe not in (-1, 1):
            raise ConfigError(f"{where}: pipeOps {pipe}: only single-op rows (1 or -1) time one "
                              "collective; drop aggregated rows")
        reg = _int(f[8], "regBuff", where, -1)
        if reg > 1:
            raise ConfigError(f"{where}: regBuff {reg} must be 0, 1 or -1")
        _float(f[9], "cost_metric", where)
        bw = _float(f[10], "bandwidth_gbps", where)
        lat = _float(f[11], "latency_us", where)
        if lat is not None:
            t = lat
        elif bw is not None and bw > 0:
            t = size / (bw * 1000.0)
        else:
            raise ConfigError(f"{where}: needs latency_us or a positive bandwidth_gbps")
        if nodes == -1:
            nodes = _need(default_nodes, "nodes", where)
        if ranks == -1:
            ranks = _need(default_ranks, "ranks", where)
        _check_shape(ranks, nodes, where)
        data.add((coll, algo, proto, ch, ranks, nodes), size, t, where)
    return data


def _need(v: int | None, what: str, where: str) -> int:
    if v is None:
        raise ConfigError(f"{where}: {what} is -1 (any); pass the cluster's {what} explicitly")
    return v


def _check_shape(ranks: int, nodes: int, where: str) -> None:
    if ranks < 2 or nodes < 1 or ranks % nodes:
        raise ConfigError(f"{where}: {ranks} ranks on {nodes} nodes is not a valid communicator "
                          "(>= 2 ranks, the same number on every node)")


_HINT = re.compile(r"^#\s*cclpilot:\s*(.*)$", re.IGNORECASE)
_RANK_LINE = re.compile(r"^#\s+Rank\s+\d+\s+Group\s+\d+\s+Pid\s+\d+\s+on\s+(\S+)")


def read_nccl_tests(path: str | Path, data: ProfileData | None = None, *,
                    coll: str | None = None, algo: str | None = None, proto: str | None = None,
                    channels: int | None = None, ranks: int | None = None,
                    nodes: int | None = None) -> ProfileData:
    """Add the rows of one nccl-tests output file; arguments override the file's hint line."""
    p = Path(path)
    data = data if data is not None else ProfileData()
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read profile {p}: {e.strerror}") from None
    hint: dict[str, str] = {}
    expect_cols: tuple[int, ...] = (12, 13)
    hosts: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    for no, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        m = _HINT.match(line)
        if m:
            for item in m.group(1).split():
                k, sep, v = item.partition("=")
                if not sep or k.lower() not in ("coll", "algo", "proto", "channels", "ranks",
                                                 "nodes"):
                    raise ConfigError(f"{p}:{no}: hint item {item!r}: use key=value with keys "
                                      "coll, algo, proto, channels, ranks, nodes")
                hint[k.lower()] = v
            continue
        r = _RANK_LINE.match(raw)
        if r:
            hosts.append(r.group(1))
            continue
        if line.startswith("#"):
            words = line[1:].split()
            if words[:2] == ["size", "count"] and "time" in words:
                # The column header says whether this release prints a root column.
                expect_cols = (13,) if "root" in words else (12,)
            continue
        rows.append((no, line.split()))
    first = f"{p}:1"

    def pick(arg: str | int | None, key: str) -> str | None:
        return str(arg) if arg is not None else hint.get(key)

    c_tok, a_tok, p_tok = pick(coll, "coll"), pick(algo, "algo"), pick(proto, "proto")
    if c_tok is None or a_tok is None or p_tok is None:
        raise ConfigError(f"{p}: which collective, algorithm and protocol were forced is unknown; "
                          "add a line '# cclpilot: coll=allreduce algo=ring proto=simple' or pass "
                          "them as arguments")
    c_norm = c_tok.lower().replace("_perf", "")
    c = PERF_NAMES.get(c_norm) or Coll(_token(COLL_TOKENS, c_norm, "collective", first))
    a = Algo(_token(ALGO_TOKENS, a_tok, "algorithm", first))
    pr = Proto(_token(PROTO_TOKENS, p_tok, "protocol", first))
    ch_tok = pick(channels, "channels")
    ch = _int(ch_tok, "channels", first, -1) if ch_tok is not None else -1
    n_tok, nn_tok = pick(ranks, "ranks"), pick(nodes, "nodes")
    n = _int(n_tok, "ranks", first, 2) if n_tok is not None else len(hosts)
    nn = _int(nn_tok, "nodes", first, 1) if nn_tok is not None else len(set(hosts))
    if n < 2 or nn < 1:
        raise ConfigError(f"{p}: cannot tell ranks and nodes (no '#  Rank ... on HOST' lines); "
                          "add ranks= and nodes= to the cclpilot hint")
    _check_shape(n, nn, first)
    if not rows:
        raise ConfigError(f"{p}: no result rows found; is this nccl-tests output?")
    for no, f in rows:
        where = f"{p}:{no}"
        # size count type redop root time algbw busbw #wrong (x2); older releases lack root.
        if len(f) not in expect_cols:
            raise ConfigError(f"{where}: {len(f)} columns, expected "
                              + " or ".join(str(c) for c in expect_cols)
                              + " (size count type redop [root], then time algbw busbw #wrong "
                              "out-of-place and in-place)")
        size = _int(f[0], "size", where, 0)
        _int(f[1], "count", where, 0)
        base = 5 if len(f) == 13 else 4
        t = _float(f[base], "out-of-place time", where)
        for j, what in ((base + 1, "algbw"), (base + 2, "busbw"), (base + 4, "in-place time"),
                        (base + 5, "in-place algbw"), (base + 6, "in-place busbw")):
            _float(f[j], what, where)
        for j in (base + 3, base + 7):
            if f[j] != "N/A":
                _int(f[j], "#wrong", where, 0)
                if int(f[j]) != 0:
                    raise ConfigError(f"{where}: {f[j]} wrong results: this run corrupted data "
                                      "and its times cannot be trusted")
        if size == 0:
            continue  # nccl-tests prints a 0-byte row; NCCL never runs it
        if t is None or t <= 0:
            raise ConfigError(f"{where}: out-of-place time {f[base]!r} must be > 0")
        data.add((c, a, pr, ch, n, nn), size, t, where)
    return data


class ProfileModel(PerformanceModel):
    """A PerformanceModel backed by measurements (see the module docstring for the rules)."""

    def __init__(self, data: ProfileData, noise: NoiseSettings = QUIET, seed: int = 0,
                 setup_ms: float = 5.0) -> None:
        super().__init__(noise, seed)
        data.check()
        self._curves = data.curves()
        self._setup_us = setup_ms * 1000.0
        self._arms: dict[tuple[Coll, Algo, Proto, int, int], list[int]] = {}
        for coll, algo, proto, ch, n, nn in self._curves:
            self._arms.setdefault((coll, algo, proto, n, nn), []).append(ch)
        for chs in self._arms.values():
            chs.sort()

    def available(self, coll: Coll, algo: Algo, proto: Proto, n_ranks: int, n_nodes: int) -> bool:
        return (coll, algo, proto, n_ranks, n_nodes) in self._arms

    def measured_channels(self, coll: Coll, algo: Algo, proto: Proto, n_ranks: int,
                          n_nodes: int) -> list[int]:
        return list(self._arms.get((coll, algo, proto, n_ranks, n_nodes), []))

    def setup_us(self, algo: Algo, n_ranks: int, n_nodes: int) -> float:
        return self._setup_us

    def _latency_and_bw_time(
        self, coll: Coll, n_bytes: int, algo: Algo, proto: Proto, channels: int,
        chunk_size: int | None, n_ranks: int, n_nodes: int,
    ) -> tuple[float, float]:
        chs = self._arms[(coll, algo, proto, n_ranks, n_nodes)]
        if channels in chs:
            ch = channels
        elif -1 in chs:
            ch = -1
        else:
            ch = min(chs, key=lambda c: (abs(c - channels), c))
        t = self._curves[(coll, algo, proto, ch, n_ranks, n_nodes)].at(n_bytes)
        # A measured time does not split into latency and bandwidth; noise windows and drift
        # act on all of it (a conservative reading: slow links slow everything).
        return 0.0, t


def load_profile(paths: list[str | Path], noise: NoiseSettings = QUIET, seed: int = 0,
                 ranks: int | None = None, nodes: int | None = None) -> ProfileModel:
    """Load CSV (*.csv) and nccl-tests (anything else) files into one profile model."""
    if not paths:
        raise ConfigError("no profile files given")
    data = ProfileData()
    for path in paths:
        if str(path).lower().endswith(".csv"):
            read_tuner_csv(path, data, default_ranks=ranks, default_nodes=nodes)
        else:
            read_nccl_tests(path, data, ranks=ranks, nodes=nodes)
    return ProfileModel(data, noise, seed)
