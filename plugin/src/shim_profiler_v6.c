/*
 * Profiler ABI v6 onto the core: v5 plus copy-engine events, which the core does not use.
 * NCCL calls this table directly, without an adapter.
 */
#include "nccl/profiler_v6.h"
#include "shim_common.h"

static ncclResult_t prof_v6_init(void** context, uint64_t commId, int* eActivationMask,
                                 const char* commName, int nNodes, int nranks, int rank,
                                 ncclDebugLogger_t logfn) {
  cp_prof_init_args args = {0};
  args.abi_version = 6;
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

static ncclResult_t prof_v6_start_event(void* context, void** eHandle,
                                        ncclProfilerEventDescr_v6_t* eDescr) {
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

static ncclResult_t prof_v6_stop_event(void* eHandle) {
  if (eHandle != NULL) cp_prof_event_stop(eHandle);
  return ncclSuccess;
}

static ncclResult_t prof_v6_record_event_state(void* eHandle,
                                               ncclProfilerEventState_v6_t eState,
                                               ncclProfilerEventStateArgs_v6_t* eStateArgs) {
  if (eHandle != NULL && eState == ncclProfilerKernelChStop && eStateArgs != NULL)
    cp_prof_kernel_record_stop(eHandle, eStateArgs->kernelCh.pTimer);
  return ncclSuccess;
}

static ncclResult_t prof_v6_finalize(void* context) {
  cp_shim_prof_destroy(context);
  return ncclSuccess;
}

CP_EXPORT const ncclProfiler_v6_t ncclProfiler_v6 = {
    .name = CP_PLUGIN_NAME,
    .init = prof_v6_init,
    .startEvent = prof_v6_start_event,
    .stopEvent = prof_v6_stop_event,
    .recordEventState = prof_v6_record_event_state,
    .finalize = prof_v6_finalize,
};
