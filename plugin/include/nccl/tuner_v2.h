/*
 * NCCL tuner plugin ABI, version 2 (NCCL 2.21 .. today, through an adapter in NCCL).
 *
 * NCCL looks up the data object `ncclTunerPlugin_v2` (an instance of ncclTuner_v2_t, may be const)
 * after failing to find v6..v3. The function table's member order is the ABI.
 */
#ifndef CCLPILOT_NCCL_TUNER_V2_H
#define CCLPILOT_NCCL_TUNER_V2_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  /* Plugin name, printed by NCCL in its "TUNER/Plugin: Using <name>" log line. */
  const char* name;

  /* Called once per communicator during its creation.
   *   in:  nRanks, nNodes  the communicator's rank and node counts;
   *        logFunction     NCCL's logger (see ncclDebugLogger_t);
   *   out: *context        the plugin's per-communicator state, handed back on every later call.
   * Any failure makes the communicator's creation fail. */
  ncclResult_t (*init)(size_t nRanks, size_t nNodes, ncclDebugLogger_t logFunction,
                       void** context);

  /* Called on the host before each collective launch (once per aggregate of grouped ops).
   *   in:  context         from init;
   *        collType        Broadcast..AllReduce only;
   *        nBytes          bytes the cost model sees (aggregated size when ops are merged);
   *        collNetSupport, nvlsSupport  whether those algorithms are usable for this call;
   *        numPipeOps      NCCL's estimate of collectives per channel in this group;
   *   out: *algorithm, *protocol  the plugin's choice, or left untouched / NCCL_ALGO_UNDEF /
   *        NCCL_PROTO_UNDEF to keep NCCL's; a choice NCCL marks unsupported is dropped by NCCL;
   *   in/out: *nChannels   0 on entry; a non-zero value replaces NCCL's channel count.
   * A failure makes the collective fail: NCCL does not fall back. */
  ncclResult_t (*getCollInfo)(void* context, ncclFunc_t collType, size_t nBytes,
                              int collNetSupport, int nvlsSupport, int numPipeOps, int* algorithm,
                              int* protocol, int* nChannels);

  /* Called when the communicator is destroyed; frees what init allocated. A failure makes NCCL
   * skip freeing the communicator. */
  ncclResult_t (*destroy)(void* context);
} ncclTuner_v2_t;

#if CCLPILOT_NCCL_LP64 && !defined(__cplusplus)
_Static_assert(sizeof(ncclTuner_v2_t) == 4 * sizeof(void*), "ncclTuner_v2_t: 4 pointers");
_Static_assert(offsetof(ncclTuner_v2_t, destroy) == 24, "ncclTuner_v2_t.destroy offset");
#endif

#ifdef __cplusplus
}
#endif
#endif
