/*
 * Tests of the wire protocol codec (cp_codec.c) against the golden vectors in proto/vectors/
 * (manifest.json says what each file must do), plus hostile inputs built here. Run it under
 * -DCCLPILOT_ASAN_UBSAN=ON to turn "never crashes" into "never touches a wrong byte".
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
                                      "heartbeat", "error", "error_generic"};
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
  TEST_RETURN();
}
