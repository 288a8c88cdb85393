/*
 * NCCL profiler plugin ABI, version 6 (NCCL 2.29+; the version NCCL uses without an adapter).
 * Exported object: `ncclProfiler_v6`. Adds copy-engine collective events (CeColl, CeSync,
 * CeBatch) and their states (25..30); functions and state args as in v5.
 */
#ifndef CCLPILOT_NCCL_PROFILER_V6_H
#define CCLPILOT_NCCL_PROFILER_V6_H

#include "profiler_v5.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  uint64_t seqNumber;
  const char* func;
  void const* sendBuff;
  void* recvBuff;
  size_t count;
  int root;
  const char* datatype;
  const char* syncStrategy; /* "MC" or "UC" */
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

/* Same contracts as v5 (see profiler_v5.h and profiler_v1.h). */
typedef struct {
  const char* name;
  ncclProfilerInit_v5_fn init;
  ncclResult_t (*startEvent)(void* context, void** eHandle, ncclProfilerEventDescr_v6_t* eDescr);
  ncclResult_t (*stopEvent)(void* eHandle);
  ncclResult_t (*recordEventState)(void* eHandle, ncclProfilerEventState_v6_t eState,
                                   ncclProfilerEventStateArgs_v6_t* eStateArgs);
  ncclResult_t (*finalize)(void* context);
} ncclProfiler_v6_t;

#if CCLPILOT_NCCL_LP64 && !defined(__cplusplus)
_Static_assert(sizeof(ncclProfiler_v6_t) == 6 * sizeof(void*), "ncclProfiler_v6_t: 6 pointers");
_Static_assert(offsetof(ncclProfilerEventDescr_v6_t, coll) == 24, "v6 union offset");
_Static_assert(offsetof(ncclProfilerCeCollDescr_v6_t, intraBatchSync) == 64,
               "v6 ceColl.intraBatchSync offset");
_Static_assert(offsetof(ncclProfilerCeCollDescr_v6_t, stream) == 80, "v6 ceColl.stream offset");
_Static_assert(sizeof(ncclProfilerCeCollDescr_v6_t) == 88, "v6 ceColl size");
_Static_assert(sizeof(ncclProfilerCeCollBatchDescr_v6_t) == 24, "v6 ceCollBatch size");
_Static_assert(sizeof(ncclProfilerEventDescr_v6_t) == 112, "v6 descriptor size");
#endif

#ifdef __cplusplus
}
#endif
#endif
