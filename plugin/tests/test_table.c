/* Unit tests of the compiled decision table (cp_table.c). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cp_table.h"
#include "testutil.h"

static cp_rule make_rule(int coll, uint64_t lo, uint64_t hi, int pipe, int algo, int proto) {
  cp_rule r;
  memset(&r, 0, sizeof r);
  r.coll = coll;
  r.min_bytes = lo;
  r.max_bytes = hi;
  r.n_nodes = CP_ANY;
  r.n_ranks = CP_ANY;
  r.num_pipe_ops = pipe;
  r.n_arms = 1;
  r.arms[0].algo = (int8_t)algo;
  r.arms[0].proto = (int8_t)proto;
  return r;
}

/* splitmix64: a tiny seeded generator, so failures reproduce exactly. */
static uint64_t rng_next(uint64_t* s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* The specification, written as plainly as possible: the first rule in list order that applies. */
static long brute_lookup(const cp_rule* rules, size_t n, int n_nodes, int n_ranks, int coll,
                         uint64_t bytes, int pipe) {
  for (size_t k = 0; k < n; k++) {
    const cp_rule* r = &rules[k];
    if (r->n_nodes != CP_ANY && r->n_nodes != n_nodes) continue;
    if (r->n_ranks != CP_ANY && r->n_ranks != n_ranks) continue;
    if (r->coll != coll) continue;
    if (bytes < r->min_bytes || bytes > r->max_bytes) continue;
    if (r->num_pipe_ops != CP_ANY && r->num_pipe_ops != pipe) continue;
    return (long)k;
  }
  return -1;
}

static const char* algo_of(const cp_rule* r) {
  static const char* names[] = {"tree", "ring", "cd", "cc", "nvls", "nvlstree", "pat"};
  if (r == NULL) return "none";
  int a = r->arms[0].algo;
  return (a >= 0 && a < 7) ? names[a] : "?";
}

/* Algorithm of the first arm of the matching rule, -1 when nothing matches (no NULL deref when a
 * broken table misses). */
static int algo_at(const cp_table* t, int coll, uint64_t n, int pipe) {
  const cp_rule* r = cp_table_lookup(t, coll, n, pipe);
  return r ? r->arms[0].algo : -1;
}

static void test_first_match_and_boundaries(void) {
  cp_rule rules[] = {
      make_rule(CP_COLL_ALLREDUCE, 0, 1023, CP_ANY, CP_ALGO_TREE, CP_PROTO_LL),
      make_rule(CP_COLL_ALLREDUCE, 512, 4095, CP_ANY, CP_ALGO_RING, CP_PROTO_LL128),
      make_rule(CP_COLL_ALLREDUCE, 0, UINT64_MAX, CP_ANY, CP_ALGO_NVLS, CP_PROTO_SIMPLE),
      make_rule(CP_COLL_ALLGATHER, 100, 100, CP_ANY, CP_ALGO_PAT, CP_PROTO_SIMPLE),
  };
  cp_table* t = NULL;
  CHECK_INT_EQ(cp_table_compile(rules, 4, 2, 16, 7, &t), CP_OK);
  if (!t) return;
  CHECK_INT_EQ(cp_table_version(t), 7);
  CHECK_INT_EQ(cp_table_rule_count(t), 4);

  struct {
    int coll;
    uint64_t n;
    int algo; /* -1 = no match */
  } cases[] = {
      {CP_COLL_ALLREDUCE, 0, CP_ALGO_TREE},
      {CP_COLL_ALLREDUCE, 511, CP_ALGO_TREE},
      {CP_COLL_ALLREDUCE, 512, CP_ALGO_TREE}, /* overlap: the earlier rule wins */
      {CP_COLL_ALLREDUCE, 1023, CP_ALGO_TREE}, /* inclusive upper end */
      {CP_COLL_ALLREDUCE, 1024, CP_ALGO_RING},
      {CP_COLL_ALLREDUCE, 4095, CP_ALGO_RING},
      {CP_COLL_ALLREDUCE, 4096, CP_ALGO_NVLS},
      {CP_COLL_ALLREDUCE, UINT64_MAX, CP_ALGO_NVLS}, /* open upper bound */
      {CP_COLL_ALLREDUCE, UINT64_MAX - 1, CP_ALGO_NVLS},
      {CP_COLL_ALLGATHER, 99, -1},
      {CP_COLL_ALLGATHER, 100, CP_ALGO_PAT}, /* single-byte range, both ends inclusive */
      {CP_COLL_ALLGATHER, 101, -1},
      {CP_COLL_ALLGATHER, 0, -1},
      {CP_COLL_ALLGATHER, UINT64_MAX, -1},
      {CP_COLL_BROADCAST, 100, -1},
      {CP_COLL_REDUCESCATTER, 0, -1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const cp_rule* r = cp_table_lookup(t, cases[i].coll, cases[i].n, 1);
    int got = r ? r->arms[0].algo : -1;
    CHECK(got == cases[i].algo, "case %zu: coll %d n %llu: got %s", i, cases[i].coll,
          (unsigned long long)cases[i].n, algo_of(r));
  }
  /* Out-of-range collectives (e.g. SendRecv = 5) and a NULL table match nothing. */
  CHECK(cp_table_lookup(t, 5, 100, 1) == NULL, "coll 5 matched");
  CHECK(cp_table_lookup(t, -1, 100, 1) == NULL, "coll -1 matched");
  CHECK(cp_table_lookup(NULL, CP_COLL_ALLREDUCE, 100, 1) == NULL, "NULL table matched");

  cp_table_hit hit;
  CHECK_INT_EQ(cp_table_lookup_hit(t, CP_COLL_ALLREDUCE, 2000, 1, &hit), 1);
  CHECK_INT_EQ(hit.rule_index, 1);
  CHECK(hit.rule != NULL && hit.rule->arms[0].proto == CP_PROTO_LL128, "hit rule");
  CHECK_INT_EQ(cp_table_lookup_hit(t, CP_COLL_ALLGATHER, 5, 1, &hit), 0);
  cp_table_free(t);
}

static void test_pipe_ops_filter(void) {
  cp_rule rules[] = {
      make_rule(CP_COLL_ALLREDUCE, 0, 1000, 2, CP_ALGO_TREE, CP_PROTO_LL),
      make_rule(CP_COLL_ALLREDUCE, 0, 1000, 3, CP_ALGO_RING, CP_PROTO_LL),
      make_rule(CP_COLL_ALLREDUCE, 500, 2000, CP_ANY, CP_ALGO_NVLS, CP_PROTO_SIMPLE),
      /* Unreachable below 2000 (the wildcard above wins first), reachable above. */
      make_rule(CP_COLL_ALLREDUCE, 0, 5000, 1, CP_ALGO_COLLNET_CHAIN, CP_PROTO_SIMPLE),
  };
  cp_table* t = NULL;
  CHECK_INT_EQ(cp_table_compile(rules, 4, 1, 8, 0, &t), CP_OK);
  if (!t) return;
  CHECK(algo_at(t, CP_COLL_ALLREDUCE, 10, 2) == CP_ALGO_TREE, "pipe 2");
  CHECK(algo_at(t, CP_COLL_ALLREDUCE, 10, 3) == CP_ALGO_RING, "pipe 3");
  CHECK(algo_at(t, CP_COLL_ALLREDUCE, 10, 1) == CP_ALGO_COLLNET_CHAIN,
        "pipe 1 below the wildcard");
  CHECK(cp_table_lookup(t, CP_COLL_ALLREDUCE, 10, 4) == NULL, "pipe 4 below 500");
  CHECK(algo_at(t, CP_COLL_ALLREDUCE, 600, 1) == CP_ALGO_NVLS,
        "wildcard wins over a later specific rule");
  CHECK(algo_at(t, CP_COLL_ALLREDUCE, 600, 2) == CP_ALGO_TREE,
        "earlier specific rule wins over the wildcard");
  CHECK(algo_at(t, CP_COLL_ALLREDUCE, 3000, 1) == CP_ALGO_COLLNET_CHAIN,
        "pipe 1 above the wildcard's range");
  CHECK(cp_table_lookup(t, CP_COLL_ALLREDUCE, 3000, 2) == NULL, "pipe 2 at 3000");
  cp_table_free(t);
}

static void test_nodes_ranks_filter(void) {
  cp_rule rules[] = {
      make_rule(CP_COLL_ALLREDUCE, 0, 100, CP_ANY, CP_ALGO_TREE, CP_PROTO_LL),
      make_rule(CP_COLL_ALLREDUCE, 0, 100, CP_ANY, CP_ALGO_RING, CP_PROTO_LL),
      make_rule(CP_COLL_ALLREDUCE, 0, 100, CP_ANY, CP_ALGO_NVLS, CP_PROTO_SIMPLE),
  };
  rules[0].n_nodes = 4;   /* other jobs only */
  rules[1].n_ranks = 16;  /* any node count, 16 ranks */
  cp_table* t = NULL;

  CHECK_INT_EQ(cp_table_compile(rules, 3, 2, 16, 0, &t), CP_OK);
  CHECK_INT_EQ(cp_table_rule_count(t), 2);
  CHECK(t && algo_at(t, CP_COLL_ALLREDUCE, 1, 0) == CP_ALGO_RING,
        "2x16 picks the nRanks=16 rule");
  cp_table_free(t);

  CHECK_INT_EQ(cp_table_compile(rules, 3, 4, 32, 0, &t), CP_OK);
  CHECK_INT_EQ(cp_table_rule_count(t), 2);
  CHECK(t && algo_at(t, CP_COLL_ALLREDUCE, 1, 0) == CP_ALGO_TREE,
        "4x32 picks the nNodes=4 rule");
  cp_table_hit hit = {0};
  CHECK(t && cp_table_lookup_hit(t, CP_COLL_ALLREDUCE, 1, 0, &hit) == 1 && hit.rule_index == 0,
        "rule_index of a kept rule");
  cp_table_free(t);

  CHECK_INT_EQ(cp_table_compile(rules, 3, 1, 8, 0, &t), CP_OK);
  CHECK_INT_EQ(cp_table_rule_count(t), 1);
  CHECK(t && cp_table_lookup_hit(t, CP_COLL_ALLREDUCE, 1, 0, &hit) == 1 && hit.rule_index == 2,
        "rule_index counts filtered-out rules (got %u)", (unsigned)hit.rule_index);
  cp_table_free(t);
}

static void test_pick_arm(void) {
  cp_rule r = make_rule(CP_COLL_ALLREDUCE, 0, 10, CP_ANY, CP_ALGO_TREE, CP_PROTO_LL);
  r.n_arms = 3;
  r.arms[1] = (cp_arm){.algo = CP_ALGO_RING, .proto = CP_PROTO_LL128, .n_channels = 8};
  r.arms[2] = (cp_arm){.algo = CP_ALGO_RING, .proto = CP_PROTO_SIMPLE, .chunk_size = 131072};
  for (uint64_t i = 0; i < 30; i++) {
    cp_arm a = cp_rule_pick_arm(&r, i);
    CHECK(memcmp(&a, &r.arms[i % 3], sizeof a) == 0, "call %llu picked the wrong arm",
          (unsigned long long)i);
  }
  cp_arm a = cp_rule_pick_arm(&r, UINT64_MAX); /* UINT64_MAX % 3 == 0 */
  CHECK_INT_EQ(a.algo, CP_ALGO_TREE);
  a = cp_rule_pick_arm(NULL, 5);
  CHECK(a.algo == -1 && a.proto == -1 && a.n_channels == 0 && a.chunk_size == 0,
        "NULL rule must yield the keep-NCCL arm");
  r.n_arms = 0;
  a = cp_rule_pick_arm(&r, 5);
  CHECK(a.algo == -1, "a rule without arms must yield the keep-NCCL arm");
}

static void test_invalid_and_empty(void) {
  cp_table* t = (cp_table*)&t; /* must be reset to NULL on failure */
  cp_rule bad = make_rule(CP_COLL_ALLREDUCE, 10, 5, CP_ANY, CP_ALGO_RING, CP_PROTO_LL);
  CHECK_INT_EQ(cp_table_compile(&bad, 1, 1, 1, 0, &t), CP_ERR_INVALID);
  CHECK(t == NULL, "out not cleared on failure");
  bad = make_rule(CP_NUM_COLLS, 0, 5, CP_ANY, CP_ALGO_RING, CP_PROTO_LL);
  CHECK_INT_EQ(cp_table_compile(&bad, 1, 1, 1, 0, &t), CP_ERR_INVALID);
  bad = make_rule(CP_COLL_ALLREDUCE, 0, 5, CP_ANY, CP_ALGO_RING, CP_PROTO_LL);
  bad.n_arms = 0;
  CHECK_INT_EQ(cp_table_compile(&bad, 1, 1, 1, 0, &t), CP_ERR_INVALID);
  bad.n_arms = CP_MAX_ARMS + 1;
  CHECK_INT_EQ(cp_table_compile(&bad, 1, 1, 1, 0, &t), CP_ERR_INVALID);
  CHECK_INT_EQ(cp_table_compile(NULL, 3, 1, 1, 0, &t), CP_ERR_INVALID);
  CHECK_INT_EQ(cp_table_compile(&bad, 0, 1, 1, 0, NULL), CP_ERR_INVALID);

  CHECK_INT_EQ(cp_table_compile(NULL, 0, 1, 1, 3, &t), CP_OK);
  CHECK(t != NULL, "empty table");
  CHECK_INT_EQ(cp_table_rule_count(t), 0);
  CHECK_INT_EQ(cp_table_version(t), 3);
  for (int c = 0; c < CP_NUM_COLLS; c++)
    CHECK(cp_table_lookup(t, c, 42, 0) == NULL, "empty table matched coll %d", c);
  cp_table_free(t);
  cp_table_free(NULL);
}

static cp_rule random_rule(uint64_t* s) {
  cp_rule r;
  memset(&r, 0, sizeof r);
  r.coll = (int)(rng_next(s) % CP_NUM_COLLS);
  /* Message sizes are spread on a log scale in real tables: pick an exponent, then a mantissa. */
  unsigned e = (unsigned)(rng_next(s) % 41);
  r.min_bytes = (rng_next(s) % 8 == 0) ? 0 : (rng_next(s) & ((1ull << e) - 1)) | (1ull << e);
  unsigned w = (unsigned)(rng_next(s) % 36);
  uint64_t width = rng_next(s) & ((1ull << w) - 1);
  r.max_bytes = (rng_next(s) % 20 == 0) ? UINT64_MAX : r.min_bytes + width;
  r.n_nodes = (rng_next(s) % 2) ? CP_ANY : (int)(1 + rng_next(s) % 4);
  r.n_ranks = (rng_next(s) % 2) ? CP_ANY : 8 * (int)(1 + rng_next(s) % 4);
  r.num_pipe_ops = (rng_next(s) % 2) ? CP_ANY : (int)(1 + rng_next(s) % 4);
  r.n_arms = 1 + (int)(rng_next(s) % 4);
  for (int a = 0; a < r.n_arms; a++) {
    r.arms[a].algo = (int8_t)(rng_next(s) % CP_NUM_ALGOS);
    r.arms[a].proto = (int8_t)(rng_next(s) % CP_NUM_PROTOS);
    r.arms[a].n_channels = (uint8_t)(rng_next(s) % 65);
  }
  return r;
}

static uint64_t random_query_bytes(uint64_t* s, const cp_rule* rules, size_t n) {
  switch (rng_next(s) % 6) {
    case 0: return rules[rng_next(s) % n].min_bytes;
    case 1: return rules[rng_next(s) % n].max_bytes;
    case 2: return rules[rng_next(s) % n].max_bytes + 1; /* wraps to 0 for open rules: fine */
    case 3: return rules[rng_next(s) % n].min_bytes - 1;
    case 4: return rng_next(s) >> (rng_next(s) % 64);
    default: return (rng_next(s) % 2) ? 0 : UINT64_MAX;
  }
}

/* Compiles a random table for several communicator shapes and compares random lookups with the
 * brute-force reference. */
static void check_against_reference(const cp_rule* rules, size_t n, uint64_t seed,
                                    int n_queries) {
  static const int shapes[][2] = {{1, 8}, {2, 16}, {4, 32}, {3, 24}};
  uint64_t s = seed;
  for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
    int nodes = shapes[sh][0], ranks = shapes[sh][1];
    cp_table* t = NULL;
    cp_result res = cp_table_compile(rules, n, nodes, ranks, 1, &t);
    CHECK(res == CP_OK, "compile of %zu random rules failed: %d", n, (int)res);
    if (res != CP_OK) continue;
    size_t expect_kept = 0;
    for (size_t k = 0; k < n; k++)
      if ((rules[k].n_nodes == CP_ANY || rules[k].n_nodes == nodes) &&
          (rules[k].n_ranks == CP_ANY || rules[k].n_ranks == ranks))
        expect_kept++;
    CHECK_INT_EQ(cp_table_rule_count(t), expect_kept);
    int mismatches = 0;
    for (int q = 0; q < n_queries && mismatches < 5; q++) {
      int coll = (int)(rng_next(&s) % CP_NUM_COLLS);
      uint64_t bytes = random_query_bytes(&s, rules, n);
      int pipe = (int)(rng_next(&s) % 6);
      long want = brute_lookup(rules, n, nodes, ranks, coll, bytes, pipe);
      cp_table_hit hit = {0};
      int found = cp_table_lookup_hit(t, coll, bytes, pipe, &hit);
      const cp_rule* r = cp_table_lookup(t, coll, bytes, pipe);
      int ok = want < 0 ? (!found && r == NULL)
                        : (found && hit.rule_index == (uint32_t)want && r == hit.rule &&
                           memcmp(r, &rules[want], sizeof *r) == 0);
      if (!ok) mismatches++;
      CHECK(ok, "seed %llu, %zu rules, shape %dx%d, query coll %d bytes %llu pipe %d: want %ld, got %ld",
            (unsigned long long)seed, n, nodes, ranks, coll, (unsigned long long)bytes, pipe, want,
            found ? (long)hit.rule_index : -1L);
    }
    cp_table_free(t);
  }
}

static void test_random_tables(void) {
  const size_t sizes[] = {1000, 100000};
  const int queries[] = {100000, 2000};
  for (int i = 0; i < 2; i++) {
    uint64_t s = 12345 + (uint64_t)i;
    cp_rule* rules = malloc(sizes[i] * sizeof *rules);
    CHECK(rules != NULL, "alloc");
    if (!rules) return;
    for (size_t k = 0; k < sizes[i]; k++) rules[k] = random_rule(&s);
    check_against_reference(rules, sizes[i], 777 + (uint64_t)i, queries[i]);
    free(rules);
  }
}

/* Rule k spans [k, 2n - k] with its own numPipeOps: every rule covers every interval inside it
 * and none can be cut off, so links grow as n^2. */
static cp_rule* nested_rules(size_t n, int wildcard_pipes) {
  cp_rule* rules = malloc(n * sizeof *rules);
  if (!rules) return NULL;
  for (size_t k = 0; k < n; k++)
    rules[k] = make_rule(CP_COLL_ALLREDUCE, k, 2 * n - k,
                         wildcard_pipes ? CP_ANY : (int)k + 1, CP_ALGO_RING, CP_PROTO_SIMPLE);
  return rules;
}

static void test_limit_guard(void) {
  cp_table* t = NULL;
  cp_rule* rules = nested_rules(3000, 0); /* ~9M links > CP_TABLE_MAX_LINKS */
  CHECK(rules != NULL, "alloc");
  if (!rules) return;
  CHECK_INT_EQ(cp_table_compile(rules, 3000, 1, 8, 0, &t), CP_ERR_LIMIT);
  CHECK(t == NULL, "no table on CP_ERR_LIMIT");
  free(rules);

  /* The same nesting with wildcard numPipeOps is cheap: the first rule decides everything. */
  rules = nested_rules(3000, 1);
  CHECK(rules != NULL, "alloc");
  if (!rules) return;
  CHECK_INT_EQ(cp_table_compile(rules, 3000, 1, 8, 0, &t), CP_OK);
  cp_table_hit hit = {0};
  CHECK(t && cp_table_lookup_hit(t, CP_COLL_ALLREDUCE, 2999, 7, &hit) && hit.rule_index == 0,
        "the outermost (first) wildcard rule wins");
  CHECK(t && cp_table_lookup(t, CP_COLL_ALLREDUCE, 6001, 7) == NULL, "past every rule");
  cp_table_free(t);
  free(rules);

  /* Below the bound, the quadratic case still compiles and answers correctly. */
  rules = nested_rules(1000, 0);
  CHECK(rules != NULL, "alloc");
  if (!rules) return;
  check_against_reference(rules, 1000, 99, 20000);
  CHECK_INT_EQ(cp_table_compile(rules, 1000, 1, 8, 0, &t), CP_OK);
  CHECK(t && cp_table_lookup_hit(t, CP_COLL_ALLREDUCE, 1000, 1000, &hit) && hit.rule_index == 999,
        "innermost rule by numPipeOps");
  cp_table_free(t);
  free(rules);
}

typedef struct {
  const cp_table* table;
  const cp_rule* rules;
  size_t n;
  uint64_t seed;
  int failures;
} thread_arg;

static void* lookup_thread(void* p) {
  thread_arg* a = p;
  uint64_t s = a->seed;
  for (int q = 0; q < 20000; q++) {
    int coll = (int)(rng_next(&s) % CP_NUM_COLLS);
    uint64_t bytes = random_query_bytes(&s, a->rules, a->n);
    int pipe = (int)(rng_next(&s) % 6);
    long want = brute_lookup(a->rules, a->n, 2, 16, coll, bytes, pipe);
    cp_table_hit hit = {0};
    int found = cp_table_lookup_hit(a->table, coll, bytes, pipe, &hit);
    if (want < 0 ? found : (!found || hit.rule_index != (uint32_t)want)) a->failures++;
  }
  return NULL;
}

/* The table is shared read-only; this is mainly for the ThreadSanitizer build. */
static void test_concurrent_lookups(void) {
  enum { N = 500, T = 4 };
  uint64_t s = 4242;
  cp_rule rules[N];
  for (int k = 0; k < N; k++) rules[k] = random_rule(&s);
  cp_table* t = NULL;
  CHECK_INT_EQ(cp_table_compile(rules, N, 2, 16, 0, &t), CP_OK);
  if (!t) return;
  pthread_t th[T];
  thread_arg args[T];
  for (int i = 0; i < T; i++) {
    args[i] = (thread_arg){t, rules, N, 1000 + (uint64_t)i, 0};
    CHECK_INT_EQ(pthread_create(&th[i], NULL, lookup_thread, &args[i]), 0);
  }
  for (int i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    CHECK(args[i].failures == 0, "thread %d: %d wrong lookups", i, args[i].failures);
  }
  cp_table_free(t);
}

int main(void) {
  test_first_match_and_boundaries();
  test_pipe_ops_filter();
  test_nodes_ranks_filter();
  test_pick_arm();
  test_invalid_and_empty();
  test_random_tables();
  test_limit_guard();
  test_concurrent_lookups();
  TEST_RETURN();
}
