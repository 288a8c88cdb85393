/*
 * Profiler ABI v3 onto the core. KernelCh events exist but carry no GPU timestamps: their
 * start/stop are when NCCL's proxy thread noticed the kernel's progress, so the core is told
 * gpu_timestamps = 0 and gets 0 as the start time.
 */
#include "nccl/profiler_v3.h"
#include "shim_common.h"

static ncclResult_t prof_v3_init(void** context, int* eActivationMask) {
  cp_prof_init_args args = {0};
  args.abi_version = 3;
  args.has_comm_id = 0;
  args.comm_name = NULL;
  args.n_nodes = args.n_ranks = args.rank = -1;
  args.gpu_timestamps = 0;
  args.log = NULL;
  cp_shim_prof_create(&args, context, eActivationMask, 1);
  return ncclSuccess;
}

static ncclResult_t prof_v3_start_event(void* context, void** eHandle,
                                        ncclProfilerEventDescr_v3_t* eDescr) {
  if (eHandle == NULL) return ncclSuccess;
  *eHandle = NULL;
  if (eDescr == NULL) return ncclSuccess;
  if (eDescr->type == ncclProfileColl) {
    const ncclProfilerCollDescr_v3_t* c = &eDescr->coll;
    cp_coll_event ev;
    cp_shim_coll_from_strings(&ev, c->seqNumber, c->func, c->count, c->datatype, c->algo,
                              c->proto, c->nMaxChannels, -1);
    *eHandle = cp_prof_coll_start(cp_shim_prof_core(context), &ev);
  } else if (eDescr->type == ncclProfileKernelCh) {
    *eHandle = cp_prof_kernel_start(cp_shim_prof_core(context), eDescr->parentObj,
                                    eDescr->kernelCh.channelId, 0);
  }
  return ncclSuccess;
}

static ncclResult_t prof_v3_stop_event(void* eHandle) {
  if (eHandle != NULL) cp_prof_event_stop(eHandle);
  return ncclSuccess;
}

/* v3 has no KernelChStop state; Coll and KernelCh events end with stopEvent alone. */
static ncclResult_t prof_v3_record_event_state(void* eHandle, ncclProfilerEventState_v3_t eState,
                                               ncclProfilerEventStateArgs_v3_t* eStateArgs) {
  return ncclSuccess;
}

static ncclResult_t prof_v3_finalize(void* context) {
  cp_shim_prof_destroy(context);
  return ncclSuccess;
}

CP_EXPORT const ncclProfiler_v3_t ncclProfiler_v3 = {
    .name = CP_PLUGIN_NAME,
    .init = prof_v3_init,
    .startEvent = prof_v3_start_event,
    .stopEvent = prof_v3_stop_event,
    .recordEventState = prof_v3_record_event_state,
    .finalize = prof_v3_finalize,
};
