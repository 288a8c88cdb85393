/*
 * Daemon-side measurement ingestion (see cpi_ingest.h).
 *
 * Two decoders: a fast path that accepts the canonical encoding (PROTOCOL.md part 2: fields in
 * table order; it also takes any integer width and float32, which cost nothing to read) of a
 * valid MEASUREMENTS or MEASUREMENTS_PACKED (each PackedStat a fixarray of 12, its histogram the
 * shortest run), walking the bytes once without building anything; and the plugin's full decoder
 * (cp_msg_decode) for every other valid encoding. The fast path only ever *accepts* what the
 * full decoder accepts, with the same values; whatever it does not recognise it hands over.
 * test_ingest.c checks that on the golden vectors and on mutated frames.
 */
#include "cpi_ingest.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cp_codec.h"

_Static_assert(CP_MAX_STATS <= 0xffffu, "stat counts fit the canonical array16 header");

int cpi_api_version(void) { return CPI_API_VERSION; }

/* ---- decoder ----------------------------------------------------------------------------------- */

struct cpi_decoder {
  cpi_report_head head;
  cp_wire_stat stats[CP_MAX_STATS];
};

cpi_decoder* cpi_decoder_new(void) { return calloc(1, sizeof(cpi_decoder)); }

void cpi_decoder_free(cpi_decoder* dec) { free(dec); }

typedef struct {
  const uint8_t* p;
  const uint8_t* end;
} reader;

/* The readers run ~60 times per stat; inlined, the constant key lengths fold away. */
#if defined(__GNUC__)
#define HOT static inline __attribute__((always_inline))
#else
#define HOT static inline
#endif

HOT uint64_t be(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

/* Any non-negative msgpack integer form. Negative forms are declined: no MEASUREMENTS field
 * admits a negative value, and the full decoder names that error. */
HOT bool rd_uint(reader* r, uint64_t* out) {
  if (r->p >= r->end) return false;
  const uint8_t tag = *r->p;
  if (tag <= 0x7f) {
    *out = tag;
    r->p++;
    return true;
  }
  int n;
  switch (tag) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    default: return false;
  }
  if (r->end - r->p < 1 + n) return false;
  *out = be(r->p + 1, n);
  r->p += 1 + n;
  return true;
}

HOT bool rd_f64(reader* r, double* out) {
  if (r->p >= r->end) return false;
  if (*r->p == 0xcb && r->end - r->p >= 9) {
    const uint64_t bits = be(r->p + 1, 8);
    memcpy(out, &bits, sizeof *out);
    r->p += 9;
    return true;
  }
  if (*r->p == 0xca && r->end - r->p >= 5) {
    const uint32_t bits = (uint32_t)be(r->p + 1, 4);
    float f;
    memcpy(&f, &bits, sizeof f);
    *out = (double)f;
    r->p += 5;
    return true;
  }
  return false;
}

HOT bool rd_array(reader* r, uint32_t* n) {
  if (r->p >= r->end) return false;
  const uint8_t tag = *r->p;
  if ((tag & 0xf0) == 0x90) {
    *n = tag & 0x0f;
    r->p++;
    return true;
  }
  if (tag == 0xdc && r->end - r->p >= 3) {
    *n = (uint32_t)be(r->p + 1, 2);
    r->p += 3;
    return true;
  }
  if (tag == 0xdd && r->end - r->p >= 5) {
    *n = (uint32_t)be(r->p + 1, 4);
    r->p += 5;
    return true;
  }
  return false;
}

/* A key as the canonical encoder writes it: fixstr header, then the name. The length is a
 * compile-time constant (rd_key), so the comparison inlines: this runs 12 times per stat. */
HOT bool rd_key_n(reader* r, const char* name, size_t n) {
  if ((size_t)(r->end - r->p) < 1 + n || r->p[0] != (uint8_t)(0xa0 | n) ||
      memcmp(r->p + 1, name, n) != 0)
    return false;
  r->p += 1 + n;
  return true;
}
#define rd_key(r, name) rd_key_n((r), (name), sizeof(name) - 1)

