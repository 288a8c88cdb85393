/*
 * NCCL tuner plugin ABI, version 5 (NCCL 2.28+): init receives the communicator id, the NVLink
 * domain shape and NCCL's tuning constants; the context becomes init's first argument and destroy
 * is renamed finalize. Exported object: `ncclTunerPlugin_v5`.
 */
#ifndef CCLPILOT_NCCL_TUNER_V5_H
#define CCLPILOT_NCCL_TUNER_V5_H

#include "common.h"
#include "tuner_v4.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Array extents of the v5 constants. They equal today's NCCL_NUM_* values but are pinned here
 * because they are part of this ABI version: a newer NCCL with more GPU generations gets a new
 * tuner version (upstream v7 has 5 compcap rows). */
#define NCCL_NUM_ALGORITHMS_V5 7
#define NCCL_NUM_PROTOCOLS_V5 3
#define NCCL_NUM_HW_LINKS_V5 3
#define NCCL_NUM_COMPCAPS_V5 4
#define NCCL_NUM_TUNING_SCALES_V5 3

#define NCCL_HW_NVLINK_V5 0
#define NCCL_HW_PCI_V5 1
#define NCCL_HW_NET_V5 2
#define NCCL_VOLTA_COMPCAP_IDX_V5 0
#define NCCL_AMPERE_COMPCAP_IDX_V5 1
#define NCCL_HOPPER_COMPCAP_IDX_V5 2
#define NCCL_BLACKWELL_COMPCAP_IDX_V5 3
#define NCCL_TUNING_SCALE_1NODE_V5 0
#define NCCL_TUNING_SCALE_2NODES_V5 1
#define NCCL_TUNING_SCALE_4NODES_V5 2

/* Shape of the communicator's NVLink domains (NCCL fills it with nNodes, minLocalRanks and
 * maxLocalRanks). Read-only for the plugin. */
typedef struct {
  int nNvlDomains;
  int minRanksPerNvlDomain;
  int maxRanksPerNvlDomain;
} ncclNvlDomainInfo_v5_t;

/* NCCL's cost-model constants for this communicator, already holding NCCL's defaults when init
 * runs. Edits made in init feed this communicator's cost model (it is read once, right after init);
 * later edits have no effect. Latencies in microseconds, bandwidths in GB/s. */
typedef struct {
  double baseLatencies[NCCL_NUM_ALGORITHMS_V5][NCCL_NUM_PROTOCOLS_V5];   /* [algo][proto] */
  double hwLatencies[NCCL_NUM_HW_LINKS_V5][NCCL_NUM_ALGORITHMS_V5][NCCL_NUM_PROTOCOLS_V5];
                                                                        /* [hw][algo][proto] */
  /* [row][scale]: row = compcap on one node; CPU vendor (0 Intel/other, 1 AMD/mixed) on more. */
  double llMaxBws[NCCL_NUM_COMPCAPS_V5][NCCL_NUM_TUNING_SCALES_V5];
  double perChMaxRingLL128Bws[NCCL_NUM_COMPCAPS_V5][NCCL_NUM_TUNING_SCALES_V5];
  double perChMaxTreeLL128Bws[NCCL_NUM_COMPCAPS_V5][NCCL_NUM_TUNING_SCALES_V5];
  double perChMaxTreeBws[NCCL_NUM_COMPCAPS_V5][NCCL_NUM_TUNING_SCALES_V5];
  double perChMaxNVLSTreeBws[NCCL_NUM_COMPCAPS_V5][NCCL_NUM_TUNING_SCALES_V5];
} ncclTunerConstants_v5_t;

/* init from v5 on (v6 keeps it).
 *   out: *ctx           per-communicator plugin state, passed back as `context` later;
 *   in:  commId         NCCL's commHash: equal on every rank of the communicator;
 *        nRanks, nNodes the communicator's sizes;
 *        logFunction    NCCL's logger;
 *        nvlDomainInfo  NVLink domain shape (read-only);
 *   in/out: constants   NCCL's tuning constants for this communicator (see above).
 * A failure makes the communicator's creation fail. */
typedef ncclResult_t (*ncclTunerInit_v5_fn)(void** ctx, uint64_t commId, size_t nRanks,
                                            size_t nNodes, ncclDebugLogger_t logFunction,
                                            ncclNvlDomainInfo_v5_t* nvlDomainInfo,
                                            ncclTunerConstants_v5_t* constants);

typedef struct {
  const char* name;
  ncclTunerInit_v5_fn init;
  /* Same contract as v4. */
  ncclTunerGetCollInfo_v4_fn getCollInfo;
  /* Communicator teardown; a failure makes NCCL skip freeing the communicator. */
  ncclResult_t (*finalize)(void* context);
} ncclTuner_v5_t;

#if CCLPILOT_NCCL_LP64 && !defined(__cplusplus)
_Static_assert(sizeof(ncclTuner_v5_t) == 4 * sizeof(void*), "ncclTuner_v5_t: 4 pointers");
_Static_assert(sizeof(ncclNvlDomainInfo_v5_t) == 12, "ncclNvlDomainInfo_v5_t: 3 ints");
_Static_assert(sizeof(ncclTunerConstants_v5_t) == 144 * sizeof(double),
               "ncclTunerConstants_v5_t: 144 doubles");
_Static_assert(sizeof(ncclTunerConstants_v5_t) == 1152, "ncclTunerConstants_v5_t: 1152 bytes");
_Static_assert(offsetof(ncclTunerConstants_v5_t, hwLatencies) == 168, "hwLatencies offset");
_Static_assert(offsetof(ncclTunerConstants_v5_t, llMaxBws) == 672, "llMaxBws offset");
_Static_assert(offsetof(ncclTunerConstants_v5_t, perChMaxRingLL128Bws) == 768,
               "perChMaxRingLL128Bws offset");
_Static_assert(offsetof(ncclTunerConstants_v5_t, perChMaxTreeLL128Bws) == 864,
               "perChMaxTreeLL128Bws offset");
_Static_assert(offsetof(ncclTunerConstants_v5_t, perChMaxTreeBws) == 960,
               "perChMaxTreeBws offset");
_Static_assert(offsetof(ncclTunerConstants_v5_t, perChMaxNVLSTreeBws) == 1056,
               "perChMaxNVLSTreeBws offset");
#endif

#ifdef __cplusplus
}
#endif
#endif
