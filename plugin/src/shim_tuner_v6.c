/*
 * Tuner ABI v6 onto the core: v5 plus getChunkSize. NCCL calls this table directly, without an
 * adapter, and calls init/getCollInfo/finalize without NULL checks, so all five are set.
 */
#include "nccl/tuner_v6.h"
#include "shim_common.h"

static ncclResult_t tuner_v6_init(void** ctx, uint64_t commId, size_t nRanks, size_t nNodes,
                                  ncclDebugLogger_t logFunction,
                                  ncclNvlDomainInfo_v6_t* nvlDomainInfo,
                                  ncclTunerConstants_v6_t* constants) {
  cp_tuner_init_args args = {0};
  args.abi_version = 6;
  args.has_comm_id = 1;
  args.comm_id = commId;
  args.n_ranks = nRanks;
  args.n_nodes = nNodes;
  args.log = cp_shim_logger(logFunction);
  cp_shim_tuner_create(&args, ctx);
  return ncclSuccess;
}

static ncclResult_t tuner_v6_get_coll_info(void* context, ncclFunc_t collType, size_t nBytes,
                                           int numPipeOps, float** collCostTable, int numAlgo,
                                           int numProto, int regBuff, int* nChannels) {
  cp_coll_query query = {.coll = (int)collType, .n_bytes = nBytes, .num_pipe_ops = numPipeOps,
                         .reg_buff = regBuff};
  cp_tuner_get_coll_info((cp_tuner_comm*)context, &query, (float*)collCostTable, numAlgo,
                         numProto, nChannels, NULL);
  return ncclSuccess;
}

static ncclResult_t tuner_v6_get_chunk_size(void* context, ncclFunc_t collType, size_t nBytes,
                                            int algo, int proto, int nChannels,
                                            size_t* chunkSize) {
  if (chunkSize != NULL)
    cp_tuner_get_chunk_size((cp_tuner_comm*)context, (int)collType, nBytes, algo, proto,
                            nChannels, chunkSize);
  return ncclSuccess;
}

static ncclResult_t tuner_v6_finalize(void* context) {
  cp_tuner_comm_destroy((cp_tuner_comm*)context);
  return ncclSuccess;
}

CP_EXPORT const ncclTuner_v6_t ncclTunerPlugin_v6 = {
    .name = CP_PLUGIN_NAME,
    .init = tuner_v6_init,
    .getCollInfo = tuner_v6_get_coll_info,
    .finalize = tuner_v6_finalize,
    .getChunkSize = tuner_v6_get_chunk_size,
};
