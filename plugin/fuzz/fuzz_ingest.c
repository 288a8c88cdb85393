/*
 * libFuzzer target for the daemon's native MEASUREMENTS ingestion (plugin/ingest/cpi_ingest.c),
 * seeded with proto/vectors/.
 *
 * The oracle is the plugin's full decoder: cpi_decode_measurements must accept exactly the frames
 * cp_msg_decode accepts as MEASUREMENTS or MEASUREMENTS_PACKED, with the same values, and must not send a canonical
 * encoding to the slow path. Accepted reports then go through an aggregate as several senders,
 * so the sanitizers see the tables grow, fill and drain. A broken promise aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cp_codec.h"
/* Included, not linked: the decoded stats live in the decoder's private struct. */
#include "cpi_ingest.c"

static void fail(const char* what, const char* detail) {
  fprintf(stderr, "fuzz_ingest: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  abort();
}

/* Takes a channel dry in slices of cap; returns the total count taken. */
static uint64_t drain(cpi_agg* agg, uint32_t ch, size_t cap, uint64_t rows) {
  cpi_obs out[7];
  uint64_t total = 0;
  size_t n;
  while ((n = cpi_agg_take(agg, ch, out, cap)) > 0) {
    if (n > cap) fail("take wrote past its cap", NULL);
    for (size_t i = 0; i < n; i++) {
      if (out[i].ranks == 0 || out[i].row >= rows) fail("observation without ranks or row", NULL);
      /* Every sender with samples reports min <= max, and the window's extremes come from them. */
      if (out[i].count > 0 && out[i].min_ns > out[i].max_ns)
        fail("a window with samples has min above max", NULL);
      total += out[i].count;
    }
  }
  return total;
}

static void reverse_stats(cpi_decoder* dec) {
  const uint32_t n = dec->head.n_stats;
  for (uint32_t i = 0; i < n / 2; i++) {
    const cp_wire_stat t = dec->stats[i];
    dec->stats[i] = dec->stats[n - 1 - i];
    dec->stats[n - 1 - i] = t;
  }
}

static int distinct_keys(const cpi_decoder* dec) {
  const uint32_t n = dec->head.n_stats;
  for (uint32_t i = 0; i < n; i++)
    for (uint32_t j = i + 1; j < n; j++) {
      const cp_wire_stat *a = &dec->stats[i], *b = &dec->stats[j];
      if (a->coll == b->coll && a->n_bytes == b->n_bytes && a->algo == b->algo &&
          a->proto == b->proto && a->n_channels == b->n_channels)
        return 0;
    }
  return 1;
}

static void aggregate(cpi_decoder* dec) {
  cpi_agg* agg = cpi_agg_new(64, 4);
  if (agg == NULL) return;
  /* Sender 0 credits, sender 1 only moves its counters and then repeats itself, first in the
   * same order and then reversed (the position memo misses on every stat, the index must find
   * them: nothing new), sender 3 comes in after a partial take; sender 4 is out of range. */
  if (cpi_agg_absorb(agg, 0, dec, 1) != 0 || cpi_agg_absorb(agg, 1, dec, 0) != 0 ||
      cpi_agg_absorb(agg, 1, dec, 1) != 0)
    fail("absorb failed", NULL);
  cpi_agg_info before, after;
  cpi_agg_get_info(agg, &before);
  reverse_stats(dec);
  const int reordered = cpi_agg_absorb(agg, 1, dec, 1);
  reverse_stats(dec);
  cpi_agg_get_info(agg, &after);
  if (reordered != 0) fail("absorb failed", NULL);
  /* With distinct keys that all fit, the repeat is the same counters: nothing may change. */
  if (dec->head.n_stats <= 64 && distinct_keys(dec) && memcmp(&before, &after, sizeof before) != 0)
    fail("a sender's report repeated in another order changed the aggregate", NULL);
  cpi_obs first[3];
  uint64_t ch0 = 0;
  const size_t n = cpi_agg_take(agg, 0, first, 3);
  for (size_t i = 0; i < n; i++) ch0 += first[i].count;
  if (cpi_agg_absorb(agg, 3, dec, 1) != 0 || cpi_agg_absorb(agg, 0, dec, 1) != 0)
    fail("absorb failed", NULL);
  if (cpi_agg_absorb(agg, 4, dec, 1) != -1) fail("sender beyond max_senders absorbed", NULL);
  cpi_agg_info info;
  cpi_agg_get_info(agg, &info);
  if (info.rows > 64 || info.senders != 4) fail("aggregate limits not kept", NULL);
  ch0 += drain(agg, 0, 7, info.rows);
  const uint64_t ch1 = drain(agg, 1, 5, info.rows);
  /* Both channels were credited the same samples. */
  if (ch0 != ch1) fail("channels disagree on the samples credited", NULL);
  cpi_agg_get_info(agg, &info);
  if (info.pending[0] != 0 || info.pending[1] != 0) fail("rows pending after a full take", NULL);
  cpi_agg_free(agg);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static cpi_decoder* dec;
  if (dec == NULL && (dec = cpi_decoder_new()) == NULL) return 0;
  cpi_report_head head;
  const int r = cpi_decode_measurements(dec, data, size, &head);
  if (r < 0) return 0; /* out of memory */
  cp_msg m;
  cp_decode_error err;
  const cp_result rc = cp_msg_decode(data, size, &m, &err);
  if (rc == CP_ERR_NOMEM) return 0;
  /* Both report types: the fast path reads maps and packed rows alike. */
  const int ok = rc == CP_OK &&
                 (m.type == CP_MSG_MEASUREMENTS || m.type == CP_MSG_MEASUREMENTS_PACKED);
  if (r != ok) fail(r ? "ingest accepted what cp_msg_decode refuses" : "ingest refused a valid "
                    "MEASUREMENTS", rc == CP_OK ? cp_msg_type_name(m.type) : err.message);
  if (ok) {
    const cp_msg_measurements* mm = &m.u.measurements;
    if (head.comm != mm->comm || head.calls != mm->calls || head.dropped != mm->dropped ||
        head.n_stats != mm->n_stats || head.exact > 1 || dec->head.n_stats != head.n_stats)
      fail("report head differs from cp_msg_decode's", NULL);
    for (uint32_t i = 0; i < mm->n_stats; i++)
      if (!cp_stat_slot_same(&dec->stats[i], &mm->stats[i])) fail("a stat differs from cp_msg_decode's", NULL);
    if (head.exact) {
      cp_buf b;
      cp_buf_init(&b, 0);
      if (cp_msg_encode(&m, &b, &err) == CP_OK && b.len == size && memcmp(b.data, data, size) == 0)
        fail("a canonical encoding missed the fast path", NULL);
      cp_buf_free(&b);
    }
    aggregate(dec);
  }
  cp_msg_free(&m);
  return 0;
}
