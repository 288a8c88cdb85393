"""Where the built libraries are: inside the installed package, or in a source checkout's build/."""

from __future__ import annotations

from pathlib import Path

from .errors import PluginLoadError

PLUGIN_LIBRARY_NAME = "libnccl-tuner-cclpilot.so"
SIMHOST_LIBRARY_NAME = "libcclpilot-simhost.so"
INGEST_LIBRARY_NAME = "libcclpilot-ingest.so"

_PACKAGE_DIR = Path(__file__).resolve().parent


def _candidates(name: str) -> list[Path]:
    found = [_PACKAGE_DIR / "lib" / name]
    # A source checkout: python/cclpilot -> repository root, where `cmake -B build` puts them.
    repo_root = _PACKAGE_DIR.parent.parent
    if (repo_root / "CMakeLists.txt").is_file():
        found.append(repo_root / "build" / name)
    return found


def _find(name: str) -> Path:
    for path in _candidates(name):
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in _candidates(name))
    raise PluginLoadError(
        f"{name} not found (looked in: {tried}). Install cclpilot with `pip install .` "
        "or build it with `cmake -S . -B build && cmake --build build`."
    )


def plugin_library() -> Path:
    """Absolute path of the plugin NCCL loads (tuner and profiler in one library)."""
    return _find(PLUGIN_LIBRARY_NAME)


def simhost_library() -> Path:
    """Absolute path of the simulator's host helper library."""
    return _find(SIMHOST_LIBRARY_NAME)


def ingest_library() -> Path:
    """Absolute path of the daemon's native MEASUREMENTS ingestion library."""
    return _find(INGEST_LIBRARY_NAME)


def settings_registry() -> Path:
    """The settings registry shared by the C and Python sides."""
    for path in (_PACKAGE_DIR / "lib" / "settings.def",
                 _PACKAGE_DIR.parent.parent / "plugin" / "include" / "cclpilot" / "settings.def"):
        if path.is_file():
            return path
    raise PluginLoadError("settings.def not found: the cclpilot installation is incomplete; reinstall it.")
