/*
 * Lock-free bounded multi-producer / single-consumer queue of fixed-size entries.
 *
 * Hot paths (getCollInfo, profiler events) are the producers and the I/O thread is the only
 * consumer. A push never blocks, never allocates and never waits for another producer: when the
 * ring is full the entry is dropped and counted, because a late measurement or key report is worth
 * less than a delayed collective. Memory is allocated once, at init.
 *
 * The ring is the classic sequence-numbered design: every cell carries a sequence number that
 * tells producers whether the cell is free for ticket `pos` (seq == pos) and tells the consumer
 * whether the entry for ticket `pos` is published (seq == pos + 1). A producer that claimed a
 * cell but has not yet published it only delays the consumer, never another producer.
 */
#ifndef CCLPILOT_CP_QUEUE_H
#define CCLPILOT_CP_QUEUE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  _Atomic uint64_t seq;
  /* entry bytes follow, at offset CP_MPSC_HDR */
} cp_mpsc_cell;

#define CP_MPSC_HDR ((sizeof(cp_mpsc_cell) + 15u) & ~(size_t)15u)

typedef struct {
  unsigned char* cells;
  size_t stride;     /* bytes per cell: header + entry, rounded to 16 */
  size_t entry_size;
  uint64_t mask;     /* capacity - 1; capacity is a power of two */
  _Atomic uint64_t head; /* next ticket producers claim */
  uint64_t tail;         /* next ticket the consumer reads (consumer-owned) */
  _Atomic uint64_t pushed, dropped;
} cp_mpsc;

static inline cp_mpsc_cell* cp_mpsc_cell_at(cp_mpsc* q, uint64_t pos) {
  return (cp_mpsc_cell*)(q->cells + (size_t)(pos & q->mask) * q->stride);
}

/* capacity is rounded up to a power of two (at least 2). Returns 0, or -1 when out of memory. */
static inline int cp_mpsc_init(cp_mpsc* q, size_t capacity, size_t entry_size) {
  memset(q, 0, sizeof *q);
  size_t cap = 2;
  while (cap < capacity) cap <<= 1;
  q->entry_size = entry_size;
  q->stride = (CP_MPSC_HDR + entry_size + 15u) & ~(size_t)15u;
  q->cells = calloc(cap, q->stride);
  if (!q->cells) return -1;
  q->mask = cap - 1;
  for (uint64_t i = 0; i < cap; i++) atomic_init(&cp_mpsc_cell_at(q, i)->seq, i);
  atomic_init(&q->head, 0);
  atomic_init(&q->pushed, 0);
  atomic_init(&q->dropped, 0);
  return 0;
}

static inline void cp_mpsc_destroy(cp_mpsc* q) {
  free(q->cells);
  q->cells = NULL;
}

/* Any thread. Returns 1 when queued, 0 when the ring was full (the entry is dropped and counted). */
static inline int cp_mpsc_push(cp_mpsc* q, const void* entry) {
  uint64_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
  for (;;) {
    cp_mpsc_cell* c = cp_mpsc_cell_at(q, pos);
    uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    int64_t diff = (int64_t)(seq - pos);
    if (diff == 0) {
      if (atomic_compare_exchange_weak_explicit(&q->head, &pos, pos + 1, memory_order_relaxed,
                                                memory_order_relaxed)) {
        memcpy((unsigned char*)c + CP_MPSC_HDR, entry, q->entry_size);
        atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
        atomic_fetch_add_explicit(&q->pushed, 1, memory_order_relaxed);
        return 1;
      }
      /* pos was reloaded by the failed compare-exchange */
    } else if (diff < 0) {
      /* The cell still holds the entry of the previous lap: the ring is full. */
      atomic_fetch_add_explicit(&q->dropped, 1, memory_order_relaxed);
      return 0;
    } else {
      pos = atomic_load_explicit(&q->head, memory_order_relaxed);
    }
  }
}

/* Consumer thread only. Returns 1 and copies the oldest published entry out, or 0 when none is
 * ready (empty, or the oldest claimed cell is still being written). */
static inline int cp_mpsc_pop(cp_mpsc* q, void* out) {
  cp_mpsc_cell* c = cp_mpsc_cell_at(q, q->tail);
  uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
  if (seq != q->tail + 1) return 0;
  memcpy(out, (unsigned char*)c + CP_MPSC_HDR, q->entry_size);
  /* Frees the cell for the producer that will hold ticket tail + capacity. */
  atomic_store_explicit(&c->seq, q->tail + q->mask + 1, memory_order_release);
  q->tail++;
  return 1;
}

static inline uint64_t cp_mpsc_dropped(cp_mpsc* q) {
  return atomic_load_explicit(&q->dropped, memory_order_relaxed);
}

#endif
