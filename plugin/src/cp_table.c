/*
 * Compiled decision tables.
 *
 * Per collective, every rule boundary (min_bytes, max_bytes + 1) cuts the byte axis into disjoint
 * elementary intervals. Within one interval the set of covering rules is constant, so each interval
 * stores the indices of its covering rules in rule order and a lookup is a binary search over the
 * interval starts plus a scan that only has to filter on numPipeOps. A rule whose numPipeOps is a
 * wildcard matches every query that reaches it, so nothing after it in an interval can ever win:
 * lists are cut there, which keeps the scans short and the links few for ordinary tables.
 *
 * The table is immutable after compile, so concurrent lookups need no synchronisation.
 */
#include "cp_table.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  size_t n_intervals;
  uint64_t* starts;   /* n_intervals entries, ascending, starts[0] == 0 */
  uint32_t* offsets;  /* n_intervals + 1 entries into links */
  uint32_t* links;    /* indices into cp_table.rules, rule order within an interval */
} cp_coll_index;

struct cp_table {
  uint64_t version;
  size_t n_rules;
  cp_rule* rules;        /* kept rules, original order */
  uint32_t* orig_index;  /* position of each kept rule in the caller's list */
  cp_coll_index colls[CP_NUM_COLLS];
};

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return (x > y) - (x < y);
}

