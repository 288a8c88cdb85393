/*
 * NCCL profiler plugin ABI, version 2 (NCCL 2.24+). Exported object: `ncclProfiler_v2`.
 * Function, datatype, algorithm and protocol become strings ("AllReduce", "ncclFloat32",
 * "RING", "SIMPLE"); op, isCollnet and isNvls are gone. Functions and state args as in v1.
 */
#ifndef CCLPILOT_NCCL_PROFILER_V2_H
#define CCLPILOT_NCCL_PROFILER_V2_H

#include "profiler_v1.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const char* name;     /* NULL under NCCL 2.30's adapter */
  uint64_t commHash;    /* 0 under NCCL 2.30's adapter */
  uint64_t seqNumber;
  const char* func;
  void const* sendBuff;
  void* recvBuff;
  size_t count;
  int root;
  const char* datatype;
  size_t trafficBytes;  /* 0 under NCCL 2.30's adapter */
  uint8_t nMaxChannels; /* channels actually scheduled under NCCL 2.27+ */
  uint8_t nWarps;
  const char* algo;
  const char* proto;
} ncclProfilerCollDescr_v2_t;

/* Unchanged in v3. */
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

/* Same contracts as v1 (see profiler_v1.h). */
typedef struct {
  const char* name;
  ncclProfilerInit_v1_fn init;
  ncclResult_t (*startEvent)(void* context, void** eHandle, ncclProfilerEventDescr_v2_t* eDescr);
  ncclResult_t (*stopEvent)(void* eHandle);
  ncclResult_t (*recordEventState)(void* eHandle, ncclProfilerEventState_v2_t eState,
                                   ncclProfilerEventStateArgs_v2_t* eStateArgs);
  ncclResult_t (*finalize)(void* context);
} ncclProfiler_v2_t;

#if CCLPILOT_NCCL_LP64 && !defined(__cplusplus)
_Static_assert(sizeof(ncclProfiler_v2_t) == 6 * sizeof(void*), "ncclProfiler_v2_t: 6 pointers");
_Static_assert(offsetof(ncclProfilerEventDescr_v2_t, coll) == 24, "v2 union offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v2_t, func) == 24, "v2 coll.func offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v2_t, datatype) == 64, "v2 coll.datatype offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v2_t, nMaxChannels) == 80,
               "v2 coll.nMaxChannels offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v2_t, algo) == 88, "v2 coll.algo offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v2_t, proto) == 96, "v2 coll.proto offset");
_Static_assert(sizeof(ncclProfilerCollDescr_v2_t) == 104, "v2 coll size");
_Static_assert(sizeof(ncclProfilerEventDescr_v2_t) == 128, "v2 descriptor size");
#endif

#ifdef __cplusplus
}
#endif
#endif
