/*
 * Tests of the daemon's native MEASUREMENTS ingestion (plugin/ingest/cpi_ingest.c).
 *
 * The decoder has two paths, and the one promise that matters is that the fast one is never more
 * lenient than the full decoder (cp_msg_decode) and never disagrees with it on a value. That is
 * checked on the golden vectors and on thousands of frames derived from a canonical 100-stat
 * report by structured mutations (forms, order, values at and past every constraint) and by raw
 * byte damage. The aggregator is checked against hand-computed expectations of registry.py's
 * semantics (CommState.absorb_cols, _credit, take_observations).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cp_codec.h"
/* Included, not linked: the decoded stats live in the decoder's private struct, and comparing
 * them field by field with cp_msg_decode's is the point of this test. */
#include "cpi_ingest.c"
#include "testutil.h"

#define VEC_DIR CCLPILOT_SOURCE_DIR "/proto/vectors"

/* ---- helpers ----------------------------------------------------------------------------------- */

/* splitmix64: the property test must replay exactly from its seed. */
static uint64_t g_rng;
static uint64_t rnd(void) {
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static uint64_t rnd_below(uint64_t n) { return n ? rnd() % n : 0; }

static const char* const k_stat_names[12] = {"coll",  "n_bytes",   "algo",   "proto",
                                             "n_channels", "count", "sum_ns", "sum_sq_ns",
                                             "min_ns", "max_ns",   "hist",   "untimed"};

static int same_bits(const void* a, const void* b, size_t n) { return memcmp(a, b, n) == 0; }

/* Name of the first field where the two stats differ (doubles compared bit for bit), or NULL. */
static const char* stat_diff(const cp_wire_stat* a, const cp_wire_stat* b) {
  if (a->coll != b->coll) return "coll";
  if (a->n_bytes != b->n_bytes) return "n_bytes";
  if (a->algo != b->algo) return "algo";
  if (a->proto != b->proto) return "proto";
  if (a->n_channels != b->n_channels) return "n_channels";
  if (a->count != b->count) return "count";
  if (!same_bits(&a->sum_ns, &b->sum_ns, sizeof a->sum_ns)) return "sum_ns";
  if (!same_bits(&a->sum_sq_ns, &b->sum_sq_ns, sizeof a->sum_sq_ns)) return "sum_sq_ns";
  if (a->min_ns != b->min_ns) return "min_ns";
  if (a->max_ns != b->max_ns) return "max_ns";
  if (memcmp(a->hist, b->hist, sizeof a->hist) != 0) return "hist";
  if (a->untimed != b->untimed) return "untimed";
  return NULL;
}

static const cp_wire_stat* dec_stats(const cpi_decoder* dec) { return dec->stats; }

/* The two message types cpi_decode_measurements takes: the same snapshot, maps or arrays. */
static int is_report(cp_msg_type t) {
  return t == CP_MSG_MEASUREMENTS || t == CP_MSG_MEASUREMENTS_PACKED;
}

/* Compares a cpi_decode_measurements outcome with cp_msg_decode's on the same bytes. Returns 1
 * when they agree; otherwise prints why (with ctx) and returns 0. *full_ok receives whether the
 * full decoder accepted a MEASUREMENTS. */
static int agree(cpi_decoder* dec, const uint8_t* buf, size_t len, const char* ctx, int* fast_r,
                 cpi_report_head* head, int* full_ok) {
  memset(head, 0xab, sizeof *head);
  const int r = cpi_decode_measurements(dec, buf, len, head);
  *fast_r = r;
  cp_msg m;
  cp_decode_error err;
  const cp_result rc = cp_msg_decode(buf, len, &m, &err);
  const int ok = rc == CP_OK && is_report(m.type);
  *full_ok = ok;
  int agreed = 1;
  if (r != (ok ? 1 : 0)) {
    fprintf(stderr, "%s: cpi_decode_measurements = %d, cp_msg_decode = %d (type %d, %s at '%s': %s)\n",
            ctx, r, (int)rc, (int)m.type, cp_error_code_name(err.kind), err.field, err.message);
    agreed = 0;
  } else if (ok) {
    const cp_msg_measurements* mm = &m.u.measurements;
    if (head->comm != mm->comm || head->calls != mm->calls || head->dropped != mm->dropped ||
        head->n_stats != mm->n_stats || head->exact > 1) {
      fprintf(stderr, "%s: head differs (comm %llu/%llu calls %llu/%llu dropped %llu/%llu n %u/%u exact %u)\n",
              ctx, (unsigned long long)head->comm, (unsigned long long)mm->comm,
              (unsigned long long)head->calls, (unsigned long long)mm->calls,
              (unsigned long long)head->dropped, (unsigned long long)mm->dropped, head->n_stats,
              mm->n_stats, head->exact);
      agreed = 0;
    } else {
      const cp_wire_stat* got = dec_stats(dec);
      for (uint32_t i = 0; i < mm->n_stats; i++) {
        const char* d = stat_diff(&got[i], &mm->stats[i]);
        if (d != NULL) {
          fprintf(stderr, "%s: stats.%u.%s differs from cp_msg_decode's (exact=%u)\n", ctx, i, d,
                  head->exact);
          agreed = 0;
          break;
        }
      }
    }
  }
  if (rc == CP_OK) cp_msg_free(&m);
  return agreed;
}

/* ---- golden vectors ---------------------------------------------------------------------------- */

/* manifest.json names every vector as "file": "valid/..." or "invalid/..."; that is all this test
 * needs (the full decoder says what each valid one is). */
static void test_vectors(void) {
  size_t mlen;
  uint8_t* text = cp_test_read_file(VEC_DIR "/manifest.json", &mlen);
  CHECK(text != NULL, "cannot read %s/manifest.json (CCLPILOT_SOURCE_DIR wrong?)", VEC_DIR);
  if (!text) return;
  text = realloc(text, mlen + 1);
  text[mlen] = '\0';
  cpi_decoder* dec = cpi_decoder_new();
  CHECK(dec != NULL, "decoder allocates");
  int n_valid = 0, n_invalid = 0, n_meas = 0, n_packed = 0, n_packed_invalid = 0;
  const char* p = (const char*)text;
  while ((p = strstr(p, "\"file\"")) != NULL) {
    p += 6;
    const char* q = strchr(p, '"');
    if (q == NULL) break;
    const char* e = strchr(q + 1, '"');
    if (e == NULL) break;
    char file[256];
    snprintf(file, sizeof file, "%.*s", (int)(e - q - 1), q + 1);
    p = e + 1;
    const int valid = strncmp(file, "valid/", 6) == 0;
    CHECK(valid || strncmp(file, "invalid/", 8) == 0, "manifest entry %s is neither", file);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", VEC_DIR, file);
    size_t len;
    uint8_t* bytes = cp_test_read_file(path, &len);
    CHECK(bytes != NULL, "cannot read %s", path);
    if (!bytes) continue;
    int r, full_ok;
    cpi_report_head head;
    CHECK(agree(dec, bytes, len, file, &r, &head, &full_ok), "%s: ingest and codec agree", file);
    if (valid) {
      n_valid++;
      cp_msg m;
      cp_decode_error err;
      CHECK(cp_msg_decode(bytes, len, &m, &err) == CP_OK, "%s: a valid vector decodes", file);
      const int is_meas = is_report(m.type);
      n_packed += m.type == CP_MSG_MEASUREMENTS_PACKED;
      cp_msg_free(&m);
      CHECK_INT_EQ(r, is_meas ? 1 : 0);
      if (is_meas) {
        n_meas++;
        /* Valid vectors hold canonical encodings (PROTOCOL.md part 2), so the fast path takes
         * them: the full decoder is the fallback, not the common case. */
        CHECK(r == 1 && head.exact == 0, "%s: canonical MEASUREMENTS takes the fast path", file);
      }
    } else {
      n_invalid++;
      n_packed_invalid += strncmp(file, "invalid/packed_", 15) == 0;
      CHECK(r == 0, "%s: invalid vector refused (got %d)", file, r);
    }
    free(bytes);
  }
  CHECK(n_valid >= 10 && n_invalid >= 10, "manifest lists vectors (%d valid, %d invalid)", n_valid,
        n_invalid);
  CHECK(n_meas >= 4, "the vectors include MEASUREMENTS (%d)", n_meas);
  CHECK(n_packed >= 2 && n_packed_invalid >= 11, "the vectors include MEASUREMENTS_PACKED (%d "
        "valid, %d invalid)", n_packed, n_packed_invalid);
  printf("golden vectors: %d valid (%d reports, %d packed), %d invalid (%d packed)\n", n_valid,
         n_meas, n_packed, n_invalid, n_packed_invalid);

  /* Other refusals: nothing, NULL arguments. */
  cpi_report_head head;
  static const uint8_t one = 0x80;
  CHECK_INT_EQ(cpi_decode_measurements(dec, &one, 0, &head), 0);
  CHECK_INT_EQ(cpi_decode_measurements(NULL, &one, 1, &head), -1);
  CHECK_INT_EQ(cpi_decode_measurements(dec, &one, 1, NULL), -1);
  CHECK_INT_EQ(cpi_decode_measurements(dec, NULL, 1, &head), -1);
  CHECK_INT_EQ(cpi_api_version(), CPI_API_VERSION);
  cpi_decoder_free(dec);
  cpi_decoder_free(NULL);
  free(text);
}

/* ---- a msgpack writer with a choice of forms ---------------------------------------------------- */

typedef struct {
  uint8_t* p;
  size_t n, cap;
} obuf;

static void put(obuf* o, const void* src, size_t n) {
  if (o->n + n > o->cap) {
    o->cap = (o->n + n) * 2 + 64;
    o->p = realloc(o->p, o->cap);
  }
  memcpy(o->p + o->n, src, n);
  o->n += n;
}
static void put1(obuf* o, uint8_t b) { put(o, &b, 1); }
static void put_be(obuf* o, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--) put1(o, (uint8_t)(v >> (8 * i)));
}

