/*
 * Timing of the daemon's native ingestion (plugin/ingest/cpi_ingest.h) at its target load: one
 * communicator of 1,024 ranks, each reporting the same 100 (key, arm) stats, a few contiguous
 * histogram buckets each. Prints, never judges:
 *   - decode time per report, MEASUREMENTS (maps) against MEASUREMENTS_PACKED;
 *   - absorb time per report (every rank, several rounds of growing counters);
 * for each library named on the command line, in one run so that the numbers compare. The
 * libraries are loaded with dlopen, so an older build of libcclpilot-ingest.so can be measured
 * next to the current one (a library that does not take MEASUREMENTS_PACKED shows "-").
 *
 * Built with the project (CMake target bench_ingest, option CCLPILOT_BUILD_BENCH):
 *   cmake --build build --target bench_ingest
 *   build/bench_ingest build/libcclpilot-ingest.so [other-libcclpilot-ingest.so ...]
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cp_codec.h"
#include "cpi_ingest.h"

enum { RANKS = 1024, STATS = 100, ROUNDS = 8, DECODES = 20000 };

typedef struct {
  cpi_decoder* (*dec_new)(void);
  void (*dec_free)(cpi_decoder*);
  int (*decode)(cpi_decoder*, const void*, size_t, cpi_report_head*);
  cpi_agg* (*agg_new)(uint32_t, uint32_t);
  void (*agg_free)(cpi_agg*);
  int (*absorb)(cpi_agg*, uint32_t, const cpi_decoder*, int);
  size_t (*take)(cpi_agg*, uint32_t, cpi_obs*, size_t);
} api;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_rng = 12345;
static uint64_t rnd_below(uint64_t n) {
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (z ^ (z >> 31)) % n;
}

/* Round r of the cumulative counters: each round every stat gains samples in its buckets. */
static void report(cp_wire_stat* st, int round) {
  g_rng = 12345;
  for (int i = 0; i < STATS; i++) {
    cp_wire_stat* s = &st[i];
    memset(s, 0, sizeof *s);
    s->coll = i % 5;
    s->n_bytes = (uint64_t)1 << (4 + i % 28);
    s->algo = (int)rnd_below(7);
    s->proto = (int)rnd_below(3);
    s->n_channels = 1 + (int)rnd_below(32);
    const int lo = 8 + (int)rnd_below(20), width = 3 + (int)rnd_below(3);
    uint64_t count = 0;
    for (int b = lo; b < lo + width; b++) {
      s->hist[b] = (uint32_t)((1 + rnd_below(200)) * (uint64_t)(round + 1));
      count += s->hist[b];
    }
    s->count = count;
    s->min_ns = (uint64_t)1 << lo;
    s->max_ns = ((uint64_t)1 << (lo + width)) - 1;
    s->sum_ns = (double)count * (double)(s->min_ns * 3);
    s->sum_sq_ns = s->sum_ns * (double)(s->min_ns * 3);
    s->untimed = (uint64_t)round;
  }
}

static cp_buf encode(const cp_wire_stat* st, cp_msg_type type) {
  cp_msg m;
  cp_msg_init(&m, type);
  m.u.measurements.comm = 0xfeedf00dull;
  m.u.measurements.calls = 123456;
  m.u.measurements.n_stats = STATS;
  m.u.measurements.stats = malloc(STATS * sizeof(cp_wire_stat));
  memcpy(m.u.measurements.stats, st, STATS * sizeof(cp_wire_stat));
  cp_buf b;
  cp_buf_init(&b, 0);
  cp_decode_error err;
  if (cp_msg_encode(&m, &b, &err) != CP_OK) {
    fprintf(stderr, "encode: %s\n", err.message);
    exit(1);
  }
  cp_msg_free(&m);
  return b;
}

