/*
 * Profiler ABI v2 onto the core. Collective fields are strings from v2 on; there are still no
 * KernelCh events and no communicator information at init, so only Coll events are requested.
 */
#include "nccl/profiler_v2.h"
#include "shim_common.h"

static ncclResult_t prof_v2_init(void** context, int* eActivationMask) {
  cp_prof_init_args args = {0};
  args.abi_version = 2;
  args.has_comm_id = 0;
  args.comm_name = NULL;
  args.n_nodes = args.n_ranks = args.rank = -1;
  args.gpu_timestamps = 0;
  args.log = NULL;
  cp_shim_prof_create(&args, context, eActivationMask, 0);
  return ncclSuccess;
}

static ncclResult_t prof_v2_start_event(void* context, void** eHandle,
                                        ncclProfilerEventDescr_v2_t* eDescr) {
  if (eHandle == NULL) return ncclSuccess;
  *eHandle = NULL;
  if (eDescr == NULL || eDescr->type != ncclProfileColl) return ncclSuccess;
  const ncclProfilerCollDescr_v2_t* c = &eDescr->coll;
  cp_coll_event ev;
  cp_shim_coll_from_strings(&ev, c->seqNumber, c->func, c->count, c->datatype, c->algo, c->proto,
                            c->nMaxChannels, -1);
  *eHandle = cp_prof_coll_start(cp_shim_prof_core(context), &ev);
  return ncclSuccess;
}

static ncclResult_t prof_v2_stop_event(void* eHandle) {
  if (eHandle != NULL) cp_prof_event_stop(eHandle);
  return ncclSuccess;
}

/* Coll events have no states the core uses. */
static ncclResult_t prof_v2_record_event_state(void* eHandle, ncclProfilerEventState_v2_t eState,
                                               ncclProfilerEventStateArgs_v2_t* eStateArgs) {
  return ncclSuccess;
}

static ncclResult_t prof_v2_finalize(void* context) {
  cp_shim_prof_destroy(context);
  return ncclSuccess;
}

CP_EXPORT const ncclProfiler_v2_t ncclProfiler_v2 = {
    .name = CP_PLUGIN_NAME,
    .init = prof_v2_init,
    .startEvent = prof_v2_start_event,
    .stopEvent = prof_v2_stop_event,
    .recordEventState = prof_v2_record_event_state,
    .finalize = prof_v2_finalize,
};
