/*
 * Tests of the wire protocol codec (cp_codec.c) against the golden vectors in proto/vectors/
 * (manifest.json says what each file must do), plus hostile inputs built here. Run it under
 * -DCCLPILOT_ASAN_UBSAN=ON to turn "never crashes" into "never touches a wrong byte".
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, for printed timings */
#include <math.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cp_codec.h"
#include "testutil.h"

#define VEC_DIR CCLPILOT_SOURCE_DIR "/proto/vectors"

/* ---- a minimal JSON reader: just enough for manifest.json -------------------------------------- */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;
typedef struct jval {
  jtype t;
  double num;
  char* str;            /* J_STR (escapes \" \\ \/ \n \t resolved) */
  struct jval* items;   /* J_ARR values, J_OBJ values */
  char** keys;          /* J_OBJ keys */
  size_t n;
} jval;

typedef struct {
  const char* p;
  const char* end;
  int depth;
  int failed;
} jparser;

static void jws(jparser* j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static char* jstring(jparser* j) {
  if (j->p >= j->end || *j->p != '"') return j->failed = 1, NULL;
  j->p++;
  char* out = malloc((size_t)(j->end - j->p) + 1);
  size_t n = 0;
  while (j->p < j->end && *j->p != '"') {
    char c = *j->p++;
    if (c == '\\' && j->p < j->end) {
      char e = *j->p++;
      c = e == 'n' ? '\n' : e == 't' ? '\t' : e;
    }
    out[n++] = c;
  }
  if (j->p >= j->end) return free(out), j->failed = 1, NULL;
  j->p++;
  out[n] = '\0';
  return out;
}

static void jparse(jparser* j, jval* v) {
  memset(v, 0, sizeof *v);
  jws(j);
  if (j->failed || j->p >= j->end || ++j->depth > 32) {
    j->failed = 1;
    return;
  }
  char c = *j->p;
  if (c == '{' || c == '[') {
    const int obj = c == '{';
    v->t = obj ? J_OBJ : J_ARR;
    j->p++;
    size_t cap = 8;
    v->items = calloc(cap, sizeof *v->items);
    if (obj) v->keys = calloc(cap, sizeof *v->keys);
    jws(j);
    if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
      j->p++;
    } else {
      for (;;) {
        if (v->n == cap) {
          cap *= 2;
          v->items = realloc(v->items, cap * sizeof *v->items);
          if (obj) v->keys = realloc(v->keys, cap * sizeof *v->keys);
        }
        if (obj) {
          jws(j);
          v->keys[v->n] = jstring(j);
          jws(j);
          if (j->failed || j->p >= j->end || *j->p != ':') return (void)(j->failed = 1);
          j->p++;
        }
        jparse(j, &v->items[v->n++]);
        if (j->failed) return;
        jws(j);
        if (j->p < j->end && *j->p == ',') {
          j->p++;
          continue;
        }
        if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
          j->p++;
          break;
        }
        return (void)(j->failed = 1);
      }
    }
  } else if (c == '"') {
    v->t = J_STR;
    v->str = jstring(j);
  } else if (strncmp(j->p, "true", 4) == 0 || strncmp(j->p, "false", 5) == 0) {
    v->t = J_BOOL;
    v->num = *j->p == 't';
    j->p += *j->p == 't' ? 4 : 5;
  } else if (strncmp(j->p, "null", 4) == 0) {
    v->t = J_NULL;
    j->p += 4;
  } else {
    char* endp;
    v->t = J_NUM;
    v->num = strtod(j->p, &endp);
    if (endp == j->p) j->failed = 1;
    j->p = endp;
  }
  j->depth--;
}

