"""NCCL's default cost model as the simulator computes it (reference §3.4-3.6, §5)."""

from __future__ import annotations

import pytest

from cclpilot.errors import ConfigError, SimulationError
from cclpilot.sim.nccl_model import (
    DEFAULT_CONSTANTS,
    IGNORE,
    ModelOptions,
    NcclModel,
    TunerConstants,
    finalize_chunk,
    graph,
    log2i,
    parse_enable_list,
    select,
    select_or_raise,
)
from cclpilot.sim.presets import TOPOLOGY_PRESETS, preset
from cclpilot.sim.topology import Algo, Coll, PathType, Proto, Topology

NVL = PathType.NVL


def worked_example(**kw: object) -> Topology:
    """Reference §5.8: 1 node, 8 Hopper ranks, ring/tree graph 16 channels x 20 GB/s, balanced tree."""
    g = graph(16, 20.0, 20.0, NVL, NVL)
    return Topology(name="worked", n_nodes=1, n_ranks=8, comp_cap=90, graphs={Algo.RING: g, Algo.TREE: g},
                    comm_channels=16, max_tree_pattern=1, **kw)  # type: ignore[arg-type]


def entry(table: list[float], a: Algo, p: Proto) -> float:
    return table[a * 3 + p]


def test_worked_example_5_8() -> None:
    m = NcclModel(worked_example())
    t = m.cost_table(Coll.ALLREDUCE, 1 << 20)
    assert entry(t, Algo.RING, Proto.LL) == pytest.approx(28.0, abs=0.05)
    assert entry(t, Algo.RING, Proto.LL128) == pytest.approx(46.8, abs=0.05)
    assert entry(t, Algo.RING, Proto.SIMPLE) == pytest.approx(61.7, abs=0.05)
    assert entry(t, Algo.TREE, Proto.LL) == pytest.approx(69.3, abs=0.05)
    # The intermediate numbers of the example.
    assert m.bandwidths[Coll.ALLREDUCE][Algo.RING][Proto.LL] == pytest.approx(141 * 8 / 14)
    assert m.latencies[Coll.ALLREDUCE][Algo.RING][Proto.SIMPLE] == pytest.approx(56.0)
    assert select(t) == (Algo.RING, Proto.LL)


def test_tree_pattern_3_costs_15_percent() -> None:
    balanced = NcclModel(worked_example()).bandwidths[Coll.ALLREDUCE][Algo.TREE][Proto.SIMPLE]
    g = graph(16, 20.0, 20.0, NVL, NVL)
    plain = NcclModel(Topology("p", 1, 8, 90, {Algo.RING: g, Algo.TREE: g}, 16, max_tree_pattern=3))
    assert plain.bandwidths[Coll.ALLREDUCE][Algo.TREE][Proto.SIMPLE] == pytest.approx(balanced * 0.85)


def test_argmin_ties_go_to_first_algo_major() -> None:
    table = [IGNORE] * 21
    table[Algo.RING * 3 + Proto.SIMPLE] = 5.0
    table[Algo.TREE * 3 + Proto.SIMPLE] = 5.0
    table[Algo.TREE * 3 + Proto.LL128] = 5.0
    assert select(table) == (Algo.TREE, Proto.LL128)
    table[Algo.PAT * 3 + Proto.LL] = 4.999
    assert select(table) == (Algo.PAT, Proto.LL)


def test_ignore_and_negative_entries_are_skipped() -> None:
    table = [IGNORE] * 21
    assert select(table) is None
    with pytest.raises(SimulationError, match="ncclInternalError"):
        select_or_raise(table, Coll.ALLREDUCE, 1024, user_restricted=False)
    with pytest.raises(SimulationError, match="ncclInvalidUsage"):
        select_or_raise(table, Coll.ALLREDUCE, 1024, user_restricted=True)
    table[Algo.RING * 3 + Proto.LL] = -0.5  # negative but not IGNORE: still not >= 0
    assert select(table) is None
    table[Algo.NVLS * 3 + Proto.SIMPLE] = 0.0
    assert select(table) == (Algo.NVLS, Proto.SIMPLE)


