"""Cluster presets: NCCL's view of the topology (presets.TOPOLOGY_PRESETS) plus the hardware's truth.

A ClusterPreset pairs the Topology NCCL's cost model is fed with the TrueParams the ground-truth
model runs on, and the noise a real cluster of that kind shows. Where each number comes from and
what it assumes: docs/simulator-model.md ("Cluster presets"). The calibration against published
magnitudes is tested in tests/test_truth.py (default-vs-best gaps per preset).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .nccl_model import NcclModel, select_or_raise
from .presets import TOPOLOGY_PRESETS
from .topology import Algo, Coll, Proto, Topology
from .truth import Interference, NoiseSettings, ProtoParams, TrueParams, TruthModel


@dataclass(frozen=True)
class ClusterPreset:
    name: str
    description: str
    topology: Topology
    params: TrueParams
    noise: NoiseSettings
    sources: tuple[str, ...]

    def truth(self, seed: int = 0, noise: NoiseSettings | None = None) -> TruthModel:
        """A fresh ground-truth model (its own noise streams and connection state)."""
        return TruthModel(self.topology, self.params, self.noise if noise is None else noise, seed)

    @property
    def gpus_per_node(self) -> int:
        return self.topology.ppn


_SETUP_NVSWITCH = {Algo.RING: 3.0, Algo.TREE: 3.0, Algo.NVLS: 25.0, Algo.NVLS_TREE: 30.0}
_SETUP_PLAIN = {Algo.RING: 4.0, Algo.TREE: 4.0, Algo.PAT: 5.0}

# Hopper over NVLink 4: LL ~45% of the link, LL128 93%, Simple all of it but the slowest steps.
_H100_PROTOS = {
    Proto.LL: ProtoParams(eff=0.45, ch_eff=0.6, fwd_bytes=4096, intra_hop_us=0.8, net_hop_us=4.5,
                          step_us=0.15, net_step_us=1.0),
    Proto.LL128: ProtoParams(eff=0.93, ch_eff=0.85, fwd_bytes=4096, intra_hop_us=1.3, net_hop_us=6.5,
                             step_us=0.35, net_step_us=1.6, base_us=4.0),
    Proto.SIMPLE: ProtoParams(eff=1.0, ch_eff=1.0, intra_hop_us=3.2, net_hop_us=9.0,
                              step_us=1.2, net_step_us=3.0, base_us=2.0),
}

# Ampere over NVLink 3 with RoCE: slower NVLink hops, RoCE hops a few µs above IB's.
_A100_ROCE_PROTOS = {
    Proto.LL: ProtoParams(eff=0.45, ch_eff=0.35, fwd_bytes=4096, intra_hop_us=1.0, net_hop_us=6.5,
                          step_us=0.2, net_step_us=1.6),
    Proto.LL128: ProtoParams(eff=0.92, ch_eff=0.85, fwd_bytes=4096, intra_hop_us=1.9, net_hop_us=9.0,
                             step_us=0.45, net_step_us=2.4),
    Proto.SIMPLE: ProtoParams(eff=1.0, ch_eff=1.0, intra_hop_us=3.8, net_hop_us=13.0,
                              step_us=1.4, net_step_us=4.5),
}

# Ampere with NICs on the CPU root complex (no GPUDirect RDMA): every network step bounces
# through host memory via the proxy thread, so network steps are slow and LL crawls across it.
_A100_HOSTNET_PROTOS = {
    Proto.LL: ProtoParams(eff=0.30, ch_eff=0.2, fwd_bytes=4096, intra_hop_us=1.0, net_hop_us=14.0,
                          step_us=0.2, net_step_us=6.0),
    Proto.LL128: ProtoParams(eff=0.92, ch_eff=0.85, fwd_bytes=4096, intra_hop_us=1.9, net_hop_us=15.0,
                             step_us=0.45, net_step_us=5.0),
    Proto.SIMPLE: ProtoParams(eff=1.0, ch_eff=1.0, intra_hop_us=3.8, net_hop_us=20.0,
                              step_us=1.4, net_step_us=8.0),
}

# Ada over PCIe Gen4 through the CPUs: long hops, LL below half the link.
_L40S_PROTOS = {
    Proto.LL: ProtoParams(eff=0.40, ch_eff=0.40, fwd_bytes=4096, intra_hop_us=1.6, net_hop_us=0.0,
                          step_us=0.3, net_step_us=0.0),
    Proto.LL128: ProtoParams(eff=0.90, ch_eff=0.85, fwd_bytes=4096, intra_hop_us=2.8, net_hop_us=0.0,
                             step_us=0.6, net_step_us=0.0),
    Proto.SIMPLE: ProtoParams(eff=0.97, ch_eff=1.0, intra_hop_us=6.5, net_hop_us=0.0,
                              step_us=1.8, net_step_us=0.0),
}

_QUIET_FABRIC = NoiseSettings(jitter_sigma=0.02, outlier_rate=0.002)
_IB_FABRIC = NoiseSettings(jitter_sigma=0.03, outlier_rate=0.003,
                           interference=Interference(rate_per_step=0.002, mean_steps=20,
                                                     bw_factor=0.75))
_SHARED_FABRIC = NoiseSettings(jitter_sigma=0.04, outlier_rate=0.005,
                               interference=Interference(rate_per_step=0.01, mean_steps=15,
                                                         bw_factor=0.6))


def _h100(nics: int, nic_eff: float, net_ch_bw: float, per_node_ms: float = 1.5) -> TrueParams:
    """An HGX H100 node (NVSwitch, NVLS capable) with `nics` NDR rails."""
    return TrueParams(gpu="H100-SXM", intra="nvswitch", intra_bw=370.0, intra_ch_bw=20.0,
                      nics_per_node=nics, nic_line_bw=50.0, nic_eff=nic_eff, net_ch_bw=net_ch_bw,
                      protos=_H100_PROTOS, launch_us=5.0, nvls_bw=470.0, nvls_ch_bw=40.0,
                      nvls_lat_us=20.0, setup_ms=_SETUP_NVSWITCH, setup_ms_per_node=per_node_ms)


_PARAMS: dict[str, tuple[str, TrueParams, NoiseSettings, tuple[str, ...]]] = {
    "h100-1x8-nvswitch": (
        "1 x 8 H100 SXM on NVSwitch (DGX/HGX H100): NCCL's defaults are close to the best here",
        _h100(nics=0, nic_eff=1.0, net_ch_bw=1.0),
        _QUIET_FABRIC,
        ("NVLink 4: 18 links x 25 GB/s per GPU and direction (NVIDIA H100 datasheet)",
         "nccl-tests all_reduce_perf busbw ~360-380 GB/s ring, ~470-480 GB/s NVLS on 8 x H100 "
         "(NVIDIA DGX H100 user guide / NCCL release notes figures)",
         "LL <= ~50% of peak, LL128 up to ~95% (NVIDIA/nccl#281)",
         "default within a few % of the best on one NVSwitch node (CS244C, 1 x 8 A100: 1.2%)"),
    ),
    "h100-2x8-ib": (
        "2 x 8 H100 SXM, 8 x 400 Gb/s NDR InfiniBand per node (one rail per GPU)",
        _h100(nics=8, nic_eff=0.88, net_ch_bw=22.0),
        _IB_FABRIC,
        ("ConnectX-7 NDR 400 Gb/s = 50 GB/s line rate; NCCL reaches ~85-90% of it (nccl-tests "
         "inter-node busbw reports)",
         "NVLSTree on H100 multi-node: bus bandwidth 104 -> 280 GB/s once selected correctly "
         "(pytorch/pytorch#117748)"),
    ),
    "a100-4x8-roce": (
        "4 x 8 A100 SXM on NVSwitch, 4 x 200 Gb/s RoCE per node, AMD hosts, shared fabric",
        TrueParams(gpu="A100-SXM", intra="nvswitch", intra_bw=235.0, intra_ch_bw=13.0,
                   nics_per_node=4, nic_line_bw=25.0, nic_eff=0.78, net_ch_bw=11.0,
                   protos=_A100_ROCE_PROTOS, launch_us=6.0, setup_ms=_SETUP_PLAIN,
                   setup_ms_per_node=2.5),
        _SHARED_FABRIC,
        ("NVLink 3: 12 links x 25 GB/s per GPU and direction; ring all_reduce busbw ~230-240 GB/s "
         "on 8 x A100 (nccl-tests)",
         "RoCEv2 under load reaches ~75-80% of line rate (PFC/ECN congestion control)",
         "AMD hosts: NCCL's network overhead 2 us (reference §5.4)"),
    ),
    "l40s-1x8-pcie": (
        "1 x 8 L40S on PCIe Gen4 across two CPU sockets, no NVLink, no P2P across the sockets",
        TrueParams(gpu="L40S", intra="pcie", intra_bw=11.0, intra_ch_bw=7.0,
                   nics_per_node=0, nic_line_bw=0.0, nic_eff=1.0, net_ch_bw=1.0,
                   protos=_L40S_PROTOS, launch_us=6.5, ll128_ok=False,
                   setup_ms=_SETUP_PLAIN),
        _QUIET_FABRIC,
        ("PCIe Gen4 x16: 32 GB/s nominal, ~25 GB/s achievable per direction; rings through the "
         "inter-socket link reach ~10-12 GB/s busbw (nccl-tests on PCIe servers)",
         "LL128 is unsafe without NVLink ordering guarantees (NVIDIA/nccl#281, #786)"),
    ),
    "a100-2x4": (
        "2 x 4 A100 (NVLink 3 mesh), 2 x 100 Gb/s per node on the CPU root complex (no GPUDirect)",
        TrueParams(gpu="A100-SXM", intra="nvlink", intra_bw=235.0, intra_ch_bw=13.0,
                   nics_per_node=2, nic_line_bw=12.5, nic_eff=0.82, net_ch_bw=5.5,
                   protos=_A100_HOSTNET_PROTOS, launch_us=6.0, tree_eff=0.95, ll128_ok=False,
                   setup_ms=_SETUP_PLAIN, setup_ms_per_node=3.0),
        _IB_FABRIC,
        ("CS244C bandit tuner (madanva/CS244C-project-repo): NCCL's default all-reduce at 64 MB "
         "57.2% slower than the best; Tree up to 2.9x the throughput of the Ring NCCL picked",
         "ring all-reduce pushes 2(n-1)/n of the message through every node's NICs, a 2-node "
         "double tree 1x: the gap is the NICs' (Patarasuk & Yuan 2009; NCCL 2.4 tree blog)"),
    ),
    "h100-16x8-ib": (
        "16 x 8 H100 SXM, 8 x 400 Gb/s NDR InfiniBand per node, rail-optimised fat tree",
        _h100(nics=8, nic_eff=0.84, net_ch_bw=22.0, per_node_ms=1.0),
        _IB_FABRIC,
        ("as h100-2x8-ib; at 16 nodes adaptive routing and more hops cost a few % more of line "
         "rate (nic_eff 0.84)",
         "Tree vs Ring latency gap grows with node count (NCCL 2.4 blog)"),
    ),
    "h100-8x1-ib": (
        "8 nodes x 1 H100 with one 400 Gb/s NDR NIC each (the PAT case: one GPU per node)",
        TrueParams(gpu="H100-SXM", intra="nvswitch", intra_bw=370.0, intra_ch_bw=20.0,
                   nics_per_node=1, nic_line_bw=50.0, nic_eff=0.88, net_ch_bw=14.0,
                   protos=_H100_PROTOS, launch_us=5.0, pat_eff=0.85,
                   setup_ms=_SETUP_PLAIN, setup_ms_per_node=1.0),
        _IB_FABRIC,
        ("ConnectX-7 NDR 400 Gb/s; PAT for AllGather/ReduceScatter with one GPU per node "
         "(NCCL 2.23 release notes)",),
    ),
}


def _build() -> dict[str, ClusterPreset]:
    out: dict[str, ClusterPreset] = {}
    for name, (desc, params, noise, sources) in _PARAMS.items():
        if name not in TOPOLOGY_PRESETS:
            raise ConfigError(f"cluster preset {name!r} has no topology in presets.TOPOLOGY_PRESETS")
        out[name] = ClusterPreset(name, desc, TOPOLOGY_PRESETS[name], params, noise, sources)
    return out


CLUSTER_PRESETS: dict[str, ClusterPreset] = _build()


def cluster(name: str) -> ClusterPreset:
    """The cluster preset called `name`; the error lists the valid names."""
    try:
        return CLUSTER_PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown cluster preset {name!r}; choose one of: " + ", ".join(sorted(CLUSTER_PRESETS))
        ) from None


@dataclass(frozen=True)
class ArmTime:
    algo: Algo
    proto: Proto
    channels: int
    time_us: float


def nccl_default_arm(preset: ClusterPreset, coll: Coll, n_bytes: int) -> ArmTime:
    """What NCCL runs with no tuner (its own cost model and channel choice) and how long that
    really takes under this preset's truth."""
    model = NcclModel(preset.topology)
    algo, proto = select_or_raise(model.cost_table(coll, n_bytes), coll, n_bytes, False)
    nc = model.default_channels(coll, algo, proto, n_bytes).n_channels
    ch = model.schedule(coll, algo, proto, n_bytes, nc).n_channels
    t = preset.topology
    truth = preset.truth()
    return ArmTime(algo, proto, ch,
                   truth.expected_time(coll, n_bytes, algo, proto, ch, None, t.n_ranks, t.n_nodes))


def best_arm(preset: ClusterPreset, coll: Coll, n_bytes: int) -> ArmTime:
    """The fastest (algorithm, protocol, channel hint) under the truth, NCCL's chunk size; the
    channel hint goes through NCCL's scheduler like a tuner's would. Only arms NCCL's model
    offers (entries >= 0) count: a tuner must never enable an IGNORE'd one."""
    model = NcclModel(preset.topology)
    table = model.cost_table(coll, n_bytes)
    t = preset.topology
    truth = preset.truth()
    best: ArmTime | None = None
    for a in Algo:
        for p in Proto:
            if table[a * len(Proto) + p] < 0:
                continue
            limit = model.channel_limit(a) or t.comm_channels
            seen: set[int] = set()
            for hint in range(1, limit + 1):
                ch = model.schedule(coll, a, p, n_bytes, hint).n_channels
                if ch in seen:
                    continue
                seen.add(ch)
                tt = truth.expected_time(coll, n_bytes, a, p, ch, None, t.n_ranks, t.n_nodes)
                if best is None or tt < best.time_us:
                    best = ArmTime(a, p, ch, tt)
    if best is None:
        raise ConfigError(f"{preset.name}: no arm available for {coll.name} of {n_bytes} bytes")
    return best
