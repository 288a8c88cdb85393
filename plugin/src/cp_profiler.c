/*
 * Profiler-side core: turns NCCL's Coll and KernelCh events into per-(key, arm) duration samples.
 *
 * Event flow (reference §4.6): a Coll event is started and stopped back to back on the launch
 * thread when the collective is enqueued; later the proxy thread reports one KernelCh event per
 * channel the task used (start, recordEventState(KernelChStop), stop) with GPU timestamps. The
 * collective's duration is the longest channel. So a Coll record must outlive its own stop until
 * every channel has reported: it starts with one reference for the Coll stop plus one per channel.
 *
 * Memory is bounded: every context owns fixed pools of collective and kernel records, recycled
 * through lock-free free lists (no allocation per event). An exhausted pool drops the event.
 *
 * Samples that cannot be tied to the exact arm that ran are discarded and counted, never guessed;
 * the first use of each algorithm on a communicator includes connection setup and is skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cp_core.h"
#include "cp_io.h"
#include "cp_process.h"
#include "cp_stats.h"

#define CP_PROF_COLL_POOL 4096u      /* collectives in flight (enqueued, not all channels seen) */
#define CP_PROF_KERNEL_POOL 4096u    /* KernelCh events between their start and stop */
#define CP_PROF_STATS_CAPACITY 1024u /* distinct (key, arm) pairs per communicator */
#define CP_PROF_LOG_INTERVAL_NS 10000000000ull

/* Handle tags: NCCL hands back only the pointer, so each record says what it is. */
enum { TAG_FREE = 0, TAG_COLL = 0x6c6c6f43u, TAG_KERNEL = 0x6c6e724bu };

/* Why a collective's sample was not used (bits of coll_rec.flags). */
enum {
  F_BAD_TIMING = 1u << 0,  /* a channel without a stop timestamp, or stop < start */
  F_BAD_CHANNEL = 1u << 1, /* a channel id out of range, repeated, or more events than channels */
  F_KERNEL_POOL = 1u << 2, /* a KernelCh event was dropped: the kernel pool was empty */
};

typedef struct {
  uint32_t tag;
} rec_header;

typedef struct coll_rec {
  rec_header hdr; /* first: handles are cast to rec_header* */
  uint32_t index;
  cp_prof_comm* ctx;
  int coll, algo, proto, n_channels;
  uint64_t n_bytes;
  _Atomic int refs;             /* 1 (Coll stop) + n_channels (KernelCh stops) */
  _Atomic int coll_stopped;
  _Atomic uint32_t n_started;   /* KernelCh events seen, in arrival order */
  _Atomic uint32_t n_timed;     /* channels that reported a usable duration */
  _Atomic uint32_t flags;
  _Atomic uint64_t max_ns;
  _Atomic uint64_t channels_seen;
  _Atomic int live;             /* for the leftover count at destroy */
} coll_rec;

typedef struct kernel_rec {
  rec_header hdr;
  uint32_t index;
  coll_rec* parent;
  uint64_t start_ns;
  _Atomic uint64_t stop_ns;
  _Atomic int has_stop;
} kernel_rec;

/* Treiber stack of pool indices. The head packs (version << 32 | index + 1) so that a pop racing
 * with a pop-push of the same index (ABA) fails its compare-and-swap; 0 in the low half = empty. */
typedef struct {
  _Atomic uint64_t head;
  _Atomic uint32_t* next;
} freelist;

static int freelist_init(freelist* fl, uint32_t n) {
  fl->next = calloc(n, sizeof(*fl->next));
  if (fl->next == NULL) return -1;
  for (uint32_t i = 0; i < n; i++) atomic_init(&fl->next[i], i + 1 < n ? i + 2 : 0);
  atomic_init(&fl->head, n > 0 ? 1u : 0u);
  return 0;
}

static int64_t freelist_pop(freelist* fl) {
  uint64_t h = atomic_load_explicit(&fl->head, memory_order_acquire);
  for (;;) {
    uint32_t top = (uint32_t)h;
    if (top == 0) return -1;
    uint32_t nx = atomic_load_explicit(&fl->next[top - 1], memory_order_relaxed);
    uint64_t nh = (((h >> 32) + 1) << 32) | nx;
    if (atomic_compare_exchange_weak_explicit(&fl->head, &h, nh, memory_order_acquire,
                                              memory_order_acquire))
      return (int64_t)top - 1;
  }
}