def test_unmodelled_combinations_are_ignore() -> None:
    m = NcclModel(TOPOLOGY_PRESETS["h100-1x8-nvswitch"])
    bc = m.cost_table(Coll.BROADCAST, 1 << 20)
    assert [i for i, v in enumerate(bc) if v != IGNORE] == [Algo.RING * 3 + p for p in range(3)]
    ar = m.cost_table(Coll.ALLREDUCE, 1 << 20)
    assert entry(ar, Algo.NVLS, Proto.LL) == IGNORE and entry(ar, Algo.NVLS, Proto.SIMPLE) > 0
    assert entry(ar, Algo.PAT, Proto.SIMPLE) == IGNORE
    ag = m.cost_table(Coll.ALLGATHER, 1 << 20)
    assert entry(ag, Algo.TREE, Proto.SIMPLE) == IGNORE


# --- NCCL_ALGO / NCCL_PROTO -----------------------------------------------------------------------

def test_enable_list_grammar() -> None:
    rows = parse_enable_list("ring,TREE", "algo")
    assert all(r == (1, 1, 0, 0, 0, 0, 0) for r in rows)
    neg = parse_enable_list("^nvls,nvlstree", "algo")
    assert all(r == (1, 1, 1, 1, 0, 0, 1) for r in neg)
    per = parse_enable_list("Tree;allgather:ring,pat;AllReduce:^ring", "algo")
    assert per[Coll.BROADCAST] == (1, 0, 0, 0, 0, 0, 0)
    assert per[Coll.ALLGATHER] == (0, 1, 0, 0, 0, 0, 1)
    assert per[Coll.ALLREDUCE] == (1, 0, 1, 1, 1, 1, 1)
    assert parse_enable_list(None, "proto")[Coll.ALLREDUCE] == (1, 2, 1)  # LL128 "auto"
    assert parse_enable_list("^LL", "proto")[Coll.ALLREDUCE] == (0, 1, 1)  # LL128 forced on


