"""`cclpilot sim` commands, run as a user runs them (a subprocess), and the artifacts they write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cclpilot.sim.artifacts import RUN_SCHEMA, read_run
from cclpilot.sim.clusters import CLUSTER_PRESETS
from cclpilot.sim.policies import parse_table
from cclpilot.sim.workloads import WORKLOAD_PRESETS

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCLPILOT_", "NCCL_"))}
    env["PYTHONPATH"] = str(REPO / "python")
    return subprocess.run([sys.executable, "-m", "cclpilot.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


def test_presets_lists_every_cluster_and_workload(tmp_path: Path) -> None:
    r = _cli("sim", "presets", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in list(CLUSTER_PRESETS) + list(WORKLOAD_PRESETS):
        assert sum(line.split()[0] == name for line in r.stdout.splitlines() if line.strip()) == 1


def test_bad_cluster_exits_2_with_the_valid_names(tmp_path: Path) -> None:
    r = _cli("sim", "run", "--cluster", "nope-9x9", cwd=tmp_path)
    assert r.returncode == 2
    assert "unknown cluster preset 'nope-9x9'" in r.stderr and "a100-2x4" in r.stderr
    assert not (tmp_path / "runs").exists()


def test_bad_policy_and_missing_table_exit_2(tmp_path: Path) -> None:
    r = _cli("sim", "run", "--policies", "default,magic", cwd=tmp_path)
    assert r.returncode == 2 and "unknown policy 'magic'" in r.stderr
    r = _cli("sim", "run", "--table", str(tmp_path / "missing.conf"), cwd=tmp_path)
    assert r.returncode == 2 and "missing.conf: no such file" in r.stderr


def test_run_json_and_artifacts(plugin_library: Path, tmp_path: Path) -> None:
    table = tmp_path / "mine.conf"
    table.write_text("allreduce,0,-1,tree,simple,-1,2,8\n")
    out = tmp_path / "run"
    r = _cli("sim", "run", "--workload", "mixed-gpt-350m", "--steps", "3", "--seed", "4",
             "--policies", "default,oracle", "--table", str(table), "--json", "--out", str(out),
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["cluster"] == "a100-2x4" and doc["steps"] == 3 and doc["seed"] == 4
    names = [p["policy"] for p in doc["policies"]]
    assert names == ["default", "oracle", "static"]
    oracle = next(p for p in doc["policies"] if p["policy"] == "oracle")
    assert oracle["regret_vs_oracle"] == 0.0
    static_keys = [k for k in doc["keys"] if k["policy"] == "static" and k["coll"] == "allreduce"]
    assert static_keys and all(k["arm"].startswith("TREE/SIMPLE") for k in static_keys)

    run = read_run(out)
    assert run["schema"] == RUN_SCHEMA and run["seed"] == 4
    assert run["versions"]["cclpilot"] and run["plugin"].endswith(".so")
    assert [p["name"] for p in run["policies"]] == names
    assert run["policies"][2]["env"]["CCLPILOT_TABLE"] == str(table.resolve())
    steps = [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 3 * 3 and {s["policy"] for s in steps} == set(names)
    assert all(s["comm_us"] > 0 for s in steps)
    dec = [json.loads(x) for x in (out / "decisions.jsonl").read_text().splitlines()]
    assert {d["policy"] for d in dec} == set(names)
    assert parse_table((out / "oracle.conf").read_text())
    assert not (out / "sweep.conf").exists()


def test_summary_table_and_refusal_to_overwrite(plugin_library: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = _cli("sim", "run", "--workload", "mixed-gpt-350m", "--steps", "2", "--out", str(out),
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for word in ("default", "sweep", "oracle", "speedup", "regret", "arm per key"):
        assert word in r.stdout
    assert (out / "sweep.conf").is_file()
    r = _cli("sim", "run", "--steps", "1", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 2 and "already holds a run" in r.stderr


def test_sweep_writes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "t.conf"
    r = _cli("sim", "sweep", "--cluster", "h100-2x8-ib", "--workload", "fsdp-llama-2-7b",
             "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rules = parse_table(out.read_text())
    assert {x.n_ranks for x in rules} == {16} and {x.coll.name for x in rules} == {
        "ALLGATHER", "REDUCESCATTER"}
    assert "sweep GPU time" in out.read_text()
