/*
 * Tuner side of the core: per-communicator contexts and the getCollInfo / getChunkSize decisions.
 *
 * The hot path reads one immutable table through an atomic pointer and touches only this
 * context's own memory; it never locks, allocates or logs (except rate-limited warnings).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cp_core.h"
#include "cp_io.h"
#include "cp_process.h"
#include "cp_table.h"
#include "cp_tablefile.h"
#include "cp_tuner.h"

#define CP_KEY_SLOTS 4096          /* distinct (coll, nBytes, numPipeOps) keys tracked per comm */
#define CP_RECENT_CHUNKS 32        /* decisions remembered for getChunkSize */
#define CP_WARN_INTERVAL_NS 10000000000ull
#define CP_ASK_INTERVAL_NS 50000000ull   /* a waiting rank re-asks for the decision this often */
#define CP_WAIT_POLL_NS 200000l          /* and polls the plan state this often */

/* Pending-plan states. The state word packs (generation << 8 | state): the I/O thread bumps the
 * generation with every new pending plan, so a compare-and-swap can never act on a plan that was
 * replaced in between (ABA). */
enum { CP_PLAN_NONE = 0, CP_PLAN_UNDECIDED = 1, CP_PLAN_COMMITTED = 2, CP_PLAN_EXPIRED = 3 };
#define CP_PLAN_STATE(w) ((int)((w) & 0xffu))
#define CP_PLAN_GEN(w) ((w) >> 8)
#define CP_PLAN_WORD(gen, st) (((gen) << 8) | (uint64_t)(st))

/* How the I/O thread last settled a plan, to answer repeated COMMIT/ABORT consistently. */
enum { CP_OUTCOME_NONE = 0, CP_OUTCOME_COMMITTED, CP_OUTCOME_ABORTED, CP_OUTCOME_EXPIRED,
       CP_OUTCOME_REFUSED };
static const char* const cp_outcome_names[] = {"unknown", "committed", "aborted",
                                                "expired (this rank stopped waiting for it)",
                                                "refused at PREPARE"};

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

  /* ---- live mode ---- */
  int live;                 /* registered with the I/O thread: seq hash, key reports, plans */
  struct cp_io* io;
  int connect_done;         /* hot path: the WELCOME wait of the first call is behind us */
  _Atomic int welcomed;     /* set by the I/O thread */
  uint64_t seq_hash;        /* hot path's own copy */
  /* (calls, seq_hash) published for the I/O thread under a sequence lock: the hot path is the
   * only writer and never waits; the reader retries on a torn read. */
  _Atomic uint64_t pub_seq, pub_calls, pub_hash;
  _Atomic uint64_t active_plan;

  /* The pending plan. Fields are written by the I/O thread only while the state is NONE, then
   * published by storing a new generation's UNDECIDED. */
  _Atomic uint64_t plan_word;
  _Atomic uint64_t plan_id, plan_at;
  _Atomic(cp_table*) plan_table;

  /* I/O-thread-only bookkeeping. */
  uint64_t io_max_plan;     /* highest plan id prepared (ids strictly increase) */
  int io_ack_valid;
  cp_plan_ack io_ack;       /* last ACK given, repeated verbatim for a repeated PREPARE */
  uint64_t io_decided_plan, io_decided_at;
  int io_decided_outcome;
};

/* FNV-1a's step over one 64-bit word (PROTOCOL.md "Call-sequence hash"); inlined because it
 * runs on every live call. */
static inline uint64_t cp_seq_fold(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull; }

static uint64_t cp_key_hash(int coll, uint64_t n_bytes, int num_pipe_ops) {
  uint64_t h = n_bytes * 0x9E3779B97F4A7C15ull;
  h ^= (uint64_t)(uint32_t)coll * 0xC2B2AE3D27D4EB4Full + (uint64_t)(uint32_t)num_pipe_ops;
  h ^= h >> 29;
  return h;
}

