/*
 * Profiler core driven directly through cp_prof_*: attribution (max over channels, Coll stop
 * before or after the KernelCh events), first-use skip, discards, pool limits, mode off, the
 * statistics file (parsed back and checked number by number), an unwritable statistics path, and a
 * launch-thread/proxy-thread stress run. Also the name helpers the shims decode events with.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cp_core.h"
#include "cp_stats.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static char g_log[16384];
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;

static void capture_logger(int level, unsigned long flags, const char* file, int line,
                           const char* fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&g_log_lock);
  size_t used = strlen(g_log);
  snprintf(g_log + used, sizeof g_log - used, "[%d] %s\n", level, msg);
  pthread_mutex_unlock(&g_log_lock);
}

static char g_dir[256];

static void path_in_dir(char* out, size_t len, const char* name) {
  snprintf(out, len, "%s/%s", g_dir, name);
}

static cp_prof_comm* make_ctx(const char* name, int gpu_timestamps, cp_prof_wants* wants) {
  cp_prof_init_args a = {.abi_version = 6, .has_comm_id = 1, .comm_id = 0xdeadbeefull,
                         .comm_name = name, .n_nodes = 2, .n_ranks = 16, .rank = 3,
                         .gpu_timestamps = gpu_timestamps, .log = capture_logger};
  cp_prof_comm* ctx = NULL;
  cp_prof_wants w;
  cp_result r = cp_prof_comm_create(&a, &ctx, &w);
  CHECK(r == CP_OK && ctx != NULL, "cp_prof_comm_create failed: %s", cp_result_str(r));
  if (wants) *wants = w;
  return ctx;
}

static cp_coll_event ev_of(int coll, size_t n_bytes, int algo, int proto, int n_channels) {
  return (cp_coll_event){.seq = 0, .coll = coll, .n_bytes = n_bytes, .algo = algo,
                         .proto = proto, .n_channels = n_channels};
}

/* One channel's full KernelCh life cycle, as the proxy thread drives it. */
static void kernel(cp_prof_comm* ctx, void* coll, int ch, uint64_t start, uint64_t stop) {
  void* k = cp_prof_kernel_start(ctx, coll, ch, start);
  CHECK(k != NULL, "kernel start on channel %d dropped", ch);
  cp_prof_kernel_record_stop(k, stop);
  cp_prof_event_stop(k);
}

static char* read_file(const char* path) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, len = 0;
  char* buf = malloc(cap);
  size_t n;
  while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 4096) {
      char* nb = realloc(buf, cap *= 2);
      if (!nb) {
        free(buf);
        buf = NULL;
      }
      buf = nb;
    }
  }
  fclose(f);
  if (buf) buf[len] = '\0';
  return buf;
}

/* Lines of a stats file, split in place. */
typedef struct {
  char* text;
  char* lines[4096];
  int n;
} stats_file;

static int load_stats(stats_file* sf, const char* path) {
  sf->n = 0;
  sf->text = read_file(path);
  if (!sf->text) return -1;
  char* save = NULL;
  for (char* l = strtok_r(sf->text, "\n", &save); l && sf->n < 4096; l = strtok_r(NULL, "\n", &save))
    sf->lines[sf->n++] = l;
  return 0;
}

static const char* find_slot_line(const stats_file* sf, const char* coll, unsigned long long n_bytes,
                                  const char* algo, const char* proto, int n_channels) {
  char a[64], b[64], c[64], d[64], e[64];
  snprintf(a, sizeof a, "\"coll\":\"%s\"", coll);
  snprintf(b, sizeof b, "\"n_bytes\":%llu,", n_bytes);
  snprintf(c, sizeof c, "\"algo\":\"%s\"", algo);
  snprintf(d, sizeof d, "\"proto\":\"%s\"", proto);
  snprintf(e, sizeof e, "\"n_channels\":%d,", n_channels);
  for (int i = 0; i < sf->n; i++) {
    const char* l = sf->lines[i];
    if (strstr(l, a) && strstr(l, b) && strstr(l, c) && strstr(l, d) && strstr(l, e)) return l;
  }
  return NULL;
}

static const char* find_summary(const stats_file* sf) {
  for (int i = 0; i < sf->n; i++)
    if (strstr(sf->lines[i], "\"kind\":\"comm_summary\"")) return sf->lines[i];
  return NULL;
}

static int count_slot_lines(const stats_file* sf) {
  int n = 0;
  for (int i = 0; i < sf->n; i++)
    if (strstr(sf->lines[i], "\"hist_log2_ns\":[")) n++;
  return n;
}

/* Numeric field of a JSON line; NAN when absent or null. */
static double num(const char* line, const char* field) {
  if (!line) return NAN;
  char key[64];
  snprintf(key, sizeof key, "\"%s\":", field);
  const char* p = strstr(line, key);
  if (!p) return NAN;
  p += strlen(key);
  if (strncmp(p, "null", 4) == 0) return NAN;
  char* end;
  double v = strtod(p, &end);
  return end == p ? NAN : v;
}

/* Entry b of the histogram array; -1 when unreadable. Also reports how many entries it has. */
static long hist_entry(const char* line, int b, int* n_entries) {
  const char* p = line ? strstr(line, "\"hist_log2_ns\":[") : NULL;
  if (!p) return -1;
  p += strlen("\"hist_log2_ns\":[");
  long want = -1;
  int i = 0;
  for (;;) {
    char* end;
    long v = strtol(p, &end, 10);
    if (end == p) break;
    if (i == b) want = v;
    i++;
    p = end;
    if (*p == ',') p++;
    else break;
  }
  if (n_entries) *n_entries = i;
  return *p == ']' ? want : -1;
}

#define CHECK_NUM(line, field, want)                                                      \
  do {                                                                                    \
    double cp_v_ = num((line), (field)), cp_w_ = (double)(want);                          \
    CHECK(fabs(cp_v_ - cp_w_) <= 1e-9 * fmax(1.0, fabs(cp_w_)), "%s = %.6f, want %.6f", (field), \
          cp_v_, cp_w_);                                                                  \
  } while (0)

static void set_stats_file(char* path, size_t len, const char* name) {
  path_in_dir(path, len, name);
  unlink(path);
  setenv("CCLPILOT_STATS_FILE", path, 1);
}

/* ---- names -------------------------------------------------------------------------------- */

