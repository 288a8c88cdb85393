"""Shared pytest fixtures: the built plugin library and a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python"))

from cclpilot import paths  # noqa: E402
from cclpilot.errors import PluginLoadError  # noqa: E402


def _build(targets: tuple[str, ...] = ("nccl-tuner-cclpilot", "cclpilot-simhost")) -> None:
    build = REPO / "build"
    for cmd in (["cmake", "-S", str(REPO), "-B", str(build)],
                ["cmake", "--build", str(build), "-j2", "--target", *targets]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            # Fail loudly: tests that need the real plugin must not silently skip.
            pytest.fail(f"building the plugin failed: {' '.join(cmd)}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")


@pytest.fixture(scope="session")
def plugin_library() -> Path:
    """Absolute path of the built libnccl-tuner-cclpilot.so (built into <repo>/build if missing);
    the simhost helper is guaranteed to exist alongside."""
    try:
        paths.plugin_library()
        paths.simhost_library()
    except PluginLoadError:
        _build()
    return paths.plugin_library()


@pytest.fixture(scope="session")
def ingest_library() -> Path:
    """Absolute path of the built libcclpilot-ingest.so (the daemon's native MEASUREMENTS path),
    built into <repo>/build if missing."""
    try:
        paths.ingest_library()
    except PluginLoadError:
        _build(("cclpilot-ingest",))
    return paths.ingest_library()


@pytest.fixture
def tmp_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory and HOME under tmp_path, with every NCCL_* and CCLPILOT_* variable
    removed, so no setting leaks in from the developer's shell or from another test."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("NCCL_", "CCLPILOT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    # Tests may set variables directly (the plugin reads them with getenv); none may leak into the
    # next test, or into the worker processes a later test spawns.
    os.environ.clear()
    os.environ.update(saved)