static void jfree(jval* v) {
  for (size_t i = 0; i < v->n; i++) {
    jfree(&v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->str);
}

static const jval* jget(const jval* obj, const char* key) {
  if (obj == NULL || obj->t != J_OBJ) return NULL;
  for (size_t i = 0; i < obj->n; i++)
    if (obj->keys[i] && strcmp(obj->keys[i], key) == 0) return &obj->items[i];
  return NULL;
}

static const char* jstr(const jval* obj, const char* key) {
  const jval* v = jget(obj, key);
  return v && v->t == J_STR ? v->str : NULL;
}

/* ---- golden vectors --------------------------------------------------------------------------- */

static int g_valid_seen, g_invalid_seen;

static void check_valid(const jval* e) {
  const char* file = jstr(e, "file");
  const char* type = jstr(e, "type");
  CHECK(file && type, "valid entry lacks file or type");
  if (!file || !type) return;
  char path[512];
  snprintf(path, sizeof path, "%s/%s", VEC_DIR, file);
  size_t len;
  uint8_t* bytes = cp_test_read_file(path, &len);
  CHECK(bytes != NULL, "cannot read %s", path);
  if (!bytes) return;
  g_valid_seen++;
  cp_msg m;
  cp_decode_error err;
  cp_result r = cp_msg_decode(bytes, len, &m, &err);
  CHECK(r == CP_OK, "%s: rejected as %s at '%s': %s", file, cp_error_code_name(err.kind),
        err.field, err.message);
  if (r == CP_OK) {
    const char* got = cp_msg_type_name(m.type);
    CHECK(got && strcmp(got, type) == 0, "%s decoded as %s, manifest says %s", file,
          got ? got : "?", type);
    CHECK(cp_msg_validate(&m, &err) == CP_OK, "%s: decoded message fails validate: %s", file,
          err.message);
    cp_buf b;
    cp_buf_init(&b, 0);
    r = cp_msg_encode(&m, &b, &err);
    CHECK(r == CP_OK, "%s: re-encode failed: %s", file, err.message);
    CHECK(r == CP_OK && b.len == len && memcmp(b.data, bytes, len) == 0,
          "%s: re-encoding is not byte-identical (%zu bytes vs %zu)", file, b.len, len);
    if (r == CP_OK && (b.len != len || memcmp(b.data, bytes, len) != 0)) {
      for (size_t i = 0; i < len && i < b.len; i++) {
        if (b.data[i] != bytes[i]) {
          fprintf(stderr, "  first difference at byte %zu: got 0x%02x, want 0x%02x\n", i,
                  b.data[i], bytes[i]);
          break;
        }
      }
    }
    cp_buf_free(&b);
    cp_msg_free(&m);
  }
  free(bytes);
}

static void check_invalid(const jval* e) {
  const char* file = jstr(e, "file");
  const char* kind = jstr(e, "kind");
  CHECK(file && kind, "invalid entry lacks file or kind");
  if (!file || !kind) return;
  cp_error_code want = cp_error_code_from_name(kind, strlen(kind));
  CHECK(want >= CP_EC_MALFORMED && want <= CP_EC_VERSION, "%s: '%s' is no rejection kind", file,
        kind);
  char path[512];
  snprintf(path, sizeof path, "%s/%s", VEC_DIR, file);
  size_t len;
  uint8_t* bytes = cp_test_read_file(path, &len);
  CHECK(bytes != NULL, "cannot read %s", path);
  if (!bytes) return;
  g_invalid_seen++;
  cp_msg m;
  cp_decode_error err;
  cp_result r = cp_msg_decode(bytes, len, &m, &err);
  CHECK(r == CP_ERR_PARSE, "%s: accepted (result %d), manifest says %s", file, (int)r, kind);
  CHECK(err.kind == want, "%s: rejected as %s ('%s': %s), manifest says %s", file,
        cp_error_code_name(err.kind), err.field, err.message, kind);
  CHECK(err.message[0] != '\0', "%s: rejection without a message", file);
  CHECK(m.type == CP_MSG_NONE, "%s: output not cleared after a rejection", file);
  free(bytes);
}

static void check_seq_hash(const jval* e) {
  const char* hex = jstr(e, "hash");
  const jval* calls = jget(e, "calls");
  CHECK(hex && calls && calls->t == J_ARR, "seq_hash entry lacks calls or hash");
  if (!hex || !calls || calls->t != J_ARR) return;
  uint64_t want = strtoull(hex, NULL, 16);
  uint64_t h = CP_SEQ_HASH_INIT;
  for (size_t i = 0; i < calls->n; i++) {
    const jval* c = &calls->items[i];
    CHECK(c->t == J_ARR && c->n == 3, "seq_hash call %zu is not [coll, n_bytes, num_pipe_ops]", i);
    if (c->t != J_ARR || c->n != 3) return;
    h = cp_seq_hash_update(h, (int)c->items[0].num, (uint64_t)c->items[1].num,
                           (int)c->items[2].num);
  }
  CHECK(h == want, "seq_hash after %zu calls = 0x%016llx, manifest says %s", calls->n,
        (unsigned long long)h, hex);
}

static void test_vectors(void) {
  size_t len;
  uint8_t* text = cp_test_read_file(VEC_DIR "/manifest.json", &len);
  CHECK(text != NULL, "cannot read %s/manifest.json (CCLPILOT_SOURCE_DIR wrong?)", VEC_DIR);
  if (!text) return;
  jparser j = {(const char*)text, (const char*)text + len, 0, 0};
  jval root;
  jparse(&j, &root);
  CHECK(!j.failed && root.t == J_OBJ, "manifest.json does not parse as a JSON object");
  const char* proto = jstr(&root, "protocol");
  char ours[32];
  snprintf(ours, sizeof ours, "%d.%d", CP_PROTO_MAJOR, CP_PROTO_MINOR);
  CHECK(proto && strcmp(proto, ours) == 0, "manifest protocol %s, build has %s",
        proto ? proto : "?", ours);
  const jval* valid = jget(&root, "valid");
  const jval* invalid = jget(&root, "invalid");
  const jval* seq = jget(&root, "seq_hash");
  CHECK(valid && valid->t == J_ARR && valid->n > 0, "manifest has no valid[]");
  CHECK(invalid && invalid->t == J_ARR && invalid->n > 0, "manifest has no invalid[]");
  CHECK(seq && seq->t == J_ARR && seq->n > 0, "manifest has no seq_hash[]");
  if (valid && valid->t == J_ARR)
    for (size_t i = 0; i < valid->n; i++) check_valid(&valid->items[i]);
  if (invalid && invalid->t == J_ARR)
    for (size_t i = 0; i < invalid->n; i++) check_invalid(&invalid->items[i]);
  if (seq && seq->t == J_ARR)
    for (size_t i = 0; i < seq->n; i++) check_seq_hash(&seq->items[i]);
  /* Every message type appears among the valid vectors. */
  for (int t = CP_MSG_NONE + 1; t < CP_MSG_COUNT; t++) {
    int found = 0;
    for (size_t i = 0; valid && valid->t == J_ARR && i < valid->n; i++) {
      const char* ty = jstr(&valid->items[i], "type");
      if (ty && strcmp(ty, cp_msg_type_name((cp_msg_type)t)) == 0) found = 1;
    }
    CHECK(found, "no valid vector of type %s", cp_msg_type_name((cp_msg_type)t));
  }
  printf("golden vectors: %d valid, %d invalid\n", g_valid_seen, g_invalid_seen);
  jfree(&root);
  free(text);
}

/* ---- building messages ------------------------------------------------------------------------ */

static cp_result roundtrip(const cp_msg* in, cp_msg* out, cp_decode_error* err) {
  cp_buf b;
  cp_buf_init(&b, 0);
  cp_result r = cp_msg_encode(in, &b, err);
  if (r == CP_OK) r = cp_msg_decode(b.data, b.len, out, err);
  cp_buf_free(&b);
  return r;
}

static void test_roundtrip_and_encoder_checks(void) {
  cp_decode_error err;
  cp_msg m, d;

  cp_msg_init(&m, CP_MSG_HELLO);
  CHECK(CP_STR_SET(m.u.hello.job, "job-1") == CP_OK, "set job");
  CHECK(CP_STR_SET(m.u.hello.host, "node\0hidden") == CP_OK, "set host");
  CHECK(CP_STR_SET(m.u.hello.features[0], "measure") == CP_OK, "set feature");
  m.u.hello.n_features = 1;
  m.u.hello.comm = UINT64_MAX;
  m.u.hello.n_ranks = 8;
  m.u.hello.n_nodes = 2;
  m.u.hello.pid = 4242;
  m.u.hello.has_tuner_abi = true;
  m.u.hello.tuner_abi = 5;
  CHECK(roundtrip(&m, &d, &err) == CP_OK, "HELLO roundtrip: %s", err.message);
  CHECK(d.type == CP_MSG_HELLO && d.u.hello.comm == UINT64_MAX && !d.u.hello.has_rank &&
            d.u.hello.tuner_abi == 5 && !d.u.hello.has_profiler_abi &&
            d.u.hello.version.major == CP_PROTO_MAJOR && strcmp(d.u.hello.host.data, "node") == 0,
        "HELLO fields survive the roundtrip");
  cp_msg_free(&d);

  /* Constraint violations never reach the wire. */
  cp_buf b;
  cp_buf_init(&b, 0);
  m.u.hello.has_rank = true;
  m.u.hello.rank = 8;
  CHECK(cp_msg_encode(&m, &b, &err) == CP_ERR_INVALID && err.kind == CP_EC_BAD_VALUE &&
            strcmp(err.field, "rank") == 0 && b.len == 0,
        "rank == n_ranks refused by the encoder (%s)", err.message);
  m.u.hello.rank = 7;
  CHECK(CP_STR_SET(m.u.hello.features[1], "measure") == CP_OK, "set feature");
  m.u.hello.n_features = 2;
  CHECK(cp_msg_encode(&m, &b, &err) == CP_ERR_INVALID && strcmp(err.field, "features.1") == 0,
        "duplicate feature refused (%s: %s)", err.field, err.message);
  CHECK(CP_STR_SET(m.u.hello.features[1], "Plans") == CP_OK, "set feature");
  CHECK(cp_msg_encode(&m, &b, &err) == CP_ERR_INVALID, "feature with upper case refused");
  m.u.hello.n_features = 1;
  CHECK(cp_msg_encode(&m, &b, &err) == CP_OK, "fixed HELLO encodes: %s", err.message);
  char big[CP_MAX_NAME_BYTES + 2];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  CHECK(CP_STR_SET(m.u.hello.job, big) == CP_ERR_LIMIT, "CP_STR_SET refuses an oversize string");

  cp_msg_init(&m, CP_MSG_ACK);
  m.u.ack.plan = 3;
  m.u.ack.ok = true;
  CP_STR_SET(m.u.ack.reason, "but");
  CHECK(cp_msg_encode(&m, &b, &err) == CP_ERR_INVALID && err.kind == CP_EC_BAD_VALUE,
        "ACK ok with a reason refused");
  m.u.ack.reason.len = 0;
  m.u.ack.reason.data[0] = '\0';
  CHECK(cp_msg_encode(&m, &b, &err) == CP_OK, "ACK ok encodes");

  cp_msg_init(&m, CP_MSG_KEY_REPORT);
  m.u.key_report.num_pipe_ops = 1;
  m.u.key_report.cost[2][1] = NAN;
  CHECK(cp_msg_encode(&m, &b, &err) == CP_ERR_INVALID && strcmp(err.field, "cost.2.1") == 0,
        "NaN cost refused (%s)", err.field);
  m.u.key_report.cost[2][1] = -1.0;
  CHECK(roundtrip(&m, &d, &err) == CP_OK && d.u.key_report.cost[2][1] == -1.0,
        "cost -1.0 (ignored) roundtrips: %s", err.message);
  cp_msg_free(&d);

  cp_msg_init(&m, CP_MSG_ERROR);
  m.u.error.code = CP_EC_UNKNOWN_COMM;
  CP_STR_SET(m.u.error.message, "no HELLO");
  m.u.error.has_ref = true;
  CP_STR_SET(m.u.error.ref, "MEASUREMENTS");
  CHECK(roundtrip(&m, &d, &err) == CP_OK && d.u.error.code == CP_EC_UNKNOWN_COMM &&
            d.u.error.has_ref && !d.u.error.has_comm,
        "ERROR roundtrips: %s", err.message);
  cp_msg_free(&d);
  m.u.error.code = CP_EC_NONE;
  CHECK(cp_msg_encode(&m, &b, &err) == CP_ERR_INVALID, "ERROR without a code refused");

  /* The largest PREPARE the limits allow fits one frame, as PROTOCOL.md promises. */
  cp_msg_init(&m, CP_MSG_PREPARE);
  m.u.prepare.plan = UINT64_MAX;
  m.u.prepare.activate_at = UINT64_MAX;
  m.u.prepare.n_rules = CP_MAX_RULES;
  m.u.prepare.rules = calloc(CP_MAX_RULES, sizeof(cp_rule));
  for (uint32_t i = 0; i < CP_MAX_RULES; i++) {
    cp_rule* r = &m.u.prepare.rules[i];
    r->coll = 4;
    r->min_bytes = UINT64_MAX - 1;
    r->max_bytes = UINT64_MAX;
    r->n_nodes = r->n_ranks = r->num_pipe_ops = INT32_MAX;
    r->n_arms = CP_MAX_ARMS;
    for (int a = 0; a < CP_MAX_ARMS; a++)
      r->arms[a] = (cp_arm){.algo = 6, .proto = 2, .n_channels = 64, .chunk_size = UINT32_MAX};
  }
  CHECK(cp_msg_encode(&m, &b, &err) == CP_OK && b.len <= CP_MAX_MESSAGE_BYTES,
        "largest PREPARE encodes within MAX_MESSAGE_BYTES (%zu bytes): %s", b.len, err.message);
  printf("largest PREPARE: %zu bytes\n", b.len);
  CHECK(cp_msg_decode(b.data, b.len, &d, &err) == CP_OK && d.u.prepare.n_rules == CP_MAX_RULES &&
            d.u.prepare.rules[1023].arms[15].chunk_size == UINT32_MAX &&
            d.u.prepare.rules[1023].n_arms == CP_MAX_ARMS,
        "largest PREPARE decodes: %s", err.message);
  cp_msg_free(&d);
  cp_buf small;
  cp_buf_init(&small, 1000);
  CHECK(cp_msg_encode(&m, &small, &err) == CP_ERR_LIMIT && small.len == 0,
        "encoding past the buffer's max fails with CP_ERR_LIMIT");
  cp_buf_free(&small);
  m.u.prepare.rules[5].arms[3].algo = 7;
  CHECK(cp_msg_encode(&m, &b, &err) == CP_ERR_INVALID &&
            strcmp(err.field, "rules.5.arms.3.algo") == 0,
        "bad arm named by path (got '%s')", err.field);
  m.u.prepare.rules[5].arms[3].algo = -1;
  m.u.prepare.rules[9].n_arms = 0;
  CHECK(cp_msg_encode(&m, &b, &err) == CP_ERR_INVALID && err.kind == CP_EC_BAD_VALUE,
        "rule without arms refused");
  cp_msg_free(&m);

  /* MEASUREMENTS: a stats snapshot slot goes straight onto the wire. */
  cp_msg_init(&m, CP_MSG_MEASUREMENTS);
  m.u.measurements.n_stats = 2;
  m.u.measurements.stats = calloc(2, sizeof(cp_wire_stat));
  cp_wire_stat* s = &m.u.measurements.stats[0];
  s->coll = 4, s->n_bytes = 1 << 20, s->algo = 1, s->proto = 2, s->n_channels = 16;
  s->count = 2, s->sum_ns = 3000.0, s->sum_sq_ns = 5e6, s->min_ns = 1000, s->max_ns = 2000;
  s->hist[9] = 1, s->hist[10] = 1;
  CHECK(roundtrip(&m, &d, &err) == CP_OK && d.u.measurements.n_stats == 2 &&
            d.u.measurements.stats[0].hist[10] == 1 && d.u.measurements.stats[0].sum_ns == 3000.0,
        "MEASUREMENTS roundtrip: %s", err.message);
  cp_msg_free(&d);
  m.u.measurements.stats[1].hist[0] = 1; /* count 0 but a histogram entry */
  CHECK(cp_msg_encode(&m, &b, &err) == CP_ERR_INVALID && strcmp(err.field, "stats.1.count") == 0,
        "empty slot with histogram refused (%s)", err.field);
  cp_msg_free(&m);
  cp_buf_free(&b);
}

/* ---- hand-written frames ---------------------------------------------------------------------- */

static cp_error_code decode_kind(const uint8_t* p, size_t n, cp_decode_error* err) {
  cp_msg m;
  cp_result r = cp_msg_decode(p, n, &m, err);
  if (r == CP_OK) {
    cp_msg_free(&m);
    return CP_EC_NONE;
  }
  return err->kind;
}

/* A HEARTBEAT map with room for one more field whose value the caller appends. */
static size_t heartbeat_prefix(uint8_t* p, int extra_fields) {
  size_t n = 0;
  p[n++] = (uint8_t)(0x80 | (3 + extra_fields));
  p[n++] = 0xa1, p[n++] = 't';
  p[n++] = 0xa9;
  memcpy(p + n, "HEARTBEAT", 9), n += 9;
  p[n++] = 0xa3;
  memcpy(p + n, "seq", 3), n += 3;
  p[n++] = 0x01;
  p[n++] = 0xa7;
  memcpy(p + n, "time_ns", 7), n += 7;
  p[n++] = 0x02;
  return n;
}

static void test_handmade(void) {
  cp_decode_error err;
  uint8_t p[256];
  size_t n = heartbeat_prefix(p, 0);
  CHECK_INT_EQ(decode_kind(p, n, &err), CP_EC_NONE);

  /* Non-canonical but valid forms are accepted: uint16 for 1, float32 for a cost. */
  uint8_t q[64];
  size_t m = 0;
  q[m++] = 0x83, q[m++] = 0xa1, q[m++] = 't', q[m++] = 0xa9;
  memcpy(q + m, "HEARTBEAT", 9), m += 9;
  q[m++] = 0xa7;
  memcpy(q + m, "time_ns", 7), m += 7; /* fields in another order */
  q[m++] = 0xcd, q[m++] = 0x00, q[m++] = 0x01;
  q[m++] = 0xd9, q[m++] = 3;           /* str8 key */
  memcpy(q + m, "seq", 3), m += 3;
  q[m++] = 0xd0, q[m++] = 0x05;        /* int8 5: a non-negative int8 is still an integer */
  cp_msg d;
  CHECK(cp_msg_decode(q, m, &d, &err) == CP_OK && d.u.heartbeat.seq == 5 &&
            d.u.heartbeat.time_ns == 1,
        "non-canonical HEARTBEAT accepted: %s", err.message);
  cp_buf b;
  cp_buf_init(&b, 0);
  n = heartbeat_prefix(p, 0);
  p[17] = 0x05; /* seq's value */
  p[n - 1] = 0x01;
  CHECK(cp_msg_encode(&d, &b, &err) == CP_OK && b.len == n && memcmp(b.data, p, n) == 0,
        "re-encoded canonically");
  cp_buf_free(&b);
  cp_msg_free(&d);

  /* Depth: exactly MAX_DEPTH passes the scan (then fails the schema), MAX_DEPTH + 1 does not. */
  for (int depth = CP_MAX_DEPTH; depth <= CP_MAX_DEPTH + 1; depth++) {
    n = heartbeat_prefix(p, 1);
    p[n++] = 0xa1, p[n++] = 'x';
    for (int i = 1; i < depth; i++) p[n++] = 0x91; /* the map is level 1 */
    p[n++] = 0x00;
    cp_error_code k = decode_kind(p, n, &err);
    CHECK(k == (depth <= CP_MAX_DEPTH ? CP_EC_EXTRA_FIELD : CP_EC_LIMIT),
          "depth %d reported as %s (%s)", depth, cp_error_code_name(k), err.message);
    /* A stage-2 defect beats the depth (stage 3): append a trailing byte. */
    p[n++] = 0x00;
    k = decode_kind(p, n, &err);
    CHECK(k == CP_EC_MALFORMED, "depth %d plus a trailing byte reported as %s", depth,
          cp_error_code_name(k));
  }
  /* Empty containers count as a level too. */
  n = heartbeat_prefix(p, 1);
  p[n++] = 0xa1, p[n++] = 'x';
  for (int i = 1; i < CP_MAX_DEPTH; i++) p[n++] = 0x91;
  p[n++] = 0x90;
  CHECK_INT_EQ(decode_kind(p, n, &err), CP_EC_LIMIT);

  /* Hostile nesting a million levels deep: bounded work, no recursion, `limit`. */
  size_t deep_n = CP_MAX_MESSAGE_BYTES;
  uint8_t* deep = malloc(deep_n);
  memset(deep, 0x91, deep_n - 1);
  deep[deep_n - 1] = 0x00;
  CHECK_INT_EQ(decode_kind(deep, deep_n, &err), CP_EC_LIMIT);
  memset(deep, 0xdc, deep_n); /* array16 headers that claim 0xdcdc entries: over MAX_ARRAY_LEN */
  CHECK_INT_EQ(decode_kind(deep, deep_n, &err), CP_EC_LIMIT);
  /* Many small objects: the zone stays bounded by the frame, and the answer is the schema's. */
  n = heartbeat_prefix(deep, 1);
  deep[n++] = 0xa1, deep[n++] = 'x';
  deep[n++] = 0xdc, deep[n++] = 0x04, deep[n++] = 0x00; /* 1024 arrays of 1000 zeros */
  for (int i = 0; i < 1024; i++) {
    deep[n++] = 0xdc, deep[n++] = 0x03, deep[n++] = 0xe8;
    memset(deep + n, 0, 1000), n += 1000;
  }
  CHECK(n <= CP_MAX_MESSAGE_BYTES, "test frame fits (%zu bytes)", n);
  CHECK_INT_EQ(decode_kind(deep, n, &err), CP_EC_EXTRA_FIELD);
  CHECK_INT_EQ(decode_kind(deep, n - 1, &err), CP_EC_MALFORMED);
  free(deep);

  /* A map over MAX_MAP_LEN is `limit` before its keys are looked at. */
  p[0] = 0xde, p[1] = 0x00, p[2] = 33;
  CHECK_INT_EQ(decode_kind(p, 3, &err), CP_EC_LIMIT);
  /* Overlong UTF-8 and a surrogate are malformed. */
  n = heartbeat_prefix(p, 1);
  p[n++] = 0xa2, p[n++] = 0xc0, p[n++] = 0x80;
  p[n++] = 0x00;
  CHECK_INT_EQ(decode_kind(p, n, &err), CP_EC_MALFORMED);
  n = heartbeat_prefix(p, 1);
  p[n++] = 0xa3, p[n++] = 0xed, p[n++] = 0xa0, p[n++] = 0x80;
  p[n++] = 0x00;
  CHECK_INT_EQ(decode_kind(p, n, &err), CP_EC_MALFORMED);
  /* Valid multi-byte UTF-8 in an undeclared key is an extra field, named in the error. */
  n = heartbeat_prefix(p, 1);
  p[n++] = 0xa2, p[n++] = 0xc3, p[n++] = 0xa9;
  p[n++] = 0x00;
  CHECK_INT_EQ(decode_kind(p, n, &err), CP_EC_EXTRA_FIELD);
  /* A nil in a non-nullable field is the wrong type; an integer in a float field too. */
  n = heartbeat_prefix(p, 0);
  p[n - 1] = 0xc0;
  CHECK_INT_EQ(decode_kind(p, n, &err), CP_EC_WRONG_TYPE);
  CHECK_STR_CONTAINS(err.field, "time_ns");
  /* u64 beyond int64 is fine in a u64 field. */
  n = heartbeat_prefix(p, 0);
  p[n - 1] = 0xcf;
  memset(p + n, 0xff, 8), n += 8;
  CHECK_INT_EQ(decode_kind(p, n, &err), CP_EC_NONE);
  /* Bad arguments. */
  cp_msg dm;
  CHECK(cp_msg_decode(NULL, 3, &dm, &err) == CP_ERR_INVALID, "NULL buffer refused");
  CHECK(cp_msg_decode(p, n, NULL, &err) == CP_ERR_INVALID, "NULL out refused");
}

/* ---- robustness ------------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void decode_any(const uint8_t* p, size_t n, long* accepted) {
  cp_msg m;
  cp_decode_error err;
  cp_result r = cp_msg_decode(p, n, &m, &err);
  if (r == CP_OK) {
    (*accepted)++;
    /* Whatever is accepted must re-encode and decode to the same canonical bytes. */
    cp_buf b1, b2;
    cp_buf_init(&b1, 0);
    cp_buf_init(&b2, 0);
    cp_msg m2;
    CHECK(cp_msg_encode(&m, &b1, &err) == CP_OK, "accepted message does not re-encode: %s",
          err.message);
    CHECK(cp_msg_decode(b1.data, b1.len, &m2, &err) == CP_OK, "re-encoding does not decode: %s",
          err.message);
    CHECK(cp_msg_encode(&m2, &b2, &err) == CP_OK && b1.len == b2.len &&
              memcmp(b1.data, b2.data, b1.len) == 0,
          "canonical encoding is not a fixed point");
    cp_msg_free(&m2);
    cp_buf_free(&b1);
    cp_buf_free(&b2);
    cp_msg_free(&m);
  } else {
    CHECK(r == CP_ERR_PARSE && err.kind > CP_EC_NONE && err.kind <= CP_EC_VERSION,
          "rejection without a kind (result %d, kind %d)", (int)r, (int)err.kind);
  }
}