static void test_names(void) {
  CHECK_INT_EQ(cp_coll_from_name("AllReduce"), CP_COLL_ALLREDUCE);
  CHECK_INT_EQ(cp_coll_from_name("allreduce"), CP_COLL_ALLREDUCE);
  CHECK_INT_EQ(cp_coll_from_name("Broadcast"), CP_COLL_BROADCAST);
  CHECK_INT_EQ(cp_coll_from_name("Reduce"), CP_COLL_REDUCE);
  CHECK_INT_EQ(cp_coll_from_name("AllGather"), CP_COLL_ALLGATHER);
  CHECK_INT_EQ(cp_coll_from_name("REDUCESCATTER"), CP_COLL_REDUCESCATTER);
  CHECK_INT_EQ(cp_coll_from_name("SendRecv"), -1);
  CHECK_INT_EQ(cp_coll_from_name("Invalid"), -1);
  CHECK_INT_EQ(cp_coll_from_name("AllReduc"), -1);
  CHECK_INT_EQ(cp_coll_from_name(""), -1);
  CHECK_INT_EQ(cp_coll_from_name(NULL), -1);

  static const struct {
    const char* name;
    int algo;
  } algos[] = {{"TREE", 0}, {"Tree", 0}, {"RING", 1}, {"ring", 1}, {"COLLNET_DIRECT", 2},
               {"CollNetDirect", 2}, {"collnet_direct", 2}, {"COLLNET_CHAIN", 3},
               {"CollNetChain", 3}, {"NVLS", 4}, {"nvls", 4}, {"NVLS_TREE", 5}, {"NVLSTree", 5},
               {"nvlstree", 5}, {"PAT", 6}, {"pat", 6}, {"COLLNET", -1}, {"NVLS TREE", -1},
               {"", -1}, {NULL, -1}};
  for (size_t i = 0; i < sizeof algos / sizeof algos[0]; i++)
    CHECK(cp_algo_from_name(algos[i].name) == algos[i].algo, "cp_algo_from_name(%s) = %d, want %d",
          algos[i].name ? algos[i].name : "NULL", cp_algo_from_name(algos[i].name), algos[i].algo);

  CHECK_INT_EQ(cp_proto_from_name("LL"), CP_PROTO_LL);
  CHECK_INT_EQ(cp_proto_from_name("LL128"), CP_PROTO_LL128);
  CHECK_INT_EQ(cp_proto_from_name("SIMPLE"), CP_PROTO_SIMPLE);
  CHECK_INT_EQ(cp_proto_from_name("Simple"), CP_PROTO_SIMPLE);
  CHECK_INT_EQ(cp_proto_from_name("ll128"), CP_PROTO_LL128);
  CHECK_INT_EQ(cp_proto_from_name("LL64"), -1);
  CHECK_INT_EQ(cp_proto_from_name(NULL), -1);

  static const struct {
    const char* name;
    int size;
  } types[] = {{"ncclInt8", 1}, {"ncclUint8", 1}, {"ncclInt32", 4}, {"ncclUint32", 4},
               {"ncclInt64", 8}, {"ncclUint64", 8}, {"ncclFloat16", 2}, {"ncclFloat32", 4},
               {"ncclFloat64", 8}, {"ncclBfloat16", 2}, {"ncclFloat8e4m3", 1},
               {"ncclFloat8e5m2", 1}, {"Unknown", -1}, {"ncclFloat", -1}, {"", -1}, {NULL, -1}};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    CHECK(cp_dtype_size_from_name(types[i].name) == types[i].size, "size of %s = %d, want %d",
          types[i].name ? types[i].name : "NULL", cp_dtype_size_from_name(types[i].name),
          types[i].size);

  const char* colls[] = {"broadcast", "reduce", "allgather", "reducescatter", "allreduce"};
  for (int c = 0; c < CP_NUM_COLLS; c++) {
    CHECK(strcmp(cp_coll_name(c), colls[c]) == 0, "cp_coll_name(%d) = %s", c, cp_coll_name(c));
    CHECK_INT_EQ(cp_coll_from_name(cp_coll_name(c)), c);
  }
  const char* algo_tokens[] = {"tree", "ring", "collnet_direct", "collnet_chain", "nvls",
                               "nvls_tree", "pat"};
  for (int a = 0; a < CP_NUM_ALGOS; a++) {
    CHECK(strcmp(cp_algo_name(a), algo_tokens[a]) == 0, "cp_algo_name(%d) = %s", a, cp_algo_name(a));
    CHECK_INT_EQ(cp_algo_from_name(cp_algo_name(a)), a);
  }
  const char* protos[] = {"ll", "ll128", "simple"};
  for (int p = 0; p < CP_NUM_PROTOS; p++) {
    CHECK(strcmp(cp_proto_name(p), protos[p]) == 0, "cp_proto_name(%d) = %s", p, cp_proto_name(p));
    CHECK_INT_EQ(cp_proto_from_name(cp_proto_name(p)), p);
  }
  CHECK(strcmp(cp_coll_name(-1), "?") == 0 && strcmp(cp_coll_name(5), "?") == 0, "bad coll name");
  CHECK(strcmp(cp_algo_name(-1), "?") == 0 && strcmp(cp_algo_name(7), "?") == 0, "bad algo name");
  CHECK(strcmp(cp_proto_name(-1), "?") == 0 && strcmp(cp_proto_name(3), "?") == 0, "bad proto name");

  CHECK_INT_EQ(cp_proto_grain(CP_PROTO_LL), 16);
  CHECK_INT_EQ(cp_proto_grain(CP_PROTO_LL128), 1920);
  CHECK_INT_EQ(cp_proto_grain(CP_PROTO_SIMPLE), 512);
  CHECK_INT_EQ(cp_proto_grain(3), 0);
  CHECK_INT_EQ(cp_proto_grain(-1), 0);

  CHECK_INT_EQ(cp_coll_nbytes(CP_COLL_ALLREDUCE, 1000, 4, 8), 4000);
  CHECK_INT_EQ(cp_coll_nbytes(CP_COLL_ALLREDUCE, 1000, 4, -1), 4000); /* n_ranks not needed */
  CHECK_INT_EQ(cp_coll_nbytes(CP_COLL_REDUCE, 1000, 2, 8), 2000);
  CHECK_INT_EQ(cp_coll_nbytes(CP_COLL_BROADCAST, 4096, 1, 8), 4096);
  CHECK_INT_EQ(cp_coll_nbytes(CP_COLL_ALLGATHER, 4096, 1, 8), 32768);
  CHECK_INT_EQ(cp_coll_nbytes(CP_COLL_REDUCESCATTER, 1000, 4, 8), 32000);
  CHECK_INT_EQ(cp_coll_nbytes(CP_COLL_ALLGATHER, 4096, 1, 0), 0);
  CHECK_INT_EQ(cp_coll_nbytes(CP_COLL_REDUCESCATTER, 1000, 4, -1), 0);
  CHECK_INT_EQ(cp_coll_nbytes(CP_COLL_ALLREDUCE, 1000, -1, 8), 0);
  CHECK_INT_EQ(cp_coll_nbytes(CP_COLL_ALLREDUCE, 1000, 0, 8), 0);
  CHECK_INT_EQ(cp_coll_nbytes(5, 1000, 4, 8), 0);
  CHECK_INT_EQ(cp_coll_nbytes(-1, 1000, 4, 8), 0);
  CHECK_INT_EQ(cp_coll_nbytes(CP_COLL_ALLREDUCE, SIZE_MAX / 2, 4, 8), 0);   /* overflow */
  CHECK_INT_EQ(cp_coll_nbytes(CP_COLL_ALLGATHER, SIZE_MAX / 4, 1, 8), 0);   /* overflow */

  for (int r = CP_OK; r <= CP_ERR_INTERNAL; r++) {
    const char* s = cp_result_str((cp_result)r);
    CHECK(s != NULL && *s != '\0', "cp_result_str(%d) empty", r);
    for (int q = CP_OK; q < r; q++)
      CHECK(strcmp(s, cp_result_str((cp_result)q)) != 0, "results %d and %d share a text", q, r);
  }
  CHECK(strstr(cp_result_str((cp_result)99), "unknown") != NULL, "out-of-range result text");
}

