/*
 * Tuner side of the core: per-communicator contexts and the getCollInfo / getChunkSize decisions.
 *
 * The hot path reads one immutable table through an atomic pointer and touches only this
 * context's own memory; it never locks, allocates or logs (except rate-limited warnings).
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cp_core.h"
#include "cp_process.h"
#include "cp_table.h"
#include "cp_tablefile.h"
#include "cp_tuner.h"

#define CP_KEY_SLOTS 4096          /* distinct (coll, nBytes, numPipeOps) keys tracked per comm */
#define CP_RECENT_CHUNKS 32        /* decisions remembered for getChunkSize */
#define CP_WARN_INTERVAL_NS 10000000000ull

typedef struct {
  uint64_t n_bytes;
  int32_t coll;     /* -1 = empty */
  int32_t num_pipe_ops;
  uint64_t calls;
} cp_key_slot;

/* One getCollInfo call as getChunkSize needs it: the arm NCCL will run and the chunk size the
 * decision asked for (0 = NCCL's). Calls without a chunk are recorded too, so that a chunk decided
 * for an earlier collective cannot be applied to a later one that nothing decided. */
typedef struct {
  int used;
  int coll, algo, proto;
  uint64_t n_bytes;
  uint32_t chunk_size;
} cp_recent_chunk;

struct cp_tuner_comm {
  cp_process* proc;
  int abi_version;
  int has_comm_id;
  uint64_t comm_id;
  int n_ranks, n_nodes;
  int decisions_allowed; /* 0 in off/observe mode, with NCCL_ALGO/NCCL_PROTO, or without a table */

  /* Published decision table: swapped whole, never modified. Retired tables are kept until the
   * context dies because readers hold no reference; the count of swaps per run is small. */
  _Atomic(cp_table*) table;
  cp_table** retired;
  size_t n_retired, cap_retired;

  /* Touched only by the (serialised) calls on this communicator. */
  uint64_t calls;
  cp_key_slot* keys;
  uint64_t keys_overflow;
  cp_recent_chunk recent[CP_RECENT_CHUNKS];
  unsigned recent_next;

  _Atomic uint64_t decided, unavailable;
  cp_ratelimit rl_unavailable;
};

static uint64_t cp_key_hash(int coll, uint64_t n_bytes, int num_pipe_ops) {
  uint64_t h = n_bytes * 0x9E3779B97F4A7C15ull;
  h ^= (uint64_t)(uint32_t)coll * 0xC2B2AE3D27D4EB4Full + (uint64_t)(uint32_t)num_pipe_ops;
  h ^= h >> 29;
  return h;
}

/* Per-key call index: identical on every rank because every rank issues the same collectives. */
static uint64_t cp_key_next_call(cp_tuner_comm* ctx, int coll, uint64_t n_bytes, int pipe) {
  uint64_t h = cp_key_hash(coll, n_bytes, pipe);
  for (unsigned probe = 0; probe < 64; probe++) {
    cp_key_slot* s = &ctx->keys[(h + probe) & (CP_KEY_SLOTS - 1)];
    if (s->coll == -1) {
      s->coll = coll;
      s->n_bytes = n_bytes;
      s->num_pipe_ops = pipe;
      s->calls = 1;
      return 0;
    }
    if (s->coll == coll && s->n_bytes == n_bytes && s->num_pipe_ops == pipe) return s->calls++;
  }
  /* Table full: every rank overflows on the same key at the same call, so the fallback index
   * (the communicator's call count) is still rank-invariant. */
  ctx->keys_overflow++;
  return ctx->calls;
}

static int cp_arm_available(const float* table, int num_algo, int num_proto, int a, int p) {
  if (a < 0 || p < 0 || a >= num_algo || p >= num_proto) return 0;
  float v = table[a * num_proto + p];
  return v >= 0.0f; /* excludes NCCL_ALGO_PROTO_IGNORE (-1.0) and any other negative value */
}

