/*
 * NCCL profiler plugin ABI, version 5 (NCCL 2.28+). Exported object: `ncclProfiler_v5`.
 * init takes commId second; the descriptor's `type` widens to 64 bits; API events appear
 * (GroupApi, CollApi, P2pApi, KernelLaunch) and a Coll event's parent becomes its CollApi event
 * (the v4 parent, the Group, moves to coll.parentGroup). State args as in v4.
 */
#ifndef CCLPILOT_NCCL_PROFILER_V5_H
#define CCLPILOT_NCCL_PROFILER_V5_H

#include <stdbool.h>

#include "profiler_v4.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Unchanged in v6. */
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
  void* parentGroup;    /* the Group event's handle */
} ncclProfilerCollDescr_v5_t;

/* Unchanged in v6. */
typedef struct {
  const char* func;
  void* buff;
  const char* datatype;
  size_t count;
  int peer;
  uint8_t nChannels;
  void* parentGroup;
} ncclProfilerP2pDescr_v5_t;

/* The API-level events (unchanged in v6). */
typedef struct {
  bool graphCaptured;
  int groupDepth;       /* 1 for the implicit group around an ungrouped call */
} ncclProfilerGroupApiDescr_v5_t;

typedef struct {
  const char* func;     /* the user's call, before NCCL's own conversions */
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
  uint64_t type;        /* one ncclProfile* bit */
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

/* init for v5 and v6.
 *   out: *context;  in: commId (NCCL's commHash, equal to the tuner's commId);
 *   in/out: *eActivationMask (process-wide, see profiler_v1.h);
 *   in:  commName (may be NULL), nNodes, nranks, rank, logfn.
 * A failure makes NCCL unload the profiler and carry on. */
typedef ncclResult_t (*ncclProfilerInit_v5_fn)(void** context, uint64_t commId,
                                               int* eActivationMask, const char* commName,
                                               int nNodes, int nranks, int rank,
                                               ncclDebugLogger_t logfn);

typedef struct {
  const char* name;
  ncclProfilerInit_v5_fn init;
  /* startEvent/stopEvent/recordEventState/finalize: same contracts as v1. */
  ncclResult_t (*startEvent)(void* context, void** eHandle, ncclProfilerEventDescr_v5_t* eDescr);
  ncclResult_t (*stopEvent)(void* eHandle);
  ncclResult_t (*recordEventState)(void* eHandle, ncclProfilerEventState_v5_t eState,
                                   ncclProfilerEventStateArgs_v5_t* eStateArgs);
  ncclResult_t (*finalize)(void* context);
} ncclProfiler_v5_t;

#if CCLPILOT_NCCL_LP64 && !defined(__cplusplus)
_Static_assert(sizeof(ncclProfiler_v5_t) == 6 * sizeof(void*), "ncclProfiler_v5_t: 6 pointers");
_Static_assert(offsetof(ncclProfilerEventDescr_v5_t, parentObj) == 8, "v5 parentObj offset");
_Static_assert(offsetof(ncclProfilerEventDescr_v5_t, rank) == 16, "v5 rank offset");
_Static_assert(offsetof(ncclProfilerEventDescr_v5_t, coll) == 24, "v5 union offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v5_t, nChannels) == 56, "v5 coll.nChannels offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v5_t, algo) == 64, "v5 coll.algo offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v5_t, proto) == 72, "v5 coll.proto offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v5_t, parentGroup) == 80,
               "v5 coll.parentGroup offset");
_Static_assert(sizeof(ncclProfilerCollDescr_v5_t) == 88, "v5 coll size");
_Static_assert(sizeof(ncclProfilerCollApiDescr_v5_t) == 48, "v5 collApi size");
_Static_assert(sizeof(ncclProfilerEventDescr_v5_t) == 112, "v5 descriptor size");
#endif

#ifdef __cplusplus
}
#endif
#endif
