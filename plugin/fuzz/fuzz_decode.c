/*
 * libFuzzer target for the protocol decoder (cp_msg_decode), seeded with proto/vectors/.
 *
 * Beyond "no crash, no sanitizer report", it checks the codec's own promises on every input:
 * a rejection always carries one of the eight rejection kinds and clears the output; an accepted
 * message passes cp_msg_validate and re-encodes canonically, and that encoding is a fixed point.
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
  cp_msg_free(&m);
  cp_buf_free(&b1);
  cp_buf_free(&b2);
  return 0;
}
