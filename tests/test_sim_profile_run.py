"""`cclpilot sim run --profile`: a user's measured profile replaces the preset's ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cclpilot import cli

SIZES = [1 << k for k in range(10, 31, 2)]
# Synthetic but internally consistent measurements of every Ring/Tree arm on 2 nodes x 4 ranks:
# latency + size / bandwidth, Tree with the higher bandwidth (the published a100-2x4 situation).
ARMS = {("ring", 20.0, 18.0), ("tree", 25.0, 30.0)}
PROTOS = {"ll": 0.5, "ll128": 0.9, "simple": 1.0}


def _latency_us(algo: str, proto: str, size: int) -> float:
    base, bw = {a: (b, w) for a, b, w in ARMS}[algo]
    return base + (6.0 if proto == "simple" else 0.0) + size / (bw * PROTOS[proto] * 1000.0)


def _profile(path: Path) -> Path:
    rows = ["collective,size_bytes,algorithm,protocol,channels,nodes,ranks,pipeOps,regBuff,"
            "cost_metric,bandwidth_gbps,latency_us"]
    for algo, _, _ in sorted(ARMS):
        for proto in PROTOS:
            for size in SIZES:
                rows.append(f"allreduce,{size},{algo},{proto},-1,2,8,1,0,0,,"
                            f"{_latency_us(algo, proto, size):.3f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _interpolated(algo: str, proto: str, size: int) -> float:
    # Piecewise linear in log-log between the measured sizes, as the profile model documents.
    import math
    lo = max(s for s in SIZES if s <= size)
    hi = min(s for s in SIZES if s >= size)
    if lo == hi:
        return _latency_us(algo, proto, size)
    t = (math.log(size) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return math.exp((1 - t) * math.log(_latency_us(algo, proto, lo))
                    + t * math.log(_latency_us(algo, proto, hi)))


def test_profile_is_the_ground_truth(tmp_env: Path, plugin_library: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    profile = _profile(tmp_env / "perf.csv")
    out = tmp_env / "run"
    code = cli.main(["sim", "run", "--cluster", "a100-2x4", "--steps", "3", "--profile",
                     str(profile), "--out", str(out), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    run = json.loads((out / "run.json").read_text())
    assert run["profile"] == str(profile.resolve())
    keys = [k for k in result["keys"] if k["coll"] == "allreduce"]
    assert keys
    for key in keys:
        algo, proto = key["arm"].split()[0].lower().split("/")
        expected = _interpolated(algo, proto, key["n_bytes"])
        # Arrival skew and the profile's small noise only add a little on top of the measurement.
        assert expected * 0.97 <= key["mean_us"] <= expected * 1.10, (key, expected)
    oracle = [k for k in keys if k["policy"] == "oracle"]
    assert oracle and all(k["arm"].startswith("TREE/") for k in oracle)
    by_policy = {p["policy"]: p for p in result["policies"]}
    assert by_policy["oracle"]["speedup_vs_default"] > 1.3


def test_profile_missing_or_malformed(tmp_env: Path, plugin_library: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sim", "run", "--steps", "2", "--profile", str(tmp_env / "none.csv")]) == 2
    assert "none.csv: no such file" in capsys.readouterr().err
    bad = tmp_env / "bad.csv"
    bad.write_text("allreduce,1024,ring,warp,-1,2,8,1,0,0,,20.0\n")
    assert cli.main(["sim", "run", "--steps", "2", "--profile", str(bad),
                     "--out", str(tmp_env / "r")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:1" in err
