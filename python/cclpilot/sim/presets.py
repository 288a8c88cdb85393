"""Topologies as NCCL's cost model sees them, for well-known cluster shapes.

Each preset holds the *search results* NCCL would feed ncclTopoTuneModel (reference §5.1): per
algorithm a graph (channels, per-channel GB/s from the search speed ladders, path types) and the
communicator's channel counts. They are plausible for the hardware, not measured: NCCL logs them
with NCCL_DEBUG_SUBSYS=GRAPH ("Pattern P, crossNic C, nChannels N, bw I/E, type T/U") and a preset
can be calibrated from such a log. How fast the hardware *really* is lives in the ground-truth
model (cclpilot.sim.truth), which pairs with these presets by name; keep the names stable.

Conventions used below:
- Graph bandwidths are values of NCCL's search ladders (sm90 intra 60, 50, 40, 30, 24, 20, …;
  sm90 inter 48, 45, 42, 40, 30, 24, 22, 20, …; pre-sm90 intra 40, 30, 20, 18, 15, 12, 10, 9,
  7, 6, …; pre-sm90 inter 48, 30, 28, 24, 20, 18, 15, 12, 10, 9, 7, 6, …), and nChannels × bw
  never exceeds what the links can carry (NVLink per link: SM80 20.0, SM90 20.6 GB/s;
  PCI_BW 12 GB/s; NET_BW per NIC from its speed).
- comm_channels is the ring graph's channel count doubled by NCCL's channel duplication, where
  the links are fast enough for it; it is what the scheduler clamps to.
- max_tree_pattern is 1 (NCCL_TOPO_PATTERN_BALANCED_TREE), which the tree search finds on these
  regular machines; 3 (plain TREE) would cost Tree another 15% in the model.
- Single-node graphs report bw_inter = bw_intra, as the search does when there is no network.
"""

from __future__ import annotations

from .nccl_model import graph
from .topology import Algo, PathType, Topology

NVL, PIX, PXB, PHB, SYS, LOC = PathType.NVL, PathType.PIX, PathType.PXB, PathType.PHB, PathType.SYS, PathType.LOC


def _h100_1x8_nvswitch() -> Topology:
    """One DGX/HGX H100 (8 x H100 SXM, NVLink 4 through NVSwitch, NVLS capable).

    Each GPU has 18 NVLinks x 20.6 GB/s = 370.8 GB/s towards the switches. The ring and tree
    searches settle at 16 channels x 20 GB/s (320 GB/s, sm90 intra ladder), duplicated to 32
    communicator channels. NVLS (NVLink SHARP) is supported: its graph uses 16 channels at 20 GB/s
    and the communicator gets NCCL's sm90 default of 16 NVLS channels. NVLS_TREE needs several
    nodes, PAT needs one GPU per node, so both stay disabled here.
    """
    g = graph(16, 20.0, 20.0, NVL, NVL)
    return Topology(
        name="h100-1x8-nvswitch", n_nodes=1, n_ranks=8, comp_cap=90,
        graphs={Algo.RING: g, Algo.TREE: g, Algo.NVLS: graph(16, 20.0, 20.0, NVL, NVL)},
        comm_channels=32, nvls_channels=16, nvls_support=True, cpu_vendor="intel",
        max_tree_pattern=1, description=_h100_1x8_nvswitch.__doc__ or "")


def _h100_ib(n_nodes: int, name: str) -> Topology:
    """n nodes of 8 x H100 SXM (NVSwitch), one 400 Gb/s InfiniBand NIC per GPU (ConnectX-7).

    A 400 Gb/s NIC is ~48 GB/s (top of the sm90 inter ladder). With 16 channels, two per NIC, each
    channel gets 20 GB/s both inside the node (16 x 20 = 320 <= 370.8 GB/s of NVLink) and across
    the network (2 x 20 = 40 <= 48 GB/s per NIC); the NIC hangs off the GPU's own PCIe switch
    (type PIX). NVLS_TREE (NVLS inside the node, a tree across nodes) is available; plain NVLS
    across nodes needs CollNet (SHARP), which these presets do not have, so NCCL skips it.
    """
    g = graph(16, 20.0, 20.0, NVL, PIX)
    return Topology(
        name=name, n_nodes=n_nodes, n_ranks=8 * n_nodes, comp_cap=90,
        graphs={Algo.RING: g, Algo.TREE: g, Algo.NVLS: graph(16, 20.0, 20.0, NVL, PIX),
                Algo.NVLS_TREE: graph(16, 20.0, 20.0, NVL, PIX)},
        comm_channels=32, nvls_channels=16, nvls_support=True, cpu_vendor="intel",
        max_tree_pattern=1, description=(_h100_ib.__doc__ or "").replace("n nodes", f"{n_nodes} nodes"))