static void test_hostile(void) {
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  long accepted = 0;
  uint8_t buf[512];
  for (int i = 0; i < 20000; i++) {
    size_t n = rng_next(&seed) % sizeof buf;
    for (size_t k = 0; k < n; k++) buf[k] = (uint8_t)rng_next(&seed);
    decode_any(buf, n, &accepted);
  }
  /* Truncations and byte flips of every valid vector. */
  static const char* const files[] = {"hello", "hello_minimal", "welcome", "key_report",
                                      "measurements", "measurements_empty", "prepare",
                                      "prepare_empty", "ack_ok", "ack_refused", "commit", "abort",
                                      "heartbeat", "error", "error_generic",
                                      "measurements_packed", "measurements_packed_empty"};
  long mutated_ok = 0;
  for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
    char path[512];
    snprintf(path, sizeof path, "%s/valid/%s.msgpack", VEC_DIR, files[f]);
    size_t len;
    uint8_t* v = cp_test_read_file(path, &len);
    CHECK(v != NULL, "cannot read %s", path);
    if (!v) continue;
    for (size_t cut = 0; cut < len; cut++) {
      cp_msg m;
      cp_decode_error err;
      /* Exact-size copy, so ASan sees any read past the cut. */
      uint8_t* t = malloc(cut ? cut : 1);
      memcpy(t, v, cut);
      CHECK(cp_msg_decode(t, cut, &m, &err) == CP_ERR_PARSE && err.kind == CP_EC_MALFORMED,
            "%s cut at %zu: %s", files[f], cut, cp_error_code_name(err.kind));
      free(t);
    }
    uint8_t* t = malloc(len);
    for (int i = 0; i < 3000; i++) {
      memcpy(t, v, len);
      int flips = 1 + (int)(rng_next(&seed) % 3);
      for (int k = 0; k < flips; k++) t[rng_next(&seed) % len] = (uint8_t)rng_next(&seed);
      decode_any(t, len, &mutated_ok);
    }
    free(t);
    free(v);
  }
  printf("hostile: %ld random inputs accepted, %ld mutated vectors still valid\n", accepted,
         mutated_ok);
}

