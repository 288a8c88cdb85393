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

#endif
