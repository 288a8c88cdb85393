"""cffi declarations of NCCL's tuner (v2..v6) and profiler (v1..v6) plugin ABIs, for the simulator.

They mirror plugin/include/nccl/*.h member for member; the simulator loads the real plugin with
``ffi.dlopen`` (ABI mode) and drives it through these declarations exactly as NCCL would.
tests/test_abi_cdefs.py holds both sides to one layout: it runs the C layout test
(plugin/tests/test_abi_layout.c) and compares every size and offset it prints with ``ffi.sizeof`` /
``ffi.offsetof`` here.

Names are NCCL's and carry the ABI version (``ncclTuner_v3_t``, ``ncclProfilerEventDescr_v5_t``);
as in the C headers, a newer version reuses an older version's type where NCCL left it unchanged,
so each version's source needs the ones before it: use :func:`cdef_source` or :func:`make_ffi`.

NCCL's logger is variadic. cffi can declare, pass and call such a pointer but cannot implement
one, so the simulator passes a C function from plugin/simhost (``cclpilot_simhost_log``) cast to
``ncclDebugLogger_t``.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

import cffi  # type: ignore[import-untyped,unused-ignore]

from ..errors import ConfigError
from .topology import NUM_ALGOS, NUM_PROTOS, Algo, Proto

# ---- numbers that cross the ABI ---------------------------------------------------------------
# Member names are NCCL's with the common prefix removed; C_PREFIX maps each enum to that prefix so
# the C spelling (and the cdef text) is derived, not written twice.


class Result(IntEnum):
    """ncclResult_t."""

    Success = 0
    UnhandledCudaError = 1
    SystemError = 2
    InternalError = 3
    InvalidArgument = 4
    InvalidUsage = 5
    RemoteError = 6
    InProgress = 7
    Timeout = 8
    NumResults = 9


class Func(IntEnum):
    """ncclFunc_t. Only Broadcast..AllReduce reach a tuner."""

    Broadcast = 0
    Reduce = 1
    AllGather = 2
    ReduceScatter = 3
    AllReduce = 4
    SendRecv = 5
    Send = 6
    Recv = 7
    AlltoAll = 8
    Scatter = 9
    Gather = 10
    AllGatherV = 11
    PutSignal = 12
    Signal = 13
    WaitSignal = 14


class DataType(IntEnum):
    """ncclDataType_t (profiler v1 reports the datatype as this number)."""

    Int8 = 0
    Uint8 = 1
    Int32 = 2
    Uint32 = 3
    Int64 = 4
    Uint64 = 5
    Float16 = 6
    Float32 = 7
    Float64 = 8
    Bfloat16 = 9
    Float8e4m3 = 10
    Float8e5m2 = 11


class LogLevel(IntEnum):
    """ncclDebugLogLevel."""

    NONE = 0
    VERSION = 1
    WARN = 2
    INFO = 3
    ABORT = 4
    TRACE = 5


class LogSubsys(IntFlag):
    """ncclDebugLogSubSys bits (the logger's ``flags``)."""

    INIT = 0x1
    COLL = 0x2
    P2P = 0x4
    SHM = 0x8
    NET = 0x10
    GRAPH = 0x20
    TUNING = 0x40
    ENV = 0x80
    ALLOC = 0x100
    CALL = 0x200
    PROXY = 0x400
    NVLS = 0x800
    BOOTSTRAP = 0x1000
    REG = 0x2000
    PROFILE = 0x4000
    RAS = 0x8000
    DESTROY = 0x10000
    ALLOC_HOST = 0x20000


class ProfileEvent(IntFlag):
    """Profiler event types: the descriptor's ``type`` and the activation-mask bit.

    The comment gives the profiler ABI version that introduced each one."""

    Group = 1 << 0  # v1
    Coll = 1 << 1  # v1
    P2p = 1 << 2  # v1
    ProxyOp = 1 << 3  # v1
    ProxyStep = 1 << 4  # v1
    ProxyCtrl = 1 << 5  # v1
    KernelCh = 1 << 6  # v3
    NetPlugin = 1 << 7  # v3
    GroupApi = 1 << 8  # v5
    CollApi = 1 << 9  # v5
    P2pApi = 1 << 10  # v5
    KernelLaunch = 1 << 11  # v5
    CeColl = 1 << 12  # v6
    CeSync = 1 << 13  # v6
    CeBatch = 1 << 14  # v6


# Event types each profiler ABI version can receive; NCCL's adapters filter out the others.
PROFILE_EVENTS_BY_VERSION: dict[int, ProfileEvent] = {
    1: ProfileEvent(0x3F),
    2: ProfileEvent(0x3F),
    3: ProfileEvent(0xFF),
    4: ProfileEvent(0xFF),
    5: ProfileEvent(0xFFF),
    6: ProfileEvent(0x7FFF),
}


class ProfilerState(IntEnum):
    """ncclProfilerEventState_t (recordEventState's state), same numbers in every version."""

    ProxyOpSendPosted = 0
    ProxyOpSendRemFifoWait = 1
    ProxyOpSendTransmitted = 2
    ProxyOpSendDone = 3
    ProxyOpRecvPosted = 4
    ProxyOpRecvReceived = 5
    ProxyOpRecvTransmitted = 6
    ProxyOpRecvDone = 7
    ProxyStepSendGPUWait = 8
    ProxyStepSendWait = 9
    ProxyStepRecvWait = 10
    ProxyStepRecvFlushWait = 11
    ProxyStepRecvGPUWait = 12
    ProxyCtrlIdle = 13
    ProxyCtrlActive = 14
    ProxyCtrlSleep = 15
    ProxyCtrlWakeup = 16
    ProxyCtrlAppend = 17
    ProxyCtrlAppendEnd = 18
    ProxyOpInProgress_v4 = 19
    ProxyStepSendPeerWait_v4 = 20
    NetPluginUpdate = 21
    KernelChStop = 22
    GroupStartApiStop = 23
    GroupEndApiStart = 24
    CeCollStart = 25
    CeCollComplete = 26
    CeSyncStart = 27
    CeSyncComplete = 28
    CeBatchStart = 29
    CeBatchComplete = 30


C_PREFIX: dict[type[IntEnum] | type[IntFlag], str] = {
    Result: "nccl",
    Func: "ncclFunc",
    DataType: "nccl",
    LogLevel: "NCCL_LOG_",
    LogSubsys: "NCCL_",
    ProfileEvent: "ncclProfile",
    ProfilerState: "ncclProfiler",
}


def c_name(member: IntEnum | IntFlag) -> str:
    """The C spelling of an enum member, e.g. ``c_name(ProfilerState.KernelChStop)``."""
    prefix = C_PREFIX[type(member)]
    assert member.name is not None  # single flags always have a name
    return prefix + member.name


NUM_ALGORITHMS = NUM_ALGOS
NUM_PROTOCOLS = NUM_PROTOS
NUM_FUNCTIONS = 5
ALGO_PROTO_IGNORE = -1.0
NUM_HW_LINKS_V5 = 3
NUM_COMPCAPS_V5 = 4
NUM_TUNING_SCALES_V5 = 3
PROFILER_NET_TYPE_IB = 1 << 16
PROFILER_NET_TYPE_SOCK = 2 << 16

TUNER_VERSIONS: tuple[int, ...] = (2, 3, 4, 5, 6)
PROFILER_VERSIONS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)


