/*
 * Wire protocol codec (proto/PROTOCOL.md is the authority; this header mirrors its message tables).
 *
 * Decoding is strict and safe for hostile input: the frame size is checked first, then an
 * allocation-free scan proves the bytes are exactly one well-formed msgpack object within the
 * generic limits and MAX_DEPTH before msgpack-c builds anything, and only then is the schema
 * applied. Rejections report PROTOCOL.md's rejection kind, in its stated check order, plus a short
 * text naming the field, so that the I/O thread can log it and (daemon side) answer with ERROR.
 *
 * Encoding is canonical (PROTOCOL.md part 2): fields in table order, smallest integer forms,
 * floats as float64, smallest str forms; in MEASUREMENTS_PACKED each histogram as its shortest
 * run ([] when empty). The encoder checks every constraint first, so the plugin never sends what
 * a strict decoder must reject.
 *
 * Strings are stored inline (fixed capacity = the protocol's limit), NUL-terminated for logging,
 * with an explicit length because the protocol does not forbid NUL bytes inside a string. Fill
 * them with CP_STR_SET. Nullable fields have a has_<field> flag (0 = nil on the wire).
 *
 * Thread-safety: all functions are reentrant; a cp_msg or cp_buf belongs to one thread at a time.
 */
#ifndef CCLPILOT_CP_CODEC_H
#define CCLPILOT_CP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h> /* strlen, for CP_STR_SET */

#include "cp_core.h"
#include "cp_result.h"
#include "cp_stats.h"
#include "cp_table.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The protocol version comes from proto/VERSION through the build (CMake reads it at configure
 * time); there is no second copy to drift. */
#if !defined(CP_PROTO_MAJOR) || !defined(CP_PROTO_MINOR)
#error "CP_PROTO_MAJOR/CP_PROTO_MINOR are not defined: configure with CMake, which reads proto/VERSION"
#endif

/* ---- limits (PROTOCOL.md "Limits") ------------------------------------------------------------ */

#define CP_MAX_MESSAGE_BYTES 1048576u
#define CP_MAX_DEPTH 8
#define CP_MAX_ARRAY_LEN 1024u
#define CP_MAX_MAP_LEN 32u
#define CP_MAX_STR_BYTES 1024u
#define CP_MAX_FEATURES 32u
#define CP_MAX_FEATURE_BYTES 64u
#define CP_MAX_NAME_BYTES 256u
#define CP_MAX_RULES 1024u
#define CP_MAX_STATS 1024u
#define CP_HIST_BUCKETS 48
#define CP_COST_ALGOS 7
#define CP_COST_PROTOS 3
#define CP_MAX_REF_BYTES 32u          /* ERROR.ref */
#define CP_MAX_INTERVAL_MS 600000     /* WELCOME heartbeat_ms / report_ms */
/* MAX_ARMS = CP_MAX_ARMS (cp_table.h), HIST_BUCKETS = CP_STATS_BUCKETS (cp_stats.h),
 * MAX_CHANNELS = CP_MAX_CHANNELS (cp_core.h); cp_codec.c asserts these agree. */

/* ---- rejection kinds and ERROR codes ---------------------------------------------------------- */

/* One enum for both: an ERROR's code is a rejection kind or one of the last three. */
typedef enum {
  CP_EC_NONE = 0,        /* not a rejection (success, or an allocation failure) */
  CP_EC_MALFORMED,
  CP_EC_LIMIT,
  CP_EC_UNKNOWN_TYPE,
  CP_EC_MISSING_FIELD,
  CP_EC_EXTRA_FIELD,
  CP_EC_WRONG_TYPE,
  CP_EC_BAD_VALUE,
  CP_EC_VERSION,
  CP_EC_UNKNOWN_COMM,    /* ERROR code only */
  CP_EC_STATE,           /* ERROR code only */
  CP_EC_INTERNAL,        /* ERROR code only */
  CP_EC_COUNT
} cp_error_code;

/* Wire spelling ("malformed", "unknown_comm", ...); "none" for CP_EC_NONE, NULL if out of range. */
const char* cp_error_code_name(cp_error_code code);
/* Inverse; returns CP_EC_NONE when the name (n bytes, not necessarily NUL-terminated) is no code. */
cp_error_code cp_error_code_from_name(const char* name, size_t n);

typedef struct {
  cp_error_code kind;    /* one of the eight rejection kinds, or CP_EC_NONE */
  char field[64];        /* dotted path of the offending field ("rules.3.arms.0.algo"), "" if none */
  char message[224];     /* what was wrong, for logs */
} cp_decode_error;

/* ---- messages --------------------------------------------------------------------------------- */

