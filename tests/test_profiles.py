"""Measured profiles: both formats, interpolation, hostile files, and PerformanceModel conformance."""

from __future__ import annotations

from pathlib import Path

import pytest

from cclpilot.errors import ConfigError
from cclpilot.sim.clusters import cluster
from cclpilot.sim.profiles import ProfileModel, load_profile, read_nccl_tests, read_tuner_csv
from cclpilot.sim.topology import Algo, Coll, Proto
from cclpilot.sim.truth import (
    QUIET,
    ArmUnavailableError,
    NoiseSettings,
    PerformanceModel,
)

AR = Coll.ALLREDUCE
HEADER = ("collective,size_bytes,algorithm,protocol,channels,nodes,ranks,pipeOps,regBuff,"
          "cost_metric,bandwidth_gbps,latency_us")

NCCL_TESTS = """\
# nThread 1 nGpus 1 minBytes 1024 maxBytes 16777216 step: 4(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0
#
# Using devices
#  Rank  0 Group  0 Pid  11 on    node-a device  0 [0x18] NVIDIA A100-SXM4-80GB
#  Rank  1 Group  0 Pid  12 on    node-a device  1 [0x2a] NVIDIA A100-SXM4-80GB
#  Rank  2 Group  0 Pid  13 on    node-b device  0 [0x18] NVIDIA A100-SXM4-80GB
#  Rank  3 Group  0 Pid  14 on    node-b device  1 [0x2a] NVIDIA A100-SXM4-80GB
# cclpilot: coll=all_reduce algo=tree proto=simple
#
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
           0             0     float     sum      -1     0.10    0.00    0.00      0     0.10    0.00    0.00      0
        1024           256     float     sum      -1    40.10    0.03    0.04      0    39.80    0.03    0.04      0
        4096          1024     float     sum      -1    41.50    0.10    0.15      0    41.20    0.10    0.15      0
       65536         16384     float     sum      -1    60.00    1.09    1.64      0    59.70    1.10    1.65      0
     1048576        262144     float     sum      -1   250.00    4.19    6.29      0   249.00    4.21    6.32      0
    16777216       4194304     float     sum      -1  2500.00    6.71   10.07      0  2490.00    6.74   10.10      0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 3.62
"""


def _csv(tmp_path: Path, body: str, header: bool = True, name: str = "perf.csv") -> Path:
    p = tmp_path / name
    p.write_text((HEADER + "\n" if header else "") + body)
    return p


GOOD_ROWS = """\
allreduce,1024,ring,ll,-1,2,16,1,0,0,,20.0
allreduce,65536,ring,ll,-1,2,16,1,0,0,,30.0
allreduce,1048576,ring,ll,-1,2,16,1,0,0,,80.0
allreduce,1024,ring,simple,16,2,16,1,0,0,,40.0
allreduce,1048576,ring,simple,16,2,16,1,0,0,,60.0
allreduce,1048576,ring,simple,32,2,16,1,0,0,20.0,
allreduce,1024,tree,ll128,-1,2,16,-1,-1,0,,25.0
allreduce,1048576,tree,ll128,-1,2,16,-1,1,0,,55.0
"""


def test_csv_with_and_without_header(tmp_path: Path) -> None:
    for header in (True, False):
        m = ProfileModel(read_tuner_csv(_csv(tmp_path, GOOD_ROWS, header)))
        assert m.available(AR, Algo.RING, Proto.LL, 16, 2)
        assert not m.available(AR, Algo.NVLS, Proto.SIMPLE, 16, 2)
        assert not m.available(AR, Algo.RING, Proto.LL, 8, 1)
        assert m.expected_time(AR, 65536, Algo.RING, Proto.LL, 8, None, 16, 2) == pytest.approx(30.0)


def test_log_log_interpolation_and_extrapolation(tmp_path: Path) -> None:
    m = ProfileModel(read_tuner_csv(_csv(tmp_path, GOOD_ROWS)))
    t = lambda s: m.expected_time(AR, s, Algo.RING, Proto.LL, 4, None, 16, 2)  # noqa: E731
    # Halfway in log size between 1 KiB (20 µs) and 64 KiB (30 µs): the geometric mean.
    assert t(8192) == pytest.approx((20.0 * 30.0) ** 0.5)
    assert t(16) == pytest.approx(20.0)  # below the range: the smallest measured time
    assert t(4 << 20) == pytest.approx(320.0)  # above: constant bandwidth


