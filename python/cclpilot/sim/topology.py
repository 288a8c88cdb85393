"""What NCCL's topology search hands its cost model (reference §5.1), per communicator.

These are the inputs of NCCL's *default* cost model. The simulator's ground truth about how fast
the hardware really is lives elsewhere (cclpilot.sim.truth) and is deliberately not derived from
these numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Algo(IntEnum):
    TREE = 0
    RING = 1
    COLLNET_DIRECT = 2
    COLLNET_CHAIN = 3
    NVLS = 4
    NVLS_TREE = 5
    PAT = 6


class Proto(IntEnum):
    LL = 0
    LL128 = 1
    SIMPLE = 2


class Coll(IntEnum):
    BROADCAST = 0
    REDUCE = 1
    ALLGATHER = 2
    REDUCESCATTER = 3
    ALLREDUCE = 4


class PathType(IntEnum):
    LOC = 0
    NVL = 1
    NVB = 2
    C2C = 3
    PIX = 4
    PXB = 5
    P2C = 6
    PXN = 7
    PHB = 8
    SYS = 9
    NET = 10
    DIS = 11


NUM_ALGOS = 7
NUM_PROTOS = 3


@dataclass(frozen=True)
class GraphInfo:
    """One algorithm's topology-search result (min/max-reduced across ranks, as NCCL does)."""

    n_channels: int
    bw_intra: float  # GB/s per channel
    bw_inter: float  # GB/s per channel
    type_intra: PathType
    type_inter: PathType
    latency_inter: float = 0.0  # µs, the net device's latency property
    same_channels: bool = True


@dataclass(frozen=True)
class Topology:
    """A communicator as NCCL's cost model sees it."""

    name: str
    n_nodes: int
    n_ranks: int
    comp_cap: int  # e.g. 80 (A100), 89 (L40S), 90 (H100)
    graphs: dict[Algo, GraphInfo]  # algorithms the search produced a graph for
    comm_channels: int  # comm->nChannels (what the scheduler clamps to)
    nvls_channels: int = 0
    nvls_support: bool = False
    collnet_support: bool = False
    cpu_vendor: str = "intel"  # "intel" | "amd" (llMaxBws row for multi-node; net overhead)
    max_tree_pattern: int = 3  # NCCL_TOPO_PATTERN_TREE
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ppn(self) -> int:
        return self.n_ranks // self.n_nodes
