/*
 * Wire protocol codec: see cp_codec.h and proto/PROTOCOL.md.
 *
 * Decoding runs PROTOCOL.md's check order literally:
 *   1. frame size;
 *   2+3. scan_frame(): an allocation-free, non-recursive pass over the raw bytes that proves the
 *        frame is one complete msgpack object of the allowed types (string keys, no duplicates,
 *        valid UTF-8, generic container/string limits) and measures its nesting depth; the depth
 *        verdict is reported only after the whole frame passed stage 2, as the order demands;
 *   then msgpack-c builds the object tree (its zone can only hold what the scan already bounded);
 *   4. top-level shape and tag; 5. version of HELLO / WELCOME; 6. the schema, table-driven:
 *        types, lengths and ranges while parsing, then cp_msg_validate() for the rest.
 * The encoder runs cp_msg_validate() too, so both directions enforce one set of constraints.
 */
#include "cp_codec.h"

#include <math.h>
#include <msgpack.h>
#include <msgpack/unpack_define.h> /* MSGPACK_EMBED_STACK_SIZE */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(CP_HIST_BUCKETS == CP_STATS_BUCKETS, "HIST_BUCKETS must equal CP_STATS_BUCKETS");
_Static_assert(CP_COST_ALGOS == CP_NUM_ALGOS, "COST_ALGOS must equal NCCL's algorithm count");
_Static_assert(CP_COST_PROTOS == CP_NUM_PROTOS, "COST_PROTOS must equal NCCL's protocol count");
_Static_assert(CP_MAX_ARMS == 16, "MAX_ARMS in PROTOCOL.md is 16");
_Static_assert(CP_MAX_CHANNELS == 64, "MAX_CHANNELS in PROTOCOL.md is 64");
_Static_assert(CP_MAX_STATS <= CP_MAX_ARRAY_LEN && CP_MAX_RULES <= CP_MAX_ARRAY_LEN,
               "per-field array limits cannot exceed the generic one");

/* ---- names ------------------------------------------------------------------------------------ */

static const char* const k_code_names[CP_EC_COUNT] = {
    "none",        "malformed",  "limit",     "unknown_type", "missing_field", "extra_field",
    "wrong_type",  "bad_value",  "version",   "unknown_comm", "state",         "internal"};

const char* cp_error_code_name(cp_error_code code) {
  if ((int)code < 0 || code >= CP_EC_COUNT) return NULL;
  return k_code_names[code];
}

cp_error_code cp_error_code_from_name(const char* name, size_t n) {
  if (name == NULL) return CP_EC_NONE;
  for (int c = CP_EC_NONE + 1; c < CP_EC_COUNT; c++) {
    if (strlen(k_code_names[c]) == n && memcmp(k_code_names[c], name, n) == 0)
      return (cp_error_code)c;
  }
  return CP_EC_NONE;
}

static const char* const k_type_names[CP_MSG_COUNT] = {
    NULL,      "HELLO", "WELCOME", "KEY_REPORT", "MEASUREMENTS", "PREPARE",
    "ACK",     "COMMIT", "ABORT",  "HEARTBEAT",  "ERROR", "MEASUREMENTS_PACKED"};

const char* cp_msg_type_name(cp_msg_type type) {
  if ((int)type < 0 || type >= CP_MSG_COUNT) return NULL;
  return k_type_names[type];
}

cp_result cp_str_assign(char* data, uint32_t* len, size_t cap, const char* src, size_t n) {
  if (data == NULL || len == NULL || (src == NULL && n > 0)) return CP_ERR_INVALID;
  if (n > cap) return CP_ERR_LIMIT;
  if (n > 0) memcpy(data, src, n);
  data[n] = '\0';
  *len = (uint32_t)n;
  return CP_OK;
}

uint64_t cp_seq_hash_update(uint64_t h, int coll, uint64_t n_bytes, int num_pipe_ops) {
  /* Signed inputs are taken modulo 2^64, as the protocol (and Python's `& MASK`) does. */
  const uint64_t vals[3] = {(uint64_t)(int64_t)coll, n_bytes, (uint64_t)(int64_t)num_pipe_ops};
  for (int v = 0; v < 3; v++) h = (h ^ vals[v]) * 0x100000001b3ull;
  return h;
}

