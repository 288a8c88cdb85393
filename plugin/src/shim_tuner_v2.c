/*
 * Tuner ABI v2 onto the core. v2 has no cost table: the core decides without seeing which
 * combinations NCCL supports, and the decision goes back through the algorithm and protocol
 * outputs, which NCCL's v2 adapter applies only if that table entry is not IGNORE'd.
 */
#include "nccl/tuner_v2.h"
#include "shim_common.h"

static ncclResult_t tuner_v2_init(size_t nRanks, size_t nNodes, ncclDebugLogger_t logFunction,
                                  void** context) {
  cp_tuner_init_args args = {0};
  args.abi_version = 2;
  args.has_comm_id = 0;
  args.n_ranks = nRanks;
  args.n_nodes = nNodes;
  args.log = cp_shim_logger(logFunction);
  cp_shim_tuner_create(&args, context);
  return ncclSuccess;
}

static ncclResult_t tuner_v2_get_coll_info(void* context, ncclFunc_t collType, size_t nBytes,
                                           int collNetSupport, int nvlsSupport, int numPipeOps,
                                           int* algorithm, int* protocol, int* nChannels) {
  cp_coll_query query = {.coll = (int)collType, .n_bytes = nBytes, .num_pipe_ops = numPipeOps,
                         .reg_buff = -1};
  cp_arm chosen = {.algo = -1, .proto = -1, .n_channels = 0, .chunk_size = 0};
  cp_tuner_get_coll_info((cp_tuner_comm*)context, &query, NULL, 0, 0, nChannels, &chosen);
  /* A half-specified pair would be dropped by NCCL's adapter anyway; leaving both outputs as
   * NCCL initialised them keeps its choice. */
  if (chosen.algo >= 0 && chosen.proto >= 0 && algorithm != NULL && protocol != NULL) {
    *algorithm = chosen.algo;
    *protocol = chosen.proto;
  }
  return ncclSuccess;
}

static ncclResult_t tuner_v2_destroy(void* context) {
  cp_tuner_comm_destroy((cp_tuner_comm*)context);
  return ncclSuccess;
}

CP_EXPORT const ncclTuner_v2_t ncclTunerPlugin_v2 = {
    .name = CP_PLUGIN_NAME,
    .init = tuner_v2_init,
    .getCollInfo = tuner_v2_get_coll_info,
    .destroy = tuner_v2_destroy,
};