static void freelist_push(freelist* fl, uint32_t index) {
  uint64_t h = atomic_load_explicit(&fl->head, memory_order_relaxed);
  for (;;) {
    atomic_store_explicit(&fl->next[index], (uint32_t)h, memory_order_relaxed);
    uint64_t nh = (((h >> 32) + 1) << 32) | (uint64_t)(index + 1);
    if (atomic_compare_exchange_weak_explicit(&fl->head, &h, nh, memory_order_release,
                                              memory_order_relaxed))
      return;
  }
}

struct cp_prof_comm {
  cp_process* proc;
  int active; /* 0 in mode off: every event call is a no-op */
  int gpu_timestamps;
  int has_comm_id;
  uint64_t comm_id;
  char* comm_name;
  int n_nodes, n_ranks, rank;

  coll_rec* colls;
  kernel_rec* kernels;
  freelist coll_free, kernel_free;
  cp_stats* stats;

  _Atomic uint32_t algos_seen; /* bit a: algorithm a has been used once (warm-up done) */

  /* Counters (relaxed: read only at destroy, after NCCL stopped sending events). */
  _Atomic uint64_t timed, untimed, warmup_skipped;
  _Atomic uint64_t discarded_unattributable, discarded_bad_timing, discarded_incomplete;
  _Atomic uint64_t dropped_pool, dropped_stats_full;

  cp_ratelimit rl_pool, rl_stats_full;
};

static void count(_Atomic uint64_t* c) { atomic_fetch_add_explicit(c, 1, memory_order_relaxed); }

static uint64_t get(_Atomic uint64_t* c) { return atomic_load_explicit(c, memory_order_relaxed); }

/* ---- creation ----------------------------------------------------------------------------- */

static void ctx_free(cp_prof_comm* ctx) {
  cp_stats_free(ctx->stats);
  free(ctx->colls);
  free(ctx->kernels);
  free(ctx->coll_free.next);
  free(ctx->kernel_free.next);
  free(ctx->comm_name);
  free(ctx);
}

cp_result cp_prof_comm_create(const cp_prof_init_args* args, cp_prof_comm** out,
                              cp_prof_wants* wants) {
  if (out != NULL) *out = NULL;
  if (wants != NULL) *wants = (cp_prof_wants){0, 0};
  if (args == NULL || out == NULL || wants == NULL) return CP_ERR_INVALID;

  cp_prof_comm* ctx = calloc(1, sizeof(*ctx));
  CP_ALLOC_CHECK(ctx);
  ctx->proc = cp_process_acquire(args->log);
  if (ctx->proc == NULL) {
    free(ctx);
    return CP_ERR_NOMEM;
  }
  ctx->gpu_timestamps = args->gpu_timestamps != 0;
  ctx->has_comm_id = args->has_comm_id != 0;
  ctx->comm_id = args->comm_id;
  ctx->n_nodes = args->n_nodes;
  ctx->n_ranks = args->n_ranks;
  ctx->rank = args->rank;
  if (args->comm_name != NULL && (ctx->comm_name = strdup(args->comm_name)) == NULL) goto nomem;

  const cp_settings* settings = cp_process_settings(ctx->proc);
  if (settings == NULL || settings->mode == CP_MODE_OFF) {
    *out = ctx;
    return CP_OK;
  }

  ctx->colls = calloc(CP_PROF_COLL_POOL, sizeof(*ctx->colls));
  ctx->kernels = calloc(CP_PROF_KERNEL_POOL, sizeof(*ctx->kernels));
  if (ctx->colls == NULL || ctx->kernels == NULL) goto nomem;
  if (freelist_init(&ctx->coll_free, CP_PROF_COLL_POOL) != 0) goto nomem;
  if (freelist_init(&ctx->kernel_free, CP_PROF_KERNEL_POOL) != 0) goto nomem;
  for (uint32_t i = 0; i < CP_PROF_COLL_POOL; i++) {
    ctx->colls[i].index = i;
    ctx->colls[i].ctx = ctx;
  }
  for (uint32_t i = 0; i < CP_PROF_KERNEL_POOL; i++) ctx->kernels[i].index = i;
  if (cp_stats_create(CP_PROF_STATS_CAPACITY, &ctx->stats) != CP_OK) goto nomem;

  ctx->active = 1;
  /* Live mode: the daemon I/O thread ships this communicator's summaries (joined with the tuner
   * context by comm id). */
  if (ctx->has_comm_id) cp_io_register_stats(cp_process_io_start(ctx->proc), ctx->comm_id,
                                              args->abi_version, args->rank, ctx->stats);
  /* Without GPU timestamps (profiler ABI v3 and older) KernelCh events carry nothing usable, and
   * asking for them makes NCCL add one proxy op per channel per collective: count uses from the
   * Coll events alone instead. */
  wants->coll = 1;
  wants->kernel_ch = ctx->gpu_timestamps;
  *out = ctx;
  return CP_OK;

nomem:
  cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_PROFILE,
         "profiler: out of memory creating the context of communicator %s; this "
         "communicator is not measured",
         ctx->comm_name != NULL ? ctx->comm_name : "(unnamed)");
  cp_process_release(ctx->proc);
  ctx_free(ctx);
  return CP_ERR_NOMEM;
}