/* ---- errors ----------------------------------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static void set_err(cp_decode_error* err, cp_error_code kind, const char* field, const char* fmt,
                    ...) {
  if (err == NULL) return;
  err->kind = kind;
  snprintf(err->field, sizeof err->field, "%s", field ? field : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
}

/* Wire text quoted in a log line: bounded and ASCII-printable only (hostile bytes stay inert). */
static void safe_copy(char* dst, size_t cap, const char* src, size_t n) {
  size_t i = 0;
  for (; i < n && i + 1 < cap; i++) {
    unsigned char ch = (unsigned char)src[i];
    dst[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
  }
  dst[i] = '\0';
}

/* ---- UTF-8 ------------------------------------------------------------------------------------ */

/* Strict RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return false;
    }
    if (n - i - 1 < need) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t k = 2; k <= need; k++)
      if ((s[i + k] & 0xc0) != 0x80) return false;
    i += need + 1;
  }
  return true;
}

/* ---- stages 2 and 3: raw scan ------------------------------------------------------------------ */

/* Frames kept while scanning. Deeper than this is far beyond MAX_DEPTH and is reported as `limit`
 * at once (the rest of such a frame is not examined for stage-2 defects; Python's msgpack has the
 * same kind of hard stack bound). */
#define SCAN_STACK 64

typedef struct {
  uint32_t remaining; /* items left; a map of n entries has 2n items */
  uint8_t is_map;
  uint8_t n_keys;
  uint32_t keys[CP_MAX_MAP_LEN]; /* offset of each key's bytes (after its header) */
  uint16_t key_lens[CP_MAX_MAP_LEN];
} scan_frame;

static uint64_t be_read(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

/* Returns CP_OK, or CP_ERR_PARSE with err set. *objects receives the number of msgpack objects. */
static cp_result scan_frame_bytes(const uint8_t* p, size_t len, size_t* objects,
                                  cp_decode_error* err) {
  scan_frame stack[SCAN_STACK];
  int sp = 0;
  int max_depth = 0;
  size_t pos = 0, n_obj = 0, start = 0;
  if (len == 0) {
    set_err(err, CP_EC_MALFORMED, "", "empty frame; a message is one msgpack map");
    return CP_ERR_PARSE;
  }
  for (;;) {
    if (pos >= len) {
      set_err(err, CP_EC_MALFORMED, "", "frame ends inside a msgpack object (truncated at byte %zu)",
              pos);
      return CP_ERR_PARSE;
    }
    start = pos;
    const uint8_t b = p[pos++];
    n_obj++;
    const bool is_key = sp > 0 && stack[sp - 1].is_map && stack[sp - 1].remaining % 2 == 0;
    int hdr = 0;           /* extra header bytes (length or scalar payload) */
    int kind = 0;          /* 0 scalar, 1 str, 2 array, 3 map */
    uint64_t n = 0;        /* length (str/array/map) */
    size_t payload = 0;    /* scalar payload bytes after the header */
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
      kind = 0;
    } else if (b >= 0x80 && b <= 0x8f) {
      kind = 3, n = b & 0x0fu;
    } else if (b >= 0x90 && b <= 0x9f) {
      kind = 2, n = b & 0x0fu;
    } else if (b >= 0xa0 && b <= 0xbf) {
      kind = 1, n = b & 0x1fu;
    } else {
      switch (b) {
        case 0xca: payload = 4; break;
        case 0xcb: payload = 8; break;
        case 0xcc: case 0xd0: payload = 1; break;
        case 0xcd: case 0xd1: payload = 2; break;
        case 0xce: case 0xd2: payload = 4; break;
        case 0xcf: case 0xd3: payload = 8; break;
        case 0xd9: kind = 1, hdr = 1; break;
        case 0xda: kind = 1, hdr = 2; break;
        case 0xdb: kind = 1, hdr = 4; break;
        case 0xdc: kind = 2, hdr = 2; break;
        case 0xdd: kind = 2, hdr = 4; break;
        case 0xde: kind = 3, hdr = 2; break;
        case 0xdf: kind = 3, hdr = 4; break;
        case 0xc1:
          set_err(err, CP_EC_MALFORMED, "", "byte 0x%02x at offset %zu is reserved in msgpack", b,
                  start);
          return CP_ERR_PARSE;
        case 0xc4: case 0xc5: case 0xc6:
          set_err(err, CP_EC_MALFORMED, "",
                  "msgpack bin value at offset %zu; bin is not part of the protocol, text fields "
                  "are UTF-8 strings", start);
          return CP_ERR_PARSE;
        default: /* 0xc7-0xc9, 0xd4-0xd8: ext */
          set_err(err, CP_EC_MALFORMED, "",
                  "msgpack ext value at offset %zu; ext types are not part of the protocol", start);
          return CP_ERR_PARSE;
      }
    }
    if (is_key && kind != 1) {
      set_err(err, CP_EC_MALFORMED, "",
              "map key at offset %zu is not a string; every map key is a field name", start);
      return CP_ERR_PARSE;
    }
    if (hdr > 0) {
      if (len - pos < (size_t)hdr) goto truncated;
      n = be_read(p + pos, hdr);
      pos += (size_t)hdr;
    }
    if (kind == 0) {
      if (len - pos < payload) goto truncated;
      pos += payload;
    } else if (kind == 1) {
      if (n > CP_MAX_STR_BYTES) {
        set_err(err, CP_EC_LIMIT, "", "string of %llu bytes at offset %zu exceeds MAX_STR_BYTES=%u",
                (unsigned long long)n, start, CP_MAX_STR_BYTES);
        return CP_ERR_PARSE;
      }
      if (len - pos < n) goto truncated;
      if (!utf8_valid(p + pos, (size_t)n)) {
        set_err(err, CP_EC_MALFORMED, "", "string at offset %zu is not valid UTF-8", start);
        return CP_ERR_PARSE;
      }
      if (is_key) {
        scan_frame* f = &stack[sp - 1];
        for (int k = 0; k < f->n_keys; k++) {
          if (f->key_lens[k] == n && memcmp(p + f->keys[k], p + pos, (size_t)n) == 0) {
            char name[48];
            safe_copy(name, sizeof name, (const char*)p + pos, (size_t)n);
            set_err(err, CP_EC_MALFORMED, name, "map key '%s' appears twice; send each field once",
                    name);
            return CP_ERR_PARSE;
          }
        }
        /* n_keys < MAX_MAP_LEN: a map holds at most MAX_MAP_LEN keys (checked at its header). */
        f->keys[f->n_keys] = (uint32_t)pos;
        f->key_lens[f->n_keys] = (uint16_t)n;
        f->n_keys++;
      }
      pos += (size_t)n;
    } else {
      const uint64_t limit = kind == 2 ? CP_MAX_ARRAY_LEN : CP_MAX_MAP_LEN;
      if (n > limit) {
        set_err(err, CP_EC_LIMIT, "", "%s of %llu entries at offset %zu exceeds %s=%llu",
                kind == 2 ? "array" : "map", (unsigned long long)n, start,
                kind == 2 ? "MAX_ARRAY_LEN" : "MAX_MAP_LEN", (unsigned long long)limit);
        return CP_ERR_PARSE;
      }
      const int depth = sp + 1;
      if (depth > max_depth) max_depth = depth;
      if (n > 0) {
        if (sp == SCAN_STACK) {
          set_err(err, CP_EC_LIMIT, "", "nesting deeper than %d exceeds MAX_DEPTH=%d", SCAN_STACK,
                  CP_MAX_DEPTH);
          return CP_ERR_PARSE;
        }
        scan_frame* f = &stack[sp++];
        f->remaining = (uint32_t)(kind == 3 ? 2 * n : n);
        f->is_map = kind == 3;
        f->n_keys = 0;
        continue; /* the container completes when its last item does */
      }
    }
    /* One value is complete: close every container it completes. */
    while (sp > 0) {
      scan_frame* f = &stack[sp - 1];
      if (--f->remaining > 0) break;
      sp--;
    }
    if (sp == 0) break;
  }
  if (pos != len) {
    set_err(err, CP_EC_MALFORMED, "",
            "%zu trailing bytes after the message; a frame holds exactly one msgpack object",
            len - pos);
    return CP_ERR_PARSE;
  }
  if (max_depth > CP_MAX_DEPTH) {
    set_err(err, CP_EC_LIMIT, "", "nesting depth %d exceeds MAX_DEPTH=%d", max_depth, CP_MAX_DEPTH);
    return CP_ERR_PARSE;
  }
  *objects = n_obj;
  return CP_OK;
truncated:
  set_err(err, CP_EC_MALFORMED, "", "frame ends inside the msgpack object starting at byte %zu",
          start);
  return CP_ERR_PARSE;
}

/* ---- schemas ---------------------------------------------------------------------------------- */

typedef enum {
  F_TAG,      /* "t" */
  F_UINT,     /* unsigned integer, stored in `size` bytes */
  F_INT,      /* signed integer, stored in `size` bytes */
  F_F64,
  F_BOOL,
  F_STR,      /* cp_str_* at off: uint32 len then data */
  F_ERRCODE,  /* cp_error_code as its wire name */
  F_VERSION,  /* cp_proto_version as [major, minor] */
  F_FEATURES, /* n_features (uint32) at aux, cp_str_feature[] at off */
  F_COST,     /* double[7][3] */
  F_HIST,     /* uint32[48] */
  F_STATS,    /* n_stats at aux, cp_wire_stat* at off */
  F_PSTATS,   /* as F_STATS, each Stat a PackedStat: k_stat_f's values by position, hist a run */
  F_RULES,    /* n_rules at aux, cp_rule* at off */
  F_ARMS      /* n_arms (int) at aux, cp_arm[] at off */
} field_kind;

typedef struct {
  const char* name;
  field_kind kind;
  uint8_t size;     /* F_UINT / F_INT storage bytes */
  bool nullable;    /* has_off holds a bool */
  size_t off;
  size_t has_off;
  size_t aux;       /* count field of arrays */
  int64_t imin, imax;
  uint64_t umin, umax;
  uint32_t smin, smax; /* F_STR length bounds; smax = capacity */
  bool nonneg;      /* F_F64 */
} field_desc;

typedef struct schema schema;
/* A field path, built on the stack while descending and rendered to text only for an error:
 * formatting every path eagerly cost ~90% of decoding a large MEASUREMENTS or PREPARE. */
typedef struct path_seg {
  const struct path_seg* up;  /* NULL at the message's top level */
  const char* name;           /* a field name, or NULL for an array index */
  size_t index;
} path_seg;

typedef cp_result (*cross_fn)(const void* s, const path_seg* path, cp_decode_error* err);
struct schema {
  const char* name;
  const field_desc* fields;
  int n_fields;
  cross_fn cross; /* cross-field rules, after every field is known; may be NULL */
};

#define U(st, f, sz, lo, hi) \
  {.name = #f, .kind = F_UINT, .size = (sz), .off = offsetof(st, f), .umin = (lo), .umax = (hi)}
#define I(st, f, sz, lo, hi) \
  {.name = #f, .kind = F_INT, .size = (sz), .off = offsetof(st, f), .imin = (lo), .imax = (hi)}
#define I_NIL(st, f, sz, lo, hi)                                                          \
  {.name = #f, .kind = F_INT, .size = (sz), .off = offsetof(st, f), .imin = (lo),         \
   .imax = (hi), .nullable = true, .has_off = offsetof(st, has_##f)}
#define U_NIL(st, f, sz, lo, hi)                                                          \
  {.name = #f, .kind = F_UINT, .size = (sz), .off = offsetof(st, f), .umin = (lo),        \
   .umax = (hi), .nullable = true, .has_off = offsetof(st, has_##f)}
#define S(st, f, lo) \
  {.name = #f, .kind = F_STR, .off = offsetof(st, f), .smin = (lo), \
   .smax = (uint32_t)(sizeof(((st*)0)->f.data) - 1)}
#define TAG {.name = "t", .kind = F_TAG}
#define U64_ALL(st, f) U(st, f, 8, 0, UINT64_MAX)

#define I32MAX ((int64_t)INT32_MAX)

static cp_result cross_hello(const void* s, const path_seg* path, cp_decode_error* err);
static cp_result cross_stat(const void* s, const path_seg* path, cp_decode_error* err);
static cp_result cross_rule(const void* s, const path_seg* path, cp_decode_error* err);
static cp_result cross_ack(const void* s, const path_seg* path, cp_decode_error* err);

static const field_desc k_hello_f[] = {
    TAG,
    {.name = "version", .kind = F_VERSION, .off = offsetof(cp_msg_hello, version)},
    {.name = "features", .kind = F_FEATURES, .off = offsetof(cp_msg_hello, features),
     .aux = offsetof(cp_msg_hello, n_features)},
    S(cp_msg_hello, job, 1),
    U64_ALL(cp_msg_hello, comm),
    I(cp_msg_hello, n_ranks, 4, 1, I32MAX),
    I(cp_msg_hello, n_nodes, 4, 1, I32MAX),
    I_NIL(cp_msg_hello, rank, 4, 0, I32MAX),
    S(cp_msg_hello, host, 1),
    U(cp_msg_hello, pid, 4, 1, UINT32_MAX),
    U(cp_msg_hello, nccl_version, 4, 0, UINT32_MAX),
    U_NIL(cp_msg_hello, tuner_abi, 1, 1, 255),
    U_NIL(cp_msg_hello, profiler_abi, 1, 1, 255),
};
static const field_desc k_welcome_f[] = {
    TAG,
    {.name = "version", .kind = F_VERSION, .off = offsetof(cp_msg_welcome, version)},
    {.name = "features", .kind = F_FEATURES, .off = offsetof(cp_msg_welcome, features),
     .aux = offsetof(cp_msg_welcome, n_features)},
    U64_ALL(cp_msg_welcome, comm),
    U64_ALL(cp_msg_welcome, session),
    I(cp_msg_welcome, heartbeat_ms, 4, 1, CP_MAX_INTERVAL_MS),
    I(cp_msg_welcome, report_ms, 4, 1, CP_MAX_INTERVAL_MS),
};
static const field_desc k_key_report_f[] = {
    TAG,
    U64_ALL(cp_msg_key_report, comm),
    I(cp_msg_key_report, coll, 4, 0, CP_NUM_COLLS - 1),
    U64_ALL(cp_msg_key_report, n_bytes),
    I(cp_msg_key_report, num_pipe_ops, 4, 1, I32MAX),
    U64_ALL(cp_msg_key_report, call),
    {.name = "cost", .kind = F_COST, .off = offsetof(cp_msg_key_report, cost)},
};
/* The Stat table's order, which is also PackedStat's element order (PROTOCOL.md "PackedStat").
 * A PackedStat is decoded and encoded through k_stat_f by position, so each descriptor is placed
 * at the index named after its own field (STAT_AT pastes the field name into the index): the
 * descriptor of field f can only sit at position PS_f, and this list is the one place where the
 * order is written. */
#define PACKED_STAT_ORDER(X) \
  X(coll) X(n_bytes) X(algo) X(proto) X(n_channels) X(count) X(sum_ns) X(sum_sq_ns) X(min_ns) \
  X(max_ns) X(hist) X(untimed)
enum {
#define PS_ENUM(f) PS_##f,
  PACKED_STAT_ORDER(PS_ENUM)
#undef PS_ENUM
  PS_N
};
_Static_assert(PS_N == 12 && PS_coll == 0 && PS_hist == 10 && PS_untimed == 11,
               "PackedStat is the 12 Stat fields in table order, hist at index 10");
#define STAT_AT(f, ...) [PS_##f] = __VA_ARGS__
static const field_desc k_stat_f[PS_N] = {
    STAT_AT(coll, I(cp_wire_stat, coll, sizeof(int), 0, CP_NUM_COLLS - 1)),
    STAT_AT(n_bytes, U64_ALL(cp_wire_stat, n_bytes)),
    STAT_AT(algo, I(cp_wire_stat, algo, sizeof(int), 0, CP_NUM_ALGOS - 1)),
    STAT_AT(proto, I(cp_wire_stat, proto, sizeof(int), 0, CP_NUM_PROTOS - 1)),
    STAT_AT(n_channels, I(cp_wire_stat, n_channels, sizeof(int), 0, CP_MAX_CHANNELS)),
    STAT_AT(count, U64_ALL(cp_wire_stat, count)),
    STAT_AT(sum_ns, {.name = "sum_ns", .kind = F_F64, .off = offsetof(cp_wire_stat, sum_ns),
                     .nonneg = true}),
    STAT_AT(sum_sq_ns, {.name = "sum_sq_ns", .kind = F_F64,
                        .off = offsetof(cp_wire_stat, sum_sq_ns), .nonneg = true}),
    STAT_AT(min_ns, U64_ALL(cp_wire_stat, min_ns)),
    STAT_AT(max_ns, U64_ALL(cp_wire_stat, max_ns)),
    STAT_AT(hist, {.name = "hist", .kind = F_HIST, .off = offsetof(cp_wire_stat, hist)}),
    STAT_AT(untimed, U64_ALL(cp_wire_stat, untimed)),
};
#undef STAT_AT
static const field_desc k_measurements_f[] = {
    TAG,
    U64_ALL(cp_msg_measurements, comm),
    U64_ALL(cp_msg_measurements, calls),
    U64_ALL(cp_msg_measurements, dropped),
    {.name = "stats", .kind = F_STATS, .off = offsetof(cp_msg_measurements, stats),
     .aux = offsetof(cp_msg_measurements, n_stats)},
};
static const field_desc k_measurements_packed_f[] = {
    TAG,
    U64_ALL(cp_msg_measurements, comm),
    U64_ALL(cp_msg_measurements, calls),
    U64_ALL(cp_msg_measurements, dropped),
    {.name = "stats", .kind = F_PSTATS, .off = offsetof(cp_msg_measurements, stats),
     .aux = offsetof(cp_msg_measurements, n_stats)},
};
static const field_desc k_arm_f[] = {
    I(cp_arm, algo, 1, -1, CP_NUM_ALGOS - 1),
    I(cp_arm, proto, 1, -1, CP_NUM_PROTOS - 1),
    U(cp_arm, n_channels, 1, 0, CP_MAX_CHANNELS),
    U(cp_arm, chunk_size, 4, 0, UINT32_MAX),
};
static const field_desc k_rule_f[] = {
    I(cp_rule, coll, sizeof(int), 0, CP_NUM_COLLS - 1),
    U64_ALL(cp_rule, min_bytes),
    U64_ALL(cp_rule, max_bytes),
    I(cp_rule, n_nodes, sizeof(int), -1, I32MAX),
    I(cp_rule, n_ranks, sizeof(int), -1, I32MAX),
    I(cp_rule, num_pipe_ops, sizeof(int), -1, I32MAX),
    {.name = "arms", .kind = F_ARMS, .off = offsetof(cp_rule, arms),
     .aux = offsetof(cp_rule, n_arms)},
};
static const field_desc k_prepare_f[] = {
    TAG,
    U64_ALL(cp_msg_prepare, comm),
    U(cp_msg_prepare, plan, 8, 1, UINT64_MAX),
    U64_ALL(cp_msg_prepare, activate_at),
    {.name = "rules", .kind = F_RULES, .off = offsetof(cp_msg_prepare, rules),
     .aux = offsetof(cp_msg_prepare, n_rules)},
};
static const field_desc k_ack_f[] = {
    TAG,
    U64_ALL(cp_msg_ack, comm),
    U(cp_msg_ack, plan, 8, 1, UINT64_MAX),
    {.name = "ok", .kind = F_BOOL, .off = offsetof(cp_msg_ack, ok)},
    U64_ALL(cp_msg_ack, calls),
    U64_ALL(cp_msg_ack, seq_hash),
    S(cp_msg_ack, reason, 0),
};
static const field_desc k_commit_f[] = {
    TAG,
    U64_ALL(cp_msg_commit, comm),
    U(cp_msg_commit, plan, 8, 1, UINT64_MAX),
    U64_ALL(cp_msg_commit, activate_at),
};
static const field_desc k_abort_f[] = {
    TAG,
    U64_ALL(cp_msg_abort, comm),
    U(cp_msg_abort, plan, 8, 1, UINT64_MAX),
    S(cp_msg_abort, reason, 1),
};
static const field_desc k_heartbeat_f[] = {
    TAG,
    U64_ALL(cp_msg_heartbeat, seq),
    U64_ALL(cp_msg_heartbeat, time_ns),
};
static const field_desc k_error_f[] = {
    TAG,
    {.name = "code", .kind = F_ERRCODE, .off = offsetof(cp_msg_error, code)},
    S(cp_msg_error, message, 1),
    {.name = "ref", .kind = F_STR, .off = offsetof(cp_msg_error, ref), .smin = 0,
     .smax = CP_MAX_REF_BYTES, .nullable = true, .has_off = offsetof(cp_msg_error, has_ref)},
    U_NIL(cp_msg_error, comm, 8, 0, UINT64_MAX),
};

#define SCHEMA(nm, arr, fn) {nm, arr, (int)(sizeof(arr) / sizeof(arr[0])), fn}
static const schema k_stat_schema = SCHEMA("Stat", k_stat_f, cross_stat);
static const schema k_arm_schema = SCHEMA("Arm", k_arm_f, NULL);
static const schema k_rule_schema = SCHEMA("Rule", k_rule_f, cross_rule);
static const schema k_msg_schemas[CP_MSG_COUNT] = {
    {NULL, NULL, 0, NULL},
    SCHEMA("HELLO", k_hello_f, cross_hello),
    SCHEMA("WELCOME", k_welcome_f, NULL),
    SCHEMA("KEY_REPORT", k_key_report_f, NULL),
    SCHEMA("MEASUREMENTS", k_measurements_f, NULL),
    SCHEMA("PREPARE", k_prepare_f, NULL),
    SCHEMA("ACK", k_ack_f, cross_ack),
    SCHEMA("COMMIT", k_commit_f, NULL),
    SCHEMA("ABORT", k_abort_f, NULL),
    SCHEMA("HEARTBEAT", k_heartbeat_f, NULL),
    SCHEMA("ERROR", k_error_f, NULL),
    SCHEMA("MEASUREMENTS_PACKED", k_measurements_packed_f, NULL),
};

/* ---- typed access by offset ------------------------------------------------------------------- */

static void store_u(void* p, int size, uint64_t v) {
  switch (size) {
    case 1: { uint8_t x = (uint8_t)v; memcpy(p, &x, 1); break; }
    case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    default: memcpy(p, &v, 8); break;
  }
}
static uint64_t load_u(const void* p, int size) {
  switch (size) {
    case 1: { uint8_t x; memcpy(&x, p, 1); return x; }
    case 2: { uint16_t x; memcpy(&x, p, 2); return x; }
    case 4: { uint32_t x; memcpy(&x, p, 4); return x; }
    default: { uint64_t x; memcpy(&x, p, 8); return x; }
  }
}
static void store_i(void* p, int size, int64_t v) {
  switch (size) {
    case 1: { int8_t x = (int8_t)v; memcpy(p, &x, 1); break; }
    case 2: { int16_t x = (int16_t)v; memcpy(p, &x, 2); break; }
    case 4: { int32_t x = (int32_t)v; memcpy(p, &x, 4); break; }
    default: memcpy(p, &v, 8); break;
  }
}
static int64_t load_i(const void* p, int size) {
  switch (size) {
    case 1: { int8_t x; memcpy(&x, p, 1); return x; }
    case 2: { int16_t x; memcpy(&x, p, 2); return x; }
    case 4: { int32_t x; memcpy(&x, p, 4); return x; }
    default: { int64_t x; memcpy(&x, p, 8); return x; }
  }
}

/* Every cp_str_* is {uint32_t len; char data[cap + 1];}: data sits at the same offset. */
typedef CP_STR_T(1) str_probe;
#define STR_LEN(base, off) ((uint32_t*)((char*)(base) + (off) + offsetof(str_probe, len)))
#define STR_DATA(base, off) ((char*)(base) + (off) + offsetof(str_probe, data))

/* Renders a path as PROTOCOL.md writes it ("rules.3.arms.0.algo") into out[0..cap), cut (never
 * overflowed) when deeper than cap allows, as cp_decode_error.field is bounded. Returns the
 * rendered length. Recursion depth is bounded by the schema's nesting, not by the input. */
static size_t path_put(const path_seg* p, char* out, size_t cap) {
  if (p == NULL) return 0;
  size_t n = path_put(p->up, out, cap);
  char num[24];
  const char* text = p->name;
  if (text == NULL) {
    snprintf(num, sizeof num, "%zu", p->index);
    text = num;
  }
  if (n > 0 && n + 1 < cap) out[n++] = '.';
  for (const char* c = text; *c != '\0' && n + 1 < cap; c++) out[n++] = *c;
  out[n] = '\0';
  return n;
}

#define PATH_CAP 64
static const char* path_text(const path_seg* p, char* out) {
  out[0] = '\0';
  path_put(p, out, PATH_CAP);
  return out;
}
/* The rendered path, valid until the end of the enclosing block (a compound literal). */
#define WHERE(p) path_text((p), (char[PATH_CAP]){0})
#define FIELD_SEG(up_, name_) ((path_seg){.up = (up_), .name = (name_), .index = 0})
#define INDEX_SEG(up_, i_) ((path_seg){.up = (up_), .name = NULL, .index = (size_t)(i_)})

/* ---- validation (decoder after parsing, encoder before packing) -------------------------------- */

static bool feature_name_ok(const char* s, uint32_t n) {
  if (n == 0) return false;
  for (uint32_t i = 0; i < n; i++) {
    char c = s[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-'))) return false;
  }
  return true;
}

static cp_result validate_struct(const schema* sc, const void* s, const path_seg* path,
                                 cp_decode_error* err);

static cp_result validate_field(const field_desc* f, const void* s, const path_seg* path,
                                cp_decode_error* err) {
  const path_seg here = FIELD_SEG(path, f->name);
  const char* base = (const char*)s;
  if (f->nullable && !*(const bool*)(base + f->has_off)) return CP_OK;
  switch (f->kind) {
    case F_TAG:
    case F_BOOL:
    case F_VERSION:
    case F_HIST:
      return CP_OK; /* every stored value is valid */
    case F_UINT: {
      uint64_t v = load_u(base + f->off, f->size);
      if (v < f->umin || v > f->umax) {
        set_err(err, CP_EC_BAD_VALUE, WHERE(&here), "%s = %llu is outside %llu..%llu", WHERE(&here),
                (unsigned long long)v, (unsigned long long)f->umin, (unsigned long long)f->umax);
        return CP_ERR_INVALID;
      }
      return CP_OK;
    }
    case F_INT: {
      int64_t v = load_i(base + f->off, f->size);
      if (v < f->imin || v > f->imax) {
        set_err(err, CP_EC_BAD_VALUE, WHERE(&here), "%s = %lld is outside %lld..%lld", WHERE(&here), (long long)v,
                (long long)f->imin, (long long)f->imax);
        return CP_ERR_INVALID;
      }
      return CP_OK;
    }
    case F_F64: {
      double v;
      memcpy(&v, base + f->off, sizeof v);
      if (!isfinite(v) || (f->nonneg && v < 0.0)) {
        set_err(err, CP_EC_BAD_VALUE, WHERE(&here), "%s = %g; it must be a finite number%s", WHERE(&here), v,
                f->nonneg ? " >= 0" : "");
        return CP_ERR_INVALID;
      }
      return CP_OK;
    }
    case F_STR: {
      uint32_t n = *STR_LEN(s, f->off);
      if (n > f->smax) {
        set_err(err, CP_EC_LIMIT, WHERE(&here), "%s is %u bytes, above its maximum of %u", WHERE(&here), n,
                f->smax);
        return CP_ERR_INVALID;
      }
      if (n < f->smin) {
        set_err(err, CP_EC_BAD_VALUE, WHERE(&here), "%s must not be empty", WHERE(&here));
        return CP_ERR_INVALID;
      }
      if (!utf8_valid((const uint8_t*)STR_DATA(s, f->off), n)) {
        set_err(err, CP_EC_BAD_VALUE, WHERE(&here), "%s is not valid UTF-8", WHERE(&here));
        return CP_ERR_INVALID;
      }
      return CP_OK;
    }
    case F_ERRCODE: {
      cp_error_code c;
      memcpy(&c, base + f->off, sizeof c);
      if ((int)c <= CP_EC_NONE || c >= CP_EC_COUNT) {
        set_err(err, CP_EC_BAD_VALUE, WHERE(&here), "%s %d is not an error code", WHERE(&here), (int)c);
        return CP_ERR_INVALID;
      }
      return CP_OK;
    }
    case F_FEATURES: {
      uint32_t n = *(const uint32_t*)(base + f->aux);
      const cp_str_feature* fs = (const cp_str_feature*)(base + f->off);
      if (n > CP_MAX_FEATURES) {
        set_err(err, CP_EC_LIMIT, WHERE(&here), "%u features exceed MAX_FEATURES=%u", n, CP_MAX_FEATURES);
        return CP_ERR_INVALID;
      }
      for (uint32_t i = 0; i < n; i++) {
        const path_seg at = INDEX_SEG(&here, i);
        if (fs[i].len > CP_MAX_FEATURE_BYTES) {
          set_err(err, CP_EC_LIMIT, WHERE(&at), "feature name of %u bytes exceeds MAX_FEATURE_BYTES=%u",
                  fs[i].len, CP_MAX_FEATURE_BYTES);
          return CP_ERR_INVALID;
        }
        if (!feature_name_ok(fs[i].data, fs[i].len)) {
          char name[48];
          safe_copy(name, sizeof name, fs[i].data, fs[i].len);
          set_err(err, CP_EC_BAD_VALUE, WHERE(&at), "feature '%s' does not match [a-z0-9][a-z0-9_.-]*",
                  name);
          return CP_ERR_INVALID;
        }
        for (uint32_t j = 0; j < i; j++) {
          if (fs[j].len == fs[i].len && memcmp(fs[j].data, fs[i].data, fs[i].len) == 0) {
            char name[48];
            safe_copy(name, sizeof name, fs[i].data, fs[i].len);
            set_err(err, CP_EC_BAD_VALUE, WHERE(&at), "feature '%s' is listed twice", name);
            return CP_ERR_INVALID;
          }
        }
      }
      return CP_OK;
    }
    case F_COST: {
      double cost[CP_COST_ALGOS][CP_COST_PROTOS];
      memcpy(cost, base + f->off, sizeof cost);
      for (int a = 0; a < CP_COST_ALGOS; a++) {
        for (int p = 0; p < CP_COST_PROTOS; p++) {
          double v = cost[a][p];
          if (!isfinite(v) || (v < 0.0 && v != -1.0)) {
            const path_seg row = INDEX_SEG(&here, a), at = INDEX_SEG(&row, p);
            set_err(err, CP_EC_BAD_VALUE, WHERE(&at),
                    "cost[%d][%d] = %g: a cost is finite and >= 0, or exactly -1.0 for a "
                    "combination NCCL ignores", a, p, v);
            return CP_ERR_INVALID;
          }
        }
      }
      return CP_OK;
    }
    case F_STATS:
    case F_PSTATS: /* the wire form differs, the constraints do not */
    case F_RULES: {
      const bool stats = f->kind != F_RULES;
      uint32_t n = *(const uint32_t*)(base + f->aux);
      const void* arr;
      memcpy(&arr, base + f->off, sizeof arr);
      const uint32_t max = stats ? CP_MAX_STATS : CP_MAX_RULES;
      if (n > max) {
        set_err(err, CP_EC_LIMIT, WHERE(&here), "%u %s exceed %s=%u", n, f->name,
                stats ? "MAX_STATS" : "MAX_RULES", max);
        return CP_ERR_INVALID;
      }
      if (n > 0 && arr == NULL) {
        set_err(err, CP_EC_BAD_VALUE, WHERE(&here), "%s counts %u entries but the array is NULL", WHERE(&here),
                n);
        return CP_ERR_INVALID;
      }
      for (uint32_t i = 0; i < n; i++) {
        const path_seg at = INDEX_SEG(&here, i);
        const void* el = stats ? (const void*)((const cp_wire_stat*)arr + i)
                               : (const void*)((const cp_rule*)arr + i);
        CP_CHECK(validate_struct(stats ? &k_stat_schema : &k_rule_schema, el, &at, err));
      }
      return CP_OK;
    }
    case F_ARMS: {
      int n;
      memcpy(&n, base + f->aux, sizeof n);
      if (n > CP_MAX_ARMS) {
        set_err(err, CP_EC_LIMIT, WHERE(&here), "%d arms exceed MAX_ARMS=%d", n, CP_MAX_ARMS);
        return CP_ERR_INVALID;
      }
      if (n < 1) {
        set_err(err, CP_EC_BAD_VALUE, WHERE(&here), "a rule needs 1..%d arms, has %d", CP_MAX_ARMS, n);
        return CP_ERR_INVALID;
      }
      const cp_arm* arms = (const cp_arm*)(base + f->off);
      for (int i = 0; i < n; i++) {
        const path_seg at = INDEX_SEG(&here, i);
        CP_CHECK(validate_struct(&k_arm_schema, &arms[i], &at, err));
      }
      return CP_OK;
    }
  }
  return CP_ERR_INTERNAL;
}

static cp_result validate_struct(const schema* sc, const void* s, const path_seg* path,
                                 cp_decode_error* err) {
  for (int i = 0; i < sc->n_fields; i++) CP_CHECK(validate_field(&sc->fields[i], s, path, err));
  return sc->cross ? sc->cross(s, path, err) : CP_OK;
}

static cp_result cross_hello(const void* s, const path_seg* path, cp_decode_error* err) {
  const cp_msg_hello* h = s;
  if (h->n_nodes > h->n_ranks) {
    set_err(err, CP_EC_BAD_VALUE, "n_nodes", "n_nodes (%d) exceeds n_ranks (%d)", h->n_nodes,
            h->n_ranks);
    return CP_ERR_INVALID;
  }
  if (h->has_rank && h->rank >= h->n_ranks) {
    set_err(err, CP_EC_BAD_VALUE, "rank", "rank (%d) must be below n_ranks (%d)", h->rank,
            h->n_ranks);
    return CP_ERR_INVALID;
  }
  return CP_OK;
}

static cp_result cross_stat(const void* s, const path_seg* path, cp_decode_error* err) {
  const cp_wire_stat* st = s;
  if (st->count > 0 && st->min_ns > st->max_ns) {
    const path_seg at = FIELD_SEG(path, "min_ns");
    set_err(err, CP_EC_BAD_VALUE, WHERE(&at), "min_ns (%llu) exceeds max_ns (%llu)",
            (unsigned long long)st->min_ns, (unsigned long long)st->max_ns);
    return CP_ERR_INVALID;
  }
  if (st->count == 0) {
    bool empty = st->sum_ns == 0.0 && st->sum_sq_ns == 0.0;
    for (int b = 0; b < CP_HIST_BUCKETS && empty; b++) empty = st->hist[b] == 0;
    if (!empty) {
      const path_seg at = FIELD_SEG(path, "count");
      set_err(err, CP_EC_BAD_VALUE, WHERE(&at), "count is 0 but sums or histogram are not empty");
      return CP_ERR_INVALID;
    }
  }
  return CP_OK;
}

static cp_result cross_rule(const void* s, const path_seg* path, cp_decode_error* err) {
  const cp_rule* r = s;
  if (r->min_bytes > r->max_bytes) {
    const path_seg at = FIELD_SEG(path, "min_bytes");
    set_err(err, CP_EC_BAD_VALUE, WHERE(&at), "min_bytes (%llu) exceeds max_bytes (%llu)",
            (unsigned long long)r->min_bytes, (unsigned long long)r->max_bytes);
    return CP_ERR_INVALID;
  }
  const int filters[3] = {r->n_nodes, r->n_ranks, r->num_pipe_ops};
  static const char* const names[3] = {"n_nodes", "n_ranks", "num_pipe_ops"};
  for (int i = 0; i < 3; i++) {
    if (filters[i] == 0) {
      const path_seg at = FIELD_SEG(path, names[i]);
      set_err(err, CP_EC_BAD_VALUE, WHERE(&at), "%s is 0: use -1 for any, or a positive exact value",
              names[i]);
      return CP_ERR_INVALID;
    }
  }
  return CP_OK;
}

static cp_result cross_ack(const void* s, const path_seg* path, cp_decode_error* err) {
  const cp_msg_ack* a = s;
  if (a->ok != (a->reason.len == 0)) {
    set_err(err, CP_EC_BAD_VALUE, "reason",
            "reason must be empty when ok is true and non-empty when ok is false");
    return CP_ERR_INVALID;
  }
  return CP_OK;
}

cp_result cp_msg_validate(const cp_msg* msg, cp_decode_error* err) {
  if (err) memset(err, 0, sizeof *err);
  if (msg == NULL || msg->type <= CP_MSG_NONE || msg->type >= CP_MSG_COUNT) {
    set_err(err, CP_EC_UNKNOWN_TYPE, "t", "message type %d is not a protocol message",
            msg ? (int)msg->type : -1);
    return CP_ERR_INVALID;
  }
  return validate_struct(&k_msg_schemas[msg->type], &msg->u, NULL, err);
}

/* ---- stage 6: parse msgpack objects into structs ------------------------------------------------ */

static bool is_int(const msgpack_object* o) {
  return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
}
static bool is_float(const msgpack_object* o) {
  return o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64;
}

static const char* obj_type_name(const msgpack_object* o) {
  switch (o->type) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "int";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return "float";
    case MSGPACK_OBJECT_STR: return "str";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    default: return "other";
  }
}

static cp_result wrong_type(cp_decode_error* err, const path_seg* at, const char* want,
                            const msgpack_object* o) {
  set_err(err, CP_EC_WRONG_TYPE, WHERE(at), "%s must be %s, got a msgpack %s", WHERE(at), want,
          obj_type_name(o));
  return CP_ERR_PARSE;
}

/* Array length against a field's exact or maximum length: above -> limit, below -> bad_value. */
static cp_result check_len(cp_decode_error* err, const path_seg* at, uint32_t n, uint32_t lo,
                           uint32_t hi) {
  if (n > hi) {
    set_err(err, CP_EC_LIMIT, WHERE(at), "%s has %u entries, at most %u allowed", WHERE(at), n, hi);
    return CP_ERR_PARSE;
  }
  if (n < lo) {
    set_err(err, CP_EC_BAD_VALUE, WHERE(at), "%s has %u entries, at least %u required", WHERE(at), n, lo);
    return CP_ERR_PARSE;
  }
  return CP_OK;
}

static cp_result parse_uint(const msgpack_object* o, const path_seg* at, uint64_t lo, uint64_t hi,
                            uint64_t* out, cp_decode_error* err) {
  if (!is_int(o)) return wrong_type(err, at, "an integer", o);
  if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || o->via.u64 < lo || o->via.u64 > hi) {
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
      set_err(err, CP_EC_BAD_VALUE, WHERE(at), "%s = %lld is outside %llu..%llu", WHERE(at),
              (long long)o->via.i64, (unsigned long long)lo, (unsigned long long)hi);
    else
      set_err(err, CP_EC_BAD_VALUE, WHERE(at), "%s = %llu is outside %llu..%llu", WHERE(at),
              (unsigned long long)o->via.u64, (unsigned long long)lo, (unsigned long long)hi);
    return CP_ERR_PARSE;
  }
  *out = o->via.u64;
  return CP_OK;
}

static cp_result parse_int(const msgpack_object* o, const path_seg* at, int64_t lo, int64_t hi,
                           int64_t* out, cp_decode_error* err) {
  if (!is_int(o)) return wrong_type(err, at, "an integer", o);
  if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
    if (o->via.u64 > (uint64_t)INT64_MAX || (int64_t)o->via.u64 > hi || (int64_t)o->via.u64 < lo) {
      set_err(err, CP_EC_BAD_VALUE, WHERE(at), "%s = %llu is outside %lld..%lld", WHERE(at),
              (unsigned long long)o->via.u64, (long long)lo, (long long)hi);
      return CP_ERR_PARSE;
    }
    *out = (int64_t)o->via.u64;
    return CP_OK;
  }
  if (o->via.i64 < lo || o->via.i64 > hi) {
    set_err(err, CP_EC_BAD_VALUE, WHERE(at), "%s = %lld is outside %lld..%lld", WHERE(at),
            (long long)o->via.i64, (long long)lo, (long long)hi);
    return CP_ERR_PARSE;
  }
  *out = o->via.i64;
  return CP_OK;
}

static cp_result parse_f64(const msgpack_object* o, const path_seg* at, double* out,
                           cp_decode_error* err) {
  if (!is_float(o)) return wrong_type(err, at, "a float", o);
  *out = o->via.f64; /* finiteness and sign are constraints: cp_msg_validate reports them */
  return CP_OK;
}

static cp_result parse_str(const msgpack_object* o, const path_seg* at, uint32_t cap, char* data,
                           uint32_t* len, cp_decode_error* err) {
  if (o->type != MSGPACK_OBJECT_STR) return wrong_type(err, at, "a string", o);
  if (o->via.str.size > cap) {
    set_err(err, CP_EC_LIMIT, WHERE(at), "%s is %u bytes, above its maximum of %u", WHERE(at),
            o->via.str.size, cap);
    return CP_ERR_PARSE;
  }
  if (o->via.str.size) memcpy(data, o->via.str.ptr, o->via.str.size);
  data[o->via.str.size] = '\0';
  *len = o->via.str.size;
  return CP_OK;
}

static cp_result parse_struct(const schema* sc, const msgpack_object* o, void* dst,
                              const path_seg* path, cp_decode_error* err);
static cp_result parse_packed_stat(const msgpack_object* o, void* dst, const path_seg* path,
                                   cp_decode_error* err);

static cp_result parse_field(const field_desc* f, const msgpack_object* v, void* dst,
                             const path_seg* path, cp_decode_error* err) {
  const path_seg here = FIELD_SEG(path, f->name);
  char* base = (char*)dst;
  if (f->nullable) {
    bool has = v->type != MSGPACK_OBJECT_NIL;
    memcpy(base + f->has_off, &has, sizeof has);
    if (!has) return CP_OK;
  }
  switch (f->kind) {
    case F_TAG:
      return CP_OK; /* checked before the schema */
    case F_UINT: {
      uint64_t x = 0;
      CP_CHECK(parse_uint(v, &here, f->umin, f->umax, &x, err));
      store_u(base + f->off, f->size, x);
      return CP_OK;
    }
    case F_INT: {
      int64_t x = 0;
      CP_CHECK(parse_int(v, &here, f->imin, f->imax, &x, err));
      store_i(base + f->off, f->size, x);
      return CP_OK;
    }
    case F_F64: {
      double x = 0.0;
      CP_CHECK(parse_f64(v, &here, &x, err));
      memcpy(base + f->off, &x, sizeof x);
      return CP_OK;
    }
    case F_BOOL:
      if (v->type != MSGPACK_OBJECT_BOOLEAN) return wrong_type(err, &here, "a boolean", v);
      memcpy(base + f->off, &v->via.boolean, sizeof(bool));
      return CP_OK;
    case F_STR:
      return parse_str(v, &here, f->smax, STR_DATA(dst, f->off), STR_LEN(dst, f->off), err);
    case F_ERRCODE: {
      if (v->type != MSGPACK_OBJECT_STR) return wrong_type(err, &here, "a string", v);
      cp_error_code c = cp_error_code_from_name(v->via.str.ptr, v->via.str.size);
      if (c == CP_EC_NONE) {
        char name[48];
        safe_copy(name, sizeof name, v->via.str.ptr, v->via.str.size);
        set_err(err, CP_EC_BAD_VALUE, WHERE(&here), "'%s' is not an error code of PROTOCOL.md", name);
        return CP_ERR_PARSE;
      }
      memcpy(base + f->off, &c, sizeof c);
      return CP_OK;
    }
    case F_VERSION: {
      if (v->type != MSGPACK_OBJECT_ARRAY) return wrong_type(err, &here, "an array", v);
      CP_CHECK(check_len(err, &here, v->via.array.size, 2, 2));
      uint64_t mm[2];
      for (int i = 0; i < 2; i++) {
        const path_seg at = INDEX_SEG(&here, i);
        CP_CHECK(parse_uint(&v->via.array.ptr[i], &at, 0, 0xffff, &mm[i], err));
      }
      cp_proto_version pv = {(uint16_t)mm[0], (uint16_t)mm[1]};
      memcpy(base + f->off, &pv, sizeof pv);
      return CP_OK;
    }
    case F_FEATURES: {
      if (v->type != MSGPACK_OBJECT_ARRAY) return wrong_type(err, &here, "an array", v);
      CP_CHECK(check_len(err, &here, v->via.array.size, 0, CP_MAX_FEATURES));
      cp_str_feature* fs = (cp_str_feature*)(base + f->off);
      for (uint32_t i = 0; i < v->via.array.size; i++) {
        const path_seg at = INDEX_SEG(&here, i);
        CP_CHECK(parse_str(&v->via.array.ptr[i], &at, CP_MAX_FEATURE_BYTES, fs[i].data, &fs[i].len,
                           err));
      }
      uint32_t n = v->via.array.size;
      memcpy(base + f->aux, &n, sizeof n);
      return CP_OK;
    }
    case F_COST: {
      if (v->type != MSGPACK_OBJECT_ARRAY) return wrong_type(err, &here, "an array", v);
      CP_CHECK(check_len(err, &here, v->via.array.size, CP_COST_ALGOS, CP_COST_ALGOS));
      double cost[CP_COST_ALGOS][CP_COST_PROTOS];
      for (int a = 0; a < CP_COST_ALGOS; a++) {
        const msgpack_object* row = &v->via.array.ptr[a];
        const path_seg at = INDEX_SEG(&here, a);
        if (row->type != MSGPACK_OBJECT_ARRAY) return wrong_type(err, &at, "an array", row);
        CP_CHECK(check_len(err, &at, row->via.array.size, CP_COST_PROTOS, CP_COST_PROTOS));
        for (int p = 0; p < CP_COST_PROTOS; p++) {
          const path_seg at2 = INDEX_SEG(&at, p);
          CP_CHECK(parse_f64(&row->via.array.ptr[p], &at2, &cost[a][p], err));
        }
      }
      memcpy(base + f->off, cost, sizeof cost);
      return CP_OK;
    }
    case F_HIST: {
      if (v->type != MSGPACK_OBJECT_ARRAY) return wrong_type(err, &here, "an array", v);
      CP_CHECK(check_len(err, &here, v->via.array.size, CP_HIST_BUCKETS, CP_HIST_BUCKETS));
      uint32_t* hist = (uint32_t*)(base + f->off);
      for (int b = 0; b < CP_HIST_BUCKETS; b++) {
        const path_seg at = INDEX_SEG(&here, b);
        uint64_t x;
        CP_CHECK(parse_uint(&v->via.array.ptr[b], &at, 0, UINT32_MAX, &x, err));
        hist[b] = (uint32_t)x;
      }
      return CP_OK;
    }
    case F_STATS:
    case F_PSTATS:
    case F_RULES: {
      const bool stats = f->kind != F_RULES;
      if (v->type != MSGPACK_OBJECT_ARRAY) return wrong_type(err, &here, "an array", v);
      const uint32_t n = v->via.array.size;
      CP_CHECK(check_len(err, &here, n, 0, stats ? CP_MAX_STATS : CP_MAX_RULES));
      const size_t el_size = stats ? sizeof(cp_wire_stat) : sizeof(cp_rule);
      void* arr = NULL;
      if (n > 0) {
        /* n <= 1024 and el_size is a few hundred bytes: no overflow, bounded allocation. */
        arr = calloc(n, el_size);
        if (arr == NULL) {
          set_err(err, CP_EC_NONE, WHERE(&here), "out of memory for %u %s", n, f->name);
          return CP_ERR_NOMEM;
        }
      }
      /* Owned by dst from here, so cp_msg_free releases it whatever fails below. */
      memcpy(base + f->off, &arr, sizeof arr);
      memcpy(base + f->aux, &n, sizeof n);
      for (uint32_t i = 0; i < n; i++) {
        const path_seg at = INDEX_SEG(&here, i);
        void* el = (char*)arr + (size_t)i * el_size;
        if (f->kind == F_PSTATS)
          CP_CHECK(parse_packed_stat(&v->via.array.ptr[i], el, &at, err));
        else
          CP_CHECK(parse_struct(stats ? &k_stat_schema : &k_rule_schema, &v->via.array.ptr[i], el,
                                &at, err));
      }
      return CP_OK;
    }
    case F_ARMS: {
      if (v->type != MSGPACK_OBJECT_ARRAY) return wrong_type(err, &here, "an array", v);
      CP_CHECK(check_len(err, &here, v->via.array.size, 1, CP_MAX_ARMS));
      cp_arm* arms = (cp_arm*)(base + f->off);
      for (uint32_t i = 0; i < v->via.array.size; i++) {
        const path_seg at = INDEX_SEG(&here, i);
        CP_CHECK(parse_struct(&k_arm_schema, &v->via.array.ptr[i], &arms[i], &at, err));
      }
      int n = (int)v->via.array.size;
      memcpy(base + f->aux, &n, sizeof n);
      return CP_OK;
    }
  }
  return CP_ERR_INTERNAL;
}

/* PackedStat's hist (`here` names it): [] when every bucket is 0, else [first, c0, c1, ...]. Zero
 * counts at either end are accepted, so nothing depends on the sender writing the shortest run.
 * Rejections follow the order of cclpilot.proto's run check: type, length, first's type, a run of
 * nothing but first, first's range, the run's end, then each count (named by its bucket, as
 * "hist.5" is in the map form). */
static cp_result parse_hist_run(const msgpack_object* v, const path_seg* here, uint32_t* hist,
                                cp_decode_error* err) {
  if (v->type != MSGPACK_OBJECT_ARRAY)
    return wrong_type(err, here, "an array (a histogram run: [] or [first, counts...])", v);
  const uint32_t n = v->via.array.size;
  if (n > 1 + CP_HIST_BUCKETS) {
    set_err(err, CP_EC_LIMIT, WHERE(here), "%s has %u entries; a run holds at most 1 + %d",
            WHERE(here), n, CP_HIST_BUCKETS);
    return CP_ERR_PARSE;
  }
  memset(hist, 0, CP_HIST_BUCKETS * sizeof *hist);
  if (n == 0) return CP_OK;
  const msgpack_object* first_o = &v->via.array.ptr[0];
  if (!is_int(first_o)) return wrong_type(err, here, "a run whose first bucket is an integer",
                                          first_o);
  if (n == 1) {
    set_err(err, CP_EC_BAD_VALUE, WHERE(here), "%s holds a first bucket and no counts; an empty "
            "histogram is []", WHERE(here));
    return CP_ERR_PARSE;
  }
  if (first_o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
      first_o->via.u64 >= (uint64_t)CP_HIST_BUCKETS) {
    if (first_o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
      set_err(err, CP_EC_BAD_VALUE, WHERE(here), "%s starts at bucket %lld, outside 0..%d",
              WHERE(here), (long long)first_o->via.i64, CP_HIST_BUCKETS - 1);
    else
      set_err(err, CP_EC_BAD_VALUE, WHERE(here), "%s starts at bucket %llu, outside 0..%d",
              WHERE(here), (unsigned long long)first_o->via.u64, CP_HIST_BUCKETS - 1);
    return CP_ERR_PARSE;
  }
  const uint32_t first = (uint32_t)first_o->via.u64, counts = n - 1;
  if (first + counts > (uint32_t)CP_HIST_BUCKETS) {
    set_err(err, CP_EC_BAD_VALUE, WHERE(here), "%s: %u counts from bucket %u reach past the last "
            "bucket (%d)", WHERE(here), counts, first, CP_HIST_BUCKETS - 1);
    return CP_ERR_PARSE;
  }
  for (uint32_t i = 0; i < counts; i++) {
    const path_seg at = INDEX_SEG(here, first + i);
    uint64_t x;
    CP_CHECK(parse_uint(&v->via.array.ptr[1 + i], &at, 0, UINT32_MAX, &x, err));
    hist[first + i] = (uint32_t)x;
  }
  return CP_OK;
}

/* A PackedStat: the values of k_stat_f's fields by position (PACKED_STAT_ORDER), each parsed by
 * its descriptor exactly as in the map form, except hist, which is a run. */
static cp_result parse_packed_stat(const msgpack_object* o, void* dst, const path_seg* path,
                                   cp_decode_error* err) {
  if (o->type != MSGPACK_OBJECT_ARRAY)
    return wrong_type(err, path, "an array (a PackedStat: the Stat values in table order)", o);
  const uint32_t n = o->via.array.size;
  if (n < PS_N) {
    const path_seg at = FIELD_SEG(path, k_stat_f[n].name);
    set_err(err, CP_EC_MISSING_FIELD, WHERE(&at), "PackedStat has %u of its %d values: '%s' "
            "(index %u) and those after it are missing", n, PS_N, k_stat_f[n].name, n);
    return CP_ERR_PARSE;
  }
  if (n > PS_N) {
    const path_seg at = INDEX_SEG(path, PS_N);
    set_err(err, CP_EC_EXTRA_FIELD, WHERE(&at), "PackedStat has %u values; it declares %d (the "
            "Stat fields coll .. untimed)", n, PS_N);
    return CP_ERR_PARSE;
  }
  char* base = dst;
  for (int i = 0; i < PS_N; i++) {
    const field_desc* f = &k_stat_f[i];
    const msgpack_object* v = &o->via.array.ptr[i];
    if (f->kind == F_HIST) {
      const path_seg here = FIELD_SEG(path, f->name);
      CP_CHECK(parse_hist_run(v, &here, (uint32_t*)(base + f->off), err));
    } else {
      CP_CHECK(parse_field(f, v, dst, path, err));
    }
  }
  return CP_OK;
}

/* Nesting of schemas is fixed (message -> rules -> arms), so this recursion is bounded by the
 * schema, not by the input. */
static cp_result parse_struct(const schema* sc, const msgpack_object* o, void* dst,
                              const path_seg* path, cp_decode_error* err) {
  if (o->type != MSGPACK_OBJECT_MAP) {
    const path_seg top = FIELD_SEG(NULL, sc->name);
    return wrong_type(err, path != NULL ? path : &top, "a map", o);
  }
  uint32_t seen = 0;
  for (uint32_t k = 0; k < o->via.map.size; k++) {
    const msgpack_object_kv* kv = &o->via.map.ptr[k];
    /* The scan guaranteed string keys; keep the check so this never trusts that silently. */
    if (kv->key.type != MSGPACK_OBJECT_STR) return wrong_type(err, path, "a string key", &kv->key);
    int idx = -1;
    for (int i = 0; i < sc->n_fields; i++) {
      const char* nm = sc->fields[i].name;
      if (strlen(nm) == kv->key.via.str.size && memcmp(nm, kv->key.via.str.ptr, strlen(nm)) == 0) {
        idx = i;
        break;
      }
    }
    if (idx < 0) {
      char name[48];
      safe_copy(name, sizeof name, kv->key.via.str.ptr, kv->key.via.str.size);
      const path_seg at = FIELD_SEG(path, name);
      set_err(err, CP_EC_EXTRA_FIELD, WHERE(&at), "%s declares no field '%s'; see PROTOCOL.md, %s",
              sc->name, name, sc->name);
      return CP_ERR_PARSE;
    }
    seen |= 1u << idx;
    CP_CHECK(parse_field(&sc->fields[idx], &kv->val, dst, path, err));
  }
  for (int i = 0; i < sc->n_fields; i++) {
    if (!(seen & (1u << i))) {
      const path_seg at = FIELD_SEG(path, sc->fields[i].name);
      set_err(err, CP_EC_MISSING_FIELD, WHERE(&at), "%s lacks field '%s' (nil-able fields are sent "
              "as nil, never omitted)", sc->name, sc->fields[i].name);
      return CP_ERR_PARSE;
    }
  }
  if (sc == &k_rule_schema) ((cp_rule*)dst)->source_line = 0;
  return CP_OK;
}

/* ---- decode ----------------------------------------------------------------------------------- */

void cp_msg_init(cp_msg* msg, cp_msg_type type) {
  if (msg == NULL) return;
  memset(msg, 0, sizeof *msg);
  msg->type = type;
  const cp_proto_version v = {CP_PROTO_MAJOR, CP_PROTO_MINOR};
  if (type == CP_MSG_HELLO) msg->u.hello.version = v;
  if (type == CP_MSG_WELCOME) msg->u.welcome.version = v;
}

void cp_msg_free(cp_msg* msg) {
  if (msg == NULL) return;
  if (msg->type == CP_MSG_MEASUREMENTS || msg->type == CP_MSG_MEASUREMENTS_PACKED)
    free(msg->u.measurements.stats);
  if (msg->type == CP_MSG_PREPARE) free(msg->u.prepare.rules);
  memset(msg, 0, sizeof *msg);
}

static const msgpack_object* map_get(const msgpack_object* map, const char* key) {
  const size_t n = strlen(key);
  for (uint32_t k = 0; k < map->via.map.size; k++) {
    const msgpack_object* ko = &map->via.map.ptr[k].key;
    if (ko->type == MSGPACK_OBJECT_STR && ko->via.str.size == n && memcmp(ko->via.str.ptr, key, n) == 0)
      return &map->via.map.ptr[k].val;
  }
  return NULL;
}

static cp_result decode_tree(const msgpack_object* root, cp_msg* out, cp_decode_error* err) {
  /* Stage 4: shape and tag. */
  if (root->type != MSGPACK_OBJECT_MAP) {
    set_err(err, CP_EC_WRONG_TYPE, "", "top level is a msgpack %s, not a map; a message is a map "
            "with a 't' type tag", obj_type_name(root));
    return CP_ERR_PARSE;
  }
  const msgpack_object* tag = map_get(root, "t");
  if (tag == NULL) {
    set_err(err, CP_EC_MISSING_FIELD, "t", "no 't' type tag");
    return CP_ERR_PARSE;
  }
  if (tag->type != MSGPACK_OBJECT_STR) {
    set_err(err, CP_EC_WRONG_TYPE, "t", "type tag is a msgpack %s, not a string",
            obj_type_name(tag));
    return CP_ERR_PARSE;
  }
  cp_msg_type type = CP_MSG_NONE;
  for (int t = CP_MSG_NONE + 1; t < CP_MSG_COUNT; t++) {
    if (strlen(k_type_names[t]) == tag->via.str.size &&
        memcmp(k_type_names[t], tag->via.str.ptr, tag->via.str.size) == 0) {
      type = (cp_msg_type)t;
      break;
    }
  }
  if (type == CP_MSG_NONE) {
    char name[44];
    safe_copy(name, sizeof name, tag->via.str.ptr, tag->via.str.size);
    set_err(err, CP_EC_UNKNOWN_TYPE, "t", "unknown message type '%s'; protocol %d.x knows HELLO, "
            "WELCOME, KEY_REPORT, MEASUREMENTS, PREPARE, ACK, COMMIT, ABORT, HEARTBEAT, ERROR, "
            "MEASUREMENTS_PACKED",
            name, CP_PROTO_MAJOR);
    return CP_ERR_PARSE;
  }
  /* Stage 5: a peer of another major may use another schema; tell it "version", not the first
   * field this major does not know. */
  if (type == CP_MSG_HELLO || type == CP_MSG_WELCOME) {
    const msgpack_object* v = map_get(root, "version");
    if (v && v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size == 2 &&
        is_int(&v->via.array.ptr[0]) && is_int(&v->via.array.ptr[1])) {
      const msgpack_object* mj = &v->via.array.ptr[0];
      const msgpack_object* mn = &v->via.array.ptr[1];
      if (mj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || mj->via.u64 != (uint64_t)CP_PROTO_MAJOR) {
        set_err(err, CP_EC_VERSION, "version",
                "peer speaks protocol %lld.%lld, this side %d.x; majors must match: upgrade the "
                "older side", mj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? (long long)mj->via.i64
                : (long long)mj->via.u64, mn->type == MSGPACK_OBJECT_NEGATIVE_INTEGER
                ? (long long)mn->via.i64 : (long long)mn->via.u64, CP_PROTO_MAJOR);
        return CP_ERR_PARSE;
      }
    }
  }
  /* Stage 6. */
  out->type = type;
  CP_CHECK(parse_struct(&k_msg_schemas[type], root, &out->u, NULL, err));
  if (validate_struct(&k_msg_schemas[type], &out->u, NULL, err) != CP_OK) return CP_ERR_PARSE;
  return CP_OK;
}

cp_result cp_msg_decode(const void* buf, size_t len, cp_msg* out, cp_decode_error* err) {
  if (out == NULL || err == NULL || (buf == NULL && len > 0)) return CP_ERR_INVALID;
  memset(out, 0, sizeof *out);
  memset(err, 0, sizeof *err);
  /* Stage 1, before touching the bytes. */
  if (len > CP_MAX_MESSAGE_BYTES) {
    set_err(err, CP_EC_LIMIT, "", "message is %zu bytes, above MAX_MESSAGE_BYTES=%u", len,
            CP_MAX_MESSAGE_BYTES);
    return CP_ERR_PARSE;
  }
  /* Stages 2 and 3 without allocating. */
  size_t objects = 0;
  CP_CHECK(scan_frame_bytes((const uint8_t*)buf, len, &objects, err));
  /* msgpack-c now builds a tree the scan has bounded: at most `objects` (<= len) nodes of depth
   * <= MAX_DEPTH (below msgpack-c's own stack of MSGPACK_EMBED_STACK_SIZE), strings referencing
   * buf instead of copies. */
  _Static_assert(CP_MAX_DEPTH < MSGPACK_EMBED_STACK_SIZE, "msgpack-c stack must hold MAX_DEPTH");
  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  size_t off = 0;
  msgpack_unpack_return ur = msgpack_unpack_next(&up, (const char*)buf, len, &off);
  cp_result r;
  if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
    set_err(err, CP_EC_NONE, "", "out of memory unpacking %zu msgpack objects", objects);
    r = CP_ERR_NOMEM;
  } else if (ur != MSGPACK_UNPACK_SUCCESS || off != len) {
    /* The scan accepted what msgpack-c refuses: a disagreement to report, not to trust. */
    set_err(err, CP_EC_MALFORMED, "", "msgpack-c could not unpack the frame (code %d)", (int)ur);
    r = CP_ERR_PARSE;
  } else {
    r = decode_tree(&up.data, out, err);
  }
  msgpack_unpacked_destroy(&up);
  if (r != CP_OK) cp_msg_free(out);
  return r;
}

/* ---- encode ----------------------------------------------------------------------------------- */

void cp_buf_init(cp_buf* b, size_t max) {
  if (b == NULL) return;
  memset(b, 0, sizeof *b);
  b->max = max;
}
void cp_buf_reset(cp_buf* b) {
  if (b) b->len = 0;
}
void cp_buf_free(cp_buf* b) {
  if (b == NULL) return;
  free(b->data);
  size_t max = b->max;
  memset(b, 0, sizeof *b);
  b->max = max;
}

static size_t buf_limit(const cp_buf* b) {
  return (b->max == 0 || b->max > CP_MAX_MESSAGE_BYTES) ? CP_MAX_MESSAGE_BYTES : b->max;
}

typedef struct {
  cp_buf* b;
  bool over;   /* the encoding passed the buffer's limit */
  bool nomem;
} buf_writer;

static int buf_write(void* data, const char* p, size_t n) {
  buf_writer* w = data;
  cp_buf* b = w->b;
  const size_t limit = buf_limit(b);
  if (n > limit - b->len) { /* b->len <= limit always holds */
    w->over = true;
    return -1;
  }
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap = cap > limit / 2 ? limit : cap * 2;
    uint8_t* nd = realloc(b->data, cap);
    if (nd == NULL) {
      w->nomem = true;
      return -1;
    }
    b->data = nd;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

static int pack_cstr(msgpack_packer* pk, const char* s, size_t n) {
  if (msgpack_pack_str(pk, n) != 0) return -1;
  return msgpack_pack_str_body(pk, s, n);
}

static int pack_struct(msgpack_packer* pk, const schema* sc, const void* s, const char* tag);
static int pack_packed_stat(msgpack_packer* pk, const void* s);

/* A field's value without its key (a PackedStat holds values only). */
static int pack_value(msgpack_packer* pk, const field_desc* f, const void* s, const char* tag) {
  const char* base = (const char*)s;
  if (f->nullable && !*(const bool*)(base + f->has_off)) return msgpack_pack_nil(pk);
  switch (f->kind) {
    case F_TAG: return pack_cstr(pk, tag, strlen(tag));
    case F_UINT: return msgpack_pack_uint64(pk, load_u(base + f->off, f->size));
    case F_INT: return msgpack_pack_int64(pk, load_i(base + f->off, f->size));
    case F_F64: {
      double v;
      memcpy(&v, base + f->off, sizeof v);
      return msgpack_pack_double(pk, v);
    }
    case F_BOOL: {
      bool v;
      memcpy(&v, base + f->off, sizeof v);
      return v ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    }
    case F_STR: return pack_cstr(pk, STR_DATA(s, f->off), *STR_LEN(s, f->off));
    case F_ERRCODE: {
      cp_error_code c;
      memcpy(&c, base + f->off, sizeof c);
      const char* nm = cp_error_code_name(c);
      return pack_cstr(pk, nm, strlen(nm));
    }
    case F_VERSION: {
      cp_proto_version v;
      memcpy(&v, base + f->off, sizeof v);
      if (msgpack_pack_array(pk, 2) != 0 || msgpack_pack_uint64(pk, v.major) != 0) return -1;
      return msgpack_pack_uint64(pk, v.minor);
    }
    case F_FEATURES: {
      uint32_t n = *(const uint32_t*)(base + f->aux);
      const cp_str_feature* fs = (const cp_str_feature*)(base + f->off);
      if (msgpack_pack_array(pk, n) != 0) return -1;
      for (uint32_t i = 0; i < n; i++)
        if (pack_cstr(pk, fs[i].data, fs[i].len) != 0) return -1;
      return 0;
    }
    case F_COST: {
      double cost[CP_COST_ALGOS][CP_COST_PROTOS];
      memcpy(cost, base + f->off, sizeof cost);
      if (msgpack_pack_array(pk, CP_COST_ALGOS) != 0) return -1;
      for (int a = 0; a < CP_COST_ALGOS; a++) {
        if (msgpack_pack_array(pk, CP_COST_PROTOS) != 0) return -1;
        for (int p = 0; p < CP_COST_PROTOS; p++)
          if (msgpack_pack_double(pk, cost[a][p]) != 0) return -1;
      }
      return 0;
    }
    case F_HIST: {
      const uint32_t* hist = (const uint32_t*)(base + f->off);
      if (msgpack_pack_array(pk, CP_HIST_BUCKETS) != 0) return -1;
      for (int b = 0; b < CP_HIST_BUCKETS; b++)
        if (msgpack_pack_uint64(pk, hist[b]) != 0) return -1;
      return 0;
    }
    case F_STATS:
    case F_PSTATS:
    case F_RULES: {
      const bool stats = f->kind != F_RULES;
      uint32_t n = *(const uint32_t*)(base + f->aux);
      const char* arr;
      memcpy(&arr, base + f->off, sizeof arr);
      const size_t el_size = stats ? sizeof(cp_wire_stat) : sizeof(cp_rule);
      if (msgpack_pack_array(pk, n) != 0) return -1;
      for (uint32_t i = 0; i < n; i++) {
        const char* el = arr + (size_t)i * el_size;
        const int r = f->kind == F_PSTATS
                          ? pack_packed_stat(pk, el)
                          : pack_struct(pk, stats ? &k_stat_schema : &k_rule_schema, el, NULL);
        if (r != 0) return -1;
      }
      return 0;
    }
    case F_ARMS: {
      int n;
      memcpy(&n, base + f->aux, sizeof n);
      const cp_arm* arms = (const cp_arm*)(base + f->off);
      if (msgpack_pack_array(pk, (size_t)n) != 0) return -1;
      for (int i = 0; i < n; i++)
        if (pack_struct(pk, &k_arm_schema, &arms[i], NULL) != 0) return -1;
      return 0;
    }
  }
  return -1;
}

static int pack_field(msgpack_packer* pk, const field_desc* f, const void* s, const char* tag) {
  if (pack_cstr(pk, f->name, strlen(f->name)) != 0) return -1;
  return pack_value(pk, f, s, tag);
}

/* The canonical run: [] for an all-zero histogram, else from the lowest to the highest non-zero
 * bucket, so neither end holds a zero count. */
static int pack_hist_run(msgpack_packer* pk, const uint32_t* hist) {
  int lo = 0, hi = CP_HIST_BUCKETS - 1;
  while (lo < CP_HIST_BUCKETS && hist[lo] == 0) lo++;
  if (lo == CP_HIST_BUCKETS) return msgpack_pack_array(pk, 0);
  while (hist[hi] == 0) hi--;
  if (msgpack_pack_array(pk, (size_t)(2 + hi - lo)) != 0) return -1;
  if (msgpack_pack_uint64(pk, (uint64_t)lo) != 0) return -1;
  for (int b = lo; b <= hi; b++)
    if (msgpack_pack_uint64(pk, hist[b]) != 0) return -1;
  return 0;
}

static int pack_packed_stat(msgpack_packer* pk, const void* s) {
  if (msgpack_pack_array(pk, PS_N) != 0) return -1;
  for (int i = 0; i < PS_N; i++) {
    const field_desc* f = &k_stat_f[i];
    const int r = f->kind == F_HIST
                      ? pack_hist_run(pk, (const uint32_t*)((const char*)s + f->off))
                      : pack_value(pk, f, s, NULL);
    if (r != 0) return -1;
  }
  return 0;
}

static int pack_struct(msgpack_packer* pk, const schema* sc, const void* s, const char* tag) {
  if (msgpack_pack_map(pk, (size_t)sc->n_fields) != 0) return -1;
  for (int i = 0; i < sc->n_fields; i++)
    if (pack_field(pk, &sc->fields[i], s, tag) != 0) return -1;
  return 0;
}

cp_result cp_msg_encode(const cp_msg* msg, cp_buf* b, cp_decode_error* err) {
  if (b == NULL) return CP_ERR_INVALID;
  b->len = 0;
  cp_decode_error local;
  cp_decode_error* e = err ? err : &local;
  if (cp_msg_validate(msg, e) != CP_OK) return CP_ERR_INVALID;
  buf_writer w = {b, false, false};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &w, buf_write);
  if (pack_struct(&pk, &k_msg_schemas[msg->type], &msg->u, k_type_names[msg->type]) != 0) {
    b->len = 0;
    if (w.nomem) {
      set_err(e, CP_EC_NONE, "", "out of memory encoding %s", k_type_names[msg->type]);
      return CP_ERR_NOMEM;
    }
    set_err(e, CP_EC_LIMIT, "", "%s encodes to more than %zu bytes; send fewer entries per message",
            k_type_names[msg->type], buf_limit(b));
    return w.over ? CP_ERR_LIMIT : CP_ERR_INTERNAL;
  }
  return CP_OK;
}