/* ---- MEASUREMENTS_PACKED (protocol 1.1) ------------------------------------------------------- */

static int meas_eq(const cp_msg_measurements* a, const cp_msg_measurements* b) {
  if (a->comm != b->comm || a->calls != b->calls || a->dropped != b->dropped ||
      a->n_stats != b->n_stats)
    return 0;
  for (uint32_t i = 0; i < a->n_stats; i++)
    if (!cp_stat_slot_same(&a->stats[i], &b->stats[i])) return 0;
  return 1;
}

/* A random valid Stat whose histogram takes one of the shapes the run form must get right. */
static void random_stat(uint64_t* seed, cp_wire_stat* s) {
  memset(s, 0, sizeof *s);
  s->coll = (int)(rng_next(seed) % CP_NUM_COLLS);
  s->algo = (int)(rng_next(seed) % CP_NUM_ALGOS);
  s->proto = (int)(rng_next(seed) % CP_NUM_PROTOS);
  s->n_channels = (int)(rng_next(seed) % (CP_MAX_CHANNELS + 1));
  const int big = rng_next(seed) % 4 == 0; /* u64 / u32 extremes */
  s->n_bytes = big ? UINT64_MAX : rng_next(seed) >> (rng_next(seed) % 64);
  s->untimed = big ? UINT64_MAX : rng_next(seed) % 1000;
  const int shape = (int)(rng_next(seed) % 8);
  if (shape == 0) return; /* count 0: sums and histogram empty, min/max free */
  int lo, hi;
  switch (shape) {
    case 1: lo = 0, hi = (int)(rng_next(seed) % CP_HIST_BUCKETS); break;          /* from 0 */
    case 2: lo = (int)(rng_next(seed) % CP_HIST_BUCKETS), hi = CP_HIST_BUCKETS - 1; break;
    case 3: lo = hi = (int)(rng_next(seed) % CP_HIST_BUCKETS); break;             /* one bucket */
    case 4: lo = 0, hi = CP_HIST_BUCKETS - 1; break;                               /* all */
    case 5: lo = hi = 0; break;
    case 6: lo = hi = CP_HIST_BUCKETS - 1; break;
    default:
      lo = (int)(rng_next(seed) % CP_HIST_BUCKETS);
      hi = lo + (int)(rng_next(seed) % (uint64_t)(CP_HIST_BUCKETS - lo));
      break;
  }
  for (int b = lo; b <= hi; b++) {
    /* Ends non-zero (the run's real extent); zeros inside are allowed and kept. */
    const uint64_t r = rng_next(seed);
    s->hist[b] = (b == lo || b == hi) ? (big ? UINT32_MAX : 1 + (uint32_t)(r % 1000))
                                      : (r % 3 == 0 ? 0 : (uint32_t)r);
  }
  s->count = big ? UINT64_MAX : 1 + rng_next(seed) % 100000;
  s->sum_ns = big ? 1.7e308 : (double)(rng_next(seed) % 1000000000) + 0.5;
  s->sum_sq_ns = big ? 1.7e308 : s->sum_ns * 3.0;
  s->min_ns = big ? 0 : rng_next(seed) % 1000;
  s->max_ns = big ? UINT64_MAX : s->min_ns + rng_next(seed) % 1000000;
}

