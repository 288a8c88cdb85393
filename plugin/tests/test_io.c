/* The daemon I/O thread against a fake daemon (a ROUTER socket in this test speaking the
 * protocol): bounded connect wait without a daemon, HELLO / WELCOME / KEY_REPORT / PREPARE / ACK /
 * COMMIT, MEASUREMENTS in the form the WELCOME chose (map, or packed once packed_stats is granted),
 * malformed frames counted and dropped, reconnection after the daemon comes back, and every
 * thread joined after the last context is destroyed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "cp_codec.h"
#include "cp_io.h"
#include "cp_process.h"
#include "cp_tuner.h"
#include "testutil.h"

/* Read by ThreadSanitizer builds only. The system libzmq is not instrumented, so TSan sees its
 * lock-free pipes (and the frames they hand to our thread) without their synchronisation. */
const char* __tsan_default_suppressions(void);
const char* __tsan_default_suppressions(void) { return "race:libzmq.so\n"; }

#define COMM 0x0123456789ABCDEFull

static int thread_count(void) {
  DIR* d = opendir("/proc/self/task");
  int n = 0;
  struct dirent* e;
  while (d && (e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  if (d) closedir(d);
  return n;
}

static cp_tuner_comm* make_ctx(uint64_t comm) {
  cp_tuner_init_args a = {.abi_version = 6, .has_comm_id = 1, .comm_id = comm, .n_ranks = 4,
                          .n_nodes = 2, .log = NULL};
  cp_tuner_comm* ctx = NULL;
  CHECK_INT_EQ(cp_tuner_comm_create(&a, &ctx), CP_OK);
  return ctx;
}

static int call(cp_tuner_comm* ctx, size_t n_bytes) {
  float cost[CP_NUM_ALGOS * CP_NUM_PROTOS];
  for (int i = 0; i < CP_NUM_ALGOS * CP_NUM_PROTOS; i++) cost[i] = (float)i;
  cost[CP_ALGO_NVLS * CP_NUM_PROTOS + CP_PROTO_LL] = -1.0f;
  cp_coll_query q = {.coll = CP_COLL_ALLGATHER, .n_bytes = n_bytes, .num_pipe_ops = 1,
                     .reg_buff = 0};
  int n_channels = 0;
  cp_arm chosen;
  cp_tuner_get_coll_info(ctx, &q, cost, CP_NUM_ALGOS, CP_NUM_PROTOS, &n_channels, &chosen);
  return chosen.algo;
}

/* ---- the fake daemon ---- */

typedef struct {
  void* sock;
  zmq_msg_t peer;
  int has_peer;
} fake_daemon;

static void fd_send_raw(fake_daemon* d, const void* data, size_t len, int more_parts) {
  zmq_msg_t id;
  zmq_msg_init(&id);
  zmq_msg_copy(&id, &d->peer);
  zmq_msg_send(&id, d->sock, ZMQ_SNDMORE);
  zmq_send(d->sock, data, len, more_parts ? ZMQ_SNDMORE : 0);
  if (more_parts) zmq_send(d->sock, "x", 1, 0);
}

static void fd_send(fake_daemon* d, const cp_msg* m) {
  cp_buf b;
  cp_buf_init(&b, 0);
  cp_decode_error err;
  CHECK_INT_EQ(cp_msg_encode(m, &b, &err), CP_OK);
  fd_send_raw(d, b.data, b.len, 0);
  cp_buf_free(&b);
}

static void fd_heartbeat(fake_daemon* d) {
  if (!d->has_peer) return;
  cp_msg m;
  cp_msg_init(&m, CP_MSG_HEARTBEAT);
  m.u.heartbeat.seq = 1;
  m.u.heartbeat.time_ns = cp_now_ns();
  fd_send(d, &m);
}

/* Waits up to timeout_ms for a message of `type` (others are skipped), answering with
 * heartbeats meanwhile when `keepalive`. Returns 1 with *out filled. */
static int fd_expect(fake_daemon* d, cp_msg_type type, int timeout_ms, int keepalive,
                     cp_msg* out) {
  uint64_t end = cp_now_ns() + (uint64_t)timeout_ms * 1000000ull;
  while (cp_now_ns() < end) {
    zmq_pollitem_t item = {d->sock, 0, ZMQ_POLLIN, 0};
    if (keepalive) fd_heartbeat(d);
    if (zmq_poll(&item, 1, 20) <= 0) continue;
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    zmq_msg_recv(&id, d->sock, 0);
    zmq_msg_recv(&body, d->sock, 0);
    if (d->has_peer) zmq_msg_close(&d->peer);
    zmq_msg_init(&d->peer);
    zmq_msg_copy(&d->peer, &id);
    d->has_peer = 1;
    cp_decode_error err;
    cp_msg m;
    cp_result r = cp_msg_decode(zmq_msg_data(&body), zmq_msg_size(&body), &m, &err);
    CHECK(r == CP_OK, "the plugin sends only valid messages: %s %s", err.field, err.message);
    zmq_msg_close(&id);
    zmq_msg_close(&body);
    if (r == CP_OK && m.type == type) {
      *out = m;
      return 1;
    }
    cp_msg_free(&m);
  }
  return 0;
}

static void fd_open(fake_daemon* d, void* zctx, const char* endpoint) {
  memset(d, 0, sizeof *d);
  d->sock = zmq_socket(zctx, ZMQ_ROUTER);
  int zero = 0;
  zmq_setsockopt(d->sock, ZMQ_LINGER, &zero, sizeof zero);
  CHECK_INT_EQ(zmq_bind(d->sock, endpoint), 0);
}

static void fd_close(fake_daemon* d) {
  if (d->has_peer) zmq_msg_close(&d->peer);
  zmq_close(d->sock);
  d->sock = NULL;
  d->has_peer = 0;
}

static void io_counters(cp_io_counters* c) {
  cp_process* proc = cp_process_acquire(NULL);
  cp_io_get_counters(cp_process_io(proc), c);
  cp_process_release(proc);
}

static void* nothing(void* arg) { return arg; }

int main(void) {
  /* Sanitizer runtimes start a helper thread with the first pthread_create: count after it. */
  pthread_t warm;
  pthread_create(&warm, NULL, nothing, NULL);
  pthread_join(warm, NULL);
  usleep(10000);
  int base_threads = thread_count();
  char endpoint[128];
  setenv("CCLPILOT_MODE", "live", 1);
  setenv("CCLPILOT_JOB_ID", "test-io", 1);
  unsetenv("NCCL_ALGO");
  unsetenv("NCCL_PROTO");

  /* 1. No daemon: contexts are created, the first collectives wait at most CONNECT_WAIT_MS in
   * total over all communicators, then decisions stay NCCL's. */
  snprintf(endpoint, sizeof endpoint, "ipc:///tmp/cclpilot-test-io-absent-%d.sock", (int)getpid());
  setenv("CCLPILOT_DAEMON", endpoint, 1);
  setenv("CCLPILOT_CONNECT_WAIT_MS", "150", 1);
  cp_tuner_comm* x = make_ctx(1);
  cp_tuner_comm* y = make_ctx(2);
  CHECK(thread_count() > base_threads, "an I/O thread runs in live mode");
  uint64_t t0 = cp_now_ns();
  CHECK_INT_EQ(call(x, 4096), -1);
  double first_ms = (double)(cp_now_ns() - t0) / 1e6;
  t0 = cp_now_ns();
  CHECK_INT_EQ(call(y, 4096), -1);
  for (int i = 0; i < 100; i++) call(x, 4096), call(y, 8192);
  double rest_ms = (double)(cp_now_ns() - t0) / 1e6;
  CHECK(first_ms >= 140.0 && first_ms < 400.0, "first call waited %.1f ms (bound 150)",
        first_ms);
  CHECK(rest_ms < 50.0, "the budget is spent: later calls took %.1f ms", rest_ms);
  cp_tuner_comm_destroy(x);
  cp_tuner_comm_destroy(y);
  CHECK_INT_EQ(thread_count(), base_threads);

  /* 2. A daemon: registration, key reports with NCCL's cost table, plans, malformed frames. */
  snprintf(endpoint, sizeof endpoint, "ipc:///tmp/cclpilot-test-io-%d.sock", (int)getpid());
  setenv("CCLPILOT_DAEMON", endpoint, 1);
  setenv("CCLPILOT_CONNECT_WAIT_MS", "3000", 1);
  void* zctx = zmq_ctx_new();
  fake_daemon d;
  fd_open(&d, zctx, endpoint);
  /* The profiler side of the same communicator, whose statistics MEASUREMENTS carry. */
  cp_prof_init_args pa = {.abi_version = 5, .has_comm_id = 1, .comm_id = COMM, .n_nodes = 2,
                          .n_ranks = 4, .rank = 0, .gpu_timestamps = 0};
  cp_prof_comm* prof = NULL;
  cp_prof_wants wants;
  CHECK_INT_EQ(cp_prof_comm_create(&pa, &prof, &wants), CP_OK);
  cp_coll_event ev = {.seq = 0, .coll = CP_COLL_ALLGATHER, .n_bytes = 65536,
                      .algo = CP_ALGO_RING, .proto = CP_PROTO_SIMPLE, .n_channels = 2};
  for (int i = 0; i < 2; i++) cp_prof_event_stop(cp_prof_coll_start(prof, &ev)); /* 1st: warm-up */
  cp_tuner_comm* ctx = make_ctx(COMM);
  cp_msg m;
  CHECK(fd_expect(&d, CP_MSG_HELLO, 3000, 0, &m), "HELLO arrives");
  CHECK(m.u.hello.comm == COMM, "HELLO names the communicator");
  CHECK(strcmp(m.u.hello.job.data, "test-io") == 0, "job id %s", m.u.hello.job.data);
  CHECK_INT_EQ(m.u.hello.n_ranks, 4);
  CHECK_INT_EQ(m.u.hello.n_nodes, 2);
  CHECK_INT_EQ(m.u.hello.tuner_abi, 6);
  CHECK(m.u.hello.has_profiler_abi && m.u.hello.profiler_abi == 5, "profiler ABI joined by comm");
  CHECK_INT_EQ(m.u.hello.pid, getpid());
  int offers_packed = 0;
  for (uint32_t f = 0; f < m.u.hello.n_features; f++)
    offers_packed |= strcmp(m.u.hello.features[f].data, "packed_stats") == 0;
  CHECK(offers_packed, "HELLO offers packed_stats");
  cp_msg_free(&m);

  cp_msg w;
  cp_msg_init(&w, CP_MSG_WELCOME);
  w.u.welcome.n_features = 2;
  CP_STR_SET(w.u.welcome.features[0], "measure");
  CP_STR_SET(w.u.welcome.features[1], "plans");
  w.u.welcome.comm = COMM;
  w.u.welcome.session = 7;
  w.u.welcome.heartbeat_ms = 200;
  w.u.welcome.report_ms = 100;
  fd_send(&d, &w);
  /* The first call waits for the WELCOME (well within its 3 s budget), then reports its key. */
  t0 = cp_now_ns();
  CHECK_INT_EQ(call(ctx, 65536), -1);
  CHECK((cp_now_ns() - t0) < 2000000000ull, "WELCOME ended the connect wait");
  CHECK(fd_expect(&d, CP_MSG_KEY_REPORT, 3000, 1, &m), "KEY_REPORT arrives");
  CHECK(m.u.key_report.comm == COMM && m.u.key_report.n_bytes == 65536, "key fields");
  CHECK_INT_EQ(m.u.key_report.coll, CP_COLL_ALLGATHER);
  CHECK_INT_EQ(m.u.key_report.call, 0);
  CHECK(m.u.key_report.cost[CP_ALGO_RING][CP_PROTO_SIMPLE] == 5.0, "cost table copied");
  CHECK(m.u.key_report.cost[CP_ALGO_NVLS][CP_PROTO_LL] == -1.0, "ignored entries stay -1");
  cp_msg_free(&m);
  CHECK(fd_expect(&d, CP_MSG_HEARTBEAT, 3000, 1, &m), "the plugin sends heartbeats");
  cp_msg_free(&m);

  /* Malformed frames: counted, dropped, the loop goes on. */
  fd_send_raw(&d, "\xc1\xff garbage", 10, 0);
  fd_send_raw(&d, "\x81\xa1t\xa5HELLO", 8, 1); /* multipart */
  fd_heartbeat(&d);

  /* PREPARE -> ACK(ok, calls, seq_hash); COMMIT -> active from activate_at. */
  for (int i = 0; i < 4; i++) call(ctx, 65536);
  cp_rule rule;
  memset(&rule, 0, sizeof rule);
  rule.coll = CP_COLL_ALLGATHER;
  rule.max_bytes = UINT64_MAX;
  rule.n_nodes = rule.n_ranks = rule.num_pipe_ops = CP_ANY;
  rule.n_arms = 1;
  rule.arms[0] = (cp_arm){.algo = CP_ALGO_RING, .proto = CP_PROTO_LL128};
  cp_msg p;
  cp_msg_init(&p, CP_MSG_PREPARE);
  p.u.prepare.comm = COMM;
  p.u.prepare.plan = 1;
  p.u.prepare.activate_at = 8;
  p.u.prepare.n_rules = 1;
  p.u.prepare.rules = &rule;
  fd_send(&d, &p);
  CHECK(fd_expect(&d, CP_MSG_ACK, 3000, 1, &m), "ACK arrives");
  CHECK(m.u.ack.ok, "prepared: %s", m.u.ack.reason.data);
  CHECK_INT_EQ(m.u.ack.calls, 5);
  uint64_t h = CP_SEQ_HASH_INIT;
  for (int i = 0; i < 5; i++) h = cp_seq_hash_update(h, CP_COLL_ALLGATHER, 65536, 1);
  CHECK(m.u.ack.seq_hash == h, "seq_hash follows PROTOCOL.md");
  cp_msg_free(&m);
  cp_msg c;
  cp_msg_init(&c, CP_MSG_COMMIT);
  c.u.commit.comm = COMM;
  c.u.commit.plan = 1;
  c.u.commit.activate_at = 8;
  fd_send(&d, &c);
  /* Commit of an unknown plan: answered with ERROR state. */
  c.u.commit.plan = 9;
  fd_send(&d, &c);
  CHECK(fd_expect(&d, CP_MSG_ERROR, 3000, 1, &m), "ERROR for an unknown plan");
  CHECK_INT_EQ(m.u.error.code, CP_EC_STATE);
  cp_msg_free(&m);
  /* This daemon (like a 1.0 one) did not grant packed_stats: reports keep the map form. */
  CHECK(fd_expect(&d, CP_MSG_MEASUREMENTS, 3000, 1, &m), "MEASUREMENTS every report_ms");
  CHECK(m.u.measurements.comm == COMM, "for the communicator");
  CHECK(m.u.measurements.n_stats == 1 && m.u.measurements.stats[0].untimed == 1,
        "the profiler's statistics: %u slot(s)", m.u.measurements.n_stats);
  cp_wire_stat map_stat;
  memset(&map_stat, 0, sizeof map_stat);
  if (m.u.measurements.n_stats == 1) map_stat = m.u.measurements.stats[0];
  cp_msg_free(&m);
  while (cp_tuner_call_count(ctx) < 8) CHECK_INT_EQ(call(ctx, 65536), -1);
  CHECK_INT_EQ(call(ctx, 65536), CP_ALGO_RING); /* call index 8 */
  CHECK_INT_EQ(cp_tuner_active_plan(ctx), 1);

  cp_io_counters cnt;
  io_counters(&cnt);
  CHECK(cnt.decode_errors >= 2, "malformed frames counted: %llu",
        (unsigned long long)cnt.decode_errors);
  CHECK_INT_EQ(cnt.reconnects, 0);

  /* 3. The daemon goes away and comes back: the plugin notices the silence, makes a new socket
   * and registers again. */
  fd_close(&d);
  usleep(200000);
  fd_open(&d, zctx, endpoint);
  CHECK(fd_expect(&d, CP_MSG_HELLO, 8000, 0, &m), "HELLO again after the daemon came back");
  CHECK(m.u.hello.comm == COMM, "for the same communicator");
  cp_msg_free(&m);
  /* The I/O thread counts a HELLO after zmq_send returns, so the daemon may hold it a moment
   * before the counter moves. */
  for (int i = 0; i < 100; i++) {
    io_counters(&cnt);
    if (cnt.hellos_sent >= 2) break;
    usleep(10000);
  }
  CHECK(cnt.reconnects >= 1, "reconnected %llu time(s)", (unsigned long long)cnt.reconnects);
  CHECK(cnt.hellos_sent >= 2, "HELLO sent %llu times", (unsigned long long)cnt.hellos_sent);
  /* Known keys are reported again after the new WELCOME. This daemon grants packed_stats. */
  w.u.welcome.n_features = 3;
  CP_STR_SET(w.u.welcome.features[2], "packed_stats");
  fd_send(&d, &w);
  CHECK(fd_expect(&d, CP_MSG_KEY_REPORT, 3000, 1, &m), "keys re-sent after re-registration");
  cp_msg_free(&m);
  CHECK(fd_expect(&d, CP_MSG_MEASUREMENTS_PACKED, 3000, 1, &m),
        "MEASUREMENTS_PACKED once packed_stats is granted");
  CHECK(m.u.measurements.comm == COMM && m.u.measurements.n_stats == 1,
        "packed report of the communicator: %u slot(s)", m.u.measurements.n_stats);
  if (m.u.measurements.n_stats == 1) {
    const cp_wire_stat* ps = &m.u.measurements.stats[0];
    /* No new samples since the map-form report: the same cumulative slot, in the other form. */
    CHECK(ps->coll == map_stat.coll && ps->n_bytes == map_stat.n_bytes &&
              ps->algo == map_stat.algo && ps->count == map_stat.count &&
              ps->untimed == map_stat.untimed &&
              memcmp(ps->hist, map_stat.hist, sizeof ps->hist) == 0,
          "packed and map reports carry the same slot");
  }
  cp_msg_free(&m);
  /* Never both forms on one connection: no map-form report follows. */
  const int mixed = fd_expect(&d, CP_MSG_MEASUREMENTS, 400, 1, &m);
  CHECK(!mixed, "no MEASUREMENTS once packed_stats is granted");
  if (mixed) cp_msg_free(&m);

  cp_tuner_comm_destroy(ctx);
  cp_prof_comm_destroy(prof);
  fd_close(&d);
  zmq_ctx_term(zctx);
  CHECK_INT_EQ(thread_count(), base_threads);
  TEST_RETURN();
}
