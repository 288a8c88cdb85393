/*
 * libFuzzer target for the protocol decoder (cp_msg_decode), seeded with proto/vectors/.
 *
 * Beyond "no crash, no sanitizer report", it checks the codec's own promises on every input:
 * a rejection always carries one of the eight rejection kinds and clears the output; an accepted
 * message passes cp_msg_validate and re-encodes canonically, and that encoding is a fixed point;
 * an accepted MEASUREMENTS(_PACKED) survives the trip through the other form unchanged.
 * A broken promise aborts, so libFuzzer saves the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cp_codec.h"

static void fail(const char* what, const cp_decode_error* err) {
  fprintf(stderr, "fuzz_decode: %s (kind %s, field '%s': %s)\n", what,
          cp_error_code_name(err->kind) ? cp_error_code_name(err->kind) : "?", err->field,
          err->message);
  abort();
}

/* MEASUREMENTS and MEASUREMENTS_PACKED carry one snapshot in two wire forms: whatever one form
 * accepts, the other must carry unchanged. */
static void same_in_other_form(cp_msg* m) {
  cp_decode_error err;
  const cp_msg_type own = m->type;
  m->type = own == CP_MSG_MEASUREMENTS ? CP_MSG_MEASUREMENTS_PACKED : CP_MSG_MEASUREMENTS;
  cp_buf b;
  cp_buf_init(&b, 0);
  if (cp_msg_encode(m, &b, &err) != CP_OK) fail("snapshot does not encode in the other form", &err);
  cp_msg o;
  if (cp_msg_decode(b.data, b.len, &o, &err) != CP_OK)
    fail("other form of a snapshot does not decode", &err);
  const cp_msg_measurements *x = &m->u.measurements, *y = &o.u.measurements;
  int same = o.type == m->type && x->comm == y->comm && x->calls == y->calls &&
             x->dropped == y->dropped && x->n_stats == y->n_stats;
  for (uint32_t i = 0; same && i < x->n_stats; i++) {
    const cp_wire_stat *s = &x->stats[i], *t = &y->stats[i];
    same = s->coll == t->coll && s->n_bytes == t->n_bytes && s->algo == t->algo &&
           s->proto == t->proto && s->n_channels == t->n_channels && s->count == t->count &&
           memcmp(&s->sum_ns, &t->sum_ns, sizeof s->sum_ns) == 0 &&
           memcmp(&s->sum_sq_ns, &t->sum_sq_ns, sizeof s->sum_sq_ns) == 0 &&
           s->min_ns == t->min_ns && s->max_ns == t->max_ns && s->untimed == t->untimed &&
           memcmp(s->hist, t->hist, sizeof s->hist) == 0;
  }
  if (!same) fail("the two MEASUREMENTS forms disagree on a snapshot", &err);
  cp_msg_free(&o);
  cp_buf_free(&b);
  m->type = own;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cp_msg m;
  cp_decode_error err;
  cp_result r = cp_msg_decode(data, size, &m, &err);
  if (r == CP_ERR_NOMEM) return 0;
  if (r != CP_OK) {
    if (r != CP_ERR_PARSE || err.kind <= CP_EC_NONE || err.kind > CP_EC_VERSION)
      fail("rejection without a rejection kind", &err);
    if (m.type != CP_MSG_NONE) fail("output not cleared after a rejection", &err);
    return 0;
  }
  if (cp_msg_validate(&m, &err) != CP_OK) fail("accepted message fails validate", &err);
  cp_buf b1, b2;
  cp_buf_init(&b1, 0);
  cp_buf_init(&b2, 0);
  if (cp_msg_encode(&m, &b1, &err) != CP_OK) fail("accepted message does not encode", &err);
  cp_msg m2;
  if (cp_msg_decode(b1.data, b1.len, &m2, &err) != CP_OK) fail("encoding does not decode", &err);
  if (cp_msg_encode(&m2, &b2, &err) != CP_OK || b1.len != b2.len ||
      memcmp(b1.data, b2.data, b1.len) != 0)
    fail("canonical encoding is not a fixed point", &err);
  cp_msg_free(&m2);
  if (m.type == CP_MSG_MEASUREMENTS || m.type == CP_MSG_MEASUREMENTS_PACKED) same_in_other_form(&m);
  cp_msg_free(&m);
  cp_buf_free(&b1);
  cp_buf_free(&b2);
  return 0;
}
