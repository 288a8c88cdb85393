"""NCCL 2.30's default cost model and selection, as the simulator's stand-in for NCCL.

This is what NCCL computes *without* knowing how fast the hardware really is: the cost table it
hands the tuner (reference §3.4, §5), the argmin it takes after the tuner returns (§3.5), its own
channel/thread choice (§5.6), what the scheduler really runs (§3.5) and the chunk size NCCL
proposes to getChunkSize (§3.6). Times are µs, bandwidths GB/s (= 1000 bytes/µs).

Where NCCL's source has rules the reference does not spell out (CollNetDirect's channel
step-down, the Tree+LL128/PAT/NVLS_TREE chunk shrinking), this module keeps NCCL's value before
that rule and says so at the place it matters.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Literal, Sequence

from ..errors import ConfigError, SimulationError
from .topology import NUM_ALGOS, NUM_PROTOS, Algo, Coll, GraphInfo, PathType, Proto, Topology

IGNORE = -1.0  # NCCL_ALGO_PROTO_IGNORE
NUM_FUNCTIONS = 5
MAXCHANNELS = 64
WARP_SIZE = 32
MAX_NTHREADS = 640
NCCL_STEPS = 8
MAX_DEV_WORK_BATCH_COLLS = 8  # 1024 B work batch / 128 B per ncclDevWorkColl
MIN_TRAFFIC_PER_CHANNEL = 32 * 1024  # the scheduler's cell size, in bytes of traffic

# Tokens of NCCL_ALGO / NCCL_PROTO and of the tuning log (§2), indexed by enum value.
ALGO_TOKENS: tuple[str, ...] = ("Tree", "Ring", "CollNetDirect", "CollNetChain", "NVLS", "NVLSTree", "PAT")
PROTO_TOKENS: tuple[str, ...] = ("LL", "LL128", "Simple")
FUNC_TOKENS: tuple[str, ...] = ("Broadcast", "Reduce", "AllGather", "ReduceScatter", "AllReduce")
# Upper-case strings the profiler's Coll descriptor carries (v2+).
ALGO_PROFILER_STRINGS: tuple[str, ...] = (
    "TREE", "RING", "COLLNET_DIRECT", "COLLNET_CHAIN", "NVLS", "NVLS_TREE", "PAT")
PROTO_PROFILER_STRINGS: tuple[str, ...] = ("LL", "LL128", "SIMPLE")

HW_NVLINK, HW_PCI, HW_NET = 0, 1, 2
VOLTA_IDX, AMPERE_IDX, HOPPER_IDX, BLACKWELL_IDX = 0, 1, 2, 3

# treeCorrectionFactor[proto][log2(nBytes/64)], §5.5.
TREE_CORRECTION_FACTOR: tuple[tuple[float, ...], ...] = (
    (1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0, 1.0, 1.0, 1.0, 1.0),
    (1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .6, .6, .6, .8, .9, .9, .9, .9, 1.0, 1.0, 1.0),
    (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .6, .7, .8, .7, .7, .8, .9, .9, .9),
)
# nvlsEfficiency by compcap index (Volta, Ampere, Hopper, Blackwell).
NVLS_EFFICIENCY: tuple[float, ...] = (0.0, 0.0, 0.85, 0.74)

# Protocol grain (chunk sizes are rounded down to it) and default buffer sizes (§3.6).
PROTO_GRAIN: tuple[int, ...] = (16, 1920, 512)
DEFAULT_BUFFSIZES: tuple[int, ...] = (512 * 1024, 4_915_200, 4 * 1024 * 1024)
NVLS_CHUNKSIZE = 128 * 1024

Matrix = tuple[tuple[float, ...], ...]


def _matrix(rows: Sequence[Sequence[float]], n_rows: int, n_cols: int, what: str) -> Matrix:
    if len(rows) != n_rows or any(len(r) != n_cols for r in rows):
        raise ConfigError(f"tuner constants: {what} must be {n_rows}x{n_cols}")
    return tuple(tuple(float(v) for v in r) for r in rows)


@dataclass(frozen=True)
class TunerConstants:
    """ncclTunerConstants_v5_t: what a tuner v5+ may edit in init (§1.2, defaults §5.7)."""

    base_latencies: Matrix  # [algo][proto]
    hw_latencies: tuple[Matrix, ...]  # [hw][algo][proto]
    ll_max_bws: Matrix  # [row][scale]
    per_ch_max_ring_ll128_bws: Matrix  # [compcap][scale]
    per_ch_max_tree_ll128_bws: Matrix
    per_ch_max_tree_bws: Matrix
    per_ch_max_nvls_tree_bws: Matrix

    N_DOUBLES = 144  # 21 + 63 + 5 x 12

    def __post_init__(self) -> None:
        _matrix(self.base_latencies, NUM_ALGOS, NUM_PROTOS, "baseLatencies")
        if len(self.hw_latencies) != 3:
            raise ConfigError("tuner constants: hwLatencies must have 3 hardware rows")
        for m in self.hw_latencies:
            _matrix(m, NUM_ALGOS, NUM_PROTOS, "hwLatencies[hw]")
        for name in ("ll_max_bws", "per_ch_max_ring_ll128_bws", "per_ch_max_tree_ll128_bws",
                     "per_ch_max_tree_bws", "per_ch_max_nvls_tree_bws"):
            _matrix(getattr(self, name), 4, 3, name)

    def flat(self) -> list[float]:
        """The 144 doubles in ABI member order (what lands in ncclTunerConstants_v5_t)."""
        out: list[float] = []
        for row in self.base_latencies:
            out.extend(row)
        for hw in self.hw_latencies:
            for row in hw:
                out.extend(row)
        for m in (self.ll_max_bws, self.per_ch_max_ring_ll128_bws, self.per_ch_max_tree_ll128_bws,
                  self.per_ch_max_tree_bws, self.per_ch_max_nvls_tree_bws):
            for row in m:
                out.extend(row)
        return out

    @classmethod
    def from_flat(cls, values: Sequence[float]) -> TunerConstants:
        """Inverse of flat(); rejects anything but exactly 144 finite numbers."""
        if len(values) != cls.N_DOUBLES:
            raise ConfigError(f"tuner constants: expected {cls.N_DOUBLES} doubles, got {len(values)}")
        vals = [float(v) for v in values]
        bad = [i for i, v in enumerate(vals) if not math.isfinite(v)]
        if bad:
            raise SimulationError(
                f"tuner constants: non-finite value at double index {bad[0]} "
                "(the plugin wrote NaN/inf into ncclTunerConstants in init)")

        def take(n_rows: int, n_cols: int, start: int) -> Matrix:
            return tuple(tuple(vals[start + r * n_cols + c] for c in range(n_cols)) for r in range(n_rows))

        pos = 0
        base = take(NUM_ALGOS, NUM_PROTOS, pos)
        pos += 21
        hw = tuple(take(NUM_ALGOS, NUM_PROTOS, pos + 21 * i) for i in range(3))
        pos += 63
        mats = [take(4, 3, pos + 12 * i) for i in range(5)]
        return cls(base, hw, *mats)


DEFAULT_CONSTANTS = TunerConstants(
    base_latencies=(
        (6.8, 14.0, 8.4), (6.6, 14.0, 8.4), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (8.0, 8.0, 8.0)),
    hw_latencies=(
        # NVLINK
        ((0.6, 1.25, 4.0), (0.6, 1.9, 3.4), (0.0, 0.0, 3.7), (0.0, 0.0, 2.8),
         (0.0, 0.0, 25.0), (0.0, 0.0, 25.0), (0.0, 0.0, 4.0)),
        # PCI
        ((1.0, 1.9, 4.0), (1.0, 2.5, 5.7), (0.0, 0.0, 3.7), (0.0, 0.0, 2.8),
         (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 4.0)),
        # NET
        ((5.0, 8.5, 14.0), (2.7, 4.0, 14.0), (0.0, 0.0, 31.0), (0.0, 0.0, 30.0),
         (0.0, 0.0, 18.0), (0.0, 0.0, 20.9), (0.0, 0.0, 14.0)),
    ),
    ll_max_bws=((39.0, 39.0, 20.4), (87.7, 22.5, 19.0), (141.0, 45.0, 35.0), (282.0, 90.0, 70.0)),
    per_ch_max_ring_ll128_bws=((20.0, 20.0, 20.0), (20.0, 20.0, 20.0), (36.7, 36.7, 36.7), (40.0, 40.0, 40.0)),
    per_ch_max_tree_ll128_bws=((20.0, 20.0, 20.0), (20.0, 20.0, 20.0), (36.7, 36.7, 29.0), (55.6, 31.67, 20.0)),
    per_ch_max_tree_bws=((26.5, 18.5, 10.0), (24.0, 23.6, 17.8), (38.7, 41.4, 36.0), (70.0, 42.8, 24.0)),
    per_ch_max_nvls_tree_bws=((26.5, 18.5, 10.0), (24.0, 23.6, 17.8), (0.0, 57.7, 45.5), (0.0, 96.0, 80.0)),
)


def log2i(x: int) -> int:
    """NCCL's integer log2: floor(log2 x), and -1 for 0."""
    return x.bit_length() - 1 if x > 0 else -1


