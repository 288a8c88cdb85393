"""The simulator's ground truth: how long one collective really takes on a cluster.

Structure follows NCCL's own cost model (reference §5): a latency term plus bytes over bandwidth,
per algorithm and protocol, with each algorithm's step counts. The *parameters* are the
cluster's true ones (clusters.TrueParams) and the mechanisms are the physical ones NCCL's
constants only approximate:

- aggregate bandwidth saturates with the channel count (soft knee) and degrades slightly past
  saturation (contention on the links and in the memory system);
- each protocol reaches its own fraction of the link (LL ~half, LL128 ~0.9-0.95, Simple ~1) and
  pays its own per-hop latency and per-step synchronisation overhead;
- inter-node bandwidth is the NICs' line rate times a measured efficiency, and a multi-node ring
  pushes 2(n-1)/n of the message through every node's NICs while a 2-node tree pushes 1x;
- chunk size trades per-step overhead (many small steps) against pipeline fill (the first chunk
  must cross every hop before the pipeline streams);
- the first use of an algorithm on a communicator pays its connection setup (milliseconds).

Noise (jitter, outliers, interference windows, drift) lives in NoiseModel and only touches
sample_time; expected_time is the noise-free steady state. Unavailable arms: `available()` says
False and expected_time/sample_time raise ArmUnavailableError. Raising (not returning None) is
deliberate: running an arm the hardware cannot run is a hang or silent corruption on a real
cluster, so a caller that does it has a bug that must surface at once.

Units: times in µs, bandwidths in GB/s (1 GB/s = 1000 bytes/µs), sizes in bytes. `n_bytes`
follows NCCL's convention (reference §3.4): AllGather/ReduceScatter sizes are the total
(nRanks x per-rank count).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Hashable

import numpy as np

from ..errors import ConfigError, SimulationError
from .topology import Algo, Coll, Proto, Topology

# Protocol grains and per-protocol chunk ceilings (reference §3.6): what NCCL clamps and rounds to.
PROTO_GRAIN: dict[Proto, int] = {Proto.LL: 16, Proto.LL128: 1920, Proto.SIMPLE: 512}
_SIMPLE_STEP = 4 * 1024 * 1024 // 8
_LL_STEP = 512 * 1024 // 8
_LL128_STEP = 4_915_200 // 8


class ArmUnavailableError(SimulationError):
    """The (algorithm, protocol) arm cannot run on this cluster or for this collective."""


def chunk_ceiling(coll: Coll, algo: Algo, proto: Proto) -> int:
    """Largest chunk NCCL accepts for this arm: stepSize x chunkSteps, LL halved, LL128 x 15/16."""
    if proto == Proto.LL:
        return _LL_STEP // 2
    if proto == Proto.LL128:
        return _LL128_STEP * 15 // 16
    ring_multi = algo == Algo.RING and coll in (Coll.ALLREDUCE, Coll.ALLGATHER, Coll.REDUCESCATTER)
    return _SIMPLE_STEP * (4 if ring_multi else 1)


def default_chunk(coll: Coll, algo: Algo, proto: Proto) -> int:
    """NCCL's default chunk for this arm (reference §3.6 table)."""
    if algo in (Algo.NVLS, Algo.NVLS_TREE):
        return 128 * 1024
    return chunk_ceiling(coll, algo, proto)


def effective_chunk(coll: Coll, algo: Algo, proto: Proto, chunk_size: int | None) -> int:
    """What NCCL really runs for a requested chunk: clamped to the ceiling, rounded to the grain."""
    if chunk_size is None or chunk_size == 0:
        return default_chunk(coll, algo, proto)
    if chunk_size < 0:
        raise ConfigError(f"chunk_size {chunk_size} is negative; pass None or 0 for NCCL's default")
    grain = PROTO_GRAIN[proto]
    c = min(chunk_size, chunk_ceiling(coll, algo, proto))
    c -= c % grain
    if c < grain:
        raise ConfigError(
            f"chunk_size {chunk_size} is below the {proto.name} grain of {grain} bytes; NCCL would "
            "divide by zero. Use at least one grain, or None for NCCL's default"
        )
    return c