/* How a value is written. The canonical form of an integer is the smallest. */
enum {
  V_UINT,     /* u, form: 0 smallest, 1 0xcc, 2 0xcd, 3 0xce, 4 0xcf, 5 smallest signed form */
  V_NEG,      /* -(int64)u (u >= 1), smallest negative form */
  V_F64,      /* d as float64 */
  V_F32,      /* d as float32 (the writer rounds) */
  V_NIL,
  V_TRUE,
  V_STR,      /* "x" */
};

typedef struct {
  uint8_t kind, form;
  uint64_t u;
  double d;
} val;

static void put_uint(obuf* o, uint64_t v, int form) {
  static const uint8_t tags[5] = {0, 0xcc, 0xcd, 0xce, 0xcf};
  static const int widths[5] = {0, 1, 2, 4, 8};
  if (form >= 1 && form <= 4 && (widths[form] == 8 || v >> (8 * widths[form]) == 0)) {
    put1(o, tags[form]);
    put_be(o, v, widths[form]);
    return;
  }
  if (form == 5 && v <= (uint64_t)INT64_MAX) {
    if (v <= 0x7f) put1(o, 0xd0), put_be(o, v, 1);
    else if (v <= 0x7fff) put1(o, 0xd1), put_be(o, v, 2);
    else if (v <= 0x7fffffff) put1(o, 0xd2), put_be(o, v, 4);
    else put1(o, 0xd3), put_be(o, v, 8);
    return;
  }
  if (v <= 0x7f) put1(o, (uint8_t)v);
  else if (v <= 0xff) put1(o, 0xcc), put_be(o, v, 1);
  else if (v <= 0xffff) put1(o, 0xcd), put_be(o, v, 2);
  else if (v <= 0xffffffffull) put1(o, 0xce), put_be(o, v, 4);
  else put1(o, 0xcf), put_be(o, v, 8);
}

static void put_neg(obuf* o, uint64_t mag) {
  const int64_t v = -(int64_t)(mag > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : mag);
  if (v >= -32) put1(o, (uint8_t)(int8_t)v);
  else if (v >= INT8_MIN) put1(o, 0xd0), put_be(o, (uint64_t)v, 1);
  else if (v >= INT16_MIN) put1(o, 0xd1), put_be(o, (uint64_t)v, 2);
  else if (v >= INT32_MIN) put1(o, 0xd2), put_be(o, (uint64_t)v, 4);
  else put1(o, 0xd3), put_be(o, (uint64_t)v, 8);
}

static void put_val(obuf* o, const val* v) {
  switch (v->kind) {
    case V_UINT: put_uint(o, v->u, v->form); break;
    case V_NEG: put_neg(o, v->u); break;
    case V_F64: {
      uint64_t bits;
      memcpy(&bits, &v->d, sizeof bits);
      put1(o, 0xcb);
      put_be(o, bits, 8);
      break;
    }
    case V_F32: {
      const float f = (float)v->d;
      uint32_t bits;
      memcpy(&bits, &f, sizeof bits);
      put1(o, 0xca);
      put_be(o, bits, 4);
      break;
    }
    case V_NIL: put1(o, 0xc0); break;
    case V_TRUE: put1(o, 0xc3); break;
    default: put1(o, 0xa1), put1(o, 'x'); break;
  }
}

static void put_str(obuf* o, const char* s) {
  const size_t n = strlen(s);
  put1(o, (uint8_t)(0xa0 | n));
  put(o, s, n);
}

/* Container header; form 0 smallest, 1 the 16-bit form, 2 the 32-bit form. */
static void put_hdr(obuf* o, uint32_t n, int is_map, int form) {
  if (form == 0 && n <= 15) {
    put1(o, (uint8_t)((is_map ? 0x80 : 0x90) | n));
  } else if (form <= 1 && n <= 0xffff) {
    put1(o, is_map ? 0xde : 0xdc);
    put_be(o, n, 2);
  } else {
    put1(o, is_map ? 0xdf : 0xdd);
    put_be(o, n, 4);
  }
}

/* ---- the model of a MEASUREMENTS frame ----------------------------------------------------------- */

#define N_STATS 100
#define MAX_HIST 50

typedef struct {
  val f[12];               /* table order; f[10] (hist) unused, see h */
  val h[MAX_HIST];
  int n_hist;
  int hist_form;
  int order[12];           /* emission order of the fields */
  int n_fields;            /* < 12: the last ones in `order` are left out */
  int extra;               /* an undeclared field appended */
  int map_form;            /* packed: the row's array header form */
  int as_map;              /* packed: the row written as a Stat map */
} mstat;

typedef struct {
  val comm, calls, dropped;
  int order[5];
  int stats_form;
  int map_form;
  uint32_t n_stats;
  int packed;              /* MEASUREMENTS_PACKED: rows are arrays, h[] is [first, counts...] */
  mstat s[N_STATS];
} mmsg;

static val vu(uint64_t u) { return (val){.kind = V_UINT, .u = u}; }
static val vd(double d) { return (val){.kind = V_F64, .d = d}; }

/* The same report as a cp_msg, for the real encoder. */
static void msg_of_stats(cp_msg* m, const cp_wire_stat* st, uint32_t n) {
  cp_msg_init(m, CP_MSG_MEASUREMENTS);
  m->u.measurements.comm = 0x1234567890abcdefull;
  m->u.measurements.calls = 987654321;
  m->u.measurements.dropped = 7;
  m->u.measurements.n_stats = n;
  m->u.measurements.stats = calloc(n ? n : 1, sizeof(cp_wire_stat));
  memcpy(m->u.measurements.stats, st, n * sizeof(cp_wire_stat));
}

/* A plausible stat: all fields in range, a mix of widths, some untimed-only slots. */
static void random_stat(cp_wire_stat* s, uint32_t i) {
  memset(s, 0, sizeof *s);
  s->coll = (int)rnd_below(5);
  static const uint64_t sizes[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295ull,
                                   4294967296ull, UINT64_MAX};
  s->n_bytes = i < 11 ? sizes[i] : (uint64_t)1 << rnd_below(40);
  s->n_bytes += i;  /* distinct keys */
  s->algo = (int)rnd_below(7);
  s->proto = (int)rnd_below(3);
  s->n_channels = (int)rnd_below(65);
  s->untimed = rnd_below(4) == 0 ? rnd_below(1000) : 0;
  if (i % 9 == 4) return; /* count 0: sums, extremes and histogram stay 0 */
  s->count = 1 + rnd_below(i % 3 == 0 ? 100 : 5000000000ull);
  s->min_ns = 1 + rnd_below(100000);
  s->max_ns = s->min_ns + rnd_below(i % 5 == 0 ? 10 : 100000000000ull);
  s->sum_ns = (double)s->min_ns * (double)s->count + (double)rnd_below(1u << 20) / 8.0;
  s->sum_sq_ns = s->sum_ns * (double)s->max_ns;
  for (int b = 0; b < CP_HIST_BUCKETS; b++)
    s->hist[b] = rnd_below(3) == 0 ? (uint32_t)rnd_below(b == 7 ? 0x100000000ull : 300) : 0;
}

