/*
 * Core functions beyond what the export shims need: plan publication (the daemon's I/O thread
 * will call it) and introspection for tests.
 */
#ifndef CCLPILOT_CP_TUNER_H
#define CCLPILOT_CP_TUNER_H

#include "cp_core.h"
#include "cp_table.h"

/* Compiles `rules` for this communicator and publishes them atomically: calls already running
 * finish on the old table, the next call uses the new one. The old table is retired, not freed,
 * since a reader may still hold it (it is freed with the context). Fails with CP_ERR_INVALID when
 * the context may not decide (off/observe mode, NCCL_ALGO/NCCL_PROTO set). Must not be called
 * concurrently with itself for the same context. */
cp_result cp_tuner_publish_rules(cp_tuner_comm* ctx, const cp_rule* rules, size_t n_rules,
                                 uint64_t version);

/* Number of getCollInfo calls seen by this communicator (the activation clock of plans). */
uint64_t cp_tuner_call_count(const cp_tuner_comm* ctx);

/* ---- live mode: two-phase plan activation (PROTOCOL.md "Sessions and plans") ----------------
 *
 * A context holds at most one pending plan. The I/O thread prepares, commits and aborts it with
 * the functions below (never concurrently with each other for one context); the hot path
 * activates a committed plan exactly at its call index, and a rank that reaches that index with
 * the plan still undecided waits at most CCLPILOT_COMMIT_WAIT_MS, then keeps its current plan
 * and marks the pending one expired (a later COMMIT for it is refused). */

typedef struct {
  int ok;
  uint64_t plan;
  uint64_t calls;    /* the context's call count when it answered */
  uint64_t seq_hash; /* FNV-1a call-sequence hash of those calls */
  char reason[256];  /* "" when ok */
} cp_plan_ack;

/* PREPARE. Fills *ack (always). A repeated PREPARE of the last plan answered gets the same ACK. */
void cp_tuner_plan_prepare(cp_tuner_comm* ctx, uint64_t plan, uint64_t activate_at,
                           const cp_rule* rules, size_t n_rules, cp_plan_ack* ack);
/* COMMIT. 0 when accepted (also when repeated); -1 with `why` filled when it does not fit the plan
 * state (unknown plan, other activate_at, expired): the caller answers ERROR `state`. */
int cp_tuner_plan_commit(cp_tuner_comm* ctx, uint64_t plan, uint64_t activate_at, char* why,
                         size_t why_len);
/* ABORT. 0 when the plan is dropped or was never prepared (the current plan stays either way);
 * -1 with `why` when the plan had already been committed. */
int cp_tuner_plan_abort(cp_tuner_comm* ctx, uint64_t plan, char* why, size_t why_len);
/* The ACK last given for `plan` (re-sent as the question of a waiting rank). 1 if there is one. */
int cp_tuner_plan_last_ack(const cp_tuner_comm* ctx, uint64_t plan, cp_plan_ack* ack);

/* Id of the plan deciding this communicator's calls now (0: the static table or none). */
uint64_t cp_tuner_active_plan(const cp_tuner_comm* ctx);
/* Calls made so far and the call-sequence hash over them, read consistently (any thread). */
void cp_tuner_seq_state(const cp_tuner_comm* ctx, uint64_t* calls, uint64_t* seq_hash);

/* What the I/O thread needs to register the context (HELLO). */
typedef struct {
  int abi_version;
  uint64_t comm_id;
  int n_ranks, n_nodes;
} cp_tuner_identity;
void cp_tuner_identity_of(const cp_tuner_comm* ctx, cp_tuner_identity* out);
/* The I/O thread marks a context welcomed once the daemon accepted its HELLO. */
void cp_tuner_set_welcomed(cp_tuner_comm* ctx, int welcomed);

#endif