def c_constants() -> dict[str, int]:
    """Every number above by its C name, plus the algorithm/protocol numbering the simulator's
    topology uses (which must be NCCL's): what tests/test_abi_cdefs.py compares with C."""
    out: dict[str, int] = {}
    for enum in C_PREFIX:
        for member in enum:
            out[c_name(member)] = int(member)
    out.update({f"NCCL_ALGO_{a.name}": int(a) for a in Algo})
    out.update({f"NCCL_PROTO_{p.name}": int(p) for p in Proto})
    out["NCCL_NUM_ALGORITHMS"] = NUM_ALGORITHMS
    out["NCCL_NUM_PROTOCOLS"] = NUM_PROTOCOLS
    out["NCCL_NUM_FUNCTIONS"] = NUM_FUNCTIONS
    out["NCCL_PROFILER_NET_TYPE_IB"] = PROFILER_NET_TYPE_IB
    out["NCCL_PROFILER_NET_TYPE_SOCK"] = PROFILER_NET_TYPE_SOCK
    return out


def tuner_symbol(version: int) -> str:
    """Name of the exported object NCCL looks up for a tuner ABI version."""
    if version not in TUNER_VERSIONS:
        raise ConfigError(
            f"tuner ABI version {version} is not supported; use one of {TUNER_VERSIONS}")
    return f"ncclTunerPlugin_v{version}"