@pytest.mark.parametrize("value,needle", [
    ("Ring,Bogus", 'unknown algo "Bogus"'),
    ("Frobnicate:Ring", 'unknown function "Frobnicate"'),
    ("AllReduce:Ring;Tree", "no function prefix"),
    ("AllReduce:Ring:Tree", 'more than one ":"'),
])
def test_enable_list_errors(value: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_enable_list(value, "algo")
    with pytest.raises(ConfigError, match="unknown proto"):
        parse_enable_list("LL,LL256", "proto")


def test_env_restrictions_become_ignore() -> None:
    t = TOPOLOGY_PRESETS["h100-2x8-ib"]
    m = NcclModel(t, env_algo="Ring", env_proto="^LL")
    table = m.cost_table(Coll.ALLREDUCE, 1 << 20)
    assert [i for i, v in enumerate(table) if v != IGNORE] == [Algo.RING * 3 + Proto.LL128,
                                                               Algo.RING * 3 + Proto.SIMPLE]
    nothing = NcclModel(t, env_algo="AllReduce:PAT")
    with pytest.raises(SimulationError, match="ncclInvalidUsage"):
        select_or_raise(nothing.cost_table(Coll.ALLREDUCE, 1 << 20), Coll.ALLREDUCE, 1 << 20,
                        nothing.user_restricted)
    # Other functions keep everything.
    assert select(nothing.cost_table(Coll.ALLGATHER, 1 << 20)) is not None


def test_explicit_ll128_bypasses_platform_checks() -> None:
    pcie = TOPOLOGY_PRESETS["l40s-1x8-pcie"]
    auto = NcclModel(pcie).cost_table(Coll.ALLREDUCE, 1 << 20)
    assert entry(auto, Algo.RING, Proto.LL128) == IGNORE
    forced = NcclModel(pcie, env_proto="LL128,Simple").cost_table(Coll.ALLREDUCE, 1 << 20)
    assert entry(forced, Algo.RING, Proto.LL128) > 0


# --- enablement per preset ------------------------------------------------------------------------

def enabled(name: str, coll: Coll, a: Algo, p: Proto, **kw: object) -> bool:
    m = NcclModel(preset(name), options=ModelOptions(**kw))  # type: ignore[arg-type]
    return entry(m.cost_table(coll, 1 << 22), a, p) != IGNORE


@pytest.mark.parametrize("name,ll128,nvls,nvls_tree,pat", [
    ("h100-1x8-nvswitch", True, True, False, False),
    ("h100-2x8-ib", True, False, True, False),
    ("h100-16x8-ib", True, False, True, False),
    ("a100-4x8-roce", True, False, False, False),
    ("a100-2x4", False, False, False, False),  # NICs behind the CPU (PHB): LL128 off
    ("l40s-1x8-pcie", False, False, False, False),  # no NVLink (SYS): LL128 off
    ("h100-8x1-ib", True, False, False, True),  # one GPU per node: PAT auto-enabled
])
def test_enablement_per_preset(name: str, ll128: bool, nvls: bool, nvls_tree: bool, pat: bool) -> None:
    assert enabled(name, Coll.ALLREDUCE, Algo.RING, Proto.LL128) == ll128
    assert enabled(name, Coll.ALLREDUCE, Algo.NVLS, Proto.SIMPLE) == nvls
    assert enabled(name, Coll.ALLREDUCE, Algo.NVLS_TREE, Proto.SIMPLE) == nvls_tree
    assert enabled(name, Coll.ALLGATHER, Algo.PAT, Proto.SIMPLE) == pat
    assert enabled(name, Coll.REDUCESCATTER, Algo.PAT, Proto.SIMPLE) == pat
    assert not enabled(name, Coll.ALLREDUCE, Algo.COLLNET_DIRECT, Proto.SIMPLE)


def test_pat_enable_setting() -> None:
    assert not enabled("h100-8x1-ib", Coll.ALLGATHER, Algo.PAT, Proto.SIMPLE, pat_enable=0)
    assert not enabled("h100-8x1-ib", Coll.ALLGATHER, Algo.PAT, Proto.SIMPLE, host_networking=False)


def test_presets_are_consistent() -> None:
    assert {"h100-1x8-nvswitch", "h100-2x8-ib", "a100-4x8-roce", "l40s-1x8-pcie", "a100-2x4",
            "h100-16x8-ib"} <= set(TOPOLOGY_PRESETS)
    for name, t in TOPOLOGY_PRESETS.items():
        assert t.name == name and t.description
        NcclModel(t)  # validates
    with pytest.raises(ConfigError, match="choose one of"):
        preset("dgx-9000")


def test_a100_2x4_default_is_ring_at_64mb() -> None:
    """The published case: NCCL's own model picks Ring for a 64 MB all-reduce there."""
    m = NcclModel(preset("a100-2x4"))
    assert select(m.cost_table(Coll.ALLREDUCE, 64 << 20)) == (Algo.RING, Proto.SIMPLE)


@pytest.mark.parametrize("name", sorted(TOPOLOGY_PRESETS))
@pytest.mark.parametrize("coll", list(Coll))
def test_time_monotone_in_size(name: str, coll: Coll) -> None:
    m = NcclModel(preset(name))
    sizes = [m.topology.n_ranks * 8 * (1 << k) for k in range(0, 26)]
    for a in Algo:
        for p in Proto:
            # Tree's correction factor is not monotone in size, exactly as in NCCL; skip it.
            if a == Algo.TREE:
                continue
            times = [m.algo_time(coll, a, p, s) for s in sizes]
            if times[0] == IGNORE:
                assert all(x == IGNORE for x in times)
                continue
            assert all(x2 > x1 for x1, x2 in zip(times, times[1:])), (a, p, times)


def test_num_pipe_ops_multiplies_latency() -> None:
    m = NcclModel(worked_example())
    one = m.algo_time(Coll.ALLREDUCE, Algo.RING, Proto.LL, 1 << 20, 1)
    two = m.algo_time(Coll.ALLREDUCE, Algo.RING, Proto.LL, 1 << 20, 2)
    assert two - one == pytest.approx(15.0)  # Ring: x numPipeOps
    t1 = m.algo_time(Coll.ALLREDUCE, Algo.TREE, Proto.LL, 1 << 20, 1)
    assert m.algo_time(Coll.ALLREDUCE, Algo.TREE, Proto.LL, 1 << 20, 8) == pytest.approx(t1)
    assert m.algo_time(Coll.ALLREDUCE, Algo.TREE, Proto.LL, 1 << 20, 9) - t1 == pytest.approx(15.2)


def test_ring_simple_multinode_latency_bump() -> None:
    t = preset("h100-2x8-ib")
    m = NcclModel(t)
    lat = m.latencies[Coll.ALLREDUCE][Algo.RING][Proto.SIMPLE]
    bw = m.bandwidths[Coll.ALLREDUCE][Algo.RING][Proto.SIMPLE]
    small = 64 * t.comm_channels * t.n_ranks - 16  # just below the threshold
    big = 64 * t.comm_channels * t.n_ranks
    assert m.algo_time(Coll.ALLREDUCE, Algo.RING, Proto.SIMPLE, small) == pytest.approx(lat + small / (1000 * bw))
    assert m.algo_time(Coll.ALLREDUCE, Algo.RING, Proto.SIMPLE, big) == pytest.approx(1.4 * lat + big / (1000 * bw))


# --- channels, cells, chunks ----------------------------------------------------------------------

def test_default_channels_and_threads() -> None:
    m = NcclModel(worked_example())
    # 1 MiB Ring LL: threshold 8 x nRanks = 64 B per thread; nc x 512 x 64 > 1 MiB until nc = 32 -> 16 keeps.
    big = m.default_channels(Coll.ALLREDUCE, Algo.RING, Proto.LL, 1 << 20)
    assert big.n_channels == 16 and big.n_threads == 512
    small = m.default_channels(Coll.ALLREDUCE, Algo.RING, Proto.SIMPLE, 4096)
    assert small.n_channels == 1  # 4096 < 2 x 512 x 64: steps down to one channel
    assert small.n_threads == 64 + 32  # halved to 64 (64 % 128 != 0 stops), + a warp for Simple
    assert m.default_channels(Coll.ALLREDUCE, Algo.TREE, Proto.LL, 4096).n_threads == 640
    pcie = NcclModel(preset("l40s-1x8-pcie"))
    assert pcie.max_threads[Algo.RING][Proto.SIMPLE] == 256  # bw x channels <= PCI_BW
    nvls = NcclModel(preset("h100-1x8-nvswitch")).default_channels(Coll.ALLREDUCE, Algo.NVLS, Proto.SIMPLE, 4096)
    assert nvls.n_channels == 16


def test_scheduler_cells() -> None:
    m = NcclModel(preset("h100-1x8-nvswitch"))
    # The reference's example: a 64 KiB AllReduce in Simple has 4 cells (16 KiB data = 32 KiB traffic).
    s = m.schedule(Coll.ALLREDUCE, Algo.RING, Proto.SIMPLE, 64 * 1024, 32)
    assert (s.cell_size, s.n_cells, s.n_channels) == (16 * 1024, 4, 4)
    # LL carries 4x the traffic per byte: cells of 4 KiB.
    ll = m.schedule(Coll.ALLREDUCE, Algo.RING, Proto.LL, 64 * 1024, 32)
    assert (ll.cell_size, ll.n_channels) == (4096, 16)
    # AllGather: trafficPerByte = nRanks on the per-rank data.
    ag = m.schedule(Coll.ALLGATHER, Algo.RING, Proto.SIMPLE, 8 * 64 * 1024, 32)
    assert ag.cell_size == 4096 and ag.n_cells == 16 and ag.n_channels == 16
    # Clamps: comm limit, NVLS limit, the request.
    assert m.schedule(Coll.ALLREDUCE, Algo.RING, Proto.SIMPLE, 1 << 30, 64).n_channels == 32
    assert m.schedule(Coll.ALLREDUCE, Algo.NVLS, Proto.SIMPLE, 1 << 30, 64).n_channels == 16
    assert m.schedule(Coll.ALLREDUCE, Algo.RING, Proto.SIMPLE, 1 << 30, 3).n_channels == 3
    with pytest.raises(SimulationError, match="divide by zero"):
        m.schedule(Coll.ALLREDUCE, Algo.RING, Proto.SIMPLE, 1 << 20, 0)


def test_schedule_parts_cover_the_bytes() -> None:
    m = NcclModel(preset("h100-1x8-nvswitch"))
    for n_bytes in (4096, 64 * 1024, 100_000 * 8, 1 << 20, (1 << 26) + 4096):
        for req in (1, 2, 3, 5, 32):
            s = m.schedule(Coll.ALLREDUCE, Algo.RING, Proto.SIMPLE, n_bytes, req)
            assert 1 <= s.n_channels <= min(req, 32, s.n_cells)
            assert sum(k * b for k, b in s.parts) == n_bytes
            assert len(s.parts) == min(s.n_channels, 3)


def test_chunk_sizes() -> None:
    m = NcclModel(worked_example())
    assert m.chunk_limits(Coll.ALLREDUCE, Algo.RING, Proto.SIMPLE).default == 2 << 20
    assert m.chunk_limits(Coll.ALLREDUCE, Algo.TREE, Proto.SIMPLE).default == 512 << 10
    assert m.chunk_limits(Coll.ALLREDUCE, Algo.RING, Proto.LL).default == 32 << 10
    ll128 = m.chunk_limits(Coll.ALLREDUCE, Algo.RING, Proto.LL128)
    assert (ll128.default, ll128.ceiling, ll128.grain) == (576_000, 614_400, 1920)
    assert m.chunk_limits(Coll.ALLREDUCE, Algo.NVLS, Proto.SIMPLE).default == 128 << 10
    simple = m.chunk_limits(Coll.ALLREDUCE, Algo.RING, Proto.SIMPLE)
    assert finalize_chunk(10 << 20, simple) == 2 << 20  # clamped to the ceiling
    assert finalize_chunk(1000, simple) == 512  # rounded down to the grain
    assert finalize_chunk(100, simple) == 0  # below one grain: NCCL would divide by zero


def test_constants_round_trip_and_feed_the_model() -> None:
    flat = DEFAULT_CONSTANTS.flat()
    assert len(flat) == 144 and TunerConstants.from_flat(flat) == DEFAULT_CONSTANTS
    assert flat[1 * 3 + 0] == 6.6  # baseLatencies[RING][LL]
    assert flat[21 + 21 * 2 + 1 * 3 + 2] == 14.0  # hwLatencies[NET][RING][SIMPLE]
    assert flat[21 + 63 + 2 * 3 + 0] == 141.0  # llMaxBws[Hopper][1 node]
    edited = list(flat)
    edited[1 * 3 + 0] = 0.0  # a plugin zeroing Ring LL's base latency
    m = NcclModel(worked_example(), constants=TunerConstants.from_flat(edited))
    assert entry(m.cost_table(Coll.ALLREDUCE, 1 << 20), Algo.RING, Proto.LL) == pytest.approx(28.0 - 6.6, abs=0.05)
    with pytest.raises(ConfigError, match="144"):
        TunerConstants.from_flat(flat[:-1])
    bad = list(flat)
    bad[5] = float("nan")
    with pytest.raises(SimulationError, match="non-finite"):
        TunerConstants.from_flat(bad)


def test_log2i() -> None:
    assert [log2i(x) for x in (0, 1, 2, 3, 4, 1 << 20)] == [-1, 0, 1, 1, 2, 20]


def test_bad_topology_is_rejected() -> None:
    g = graph(2, 6.0, 6.0, PathType.SYS, PathType.SYS)
    with pytest.raises(ConfigError, match="multiple"):
        NcclModel(Topology("bad", 3, 8, 80, {Algo.RING: g}, 2))
    with pytest.raises(ConfigError, match="comm_channels"):
        NcclModel(Topology("bad", 1, 8, 80, {Algo.RING: g}, 65))