def _a100_4x8_roce() -> Topology:
    """4 nodes of 8 x A100 SXM (NVSwitch), four 200 Gb/s RoCE NICs per node, AMD EPYC hosts.

    Each NIC (~24 GB/s) is shared by two GPUs behind a PCIe switch (type PXB). The search finds 8
    channels at 12 GB/s (pre-sm90 inter ladder): two channels per NIC = 24 GB/s per NIC, and
    8 x 12 = 96 GB/s well within A100's 12 x 20 GB/s of NVLink. Duplication gives 16 communicator
    channels. With more than two nodes the model uses bw_inter. AMD hosts select the AMD row of
    llMaxBws and a 2 µs network overhead. No NVLS on Ampere; LL128 passes its checks (PXB, NVL).
    """
    g = graph(8, 12.0, 12.0, NVL, PXB)
    return Topology(
        name="a100-4x8-roce", n_nodes=4, n_ranks=32, comp_cap=80,
        graphs={Algo.RING: g, Algo.TREE: g}, comm_channels=16, cpu_vendor="amd",
        max_tree_pattern=1, description=_a100_4x8_roce.__doc__ or "")


def _l40s_1x8_pcie() -> Topology:
    """One server with 8 x L40S (sm89) on PCIe Gen4, no NVLink, GPUs split across two CPU sockets.

    Rings cross the inter-socket link, so the worst path type (max over ranks) is SYS. Peer
    traffic goes through PCIe at NCCL's PCI_BW of 12 GB/s: 2 channels x 6 GB/s. No duplication
    (slow links), so 2 communicator channels; Ring Simple gets 256 threads (bw x channels <= 12).
    LL128 is disabled by the rules (intra path SYS is above NVB); no NVLS, no PAT.
    """
    g = graph(2, 6.0, 6.0, SYS, SYS)
    return Topology(
        name="l40s-1x8-pcie", n_nodes=1, n_ranks=8, comp_cap=89,
        graphs={Algo.RING: g, Algo.TREE: g}, comm_channels=2, cpu_vendor="intel",
        max_tree_pattern=1, description=_l40s_1x8_pcie.__doc__ or "")


def _a100_2x4() -> Topology:
    """2 nodes of 4 x A100 (HGX A100 4-GPU, NVLink 3 full mesh), two 100 Gb/s NICs per node.

    This is the published case where NCCL's default all-reduce at 64 MB was 57% slower than the
    best (Tree up to 2.9x the Ring NCCL picked; reference tuning-landscape.md). The NICs sit on the
    CPU's root complex (type PHB), so LL128 is off by the rules. Each 100 Gb/s NIC (~12 GB/s) carries
    two channels of 6 GB/s: 4 channels x 6 GB/s, doubled to 8 communicator channels. With 2
    nodes the model uses bw_intra (6 GB/s, the network-limited search speed).
    """
    g = graph(4, 6.0, 6.0, NVL, PHB)
    return Topology(
        name="a100-2x4", n_nodes=2, n_ranks=8, comp_cap=80,
        graphs={Algo.RING: g, Algo.TREE: g}, comm_channels=8, cpu_vendor="intel",
        max_tree_pattern=1, description=_a100_2x4.__doc__ or "")


def _h100_8x1_ib() -> Topology:
    """8 nodes with one H100 each and one 400 Gb/s InfiniBand NIC (e.g. a cloud 1-GPU instance).

    One GPU per node is the case where NCCL enables PAT for AllGather/ReduceScatter by default.
    The ring search runs only over the network: 4 channels x 12 GB/s = 48 GB/s per NIC; the
    intra path is local (LOC). Duplication to 8 communicator channels. No NVLS (single GPU).
    """
    g = graph(4, 12.0, 12.0, LOC, PIX)
    return Topology(
        name="h100-8x1-ib", n_nodes=8, n_ranks=8, comp_cap=90,
        graphs={Algo.RING: g, Algo.TREE: g, Algo.PAT: g}, comm_channels=8, cpu_vendor="intel",
        max_tree_pattern=1, description=_h100_8x1_ib.__doc__ or "")


TOPOLOGY_PRESETS: dict[str, Topology] = {
    t.name: t for t in (
        _h100_1x8_nvswitch(),
        _h100_ib(2, "h100-2x8-ib"),
        _a100_4x8_roce(),
        _l40s_1x8_pcie(),
        _a100_2x4(),
        _h100_ib(16, "h100-16x8-ib"),
        _h100_8x1_ib(),
    )
}


def preset(name: str) -> Topology:
    """The preset called `name`; the error lists the valid names."""
    try:
        return TOPOLOGY_PRESETS[name]
    except KeyError:
        from ..errors import ConfigError
        raise ConfigError(f"unknown topology preset {name!r}; choose one of: "
                          + ", ".join(sorted(TOPOLOGY_PRESETS))) from None
