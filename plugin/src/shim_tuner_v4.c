/*
 * Tuner ABI v4 onto the core: v3 plus regBuff, which is carried for observation only (it differs
 * between ranks, so the core never lets it influence a decision).
 */
#include "nccl/tuner_v4.h"
#include "shim_common.h"

static ncclResult_t tuner_v4_init(size_t nRanks, size_t nNodes, ncclDebugLogger_t logFunction,
                                  void** context) {
  cp_tuner_init_args args = {0};
  args.abi_version = 4;
  args.has_comm_id = 0;
  args.n_ranks = nRanks;
  args.n_nodes = nNodes;
  args.log = cp_shim_logger(logFunction);
  cp_shim_tuner_create(&args, context);
  return ncclSuccess;
}

static ncclResult_t tuner_v4_get_coll_info(void* context, ncclFunc_t collType, size_t nBytes,
                                           int numPipeOps, float** collCostTable, int numAlgo,
                                           int numProto, int regBuff, int* nChannels) {
  cp_coll_query query = {.coll = (int)collType, .n_bytes = nBytes, .num_pipe_ops = numPipeOps,
                         .reg_buff = regBuff};
  cp_tuner_get_coll_info((cp_tuner_comm*)context, &query, (float*)collCostTable, numAlgo,
                         numProto, nChannels, NULL);
  return ncclSuccess;
}

static ncclResult_t tuner_v4_destroy(void* context) {
  cp_tuner_comm_destroy((cp_tuner_comm*)context);
  return ncclSuccess;
}

CP_EXPORT const ncclTuner_v4_t ncclTunerPlugin_v4 = {
    .name = CP_PLUGIN_NAME,
    .init = tuner_v4_init,
    .getCollInfo = tuner_v4_get_coll_info,
    .destroy = tuner_v4_destroy,
};
