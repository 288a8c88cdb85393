"""The artifacts directory every `cclpilot sim run` writes (format: docs/run-artifacts.md).

run.json        schema "cclpilot.run/1": seed, versions, plugin, settings, cluster, workload,
                steps, policies with their summary metrics
steps.jsonl     one line per policy per step: communication time, skew wait
decisions.jsonl one line per policy per key: the arm used, how often, mean time
sweep.conf / oracle.conf   the generated tables (written by policies.run_policies)
"""

from __future__ import annotations

import json
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import ConfigError
from .policies import Comparison

RUN_SCHEMA = "cclpilot.run/1"
STEP_SCHEMA = "cclpilot.steps/1"
DECISION_SCHEMA = "cclpilot.decisions/1"


def default_run_dir(cluster: str, workload: str, root: Path = Path("runs")) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{stamp}-{cluster}-{workload}")
    path = root / safe
    n = 1
    while path.exists():
        n += 1
        path = root / f"{safe}-{n}"
    return path


def prepare_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: exists and is not a directory; choose another path")
    if path.is_dir() and (path / "run.json").exists():
        raise ConfigError(f"--out {path}: already holds a run (run.json); choose a new directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {path}: cannot create it: {e.strerror}") from None
    return path


def write_artifacts(out: Path, cmp: Comparison, context: dict[str, Any]) -> None:
    """Write run.json, steps.jsonl and decisions.jsonl for a finished comparison."""
    policies = []
    summary = {str(r["policy"]): r for r in cmp.summary()}
    for o in cmp.outcomes:
        policies.append({
            "name": o.name,
            "env": o.env,
            "table": o.table,
            "warmup_steps": o.warmup_steps,
            "wall_s": o.job.wall_s,
            "decisions": o.job.decisions,
            "processes": o.job.spec.n_processes,
            "sweep_gpu_time_us": o.gpu_time_us,
            "violations": o.job.violations,
            "summary": summary[o.name],
        })
    run = {
        "schema": RUN_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": cmp.seed,
        "versions": {"cclpilot": __version__, "python": platform.python_version(),
                     "numpy": np.__version__, "platform": sys.platform},
        "cluster": cmp.cluster,
        "workload": cmp.workload,
        "steps": cmp.steps,
        **context,
        "policies": policies,
        "tables": {name: f"{name}.conf" for name in cmp.tables},
    }
    (out / "run.json").write_text(json.dumps(run, indent=2, sort_keys=False) + "\n")
    with (out / "steps.jsonl").open("w") as f:
        for o in cmp.outcomes:
            comm = o.job.step_comm_us
            wait = o.job.step_wait_us
            for step in range(len(comm)):
                f.write(json.dumps({"schema": STEP_SCHEMA, "policy": o.name, "step": step,
                                    "comm_us": round(float(comm[step]), 3),
                                    "wait_us": round(float(wait[step]), 3),
                                    "warmup": step < o.warmup_steps}) + "\n")
    with (out / "decisions.jsonl").open("w") as f:
        for o in cmp.outcomes:
            for u in o.key_uses():
                default = cmp.nccl_default.get(u.key)
                f.write(json.dumps({
                    "schema": DECISION_SCHEMA, "policy": o.name, "comm": u.key.comm,
                    "coll": u.key.coll.name.lower(), "n_bytes": u.key.n_bytes,
                    "n_ranks": u.key.n_ranks, "n_nodes": u.key.n_nodes, "arm": u.arm,
                    "count": u.count, "total": u.total, "mean_us": round(u.mean_us, 3),
                    "nccl_default_arm": default[0].label() if default else None,
                }) + "\n")


def read_run(path: Path) -> dict[str, Any]:
    """Load a run directory's run.json, checking the schema (for tools reading artifacts)."""
    try:
        data: dict[str, Any] = json.loads((path / "run.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a cclpilot run directory ({e})") from None
    if data.get("schema") != RUN_SCHEMA:
        raise ConfigError(f"{path}/run.json: schema {data.get('schema')!r}, expected {RUN_SCHEMA}")
    return data
