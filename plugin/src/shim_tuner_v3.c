/*
 * Tuner ABI v3 onto the core: the first version with NCCL's cost table (no regBuff, no commId).
 */
#include "nccl/tuner_v3.h"
#include "shim_common.h"

static ncclResult_t tuner_v3_init(size_t nRanks, size_t nNodes, ncclDebugLogger_t logFunction,
                                  void** context) {
  cp_tuner_init_args args = {0};
  args.abi_version = 3;
  args.has_comm_id = 0;
  args.n_ranks = nRanks;
  args.n_nodes = nNodes;
  args.log = cp_shim_logger(logFunction);
  cp_shim_tuner_create(&args, context);
  return ncclSuccess;
}

static ncclResult_t tuner_v3_get_coll_info(void* context, ncclFunc_t collType, size_t nBytes,
                                           int numPipeOps, float** collCostTable, int numAlgo,
                                           int numProto, int* nChannels) {
  cp_coll_query query = {.coll = (int)collType, .n_bytes = nBytes, .num_pipe_ops = numPipeOps,
                         .reg_buff = -1};
  /* NCCL passes a contiguous float[numAlgo][numProto] behind the float** type. */
  cp_tuner_get_coll_info((cp_tuner_comm*)context, &query, (float*)collCostTable, numAlgo,
                         numProto, nChannels, NULL);
  return ncclSuccess;
}

static ncclResult_t tuner_v3_destroy(void* context) {
  cp_tuner_comm_destroy((cp_tuner_comm*)context);
  return ncclSuccess;
}

CP_EXPORT const ncclTuner_v3_t ncclTunerPlugin_v3 = {
    .name = CP_PLUGIN_NAME,
    .init = tuner_v3_init,
    .getCollInfo = tuner_v3_get_coll_info,
    .destroy = tuner_v3_destroy,
};
