/*
 * Bounded (key, arm) statistics: aggregate values, histogram bucket edges, the capacity limit and
 * exact totals under concurrent adds.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "cp_stats.h"
#include "testutil.h"

static const cp_stat_slot* find(const cp_stat_slot* s, size_t n, int coll, uint64_t n_bytes,
                                int algo, int proto, int n_channels) {
  for (size_t i = 0; i < n; i++) {
    if (s[i].coll == coll && s[i].n_bytes == n_bytes && s[i].algo == algo &&
        s[i].proto == proto && s[i].n_channels == n_channels)
      return &s[i];
  }
  return NULL;
}

static int bucket_holding(const cp_stat_slot* s) {
  int found = -1;
  for (int b = 0; b < CP_STATS_BUCKETS; b++) {
    if (s->hist[b] != 0) {
      if (found >= 0) return -2; /* more than one bucket used */
      found = b;
    }
  }
  return found;
}

static void test_bad_arguments(void) {
  cp_stats* st = (cp_stats*)1;
  CHECK_INT_EQ(cp_stats_create(0, &st), CP_ERR_INVALID);
  CHECK(st == NULL, "a failed create must clear *out");
  CHECK_INT_EQ(cp_stats_create(4, NULL), CP_ERR_INVALID);
  CHECK_INT_EQ(cp_stats_add(NULL, 4, 1024, 1, 2, 8, 10), CP_ERR_INVALID);
  CHECK_INT_EQ(cp_stats_add_untimed(NULL, 4, 1024, 1, 2, 8), CP_ERR_INVALID);
  cp_stat_slot out[1];
  CHECK_INT_EQ(cp_stats_snapshot(NULL, out, 1), 0);
  CHECK_INT_EQ(cp_stats_dropped(NULL), 0);
  cp_stats_free(NULL);
}