/* The key's slot, inserted (with calls = 0) when new; *is_new says which. NULL when full. */
static cp_key_slot* cp_key_find(cp_tuner_comm* ctx, int coll, uint64_t n_bytes, int pipe,
                                int* is_new) {
  uint64_t h = cp_key_hash(coll, n_bytes, pipe);
  *is_new = 0;
  for (unsigned probe = 0; probe < 64; probe++) {
    cp_key_slot* s = &ctx->keys[(h + probe) & (CP_KEY_SLOTS - 1)];
    if (s->coll == -1) {
      s->coll = coll;
      s->n_bytes = n_bytes;
      s->num_pipe_ops = pipe;
      s->calls = 0;
      *is_new = 1;
      return s;
    }
    if (s->coll == coll && s->n_bytes == n_bytes && s->num_pipe_ops == pipe) return s;
  }
  return NULL;
}

/* Per-key call index: identical on every rank because every rank issues the same collectives. */
static uint64_t cp_key_next_call(cp_tuner_comm* ctx, int coll, uint64_t n_bytes, int pipe) {
  int is_new;
  cp_key_slot* s = cp_key_find(ctx, coll, n_bytes, pipe, &is_new);
  if (s) return s->calls++;
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
           "%s (content hash %016llx): %zu rule(s), %zu apply to this communicator (nNodes %d, "
           "nRanks %d)", st->table_path, (unsigned long long)set.content_hash, set.n_rules,
           cp_table_rule_count(table), ctx->n_nodes, ctx->n_ranks);
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
  atomic_init(&ctx->welcomed, 0);
  atomic_init(&ctx->pub_seq, 0);
  atomic_init(&ctx->pub_calls, 0);
  ctx->seq_hash = 0xcbf29ce484222325ull;
  atomic_init(&ctx->pub_hash, ctx->seq_hash);
  atomic_init(&ctx->active_plan, 0);
  atomic_init(&ctx->plan_word, CP_PLAN_WORD(0, CP_PLAN_NONE));
  atomic_init(&ctx->plan_id, 0);
  atomic_init(&ctx->plan_at, 0);
  atomic_init(&ctx->plan_table, NULL);

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
  if (st->mode == CP_MODE_LIVE) {
    if (!ctx->has_comm_id) {
      /* Without commId the daemon cannot tell this communicator's ranks apart from another's,
       * so no plan could be agreed: decisions stay NCCL's for the whole run. */
      cp_log(ctx->proc, CP_LOG_INFO, CP_LOG_SUBSYS_TUNING,
             "tuner ABI v%d has no communicator id: this communicator takes no part in live "
             "tuning and every decision is left to NCCL", ctx->abi_version);
    } else if ((ctx->io = cp_process_io_start(ctx->proc)) != NULL) {
      ctx->live = 1;
      cp_io_register_tuner(ctx->io, ctx);
    }
  }
  *out = ctx;
  return CP_OK;
}

/* ---- live mode: hot-path side --------------------------------------------------------------- */

static void cp_sleep_ns(long ns) {
  struct timespec ts = {0, ns};
  nanosleep(&ts, NULL);
}

/* First call of a live communicator: wait for the daemon's WELCOME, bounded by what is left of
 * the process's CCLPILOT_CONNECT_WAIT_MS budget, so a job without a daemon is delayed at most
 * that much in total. */
static void cp_connect_wait(cp_tuner_comm* ctx) {
  ctx->connect_done = 1;
  if (atomic_load_explicit(&ctx->welcomed, memory_order_acquire)) return;
  const cp_settings* st = cp_process_settings(ctx->proc);
  uint64_t budget = cp_process_connect_budget_take(ctx->proc,
                                                   (uint64_t)st->connect_wait_ms * 1000000ull);
  if (budget == 0) return;
  uint64_t start = cp_now_ns(), now = start;
  int got = 0;
  while (now - start < budget) {
    if (atomic_load_explicit(&ctx->welcomed, memory_order_acquire)) {
      got = 1;
      break;
    }
    cp_sleep_ns(CP_WAIT_POLL_NS);
    now = cp_now_ns();
  }
  uint64_t used = now - start < budget ? now - start : budget;
  cp_process_connect_budget_return(ctx->proc, budget - used);
  cp_log(ctx->proc, got ? CP_LOG_INFO : CP_LOG_WARN, CP_LOG_SUBSYS_TUNING,
         got ? "communicator %016llx: daemon registration confirmed after %.1f ms"
             : "communicator %016llx: no answer from the daemon within %.1f ms; running on "
               "NCCL's choices until it answers",
         (unsigned long long)ctx->comm_id, (double)used / 1e6);
}

