/*
 * Vocabulary shared by NCCL's tuner and profiler plugin ABIs, declared by cclpilot.
 *
 * NCCL installs no plugin headers (only nccl.h and the device headers), so every plugin carries
 * its own declarations. These follow the numbering of NCCL 2.30.7; every value here is part of the
 * binary interface and must not be renumbered. Written for cclpilot from the facts in
 * docs/reference (nccl-plugin-interfaces.md, sections 1, 2 and 4).
 */
#ifndef CCLPILOT_NCCL_COMMON_H
#define CCLPILOT_NCCL_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every plugin entry point returns one of these. NCCL treats anything other than success (and
 * ncclInProgress) from a tuner call as a failure of the communicator or collective, so cclpilot's
 * hot-path entry points only ever return ncclSuccess. */
typedef enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
  ncclTimeout = 8,
  ncclNumResults = 9
} ncclResult_t;

/* Collective kinds. Only the first NCCL_NUM_FUNCTIONS (Broadcast..AllReduce) have cost tables and
 * reach a tuner; the rest appear in profiler strings only. Values above 7 arrived in 2.28/2.29;
 * ncclNumFuncs moved with them, so nothing here may depend on its value. */
typedef enum {
  ncclFuncBroadcast = 0,
  ncclFuncReduce = 1,
  ncclFuncAllGather = 2,
  ncclFuncReduceScatter = 3,
  ncclFuncAllReduce = 4,
  ncclFuncSendRecv = 5,
  ncclFuncSend = 6,
  ncclFuncRecv = 7,
  ncclFuncAlltoAll = 8,
  ncclFuncScatter = 9,
  ncclFuncGather = 10,
  ncclFuncAllGatherV = 11,
  ncclFuncPutSignal = 12,
  ncclFuncSignal = 13,
  ncclFuncWaitSignal = 14,
  ncclNumFuncs = 15
} ncclFunc_t;

#define NCCL_NUM_FUNCTIONS 5

/* Algorithm and protocol indices: the row and column of a tuner cost table. */
#define NCCL_ALGO_UNDEF (-1)
#define NCCL_ALGO_TREE 0
#define NCCL_ALGO_RING 1
#define NCCL_ALGO_COLLNET_DIRECT 2
#define NCCL_ALGO_COLLNET_CHAIN 3
#define NCCL_ALGO_NVLS 4
#define NCCL_ALGO_NVLS_TREE 5
#define NCCL_ALGO_PAT 6
#define NCCL_NUM_ALGORITHMS 7

#define NCCL_PROTO_UNDEF (-1)
#define NCCL_PROTO_LL 0
#define NCCL_PROTO_LL128 1
#define NCCL_PROTO_SIMPLE 2
#define NCCL_NUM_PROTOCOLS 3

/* A cost-table entry holding this value is unsupported or disabled. Writing anything else into it
 * re-enables the combination, which NCCL will then run; plugins must leave such entries alone. */
#define NCCL_ALGO_PROTO_IGNORE (-1.0f)

/* Element types (used by profiler v1, which reports the datatype as a number). */
typedef enum {
  ncclInt8 = 0,
  ncclChar = 0,
  ncclUint8 = 1,
  ncclInt32 = 2,
  ncclInt = 2,
  ncclUint32 = 3,
  ncclInt64 = 4,
  ncclUint64 = 5,
  ncclFloat16 = 6,
  ncclHalf = 6,
  ncclFloat32 = 7,
  ncclFloat = 7,
  ncclFloat64 = 8,
  ncclDouble = 8,
  ncclBfloat16 = 9,
  ncclFloat8e4m3 = 10,
  ncclFloat8e5m2 = 11,
  ncclNumTypes = 12
} ncclDataType_t;

/* ---- logging ------------------------------------------------------------------------------ */

typedef enum {
  NCCL_LOG_NONE = 0,
  NCCL_LOG_VERSION = 1,
  NCCL_LOG_WARN = 2,
  NCCL_LOG_INFO = 3,
  NCCL_LOG_ABORT = 4,
  NCCL_LOG_TRACE = 5
} ncclDebugLogLevel;

/* Subsystem bits for the logger's `flags` argument; NCCL_DEBUG_SUBSYS filters on them. A tuner
 * should log under NCCL_TUNING, a profiler under NCCL_PROFILE. */
typedef enum {
  NCCL_INIT = 0x1,
  NCCL_COLL = 0x2,
  NCCL_P2P = 0x4,
  NCCL_SHM = 0x8,
  NCCL_NET = 0x10,
  NCCL_GRAPH = 0x20,
  NCCL_TUNING = 0x40,
  NCCL_ENV = 0x80,
  NCCL_ALLOC = 0x100,
  NCCL_CALL = 0x200,
  NCCL_PROXY = 0x400,
  NCCL_NVLS = 0x800,
  NCCL_BOOTSTRAP = 0x1000,
  NCCL_REG = 0x2000,
  NCCL_PROFILE = 0x4000,
  NCCL_RAS = 0x8000,
  NCCL_DESTROY = 0x10000,
  NCCL_ALLOC_HOST = 0x20000,
  NCCL_ALL = ~0
} ncclDebugLogSubSys;

/* NCCL's logger. level: an ncclDebugLogLevel; flags: ncclDebugLogSubSys bits; file/line: where
 * the message comes from (NCCL passes a function or file name); fmt and the variadic arguments:
 * a printf-style message. It honours NCCL_DEBUG and NCCL_DEBUG_SUBSYS, so calling it for a
 * filtered-out level costs little. */
typedef void (*ncclDebugLogger_t)(ncclDebugLogLevel level, unsigned long flags, const char* file,
                                  int line, const char* fmt, ...);

/* ---- indices into the tuner constants (tuner v5+) ------------------------------------------ */

/* Hardware link class: first index of hwLatencies. */
#define NCCL_HW_NVLINK 0
#define NCCL_HW_PCI 1
#define NCCL_HW_NET 2
#define NCCL_NUM_HW_LINKS 3

/* GPU generation: row of the per-channel bandwidth caps (and of llMaxBws on one node). */
#define NCCL_VOLTA_COMPCAP_IDX 0
#define NCCL_AMPERE_COMPCAP_IDX 1
#define NCCL_HOPPER_COMPCAP_IDX 2
#define NCCL_BLACKWELL_COMPCAP_IDX 3
#define NCCL_NUM_COMPCAPS 4

/* Communicator scale: column of the bandwidth caps (nNodes 1, 2, 3 or more). */
#define NCCL_TUNING_SCALE_1NODE 0
#define NCCL_TUNING_SCALE_2NODES 1
#define NCCL_TUNING_SCALE_4NODES 2
#define NCCL_NUM_TUNING_SCALES 3

/* Static layout checks are written for x86_64/aarch64 Linux (LP64); other data models would lay
 * these structs out differently and NCCL does not support them anyway. */
#if defined(__LP64__) || defined(_LP64)
#define CCLPILOT_NCCL_LP64 1
#else
#define CCLPILOT_NCCL_LP64 0
#endif

#ifdef __cplusplus
}
#endif
#endif
