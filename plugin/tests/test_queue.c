/* The MPSC ring: every entry of 4 concurrent producers arrives exactly once and in each producer's
 * order; a full ring drops and counts instead of blocking. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "cp_queue.h"
#include "testutil.h"

#define PRODUCERS 4
#define PER_PRODUCER 200000u

typedef struct {
  uint32_t producer;
  uint32_t seq;
  uint64_t check; /* a function of the two others: detects torn copies */
} entry;

typedef struct {
  cp_mpsc* q;
  uint32_t id;
  uint64_t accepted;
} producer_arg;

static uint64_t check_of(uint32_t p, uint32_t s) {
  return ((uint64_t)p << 32 | s) * 0x9E3779B97F4A7C15ull;
}

static void* produce(void* p) {
  producer_arg* a = p;
  for (uint32_t s = 0; s < PER_PRODUCER; s++) {
    entry e = {a->id, s, check_of(a->id, s)};
    a->accepted += (uint64_t)cp_mpsc_push(a->q, &e);
  }
  return NULL;
}

int main(void) {
  /* Single thread: capacity rounding, FIFO order, drop counting when full. */
  cp_mpsc q;
  CHECK_INT_EQ(cp_mpsc_init(&q, 5, sizeof(entry)), 0);
  CHECK_INT_EQ(q.mask + 1, 8);
  entry e, out;
  CHECK_INT_EQ(cp_mpsc_pop(&q, &out), 0);
  for (uint32_t i = 0; i < 8; i++) {
    e = (entry){0, i, check_of(0, i)};
    CHECK_INT_EQ(cp_mpsc_push(&q, &e), 1);
  }
  e = (entry){0, 99, 0};
  CHECK_INT_EQ(cp_mpsc_push(&q, &e), 0);
  CHECK_INT_EQ(cp_mpsc_push(&q, &e), 0);
  CHECK_INT_EQ(cp_mpsc_dropped(&q), 2);
  for (uint32_t i = 0; i < 8; i++) {
    CHECK_INT_EQ(cp_mpsc_pop(&q, &out), 1);
    CHECK_INT_EQ(out.seq, i);
  }
  CHECK_INT_EQ(cp_mpsc_pop(&q, &out), 0);
  /* After draining, the ring is usable again for a full lap. */
  for (uint32_t i = 0; i < 8; i++) {
    e = (entry){1, i, check_of(1, i)};
    CHECK_INT_EQ(cp_mpsc_push(&q, &e), 1);
  }
  CHECK_INT_EQ(cp_mpsc_pop(&q, &out), 1);
  CHECK_INT_EQ(out.producer, 1);
  cp_mpsc_destroy(&q);

  /* 4 producers against one consumer on a small ring: drops happen, and every accepted entry
   * comes out exactly once, untorn, in its producer's order. */
  CHECK_INT_EQ(cp_mpsc_init(&q, 256, sizeof(entry)), 0);
  pthread_t th[PRODUCERS];
  producer_arg args[PRODUCERS];
  for (uint32_t p = 0; p < PRODUCERS; p++) {
    args[p] = (producer_arg){&q, p, 0};
    pthread_create(&th[p], NULL, produce, &args[p]);
  }
  int64_t last[PRODUCERS] = {-1, -1, -1, -1};
  uint64_t received[PRODUCERS] = {0};
  uint64_t torn = 0, disorder = 0;
  int running = PRODUCERS;
  int joined[PRODUCERS] = {0};
  while (running > 0) {
    while (cp_mpsc_pop(&q, &out)) {
      if (out.producer >= PRODUCERS || out.check != check_of(out.producer, out.seq)) {
        torn++;
        continue;
      }
      if ((int64_t)out.seq <= last[out.producer]) disorder++;
      last[out.producer] = out.seq;
      received[out.producer]++;
    }
    for (int p = 0; p < PRODUCERS; p++) {
      if (!joined[p] && pthread_tryjoin_np(th[p], NULL) == 0) {
        joined[p] = 1;
        running--;
      }
    }
  }
  while (cp_mpsc_pop(&q, &out)) {
    if (out.producer < PRODUCERS && out.check == check_of(out.producer, out.seq)) {
      if ((int64_t)out.seq <= last[out.producer]) disorder++;
      last[out.producer] = out.seq;
      received[out.producer]++;
    } else {
      torn++;
    }
  }
  uint64_t accepted = 0, got = 0;
  for (int p = 0; p < PRODUCERS; p++) {
    CHECK(received[p] == args[p].accepted, "producer %d: %llu accepted, %llu received", p,
          (unsigned long long)args[p].accepted, (unsigned long long)received[p]);
    accepted += args[p].accepted;
    got += received[p];
  }
  CHECK_INT_EQ(torn, 0);
  CHECK_INT_EQ(disorder, 0);
  CHECK_INT_EQ(accepted + cp_mpsc_dropped(&q), (uint64_t)PRODUCERS * PER_PRODUCER);
  CHECK_INT_EQ(atomic_load(&q.pushed), got);
  cp_mpsc_destroy(&q);
  return cp_test_finish("test_queue");
}