static void cp_activate(cp_tuner_comm* ctx, uint64_t word, uint64_t id, uint64_t index) {
  cp_table* next = atomic_load_explicit(&ctx->plan_table, memory_order_relaxed);
  atomic_store_explicit(&ctx->plan_table, NULL, memory_order_relaxed);
  cp_table* old = atomic_exchange_explicit(&ctx->table, next, memory_order_acq_rel);
  /* The I/O thread reserved this slot at PREPARE, so the hot path never allocates. */
  if (old) ctx->retired[ctx->n_retired++] = old;
  atomic_store_explicit(&ctx->active_plan, id, memory_order_relaxed);
  atomic_store_explicit(&ctx->plan_word, CP_PLAN_WORD(CP_PLAN_GEN(word), CP_PLAN_NONE),
                        memory_order_release);
  cp_log(ctx->proc, CP_LOG_INFO, CP_LOG_SUBSYS_TUNING,
         "communicator %016llx: plan %llu active from call %llu (%zu rule(s))",
         (unsigned long long)ctx->comm_id, (unsigned long long)id, (unsigned long long)index,
         next ? cp_table_rule_count(next) : (size_t)0);
}

/* Called before deciding call `index` while a plan is pending. Acts only at its activation call:
 * the one place where the hot path may wait, bounded by CCLPILOT_COMMIT_WAIT_MS. */
static void cp_plan_boundary(cp_tuner_comm* ctx, uint64_t index) {
  uint64_t word = atomic_load_explicit(&ctx->plan_word, memory_order_acquire);
  uint64_t id = atomic_load_explicit(&ctx->plan_id, memory_order_relaxed);
  uint64_t at = atomic_load_explicit(&ctx->plan_at, memory_order_relaxed);
  uint64_t again = atomic_load_explicit(&ctx->plan_word, memory_order_acquire);
  /* Fields are valid only if no new plan was published in between (same generation). */
  if (CP_PLAN_STATE(word) == CP_PLAN_NONE || CP_PLAN_GEN(again) != CP_PLAN_GEN(word) ||
      CP_PLAN_STATE(again) == CP_PLAN_NONE || index != at)
    return;
  word = again;
  if (CP_PLAN_STATE(word) == CP_PLAN_COMMITTED) {
    cp_activate(ctx, word, id, index);
    return;
  }
  if (CP_PLAN_STATE(word) != CP_PLAN_UNDECIDED) return;

  const cp_settings* st = cp_process_settings(ctx->proc);
  uint64_t start = cp_now_ns();
  uint64_t deadline = start + (uint64_t)st->commit_wait_ms * 1000000ull;
  uint64_t next_ask = start;
  cp_log(ctx->proc, CP_LOG_INFO, CP_LOG_SUBSYS_TUNING,
         "communicator %016llx: call %llu is plan %llu's activation point and the daemon has not "
         "decided yet; waiting up to %u ms",
         (unsigned long long)ctx->comm_id, (unsigned long long)index, (unsigned long long)id,
         st->commit_wait_ms);
  for (;;) {
    uint64_t now = cp_now_ns();
    uint64_t w = atomic_load_explicit(&ctx->plan_word, memory_order_acquire);
    if (CP_PLAN_GEN(w) != CP_PLAN_GEN(word) || CP_PLAN_STATE(w) == CP_PLAN_NONE) {
      cp_log(ctx->proc, CP_LOG_INFO, CP_LOG_SUBSYS_TUNING,
             "communicator %016llx: plan %llu aborted after %.1f ms of waiting; the current plan "
             "stays", (unsigned long long)ctx->comm_id, (unsigned long long)id,
             (double)(now - start) / 1e6);
      return;
    }
    if (CP_PLAN_STATE(w) == CP_PLAN_COMMITTED) {
      cp_log(ctx->proc, CP_LOG_INFO, CP_LOG_SUBSYS_TUNING,
             "communicator %016llx: plan %llu committed after %.1f ms of waiting",
             (unsigned long long)ctx->comm_id, (unsigned long long)id,
             (double)(now - start) / 1e6);
      cp_activate(ctx, w, id, index);
      return;
    }
    if (now >= deadline) {
      if (atomic_compare_exchange_strong_explicit(
              &ctx->plan_word, &w, CP_PLAN_WORD(CP_PLAN_GEN(w), CP_PLAN_EXPIRED),
              memory_order_acq_rel, memory_order_acquire)) {
        cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_TUNING,
               "communicator %016llx: no decision on plan %llu within CCLPILOT_COMMIT_WAIT_MS=%u "
               "ms at call %llu; keeping the current plan and refusing plan %llu from now on. "
               "If the daemon committed it, other ranks may now decide differently: check the "
               "daemon is alive and its journal, or raise CCLPILOT_COMMIT_WAIT_MS.",
               (unsigned long long)ctx->comm_id, (unsigned long long)id, st->commit_wait_ms,
               (unsigned long long)index, (unsigned long long)id);
        return;
      }
      continue; /* the I/O thread decided just now: look again */
    }
    if (now >= next_ask) {
      if (ctx->io) cp_io_post_ask(ctx->io, ctx, id);
      next_ask = now + CP_ASK_INTERVAL_NS;
    }
    cp_sleep_ns(CP_WAIT_POLL_NS);
  }
}

