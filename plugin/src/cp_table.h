/*
 * Decision tables. A rule set (from a table file, later from daemon plans) is compiled per
 * communicator, for that communicator's nNodes and nRanks, into an immutable cp_table. Lookup is
 * a binary search over disjoint byte intervals per collective followed by a scan of the few rules
 * covering that interval, so its cost grows with log(table size), not linearly.
 */
#ifndef CCLPILOT_CP_TABLE_H
#define CCLPILOT_CP_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "cp_core.h"

#define CP_MAX_ARMS 16 /* candidate arms one rule may list */
/* Bound on the compiled form: total (interval, rule) links over all collectives. Many nested,
 * overlapping rules with distinct numPipeOps filters grow quadratically; compile fails with
 * CP_ERR_LIMIT instead of allocating without bound. */
#define CP_TABLE_MAX_LINKS ((size_t)4u << 20)

typedef struct {
  int coll;               /* CP_COLL_* */
  uint64_t min_bytes;     /* inclusive */
  uint64_t max_bytes;     /* inclusive; UINT64_MAX = no upper bound */
  int n_nodes;            /* CP_ANY or exact */
  int n_ranks;            /* CP_ANY or exact */
  int num_pipe_ops;       /* CP_ANY or exact */
  int n_arms;             /* 1..CP_MAX_ARMS */
  cp_arm arms[CP_MAX_ARMS];
  int source_line;        /* 1-based line in the file it came from, 0 if none */
} cp_rule;

typedef struct cp_table cp_table;

/* The compiled form of one matching rule. */
typedef struct {
  const cp_rule* rule; /* points into the table's own copy of the rules */
  uint32_t rule_index; /* position in the original rule list (first match wins) */
} cp_table_hit;

/* Compiles the rules that apply to a communicator with n_nodes/n_ranks. Rules are copied; the
 * caller keeps ownership of `rules`. Rules are matched in list order (first match wins).
 * `version` identifies the plan it came from (0 for a static file). */
cp_result cp_table_compile(const cp_rule* rules, size_t n_rules, int n_nodes, int n_ranks,
                           uint64_t version, cp_table** out);

/* First rule matching (coll, n_bytes, num_pipe_ops), or NULL. Lock-free, allocation-free,
 * safe to call concurrently on the same table. */
const cp_rule* cp_table_lookup(const cp_table* table, int coll, uint64_t n_bytes,
                               int num_pipe_ops);

/* Same lookup, also reporting the rule's position in the list given to compile. Returns 1 and
 * fills *hit (may be NULL) on a match, 0 otherwise. */
int cp_table_lookup_hit(const cp_table* table, int coll, uint64_t n_bytes, int num_pipe_ops,
                        cp_table_hit* hit);

/* The arm a rule yields for the call_index-th call of a key: a pure function of (rule,
 * call_index), identical on every rank. */
cp_arm cp_rule_pick_arm(const cp_rule* rule, uint64_t call_index);

uint64_t cp_table_version(const cp_table* table);
size_t cp_table_rule_count(const cp_table* table); /* rules kept after filtering by nodes/ranks */
void cp_table_free(cp_table* table);

#endif
