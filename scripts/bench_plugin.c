/*
 * Overhead benchmark of the cclpilot plugin, driven through its exported ABI objects exactly as
 * NCCL calls them. For each tuner ABI (v6, v5, v3) it times getCollInfo with a passthrough
 * configuration (observe mode, no table) and with a 1000-rule static table in the same run, and
 * prints p50/p99 per call and the difference. Through v6 it also times live mode: with no daemon
 * reachable (no plan), and with the same 1000 rules committed as a live plan by a minimal
 * in-process daemon speaking the protocol (the core's codec, linked statically). It also times
 * profiler v6 events.
 *
 * Per-call times are measured over batches of BATCH calls (one clock read per batch) because a
 * clock read costs about as much as the call being measured; percentiles are over batch means.
 *
 * usage: bench_plugin PLUGIN.so [calls]
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "cp_codec.h"
#include "nccl/profiler_v6.h"
#include "nccl/tuner_v3.h"
#include "nccl/tuner_v5.h"
#include "nccl/tuner_v6.h"

#define BATCH 32
#define NKEYS 64

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static void quiet_log(ncclDebugLogLevel level, unsigned long flags, const char* file, int line,
                      const char* fmt, ...) {
  (void)level; (void)flags; (void)file; (void)line; (void)fmt;
}

typedef struct { double p50, p99; } pct;

static pct percentiles(double* v, size_t n) {
  qsort(v, n, sizeof *v, cmp_double);
  pct p = {v[n / 2], v[(size_t)((double)n * 0.99)]};
  return p;
}

static size_t key_bytes[NKEYS];
static char table_path[] = "/tmp/cclpilot-bench-XXXXXX";

/* The 1000 rules of the table file, as a plan. */
static cp_rule bench_rules[1000];
static void make_rules(void) {
  for (int i = 0; i < 1000; i++) {
    cp_rule* r = &bench_rules[i];
    memset(r, 0, sizeof *r);
    r->coll = CP_COLL_ALLREDUCE;
    r->min_bytes = (uint64_t)i * 4096;
    r->max_bytes = (uint64_t)i * 4096 + 4095;
    r->n_nodes = r->n_ranks = r->num_pipe_ops = CP_ANY;
    r->n_arms = 1;
    r->arms[0] = (cp_arm){(int8_t)(i % 2 == 0 ? CP_ALGO_RING : CP_ALGO_TREE), (int8_t)(i % 3),
                          (uint8_t)(1 + i % 8), 0};
  }
}

/* A minimal daemon: answers HELLO with WELCOME, then commits one plan (the 1000 rules, active
 * from call 1) and waits for its ACK. Returns 0 when the plan was acknowledged. */
typedef struct { void* zctx; void* sock; } mini_daemon;

static int md_recv(mini_daemon* d, cp_msg* m, zmq_msg_t* peer, int timeout_ms) {
  zmq_pollitem_t it = {d->sock, 0, ZMQ_POLLIN, 0};
  if (zmq_poll(&it, 1, timeout_ms) <= 0) return -1;
  zmq_msg_t body;
  zmq_msg_init(peer);
  zmq_msg_init(&body);
  zmq_msg_recv(peer, d->sock, 0);
  zmq_msg_recv(&body, d->sock, 0);
  cp_decode_error err;
  int rc = cp_msg_decode(zmq_msg_data(&body), zmq_msg_size(&body), m, &err) == CP_OK ? 0 : -1;
  zmq_msg_close(&body);
  return rc;
}

static void md_send(mini_daemon* d, zmq_msg_t* peer, const cp_msg* m) {
  cp_buf b;
  cp_buf_init(&b, 0);
  if (cp_msg_encode(m, &b, NULL) == CP_OK) {
    zmq_msg_t id;
    zmq_msg_init(&id);
    zmq_msg_copy(&id, peer);
    zmq_msg_send(&id, d->sock, ZMQ_SNDMORE);
    zmq_send(d->sock, b.data, b.len, 0);
  }
  cp_buf_free(&b);
}

