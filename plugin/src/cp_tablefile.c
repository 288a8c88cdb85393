/*
 * Table file parser (format: docs/table-format.md).
 *
 * The input is treated as hostile: every read is bounded by the buffer length, integers are
 * parsed with explicit overflow checks, there is no recursion, and allocation is bounded by
 * max_rules. Any problem rejects the whole file with one message naming the line, because a
 * partially applied table would make decisions nobody wrote down.
 */
#include "cp_tablefile.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELDS_MIN 8
#define FIELDS_MAX 11
#define CHUNK_BYTES_MAX 2147483647ull

enum {
  F_COLL,
  F_MIN,
  F_MAX,
  F_ALGO,
  F_PROTO,
  F_CHANNELS,
  F_NODES,
  F_RANKS,
  F_PIPE,
  F_REGBUFF,
  F_CHUNK
};

static const char* const field_names[FIELDS_MAX] = {
    "collective", "min_bytes", "max_bytes", "algorithm", "protocol", "channels",
    "nNodes",     "nRanks",    "numPipeOps", "regBuff",  "chunkBytes"};

/* Token spellings of the file format, indexed by CP_COLL_* / CP_ALGO_* / CP_PROTO_*. Kept here
 * rather than borrowed from the name helpers because these are the format's own tokens. */
static const char* const coll_tokens[CP_NUM_COLLS] = {"broadcast", "reduce", "allgather",
                                                      "reducescatter", "allreduce"};
static const char* const algo_tokens[CP_NUM_ALGOS] = {
    "tree", "ring", "collnet_direct", "collnet_chain", "nvls", "nvls_tree", "pat"};
static const char* const proto_tokens[CP_NUM_PROTOS] = {"ll", "ll128", "simple"};

typedef struct {
  const char* name;
  char* err;
  size_t err_len;
} pctx;

typedef struct {
  const char* p;
  size_t n;
} field;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void set_err(const pctx* c, size_t line, const char* fmt, ...) {
  if (c->err == NULL || c->err_len == 0) return;
  int used = line ? snprintf(c->err, c->err_len, "%s:%zu: ", c->name, line)
                  : snprintf(c->err, c->err_len, "%s: ", c->name);
  if (used < 0) {
    c->err[0] = '\0';
    return;
  }
  if ((size_t)used >= c->err_len) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err + used, c->err_len - (size_t)used, fmt, ap);
  va_end(ap);
}

/* A field's text, safe to print: non-printable bytes as \xNN, long fields shortened. */
static const char* show(field f, char out[80]) {
  size_t o = 0;
  for (size_t i = 0; i < f.n; i++) {
    unsigned char ch = (unsigned char)f.p[i];
    if (o + 8 >= 80) {
      memcpy(out + o, "...", 3);
      o += 3;
      break;
    }
    if (ch >= 0x20 && ch < 0x7f) {
      out[o++] = (char)ch;
    } else {
      snprintf(out + o, 5, "\\x%02x", ch);
      o += 4;
    }
  }
  out[o] = '\0';
  return out;
}

static int is_blank(char ch) { return ch == ' ' || ch == '\t'; }

static field trim(const char* p, size_t n) {
  while (n > 0 && is_blank(p[0])) {
    p++;
    n--;
  }
  while (n > 0 && is_blank(p[n - 1])) n--;
  return (field){p, n};
}