/* The hist run of stats[i] in an encoded MEASUREMENTS_PACKED, via msgpack-c (independent of the
 * codec under test). Returns the run's array object, NULL if the frame is not shaped as expected. */
static const msgpack_object* run_of(const msgpack_object* root, uint32_t i) {
  if (root->type != MSGPACK_OBJECT_MAP) return NULL;
  for (uint32_t k = 0; k < root->via.map.size; k++) {
    const msgpack_object_kv* kv = &root->via.map.ptr[k];
    if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 5 &&
        memcmp(kv->key.via.str.ptr, "stats", 5) == 0 && kv->val.type == MSGPACK_OBJECT_ARRAY &&
        i < kv->val.via.array.size) {
      const msgpack_object* row = &kv->val.via.array.ptr[i];
      if (row->type != MSGPACK_OBJECT_ARRAY || row->via.array.size != 12) return NULL;
      return row->via.array.ptr[10].type == MSGPACK_OBJECT_ARRAY ? &row->via.array.ptr[10] : NULL;
    }
  }
  return NULL;
}

/* The encoder writes the shortest run: [] when all zero, else first = lowest non-zero bucket and
 * the last count non-zero. */
static void check_canonical_runs(const cp_buf* b, const cp_msg_measurements* ms) {
  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  size_t off = 0;
  CHECK(msgpack_unpack_next(&up, (const char*)b->data, b->len, &off) == MSGPACK_UNPACK_SUCCESS,
        "packed frame unpacks");
  for (uint32_t i = 0; i < ms->n_stats; i++) {
    const msgpack_object* run = run_of(&up.data, i);
    CHECK(run != NULL, "stats.%u.hist is an array at index 10", i);
    if (!run) break;
    const uint32_t* h = ms->stats[i].hist;
    int lo = 0, hi = CP_HIST_BUCKETS - 1;
    while (lo < CP_HIST_BUCKETS && h[lo] == 0) lo++;
    while (hi >= 0 && h[hi] == 0) hi--;
    if (lo == CP_HIST_BUCKETS) {
      CHECK(run->via.array.size == 0, "stats.%u: all-zero histogram is [] (got %u values)", i,
            run->via.array.size);
      continue;
    }
    const int ok = run->via.array.size == (uint32_t)(2 + hi - lo) &&
                   run->via.array.ptr[0].via.u64 == (uint64_t)lo &&
                   run->via.array.ptr[run->via.array.size - 1].via.u64 == h[hi];
    CHECK(ok, "stats.%u: run [%llu, ...] of %u values, want first %d and %d values", i,
          (unsigned long long)run->via.array.ptr[0].via.u64, run->via.array.size, lo, 2 + hi - lo);
  }
  msgpack_unpacked_destroy(&up);
}