static void model_of(mmsg* mm, const cp_msg* m, int packed) {
  memset(mm, 0, sizeof *mm);
  const cp_msg_measurements* x = &m->u.measurements;
  mm->comm = vu(x->comm);
  mm->calls = vu(x->calls);
  mm->dropped = vu(x->dropped);
  for (int k = 0; k < 5; k++) mm->order[k] = k;
  mm->n_stats = x->n_stats;
  for (uint32_t i = 0; i < x->n_stats; i++) {
    const cp_wire_stat* s = &x->stats[i];
    mstat* t = &mm->s[i];
    t->f[0] = vu((uint64_t)s->coll);
    t->f[1] = vu(s->n_bytes);
    t->f[2] = vu((uint64_t)s->algo);
    t->f[3] = vu((uint64_t)s->proto);
    t->f[4] = vu((uint64_t)s->n_channels);
    t->f[5] = vu(s->count);
    t->f[6] = vd(s->sum_ns);
    t->f[7] = vd(s->sum_sq_ns);
    t->f[8] = vu(s->min_ns);
    t->f[9] = vu(s->max_ns);
    t->f[11] = vu(s->untimed);
    t->n_hist = CP_HIST_BUCKETS;
    for (int b = 0; b < CP_HIST_BUCKETS; b++) t->h[b] = vu(s->hist[b]);
    if (packed) { /* the shortest run */
      int lo = 0, hi = CP_HIST_BUCKETS - 1;
      while (lo < CP_HIST_BUCKETS && s->hist[lo] == 0) lo++;
      while (hi >= lo && s->hist[hi] == 0) hi--;
      t->n_hist = lo < CP_HIST_BUCKETS ? hi - lo + 2 : 0;
      if (t->n_hist > 0) t->h[0] = vu((uint64_t)lo);
      for (int b = lo; b <= hi; b++) t->h[b - lo + 1] = vu(s->hist[b]);
    }
    for (int k = 0; k < 12; k++) t->order[k] = k;
    t->n_fields = 12;
  }
  mm->packed = packed;
}

static void emit(obuf* o, const mmsg* mm) {
  o->n = 0;
  put_hdr(o, 5, 1, mm->map_form);
  for (int k = 0; k < 5; k++) {
    switch (mm->order[k]) {
      case 0: put_str(o, "t"), put_str(o, mm->packed ? "MEASUREMENTS_PACKED" : "MEASUREMENTS"); break;
      case 1: put_str(o, "comm"), put_val(o, &mm->comm); break;
      case 2: put_str(o, "calls"), put_val(o, &mm->calls); break;
      case 3: put_str(o, "dropped"), put_val(o, &mm->dropped); break;
      default:
        put_str(o, "stats");
        put_hdr(o, mm->n_stats, 0, mm->stats_form);
        for (uint32_t i = 0; i < mm->n_stats; i++) {
          const mstat* t = &mm->s[i];
          if (mm->packed && !t->as_map) {
            put_hdr(o, (uint32_t)(t->n_fields + (t->extra ? 1 : 0)), 0, t->map_form);
            for (int k2 = 0; k2 < t->n_fields; k2++) {
              const int f = t->order[k2];
              if (f == 10) {
                put_hdr(o, (uint32_t)t->n_hist, 0, t->hist_form);
                for (int b = 0; b < t->n_hist; b++) put_val(o, &t->h[b]);
              } else {
                put_val(o, &t->f[f]);
              }
            }
            if (t->extra) put1(o, 0x00);
            continue;
          }
          put_hdr(o, (uint32_t)(t->n_fields + (t->extra ? 1 : 0)), 1, t->map_form);
          for (int k2 = 0; k2 < t->n_fields; k2++) {
            const int f = t->order[k2];
            put_str(o, k_stat_names[f]);
            if (f == 10) {
              put_hdr(o, (uint32_t)t->n_hist, 0, t->hist_form);
              for (int b = 0; b < t->n_hist; b++) put_val(o, &t->h[b]);
            } else {
              put_val(o, &t->f[f]);
            }
          }
          if (t->extra) put_str(o, "bogus"), put1(o, 0x00);
        }
    }
  }
}

/* Exact float32 for a double: the mutation that keeps a value while changing its form. */
static int f32_exact(double d) { return (double)(float)d == d || isnan(d); }

/* One structured mutation. Returns 1 when the result is meant to stay canonical (forms and order
 * untouched), which makes the fast path mandatory if the full decoder accepts it. */
static int mutate(mmsg* mm) {
  mstat* t = &mm->s[rnd_below(mm->n_stats ? mm->n_stats : 1)];
  const int f = (int)rnd_below(12);
  /* Packed rows hold [first, counts...]: only the written elements are worth changing. */
  const uint64_t hn = mm->packed ? (uint64_t)t->n_hist : CP_HIST_BUCKETS;
  val* v = f == 10 ? &t->h[rnd_below(hn ? hn : 1)] : &t->f[f];
  switch (rnd_below(24)) {
    case 0: /* widen an integer */
      if (v->kind == V_UINT) v->form = (uint8_t)(1 + rnd_below(5));
      return 0;
    case 1: /* float64 -> float32, where the value survives */
      if (v->kind == V_F64 && f32_exact(v->d)) v->kind = V_F32;
      return 0;
    case 2: /* float64 -> float32, rounding */
      if (v->kind == V_F64) v->kind = V_F32;
      return 0;
    case 3: { /* swap two fields */
      const int a = (int)rnd_below(12), b = (int)rnd_below(12);
      const int x = t->order[a];
      t->order[a] = t->order[b];
      t->order[b] = x;
      return a == b;
    }
    case 4: { /* swap two top-level fields */
      const int a = (int)rnd_below(5), b = (int)rnd_below(5);
      const int x = mm->order[a];
      mm->order[a] = mm->order[b];
      mm->order[b] = x;
      return a == b;
    }
    case 5: /* a negative number */
      *v = (val){.kind = V_NEG, .u = 1 + rnd_below(rnd_below(2) ? 40 : UINT64_MAX)};
      return 1;
    case 6: { /* NaN, infinities, -1.0, -0.0 in a sum */
      static const double odd[] = {NAN, INFINITY, -INFINITY, -1.0, -0.0, 1e308, 5e-324};
      val* s = &t->f[6 + rnd_below(2)];
      s->d = odd[rnd_below(sizeof odd / sizeof odd[0])];
      return 1;
    }
    case 7: /* a histogram bucket at and past u32 */
      if (mm->packed && t->n_hist < 2) return 1;
      v = mm->packed ? &t->h[1 + rnd_below((uint64_t)t->n_hist - 1)] : &t->h[rnd_below(CP_HIST_BUCKETS)];
      *v = vu(UINT32_MAX + rnd_below(2));
      return 1;
    case 8: { /* count 0 with whatever else is there */
      t->f[5] = vu(0);
      if (rnd_below(2)) {
        t->f[6] = vd(0.0);
        t->f[7] = vd(rnd_below(2) ? 0.0 : -0.0);
        for (int b = 0; b < CP_HIST_BUCKETS; b++) t->h[b] = vu(0);
        if (mm->packed) t->n_hist = 0;
      }
      return 1;
    }
    case 9: /* min above max */
      t->f[8] = vu(t->f[9].u + 1 + rnd_below(3));
      return 1;
    case 10: /* min equal to max */
      t->f[8] = vu(t->f[9].u);
      return 1;
    case 11: { /* enum fields at and past their bounds */
      static const uint64_t lim[5] = {4, 0, 6, 2, 64};
      const int g = (int)rnd_below(5);
      if (g == 1) return 1;
      const uint64_t up = rnd_below(3); /* two statements: the draws must happen in order */
      t->f[g] = vu(lim[g] + up - (rnd_below(2) ? 1 : 0));
      return 1;
    }
    case 12: /* extremes of u64 fields */
      if (v->kind == V_UINT && f != 10) v->u = rnd_below(2) ? UINT64_MAX : 0;
      return 1;
    case 13: /* a wrong type */
      v->kind = (uint8_t)(V_NIL + rnd_below(3));
      return 1;
    case 14: /* an integer where a float belongs, a float where an integer belongs */
      if (v->kind == V_F64) *v = vu(v->d >= 0.0 && v->d < 1e19 ? (uint64_t)v->d : 1);
      else if (v->kind == V_UINT) *v = vd((double)v->u);
      return 1;
    case 15: /* a histogram of the wrong length (packed: a run one longer or shorter) */
      if (mm->packed) {
        if (rnd_below(2) && t->n_hist > 0) t->n_hist--;
        else if (t->n_hist < MAX_HIST) t->h[t->n_hist++] = vu(rnd_below(2) ? 0 : 1 + rnd_below(9));
        return 0;
      }
      t->n_hist = CP_HIST_BUCKETS + (rnd_below(2) ? 1 : -1);
      t->h[CP_HIST_BUCKETS] = vu(0);
      return 1;
    case 16: /* a field missing, or one too many */
      if (rnd_below(2)) t->n_fields = 11;
      else t->extra = 1;
      return 1;
    case 17: /* container header forms */
      switch (rnd_below(4)) {
        case 0: t->map_form = 1; break;
        case 1: t->hist_form = 2; break;
        case 2: mm->stats_form = (int)(1 + rnd_below(2)); break;
        default: mm->map_form = 1; break;
      }
      return 0;
    case 18: /* fewer stats */
      mm->n_stats = (uint32_t)rnd_below(mm->n_stats + 1);
      return 1;
    case 19: /* head values */
      if (rnd_below(2)) mm->comm = vu(rnd());
      else mm->dropped = vu(rnd_below(2) ? UINT64_MAX : rnd_below(200));
      return 1;
    case 20: /* a non-negative integer in a signed form (accepted, not canonical) */
      if (v->kind == V_UINT) v->form = 5;
      return 0;
    default: /* a plain value change within range */
      if (v->kind == V_UINT && f >= 5 && f != 10) v->u = rnd_below(2) ? v->u + 1 : v->u / 2;
      else if (v->kind == V_UINT && f == 10) v->u = rnd_below(0x100000000ull);
      else if (v->kind == V_F64) v->d = v->d * 0.5;
      return 1;
  }
}

