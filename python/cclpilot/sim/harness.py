"""A fake NCCL: loads the real plugin library through cffi and drives it exactly as NCCL 2.30 does.

What is emulated (reference sections in brackets):
- library resolution and symbol search of NCCL's plugin loader [§1.5, §4.1];
- tuner ABI v2..v6 with NCCL's per-version adapters: the v2 algo/proto adapter, v3 without
  regBuff, v5/v6 init with commId, nvlDomainInfo and writable tuning constants that then feed
  this communicator's cost model, v6 getChunkSize per channel part [§1.2-1.4, §3.6];
- the cost table NCCL hands getCollInfo (a contiguous float[7][3] passed as float**) and what
  NCCL does after the tuner returns: argmin, channel hint, scheduler, chunk size [§3.4-3.6];
- profiler ABI v1..v6: init per communicator, the process-global activation mask, and per
  collective the Coll event (started and stopped at enqueue time) and one KernelCh event per
  channel actually run, with GPU timestamps from v4 [§4];
- NCCL's logger, through the simhost library (cffi cannot implement a variadic callback).

What is not: GroupApi/CollApi/Group/ProxyOp events, CUDA graphs, aggregation of several
collectives into one call (callers pass the aggregated nBytes and numPipeOps themselves), and the
net-plugin and STATIC_PLUGIN fallbacks of the loader. KernelCh events are emitted inline, on the
calling thread, right after the Coll event (NCCL emits them from its proxy thread).

A non-success return from tuner init/getCollInfo/getChunkSize/finalize is what makes NCCL fail a
communicator or a collective; here it raises PluginContractError. Plugin behaviour NCCL would
accept but that breaks cclpilot's safety invariants (re-enabling an IGNORE entry, a channel hint
outside 0..64, a chunk below one grain, a failing profiler call) is recorded in
SimNccl.violations and, with strict=True (the default), raised as PluginContractError too.
"""

from __future__ import annotations

import atexit
import enum
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from .. import paths
from ..errors import PluginLoadError, SimulationError
from . import abi
from .nccl_model import (
    ALGO_PROFILER_STRINGS,
    FUNC_TOKENS,
    IGNORE,
    MAXCHANNELS,
    NUM_FUNCTIONS,
    PROTO_PROFILER_STRINGS,
    ChunkLimits,
    ModelOptions,
    NcclModel,
    Schedule,
    TunerConstants,
    DEFAULT_CONSTANTS,
    finalize_chunk,
    select,
    select_or_raise,
    to_float32,
)
from .topology import NUM_ALGOS, NUM_PROTOS, Algo, Coll, Proto, Topology

TUNER_VERSIONS: tuple[int, ...] = (6, 5, 4, 3, 2)
PROFILER_VERSIONS: tuple[int, ...] = (6, 5, 4, 3, 2, 1)
TUNER_PREFIX = "libnccl-tuner"
PROFILER_PREFIX = "libnccl-profiler"

NCCL_SUCCESS = 0
NCCL_IN_PROGRESS = 7

# Profiler event bits and states (ABI values, reference §4.3 / §4.5).
PROFILE_GROUP = 1 << 0
PROFILE_COLL = 1 << 1
PROFILE_KERNEL_CH = 1 << 6
PROFILER_KERNEL_CH_STOP = 22

GPU_CLOCK_BASE_NS = 1_700_000_000_000_000_000  # globaltimer looks like Unix-epoch ns (§4.6)
LAUNCH_GAP_NS = 1000  # idle gap between back-to-back kernels on one comm's clock


class PluginContractError(SimulationError):
    """The plugin did something that makes NCCL fail, or that breaks cclpilot's invariants."""


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET  # "the environment variable is not set" for tuner_plugin/profiler_plugin


class DataType(enum.IntEnum):
    """ncclDataType_t (§2)."""

    INT8 = 0
    UINT8 = 1
    INT32 = 2
    UINT32 = 3
    INT64 = 4
    UINT64 = 5
    FLOAT16 = 6
    FLOAT32 = 7
    FLOAT64 = 8
    BFLOAT16 = 9
    FLOAT8E4M3 = 10
    FLOAT8E5M2 = 11

    @property
    def size(self) -> int:
        return _DTYPE_SIZES[self]

    @property
    def profiler_string(self) -> str:
        # ncclDatatypeToString has no case for ncclUint8 (§9).
        return "Unknown" if self == DataType.UINT8 else "nccl" + _DTYPE_NAMES[self]


_DTYPE_SIZES = {0: 1, 1: 1, 2: 4, 3: 4, 4: 8, 5: 8, 6: 2, 7: 4, 8: 8, 9: 2, 10: 1, 11: 1}
_DTYPE_NAMES = {0: "Int8", 1: "Uint8", 2: "Int32", 3: "Uint32", 4: "Int64", 5: "Uint64", 6: "Float16",
                7: "Float32", 8: "Float64", 9: "Bfloat16", 10: "Float8e4m3", 11: "Float8e5m2"}
_DTYPE_BY_SIZE = {1: DataType.INT8, 2: DataType.BFLOAT16, 4: DataType.FLOAT32, 8: DataType.FLOAT64}