HOT bool rd_small_v(reader* r, uint64_t max, int* out) {
  uint64_t v;
  if (!rd_uint(r, &v) || v > max) return false;
  *out = (int)v;
  return true;
}
#define rd_small(r, name, max, out) (rd_key((r), name) && rd_small_v((r), (max), (out)))
#define rd_u64(r, name, out) (rd_key((r), name) && rd_uint((r), (out)))
/* -0.0 passes, as for the full decoder (it is not below 0). */
#define rd_sum(r, name, out) \
  (rd_key((r), name) && rd_f64((r), (out)) && isfinite(*(out)) && *(out) >= 0.0)

static bool rd_stat(reader* r, cp_wire_stat* s) {
  if (r->p >= r->end || *r->p != 0x8c) return false; /* fixmap of the 12 Stat fields */
  r->p++;
  if (!rd_small(r, "coll", 4, &s->coll)) return false;
  if (!rd_u64(r, "n_bytes", &s->n_bytes)) return false;
  if (!rd_small(r, "algo", CP_COST_ALGOS - 1, &s->algo)) return false;
  if (!rd_small(r, "proto", CP_COST_PROTOS - 1, &s->proto)) return false;
  if (!rd_small(r, "n_channels", CP_MAX_CHANNELS, &s->n_channels)) return false;
  if (!rd_u64(r, "count", &s->count)) return false;
  if (!rd_sum(r, "sum_ns", &s->sum_ns) || !rd_sum(r, "sum_sq_ns", &s->sum_sq_ns)) return false;
  if (!rd_u64(r, "min_ns", &s->min_ns) || !rd_u64(r, "max_ns", &s->max_ns)) return false;
  uint32_t nh;
  if (!rd_key(r, "hist") || !rd_array(r, &nh) || nh != CP_HIST_BUCKETS) return false;
  /* 48 buckets per stat are most of a report's bytes, and most are small: runs of eight
   * positive fixints (one byte each, high bit clear) are taken eight at a time. */
  uint64_t any = 0;
  for (int b = 0; b < CP_HIST_BUCKETS;) {
    uint64_t w;
    if (b + 8 <= CP_HIST_BUCKETS && r->end - r->p >= 8 &&
        (memcpy(&w, r->p, 8), (w & 0x8080808080808080ull) == 0)) {
      for (int k = 0; k < 8; k++) s->hist[b + k] = r->p[k];
      any |= w;
      r->p += 8;
      b += 8;
      continue;
    }
    uint64_t v;
    if (!rd_uint(r, &v) || v > UINT32_MAX) return false;
    s->hist[b++] = (uint32_t)v;
    any |= v;
  }
  const bool hist_empty = any == 0;
  if (!rd_u64(r, "untimed", &s->untimed)) return false;
  if (s->count > 0) return s->min_ns <= s->max_ns;
  return s->sum_ns == 0.0 && s->sum_sq_ns == 0.0 && hist_empty;
}

/* A PackedStat (PROTOCOL.md "PackedStat") as the canonical encoder writes it: a fixarray of the
 * 12 values in table order, the histogram as its shortest run. A run with zero counts at either
 * end is valid but not canonical; the full decoder takes it. */
