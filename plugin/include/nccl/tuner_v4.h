/*
 * NCCL tuner plugin ABI, version 4 (NCCL 2.24+): getCollInfo gains regBuff.
 * Exported object: `ncclTunerPlugin_v4`.
 */
#ifndef CCLPILOT_NCCL_TUNER_V4_H
#define CCLPILOT_NCCL_TUNER_V4_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* getCollInfo from v4 on (v5 and v6 keep this exact signature).
 *   in:  regBuff  1 when this rank's buffers are registered (or a CUDA graph is being captured).
 *        It is rank-local and may differ between ranks: basing a decision on it lets ranks
 *        disagree, which hangs or corrupts the collective.
 *   all other arguments as in v3 (collCostTable in/out, *nChannels in/out). */
typedef ncclResult_t (*ncclTunerGetCollInfo_v4_fn)(void* context, ncclFunc_t collType,
                                                    size_t nBytes, int numPipeOps,
                                                    float** collCostTable, int numAlgo,
                                                    int numProto, int regBuff, int* nChannels);

typedef struct {
  const char* name;
  /* Same contract as v3. */
  ncclResult_t (*init)(size_t nRanks, size_t nNodes, ncclDebugLogger_t logFunction,
                       void** context);
  ncclTunerGetCollInfo_v4_fn getCollInfo;
  ncclResult_t (*destroy)(void* context);
} ncclTuner_v4_t;

#if CCLPILOT_NCCL_LP64 && !defined(__cplusplus)
_Static_assert(sizeof(ncclTuner_v4_t) == 4 * sizeof(void*), "ncclTuner_v4_t: 4 pointers");
_Static_assert(offsetof(ncclTuner_v4_t, destroy) == 24, "ncclTuner_v4_t.destroy offset");
#endif

#ifdef __cplusplus
}
#endif
#endif