@dataclass(frozen=True)
class LogLine:
    level: int  # ncclDebugLogLevel: 1 VERSION, 2 WARN, 3 INFO, 4 ABORT, 5 TRACE
    flags: int  # ncclDebugLogSubSys bits
    message: str


@dataclass(frozen=True)
class Launch:
    """What a duration model is told about one collective that is about to "run"."""

    comm_id: int
    rank: int
    coll: Coll
    n_bytes: int
    algo: Algo
    proto: Proto
    n_channels: int
    n_warps: int
    chunk_size: int
    seq_number: int
    topology: Topology


DurationFn = Callable[[Launch], "float | Sequence[float]"]  # µs, one value or one per channel


@dataclass(frozen=True)
class ChunkCall:
    """One channel part's chunk size (§3.6)."""

    n_channels: int  # how many channels this part stands for (the call itself passes 1)
    n_bytes: int  # the part's bytes in NCCL's global units, as passed to getChunkSize
    nccl_default: int  # NCCL's value handed in
    plugin_value: int | None  # what getChunkSize left in *chunkSize (None: not called)
    final: int  # after the ceiling clamp and grain rounding


@dataclass(frozen=True)
class Decision:
    """Everything about one collective: what the plugin saw, what it said, what ran."""

    comm_id: int
    rank: int
    coll: Coll
    n_bytes: int
    num_pipe_ops: int
    reg_buff: int
    seq_number: int
    tuner_called: bool
    algo: Algo
    proto: Proto
    channels_hint: int  # the plugin's *nChannels (0 = keep NCCL's)
    n_max_channels: int  # hint, or NCCL's own nc
    channels: int  # channels the scheduler actually ran (what profiler v4+ reports)
    n_warps: int
    chunk_size: int  # the first channel part's final chunk size
    chunk_calls: tuple[ChunkCall, ...]
    default_algo: Algo  # NCCL's choice had there been no plugin
    default_proto: Proto
    default_channels: int
    default_chunk_size: int
    table_before: tuple[float, ...]  # 21 floats, [algo][proto] row-major, -1.0 = IGNORE
    table_after: tuple[float, ...]
    predicted_us: float  # NCCL's model time of what ran (-1.0 where the entry was IGNORE)
    kernel_start_ns: int
    channel_durations_us: tuple[float, ...]
    profiled_coll: bool  # a Coll event was started
    profiled_kernel_channels: int  # KernelCh events started

    @property
    def duration_us(self) -> float:
        """The collective's time as the profiler would measure it: max over channels."""
        return max(self.channel_durations_us) if self.channel_durations_us else 0.0


# ------------------------------------------------------------------------------------------------
# cffi: one FFI per process with the ABI declarations plus the simhost functions.

_SIMHOST_CDEF = """
void cclpilot_simhost_log(int level, unsigned long flags, const char* file, int line, const char* fmt, ...);
void cclpilot_simhost_set_sink(void (*sink)(int, unsigned long, const char*));
"""

_ffi_lock = threading.Lock()
_ffi: Any = None
_simhost: Any = None
_sink_cb: Any = None
_listeners: list[SimNccl] = []
_listeners_lock = threading.Lock()
_strings: dict[str, Any] = {}


def _get_ffi() -> Any:
    global _ffi
    with _ffi_lock:
        if _ffi is None:
            ffi = abi.make_ffi()
            ffi.cdef(_SIMHOST_CDEF, override=True)
            _ffi = ffi
        return _ffi


def _cstr(s: str | None) -> Any:
    """A NUL-terminated string that lives as long as the process: plugins may keep the pointers
    NCCL gives them (NCCL passes string literals)."""
    ffi = _get_ffi()
    if s is None:
        return ffi.NULL
    with _ffi_lock:
        buf = _strings.get(s)
        if buf is None:
            buf = ffi.new("char[]", s.encode())
            _strings[s] = buf
        return buf


def _log_sink(level: int, flags: int, msg: Any) -> None:
    text = _get_ffi().string(msg).decode("utf-8", "replace") if msg else ""
    line = LogLine(int(level), int(flags), text)
    with _listeners_lock:
        targets = list(_listeners)
    for sim in targets:
        sim._add_log(line)


def _ensure_simhost() -> Any:
    """Load the simhost helper once per process and point its sink at _log_sink."""
    global _simhost, _sink_cb
    ffi = _get_ffi()
    with _ffi_lock:
        if _simhost is None:
            path = paths.simhost_library()
            try:
                lib = ffi.dlopen(str(path))
            except OSError as e:
                raise PluginLoadError(f"cannot load the simulator host helper {path}: {e}") from e
            _sink_cb = ffi.callback("void(int, unsigned long, const char*)", _log_sink)
            lib.cclpilot_simhost_set_sink(_sink_cb)
            _simhost = lib
            atexit.register(_detach_sink)
        return _simhost


def _detach_sink() -> None:
    # A plugin thread logging while the interpreter shuts down must not call into Python.
    if _simhost is not None:
        _simhost.cclpilot_simhost_set_sink(_get_ffi().NULL)


# ------------------------------------------------------------------------------------------------
# Loader (§1.5).