typedef enum {
  CP_MSG_NONE = 0,
  CP_MSG_HELLO,
  CP_MSG_WELCOME,
  CP_MSG_KEY_REPORT,
  CP_MSG_MEASUREMENTS,
  CP_MSG_PREPARE,
  CP_MSG_ACK,
  CP_MSG_COMMIT,
  CP_MSG_ABORT,
  CP_MSG_HEARTBEAT,
  CP_MSG_ERROR,
  /* Since 1.1 (feature packed_stats). Appended so that the 1.0 values never move. Its payload is
   * u.measurements, exactly as for CP_MSG_MEASUREMENTS (stats expanded to CP_HIST_BUCKETS dense
   * buckets): only the wire form differs, each Stat an array with its histogram as one run. */
  CP_MSG_MEASUREMENTS_PACKED,
  CP_MSG_COUNT
} cp_msg_type;

/* Wire tag ("HELLO", ...), NULL for CP_MSG_NONE or out of range. */
const char* cp_msg_type_name(cp_msg_type type);

/* Inline strings: capacity = protocol limit, data always NUL-terminated, len = bytes used. */
#define CP_STR_T(cap) struct { uint32_t len; char data[(cap) + 1]; }
typedef CP_STR_T(CP_MAX_NAME_BYTES) cp_str_name;
typedef CP_STR_T(CP_MAX_STR_BYTES) cp_str_text;
typedef CP_STR_T(CP_MAX_FEATURE_BYTES) cp_str_feature;
typedef CP_STR_T(CP_MAX_REF_BYTES) cp_str_ref;

/* Copies n bytes of src into an inline string of capacity cap (= sizeof(data) - 1).
 * CP_ERR_LIMIT (and nothing copied) when n > cap. */
cp_result cp_str_assign(char* data, uint32_t* len, size_t cap, const char* src, size_t n);
/* dst is a cp_str_* lvalue, src a NUL-terminated string. */
#define CP_STR_SET(dst, src) \
  cp_str_assign((dst).data, &(dst).len, sizeof((dst).data) - 1, (src), strlen(src))

typedef struct {
  uint16_t major, minor;
} cp_proto_version;

typedef struct {
  cp_proto_version version;
  uint32_t n_features;                          /* 0..CP_MAX_FEATURES */
  cp_str_feature features[CP_MAX_FEATURES];     /* [a-z0-9][a-z0-9_.-]*, no duplicates */
  cp_str_name job;                              /* 1..CP_MAX_NAME_BYTES */
  uint64_t comm;
  int32_t n_ranks;                              /* 1..2^31-1 */
  int32_t n_nodes;                              /* 1..n_ranks */
  bool has_rank;
  int32_t rank;                                 /* 0..n_ranks-1 when has_rank */
  cp_str_name host;                             /* 1..CP_MAX_NAME_BYTES */
  uint32_t pid;                                 /* >= 1 */
  uint32_t nccl_version;                        /* 0 = unknown */
  bool has_tuner_abi;
  uint8_t tuner_abi;                            /* 1..255 when has_tuner_abi */
  bool has_profiler_abi;
  uint8_t profiler_abi;                         /* 1..255 when has_profiler_abi */
} cp_msg_hello;

typedef struct {
  cp_proto_version version;
  uint32_t n_features;
  cp_str_feature features[CP_MAX_FEATURES];
  uint64_t comm;
  uint64_t session;
  int32_t heartbeat_ms;                         /* 1..CP_MAX_INTERVAL_MS */
  int32_t report_ms;                            /* 1..CP_MAX_INTERVAL_MS */
} cp_msg_welcome;

typedef struct {
  uint64_t comm;
  int32_t coll;                                 /* 0..4 */
  uint64_t n_bytes;
  int32_t num_pipe_ops;                         /* 1..2^31-1 */
  uint64_t call;
  double cost[CP_COST_ALGOS][CP_COST_PROTOS];   /* each >= 0 or exactly -1.0, finite */
} cp_msg_key_report;

/* One Stat entry: same fields as cp_stat_slot (cp_stats.h), so a snapshot slot copies over. */
typedef cp_stat_slot cp_wire_stat;

typedef struct {
  uint64_t comm;
  uint64_t calls;
  uint64_t dropped;
  uint32_t n_stats;                             /* 0..CP_MAX_STATS */
  cp_wire_stat* stats;                          /* heap (malloc); owned; freed by cp_msg_free */
} cp_msg_measurements;

typedef struct {
  uint64_t comm;
  uint64_t plan;                                /* >= 1 */
  uint64_t activate_at;
  uint32_t n_rules;                             /* 0..CP_MAX_RULES */
  cp_rule* rules;                               /* heap (malloc); owned; source_line = 0 */
} cp_msg_prepare;

