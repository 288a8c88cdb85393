/*
 * cclpilot internal core API.
 *
 * This is the only interface the per-ABI export shims (shim_tuner_vN.c, shim_profiler_vN.c) call.
 * It knows nothing about NCCL ABI versions: shims translate each version's arguments into these
 * calls; they always hand NCCL ncclSuccess (a tuner error would fail the collective or the
 * communicator), so cp_result values stop at the shim and are only logged. Numbering of collectives, algorithms and
 * protocols equals NCCL's (a fact of the ABI); shims assert that at compile time.
 *
 * Threading: every function here may be called concurrently for different contexts. Calls on one
 * tuner context are serialised by NCCL (a communicator must not be used concurrently); profiler
 * events of one context arrive from several threads (launch thread, proxy thread).
 */
#ifndef CCLPILOT_CP_CORE_H
#define CCLPILOT_CP_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "cp_result.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- shared vocabulary ------------------------------------------------------------------ */

enum {
  CP_COLL_BROADCAST = 0,
  CP_COLL_REDUCE = 1,
  CP_COLL_ALLGATHER = 2,
  CP_COLL_REDUCESCATTER = 3,
  CP_COLL_ALLREDUCE = 4,
  CP_NUM_COLLS = 5 /* the functions NCCL builds cost tables for */
};

enum {
  CP_ALGO_TREE = 0,
  CP_ALGO_RING = 1,
  CP_ALGO_COLLNET_DIRECT = 2,
  CP_ALGO_COLLNET_CHAIN = 3,
  CP_ALGO_NVLS = 4,
  CP_ALGO_NVLS_TREE = 5,
  CP_ALGO_PAT = 6,
  CP_NUM_ALGOS = 7
};

enum { CP_PROTO_LL = 0, CP_PROTO_LL128 = 1, CP_PROTO_SIMPLE = 2, CP_NUM_PROTOS = 3 };

#define CP_ANY (-1)            /* wildcard in table filters */
#define CP_COST_IGNORE (-1.0f) /* NCCL_ALGO_PROTO_IGNORE */
#define CP_MAX_CHANNELS 64     /* MAXCHANNELS: nChannels hints must be 1..64 */

/* Protocol grains (bytes): NCCL rounds chunk sizes down to these. */
#define CP_GRAIN_LL 16u
#define CP_GRAIN_LL128 1920u
#define CP_GRAIN_SIMPLE 512u

/* NCCL's logger signature (ncclDebugLogger_t), declared here without ABI headers. */
typedef void (*cp_log_fn)(int level, unsigned long flags, const char* file, int line,
                          const char* fmt, ...);

/* Name <-> number helpers (names as NCCL's tuning log / profiler spell them, case-insensitive).
 * Return -1 when unknown. */
int cp_coll_from_name(const char* name);      /* "AllReduce", "allreduce", ... */
int cp_algo_from_name(const char* name);      /* "RING", "ring", "NVLS_TREE", "nvlstree", ... */
int cp_proto_from_name(const char* name);     /* "LL", "LL128", "SIMPLE" */
int cp_dtype_size_from_name(const char* name);/* "ncclFloat32" -> 4; "Unknown"/NULL -> -1 */
const char* cp_coll_name(int coll);           /* canonical lower-case table-file token */
const char* cp_algo_name(int algo);
const char* cp_proto_name(int proto);
unsigned cp_proto_grain(int proto);           /* 0 for an invalid protocol */

/* The byte count getCollInfo sees for a collective, from the profiler's task view
 * (count, element size). Returns 0 when it cannot be computed. */
size_t cp_coll_nbytes(int coll, size_t count, int elem_size, int n_ranks);

/* ---- decisions ---------------------------------------------------------------------------- */

/* One arm: what a decision asks NCCL to run. algo/proto -1 = keep NCCL's choice;
 * n_channels 0 = keep NCCL's; chunk_size 0 = keep NCCL's. */
typedef struct {
  int8_t algo;
  int8_t proto;
  uint8_t n_channels;
  uint32_t chunk_size;
} cp_arm;

/* Rank-invariant inputs of one getCollInfo call. reg_buff is carried for observation only and
 * must never influence a decision (it differs between ranks). */
typedef struct {
  int coll;
  size_t n_bytes;
  int num_pipe_ops;
  int reg_buff; /* -1 = not provided by this ABI */
} cp_coll_query;