def candidate_names(prefix: str, value: str | None | _Unset) -> list[str] | None:
    """The names NCCL dlopens, in order, for NCCL_<KIND>_PLUGIN=value; None when disabled.

    value UNSET (the variable is unset) -> [prefix.so]; "none" in any case -> None (disabled);
    otherwise [value] and, unless value contains '/' or is already lib*.so, [prefix-value.so].
    """
    if value is UNSET or value is None:
        return [f"{prefix}.so"]
    if value.lower() == "none":
        return None
    names = [value]
    if value and "/" not in value and not (value.startswith("lib") and value.endswith(".so")):
        names.append(f"{prefix}-{value}.so")
    return names


@dataclass
class LoadedLibrary:
    lib: Any
    path: str  # the name or path that dlopen accepted
    tried: list[str]


def open_library(prefix: str, value: str | None | _Unset, search_path: Sequence[str | Path] = ()
                 ) -> LoadedLibrary | None:
    """dlopen the first candidate that loads, emulating LD_LIBRARY_PATH with search_path.

    Each bare name (no '/') is tried in every search_path directory first, then as is (the
    process's own library path). Returns None when the plugin is disabled ("none").
    """
    names = candidate_names(prefix, value)
    if names is None:
        return None
    ffi = _get_ffi()
    tried: list[str] = []
    errors: list[str] = []
    for name in names:
        attempts = [name] if "/" in name else [str(Path(d) / name) for d in search_path] + [name]
        for attempt in attempts:
            if "/" in attempt and not Path(attempt).exists():
                tried.append(attempt)
                errors.append(f"{attempt}: no such file")
                continue
            tried.append(attempt)
            try:
                lib = ffi.dlopen(attempt, ffi.RTLD_NOW | ffi.RTLD_LOCAL)
            except OSError as e:
                errors.append(f"{attempt}: {e}")
                continue
            return LoadedLibrary(lib, attempt, tried)
    kind = "tuner" if prefix == TUNER_PREFIX else "profiler"
    env = "NCCL_TUNER_PLUGIN" if prefix == TUNER_PREFIX else "NCCL_PROFILER_PLUGIN"
    shown = "unset" if value is UNSET or value is None else repr(value)
    raise PluginLoadError(
        f"no {kind} plugin library could be loaded for {env}={shown}; tried: " + "; ".join(errors)
        + ". Give an absolute path to the .so, or a search_path containing "
        + f"{names[-1]}, or build the plugin (cmake --build build).")


def find_symbol(lib: LoadedLibrary, kind: Literal["tuner", "profiler"], version: int | None
                ) -> tuple[int, Any]:
    """(version, pointer to the exported struct): newest first, or exactly `version` if given."""
    ffi = _get_ffi()
    versions = TUNER_VERSIONS if kind == "tuner" else PROFILER_VERSIONS
    if version is not None and version not in versions:
        raise PluginLoadError(f"{kind} ABI version {version} is not one NCCL 2.30 loads; "
                              f"choose one of {sorted(versions)}")
    for v in ([version] if version is not None else list(versions)):
        sym = f"ncclTunerPlugin_v{v}" if kind == "tuner" else f"ncclProfiler_v{v}"
        try:
            ptr = ffi.addressof(lib.lib, sym)
        except (AttributeError, KeyError, NotImplementedError):
            continue
        return v, ptr
    wanted = f"v{version}" if version is not None else "any of " + ", ".join(f"v{v}" for v in versions)
    raise PluginLoadError(f"{lib.path} exports no {kind} symbol ({wanted}): it is not a NCCL {kind} "
                          "plugin, or it was built without that ABI version")


# ------------------------------------------------------------------------------------------------


def _rc_ok(rc: int) -> bool:
    return rc in (NCCL_SUCCESS, NCCL_IN_PROGRESS)


