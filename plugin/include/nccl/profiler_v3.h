/*
 * NCCL profiler plugin ABI, version 3 (NCCL 2.26+). Exported object: `ncclProfiler_v3`.
 * trafficBytes is gone; KernelCh and NetPlugin events appear. v3 KernelCh events carry no GPU
 * timestamps (their start/stop are when NCCL's proxy thread noticed the kernel's progress).
 * Functions and state args as in v1.
 */
#ifndef CCLPILOT_NCCL_PROFILER_V3_H
#define CCLPILOT_NCCL_PROFILER_V3_H

#include "profiler_v2.h"

#ifdef __cplusplus
extern "C" {
#endif

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

/* Unchanged through v6. id: low 16 bits the net plugin's event version, above them its type
 * (NCCL_PROFILER_NET_TYPE_*); data: the net plugin's own descriptor. */
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

/* Same contracts as v1 (see profiler_v1.h). */
typedef struct {
  const char* name;
  ncclProfilerInit_v1_fn init;
  ncclResult_t (*startEvent)(void* context, void** eHandle, ncclProfilerEventDescr_v3_t* eDescr);
  ncclResult_t (*stopEvent)(void* eHandle);
  ncclResult_t (*recordEventState)(void* eHandle, ncclProfilerEventState_v3_t eState,
                                   ncclProfilerEventStateArgs_v3_t* eStateArgs);
  ncclResult_t (*finalize)(void* context);
} ncclProfiler_v3_t;

#if CCLPILOT_NCCL_LP64 && !defined(__cplusplus)
_Static_assert(sizeof(ncclProfiler_v3_t) == 6 * sizeof(void*), "ncclProfiler_v3_t: 6 pointers");
_Static_assert(offsetof(ncclProfilerEventDescr_v3_t, coll) == 24, "v3 union offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v3_t, datatype) == 64, "v3 coll.datatype offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v3_t, nMaxChannels) == 72,
               "v3 coll.nMaxChannels offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v3_t, algo) == 80, "v3 coll.algo offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v3_t, proto) == 88, "v3 coll.proto offset");
_Static_assert(sizeof(ncclProfilerCollDescr_v3_t) == 96, "v3 coll size");
_Static_assert(sizeof(ncclProfilerEventDescr_v3_t) == 120, "v3 descriptor size");
#endif

#ifdef __cplusplus
}
#endif
#endif