/* Mutations of the rules of the packed form itself (PROTOCOL.md "PackedStat"), mixed with the
 * generic ones. Same contract as mutate(). */
static int mutate_packed(mmsg* mm) {
  if (rnd_below(3) != 0) return mutate(mm);
  mstat* t = &mm->s[rnd_below(mm->n_stats ? mm->n_stats : 1)];
  const int n = t->n_hist; /* 0, or 1 + the counts */
  const uint64_t first = n > 0 && t->h[0].kind == V_UINT ? t->h[0].u : 0;
  switch (rnd_below(11)) {
    case 0: /* a zero count before the run: valid, not canonical */
      if (n < 2 || n >= MAX_HIST) return 1;
      memmove(&t->h[2], &t->h[1], (size_t)(n - 1) * sizeof(val));
      t->h[1] = vu(0);
      t->n_hist++;
      if (first > 0) t->h[0] = vu(first - 1);
      return 0;
    case 1: /* a zero count after it: valid unless it runs past the last bucket */
      if (n < 2 || n >= MAX_HIST) return 1;
      t->h[t->n_hist++] = vu(0);
      return 0;
    case 2: /* first out of range */
      if (n == 0) t->n_hist = 2, t->h[1] = vu(1);
      t->h[0] = vu(CP_HIST_BUCKETS + rnd_below(3));
      return 1;
    case 3: /* a run reaching past bucket 47 */
      if (n < 2) return 1;
      t->h[0] = vu((uint64_t)(CP_HIST_BUCKETS - (n - 1) + 1 + (int)rnd_below(2)));
      return 1;
    case 4: /* first only */
      t->n_hist = 1;
      t->h[0] = vu(first);
      return 1;
    case 5: /* one element too many, or exactly the longest run */
      t->n_hist = CP_HIST_BUCKETS + (int)rnd_below(2) + 1;
      t->h[0] = vu(0);
      for (int b = 1; b < t->n_hist; b++) t->h[b] = vu(1 + rnd_below(5));
      return 1;
    case 6: /* a row that is not an array */
      t->as_map = 1;
      return 1;
    case 7: /* the same counts elsewhere: still canonical when it fits */
      if (n < 2) return 1;
      t->h[0] = vu(rnd_below((uint64_t)(CP_HIST_BUCKETS - (n - 1) + 1)));
      return 1;
    case 8: { /* a zero count inside the run (canonical) or at its end (not) */
      if (n < 2) return 1;
      const int k = 1 + (int)rnd_below((uint64_t)n - 1);
      t->h[k] = vu(0);
      return k != 1 && k != n - 1;
    }
    case 9: /* count 0 and zero sums, the histogram kept */
      t->f[5] = vu(0);
      t->f[6] = vd(0.0);
      t->f[7] = vd(0.0);
      return 1;
    default: /* an empty histogram under a positive count: valid */
      t->n_hist = 0;
      return 1;
  }
}

/* Raw damage on top of the structured mutations. */
static void damage(obuf* o) {
  if (o->n == 0) return;
  const size_t at = rnd_below(o->n);
  switch (rnd_below(6)) {
    case 0: o->p[at] ^= (uint8_t)(1u << rnd_below(8)); break;
    case 1: o->n = at; break;
    case 2: { /* insert a byte */
      static const uint8_t interesting[] = {0x00, 0x7f, 0x80, 0xc0, 0xc1, 0xcc, 0xcf, 0xca,
                                            0xcb, 0xdc, 0xdd, 0xff};
      put1(o, 0);
      memmove(o->p + at + 1, o->p + at, o->n - at - 1);
      o->p[at] = interesting[rnd_below(sizeof interesting)];
      break;
    }
    case 3: /* delete a byte */
      memmove(o->p + at, o->p + at + 1, o->n - at - 1);
      o->n--;
      break;
    case 4: o->p[at] = (uint8_t)rnd(); break;
    default: put1(o, (uint8_t)rnd()); break; /* trailing byte */
  }
}

/* Runs of a few buckets, one from bucket 0, one to bucket 47: what the packed form is for. */
static void sparse_hist(cp_wire_stat* s, uint32_t i) {
  if (s->count == 0 || i % 4 == 3) return;
  const int lo = i == 1 ? 0 : i == 2 ? CP_HIST_BUCKETS - 4 : (int)rnd_below(CP_HIST_BUCKETS - 4);
  for (int b = 0; b < CP_HIST_BUCKETS; b++)
    s->hist[b] = b >= lo && b < lo + 4 ? 1 + (uint32_t)rnd_below(1000) : 0;
}