def profiler_symbol(version: int) -> str:
    """Name of the exported object NCCL looks up for a profiler ABI version."""
    if version not in PROFILER_VERSIONS:
        raise ConfigError(
            f"profiler ABI version {version} is not supported; use one of {PROFILER_VERSIONS}")
    return f"ncclProfiler_v{version}"


def _enum_cdef(c_type: str | None, enum: type[IntEnum] | type[IntFlag]) -> str:
    body = ",\n".join(f"  {c_name(m)} = {int(m)}" for m in enum)
    return f"typedef enum {{\n{body}\n}} {c_type};\n" if c_type else f"enum {{\n{body}\n}};\n"


# ---- declarations ---------------------------------------------------------------------------

CDEF_COMMON: str = (
    _enum_cdef("ncclResult_t", Result)
    + _enum_cdef("ncclFunc_t", Func)
    + _enum_cdef("ncclDataType_t", DataType)
    + _enum_cdef("ncclProfilerEventState_t", ProfilerState)
    + _enum_cdef(None, ProfileEvent)
    + """
/* The level is an int here (NCCL: ncclDebugLogLevel, an int-sized enum). */
typedef void (*ncclDebugLogger_t)(int level, unsigned long flags, const char* file, int line,
                                  const char* fmt, ...);
typedef int32_t ncclPid_t;
"""
)

CDEF_TUNER: dict[int, str] = {
    2: """
typedef struct {
  const char* name;
  ncclResult_t (*init)(size_t nRanks, size_t nNodes, ncclDebugLogger_t logFunction, void** context);
  ncclResult_t (*getCollInfo)(void* context, ncclFunc_t collType, size_t nBytes, int collNetSupport,
                              int nvlsSupport, int numPipeOps, int* algorithm, int* protocol,
                              int* nChannels);
  ncclResult_t (*destroy)(void* context);
} ncclTuner_v2_t;
extern ncclTuner_v2_t ncclTunerPlugin_v2;
""",
    3: """
typedef struct {
  const char* name;
  ncclResult_t (*init)(size_t nRanks, size_t nNodes, ncclDebugLogger_t logFunction, void** context);
  ncclResult_t (*getCollInfo)(void* context, ncclFunc_t collType, size_t nBytes, int numPipeOps,
                              float** collCostTable, int numAlgo, int numProto, int* nChannels);
  ncclResult_t (*destroy)(void* context);
} ncclTuner_v3_t;
extern ncclTuner_v3_t ncclTunerPlugin_v3;
""",
    4: """
typedef ncclResult_t (*ncclTunerGetCollInfo_v4_fn)(void* context, ncclFunc_t collType,
                                                   size_t nBytes, int numPipeOps,
                                                   float** collCostTable, int numAlgo,
                                                   int numProto, int regBuff, int* nChannels);
typedef struct {
  const char* name;
  ncclResult_t (*init)(size_t nRanks, size_t nNodes, ncclDebugLogger_t logFunction, void** context);
  ncclTunerGetCollInfo_v4_fn getCollInfo;
  ncclResult_t (*destroy)(void* context);
} ncclTuner_v4_t;
extern ncclTuner_v4_t ncclTunerPlugin_v4;
""",
    5: """
typedef struct {
  int nNvlDomains;
  int minRanksPerNvlDomain;
  int maxRanksPerNvlDomain;
} ncclNvlDomainInfo_v5_t;
typedef struct {
  double baseLatencies[7][3];
  double hwLatencies[3][7][3];
  double llMaxBws[4][3];
  double perChMaxRingLL128Bws[4][3];
  double perChMaxTreeLL128Bws[4][3];
  double perChMaxTreeBws[4][3];
  double perChMaxNVLSTreeBws[4][3];
} ncclTunerConstants_v5_t;
typedef ncclResult_t (*ncclTunerInit_v5_fn)(void** ctx, uint64_t commId, size_t nRanks,
                                            size_t nNodes, ncclDebugLogger_t logFunction,
                                            ncclNvlDomainInfo_v5_t* nvlDomainInfo,
                                            ncclTunerConstants_v5_t* constants);
typedef struct {
  const char* name;
  ncclTunerInit_v5_fn init;
  ncclTunerGetCollInfo_v4_fn getCollInfo;
  ncclResult_t (*finalize)(void* context);
} ncclTuner_v5_t;
extern ncclTuner_v5_t ncclTunerPlugin_v5;
""",
    6: """
typedef ncclNvlDomainInfo_v5_t ncclNvlDomainInfo_v6_t;
typedef ncclTunerConstants_v5_t ncclTunerConstants_v6_t;
typedef struct {
  const char* name;
  ncclTunerInit_v5_fn init;
  ncclTunerGetCollInfo_v4_fn getCollInfo;
  ncclResult_t (*finalize)(void* context);
  ncclResult_t (*getChunkSize)(void* context, ncclFunc_t collType, size_t nBytes, int algo,
                               int proto, int nChannels, size_t* chunkSize);
} ncclTuner_v6_t;
extern ncclTuner_v6_t ncclTunerPlugin_v6;
""",
}