static void test_aggregation(void) {
  cp_stats* st = NULL;
  CHECK_INT_EQ(cp_stats_create(16, &st), CP_OK);
  CHECK_INT_EQ(cp_stats_add(st, CP_COLL_ALLREDUCE, 1 << 20, CP_ALGO_RING, CP_PROTO_SIMPLE, 8, 100), CP_OK);
  CHECK_INT_EQ(cp_stats_add(st, CP_COLL_ALLREDUCE, 1 << 20, CP_ALGO_RING, CP_PROTO_SIMPLE, 8, 300), CP_OK);
  CHECK_INT_EQ(cp_stats_add(st, CP_COLL_ALLREDUCE, 1 << 20, CP_ALGO_RING, CP_PROTO_SIMPLE, 8, 200), CP_OK);
  /* Pairs that differ in one field only must land in their own slots. */
  CHECK_INT_EQ(cp_stats_add(st, CP_COLL_ALLREDUCE, 1 << 20, CP_ALGO_RING, CP_PROTO_SIMPLE, 16, 5000), CP_OK);
  CHECK_INT_EQ(cp_stats_add(st, CP_COLL_ALLREDUCE, 1 << 20, CP_ALGO_RING, CP_PROTO_LL, 8, 7), CP_OK);
  CHECK_INT_EQ(cp_stats_add(st, CP_COLL_ALLREDUCE, 1 << 20, CP_ALGO_TREE, CP_PROTO_SIMPLE, 8, 9), CP_OK);
  CHECK_INT_EQ(cp_stats_add(st, CP_COLL_ALLREDUCE, (1 << 20) + 1, CP_ALGO_RING, CP_PROTO_SIMPLE, 8, 11), CP_OK);
  CHECK_INT_EQ(cp_stats_add(st, CP_COLL_ALLGATHER, 1 << 20, CP_ALGO_RING, CP_PROTO_SIMPLE, 8, 13), CP_OK);
  CHECK_INT_EQ(cp_stats_add_untimed(st, CP_COLL_BROADCAST, 4096, CP_ALGO_RING, CP_PROTO_LL, 2), CP_OK);
  CHECK_INT_EQ(cp_stats_add_untimed(st, CP_COLL_BROADCAST, 4096, CP_ALGO_RING, CP_PROTO_LL, 2), CP_OK);

  cp_stat_slot out[16];
  size_t n = cp_stats_snapshot(st, out, 16);
  CHECK_INT_EQ(n, 7);
  const cp_stat_slot* a = find(out, n, CP_COLL_ALLREDUCE, 1 << 20, CP_ALGO_RING, CP_PROTO_SIMPLE, 8);
  CHECK(a != NULL, "slot of the first pair missing");
  if (a) {
    CHECK_INT_EQ(a->count, 3);
    CHECK(a->sum_ns == 600.0, "sum_ns = %f, want 600", a->sum_ns);
    CHECK(a->sum_sq_ns == 140000.0, "sum_sq_ns = %f, want 140000", a->sum_sq_ns);
    CHECK_INT_EQ(a->min_ns, 100);
    CHECK_INT_EQ(a->max_ns, 300);
    CHECK_INT_EQ(a->hist[6], 1); /* 100: 64..127 */
    CHECK_INT_EQ(a->hist[7], 1); /* 200: 128..255 */
    CHECK_INT_EQ(a->hist[8], 1); /* 300: 256..511 */
    CHECK_INT_EQ(a->untimed, 0);
  }
  const cp_stat_slot* c16 = find(out, n, CP_COLL_ALLREDUCE, 1 << 20, CP_ALGO_RING, CP_PROTO_SIMPLE, 16);
  CHECK(c16 != NULL && c16->count == 1 && c16->min_ns == 5000, "16-channel slot wrong");
  const cp_stat_slot* ll = find(out, n, CP_COLL_ALLREDUCE, 1 << 20, CP_ALGO_RING, CP_PROTO_LL, 8);
  CHECK(ll != NULL && ll->count == 1 && ll->max_ns == 7, "LL slot wrong");
  const cp_stat_slot* tr = find(out, n, CP_COLL_ALLREDUCE, 1 << 20, CP_ALGO_TREE, CP_PROTO_SIMPLE, 8);
  CHECK(tr != NULL && tr->count == 1 && tr->max_ns == 9, "tree slot wrong");
  const cp_stat_slot* sz = find(out, n, CP_COLL_ALLREDUCE, (1 << 20) + 1, CP_ALGO_RING, CP_PROTO_SIMPLE, 8);
  CHECK(sz != NULL && sz->count == 1 && sz->max_ns == 11, "size+1 slot wrong");
  const cp_stat_slot* ag = find(out, n, CP_COLL_ALLGATHER, 1 << 20, CP_ALGO_RING, CP_PROTO_SIMPLE, 8);
  CHECK(ag != NULL && ag->count == 1 && ag->max_ns == 13, "allgather slot wrong");
  const cp_stat_slot* bc = find(out, n, CP_COLL_BROADCAST, 4096, CP_ALGO_RING, CP_PROTO_LL, 2);
  CHECK(bc != NULL, "untimed slot missing");
  if (bc) {
    CHECK_INT_EQ(bc->untimed, 2);
    CHECK_INT_EQ(bc->count, 0);
    CHECK_INT_EQ(bc->min_ns, 0); /* no timed sample: no sentinel leaks out */
    CHECK_INT_EQ(bc->max_ns, 0);
    CHECK_INT_EQ(bucket_holding(bc), -1);
  }
  /* A snapshot into a smaller buffer stops at its size. */
  CHECK_INT_EQ(cp_stats_snapshot(st, out, 3), 3);
  CHECK_INT_EQ(cp_stats_dropped(st), 0);
  cp_stats_free(st);
}