@dataclass(frozen=True)
class ProtoParams:
    """How one protocol behaves on one platform."""

    eff: float  # fraction of the link's bandwidth the protocol delivers (payload / wire)
    ch_eff: float  # fraction of one channel's Simple bandwidth the protocol reaches per channel
    intra_hop_us: float  # latency of one intra-node hop
    net_hop_us: float  # latency of one inter-node hop (NIC, switch, proxy)
    step_us: float  # per-step synchronisation overhead (flags, fences) inside a node
    net_step_us: float  # per-step overhead of a step that crosses the network (proxy post/poll)
    base_us: float = 0.0  # extra fixed cost of this protocol's kernels (setup, final flush)
    # Forwarding unit: LL/LL128 flag every line, so a hop forwards data as soon as a few KiB
    # arrived; Simple forwards a whole chunk at a time (0 = the chunk).
    fwd_bytes: int = 0


@dataclass(frozen=True)
class TrueParams:
    """The cluster's real behaviour. Sources and reasoning per preset: docs/simulator-model.md."""

    gpu: str
    intra: str  # "nvswitch" | "nvlink" | "pcie"
    intra_bw: float  # GB/s one GPU really moves to its peers, per direction, with enough channels
    intra_ch_bw: float  # GB/s one channel (one CTA) moves intra-node with Simple
    nics_per_node: int
    nic_line_bw: float  # GB/s per NIC per direction, nominal (e.g. 400 Gb/s NDR = 50)
    nic_eff: float  # fraction of line rate really achieved by NCCL traffic under load
    net_ch_bw: float  # GB/s one channel pushes through a NIC
    protos: dict[Proto, ProtoParams]
    launch_us: float  # kernel launch and work setup, paid once per collective
    ch_lat_us: float = 0.2  # cost of each channel: one more CTA to launch, and the collective
    #                         ends with its slowest channel
    knee: float = 4.0  # soft-min exponent: larger = sharper saturation knee
    contention: float = 0.04  # relative loss per unit of oversubscription past saturation
    stream_exposed: float = 0.25  # share of a streaming step's overhead not hidden behind the
    #                               transfer of the steps in flight (NCCL keeps 8 in flight)
    tree_eff: float = 0.92  # reduce-and-broadcast pipelining efficiency of the tree kernels
    nvls_bw: float = 0.0  # GB/s bus bandwidth of NVLS (switch multicast/reduction); 0 = none
    nvls_ch_bw: float = 0.0  # GB/s per channel for NVLS
    nvls_lat_us: float = 0.0  # latency of one NVLS operation through the switch
    pat_eff: float = 0.8  # PAT's bandwidth efficiency relative to ring (one GPU per node only)
    ll128_ok: bool = True  # LL128 is safe on this platform (its 128-byte stores stay ordered)
    setup_ms: dict[Algo, float] = field(default_factory=dict)  # first-use connect, per algorithm
    setup_ms_per_node: float = 1.5  # extra connect time per remote node (QPs, memory registration)

    def __post_init__(self) -> None:
        if self.intra not in ("nvswitch", "nvlink", "pcie"):
            raise ConfigError(f"intra interconnect {self.intra!r}: use nvswitch, nvlink or pcie")
        for name in ("intra_bw", "intra_ch_bw", "launch_us", "knee"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"TrueParams.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.nic_eff <= 1 or not 0 < self.tree_eff <= 1:
            raise ConfigError("nic_eff and tree_eff are fractions in (0, 1]")
        if set(self.protos) != set(Proto):
            raise ConfigError("TrueParams.protos needs an entry for LL, LL128 and SIMPLE")


@dataclass(frozen=True)
class Interference:
    """Windows in which another job's traffic steals bandwidth, in steps."""

    rate_per_step: float = 0.0  # probability that a window starts at a given step
    mean_steps: float = 20.0  # mean window length (geometric)
    bw_factor: float = 0.6  # bandwidth multiplier inside a window


@dataclass(frozen=True)
class Drift:
    """A link degrading mid-run: from start_step the bandwidth ramps linearly to final_factor."""

    start_step: int
    ramp_steps: int = 100
    final_factor: float = 0.7


@dataclass(frozen=True)
class NoiseSettings:
    jitter_sigma: float = 0.03  # lognormal sigma of the multiplicative jitter (mean-one)
    outlier_rate: float = 0.003  # fraction of samples that hit a heavy-tailed stall
    outlier_min: float = 1.5  # smallest outlier multiplier (Pareto scale)
    outlier_alpha: float = 2.0  # Pareto shape: smaller = heavier tail
    outlier_cap: float = 50.0  # stalls beyond this are cut (a watchdog would fire)
    interference: Interference = Interference()
    drift: Drift | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.jitter_sigma < 1:
            raise ConfigError(f"jitter_sigma {self.jitter_sigma}: use a value in [0, 1)")
        if not 0 <= self.outlier_rate < 0.5:
            raise ConfigError(f"outlier_rate {self.outlier_rate}: use a value in [0, 0.5)")
        if self.outlier_min < 1 or self.outlier_alpha <= 0 or self.outlier_cap < self.outlier_min:
            raise ConfigError("outliers need outlier_min >= 1, outlier_alpha > 0, cap >= min")
        i = self.interference
        if not 0 <= i.rate_per_step <= 1 or i.mean_steps < 1 or not 0 < i.bw_factor <= 1:
            raise ConfigError("interference: rate in [0,1], mean_steps >= 1, bw_factor in (0,1]")
        d = self.drift
        if d is not None and (d.start_step < 0 or d.ramp_steps < 1 or not 0 < d.final_factor <= 1):
            raise ConfigError("drift: start_step >= 0, ramp_steps >= 1, final_factor in (0,1]")


QUIET = NoiseSettings(jitter_sigma=0.0, outlier_rate=0.0)

_BLOCK = 1 << 14


class NoiseModel:
    """Seeded noise streams. Separate generators for per-sample noise and for the step schedule,
    so that how many samples a step draws never shifts when interference windows occur."""

    def __init__(self, settings: NoiseSettings, seed: int) -> None:
        self.settings = settings
        root = np.random.SeedSequence(seed)
        sample_seq, window_seq = root.spawn(2)
        self._rng = np.random.Generator(np.random.PCG64(sample_seq))
        self._win_rng = np.random.Generator(np.random.PCG64(window_seq))
        self._buf: list[float] = []
        self._pos = 0
        self._windows: list[bool] = []  # in-window flag per step, extended on demand
        self._win_left = 0
        self.step = 0
        self.bw_factor = 1.0

    def _refill(self) -> None:
        s = self.settings
        mult = np.ones(_BLOCK)
        if s.jitter_sigma > 0:
            sig = s.jitter_sigma
            mult = np.exp(self._rng.normal(-0.5 * sig * sig, sig, _BLOCK))
        if s.outlier_rate > 0:
            hit = self._rng.random(_BLOCK) < s.outlier_rate
            u = self._rng.random(_BLOCK)
            pareto = np.minimum(s.outlier_min * (1.0 - u) ** (-1.0 / s.outlier_alpha), s.outlier_cap)
            mult = np.where(hit, mult * pareto, mult)
        self._buf = mult.tolist()
        self._pos = 0

    def next_factor(self) -> float:
        """Multiplier of one sample's time: jitter x (rarely) an outlier stall."""
        if self._pos >= len(self._buf):
            self._refill()
        f = self._buf[self._pos]
        self._pos += 1
        return f

    def _in_window(self, step: int) -> bool:
        i = self.settings.interference
        while len(self._windows) <= step:
            if self._win_left > 0:
                self._win_left -= 1
                self._windows.append(True)
            elif i.rate_per_step > 0 and self._win_rng.random() < i.rate_per_step:
                self._win_left = int(self._win_rng.geometric(1.0 / i.mean_steps)) - 1
                self._windows.append(True)
            else:
                self._windows.append(False)
        return self._windows[step]

    def set_step(self, step: int) -> None:
        if step < 0:
            raise SimulationError(f"step {step} is negative")
        self.step = step
        f = 1.0
        if self._in_window(step):
            f *= self.settings.interference.bw_factor
        d = self.settings.drift
        if d is not None and step >= d.start_step:
            progress = min(1.0, (step - d.start_step + 1) / d.ramp_steps)
            f *= 1.0 - progress * (1.0 - d.final_factor)
        self.bw_factor = f


class PerformanceModel(ABC):
    """What the simulator runs collectives on: a preset's TruthModel or a measured profile.

    `expected_time` is the noise-free steady state; `sample_time` adds the cluster's noise, the
    bandwidth factor of the current step (interference, drift) and the one-time connection setup
    the first time `comm` uses an algorithm. Both raise ArmUnavailableError for an arm that
    `available` rejects.
    """

    def __init__(self, noise: NoiseSettings, seed: int) -> None:
        self.noise = NoiseModel(noise, seed)
        self._connected: set[tuple[Hashable, Algo]] = set()
        self._split: dict[tuple[int, ...], tuple[float, float]] = {}

    @abstractmethod
    def available(self, coll: Coll, algo: Algo, proto: Proto, n_ranks: int, n_nodes: int) -> bool:
        """True when this arm can run for this collective on this communicator shape."""

    @abstractmethod
    def _latency_and_bw_time(
        self, coll: Coll, n_bytes: int, algo: Algo, proto: Proto, channels: int,
        chunk_size: int | None, n_ranks: int, n_nodes: int,
    ) -> tuple[float, float]:
        """Noise-free (size-independent-ish latency part, bandwidth part) in µs; validated args."""

    @abstractmethod
    def setup_us(self, algo: Algo, n_ranks: int, n_nodes: int) -> float:
        """One-time connection setup the first use of `algo` on a communicator costs."""

    def _parts(
        self, coll: Coll, n_bytes: int, algo: Algo, proto: Proto, channels: int,
        chunk_size: int | None, n_ranks: int, n_nodes: int,
    ) -> tuple[float, float]:
        key = (coll, n_bytes, algo, proto, channels, chunk_size or 0, n_ranks, n_nodes)
        hit = self._split.get(key)
        if hit is not None:
            return hit
        if n_bytes < 0:
            raise SimulationError(f"n_bytes {n_bytes} is negative")
        if channels < 1 or channels > 64:
            raise SimulationError(f"channels {channels}: a collective runs on 1..64 channels")
        if n_ranks < 2 or n_nodes < 1 or n_ranks % n_nodes:
            raise SimulationError(
                f"communicator of {n_ranks} ranks on {n_nodes} nodes: need >= 2 ranks and the same "
                "number of ranks on every node"
            )
        if not self.available(coll, algo, proto, n_ranks, n_nodes):
            raise ArmUnavailableError(
                f"{Coll(coll).name} {Algo(algo).name}/{Proto(proto).name} is not available on this "
                f"cluster for {n_ranks} ranks on {n_nodes} nodes; check available() first"
            )
        parts = self._latency_and_bw_time(
            coll, n_bytes, algo, proto, channels, chunk_size, n_ranks, n_nodes
        )
        self._split[key] = parts
        return parts

    def expected_time(
        self, coll: Coll, n_bytes: int, algo: Algo, proto: Proto, channels: int,
        chunk_size: int | None, n_ranks: int, n_nodes: int,
    ) -> float:
        lat, bw = self._parts(coll, n_bytes, algo, proto, channels, chunk_size, n_ranks, n_nodes)
        return lat + bw

    def set_step(self, step: int) -> None:
        """Advance the noise clock: interference windows and drift are functions of the step."""
        self.noise.set_step(step)

    def sample_time(
        self, coll: Coll, n_bytes: int, algo: Algo, proto: Proto, channels: int,
        chunk_size: int | None, n_ranks: int, n_nodes: int, comm: Hashable = 0,
    ) -> float:
        lat, bw = self._parts(coll, n_bytes, algo, proto, channels, chunk_size, n_ranks, n_nodes)
        t = (lat + bw / self.noise.bw_factor) * self.noise.next_factor()
        ck = (comm, algo)
        if ck not in self._connected:
            self._connected.add(ck)
            t += self.setup_us(algo, n_ranks, n_nodes)
        return t


def _softmin(a: float, b: float, k: float) -> float:
    return float((a ** -k + b ** -k) ** (-1.0 / k))


def saturating_bw(channels: int, per_ch: float, cap: float, knee: float, contention: float) -> float:
    """Aggregate bandwidth of `channels` channels on a link of capacity `cap`.

    Below the knee each channel adds `per_ch`; near it the total bends softly towards `cap`; past
    it, oversubscription costs `contention` of the total per unit of excess demand.
    """
    demand = channels * per_ch
    bw = _softmin(demand, cap, knee)
    over = demand / cap - 1.0
    if over > 0:
        bw /= 1.0 + contention * over
    return bw


def _log2i(x: int) -> int:
    return x.bit_length() - 1 if x > 0 else -1


class TruthModel(PerformanceModel):
    """The ground truth of one cluster (a Topology for its shape, TrueParams for its physics)."""

    def __init__(
        self, topology: Topology, params: TrueParams, noise: NoiseSettings = QUIET, seed: int = 0
    ) -> None:
        super().__init__(noise, seed)
        self.topology = topology
        self.params = params

    # -- availability --------------------------------------------------------------------------

    def available(self, coll: Coll, algo: Algo, proto: Proto, n_ranks: int, n_nodes: int) -> bool:
        p = self.params
        ppn = n_ranks // n_nodes if n_nodes > 0 else 0
        if proto == Proto.LL128 and not p.ll128_ok:
            return False
        if algo in (Algo.COLLNET_DIRECT, Algo.COLLNET_CHAIN):
            return False  # no preset has in-network reduction (SHARP); see docs/simulator-model.md
        if algo in (Algo.NVLS, Algo.NVLS_TREE):
            if proto != Proto.SIMPLE or p.nvls_bw <= 0 or not self.topology.nvls_support:
                return False
            if algo == Algo.NVLS:
                # Multi-node NVLS needs in-network reduction, which no preset has.
                return n_nodes == 1 and coll in (Coll.ALLREDUCE, Coll.ALLGATHER, Coll.REDUCESCATTER)
            return n_nodes > 1 and coll == Coll.ALLREDUCE
        if algo == Algo.PAT:
            return (
                proto == Proto.SIMPLE and ppn == 1
                and coll in (Coll.ALLGATHER, Coll.REDUCESCATTER)
            )
        if algo == Algo.TREE:
            return coll == Coll.ALLREDUCE
        return algo == Algo.RING

    # -- physics -------------------------------------------------------------------------------

    def _intra_agg(self, channels: int, proto: Proto) -> float:
        p = self.params
        pp = p.protos[proto]
        return pp.eff * saturating_bw(
            channels, p.intra_ch_bw * pp.ch_eff / pp.eff, p.intra_bw, p.knee, p.contention
        )

    def _net_agg(self, channels: int, proto: Proto) -> float:
        """Per-node NIC bandwidth available to `channels` channels (each channel uses one NIC)."""
        p = self.params
        pp = p.protos[proto]
        cap = min(channels, p.nics_per_node) * p.nic_line_bw * p.nic_eff
        return pp.eff * saturating_bw(
            channels, p.net_ch_bw * pp.ch_eff / pp.eff, cap, p.knee, p.contention
        )

    @staticmethod
    def _first(pp: ProtoParams, chunk: int, piece: float) -> float:
        """Bytes a hop must receive before it forwards: the pipeline's fill unit."""
        unit = min(float(chunk), piece)
        return min(unit, float(pp.fwd_bytes)) if pp.fwd_bytes > 0 else unit

    def setup_us(self, algo: Algo, n_ranks: int, n_nodes: int) -> float:
        p = self.params
        base = p.setup_ms.get(algo, 2.0)
        return 1000.0 * (base + p.setup_ms_per_node * (n_nodes - 1))

    def _latency_and_bw_time(
        self, coll: Coll, n_bytes: int, algo: Algo, proto: Proto, channels: int,
        chunk_size: int | None, n_ranks: int, n_nodes: int,
    ) -> tuple[float, float]:
        p = self.params
        pp = p.protos[proto]
        n, nn = n_ranks, n_nodes
        ppn = n // nn
        c = effective_chunk(coll, algo, proto, chunk_size)
        s = float(n_bytes)
        ch = channels
        intra = self._intra_agg(ch, proto) * 1000.0  # bytes/µs
        net = self._net_agg(ch, proto) * 1000.0 if nn > 1 else math.inf
        ch_intra = intra / ch  # one channel's share, bytes/µs
        ch_net = net / ch
        fixed = p.launch_us + pp.base_us + p.ch_lat_us * ch

        if algo == Algo.RING:
            if coll == Coll.ALLREDUCE:
                steps, vol, n_inter, slices = 2 * (n - 1), 2.0 * (n - 1) / n, 2 * (nn - 1), n
            elif coll in (Coll.ALLGATHER, Coll.REDUCESCATTER):
                steps, vol, n_inter, slices = n - 1, (n - 1) / n, nn - 1, n
            else:  # broadcast / reduce: a pipelined chain through every rank
                steps, vol, n_inter, slices = n - 1, 1.0, nn - 1, 1
            if nn > 1:
                # The small-message critical path walks the ring rank after rank, so it meets a
                # network link every ppn steps, not only 2(nNodes-1) times as NCCL assumes.
                n_inter = max(n_inter, math.ceil(steps * nn / n))
            hops = (steps - n_inter) * pp.intra_hop_us + n_inter * pp.net_hop_us
            # Every node's NICs carry `vol` of the message: one crossing per channel per node.
            bw_time = vol * s / min(intra, net)
            piece = max(1.0, s / (ch * slices))
            loops = math.ceil(piece / c)
            # A ring's steps run in lockstep, so every step waits for the slowest link's overhead.
            step_cost = pp.net_step_us if nn > 1 else pp.step_us
            # The first pass is fully exposed; later loops overlap with the transfers in flight.
            if slices == 1:
                sync = (steps + (loops - 1) * p.stream_exposed) * step_cost
            else:
                sync = steps * step_cost * (1.0 + (loops - 1) * p.stream_exposed)
            # Pipeline fill: the first unit crosses one link before the ring streams.
            fill = self._first(pp, c, piece) / min(ch_intra, ch_net)
            return fixed + hops + sync + fill, bw_time

        if algo == Algo.TREE:
            depth_net = (nn - 1).bit_length()  # ceil(log2(nodes)): the double tree's depth
            hops = 2 * ((ppn - 1) * pp.intra_hop_us + depth_net * pp.net_hop_us)
            # Each GPU of the intra-node chain sends the data up and down: 2x the message.
            t_intra = 2.0 * s / intra
            # A 2-node double tree sends 1x the message through each node's NICs each way; a
            # deeper tree's interior nodes forward to two children: 2x.
            t_net = (1.0 if nn == 2 else 2.0) * s / net if nn > 1 else 0.0
            bw_time = max(t_intra, t_net) / p.tree_eff
            piece = max(1.0, s / ch)
            n_chunks = math.ceil(piece / c)
            step_cost = pp.net_step_us if nn > 1 else pp.step_us
            sync = (1.0 + (n_chunks - 1) * p.stream_exposed) * step_cost + 2 * (
                (ppn - 1) * pp.step_us + depth_net * pp.net_step_us)
            # Store-and-forward: the first unit crosses every level up and down.
            first = self._first(pp, c, piece)
            fill = 2 * ((ppn - 1) * first / ch_intra + depth_net * first / ch_net)
            return fixed + hops + sync + fill, bw_time

        if algo in (Algo.NVLS, Algo.NVLS_TREE):
            if coll == Coll.ALLREDUCE:
                # The switch reduces: each GPU sends and receives its share once per phase.
                cap, vol = p.nvls_bw, 2.0 * (ppn - 1) / ppn
            else:
                # Multicast saves the sender's bandwidth but every GPU still receives all the
                # others' data: ingress-bound like a ring.
                cap, vol = min(p.nvls_bw, p.intra_bw), (ppn - 1) / ppn
            nvls = saturating_bw(ch, p.nvls_ch_bw, cap, p.knee, p.contention) * 1000.0
            t_intra = vol * s / nvls
            lat = fixed + p.nvls_lat_us
            piece = max(1.0, s / ch)
            first = self._first(pp, c, piece)
            if algo == Algo.NVLS_TREE:
                depth_net = (nn - 1).bit_length()
                lat += 2 * depth_net * (pp.net_hop_us + first / ch_net)
                # After the switch reduces inside the node, one node-level tree spans the NICs.
                t_net = (1.0 if nn == 2 else 2.0) * s / net
                bw_time = max(t_intra, t_net / p.tree_eff)
                step_cost = pp.net_step_us
            else:
                bw_time = t_intra
                step_cost = pp.step_us
            n_chunks = math.ceil(piece / c)
            lat += (1.0 + (n_chunks - 1) * p.stream_exposed) * step_cost + first / (nvls / ch)
            return lat, bw_time

        if algo == Algo.PAT:
            # One GPU per node: log-depth aggregation trees over the network.
            depth = (n - 1).bit_length()
            hops = depth * pp.net_hop_us
            bw_time = (n - 1) / n * s / (net * p.pat_eff)
            piece = max(1.0, s / (ch * n))
            sync = (depth + (math.ceil(piece / c) - 1) * p.stream_exposed) * pp.net_step_us
            return fixed + hops + sync + self._first(pp, c, piece) / ch_net, bw_time

        raise ArmUnavailableError(f"{Algo(algo).name} is not modelled")  # pragma: no cover