static char ascii_lower(char ch) { return (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch; }

static int token_index(field f, const char* const* tokens, int n_tokens) {
  for (int t = 0; t < n_tokens; t++) {
    size_t len = strlen(tokens[t]);
    if (len != f.n) continue;
    size_t i = 0;
    while (i < len && ascii_lower(f.p[i]) == tokens[t][i]) i++;
    if (i == len) return t;
  }
  return -1;
}

/* Parses a decimal integer or the literal -1. On success sets *any (for -1) or *value. */
static int parse_number(const pctx* c, size_t line, int fi, field f, int* any, uint64_t* value) {
  char shown[80];
  *any = 0;
  *value = 0;
  if (f.n == 0) {
    set_err(c, line, "%s is empty (write a non-negative integer, or -1)", field_names[fi]);
    return 0;
  }
  if (f.p[0] == '-') {
    if (f.n == 2 && f.p[1] == '1') {
      *any = 1;
      return 1;
    }
    set_err(c, line, "%s '%s' is negative (the only negative value allowed is -1)",
            field_names[fi], show(f, shown));
    return 0;
  }
  uint64_t v = 0;
  for (size_t i = 0; i < f.n; i++) {
    char ch = f.p[i];
    if (ch < '0' || ch > '9') {
      set_err(c, line, "%s '%s' is not an integer (write decimal digits only, or -1)",
              field_names[fi], show(f, shown));
      return 0;
    }
    unsigned d = (unsigned)(ch - '0');
    if (v > (UINT64_MAX - d) / 10) {
      set_err(c, line, "%s '%s' is too large (at most %llu)", field_names[fi], show(f, shown),
              (unsigned long long)UINT64_MAX);
      return 0;
    }
    v = v * 10 + d;
  }
  *value = v;
  return 1;
}

/* nNodes, nRanks, numPipeOps: -1 (any) or a positive int. */
static int parse_count_filter(const pctx* c, size_t line, int fi, field f, int* out) {
  int any;
  uint64_t v;
  if (!parse_number(c, line, fi, f, &any, &v)) return 0;
  if (any) {
    *out = CP_ANY;
    return 1;
  }
  if (v == 0) {
    set_err(c, line, "%s 0 is invalid (use a positive count, or -1 for any)", field_names[fi]);
    return 0;
  }
  if (v > (uint64_t)INT_MAX) {
    set_err(c, line, "%s %llu is too large (at most %d, or -1 for any)", field_names[fi],
            (unsigned long long)v, INT_MAX);
    return 0;
  }
  *out = (int)v;
  return 1;
}

/* Why NCCL never runs (coll, algo, proto), or NULL when it may. */
static const char* combination_problem(int coll, int algo, int proto, char* buf, size_t len) {
  if (coll == CP_COLL_BROADCAST || coll == CP_COLL_REDUCE) {
    if (algo != CP_ALGO_RING) {
      snprintf(buf, len, "%s runs only with algorithm ring in NCCL, not %s (use ring)",
               coll_tokens[coll], algo_tokens[algo]);
      return buf;
    }
  } else if (coll == CP_COLL_ALLGATHER || coll == CP_COLL_REDUCESCATTER) {
    if (algo != CP_ALGO_RING && algo != CP_ALGO_PAT && algo != CP_ALGO_NVLS &&
        algo != CP_ALGO_COLLNET_DIRECT) {
      snprintf(buf, len,
               "%s has no %s algorithm in NCCL (use ring, pat, nvls or collnet_direct)",
               coll_tokens[coll], algo_tokens[algo]);
      return buf;
    }
  } else if (algo == CP_ALGO_PAT) {
    snprintf(buf, len,
             "allreduce has no pat algorithm in NCCL (pat exists only for allgather and "
             "reducescatter; use tree, ring, nvls, nvls_tree, collnet_direct or collnet_chain)");
    return buf;
  }
  if (algo != CP_ALGO_TREE && algo != CP_ALGO_RING && proto != CP_PROTO_SIMPLE) {
    snprintf(buf, len, "algorithm %s runs only with protocol simple in NCCL, not %s (use simple)",
             algo_tokens[algo], proto_tokens[proto]);
    return buf;
  }
  return NULL;
}

typedef struct {
  cp_rule* rules;
  size_t n, cap;
} rule_vec;

static cp_result push_rule(rule_vec* v, const cp_rule* r) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 64;
    if (cap > SIZE_MAX / sizeof *v->rules) return CP_ERR_NOMEM;
    cp_rule* grown = realloc(v->rules, cap * sizeof *v->rules);
    if (grown == NULL) return CP_ERR_NOMEM;
    v->rules = grown;
    v->cap = cap;
  }
  v->rules[v->n++] = *r;
  return CP_OK;
}

/* Parses one line (without its line ending). Returns CP_OK with *has_rule / *regbuff set, or an
 * error with the message written. */