static bool rd_packed_stat(reader* r, cp_wire_stat* s) {
  if (r->p >= r->end || *r->p != 0x9c) return false;
  r->p++;
  if (!rd_small_v(r, 4, &s->coll) || !rd_uint(r, &s->n_bytes) ||
      !rd_small_v(r, CP_COST_ALGOS - 1, &s->algo) ||
      !rd_small_v(r, CP_COST_PROTOS - 1, &s->proto) ||
      !rd_small_v(r, CP_MAX_CHANNELS, &s->n_channels) || !rd_uint(r, &s->count))
    return false;
  if (!rd_f64(r, &s->sum_ns) || !isfinite(s->sum_ns) || !(s->sum_ns >= 0.0) ||
      !rd_f64(r, &s->sum_sq_ns) || !isfinite(s->sum_sq_ns) || !(s->sum_sq_ns >= 0.0))
    return false;
  if (!rd_uint(r, &s->min_ns) || !rd_uint(r, &s->max_ns)) return false;
  uint32_t nh;
  if (!rd_array(r, &nh)) return false;
  memset(s->hist, 0, sizeof s->hist);
  if (nh != 0) {
    uint64_t first;
    /* nh - 1 counts from bucket `first`, at least one, none past the last bucket. */
    if (nh < 2 || !rd_uint(r, &first) || first >= CP_HIST_BUCKETS ||
        nh - 1 > CP_HIST_BUCKETS - first)
      return false;
    uint32_t* h = s->hist + first;
    for (uint32_t k = 0; k < nh - 1; k++) {
      uint64_t v;
      if (!rd_uint(r, &v) || v > UINT32_MAX) return false;
      h[k] = (uint32_t)v;
    }
    if (h[0] == 0 || h[nh - 2] == 0) return false; /* not the shortest run */
  }
  if (!rd_uint(r, &s->untimed)) return false;
  /* A canonical run is empty exactly when every bucket is 0. */
  if (s->count > 0) return s->min_ns <= s->max_ns;
  return s->sum_ns == 0.0 && s->sum_sq_ns == 0.0 && nh == 0;
}

/* Both report types share the envelope; `t` (first, as the canonical encoder writes it) picks
 * the Stat reader. */
static bool fast_measurements(const uint8_t* buf, size_t len, cpi_decoder* dec) {
  if (len > CP_MAX_MESSAGE_BYTES) return false;
  reader r = {buf, buf + len};
  if (len < 1 || *r.p != 0x85) return false; /* fixmap of the 5 fields */
  r.p++;
  if (!rd_key(&r, "t")) return false;
  bool packed;
  if (rd_key(&r, "MEASUREMENTS")) packed = false;
  else if (rd_key(&r, "MEASUREMENTS_PACKED")) packed = true;
  else return false;
  cpi_report_head* h = &dec->head;
  if (!rd_u64(&r, "comm", &h->comm) || !rd_u64(&r, "calls", &h->calls) ||
      !rd_u64(&r, "dropped", &h->dropped))
    return false;
  uint32_t n;
  if (!rd_key(&r, "stats") || !rd_array(&r, &n) || n > CP_MAX_STATS) return false;
  if (packed) {
    for (uint32_t i = 0; i < n; i++)
      if (!rd_packed_stat(&r, &dec->stats[i])) return false;
  } else {
    for (uint32_t i = 0; i < n; i++) {
      memset(&dec->stats[i], 0, sizeof dec->stats[i]);
      if (!rd_stat(&r, &dec->stats[i])) return false;
    }
  }
  if (r.p != r.end) return false; /* one object, nothing after it */
  h->n_stats = n;
  h->exact = 0;
  return true;
}

int cpi_decode_measurements(cpi_decoder* dec, const void* buf, size_t len,
                            cpi_report_head* head) {
  if (dec == NULL || head == NULL || (buf == NULL && len > 0)) return -1;
  if (fast_measurements(buf, len, dec)) {
    *head = dec->head;
    return 1;
  }
  memset(&dec->head, 0, sizeof dec->head);
  cp_msg msg;
  cp_decode_error err;
  const cp_result rc = cp_msg_decode(buf, len, &msg, &err);
  if (rc == CP_ERR_NOMEM) return -1;
  if (rc != CP_OK) return 0;
  if (msg.type != CP_MSG_MEASUREMENTS && msg.type != CP_MSG_MEASUREMENTS_PACKED) {
    cp_msg_free(&msg);
    return 0;
  }
  const cp_msg_measurements* m = &msg.u.measurements;
  /* The decoder enforced MAX_STATS, so the copy fits. */
  if (m->n_stats > 0) memcpy(dec->stats, m->stats, m->n_stats * sizeof(cp_wire_stat));
  dec->head = (cpi_report_head){.comm = m->comm, .calls = m->calls, .dropped = m->dropped,
                                .n_stats = m->n_stats, .exact = 1};
  cp_msg_free(&msg);
  *head = dec->head;
  return 1;
}

