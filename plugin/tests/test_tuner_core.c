/*
 * The tuner core through its internal API: safety invariants of getCollInfo/getChunkSize,
 * static tables, candidate arms and rank-invariance, plan publication under concurrent readers.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cp_core.h"
#include "cp_process.h"
#include "cp_tuner.h"
#include "testutil.h"

#define NA CP_NUM_ALGOS
#define NP CP_NUM_PROTOS

static char table_path[256];

static void write_table(const char* text) {
  FILE* f = fopen(table_path, "w");
  CHECK(f != NULL, "cannot create %s", table_path);
  if (!f) exit(1);
  fputs(text, f);
  fclose(f);
}

/* A cost table as NCCL might hand it for a single-node allreduce: Tree/Ring all protocols,
 * NVLS Simple, everything else IGNORE. */
static void fill_costs(float* t) {
  for (int i = 0; i < NA * NP; i++) t[i] = CP_COST_IGNORE;
  t[CP_ALGO_TREE * NP + CP_PROTO_LL] = 30.f;
  t[CP_ALGO_TREE * NP + CP_PROTO_LL128] = 25.f;
  t[CP_ALGO_TREE * NP + CP_PROTO_SIMPLE] = 40.f;
  t[CP_ALGO_RING * NP + CP_PROTO_LL] = 20.f;
  t[CP_ALGO_RING * NP + CP_PROTO_LL128] = 22.f;
  t[CP_ALGO_RING * NP + CP_PROTO_SIMPLE] = 35.f;
}

static cp_tuner_comm* make_comm(int n_ranks, int n_nodes) {
  cp_tuner_init_args a = {.abi_version = 6, .has_comm_id = 1, .comm_id = 42,
                          .n_ranks = (size_t)n_ranks, .n_nodes = (size_t)n_nodes, .log = NULL};
  cp_tuner_comm* c = NULL;
  CHECK_INT_EQ(cp_tuner_comm_create(&a, &c), CP_OK);
  CHECK(c != NULL, "context created");
  return c;
}

static int count_changed(const float* before, const float* after) {
  int n = 0;
  for (int i = 0; i < NA * NP; i++) n += before[i] != after[i];
  return n;
}

