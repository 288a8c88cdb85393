/*
 * Tuner ABI v5 onto the core: the first version that gives the communicator id, which lets the
 * daemon coordinate plan changes across ranks. The constants and NVLink domain info are not
 * passed on: the core does not edit NCCL's cost model.
 */
#include "nccl/tuner_v5.h"
#include "shim_common.h"

static ncclResult_t tuner_v5_init(void** ctx, uint64_t commId, size_t nRanks, size_t nNodes,
                                  ncclDebugLogger_t logFunction,
                                  ncclNvlDomainInfo_v5_t* nvlDomainInfo,
                                  ncclTunerConstants_v5_t* constants) {
  cp_tuner_init_args args = {0};
  args.abi_version = 5;
  args.has_comm_id = 1;
  args.comm_id = commId;
  args.n_ranks = nRanks;
  args.n_nodes = nNodes;
  args.log = cp_shim_logger(logFunction);
  cp_shim_tuner_create(&args, ctx);
  return ncclSuccess;
}

static ncclResult_t tuner_v5_get_coll_info(void* context, ncclFunc_t collType, size_t nBytes,
                                           int numPipeOps, float** collCostTable, int numAlgo,
                                           int numProto, int regBuff, int* nChannels) {
  cp_coll_query query = {.coll = (int)collType, .n_bytes = nBytes, .num_pipe_ops = numPipeOps,
                         .reg_buff = regBuff};
  cp_tuner_get_coll_info((cp_tuner_comm*)context, &query, (float*)collCostTable, numAlgo,
                         numProto, nChannels, NULL);
  return ncclSuccess;
}

static ncclResult_t tuner_v5_finalize(void* context) {
  cp_tuner_comm_destroy((cp_tuner_comm*)context);
  return ncclSuccess;
}

CP_EXPORT const ncclTuner_v5_t ncclTunerPlugin_v5 = {
    .name = CP_PLUGIN_NAME,
    .init = tuner_v5_init,
    .getCollInfo = tuner_v5_get_coll_info,
    .finalize = tuner_v5_finalize,
};