static void differential(int packed) {
  g_rng = packed ? 20250301 : 20240611;
  cp_wire_stat base[N_STATS];
  for (uint32_t i = 0; i < N_STATS; i++) random_stat(&base[i], i);
  if (packed)
    for (uint32_t i = 0; i < N_STATS; i++) sparse_hist(&base[i], i);
  cp_msg m;
  msg_of_stats(&m, base, N_STATS);
  if (packed) m.type = CP_MSG_MEASUREMENTS_PACKED;
  cp_buf enc;
  cp_buf_init(&enc, 0);
  cp_decode_error err;
  CHECK(cp_msg_encode(&m, &enc, &err) == CP_OK, "base report encodes: %s", err.message);

  static mmsg model, mutant;
  model_of(&model, &m, packed);
  obuf o = {0};
  emit(&o, &model);
  CHECK(o.n == enc.len && memcmp(o.p, enc.data, o.n) == 0,
        "the test's writer reproduces the canonical encoding (%zu vs %zu bytes)", o.n, enc.len);

  cpi_decoder* dec = cpi_decoder_new();
  cpi_report_head head;
  int r, ok;
  CHECK(agree(dec, enc.data, enc.len, "base", &r, &head, &ok), "base agrees");
  CHECK(r == 1 && head.exact == 0 && head.n_stats == N_STATS, "base report takes the fast path");

  enum { ITER = 4000 };
  long fast = 0, exact = 0, refused = 0, canon_fast = 0, disagreements = 0;
  cp_buf re;
  cp_buf_init(&re, 0);
  for (int it = 0; it < ITER; it++) {
    mutant = model;
    int canonical = 1;
    const int n_mut = 1 + (int)rnd_below(3);
    for (int k = 0; k < n_mut; k++) canonical &= packed ? mutate_packed(&mutant) : mutate(&mutant);
    emit(&o, &mutant);
    const int damaged = rnd_below(4) == 0;
    if (damaged) damage(&o);
    char ctx[96];
    snprintf(ctx, sizeof ctx, "%s iteration %d (%d mutations%s, %zu bytes)",
             packed ? "packed" : "maps", it, n_mut, damaged ? ", damaged" : "", o.n);
    if (!agree(dec, o.p, o.n, ctx, &r, &head, &ok)) {
      disagreements++;
      if (disagreements <= 5) {
        char path[160];
        snprintf(path, sizeof path, "test_ingest_disagreement_%s%d.msgpack", packed ? "p" : "",
                 it);
        FILE* f = fopen(path, "wb");
        if (f) fwrite(o.p, 1, o.n, f), fclose(f);
        fprintf(stderr, "  frame written to %s\n", path);
      }
      continue;
    }
    if (r != 1) {
      refused++;
      continue;
    }
    if (head.exact) exact++;
    else fast++;
    /* Ground truth for "canonical": the real encoder writes these very bytes back. */
    cp_msg d;
    CHECK(cp_msg_decode(o.p, o.n, &d, &err) == CP_OK, "accepted frame decodes");
    const int is_canon = cp_msg_encode(&d, &re, &err) == CP_OK && re.len == o.n &&
                         memcmp(re.data, o.p, o.n) == 0;
    cp_msg_free(&d);
    if (is_canon) {
      CHECK(head.exact == 0, "%s: canonical and valid, yet the fast path declined", ctx);
      canon_fast += head.exact == 0;
    }
    if (canonical && !damaged)
      CHECK(is_canon, "%s: a form-preserving mutation left a non-canonical frame", ctx);
  }
  CHECK(disagreements == 0, "%ld of %d mutated frames: fast/full disagreement", disagreements,
        ITER);
  /* The mutations must reach every outcome, or the property above proves little. */
  CHECK(fast > ITER / 10 && exact > ITER / 20 && refused > ITER / 5 && canon_fast > ITER / 20,
        "coverage: %ld fast, %ld exact, %ld refused, %ld canonical", fast, exact, refused,
        canon_fast);
  printf("differential (%s): %d frames: %ld fast path, %ld full decoder, %ld refused (%ld "
         "canonical)\n", packed ? "packed" : "maps", ITER, fast, exact, refused, canon_fast);

  /* A refused frame leaves nothing for absorb to take. */
  cpi_agg* agg = cpi_agg_new(16, 2);
  static const uint8_t junk[] = {0x85, 0xa1, 't'};
  CHECK_INT_EQ(cpi_decode_measurements(dec, enc.data, enc.len, &head), 1);
  CHECK_INT_EQ(cpi_decode_measurements(dec, enc.data, enc.len - 1, &head), 0);
  CHECK_INT_EQ(cpi_agg_absorb(agg, 0, dec, 1), 0);
  CHECK_INT_EQ(cpi_decode_measurements(dec, junk, sizeof junk, &head), 0);
  CHECK_INT_EQ(cpi_agg_absorb(agg, 1, dec, 1), 0);
  cpi_agg_info info;
  cpi_agg_get_info(agg, &info);
  CHECK(info.rows == 0 && info.pending[0] == 0 && info.pending[1] == 0,
        "nothing absorbed after a refusal (rows %llu)", (unsigned long long)info.rows);
  cpi_agg_free(agg);

  cpi_decoder_free(dec);
  cp_buf_free(&re);
  cp_buf_free(&enc);
  cp_msg_free(&m);
  free(o.p);
}

static void test_differential(void) {
  differential(0);
  differential(1);
}

/* ---- aggregation ------------------------------------------------------------------------------- */

/* A (key, arm) of the tests: coll, n_bytes, algo, proto, n_channels. */
typedef struct {
  int coll;
  uint64_t n_bytes;
  int algo, proto, nch;
} tkey;

static const tkey K1 = {0, 1024, 1, 2, 4}, K2 = {1, 1 << 20, 4, 0, 16}, K3 = {4, 7, 0, 1, 0},
                  K4 = {2, 65536, 6, 2, 64}, K5 = {3, UINT64_MAX, 2, 0, 1},
                  K6 = {0, 1024, 1, 2, 5};

static cp_wire_stat st(tkey k, uint64_t count, double sum, double sq, uint64_t lo, uint64_t hi,
                       uint64_t untimed) {
  cp_wire_stat s;
  memset(&s, 0, sizeof s);
  s.coll = k.coll;
  s.n_bytes = k.n_bytes;
  s.algo = k.algo;
  s.proto = k.proto;
  s.n_channels = k.nch;
  s.count = count;
  s.sum_ns = sum;
  s.sum_sq_ns = sq;
  s.min_ns = lo;
  s.max_ns = hi;
  s.untimed = untimed;
  if (count > 0) s.hist[3] = (uint32_t)(count > UINT32_MAX ? UINT32_MAX : count);
  return s;
}

static cpi_decoder* g_dec;

/* Encodes the stats as one report, decodes it through the fast path, absorbs it. */
static int absorb(cpi_agg* agg, uint32_t sender, int credit, const cp_wire_stat* s, uint32_t n) {
  cp_msg m;
  msg_of_stats(&m, s, n);
  cp_buf b;
  cp_buf_init(&b, 0);
  cp_decode_error err;
  int rc = -2;
  if (cp_msg_encode(&m, &b, &err) != CP_OK) {
    CHECK(0, "test report encodes: %s", err.message);
  } else {
    cpi_report_head head;
    const int r = cpi_decode_measurements(g_dec, b.data, b.len, &head);
    CHECK(r == 1 && head.exact == 0 && head.n_stats == n, "test report decodes (%d)", r);
    rc = cpi_agg_absorb(agg, sender, g_dec, credit);
  }
  cp_buf_free(&b);
  cp_msg_free(&m);
  return rc;
}
#define ABSORB(agg, sender, credit, ...)                                             \
  do {                                                                              \
    const cp_wire_stat absorb_s_[] = {__VA_ARGS__};                                 \
    CHECK_INT_EQ(absorb((agg), (sender), (credit), absorb_s_,                       \
                        (uint32_t)(sizeof absorb_s_ / sizeof absorb_s_[0])), 0);     \
  } while (0)

static int key_is(const cpi_obs* o, tkey k) {
  return o->coll == k.coll && o->n_bytes == k.n_bytes && o->algo == k.algo &&
         o->proto == k.proto && o->n_channels == k.nch;
}

/* One expected observation. */
static void expect(const cpi_obs* o, tkey k, uint64_t count, double sum, double sq, uint64_t lo,
                   uint64_t hi, uint64_t untimed, uint32_t ranks, const char* what) {
  CHECK(key_is(o, k), "%s: key (%d, %llu, %d, %d, %d), got (%d, %llu, %d, %d, %d)", what, k.coll,
        (unsigned long long)k.n_bytes, k.algo, k.proto, k.nch, o->coll,
        (unsigned long long)o->n_bytes, o->algo, o->proto, o->n_channels);
  CHECK(o->count == count && o->untimed == untimed && o->ranks == ranks,
        "%s: count %llu untimed %llu ranks %u, want %llu %llu %u", what,
        (unsigned long long)o->count, (unsigned long long)o->untimed, o->ranks,
        (unsigned long long)count, (unsigned long long)untimed, ranks);
  CHECK(o->sum_ns == sum && o->sum_sq_ns == sq, "%s: sums %.17g %.17g, want %.17g %.17g", what,
        o->sum_ns, o->sum_sq_ns, sum, sq);
  CHECK(o->min_ns == lo && o->max_ns == hi, "%s: min %llu max %llu, want %llu %llu", what,
        (unsigned long long)o->min_ns, (unsigned long long)o->max_ns, (unsigned long long)lo,
        (unsigned long long)hi);
}

static size_t take(cpi_agg* agg, uint32_t ch, cpi_obs* out, size_t cap) {
  memset(out, 0xcd, cap * sizeof *out);
  return cpi_agg_take(agg, ch, out, cap);
}

static void drain(cpi_agg* agg) {
  cpi_obs o[64];
  while (take(agg, 0, o, 64) > 0) {
  }
  while (take(agg, 1, o, 64) > 0) {
  }
}

