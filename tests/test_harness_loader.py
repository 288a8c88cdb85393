"""The simulator's NCCL stand-in: loader rules, ABI versions, and driving the real plugin."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from cclpilot import paths
from cclpilot.errors import PluginLoadError, SimulationError
from cclpilot.sim.harness import (
    PROFILE_KERNEL_CH,
    UNSET,
    Decision,
    Launch,
    PluginContractError,
    SimNccl,
    candidate_names,
)
from cclpilot.sim.nccl_model import IGNORE
from cclpilot.sim.presets import preset
from cclpilot.sim.topology import Algo, Coll, Proto

TOPO = preset("h100-2x8-ib")
REPO = Path(__file__).resolve().parent.parent


def test_candidate_names() -> None:
    assert candidate_names("libnccl-tuner", UNSET) == ["libnccl-tuner.so"]
    assert candidate_names("libnccl-tuner", "none") is None
    assert candidate_names("libnccl-profiler", "NoNe") is None
    assert candidate_names("libnccl-tuner", "foo") == ["foo", "libnccl-tuner-foo.so"]
    assert candidate_names("libnccl-profiler", "foo") == ["foo", "libnccl-profiler-foo.so"]
    assert candidate_names("libnccl-tuner", "/opt/x/foo.so") == ["/opt/x/foo.so"]
    assert candidate_names("libnccl-tuner", "sub/foo") == ["sub/foo"]
    assert candidate_names("libnccl-tuner", "libfoo.so") == ["libfoo.so"]


def test_prefixed_name_through_search_path(plugin_library: Path, tmp_env: Path) -> None:
    (tmp_env / "libnccl-tuner-foo.so").symlink_to(plugin_library)
    shutil.copy(plugin_library, tmp_env / "libnccl-profiler-bar.so")
    with SimNccl(TOPO, tuner_plugin="foo", profiler_plugin="bar", search_path=[tmp_env]) as h:
        assert h.tuner_lib is not None and h.tuner_lib.path.endswith("libnccl-tuner-foo.so")
        assert h.profiler_lib is not None and h.profiler_lib.path.endswith("libnccl-profiler-bar.so")
        # "foo" alone was tried first (in the search path, then as is), as NCCL does.
        assert h.tuner_lib.tried[0] == str(tmp_env / "foo")
        assert (h.tuner_version, h.profiler_version) == (6, 6)


def test_unset_variable_means_default_name(plugin_library: Path, tmp_env: Path) -> None:
    with pytest.raises(PluginLoadError, match="libnccl-tuner.so"):
        SimNccl(TOPO, tuner_plugin=UNSET, profiler_plugin="none")
    (tmp_env / "libnccl-tuner.so").symlink_to(plugin_library)
    with SimNccl(TOPO, tuner_plugin=UNSET, profiler_plugin="none", search_path=[tmp_env]) as h:
        assert h.tuner_lib is not None and h.tuner_version == 6 and h.profiler_lib is None


def test_none_disables_both(tmp_env: Path) -> None:
    with SimNccl(TOPO, tuner_plugin="NONE", profiler_plugin="none") as h:
        assert h.tuner_lib is None and h.profiler_lib is None
        comm = h.create_comm(7, 0)
        d = comm.run_collective(Coll.ALLREDUCE, 1 << 20)
        assert not d.tuner_called and not d.profiled_coll
        assert (d.algo, d.proto) == (d.default_algo, d.default_proto)
        assert d.table_after == d.table_before


def test_missing_library_message(tmp_env: Path) -> None:
    with pytest.raises(PluginLoadError) as e:
        SimNccl(TOPO, tuner_plugin=str(tmp_env / "nope.so"), profiler_plugin="none")
    msg = str(e.value)
    assert "NCCL_TUNER_PLUGIN" in msg and "nope.so: no such file" in msg
    assert "libnccl-tuner-" not in msg  # a path gets no prefixed retry
    with pytest.raises(PluginLoadError) as e2:
        SimNccl(TOPO, tuner_plugin="libabsent.so", profiler_plugin="none", search_path=[tmp_env])
    assert "libnccl-tuner-libabsent" not in str(e2.value)  # lib*.so gets no prefixed retry
    assert "libabsent.so" in str(e2.value)


def test_library_without_symbols(plugin_library: Path, tmp_env: Path) -> None:
    with pytest.raises(PluginLoadError, match="exports no tuner symbol"):
        SimNccl(TOPO, tuner_plugin=str(paths.simhost_library()), profiler_plugin="none")
    with pytest.raises(PluginLoadError, match="not one NCCL 2.30 loads"):
        SimNccl(TOPO, plugin_library, tuner_version=7)


def test_default_search_picks_newest(plugin_library: Path, tmp_env: Path) -> None:
    with SimNccl(TOPO, plugin_library) as h:
        assert (h.tuner_version, h.profiler_version) == (6, 6)
        assert h.tuner_name and h.profiler_name


def _check_decision(d: Decision) -> None:
    assert d.table_before[d.default_algo * 3 + d.default_proto] >= 0
    assert d.table_after[d.algo * 3 + d.proto] >= 0
    for before, after in zip(d.table_before, d.table_after):
        assert (before == IGNORE) == (after == IGNORE)
    assert 1 <= d.channels <= TOPO.comm_channels
    assert d.chunk_size > 0 and d.chunk_calls


@pytest.mark.parametrize("tv", [2, 3, 4, 5, 6])
def test_every_tuner_version(plugin_library: Path, tmp_env: Path, tv: int) -> None:
    with SimNccl(TOPO, plugin_library, tuner_version=tv, profiler_plugin="none") as h:
        assert h.tuner_version == tv
        comm = h.create_comm(0xABCDEF, 3)
        for coll in (Coll.ALLREDUCE, Coll.ALLGATHER, Coll.REDUCESCATTER, Coll.BROADCAST, Coll.REDUCE):
            for n in (16 * 8 * 8, 1 << 20, 64 << 20):
                d = comm.run_collective(coll, n, reg_buff=1)
                assert d.tuner_called and d.coll == coll
                _check_decision(d)
        assert comm.seq_numbers == [3, 3, 3, 3, 3]
        comm.destroy()
        assert h.violations == []


@pytest.mark.parametrize("pv", [1, 2, 3, 4, 5, 6])
def test_every_profiler_version(plugin_library: Path, tmp_env: Path, pv: int) -> None:
    seen: list[Launch] = []

    def durations(launch: Launch) -> list[float]:
        seen.append(launch)
        return [10.0 + ch for ch in range(launch.n_channels)]

    with SimNccl(TOPO, plugin_library, profiler_version=pv) as h:
        assert h.profiler_version == pv
        comm = h.create_comm(0x55, 1, comm_name="dp")
        d = comm.run_collective(Coll.ALLREDUCE, 1 << 20, duration_fn=durations)
        mask = h.activation_mask
        kernel = bool(mask & PROFILE_KERNEL_CH) and pv >= 3
        if kernel:
            assert d.profiled_coll and d.profiled_kernel_channels == d.channels
            assert d.duration_us == pytest.approx(10.0 + d.channels - 1)
            assert len(seen) == 1 and seen[0].n_channels == d.channels
        else:
            assert d.profiled_kernel_channels == 0
        d2 = comm.run_collective(Coll.ALLREDUCE, 1 << 20, duration_fn=durations)
        assert d2.seq_number == d.seq_number + 1 and d2.kernel_start_ns > d.kernel_start_ns
        comm.destroy()
        assert h.violations == []


def test_concurrent_comms_and_threads(plugin_library: Path, tmp_env: Path) -> None:
    with SimNccl(TOPO, plugin_library) as h:
        comms = [h.create_comm(0x1000 + i // 2, i % 2) for i in range(6)]
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                for k in range(40):
                    comms[i].run_collective(Coll.ALLREDUCE, (k + 1) * 4096)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(comms))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert all(c.seq_numbers[Coll.ALLREDUCE] == 40 for c in comms)
        with pytest.raises(SimulationError, match="already exists"):
            h.create_comm(0x1000, 0)
    assert h.comms == {}


def test_env_algo_reaches_the_plugin_as_ignore(plugin_library: Path, tmp_env: Path) -> None:
    with SimNccl(TOPO, plugin_library, env_algo="Ring", env_proto="Simple") as h:
        d = h.create_comm(1, 0).run_collective(Coll.ALLREDUCE, 1 << 20)
        assert [i for i, v in enumerate(d.table_before) if v != IGNORE] == [Algo.RING * 3 + Proto.SIMPLE]
        assert (d.algo, d.proto) == (Algo.RING, Proto.SIMPLE)


def test_simhost_logger_formats(plugin_library: Path, tmp_env: Path) -> None:
    with SimNccl(TOPO, tuner_plugin="none", profiler_plugin="none") as h:
        lib = h._simhost
        ffi = h.ffi
        lib.cclpilot_simhost_log(3, 0x40, b"f.c", 12, b"%s=%d %.1f", ffi.new("char[]", b"x"),
                                 ffi.cast("int", 42), ffi.cast("double", 2.5))
        lib.cclpilot_simhost_log(2, 0x1, b"f.c", 12, b"%s", ffi.new("char[]", b"y" * 5000))
        lines = [ln for ln in h.logs]
        assert lines[0].message == "x=42 2.5" and (lines[0].level, lines[0].flags) == (3, 0x40)
        assert len(lines[1].message) == 1023 and lines[1].message.endswith("...")


BAD_PLUGIN = r"""
#include <stddef.h>
#include <stdlib.h>
#include "nccl/tuner_v6.h"
static int mode(void) { const char* m = getenv("BAD_MODE"); return m ? atoi(m) : 0; }
static ncclResult_t init(void** ctx, uint64_t id, size_t nr, size_t nn, ncclDebugLogger_t log,
                         ncclNvlDomainInfo_v6_t* dom, ncclTunerConstants_v6_t* c) {
  *ctx = NULL;
  if (mode() == 5) c->baseLatencies[1][0] = 0.0;
  return mode() == 1 ? ncclInternalError : ncclSuccess;
}
static ncclResult_t info(void* ctx, ncclFunc_t f, size_t n, int p, float** t, int na, int np, int r, int* ch) {
  float (*tab)[3] = (float (*)[3])t;
  if (mode() == 2) return ncclInvalidArgument;
  if (mode() == 3) tab[6][0] = 0.0f;
  if (mode() == 4) *ch = 99;
  return ncclSuccess;
}
static ncclResult_t fin(void* ctx) { return ncclSuccess; }
static ncclResult_t chunk(void* ctx, ncclFunc_t f, size_t n, int a, int p, int nch, size_t* cs) {
  if (mode() == 6) *cs = 100;
  if (mode() == 7) *cs = (size_t)1 << 30;
  return ncclSuccess;
}
__attribute__((visibility("default"))) const ncclTuner_v6_t ncclTunerPlugin_v6 = {"bad", init, info, fin, chunk};
"""


@pytest.fixture(scope="module")
def bad_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    (d / "bad.c").write_text(BAD_PLUGIN)
    out = d / "libnccl-tuner-bad.so"
    subprocess.run(["cc", "-std=c11", "-shared", "-fPIC", "-I", str(REPO / "plugin" / "include"),
                    "-o", str(out), str(d / "bad.c")], check=True)
    return out


@pytest.mark.parametrize("mode,needle", [
    (1, "would fail the communicator"),
    (2, "fails the collective"),
    (3, "re-enabled IGNORE entries PAT/LL"),
    (4, r"\*nChannels=99"),
    (6, "below one grain"),
])
def test_contract_violations_raise(bad_plugin: Path, tmp_env: Path, monkeypatch: pytest.MonkeyPatch,
                                   mode: int, needle: str) -> None:
    monkeypatch.setenv("BAD_MODE", str(mode))
    with SimNccl(TOPO, tuner_plugin="bad", profiler_plugin="none", search_path=[bad_plugin.parent]) as h:
        with pytest.raises(PluginContractError, match=needle):
            h.create_comm(1, 0).run_collective(Coll.ALLREDUCE, 1 << 20)
        assert h.violations and needle.replace("\\", "").split()[0] in h.violations[0]


def test_constants_edits_feed_the_model_and_chunk_clamp(bad_plugin: Path, tmp_env: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAD_MODE", "5")
    with SimNccl(TOPO, tuner_plugin="bad", profiler_plugin="none", search_path=[bad_plugin.parent]) as h:
        d = h.create_comm(1, 0).run_collective(Coll.ALLREDUCE, 1 << 20)
        i = Algo.RING * 3 + Proto.LL
        base = h.default_model.cost_table(Coll.ALLREDUCE, 1 << 20)
        assert d.table_before[i] == pytest.approx(base[i] - 6.6, abs=1e-3)
    monkeypatch.setenv("BAD_MODE", "7")
    with SimNccl(TOPO, tuner_plugin="bad", profiler_plugin="none", search_path=[bad_plugin.parent]) as h:
        d = h.create_comm(1, 0).run_collective(Coll.ALLREDUCE, 64 << 20, duration_fn=lambda _: 5.0)
        call = d.chunk_calls[0]
        assert call.plugin_value == 1 << 30 and call.final < call.plugin_value
        assert len(d.chunk_calls) == min(d.channels, 3)
        assert all(c.n_bytes > 0 for c in d.chunk_calls)


def test_non_strict_records_and_continues(bad_plugin: Path, tmp_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAD_MODE", "3")
    with SimNccl(TOPO, tuner_plugin="bad", profiler_plugin="none", search_path=[bad_plugin.parent],
                 strict=False) as h:
        d = h.create_comm(1, 0).run_collective(Coll.ALLGATHER, 1 << 20)
        assert (d.algo, d.proto) == (Algo.PAT, Proto.LL)  # NCCL runs what the plugin revived
        assert len(h.violations) == 1


def test_bad_inputs(plugin_library: Path, tmp_env: Path) -> None:
    with SimNccl(TOPO, plugin_library) as h:
        comm = h.create_comm(1, 0)
        with pytest.raises(SimulationError, match="positive multiple of 64"):
            comm.run_collective(Coll.ALLGATHER, 1000)
        with pytest.raises(SimulationError, match="numPipeOps"):
            comm.run_collective(Coll.ALLREDUCE, 1024, num_pipe_ops=0)
        with pytest.raises(SimulationError, match="rank 99"):
            h.create_comm(2, 99)
        comm.destroy()
        with pytest.raises(SimulationError, match="destroyed"):
            comm.run_collective(Coll.ALLREDUCE, 1024)
