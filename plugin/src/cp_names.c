/*
 * Name <-> number helpers shared by the shims, the table-file parser and the statistics writer.
 * Numbers are NCCL's (ncclFunc_t, NCCL_ALGO_*, NCCL_PROTO_*); names come in two spellings: the
 * profiler's upper-case strings ("NVLS_TREE") and the NCCL_ALGO / tuning-log tokens ("NVLSTree").
 * Both are accepted, case-insensitively, so that any source of names maps to the same number.
 */
#include <stdint.h>
#include <strings.h>

#include "cp_core.h"

typedef struct {
  const char* name;
  int value;
} cp_name_entry;

static int lookup(const cp_name_entry* table, size_t n, const char* name) {
  if (name == NULL) return -1;
  for (size_t i = 0; i < n; i++) {
    if (strcasecmp(table[i].name, name) == 0) return table[i].value;
  }
  return -1;
}

#define CP_COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static const cp_name_entry coll_names[] = {
    {"Broadcast", CP_COLL_BROADCAST},         {"Reduce", CP_COLL_REDUCE},
    {"AllGather", CP_COLL_ALLGATHER},         {"ReduceScatter", CP_COLL_REDUCESCATTER},
    {"AllReduce", CP_COLL_ALLREDUCE},
};

/* Profiler strings and NCCL_ALGO tokens; the lower-case table-file tokens match the profiler
 * strings case-insensitively. */
static const cp_name_entry algo_names[] = {
    {"TREE", CP_ALGO_TREE},
    {"RING", CP_ALGO_RING},
    {"COLLNET_DIRECT", CP_ALGO_COLLNET_DIRECT},
    {"CollNetDirect", CP_ALGO_COLLNET_DIRECT},
    {"COLLNET_CHAIN", CP_ALGO_COLLNET_CHAIN},
    {"CollNetChain", CP_ALGO_COLLNET_CHAIN},
    {"NVLS", CP_ALGO_NVLS},
    {"NVLS_TREE", CP_ALGO_NVLS_TREE},
    {"NVLSTree", CP_ALGO_NVLS_TREE},
    {"PAT", CP_ALGO_PAT},
};

static const cp_name_entry proto_names[] = {
    {"LL", CP_PROTO_LL},
    {"LL128", CP_PROTO_LL128},
    {"SIMPLE", CP_PROTO_SIMPLE},
};

/* ncclDatatypeToString spellings. ncclUint8 has no case there and comes out as "Unknown", which
 * deliberately stays unknown here: a size guessed for it could be wrong for other types too. */
static const cp_name_entry dtype_sizes[] = {
    {"ncclInt8", 1},     {"ncclUint8", 1},     {"ncclInt32", 4},      {"ncclUint32", 4},
    {"ncclInt64", 8},    {"ncclUint64", 8},    {"ncclFloat16", 2},    {"ncclFloat32", 4},
    {"ncclFloat64", 8},  {"ncclBfloat16", 2},  {"ncclFloat8e4m3", 1}, {"ncclFloat8e5m2", 1},
};

int cp_coll_from_name(const char* name) {
  return lookup(coll_names, CP_COUNT_OF(coll_names), name);
}

int cp_algo_from_name(const char* name) {
  return lookup(algo_names, CP_COUNT_OF(algo_names), name);
}

int cp_proto_from_name(const char* name) {
  return lookup(proto_names, CP_COUNT_OF(proto_names), name);
}

int cp_dtype_size_from_name(const char* name) {
  return lookup(dtype_sizes, CP_COUNT_OF(dtype_sizes), name);
}

const char* cp_coll_name(int coll) {
  static const char* const names[CP_NUM_COLLS] = {"broadcast", "reduce", "allgather",
                                                  "reducescatter", "allreduce"};
  return (coll >= 0 && coll < CP_NUM_COLLS) ? names[coll] : "?";
}

const char* cp_algo_name(int algo) {
  static const char* const names[CP_NUM_ALGOS] = {"tree", "ring", "collnet_direct",
                                                  "collnet_chain", "nvls", "nvls_tree", "pat"};
  return (algo >= 0 && algo < CP_NUM_ALGOS) ? names[algo] : "?";
}

const char* cp_proto_name(int proto) {
  static const char* const names[CP_NUM_PROTOS] = {"ll", "ll128", "simple"};
  return (proto >= 0 && proto < CP_NUM_PROTOS) ? names[proto] : "?";
}

unsigned cp_proto_grain(int proto) {
  switch (proto) {
    case CP_PROTO_LL: return CP_GRAIN_LL;
    case CP_PROTO_LL128: return CP_GRAIN_LL128;
    case CP_PROTO_SIMPLE: return CP_GRAIN_SIMPLE;
    default: return 0;
  }
}

size_t cp_coll_nbytes(int coll, size_t count, int elem_size, int n_ranks) {
  if (elem_size <= 0) return 0;
  size_t per_rank;
  if (__builtin_mul_overflow(count, (size_t)elem_size, &per_rank)) return 0;
  switch (coll) {
    case CP_COLL_ALLREDUCE:
    case CP_COLL_REDUCE:
    case CP_COLL_BROADCAST:
      return per_rank;
    case CP_COLL_ALLGATHER:
    case CP_COLL_REDUCESCATTER: {
      /* The task count is per rank (AllGather: bytes sent by each rank; ReduceScatter: elements
       * received by each rank), while getCollInfo sees the whole buffer. */
      if (n_ranks <= 0) return 0;
      size_t total;
      if (__builtin_mul_overflow(per_rank, (size_t)n_ranks, &total)) return 0;
      return total;
    }
    default:
      return 0;
  }
}

const char* cp_result_str(cp_result r) {
  switch (r) {
    case CP_OK: return "success";
    case CP_ERR_INVALID: return "invalid argument or input";
    case CP_ERR_NOMEM: return "out of memory";
    case CP_ERR_IO: return "file or socket error";
    case CP_ERR_PARSE: return "malformed input";
    case CP_ERR_LIMIT: return "bounded resource full";
    case CP_ERR_INTERNAL: return "internal error";
  }
  return "unknown result code";
}
