/*
 * Numbering shared by every version of NCCL's profiler plugin ABI: event type bits and event
 * state values. Each value keeps its number across versions (they are ABI); the comment says which
 * ABI version introduced it. A profiler must only rely on values its version knows: NCCL's
 * adapters filter newer event types out before calling an older plugin.
 */
#ifndef CCLPILOT_NCCL_PROFILER_COMMON_H
#define CCLPILOT_NCCL_PROFILER_COMMON_H

#include <sys/types.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Event types. Each is both the descriptor's `type` value and the bit to set in the activation
 * mask. Asking for a type also makes NCCL emit its ancestors (e.g. KernelCh implies Coll). */
enum {
  ncclProfileGroup = (1 << 0),        /* v1: one per kernel plan */
  ncclProfileColl = (1 << 1),         /* v1: one per collective task (host, enqueue time) */
  ncclProfileP2p = (1 << 2),          /* v1: one per point-to-point task */
  ncclProfileProxyOp = (1 << 3),      /* v1: proxy thread, per channel per network op */
  ncclProfileProxyStep = (1 << 4),    /* v1: proxy thread, per network step */
  ncclProfileProxyCtrl = (1 << 5),    /* v1: proxy thread state changes */
  ncclProfileKernelCh = (1 << 6),     /* v3: per channel per task; GPU timestamps from v4 */
  ncclProfileNetPlugin = (1 << 7),    /* v3: network plugin callbacks */
  ncclProfileGroupApi = (1 << 8),     /* v5 */
  ncclProfileCollApi = (1 << 9),      /* v5 */
  ncclProfileP2pApi = (1 << 10),      /* v5 */
  ncclProfileKernelLaunch = (1 << 11),/* v5 */
  ncclProfileCeColl = (1 << 12),      /* v6 */
  ncclProfileCeSync = (1 << 13),      /* v6 */
  ncclProfileCeBatch = (1 << 14)      /* v6 */
};

/* netPlugin.id: the low 16 bits hold the net plugin's own event version, the bits above its
 * transport type. */
#define NCCL_PROFILER_NET_VER_BITS (16)
#define NCCL_PROFILER_NET_VER_MASK (~0U >> NCCL_PROFILER_NET_VER_BITS)
#define NCCL_PROFILER_NET_TYPE_MASK (~0U << NCCL_PROFILER_NET_VER_BITS)
#define NCCL_PROFILER_NET_TYPE_IB (1U << NCCL_PROFILER_NET_VER_BITS)
#define NCCL_PROFILER_NET_TYPE_SOCK (2U << NCCL_PROFILER_NET_VER_BITS)

/* State values passed to recordEventState. Values 0..18 have kept their numbers since v1 (they
 * were implicit before NCCL 2.27); every version's state type is this enum, so the ABI is the same
 * int-sized argument throughout. */
typedef enum {
  ncclProfilerProxyOpSendPosted = 0,        /* v1; deprecated from v4 */
  ncclProfilerProxyOpSendRemFifoWait = 1,   /* v1; deprecated from v4 */
  ncclProfilerProxyOpSendTransmitted = 2,   /* v1; deprecated from v4 */
  ncclProfilerProxyOpSendDone = 3,          /* v1; deprecated from v4 */
  ncclProfilerProxyOpRecvPosted = 4,        /* v1; deprecated from v4 */
  ncclProfilerProxyOpRecvReceived = 5,      /* v1; deprecated from v4 */
  ncclProfilerProxyOpRecvTransmitted = 6,   /* v1; deprecated from v4 */
  ncclProfilerProxyOpRecvDone = 7,          /* v1; deprecated from v4 */
  ncclProfilerProxyStepSendGPUWait = 8,     /* v1 */
  ncclProfilerProxyStepSendWait = 9,        /* v1 */
  ncclProfilerProxyStepRecvWait = 10,       /* v1 */
  ncclProfilerProxyStepRecvFlushWait = 11,  /* v1 */
  ncclProfilerProxyStepRecvGPUWait = 12,    /* v1 */
  ncclProfilerProxyCtrlIdle = 13,           /* v1 */
  ncclProfilerProxyCtrlActive = 14,         /* v1 */
  ncclProfilerProxyCtrlSleep = 15,          /* v1 */
  ncclProfilerProxyCtrlWakeup = 16,         /* v1 */
  ncclProfilerProxyCtrlAppend = 17,         /* v1 */
  ncclProfilerProxyCtrlAppendEnd = 18,      /* v1 */
  ncclProfilerProxyOpInProgress_v4 = 19,    /* v4 */
  ncclProfilerProxyStepSendPeerWait_v4 = 20,/* v4 */
  ncclProfilerNetPluginUpdate = 21,         /* v4 */
  ncclProfilerKernelChStop = 22,            /* v4: args carry the GPU stop timestamp */
  ncclProfilerGroupStartApiStop = 23,       /* v5 */
  ncclProfilerGroupEndApiStart = 24,        /* v5 */
  ncclProfilerCeCollStart = 25,             /* v6 */
  ncclProfilerCeCollComplete = 26,          /* v6 */
  ncclProfilerCeSyncStart = 27,             /* v6 */
  ncclProfilerCeSyncComplete = 28,          /* v6 */
  ncclProfilerCeBatchStart = 29,            /* v6 */
  ncclProfilerCeBatchComplete = 30          /* v6 */
} ncclProfilerEventState_t;

/* The process id type NCCL uses in proxyOp descriptors (pid_t on Linux). */
typedef pid_t ncclPid_t;

#if CCLPILOT_NCCL_LP64 && !defined(__cplusplus)
_Static_assert(sizeof(ncclProfilerEventState_t) == sizeof(int), "state enum is int-sized");
_Static_assert(sizeof(ncclPid_t) == 4, "pid_t is 32-bit on Linux");
#endif

#ifdef __cplusplus
}
#endif
#endif