/* ---- NULL safety -------------------------------------------------------------------------- */

static void test_null_safety(void) {
  cp_coll_event ev = ev_of(CP_COLL_ALLREDUCE, 1024, CP_ALGO_RING, CP_PROTO_LL, 1);
  CHECK(cp_prof_coll_start(NULL, &ev) == NULL, "NULL ctx must drop");
  CHECK(cp_prof_kernel_start(NULL, NULL, 0, 1) == NULL, "NULL ctx must drop");
  cp_prof_kernel_record_stop(NULL, 5);
  cp_prof_event_stop(NULL);
  cp_prof_comm_destroy(NULL);

  cp_prof_comm* ctx = NULL;
  cp_prof_wants w = {7, 7};
  CHECK_INT_EQ(cp_prof_comm_create(NULL, &ctx, &w), CP_ERR_INVALID);
  CHECK(ctx == NULL && w.coll == 0 && w.kernel_ch == 0, "failed create must clear outputs");
  cp_prof_init_args a = {.gpu_timestamps = 1, .n_ranks = -1, .n_nodes = -1, .rank = -1};
  CHECK_INT_EQ(cp_prof_comm_create(&a, NULL, &w), CP_ERR_INVALID);
  CHECK_INT_EQ(cp_prof_comm_create(&a, &ctx, NULL), CP_ERR_INVALID);

  ctx = make_ctx(NULL, 1, NULL);
  CHECK(cp_prof_coll_start(ctx, NULL) == NULL, "NULL event must drop");
  CHECK(cp_prof_kernel_start(ctx, NULL, 0, 1) == NULL, "NULL parent must drop");
  cp_prof_comm_destroy(ctx);
}

/* ---- attribution -------------------------------------------------------------------------- */

