/* Two-phase plan activation on the tuner contexts, driven through the functions the I/O thread
 * calls: two contexts of one communicator stand for two ranks and must switch at the same call. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cp_codec.h"
#include "cp_process.h"
#include "cp_tuner.h"
#include "testutil.h"

/* Read by ThreadSanitizer builds only. The system libzmq is not instrumented, so TSan sees its
 * lock-free pipes (and the frames they hand to our thread) without their synchronisation. */
const char* __tsan_default_suppressions(void);
const char* __tsan_default_suppressions(void) { return "race:libzmq.so\n"; }

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[65536];

static void test_logger(int level, unsigned long flags, const char* file, int line,
                        const char* fmt, ...) {
  (void)level, (void)flags, (void)file, (void)line;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&log_lock);
  size_t used = strlen(log_text);
  if (used + strlen(msg) + 2 < sizeof log_text) {
    strcat(log_text, msg);
    strcat(log_text, "\n");
  }
  pthread_mutex_unlock(&log_lock);
}

static int log_has(const char* needle) {
  pthread_mutex_lock(&log_lock);
  int found = strstr(log_text, needle) != NULL;
  pthread_mutex_unlock(&log_lock);
  return found;
}

#define COMM 0xC0FFEE0012345678ull
#define BYTES 1048576u

static cp_tuner_comm* make_ctx(void) {
  cp_tuner_init_args a = {.abi_version = 6, .has_comm_id = 1, .comm_id = COMM, .n_ranks = 2,
                          .n_nodes = 1, .log = test_logger};
  cp_tuner_comm* ctx = NULL;
  CHECK_INT_EQ(cp_tuner_comm_create(&a, &ctx), CP_OK);
  return ctx;
}

/* One getCollInfo of an allreduce; returns the algorithm chosen (-1 = NCCL's). */
static int call(cp_tuner_comm* ctx, cp_arm* arm) {
  float cost[CP_NUM_ALGOS * CP_NUM_PROTOS];
  for (int i = 0; i < CP_NUM_ALGOS * CP_NUM_PROTOS; i++) cost[i] = 10.0f;
  cp_coll_query q = {.coll = CP_COLL_ALLREDUCE, .n_bytes = BYTES, .num_pipe_ops = 1,
                     .reg_buff = 0};
  int n_channels = 0;
  cp_arm chosen;
  cp_tuner_get_coll_info(ctx, &q, cost, CP_NUM_ALGOS, CP_NUM_PROTOS, &n_channels, &chosen);
  if (arm) *arm = chosen;
  return chosen.algo;
}

static void calls_until(cp_tuner_comm* ctx, uint64_t n) {
  while (cp_tuner_call_count(ctx) < n) call(ctx, NULL);
}

static cp_rule rule_for(int algo, int proto) {
  cp_rule r;
  memset(&r, 0, sizeof r);
  r.coll = CP_COLL_ALLREDUCE;
  r.min_bytes = 0;
  r.max_bytes = UINT64_MAX;
  r.n_nodes = r.n_ranks = r.num_pipe_ops = CP_ANY;
  r.n_arms = 1;
  r.arms[0] = (cp_arm){.algo = (int8_t)algo, .proto = (int8_t)proto};
  return r;
}

typedef struct {
  cp_tuner_comm* ctx;
  uint64_t plan, at;
  unsigned delay_ms;
  int result;
} late_commit;

static void* commit_later(void* p) {
  late_commit* lc = p;
  usleep(lc->delay_ms * 1000u);
  char why[256];
  lc->result = cp_tuner_plan_commit(lc->ctx, lc->plan, lc->at, why, sizeof why);
  return NULL;
}