/* ---- aggregation ------------------------------------------------------------------------------- */

/* coll, algo, proto and channels are validated to fit 8 bits each. */
static uint32_t small_of(const cp_wire_stat* s) {
  return cp_stat_key_small(s->coll, s->algo, s->proto, s->n_channels);
}

static uint64_t key_hash(uint64_t n_bytes, uint32_t small) { return cp_stat_key_hash(n_bytes, small); }

#define NO_ROW UINT32_MAX

/* Open addressing over the ids of an array of records that each begin with the key
 * (uint64_t n_bytes, uint32_t small): the aggregate's rows and every sender's entries. */
typedef struct {
  uint32_t* slots;        /* record id per slot, NO_ROW when empty; NULL before the first key */
  uint32_t mask;
} key_index;

typedef struct {
  uint64_t n_bytes;
  uint32_t small;
} record_key;

static inline const record_key* key_of(const void* base, size_t stride, uint32_t id) {
  return (const record_key*)((const char*)base + (size_t)id * stride);
}

/* The id of the record holding (n_bytes, small), or NO_ROW. */
static inline uint32_t key_index_find(const key_index* x, const void* base, size_t stride,
                                      uint64_t hash, uint64_t n_bytes, uint32_t small) {
  if (x->slots == NULL) return NO_ROW;
  for (uint32_t i = (uint32_t)hash & x->mask; x->slots[i] != NO_ROW; i = (i + 1) & x->mask) {
    const record_key* k = key_of(base, stride, x->slots[i]);
    if (k->n_bytes == n_bytes && k->small == small) return x->slots[i];
  }
  return NO_ROW;
}

static inline void key_index_put(key_index* x, uint64_t hash, uint32_t id) {
  uint32_t i = (uint32_t)hash & x->mask;
  while (x->slots[i] != NO_ROW) i = (i + 1) & x->mask;
  x->slots[i] = id;
}

/* Makes room for one more of `count` records, keeping the index at least twice their number so
 * probes stay short (rebuilt from the records when it grows); false when out of memory. */
static bool key_index_reserve(key_index* x, const void* base, size_t stride, uint32_t count) {
  if (x->slots != NULL && 2 * (count + 1) <= x->mask + 1) return true;
  const uint32_t n = x->slots ? (x->mask + 1) * 2 : 64;
  uint32_t* slots = malloc((size_t)n * sizeof *slots);
  if (slots == NULL) return false;
  memset(slots, 0xff, (size_t)n * sizeof *slots);
  free(x->slots);
  x->slots = slots;
  x->mask = n - 1;
  for (uint32_t r = 0; r < count; r++) {
    const record_key* k = key_of(base, stride, r);
    key_index_put(x, key_hash(k->n_bytes, k->small), r);
  }
  return true;
}

/* One sender's last cumulative counters for one (key, arm), and the aggregate row it feeds: 64
 * bytes, contiguous per sender in creation order, read in report order by absorb. (The sender's
 * extremes are not kept: a window takes the extremes of the report itself.) */
typedef struct {
  uint64_t n_bytes;
  uint32_t small;
  uint32_t row;
  uint64_t count, untimed;
  double sum_ns, sum_sq_ns;
  /* Per channel: the row's window in which this sender last counted in its ranks. */
  uint64_t counted_window[CPI_CHANNELS];
} sender_entry;
_Static_assert(offsetof(sender_entry, n_bytes) == offsetof(record_key, n_bytes) &&
               offsetof(sender_entry, small) == offsetof(record_key, small),
               "a sender entry begins with its key");