static void cp_load_static_table(cp_tuner_comm* ctx, const cp_settings* st) {
  char err[512] = "";
  cp_rule_set set = {0};
  cp_result r = cp_tablefile_parse_file(st->table_path, st->table_max_entries, &set, err,
                                        sizeof err);
  if (r != CP_OK) {
    cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_TUNING,
           "table rejected, every decision is left to NCCL: %s", err[0] ? err : cp_result_str(r));
    return;
  }
  if (set.n_regbuff_lines)
    cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_TUNING,
           "%s: %zu rule(s) filter on regBuff and are skipped: regBuff differs between ranks, so "
           "honouring it could make ranks choose differently. Use -1 in that column.",
           st->table_path, set.n_regbuff_lines);
  cp_table* table = NULL;
  r = cp_table_compile(set.rules, set.n_rules, ctx->n_nodes, ctx->n_ranks, 0, &table);
  if (r != CP_OK) {
    cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_TUNING,
           "%s: cannot compile the table (%s); every decision is left to NCCL.", st->table_path,
           cp_result_str(r));
  } else {
    atomic_store_explicit(&ctx->table, table, memory_order_release);
    cp_log(ctx->proc, CP_LOG_INFO, CP_LOG_SUBSYS_TUNING,
           "%s: %zu rule(s), %zu apply to this communicator (nNodes %d, nRanks %d)",
           st->table_path, set.n_rules, cp_table_rule_count(table), ctx->n_nodes, ctx->n_ranks);
  }
  cp_rule_set_free(&set);
}

cp_result cp_tuner_comm_create(const cp_tuner_init_args* args, cp_tuner_comm** out) {
  *out = NULL;
  cp_tuner_comm* ctx = calloc(1, sizeof *ctx);
  CP_ALLOC_CHECK(ctx);
  ctx->keys = malloc(sizeof(cp_key_slot) * CP_KEY_SLOTS);
  ctx->proc = cp_process_acquire(args->log);
  if (!ctx->keys || !ctx->proc) {
    cp_process_release(ctx->proc);
    free(ctx->keys);
    free(ctx);
    return CP_ERR_NOMEM;
  }
  for (unsigned i = 0; i < CP_KEY_SLOTS; i++) ctx->keys[i].coll = -1;
  ctx->abi_version = args->abi_version;
  ctx->has_comm_id = args->has_comm_id;
  ctx->comm_id = args->comm_id;
  ctx->n_ranks = args->n_ranks > 0x7fffffff ? 0x7fffffff : (int)args->n_ranks;
  ctx->n_nodes = args->n_nodes > 0x7fffffff ? 0x7fffffff : (int)args->n_nodes;
  atomic_init(&ctx->table, NULL);

  const cp_settings* st = cp_process_settings(ctx->proc);
  if (st->mode == CP_MODE_STATIC || st->mode == CP_MODE_LIVE) {
    if (st->nccl_algo_forced || st->nccl_proto_forced)
      cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_TUNING,
             "NCCL_ALGO or NCCL_PROTO is set: cclpilot only observes and leaves every decision "
             "to NCCL. Unset them to let the table decide.");
    else {
      ctx->decisions_allowed = 1;
      if (st->mode == CP_MODE_STATIC) cp_load_static_table(ctx, st);
    }
  }
  *out = ctx;
  return CP_OK;
}

/* Chooses the protocol (or algorithm) left open by a decision: the cheapest available entry in
 * NCCL's own table, so the open dimension stays NCCL's choice. */
static void cp_fill_open_dimension(const float* table, int num_algo, int num_proto, int* a,
                                   int* p) {
  float best = -1.0f;
  int best_a = -1, best_p = -1;
  for (int ia = 0; ia < num_algo; ia++) {
    if (*a >= 0 && ia != *a) continue;
    for (int ip = 0; ip < num_proto; ip++) {
      if (*p >= 0 && ip != *p) continue;
      float v = table[ia * num_proto + ip];
      if (v >= 0.0f && (best < 0.0f || v < best)) {
        best = v;
        best_a = ia;
        best_p = ip;
      }
    }
  }
  *a = best_a;
  *p = best_p;
}