static cp_result parse_line(const pctx* c, size_t line, const char* p, size_t n, cp_rule* rule,
                            int* has_rule, int* regbuff_filtered) {
  char shown[80], why[256];
  *has_rule = 0;
  *regbuff_filtered = 0;

  size_t content_end = n;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)p[i];
    if (ch == '#' && content_end == n) content_end = i;
    if (ch == 0) {
      set_err(c, line, "contains a NUL byte (this is not a text file; save the table as plain text)");
      return CP_ERR_PARSE;
    }
    if (ch == '\r') {
      set_err(c, line, "contains a carriage return inside the line (use LF or CRLF line endings only)");
      return CP_ERR_PARSE;
    }
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
      set_err(c, line, "contains the control byte 0x%02x (remove it; the table must be plain text)", ch);
      return CP_ERR_PARSE;
    }
    if (ch >= 0x80 && content_end == n) {
      set_err(c, line,
              "contains the non-ASCII byte 0x%02x outside a comment (fields are plain ASCII; "
              "non-ASCII text may appear only after #)", ch);
      return CP_ERR_PARSE;
    }
  }

  field body = trim(p, content_end);
  if (body.n == 0) return CP_OK;

  field f[FIELDS_MAX];
  size_t nf = 0, start = 0;
  for (size_t i = 0; i <= body.n; i++) {
    if (i < body.n && body.p[i] != ',') continue;
    if (nf < FIELDS_MAX) f[nf] = trim(body.p + start, i - start);
    nf++;
    start = i + 1;
  }
  if (nf < FIELDS_MIN || nf > FIELDS_MAX) {
    set_err(c, line,
            "expected 8 to 11 comma-separated fields "
            "(collective,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks"
            "[,numPipeOps[,regBuff[,chunkBytes]]]), found %zu",
            nf);
    return CP_ERR_PARSE;
  }

  memset(rule, 0, sizeof *rule);
  rule->source_line = line > INT_MAX ? INT_MAX : (int)line;
  rule->n_arms = 1;

  int coll = token_index(f[F_COLL], coll_tokens, CP_NUM_COLLS);
  if (coll < 0) {
    set_err(c, line,
            "unknown collective '%s' (use broadcast, reduce, allgather, reducescatter or allreduce)",
            show(f[F_COLL], shown));
    return CP_ERR_PARSE;
  }
  rule->coll = coll;

  int any;
  uint64_t v;
  if (!parse_number(c, line, F_MIN, f[F_MIN], &any, &v)) return CP_ERR_PARSE;
  rule->min_bytes = any ? 0 : v;
  if (!parse_number(c, line, F_MAX, f[F_MAX], &any, &v)) return CP_ERR_PARSE;
  rule->max_bytes = any ? UINT64_MAX : v;
  if (rule->min_bytes > rule->max_bytes) {
    set_err(c, line, "min_bytes %llu is greater than max_bytes %llu (swap them)",
            (unsigned long long)rule->min_bytes, (unsigned long long)rule->max_bytes);
    return CP_ERR_PARSE;
  }

  int algo = token_index(f[F_ALGO], algo_tokens, CP_NUM_ALGOS);
  if (algo < 0) {
    set_err(c, line,
            "unknown algorithm '%s' (use tree, ring, collnet_direct, collnet_chain, nvls, "
            "nvls_tree or pat)",
            show(f[F_ALGO], shown));
    return CP_ERR_PARSE;
  }
  int proto = token_index(f[F_PROTO], proto_tokens, CP_NUM_PROTOS);
  if (proto < 0) {
    set_err(c, line, "unknown protocol '%s' (use ll, ll128 or simple)", show(f[F_PROTO], shown));
    return CP_ERR_PARSE;
  }
  const char* problem = combination_problem(coll, algo, proto, why, sizeof why);
  if (problem) {
    set_err(c, line, "%s", problem);
    return CP_ERR_PARSE;
  }
  rule->arms[0].algo = (int8_t)algo;
  rule->arms[0].proto = (int8_t)proto;

  if (!parse_number(c, line, F_CHANNELS, f[F_CHANNELS], &any, &v)) return CP_ERR_PARSE;
  if (!any && v > CP_MAX_CHANNELS) {
    set_err(c, line,
            "channels %llu is outside 1..%d (use 1..%d, or -1 or 0 to keep NCCL's choice)",
            (unsigned long long)v, CP_MAX_CHANNELS, CP_MAX_CHANNELS);
    return CP_ERR_PARSE;
  }
  rule->arms[0].n_channels = any ? 0 : (uint8_t)v;

  if (!parse_count_filter(c, line, F_NODES, f[F_NODES], &rule->n_nodes)) return CP_ERR_PARSE;
  if (!parse_count_filter(c, line, F_RANKS, f[F_RANKS], &rule->n_ranks)) return CP_ERR_PARSE;
  rule->num_pipe_ops = CP_ANY;
  if (nf > F_PIPE &&
      !parse_count_filter(c, line, F_PIPE, f[F_PIPE], &rule->num_pipe_ops))
    return CP_ERR_PARSE;

  if (nf > F_REGBUFF) {
    if (!parse_number(c, line, F_REGBUFF, f[F_REGBUFF], &any, &v)) return CP_ERR_PARSE;
    if (!any && v > 1) {
      set_err(c, line, "regBuff %llu is invalid (use 0, 1, or -1 for any)", (unsigned long long)v);
      return CP_ERR_PARSE;
    }
    if (!any) *regbuff_filtered = 1;
  }

  if (nf > F_CHUNK) {
    if (!parse_number(c, line, F_CHUNK, f[F_CHUNK], &any, &v)) return CP_ERR_PARSE;
    if (!any && v > CHUNK_BYTES_MAX) {
      set_err(c, line, "chunkBytes %llu is larger than %llu (use a smaller chunk, or 0/-1 to keep NCCL's)",
              (unsigned long long)v, CHUNK_BYTES_MAX);
      return CP_ERR_PARSE;
    }
    rule->arms[0].chunk_size = any ? 0 : (uint32_t)v;
  }

  *has_rule = 1;
  return CP_OK;
}

