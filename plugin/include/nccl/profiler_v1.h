/*
 * NCCL profiler plugin ABI, version 1 (NCCL 2.23+). Exported object: `ncclProfiler_v1`.
 * In v1 a collective's function, datatype, algorithm and protocol are small integers (ncclFunc_t,
 * ncclDataType_t, NCCL_ALGO_*, NCCL_PROTO_*).
 *
 * Each union member is given a named type so that later versions can reuse the ones that did not
 * change; the member names inside the descriptor are NCCL's.
 */
#ifndef CCLPILOT_NCCL_PROFILER_V1_H
#define CCLPILOT_NCCL_PROFILER_V1_H

#include "common.h"
#include "profiler_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A collective task. Under NCCL 2.30's adapter name is NULL, commHash 0, trafficBytes 0 and op 0;
 * nMaxChannels holds the channels actually scheduled. */
typedef struct {
  const char* name;
  uint64_t commHash;
  uint64_t seqNumber;   /* per communicator and per function; equal on every rank */
  uint8_t func;         /* ncclFunc_t */
  void const* sendBuff;
  void* recvBuff;
  size_t count;         /* AllGather/Broadcast: bytes; ReduceScatter: per-rank count */
  int root;
  uint8_t datatype;     /* ncclDataType_t */
  uint32_t op;
  size_t trafficBytes;
  uint8_t nMaxChannels;
  uint8_t nWarps;
  uint8_t algo;         /* NCCL_ALGO_* */
  uint8_t proto;        /* NCCL_PROTO_* */
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

/* Unchanged through v6. */
typedef struct {
  ncclPid_t pid;        /* process that posted the operation */
  uint8_t channelId;
  int peer;             /* remote rank */
  int nSteps;
  int chunkSize;        /* bytes moved per step */
  int isSend;
} ncclProfilerProxyOpDescr_v1_t;

/* Unchanged through v6. */
typedef struct {
  int step;
} ncclProfilerProxyStepDescr_v1_t;

/* What startEvent describes. `type` selects the union member; Group and ProxyCtrl events carry no
 * member. */
typedef struct {
  uint8_t type;         /* one ncclProfile* bit */
  void* parentObj;      /* handle the plugin returned for the parent event, or NULL */
  int rank;
  union {
    ncclProfilerCollDescr_v1_t coll;
    ncclProfilerP2pDescr_v1_t p2p;
    ncclProfilerProxyOpDescr_v1_t proxyOp;
    ncclProfilerProxyStepDescr_v1_t proxyStep;
  };
} ncclProfilerEventDescr_v1_t;

typedef ncclProfilerEventState_t ncclProfilerEventState_v1_t;

/* Extra data that comes with some states; which member is valid follows from the state. */
typedef union {
  struct {
    size_t transSize;
    int steps;
  } proxyOp;
  struct {
    int appendedProxyOps;
  } proxyCtrl;
} ncclProfilerEventStateArgs_v1_t;

/* init for v1..v3.
 *   out: *context          per-communicator plugin state;
 *   in/out: *eActivationMask  points at one process-wide int shared by all communicators: the
 *        plugin ORs in the ncclProfile* bits it wants. The last writer wins, and the plugin may
 *        keep the pointer and change the mask later.
 * A failure makes NCCL unload the profiler and carry on without it. */
typedef ncclResult_t (*ncclProfilerInit_v1_fn)(void** context, int* eActivationMask);

typedef struct {
  const char* name;
  ncclProfilerInit_v1_fn init;

  /* An event begins.
   *   in:  context  from init;  eDescr  what happened (valid only during the call);
   *   out: *eHandle the plugin's handle for the event, or NULL to drop it: NCCL then never calls
   *        stopEvent/recordEventState for it and its children get parentObj = NULL. */
  ncclResult_t (*startEvent)(void* context, void** eHandle, ncclProfilerEventDescr_v1_t* eDescr);

  /* An event ends. in: eHandle (never NULL). */
  ncclResult_t (*stopEvent)(void* eHandle);

  /* An event changes state.
   *   in:  eHandle, eState, eStateArgs (member selected by eState; may be NULL). */
  ncclResult_t (*recordEventState)(void* eHandle, ncclProfilerEventState_v1_t eState,
                                   ncclProfilerEventStateArgs_v1_t* eStateArgs);

  /* Communicator teardown. in: context from init. */
  ncclResult_t (*finalize)(void* context);
} ncclProfiler_v1_t;

#if CCLPILOT_NCCL_LP64 && !defined(__cplusplus)
_Static_assert(sizeof(ncclProfiler_v1_t) == 6 * sizeof(void*), "ncclProfiler_v1_t: 6 pointers");
_Static_assert(offsetof(ncclProfilerEventDescr_v1_t, parentObj) == 8, "v1 parentObj offset");
_Static_assert(offsetof(ncclProfilerEventDescr_v1_t, rank) == 16, "v1 rank offset");
_Static_assert(offsetof(ncclProfilerEventDescr_v1_t, coll) == 24, "v1 union offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v1_t, func) == 24, "v1 coll.func offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v1_t, count) == 48, "v1 coll.count offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v1_t, datatype) == 60, "v1 coll.datatype offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v1_t, trafficBytes) == 72,
               "v1 coll.trafficBytes offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v1_t, nMaxChannels) == 80,
               "v1 coll.nMaxChannels offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v1_t, algo) == 82, "v1 coll.algo offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v1_t, proto) == 83, "v1 coll.proto offset");
_Static_assert(offsetof(ncclProfilerCollDescr_v1_t, isNvls) == 88, "v1 coll.isNvls offset");
_Static_assert(sizeof(ncclProfilerCollDescr_v1_t) == 96, "v1 coll size");
_Static_assert(sizeof(ncclProfilerProxyOpDescr_v1_t) == 24, "proxyOp size");
_Static_assert(sizeof(ncclProfilerEventDescr_v1_t) == 120, "v1 descriptor size");
_Static_assert(sizeof(ncclProfilerEventStateArgs_v1_t) == 16, "v1 state args size");
#endif

#ifdef __cplusplus
}
#endif
#endif