static int md_commit_plan(mini_daemon* d) {
  cp_msg m;
  zmq_msg_t peer;
  for (int i = 0; i < 50; i++) {
    if (md_recv(d, &m, &peer, 100) != 0) continue;
    int hello = m.type == CP_MSG_HELLO;
    uint64_t comm = hello ? m.u.hello.comm : 0;
    cp_msg_free(&m);
    if (!hello) { zmq_msg_close(&peer); continue; }
    cp_msg w;
    cp_msg_init(&w, CP_MSG_WELCOME);
    w.u.welcome.n_features = 2;
    CP_STR_SET(w.u.welcome.features[0], "measure");
    CP_STR_SET(w.u.welcome.features[1], "plans");
    w.u.welcome.comm = comm;
    w.u.welcome.session = 1;
    w.u.welcome.heartbeat_ms = 60000;
    w.u.welcome.report_ms = 60000;
    md_send(d, &peer, &w);
    cp_msg p;
    cp_msg_init(&p, CP_MSG_PREPARE);
    p.u.prepare.comm = comm;
    p.u.prepare.plan = 1;
    p.u.prepare.activate_at = 1;
    p.u.prepare.n_rules = 1000;
    p.u.prepare.rules = bench_rules; /* borrowed: never freed */
    md_send(d, &peer, &p);
    for (int k = 0; k < 50; k++) {
      cp_msg a;
      zmq_msg_t from;
      if (md_recv(d, &a, &from, 100) != 0) continue;
      int ok = a.type == CP_MSG_ACK && a.u.ack.ok;
      cp_msg_free(&a);
      zmq_msg_close(&from);
      if (!ok) continue;
      cp_msg c;
      cp_msg_init(&c, CP_MSG_COMMIT);
      c.u.commit.comm = comm;
      c.u.commit.plan = 1;
      c.u.commit.activate_at = 1;
      md_send(d, &peer, &c);
      zmq_msg_close(&peer);
      usleep(200000); /* the I/O thread applies the COMMIT before call 1 */
      return 0;
    }
    zmq_msg_close(&peer);
    return -1;
  }
  return -1;
}

static mini_daemon* live_daemon; /* when set, run_tuner lets it commit a plan after init */

/* Calls getCollInfo `calls` times over NKEYS keys through the given ABI version. */
static pct run_tuner(void* lib, int version, size_t calls) {
  void* ctx = NULL;
  ncclTuner_v6_t* t6 = NULL;
  ncclTuner_v5_t* t5 = NULL;
  ncclTuner_v3_t* t3 = NULL;
  ncclNvlDomainInfo_v5_t nvl = {1, 8, 8};
  static ncclTunerConstants_v5_t constants;
  if (version == 6) {
    t6 = dlsym(lib, "ncclTunerPlugin_v6");
    t6->init(&ctx, 0x1234, 8, 1, quiet_log, &nvl, &constants);
    if (live_daemon) {
      if (md_commit_plan(live_daemon) != 0) {
        fprintf(stderr, "bench: the plugin never acknowledged the live plan\n");
        exit(1);
      }
    }
  } else if (version == 5) {
    t5 = dlsym(lib, "ncclTunerPlugin_v5");
    t5->init(&ctx, 0x1234, 8, 1, quiet_log, &nvl, &constants);
  } else {
    t3 = dlsym(lib, "ncclTunerPlugin_v3");
    t3->init(8, 1, quiet_log, &ctx);
  }
  size_t batches = calls / BATCH;
  double* per_call = malloc(batches * sizeof *per_call);
  float table[NCCL_NUM_ALGORITHMS][NCCL_NUM_PROTOCOLS];
  float fresh[NCCL_NUM_ALGORITHMS][NCCL_NUM_PROTOCOLS];
  for (int a = 0; a < NCCL_NUM_ALGORITHMS; a++)
    for (int p = 0; p < NCCL_NUM_PROTOCOLS; p++) fresh[a][p] = (a <= 1) ? 10.0f + (float)(a * 3 + p) : -1.0f;
  size_t k = 0;
  for (size_t b = 0; b < batches; b++) {
    uint64_t t0 = now_ns();
    for (int i = 0; i < BATCH; i++) {
      memcpy(table, fresh, sizeof table);
      int nch = 0;
      size_t bytes = key_bytes[k++ & (NKEYS - 1)];
      if (t6)
        t6->getCollInfo(ctx, ncclFuncAllReduce, bytes, 1, (float**)table, NCCL_NUM_ALGORITHMS,
                        NCCL_NUM_PROTOCOLS, 0, &nch);
      else if (t5)
        t5->getCollInfo(ctx, ncclFuncAllReduce, bytes, 1, (float**)table, NCCL_NUM_ALGORITHMS,
                        NCCL_NUM_PROTOCOLS, 0, &nch);
      else
        t3->getCollInfo(ctx, ncclFuncAllReduce, bytes, 1, (float**)table, NCCL_NUM_ALGORITHMS,
                        NCCL_NUM_PROTOCOLS, &nch);
    }
    per_call[b] = (double)(now_ns() - t0) / BATCH;
  }
  if (t6) t6->finalize(ctx);
  else if (t5) t5->finalize(ctx);
  else t3->destroy(ctx);
  pct p = percentiles(per_call, batches);
  free(per_call);
  return p;
}

