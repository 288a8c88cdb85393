/*
 * Profiler ABI v5 onto the core. Same handling as v4: commId moved to init's second argument, the
 * descriptor's type widened to 64 bits, and API-level events (GroupApi, CollApi, ...) exist but
 * are not wanted (they are emitted anyway as ancestors of Coll and get a NULL handle).
 */
#include "nccl/profiler_v5.h"
#include "shim_common.h"

static ncclResult_t prof_v5_init(void** context, uint64_t commId, int* eActivationMask,
                                 const char* commName, int nNodes, int nranks, int rank,
                                 ncclDebugLogger_t logfn) {
  cp_prof_init_args args = {0};
  args.abi_version = 5;
  args.has_comm_id = 1;
  args.comm_id = commId;
  args.comm_name = commName;
  args.n_nodes = nNodes;
  args.n_ranks = nranks;
  args.rank = rank;
  args.gpu_timestamps = 1;
  args.log = cp_shim_logger(logfn);
  cp_shim_prof_create(&args, context, eActivationMask, 1);
  return ncclSuccess;
}

static ncclResult_t prof_v5_start_event(void* context, void** eHandle,
                                        ncclProfilerEventDescr_v5_t* eDescr) {
  if (eHandle == NULL) return ncclSuccess;
  *eHandle = NULL;
  if (eDescr == NULL) return ncclSuccess;
  if (eDescr->type == ncclProfileColl) {
    const ncclProfilerCollDescr_v5_t* c = &eDescr->coll;
    cp_coll_event ev;
    cp_shim_coll_from_strings(&ev, c->seqNumber, c->func, c->count, c->datatype, c->algo,
                              c->proto, c->nChannels, cp_shim_prof_nranks(context));
    *eHandle = cp_prof_coll_start(cp_shim_prof_core(context), &ev);
  } else if (eDescr->type == ncclProfileKernelCh) {
    *eHandle = cp_prof_kernel_start(cp_shim_prof_core(context), eDescr->parentObj,
                                    eDescr->kernelCh.channelId, eDescr->kernelCh.pTimer);
  }
  return ncclSuccess;
}

static ncclResult_t prof_v5_stop_event(void* eHandle) {
  if (eHandle != NULL) cp_prof_event_stop(eHandle);
  return ncclSuccess;
}

static ncclResult_t prof_v5_record_event_state(void* eHandle,
                                               ncclProfilerEventState_v5_t eState,
                                               ncclProfilerEventStateArgs_v5_t* eStateArgs) {
  if (eHandle != NULL && eState == ncclProfilerKernelChStop && eStateArgs != NULL)
    cp_prof_kernel_record_stop(eHandle, eStateArgs->kernelCh.pTimer);
  return ncclSuccess;
}

static ncclResult_t prof_v5_finalize(void* context) {
  cp_shim_prof_destroy(context);
  return ncclSuccess;
}

CP_EXPORT const ncclProfiler_v5_t ncclProfiler_v5 = {
    .name = CP_PLUGIN_NAME,
    .init = prof_v5_init,
    .startEvent = prof_v5_start_event,
    .stopEvent = prof_v5_stop_event,
    .recordEventState = prof_v5_record_event_state,
    .finalize = prof_v5_finalize,
};
