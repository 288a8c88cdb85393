/*
 * Profiler ABI v1 onto the core. v1 reports a collective's function, datatype, algorithm and
 * protocol as numbers, knows no KernelCh events and gives init no communicator information, so
 * only Coll events are requested and GPU timing is unavailable.
 */
#include "nccl/profiler_v1.h"
#include "shim_common.h"

/* Element sizes by ncclDataType_t value; v1 has no datatype strings to hand to the core. */
static int dtype_size_v1(unsigned datatype) {
  static const int sizes[ncclNumTypes] = {1, 1, 4, 4, 8, 8, 2, 4, 8, 2, 1, 1};
  return datatype < (unsigned)ncclNumTypes ? sizes[datatype] : -1;
}

static ncclResult_t prof_v1_init(void** context, int* eActivationMask) {
  cp_prof_init_args args = {0};
  args.abi_version = 1;
  args.has_comm_id = 0;
  args.comm_name = NULL;
  args.n_nodes = args.n_ranks = args.rank = -1;
  args.gpu_timestamps = 0;
  args.log = NULL;
  cp_shim_prof_create(&args, context, eActivationMask, 0);
  return ncclSuccess;
}

static ncclResult_t prof_v1_start_event(void* context, void** eHandle,
                                        ncclProfilerEventDescr_v1_t* eDescr) {
  if (eHandle == NULL) return ncclSuccess;
  *eHandle = NULL;
  if (eDescr == NULL || eDescr->type != ncclProfileColl) return ncclSuccess;
  const ncclProfilerCollDescr_v1_t* c = &eDescr->coll;
  cp_coll_event ev;
  ev.seq = c->seqNumber;
  ev.coll = cp_shim_small_enum(c->func, CP_NUM_COLLS);
  ev.n_bytes = ev.coll >= 0 ? cp_coll_nbytes(ev.coll, c->count, dtype_size_v1(c->datatype), -1)
                            : 0;
  ev.algo = cp_shim_small_enum(c->algo, CP_NUM_ALGOS);
  ev.proto = cp_shim_small_enum(c->proto, CP_NUM_PROTOS);
  ev.n_channels = c->nMaxChannels;
  *eHandle = cp_prof_coll_start(cp_shim_prof_core(context), &ev);
  return ncclSuccess;
}

static ncclResult_t prof_v1_stop_event(void* eHandle) {
  if (eHandle != NULL) cp_prof_event_stop(eHandle);
  return ncclSuccess;
}

/* Coll events have no states the core uses. */
static ncclResult_t prof_v1_record_event_state(void* eHandle, ncclProfilerEventState_v1_t eState,
                                               ncclProfilerEventStateArgs_v1_t* eStateArgs) {
  return ncclSuccess;
}

static ncclResult_t prof_v1_finalize(void* context) {
  cp_shim_prof_destroy(context);
  return ncclSuccess;
}

CP_EXPORT const ncclProfiler_v1_t ncclProfiler_v1 = {
    .name = CP_PLUGIN_NAME,
    .init = prof_v1_init,
    .startEvent = prof_v1_start_event,
    .stopEvent = prof_v1_stop_event,
    .recordEventState = prof_v1_record_event_state,
    .finalize = prof_v1_finalize,
};