/* A sender's entries are dense in creation order, which is the order of its first report; a
 * plugin sends its slots in the same order every time, so successive reports walk the array
 * front to back. `last` remembers which entry each position of the previous report used: when
 * the key at a position is the same again, no hashing or probing is needed, and the hash index
 * is only consulted for keys that moved or are new. */
typedef struct {
  sender_entry* ents;     /* NULL until the sender's first report */
  uint32_t used, cap;
  key_index index;        /* over entry ids */
  uint32_t* last;         /* entry id per position of the previous report (NO_ROW: none) */
  uint32_t n_last, cap_last;
} sender_tab;

/* One channel's pending window of a row. */
typedef struct {
  bool pending;
  bool has_extremes;      /* a sender with timed samples contributed to min_ns / max_ns */
  uint32_t ranks;
  uint64_t window;        /* bumped at each take of this row; starts at 1 (entries start at 0) */
  uint64_t count, untimed, min_ns, max_ns;
  double sum_ns, sum_sq_ns;
} row_window;

typedef struct {
  uint64_t n_bytes;
  uint32_t small;
  row_window ch[CPI_CHANNELS];
} agg_row;
_Static_assert(offsetof(agg_row, n_bytes) == offsetof(record_key, n_bytes) &&
               offsetof(agg_row, small) == offsetof(record_key, small),
               "a row begins with its key");

struct cpi_agg {
  uint32_t max_rows, max_senders;
  agg_row* rows;          /* dense, in creation order */
  uint32_t n_rows, cap_rows;
  key_index index;        /* over row ids */
  uint32_t* pending[CPI_CHANNELS]; /* rows with samples, in first-touch order; each once */
  uint32_t n_pending[CPI_CHANNELS];
  sender_tab* senders;
  uint32_t n_senders;
  uint64_t stats_dropped;
};

#define MAX_LIMIT (1u << 24)

cpi_agg* cpi_agg_new(uint32_t max_rows, uint32_t max_senders) {
  if (max_rows == 0 || max_rows > MAX_LIMIT || max_senders == 0 || max_senders > MAX_LIMIT)
    return NULL;
  cpi_agg* a = calloc(1, sizeof *a);
  if (a == NULL) return NULL;
  a->max_rows = max_rows;
  a->max_senders = max_senders;
  return a;
}

void cpi_agg_free(cpi_agg* a) {
  if (a == NULL) return;
  for (uint32_t i = 0; i < a->n_senders; i++) {
    free(a->senders[i].ents);
    free(a->senders[i].index.slots);
    free(a->senders[i].last);
  }
  free(a->senders);
  free(a->rows);
  free(a->index.slots);
  for (int c = 0; c < CPI_CHANNELS; c++) free(a->pending[c]);
  free(a);
}

/* The row of (n_bytes, small), created if new; NO_ROW when full or out of memory. */
static uint32_t row_of(cpi_agg* a, uint64_t n_bytes, uint32_t small) {
  const uint64_t hash = key_hash(n_bytes, small);
  const uint32_t found = key_index_find(&a->index, a->rows, sizeof *a->rows, hash, n_bytes, small);
  if (found != NO_ROW) return found;
  if (a->n_rows >= a->max_rows) return NO_ROW;
  if (a->n_rows == a->cap_rows) {
    uint32_t cap = a->cap_rows ? a->cap_rows * 2 : 64;
    if (cap > a->max_rows) cap = a->max_rows;
    agg_row* rows = realloc(a->rows, (size_t)cap * sizeof *rows);
    if (rows == NULL) return NO_ROW;
    a->rows = rows;
    for (int c = 0; c < CPI_CHANNELS; c++) {
      uint32_t* pend = realloc(a->pending[c], (size_t)cap * sizeof *pend);
      if (pend == NULL) return NO_ROW; /* cap_rows unchanged: the next row retries every array */
      a->pending[c] = pend;
    }
    a->cap_rows = cap;
  }
  if (!key_index_reserve(&a->index, a->rows, sizeof *a->rows, a->n_rows)) return NO_ROW;
  const uint32_t id = a->n_rows++;
  a->rows[id] = (agg_row){.n_bytes = n_bytes, .small = small};
  for (int c = 0; c < CPI_CHANNELS; c++) a->rows[id].ch[c].window = 1;
  key_index_put(&a->index, hash, id);
  return id;
}