def test_bandwidth_column_and_channel_matching(tmp_path: Path) -> None:
    m = ProfileModel(read_tuner_csv(_csv(tmp_path, GOOD_ROWS)))
    # 32 channels measured only through bandwidth: 1 MiB at 20 GB/s.
    assert m.expected_time(AR, 1048576, Algo.RING, Proto.SIMPLE, 32, None, 16, 2) == pytest.approx(
        1048576 / 20000.0)
    # 20 channels were not measured: the nearest measured count (16) answers.
    assert m.expected_time(AR, 1048576, Algo.RING, Proto.SIMPLE, 20, None, 16, 2) == pytest.approx(60.0)
    assert m.measured_channels(AR, Algo.RING, Proto.SIMPLE, 16, 2) == [16, 32]


def test_nccl_tests_output(tmp_path: Path) -> None:
    p = tmp_path / "all_reduce_tree_simple.txt"
    p.write_text(NCCL_TESTS)
    m = ProfileModel(read_nccl_tests(p))
    assert m.available(AR, Algo.TREE, Proto.SIMPLE, 4, 2)
    assert m.expected_time(AR, 1048576, Algo.TREE, Proto.SIMPLE, 8, None, 4, 2) == pytest.approx(250.0)
    # Explicit arguments override the hint.
    m2 = ProfileModel(read_nccl_tests(p, algo="ring", channels=4))
    assert m2.available(AR, Algo.RING, Proto.SIMPLE, 4, 2)
    assert not m2.available(AR, Algo.TREE, Proto.SIMPLE, 4, 2)


def test_nccl_tests_without_root_column(tmp_path: Path) -> None:
    rows = ["# cclpilot: coll=allgather algo=ring proto=ll ranks=8 nodes=1",
            "        8192          2048     float    none    30.0    0.27    0.24  N/A    29.0    0.28    0.25  N/A",
            "       65536         16384     float    none    33.0    1.99    1.74  N/A    32.0    2.05    1.79  N/A"]
    p = tmp_path / "ag.txt"
    p.write_text("\n".join(rows) + "\n")
    m = ProfileModel(read_nccl_tests(p))
    assert m.expected_time(Coll.ALLGATHER, 65536, Algo.RING, Proto.LL, 2, None, 8, 1) == pytest.approx(33.0)


def test_small_noise_dips_are_smoothed_to_monotone(tmp_path: Path) -> None:
    body = ("allreduce,1024,ring,ll,-1,1,8,1,0,0,,20.0\n"
            "allreduce,2048,ring,ll,-1,1,8,1,0,0,,18.5\n"
            "allreduce,4096,ring,ll,-1,1,8,1,0,0,,22.0\n")
    m = ProfileModel(read_tuner_csv(_csv(tmp_path, body)))
    times = [m.expected_time(AR, s, Algo.RING, Proto.LL, 1, None, 8, 1) for s in (1024, 1536, 2048, 3000, 4096)]
    assert times == sorted(times)


def test_repeated_measurements_are_averaged(tmp_path: Path) -> None:
    body = ("allreduce,1024,ring,ll,-1,1,8,1,0,0,,20.0\n"
            "allreduce,1024,ring,ll,-1,1,8,1,1,0,,22.0\n")
    m = ProfileModel(read_tuner_csv(_csv(tmp_path, body)))
    assert m.expected_time(AR, 1024, Algo.RING, Proto.LL, 1, None, 8, 1) == pytest.approx(21.0)


# -- hostile files: every rejection names the file and the line -----------------------------------

