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
