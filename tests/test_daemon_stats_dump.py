"""SIGUSR1 makes a running daemon write RUN_DIR/stats.json (its counters, without stopping)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from cclpilot.daemon.peer import run_daemon_process
from cclpilot.daemon.server import STATS_SCHEMA

from test_daemon_plans import register  # noqa: I001


def _wait_dump(path: Path, n: int, timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            doc = json.loads(path.read_text())
            if int(doc["dump"]) >= n:
                return doc  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError(f"no stats dump {n} in {path} within {timeout} s")


def test_sigusr1_dumps_the_counters_and_the_daemon_keeps_serving(tmp_path: Path) -> None:
    ipc = Path(f"/tmp/cclpilot-dump-{os.getpid()}")
    dp = run_daemon_process(tmp_path / "run", ["--ipc-dir", str(ipc), "--brain", "null"])
    try:
        register(dp.endpoint, 2)
        os.kill(dp.proc.pid, signal.SIGUSR1)
        first = _wait_dump(tmp_path / "run" / "stats.json", 1)
        assert first["schema"] == STATS_SCHEMA
        stats = first["stats"]
        assert isinstance(stats, dict) and stats["by_type"]["HELLO"] == 2
        assert first["commits_total"] == 0 and first["commit_latencies_s"] == []
        assert isinstance(first["cpu_s"], float) and isinstance(first["monotonic"], float)
        register(dp.endpoint, 1, comm=0xABC)   # still serving after the dump
        os.kill(dp.proc.pid, signal.SIGUSR1)
        second = _wait_dump(tmp_path / "run" / "stats.json", 2)
        assert second["stats"]["by_type"]["HELLO"] == 3  # type: ignore[index]
        assert float(second["monotonic"]) >= float(first["monotonic"])  # type: ignore[arg-type]
        assert dp.proc.poll() is None
    finally:
        dp.stop()
        for f in ipc.iterdir() if ipc.exists() else ():
            f.unlink()
        if ipc.exists():
            ipc.rmdir()


def test_daemon_options_are_checked_and_reach_the_config() -> None:
    import argparse

    import pytest

    from cclpilot.daemon import cli as daemon_cli
    from cclpilot.errors import ConfigError

    parser = argparse.ArgumentParser()
    daemon_cli.register(parser.add_subparsers())
    cfg = daemon_cli.config_from_args(parser.parse_args(
        ["daemon", "--summary-ms", "250", "--brain", "null"]))
    assert cfg.summary_ms == 250 and cfg.packed_stats
    assert not daemon_cli.config_from_args(parser.parse_args(
        ["daemon", "--no-packed-stats", "--brain", "null"])).packed_stats
    for bad in ("0", "600001"):
        with pytest.raises(ConfigError, match="--summary-ms"):
            daemon_cli.config_from_args(parser.parse_args(["daemon", "--summary-ms", bad]))