/* Records which arm NCCL will run for this call (its own rule: the first strictly smallest entry
 * >= 0, algo-major, after our edit) and the chunk size decided for it. Until the first chunk
 * decision nothing can leak, so ordinary tables pay nothing here. */
static void cp_note_call(cp_tuner_comm* ctx, const cp_coll_query* q, const float* cost_table,
                         int num_algo, int num_proto, uint32_t chunk_size) {
  if (!cost_table || num_algo <= 0 || num_proto <= 0 || num_algo > 64 || num_proto > 64) return;
  if (chunk_size == 0 && ctx->recent_next == 0) return;
  int a = -1, p = -1;
  cp_fill_open_dimension(cost_table, num_algo, num_proto, &a, &p);
  if (a < 0) return;
  cp_recent_chunk* slot = &ctx->recent[ctx->recent_next++ % CP_RECENT_CHUNKS];
  *slot = (cp_recent_chunk){1, q->coll, a, p, q->n_bytes, chunk_size};
}

/* The decision itself; returns the chunk size it asks for (0 = keep NCCL's). */
static uint32_t cp_decide(cp_tuner_comm* ctx, const cp_coll_query* q, float* cost_table,
                          int num_algo, int num_proto, int* n_channels, cp_arm* chosen) {
  const cp_table* table = atomic_load_explicit(&ctx->table, memory_order_acquire);
  if (!table) return 0;
  const cp_rule* rule = cp_table_lookup(table, q->coll, q->n_bytes, q->num_pipe_ops);
  if (!rule) return 0;

  uint64_t index = rule->n_arms > 1 ? cp_key_next_call(ctx, q->coll, q->n_bytes, q->num_pipe_ops)
                                    : 0;
  cp_arm arm = cp_rule_pick_arm(rule, index);
  int a = arm.algo, p = arm.proto;

  if (cost_table) {
    if (num_algo <= 0 || num_proto <= 0 || num_algo > 64 || num_proto > 64) return 0;
    if (a >= 0 || p >= 0) {
      int want_a = a, want_p = p;
      if (a < 0 || p < 0) cp_fill_open_dimension(cost_table, num_algo, num_proto, &a, &p);
      if (!cp_arm_available(cost_table, num_algo, num_proto, a, p)) {
        /* The arm was disabled by NCCL (topology, NCCL_ALGO/PROTO, platform): writing it would
         * re-enable an unsupported combination, so the whole decision falls back to NCCL. */
        atomic_fetch_add_explicit(&ctx->unavailable, 1, memory_order_relaxed);
        cp_log_ratelimited(ctx->proc, &ctx->rl_unavailable, CP_WARN_INTERVAL_NS,
                           "table line %d asks for %s/%s, which NCCL marks unavailable for "
                           "%s of %llu bytes; keeping NCCL's choice",
                           rule->source_line, want_a >= 0 ? cp_algo_name(want_a) : "any",
                           want_p >= 0 ? cp_proto_name(want_p) : "any", cp_coll_name(q->coll),
                           (unsigned long long)q->n_bytes);
        return 0;
      }
      cost_table[a * num_proto + p] = 0.0f;
    }
  }
  /* Without a cost table (tuner v2) nothing says whether NCCL will honour the arm, and a channel
   * hint meant for one arm must not land on another: v2 decisions carry algorithm and protocol
   * only. */
  if (cost_table && n_channels && arm.n_channels >= 1 && arm.n_channels <= CP_MAX_CHANNELS)
    *n_channels = arm.n_channels;
  atomic_fetch_add_explicit(&ctx->decided, 1, memory_order_relaxed);
  if (chosen) {
    arm.algo = (int8_t)a;
    arm.proto = (int8_t)p;
    *chosen = arm;
  }
  return a >= 0 && p >= 0 ? arm.chunk_size : 0;
}