/* Index of the interval that contains n (the last start <= n). starts[0] == 0 makes it total. */
static size_t interval_of(const uint64_t* starts, size_t n_intervals, uint64_t n) {
  size_t lo = 0, hi = n_intervals;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (starts[mid] <= n)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

/* "Next interval not yet closed by a wildcard rule", with path compression. Iterative so that a
 * long chain of closed intervals cannot exhaust the stack. next[n] == n is the sentinel. */
static size_t next_open(size_t* next, size_t i) {
  size_t root = i;
  while (next[root] != root) root = next[root];
  while (next[i] != root) {
    size_t up = next[i];
    next[i] = root;
    i = up;
  }
  return root;
}

static int rule_is_valid(const cp_rule* r) {
  if (r->coll < 0 || r->coll >= CP_NUM_COLLS) return 0;
  if (r->min_bytes > r->max_bytes) return 0;
  if (r->n_arms < 1 || r->n_arms > CP_MAX_ARMS) return 0;
  return 1;
}

static int rule_applies(const cp_rule* r, int n_nodes, int n_ranks) {
  return (r->n_nodes == CP_ANY || r->n_nodes == n_nodes) &&
         (r->n_ranks == CP_ANY || r->n_ranks == n_ranks);
}

/* Walks the intervals [first[k], last[k]] of every rule of `members` in order, skipping intervals
 * already closed by a wildcard-numPipeOps rule. With links == NULL it only counts (into counts and
 * *total, failing once *total exceeds the bound); otherwise it writes rule indices at cursor[]. */
static cp_result walk_links(const cp_table* t, const uint32_t* members, size_t n_members,
                            const size_t* first, const size_t* last, size_t n_intervals,
                            size_t* next, uint32_t* counts, size_t* total, uint32_t* cursor,
                            uint32_t* links) {
  for (size_t i = 0; i <= n_intervals; i++) next[i] = i;
  for (size_t k = 0; k < n_members; k++) {
    const cp_rule* r = &t->rules[members[k]];
    int closes = r->num_pipe_ops == CP_ANY;
    size_t i = next_open(next, first[k]);
    while (i <= last[k]) {
      if (links == NULL) {
        if (*total >= CP_TABLE_MAX_LINKS) return CP_ERR_LIMIT;
        (*total)++;
        counts[i]++;
      } else {
        links[cursor[i]++] = members[k];
      }
      if (closes) next[i] = i + 1;
      i = next_open(next, i + 1);
    }
  }
  return CP_OK;
}

static cp_result build_coll_index(cp_table* t, int coll, size_t* total_links) {
  cp_coll_index* ci = &t->colls[coll];
  cp_result res = CP_OK;
  uint32_t* members = NULL;
  size_t *first = NULL, *last = NULL, *next = NULL;
  uint32_t *counts = NULL, *cursor = NULL;
  size_t n_members = 0;

  for (size_t k = 0; k < t->n_rules; k++)
    if (t->rules[k].coll == coll) n_members++;
  if (n_members == 0) return CP_OK;

  members = malloc(n_members * sizeof *members);
  /* 2 boundaries per rule plus the leading 0. */
  ci->starts = malloc((2 * n_members + 1) * sizeof *ci->starts);
  first = malloc(n_members * sizeof *first);
  last = malloc(n_members * sizeof *last);
  if (!members || !ci->starts || !first || !last) {
    res = CP_ERR_NOMEM;
    goto done;
  }

  size_t nb = 0, m = 0;
  ci->starts[nb++] = 0;
  for (size_t k = 0; k < t->n_rules; k++) {
    const cp_rule* r = &t->rules[k];
    if (r->coll != coll) continue;
    members[m++] = (uint32_t)k;
    ci->starts[nb++] = r->min_bytes;
    if (r->max_bytes != UINT64_MAX) ci->starts[nb++] = r->max_bytes + 1;
  }
  qsort(ci->starts, nb, sizeof *ci->starts, cmp_u64);
  size_t n_int = 0;
  for (size_t i = 0; i < nb; i++)
    if (n_int == 0 || ci->starts[i] != ci->starts[n_int - 1]) ci->starts[n_int++] = ci->starts[i];
  ci->n_intervals = n_int;

  for (size_t k = 0; k < n_members; k++) {
    const cp_rule* r = &t->rules[members[k]];
    first[k] = interval_of(ci->starts, n_int, r->min_bytes);
    last[k] = r->max_bytes == UINT64_MAX ? n_int - 1
                                          : interval_of(ci->starts, n_int, r->max_bytes);
  }

  next = malloc((n_int + 1) * sizeof *next);
  counts = calloc(n_int, sizeof *counts);
  ci->offsets = malloc((n_int + 1) * sizeof *ci->offsets);
  cursor = malloc(n_int * sizeof *cursor);
  if (!next || !counts || !ci->offsets || !cursor) {
    res = CP_ERR_NOMEM;
    goto done;
  }

  size_t before = *total_links;
  res = walk_links(t, members, n_members, first, last, n_int, next, counts, total_links, NULL,
                   NULL);
  if (res != CP_OK) goto done;
  size_t mine = *total_links - before;

  ci->offsets[0] = 0;
  for (size_t i = 0; i < n_int; i++) {
    ci->offsets[i + 1] = ci->offsets[i] + counts[i];
    cursor[i] = ci->offsets[i];
  }
  ci->links = malloc((mine ? mine : 1) * sizeof *ci->links);
  if (!ci->links) {
    res = CP_ERR_NOMEM;
    goto done;
  }
  res = walk_links(t, members, n_members, first, last, n_int, next, NULL, NULL, cursor, ci->links);

done:
  free(members);
  free(first);
  free(last);
  free(next);
  free(counts);
  free(cursor);
  return res;
}

cp_result cp_table_compile(const cp_rule* rules, size_t n_rules, int n_nodes, int n_ranks,
                           uint64_t version, cp_table** out) {
  if (out == NULL) return CP_ERR_INVALID;
  *out = NULL;
  if (rules == NULL && n_rules > 0) return CP_ERR_INVALID;
  /* Rule indices are stored as uint32_t; the links bound is far below this anyway. */
  if (n_rules >= UINT32_MAX) return CP_ERR_LIMIT;
  for (size_t k = 0; k < n_rules; k++)
    if (!rule_is_valid(&rules[k])) return CP_ERR_INVALID;

  cp_table* t = calloc(1, sizeof *t);
  CP_ALLOC_CHECK(t);
  t->version = version;

  size_t kept = 0;
  for (size_t k = 0; k < n_rules; k++)
    if (rule_applies(&rules[k], n_nodes, n_ranks)) kept++;
  if (kept > 0) {
    t->rules = malloc(kept * sizeof *t->rules);
    t->orig_index = malloc(kept * sizeof *t->orig_index);
    if (!t->rules || !t->orig_index) {
      cp_table_free(t);
      return CP_ERR_NOMEM;
    }
    for (size_t k = 0; k < n_rules; k++) {
      if (!rule_applies(&rules[k], n_nodes, n_ranks)) continue;
      t->rules[t->n_rules] = rules[k];
      t->orig_index[t->n_rules] = (uint32_t)k;
      t->n_rules++;
    }
  }

  size_t total_links = 0;
  for (int c = 0; c < CP_NUM_COLLS; c++) {
    cp_result res = build_coll_index(t, c, &total_links);
    if (res != CP_OK) {
      cp_table_free(t);
      return res;
    }
  }
  *out = t;
  return CP_OK;
}

/* Shared by both lookups; returns the kept-rule index or -1. */
static long lookup_index(const cp_table* t, int coll, uint64_t n_bytes, int num_pipe_ops) {
  if (t == NULL || coll < 0 || coll >= CP_NUM_COLLS) return -1;
  const cp_coll_index* ci = &t->colls[coll];
  if (ci->n_intervals == 0) return -1;
  size_t i = interval_of(ci->starts, ci->n_intervals, n_bytes);
  for (uint32_t k = ci->offsets[i]; k < ci->offsets[i + 1]; k++) {
    const cp_rule* r = &t->rules[ci->links[k]];
    if (r->num_pipe_ops == CP_ANY || r->num_pipe_ops == num_pipe_ops) return (long)ci->links[k];
  }
  return -1;
}

const cp_rule* cp_table_lookup(const cp_table* table, int coll, uint64_t n_bytes,
                               int num_pipe_ops) {
  long k = lookup_index(table, coll, n_bytes, num_pipe_ops);
  return k < 0 ? NULL : &table->rules[k];
}

int cp_table_lookup_hit(const cp_table* table, int coll, uint64_t n_bytes, int num_pipe_ops,
                        cp_table_hit* hit) {
  long k = lookup_index(table, coll, n_bytes, num_pipe_ops);
  if (k < 0) return 0;
  if (hit) {
    hit->rule = &table->rules[k];
    hit->rule_index = table->orig_index[k];
  }
  return 1;
}

cp_arm cp_rule_pick_arm(const cp_rule* rule, uint64_t call_index) {
  cp_arm keep = {.algo = -1, .proto = -1, .n_channels = 0, .chunk_size = 0};
  if (rule == NULL || rule->n_arms < 1) return keep;
  /* Compile rejects n_arms > CP_MAX_ARMS; clamping keeps a hand-built rule in bounds too. */
  uint64_t n = (uint64_t)(rule->n_arms > CP_MAX_ARMS ? CP_MAX_ARMS : rule->n_arms);
  return rule->arms[call_index % n];
}

uint64_t cp_table_version(const cp_table* table) { return table ? table->version : 0; }

size_t cp_table_rule_count(const cp_table* table) { return table ? table->n_rules : 0; }

void cp_table_free(cp_table* table) {
  if (table == NULL) return;
  for (int c = 0; c < CP_NUM_COLLS; c++) {
    free(table->colls[c].starts);
    free(table->colls[c].offsets);
    free(table->colls[c].links);
  }
  free(table->rules);
  free(table->orig_index);
  free(table);
}