static void test_packed_roundtrip(void) {
  uint64_t seed = 0x5eed0011ull;
  cp_buf bp, bm;
  cp_buf_init(&bp, 0);
  cp_buf_init(&bm, 0);
  int runs = 0;
  for (int iter = 0; iter < 200; iter++) {
    cp_msg m, dp, dm;
    cp_decode_error err;
    cp_msg_init(&m, CP_MSG_MEASUREMENTS_PACKED);
    const uint32_t n = iter == 0 ? 0 : (uint32_t)(1 + rng_next(&seed) % 40);
    m.u.measurements.comm = rng_next(&seed);
    m.u.measurements.calls = iter % 7 == 0 ? UINT64_MAX : rng_next(&seed) % 100000;
    m.u.measurements.dropped = iter % 5 == 0 ? UINT64_MAX : rng_next(&seed) % 10;
    m.u.measurements.n_stats = n;
    m.u.measurements.stats = n ? calloc(n, sizeof(cp_wire_stat)) : NULL;
    for (uint32_t i = 0; i < n; i++) random_stat(&seed, &m.u.measurements.stats[i]);
    CHECK(cp_msg_encode(&m, &bp, &err) == CP_OK, "packed encode: %s %s", err.field, err.message);
    check_canonical_runs(&bp, &m.u.measurements);
    CHECK(cp_msg_decode(bp.data, bp.len, &dp, &err) == CP_OK, "packed decode: %s %s", err.field,
          err.message);
    CHECK(dp.type == CP_MSG_MEASUREMENTS_PACKED && meas_eq(&dp.u.measurements, &m.u.measurements),
          "packed roundtrip %d keeps every value", iter);
    /* The same snapshot as a map-form MEASUREMENTS decodes to the identical struct. */
    m.type = CP_MSG_MEASUREMENTS;
    CHECK(cp_msg_encode(&m, &bm, &err) == CP_OK, "map encode: %s", err.message);
    CHECK(cp_msg_decode(bm.data, bm.len, &dm, &err) == CP_OK, "map decode: %s", err.message);
    CHECK(dm.type == CP_MSG_MEASUREMENTS && meas_eq(&dm.u.measurements, &dp.u.measurements),
          "packed and map forms of snapshot %d decode alike", iter);
    CHECK(n == 0 || bp.len < bm.len, "packed (%zu B) smaller than map (%zu B)", bp.len, bm.len);
    runs += (int)n;
    cp_msg_free(&dp);
    cp_msg_free(&dm);
    cp_msg_free(&m);
  }
  /* An invalid Stat never reaches the wire in the packed form either. */
  cp_msg m;
  cp_decode_error err;
  cp_msg_init(&m, CP_MSG_MEASUREMENTS_PACKED);
  m.u.measurements.n_stats = 2;
  m.u.measurements.stats = calloc(2, sizeof(cp_wire_stat));
  m.u.measurements.stats[1].hist[47] = 1; /* count 0 */
  CHECK(cp_msg_encode(&m, &bp, &err) == CP_ERR_INVALID && err.kind == CP_EC_BAD_VALUE &&
            strcmp(err.field, "stats.1.count") == 0 && bp.len == 0,
        "packed encoder refuses count 0 with a histogram (%s)", err.field);
  m.u.measurements.stats[1].hist[47] = 0;
  m.u.measurements.stats[1].algo = CP_NUM_ALGOS;
  CHECK(cp_msg_encode(&m, &bp, &err) == CP_ERR_INVALID && strcmp(err.field, "stats.1.algo") == 0,
        "packed encoder refuses a bad algo (%s)", err.field);
  cp_msg_free(&m);
  CHECK(cp_msg_type_name(CP_MSG_MEASUREMENTS_PACKED) &&
            strcmp(cp_msg_type_name(CP_MSG_MEASUREMENTS_PACKED), "MEASUREMENTS_PACKED") == 0,
        "type name");
  CHECK(CP_MSG_MEASUREMENTS_PACKED == CP_MSG_ERROR + 1, "appended after ERROR: 1.0 values kept");
  printf("packed roundtrip: 200 snapshots, %d stats\n", runs);
  cp_buf_free(&bp);
  cp_buf_free(&bm);
}

/* A msgpack value for hand-made PackedStat rows: any shape, including wrong ones. */
typedef struct tv {
  char t;                 /* 'u' uint, 'i' negative int, 'f' float64, 's' str, 'a' array, 'm' {} */
  uint64_t u;
  int64_t i;
  double f;
  const struct tv* items; /* 'a' */
  uint32_t n;
} tv;

static void tv_pack(msgpack_packer* pk, const tv* v) {
  switch (v->t) {
    case 'u': msgpack_pack_uint64(pk, v->u); break;
    case 'i': msgpack_pack_int64(pk, v->i); break;
    case 'f': msgpack_pack_double(pk, v->f); break;
    case 's': msgpack_pack_str(pk, 1), msgpack_pack_str_body(pk, "x", 1); break;
    case 'm': msgpack_pack_map(pk, 0); break;
    default:
      msgpack_pack_array(pk, v->n);
      for (uint32_t k = 0; k < v->n; k++) tv_pack(pk, &v->items[k]);
      break;
  }
}

#define TU(x) ((tv){.t = 'u', .u = (x)})
#define TF(x) ((tv){.t = 'f', .f = (x)})

/* A row for stat s, written in PROTOCOL.md's PackedStat order by hand (not by the codec), with
 * `run` (n_run values) as its hist. cells must hold 13. */
static void row_of(const cp_wire_stat* s, const tv* run, uint32_t n_run, tv* cells) {
  cells[0] = TU((uint64_t)s->coll);
  cells[1] = TU(s->n_bytes);
  cells[2] = TU((uint64_t)s->algo);
  cells[3] = TU((uint64_t)s->proto);
  cells[4] = TU((uint64_t)s->n_channels);
  cells[5] = TU(s->count);
  cells[6] = TF(s->sum_ns);
  cells[7] = TF(s->sum_sq_ns);
  cells[8] = TU(s->min_ns);
  cells[9] = TU(s->max_ns);
  cells[10] = (tv){.t = 'a', .items = run, .n = n_run};
  cells[11] = TU(s->untimed);
  cells[12] = TU(0); /* only a 13-value row uses it */
}

/* MEASUREMENTS_PACKED {comm 1, calls 2, dropped 3, stats: rows}. */
static void packed_frame(msgpack_sbuffer* sb, const tv* rows, uint32_t n_rows) {
  msgpack_sbuffer_clear(sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 5);
  const char* keys[4] = {"t", "comm", "calls", "dropped"};
  for (int k = 0; k < 4; k++) {
    msgpack_pack_str(&pk, strlen(keys[k]));
    msgpack_pack_str_body(&pk, keys[k], strlen(keys[k]));
    if (k == 0) {
      msgpack_pack_str(&pk, 19);
      msgpack_pack_str_body(&pk, "MEASUREMENTS_PACKED", 19);
    } else {
      msgpack_pack_uint64(&pk, (uint64_t)k);
    }
  }
  msgpack_pack_str(&pk, 5);
  msgpack_pack_str_body(&pk, "stats", 5);
  msgpack_pack_array(&pk, n_rows);
  for (uint32_t r = 0; r < n_rows; r++) tv_pack(&pk, &rows[r]);
}

/* Decodes a frame of two rows: a valid one, then `bad` (n_cells values, or `bad_row` itself when
 * given). Returns the rejection kind (CP_EC_NONE if accepted, with *out kept). */
static cp_error_code decode_rows(msgpack_sbuffer* sb, const tv* good, const tv* bad_cells,
                                 uint32_t n_cells, const tv* bad_row, cp_decode_error* err,
                                 cp_msg* out) {
  tv rows[2] = {{.t = 'a', .items = good, .n = 12},
                bad_row ? *bad_row : (tv){.t = 'a', .items = bad_cells, .n = n_cells}};
  packed_frame(sb, rows, 2);
  cp_msg m;
  cp_result r = cp_msg_decode(sb->data, sb->size, &m, err);
  if (r != CP_OK) {
    CHECK(r == CP_ERR_PARSE && m.type == CP_MSG_NONE, "rejection clears the output");
    return err->kind;
  }
  if (out) *out = m;
  else cp_msg_free(&m);
  return CP_EC_NONE;
}