void cp_tuner_get_coll_info(cp_tuner_comm* ctx, const cp_coll_query* q, float* cost_table,
                            int num_algo, int num_proto, int* n_channels, cp_arm* chosen) {
  if (chosen) *chosen = (cp_arm){.algo = -1, .proto = -1, .n_channels = 0, .chunk_size = 0};
  if (!ctx || !q) return;
  ctx->calls++;
  if (!ctx->decisions_allowed) return;
  uint32_t chunk = cp_decide(ctx, q, cost_table, num_algo, num_proto, n_channels, chosen);
  cp_note_call(ctx, q, cost_table, num_algo, num_proto, chunk);
}

void cp_tuner_get_chunk_size(cp_tuner_comm* ctx, int coll, size_t n_bytes, int algo, int proto,
                             int n_channels, size_t* chunk_size) {
  (void)n_channels; /* always 1 for standard tasks: NCCL asks per channel part */
  if (!ctx || !chunk_size || !ctx->decisions_allowed) return;
  unsigned grain = cp_proto_grain(proto);
  if (grain == 0) return;
  /* NCCL asks per channel part, with the part's bytes; the part belongs to the most recent
   * decision of this communicator for the same (coll, algo, proto) whose size covers it. Every
   * rank sees the same call sequence, so every rank finds the same decision. */
  for (unsigned i = 0; i < CP_RECENT_CHUNKS; i++) {
    const cp_recent_chunk* r = &ctx->recent[(ctx->recent_next - 1 - i) % CP_RECENT_CHUNKS];
    if (!r->used) break;
    if (r->coll == coll && r->algo == algo && r->proto == proto && n_bytes <= r->n_bytes) {
      if (r->chunk_size == 0) return; /* that call's decision keeps NCCL's chunk */
      size_t chunk = (r->chunk_size / grain) * grain;
      *chunk_size = chunk < grain ? grain : chunk;
      return;
    }
  }
}

cp_result cp_tuner_publish_rules(cp_tuner_comm* ctx, const cp_rule* rules, size_t n_rules,
                                 uint64_t version) {
  if (!ctx) return CP_ERR_INVALID;
  if (!ctx->decisions_allowed) return CP_ERR_INVALID;
  if (ctx->n_retired == ctx->cap_retired) {
    size_t cap = ctx->cap_retired ? ctx->cap_retired * 2 : 8;
    cp_table** grown = realloc(ctx->retired, cap * sizeof *grown);
    CP_ALLOC_CHECK(grown);
    ctx->retired = grown;
    ctx->cap_retired = cap;
  }
  cp_table* table = NULL;
  CP_CHECK(cp_table_compile(rules, n_rules, ctx->n_nodes, ctx->n_ranks, version, &table));
  cp_table* old = atomic_exchange_explicit(&ctx->table, table, memory_order_acq_rel);
  if (old) ctx->retired[ctx->n_retired++] = old;
  return CP_OK;
}

uint64_t cp_tuner_call_count(const cp_tuner_comm* ctx) { return ctx ? ctx->calls : 0; }

void cp_tuner_comm_destroy(cp_tuner_comm* ctx) {
  if (!ctx) return;
  uint64_t unavailable = atomic_load(&ctx->unavailable);
  if (unavailable)
    cp_log(ctx->proc, CP_LOG_INFO, CP_LOG_SUBSYS_TUNING,
           "communicator done: %llu call(s), %llu decided, %llu left to NCCL (arm unavailable)",
           (unsigned long long)ctx->calls, (unsigned long long)atomic_load(&ctx->decided),
           (unsigned long long)unavailable);
  cp_table_free(atomic_load(&ctx->table));
  for (size_t i = 0; i < ctx->n_retired; i++) cp_table_free(ctx->retired[i]);
  free(ctx->retired);
  free(ctx->keys);
  cp_process* proc = ctx->proc;
  free(ctx);
  cp_process_release(proc);
}
