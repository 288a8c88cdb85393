/*
 * Bounded (key, arm) statistics. Samples arrive on the profiler's proxy thread (not the tuner hot
 * path), a few per collective, so a mutex around an open-addressing probe is cheap enough and
 * keeps snapshots consistent. Memory is fixed at creation: the probe array has at least twice the
 * accepted capacity so that probes stay short even when the table is full.
 */
#include "cp_stats.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct cp_stats {
  pthread_mutex_t lock;
  size_t capacity; /* distinct (key, arm) pairs accepted */
  size_t used;
  size_t mask;     /* probe array size - 1 (a power of two) */
  uint64_t dropped;
  cp_stat_slot* slots;
  unsigned char* occupied;
};

cp_result cp_stats_create(size_t capacity, cp_stats** out) {
  if (out == NULL) return CP_ERR_INVALID;
  *out = NULL;
  if (capacity == 0 || capacity > ((size_t)1 << 24)) return CP_ERR_INVALID;
  size_t n = 16;
  while (n < 2 * capacity) n <<= 1;

  cp_stats* st = calloc(1, sizeof(*st));
  CP_ALLOC_CHECK(st);
  /* calloc: pages of slots never touched are never committed. */
  st->slots = calloc(n, sizeof(*st->slots));
  st->occupied = calloc(n, 1);
  if (st->slots == NULL || st->occupied == NULL || pthread_mutex_init(&st->lock, NULL) != 0) {
    free(st->slots);
    free(st->occupied);
    free(st);
    return CP_ERR_NOMEM;
  }
  st->capacity = capacity;
  st->mask = n - 1;
  *out = st;
  return CP_OK;
}

static uint64_t key_hash(int coll, uint64_t n_bytes, int algo, int proto, int n_channels) {
  return cp_stat_key_hash(n_bytes, cp_stat_key_small(coll, algo, proto, n_channels));
}

/* Finds or claims the slot of a pair; called with the lock held. NULL when new and full. */
static cp_stat_slot* find_slot(cp_stats* st, int coll, uint64_t n_bytes, int algo, int proto,
                               int n_channels) {
  size_t i = (size_t)key_hash(coll, n_bytes, algo, proto, n_channels) & st->mask;
  for (;;) {
    if (!st->occupied[i]) break;
    cp_stat_slot* s = &st->slots[i];
    if (s->n_bytes == n_bytes && s->coll == coll && s->algo == algo && s->proto == proto &&
        s->n_channels == n_channels)
      return s;
    i = (i + 1) & st->mask;
  }
  /* The probe array is never more than half full, so the loop above always reaches a hole. */
  if (st->used >= st->capacity) return NULL;
  st->occupied[i] = 1;
  st->used++;
  cp_stat_slot* s = &st->slots[i];
  memset(s, 0, sizeof(*s));
  s->coll = coll;
  s->n_bytes = n_bytes;
  s->algo = algo;
  s->proto = proto;
  s->n_channels = n_channels;
  s->min_ns = UINT64_MAX;
  return s;
}

static int bucket_of(uint64_t ns) {
  if (ns == 0) return 0;
  int b = 63 - __builtin_clzll(ns);
  return b < CP_STATS_BUCKETS - 1 ? b : CP_STATS_BUCKETS - 1;
}

cp_result cp_stats_add(cp_stats* st, int coll, uint64_t n_bytes, int algo, int proto,
                       int n_channels, uint64_t duration_ns) {
  if (st == NULL) return CP_ERR_INVALID;
  int b = bucket_of(duration_ns);
  double d = (double)duration_ns;
  pthread_mutex_lock(&st->lock);
  cp_stat_slot* s = find_slot(st, coll, n_bytes, algo, proto, n_channels);
  if (s == NULL) {
    st->dropped++;
    pthread_mutex_unlock(&st->lock);
    return CP_ERR_LIMIT;
  }
  s->count++;
  s->sum_ns += d;
  s->sum_sq_ns += d * d;
  if (duration_ns < s->min_ns) s->min_ns = duration_ns;
  if (duration_ns > s->max_ns) s->max_ns = duration_ns;
  if (s->hist[b] != UINT32_MAX) s->hist[b]++; /* saturate rather than wrap */
  pthread_mutex_unlock(&st->lock);
  return CP_OK;
}

cp_result cp_stats_add_untimed(cp_stats* st, int coll, uint64_t n_bytes, int algo, int proto,
                               int n_channels) {
  if (st == NULL) return CP_ERR_INVALID;
  pthread_mutex_lock(&st->lock);
  cp_stat_slot* s = find_slot(st, coll, n_bytes, algo, proto, n_channels);
  if (s == NULL) {
    st->dropped++;
    pthread_mutex_unlock(&st->lock);
    return CP_ERR_LIMIT;
  }
  s->untimed++;
  pthread_mutex_unlock(&st->lock);
  return CP_OK;
}

size_t cp_stats_snapshot(cp_stats* st, cp_stat_slot* out, size_t max) {
  if (st == NULL || out == NULL) return 0;
  size_t n = 0;
  pthread_mutex_lock(&st->lock);
  for (size_t i = 0; i <= st->mask && n < max; i++) {
    if (!st->occupied[i]) continue;
    out[n] = st->slots[i];
    /* min_ns = UINT64_MAX is an internal sentinel; a slot without timed samples reports 0. */
    if (out[n].count == 0) out[n].min_ns = 0;
    n++;
  }
  pthread_mutex_unlock(&st->lock);
  return n;
}

uint64_t cp_stats_dropped(cp_stats* st) {
  if (st == NULL) return 0;
  pthread_mutex_lock(&st->lock);
  uint64_t d = st->dropped;
  pthread_mutex_unlock(&st->lock);
  return d;
}

void cp_stats_free(cp_stats* st) {
  if (st == NULL) return;
  pthread_mutex_destroy(&st->lock);
  free(st->slots);
  free(st->occupied);
  free(st);
}