def to_float32(x: float) -> float:
    """NCCL's cost table is float; round like the C side so argmins tie exactly as there."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


def compcap_index(comp_cap: int) -> int:
    if comp_cap >= 100:
        return BLACKWELL_IDX
    if comp_cap >= 90:
        return HOPPER_IDX
    if comp_cap >= 80:
        return AMPERE_IDX
    return VOLTA_IDX


def _roundup(x: int, m: int) -> int:
    return -(-x // m) * m


# ------------------------------------------------------------------------------------------------
# NCCL_ALGO / NCCL_PROTO (§6): "[func:]list;func:list", case-insensitive, "^" negates.

EnableList = tuple[tuple[int, ...], ...]  # [func][elem]: 0 off, 1 on, 2 auto (LL128 only)


def parse_enable_list(value: str | None, kind: Literal["algo", "proto"]) -> EnableList:
    """Parse NCCL_ALGO (kind="algo") or NCCL_PROTO (kind="proto") into a per-function mask.

    Unset keeps every element on, except LL128 which stays "auto" (2) so the platform checks run.
    Each `;` section rewrites the whole row of the function(s) it names: a plain list turns on only
    what it lists, a `^` list turns off only what it lists. A section without `func:` applies to
    every function and is only allowed first, as in NCCL. Unknown tokens are errors.
    """
    elems = ALGO_TOKENS if kind == "algo" else PROTO_TOKENS
    var = "NCCL_ALGO" if kind == "algo" else "NCCL_PROTO"
    rows = [[1] * len(elems) for _ in range(NUM_FUNCTIONS)]
    if kind == "proto":
        for row in rows:
            row[Proto.LL128] = 2
    if value is None:
        return tuple(tuple(r) for r in rows)
    sections = [s for s in value.split(";") if s != ""]
    for i, section in enumerate(sections):
        parts = [p for p in section.split(":") if p != ""]
        if len(parts) == 0:
            continue
        if len(parts) > 2:
            raise ConfigError(f'{var}="{value}": section "{section}" has more than one ":"; '
                              f"use func:list, e.g. AllReduce:{elems[0]}")
        if len(parts) == 1:
            if i != 0:
                raise ConfigError(f'{var}="{value}": section "{section}" has no function prefix; only '
                                  'the first section may omit it (e.g. "Ring;AllGather:Ring,PAT")')
            funcs = list(range(NUM_FUNCTIONS))
            elem_list = parts[0]
        else:
            prefix, elem_list = parts
            matches = [f for f, tok in enumerate(FUNC_TOKENS) if tok.lower() == prefix.strip().lower()]
            if not matches:
                raise ConfigError(f'{var}="{value}": unknown function "{prefix}"; expected one of '
                                  + ", ".join(FUNC_TOKENS))
            funcs = matches
        negate = elem_list.startswith("^")
        if negate:
            elem_list = elem_list[1:]
        chosen: set[int] = set()
        for tok in (t for t in elem_list.split(",") if t != ""):
            idx = [e for e, name in enumerate(elems) if name.lower() == tok.strip().lower()]
            if not idx:
                raise ConfigError(f'{var}="{value}": unknown {kind} "{tok}"; expected one of '
                                  + ", ".join(elems))
            chosen.add(idx[0])
        for f in funcs:
            for e in range(len(elems)):
                rows[f][e] = (0 if e in chosen else 1) if negate else (1 if e in chosen else 0)
    return tuple(tuple(r) for r in rows)


# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelOptions:
    """NCCL settings (env) that change the default model; defaults are NCCL 2.30's."""

    pat_enable: int = 2  # NCCL_PAT_ENABLE: 0 off, 1 on, 2 auto
    ll128_c2c: bool = True  # NCCL_LL128_C2C
    net_overhead_ns: float | None = None  # NCCL_NET_OVERHEAD; None = by CPU vendor
    host_networking: bool = True  # False for device-side (GPU-initiated) networking: no PAT
    buffsizes: tuple[int, int, int] = (DEFAULT_BUFFSIZES[0], DEFAULT_BUFFSIZES[1], DEFAULT_BUFFSIZES[2])
    nvls_chunksize: int = NVLS_CHUNKSIZE
    x86: bool = True