/* ---- tuner side --------------------------------------------------------------------------- */

typedef struct cp_tuner_comm cp_tuner_comm;

typedef struct {
  int abi_version;  /* tuner ABI that NCCL loaded (2..6) */
  int has_comm_id;  /* v5+ */
  uint64_t comm_id; /* NCCL commHash */
  size_t n_ranks;
  size_t n_nodes;
  cp_log_fn log;    /* may be NULL */
} cp_tuner_init_args;

/* Creates a context for one communicator. Never fails the communicator: on any problem it still
 * returns CP_OK with a disabled context that leaves every decision to NCCL; only allocation
 * failure returns an error (the shim then hands NCCL a NULL context, which every other entry point
 * accepts). */
cp_result cp_tuner_comm_create(const cp_tuner_init_args* args, cp_tuner_comm** out);

/* getCollInfo. cost_table is NCCL's contiguous float[num_algo][num_proto] (in/out) or NULL (tuner
 * v2, which has none). If a decision applies and its arm is available (entry >= 0), the entry is
 * set to 0.0 so NCCL picks it, and *n_channels is set when the decision carries a hint. IGNORE'd
 * entries are never written. *chosen (may be NULL) receives the decision (algo -1 = none), which
 * the v2 shim returns through its algorithm/protocol outputs. Never fails; ctx may be NULL. */
void cp_tuner_get_coll_info(cp_tuner_comm* ctx, const cp_coll_query* query, float* cost_table,
                            int num_algo, int num_proto, int* n_channels, cp_arm* chosen);

/* getChunkSize (tuner v6). *chunk_size is NCCL's value on entry; it is changed only when the
 * decision that selected (coll, algo, proto) in this communicator's recent calls carries a chunk
 * size, and never below one protocol grain. ctx may be NULL. */
void cp_tuner_get_chunk_size(cp_tuner_comm* ctx, int coll, size_t n_bytes, int algo, int proto,
                             int n_channels, size_t* chunk_size);

/* finalize/destroy. Stops nothing NCCL still needs; the last context of the process (tuner or
 * profiler) releases the process object and joins every background thread. ctx may be NULL. */
void cp_tuner_comm_destroy(cp_tuner_comm* ctx);

/* ---- profiler side ------------------------------------------------------------------------ */

typedef struct cp_prof_comm cp_prof_comm;

typedef struct {
  int abi_version;      /* profiler ABI that NCCL loaded (1..6) */
  int has_comm_id;      /* v4+ */
  uint64_t comm_id;
  const char* comm_name;/* may be NULL */
  int n_nodes, n_ranks, rank; /* -1 when this ABI does not say */
  int gpu_timestamps;   /* 1 when KernelCh events carry GPU timestamps (v4+) */
  cp_log_fn log;        /* may be NULL (v1-v3) */
} cp_prof_init_args;

/* Which event kinds the core wants; the shim turns these into NCCL's activation mask bits. */
typedef struct {
  int coll;
  int kernel_ch;
} cp_prof_wants;

cp_result cp_prof_comm_create(const cp_prof_init_args* args, cp_prof_comm** out,
                              cp_prof_wants* wants);

/* A Coll event as the shim decoded it. Unknown fields are -1 / 0. */
typedef struct {
  uint64_t seq;
  int coll;           /* CP_COLL_* or -1 */
  size_t n_bytes;     /* getCollInfo-equivalent nBytes (see cp_coll_nbytes); 0 = unknown */
  int algo, proto;    /* -1 = unknown */
  int n_channels;     /* channels actually scheduled */
} cp_coll_event;

/* Event handles returned by these functions are opaque to NCCL and to the shims; NULL means
 * "dropped" and NCCL will not call back for it. */
void* cp_prof_coll_start(cp_prof_comm* ctx, const cp_coll_event* ev);
void* cp_prof_kernel_start(cp_prof_comm* ctx, void* coll_handle, int channel_id,
                           uint64_t gpu_start_ns);
void cp_prof_kernel_record_stop(void* kernel_handle, uint64_t gpu_stop_ns);
void cp_prof_event_stop(void* handle);
void cp_prof_comm_destroy(cp_prof_comm* ctx);

#ifdef __cplusplus
}
#endif
#endif
