/*
 * NCCL tuner plugin ABI, version 6 (NCCL 2.30+; the version NCCL uses without an adapter):
 * adds an optional getChunkSize as the fifth member. Exported object: `ncclTunerPlugin_v6`.
 */
#ifndef CCLPILOT_NCCL_TUNER_V6_H
#define CCLPILOT_NCCL_TUNER_V6_H

#include "common.h"
#include "tuner_v5.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Unchanged from v5. */
typedef ncclNvlDomainInfo_v5_t ncclNvlDomainInfo_v6_t;
typedef ncclTunerConstants_v5_t ncclTunerConstants_v6_t;

typedef struct {
  const char* name;
  /* Same contract as v5. NCCL calls init, getCollInfo and finalize without a NULL check. */
  ncclTunerInit_v5_fn init;
  ncclTunerGetCollInfo_v4_fn getCollInfo;
  ncclResult_t (*finalize)(void* context);

  /* Optional (may be NULL). Called while NCCL splits a scheduled collective into chunks, after
   * it computed its own chunk size for the chosen algorithm and protocol; up to three times per
   * task (one per channel part, with nChannels = 1), once with the full size for CollNet.
   *   in:  context, collType, nBytes (this part's bytes), algo, proto (what will run), nChannels;
   *   in/out: *chunkSize  NCCL's chunk size in bytes on entry. NCCL clamps the result to its
   *        buffer ceiling and rounds it down to the protocol grain (LL 16, LL128 1920, Simple 512
   *        bytes); a value below one grain becomes 0 and breaks the launch.
   * A failure makes the collective fail. */
  ncclResult_t (*getChunkSize)(void* context, ncclFunc_t collType, size_t nBytes, int algo,
                               int proto, int nChannels, size_t* chunkSize);
} ncclTuner_v6_t;

#if CCLPILOT_NCCL_LP64 && !defined(__cplusplus)
_Static_assert(sizeof(ncclTuner_v6_t) == 5 * sizeof(void*), "ncclTuner_v6_t: 5 pointers");
_Static_assert(offsetof(ncclTuner_v6_t, getChunkSize) == 32, "ncclTuner_v6_t.getChunkSize offset");
#endif

#ifdef __cplusplus
}
#endif
#endif