@dataclass(frozen=True)
class ChannelChoice:
    """NCCL's default nMaxChannels (nc) and threads (nt) for one (coll, algo, proto, size)."""

    n_channels: int
    n_threads: int

    @property
    def n_warps(self) -> int:
        return self.n_threads // WARP_SIZE


@dataclass(frozen=True)
class Schedule:
    """What the scheduler runs for one task: real channel count and the per-part byte counts.

    parts: (n_channels_in_part, bytes) for lo, mid, hi, in NCCL's "global" units (x nRanks for
    AllGather/ReduceScatter), one entry per distinct part: getChunkSize is called once per part.
    """

    n_channels: int
    cell_size: int
    n_cells: int
    parts: tuple[tuple[int, int], ...]
    limit: int  # the kind's channel limit the request was clamped to (0 = unclamped CollNet)


@dataclass(frozen=True)
class ChunkLimits:
    default: int  # NCCL's own chunk size, the value handed to getChunkSize
    ceiling: int  # buffer ceiling results are clamped to
    grain: int  # results are rounded down to a multiple of it


@dataclass
class NcclModel:
    """NCCL's per-communicator model (ncclTopoTuneModel + ncclTopoGetAlgoTime + topoGetAlgoInfo)."""

    topology: Topology
    constants: TunerConstants = DEFAULT_CONSTANTS
    env_algo: str | None = None
    env_proto: str | None = None
    options: ModelOptions = field(default_factory=ModelOptions)

    def __post_init__(self) -> None:
        t = self.topology
        if t.n_nodes < 1 or t.n_ranks < 1 or t.n_ranks % t.n_nodes != 0:
            raise ConfigError(f"topology {t.name!r}: n_ranks={t.n_ranks} must be a positive multiple "
                              f"of n_nodes={t.n_nodes}")
        if not 1 <= t.comm_channels <= MAXCHANNELS:
            raise ConfigError(f"topology {t.name!r}: comm_channels={t.comm_channels} outside 1..{MAXCHANNELS}")
        self.algo_enable = parse_enable_list(self.env_algo, "algo")
        self.proto_enable = parse_enable_list(self.env_proto, "proto")
        self.user_restricted = self.env_algo is not None or self.env_proto is not None
        self.cc_idx = compcap_index(t.comp_cap)
        # Workloads repeat the same keys every step; the model is fixed once built.
        self._cost_cache: dict[tuple[int, int, int], tuple[float, ...]] = {}
        self.bandwidths = [[[0.0] * NUM_PROTOS for _ in range(NUM_ALGOS)] for _ in range(NUM_FUNCTIONS)]
        self.latencies = [[[0.0] * NUM_PROTOS for _ in range(NUM_ALGOS)] for _ in range(NUM_FUNCTIONS)]
        self.max_threads = [[self._max_threads(a, p) for p in range(NUM_PROTOS)] for a in range(NUM_ALGOS)]
        self.thread_thresholds = [[self._thread_threshold(a, p) for p in range(NUM_PROTOS)]
                                  for a in range(NUM_ALGOS)]
        for c in range(NUM_FUNCTIONS):
            for a in range(NUM_ALGOS):
                for p in range(NUM_PROTOS):
                    bw = self._bandwidth(Coll(c), Algo(a), Proto(p))
                    self.bandwidths[c][a][p] = bw
                    self.latencies[c][a][p] = self._latency(Coll(c), Algo(a), Proto(p)) if bw > 0 else 0.0

    # --- enablement (§3.4, §5.2) ----------------------------------------------------------------

    def pat_enabled(self) -> bool:
        t = self.topology
        if self.options.pat_enable == 0 or t.comp_cap < 60:
            return False
        if self.options.pat_enable == 1:
            return True
        return t.n_nodes == t.n_ranks and self.options.host_networking

    def algo_supported(self, coll: Coll, algo: Algo) -> bool:
        """False where NCCL skips the algorithm entirely (all its entries stay IGNORE)."""
        t = self.topology
        if algo in (Algo.COLLNET_DIRECT, Algo.COLLNET_CHAIN):
            return t.collnet_support and t.ppn <= 8
        if algo in (Algo.NVLS, Algo.NVLS_TREE):
            if not t.nvls_support:
                return False
            if coll != Coll.ALLREDUCE and t.ppn > 32:
                return False
            if algo == Algo.NVLS and t.n_nodes > 1 and not t.collnet_support:
                return False
        return True

    def ll128_enabled(self, coll: Coll, algo: Algo) -> bool:
        """NCCL_PROTO's LL128 state for this function, with "auto" resolved by the platform rules."""
        state = self.proto_enable[coll][Proto.LL128]
        if state != 2:
            return state == 1
        g = self.topology.graphs.get(algo)
        if g is None:
            return False
        cc = self.topology.comp_cap
        inter_max = PathType.PXN if (self.options.ll128_c2c and cc >= 90) else PathType.PXB
        return g.type_inter <= inter_max and g.type_intra <= PathType.NVB and cc >= 70

    def _modelled(self, coll: Coll, algo: Algo, proto: Proto) -> bool:
        if coll in (Coll.BROADCAST, Coll.REDUCE) and algo != Algo.RING:
            return False
        if coll in (Coll.ALLGATHER, Coll.REDUCESCATTER) and algo not in (
                Algo.RING, Algo.PAT, Algo.NVLS, Algo.COLLNET_DIRECT):
            return False
        if coll == Coll.ALLREDUCE and algo == Algo.PAT:
            return False
        if algo in (Algo.NVLS, Algo.NVLS_TREE, Algo.PAT) and proto != Proto.SIMPLE:
            return False
        if algo == Algo.PAT and not self.pat_enabled():
            return False
        return True

    # --- bandwidth (§5.3) -----------------------------------------------------------------------

    def _scale(self) -> int:
        n = self.topology.n_nodes
        return n - 1 if n <= 2 else 2

    def _ll_max_bw(self) -> float:
        t = self.topology
        row = self.cc_idx if t.n_nodes == 1 else (1 if t.cpu_vendor != "intel" else 0)
        return self.constants.ll_max_bws[row][self._scale()]

    def _bandwidth(self, coll: Coll, algo: Algo, proto: Proto) -> float:
        t = self.topology
        g = t.graphs.get(algo)
        if g is None or g.n_channels <= 0 or not self.algo_supported(coll, algo):
            return 0.0
        if not self._modelled(coll, algo, proto):
            return 0.0
        if self.algo_enable[coll][algo] == 0 or self.proto_enable[coll][proto] == 0:
            return 0.0
        if proto == Proto.LL128 and not self.ll128_enabled(coll, algo):
            return 0.0
        collnet = algo in (Algo.COLLNET_DIRECT, Algo.COLLNET_CHAIN)
        nvls = algo in (Algo.NVLS, Algo.NVLS_TREE)
        if nvls and g.n_channels < 2:
            return 0.0
        if algo == Algo.NVLS_TREE and t.n_nodes == 1:
            return 0.0
        if (collnet or (algo == Algo.NVLS and t.n_nodes > 1)) and not t.collnet_support:
            return 0.0
        c = self.constants
        scale = self._scale()
        n_ranks, n_nodes, n_ch = t.n_ranks, t.n_nodes, g.n_channels
        nsteps = self._nsteps(coll)
        ppn = n_ranks / n_nodes
        bw = g.bw_intra if (n_nodes <= 2 or collnet) else g.bw_inter
        if nvls:
            intra = g.bw_intra * NVLS_EFFICIENCY[self.cc_idx] * (n_ch - 1) / n_ch
            intra *= 2.0 if coll == Coll.ALLREDUCE else (ppn - 1) / ppn
            inter = g.bw_inter * (2.0 if (algo == Algo.NVLS_TREE and n_nodes <= 2) else 1.0)
            bw = min(intra, inter)
            if algo == Algo.NVLS_TREE:
                bw = min(bw, c.per_ch_max_nvls_tree_bws[self.cc_idx][scale])
        bus = n_ch * bw
        ll_max = self._ll_max_bw()
        if algo == Algo.RING and proto == Proto.LL:
            bus = min(ll_max, 0.5 * bus)
        if algo == Algo.RING and proto == Proto.LL128:
            bus = min(0.92 * bus, n_ch * c.per_ch_max_ring_ll128_bws[self.cc_idx][scale])
        if algo == Algo.TREE and coll == Coll.ALLREDUCE:
            bus = min(0.92 * bus, n_ch * c.per_ch_max_tree_bws[self.cc_idx][scale])
        if algo == Algo.TREE and proto == Proto.LL:
            bus = min(bus / 3.8, ll_max)
        if algo == Algo.TREE and proto == Proto.LL128:
            bus = min(bus * (7.0 / 9.0 if n_nodes == 1 else 120.0 / 128.0),
                      n_ch * c.per_ch_max_tree_ll128_bws[self.cc_idx][scale])
        if algo == Algo.TREE and t.max_tree_pattern == 3:
            bus *= 0.85
        if algo == Algo.PAT:
            bus *= 0.75
        if collnet and proto != Proto.SIMPLE:
            bus = 0.0
        if algo == Algo.COLLNET_DIRECT and proto == Proto.SIMPLE:
            if coll in (Coll.ALLGATHER, Coll.REDUCESCATTER):
                bus = ppn * min(g.bw_intra, 0.9 * g.bw_inter)
            else:
                f = ppn / n_ch
                f -= (f - 1) / 2
                bus /= f
                if t.comp_cap >= 90:
                    bus *= 0.85
        # AG/RS over NVLS or CollNetDirect across nodes need CollNet's iallgather/ireducescatter;
        # the simulator models no CollNet plugin with those, so they stay off.
        if (algo in (Algo.NVLS, Algo.COLLNET_DIRECT) and proto == Proto.SIMPLE
                and coll in (Coll.ALLGATHER, Coll.REDUCESCATTER) and n_nodes > 1):
            bus = 0.0
        if not (algo != Algo.RING and coll in (Coll.ALLGATHER, Coll.REDUCESCATTER)):
            bus *= (n_ranks / nsteps) if algo in (Algo.RING, Algo.NVLS, Algo.NVLS_TREE) else 0.5
        return max(bus, 0.0)

    def _nsteps(self, coll: Coll) -> int:
        n = self.topology.n_ranks
        if coll == Coll.ALLREDUCE:
            return 2 * (n - 1)
        if coll in (Coll.ALLGATHER, Coll.REDUCESCATTER):
            return n - 1
        return n

    # --- latency (§5.4) -------------------------------------------------------------------------

    def net_overhead(self) -> float:
        if self.options.net_overhead_ns is not None:
            return self.options.net_overhead_ns / 1000.0
        return 2.0 if (self.options.x86 and self.topology.cpu_vendor == "amd") else 1.0

    def _latency(self, coll: Coll, algo: Algo, proto: Proto) -> float:
        t = self.topology
        g = t.graphs[algo]
        hw = self.constants.hw_latencies
        base = self.constants.base_latencies[algo][proto]
        n_nodes, n_ranks = t.n_nodes, t.n_ranks
        ppn_i = n_ranks // n_nodes
        intra_hw = HW_NVLINK if g.type_intra == PathType.NVL else HW_PCI
        intra_lat = hw[intra_hw][algo][proto]
        inter_lat = (hw[HW_NET][Algo.TREE][proto] if ppn_i == 1 else hw[HW_NET][algo][proto]) + g.latency_inter
        if proto == Proto.SIMPLE:
            inter_lat += g.latency_inter
        nsteps = self._nsteps(coll)
        l2n = log2i(n_nodes)
        if algo == Algo.RING:
            if coll in (Coll.BROADCAST, Coll.REDUCE):
                ring_hw = intra_hw if n_nodes == 1 else HW_NET
                if g.same_channels:
                    return base + hw[ring_hw][Algo.RING][proto]
                lat = hw[ring_hw][Algo.TREE if proto == Proto.SIMPLE else Algo.RING][proto]
                return base + nsteps * lat
            net_ov = (self.net_overhead() * (3.0 if proto == Proto.SIMPLE else 1.0)) if n_nodes > 1 else 0.0
            intra = max(intra_lat, net_ov)
            n_inter = 0 if n_nodes == 1 else (2 * (n_nodes - 1) if coll == Coll.ALLREDUCE else n_nodes - 1)
            return base + (nsteps - n_inter) * intra + n_inter * inter_lat
        if algo == Algo.TREE:
            return base + 2 * ((ppn_i - 1) * intra_lat + l2n * inter_lat)
        if algo == Algo.COLLNET_DIRECT:
            return base + 2 * (min(1, ppn_i - 1) * intra_lat + 0.4 * (ppn_i - 1)) + inter_lat
        if algo == Algo.COLLNET_CHAIN:
            return base + 2 * (ppn_i - 1) * intra_lat + inter_lat
        if algo == Algo.NVLS:
            return intra_lat + (inter_lat if n_nodes > 1 else 0.0)
        if algo == Algo.NVLS_TREE:
            return base + intra_lat + 2 * l2n * inter_lat
        # PAT
        return base + l2n * inter_lat / 3.5 + 2.8 * n_ranks

    # --- one call (§5.5) ------------------------------------------------------------------------

    def algo_time(self, coll: Coll, algo: Algo, proto: Proto, n_bytes: int, num_pipe_ops: int = 1) -> float:
        """ncclTopoGetAlgoTime in µs; IGNORE (-1.0) where the bandwidth is 0."""
        bw = self.bandwidths[coll][algo][proto]
        if bw == 0:
            return IGNORE
        lat = self.latencies[coll][algo][proto]
        t = self.topology
        log_size = log2i(n_bytes >> 6)
        if algo == Algo.TREE and coll == Coll.ALLREDUCE and 0 <= log_size < 23:
            bw *= TREE_CORRECTION_FACTOR[proto][log_size]
        if (algo == Algo.NVLS_TREE and coll == Coll.ALLREDUCE and 0 <= log_size < 24
                and t.comp_cap >= 100 and self.options.x86):
            bw *= TREE_CORRECTION_FACTOR[proto][log_size]
        if (algo == Algo.RING and proto == Proto.SIMPLE and t.n_nodes > 1 and coll == Coll.ALLREDUCE
                and n_bytes // (t.comm_channels * t.n_ranks) >= 64):
            lat *= 1.9 if t.comp_cap < 80 else 1.4
        lat_count = num_pipe_ops if algo == Algo.RING else -(-num_pipe_ops // MAX_DEV_WORK_BATCH_COLLS)
        return lat * lat_count + n_bytes / (1000.0 * bw)

    def cost_table(self, coll: Coll, n_bytes: int, num_pipe_ops: int = 1) -> list[float]:
        """The float[7][3] NCCL hands getCollInfo, row-major, float32-rounded, -1.0 = IGNORE."""
        if num_pipe_ops < 1:
            raise SimulationError(f"numPipeOps must be >= 1, got {num_pipe_ops}")
        if self.topology.n_ranks == 1:
            table = [IGNORE] * (NUM_ALGOS * NUM_PROTOS)
            table[Algo.RING * NUM_PROTOS + Proto.SIMPLE] = 0.0
            return table
        key = (int(coll), n_bytes, num_pipe_ops)
        cached = self._cost_cache.get(key)
        if cached is None:
            if len(self._cost_cache) >= 65536:
                self._cost_cache.clear()
            cached = tuple(to_float32(self.algo_time(coll, Algo(a), Proto(p), n_bytes, num_pipe_ops))
                           for a in range(NUM_ALGOS) for p in range(NUM_PROTOS))
            self._cost_cache[key] = cached
        return list(cached)

    # --- channels and threads (§3.5, §5.6) ------------------------------------------------------

    def _max_threads(self, algo: int, proto: int) -> int:
        if algo in (Algo.COLLNET_DIRECT, Algo.COLLNET_CHAIN, Algo.NVLS, Algo.NVLS_TREE):
            return MAX_NTHREADS
        if proto == Proto.LL128:
            return MAX_NTHREADS
        if proto == Proto.LL:
            return 512
        if algo == Algo.RING:
            ring = self.topology.graphs.get(Algo.RING)
            if ring is not None and ring.bw_intra * ring.n_channels <= 12.0:  # PCI_BW
                return 256
        return 512

    def _thread_threshold(self, algo: int, proto: int) -> int:
        if algo in (Algo.COLLNET_DIRECT, Algo.COLLNET_CHAIN) and proto == Proto.SIMPLE:
            return 512
        if proto == Proto.SIMPLE:
            return 64
        if algo == Algo.RING and proto == Proto.LL:
            return 8 * self.topology.n_ranks
        return 8

    def default_channels(self, coll: Coll, algo: Algo, proto: Proto, n_bytes: int) -> ChannelChoice:
        """NCCL's nMaxChannels and threads before any tuner hint (topoGetAlgoInfo).

        CollNetDirect has its own step-down in NCCL which the reference does not give; it is
        treated like the generic rule here.
        """
        t = self.topology
        nc = t.comm_channels
        nt = self.max_threads[algo][proto]
        thr = self.thread_thresholds[algo][proto]
        if algo in (Algo.NVLS, Algo.NVLS_TREE):
            nc = min(t.nvls_channels, t.comm_channels) if t.n_nodes > 1 else t.nvls_channels
        else:
            while n_bytes < nc * nt * thr and nc >= 2:
                nc -= 1
        if algo not in (Algo.NVLS, Algo.NVLS_TREE, Algo.COLLNET_DIRECT):
            while n_bytes < nc * nt * thr and nt % 128 == 0:
                nt //= 2
        if proto == Proto.SIMPLE:
            nt += WARP_SIZE if algo != Algo.TREE else 4 * WARP_SIZE
        nt = max(nt, 3 * WARP_SIZE)
        if algo in (Algo.TREE, Algo.PAT):
            nt = MAX_NTHREADS
        return ChannelChoice(n_channels=max(nc, 1), n_threads=nt)

    def channel_limit(self, algo: Algo) -> int:
        """The scheduler's clamp for this algorithm's kind; 0 for CollNet (used unclamped)."""
        t = self.topology
        if algo in (Algo.COLLNET_DIRECT, Algo.COLLNET_CHAIN):
            return 0
        if algo in (Algo.NVLS, Algo.NVLS_TREE):
            return min(t.comm_channels, t.nvls_channels) if t.collnet_support else t.nvls_channels
        return t.comm_channels

    def schedule(self, coll: Coll, algo: Algo, proto: Proto, n_bytes: int, n_max_channels: int) -> Schedule:
        """Real channels of a task alone in its plan (scheduleCollTasksToPlan, simplified).

        The request (tuner hint or NCCL's nc) is clamped to the kind's limit, then the task is cut
        into cells carrying at least 32 KiB of traffic and laid over consecutive channels,
        ceil(cells / channels) cells per channel; the last channel takes the remainder.
        """
        t = self.topology
        if n_max_channels < 1:
            raise SimulationError(
                f"nMaxChannels={n_max_channels} for {FUNC_TOKENS[coll]}: a kind's channel sum <= 0 "
                "makes NCCL divide by zero in the scheduler")
        global_per_data = t.n_ranks if coll in (Coll.ALLGATHER, Coll.REDUCESCATTER) else 1
        data_bytes = max(n_bytes // global_per_data, 1)
        limit = self.channel_limit(algo)
        if limit == 0:  # CollNet: the hint (or nc) runs as is, one getChunkSize call on the whole task
            return Schedule(n_max_channels, 0, 0, ((n_max_channels, n_bytes),), 0)
        traffic_per_byte = 2 if coll == Coll.ALLREDUCE else global_per_data
        if proto == Proto.LL:
            traffic_per_byte *= 4
        cell = _roundup(-(-MIN_TRAFFIC_PER_CHANNEL // traffic_per_byte), 16)
        n_cells = -(-data_bytes // cell)
        want = min(n_max_channels, limit)
        per_ch = -(-n_cells // want)
        n_ch = -(-n_cells // per_ch)
        lo_bytes = min(per_ch * cell, data_bytes)
        parts: tuple[tuple[int, int], ...]
        if n_ch == 1:
            parts = ((1, data_bytes),)
        else:
            hi_bytes = data_bytes - (n_ch - 1) * per_ch * cell
            parts = ((1, lo_bytes),) + (((n_ch - 2, lo_bytes),) if n_ch > 2 else ()) + ((1, hi_bytes),)
        return Schedule(n_ch, cell, n_cells,
                        tuple((k, b * global_per_data) for k, b in parts), limit)

    # --- chunk size (§3.6) ----------------------------------------------------------------------

    def chunk_limits(self, coll: Coll, algo: Algo, proto: Proto) -> ChunkLimits:
        """NCCL's chunk size before getChunkSize, its ceiling and grain.

        NCCL also shrinks chunks for CollNet, NVLS_TREE, Tree+LL128 and PAT by rules the reference
        does not spell out; those are not applied (NVLS's 128 KiB cap is).
        """
        step = self.options.buffsizes[proto] // NCCL_STEPS
        chunk_steps = 4 if (algo == Algo.RING and proto == Proto.SIMPLE and coll in (
            Coll.ALLREDUCE, Coll.ALLGATHER, Coll.REDUCESCATTER)) else 1
        ceiling = step * chunk_steps
        chunk = ceiling
        if proto == Proto.LL:
            chunk //= 2
        elif proto == Proto.LL128:
            chunk = chunk * 15 // 16
        if algo == Algo.NVLS:
            chunk = min(chunk, self.options.nvls_chunksize)
        return ChunkLimits(default=chunk, ceiling=ceiling, grain=PROTO_GRAIN[proto])


def finalize_chunk(value: int, limits: ChunkLimits) -> int:
    """What NCCL keeps of a getChunkSize result: clamped to the ceiling, rounded down to the grain."""
    return min(value, limits.ceiling) // limits.grain * limits.grain


def select(table: Sequence[float]) -> tuple[Algo, Proto] | None:
    """topoGetAlgoInfo's argmin: strict <, algo-major, over entries >= 0; None if there is none."""
    best: tuple[Algo, Proto] | None = None
    best_time = math.inf
    for a in range(NUM_ALGOS):
        for p in range(NUM_PROTOS):
            v = table[a * NUM_PROTOS + p]
            if v >= 0 and v != IGNORE and v < best_time:
                best_time = v
                best = (Algo(a), Proto(p))
    return best


def select_or_raise(table: Sequence[float], coll: Coll, n_bytes: int, user_restricted: bool) -> tuple[Algo, Proto]:
    """select(), failing like NCCL when nothing is left (ncclInvalidUsage / ncclInternalError)."""
    got = select(table)
    if got is None:
        why = ("NCCL_ALGO/NCCL_PROTO leave nothing for it (NCCL returns ncclInvalidUsage)"
               if user_restricted else "every entry is IGNORE (NCCL returns ncclInternalError)")
        raise SimulationError(f"No algorithm/protocol available for {FUNC_TOKENS[coll]} of {n_bytes} bytes: {why}")
    return got


def graph(n_channels: int, bw_intra: float, bw_inter: float, type_intra: PathType, type_inter: PathType,
          latency_inter: float = 0.0, same_channels: bool = True) -> GraphInfo:
    """Shorthand for presets and tests."""
    return GraphInfo(n_channels, bw_intra, bw_inter, type_intra, type_inter, latency_inter, same_channels)