/* ---- events ------------------------------------------------------------------------------- */

static int arm_known(const cp_coll_event* ev) {
  return ev->coll >= 0 && ev->coll < CP_NUM_COLLS && ev->n_bytes > 0 && ev->algo >= 0 &&
         ev->algo < CP_NUM_ALGOS && ev->proto >= 0 && ev->proto < CP_NUM_PROTOS &&
         ev->n_channels >= 1 && ev->n_channels <= CP_MAX_CHANNELS;
}

void* cp_prof_coll_start(cp_prof_comm* ctx, const cp_coll_event* ev) {
  if (ctx == NULL || ev == NULL || !ctx->active) return NULL;

  /* Connection setup happens on an algorithm's first use whether or not the event can be
   * attributed, so the warm-up decision comes before any other check. */
  if (ev->algo >= 0 && ev->algo < CP_NUM_ALGOS) {
    uint32_t bit = 1u << ev->algo;
    if ((atomic_load_explicit(&ctx->algos_seen, memory_order_relaxed) & bit) == 0 &&
        (atomic_fetch_or_explicit(&ctx->algos_seen, bit, memory_order_relaxed) & bit) == 0) {
      count(&ctx->warmup_skipped);
      return NULL;
    }
  }
  if (!arm_known(ev)) {
    count(&ctx->discarded_unattributable);
    return NULL;
  }
  if (!ctx->gpu_timestamps) {
    if (cp_stats_add_untimed(ctx->stats, ev->coll, ev->n_bytes, ev->algo, ev->proto,
                             ev->n_channels) == CP_OK) {
      count(&ctx->untimed);
    } else {
      count(&ctx->dropped_stats_full);
    }
    return NULL;
  }

  int64_t idx = freelist_pop(&ctx->coll_free);
  if (idx < 0) {
    count(&ctx->dropped_pool);
    cp_log_ratelimited(ctx->proc, &ctx->rl_pool, CP_PROF_LOG_INTERVAL_NS,
                       "profiler: more than %u collectives of communicator %s are in "
                       "flight; their timings are dropped (measurement only, the job is "
                       "unaffected)",
                       CP_PROF_COLL_POOL, ctx->comm_name != NULL ? ctx->comm_name : "(unnamed)");
    return NULL;
  }
  coll_rec* c = &ctx->colls[idx];
  c->coll = ev->coll;
  c->algo = ev->algo;
  c->proto = ev->proto;
  c->n_channels = ev->n_channels;
  c->n_bytes = ev->n_bytes;
  atomic_store_explicit(&c->refs, 1 + ev->n_channels, memory_order_relaxed);
  atomic_store_explicit(&c->coll_stopped, 0, memory_order_relaxed);
  atomic_store_explicit(&c->n_started, 0, memory_order_relaxed);
  atomic_store_explicit(&c->n_timed, 0, memory_order_relaxed);
  atomic_store_explicit(&c->flags, 0, memory_order_relaxed);
  atomic_store_explicit(&c->max_ns, 0, memory_order_relaxed);
  atomic_store_explicit(&c->channels_seen, 0, memory_order_relaxed);
  atomic_store_explicit(&c->live, 1, memory_order_relaxed);
  c->hdr.tag = TAG_COLL;
  return c;
}

