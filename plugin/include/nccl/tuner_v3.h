/*
 * NCCL tuner plugin ABI, version 3 (NCCL 2.22+): getCollInfo works on NCCL's cost table instead of
 * returning an algorithm and protocol. Exported object: `ncclTunerPlugin_v3`.
 */
#ifndef CCLPILOT_NCCL_TUNER_V3_H
#define CCLPILOT_NCCL_TUNER_V3_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const char* name;

  /* Same contract as v2: per-communicator setup; *context is the output. Failing fails the
   * communicator. */
  ncclResult_t (*init)(size_t nRanks, size_t nNodes, ncclDebugLogger_t logFunction,
                       void** context);

  /* Called on the host before each collective launch.
   *   in:  context, collType (Broadcast..AllReduce), nBytes, numPipeOps as in v2;
   *        numAlgo, numProto  dimensions of the table (7 and 3 in current NCCL);
   *   in/out: collCostTable   really a contiguous float[numAlgo][numProto] in microseconds,
   *        type-erased to float**: cast it to float (*)[NCCL_NUM_PROTOCOLS], never index it as an
   *        array of row pointers. NCCL runs the cheapest entry >= 0; entries equal to
   *        NCCL_ALGO_PROTO_IGNORE are unsupported and must not be overwritten. Valid only during
   *        the call.
   *   in/out: *nChannels      0 on entry; non-zero replaces NCCL's channel count (keep 1..64).
   * A failure makes the collective fail. */
  ncclResult_t (*getCollInfo)(void* context, ncclFunc_t collType, size_t nBytes, int numPipeOps,
                              float** collCostTable, int numAlgo, int numProto, int* nChannels);

  /* Communicator teardown. */
  ncclResult_t (*destroy)(void* context);
} ncclTuner_v3_t;

#if CCLPILOT_NCCL_LP64 && !defined(__cplusplus)
_Static_assert(sizeof(ncclTuner_v3_t) == 4 * sizeof(void*), "ncclTuner_v3_t: 4 pointers");
_Static_assert(offsetof(ncclTuner_v3_t, getCollInfo) == 16, "ncclTuner_v3_t.getCollInfo offset");
#endif

#ifdef __cplusplus
}
#endif
#endif