static double run_profiler(void* lib, size_t collectives, int n_channels) {
  ncclProfiler_v6_t* prof = dlsym(lib, "ncclProfiler_v6");
  void* ctx = NULL;
  int mask = 0;
  prof->init(&ctx, 0x1234, &mask, "bench", 1, 8, 0, quiet_log);
  uint64_t events = 0, t0 = now_ns(), gpu = 1000000;
  for (size_t i = 0; i < collectives; i++) {
    ncclProfilerEventDescr_v6_t d;
    memset(&d, 0, sizeof d);
    d.type = ncclProfileColl;
    d.coll.seqNumber = i;
    d.coll.func = "AllReduce";
    d.coll.count = 1u << 20;
    d.coll.datatype = "ncclFloat32";
    d.coll.nChannels = (uint8_t)n_channels;
    d.coll.algo = "RING";
    d.coll.proto = "SIMPLE";
    void* coll = NULL;
    prof->startEvent(ctx, &coll, &d);
    prof->stopEvent(coll);
    events += 2;
    for (int ch = 0; ch < n_channels; ch++) {
      ncclProfilerEventDescr_v6_t kd;
      memset(&kd, 0, sizeof kd);
      kd.type = ncclProfileKernelCh;
      kd.parentObj = coll;
      kd.kernelCh.channelId = (uint8_t)ch;
      kd.kernelCh.pTimer = gpu;
      void* kh = NULL;
      prof->startEvent(ctx, &kh, &kd);
      ncclProfilerEventStateArgs_v6_t args = {.kernelCh = {.pTimer = gpu + 5000 + (uint64_t)ch}};
      if (kh) prof->recordEventState(kh, ncclProfilerKernelChStop, &args);
      if (kh) prof->stopEvent(kh);
      events += 3;
    }
    gpu += 10000;
  }
  double ns = (double)(now_ns() - t0) / (double)events;
  prof->finalize(ctx);
  return ns;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PLUGIN.so [calls]\n", argv[0]);
    return 2;
  }
  size_t calls = argc > 2 ? strtoull(argv[2], NULL, 10) : 2000000;
  if (calls < BATCH * 100) calls = BATCH * 100;

  /* 1000 disjoint allreduce rules over [0, 1000 * 4096), channel hints 1..8. */
  int fd = mkstemp(table_path);
  FILE* f = fdopen(fd, "w");
  static const char* algos[] = {"ring", "tree"};
  static const char* protos[] = {"ll", "ll128", "simple"};
  for (int i = 0; i < 1000; i++)
    fprintf(f, "allreduce,%d,%d,%s,%s,%d,-1,-1\n", i * 4096, i * 4096 + 4095, algos[i % 2],
            protos[i % 3], 1 + i % 8);
  fclose(f);
  for (int i = 0; i < NKEYS; i++) key_bytes[i] = (size_t)(i * 15 + 7) * 4096 + 100;

  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
    return 1;
  }
  unsetenv("CCLPILOT_STATS_FILE");
  printf("cclpilot plugin overhead: %zu getCollInfo calls per configuration, %d keys, batches of %d\n",
         calls, NKEYS, BATCH);
  printf("%-8s %-28s %10s %10s\n", "abi", "configuration", "p50 ns", "p99 ns");
  make_rules();
  const int versions[] = {6, 5, 3};
  for (int v = 0; v < 3; v++) {
    setenv("CCLPILOT_MODE", "observe", 1);
    unsetenv("CCLPILOT_TABLE");
    pct base = run_tuner(lib, versions[v], calls);
    setenv("CCLPILOT_MODE", "static", 1);
    setenv("CCLPILOT_TABLE", table_path, 1);
    pct tab = run_tuner(lib, versions[v], calls);
    printf("v%-7d %-28s %10.1f %10.1f\n", versions[v], "passthrough (observe)", base.p50, base.p99);
    printf("v%-7d %-28s %10.1f %10.1f\n", versions[v], "static, 1000 rules", tab.p50, tab.p99);
    printf("v%-7d %-28s %10.1f %10.1f\n", versions[v], "added by the table", tab.p50 - base.p50,
           tab.p99 - base.p99);
  }
  /* Live mode through v6: without a daemon (no plan), then with the 1000 rules as a plan. */
  {
    setenv("CCLPILOT_MODE", "observe", 1);
    unsetenv("CCLPILOT_TABLE");
    pct base = run_tuner(lib, 6, calls);
    setenv("CCLPILOT_MODE", "static", 1);
    setenv("CCLPILOT_TABLE", table_path, 1);
    pct tab = run_tuner(lib, 6, calls);
    unsetenv("CCLPILOT_TABLE");
    setenv("CCLPILOT_MODE", "live", 1);
    setenv("CCLPILOT_CONNECT_WAIT_MS", "0", 1);
    char endpoint[128];
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/cclpilot-bench-%d.sock", (int)getpid());
    setenv("CCLPILOT_DAEMON", "ipc:///tmp/cclpilot-bench-nobody.sock", 1);
    pct lone = run_tuner(lib, 6, calls);
    mini_daemon d = {zmq_ctx_new(), NULL};
    d.sock = zmq_socket(d.zctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(d.sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_bind(d.sock, endpoint);
    setenv("CCLPILOT_DAEMON", endpoint, 1);
    live_daemon = &d;
    pct planned = run_tuner(lib, 6, calls);
    live_daemon = NULL;
    zmq_close(d.sock);
    zmq_ctx_term(d.zctx);
    unlink(endpoint + strlen("ipc://"));
    unsetenv("CCLPILOT_DAEMON");
    printf("v6       %-28s %10.1f %10.1f\n", "passthrough (observe)", base.p50, base.p99);
    printf("v6       %-28s %10.1f %10.1f\n", "static, 1000 rules", tab.p50, tab.p99);
    printf("v6       %-28s %10.1f %10.1f\n", "live, no daemon (no plan)", lone.p50, lone.p99);
    printf("v6       %-28s %10.1f %10.1f\n", "live, 1000-rule plan", planned.p50, planned.p99);
    printf("v6       %-28s %10.1f %10.1f\n", "live plan minus static", planned.p50 - tab.p50,
           planned.p99 - tab.p99);
  }
  setenv("CCLPILOT_MODE", "observe", 1);
  unsetenv("CCLPILOT_TABLE");
  size_t colls = calls / 10;
  double per_event = run_profiler(lib, colls, 8);
  printf("profiler v6: %.1f ns per event (%zu collectives x (2 + 3 x 8 channels) events)\n",
         per_event, colls);
  unlink(table_path);
  return 0;
}