/* ---- contradiction check ---------------------------------------------------------------------
 *
 * Within one filter group (collective, nNodes, nRanks, numPipeOps), an earlier rule A and a later
 * rule B with different decisions may overlap only when B strictly contains A. Given that they
 * overlap, "B does not strictly contain A" means A has the same range as B, or A crosses one of
 * B's ends: A covers both min_B - 1 and min_B, or both max_B and max_B + 1. The identical-range
 * case is found by sorting; the crossing case by a sweep over the byte axis with a Fenwick tree
 * over file positions that keeps, per prefix, the largest max_bytes and the largest max_bytes of a
 * different decision. That is O(n log n), so even a file at the rule limit is checked quickly.
 */

typedef struct {
  uint64_t max;
  uint64_t color; /* the decision, packed */
  uint32_t pos;   /* position within the group, file order */
  int has;
} cand;

typedef struct {
  cand best;  /* largest max */
  cand other; /* largest max whose decision differs from best's */
} top2;

typedef struct {
  uint64_t p;    /* A must start at or before p ... */
  uint64_t need; /* ... and end at or after need (p + 1) */
  uint32_t pos;  /* B */
} crossing_query;

static uint64_t decision_color(const cp_rule* r) {
  const cp_arm* a = &r->arms[0];
  return ((uint64_t)(uint8_t)a->algo << 48) | ((uint64_t)(uint8_t)a->proto << 40) |
         ((uint64_t)a->n_channels << 32) | a->chunk_size;
}

static void top2_add(top2* t, cand c) {
  if (!c.has) return;
  if (!t->best.has || c.max > t->best.max) {
    /* The old best stays as "other" only if its decision differs from the new best's; if it is
     * the same decision, the old other (whose decision differs from it) remains valid. */
    if (t->best.has && t->best.color != c.color) t->other = t->best;
    t->best = c;
  } else if (c.color != t->best.color && (!t->other.has || c.max > t->other.max)) {
    t->other = c;
  }
}

/* Sort keys carry their own data: qsort has no context argument in C11, and a global would make
 * concurrent parses unsafe. */
typedef struct {
  int coll, n_nodes, n_ranks, num_pipe_ops;
  uint32_t idx; /* file order */
} group_key;