HOSTILE_CSV = [
    ("allreduce,1024,ring,ll,-1,1,8,1,0,0,20.0\n", 2, "11 fields"),
    ("allreduce,1024,ring,ll,-1,1,8,1,0,0,,20.0,7\n", 2, "13 fields"),
    ("allreduce,1024,ring,ll,-1,1,8,1,0,0,,20.0\nallrduce,1024,ring,ll,-1,1,8,1,0,0,,20.0\n", 3,
     "unknown collective 'allrduce'"),
    ("allreduce,1024,rung,ll,-1,1,8,1,0,0,,20.0\n", 2, "unknown algorithm"),
    ("allreduce,1024,ring,ll64,-1,1,8,1,0,0,,20.0\n", 2, "unknown protocol"),
    ("allreduce,1k,ring,ll,-1,1,8,1,0,0,,20.0\n", 2, "size_bytes '1k' is not an integer"),
    ("allreduce,1024,ring,ll,-1,1,8,1,0,0,,-3\n", 2, "latency_us '-3'"),
    ("allreduce,1024,ring,ll,-1,1,8,1,0,0,,0\n", 2, "not a positive number"),
    ("allreduce,1024,ring,ll,-1,1,8,1,0,0,,nan\n", 2, "latency_us 'nan'"),
    ("allreduce,1024,ring,ll,-1,1,8,1,0,0,,\n", 2, "needs latency_us"),
    ("allreduce,1024,ring,ll,-1,1,8,4,0,0,,20.0\n", 2, "pipeOps 4"),
    ("allreduce,1024,ring,ll,-1,3,8,1,0,0,,20.0\n", 2, "8 ranks on 3 nodes"),
    ("allreduce,1024,ring,ll,-1,-1,8,1,0,0,,20.0\n", 2, "nodes is -1"),
    ("allreduce,1024,ring,ll,-1,1,8,1,0,0,,20.0\n\n# a comment\nallreduce,1024,ring,ll,-1,1,8,1,0,0,,90.0\n",
     5, "measured 90 µs, but"),
    ("allreduce,1024,ring,ll,-1,1,8,1,0,0,,20.0\nallreduce,1048576,ring,ll,-1,1,8,1,0,0,,8.0\n", 3,
     "less than half"),
]


