/*
 * Shared by the export shims only (shim_tuner_vN.c, shim_profiler_vN.c): the bridge between
 * NCCL's vocabulary (plugin/include/nccl) and the core's (cp_core.h).
 *
 * Fail-open policy, which every shim follows: NCCL turns a non-success return from a tuner call
 * into a failed communicator or collective, with no fallback, so no shim ever returns anything but
 * ncclSuccess. A core failure becomes a NULL context (every core entry point accepts NULL and then
 * leaves NCCL's decisions alone) plus one log line.
 */
#ifndef CCLPILOT_SHIM_COMMON_H
#define CCLPILOT_SHIM_COMMON_H

#include <stdlib.h>

#include "cp_core.h"
#include "nccl/common.h"
#include "nccl/profiler_common.h"

/* The exported plugin objects; everything else in the library stays hidden. */
#define CP_EXPORT __attribute__((visibility("default")))

#define CP_PLUGIN_NAME "cclpilot"

/* The core uses NCCL's numbering so that no shim has to translate indices of the cost table. */
_Static_assert((int)CP_COLL_BROADCAST == (int)ncclFuncBroadcast, "collective numbering");
_Static_assert((int)CP_COLL_REDUCE == (int)ncclFuncReduce, "collective numbering");
_Static_assert((int)CP_COLL_ALLGATHER == (int)ncclFuncAllGather, "collective numbering");
_Static_assert((int)CP_COLL_REDUCESCATTER == (int)ncclFuncReduceScatter, "collective numbering");
_Static_assert((int)CP_COLL_ALLREDUCE == (int)ncclFuncAllReduce, "collective numbering");
_Static_assert(CP_NUM_COLLS == NCCL_NUM_FUNCTIONS, "collective count");
_Static_assert(CP_ALGO_TREE == NCCL_ALGO_TREE, "algorithm numbering");
_Static_assert(CP_ALGO_RING == NCCL_ALGO_RING, "algorithm numbering");
_Static_assert(CP_ALGO_COLLNET_DIRECT == NCCL_ALGO_COLLNET_DIRECT, "algorithm numbering");
_Static_assert(CP_ALGO_COLLNET_CHAIN == NCCL_ALGO_COLLNET_CHAIN, "algorithm numbering");
_Static_assert(CP_ALGO_NVLS == NCCL_ALGO_NVLS, "algorithm numbering");
_Static_assert(CP_ALGO_NVLS_TREE == NCCL_ALGO_NVLS_TREE, "algorithm numbering");
_Static_assert(CP_ALGO_PAT == NCCL_ALGO_PAT, "algorithm numbering");
_Static_assert(CP_NUM_ALGOS == NCCL_NUM_ALGORITHMS, "algorithm count");
_Static_assert(CP_PROTO_LL == NCCL_PROTO_LL, "protocol numbering");
_Static_assert(CP_PROTO_LL128 == NCCL_PROTO_LL128, "protocol numbering");
_Static_assert(CP_PROTO_SIMPLE == NCCL_PROTO_SIMPLE, "protocol numbering");
_Static_assert(CP_NUM_PROTOS == NCCL_NUM_PROTOCOLS, "protocol count");

/* cp_log_fn spells the level as int, NCCL as ncclDebugLogLevel; both are passed as one 32-bit
 * integer register, which is what makes handing NCCL's logger to the core sound. */
_Static_assert(sizeof(ncclDebugLogLevel) == sizeof(int), "logger level is int-sized");

static inline cp_log_fn cp_shim_logger(ncclDebugLogger_t nccl_log) {
  return (cp_log_fn)nccl_log;
}

/* Tuner init tail shared by all versions: create the context, and on failure hand NCCL a NULL
 * context instead of an error so that cclpilot can never fail a communicator. */
static inline void cp_shim_tuner_create(const cp_tuner_init_args* args, void** context) {
  cp_tuner_comm* ctx = NULL;
  cp_result r = cp_tuner_comm_create(args, &ctx);
  if (r != CP_OK) {
    ctx = NULL;
    if (args->log != NULL)
      args->log(NCCL_LOG_WARN, NCCL_TUNING, __func__, __LINE__,
                "cclpilot: tuner disabled for this communicator (%s); NCCL keeps its own "
                "decisions",
                cp_result_str(r));
  }
  if (context != NULL) *context = ctx;
  else cp_tuner_comm_destroy(ctx);
}