typedef struct {
  uint64_t min, max;
  uint32_t pos; /* position within the group, file order */
} range_key;

static int cmp_int(int x, int y) { return (x > y) - (x < y); }
static int cmp_u64v(uint64_t x, uint64_t y) { return (x > y) - (x < y); }

static int cmp_group(const void* a, const void* b) {
  const group_key *x = a, *y = b;
  int r;
  if ((r = cmp_int(x->coll, y->coll))) return r;
  if ((r = cmp_int(x->n_nodes, y->n_nodes))) return r;
  if ((r = cmp_int(x->n_ranks, y->n_ranks))) return r;
  if ((r = cmp_int(x->num_pipe_ops, y->num_pipe_ops))) return r;
  return (x->idx > y->idx) - (x->idx < y->idx);
}

static int cmp_range(const void* a, const void* b) {
  const range_key *x = a, *y = b;
  int r;
  if ((r = cmp_u64v(x->min, y->min))) return r;
  if ((r = cmp_u64v(x->max, y->max))) return r;
  return (x->pos > y->pos) - (x->pos < y->pos);
}

static int cmp_query(const void* a, const void* b) {
  const crossing_query *x = a, *y = b;
  int r;
  if ((r = cmp_u64v(x->p, y->p))) return r;
  return (x->pos > y->pos) - (x->pos < y->pos);
}

typedef struct {
  size_t b_line, a_line; /* 0 = none found */
  int shadowed;
} conflict;

static void note_conflict(conflict* best, const cp_rule* a, const cp_rule* b) {
  size_t bl = (size_t)b->source_line;
  if (best->b_line != 0 && best->b_line <= bl) return;
  best->b_line = bl;
  best->a_line = (size_t)a->source_line;
  best->shadowed = a->min_bytes <= b->min_bytes && a->max_bytes >= b->max_bytes;
}

/* Checks one group. grp[k] are pointers to the group's rules in file order. Scratch arrays hold
 * >= g entries (queries >= 2g, tree >= g + 1). */
static void check_group(const cp_rule* const* grp, uint32_t g, range_key* keys, top2* tree,
                        crossing_query* queries, conflict* found) {
  /* Sorted by (min, max, file position): runs of identical ranges are adjacent, and the same
   * order serves as the insertion order of the sweep below. */
  for (uint32_t k = 0; k < g; k++) keys[k] = (range_key){grp[k]->min_bytes, grp[k]->max_bytes, k};
  qsort(keys, g, sizeof *keys, cmp_range);

  /* Identical ranges: the earliest rule in a run whose decision differs from the run's first. */
  for (uint32_t k = 0; k < g;) {
    uint32_t e = k + 1;
    while (e < g && keys[e].min == keys[k].min && keys[e].max == keys[k].max) e++;
    uint64_t color = decision_color(grp[keys[k].pos]);
    for (uint32_t m = k + 1; m < e; m++) {
      if (decision_color(grp[keys[m].pos]) != color) {
        note_conflict(found, grp[keys[k].pos], grp[keys[m].pos]);
        break;
      }
    }
    k = e;
  }

  /* Crossings: sweep p upwards, inserting rules with min <= p, and ask the file-order prefix
   * before B for a different decision reaching past p. */
  size_t nq = 0;
  for (uint32_t k = 0; k < g; k++) {
    if (grp[k]->min_bytes > 0)
      queries[nq++] = (crossing_query){grp[k]->min_bytes - 1, grp[k]->min_bytes, k};
    if (grp[k]->max_bytes < UINT64_MAX)
      queries[nq++] = (crossing_query){grp[k]->max_bytes, grp[k]->max_bytes + 1, k};
  }
  qsort(queries, nq, sizeof *queries, cmp_query);
  memset(tree, 0, ((size_t)g + 1) * sizeof *tree);

  uint32_t inserted = 0;
  for (size_t q = 0; q < nq; q++) {
    while (inserted < g && keys[inserted].min <= queries[q].p) {
      uint32_t pos = keys[inserted++].pos;
      cand c = {grp[pos]->max_bytes, decision_color(grp[pos]), pos, 1};
      for (uint32_t i = pos + 1; i <= g; i += i & (~i + 1)) top2_add(&tree[i], c);
    }
    uint32_t b = queries[q].pos;
    top2 acc;
    memset(&acc, 0, sizeof acc);
    for (uint32_t i = b; i > 0; i -= i & (~i + 1)) {
      top2_add(&acc, tree[i].best);
      top2_add(&acc, tree[i].other);
    }
    uint64_t color = decision_color(grp[b]);
    const cand* hit = NULL;
    if (acc.best.has && acc.best.color != color)
      hit = &acc.best;
    else if (acc.other.has)
      hit = &acc.other;
    if (hit && hit->max >= queries[q].need) note_conflict(found, grp[hit->pos], grp[b]);
  }
}