static void test_attribution(void) {
  char path[512];
  set_stats_file(path, sizeof path, "attribution.jsonl");
  cp_prof_wants w;
  cp_prof_comm* ctx = make_ctx("attr", 1, &w);
  CHECK(w.coll == 1 && w.kernel_ch == 1, "observe mode with GPU timestamps wants coll+kernel_ch");

  const size_t MB = 1 << 20;
  cp_coll_event ev = ev_of(CP_COLL_ALLREDUCE, MB, CP_ALGO_RING, CP_PROTO_SIMPLE, 4);
  CHECK(cp_prof_coll_start(ctx, &ev) == NULL, "first ring use must be skipped (warm-up)");

  /* Coll stop first (what NCCL does: stop at enqueue), then the four channels. */
  void* h = cp_prof_coll_start(ctx, &ev);
  CHECK(h != NULL, "coll start dropped");
  cp_prof_event_stop(h);
  kernel(ctx, h, 0, 10000, 11000);
  kernel(ctx, h, 1, 10000, 13000); /* the longest channel: 3000 ns */
  kernel(ctx, h, 2, 10500, 12500);
  kernel(ctx, h, 3, 10000, 11500);

  /* Channels first, Coll stop last; channel ids need not be 0..n-1. */
  h = cp_prof_coll_start(ctx, &ev);
  kernel(ctx, h, 7, 100000, 101000);
  kernel(ctx, h, 9, 100000, 105000); /* 5000 ns */
  kernel(ctx, h, 63, 100000, 100001);
  kernel(ctx, h, 1, 104000, 104100);
  cp_prof_event_stop(h);

  /* Interleaved: all starts, the Coll stop in the middle, stops in reverse order. */
  h = cp_prof_coll_start(ctx, &ev);
  void* k[4];
  for (int c = 0; c < 4; c++) k[c] = cp_prof_kernel_start(ctx, h, c, 200000);
  for (int c = 0; c < 4; c++) cp_prof_kernel_record_stop(k[c], 200000 + 1000u * (unsigned)(c + 1));
  cp_prof_event_stop(k[3]);
  cp_prof_event_stop(h);
  cp_prof_event_stop(h); /* a repeated Coll stop must not release a channel's reference */
  cp_prof_event_stop(k[2]);
  cp_prof_event_stop(k[1]);
  cp_prof_event_stop(k[0]); /* max = 4000 ns */

  /* A single-channel tree collective (first tree use skipped too). */
  cp_coll_event tev = ev_of(CP_COLL_ALLREDUCE, MB, CP_ALGO_TREE, CP_PROTO_LL128, 1);
  CHECK(cp_prof_coll_start(ctx, &tev) == NULL, "first tree use must be skipped");
  h = cp_prof_coll_start(ctx, &tev);
  cp_prof_event_stop(h);
  kernel(ctx, h, 0, 1ull << 40, (1ull << 40) + 700);

  cp_prof_comm_destroy(ctx);

  stats_file sf;
  CHECK(load_stats(&sf, path) == 0, "stats file %s not written", path);
  if (!sf.text) return;
  CHECK_INT_EQ(sf.n, 3);
  CHECK_INT_EQ(count_slot_lines(&sf), 2);
  const char* ring = find_slot_line(&sf, "allreduce", MB, "ring", "simple", 4);
  CHECK(ring != NULL, "ring slot missing");
  CHECK_NUM(ring, "count", 3);
  CHECK_NUM(ring, "mean_us", 4.0);
  CHECK_NUM(ring, "std_us", 1.0);
  CHECK_NUM(ring, "min_us", 3.0);
  CHECK_NUM(ring, "max_us", 5.0);
  CHECK_NUM(ring, "untimed", 0);
  /* 3000 and 4000 -> bucket 11 (2048..4095), 5000 -> bucket 12. Median: the 1.5th sample lies
   * in bucket 11, three quarters through it: 2048 + 0.75 * 2048 = 3584. */
  int n_entries = 0;
  CHECK_INT_EQ(hist_entry(ring, 11, &n_entries), 2);
  CHECK_INT_EQ(n_entries, CP_STATS_BUCKETS);
  CHECK_INT_EQ(hist_entry(ring, 12, NULL), 1);
  CHECK_INT_EQ(hist_entry(ring, 10, NULL), 0);
  CHECK_NUM(ring, "p50_us", 3.584);
  CHECK_STR_CONTAINS(ring, "\"schema\":\"cclpilot.stats/1\"");
  CHECK_STR_CONTAINS(ring, "\"comm_id\":\"0x00000000deadbeef\"");
  CHECK_STR_CONTAINS(ring, "\"comm_name\":\"attr\"");
  CHECK_NUM(ring, "rank", 3);
  CHECK_NUM(ring, "n_ranks", 16);
  CHECK_NUM(ring, "n_nodes", 2);

  const char* tree = find_slot_line(&sf, "allreduce", MB, "tree", "ll128", 1);
  CHECK(tree != NULL, "tree slot missing");
  CHECK_NUM(tree, "count", 1);
  CHECK_NUM(tree, "mean_us", 0.7);
  CHECK_NUM(tree, "std_us", 0.0);
  CHECK_NUM(tree, "p50_us", 0.7);
  CHECK_INT_EQ(hist_entry(tree, 9, NULL), 1);

  const char* sum = find_summary(&sf);
  CHECK(sum != NULL, "summary line missing");
  CHECK_NUM(sum, "timed", 4);
  CHECK_NUM(sum, "warmup_skipped", 2);
  CHECK_NUM(sum, "discarded", 0);
  CHECK_NUM(sum, "dropped_pool", 0);
  CHECK_NUM(sum, "dropped_stats_full", 0);
  free(sf.text);
}

/* First use is per algorithm and per communicator, decided at Coll start. */
static void test_warmup_per_context(void) {
  char path[512];
  set_stats_file(path, sizeof path, "warmup.jsonl");
  cp_prof_comm* a = make_ctx("a", 1, NULL);
  cp_prof_comm* b = make_ctx("b", 1, NULL);
  cp_coll_event ev = ev_of(CP_COLL_ALLGATHER, 8192, CP_ALGO_RING, CP_PROTO_LL, 1);
  CHECK(cp_prof_coll_start(a, &ev) == NULL, "first use on a skipped");
  /* Another protocol, size or collective with the same algorithm is no longer a first use. */
  cp_coll_event ev2 = ev_of(CP_COLL_BROADCAST, 64, CP_ALGO_RING, CP_PROTO_SIMPLE, 2);
  void* h = cp_prof_coll_start(a, &ev2);
  CHECK(h != NULL, "second ring use on a dropped");
  cp_prof_event_stop(h);
  kernel(a, h, 0, 50, 150);
  kernel(a, h, 1, 50, 250);
  /* Communicator b has its own connections: its first ring use is skipped too. */
  CHECK(cp_prof_coll_start(b, &ev) == NULL, "first use on b skipped");
  h = cp_prof_coll_start(b, &ev);
  CHECK(h != NULL, "second use on b dropped");
  kernel(b, h, 5, 1000, 3000);
  cp_prof_event_stop(h);
  /* An unattributable first use still counts as the algorithm's warm-up. */
  cp_coll_event unk = ev_of(CP_COLL_ALLREDUCE, 0, CP_ALGO_PAT, CP_PROTO_SIMPLE, 1);
  CHECK(cp_prof_coll_start(b, &unk) == NULL, "unknown-size first use");
  cp_coll_event pat = ev_of(CP_COLL_ALLREDUCE, 4096, CP_ALGO_PAT, CP_PROTO_SIMPLE, 1);
  h = cp_prof_coll_start(b, &pat);
  CHECK(h != NULL, "PAT after its warm-up must be measured");
  kernel(b, h, 0, 10, 20);
  cp_prof_event_stop(h);
  cp_prof_comm_destroy(a);
  cp_prof_comm_destroy(b);

  stats_file sf;
  CHECK(load_stats(&sf, path) == 0, "stats file missing");
  if (!sf.text) return;
  CHECK_INT_EQ(sf.n, 5); /* a: 1 slot + summary; b: 2 slots + summary */
  const char* bc = find_slot_line(&sf, "broadcast", 64, "ring", "simple", 2);
  CHECK_NUM(bc, "count", 1);
  CHECK_NUM(bc, "max_us", 0.2);
  CHECK_STR_CONTAINS(bc, "\"comm_name\":\"a\"");
  const char* ag = find_slot_line(&sf, "allgather", 8192, "ring", "ll", 1);
  CHECK_NUM(ag, "count", 1);
  CHECK_NUM(ag, "mean_us", 2.0);
  CHECK_STR_CONTAINS(ag, "\"comm_name\":\"b\"");
  const char* pl = find_slot_line(&sf, "allreduce", 4096, "pat", "simple", 1);
  CHECK_NUM(pl, "count", 1);
  int summaries = 0;
  for (int i = 0; i < sf.n; i++) {
    if (!strstr(sf.lines[i], "comm_summary")) continue;
    summaries++;
    if (strstr(sf.lines[i], "\"comm_name\":\"a\"")) {
      CHECK_NUM(sf.lines[i], "warmup_skipped", 1);
      CHECK_NUM(sf.lines[i], "timed", 1);
    } else {
      CHECK_NUM(sf.lines[i], "warmup_skipped", 2);
      CHECK_NUM(sf.lines[i], "timed", 2);
      CHECK_NUM(sf.lines[i], "discarded", 0);
    }
  }
  CHECK_INT_EQ(summaries, 2);
  free(sf.text);
}