/* The id of the sender's entry for a key, created (with its row) if new; NO_ROW when a limit is
 * reached or memory runs out. *fresh tells whether it was just created (no previous counters). */
static uint32_t entry_lookup(cpi_agg* a, sender_tab* t, uint64_t n_bytes, uint32_t small,
                             bool* fresh) {
  *fresh = false;
  const uint64_t hash = key_hash(n_bytes, small);
  const uint32_t found = key_index_find(&t->index, t->ents, sizeof *t->ents, hash, n_bytes, small);
  if (found != NO_ROW) return found;
  if (t->used >= a->max_rows) return NO_ROW;
  if (t->used == t->cap) {
    uint32_t cap = t->cap ? t->cap * 2 : 32;
    if (cap > a->max_rows) cap = a->max_rows;
    sender_entry* ents = realloc(t->ents, (size_t)cap * sizeof *ents);
    if (ents == NULL) return NO_ROW;
    t->ents = ents;
    t->cap = cap;
  }
  if (!key_index_reserve(&t->index, t->ents, sizeof *t->ents, t->used)) return NO_ROW;
  const uint32_t row = row_of(a, n_bytes, small);
  if (row == NO_ROW) return NO_ROW;
  const uint32_t id = t->used++;
  t->ents[id] = (sender_entry){.n_bytes = n_bytes, .small = small, .row = row};
  key_index_put(&t->index, hash, id);
  *fresh = true;
  return id;
}

/* Sums over senders saturate at the wire's u64 (registry._credit does the same): no real
 * counters get there, and a hostile report must not wrap a window's count around. */
static uint64_t sat_add(uint64_t a, uint64_t b) { return a + b < a ? UINT64_MAX : a + b; }

static void credit_row(cpi_agg* a, sender_entry* e, const cp_wire_stat* s, uint64_t dc,
                       double ds, double dq, uint64_t du) {
  for (int c = 0; c < CPI_CHANNELS; c++) {
    row_window* w = &a->rows[e->row].ch[c];
    if (!w->pending) {
      w->pending = true;
      w->has_extremes = false;
      w->ranks = 0;
      w->count = w->untimed = 0;
      w->min_ns = w->max_ns = 0;
      w->sum_ns = w->sum_sq_ns = 0.0;
      a->pending[c][a->n_pending[c]++] = e->row;
    }
    w->count = sat_add(w->count, dc);
    w->sum_ns += ds > 0.0 ? ds : 0.0;
    w->sum_sq_ns += dq > 0.0 ? dq : 0.0;
    w->untimed = sat_add(w->untimed, du);
    if (s->count > 0) {
      /* The extremes over the contributing senders that have timed samples, of their
       * cumulative extremes: per-window extremes cannot be recovered from cumulative
       * summaries. (0 / 0 when no contributor has any.) */
      if (!w->has_extremes || s->min_ns < w->min_ns) w->min_ns = s->min_ns;
      if (!w->has_extremes || s->max_ns > w->max_ns) w->max_ns = s->max_ns;
      w->has_extremes = true;
    }
    if (e->counted_window[c] != w->window) {
      e->counted_window[c] = w->window;
      w->ranks++;
    }
  }
}