static void test_packed_rejections(void) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  cp_decode_error err;
  cp_msg d;
  cp_wire_stat s;
  memset(&s, 0, sizeof s);
  s.coll = 2, s.n_bytes = 1u << 20, s.algo = 1, s.proto = 2, s.n_channels = 8, s.count = 12;
  s.sum_ns = 1.2e6, s.sum_sq_ns = 1.3e11, s.min_ns = 90000, s.max_ns = 110000, s.untimed = 3;
  s.hist[16] = 5, s.hist[17] = 7;
  const tv run[3] = {TU(16), TU(5), TU(7)};
  tv good[13], bad[13];
  row_of(&s, run, 3, good);

  /* The hand-written row (PROTOCOL.md's order) decodes into the right fields: the codec's
   * descriptor order is the protocol's. */
  memcpy(bad, good, sizeof bad);
  CHECK_INT_EQ(decode_rows(&sb, good, bad, 12, NULL, &err, &d), CP_EC_NONE);
  if (d.type == CP_MSG_MEASUREMENTS_PACKED) {
    CHECK(d.u.measurements.n_stats == 2 && cp_stat_slot_same(&d.u.measurements.stats[1], &s) &&
              d.u.measurements.comm == 1 && d.u.measurements.calls == 2 &&
              d.u.measurements.dropped == 3,
          "hand-made PackedStat decodes field by field");
    cp_msg_free(&d);
  }

  /* Non-canonical runs (zero counts at either end, an all-zero run) decode to the same stats
   * and re-encode canonically. */
  const tv padded[7] = {TU(14), TU(0), TU(0), TU(5), TU(7), TU(0), TU(0)};
  memcpy(bad, good, sizeof bad);
  bad[10] = (tv){.t = 'a', .items = padded, .n = 7};
  CHECK_INT_EQ(decode_rows(&sb, good, bad, 12, NULL, &err, &d), CP_EC_NONE);
  if (d.type == CP_MSG_MEASUREMENTS_PACKED) {
    CHECK(cp_stat_slot_same(&d.u.measurements.stats[1], &s), "zero-padded run = the shortest run");
    cp_buf b;
    cp_buf_init(&b, 0);
    CHECK(cp_msg_encode(&d, &b, &err) == CP_OK, "re-encodes");
    msgpack_sbuffer canon;
    msgpack_sbuffer_init(&canon);
    tv rows[2] = {{.t = 'a', .items = good, .n = 12}, {.t = 'a', .items = good, .n = 12}};
    packed_frame(&canon, rows, 2);
    CHECK(b.len == canon.size && memcmp(b.data, canon.data, b.len) == 0,
          "re-encoding of a padded run is the canonical frame (%zu vs %zu bytes)", b.len,
          canon.size);
    msgpack_sbuffer_destroy(&canon);
    cp_buf_free(&b);
    cp_msg_free(&d);
  }
  const tv zeros[4] = {TU(40), TU(0), TU(0), TU(0)};
  cp_wire_stat empty;
  memset(&empty, 0, sizeof empty);
  empty.n_bytes = 4096, empty.untimed = 9;
  tv erow[13];
  row_of(&empty, zeros, 4, erow);
  CHECK_INT_EQ(decode_rows(&sb, good, erow, 12, NULL, &err, &d), CP_EC_NONE);
  if (d.type == CP_MSG_MEASUREMENTS_PACKED) {
    CHECK(cp_stat_slot_same(&d.u.measurements.stats[1], &empty), "an all-zero run is an empty histogram");
    cp_msg_free(&d);
  }
  const tv full[49] = {TU(0), TU(1), TU(2), TU(3), TU(4), TU(5), TU(6), TU(7), TU(8), TU(9),
                       TU(10), TU(11), TU(12), TU(13), TU(14), TU(15), TU(16), TU(17), TU(18),
                       TU(19), TU(20), TU(21), TU(22), TU(23), TU(24), TU(25), TU(26), TU(27),
                       TU(28), TU(29), TU(30), TU(31), TU(32), TU(33), TU(34), TU(35), TU(36),
                       TU(37), TU(38), TU(39), TU(40), TU(41), TU(42), TU(43), TU(44), TU(45),
                       TU(46), TU(47), TU(UINT32_MAX)};
  memcpy(bad, good, sizeof bad);
  bad[10] = (tv){.t = 'a', .items = full, .n = 49};
  CHECK_INT_EQ(decode_rows(&sb, good, bad, 12, NULL, &err, &d), CP_EC_NONE);
  if (d.type == CP_MSG_MEASUREMENTS_PACKED) {
    CHECK(d.u.measurements.stats[1].hist[0] == 1 && d.u.measurements.stats[1].hist[46] == 47 &&
              d.u.measurements.stats[1].hist[47] == UINT32_MAX,
          "a run of all 48 buckets, u32 max in the last");
    cp_msg_free(&d);
  }

  /* Every rejection of PROTOCOL.md's PackedStat, with its kind and path. */
  struct {
    const char* what;
    int cell;          /* index replaced by `val`, -1 none */
    tv val;
    uint32_t n_cells;  /* row length */
    int whole;         /* the row itself is `val` */
    cp_error_code kind;
    const char* field;
  } cases[] = {
      {"row as a map", -1, {.t = 'm'}, 12, 1, CP_EC_WRONG_TYPE, "stats.1"},
      {"row as an int", -1, TU(7), 12, 1, CP_EC_WRONG_TYPE, "stats.1"},
      {"row of 11", -1, {0}, 11, 0, CP_EC_MISSING_FIELD, "stats.1.untimed"},
      {"row of 5", -1, {0}, 5, 0, CP_EC_MISSING_FIELD, "stats.1.count"},
      {"row of 0", -1, {0}, 0, 0, CP_EC_MISSING_FIELD, "stats.1.coll"},
      {"row of 13", -1, {0}, 13, 0, CP_EC_EXTRA_FIELD, "stats.1.12"},
      {"hist as an int", 10, TU(3), 12, 0, CP_EC_WRONG_TYPE, "stats.1.hist"},
      {"hist as a map", 10, {.t = 'm'}, 12, 0, CP_EC_WRONG_TYPE, "stats.1.hist"},
      {"n_bytes as a float", 1, TF(1.0), 12, 0, CP_EC_WRONG_TYPE, "stats.1.n_bytes"},
      {"sum_ns as an int", 6, TU(5), 12, 0, CP_EC_WRONG_TYPE, "stats.1.sum_ns"},
      {"sum_sq_ns negative", 7, TF(-1.0), 12, 0, CP_EC_BAD_VALUE, "stats.1.sum_sq_ns"},
      {"coll 5", 0, TU(5), 12, 0, CP_EC_BAD_VALUE, "stats.1.coll"},
      {"n_channels 65", 4, TU(65), 12, 0, CP_EC_BAD_VALUE, "stats.1.n_channels"},
      {"untimed negative", 11, {.t = 'i', .i = -1}, 12, 0, CP_EC_BAD_VALUE, "stats.1.untimed"},
      {"min above max", 8, TU(200000), 12, 0, CP_EC_BAD_VALUE, "stats.1.min_ns"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    memcpy(bad, good, sizeof bad);
    if (cases[c].cell >= 0) bad[cases[c].cell] = cases[c].val;
    cp_error_code k = decode_rows(&sb, good, bad, cases[c].n_cells,
                                  cases[c].whole ? &cases[c].val : NULL, &err, NULL);
    CHECK(k == cases[c].kind && strcmp(err.field, cases[c].field) == 0,
          "%s: %s at '%s' (%s), want %s at '%s'", cases[c].what, cp_error_code_name(k), err.field,
          err.message, cp_error_code_name(cases[c].kind), cases[c].field);
  }
  /* Runs. */
  struct {
    const char* what;
    tv items[52];
    uint32_t n;
    cp_error_code kind;
    const char* field;
  } runs[] = {
      {"first only", {TU(16)}, 1, CP_EC_BAD_VALUE, "stats.1.hist"},
      {"first 48", {TU(48), TU(1)}, 2, CP_EC_BAD_VALUE, "stats.1.hist"},
      {"first 2^64-1", {TU(UINT64_MAX), TU(1)}, 2, CP_EC_BAD_VALUE, "stats.1.hist"},
      {"first -1", {{.t = 'i', .i = -1}, TU(1)}, 2, CP_EC_BAD_VALUE, "stats.1.hist"},
      {"first a float", {TF(16.0), TU(1)}, 2, CP_EC_WRONG_TYPE, "stats.1.hist"},
      {"first a string", {{.t = 's'}, TU(1)}, 2, CP_EC_WRONG_TYPE, "stats.1.hist"},
      {"past the end", {TU(46), TU(1), TU(1), TU(1)}, 4, CP_EC_BAD_VALUE, "stats.1.hist"},
      {"count a float", {TU(16), TU(5), TF(7.0)}, 3, CP_EC_WRONG_TYPE, "stats.1.hist.17"},
      {"count a string", {TU(16), {.t = 's'}}, 2, CP_EC_WRONG_TYPE, "stats.1.hist.16"},
      {"count 2^32", {TU(16), TU(5), TU(1ull << 32)}, 3, CP_EC_BAD_VALUE, "stats.1.hist.17"},
      {"count negative", {TU(16), {.t = 'i', .i = -5}}, 2, CP_EC_BAD_VALUE, "stats.1.hist.16"},
      {"count 0 with a run", {TU(16), TU(5)}, 2, CP_EC_BAD_VALUE, "stats.1.count"},
  };
  for (size_t c = 0; c < sizeof runs / sizeof runs[0]; c++) {
    memcpy(bad, good, sizeof bad);
    bad[10] = (tv){.t = 'a', .items = runs[c].items, .n = runs[c].n};
    if (strcmp(runs[c].what, "count 0 with a run") == 0) {
      bad[5] = TU(0), bad[6] = TF(0.0), bad[7] = TF(0.0);
    }
    cp_error_code k = decode_rows(&sb, good, bad, 12, NULL, &err, NULL);
    CHECK(k == runs[c].kind && strcmp(err.field, runs[c].field) == 0,
          "run %s: %s at '%s' (%s), want %s at '%s'", runs[c].what, cp_error_code_name(k),
          err.field, err.message, cp_error_code_name(runs[c].kind), runs[c].field);
  }
  /* Longer than 1 + HIST_BUCKETS: limit, whatever the values. */
  tv longrun[50];
  for (int i = 0; i < 50; i++) longrun[i] = TU(0);
  memcpy(bad, good, sizeof bad);
  bad[10] = (tv){.t = 'a', .items = longrun, .n = 50};
  CHECK_INT_EQ(decode_rows(&sb, good, bad, 12, NULL, &err, NULL), CP_EC_LIMIT);
  CHECK(strcmp(err.field, "stats.1.hist") == 0, "too long a run at '%s'", err.field);
  /* The map form's 48 dense buckets are no run: read as [first, 47 counts] they pass the end. */
  for (int i = 0; i < 48; i++) longrun[i] = TU(5);
  bad[10] = (tv){.t = 'a', .items = longrun, .n = 48};
  CHECK_INT_EQ(decode_rows(&sb, good, bad, 12, NULL, &err, NULL), CP_EC_BAD_VALUE);
  msgpack_sbuffer_destroy(&sb);
}

