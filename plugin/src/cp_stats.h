/*
 * Bounded measurement aggregation: per (key, arm) count, sum, sum of squares, min, max and a
 * log2-bucket histogram of durations. Key = (collective, nBytes); arm = (algo, proto, channels
 * actually run). Memory is fixed at creation; samples for new (key, arm) pairs beyond capacity
 * are dropped and counted.
 */
#ifndef CCLPILOT_CP_STATS_H
#define CCLPILOT_CP_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h> /* memcmp, for cp_stat_slot_same */

#include "cp_core.h"

#define CP_STATS_BUCKETS 48 /* bucket b holds durations d (ns) with floor(log2(d)) == b; last is open */

typedef struct {
  int coll;
  uint64_t n_bytes;
  int algo, proto, n_channels;
  uint64_t count;       /* timed samples */
  double sum_ns, sum_sq_ns;
  uint64_t min_ns, max_ns;
  uint32_t hist[CP_STATS_BUCKETS];
  uint64_t untimed;     /* uses seen without a usable duration (no GPU timestamps) */
} cp_stat_slot;

/* Every field equal, the sums compared bit for bit (a decoder must reproduce the exact value, and
 * -0.0 is not 0.0 on the wire): what tests and fuzzers mean by "decoded the same". */
static inline int cp_stat_slot_same(const cp_stat_slot* a, const cp_stat_slot* b) {
  return a->coll == b->coll && a->n_bytes == b->n_bytes && a->algo == b->algo &&
         a->proto == b->proto && a->n_channels == b->n_channels && a->count == b->count &&
         memcmp(&a->sum_ns, &b->sum_ns, sizeof a->sum_ns) == 0 &&
         memcmp(&a->sum_sq_ns, &b->sum_sq_ns, sizeof a->sum_sq_ns) == 0 &&
         a->min_ns == b->min_ns && a->max_ns == b->max_ns &&
         memcmp(a->hist, b->hist, sizeof a->hist) == 0 && a->untimed == b->untimed;
}

/* The (key, arm) hash of this table, shared with the daemon's aggregator (cpi_ingest.c): the four
 * small fields packed into one word (each fits 8 bits), then mixed with n_bytes. */
static inline uint32_t cp_stat_key_small(int coll, int algo, int proto, int n_channels) {
  return ((uint32_t)(uint8_t)coll << 24) | ((uint32_t)(uint8_t)algo << 16) |
         ((uint32_t)(uint8_t)proto << 8) | (uint32_t)(uint8_t)n_channels;
}
static inline uint64_t cp_mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}
static inline uint64_t cp_stat_key_hash(uint64_t n_bytes, uint32_t small) {
  return cp_mix64(n_bytes ^ cp_mix64(small));
}

typedef struct cp_stats cp_stats;

cp_result cp_stats_create(size_t capacity, cp_stats** out);
/* Thread-safe. Returns CP_ERR_LIMIT when the pair is new and the table is full (sample dropped). */
cp_result cp_stats_add(cp_stats* st, int coll, uint64_t n_bytes, int algo, int proto,
                       int n_channels, uint64_t duration_ns);
/* Records a use without a duration (profilers without GPU timestamps). */
cp_result cp_stats_add_untimed(cp_stats* st, int coll, uint64_t n_bytes, int algo, int proto,
                               int n_channels);
/* Copies the slots out (consistent snapshot); returns how many were written. */
size_t cp_stats_snapshot(cp_stats* st, cp_stat_slot* out, size_t max);
uint64_t cp_stats_dropped(cp_stats* st);
void cp_stats_free(cp_stats* st);

#endif