static void test_static_decisions(void) {
  write_table(
      "# test table\n"
      "allreduce,0,65535,tree,ll128,4,1,8\n"
      "allreduce,65536,1048576,nvls,simple,-1,-1,-1\n"   /* unavailable in our cost table */
      "allreduce,1048577,-1,ring,simple,70,-1,-1\n"      /* 70 channels: rejected by parser */
      );
  setenv("CCLPILOT_MODE", "static", 1);
  setenv("CCLPILOT_TABLE", table_path, 1);
  cp_tuner_comm* c = make_comm(8, 1);
  float t[NA * NP], before[NA * NP];
  int nch = 0;
  fill_costs(t);
  memcpy(before, t, sizeof t);
  cp_coll_query q = {CP_COLL_ALLREDUCE, 1024, 1, 0};
  cp_tuner_get_coll_info(c, &q, t, NA, NP, &nch, NULL);
  /* The whole file was rejected (channels 70): nothing may change. */
  CHECK_INT_EQ(count_changed(before, t), 0);
  CHECK_INT_EQ(nch, 0);
  cp_tuner_comm_destroy(c);

  write_table(
      "allreduce,0,65535,tree,ll128,4,1,8\n"
      "allreduce,65536,1048576,nvls,simple,-1,-1,-1\n"
      "allreduce,1048577,-1,ring,simple,-1,-1,-1,-1,-1,100\n"
      "allgather,0,-1,ring,ll,2,2,-1\n");
  c = make_comm(8, 1);

  for (int reg = 0; reg <= 1; reg++) { /* regBuff must never change a decision */
    fill_costs(t);
    memcpy(before, t, sizeof t);
    nch = 0;
    q = (cp_coll_query){CP_COLL_ALLREDUCE, 1024, 1, reg};
    cp_arm chosen;
    cp_tuner_get_coll_info(c, &q, t, NA, NP, &nch, &chosen);
    CHECK(t[CP_ALGO_TREE * NP + CP_PROTO_LL128] == 0.0f, "tree/ll128 chosen (reg %d)", reg);
    CHECK_INT_EQ(count_changed(before, t), 1);
    CHECK_INT_EQ(nch, 4);
    CHECK_INT_EQ(chosen.algo, CP_ALGO_TREE);
    CHECK_INT_EQ(chosen.proto, CP_PROTO_LL128);
  }

  /* NVLS is IGNORE here: no write, no channel hint. */
  fill_costs(t);
  memcpy(before, t, sizeof t);
  nch = 0;
  q = (cp_coll_query){CP_COLL_ALLREDUCE, 100000, 1, 0};
  cp_tuner_get_coll_info(c, &q, t, NA, NP, &nch, NULL);
  CHECK_INT_EQ(count_changed(before, t), 0);
  CHECK_INT_EQ(nch, 0);

  /* Rule for nNodes 2 does not apply to this 1-node communicator. */
  fill_costs(t);
  memcpy(before, t, sizeof t);
  q = (cp_coll_query){CP_COLL_ALLGATHER, 4096, 1, 0};
  cp_tuner_get_coll_info(c, &q, t, NA, NP, &nch, NULL);
  CHECK_INT_EQ(count_changed(before, t), 0);

  /* Chunk size: applied only to the parts of the decided collective, at least one grain. */
  fill_costs(t);
  nch = 0;
  q = (cp_coll_query){CP_COLL_ALLREDUCE, 8u << 20, 1, 0};
  cp_tuner_get_coll_info(c, &q, t, NA, NP, &nch, NULL);
  CHECK(t[CP_ALGO_RING * NP + CP_PROTO_SIMPLE] == 0.0f, "ring/simple chosen");
  CHECK_INT_EQ(nch, 0);
  size_t chunk = 2u << 20;
  cp_tuner_get_chunk_size(c, CP_COLL_ALLREDUCE, 1u << 20, CP_ALGO_RING, CP_PROTO_SIMPLE, 1, &chunk);
  CHECK_INT_EQ(chunk, CP_GRAIN_SIMPLE); /* 100 bytes asked: raised to one 512-byte grain */
  chunk = 2u << 20;
  cp_tuner_get_chunk_size(c, CP_COLL_ALLREDUCE, 1u << 20, CP_ALGO_TREE, CP_PROTO_SIMPLE, 1, &chunk);
  CHECK_INT_EQ(chunk, 2u << 20); /* another arm: NCCL's value kept */
  chunk = 2u << 20;
  cp_tuner_get_chunk_size(c, CP_COLL_ALLREDUCE, 16u << 20, CP_ALGO_RING, CP_PROTO_SIMPLE, 1, &chunk);
  CHECK_INT_EQ(chunk, 2u << 20); /* larger than the decided collective: not ours */
  chunk = 2u << 20;
  cp_tuner_get_chunk_size(c, CP_COLL_ALLREDUCE, 1u << 20, CP_ALGO_RING, 7, 1, &chunk);
  CHECK_INT_EQ(chunk, 2u << 20); /* invalid protocol: untouched */

  /* Bad arguments never crash and never write. */
  cp_tuner_get_coll_info(c, NULL, t, NA, NP, &nch, NULL);
  fill_costs(t);
  memcpy(before, t, sizeof t);
  q = (cp_coll_query){CP_COLL_ALLREDUCE, 1024, 1, 0};
  cp_tuner_get_coll_info(c, &q, t, 0, NP, &nch, NULL);
  CHECK_INT_EQ(count_changed(before, t), 0);
  cp_tuner_get_coll_info(NULL, &q, t, NA, NP, &nch, NULL);
  cp_tuner_get_chunk_size(NULL, 0, 0, 0, 0, 0, &chunk);
  cp_tuner_comm_destroy(NULL);

  /* v2 path: no cost table, the decision comes back through `chosen`. */
  cp_arm chosen;
  nch = 0;
  cp_tuner_get_coll_info(c, &q, NULL, 0, 0, &nch, &chosen);
  CHECK_INT_EQ(chosen.algo, CP_ALGO_TREE);
  CHECK_INT_EQ(chosen.proto, CP_PROTO_LL128);
  CHECK_INT_EQ(nch, 0); /* no table to check availability against: no channel hint */
  cp_tuner_comm_destroy(c);
}

static void test_forced_nccl_env(void) {
  write_table("allreduce,0,-1,tree,ll128,4,-1,-1\n");
  setenv("NCCL_PROTO", "Simple", 1);
  cp_tuner_comm* c = make_comm(8, 1);
  float t[NA * NP], before[NA * NP];
  fill_costs(t);
  memcpy(before, t, sizeof t);
  int nch = 0;
  cp_coll_query q = {CP_COLL_ALLREDUCE, 1024, 1, 0};
  cp_tuner_get_coll_info(c, &q, t, NA, NP, &nch, NULL);
  CHECK_INT_EQ(count_changed(before, t), 0);
  CHECK_INT_EQ(nch, 0);
  CHECK(cp_tuner_publish_rules(c, NULL, 0, 1) == CP_ERR_INVALID, "no plans while observing");
  cp_tuner_comm_destroy(c);
  unsetenv("NCCL_PROTO");
}

static void test_observe_and_off(void) {
  const char* modes[] = {"observe", "off"};
  write_table("allreduce,0,-1,tree,ll128,4,-1,-1\n");
  for (int m = 0; m < 2; m++) {
    setenv("CCLPILOT_MODE", modes[m], 1);
    cp_tuner_comm* c = make_comm(8, 1);
    float t[NA * NP], before[NA * NP];
    fill_costs(t);
    memcpy(before, t, sizeof t);
    int nch = 0;
    cp_coll_query q = {CP_COLL_ALLREDUCE, 1024, 1, 0};
    cp_tuner_get_coll_info(c, &q, t, NA, NP, &nch, NULL);
    CHECK(count_changed(before, t) == 0 && nch == 0, "mode %s decides nothing", modes[m]);
    cp_tuner_comm_destroy(c);
  }
  setenv("CCLPILOT_MODE", "static", 1);
}