CDEF_PROFILER: dict[int, str] = {
    1: """
typedef struct {
  const char* name;
  uint64_t commHash;
  uint64_t seqNumber;
  uint8_t func;
  void const* sendBuff;
  void* recvBuff;
  size_t count;
  int root;
  uint8_t datatype;
  uint32_t op;
  size_t trafficBytes;
  uint8_t nMaxChannels;
  uint8_t nWarps;
  uint8_t algo;
  uint8_t proto;
  int isCollnet;
  int isNvls;
} ncclProfilerCollDescr_v1_t;
typedef struct {
  const char* name;
  uint64_t commHash;
  uint8_t func;
  void* buff;
  uint8_t datatype;
  size_t count;
  int peer;
} ncclProfilerP2pDescr_v1_t;
typedef struct {
  ncclPid_t pid;
  uint8_t channelId;
  int peer;
  int nSteps;
  int chunkSize;
  int isSend;
} ncclProfilerProxyOpDescr_v1_t;
typedef struct {
  int step;
} ncclProfilerProxyStepDescr_v1_t;
typedef struct {
  uint8_t type;
  void* parentObj;
  int rank;
  union {
    ncclProfilerCollDescr_v1_t coll;
    ncclProfilerP2pDescr_v1_t p2p;
    ncclProfilerProxyOpDescr_v1_t proxyOp;
    ncclProfilerProxyStepDescr_v1_t proxyStep;
  };
} ncclProfilerEventDescr_v1_t;
typedef ncclProfilerEventState_t ncclProfilerEventState_v1_t;
typedef union {
  struct {
    size_t transSize;
    int steps;
  } proxyOp;
  struct {
    int appendedProxyOps;
  } proxyCtrl;
} ncclProfilerEventStateArgs_v1_t;
typedef ncclResult_t (*ncclProfilerInit_v1_fn)(void** context, int* eActivationMask);
typedef struct {
  const char* name;
  ncclProfilerInit_v1_fn init;
  ncclResult_t (*startEvent)(void* context, void** eHandle, ncclProfilerEventDescr_v1_t* eDescr);
  ncclResult_t (*stopEvent)(void* eHandle);
  ncclResult_t (*recordEventState)(void* eHandle, ncclProfilerEventState_v1_t eState,
                                   ncclProfilerEventStateArgs_v1_t* eStateArgs);
  ncclResult_t (*finalize)(void* context);
} ncclProfiler_v1_t;
extern ncclProfiler_v1_t ncclProfiler_v1;
""",
    2: """
typedef struct {
  const char* name;
  uint64_t commHash;
  uint64_t seqNumber;
  const char* func;
  void const* sendBuff;
  void* recvBuff;
  size_t count;
  int root;
  const char* datatype;
  size_t trafficBytes;
  uint8_t nMaxChannels;
  uint8_t nWarps;
  const char* algo;
  const char* proto;
} ncclProfilerCollDescr_v2_t;
typedef struct {
  const char* name;
  uint64_t commHash;
  const char* func;
  void* buff;
  const char* datatype;
  size_t count;
  int peer;
} ncclProfilerP2pDescr_v2_t;
typedef struct {
  uint8_t type;
  void* parentObj;
  int rank;
  union {
    ncclProfilerCollDescr_v2_t coll;
    ncclProfilerP2pDescr_v2_t p2p;
    ncclProfilerProxyOpDescr_v1_t proxyOp;
    ncclProfilerProxyStepDescr_v1_t proxyStep;
  };
} ncclProfilerEventDescr_v2_t;
typedef ncclProfilerEventState_t ncclProfilerEventState_v2_t;
typedef ncclProfilerEventStateArgs_v1_t ncclProfilerEventStateArgs_v2_t;
typedef struct {
  const char* name;
  ncclProfilerInit_v1_fn init;
  ncclResult_t (*startEvent)(void* context, void** eHandle, ncclProfilerEventDescr_v2_t* eDescr);
  ncclResult_t (*stopEvent)(void* eHandle);
  ncclResult_t (*recordEventState)(void* eHandle, ncclProfilerEventState_v2_t eState,
                                   ncclProfilerEventStateArgs_v2_t* eStateArgs);
  ncclResult_t (*finalize)(void* context);
} ncclProfiler_v2_t;
extern ncclProfiler_v2_t ncclProfiler_v2;
""",
    3: """
typedef struct {
  const char* name;
  uint64_t commHash;
  uint64_t seqNumber;
  const char* func;
  void const* sendBuff;
  void* recvBuff;
  size_t count;
  int root;
  const char* datatype;
  uint8_t nMaxChannels;
  uint8_t nWarps;
  const char* algo;
  const char* proto;
} ncclProfilerCollDescr_v3_t;
typedef struct {
  uint8_t channelId;
} ncclProfilerKernelChDescr_v3_t;
typedef struct {
  int64_t id;
  void* data;
} ncclProfilerNetPluginDescr_v3_t;
typedef struct {
  uint8_t type;
  void* parentObj;
  int rank;
  union {
    ncclProfilerCollDescr_v3_t coll;
    ncclProfilerP2pDescr_v2_t p2p;
    ncclProfilerProxyOpDescr_v1_t proxyOp;
    ncclProfilerProxyStepDescr_v1_t proxyStep;
    ncclProfilerKernelChDescr_v3_t kernelCh;
    ncclProfilerNetPluginDescr_v3_t netPlugin;
  };
} ncclProfilerEventDescr_v3_t;
typedef ncclProfilerEventState_t ncclProfilerEventState_v3_t;
typedef ncclProfilerEventStateArgs_v1_t ncclProfilerEventStateArgs_v3_t;
typedef struct {
  const char* name;
  ncclProfilerInit_v1_fn init;
  ncclResult_t (*startEvent)(void* context, void** eHandle, ncclProfilerEventDescr_v3_t* eDescr);
  ncclResult_t (*stopEvent)(void* eHandle);
  ncclResult_t (*recordEventState)(void* eHandle, ncclProfilerEventState_v3_t eState,
                                   ncclProfilerEventStateArgs_v3_t* eStateArgs);
  ncclResult_t (*finalize)(void* context);
} ncclProfiler_v3_t;
extern ncclProfiler_v3_t ncclProfiler_v3;
""",
    4: """
typedef struct {
  uint64_t seqNumber;
  const char* func;
  void const* sendBuff;
  void* recvBuff;
  size_t count;
  int root;
  const char* datatype;
  uint8_t nChannels;
  uint8_t nWarps;
  const char* algo;
  const char* proto;
} ncclProfilerCollDescr_v4_t;
typedef struct {
  const char* func;
  void* buff;
  const char* datatype;
  size_t count;
  int peer;
  uint8_t nChannels;
} ncclProfilerP2pDescr_v4_t;
typedef struct {
  uint8_t channelId;
  uint64_t pTimer;
} ncclProfilerKernelChDescr_v4_t;
typedef struct {
  uint8_t type;
  void* parentObj;
  int rank;
  union {
    ncclProfilerCollDescr_v4_t coll;
    ncclProfilerP2pDescr_v4_t p2p;
    ncclProfilerProxyOpDescr_v1_t proxyOp;
    ncclProfilerProxyStepDescr_v1_t proxyStep;
    ncclProfilerKernelChDescr_v4_t kernelCh;
    ncclProfilerNetPluginDescr_v3_t netPlugin;
  };
} ncclProfilerEventDescr_v4_t;
typedef ncclProfilerEventState_t ncclProfilerEventState_v4_t;
typedef union {
  struct {
    size_t transSize;
  } proxyStep;
  struct {
    int appendedProxyOps;
  } proxyCtrl;
  struct {
    void* data;
  } netPlugin;
  struct {
    uint64_t pTimer;
  } kernelCh;
} ncclProfilerEventStateArgs_v4_t;
typedef struct {
  const char* name;
  ncclResult_t (*init)(void** context, int* eActivationMask, const char* commName,
                       uint64_t commHash, int nNodes, int nranks, int rank,
                       ncclDebugLogger_t logfn);
  ncclResult_t (*startEvent)(void* context, void** eHandle, ncclProfilerEventDescr_v4_t* eDescr);
  ncclResult_t (*stopEvent)(void* eHandle);
  ncclResult_t (*recordEventState)(void* eHandle, ncclProfilerEventState_v4_t eState,
                                   ncclProfilerEventStateArgs_v4_t* eStateArgs);
  ncclResult_t (*finalize)(void* context);
} ncclProfiler_v4_t;
extern ncclProfiler_v4_t ncclProfiler_v4;
""",
    5: """
typedef struct {
  uint64_t seqNumber;
  const char* func;
  void const* sendBuff;
  void* recvBuff;
  size_t count;
  int root;
  const char* datatype;
  uint8_t nChannels;
  uint8_t nWarps;
  const char* algo;
  const char* proto;
  void* parentGroup;
} ncclProfilerCollDescr_v5_t;
typedef struct {
  const char* func;
  void* buff;
  const char* datatype;
  size_t count;
  int peer;
  uint8_t nChannels;
  void* parentGroup;
} ncclProfilerP2pDescr_v5_t;
typedef struct {
  bool graphCaptured;
  int groupDepth;
} ncclProfilerGroupApiDescr_v5_t;
typedef struct {
  const char* func;
  size_t count;
  const char* datatype;
  int root;
  void* stream;
  bool graphCaptured;
} ncclProfilerCollApiDescr_v5_t;
typedef struct {
  const char* func;
  size_t count;
  const char* datatype;
  void* stream;
  bool graphCaptured;
} ncclProfilerP2pApiDescr_v5_t;
typedef struct {
  void* stream;
} ncclProfilerKernelLaunchDescr_v5_t;
typedef struct {
  uint64_t type;
  void* parentObj;
  int rank;
  union {
    ncclProfilerGroupApiDescr_v5_t groupApi;
    ncclProfilerCollApiDescr_v5_t collApi;
    ncclProfilerP2pApiDescr_v5_t p2pApi;
    ncclProfilerKernelLaunchDescr_v5_t kernelLaunch;
    ncclProfilerCollDescr_v5_t coll;
    ncclProfilerP2pDescr_v5_t p2p;
    ncclProfilerProxyOpDescr_v1_t proxyOp;
    ncclProfilerProxyStepDescr_v1_t proxyStep;
    ncclProfilerKernelChDescr_v4_t kernelCh;
    ncclProfilerNetPluginDescr_v3_t netPlugin;
  };
} ncclProfilerEventDescr_v5_t;
typedef ncclProfilerEventState_t ncclProfilerEventState_v5_t;
typedef ncclProfilerEventStateArgs_v4_t ncclProfilerEventStateArgs_v5_t;
typedef ncclResult_t (*ncclProfilerInit_v5_fn)(void** context, uint64_t commId,
                                               int* eActivationMask, const char* commName,
                                               int nNodes, int nranks, int rank,
                                               ncclDebugLogger_t logfn);
typedef struct {
  const char* name;
  ncclProfilerInit_v5_fn init;
  ncclResult_t (*startEvent)(void* context, void** eHandle, ncclProfilerEventDescr_v5_t* eDescr);
  ncclResult_t (*stopEvent)(void* eHandle);
  ncclResult_t (*recordEventState)(void* eHandle, ncclProfilerEventState_v5_t eState,
                                   ncclProfilerEventStateArgs_v5_t* eStateArgs);
  ncclResult_t (*finalize)(void* context);
} ncclProfiler_v5_t;
extern ncclProfiler_v5_t ncclProfiler_v5;
""",
    6: """
typedef struct {
  uint64_t seqNumber;
  const char* func;
  void const* sendBuff;
  void* recvBuff;
  size_t count;
  int root;
  const char* datatype;
  const char* syncStrategy;
  bool intraBatchSync;
  uint32_t batchSize;
  uint32_t numBatches;
  uint32_t ceSeqNum;
  void* stream;
} ncclProfilerCeCollDescr_v6_t;
typedef struct {
  bool isComplete;
  int nRanks;
} ncclProfilerCeCollSyncDescr_v6_t;
typedef struct {
  int numOps;
  size_t totalBytes;
  bool useIntraSync;
} ncclProfilerCeCollBatchDescr_v6_t;
typedef struct {
  uint64_t type;
  void* parentObj;
  int rank;
  union {
    ncclProfilerGroupApiDescr_v5_t groupApi;
    ncclProfilerCollApiDescr_v5_t collApi;
    ncclProfilerP2pApiDescr_v5_t p2pApi;
    ncclProfilerKernelLaunchDescr_v5_t kernelLaunch;
    ncclProfilerCeCollDescr_v6_t ceColl;
    ncclProfilerCeCollSyncDescr_v6_t ceCollSync;
    ncclProfilerCeCollBatchDescr_v6_t ceCollBatch;
    ncclProfilerCollDescr_v5_t coll;
    ncclProfilerP2pDescr_v5_t p2p;
    ncclProfilerProxyOpDescr_v1_t proxyOp;
    ncclProfilerProxyStepDescr_v1_t proxyStep;
    ncclProfilerKernelChDescr_v4_t kernelCh;
    ncclProfilerNetPluginDescr_v3_t netPlugin;
  };
} ncclProfilerEventDescr_v6_t;
typedef ncclProfilerEventState_t ncclProfilerEventState_v6_t;
typedef ncclProfilerEventStateArgs_v4_t ncclProfilerEventStateArgs_v6_t;
typedef struct {
  const char* name;
  ncclProfilerInit_v5_fn init;
  ncclResult_t (*startEvent)(void* context, void** eHandle, ncclProfilerEventDescr_v6_t* eDescr);
  ncclResult_t (*stopEvent)(void* eHandle);
  ncclResult_t (*recordEventState)(void* eHandle, ncclProfilerEventState_v6_t eState,
                                   ncclProfilerEventStateArgs_v6_t* eStateArgs);
  ncclResult_t (*finalize)(void* context);
} ncclProfiler_v6_t;
extern ncclProfiler_v6_t ncclProfiler_v6;
""",
}


def cdef_source() -> str:
    """Every declaration, in dependency order (shared, tuner v2..v6, profiler v1..v6)."""
    parts = [CDEF_COMMON]
    parts += [CDEF_TUNER[v] for v in TUNER_VERSIONS]
    parts += [CDEF_PROFILER[v] for v in PROFILER_VERSIONS]
    return "".join(parts)


def make_ffi() -> cffi.FFI:
    """A fresh FFI holding every tuner and profiler declaration (ABI mode, for ``ffi.dlopen``).

    The exported objects (``ncclTunerPlugin_vN``, ``ncclProfiler_vN``) are declared as globals;
    take their address with ``ffi.addressof(lib, name)`` to call through them as NCCL does. A
    library that lacks one of them only fails when that name is used."""
    ffi = cffi.FFI()
    ffi.cdef(cdef_source())
    return ffi