/* Microseconds per decode, or -1 when the library refuses the frame. */
static double time_decode(const api* x, const cp_buf* frame) {
  cpi_decoder* dec = x->dec_new();
  cpi_report_head head;
  if (x->decode(dec, frame->data, frame->len, &head) != 1) {
    x->dec_free(dec);
    return -1.0;
  }
  const double t0 = now_s();
  for (int i = 0; i < DECODES; i++) x->decode(dec, frame->data, frame->len, &head);
  const double dt = now_s() - t0;
  x->dec_free(dec);
  return 1e6 * dt / DECODES;
}

/* Microseconds per absorbed report: every rank absorbs each round's report (decoded once, outside
 * the timing), the channels are taken between rounds as the daemon does. */
static double time_absorb(const api* x, const cp_buf* rounds) {
  cpi_decoder* dec[ROUNDS];
  cpi_report_head head;
  for (int r = 0; r < ROUNDS; r++) {
    dec[r] = x->dec_new();
    x->decode(dec[r], rounds[r].data, rounds[r].len, &head);
  }
  cpi_agg* agg = x->agg_new(65536, RANKS);
  static cpi_obs out[STATS];
  double total = 0.0;
  for (int r = 0; r < ROUNDS; r++) {
    const double t0 = now_s();
    for (uint32_t rank = 0; rank < RANKS; rank++) x->absorb(agg, rank, dec[r], 1);
    /* Round 0 creates the tables; the steady state is what counts. */
    if (r > 0) total += now_s() - t0;
    for (uint32_t ch = 0; ch < CPI_CHANNELS; ch++)
      while (x->take(agg, ch, out, STATS) > 0) {
      }
  }
  x->agg_free(agg);
  for (int r = 0; r < ROUNDS; r++) x->dec_free(dec[r]);
  return 1e6 * total / ((double)(ROUNDS - 1) * RANKS);
}

#define SYM(h, f, name)                                        \
  do {                                                        \
    *(void**)&(f) = dlsym((h), (name));                       \
    if ((f) == NULL) {                                        \
      fprintf(stderr, "%s: no %s\n", argv[i], (name));        \
      return 1;                                               \
    }                                                         \
  } while (0)

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s libcclpilot-ingest.so [another.so ...]\n", argv[0]);
    return 2;
  }
  static cp_wire_stat st[STATS];
  cp_buf maps[ROUNDS], packed;
  for (int r = 0; r < ROUNDS; r++) {
    report(st, r);
    maps[r] = encode(st, CP_MSG_MEASUREMENTS);
  }
  packed = encode(st, CP_MSG_MEASUREMENTS_PACKED);
  printf("%d stats per report, %d-%d buckets each: %zu bytes as maps, %zu packed\n", STATS, 3, 5,
         maps[ROUNDS - 1].len, packed.len);
  printf("%-44s %12s %12s %14s\n", "library", "decode maps", "decode packed", "absorb");
  for (int i = 1; i < argc; i++) {
    void* h = dlopen(argv[i], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
      fprintf(stderr, "%s\n", dlerror());
      return 1;
    }
    api x;
    SYM(h, x.dec_new, "cpi_decoder_new");
    SYM(h, x.dec_free, "cpi_decoder_free");
    SYM(h, x.decode, "cpi_decode_measurements");
    SYM(h, x.agg_new, "cpi_agg_new");
    SYM(h, x.agg_free, "cpi_agg_free");
    SYM(h, x.absorb, "cpi_agg_absorb");
    SYM(h, x.take, "cpi_agg_take");
    const double dm = time_decode(&x, &maps[ROUNDS - 1]);
    const double dp = time_decode(&x, &packed);
    const double ab = time_absorb(&x, maps);
    char pbuf[32];
    if (dp < 0) snprintf(pbuf, sizeof pbuf, "-");
    else snprintf(pbuf, sizeof pbuf, "%.2f us", dp);
    printf("%-44s %9.2f us %12s %11.2f us\n", argv[i], dm, pbuf, ab);
  }
  for (int r = 0; r < ROUNDS; r++) cp_buf_free(&maps[r]);
  cp_buf_free(&packed);
  return 0;
}