/* The hot path's live-mode bookkeeping for call `index`: the sequence hash, published together
 * with the call count, then the pending-plan check. The publication is sequentially consistent
 * with the plan-state load, and the I/O thread publishes a plan before reading the call count:
 * so either the I/O thread sees this call and refuses a plan it is too late for, or this call
 * sees the plan. */
static void cp_live_call(cp_tuner_comm* ctx, const cp_coll_query* q, uint64_t index,
                         const float* cost_table, int num_algo, int num_proto) {
  ctx->seq_hash = cp_seq_fold(cp_seq_fold(cp_seq_fold(ctx->seq_hash, (uint64_t)(int64_t)q->coll),
                                          (uint64_t)q->n_bytes),
                              (uint64_t)(int64_t)q->num_pipe_ops);
  uint64_t s = atomic_load_explicit(&ctx->pub_seq, memory_order_relaxed);
  atomic_store_explicit(&ctx->pub_seq, s + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  atomic_store_explicit(&ctx->pub_calls, index + 1, memory_order_relaxed);
  atomic_store_explicit(&ctx->pub_hash, ctx->seq_hash, memory_order_relaxed);
  atomic_store_explicit(&ctx->pub_seq, s + 2, memory_order_seq_cst);

  if (!ctx->connect_done) cp_connect_wait(ctx);

  int is_new = 0;
  if (q->coll >= 0 && q->coll < CP_NUM_COLLS && q->num_pipe_ops >= 1) {
    cp_key_slot* slot = cp_key_find(ctx, q->coll, q->n_bytes, q->num_pipe_ops, &is_new);
    if (!slot) ctx->keys_overflow++;
  }
  if (is_new)
    cp_io_post_key(ctx->io, ctx, ctx->comm_id, q->coll, q->n_bytes, q->num_pipe_ops, index,
                   cost_table, num_algo, num_proto);

  if (CP_PLAN_STATE(atomic_load_explicit(&ctx->plan_word, memory_order_seq_cst)) !=
      CP_PLAN_NONE)
    cp_plan_boundary(ctx, index);
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
  uint64_t index = ctx->calls++;
  if (ctx->live) cp_live_call(ctx, q, index, cost_table, num_algo, num_proto);
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

/* ---- live mode: I/O-thread side ------------------------------------------------------------- */

void cp_tuner_seq_state(const cp_tuner_comm* ctx, uint64_t* calls, uint64_t* seq_hash) {
  cp_tuner_comm* c = (cp_tuner_comm*)ctx; /* atomics are read only */
  for (;;) {
    uint64_t s1 = atomic_load_explicit(&c->pub_seq, memory_order_seq_cst);
    if (s1 & 1u) continue; /* the hot path is between its two stores: a few instructions */
    uint64_t n = atomic_load_explicit(&c->pub_calls, memory_order_relaxed);
    uint64_t h = atomic_load_explicit(&c->pub_hash, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&c->pub_seq, memory_order_relaxed) == s1) {
      *calls = n;
      *seq_hash = h;
      return;
    }
  }
}

uint64_t cp_tuner_active_plan(const cp_tuner_comm* ctx) {
  return ctx ? atomic_load_explicit(&((cp_tuner_comm*)ctx)->active_plan, memory_order_relaxed)
             : 0;
}

void cp_tuner_identity_of(const cp_tuner_comm* ctx, cp_tuner_identity* out) {
  out->abi_version = ctx->abi_version;
  out->comm_id = ctx->comm_id;
  out->n_ranks = ctx->n_ranks;
  out->n_nodes = ctx->n_nodes;
}

void cp_tuner_set_welcomed(cp_tuner_comm* ctx, int welcomed) {
  atomic_store_explicit(&ctx->welcomed, welcomed, memory_order_release);
}

static void cp_plan_record(cp_tuner_comm* ctx, uint64_t plan, uint64_t at, int outcome) {
  ctx->io_decided_plan = plan;
  ctx->io_decided_at = at;
  ctx->io_decided_outcome = outcome;
}

/* An expired plan (the hot path gave up waiting) is cleared lazily by the I/O thread, which owns
 * the pending slot's memory. */
static void cp_plan_clear_expired(cp_tuner_comm* ctx) {
  uint64_t w = atomic_load_explicit(&ctx->plan_word, memory_order_acquire);
  if (CP_PLAN_STATE(w) != CP_PLAN_EXPIRED) return;
  cp_plan_record(ctx, atomic_load_explicit(&ctx->plan_id, memory_order_relaxed),
                 atomic_load_explicit(&ctx->plan_at, memory_order_relaxed), CP_OUTCOME_EXPIRED);
  cp_table_free(atomic_load_explicit(&ctx->plan_table, memory_order_relaxed));
  atomic_store_explicit(&ctx->plan_table, NULL, memory_order_relaxed);
  atomic_store_explicit(&ctx->plan_word, CP_PLAN_WORD(CP_PLAN_GEN(w), CP_PLAN_NONE),
                        memory_order_release);
}

static void cp_ack_refuse(cp_plan_ack* ack, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void cp_ack_refuse(cp_plan_ack* ack, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ack->ok = 0;
  vsnprintf(ack->reason, sizeof ack->reason, fmt, ap);
  va_end(ap);
}

void cp_tuner_plan_prepare(cp_tuner_comm* ctx, uint64_t plan, uint64_t activate_at,
                           const cp_rule* rules, size_t n_rules, cp_plan_ack* ack) {
  if (ctx->io_ack_valid && ctx->io_ack.plan == plan) {
    *ack = ctx->io_ack; /* a repeated PREPARE is answered identically */
    return;
  }
  memset(ack, 0, sizeof *ack);
  ack->plan = plan;
  ack->ok = 1;
  cp_plan_clear_expired(ctx);
  cp_tuner_seq_state(ctx, &ack->calls, &ack->seq_hash);
  uint64_t w = atomic_load_explicit(&ctx->plan_word, memory_order_acquire);
  cp_table* table = NULL;
  cp_result r;
  int pending = 0;
  if (!ctx->decisions_allowed) {
    cp_ack_refuse(ack, "this rank may not decide: NCCL_ALGO or NCCL_PROTO is set");
  } else if (CP_PLAN_STATE(w) != CP_PLAN_NONE) {
    pending = 1;
    cp_ack_refuse(ack, "plan %llu is still pending on this rank",
                  (unsigned long long)atomic_load_explicit(&ctx->plan_id, memory_order_relaxed));
  } else if (plan <= ctx->io_max_plan) {
    cp_ack_refuse(ack, "plan ids must increase: plan %llu follows plan %llu",
                  (unsigned long long)plan, (unsigned long long)ctx->io_max_plan);
  } else if (ack->calls > activate_at) {
    cp_ack_refuse(ack, "activate_at %llu has passed: this rank already made %llu call(s)",
                  (unsigned long long)activate_at, (unsigned long long)ack->calls);
  } else if ((r = cp_table_compile(rules, n_rules, ctx->n_nodes, ctx->n_ranks, plan, &table)) !=
             CP_OK) {
    cp_ack_refuse(ack, "the plan's rules do not compile: %s", cp_result_str(r));
  } else if (ctx->n_retired == ctx->cap_retired &&
             (ctx->cap_retired = ctx->cap_retired ? ctx->cap_retired * 2 : 8,
              (ctx->retired = realloc(ctx->retired, ctx->cap_retired * sizeof(cp_table*))) ==
                  NULL)) {
    /* The hot path stores the replaced table here at activation: reserved now so it never
     * allocates. Out of memory leaks nothing worth recovering: the context stops taking plans. */
    ctx->cap_retired = 0;
    ctx->n_retired = 0;
    ctx->decisions_allowed = 0;
    cp_table_free(table);
    cp_ack_refuse(ack, "out of memory");
  } else {
    uint64_t gen = CP_PLAN_GEN(w) + 1;
    atomic_store_explicit(&ctx->plan_id, plan, memory_order_relaxed);
    atomic_store_explicit(&ctx->plan_at, activate_at, memory_order_relaxed);
    atomic_store_explicit(&ctx->plan_table, table, memory_order_relaxed);
    atomic_store_explicit(&ctx->plan_word, CP_PLAN_WORD(gen, CP_PLAN_UNDECIDED),
                          memory_order_seq_cst);
    /* Read the call count again, after publishing (see cp_live_call): a call that slipped past
     * activate_at meanwhile makes the plan too late, and it is withdrawn. */
    cp_tuner_seq_state(ctx, &ack->calls, &ack->seq_hash);
    if (ack->calls > activate_at) {
      uint64_t expect = CP_PLAN_WORD(gen, CP_PLAN_UNDECIDED);
      /* Either we withdraw it or the hot path just expired it; both leave it unused. */
      atomic_compare_exchange_strong(&ctx->plan_word, &expect, CP_PLAN_WORD(gen, CP_PLAN_NONE));
      atomic_store_explicit(&ctx->plan_word, CP_PLAN_WORD(gen, CP_PLAN_NONE),
                            memory_order_release);
      atomic_store_explicit(&ctx->plan_table, NULL, memory_order_relaxed);
      cp_table_free(table);
      cp_ack_refuse(ack, "activate_at %llu has passed: this rank already made %llu call(s)",
                    (unsigned long long)activate_at, (unsigned long long)ack->calls);
    }
  }
  if (plan > ctx->io_max_plan) ctx->io_max_plan = plan;
  /* Refusing a newer plan because one is pending must not replace the pending plan's ACK or
   * record: a rank waiting at that plan's activation point re-asks with its ACK. (A restarted
   * daemon that lost its in-memory state prepares new plans while ranks still wait on one it
   * committed before dying; overwriting here left them unable to ask, and they expired it while
   * the others had activated it.) */
  if (!pending) {
    if (!ack->ok) cp_plan_record(ctx, plan, activate_at, CP_OUTCOME_REFUSED);
    ctx->io_ack = *ack;
    ctx->io_ack_valid = 1;
  }
  cp_log(ctx->proc, ack->ok ? CP_LOG_INFO : CP_LOG_WARN, CP_LOG_SUBSYS_TUNING,
         "communicator %016llx: plan %llu (%zu rule(s), activation at call %llu) %s%s",
         (unsigned long long)ctx->comm_id, (unsigned long long)plan, n_rules,
         (unsigned long long)activate_at, ack->ok ? "prepared" : "refused: ", ack->reason);
}

int cp_tuner_plan_last_ack(const cp_tuner_comm* ctx, uint64_t plan, cp_plan_ack* ack) {
  if (!ctx->io_ack_valid || ctx->io_ack.plan != plan) return 0;
  *ack = ctx->io_ack;
  return 1;
}

int cp_tuner_plan_commit(cp_tuner_comm* ctx, uint64_t plan, uint64_t activate_at, char* why,
                         size_t why_len) {
  for (;;) {
    uint64_t w = atomic_load_explicit(&ctx->plan_word, memory_order_acquire);
    int st = CP_PLAN_STATE(w);
    if (st != CP_PLAN_NONE && atomic_load_explicit(&ctx->plan_id, memory_order_relaxed) == plan) {
      uint64_t at = atomic_load_explicit(&ctx->plan_at, memory_order_relaxed);
      if (at != activate_at) {
        snprintf(why, why_len, "COMMIT of plan %llu says activate_at %llu, its PREPARE said %llu",
                 (unsigned long long)plan, (unsigned long long)activate_at,
                 (unsigned long long)at);
        return -1;
      }
      if (st == CP_PLAN_COMMITTED) return 0;
      if (st == CP_PLAN_EXPIRED) {
        cp_plan_clear_expired(ctx);
        break; /* reported below from the record */
      }
      if (atomic_compare_exchange_strong_explicit(&ctx->plan_word, &w,
                                                  CP_PLAN_WORD(CP_PLAN_GEN(w), CP_PLAN_COMMITTED),
                                                  memory_order_acq_rel, memory_order_acquire)) {
        cp_plan_record(ctx, plan, activate_at, CP_OUTCOME_COMMITTED);
        cp_log(ctx->proc, CP_LOG_INFO, CP_LOG_SUBSYS_TUNING,
               "communicator %016llx: plan %llu committed for call %llu",
               (unsigned long long)ctx->comm_id, (unsigned long long)plan,
               (unsigned long long)activate_at);
        return 0;
      }
      continue; /* the hot path expired it at this instant: look again */
    }
    break;
  }
  if (ctx->io_decided_plan == plan) {
    if (ctx->io_decided_outcome == CP_OUTCOME_COMMITTED && ctx->io_decided_at == activate_at)
      return 0;
    snprintf(why, why_len, "plan %llu cannot be committed on this rank: it was %s",
             (unsigned long long)plan, cp_outcome_names[ctx->io_decided_outcome]);
  } else {
    snprintf(why, why_len, "COMMIT of plan %llu, which this rank never prepared",
             (unsigned long long)plan);
  }
  cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_TUNING, "communicator %016llx: %s",
         (unsigned long long)ctx->comm_id, why);
  return -1;
}

int cp_tuner_plan_abort(cp_tuner_comm* ctx, uint64_t plan, char* why, size_t why_len) {
  for (;;) {
    uint64_t w = atomic_load_explicit(&ctx->plan_word, memory_order_acquire);
    int st = CP_PLAN_STATE(w);
    if (st == CP_PLAN_NONE || atomic_load_explicit(&ctx->plan_id, memory_order_relaxed) != plan)
      break;
    if (st == CP_PLAN_EXPIRED) {
      cp_plan_clear_expired(ctx);
      return 0;
    }
    if (st == CP_PLAN_COMMITTED) break;
    if (atomic_compare_exchange_strong_explicit(&ctx->plan_word, &w,
                                                CP_PLAN_WORD(CP_PLAN_GEN(w), CP_PLAN_NONE),
                                                memory_order_acq_rel, memory_order_acquire)) {
      /* The hot path never reads the pending table of an undecided plan, so it can go now. */
      cp_table_free(atomic_load_explicit(&ctx->plan_table, memory_order_relaxed));
      atomic_store_explicit(&ctx->plan_table, NULL, memory_order_relaxed);
      cp_plan_record(ctx, plan, atomic_load_explicit(&ctx->plan_at, memory_order_relaxed),
                     CP_OUTCOME_ABORTED);
      cp_log(ctx->proc, CP_LOG_INFO, CP_LOG_SUBSYS_TUNING,
             "communicator %016llx: plan %llu aborted; the current plan stays",
             (unsigned long long)ctx->comm_id, (unsigned long long)plan);
      return 0;
    }
  }
  if (ctx->io_decided_plan == plan && ctx->io_decided_outcome == CP_OUTCOME_COMMITTED) {
    snprintf(why, why_len, "ABORT of plan %llu, which this rank already committed",
             (unsigned long long)plan);
    return -1;
  }
  return 0;
}

void cp_tuner_comm_destroy(cp_tuner_comm* ctx) {
  if (!ctx) return;
  /* After this the I/O thread no longer touches the context. */
  if (ctx->live) cp_io_unregister_tuner(ctx->io, ctx);
  cp_table_free(atomic_load(&ctx->plan_table));
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