static void test_buckets(void) {
  static const struct {
    uint64_t ns;
    int bucket;
  } cases[] = {
      {0, 0},         {1, 0},           {2, 1},          {3, 1},
      {4, 2},         {1023, 9},        {1024, 10},      {1025, 10},
      {1000000, 19},  {(1ull << 47) - 1, 46},            {1ull << 47, 47},
      {1ull << 60, 47}, {UINT64_MAX, 47},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cp_stats* st = NULL;
    CHECK_INT_EQ(cp_stats_create(1, &st), CP_OK);
    CHECK_INT_EQ(cp_stats_add(st, 0, 1, 0, 0, 1, cases[i].ns), CP_OK);
    cp_stat_slot out[1];
    CHECK_INT_EQ(cp_stats_snapshot(st, out, 1), 1);
    int b = bucket_holding(&out[0]);
    CHECK(b == cases[i].bucket, "duration %llu ns went to bucket %d, want %d",
          (unsigned long long)cases[i].ns, b, cases[i].bucket);
    CHECK_INT_EQ(out[0].hist[b >= 0 ? b : 0], 1);
    cp_stats_free(st);
  }
}

static void test_capacity(void) {
  cp_stats* st = NULL;
  CHECK_INT_EQ(cp_stats_create(4, &st), CP_OK);
  for (int i = 0; i < 4; i++)
    CHECK_INT_EQ(cp_stats_add(st, CP_COLL_ALLREDUCE, 1024u << i, CP_ALGO_RING, CP_PROTO_LL, 4, 50), CP_OK);
  CHECK_INT_EQ(cp_stats_add(st, CP_COLL_ALLREDUCE, 1u << 30, CP_ALGO_RING, CP_PROTO_LL, 4, 50), CP_ERR_LIMIT);
  CHECK_INT_EQ(cp_stats_dropped(st), 1);
  CHECK_INT_EQ(cp_stats_add_untimed(st, CP_COLL_REDUCE, 8, CP_ALGO_RING, CP_PROTO_LL, 4), CP_ERR_LIMIT);
  CHECK_INT_EQ(cp_stats_dropped(st), 2);
  /* Known pairs keep accumulating when the table is full. */
  CHECK_INT_EQ(cp_stats_add(st, CP_COLL_ALLREDUCE, 1024, CP_ALGO_RING, CP_PROTO_LL, 4, 70), CP_OK);
  CHECK_INT_EQ(cp_stats_add_untimed(st, CP_COLL_ALLREDUCE, 2048, CP_ALGO_RING, CP_PROTO_LL, 4), CP_OK);
  CHECK_INT_EQ(cp_stats_dropped(st), 2);
  cp_stat_slot out[8];
  size_t n = cp_stats_snapshot(st, out, 8);
  CHECK_INT_EQ(n, 4);
  const cp_stat_slot* a = find(out, n, CP_COLL_ALLREDUCE, 1024, CP_ALGO_RING, CP_PROTO_LL, 4);
  CHECK(a != NULL && a->count == 2 && a->max_ns == 70, "full table lost a known pair's sample");
  const cp_stat_slot* b = find(out, n, CP_COLL_ALLREDUCE, 2048, CP_ALGO_RING, CP_PROTO_LL, 4);
  CHECK(b != NULL && b->count == 1 && b->untimed == 1, "full table lost a known pair's use");
  CHECK(find(out, n, CP_COLL_ALLREDUCE, 1u << 30, CP_ALGO_RING, CP_PROTO_LL, 4) == NULL,
        "a pair beyond capacity was stored");
  cp_stats_free(st);

  /* A larger table: exactly `capacity` distinct pairs are accepted, not one more or less. */
  CHECK_INT_EQ(cp_stats_create(1000, &st), CP_OK);
  int accepted = 0;
  for (int i = 0; i < 1500; i++)
    if (cp_stats_add(st, i % 5, (uint64_t)i * 4096, i % 7, i % 3, 1 + i % 64, (uint64_t)i) == CP_OK)
      accepted++;
  CHECK_INT_EQ(accepted, 1000);
  CHECK_INT_EQ(cp_stats_dropped(st), 500);
  cp_stats_free(st);
}

#define N_THREADS 4
#define ADDS_PER_THREAD 200000
#define N_PAIRS 8

typedef struct {
  cp_stats* st;
  int id;
  int failures;
} worker_arg;