/* ---- discards ----------------------------------------------------------------------------- */

static void test_discards(void) {
  char path[512];
  set_stats_file(path, sizeof path, "discards.jsonl");
  cp_prof_comm* ctx = make_ctx("disc", 1, NULL);
  const size_t KB = 1024;
  /* Warm every algorithm used below so that only the discards remain to be seen. */
  for (int a = 0; a < CP_NUM_ALGOS; a++) {
    cp_coll_event w = ev_of(CP_COLL_ALLREDUCE, KB, a, CP_PROTO_LL, 1);
    CHECK(cp_prof_coll_start(ctx, &w) == NULL, "warm-up of algo %d not skipped", a);
  }

  /* Unattributable at start: the arm or the size is unknown. */
  cp_coll_event bad[] = {
      ev_of(CP_COLL_ALLREDUCE, KB, -1, CP_PROTO_LL, 2),        /* unknown algorithm */
      ev_of(CP_COLL_ALLREDUCE, KB, 7, CP_PROTO_LL, 2),         /* out of range algorithm */
      ev_of(CP_COLL_ALLREDUCE, KB, CP_ALGO_RING, -1, 2),       /* unknown protocol */
      ev_of(CP_COLL_ALLREDUCE, KB, CP_ALGO_RING, 3, 2),        /* out of range protocol */
      ev_of(-1, KB, CP_ALGO_RING, CP_PROTO_LL, 2),             /* SendRecv etc. */
      ev_of(CP_COLL_ALLREDUCE, 0, CP_ALGO_RING, CP_PROTO_LL, 2),  /* uint8: size unknown */
      ev_of(CP_COLL_ALLREDUCE, KB, CP_ALGO_COLLNET_DIRECT, CP_PROTO_SIMPLE, 0), /* CollNet: 0 */
      ev_of(CP_COLL_ALLREDUCE, KB, CP_ALGO_RING, CP_PROTO_LL, 65), /* beyond MAXCHANNELS */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK(cp_prof_coll_start(ctx, &bad[i]) == NULL, "unattributable event %zu got a handle", i);

  cp_coll_event ev = ev_of(CP_COLL_REDUCE, 2 * KB, CP_ALGO_RING, CP_PROTO_LL, 2);

  /* stop < start on one channel. */
  void* h = cp_prof_coll_start(ctx, &ev);
  cp_prof_event_stop(h);
  kernel(ctx, h, 0, 5000, 6000);
  kernel(ctx, h, 1, 5000, 4000);

  /* A channel without recordEventState(KernelChStop). */
  h = cp_prof_coll_start(ctx, &ev);
  cp_prof_event_stop(h);
  kernel(ctx, h, 0, 5000, 6000);
  void* k = cp_prof_kernel_start(ctx, h, 1, 5000);
  cp_prof_event_stop(k);

  /* A zero (never written) timestamp. */
  h = cp_prof_coll_start(ctx, &ev);
  kernel(ctx, h, 0, 0, 6000);
  kernel(ctx, h, 1, 5000, 6000);
  cp_prof_event_stop(h);

  /* The same channel twice. */
  h = cp_prof_coll_start(ctx, &ev);
  kernel(ctx, h, 0, 5000, 6000);
  CHECK(cp_prof_kernel_start(ctx, h, 0, 5000) == NULL, "a repeated channel must be dropped");
  cp_prof_event_stop(h);

  /* A channel id out of range. */
  h = cp_prof_coll_start(ctx, &ev);
  CHECK(cp_prof_kernel_start(ctx, h, 64, 5000) == NULL, "channel 64 must be dropped");
  kernel(ctx, h, 1, 5000, 6000);
  cp_prof_event_stop(h);

  /* More KernelCh events than channels, while the collective is still open. */
  h = cp_prof_coll_start(ctx, &ev);
  void* k0 = cp_prof_kernel_start(ctx, h, 0, 5000);
  void* k1 = cp_prof_kernel_start(ctx, h, 1, 5000);
  CHECK(cp_prof_kernel_start(ctx, h, 2, 5000) == NULL, "a third channel of a 2-channel coll");
  cp_prof_kernel_record_stop(k0, 6000);
  cp_prof_kernel_record_stop(k1, 6000);
  cp_prof_event_stop(k0);
  cp_prof_event_stop(k1);
  cp_prof_event_stop(h);

  /* A kernel handle given where a Coll handle belongs is ignored. */
  h = cp_prof_coll_start(ctx, &ev);
  k0 = cp_prof_kernel_start(ctx, h, 0, 5000);
  CHECK(cp_prof_kernel_start(ctx, k0, 1, 5000) == NULL, "kernel handle as parent");
  cp_prof_kernel_record_stop(h, 1); /* a Coll handle here is ignored too */
  cp_prof_kernel_record_stop(k0, 5500);
  cp_prof_event_stop(k0);
  kernel(ctx, h, 1, 5000, 5600);
  cp_prof_event_stop(h); /* this one is good: 600 ns */

  /* Incomplete at destroy: one channel never reported, and one Coll never stopped. */
  h = cp_prof_coll_start(ctx, &ev);
  cp_prof_event_stop(h);
  kernel(ctx, h, 0, 5000, 6000);
  h = cp_prof_coll_start(ctx, &ev);
  kernel(ctx, h, 0, 5000, 6000);
  kernel(ctx, h, 1, 5000, 6000);

  cp_prof_comm_destroy(ctx);

  stats_file sf;
  CHECK(load_stats(&sf, path) == 0, "stats file missing");
  if (!sf.text) return;
  CHECK_INT_EQ(count_slot_lines(&sf), 1);
  const char* s = find_slot_line(&sf, "reduce", 2 * KB, "ring", "ll", 2);
  CHECK_NUM(s, "count", 1);
  CHECK_NUM(s, "mean_us", 0.6);
  const char* sum = find_summary(&sf);
  CHECK_NUM(sum, "warmup_skipped", CP_NUM_ALGOS);
  CHECK_NUM(sum, "timed", 1);
  CHECK_NUM(sum, "discarded_unattributable", 8);
  CHECK_NUM(sum, "discarded_bad_timing", 6);
  CHECK_NUM(sum, "discarded_incomplete", 2);
  CHECK_NUM(sum, "discarded", 16);
  CHECK_NUM(sum, "dropped_pool", 0);
  free(sf.text);
}

/* ---- pools -------------------------------------------------------------------------------- */

static void test_coll_pool_exhaustion(void) {
  char path[512];
  set_stats_file(path, sizeof path, "pool.jsonl");
  g_log[0] = '\0';
  cp_prof_comm* ctx = make_ctx("pool", 1, NULL);
  cp_coll_event ev = ev_of(CP_COLL_ALLREDUCE, 4096, CP_ALGO_RING, CP_PROTO_LL, 1);
  cp_prof_coll_start(ctx, &ev); /* warm-up */
  enum { LIMIT = 1 << 20 };
  void** hs = malloc(sizeof(void*) * LIMIT);
  int n = 0;
  while (n < LIMIT && (hs[n] = cp_prof_coll_start(ctx, &ev)) != NULL) n++;
  CHECK(n > 0 && n < LIMIT, "the collective pool is not bounded (%d in flight)", n);
  CHECK(cp_prof_coll_start(ctx, &ev) == NULL, "still full");
  CHECK_STR_CONTAINS(g_log, "in flight");
  /* Completing one collective frees its record for the next. */
  cp_prof_event_stop(hs[0]);
  kernel(ctx, hs[0], 0, 100, 200);
  void* again = cp_prof_coll_start(ctx, &ev);
  CHECK(again != NULL, "a freed record was not reused");
  cp_prof_comm_destroy(ctx);

  stats_file sf;
  CHECK(load_stats(&sf, path) == 0, "stats file missing");
  if (sf.text) {
    const char* sum = find_summary(&sf);
    CHECK_NUM(sum, "dropped_pool", 2);
    CHECK_NUM(sum, "timed", 1);
    CHECK_NUM(sum, "discarded_incomplete", n);
    free(sf.text);
  }
  free(hs);
}

static void test_kernel_pool_exhaustion(void) {
  char path[512];
  set_stats_file(path, sizeof path, "kpool.jsonl");
  cp_prof_comm* ctx = make_ctx("kpool", 1, NULL);
  enum { NCOLL = 100, NCH = 64 };
  cp_coll_event ev = ev_of(CP_COLL_ALLREDUCE, 1 << 24, CP_ALGO_NVLS, CP_PROTO_SIMPLE, NCH);
  cp_prof_coll_start(ctx, &ev); /* warm-up */
  void* colls[NCOLL];
  for (int i = 0; i < NCOLL; i++) {
    colls[i] = cp_prof_coll_start(ctx, &ev);
    CHECK(colls[i] != NULL, "coll %d dropped", i);
    cp_prof_event_stop(colls[i]);
  }
  /* Open KernelCh events until the kernel pool runs dry. */
  static void* ks[NCOLL][NCH];
  int failed_coll = -1, failed_ch = -1, opened = 0;
  for (int i = 0; i < NCOLL && failed_coll < 0; i++) {
    for (int c = 0; c < NCH; c++) {
      ks[i][c] = cp_prof_kernel_start(ctx, colls[i], c, 1000);
      if (ks[i][c] == NULL) {
        failed_coll = i;
        failed_ch = c;
        break;
      }
      opened++;
    }
  }
  CHECK(failed_coll >= 0, "the kernel pool is not bounded (%d open)", opened);
  if (failed_coll < 0) return;
  /* Close what is open, then finish every remaining channel. */
  for (int i = 0; i <= failed_coll; i++)
    for (int c = 0; c < NCH && !(i == failed_coll && c >= failed_ch); c++) {
      cp_prof_kernel_record_stop(ks[i][c], 2000 + (uint64_t)c);
      cp_prof_event_stop(ks[i][c]);
    }
  for (int i = failed_coll; i < NCOLL; i++)
    for (int c = (i == failed_coll ? failed_ch + 1 : 0); c < NCH; c++)
      kernel(ctx, colls[i], c, 1000, 2000 + (uint64_t)c);
  cp_prof_comm_destroy(ctx);

  stats_file sf;
  CHECK(load_stats(&sf, path) == 0, "stats file missing");
  if (sf.text) {
    const char* sum = find_summary(&sf);
    CHECK_NUM(sum, "dropped_pool", 1);
    CHECK_NUM(sum, "timed", NCOLL - 1);
    CHECK_NUM(sum, "discarded", 0);
    const char* s = find_slot_line(&sf, "allreduce", 1 << 24, "nvls", "simple", NCH);
    CHECK_NUM(s, "count", NCOLL - 1);
    CHECK_NUM(s, "min_us", 1.063); /* the longest of 64 channels: 1000 + 63 ns */
    free(sf.text);
  }
}

/* ---- modes -------------------------------------------------------------------------------- */

static void test_mode_off(void) {
  char path[512];
  set_stats_file(path, sizeof path, "off.jsonl");
  setenv("CCLPILOT_MODE", "off", 1);
  cp_prof_wants w = {1, 1};
  cp_prof_comm* ctx = make_ctx("off", 1, &w);
  CHECK(w.coll == 0 && w.kernel_ch == 0, "mode off must want no events");
  cp_coll_event ev = ev_of(CP_COLL_ALLREDUCE, 4096, CP_ALGO_RING, CP_PROTO_LL, 1);
  for (int i = 0; i < 3; i++) CHECK(cp_prof_coll_start(ctx, &ev) == NULL, "mode off returned a handle");
  cp_prof_comm_destroy(ctx);
  unsetenv("CCLPILOT_MODE");
  struct stat st;
  CHECK(stat(path, &st) != 0 && errno == ENOENT, "mode off wrote a statistics file");
}

static void test_untimed(void) {
  char path[512];
  set_stats_file(path, sizeof path, "untimed.jsonl");
  cp_prof_wants w;
  cp_prof_comm* ctx = make_ctx("v3", 0, &w);
  CHECK(w.coll == 1 && w.kernel_ch == 0, "without GPU timestamps only Coll events are wanted");
  cp_coll_event ev = ev_of(CP_COLL_ALLREDUCE, 4096, CP_ALGO_RING, CP_PROTO_LL, 2);
  cp_coll_event unk = ev_of(CP_COLL_ALLREDUCE, 4096, -1, CP_PROTO_LL, 2);
  for (int i = 0; i < 5; i++) CHECK(cp_prof_coll_start(ctx, &ev) == NULL, "untimed returns no handle");
  CHECK(cp_prof_coll_start(ctx, &unk) == NULL, "unknown arm");
  cp_prof_comm_destroy(ctx);
  stats_file sf;
  CHECK(load_stats(&sf, path) == 0, "stats file missing");
  if (!sf.text) return;
  const char* s = find_slot_line(&sf, "allreduce", 4096, "ring", "ll", 2);
  CHECK_NUM(s, "untimed", 4); /* 5 uses, the first is warm-up */
  CHECK_NUM(s, "count", 0);
  CHECK_STR_CONTAINS(s, "\"mean_us\":null");
  CHECK_STR_CONTAINS(s, "\"p50_us\":null");
  const char* sum = find_summary(&sf);
  CHECK_STR_CONTAINS(sum, "\"gpu_timestamps\":false");
  CHECK_NUM(sum, "untimed", 4);
  CHECK_NUM(sum, "warmup_skipped", 1);
  CHECK_NUM(sum, "discarded_unattributable", 1);
  free(sf.text);
}

/* ---- statistics file ---------------------------------------------------------------------- */

static void test_file_format(void) {
  char pattern[512], path[512];
  path_in_dir(pattern, sizeof pattern, "fmt-%p.jsonl");
  snprintf(path, sizeof path, "%s/fmt-%ld.jsonl", g_dir, (long)getpid());
  unlink(path);
  setenv("CCLPILOT_STATS_FILE", pattern, 1);
  /* A name with a quote, a backslash, a newline, a tab, valid UTF-8 and one stray byte. */
  const char* name = "job \"x\"\\a\nb\tc \xc3\xa9 \xff!";
  cp_prof_comm* ctx = make_ctx(name, 1, NULL);
  cp_coll_event ev = ev_of(CP_COLL_REDUCESCATTER, 123456789, CP_ALGO_PAT, CP_PROTO_SIMPLE, 1);
  cp_prof_coll_start(ctx, &ev);
  for (int i = 0; i < 4; i++) {
    void* h = cp_prof_coll_start(ctx, &ev);
    cp_prof_event_stop(h);
    kernel(ctx, h, 0, 1000, 1000 + 1000000u * (unsigned)(i + 1)); /* 1, 2, 3, 4 ms */
  }
  cp_prof_comm_destroy(ctx);

  /* Appending: a second communicator's lines follow the first's. */
  cp_prof_init_args a = {.abi_version = 3, .has_comm_id = 0, .comm_name = NULL, .n_nodes = -1,
                         .n_ranks = -1, .rank = -1, .gpu_timestamps = 1, .log = capture_logger};
  cp_prof_comm* ctx2 = NULL;
  cp_prof_wants w;
  CHECK_INT_EQ(cp_prof_comm_create(&a, &ctx2, &w), CP_OK);
  cp_prof_comm_destroy(ctx2);

  stats_file sf;
  CHECK(load_stats(&sf, path) == 0, "'%%p' not expanded to %s", path);
  if (!sf.text) return;
  CHECK_INT_EQ(sf.n, 3);
  const char* s = find_slot_line(&sf, "reducescatter", 123456789, "pat", "simple", 1);
  CHECK(s == sf.lines[0], "slot line must come first");
  CHECK_STR_CONTAINS(s, "\"comm_name\":\"job \\\"x\\\"\\\\a\\u000ab\\u0009c \xc3\xa9 \\ufffd!\"");
  CHECK_NUM(s, "count", 4);
  CHECK_NUM(s, "mean_us", 2500.0);
  CHECK_NUM(s, "min_us", 1000.0);
  CHECK_NUM(s, "max_us", 4000.0);
  CHECK(fabs(num(s, "std_us") - 1290.9944) < 1e-3, "std_us = %f", num(s, "std_us"));
  /* 1 ms -> bucket 19 (< 2^20), 2 ms -> 20, 3 and 4 ms -> 21; the median (2nd of 4) closes
   * bucket 20: its upper edge 2^21 ns. */
  CHECK_INT_EQ(hist_entry(s, 19, NULL), 1);
  CHECK_INT_EQ(hist_entry(s, 20, NULL), 1);
  CHECK_INT_EQ(hist_entry(s, 21, NULL), 2);
  CHECK(fabs(num(s, "p50_us") - 2097.152) < 1e-3, "p50_us = %f", num(s, "p50_us"));
  CHECK(sf.lines[0][strlen(sf.lines[0]) - 1] == '}', "line does not end with }");
  const char* s2 = sf.lines[2];
  CHECK_STR_CONTAINS(s2, "\"comm_id\":null");
  CHECK_STR_CONTAINS(s2, "\"comm_name\":null");
  CHECK_STR_CONTAINS(s2, "\"kind\":\"comm_summary\"");
  CHECK_NUM(s2, "rank", -1);
  free(sf.text);
  unsetenv("CCLPILOT_STATS_FILE");
}

static void test_unwritable_path(void) {
  setenv("CCLPILOT_STATS_FILE", "/nonexistent-cclpilot-dir/stats.jsonl", 1);
  g_log[0] = '\0';
  cp_prof_comm* ctx = make_ctx("nowrite", 1, NULL);
  cp_coll_event ev = ev_of(CP_COLL_ALLREDUCE, 4096, CP_ALGO_RING, CP_PROTO_LL, 1);
  cp_prof_coll_start(ctx, &ev);
  void* h = cp_prof_coll_start(ctx, &ev);
  cp_prof_event_stop(h);
  kernel(ctx, h, 0, 1, 2);
  cp_prof_comm_destroy(ctx);
  CHECK_STR_CONTAINS(g_log, "/nonexistent-cclpilot-dir/stats.jsonl");
  CHECK_STR_CONTAINS(g_log, strerror(ENOENT));
  CHECK_STR_CONTAINS(g_log, "nowrite");

  /* A directory in place of the file. */
  setenv("CCLPILOT_STATS_FILE", g_dir, 1);
  g_log[0] = '\0';
  ctx = make_ctx("isdir", 1, NULL);
  cp_prof_comm_destroy(ctx);
  CHECK_STR_CONTAINS(g_log, strerror(EISDIR));
  unsetenv("CCLPILOT_STATS_FILE");
}

/* ---- launch thread + proxy thread --------------------------------------------------------- */

#define STRESS_N 200000
#define RING_SIZE 1024

typedef struct {
  cp_prof_comm* ctx;
  void* handles[RING_SIZE];
  int nch[RING_SIZE];
  uint64_t seq[RING_SIZE];
  _Atomic uint64_t head, tail;
  _Atomic int done;
} stress_state;

static uint64_t stress_duration(uint64_t seq, int ch) { return 1000 + (seq % 97) * 10 + (uint64_t)ch; }

static void* proxy_thread(void* p) {
  stress_state* s = p;
  for (;;) {
    uint64_t t = atomic_load_explicit(&s->tail, memory_order_relaxed);
    if (t == atomic_load_explicit(&s->head, memory_order_acquire)) {
      if (atomic_load_explicit(&s->done, memory_order_acquire) &&
          t == atomic_load_explicit(&s->head, memory_order_acquire))
        return NULL;
      continue;
    }
    void* h = s->handles[t % RING_SIZE];
    int nch = s->nch[t % RING_SIZE];
    uint64_t seq = s->seq[t % RING_SIZE];
    atomic_store_explicit(&s->tail, t + 1, memory_order_release);
    for (int c = 0; c < nch; c++) {
      void* k = cp_prof_kernel_start(s->ctx, h, c, 1000000);
      cp_prof_kernel_record_stop(k, 1000000 + stress_duration(seq, c));
      cp_prof_event_stop(k);
    }
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_stress(void) {
  char path[512];
  set_stats_file(path, sizeof path, "stress.jsonl");
  static stress_state s;
  s.ctx = make_ctx("stress", 1, NULL);
  atomic_store(&s.head, 0);
  atomic_store(&s.tail, 0);
  atomic_store(&s.done, 0);
  pthread_t proxy;
  CHECK_INT_EQ(pthread_create(&proxy, NULL, proxy_thread, &s), 0);

  /* Expected aggregate per channel count: the collective's time is its longest channel. */
  double want_sum[9] = {0};
  uint64_t want_count[9] = {0};
  uint64_t dropped = 0;
  double t0 = now_s();
  for (uint64_t seq = 0; seq < STRESS_N; seq++) {
    int nch = 1 + (int)(seq % 8);
    int algo = ((seq / 8) % 2) ? CP_ALGO_RING : CP_ALGO_TREE;
    cp_coll_event ev = ev_of(CP_COLL_ALLREDUCE, 65536, algo, CP_PROTO_SIMPLE, nch);
    ev.seq = seq;
    void* h = cp_prof_coll_start(s.ctx, &ev);
    if (h == NULL) {
      dropped++;
      continue;
    }
    if (algo == CP_ALGO_RING) {
      want_count[nch]++;
      want_sum[nch] += (double)stress_duration(seq, nch - 1);
    }
    while (atomic_load_explicit(&s.head, memory_order_relaxed) -
               atomic_load_explicit(&s.tail, memory_order_acquire) >= RING_SIZE) {
    }
    uint64_t hd = atomic_load_explicit(&s.head, memory_order_relaxed);
    s.handles[hd % RING_SIZE] = h;
    s.nch[hd % RING_SIZE] = nch;
    s.seq[hd % RING_SIZE] = seq;
    atomic_store_explicit(&s.head, hd + 1, memory_order_release);
    /* The Coll stop races with the proxy thread's KernelCh events, as in NCCL. */
    cp_prof_event_stop(h);
  }
  atomic_store_explicit(&s.done, 1, memory_order_release);
  pthread_join(proxy, NULL);
  double elapsed = now_s() - t0;
  uint64_t events = 0;
  for (uint64_t seq = 0; seq < STRESS_N; seq++) events += 2 + 3 * (1 + seq % 8);
  printf("profiler stress: %d collectives, %llu calls in %.3f s (%.1f ns per call, 2 threads)\n",
         STRESS_N, (unsigned long long)events, elapsed, elapsed * 1e9 / (double)events);
  CHECK_INT_EQ(dropped, 2); /* the first tree and the first ring */
  cp_prof_comm_destroy(s.ctx);

  stats_file sf;
  CHECK(load_stats(&sf, path) == 0, "stats file missing");
  if (!sf.text) return;
  const char* sum = find_summary(&sf);
  CHECK_NUM(sum, "timed", STRESS_N - 2);
  CHECK_NUM(sum, "warmup_skipped", 2);
  CHECK_NUM(sum, "discarded", 0);
  CHECK_NUM(sum, "dropped_pool", 0);
  CHECK_INT_EQ(count_slot_lines(&sf), 16);
  for (int nch = 1; nch <= 8; nch++) {
    const char* l = find_slot_line(&sf, "allreduce", 65536, "ring", "simple", nch);
    CHECK_NUM(l, "count", want_count[nch]);
    double mean_us = want_sum[nch] / (double)want_count[nch] / 1e3;
    CHECK(fabs(num(l, "mean_us") - mean_us) < 1e-4, "ring %d channels: mean %f want %f", nch,
          num(l, "mean_us"), mean_us);
    CHECK_NUM(l, "min_us", (1000.0 + nch - 1) / 1e3);
    CHECK_NUM(l, "max_us", (1000.0 + 96 * 10 + nch - 1) / 1e3);
  }
  free(sf.text);
  unsetenv("CCLPILOT_STATS_FILE");
}

int main(void) {
  unsetenv("CCLPILOT_MODE");
  unsetenv("CCLPILOT_STATS_FILE");
  snprintf(g_dir, sizeof g_dir, "/tmp/cclpilot-test-prof-XXXXXX");
  if (!mkdtemp(g_dir)) {
    fprintf(stderr, "cannot create a temporary directory: %s\n", strerror(errno));
    return 1;
  }
  test_names();
  test_null_safety();
  test_attribution();
  test_warmup_per_context();
  test_discards();
  test_coll_pool_exhaustion();
  test_kernel_pool_exhaustion();
  test_mode_off();
  test_untimed();
  test_file_format();
  test_unwritable_path();
  test_stress();
  /* Leave the directory for inspection only when something failed. */
  if (*cp_test_counter(1) == 0) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
  }
  TEST_RETURN();
}