/* A typical report: 100 stats of mixed sizes, each with 3-5 neighbouring non-zero buckets. */
static void typical_snapshot(cp_msg* m, cp_msg_type type) {
  uint64_t seed = 0xabcdef12345ull;
  cp_msg_init(m, type);
  m->u.measurements.comm = 0x0123456789abcdefull;
  m->u.measurements.calls = 1234567;
  m->u.measurements.dropped = 0;
  m->u.measurements.n_stats = 100;
  m->u.measurements.stats = calloc(100, sizeof(cp_wire_stat));
  for (int i = 0; i < 100; i++) {
    cp_wire_stat* s = &m->u.measurements.stats[i];
    s->coll = i % CP_NUM_COLLS;
    s->n_bytes = 1ull << (10 + (i / 5) % 21);
    s->algo = (int)(rng_next(&seed) % 3);
    s->proto = (int)(rng_next(&seed) % 3);
    s->n_channels = 1 + (int)(rng_next(&seed) % 32);
    const int lo = 12 + (int)(rng_next(&seed) % 12), width = 3 + (int)(rng_next(&seed) % 3);
    uint64_t count = 0;
    for (int b = lo; b < lo + width; b++) {
      s->hist[b] = 1 + (uint32_t)(rng_next(&seed) % 3000);
      count += s->hist[b];
    }
    s->count = count;
    s->min_ns = 1ull << lo;
    s->max_ns = (2ull << (lo + width - 1)) - 1;
    const double mean = (double)(s->min_ns + s->max_ns) / 2.0;
    s->sum_ns = mean * (double)count;
    s->sum_sq_ns = mean * mean * (double)count * 1.1;
    s->untimed = rng_next(&seed) % 2;
  }
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double decode_us(const cp_buf* b, int iters) {
  cp_msg d;
  cp_decode_error err;
  uint64_t t0 = now_ns();
  for (int i = 0; i < iters; i++) {
    if (cp_msg_decode(b->data, b->len, &d, &err) != CP_OK) return -1.0;
    cp_msg_free(&d);
  }
  return (double)(now_ns() - t0) / 1e3 / iters;
}

static void test_packed_size(void) {
  cp_msg mm, mp;
  cp_decode_error err;
  typical_snapshot(&mm, CP_MSG_MEASUREMENTS);
  typical_snapshot(&mp, CP_MSG_MEASUREMENTS_PACKED);
  cp_buf bm, bp;
  cp_buf_init(&bm, 0);
  cp_buf_init(&bp, 0);
  CHECK(cp_msg_encode(&mm, &bm, &err) == CP_OK, "map: %s", err.message);
  CHECK(cp_msg_encode(&mp, &bp, &err) == CP_OK, "packed: %s", err.message);
  CHECK(bp.len * 100 <= bm.len * 40, "packed %zu bytes is at most 40%% of map %zu bytes", bp.len,
        bm.len);
  /* Printed, never asserted: timings depend on the machine and the sanitizers. */
  const int iters = 300;
  decode_us(&bm, 20);
  decode_us(&bp, 20);
  const double tm = decode_us(&bm, iters), tp = decode_us(&bp, iters);
  printf("typical 100-stat report: map %zu bytes, packed %zu bytes (%.1f%%); decode %.1f us map, "
         "%.1f us packed\n", bm.len, bp.len, 100.0 * (double)bp.len / (double)bm.len, tm, tp);
  cp_buf_free(&bm);
  cp_buf_free(&bp);
  cp_msg_free(&mm);
  cp_msg_free(&mp);
}

static void test_names(void) {
  for (int c = CP_EC_NONE + 1; c < CP_EC_COUNT; c++) {
    const char* nm = cp_error_code_name((cp_error_code)c);
    CHECK(nm && cp_error_code_from_name(nm, strlen(nm)) == (cp_error_code)c, "code %d name", c);
  }
  CHECK(cp_error_code_from_name("none", 4) == CP_EC_NONE, "'none' is no wire code");
  CHECK(cp_error_code_from_name("malformedx", 9) == CP_EC_MALFORMED, "length-bounded lookup");
  CHECK(cp_msg_type_name(CP_MSG_NONE) == NULL && cp_msg_type_name(CP_MSG_COUNT) == NULL,
        "type names out of range are NULL");
  CHECK(CP_SEQ_HASH_INIT == 0xcbf29ce484222325ull, "FNV-1a offset basis");
}

int main(void) {
  test_names();
  test_vectors();
  test_roundtrip_and_encoder_checks();
  test_handmade();
  test_hostile();
  test_packed_roundtrip();
  test_packed_rejections();
  test_packed_size();
  TEST_RETURN();
}