static cp_result check_contradictions(const pctx* c, const cp_rule* rules, size_t n) {
  if (n < 2) return CP_OK;
  cp_result res = CP_OK;
  group_key* order = malloc(n * sizeof *order);
  range_key* keys = malloc(n * sizeof *keys);
  const cp_rule** grp = malloc(n * sizeof *grp);
  top2* tree = malloc((n + 1) * sizeof *tree);
  crossing_query* queries = malloc(2 * n * sizeof *queries);
  if (!order || !keys || !grp || !tree || !queries) {
    set_err(c, 0, "out of memory while checking %zu rules", n);
    res = CP_ERR_NOMEM;
    goto done;
  }
  for (size_t k = 0; k < n; k++)
    order[k] = (group_key){rules[k].coll, rules[k].n_nodes, rules[k].n_ranks,
                           rules[k].num_pipe_ops, (uint32_t)k};
  qsort(order, n, sizeof *order, cmp_group);

  conflict found = {0, 0, 0};
  for (size_t k = 0; k < n;) {
    size_t e = k;
    while (e < n && cmp_int(order[e].coll, order[k].coll) == 0 &&
           order[e].n_nodes == order[k].n_nodes && order[e].n_ranks == order[k].n_ranks &&
           order[e].num_pipe_ops == order[k].num_pipe_ops) {
      grp[e - k] = &rules[order[e].idx];
      e++;
    }
    if (e - k > 1) check_group(grp, (uint32_t)(e - k), keys, tree, queries, &found);
    k = e;
  }
  if (found.b_line != 0) {
    res = CP_ERR_PARSE;
    if (found.shadowed)
      set_err(c, found.b_line,
              "this rule can never apply: the rule on line %zu has the same collective, nNodes, "
              "nRanks and numPipeOps, covers its whole byte range and decides differently "
              "(remove this rule, or move it before line %zu)",
              found.a_line, found.a_line);
    else
      set_err(c, found.b_line,
              "this rule overlaps the rule on line %zu (same collective, nNodes, nRanks and "
              "numPipeOps) with a different decision; a later rule may differ from an earlier "
              "overlapping one only if it strictly contains it (make the ranges disjoint, or "
              "put the specific rule first and the wider fallback after it)",
              found.a_line);
  }
done:
  free(order);
  free(keys);
  free(grp);
  free(tree);
  free(queries);
  return res;
}