static void test_differencing(void) {
  cpi_agg* a = cpi_agg_new(64, 8);
  CHECK(a != NULL, "aggregate allocates");
  cpi_obs o[8];

  /* The first report is taken whole. */
  ABSORB(a, 0, 1, st(K1, 10, 1000.0, 120000.0, 50, 200, 3));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K1, 10, 1000.0, 120000.0, 50, 200, 3, 1, "first report");
  CHECK_INT_EQ(o[0].row, 0);

  /* Later ones by difference; the extremes are the cumulative ones. */
  ABSORB(a, 0, 1, st(K1, 15, 1600.0, 200000.0, 40, 250, 3));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K1, 5, 600.0, 80000.0, 40, 250, 0, 1, "difference");

  /* Unchanged counters give nothing, even when the sums moved. */
  ABSORB(a, 0, 1, st(K1, 15, 1700.0, 200000.0, 40, 250, 3));
  CHECK_INT_EQ(take(a, 0, o, 8), 0);

  /* Untimed uses alone are news. */
  ABSORB(a, 0, 1, st(K1, 15, 1700.0, 200000.0, 40, 250, 5));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K1, 0, 0.0, 0.0, 40, 250, 2, 1, "untimed only");

  /* A sum that went back while the count grew contributes nothing negative. */
  ABSORB(a, 0, 1, st(K1, 17, 1690.0, 200500.0, 40, 250, 5));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K1, 2, 0.0, 500.0, 40, 250, 0, 1, "negative sum difference clipped");

  /* Counters that went back (restarted plugin): taken whole. */
  ABSORB(a, 0, 1, st(K1, 4, 100.0, 3000.0, 20, 30, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K1, 4, 100.0, 3000.0, 20, 30, 0, 1, "count went back");
  ABSORB(a, 0, 1, st(K1, 6, 160.0, 4800.0, 20, 30, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K1, 2, 60.0, 1800.0, 20, 30, 0, 1, "difference after the restart");
  /* Only untimed went back, count grew: also whole. */
  ABSORB(a, 0, 1, st(K1, 9, 250.0, 7000.0, 20, 30, 0));
  drain(a);
  ABSORB(a, 0, 1, st(K1, 10, 300.0, 8000.0, 20, 31, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K1, 1, 50.0, 1000.0, 20, 31, 0, 1, "one more");
  ABSORB(a, 0, 1, st(K1, 10, 300.0, 8000.0, 20, 31, 7));
  drain(a);
  ABSORB(a, 0, 1, st(K1, 12, 400.0, 9000.0, 20, 31, 1));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K1, 12, 400.0, 9000.0, 20, 31, 1, 1, "untimed went back");

  /* A first report with nothing in it credits nothing, but is the base of the next. */
  ABSORB(a, 1, 1, st(K2, 0, 0.0, 0.0, 0, 0, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 0);
  ABSORB(a, 1, 1, st(K2, 1, 9.0, 81.0, 9, 9, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K2, 1, 9.0, 81.0, 9, 9, 0, 1, "after an empty first report");

  /* credit == 0 moves the counters without crediting; the next credited report is diffed from
   * them. */
  drain(a);
  ABSORB(a, 2, 0, st(K3, 100, 1000.0, 10000.0, 10, 10, 0));
  ABSORB(a, 1, 0, st(K2, 50, 500.0, 5000.0, 9, 11, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 0);
  CHECK_INT_EQ(take(a, 1, o, 8), 0);
  ABSORB(a, 2, 1, st(K3, 103, 1030.0, 10300.0, 10, 10, 0));
  ABSORB(a, 1, 1, st(K2, 52, 520.0, 5200.0, 9, 12, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 2);
  expect(&o[0], K3, 3, 30.0, 300.0, 10, 10, 0, 1, "credited after uncredited (first)");
  expect(&o[1], K2, 2, 20.0, 200.0, 9, 12, 0, 1, "credited after uncredited (later)");

  /* Duplicate key within one report: sequential (the second is diffed against the first). */
  ABSORB(a, 3, 1, st(K4, 5, 50.0, 500.0, 10, 10, 0), st(K4, 8, 80.0, 800.0, 10, 10, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K4, 8, 80.0, 800.0, 10, 10, 0, 1, "duplicate key, growing");
  ABSORB(a, 4, 1, st(K4, 8, 80.0, 800.0, 12, 13, 0), st(K4, 5, 50.0, 500.0, 11, 12, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K4, 13, 130.0, 1300.0, 11, 13, 0, 1, "duplicate key, going back");
  /* The sender's counters are the last entry's. */
  ABSORB(a, 4, 1, st(K4, 6, 60.0, 600.0, 11, 12, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K4, 1, 10.0, 100.0, 11, 12, 0, 1, "diffed from the last duplicate");

  /* Keys differing only in n_channels are different rows. */
  drain(a);
  ABSORB(a, 0, 1, st(K6, 1, 1.0, 1.0, 1, 1, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K6, 1, 1.0, 1.0, 1, 1, 0, 1, "n_channels is part of the key");
  CHECK(o[0].row != 0, "K6 has its own row (%u)", o[0].row);

  cpi_agg_free(a);
}

static void test_ranks_order_minmax(void) {
  cpi_agg* a = cpi_agg_new(64, 8);
  cpi_obs o[8];

  /* Three senders, one of them twice: ranks counts senders, not reports. Rows come out in the
   * order they first got samples in the window. */
  ABSORB(a, 0, 1, st(K2, 2, 20.0, 200.0, 10, 10, 0), st(K1, 2, 30.0, 450.0, 15, 15, 0));
  ABSORB(a, 1, 1, st(K3, 1, 5.0, 25.0, 5, 5, 0), st(K1, 3, 30.0, 300.0, 5, 12, 0));
  ABSORB(a, 0, 1, st(K1, 4, 70.0, 1250.0, 15, 20, 0));
  ABSORB(a, 2, 1, st(K1, 1, 40.0, 1600.0, 40, 40, 1));
  cpi_agg_info info;
  cpi_agg_get_info(a, &info);
  CHECK(info.rows == 3 && info.pending[0] == 3 && info.pending[1] == 3 && info.senders == 3,
        "info: rows %llu pending %llu/%llu senders %llu", (unsigned long long)info.rows,
        (unsigned long long)info.pending[0], (unsigned long long)info.pending[1],
        (unsigned long long)info.senders);
  CHECK_INT_EQ(take(a, 0, o, 8), 3);
  expect(&o[0], K2, 2, 20.0, 200.0, 10, 10, 0, 1, "first touched");
  /* K1: 2 + 3 + 2 + 1 samples; min of the cumulative mins 15, 5, 15, 40; max of 15, 12, 20, 40. */
  expect(&o[1], K1, 8, 140.0, 3150.0, 5, 40, 1, 3, "three senders");
  expect(&o[2], K3, 1, 5.0, 25.0, 5, 5, 0, 1, "touched last");
  CHECK(o[0].row == 0 && o[1].row == 1 && o[2].row == 2, "rows are dense in creation order");

  /* The next window counts ranks afresh. */
  ABSORB(a, 1, 1, st(K1, 5, 50.0, 500.0, 5, 12, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K1, 2, 20.0, 200.0, 5, 12, 0, 1, "a new window");
  CHECK_INT_EQ(o[0].row, 1);

  /* The window minimum comes from senders with samples: the first sender's extremes open it. */
  drain(a);
  ABSORB(a, 0, 1, st(K3, 3, 30.0, 300.0, 8, 9, 0));   /* sender 0's first K3: whole */
  ABSORB(a, 1, 1, st(K3, 4, 30.0, 300.0, 12, 30, 0)); /* +3 over (1, 5, 25); min stays 8 */
  ABSORB(a, 2, 1, st(K3, 1, 3.0, 9.0, 3, 3, 0));      /* whole; min 3 */
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K3, 7, 58.0, 584.0, 3, 30, 0, 3, "min of mins, max of maxes");

  /* A sender whose cumulative count is 0 (untimed only) does not bring its extremes into a
   * window that already has samples. */
  ABSORB(a, 3, 1, st(K3, 0, 0.0, 0.0, 0, 0, 4));
  ABSORB(a, 0, 1, st(K3, 5, 50.0, 500.0, 7, 9, 0));
  ABSORB(a, 4, 1, st(K3, 0, 0.0, 0.0, 1, 1000, 2));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K3, 2, 20.0, 200.0, 7, 9, 6, 3, "count-0 senders keep out of the extremes");

  cpi_agg_free(a);
}

static void test_channels_and_partial_takes(void) {
  cpi_agg* a = cpi_agg_new(64, 8);
  cpi_obs o[8];

  ABSORB(a, 0, 1, st(K1, 2, 20.0, 200.0, 10, 10, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K1, 2, 20.0, 200.0, 10, 10, 0, 1, "channel 0, window 1");
  ABSORB(a, 1, 1, st(K1, 3, 60.0, 1200.0, 20, 20, 0), st(K2, 1, 1.0, 1.0, 1, 1, 0));
  /* Channel 1 was never taken: it holds both reports, with both senders in its ranks. */
  CHECK_INT_EQ(take(a, 1, o, 8), 2);
  expect(&o[0], K1, 5, 80.0, 1400.0, 10, 20, 0, 2, "channel 1, both reports");
  expect(&o[1], K2, 1, 1.0, 1.0, 1, 1, 0, 1, "channel 1, K2");
  /* Taking channel 1 left channel 0's window alone. */
  CHECK_INT_EQ(take(a, 0, o, 8), 2);
  expect(&o[0], K1, 3, 60.0, 1200.0, 20, 20, 0, 1, "channel 0, window 2");
  expect(&o[1], K2, 1, 1.0, 1.0, 1, 1, 0, 1, "channel 0, K2");
  CHECK_INT_EQ(take(a, 0, o, 8), 0);
  CHECK_INT_EQ(take(a, 1, o, 8), 0);
  CHECK_INT_EQ(cpi_agg_take(a, CPI_CHANNELS, o, 8), 0);
  CHECK_INT_EQ(cpi_agg_take(a, 0, NULL, 0), 0);

  /* Sender 0 counted in channel 1's window and then channel 0 was taken: it still counts once
   * in channel 1, and again in channel 0's new window. */
  ABSORB(a, 0, 1, st(K1, 3, 30.0, 300.0, 10, 10, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  ABSORB(a, 0, 1, st(K1, 4, 40.0, 400.0, 10, 10, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K1, 1, 10.0, 100.0, 10, 10, 0, 1, "channel 0, window 4");
  CHECK_INT_EQ(take(a, 1, o, 8), 1);
  expect(&o[0], K1, 2, 20.0, 200.0, 10, 10, 0, 1, "channel 1, one sender twice");

  /* Partial takes: the rest stays, in order; a row taken and touched again goes to the back. */
  ABSORB(a, 2, 1, st(K1, 1, 1.0, 1.0, 1, 1, 0), st(K2, 1, 2.0, 4.0, 2, 2, 0),
         st(K3, 1, 3.0, 9.0, 3, 3, 0), st(K4, 1, 4.0, 16.0, 4, 4, 0),
         st(K5, 1, 5.0, 25.0, 5, 5, 0));
  CHECK_INT_EQ(take(a, 0, o, 2), 2);
  CHECK(key_is(&o[0], K1) && key_is(&o[1], K2), "partial take: the first two");
  cpi_agg_info info;
  cpi_agg_get_info(a, &info);
  CHECK(info.pending[0] == 3 && info.pending[1] == 5, "pending %llu/%llu after a partial take",
        (unsigned long long)info.pending[0], (unsigned long long)info.pending[1]);
  ABSORB(a, 2, 1, st(K1, 2, 2.0, 2.0, 1, 1, 0), st(K4, 3, 12.0, 48.0, 4, 4, 0));
  CHECK_INT_EQ(take(a, 0, o, 8), 4);
  expect(&o[0], K3, 1, 3.0, 9.0, 3, 3, 0, 1, "left over 1");
  expect(&o[1], K4, 3, 12.0, 48.0, 4, 4, 0, 1, "left over 2, grew meanwhile");
  expect(&o[2], K5, 1, 5.0, 25.0, 5, 5, 0, 1, "left over 3");
  expect(&o[3], K1, 1, 1.0, 1.0, 1, 1, 0, 1, "taken, then touched again");
  CHECK_INT_EQ(take(a, 1, o, 1), 1);
  expect(&o[0], K1, 2, 2.0, 2.0, 1, 1, 0, 1, "channel 1 partial");
  CHECK_INT_EQ(take(a, 1, o, 8), 4);
  CHECK(key_is(&o[0], K2) && key_is(&o[1], K3) && key_is(&o[2], K4) && key_is(&o[3], K5),
        "channel 1 keeps its own order");
  CHECK_INT_EQ(o[2].count, 3);

  cpi_agg_free(a);
}

static void test_limits(void) {
  CHECK(cpi_agg_new(0, 1) == NULL, "max_rows 0 refused");
  CHECK(cpi_agg_new(1, 0) == NULL, "max_senders 0 refused");
  CHECK(cpi_agg_new((1u << 24) + 1, 1) == NULL, "max_rows above 2^24 refused");
  CHECK(cpi_agg_new(1, (1u << 24) + 1) == NULL, "max_senders above 2^24 refused");
  CHECK(cpi_agg_new(UINT32_MAX, UINT32_MAX) == NULL, "huge limits refused");
  cpi_agg* big = cpi_agg_new(1u << 24, 1u << 24);
  CHECK(big != NULL, "limits of 2^24 accepted");
  cpi_agg_free(big);
  cpi_agg_free(NULL);

  cpi_agg* a = cpi_agg_new(3, 4);
  cpi_obs o[8];
  cpi_agg_info info;
  /* A sender out of range absorbs nothing. */
  CHECK_INT_EQ(absorb(a, 4, 1, (cp_wire_stat[]){st(K1, 1, 1.0, 1.0, 1, 1, 0)}, 1), -1);
  CHECK_INT_EQ(cpi_agg_absorb(a, UINT32_MAX, g_dec, 1), -1);
  CHECK_INT_EQ(cpi_agg_absorb(NULL, 0, g_dec, 1), -1);
  CHECK_INT_EQ(cpi_agg_absorb(a, 0, NULL, 1), -1);
  cpi_agg_get_info(a, &info);
  CHECK(info.rows == 0 && info.senders == 0 && info.pending[0] == 0 && info.stats_dropped == 0,
        "nothing absorbed for a bad sender");
  CHECK_INT_EQ(take(a, 0, o, 8), 0);
  cpi_agg_get_info(NULL, &info);
  cpi_agg_get_info(a, NULL);

  /* Beyond max_rows: skipped and counted, on every report. */
  ABSORB(a, 0, 1, st(K1, 1, 1.0, 1.0, 1, 1, 0), st(K2, 1, 1.0, 1.0, 1, 1, 0),
         st(K3, 1, 1.0, 1.0, 1, 1, 0), st(K4, 1, 1.0, 1.0, 1, 1, 0), st(K5, 1, 1.0, 1.0, 1, 1, 0));
  cpi_agg_get_info(a, &info);
  CHECK(info.rows == 3 && info.stats_dropped == 2 && info.senders == 1,
        "rows %llu dropped %llu senders %llu", (unsigned long long)info.rows,
        (unsigned long long)info.stats_dropped, (unsigned long long)info.senders);
  CHECK_INT_EQ(take(a, 0, o, 8), 3);
  CHECK(key_is(&o[0], K1) && key_is(&o[1], K2) && key_is(&o[2], K3), "the first three kept");
  /* The communicator's table is full too: a new key from another sender is dropped, known ones
   * are taken. */
  ABSORB(a, 3, 1, st(K4, 1, 1.0, 1.0, 1, 1, 0), st(K2, 2, 2.0, 2.0, 1, 1, 0));
  cpi_agg_get_info(a, &info);
  CHECK(info.rows == 3 && info.stats_dropped == 3 && info.senders == 4,
        "rows %llu dropped %llu senders %llu", (unsigned long long)info.rows,
        (unsigned long long)info.stats_dropped, (unsigned long long)info.senders);
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K2, 2, 2.0, 2.0, 1, 1, 0, 1, "a known key from a new sender");
  ABSORB(a, 0, 1, st(K1, 2, 2.0, 2.0, 1, 1, 0), st(K5, 2, 1.0, 1.0, 1, 1, 0));
  cpi_agg_get_info(a, &info);
  CHECK_INT_EQ(info.stats_dropped, 4);
  CHECK_INT_EQ(take(a, 0, o, 8), 1);
  expect(&o[0], K1, 1, 1.0, 1.0, 1, 1, 0, 1, "a kept key keeps differencing");
  cpi_agg_free(a);

  /* Per-sender table bound: max_rows distinct keys per sender, even when the rows exist. Many
   * rows, to go through the tables' growth. */
  enum { MANY = 1000 };
  cpi_agg* m = cpi_agg_new(MANY, 2);
  static cp_wire_stat many[CP_MAX_STATS];
  for (uint32_t i = 0; i < CP_MAX_STATS; i++)
    many[i] = st((tkey){(int)(i % 5), 4096 + i, (int)(i % 7), (int)(i % 3), (int)(i % 65)},
                 1 + i, (double)(1 + i), (double)(1 + i), 1, 1, 0);
  CHECK_INT_EQ(absorb(m, 0, 1, many, CP_MAX_STATS), 0);
  cpi_agg_get_info(m, &info);
  CHECK(info.rows == MANY && info.stats_dropped == CP_MAX_STATS - MANY,
        "rows %llu dropped %llu", (unsigned long long)info.rows,
        (unsigned long long)info.stats_dropped);
  static cpi_obs out[CP_MAX_STATS];
  CHECK_INT_EQ(take(m, 1, out, CP_MAX_STATS), MANY);
  int ordered = 1;
  for (uint32_t i = 0; i < MANY; i++)
    ordered &= out[i].row == i && out[i].count == 1 + i && out[i].n_bytes == 4096 + i;
  CHECK(ordered, "a thousand rows come out in first-touch order with their counts");
  CHECK_INT_EQ(take(m, 0, out, CP_MAX_STATS), MANY);
  for (uint32_t i = 0; i < MANY; i++) many[i].count += 1, many[i].sum_ns += 1.0;
  CHECK_INT_EQ(absorb(m, 1, 1, many + MANY / 2, MANY / 2), 0);
  CHECK_INT_EQ(absorb(m, 0, 1, many, MANY), 0);
  CHECK_INT_EQ(take(m, 0, out, CP_MAX_STATS), MANY);
  int ok = 1;
  for (uint32_t i = 0; i < MANY; i++) {
    const int second_half = i >= MANY / 2;
    const uint32_t want_row = second_half ? i - MANY / 2 : i + MANY / 2;
    const uint32_t k = out[i].row;
    ok &= k == want_row;
    ok &= out[i].ranks == (k >= MANY / 2 ? 2u : 1u);
    /* Rows of both senders: sender 1's first report (whole) plus sender 0's difference of 1. */
    ok &= out[i].count == (k >= MANY / 2 ? 3u + k : 1u);
  }
  CHECK(ok, "a thousand rows: order, ranks and counts across two senders");
  cpi_agg_free(m);
}

/* Encodes the stats as one report of the given type, decodes it (fast path required), absorbs. */
static void absorb_as(cpi_agg* agg, uint32_t sender, int credit, const cp_wire_stat* s, uint32_t n,
                      cp_msg_type type) {
  cp_msg m;
  msg_of_stats(&m, s, n);
  m.type = type;
  cp_buf b;
  cp_buf_init(&b, 0);
  cp_decode_error err;
  if (cp_msg_encode(&m, &b, &err) != CP_OK) {
    CHECK(0, "test report encodes: %s", err.message);
  } else {
    cpi_report_head head;
    const int r = cpi_decode_measurements(g_dec, b.data, b.len, &head);
    CHECK(r == 1 && head.exact == 0 && head.n_stats == n, "%s report decodes (%d)",
          cp_msg_type_name(type), r);
    CHECK_INT_EQ(cpi_agg_absorb(agg, sender, g_dec, credit), 0);
  }
  cp_buf_free(&b);
  cp_msg_free(&m);
}

static int by_row(const void* x, const void* y) {
  const cpi_obs *a = x, *b = y;
  return a->row < b->row ? -1 : a->row > b->row;
}

/* Takes a channel dry from both aggregates and compares the observations row by row (their
 * order depends on the order stats arrived in, which the two sides do not share). */
static int same_takes(cpi_agg* x, cpi_agg* y, uint32_t ch) {
  static cpi_obs ox[256], oy[256];
  memset(ox, 0, sizeof ox);
  memset(oy, 0, sizeof oy);
  const size_t nx = cpi_agg_take(x, ch, ox, 256), ny = cpi_agg_take(y, ch, oy, 256);
  if (nx != ny) return 0;
  qsort(ox, nx, sizeof *ox, by_row);
  qsort(oy, ny, sizeof *oy, by_row);
  return memcmp(ox, oy, nx * sizeof *ox) == 0;
}

/* The same cumulative snapshots, once as maps in the plugin's order and once packed with keys
 * left out, reordered and restarted at random: absorbing them must give the same observations.
 * The reordering is what sends absorb off its remembered positions onto the hash index. */
static void test_packed_and_reordered(void) {
  g_rng = 4242;
  enum { SENDERS = 6, KEYS = 40, ROUNDS = 60 };
  static cp_wire_stat cur[SENDERS][KEYS];
  for (uint32_t k = 0; k < KEYS; k++) {
    /* Like real reports: four arms shared by ten sizes each, each size under two arms, so a
     * position memo that matched on the size alone or on the arm alone would credit another
     * key's counters (both variants were planted and caught). */
    for (uint32_t sd = 0; sd < SENDERS; sd++) {
      cp_wire_stat* s = &cur[sd][k];
      memset(s, 0, sizeof *s);
      s->coll = 1, s->n_bytes = 1024u << (k % 10), s->algo = (int)(k / 10) % 2, s->proto = 2;
      s->n_channels = 4 + (int)(k / 20);
    }
  }
  cpi_agg* x = cpi_agg_new(256, SENDERS);
  cpi_agg* y = cpi_agg_new(256, SENDERS);
  int mismatches = 0;
  long reordered = 0;
  for (int round = 0; round < ROUNDS; round++) {
    for (uint32_t sd = 0; sd < SENDERS; sd++) {
      cp_wire_stat in_order[KEYS], shuffled[KEYS];
      uint32_t n = 0;
      const int leave_out = rnd_below(4) == 0;
      for (uint32_t k = 0; k < KEYS; k++) {
        cp_wire_stat* s = &cur[sd][k];
        if (rnd_below(60) == 0) { /* a restarted plugin: counters start again */
          s->count = s->untimed = 0, s->sum_ns = s->sum_sq_ns = 0.0;
          s->min_ns = s->max_ns = 0;
          memset(s->hist, 0, sizeof s->hist);
        }
        const uint64_t add = rnd_below(4) == 0 ? 0 : 1 + rnd_below(20);
        if (add > 0) {
          const uint64_t d = 100 + rnd_below(5000);
          const int b = 6 + (int)rnd_below(5);
          if (s->count == 0 || d < s->min_ns) s->min_ns = d;
          if (d > s->max_ns) s->max_ns = d;
          s->count += add;
          s->sum_ns += (double)(add * d);
          s->sum_sq_ns += (double)(add * d * d);
          s->hist[b] += (uint32_t)add;
        }
        s->untimed += rnd_below(8) == 0;
        if (!leave_out || rnd_below(8) != 0) in_order[n++] = *s;
      }
      memcpy(shuffled, in_order, n * sizeof *shuffled);
      /* Round 0 in the same order on both sides, so that their row ids match. */
      if (round > 0 && rnd_below(3) == 0) {
        reordered++;
        for (uint32_t i = n; i > 1; i--) {
          const uint32_t j = (uint32_t)rnd_below(i);
          const cp_wire_stat tmp = shuffled[i - 1];
          shuffled[i - 1] = shuffled[j];
          shuffled[j] = tmp;
        }
      }
      const int credit = rnd_below(10) != 0;
      absorb_as(x, sd, credit, in_order, n, CP_MSG_MEASUREMENTS);
      absorb_as(y, sd, credit, shuffled, n, CP_MSG_MEASUREMENTS_PACKED);
    }
    mismatches += !same_takes(x, y, 0);
    if (round % 4 == 3) mismatches += !same_takes(x, y, 1);
  }
  mismatches += !same_takes(x, y, 1);
  cpi_agg_info ix, iy;
  cpi_agg_get_info(x, &ix);
  cpi_agg_get_info(y, &iy);
  CHECK(memcmp(&ix, &iy, sizeof ix) == 0 && ix.rows == KEYS, "same rows and counters");
  CHECK(mismatches == 0 && reordered > 20, "maps in order and packed reordered: %d of %d takes "
        "differ (%ld reordered reports)", mismatches, ROUNDS + ROUNDS / 4 + 1, reordered);
  cpi_agg_free(x);
  cpi_agg_free(y);
}

int main(void) {
  g_dec = cpi_decoder_new();
  test_vectors();
  test_differential();
  test_differencing();
  test_ranks_order_minmax();
  test_channels_and_partial_takes();
  test_limits();
  test_packed_and_reordered();
  cpi_decoder_free(g_dec);
  TEST_RETURN();
}