static void coll_complete(coll_rec* c) {
  cp_prof_comm* ctx = c->ctx;
  uint32_t flags = atomic_load_explicit(&c->flags, memory_order_relaxed);
  uint32_t timed = atomic_load_explicit(&c->n_timed, memory_order_relaxed);
  if (flags & F_KERNEL_POOL) {
    count(&ctx->dropped_pool);
  } else if (flags != 0 || timed != (uint32_t)c->n_channels) {
    count(&ctx->discarded_bad_timing);
  } else {
    uint64_t d = atomic_load_explicit(&c->max_ns, memory_order_relaxed);
    if (cp_stats_add(ctx->stats, c->coll, c->n_bytes, c->algo, c->proto, c->n_channels, d) ==
        CP_OK) {
      count(&ctx->timed);
    } else {
      count(&ctx->dropped_stats_full);
      cp_log_ratelimited(ctx->proc, &ctx->rl_stats_full, CP_PROF_LOG_INTERVAL_NS,
                         "profiler: communicator %s measured more than %u distinct "
                         "(size, arm) pairs; samples of new pairs are dropped",
                         ctx->comm_name != NULL ? ctx->comm_name : "(unnamed)",
                         CP_PROF_STATS_CAPACITY);
    }
  }
  c->hdr.tag = TAG_FREE;
  atomic_store_explicit(&c->live, 0, memory_order_relaxed);
  freelist_push(&ctx->coll_free, c->index);
}

static void coll_release(coll_rec* c) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) coll_complete(c);
}

void* cp_prof_kernel_start(cp_prof_comm* ctx, void* coll_handle, int channel_id,
                           uint64_t gpu_start_ns) {
  if (ctx == NULL || coll_handle == NULL || !ctx->active) return NULL;
  coll_rec* c = coll_handle;
  if (c->hdr.tag != TAG_COLL || c->ctx != ctx) return NULL;

  /* NCCL sends exactly n_channels KernelCh events per collective; the references for them were
   * taken at Coll start. An extra event has no reference to consume and only spoils the sample. */
  uint32_t arrival = atomic_fetch_add_explicit(&c->n_started, 1, memory_order_relaxed);
  if (arrival >= (uint32_t)c->n_channels) {
    atomic_fetch_or_explicit(&c->flags, F_BAD_CHANNEL, memory_order_relaxed);
    return NULL;
  }
  if (channel_id < 0 || channel_id >= CP_MAX_CHANNELS) {
    atomic_fetch_or_explicit(&c->flags, F_BAD_CHANNEL, memory_order_relaxed);
    coll_release(c);
    return NULL;
  }
  uint64_t bit = 1ull << channel_id;
  if (atomic_fetch_or_explicit(&c->channels_seen, bit, memory_order_relaxed) & bit) {
    atomic_fetch_or_explicit(&c->flags, F_BAD_CHANNEL, memory_order_relaxed);
    coll_release(c);
    return NULL;
  }
  int64_t idx = freelist_pop(&ctx->kernel_free);
  if (idx < 0) {
    atomic_fetch_or_explicit(&c->flags, F_KERNEL_POOL, memory_order_relaxed);
    coll_release(c);
    return NULL;
  }
  kernel_rec* k = &ctx->kernels[idx];
  k->parent = c;
  k->start_ns = gpu_start_ns;
  atomic_store_explicit(&k->stop_ns, 0, memory_order_relaxed);
  atomic_store_explicit(&k->has_stop, 0, memory_order_relaxed);
  k->hdr.tag = TAG_KERNEL;
  return k;
}

void cp_prof_kernel_record_stop(void* kernel_handle, uint64_t gpu_stop_ns) {
  if (kernel_handle == NULL) return;
  kernel_rec* k = kernel_handle;
  if (k->hdr.tag != TAG_KERNEL) return;
  atomic_store_explicit(&k->stop_ns, gpu_stop_ns, memory_order_relaxed);
  atomic_store_explicit(&k->has_stop, 1, memory_order_release);
}

