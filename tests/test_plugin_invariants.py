"""Safety invariants of the real plugin, driven by the simulator exactly as NCCL drives it.

The harness runs in strict mode: a re-enabled IGNORE entry, a channel hint outside 0..64, a chunk
below one grain or any non-success return raises inside run_collective, so every call below is
also a check of those invariants.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cclpilot.sim.harness import Decision, Launch, SimNccl
from cclpilot.sim.presets import TOPOLOGY_PRESETS, preset
from cclpilot.sim.topology import Algo, Coll, Proto

IGNORE = -1.0
SIZES = [1 << k for k in range(8, 31, 2)]
COLLS = [Coll.ALLREDUCE, Coll.ALLGATHER, Coll.REDUCESCATTER, Coll.BROADCAST, Coll.REDUCE]

# Every rule below asks for an arm NCCL may not offer on some preset (NVLS without NVSwitch,
# LL128 over PCIe, PAT where it is off, CollNet without CollNet): those calls must fall back.
MIXED_TABLE = """\
# small: latency-bound arms
allreduce,0,65535,tree,ll,4,-1,-1
allreduce,65536,1048575,ring,ll128,8,-1,-1
allreduce,1048576,67108863,nvls,simple,-1,-1,-1
allreduce,67108864,-1,collnet_direct,simple,16,-1,-1,-1,-1,1048576
allgather,0,1048575,pat,simple,2,-1,-1
allgather,1048576,-1,ring,simple,64,-1,-1,-1,-1,262144
reducescatter,0,-1,nvls,simple,-1,-1,-1
broadcast,0,-1,ring,ll128,3,-1,-1
reduce,0,-1,ring,simple,1,-1,-1,-1,-1,100
"""


@pytest.fixture
def table_env(tmp_env: Path, plugin_library: Path) -> Iterator[Path]:
    path = tmp_env / "table.conf"
    os.environ["CCLPILOT_MODE"] = "static"
    os.environ["CCLPILOT_TABLE"] = str(path)
    yield path


def _rule_for(coll: Coll, n_bytes: int) -> tuple[str, str, int, int] | None:
    """The (algo, proto, channels, chunk) MIXED_TABLE gives, parsed here independently."""
    for line in MIXED_TABLE.splitlines():
        if not line or line.startswith("#"):
            continue
        f = [x.strip() for x in line.split(",")]
        lo, hi = int(f[1]), int(f[2])
        hi = 2**64 if hi == -1 else hi
        if f[0] == coll.name.lower() and lo <= n_bytes <= hi:
            chunk = int(f[10]) if len(f) > 10 else 0
            return f[3], f[4], int(f[5]), chunk
    return None


def _check_decision(d: Decision, rule: tuple[str, str, int, int] | None, version: int) -> None:
    # Never an IGNORE'd entry written (strict harness raises too), nothing else touched.
    changed = [i for i, (b, a) in enumerate(zip(d.table_before, d.table_after)) if b != a]
    for i in changed:
        assert d.table_before[i] >= 0.0 and d.table_after[i] == 0.0
    assert len(changed) <= 1
    if rule is None:
        assert not changed and d.channels_hint == 0
        assert (d.algo, d.proto) == (d.default_algo, d.default_proto)
        return
    want_algo, want_proto = Algo[rule[0].upper()], Proto[rule[1].upper()]
    available = d.table_before[want_algo * 3 + want_proto] >= 0.0
    if not available:
        # The whole decision falls back: NCCL's arm, NCCL's channel count, NCCL's chunk.
        assert not changed and d.channels_hint == 0
        assert (d.algo, d.proto) == (d.default_algo, d.default_proto)
        assert d.chunk_size == d.default_chunk_size
        return
    assert (d.algo, d.proto) == (want_algo, want_proto)
    # Tuner v2 has no cost table to check availability against, so it never sends hints.
    expected_hint = rule[2] if 1 <= rule[2] <= 64 and version >= 3 else 0
    assert d.channels_hint == expected_hint
    assert 0 <= d.channels_hint <= 64


@pytest.mark.parametrize("tuner_version", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("preset_name", ["h100-1x8-nvswitch", "l40s-1x8-pcie", "a100-2x4"])
def test_static_table_every_abi(table_env: Path, tuner_version: int, preset_name: str) -> None:
    table_env.write_text(MIXED_TABLE)
    with SimNccl(preset(preset_name), tuner_version=tuner_version) as sim:
        comm = sim.create_comm(0xC0FFEE, 0)
        for coll in COLLS:
            for n_bytes in SIZES:
                for reg_buff in (0, 1):
                    d = comm.run_collective(coll, n_bytes, reg_buff=reg_buff)
                    _check_decision(d, _rule_for(coll, n_bytes), tuner_version)
        comm.destroy()
        assert not sim.violations


def test_chunk_size_applied_at_least_one_grain(table_env: Path) -> None:
    table_env.write_text(MIXED_TABLE)
    with SimNccl(preset("h100-1x8-nvswitch"), tuner_version=6) as sim:
        comm = sim.create_comm(1, 0)
        d = comm.run_collective(Coll.ALLGATHER, 8 << 20)
        assert (d.algo, d.proto) == (Algo.RING, Proto.SIMPLE)
        assert d.chunk_calls and all(c.plugin_value == 262144 for c in d.chunk_calls)
        d = comm.run_collective(Coll.REDUCE, 1 << 20)
        # 100 bytes asked: the plugin raises it to one Simple grain rather than let NCCL round to 0.
        assert d.chunk_calls and all(c.plugin_value == 512 for c in d.chunk_calls)
        comm.destroy()


def test_regbuff_never_changes_a_decision(table_env: Path) -> None:
    table_env.write_text(MIXED_TABLE + "allreduce,0,-1,ring,simple,-1,-1,-1,-1,1\n")
    rng = random.Random(7)
    with SimNccl(preset("h100-2x8-ib")) as sim:
        a, b = sim.create_comm(5, 0), sim.create_comm(5, 1)
        for _ in range(300):
            coll, n = rng.choice(COLLS), rng.choice(SIZES)
            da, db = a.run_collective(coll, n, reg_buff=0), b.run_collective(coll, n, reg_buff=1)
            assert (da.algo, da.proto, da.channels_hint, da.chunk_size) == \
                   (db.algo, db.proto, db.channels_hint, db.chunk_size)
        a.destroy()
        b.destroy()
        assert any("regBuff" in line.message for line in sim.logs)


@pytest.mark.parametrize("var,value", [("NCCL_ALGO", "Tree,Ring"), ("NCCL_PROTO", "^LL128")])
def test_forced_nccl_algo_or_proto_only_observes(table_env: Path, var: str, value: str) -> None:
    table_env.write_text("allreduce,0,-1,ring,ll,7,-1,-1\n")
    os.environ[var] = value
    kwargs = {"env_algo": value} if var == "NCCL_ALGO" else {"env_proto": value}
    with SimNccl(preset("h100-1x8-nvswitch"), **kwargs) as sim:  # type: ignore[arg-type]
        comm = sim.create_comm(9, 0)
        for n in SIZES:
            d = comm.run_collective(Coll.ALLREDUCE, n)
            assert d.table_after == d.table_before and d.channels_hint == 0
        comm.destroy()
        assert any("NCCL_ALGO or NCCL_PROTO is set" in line.message for line in sim.logs)


def _random_table(rng: random.Random, lines: int) -> str:
    algos = ["tree", "ring", "nvls", "nvls_tree", "collnet_direct", "collnet_chain", "pat"]
    protos = ["ll", "ll128", "simple"]
    out = []
    lo = 0
    for _ in range(lines):
        hi = lo + rng.randint(1, 1 << 24)
        coll = rng.choice(["allreduce", "allgather", "reducescatter"])
        algo = rng.choice(algos)
        proto = "simple" if algo not in ("tree", "ring") else rng.choice(protos)
        if coll != "allreduce" and algo not in ("ring", "pat", "nvls", "collnet_direct"):
            algo, proto = "ring", rng.choice(protos)
        if coll == "allreduce" and algo == "pat":
            algo = "tree"
        ch = rng.choice([-1, 1, 2, 32, 64])
        chunk = rng.choice([-1, 1, 1919, 4096, 1 << 20])
        out.append(f"{coll},{lo},{hi},{algo},{proto},{ch},-1,-1,-1,-1,{chunk}")
        lo = hi + 1
    return "\n".join(out) + "\n"


def test_random_tables_never_break_invariants(table_env: Path) -> None:
    rng = random.Random(2024)
    for name in sorted(TOPOLOGY_PRESETS):
        table_env.write_text(_random_table(rng, 40))
        with SimNccl(preset(name), tuner_version=6) as sim:
            comm = sim.create_comm(rng.getrandbits(64), 0)
            for _ in range(150):
                # Sizes are whole float32 elements on every rank (any count NCCL accepts).
                n_elems = rng.randint(1, 1 << 26)
                comm.run_collective(rng.choice(COLLS[:3]), n_elems * 4 * comm.topology.n_ranks,
                                    num_pipe_ops=rng.choice([1, 1, 2]), reg_buff=rng.randint(0, 1))
            comm.destroy()
            assert not sim.violations, (name, sim.violations)


@pytest.mark.parametrize("text,problem", [
    ("allreduce,0,100,ring,simple,-1,-1\n", "t.conf:1"),
    ("allreduce,0,100,ring,simple,-1,-1,-1\nallreduce,0,100,warp,simple,-1,-1,-1\n", "t.conf:2"),
    ("allreduce,100,0,ring,simple,-1,-1,-1\n", "t.conf:1"),
    ("allreduce,0,100,ring,simple,99,-1,-1\n", "t.conf:1"),
    ("allgather,0,100,tree,simple,-1,-1,-1\n", "t.conf:1"),
    ("allreduce,0,100,ring,simple,-1,-1,-1\nallreduce,50,200,tree,simple,-1,-1,-1\n", "t.conf:2"),
    ("allreduce,0,1\x00,ring,simple,-1,-1,-1\n", "t.conf:1"),
])
def test_malformed_table_leaves_everything_to_nccl(tmp_env: Path, plugin_library: Path,
                                                   text: str, problem: str) -> None:
    path = tmp_env / "t.conf"
    path.write_text(text)
    os.environ.update(CCLPILOT_MODE="static", CCLPILOT_TABLE=str(path))
    with SimNccl(preset("h100-2x8-ib")) as sim:
        comm = sim.create_comm(3, 0)  # init succeeds whatever the file says
        for n in SIZES:
            d = comm.run_collective(Coll.ALLREDUCE, n)
            assert d.table_after == d.table_before and d.channels_hint == 0
        comm.destroy()
        rejected = [line.message for line in sim.logs if "table rejected" in line.message]
        assert len(rejected) == 1 and problem in rejected[0], sim.logs


@pytest.mark.parametrize("env", [
    {"CCLPILOT_MODE": "bogus"},
    {"CCLPILOT_MODE": "static"},  # no table
    {"CCLPILOT_MODE": "static", "CCLPILOT_TABLE": "/nonexistent/t.conf"},
    {"CCLPILOT_MODE": "live"},
    {"CCLPILOT_TABLE_MAX_ENTRIES": "lots"},
    {"CCLPILOT_STATS_FILE": "/nonexistent-dir/stats.jsonl"},
])
def test_bad_settings_never_fail_init(tmp_env: Path, plugin_library: Path,
                                      env: dict[str, str]) -> None:
    os.environ.update(env)
    for version in (2, 5, 6):
        with SimNccl(preset("a100-2x4"), tuner_version=version) as sim:
            comm = sim.create_comm(11, 0)
            d = comm.run_collective(Coll.ALLREDUCE, 1 << 20)
            assert d.table_after == d.table_before
            comm.destroy()
            warnings = [line.message for line in sim.logs if line.level == 2]
            assert warnings, "every bad setting produces a warning"


def _thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def test_no_threads_left_and_no_logging_per_call(table_env: Path) -> None:
    table_env.write_text("allreduce,0,-1,nvls,simple,-1,-1,-1\nallgather,0,-1,ring,ll,2,-1,-1\n")
    before = _thread_count()
    with SimNccl(preset("l40s-1x8-pcie")) as sim:  # no NVLS here: every all-reduce falls back
        comm = sim.create_comm(12, 0)
        comm.run_collective(Coll.ALLGATHER, 4096)
        logged = len(sim.logs)
        for _ in range(2000):
            comm.run_collective(Coll.ALLGATHER, 4096)
        assert len(sim.logs) == logged, "a decided call must not log"
        for _ in range(2000):
            comm.run_collective(Coll.ALLREDUCE, 1 << 20)
        fallback_warnings = len(sim.logs) - logged
        assert 1 <= fallback_warnings <= 2, "unavailable-arm warnings are rate limited"
        comm.destroy()
    assert _thread_count() == before


def _stats_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("profiler_version", [4, 5, 6])
def test_observe_mode_statistics_file(tmp_env: Path, plugin_library: Path,
                                      profiler_version: int) -> None:
    stats = tmp_env / "stats.%p.jsonl"
    os.environ.update(CCLPILOT_MODE="observe", CCLPILOT_STATS_FILE=str(stats))
    durations = iter(range(10, 10_000))

    def duration(launch: Launch) -> list[float]:
        base = float(next(durations))
        return [base + ch for ch in range(launch.n_channels)]  # max over channels = base + n - 1

    with SimNccl(preset("a100-2x4"), profiler_version=profiler_version) as sim:
        comm = sim.create_comm(0xABCDEF, 0, comm_name='job "x"')
        runs = [comm.run_collective(Coll.ALLREDUCE, 64 << 20, duration_fn=duration) for _ in range(6)]
        comm.destroy()
    written = Path(str(stats).replace("%p", str(os.getpid())))
    lines = _stats_lines(written)
    arms = [r for r in lines if r.get("coll") == "allreduce"]
    assert len(arms) == 1
    arm = arms[0]
    first = runs[0]
    assert (arm["algo"], arm["proto"]) == (first.algo.name.lower(), first.proto.name.lower())
    assert arm["n_channels"] == first.channels and arm["n_bytes"] == 64 << 20
    # The first use of the algorithm includes connection setup: skipped.
    timed = [r.duration_us for r in runs[1:]]
    assert arm["count"] == len(timed)
    assert arm["mean_us"] == pytest.approx(sum(timed) / len(timed), rel=1e-6)
    assert arm["min_us"] == pytest.approx(min(timed)) and arm["max_us"] == pytest.approx(max(timed))
    summary = [r for r in lines if r.get("kind") == "comm_summary"]
    assert len(summary) == 1 and summary[0]["warmup_skipped"] == 1
    assert summary[0]["comm_name"] == 'job "x"'


@pytest.mark.parametrize("profiler_version", [1, 2, 3])
def test_old_profilers_count_without_timing(tmp_env: Path, plugin_library: Path,
                                            profiler_version: int) -> None:
    stats = tmp_env / "stats.jsonl"
    os.environ.update(CCLPILOT_STATS_FILE=str(stats))
    with SimNccl(preset("h100-1x8-nvswitch"), profiler_version=profiler_version) as sim:
        comm = sim.create_comm(77, 0)
        for _ in range(5):
            comm.run_collective(Coll.ALLREDUCE, 1 << 20)
        comm.destroy()
    arms = [r for r in _stats_lines(stats) if r.get("coll") == "allreduce"]
    assert len(arms) == 1 and arms[0]["count"] == 0 and arms[0]["untimed"] == 4


def test_off_mode_measures_and_decides_nothing(table_env: Path) -> None:
    table_env.write_text("allreduce,0,-1,ring,ll,7,-1,-1\n")
    stats = table_env.parent / "off.jsonl"
    os.environ.update(CCLPILOT_MODE="off", CCLPILOT_STATS_FILE=str(stats))
    with SimNccl(preset("h100-1x8-nvswitch")) as sim:
        comm = sim.create_comm(78, 0)
        d = comm.run_collective(Coll.ALLREDUCE, 1 << 20)
        assert d.table_after == d.table_before and not d.profiled_coll
        comm.destroy()
    assert not stats.exists()


def test_many_communicators_on_many_threads(table_env: Path) -> None:
    table_env.write_text(MIXED_TABLE)
    errors: list[BaseException] = []
    results: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    with SimNccl(preset("h100-2x8-ib")) as sim:
        comms = [sim.create_comm(100 + c, r) for c in range(4) for r in range(2)]

        def work(comm_index: int) -> None:
            comm = comms[comm_index]
            rng = random.Random(comm.comm_id)  # same sequence for both ranks of a communicator
            seq = []
            try:
                for _ in range(400):
                    d = comm.run_collective(rng.choice(COLLS), rng.choice(SIZES))
                    seq.append((int(d.algo), int(d.proto), d.channels_hint))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            results[(comm.comm_id, comm.rank)] = seq

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(comms))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for comm in comms:
            comm.destroy()
        assert not sim.violations
    assert not errors, errors
    for c in range(4):
        assert results[(100 + c, 0)] == results[(100 + c, 1)], "ranks of a communicator agree"