int cpi_agg_absorb(cpi_agg* a, uint32_t sender, const cpi_decoder* dec, int credit) {
  if (a == NULL || dec == NULL || sender >= a->max_senders) return -1;
  if (sender >= a->n_senders) {
    sender_tab* t = realloc(a->senders, (size_t)(sender + 1) * sizeof *t);
    if (t == NULL) return -1;
    memset(t + a->n_senders, 0, (size_t)(sender + 1 - a->n_senders) * sizeof *t);
    a->senders = t;
    a->n_senders = sender + 1;
  }
  sender_tab* t = &a->senders[sender];
  const uint32_t n = dec->head.n_stats;
  /* Without room to remember this report's positions, the next report just probes the index. */
  bool remember = true;
  if (n > t->cap_last) {
    uint32_t* last = realloc(t->last, (size_t)n * sizeof *last);
    if (last != NULL) {
      t->last = last;
      t->cap_last = n;
    } else {
      remember = false;
    }
  }
  const uint32_t n_last = remember ? t->n_last : 0;
  if (!remember) t->n_last = 0;
  for (uint32_t i = 0; i < n; i++) {
    const cp_wire_stat* s = &dec->stats[i];
    const uint32_t small = small_of(s);
    uint32_t id = i < n_last ? t->last[i] : NO_ROW;
    bool fresh = false;
    if (id == NO_ROW || t->ents[id].n_bytes != s->n_bytes || t->ents[id].small != small)
      id = entry_lookup(a, t, s->n_bytes, small, &fresh);
    if (remember) t->last[i] = id;
    if (id == NO_ROW) {
      a->stats_dropped++;
      continue;
    }
    sender_entry* e = &t->ents[id];
    const uint64_t pc = e->count, pu = e->untimed;
    const double ps = e->sum_ns, pq = e->sum_sq_ns;
    e->count = s->count;
    e->untimed = s->untimed;
    e->sum_ns = s->sum_ns;
    e->sum_sq_ns = s->sum_sq_ns;
    if (!credit) continue;
    uint64_t dc, du;
    double ds, dq;
    if (!fresh && s->count >= pc && s->untimed >= pu) {
      dc = s->count - pc;
      du = s->untimed - pu;
      if (dc == 0 && du == 0) continue;
      ds = s->sum_ns - ps;
      dq = s->sum_sq_ns - pq;
    } else { /* first report, or counters went back (a restarted plugin): take it whole */
      if (s->count == 0 && s->untimed == 0) continue;
      dc = s->count;
      du = s->untimed;
      ds = s->sum_ns;
      dq = s->sum_sq_ns;
    }
    credit_row(a, e, s, dc, ds, dq, du);
  }
  if (remember) t->n_last = n;
  return 0;
}

size_t cpi_agg_take(cpi_agg* a, uint32_t channel, cpi_obs* out, size_t cap) {
  if (a == NULL || channel >= CPI_CHANNELS || (out == NULL && cap > 0)) return 0;
  uint32_t* pending = a->pending[channel];
  const size_t n = cap < a->n_pending[channel] ? cap : a->n_pending[channel];
  for (size_t i = 0; i < n; i++) {
    const uint32_t id = pending[i];
    const agg_row* r = &a->rows[id];
    row_window* w = &a->rows[id].ch[channel];
    out[i] = (cpi_obs){.n_bytes = r->n_bytes, .count = w->count, .untimed = w->untimed,
                       .min_ns = w->min_ns, .max_ns = w->max_ns, .sum_ns = w->sum_ns,
                       .sum_sq_ns = w->sum_sq_ns, .coll = (int32_t)(r->small >> 24),
                       .algo = (int32_t)((r->small >> 16) & 0xff),
                       .proto = (int32_t)((r->small >> 8) & 0xff),
                       .n_channels = (int32_t)(r->small & 0xff), .ranks = w->ranks, .row = id};
    w->pending = false;
    w->window++;
  }
  a->n_pending[channel] -= (uint32_t)n;
  if (n > 0 && a->n_pending[channel] > 0)
    memmove(pending, pending + n, (size_t)a->n_pending[channel] * sizeof *pending);
  return n;
}

void cpi_agg_get_info(const cpi_agg* a, cpi_agg_info* info) {
  if (a == NULL || info == NULL) return;
  info->rows = a->n_rows;
  for (int c = 0; c < CPI_CHANNELS; c++) info->pending[c] = a->n_pending[c];
  info->senders = a->n_senders;
  info->stats_dropped = a->stats_dropped;
}