static void* worker(void* p) {
  worker_arg* w = p;
  for (int i = 0; i < ADDS_PER_THREAD; i++) {
    int pair = (i + w->id) % N_PAIRS;
    /* Duration depends on the pair and the thread so that sums and extremes are predictable. */
    uint64_t d = 1000u * (uint64_t)(pair + 1) + (uint64_t)w->id;
    if (cp_stats_add(w->st, CP_COLL_ALLREDUCE, 4096u << pair, CP_ALGO_RING, CP_PROTO_SIMPLE, 4, d) != CP_OK)
      w->failures++;
    if (i % 16 == 0 &&
        cp_stats_add_untimed(w->st, CP_COLL_ALLREDUCE, 4096u << pair, CP_ALGO_RING, CP_PROTO_SIMPLE, 4) != CP_OK)
      w->failures++;
  }
  return NULL;
}

static void test_concurrent(void) {
  cp_stats* st = NULL;
  CHECK_INT_EQ(cp_stats_create(N_PAIRS, &st), CP_OK);
  pthread_t t[N_THREADS];
  worker_arg args[N_THREADS];
  for (int i = 0; i < N_THREADS; i++) {
    args[i] = (worker_arg){st, i, 0};
    CHECK_INT_EQ(pthread_create(&t[i], NULL, worker, &args[i]), 0);
  }
  for (int i = 0; i < N_THREADS; i++) {
    pthread_join(t[i], NULL);
    CHECK_INT_EQ(args[i].failures, 0);
  }
  cp_stat_slot out[N_PAIRS];
  size_t n = cp_stats_snapshot(st, out, N_PAIRS);
  CHECK_INT_EQ(n, N_PAIRS);
  for (int pair = 0; pair < N_PAIRS; pair++) {
    /* Recompute what every thread added to this pair. */
    uint64_t want_count = 0, want_untimed = 0;
    double want_sum = 0, want_sq = 0;
    for (int id = 0; id < N_THREADS; id++) {
      for (int i = 0; i < ADDS_PER_THREAD; i++) {
        if ((i + id) % N_PAIRS != pair) continue;
        double d = 1000.0 * (pair + 1) + id;
        want_count++;
        want_sum += d;
        want_sq += d * d;
        if (i % 16 == 0) want_untimed++;
      }
    }
    const cp_stat_slot* s = find(out, n, CP_COLL_ALLREDUCE, 4096u << pair, CP_ALGO_RING, CP_PROTO_SIMPLE, 4);
    CHECK(s != NULL, "pair %d missing", pair);
    if (!s) continue;
    CHECK_INT_EQ(s->count, want_count);
    CHECK_INT_EQ(s->untimed, want_untimed);
    CHECK(s->sum_ns == want_sum, "pair %d sum %f want %f", pair, s->sum_ns, want_sum);
    CHECK(s->sum_sq_ns == want_sq, "pair %d sumsq %f want %f", pair, s->sum_sq_ns, want_sq);
    CHECK_INT_EQ(s->min_ns, 1000u * (uint64_t)(pair + 1));
    CHECK_INT_EQ(s->max_ns, 1000u * (uint64_t)(pair + 1) + N_THREADS - 1);
    uint64_t hist_total = 0;
    for (int b = 0; b < CP_STATS_BUCKETS; b++) hist_total += s->hist[b];
    CHECK_INT_EQ(hist_total, want_count);
  }
  CHECK_INT_EQ(cp_stats_dropped(st), 0);
  cp_stats_free(st);
}

static void test_cost(void) {
  cp_stats* st = NULL;
  CHECK_INT_EQ(cp_stats_create(1024, &st), CP_OK);
  enum { N = 1000000 };
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < N; i++)
    cp_stats_add(st, i & 3, 1024u << (i & 15), CP_ALGO_RING, i % 3, 8, (uint64_t)i);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / N;
  printf("cp_stats_add: %.1f ns per sample (uncontended)\n", ns);
  /* Generous bound: sanitizer builds are slow; this only catches a pathological probe loop. */
  CHECK(ns < 5000.0, "cp_stats_add takes %.1f ns", ns);
  cp_stats_free(st);
}

int main(void) {
  test_bad_arguments();
  test_aggregation();
  test_buckets();
  test_capacity();
  test_concurrent();
  test_cost();
  TEST_RETURN();
}