cp_result cp_tablefile_parse_buffer(const char* name, const char* buf, size_t len,
                                    size_t max_rules, cp_rule_set* out, char* err,
                                    size_t err_len) {
  pctx c = {name ? name : "<table>", err, err_len};
  if (err && err_len) err[0] = '\0';
  if (out == NULL) {
    set_err(&c, 0, "internal error: no output rule set");
    return CP_ERR_INVALID;
  }
  memset(out, 0, sizeof *out);
  if (buf == NULL && len > 0) {
    set_err(&c, 0, "internal error: no buffer");
    return CP_ERR_INVALID;
  }
  if (len > CP_TABLEFILE_MAX_BYTES) {
    set_err(&c, 0, "file is too large: %zu bytes, the limit is %u bytes (split the table or "
            "remove unused rules)", len, (unsigned)CP_TABLEFILE_MAX_BYTES);
    return CP_ERR_LIMIT;
  }

  rule_vec rules = {NULL, 0, 0};
  size_t n_regbuff = 0, line = 0, pos = 0;
  cp_result res = CP_OK;

  /* A UTF-8 byte-order mark, as some editors write, carries no content. */
  if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) pos = 3;

  while (pos < len) {
    line++;
    const char* p = buf + pos;
    const char* nl = memchr(p, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - p) : len - pos;
    pos += n + (nl ? 1 : 0);
    if (n > 0 && p[n - 1] == '\r') n--;
    if (n > CP_TABLEFILE_MAX_LINE) {
      set_err(&c, line, "line is longer than %d bytes (split it or shorten its comment)",
              CP_TABLEFILE_MAX_LINE);
      res = CP_ERR_PARSE;
      goto fail;
    }
    cp_rule rule;
    int has_rule, regbuff_filtered;
    res = parse_line(&c, line, p, n, &rule, &has_rule, &regbuff_filtered);
    if (res != CP_OK) goto fail;
    if (!has_rule) continue;
    if (regbuff_filtered) {
      n_regbuff++;
      continue;
    }
    if (rules.n >= max_rules) {
      set_err(&c, line, "too large: more than %zu rules (raise CCLPILOT_TABLE_MAX_ENTRIES or "
              "merge rules)", max_rules);
      res = CP_ERR_LIMIT;
      goto fail;
    }
    if (push_rule(&rules, &rule) != CP_OK) {
      set_err(&c, line, "out of memory after %zu rules", rules.n);
      res = CP_ERR_NOMEM;
      goto fail;
    }
  }

  res = check_contradictions(&c, rules.rules, rules.n);
  if (res != CP_OK) goto fail;

  out->rules = rules.rules;
  out->n_rules = rules.n;
  out->n_regbuff_lines = n_regbuff;
  /* FNV-1a over the bytes: logged with the table, so that ranks (or nodes) holding different
   * copies of "the same" file can be told apart in the logs. */
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)buf[i]) * 0x100000001b3ull;
  out->content_hash = h;
  if (out->n_rules == 0) {
    free(out->rules);
    out->rules = NULL;
  }
  return CP_OK;

fail:
  free(rules.rules);
  return res;
}

cp_result cp_tablefile_parse_file(const char* path, size_t max_rules, cp_rule_set* out, char* err,
                                  size_t err_len) {
  pctx c = {path ? path : "<table>", err, err_len};
  if (err && err_len) err[0] = '\0';
  if (out) memset(out, 0, sizeof *out);
  if (path == NULL || out == NULL) {
    set_err(&c, 0, "internal error: no path or output rule set");
    return CP_ERR_INVALID;
  }
  FILE* f = fopen(path, "rb");
  if (f == NULL) {
    set_err(&c, 0, "cannot open the table file: %s (check the path and its permissions)",
            strerror(errno));
    return CP_ERR_IO;
  }
  char* data = NULL;
  size_t len = 0, cap = 0;
  cp_result res = CP_OK;
  for (;;) {
    if (len == cap) {
      /* Read one byte past the limit so that "too large" is detected without trusting stat. */
      if (cap > CP_TABLEFILE_MAX_BYTES) break;
      size_t ncap = cap ? cap * 2 : 65536;
      if (ncap > (size_t)CP_TABLEFILE_MAX_BYTES + 1) ncap = (size_t)CP_TABLEFILE_MAX_BYTES + 1;
      char* grown = realloc(data, ncap);
      if (grown == NULL) {
        set_err(&c, 0, "out of memory reading the table file");
        res = CP_ERR_NOMEM;
        goto done;
      }
      data = grown;
      cap = ncap;
    }
    size_t got = fread(data + len, 1, cap - len, f);
    len += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    set_err(&c, 0, "cannot read the table file: %s (check that it is a regular, readable file)",
            strerror(errno));
    res = CP_ERR_IO;
    goto done;
  }
  res = cp_tablefile_parse_buffer(path, data, len, max_rules, out, err, err_len);
done:
  free(data);
  fclose(f);
  return res;
}

void cp_rule_set_free(cp_rule_set* set) {
  if (set == NULL) return;
  free(set->rules);
  set->rules = NULL;
  set->n_rules = 0;
  set->n_regbuff_lines = 0;
}
