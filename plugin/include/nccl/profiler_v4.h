/*
 * NCCL profiler plugin ABI, version 4 (NCCL 2.27+). Exported object: `ncclProfiler_v4`.
 * init learns the communicator (name, hash, sizes, rank, logger); name/commHash leave the
 * descriptors; a collective reports the channels it actually ran on (nChannels); KernelCh events
 * carry GPU globaltimer timestamps in nanoseconds (start in the descriptor, stop in the
 * ncclProfilerKernelChStop state args).
 */
#ifndef CCLPILOT_NCCL_PROFILER_V4_H
#define CCLPILOT_NCCL_PROFILER_V4_H

#include "profiler_v3.h"

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
  uint8_t nChannels;    /* channels actually scheduled (0 for CollNet) */
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

/* Unchanged through v6. */
typedef struct {
  uint8_t channelId;
  uint64_t pTimer;      /* GPU globaltimer (ns) when the channel started the work */
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

/* Unchanged through v6. */
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
    uint64_t pTimer;    /* with ncclProfilerKernelChStop: GPU globaltimer (ns) at the end */
  } kernelCh;
} ncclProfilerEventStateArgs_v4_t;

typedef struct {
  const char* name;

  /* Per-communicator setup.
   *   out: *context;  in/out: *eActivationMask (process-wide, see profiler_v1.h);
   *   in:  commName (may be NULL), commHash (= the tuner's commId), nNodes, nranks, rank, logfn.
   * A failure makes NCCL unload the profiler and carry on. */
  ncclResult_t (*init)(void** context, int* eActivationMask, const char* commName,
                       uint64_t commHash, int nNodes, int nranks, int rank,
                       ncclDebugLogger_t logfn);
  /* startEvent/stopEvent/recordEventState/finalize: same contracts as v1. */
  ncclResult_t (*startEvent)(void* context, void** eHandle, ncclProfilerEventDescr_v4_t* eDescr);
  ncclResult_t (*stopEvent)(void* eHandle);
  ncclResult_t (*recordEventState)(void* eHandle, ncclProfilerEventState_v4_t eState,
                                   ncclProfilerEventStateArgs_v4_t* eStateArgs);
  ncclResult_t (*finalize)(void* context);
} ncclProfiler_v4_t;

#if CCLPILOT_NCCL_LP64 && !defined(__cplusplus)
_Static_assert(sizeof(ncclProfiler_v4_t) == 6 * sizeof(void*), "ncclProfiler_v4_t: 6 pointers");
_Static_assert(offsetof(ncclProfilerEventDescr_v4_t, rank) == 16, "v4 rank offset");
_Static_assert(offsetof(ncclProfilerEventDescr_v4_t, coll) == 24, "v4 union offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v4_t, count) == 32, "v4 coll.count offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v4_t, datatype) == 48, "v4 coll.datatype offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v4_t, nChannels) == 56, "v4 coll.nChannels offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v4_t, algo) == 64, "v4 coll.algo offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v4_t, proto) == 72, "v4 coll.proto offset");
_Static_assert(sizeof(ncclProfilerCollDescr_v4_t) == 80, "v4 coll size");
_Static_assert(offsetof(ncclProfilerKernelChDescr_v4_t, pTimer) == 8, "kernelCh.pTimer offset");
_Static_assert(sizeof(ncclProfilerEventDescr_v4_t) == 104, "v4 descriptor size");
_Static_assert(sizeof(ncclProfilerEventStateArgs_v4_t) == 8, "v4 state args size");
#endif

#ifdef __cplusplus
}
#endif
#endif