@pytest.mark.parametrize("body,line,what", HOSTILE_CSV)
def test_hostile_csv_rows_are_rejected_with_their_line(tmp_path: Path, body: str, line: int,
                                                       what: str) -> None:
    p = _csv(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        ProfileModel(read_tuner_csv(p))
    assert f"{p}:{line}:" in str(e.value)
    assert what in str(e.value)


def test_wrong_header_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("collective,size,algorithm\n")
    with pytest.raises(ConfigError, match=rf"{p}:1: header must be"):
        read_tuner_csv(p)


def _nccl_tests_with(tmp_path: Path, replace: str, by: str) -> Path:
    assert replace in NCCL_TESTS
    p = tmp_path / "hostile.txt"
    p.write_text(NCCL_TESTS.replace(replace, by))
    return p


LINE_OF_64K = NCCL_TESTS.splitlines().index(
    next(x for x in NCCL_TESTS.splitlines() if x.strip().startswith("65536"))) + 1

HOSTILE_NCCL_TESTS = [
    ("60.00    1.09    1.64      0", "60.00    1.09    1.64", "12 columns, expected 13"),
    ("60.00    1.09    1.64      0", "60.00    1.09    1.64   0   7", "14 columns, expected 13"),
    ("60.00    1.09    1.64      0", "-60.00    1.09    1.64      0", "out-of-place time '-60.00'"),
    ("60.00    1.09    1.64      0", "abc    1.09    1.64      0", "'abc' is not a number"),
    ("60.00    1.09    1.64      0", "60.00    1.09    1.64      3", "3 wrong results"),
    ("    65536         16384", "    65536.5         16384", "size '65536.5'"),
]


@pytest.mark.parametrize("old,new,what", HOSTILE_NCCL_TESTS)
def test_hostile_nccl_tests_rows_are_rejected_with_their_line(tmp_path: Path, old: str, new: str,
                                                              what: str) -> None:
    p = _nccl_tests_with(tmp_path, old, new)
    with pytest.raises(ConfigError) as e:
        ProfileModel(read_nccl_tests(p))
    assert f"{p}:{LINE_OF_64K}:" in str(e.value)
    assert what in str(e.value)


def test_nccl_tests_bad_hint_and_missing_arm(tmp_path: Path) -> None:
    p = _nccl_tests_with(tmp_path, "algo=tree proto=simple", "algo=tree protocol=simple")
    hint_line = NCCL_TESTS.splitlines().index(
        "# cclpilot: coll=all_reduce algo=tree proto=simple") + 1
    with pytest.raises(ConfigError, match=rf"{p}:{hint_line}: hint item 'protocol=simple'"):
        read_nccl_tests(p)
    p2 = _nccl_tests_with(tmp_path, "# cclpilot: coll=all_reduce algo=tree proto=simple\n", "")
    with pytest.raises(ConfigError, match="add a line '# cclpilot:"):
        read_nccl_tests(p2)
    p3 = _nccl_tests_with(tmp_path, "algo=tree", "algo=treee")
    with pytest.raises(ConfigError, match=rf"{p3}:1: unknown algorithm 'treee'"):
        read_nccl_tests(p3)


def test_load_profile_mixes_formats(tmp_path: Path) -> None:
    csv = _csv(tmp_path, GOOD_ROWS.replace(",2,16,", ",2,4,"))
    txt = tmp_path / "t.txt"
    txt.write_text(NCCL_TESTS)
    m = load_profile([csv, txt])
    assert m.available(AR, Algo.TREE, Proto.SIMPLE, 4, 2)
    assert m.available(AR, Algo.RING, Proto.LL, 4, 2)
    with pytest.raises(ConfigError, match="no profile files"):
        load_profile([])


# -- conformance: both implementations honour the PerformanceModel contract ------------------------


def _profile_model(tmp_path: Path, noise: NoiseSettings, seed: int) -> tuple[PerformanceModel, tuple[int, int]]:
    txt = tmp_path / "c.txt"
    txt.write_text(NCCL_TESTS)
    return load_profile([txt], noise=noise, seed=seed), (4, 2)


def _truth_model(tmp_path: Path, noise: NoiseSettings, seed: int) -> tuple[PerformanceModel, tuple[int, int]]:
    return cluster("a100-2x4").truth(seed=seed, noise=noise), (8, 2)


@pytest.fixture(params=[_profile_model, _truth_model], ids=["profile", "truth"])
def factory(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return request.param


def test_conformance_monotone_positive(tmp_path: Path, factory) -> None:  # type: ignore[no-untyped-def]
    m, (n, nn) = factory(tmp_path, QUIET, 0)
    assert m.available(AR, Algo.TREE, Proto.SIMPLE, n, nn)
    times = [m.expected_time(AR, 1 << e, Algo.TREE, Proto.SIMPLE, 4, None, n, nn) for e in range(4, 31)]
    assert all(t > 0 for t in times) and times == sorted(times)


def test_conformance_unavailable_raises(tmp_path: Path, factory) -> None:  # type: ignore[no-untyped-def]
    m, (n, nn) = factory(tmp_path, QUIET, 0)
    assert not m.available(AR, Algo.NVLS, Proto.SIMPLE, n, nn)
    with pytest.raises(ArmUnavailableError):
        m.expected_time(AR, 1024, Algo.NVLS, Proto.SIMPLE, 4, None, n, nn)
    with pytest.raises(ArmUnavailableError):
        m.sample_time(AR, 1024, Algo.NVLS, Proto.SIMPLE, 4, None, n, nn)


def test_conformance_seeded_noise_and_setup(tmp_path: Path, factory) -> None:  # type: ignore[no-untyped-def]
    noise = NoiseSettings(jitter_sigma=0.03, outlier_rate=0.0)

    def run(seed: int) -> list[float]:
        m, (n, nn) = factory(tmp_path, noise, seed)
        return [m.sample_time(AR, 1 << 20, Algo.TREE, Proto.SIMPLE, 4, None, n, nn) for _ in range(50)]

    a, b, c = run(1), run(1), run(2)
    assert a == b and a != c
    m, (n, nn) = factory(tmp_path, QUIET, 0)
    exp = m.expected_time(AR, 1 << 20, Algo.TREE, Proto.SIMPLE, 4, None, n, nn)
    assert a[0] > exp + 1000.0  # first use pays connection setup, once
    assert max(a[1:]) < 1.2 * exp
