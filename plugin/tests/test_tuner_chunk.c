/*
 * getChunkSize must only touch the chunk of a collective whose own getCollInfo decision carried a
 * chunk size. A chunk decided for an earlier collective must not leak onto later collectives of
 * the same (coll, algo, proto) that no rule decided (NCCL picked that arm itself) or whose rule
 * carries no chunk size: for those, 0 means "keep NCCL's", and NCCL's value must stay.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cp_core.h"
#include "testutil.h"

#define NA CP_NUM_ALGOS
#define NP CP_NUM_PROTOS

static char table_path[256];

/* Ring/Simple is NCCL's own cheapest entry, so NCCL runs it even without a decision. */
static void ring_simple_cheapest(float* t) {
  for (int i = 0; i < NA * NP; i++) t[i] = CP_COST_IGNORE;
  t[CP_ALGO_TREE * NP + CP_PROTO_SIMPLE] = 40.f;
  t[CP_ALGO_RING * NP + CP_PROTO_LL] = 30.f;
  t[CP_ALGO_RING * NP + CP_PROTO_SIMPLE] = 10.f;
}

static cp_tuner_comm* comm_with_table(const char* text) {
  FILE* f = fopen(table_path, "w");
  CHECK(f != NULL, "cannot create %s", table_path);
  if (!f) exit(1);
  fputs(text, f);
  fclose(f);
  setenv("CCLPILOT_MODE", "static", 1);
  setenv("CCLPILOT_TABLE", table_path, 1);
  cp_tuner_init_args a = {.abi_version = 6, .has_comm_id = 1, .comm_id = 7, .n_ranks = 8,
                          .n_nodes = 1, .log = NULL};
  cp_tuner_comm* c = NULL;
  CHECK_INT_EQ(cp_tuner_comm_create(&a, &c), CP_OK);
  return c;
}

static void coll_info(cp_tuner_comm* c, int coll, size_t n_bytes) {
  float t[NA * NP];
  ring_simple_cheapest(t);
  int nch = 0;
  cp_coll_query q = {coll, n_bytes, 1, 0};
  cp_tuner_get_coll_info(c, &q, t, NA, NP, &nch, NULL);
}

static size_t chunk_for(cp_tuner_comm* c, int coll, size_t part_bytes) {
  size_t chunk = 2u << 20; /* NCCL's own value */
  cp_tuner_get_chunk_size(c, coll, part_bytes, CP_ALGO_RING, CP_PROTO_SIMPLE, 1, &chunk);
  return chunk;
}

static void test_no_leak_to_undecided_collective(void) {
  /* Only collectives of 1 MiB and more are decided, with a 64 KiB chunk. */
  cp_tuner_comm* c = comm_with_table("allreduce,1048576,-1,ring,simple,-1,-1,-1,-1,-1,65536\n");
  coll_info(c, CP_COLL_ALLREDUCE, 8u << 20);
  CHECK_INT_EQ(chunk_for(c, CP_COLL_ALLREDUCE, 1u << 20), 65536); /* the decided one */

  /* Next launch: a 4 KiB allreduce no rule covers; NCCL runs ring/simple on its own. */
  coll_info(c, CP_COLL_ALLREDUCE, 4096);
  CHECK_INT_EQ(chunk_for(c, CP_COLL_ALLREDUCE, 4096), 2u << 20);
  cp_tuner_comm_destroy(c);
}

static void test_no_leak_to_rule_without_chunk(void) {
  cp_tuner_comm* c = comm_with_table(
      "allreduce,0,1048575,ring,simple,-1,-1,-1\n"
      "allreduce,1048576,-1,ring,simple,-1,-1,-1,-1,-1,65536\n");
  coll_info(c, CP_COLL_ALLREDUCE, 8u << 20);
  coll_info(c, CP_COLL_ALLREDUCE, 65536); /* decided, but its rule keeps NCCL's chunk */
  CHECK_INT_EQ(chunk_for(c, CP_COLL_ALLREDUCE, 65536), 2u << 20);
  cp_tuner_comm_destroy(c);
}

static void test_group_keeps_each_decision(void) {
  /* One group, two aggregates decided back to back, then NCCL plans both: each part gets the
   * chunk of its own decision. */
  cp_tuner_comm* c = comm_with_table("allreduce,1048576,-1,ring,simple,-1,-1,-1,-1,-1,65536\n");
  coll_info(c, CP_COLL_ALLREDUCE, 8u << 20);
  coll_info(c, CP_COLL_ALLREDUCE, 4096);
  CHECK_INT_EQ(chunk_for(c, CP_COLL_ALLREDUCE, 4u << 20), 65536);
  CHECK_INT_EQ(chunk_for(c, CP_COLL_ALLREDUCE, 4096), 2u << 20);
  cp_tuner_comm_destroy(c);
}

int main(void) {
  snprintf(table_path, sizeof table_path, "/tmp/cclpilot-test-chunk-%d.conf", (int)getpid());
  unsetenv("NCCL_ALGO");
  unsetenv("NCCL_PROTO");
  unsetenv("CCLPILOT_STATS_FILE");
  test_no_leak_to_undecided_collective();
  test_no_leak_to_rule_without_chunk();
  test_group_keeps_each_decision();
  unlink(table_path);
  TEST_RETURN();
}