/* What a profiler shim hands NCCL as its context: the core's context plus the communicator size,
 * which the shim needs to turn an AllGather/ReduceScatter event's per-rank count into the bytes
 * getCollInfo saw (the core context is opaque). */
typedef struct {
  cp_prof_comm* core;
  int n_ranks; /* -1 when the ABI does not say (v1..v3) */
} cp_shim_prof_ctx;

static inline cp_prof_comm* cp_shim_prof_core(void* context) {
  return context != NULL ? ((cp_shim_prof_ctx*)context)->core : NULL;
}

static inline int cp_shim_prof_nranks(void* context) {
  return context != NULL ? ((cp_shim_prof_ctx*)context)->n_ranks : -1;
}

/* Profiler init tail shared by all versions. The mask NCCL passes is one process-wide int shared
 * by every communicator, so bits are only ever added: a context that wants nothing must not switch
 * off events another context asked for (unwanted events are dropped with a NULL handle anyway).
 * Events the loaded ABI version cannot deliver are not requested. On failure NCCL gets a NULL
 * context and no new mask bits rather than an error, so the communicator keeps its profiler slot
 * and every later call is a no-op. */
static inline void cp_shim_prof_create(const cp_prof_init_args* args, void** context,
                                       int* eActivationMask, int kernel_ch_supported) {
  cp_prof_comm* core = NULL;
  cp_prof_wants wants = {0, 0};
  cp_shim_prof_ctx* ctx = NULL;
  cp_result r = cp_prof_comm_create(args, &core, &wants);
  if (r == CP_OK) {
    ctx = (cp_shim_prof_ctx*)malloc(sizeof(*ctx));
    if (ctx == NULL) {
      cp_prof_comm_destroy(core);
      r = CP_ERR_NOMEM;
    } else {
      ctx->core = core;
      ctx->n_ranks = args->n_ranks;
    }
  }
  if (r != CP_OK) {
    wants.coll = 0;
    wants.kernel_ch = 0;
    if (args->log != NULL)
      args->log(NCCL_LOG_WARN, NCCL_PROFILE, __func__, __LINE__,
                "cclpilot: profiler disabled for this communicator (%s)", cp_result_str(r));
  }
  int bits = 0;
  if (wants.coll) bits |= ncclProfileColl;
  if (wants.kernel_ch && kernel_ch_supported) bits |= ncclProfileKernelCh;
  if (eActivationMask != NULL) *eActivationMask |= bits;
  if (context != NULL) *context = ctx;
  else if (ctx != NULL) {
    cp_prof_comm_destroy(ctx->core);
    free(ctx);
  }
}

static inline void cp_shim_prof_destroy(void* context) {
  if (context == NULL) return;
  cp_prof_comm_destroy(((cp_shim_prof_ctx*)context)->core);
  free(context);
}

/* Numeric enum value from profiler v1, or -1 when out of the core's range. */
static inline int cp_shim_small_enum(unsigned value, int count) {
  return value < (unsigned)count ? (int)value : -1;
}

/* A Coll event from profiler v2+, where func/datatype/algo/proto are NCCL's strings. n_ranks is
 * -1 when the ABI does not say (v2, v3): the core then cannot size AllGather/ReduceScatter and
 * reports 0 bytes, which it treats as unknown. */
static inline void cp_shim_coll_from_strings(cp_coll_event* ev, uint64_t seq, const char* func,
                                             size_t count, const char* datatype,
                                             const char* algo, const char* proto,
                                             unsigned n_channels, int n_ranks) {
  ev->seq = seq;
  ev->coll = cp_coll_from_name(func);
  ev->n_bytes =
      ev->coll >= 0 ? cp_coll_nbytes(ev->coll, count, cp_dtype_size_from_name(datatype), n_ranks)
                    : 0;
  ev->algo = cp_algo_from_name(algo);
  ev->proto = cp_proto_from_name(proto);
  ev->n_channels = (int)n_channels;
}

#endif