typedef struct {
  uint64_t comm;
  uint64_t plan;                                /* >= 1 */
  bool ok;
  uint64_t calls;
  uint64_t seq_hash;
  cp_str_text reason;                           /* empty iff ok */
} cp_msg_ack;

typedef struct {
  uint64_t comm;
  uint64_t plan;                                /* >= 1 */
  uint64_t activate_at;
} cp_msg_commit;

typedef struct {
  uint64_t comm;
  uint64_t plan;                                /* >= 1 */
  cp_str_text reason;                           /* 1..CP_MAX_STR_BYTES */
} cp_msg_abort;

typedef struct {
  uint64_t seq;
  uint64_t time_ns;
} cp_msg_heartbeat;

typedef struct {
  cp_error_code code;                           /* any but CP_EC_NONE */
  cp_str_text message;                          /* 1..CP_MAX_STR_BYTES */
  bool has_ref;
  cp_str_ref ref;                               /* tag of the message concerned */
  bool has_comm;
  uint64_t comm;
} cp_msg_error;

/* A decoded (or to-be-encoded) message. Initialise with memset 0 or cp_msg_init; after a
 * successful decode, release with cp_msg_free (also safe on a zeroed or failed message). */
typedef struct {
  cp_msg_type type;
  union {
    cp_msg_hello hello;
    cp_msg_welcome welcome;
    cp_msg_key_report key_report;
    cp_msg_measurements measurements;           /* MEASUREMENTS and MEASUREMENTS_PACKED */
    cp_msg_prepare prepare;
    cp_msg_ack ack;
    cp_msg_commit commit;
    cp_msg_abort abort_;                        /* abort() is a libc function name */
    cp_msg_heartbeat heartbeat;
    cp_msg_error error;
  } u;
} cp_msg;

/* Zeroes *msg and sets its type (a HELLO/WELCOME also gets this build's protocol version). */
void cp_msg_init(cp_msg* msg, cp_msg_type type);
/* Frees the arrays of MEASUREMENTS(_PACKED) / PREPARE and zeroes *msg. NULL-safe. */
void cp_msg_free(cp_msg* msg);

/* ---- decoding --------------------------------------------------------------------------------- */

/* Decodes one frame. On success returns CP_OK with *out filled (type set); the caller owns it and
 * calls cp_msg_free. On a rejection returns CP_ERR_PARSE with *err filled (kind = a rejection kind,
 * field, message) and *out zeroed. CP_ERR_NOMEM on allocation failure (err->kind = CP_EC_NONE),
 * CP_ERR_INVALID for NULL out/err (or NULL buf with len > 0). Never reads outside buf[0..len).
 * Memory used is bounded by a small multiple of len (itself <= CP_MAX_MESSAGE_BYTES). */
cp_result cp_msg_decode(const void* buf, size_t len, cp_msg* out, cp_decode_error* err);

/* Checks every constraint of PROTOCOL.md on an in-memory message (what the decoder checks after
 * types). CP_OK, or CP_ERR_INVALID with *err describing the first violation (kind = bad_value or
 * limit). err may be NULL. */
cp_result cp_msg_validate(const cp_msg* msg, cp_decode_error* err);

/* ---- encoding --------------------------------------------------------------------------------- */

/* Growable output buffer with a hard maximum (encoding past it fails with CP_ERR_LIMIT). */
typedef struct {
  uint8_t* data;
  size_t len;
  size_t cap;
  size_t max;      /* 0 means CP_MAX_MESSAGE_BYTES */
} cp_buf;

void cp_buf_init(cp_buf* b, size_t max);
void cp_buf_reset(cp_buf* b);   /* len = 0, keeps the allocation for reuse */
void cp_buf_free(cp_buf* b);

/* Replaces b's contents with the canonical encoding of msg. CP_ERR_INVALID (err filled if
 * non-NULL) when msg breaks a constraint, CP_ERR_LIMIT when the encoding would exceed b->max or
 * CP_MAX_MESSAGE_BYTES, CP_ERR_NOMEM on allocation failure. On failure b->len is 0. */
cp_result cp_msg_encode(const cp_msg* msg, cp_buf* b, cp_decode_error* err);

/* ---- call-sequence hash (PROTOCOL.md "Call-sequence hash") ------------------------------------- */

#define CP_SEQ_HASH_INIT 0xcbf29ce484222325ull

/* Folds one getCollInfo call into h: for coll, n_bytes, num_pipe_ops (each as an unsigned 64-bit
 * word) in that order, h = (h ^ v) * FNV-1a's 64-bit prime. */
uint64_t cp_seq_hash_update(uint64_t h, int coll, uint64_t n_bytes, int num_pipe_ops);

#ifdef __cplusplus
}
#endif
#endif