int main(void) {
  char endpoint[128];
  snprintf(endpoint, sizeof endpoint, "ipc:///tmp/cclpilot-test-live-plan-%d.sock", (int)getpid());
  setenv("CCLPILOT_MODE", "live", 1);
  setenv("CCLPILOT_DAEMON", endpoint, 1); /* nobody listens: the plans come from this test */
  setenv("CCLPILOT_CONNECT_WAIT_MS", "0", 1);
  setenv("CCLPILOT_COMMIT_WAIT_MS", "300", 1);
  unsetenv("NCCL_ALGO");
  unsetenv("NCCL_PROTO");

  cp_tuner_comm* a = make_ctx();
  cp_tuner_comm* b = make_ctx();
  cp_tuner_comm* ranks[2] = {a, b};
  char why[256];

  /* Live mode without a plan: every decision is NCCL's. */
  for (int r = 0; r < 2; r++) {
    calls_until(ranks[r], 5);
    CHECK_INT_EQ(call(ranks[r], NULL), -1);
  }

  /* PREPARE -> ACK with the call count and the protocol's sequence hash, equal on both ranks. */
  uint64_t expect_hash = CP_SEQ_HASH_INIT;
  for (int i = 0; i < 6; i++)
    expect_hash = cp_seq_hash_update(expect_hash, CP_COLL_ALLREDUCE, BYTES, 1);
  cp_rule ring = rule_for(CP_ALGO_RING, CP_PROTO_SIMPLE);
  cp_plan_ack acks[2];
  for (int r = 0; r < 2; r++) {
    cp_tuner_plan_prepare(ranks[r], 1, 10, &ring, 1, &acks[r]);
    CHECK(acks[r].ok, "rank %d prepares plan 1: %s", r, acks[r].reason);
    CHECK_INT_EQ(acks[r].calls, 6);
    CHECK(acks[r].seq_hash == expect_hash, "rank %d hash %llx, expected %llx", r,
          (unsigned long long)acks[r].seq_hash, (unsigned long long)expect_hash);
  }
  cp_plan_ack again;
  cp_tuner_plan_prepare(a, 1, 10, &ring, 1, &again);
  CHECK(memcmp(&again, &acks[0], sizeof again) == 0, "a repeated PREPARE gets the same ACK");
  CHECK(cp_tuner_plan_last_ack(a, 1, &again) && again.plan == 1, "last ACK kept for re-asking");

  /* COMMIT: both ranks switch exactly at call 10, not before. */
  for (int r = 0; r < 2; r++) {
    CHECK_INT_EQ(cp_tuner_plan_commit(ranks[r], 1, 10, why, sizeof why), 0);
    CHECK_INT_EQ(cp_tuner_plan_commit(ranks[r], 1, 10, why, sizeof why), 0); /* idempotent */
  }
  for (int r = 0; r < 2; r++) {
    calls_until(ranks[r], 10);
    CHECK_INT_EQ(cp_tuner_active_plan(ranks[r]), 0);
    cp_arm arm;
    CHECK_INT_EQ(call(ranks[r], &arm), CP_ALGO_RING); /* call index 10 */
    CHECK_INT_EQ(arm.proto, CP_PROTO_SIMPLE);
    CHECK_INT_EQ(cp_tuner_active_plan(ranks[r]), 1);
  }
  CHECK_INT_EQ(cp_tuner_plan_abort(a, 1, why, sizeof why), -1); /* committed: abort refused */

  /* ABORT keeps the current plan; a COMMIT after it is refused. */
  cp_rule tree = rule_for(CP_ALGO_TREE, CP_PROTO_LL);
  for (int r = 0; r < 2; r++) {
    cp_tuner_plan_prepare(ranks[r], 2, 15, &tree, 1, &acks[r]);
    CHECK(acks[r].ok, "plan 2 prepared: %s", acks[r].reason);
    CHECK_INT_EQ(cp_tuner_plan_abort(ranks[r], 2, why, sizeof why), 0);
    CHECK_INT_EQ(cp_tuner_plan_abort(ranks[r], 2, why, sizeof why), 0); /* idempotent */
    calls_until(ranks[r], 20);
    CHECK_INT_EQ(call(ranks[r], NULL), CP_ALGO_RING);
    CHECK_INT_EQ(cp_tuner_active_plan(ranks[r]), 1);
    CHECK_INT_EQ(cp_tuner_plan_commit(ranks[r], 2, 15, why, sizeof why), -1);
    CHECK_STR_CONTAINS(why, "aborted");
  }

  /* A COMMIT whose activate_at differs from the PREPARE's is refused and changes nothing. */
  cp_tuner_plan_prepare(a, 3, 30, &tree, 1, &acks[0]);
  CHECK(acks[0].ok, "plan 3 prepared: %s", acks[0].reason);
  CHECK_INT_EQ(cp_tuner_plan_commit(a, 3, 31, why, sizeof why), -1);
  CHECK_STR_CONTAINS(why, "activate_at 31");
  /* Another plan while one is pending is refused. */
  cp_tuner_plan_prepare(a, 4, 40, &tree, 1, &acks[0]);
  CHECK(!acks[0].ok, "second pending plan refused");
  CHECK_STR_CONTAINS(acks[0].reason, "still pending");
  /* ...without losing the pending plan's ACK, which a rank waiting at its activation point
   * sends again as its question (a restarted daemon may prepare new plans meanwhile). */
  CHECK(cp_tuner_plan_last_ack(a, 3, &again) && again.plan == 3 && again.ok,
        "the pending plan's ACK survives refusing another plan");

  /* Undecided at activate_at: waits about COMMIT_WAIT_MS, keeps the old plan, logs, and refuses
   * a later COMMIT for the expired plan. */
  calls_until(a, 30);
  uint64_t t0 = cp_now_ns();
  CHECK_INT_EQ(call(a, NULL), CP_ALGO_RING);
  double waited_ms = (double)(cp_now_ns() - t0) / 1e6;
  CHECK(waited_ms >= 290.0 && waited_ms < 800.0, "waited %.1f ms for a 300 ms bound", waited_ms);
  CHECK(log_has("has not decided yet; waiting up to 300 ms"), "the wait is logged");
  CHECK(log_has("no decision on plan 3 within CCLPILOT_COMMIT_WAIT_MS=300"),
        "the expiry is logged");
  CHECK_INT_EQ(cp_tuner_active_plan(a), 1);
  CHECK_INT_EQ(cp_tuner_plan_commit(a, 3, 30, why, sizeof why), -1);
  CHECK_STR_CONTAINS(why, "expired");
  t0 = cp_now_ns();
  CHECK_INT_EQ(call(a, NULL), CP_ALGO_RING); /* no further wait after the boundary */
  CHECK((cp_now_ns() - t0) < 50000000ull, "later calls do not wait");

  /* A COMMIT arriving while the rank waits at activate_at ends the wait and activates. */
  cp_tuner_plan_prepare(a, 5, 40, &tree, 1, &acks[0]);
  CHECK(acks[0].ok, "plan 5 prepared after the expired one: %s", acks[0].reason);
  calls_until(a, 40);
  late_commit lc = {a, 5, 40, 100, -2};
  pthread_t th;
  pthread_create(&th, NULL, commit_later, &lc);
  t0 = cp_now_ns();
  cp_arm arm;
  CHECK_INT_EQ(call(a, &arm), CP_ALGO_TREE);
  waited_ms = (double)(cp_now_ns() - t0) / 1e6;
  pthread_join(th, NULL);
  CHECK_INT_EQ(lc.result, 0);
  CHECK(waited_ms >= 90.0 && waited_ms < 290.0, "waited %.1f ms for a commit sent at 100 ms",
        waited_ms);
  CHECK(log_has("plan 5 committed after"), "the outcome of the wait is logged");
  CHECK_INT_EQ(cp_tuner_active_plan(a), 5);

  /* PREPARE for a call index already passed: ok=false. Plan ids must increase. */
  cp_tuner_plan_prepare(a, 6, 20, &ring, 1, &acks[0]);
  CHECK(!acks[0].ok, "too-late plan refused");
  CHECK_STR_CONTAINS(acks[0].reason, "activate_at 20 has passed");
  CHECK_INT_EQ(acks[0].calls, 41);
  cp_tuner_plan_prepare(a, 2, 100, &ring, 1, &acks[0]);
  CHECK(!acks[0].ok, "old plan id refused");
  CHECK_STR_CONTAINS(acks[0].reason, "must increase");
  CHECK_INT_EQ(cp_tuner_plan_commit(a, 99, 100, why, sizeof why), -1);
  CHECK_STR_CONTAINS(why, "never prepared");

  /* A pending plan still held at destroy is freed with the context (ASan checks). */
  cp_tuner_plan_prepare(b, 7, 1000, &tree, 1, &acks[1]);
  CHECK(acks[1].ok, "plan 7 prepared on b: %s", acks[1].reason);
  cp_tuner_comm_destroy(a);
  cp_tuner_comm_destroy(b);

  /* With NCCL_ALGO forced the plugin only observes: plans are refused. */
  setenv("NCCL_ALGO", "Ring", 1);
  cp_tuner_comm* c = make_ctx();
  cp_tuner_plan_prepare(c, 1, 10, &tree, 1, &acks[0]);
  CHECK(!acks[0].ok, "plans refused under NCCL_ALGO");
  CHECK_STR_CONTAINS(acks[0].reason, "NCCL_ALGO or NCCL_PROTO");
  calls_until(c, 12);
  CHECK_INT_EQ(call(c, NULL), -1);
  cp_tuner_comm_destroy(c);
  unsetenv("NCCL_ALGO");
  TEST_RETURN();
}
