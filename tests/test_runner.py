"""Multi-rank runner and policies: consistency detection, reproducibility, policy ordering,
generated tables going through the plugin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cclpilot.errors import ConfigError, SimulationError
from cclpilot.sim.clusters import cluster
from cclpilot.sim.policies import (Key, Rule, oracle_policy, parse_table, range_rules,
                                   run_policies, sweep_policy, Arm)
from cclpilot.sim.runner import (JobSpec, TruthSpec, comm_instances, decode_choice,
                                 encode_choice, run_job)
from cclpilot.sim.topology import Algo, Coll, Proto
from cclpilot.sim.workloads import (CommunicatorSpec, OpSpec, Workload, resolve,
                                    workload_preset)

CL = "a100-2x4"


def _small_workload() -> Workload:
    return Workload(name="small", communicators=[CommunicatorSpec(name="world")], step=[
        OpSpec(comm="world", coll="allreduce", bytes=64 * 1024 * 1024, gap_us=100.0),
        OpSpec(comm="world", coll="allreduce", bytes=4096),
        OpSpec(comm="world", coll="allgather", bytes=8 * 1024 * 1024),
    ])


def _spec(plugin: Path, env: dict[str, str], steps: int = 3, seed: int = 1, rpp: int = 8,
          process_env: dict[int, dict[str, str]] | None = None) -> JobSpec:
    c = cluster(CL)
    wl = resolve(_small_workload(), c.topology.n_ranks, c.topology.n_nodes)
    return JobSpec(TruthSpec(CL), c.topology, wl, steps, seed, env, str(plugin),
                   ranks_per_process=rpp, process_env=process_env or {})


def test_choice_codes_round_trip() -> None:
    code = encode_choice(Algo.NVLS_TREE, Proto.SIMPLE, 64, 4 * 1024 * 1024)
    assert decode_choice(code) == (Algo.NVLS_TREE, Proto.SIMPLE, 64, 4 * 1024 * 1024)


def test_instances_tile_megatron_groups() -> None:
    c = cluster("h100-2x8-ib").topology
    wl = workload_preset("megatron-gpt-13b").resolved(c.n_ranks, c.n_nodes)
    tp = next(i for i, x in enumerate(wl.comms) if x.name == "tp")
    dp = next(i for i, x in enumerate(wl.comms) if x.name == "dp")
    tp_inst = comm_instances(tp, wl.comms[tp], c.n_ranks, c.n_nodes)
    dp_inst = comm_instances(dp, wl.comms[dp], c.n_ranks, c.n_nodes)
    assert [i.ranks for i in tp_inst] == [tuple(range(8)), tuple(range(8, 16))]
    assert len(dp_inst) == 8 and dp_inst[3].ranks == (3, 11)
    ids = [i.comm_id for i in tp_inst + dp_inst]
    assert len(set(ids)) == len(ids)


def test_inconsistent_tables_are_caught_as_a_hang(plugin_library: Path, tmp_path: Path) -> None:
    ring = tmp_path / "ring.conf"
    tree = tmp_path / "tree.conf"
    ring.write_text("allreduce,0,-1,ring,simple,-1,2,8\n")
    tree.write_text("allreduce,0,-1,tree,simple,-1,2,8\n")
    # Ranks 0-3 in process 0 read one table, ranks 4-7 in process 1 the other.
    spec = _spec(plugin_library, {"CCLPILOT_MODE": "static"}, rpp=4,
                 process_env={0: {"CCLPILOT_TABLE": str(ring)}, 1: {"CCLPILOT_TABLE": str(tree)}})
    with pytest.raises(SimulationError) as exc:
        run_job(spec)
    msg = str(exc.value)
    assert "ranks disagree at step 0, collective #0" in msg
    assert "'world'" in msg and "RING/SIMPLE" in msg and "TREE/SIMPLE" in msg
    assert "rank(s) 0" in msg and "rank(s) 4" in msg


def test_consistent_split_processes_pass(plugin_library: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree.conf"
    tree.write_text("allreduce,0,-1,tree,simple,-1,2,8\n")
    spec = _spec(plugin_library, {"CCLPILOT_MODE": "static", "CCLPILOT_TABLE": str(tree)}, rpp=3)
    res = run_job(spec)
    assert spec.n_processes == 3
    assert res.decisions == 3 * 3 * 8
    a, p, _, _ = decode_choice(res.op_choice[0][0])
    assert (a, p) == (Algo.TREE, Proto.SIMPLE)


def test_same_seed_reproduces_and_other_seed_differs(plugin_library: Path) -> None:
    env = {"CCLPILOT_MODE": "observe"}
    a = run_job(_spec(plugin_library, env, steps=4, seed=7, rpp=4))
    b = run_job(_spec(plugin_library, env, steps=4, seed=7, rpp=8))
    c = run_job(_spec(plugin_library, env, steps=4, seed=8, rpp=8))
    np.testing.assert_array_equal(a.op_time_us, b.op_time_us)
    np.testing.assert_array_equal(a.op_wait_us, b.op_wait_us)
    assert not np.array_equal(a.op_time_us, c.op_time_us)
    assert (a.op_time_us > 0).all() and (a.op_wait_us >= 0).all()


def test_bad_job_is_a_config_error(plugin_library: Path) -> None:
    with pytest.raises(ConfigError, match="steps=0"):
        run_job(_spec(plugin_library, {}, steps=0))


def test_range_rules_split_at_log_midpoints_and_merge() -> None:
    ring = Arm(Algo.RING, Proto.SIMPLE, -1, 8)
    tree = Arm(Algo.TREE, Proto.SIMPLE, 4, 4)
    rules = range_rules([(1024, tree), (4096, tree), (1 << 20, ring), (1 << 24, ring)],
                        Coll.ALLREDUCE, 2, 8)
    assert [(r.lo, r.hi, r.algo) for r in rules] == [(0, 65536, Algo.TREE), (65537, -1, Algo.RING)]
    assert rules[0].channels == 4 and rules[1].channels == -1


def test_policies_order_and_tables_through_plugin(plugin_library: Path, tmp_path: Path) -> None:
    c = cluster(CL)
    wl = resolve(_small_workload(), c.topology.n_ranks, c.topology.n_nodes)
    truth = TruthSpec(CL)
    cmp = run_policies(truth, c.topology, wl, 6, 3, ["default", "sweep", "oracle"], tmp_path,
                       str(plugin_library))
    rows = {r["policy"]: r for r in cmp.summary()}
    d, s, o = (float(rows[n]["mean_us"]) for n in ("default", "sweep", "oracle"))  # type: ignore[arg-type]
    assert o <= s * 1.02 and s <= d * 1.02
    assert o < d * 0.9, "a100-2x4 has headroom at 64 MiB all-reduce"
    assert rows["oracle"]["regret_vs_oracle"] == 0.0
    assert float(rows["sweep"]["gpu_time_us"]) > 0  # type: ignore[arg-type]
    # The plugin applied exactly the oracle's arms (so its table loaded in static mode).
    orc = cmp.tables["oracle"]
    uses = {u.key: u for u in cmp.outcome("oracle").key_uses()}  # type: ignore[union-attr]
    for key, arm in orc.choice.items():
        assert uses[key].arm == f"{arm.algo.name}/{arm.proto.name} {arm.channels} ch"
        assert uses[key].count == uses[key].total
    # Generated files round-trip.
    for name in ("sweep", "oracle"):
        text = (tmp_path / f"{name}.conf").read_text()
        assert parse_table(text) == cmp.tables[name].rules


def test_sweep_table_loads_in_static_mode(plugin_library: Path, tmp_path: Path) -> None:
    c = cluster(CL)
    wl = resolve(_small_workload(), c.topology.n_ranks, c.topology.n_nodes)
    sw = sweep_policy(TruthSpec(CL), c.topology, wl, seed=5)
    path = tmp_path / "sweep.conf"
    path.write_text(sw.text(["test"]))
    res = run_job(JobSpec(TruthSpec(CL), c.topology, wl, 1, 5,
                          {"CCLPILOT_MODE": "static", "CCLPILOT_TABLE": str(path)},
                          str(plugin_library)))
    keys = [Key("world", op.coll, op.n_bytes, 8, 2) for op in wl.ops]
    for j, key in enumerate(keys):
        a, p, ch, _ = decode_choice(res.op_choice[j][0])
        want = sw.choice[key]
        assert (a, p, ch) == (want.algo, want.proto, want.channels), key
    assert oracle_policy(TruthSpec(CL), c.topology, wl).rules
    assert isinstance(sw.rules[0], Rule)


def test_lockstep_processes_give_the_same_run(plugin_library: Path) -> None:
    """Live mode keeps processes at the same step; that must not change what the job computes."""
    env = {"CCLPILOT_MODE": "observe"}
    free = run_job(_spec(plugin_library, env, steps=4, rpp=4))
    spec = _spec(plugin_library, env, steps=4, rpp=4)
    locked = run_job(JobSpec(**{**spec.__dict__, "lockstep": True}))
    assert np.array_equal(free.step_comm_us, locked.step_comm_us)