/* Candidate arms: the arm for call i of a key is a function of (plan, i), so two ranks issuing
 * the same sequence choose the same arms, whatever else they see. */
static void test_candidates_rank_invariant(void) {
  write_table("");
  cp_tuner_comm* rank[2] = {make_comm(16, 2), make_comm(16, 2)};
  cp_rule rule = {.coll = CP_COLL_ALLREDUCE, .min_bytes = 0, .max_bytes = UINT64_MAX,
                  .n_nodes = CP_ANY, .n_ranks = CP_ANY, .num_pipe_ops = CP_ANY, .n_arms = 3};
  rule.arms[0] = (cp_arm){CP_ALGO_RING, CP_PROTO_SIMPLE, 0, 0};
  rule.arms[1] = (cp_arm){CP_ALGO_TREE, CP_PROTO_SIMPLE, 8, 0};
  rule.arms[2] = (cp_arm){CP_ALGO_RING, CP_PROTO_LL128, 16, 0};
  for (int r = 0; r < 2; r++) CHECK_INT_EQ(cp_tuner_publish_rules(rank[r], &rule, 1, 7), CP_OK);

  const size_t sizes[] = {1024, 1u << 20, 1024, 1024, 1u << 20, 4096, 1024};
  int seen_tree = 0;
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    cp_arm arm[2];
    int nch[2] = {0, 0};
    for (int r = 0; r < 2; r++) {
      float t[NA * NP];
      fill_costs(t);
      cp_coll_query q = {CP_COLL_ALLREDUCE, sizes[i], 1, r}; /* regBuff differs per rank */
      cp_tuner_get_coll_info(rank[r], &q, t, NA, NP, &nch[r], &arm[r]);
    }
    CHECK(arm[0].algo == arm[1].algo && arm[0].proto == arm[1].proto && nch[0] == nch[1],
          "call %zu: ranks agree", i);
    seen_tree += arm[0].algo == CP_ALGO_TREE;
  }
  /* 1024 is called 4 times: arms 0,1,2,0. 1 MiB twice: 0,1. 4096 once: 0. */
  CHECK_INT_EQ(seen_tree, 2);
  CHECK_INT_EQ(cp_tuner_call_count(rank[0]), 7);
  for (int r = 0; r < 2; r++) cp_tuner_comm_destroy(rank[r]);
}

/* Readers keep deciding while plans are swapped underneath them. */
typedef struct {
  cp_tuner_comm* c;
  _Atomic int stop; /* volatile is not synchronisation: TSan reports it as a race */
  long bad;
} reader_state;

static void* reader(void* p) {
  reader_state* s = p;
  while (!s->stop) {
    float t[NA * NP];
    fill_costs(t);
    int nch = 0;
    cp_arm arm;
    cp_coll_query q = {CP_COLL_ALLREDUCE, 4096, 1, 0};
    cp_tuner_get_coll_info(s->c, &q, t, NA, NP, &nch, &arm);
    if (arm.algo >= 0 && t[arm.algo * NP + arm.proto] != 0.0f) s->bad++;
    if (nch != 0 && nch != 2 && nch != 4) s->bad++;
  }
  return NULL;
}

static void test_publish_concurrent(void) {
  write_table("");
  cp_tuner_comm* c = make_comm(8, 1);
  reader_state s = {.c = c};
  pthread_t th;
  pthread_create(&th, NULL, reader, &s);
  for (int v = 0; v < 2000; v++) {
    cp_rule rule = {.coll = CP_COLL_ALLREDUCE, .min_bytes = 0, .max_bytes = UINT64_MAX,
                    .n_nodes = CP_ANY, .n_ranks = CP_ANY, .num_pipe_ops = CP_ANY, .n_arms = 1};
    rule.arms[0] = (cp_arm){(v & 1) ? CP_ALGO_RING : CP_ALGO_TREE, CP_PROTO_SIMPLE,
                            (uint8_t)((v & 1) ? 2 : 4), 0};
    CHECK_INT_EQ(cp_tuner_publish_rules(c, &rule, 1, (uint64_t)v + 1), CP_OK);
  }
  s.stop = 1;
  pthread_join(th, NULL);
  CHECK_INT_EQ(s.bad, 0);
  cp_tuner_comm_destroy(c);
}

int main(void) {
  snprintf(table_path, sizeof table_path, "/tmp/cclpilot-test-tuner-%d.conf", (int)getpid());
  unsetenv("NCCL_ALGO");
  unsetenv("NCCL_PROTO");
  unsetenv("CCLPILOT_STATS_FILE");
  test_static_decisions();
  test_forced_nccl_env();
  test_observe_and_off();
  test_candidates_rank_invariant();
  test_publish_concurrent();
  unlink(table_path);
  TEST_RETURN();
}
