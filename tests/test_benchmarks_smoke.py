"""The daemon benchmarks still run and print their numbers (tiny loads; no timing is judged)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, _build


def test_bench_daemon_compares_map_and_packed_reports(ingest_library: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_daemon.py"), "--ranks", "32", "--keys",
         "12", "--seconds", "1", "--warmup", "1", "--plan-interval", "0.2", "--no-pin",
         "--encoding", "compare"],
        capture_output=True, text=True, timeout=180)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert re.search(r"report encoding, bytes\s+map \d+", out), out
    assert re.search(r"report encoding, bytes\s+packed \d+", out), out
    assert "packed vs map reports, same rank count" in out
    assert "commit latency split" in out
    assert len(re.findall(r"rejected \(window / whole run\)\s+0 / 0", out)) == 2, out


def test_bench_ingest_times_both_forms(ingest_library: Path) -> None:
    exe = REPO / "build" / "bench_ingest"
    if not exe.exists():
        _build(("bench_ingest",))
    if not exe.exists():
        pytest.skip("bench_ingest not built (CCLPILOT_BUILD_BENCH=OFF)")
    done = subprocess.run([str(exe), str(ingest_library)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bytes as maps" in done.stdout and "packed" in done.stdout
    row = done.stdout.strip().splitlines()[-1].split()
    assert row[0] == str(ingest_library) and row.count("us") == 3, done.stdout