static void kernel_stop(kernel_rec* k) {
  coll_rec* c = k->parent;
  cp_prof_comm* ctx = c->ctx;
  uint64_t start = k->start_ns;
  int has_stop = atomic_load_explicit(&k->has_stop, memory_order_acquire);
  uint64_t stop = atomic_load_explicit(&k->stop_ns, memory_order_relaxed);
  k->hdr.tag = TAG_FREE;
  freelist_push(&ctx->kernel_free, k->index);

  /* A zero timestamp means the GPU never wrote one (globaltimer is never 0 in practice). */
  if (has_stop && start != 0 && stop != 0 && stop >= start) {
    uint64_t d = stop - start;
    uint64_t cur = atomic_load_explicit(&c->max_ns, memory_order_relaxed);
    while (d > cur && !atomic_compare_exchange_weak_explicit(&c->max_ns, &cur, d,
                                                             memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
    atomic_fetch_add_explicit(&c->n_timed, 1, memory_order_relaxed);
  } else {
    atomic_fetch_or_explicit(&c->flags, F_BAD_TIMING, memory_order_relaxed);
  }
  coll_release(c);
}

void cp_prof_event_stop(void* handle) {
  if (handle == NULL) return;
  rec_header* h = handle;
  if (h->tag == TAG_COLL) {
    coll_rec* c = handle;
    /* A repeated stop must not release a reference that belongs to a channel. */
    if (atomic_exchange_explicit(&c->coll_stopped, 1, memory_order_relaxed) == 0) coll_release(c);
  } else if (h->tag == TAG_KERNEL) {
    kernel_stop(handle);
  }
}

/* ---- statistics file ---------------------------------------------------------------------- */

typedef struct {
  char* p;
  size_t len, cap;
  int overflow;
} linebuf;

static void lb_printf(linebuf* b, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void lb_printf(linebuf* b, const char* fmt, ...) {
  if (b->overflow) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= b->cap - b->len) {
    b->overflow = 1;
    return;
  }
  b->len += (size_t)n;
}

static void lb_putc(linebuf* b, char ch) {
  if (b->overflow) return;
  if (b->len + 1 >= b->cap) {
    b->overflow = 1;
    return;
  }
  b->p[b->len++] = ch;
  b->p[b->len] = '\0';
}

/* Length of the valid UTF-8 sequence starting at s (at most n bytes), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char* s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return len;
}

/* A JSON string literal; NULL becomes null. Bytes that are not UTF-8 become U+FFFD so that the
 * line stays parseable whatever the user named the communicator. */
static void lb_json_string(linebuf* b, const char* s) {
  if (s == NULL) {
    lb_printf(b, "null");
    return;
  }
  const unsigned char* u = (const unsigned char*)s;
  size_t n = strlen(s);
  lb_putc(b, '"');
  for (size_t i = 0; i < n;) {
    unsigned char c = u[i];
    if (c == '"' || c == '\\') {
      lb_putc(b, '\\');
      lb_putc(b, (char)c);
      i++;
    } else if (c < 0x20 || c == 0x7f) {
      lb_printf(b, "\\u%04x", c);
      i++;
    } else {
      size_t len = utf8_seq_len(u + i, n - i);
      if (len == 0) {
        lb_printf(b, "\\ufffd");
        i++;
      } else {
        for (size_t j = 0; j < len; j++) lb_putc(b, (char)u[i + j]);
        i += len;
      }
    }
  }
  lb_putc(b, '"');
}

static void lb_comm_fields(linebuf* b, const cp_prof_comm* ctx) {
  lb_printf(b, "{\"schema\":\"cclpilot.stats/1\",");
  if (ctx->has_comm_id) {
    lb_printf(b, "\"comm_id\":\"0x%016llx\",", (unsigned long long)ctx->comm_id);
  } else {
    lb_printf(b, "\"comm_id\":null,");
  }
  lb_printf(b, "\"comm_name\":");
  lb_json_string(b, ctx->comm_name);
  lb_printf(b, ",\"rank\":%d,\"n_ranks\":%d,\"n_nodes\":%d", ctx->rank, ctx->n_ranks,
            ctx->n_nodes);
}

/* Median from the log2 histogram, interpolating linearly inside the bucket that holds it; the
 * histogram is all that is kept, so this is an estimate within a factor of two at worst. */
static double hist_median_ns(const cp_stat_slot* s) {
  double target = 0.5 * (double)s->count;
  double cum = 0;
  for (int b = 0; b < CP_STATS_BUCKETS; b++) {
    double h = s->hist[b];
    if (h > 0 && cum + h >= target) {
      double lo = b == 0 ? 0.0 : ldexp(1.0, b);
      double hi = b == CP_STATS_BUCKETS - 1 ? fmax((double)s->max_ns, lo) : ldexp(1.0, b + 1);
      double v = lo + (target - cum) / h * (hi - lo);
      return fmin(fmax(v, (double)s->min_ns), (double)s->max_ns);
    }
    cum += h;
  }
  return (double)s->max_ns;
}

static void lb_slot(linebuf* b, const cp_prof_comm* ctx, const cp_stat_slot* s) {
  lb_comm_fields(b, ctx);
  lb_printf(b, ",\"coll\":\"%s\",\"n_bytes\":%llu,\"algo\":\"%s\",\"proto\":\"%s\",\"n_channels\":%d",
            cp_coll_name(s->coll), (unsigned long long)s->n_bytes, cp_algo_name(s->algo),
            cp_proto_name(s->proto), s->n_channels);
  lb_printf(b, ",\"count\":%llu", (unsigned long long)s->count);
  if (s->count > 0) {
    double n = (double)s->count;
    double mean = s->sum_ns / n;
    /* Sample standard deviation; rounding can make the difference slightly negative. */
    double var = s->count > 1 ? (s->sum_sq_ns - n * mean * mean) / (n - 1) : 0.0;
    double sd = var > 0 ? sqrt(var) : 0.0;
    lb_printf(b, ",\"mean_us\":%.4f,\"std_us\":%.4f,\"min_us\":%.4f,\"max_us\":%.4f,\"p50_us\":%.4f",
              mean / 1e3, sd / 1e3, (double)s->min_ns / 1e3, (double)s->max_ns / 1e3,
              hist_median_ns(s) / 1e3);
  } else {
    lb_printf(b, ",\"mean_us\":null,\"std_us\":null,\"min_us\":null,\"max_us\":null,\"p50_us\":null");
  }
  lb_printf(b, ",\"hist_log2_ns\":[");
  for (int i = 0; i < CP_STATS_BUCKETS; i++) lb_printf(b, i ? ",%u" : "%u", s->hist[i]);
  lb_printf(b, "],\"untimed\":%llu}\n", (unsigned long long)s->untimed);
}

static void lb_summary(linebuf* b, cp_prof_comm* ctx) {
  uint64_t discarded = get(&ctx->discarded_unattributable) + get(&ctx->discarded_bad_timing) +
                       get(&ctx->discarded_incomplete);
  lb_comm_fields(b, ctx);
  lb_printf(b,
            ",\"kind\":\"comm_summary\",\"gpu_timestamps\":%s,\"timed\":%llu,\"untimed\":%llu,"
            "\"warmup_skipped\":%llu,\"discarded\":%llu,\"discarded_unattributable\":%llu,"
            "\"discarded_bad_timing\":%llu,\"discarded_incomplete\":%llu,\"dropped_pool\":%llu,"
            "\"dropped_stats_full\":%llu}\n",
            ctx->gpu_timestamps ? "true" : "false", (unsigned long long)get(&ctx->timed),
            (unsigned long long)get(&ctx->untimed), (unsigned long long)get(&ctx->warmup_skipped),
            (unsigned long long)discarded,
            (unsigned long long)get(&ctx->discarded_unattributable),
            (unsigned long long)get(&ctx->discarded_bad_timing),
            (unsigned long long)get(&ctx->discarded_incomplete),
            (unsigned long long)get(&ctx->dropped_pool),
            (unsigned long long)get(&ctx->dropped_stats_full));
}

/* Replaces each "%p" with the process id. Returns 0 when the result does not fit. */
static int expand_path(const char* in, char* out, size_t out_len) {
  char pid[24];
  int pid_len = snprintf(pid, sizeof(pid), "%ld", (long)getpid());
  size_t o = 0;
  for (size_t i = 0; in[i] != '\0';) {
    if (in[i] == '%' && in[i + 1] == 'p') {
      if (o + (size_t)pid_len >= out_len) return 0;
      memcpy(out + o, pid, (size_t)pid_len);
      o += (size_t)pid_len;
      i += 2;
    } else {
      if (o + 1 >= out_len) return 0;
      out[o++] = in[i++];
    }
  }
  out[o] = '\0';
  return 1;
}

/* One write() per line: O_APPEND then keeps lines of concurrent writers (all ranks of a node may
 * share the file) from interleaving. A short write is completed rather than losing the rest. */
static int write_line(int fd, const char* p, size_t len) {
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

static void write_stats_file(cp_prof_comm* ctx, const char* path_setting) {
  const char* name = ctx->comm_name != NULL ? ctx->comm_name : "(unnamed)";
  char path[CP_PATH_MAX];
  if (!expand_path(path_setting, path, sizeof(path))) {
    cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_PROFILE,
           "profiler: CCLPILOT_STATS_FILE is longer than %d bytes once '%%p' is "
           "replaced; statistics of communicator %s are not saved. Use a shorter path.",
           CP_PATH_MAX - 1, name);
    return;
  }

  cp_stat_slot* slots = malloc(CP_PROF_STATS_CAPACITY * sizeof(*slots));
  size_t name_len = ctx->comm_name != NULL ? strlen(ctx->comm_name) : 0;
  linebuf b = {NULL, 0, 4096 + 6 * name_len, 0};
  b.p = malloc(b.cap);
  if (slots == NULL || b.p == NULL) {
    cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_PROFILE,
           "profiler: out of memory writing statistics of communicator %s to %s; they "
           "are not saved",
           name, path);
    free(slots);
    free(b.p);
    return;
  }
  size_t n = cp_stats_snapshot(ctx->stats, slots, CP_PROF_STATS_CAPACITY);

  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_PROFILE,
           "profiler: cannot open statistics file %s (CCLPILOT_STATS_FILE): %s; "
           "statistics of communicator %s are not saved. Point CCLPILOT_STATS_FILE at a "
           "writable location.",
           path, strerror(e), name);
    free(slots);
    free(b.p);
    return;
  }
  for (size_t i = 0; i <= n; i++) {
    b.len = 0;
    b.overflow = 0;
    b.p[0] = '\0';
    if (i < n) {
      lb_slot(&b, ctx, &slots[i]);
    } else {
      lb_summary(&b, ctx);
    }
    if (b.overflow) {
      /* The buffer is sized for the longest possible line; reaching this is a bug. */
      cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_PROFILE,
             "profiler: internal error: statistics line too long for communicator %s; "
             "line skipped",
             name);
      continue;
    }
    if (write_line(fd, b.p, b.len) != 0) {
      int e = errno;
      cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_PROFILE,
             "profiler: cannot write statistics file %s: %s; statistics of "
             "communicator %s are incomplete.",
             path, strerror(e), name);
      break;
    }
  }
  if (close(fd) != 0) {
    int e = errno;
    cp_log(ctx->proc, CP_LOG_WARN, CP_LOG_SUBSYS_PROFILE,
           "profiler: error closing statistics file %s: %s; statistics of "
           "communicator %s may be incomplete.",
           path, strerror(e), name);
  }
  free(slots);
  free(b.p);
}

void cp_prof_comm_destroy(cp_prof_comm* ctx) {
  if (ctx == NULL) return;
  if (ctx->active) {
    /* NCCL sends no events after finalize: records still live lost some KernelCh events (or the
     * Coll stop) and cannot be timed. */
    for (uint32_t i = 0; i < CP_PROF_COLL_POOL; i++) {
      if (atomic_load_explicit(&ctx->colls[i].live, memory_order_relaxed))
        count(&ctx->discarded_incomplete);
    }
    const cp_settings* settings = cp_process_settings(ctx->proc);
    if (settings != NULL && settings->stats_path[0] != '\0')
      write_stats_file(ctx, settings->stats_path);
  }
  cp_process* proc = ctx->proc;
  cp_io_unregister_stats(cp_process_io(proc), ctx->stats);
  ctx_free(ctx);
  cp_process_release(proc);
}