class SimNccl:
    """One process's NCCL: loaded plugins, the profiler mask, logs; communicators hang off it.

    plugin_path: the library used for both sides, as NCCL_TUNER_PLUGIN and NCCL_PROFILER_PLUGIN
    (default: the built cclpilot plugin, by absolute path). tuner_plugin / profiler_plugin
    override one side with an NCCL-style value (name, file, path, "none", or UNSET for an unset
    variable). search_path stands in for LD_LIBRARY_PATH. tuner_version / profiler_version force
    one ABI version instead of NCCL's newest-first search.
    """

    def __init__(self, topology: Topology, plugin_path: str | Path | None = None, *,
                 tuner_version: int | None = None, profiler_version: int | None = None,
                 env_algo: str | None = None, env_proto: str | None = None,
                 tuner_plugin: str | None | _Unset = None, profiler_plugin: str | None | _Unset = None,
                 search_path: Sequence[str | Path] = (), model_options: ModelOptions | None = None,
                 strict: bool = True) -> None:
        self.topology = topology
        self.env_algo = env_algo
        self.env_proto = env_proto
        self.model_options = model_options or ModelOptions()
        self.strict = strict
        # Validates NCCL_ALGO/NCCL_PROTO and the topology up front, like NCCL at comm init.
        self.default_model = NcclModel(topology, DEFAULT_CONSTANTS, env_algo, env_proto, self.model_options)
        self.ffi = _get_ffi()
        self._simhost = _ensure_simhost()
        self.log_function = self.ffi.cast("ncclDebugLogger_t", self.ffi.addressof(self._simhost,
                                                                                   "cclpilot_simhost_log"))
        self._lock = threading.Lock()
        self._logs: list[LogLine] = []
        self.violations: list[str] = []
        self.comms: dict[tuple[int, int], SimComm] = {}
        self._closed = False
        with _listeners_lock:
            _listeners.append(self)
        if plugin_path is None and (tuner_plugin is None or profiler_plugin is None):
            plugin_path = paths.plugin_library()
        default_value = str(Path(plugin_path).resolve()) if plugin_path is not None else None
        tuner_value = default_value if tuner_plugin is None else tuner_plugin
        profiler_value = default_value if profiler_plugin is None else profiler_plugin
        self._libs: list[LoadedLibrary] = []
        self.tuner_lib: LoadedLibrary | None = None
        self.profiler_lib: LoadedLibrary | None = None
        self.tuner_version: int | None = None
        self.profiler_version: int | None = None
        self.tuner_name: str | None = None
        self.profiler_name: str | None = None
        self._tuner: Any = None
        self._profiler: Any = None
        # The process-global activation mask every profiler init gets a pointer to (§4.2).
        self.mask_ptr = self.ffi.new("int *", 0)
        try:
            self.tuner_lib = open_library(TUNER_PREFIX, tuner_value, search_path)
            if self.tuner_lib is not None:
                self._libs.append(self.tuner_lib)
                self.tuner_version, self._tuner = find_symbol(self.tuner_lib, "tuner", tuner_version)
                self.tuner_name = self._plugin_name(self._tuner)
            self.profiler_lib = open_library(PROFILER_PREFIX, profiler_value, search_path)
            if self.profiler_lib is not None:
                self._libs.append(self.profiler_lib)
                self.profiler_version, self._profiler = find_symbol(self.profiler_lib, "profiler",
                                                                    profiler_version)
                self.profiler_name = self._plugin_name(self._profiler)
        except BaseException:
            self.close()
            raise
        if self._tuner is not None:
            self._check_tuner_struct()

    # --- plumbing -------------------------------------------------------------------------------

    def _plugin_name(self, struct_ptr: Any) -> str:
        name = struct_ptr.name
        return self.ffi.string(name).decode("utf-8", "replace") if name != self.ffi.NULL else ""

    def _check_tuner_struct(self) -> None:
        t, ffi = self._tuner, self.ffi
        needed = ["init", "getCollInfo", "destroy" if self.tuner_version in (2, 3, 4) else "finalize"]
        missing = [m for m in needed if getattr(t, m) == ffi.NULL]
        if missing:
            self._violation(f"tuner v{self.tuner_version} struct has NULL {', '.join(missing)}: NCCL calls "
                            "these without a NULL check and would crash", always_raise=True)

    def _add_log(self, line: LogLine) -> None:
        with self._lock:
            self._logs.append(line)

    @property
    def logs(self) -> list[LogLine]:
        """Every line logged through NCCL's logger while this SimNccl existed (process-wide, as in
        NCCL: lines cannot be attributed to one SimNccl when several exist)."""
        with self._lock:
            return list(self._logs)

    def _violation(self, msg: str, always_raise: bool = False) -> None:
        with self._lock:
            self.violations.append(msg)
        if self.strict or always_raise:
            raise PluginContractError(msg)

    @property
    def activation_mask(self) -> int:
        return int(self.mask_ptr[0])

    # --- communicators --------------------------------------------------------------------------

    def create_comm(self, comm_id: int, rank: int, comm_name: str | None = None) -> SimComm:
        """ncclCommInitRank for one rank of communicator `comm_id` (NCCL's commHash)."""
        if self._closed:
            raise SimulationError("SimNccl is closed; create a new one")
        if not 0 <= rank < self.topology.n_ranks:
            raise SimulationError(f"rank {rank} outside 0..{self.topology.n_ranks - 1} of topology "
                                  f"{self.topology.name!r}")
        if not 0 <= comm_id < 1 << 64:
            raise SimulationError(f"comm_id {comm_id} is not a uint64")
        key = (comm_id, rank)
        with self._lock:
            if key in self.comms:
                raise SimulationError(f"rank {rank} of communicator {comm_id:#x} already exists here")
        comm = SimComm(self, comm_id, rank, comm_name)
        with self._lock:
            self.comms[key] = comm
        return comm

    def _forget(self, comm: SimComm) -> None:
        with self._lock:
            self.comms.pop((comm.comm_id, comm.rank), None)

    def close(self) -> None:
        """Destroy remaining communicators, then unload the libraries."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for comm in list(self.comms.values()):
            try:
                comm.destroy()
            except SimulationError as e:
                errors.append(e)
        for lib in self._libs:
            try:
                self.ffi.dlclose(lib.lib)
            except (OSError, ValueError):
                pass
        self._libs.clear()
        with _listeners_lock:
            if self in _listeners:
                _listeners.remove(self)
        if errors:
            raise errors[0]

    def __enter__(self) -> SimNccl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SimComm:
    """One rank of one communicator: plugin contexts, cost model, sequence numbers, GPU clock."""

    def __init__(self, sim: SimNccl, comm_id: int, rank: int, comm_name: str | None) -> None:
        self.sim = sim
        self.comm_id = comm_id
        self.rank = rank
        self.comm_name = comm_name
        self.topology = sim.topology
        self.seq_numbers = [0] * NUM_FUNCTIONS
        self.clock_ns = GPU_CLOCK_BASE_NS
        self._busy = threading.Lock()
        self._destroyed = False
        ffi = sim.ffi
        t = self.topology
        self._tuner_ctx = ffi.new("void **")
        self._profiler_ctx = ffi.new("void **")
        self._event_scratch: tuple[Any, Any, Any, Any, Any] | None = None
        self.tuner_active = False
        self.profiler_active = False
        self.constants = DEFAULT_CONSTANTS
        # Profiler init comes first in initTransportsRank (§4.2); failure just drops the profiler.
        if sim._profiler is not None:
            self.profiler_active = self._profiler_init()
        if sim._tuner is not None:
            try:
                self._tuner_init()
            except BaseException:
                self._finalize_profiler()
                raise
            self.tuner_active = True
        self.model = NcclModel(t, self.constants, sim.env_algo, sim.env_proto, sim.model_options)

    # --- init / finalize ------------------------------------------------------------------------

    def _profiler_init(self) -> bool:
        sim, ffi, t = self.sim, self.sim.ffi, self.topology
        p, v = sim._profiler, sim.profiler_version
        name = _cstr(self.comm_name)
        if v in (1, 2, 3):
            rc = p.init(self._profiler_ctx, sim.mask_ptr)
        elif v == 4:
            rc = p.init(self._profiler_ctx, sim.mask_ptr, name, self.comm_id, t.n_nodes, t.n_ranks,
                        self.rank, sim.log_function)
        else:
            rc = p.init(self._profiler_ctx, self.comm_id, sim.mask_ptr, name, t.n_nodes, t.n_ranks,
                        self.rank, sim.log_function)
        if not _rc_ok(rc):
            # NCCL unloads the profiler and goes on without it; that is not a failure of the comm.
            sim._add_log(LogLine(3, 0x4000, f"simulator: profiler v{v} init returned {rc}; "
                                            "continuing without a profiler for this communicator"))
            return False
        return True

    def _tuner_init(self) -> None:
        sim, ffi, t = self.sim, self.sim.ffi, self.topology
        tu, v = sim._tuner, sim.tuner_version
        if v in (2, 3, 4):
            rc = tu.init(t.n_ranks, t.n_nodes, sim.log_function, self._tuner_ctx)
        else:
            dom = ffi.new("ncclNvlDomainInfo_v5_t *", [t.n_nodes, t.ppn, t.ppn])
            consts = ffi.new("ncclTunerConstants_v5_t *")
            flat = ffi.cast("double *", consts)
            n = TunerConstants.N_DOUBLES
            if ffi.sizeof("ncclTunerConstants_v5_t") != n * 8:
                raise SimulationError("ABI declarations disagree: ncclTunerConstants_v5_t is not 144 doubles")
            for i, val in enumerate(DEFAULT_CONSTANTS.flat()):
                flat[i] = val
            rc = tu.init(self._tuner_ctx, self.comm_id, t.n_ranks, t.n_nodes, sim.log_function, dom, consts)
            if _rc_ok(rc):
                # Edits made in init feed this communicator's cost model (§1.3, §3.7).
                self.constants = TunerConstants.from_flat([flat[i] for i in range(n)])
        if not _rc_ok(rc):
            sim._violation(f"tuner v{v} init returned {rc} for comm {self.comm_id:#x} rank {self.rank}: "
                           "NCCL would fail the communicator's creation", always_raise=True)

    def _finalize_profiler(self) -> None:
        if self.profiler_active:
            self.profiler_active = False
            rc = self.sim._profiler.finalize(self._profiler_ctx[0])
            if not _rc_ok(rc):
                self.sim._violation(f"profiler finalize returned {rc} for comm {self.comm_id:#x}")

    def destroy(self) -> None:
        """ncclCommDestroy: tuner finalize/destroy first (commCleanup), then the profiler's."""
        if self._destroyed:
            return
        with self._busy:
            self._destroyed = True
            self.sim._forget(self)
            try:
                if self.tuner_active:
                    self.tuner_active = False
                    tu = self.sim._tuner
                    fn = tu.destroy if self.sim.tuner_version in (2, 3, 4) else tu.finalize
                    rc = fn(self._tuner_ctx[0])
                    if not _rc_ok(rc):
                        self.sim._violation(
                            f"tuner finalize returned {rc} for comm {self.comm_id:#x} rank {self.rank}: "
                            "NCCL would skip freeing the communicator", always_raise=True)
            finally:
                self._finalize_profiler()

    # --- one collective -------------------------------------------------------------------------

    def run_collective(self, coll: Coll | int, n_bytes: int, num_pipe_ops: int = 1, reg_buff: int = 0,
                       dtype_size: int = 4, duration_fn: DurationFn | None = None, *,
                       dtype: DataType | None = None, root: int = 0, start_ns: int | None = None
                       ) -> Decision:
        """Launch one (possibly aggregated) collective the way NCCL does and report what ran.

        n_bytes is the tuner's nBytes (§3.4: total output for AllGather, total input for
        ReduceScatter). duration_fn gives per-channel kernel durations in µs for the profiler's
        KernelCh events; without one, NCCL's own model time of what ran is used (not ground truth).
        """
        if self._destroyed:
            raise SimulationError(f"communicator {self.comm_id:#x} rank {self.rank} was destroyed")
        if not self._busy.acquire(blocking=False):
            raise SimulationError(f"communicator {self.comm_id:#x} rank {self.rank} used from two threads "
                                  "at once; NCCL forbids concurrent use of one communicator")
        try:
            return self._run(Coll(coll), n_bytes, num_pipe_ops, reg_buff, dtype_size, duration_fn,
                             dtype, root, start_ns)
        finally:
            self._busy.release()

    def _run(self, coll: Coll, n_bytes: int, num_pipe_ops: int, reg_buff: int, dtype_size: int,
             duration_fn: DurationFn | None, dtype: DataType | None, root: int, start_ns: int | None
             ) -> Decision:
        sim, ffi, t, model = self.sim, self.sim.ffi, self.topology, self.model
        if dtype is None:
            if dtype_size not in _DTYPE_BY_SIZE:
                raise SimulationError(f"dtype_size={dtype_size}: use 1, 2, 4 or 8, or pass dtype=")
            dtype = _DTYPE_BY_SIZE[dtype_size]
        unit = dtype.size * (t.n_ranks if coll in (Coll.ALLGATHER, Coll.REDUCESCATTER) else 1)
        if n_bytes <= 0 or n_bytes % unit != 0:
            raise SimulationError(
                f"{FUNC_TOKENS[coll]} of {n_bytes} bytes: nBytes must be a positive multiple of {unit} "
                f"({dtype.name} x {'nRanks' if unit != dtype.size else '1'}); count 0 never reaches NCCL's tuner")
        if num_pipe_ops < 1:
            raise SimulationError(f"numPipeOps must be >= 1 (NCCL computes ceil(tasks/channels)), got {num_pipe_ops}")
        if reg_buff not in (0, 1):
            raise SimulationError(f"regBuff must be 0 or 1, got {reg_buff}")

        table_before = model.cost_table(coll, n_bytes, num_pipe_ops)
        # "No plugin" also means no edited constants: NCCL's choice comes from the default model.
        base = sim.default_model
        default_table = table_before if model.constants == base.constants else base.cost_table(
            coll, n_bytes, num_pipe_ops)
        default = select_or_raise(default_table, coll, n_bytes, model.user_restricted)
        table = ffi.new("float[]", table_before)
        n_ch = ffi.new("int *", 0)
        tuner_called = False
        if self.tuner_active:
            tuner_called = True
            self._call_get_coll_info(coll, n_bytes, num_pipe_ops, reg_buff, table, n_ch)
        table_after = tuple(ffi.unpack(table, NUM_ALGOS * NUM_PROTOS))
        self._check_table(coll, n_bytes, table_before, table_after)
        algo, proto = select_or_raise(table_after, coll, n_bytes, model.user_restricted)

        hint = int(n_ch[0])
        if not 0 <= hint <= MAXCHANNELS:
            self.sim._violation(f"getCollInfo set *nChannels={hint} for {FUNC_TOKENS[coll]} {n_bytes} B; "
                                f"NCCL stores it unvalidated in an int8 (keep 0..{MAXCHANNELS})")
            hint = ((hint + 128) % 256) - 128  # what the signed 8-bit bitfield keeps
        choice = model.default_channels(coll, algo, proto, n_bytes)
        n_max = hint if hint != 0 else choice.n_channels
        if n_max <= 0:
            raise PluginContractError(f"nChannels hint {int(n_ch[0])} leaves a channel sum <= 0: NCCL's "
                                      "scheduler divides by zero")
        sched = model.schedule(coll, algo, proto, n_bytes, n_max)
        limits = model.chunk_limits(coll, algo, proto)
        chunk_calls = self._chunk_sizes(coll, algo, proto, sched, limits)

        d_choice = base.default_channels(coll, default[0], default[1], n_bytes)
        d_sched = base.schedule(coll, default[0], default[1], n_bytes, d_choice.n_channels)
        d_limits = base.chunk_limits(coll, default[0], default[1])

        seq = self.seq_numbers[coll]
        self.seq_numbers[coll] += 1
        predicted = model.algo_time(coll, algo, proto, n_bytes, num_pipe_ops)
        launch = Launch(self.comm_id, self.rank, coll, n_bytes, algo, proto, sched.n_channels,
                        choice.n_warps, chunk_calls[0].final, seq, t)
        durations = self._durations(launch, duration_fn, predicted)
        start = (self.clock_ns + LAUNCH_GAP_NS) if start_ns is None else int(start_ns)
        self.clock_ns = start + int(round(max(durations) * 1000.0))
        count = n_bytes if coll in (Coll.ALLGATHER, Coll.BROADCAST) else (
            n_bytes // (t.n_ranks * dtype.size) if coll == Coll.REDUCESCATTER else n_bytes // dtype.size)
        wire_dtype = DataType.INT8 if coll in (Coll.ALLGATHER, Coll.BROADCAST) else dtype
        coll_ev, kch = self._profile(coll, count, wire_dtype, root, seq, algo, proto, sched, choice.n_warps,
                                     start, durations)
        return Decision(
            comm_id=self.comm_id, rank=self.rank, coll=coll, n_bytes=n_bytes, num_pipe_ops=num_pipe_ops,
            reg_buff=reg_buff, seq_number=seq, tuner_called=tuner_called, algo=algo, proto=proto,
            channels_hint=int(n_ch[0]), n_max_channels=n_max, channels=sched.n_channels,
            n_warps=choice.n_warps, chunk_size=chunk_calls[0].final, chunk_calls=chunk_calls,
            default_algo=default[0], default_proto=default[1], default_channels=d_sched.n_channels,
            default_chunk_size=finalize_chunk(d_limits.default, d_limits),
            table_before=tuple(table_before), table_after=table_after, predicted_us=predicted,
            kernel_start_ns=start, channel_durations_us=tuple(durations), profiled_coll=coll_ev,
            profiled_kernel_channels=kch)

    def _call_get_coll_info(self, coll: Coll, n_bytes: int, num_pipe_ops: int, reg_buff: int,
                            table: Any, n_ch: Any) -> None:
        sim, ffi = self.sim, self.sim.ffi
        tu, v, ctx = sim._tuner, sim.tuner_version, self._tuner_ctx[0]
        if v == 2:
            # NCCL's v2 adapter: support flags derived from the table, the pick applied as a 0.0.
            collnet = int(table[Algo.COLLNET_CHAIN * NUM_PROTOS + Proto.SIMPLE] != IGNORE)
            nvls = int(table[Algo.NVLS * NUM_PROTOS + Proto.SIMPLE] != IGNORE
                       or table[Algo.NVLS_TREE * NUM_PROTOS + Proto.SIMPLE] != IGNORE)
            a = ffi.new("int *", -1)
            p = ffi.new("int *", -1)
            rc = tu.getCollInfo(ctx, int(coll), n_bytes, collnet, nvls, num_pipe_ops, a, p, n_ch)
            if _rc_ok(rc) and 0 <= a[0] < NUM_ALGOS and 0 <= p[0] < NUM_PROTOS \
                    and table[a[0] * NUM_PROTOS + p[0]] != IGNORE:
                table[a[0] * NUM_PROTOS + p[0]] = 0.0
        else:
            tptr = ffi.cast("float **", table)
            if v == 3:
                rc = tu.getCollInfo(ctx, int(coll), n_bytes, num_pipe_ops, tptr, NUM_ALGOS, NUM_PROTOS, n_ch)
            else:
                rc = tu.getCollInfo(ctx, int(coll), n_bytes, num_pipe_ops, tptr, NUM_ALGOS, NUM_PROTOS,
                                    reg_buff, n_ch)
        if not _rc_ok(rc):
            sim._violation(f"getCollInfo (tuner v{v}) returned {rc} for {FUNC_TOKENS[coll]} {n_bytes} B: "
                           "NCCL fails the collective (no fallback)", always_raise=True)

    def _check_table(self, coll: Coll, n_bytes: int, before: Sequence[float], after: Sequence[float]) -> None:
        revived = [f"{Algo(i // NUM_PROTOS).name}/{Proto(i % NUM_PROTOS).name}"
                   for i in range(NUM_ALGOS * NUM_PROTOS) if before[i] == IGNORE and after[i] != IGNORE]
        if revived:
            self.sim._violation(f"getCollInfo re-enabled IGNORE entries {', '.join(revived)} for "
                                f"{FUNC_TOKENS[coll]} {n_bytes} B (NCCL would run an unsupported combination)")

    def _chunk_sizes(self, coll: Coll, algo: Algo, proto: Proto, sched: Schedule, limits: ChunkLimits
                     ) -> tuple[ChunkCall, ...]:
        sim, ffi = self.sim, self.sim.ffi
        fn = sim._tuner.getChunkSize if (self.tuner_active and sim.tuner_version == 6) else ffi.NULL
        calls: list[ChunkCall] = []
        collnet = sched.limit == 0
        for n_part_ch, part_bytes in sched.parts:
            returned: int | None = None
            final = finalize_chunk(limits.default, limits)
            if fn != ffi.NULL:
                cs = ffi.new("size_t *", limits.default)
                rc = fn(self._tuner_ctx[0], int(coll), part_bytes, int(algo), int(proto),
                        n_part_ch if collnet else 1, cs)
                if not _rc_ok(rc):
                    sim._violation(f"getChunkSize returned {rc} for {FUNC_TOKENS[coll]} {part_bytes} B: NCCL "
                                   "fails the collective", always_raise=True)
                returned = int(cs[0])
                final = finalize_chunk(returned, limits)
                if returned > limits.ceiling:
                    sim._add_log(LogLine(3, 0x40, f"simulator: getChunkSize {returned} above the buffer "
                                                  f"ceiling {limits.ceiling}; clamped"))
                if final == 0:
                    sim._violation(f"getChunkSize returned {returned} for {algo.name}/{proto.name}: below one "
                                   f"grain ({limits.grain} B), NCCL divides by zero", always_raise=True)
            calls.append(ChunkCall(n_part_ch, part_bytes, limits.default, returned, final))
        return tuple(calls)

    def _durations(self, launch: Launch, fn: DurationFn | None, predicted: float) -> list[float]:
        n = max(launch.n_channels, 1)
        if fn is None:
            return [max(predicted, 0.0)] * n
        got = fn(launch)
        if isinstance(got, (int, float)):
            vals = [float(got)] * n
        else:
            vals = [float(x) for x in got]
            if len(vals) != n:
                raise SimulationError(f"duration_fn returned {len(vals)} durations for {n} channels")
        if any(not (x >= 0.0) for x in vals):
            raise SimulationError(f"duration_fn returned a negative or NaN duration: {vals}")
        return vals

    # --- profiler events ------------------------------------------------------------------------

    def _profile(self, coll: Coll, count: int, dtype: DataType, root: int, seq: int, algo: Algo,
                 proto: Proto, sched: Schedule, n_warps: int, start_ns: int, durations: Sequence[float]
                 ) -> tuple[bool, int]:
        if not self.profiler_active:
            return False, 0
        sim, ffi = self.sim, self.sim.ffi
        v = sim.profiler_version
        assert v is not None
        mask = sim.activation_mask
        want_kch = bool(mask & PROFILE_KERNEL_CH) and v >= 3
        # Lower events trigger their ancestors: KernelCh alone still produces the Coll event.
        if not (mask & PROFILE_COLL or want_kch):
            return False, 0
        p, ctx = sim._profiler, self._profiler_ctx[0]
        collnet = algo in (Algo.COLLNET_DIRECT, Algo.COLLNET_CHAIN)
        reported_ch = 0 if collnet else sched.n_channels
        # NCCL's descriptors are temporaries the plugin must copy from, so one set per
        # communicator is reused for every event: allocating per event dominated large runs.
        scratch = self._event_scratch
        if scratch is None:
            scratch = self._event_scratch = (
                ffi.new(f"ncclProfilerEventDescr_v{v}_t *"), ffi.new("void **"),
                ffi.new(f"ncclProfilerEventDescr_v{v}_t *"), ffi.new("void **"),
                ffi.new(f"ncclProfilerEventStateArgs_v{v}_t *") if v >= 4 else None)
        d, handle, kd, kh, args = scratch
        d.type = PROFILE_COLL
        d.parentObj = ffi.NULL
        d.rank = self.rank
        c = d.coll
        c.seqNumber = seq
        c.count = count
        c.root = root
        c.nWarps = n_warps
        if v == 1:
            c.func = int(coll)
            c.datatype = int(dtype)
            c.algo = int(algo)
            c.proto = int(proto)
            c.op = 0
            c.trafficBytes = 0
            c.nMaxChannels = reported_ch
            c.isCollnet = int(collnet)
            c.isNvls = int(algo in (Algo.NVLS, Algo.NVLS_TREE))
        else:
            c.func = _cstr(FUNC_TOKENS[coll])
            c.datatype = _cstr(dtype.profiler_string)
            c.algo = _cstr(ALGO_PROFILER_STRINGS[algo])
            c.proto = _cstr(PROTO_PROFILER_STRINGS[proto])
            if v == 2:
                c.trafficBytes = 0
            if v <= 3:
                c.nMaxChannels = reported_ch
            else:
                c.nChannels = reported_ch
        handle[0] = ffi.NULL
        self._profiler_rc(p.startEvent(ctx, handle, d), "startEvent(Coll)")
        coll_h = handle[0]
        if coll_h != ffi.NULL:
            self._profiler_rc(p.stopEvent(coll_h), "stopEvent(Coll)")
        kch = 0
        if want_kch:
            start_event, record_state, stop_event = p.startEvent, p.recordEventState, p.stopEvent
            null = ffi.NULL
            kd.type = PROFILE_KERNEL_CH
            kd.parentObj = coll_h
            kd.rank = 0  # NCCL leaves it unfilled (§4.6)
            kernel = kd.kernelCh
            if v >= 4:
                kernel.pTimer = start_ns
            for ch in range(sched.n_channels):
                kernel.channelId = ch
                kh[0] = null
                rc = start_event(ctx, kh, kd)
                if rc != 0:
                    self._profiler_rc(rc, "startEvent(KernelCh)")
                kch += 1
                kernel_handle = kh[0]
                if kernel_handle == null:
                    continue
                if args is not None:
                    args.kernelCh.pTimer = start_ns + int(round(durations[ch] * 1000.0))
                    rc = record_state(kernel_handle, PROFILER_KERNEL_CH_STOP, args)
                    if rc != 0:
                        self._profiler_rc(rc, "recordEventState(KernelChStop)")
                rc = stop_event(kernel_handle)
                if rc != 0:
                    self._profiler_rc(rc, "stopEvent(KernelCh)")
        return True, kch

    def _profiler_rc(self, rc: int, what: str) -> None:
        # NCCL ignores these return values; a failing call is still a plugin bug worth knowing.
        if not _rc_ok(rc):
            self.sim._violation(f"profiler {what} returned {rc} (NCCL ignores it)")


__all__ = [
    "Algo", "Coll", "Proto", "ChunkCall", "DataType", "Decision", "DurationFn", "Launch", "LoadedLibrary", "LogLine",
    "PluginContractError", "SimComm", "SimNccl", "UNSET", "candidate_names", "find_symbol",
    "open_library", "select", "to_float32",
]
