"""The simulator's cffi declarations (cclpilot.sim.abi) must lay out NCCL's plugin ABI exactly as
the C headers in plugin/include/nccl do, or the simulator would drive the plugin with garbage.

The C side is plugin/tests/test_abi_layout.c: it checks every size, offset and constant against
hand-derived ABI numbers and prints each one. These tests run that program (a fresh one from a
build directory, or compiled here from the sources) and compare every printed number with what
cffi computes from the Python declarations.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import cffi  # type: ignore[import-untyped,unused-ignore]
import pytest

from cclpilot.errors import ConfigError
from cclpilot.sim import abi

REPO = Path(__file__).resolve().parents[1]
LAYOUT_SOURCE = REPO / "plugin" / "tests" / "test_abi_layout.c"
# Everything the layout program's output depends on: a binary older than any of these is stale.
LAYOUT_INPUTS = (
    [LAYOUT_SOURCE, REPO / "plugin" / "tests" / "testutil.h"]
    + sorted((REPO / "plugin" / "include" / "nccl").glob("*.h"))
    + [REPO / "plugin" / "src" / "cp_core.h", REPO / "plugin" / "src" / "cp_result.h"]
)


@dataclass
class LayoutReport:
    sizes: dict[str, int] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    consts: dict[str, int] = field(default_factory=dict)


def _fresh_binary() -> Path | None:
    newest_input = max(p.stat().st_mtime for p in LAYOUT_INPUTS)
    candidates = [p for p in REPO.glob("build*/test_abi_layout")
                  if p.is_file() and os.access(p, os.X_OK)]
    fresh = [p for p in candidates if p.stat().st_mtime >= newest_input]
    return max(fresh, key=lambda p: p.stat().st_mtime) if fresh else None


def _compile(out_dir: Path) -> Path:
    compiler = os.environ.get("CC") or next(
        (c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if compiler is None:
        pytest.skip("no C compiler (cc, gcc or clang) and no up-to-date build*/test_abi_layout: "
                    "install one or build the CMake target test_abi_layout")
    exe = out_dir / "test_abi_layout"
    cmd = [compiler, "-std=c11", "-Wall", "-Wextra",
           f"-I{REPO / 'plugin' / 'src'}", f"-I{REPO / 'plugin' / 'include'}",
           f"-I{REPO / 'plugin' / 'tests'}", str(LAYOUT_SOURCE), "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"compiling {LAYOUT_SOURCE} failed:\n{' '.join(cmd)}\n{res.stderr}"
    return exe


_LINE = re.compile(r"^(SIZE|OFFSET|CONST) (\S+) (-?\d+)$")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> LayoutReport:
    exe = _fresh_binary() or _compile(tmp_path_factory.mktemp("abi_layout"))
    res = subprocess.run([str(exe)], capture_output=True, text=True, check=False, timeout=60)
    assert res.returncode == 0, (
        f"{exe} reports that the C headers do not match the ABI:\n{res.stderr}")
    rep = LayoutReport()
    for line in res.stdout.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        kind, name, value = m.group(1), m.group(2), int(m.group(3))
        table = {"SIZE": rep.sizes, "OFFSET": rep.offsets, "CONST": rep.consts}[kind]
        assert name not in table, f"{exe} printed {kind} {name} twice"
        table[name] = value
    assert rep.sizes and rep.offsets and rep.consts, f"{exe} printed no layout lines:\n{res.stdout}"
    return rep


@pytest.fixture(scope="module")
def ffi() -> cffi.FFI:
    return abi.make_ffi()


def _offset_path(path: str) -> tuple[str, list[str | int]]:
    """'T.a.b[2][1]' -> ('T', ['a', 'b', 2, 1])."""
    type_name, _, rest = path.partition(".")
    fields: list[str | int] = []
    for part in rest.split("."):
        name, *indexes = part.split("[")
        fields.append(name)
        fields.extend(int(i.rstrip("]")) for i in indexes)
    return type_name, fields


def test_sizes_match_c(report: LayoutReport, ffi: cffi.FFI) -> None:
    wrong = {name: (ffi.sizeof(name), c) for name, c in report.sizes.items()
             if ffi.sizeof(name) != c}
    assert not wrong, f"cffi sizeof differs from C (name: (cffi, C)): {wrong}"


def test_offsets_match_c(report: LayoutReport, ffi: cffi.FFI) -> None:
    wrong = {}
    for path, c in report.offsets.items():
        type_name, fields = _offset_path(path)
        py = ffi.offsetof(type_name, *fields)
        if py != c:
            wrong[path] = (py, c)
    assert not wrong, f"cffi offsetof differs from C (member: (cffi, C)): {wrong}"


def test_every_declared_struct_is_checked(report: LayoutReport, ffi: cffi.FFI) -> None:
    typedefs, structs, unions = ffi.list_types()
    aggregates = {t for t in typedefs if ffi.typeof(t).kind in ("struct", "union")}
    unchecked = sorted(aggregates - set(report.sizes))
    assert not unchecked, (
        f"declared in cclpilot.sim.abi but not measured by test_abi_layout.c: {unchecked}; "
        "add SIZE/OFF checks for them there")
    # Named struct tags would be a second spelling of a type the C headers only typedef.
    assert not structs and not unions, f"unexpected struct/union tags: {structs} {unions}"


def test_constants_match_c(report: LayoutReport) -> None:
    py = abi.c_constants()
    missing = sorted(set(py) - set(report.consts))
    assert not missing, f"Python constants that test_abi_layout.c does not print: {missing}"
    wrong = {n: (py[n], report.consts[n]) for n in py if py[n] != report.consts[n]}
    assert not wrong, f"constant values differ (name: (Python, C)): {wrong}"


def test_cdef_enum_values_reach_ffi(ffi: cffi.FFI) -> None:
    # The enum text in the cdef is generated from the Python enums; check it round-trips.
    lib = ffi.dlopen(None)
    assert lib.ncclProfilerKernelChStop == 22
    assert lib.ncclProfileKernelCh == 1 << 6
    assert lib.ncclFuncAllReduce == 4
    assert lib.ncclSuccess == 0


def test_logger_type_is_variadic_int_level(ffi: cffi.FFI) -> None:
    # cffi reports a function-pointer typedef as kind "function" and drops const qualifiers.
    t = ffi.typeof("ncclDebugLogger_t")
    assert t.kind == "function" and t.ellipsis, "the logger must be a variadic function pointer"
    assert [a.cname for a in t.args] == ["int", "unsigned long", "char *", "int", "char *"]
    assert t.result.cname == "void"


def test_symbol_names() -> None:
    assert [abi.tuner_symbol(v) for v in abi.TUNER_VERSIONS] == [
        f"ncclTunerPlugin_v{v}" for v in range(2, 7)]
    assert [abi.profiler_symbol(v) for v in abi.PROFILER_VERSIONS] == [
        f"ncclProfiler_v{v}" for v in range(1, 7)]
    with pytest.raises(ConfigError, match="tuner ABI version 1"):
        abi.tuner_symbol(1)
    with pytest.raises(ConfigError, match="profiler ABI version 7"):
        abi.profiler_symbol(7)


def test_event_types_by_version() -> None:
    ev = abi.PROFILE_EVENTS_BY_VERSION
    assert abi.ProfileEvent.KernelCh not in ev[2] and abi.ProfileEvent.KernelCh in ev[3]
    assert abi.ProfileEvent.CollApi not in ev[4] and abi.ProfileEvent.CollApi in ev[5]
    assert abi.ProfileEvent.CeBatch not in ev[5] and abi.ProfileEvent.CeBatch in ev[6]
    for v in range(2, 7):
        assert ev[v - 1] & ~ev[v] == 0, f"profiler v{v} lost event types of v{v - 1}"
    assert ev[6] == abi.ProfileEvent(sum(int(e) for e in abi.ProfileEvent))


def test_exported_objects_through_cffi(ffi: cffi.FFI, plugin_library: Path) -> None:
    # The plugin the rest of the suite uses, never a sanitizer build from build-asan/: an
    # ASan-instrumented library cannot be loaded into an uninstrumented Python.
    lib = ffi.dlopen(str(plugin_library))
    for v in abi.TUNER_VERSIONS:
        t = ffi.addressof(lib, abi.tuner_symbol(v))
        assert ffi.string(t.name) == b"cclpilot"
        assert t.init != ffi.NULL and t.getCollInfo != ffi.NULL
    assert ffi.addressof(lib, "ncclTunerPlugin_v6").getChunkSize != ffi.NULL
    for v in abi.PROFILER_VERSIONS:
        p = ffi.addressof(lib, abi.profiler_symbol(v))
        assert ffi.string(p.name) == b"cclpilot"
        assert p.startEvent != ffi.NULL and p.recordEventState != ffi.NULL
