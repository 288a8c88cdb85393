/* Unit tests of the table file parser (cp_tablefile.c). */
#define _POSIX_C_SOURCE 200809L /* mkstemp, fdopen */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cp_table.h"
#include "cp_tablefile.h"
#include "testutil.h"

#define BIG_MAX 1000000

static char g_err[512];

static cp_result parse_str(const char* text, size_t max_rules, cp_rule_set* set) {
  return cp_tablefile_parse_buffer("t.conf", text, strlen(text), max_rules, set, g_err,
                                   sizeof g_err);
}

/* A conf in the style users write for NCCL's example tuner: 8, 9 and 10 fields, comments,
 * -1 wildcards, lower-case tokens. It must load unchanged. */
static const char* const nccl_example_conf =
    "# NCCL tuner configuration\n"
    "# collective_type,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks,numPipeOps,regBuff\n"
    "\n"
    "# Small allreduce on one node: tree + LL\n"
    "allreduce,0,65536,tree,ll,-1,1,-1\n"
    "# Medium: ring + LL128 with 16 channels\n"
    "allreduce,65537,1048576,ring,ll128,16,1,-1\n"
    "allreduce,1048577,4294967295,ring,simple,32,1,-1\n"
    "\n"
    "# Multi-node: any node count, 16 ranks, single pipelined op\n"
    "allreduce,0,32768,tree,ll,-1,-1,16,1\n"
    "allreduce,32769,-1,nvls,simple,-1,-1,16,1\n"
    "allgather,0,8192,ring,ll,4,-1,-1,-1\n"
    "allgather,8193,-1,ring,simple,-1,-1,-1,-1\n"
    "reducescatter,0,-1,pat,simple,-1,2,-1,-1,-1\n"
    "broadcast,0,-1,ring,ll128,8,-1,-1,-1,-1\n"
    "reduce,0,1024,ring,ll,2,-1,-1,-1,-1  # trailing comment\n"
    "# Registered buffers only (rank-local: skipped by cclpilot)\n"
    "allreduce,0,-1,nvls,simple,-1,2,-1,-1,1\n";

static void test_nccl_example(void) {
  cp_rule_set set;
  cp_result r = parse_str(nccl_example_conf, BIG_MAX, &set);
  CHECK(r == CP_OK, "NCCL-style conf rejected: %s", g_err);
  CHECK_INT_EQ(set.n_rules, 10);
  CHECK_INT_EQ(set.n_regbuff_lines, 1);
  if (set.n_rules != 10) {
    cp_rule_set_free(&set);
    return;
  }
  const cp_rule* x = &set.rules[0];
  CHECK(x->coll == CP_COLL_ALLREDUCE && x->min_bytes == 0 && x->max_bytes == 65536 &&
            x->arms[0].algo == CP_ALGO_TREE && x->arms[0].proto == CP_PROTO_LL &&
            x->arms[0].n_channels == 0 && x->n_nodes == 1 && x->n_ranks == CP_ANY &&
            x->num_pipe_ops == CP_ANY && x->n_arms == 1 && x->arms[0].chunk_size == 0 &&
            x->source_line == 5,
        "rule 0 decoded wrongly");
  x = &set.rules[1];
  CHECK(x->arms[0].n_channels == 16 && x->arms[0].proto == CP_PROTO_LL128 && x->source_line == 7,
        "rule 1 decoded wrongly");
  x = &set.rules[2];
  CHECK(x->max_bytes == 4294967295ull && x->arms[0].n_channels == 32, "rule 2");
  x = &set.rules[3];
  CHECK(x->num_pipe_ops == 1 && x->n_ranks == 16 && x->n_nodes == CP_ANY && x->source_line == 11,
        "rule 3 (9 fields)");
  x = &set.rules[4];
  CHECK(x->max_bytes == UINT64_MAX && x->arms[0].algo == CP_ALGO_NVLS, "rule 4: max -1 = open");
  x = &set.rules[7];
  CHECK(x->coll == CP_COLL_REDUCESCATTER && x->arms[0].algo == CP_ALGO_PAT && x->n_nodes == 2,
        "rule 7 (10 fields)");
  x = &set.rules[9];
  CHECK(x->coll == CP_COLL_REDUCE && x->max_bytes == 1024 && x->arms[0].n_channels == 2 &&
            x->source_line == 17,
        "rule 9 with trailing comment");

  /* The parsed set compiles and answers as the file says. */
  cp_table* t = NULL;
  CHECK_INT_EQ(cp_table_compile(set.rules, set.n_rules, 1, 8, 0, &t), CP_OK);
  const cp_rule* hit = cp_table_lookup(t, CP_COLL_ALLREDUCE, 65537, 1);
  CHECK(hit && hit->source_line == 7, "65537 bytes on 1 node must hit line 7");
  hit = cp_table_lookup(t, CP_COLL_ALLREDUCE, 8ull << 30, 1);
  CHECK(hit == NULL, "8 GiB allreduce on 1x8 matches nothing (nRanks=16 rules filtered out)");
  cp_table_free(t);
  cp_rule_set_free(&set);
  CHECK(set.rules == NULL && set.n_rules == 0, "free resets the set");
}

static void test_accepted_forms(void) {
  cp_rule_set set;
  /* Case, whitespace, CRLF, BOM, tabs, no final newline, 11 fields, channels 0. */
  const char* text =
      "\xEF\xBB\xBF# table with a BOM\r\n"
      "  AllReduce , 0 , 1023 , TREE , LL , 0 , -1 , -1 \r\n"
      "\r\n"
      "   \t  \n"
      "allreduce,1024,2047,Ring,LL128,64,-1,-1,2,-1,131072   # chunk 128 KiB\n"
      "ALLGATHER,\t-1,\t-1,\tNVLS,\tSIMPLE,\t-1,\t-1,\t-1,\t-1,\t0,\t-1\n"
      "# non-ASCII in a comment is fine: \xc2\xb5s, \xe2\x80\x94\n"
      "reducescatter,5,18446744073709551615,collnet_direct,simple,1,3,24,4,-1,2147483647";
  cp_result r = parse_str(text, BIG_MAX, &set);
  CHECK(r == CP_OK, "rejected: %s", g_err);
  CHECK_INT_EQ(set.n_rules, 3);
  CHECK_INT_EQ(set.n_regbuff_lines, 1);
  if (set.n_rules == 3) {
    CHECK(set.rules[0].arms[0].n_channels == 0 && set.rules[0].source_line == 2, "rule 0");
    CHECK(set.rules[1].num_pipe_ops == 2 && set.rules[1].arms[0].chunk_size == 131072 &&
              set.rules[1].arms[0].n_channels == 64 && set.rules[1].source_line == 5,
          "rule 1");
    CHECK(set.rules[2].max_bytes == UINT64_MAX && set.rules[2].min_bytes == 5 &&
              set.rules[2].arms[0].chunk_size == 2147483647u && set.rules[2].n_nodes == 3 &&
              set.rules[2].n_ranks == 24 && set.rules[2].num_pipe_ops == 4 &&
              set.rules[2].arms[0].algo == CP_ALGO_COLLNET_DIRECT &&
              set.rules[2].source_line == 8,
          "rule 2");
  }
  cp_rule_set_free(&set);

  /* Empty inputs are valid empty sets. */
  const char* empties[] = {"", "\n\n", "# only a comment\n", "   # indented comment", "\r\n"};
  for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
    CHECK_INT_EQ(parse_str(empties[i], BIG_MAX, &set), CP_OK);
    CHECK(set.n_rules == 0 && set.rules == NULL, "empty %zu", i);
  }
  CHECK_INT_EQ(cp_tablefile_parse_buffer("t", NULL, 0, 10, &set, g_err, sizeof g_err), CP_OK);

  /* Allowed overlaps: identical duplicates, same decision, specific-then-fallback, different
   * filters, disjoint. */
  const char* ok_overlaps =
      "allreduce,0,100,ring,ll,-1,-1,-1\n"
      "allreduce,0,100,ring,ll,-1,-1,-1\n"            /* identical duplicate */
      "allreduce,50,200,ring,ll,-1,-1,-1\n"           /* same decision, partial overlap */
      "allreduce,0,1000,tree,ll,-1,-1,-1\n"           /* strictly contains everything above */
      "allreduce,0,1000,tree,ll,-1,2,-1\n"            /* other nNodes filter */
      "allreduce,500,5000,nvls,simple,-1,-1,-1,1\n"   /* other numPipeOps filter */
      "allreduce,1001,2000,ring,simple,-1,-1,-1\n"    /* disjoint */
      "allgather,0,1000,ring,ll,-1,-1,-1\n"           /* other collective */
      "allreduce,0,-1,ring,simple,8,-1,-1\n";         /* fallback containing all */
  CHECK(parse_str(ok_overlaps, BIG_MAX, &set) == CP_OK, "allowed overlaps rejected: %s", g_err);
  CHECK_INT_EQ(set.n_rules, 9);
  cp_rule_set_free(&set);

  /* A line of exactly CP_TABLEFILE_MAX_LINE bytes (padded by a comment) is accepted. */
  char* line = malloc(CP_TABLEFILE_MAX_LINE + 2);
  if (line) {
    const char* head = "allreduce,0,10,ring,ll,-1,-1,-1 #";
    size_t hl = strlen(head);
    memcpy(line, head, hl);
    memset(line + hl, 'x', CP_TABLEFILE_MAX_LINE - hl);
    line[CP_TABLEFILE_MAX_LINE] = '\n';
    line[CP_TABLEFILE_MAX_LINE + 1] = '\0';
    CHECK(parse_str(line, BIG_MAX, &set) == CP_OK, "max-length line rejected: %s", g_err);
    cp_rule_set_free(&set);
    free(line);
  }
}

typedef struct {
  const char* text;
  cp_result code;
  int line; /* expected line in the message, 0 = whole-file message */
  const char* needle;
} reject_case;

static void test_rejections(void) {
  static const reject_case cases[] = {
      /* field counts */
      {"# c\nallreduce,0,10,ring,ll,-1,-1\n", CP_ERR_PARSE, 2, "found 7"},
      {"allreduce,0,10,ring,ll,-1,-1,-1,-1,-1,-1,-1\n", CP_ERR_PARSE, 1, "found 12"},
      {"allreduce\n", CP_ERR_PARSE, 1, "expected 8 to 11"},
      {"allreduce,0,10,ring,ll,-1,-1,-1,\n", CP_ERR_PARSE, 1, "numPipeOps is empty"},
      /* integers */
      {"allreduce,12a,100,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "min_bytes '12a' is not an integer"},
      {"allreduce,0,1.5,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "max_bytes '1.5' is not an integer"},
      {"allreduce,0x10,100,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "'0x10' is not an integer"},
      {"allreduce,+5,100,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "'+5' is not an integer"},
      {"allreduce,1 0,100,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "'1 0' is not an integer"},
      {"allreduce,,100,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "min_bytes is empty"},
      {"allreduce,-2,100,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "min_bytes '-2' is negative"},
      {"allreduce,-,100,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "'-' is negative"},
      {"allreduce,0,18446744073709551616,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 1,
       "max_bytes '18446744073709551616' is too large"},
      {"allreduce,0,99999999999999999999999999,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "too large"},
      {"allreduce,0,10,ring,ll,-1,2147483648,-1\n", CP_ERR_PARSE, 1, "nNodes 2147483648 is too large"},
      {"allreduce,101,100,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 1,
       "min_bytes 101 is greater than max_bytes 100"},
      /* tokens */
      {"\n\nsendrecv,0,10,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 3, "unknown collective 'sendrecv'"},
      {"allreduce,0,10,nvlstree,simple,-1,-1,-1\n", CP_ERR_PARSE, 1, "unknown algorithm 'nvlstree'"},
      {"allreduce,0,10,ring,ll64,-1,-1,-1\n", CP_ERR_PARSE, 1, "unknown protocol 'll64'"},
      {"allreduce,0,10,-1,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "unknown algorithm '-1'"},
      {"allreduce,0,10,ring,,-1,-1,-1\n", CP_ERR_PARSE, 1, "unknown protocol ''"},
      /* channels */
      {"allreduce,0,10,ring,ll,65,-1,-1\n", CP_ERR_PARSE, 1, "channels 65 is outside 1..64"},
      {"allreduce,0,10,ring,ll,1000000,-1,-1\n", CP_ERR_PARSE, 1, "outside 1..64"},
      {"allreduce,0,10,ring,ll,-3,-1,-1\n", CP_ERR_PARSE, 1, "channels '-3' is negative"},
      /* filters */
      {"allreduce,0,10,ring,ll,-1,0,-1\n", CP_ERR_PARSE, 1, "nNodes 0 is invalid"},
      {"allreduce,0,10,ring,ll,-1,-1,0\n", CP_ERR_PARSE, 1, "nRanks 0 is invalid"},
      {"allreduce,0,10,ring,ll,-1,-1,-2\n", CP_ERR_PARSE, 1, "nRanks '-2' is negative"},
      {"allreduce,0,10,ring,ll,-1,-1,-1,0\n", CP_ERR_PARSE, 1, "numPipeOps 0 is invalid"},
      {"allreduce,0,10,ring,ll,-1,-1,-1,-1,2\n", CP_ERR_PARSE, 1, "regBuff 2 is invalid"},
      {"allreduce,0,10,ring,ll,-1,-1,-1,-1,-7\n", CP_ERR_PARSE, 1, "regBuff '-7' is negative"},
      {"allreduce,0,10,ring,ll,-1,-1,-1,-1,-1,2147483648\n", CP_ERR_PARSE, 1,
       "chunkBytes 2147483648 is larger than 2147483647"},
      {"allreduce,0,10,ring,ll,-1,-1,-1,-1,-1,-4096\n", CP_ERR_PARSE, 1, "chunkBytes '-4096' is negative"},
      {"allreduce,0,10,ring,ll,-1,-1,-1,-1,-1,4k\n", CP_ERR_PARSE, 1, "chunkBytes '4k' is not an integer"},
      /* combinations NCCL never models */
      {"allreduce,0,10,nvls,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "nvls runs only with protocol simple"},
      {"allreduce,0,10,nvls_tree,ll128,-1,-1,-1\n", CP_ERR_PARSE, 1, "nvls_tree runs only with protocol simple"},
      {"allreduce,0,10,collnet_direct,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "collnet_direct runs only"},
      {"allreduce,0,10,collnet_chain,ll128,-1,-1,-1\n", CP_ERR_PARSE, 1, "collnet_chain runs only"},
      {"allgather,0,10,pat,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "pat runs only with protocol simple"},
      {"allreduce,0,10,pat,simple,-1,-1,-1\n", CP_ERR_PARSE, 1, "allreduce has no pat algorithm"},
      {"broadcast,0,10,tree,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "broadcast runs only with algorithm ring"},
      {"reduce,0,10,nvls,simple,-1,-1,-1\n", CP_ERR_PARSE, 1, "reduce runs only with algorithm ring"},
      {"allgather,0,10,tree,ll,-1,-1,-1\n", CP_ERR_PARSE, 1, "allgather has no tree algorithm"},
      {"reducescatter,0,10,collnet_chain,simple,-1,-1,-1\n", CP_ERR_PARSE, 1,
       "reducescatter has no collnet_chain algorithm"},
      {"reducescatter,0,10,nvls_tree,simple,-1,-1,-1\n", CP_ERR_PARSE, 1, "has no nvls_tree"},
      /* bytes */
      {"allreduce,0,10,ring,ll,-1,-1,-1\nallreduce,0,10,ring,ll,-1,-1,-1\x01\n", CP_ERR_PARSE, 2,
       "control byte 0x01"},
      {"allreduce,0,10,ring,\xc3\xa9,-1,-1,-1\n", CP_ERR_PARSE, 1, "non-ASCII byte 0xc3"},
      {"allreduce,0,10,ring,ll,-1,-1,-1\rallreduce,11,20,ring,ll,-1,-1,-1\n", CP_ERR_PARSE, 1,
       "carriage return"},
      {"# ok\n# bell \x07 in a comment\n", CP_ERR_PARSE, 2, "control byte 0x07"},
      {"allreduce,0,10,ring,ll,-1,-1,-1\n\x7f\n", CP_ERR_PARSE, 2, "control byte 0x7f"},
      /* contradictions */
      {"allreduce,0,100,ring,ll,-1,-1,-1\nallreduce,50,200,tree,ll,-1,-1,-1\n", CP_ERR_PARSE, 2,
       "overlaps the rule on line 1"},
      {"allreduce,50,200,ring,ll,-1,-1,-1\nallreduce,0,100,tree,ll,-1,-1,-1\n", CP_ERR_PARSE, 2,
       "overlaps the rule on line 1"},
      {"allreduce,0,100,ring,ll,-1,-1,-1\n# x\nallreduce,0,100,ring,ll,8,-1,-1\n", CP_ERR_PARSE, 3,
       "can never apply: the rule on line 1"},
      {"allreduce,0,-1,ring,simple,-1,2,16,1\nallreduce,4096,8191,tree,simple,-1,2,16,1\n",
       CP_ERR_PARSE, 2, "can never apply"},
      {"allreduce,0,100,ring,ll,-1,-1,-1,-1,-1,4096\nallreduce,0,200,ring,ll,-1,-1,-1\n"
       "allreduce,100,100,ring,ll,-1,-1,-1,-1,-1,8192\n",
       CP_ERR_PARSE, 3, "can never apply"}, /* chunk differs: a different decision */
      {"allreduce,0,10,ring,ll,-1,-1,-1\nallreduce,20,30,ring,ll,-1,-1,-1\n"
       "allreduce,0,100,tree,ll,-1,-1,-1\nallreduce,25,200,ring,ll,-1,-1,-1\n",
       CP_ERR_PARSE, 4, "overlaps the rule on line 3"},
      {"allreduce,10,20,ring,ll,-1,-1,-1\nallreduce,20,30,tree,ll,-1,-1,-1\n", CP_ERR_PARSE, 2,
       "line 1"}, /* inclusive ends: byte 20 is in both */
      {"allreduce,0,18446744073709551615,ring,ll,-1,-1,-1\nallreduce,0,-1,tree,ll,-1,-1,-1\n",
       CP_ERR_PARSE, 2, "can never apply"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cp_rule_set set;
    memset(&set, 0xAB, sizeof set);
    cp_result r = parse_str(cases[i].text, BIG_MAX, &set);
    CHECK(r == cases[i].code, "case %zu: result %d, want %d (%s)", i, (int)r, (int)cases[i].code,
          g_err);
    char prefix[32];
    if (cases[i].line)
      snprintf(prefix, sizeof prefix, "t.conf:%d: ", cases[i].line);
    else
      snprintf(prefix, sizeof prefix, "t.conf: ");
    CHECK(strncmp(g_err, prefix, strlen(prefix)) == 0, "case %zu: message '%s' should start '%s'",
          i, g_err, prefix);
    CHECK(strstr(g_err, cases[i].needle) != NULL, "case %zu: message '%s' lacks '%s'", i, g_err,
          cases[i].needle);
    CHECK(strchr(g_err, '(') != NULL, "case %zu: message '%s' says nothing about what to do", i,
          g_err);
    CHECK(strchr(g_err, '\n') == NULL, "case %zu: message spans lines", i);
    CHECK(set.rules == NULL && set.n_rules == 0 && set.n_regbuff_lines == 0,
          "case %zu: output not left empty", i);
  }
}

static void test_limits(void) {
  cp_rule_set set;
  char* line = malloc(CP_TABLEFILE_MAX_LINE + 64);
  if (line) {
    const char* head = "allreduce,0,10,ring,ll,-1,-1,-1 #";
    size_t hl = strlen(head);
    memcpy(line, head, hl);
    memset(line + hl, 'x', CP_TABLEFILE_MAX_LINE + 1 - hl);
    line[CP_TABLEFILE_MAX_LINE + 1] = '\0';
    char* text = malloc(CP_TABLEFILE_MAX_LINE + 128);
    if (text) {
      snprintf(text, CP_TABLEFILE_MAX_LINE + 128, "# first\n%s\n", line);
      CHECK_INT_EQ(parse_str(text, BIG_MAX, &set), CP_ERR_PARSE);
      CHECK_STR_CONTAINS(g_err, "t.conf:2: line is longer than 4096 bytes");
      free(text);
    }
    free(line);
  }

  /* More rules than max_rules; regBuff-filtered lines do not count. */
  const char* four =
      "allreduce,0,10,ring,ll,-1,-1,-1\n"
      "allreduce,11,20,ring,ll,-1,-1,-1\n"
      "allreduce,0,10,ring,ll,-1,-1,-1,-1,1\n"
      "allreduce,21,30,ring,ll,-1,-1,-1\n"
      "allreduce,31,40,ring,ll,-1,-1,-1\n";
  CHECK_INT_EQ(parse_str(four, 4, &set), CP_OK);
  CHECK_INT_EQ(set.n_rules, 4);
  cp_rule_set_free(&set);
  CHECK_INT_EQ(parse_str(four, 3, &set), CP_ERR_LIMIT);
  CHECK_STR_CONTAINS(g_err, "t.conf:5: too large: more than 3 rules");
  CHECK(set.rules == NULL && set.n_rules == 0, "output not empty after CP_ERR_LIMIT");
  CHECK_INT_EQ(parse_str("# nothing\n", 0, &set), CP_OK);
  CHECK_INT_EQ(parse_str(four, 0, &set), CP_ERR_LIMIT);

  /* A buffer over the file size limit is refused before it is read. */
  size_t big = (size_t)CP_TABLEFILE_MAX_BYTES + 1;
  char* huge = malloc(big);
  if (huge) {
    memset(huge, '\n', big);
    CHECK_INT_EQ(cp_tablefile_parse_buffer("big.conf", huge, big, BIG_MAX, &set, g_err,
                                           sizeof g_err),
                 CP_ERR_LIMIT);
    CHECK_STR_CONTAINS(g_err, "big.conf: file is too large");
    /* Exactly at the limit is fine (all blank lines). */
    CHECK_INT_EQ(cp_tablefile_parse_buffer("big.conf", huge, big - 1, BIG_MAX, &set, g_err,
                                           sizeof g_err),
                 CP_OK);
    free(huge);
  }

  /* Tiny or absent error buffers are never overrun. */
  char tiny[8];
  CHECK_INT_EQ(cp_tablefile_parse_buffer("a-long-file-name.conf", "bogus\n", 6, 10, &set, tiny,
                                         sizeof tiny),
               CP_ERR_PARSE);
  CHECK(strlen(tiny) == sizeof tiny - 1, "tiny buffer must hold a truncated message");
  CHECK_INT_EQ(cp_tablefile_parse_buffer("x", "bogus\n", 6, 10, &set, NULL, 0), CP_ERR_PARSE);
  CHECK_INT_EQ(cp_tablefile_parse_buffer("x", "a", 1, 10, NULL, g_err, sizeof g_err),
               CP_ERR_INVALID);
}

static void test_files(void) {
  cp_rule_set set;
  char path[] = "/tmp/cclpilot_test_tablefile_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  if (fd >= 0) {
    FILE* f = fdopen(fd, "w");
    fputs(nccl_example_conf, f);
    fclose(f);
    CHECK(cp_tablefile_parse_file(path, BIG_MAX, &set, g_err, sizeof g_err) == CP_OK,
          "file load failed: %s", g_err);
    CHECK_INT_EQ(set.n_rules, 10);
    cp_rule_set_free(&set);

    f = fopen(path, "w");
    fputs("allreduce,0,10,ring,ll,-1,-1,-1\nallreduce,0,10,ring,bogus,-1,-1,-1\n", f);
    fclose(f);
    CHECK_INT_EQ(cp_tablefile_parse_file(path, BIG_MAX, &set, g_err, sizeof g_err), CP_ERR_PARSE);
    char want[96];
    snprintf(want, sizeof want, "%s:2: unknown protocol 'bogus'", path);
    CHECK_STR_CONTAINS(g_err, want);
    unlink(path);
  }

  CHECK_INT_EQ(cp_tablefile_parse_file("/nonexistent/cclpilot.conf", BIG_MAX, &set, g_err,
                                       sizeof g_err),
               CP_ERR_IO);
  CHECK_STR_CONTAINS(g_err, "/nonexistent/cclpilot.conf: cannot open");
  CHECK_INT_EQ(cp_tablefile_parse_file("/tmp", BIG_MAX, &set, g_err, sizeof g_err), CP_ERR_IO);
  CHECK_STR_CONTAINS(g_err, "/tmp: cannot");

  /* The shipped example tables load and compile. */
  static const char* const examples[] = {"h100-2node-example.conf", "nccl-example-compatible.conf"};
  for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++) {
    char p[1024];
    snprintf(p, sizeof p, "%s/examples/tables/%s", CCLPILOT_SOURCE_DIR, examples[i]);
    cp_result r = cp_tablefile_parse_file(p, BIG_MAX, &set, g_err, sizeof g_err);
    CHECK(r == CP_OK, "example %s: %s", examples[i], g_err);
    CHECK(set.n_rules > 0, "example %s has no rules", examples[i]);
    cp_table* t = NULL;
    CHECK_INT_EQ(cp_table_compile(set.rules, set.n_rules, 2, 16, 0, &t), CP_OK);
    CHECK(t && cp_table_rule_count(t) > 0, "example %s: nothing applies to 2x16", examples[i]);
    cp_table_free(t);
    cp_rule_set_free(&set);
  }
}

/* ---- contradiction check against a brute-force reference ---------------------------------- */

static uint64_t rng_next(uint64_t* s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static int same_decision(const cp_rule* a, const cp_rule* b) {
  return a->arms[0].algo == b->arms[0].algo && a->arms[0].proto == b->arms[0].proto &&
         a->arms[0].n_channels == b->arms[0].n_channels &&
         a->arms[0].chunk_size == b->arms[0].chunk_size;
}

/* The rule as stated: earlier a, later b, same filters, overlapping, different decision, and b
 * does not strictly contain a. */
static int violates(const cp_rule* a, const cp_rule* b) {
  if (a->coll != b->coll || a->n_nodes != b->n_nodes || a->n_ranks != b->n_ranks ||
      a->num_pipe_ops != b->num_pipe_ops)
    return 0;
  if (a->max_bytes < b->min_bytes || b->max_bytes < a->min_bytes) return 0;
  if (same_decision(a, b)) return 0;
  int b_contains_a = b->min_bytes <= a->min_bytes && b->max_bytes >= a->max_bytes;
  int equal = b->min_bytes == a->min_bytes && b->max_bytes == a->max_bytes;
  return !(b_contains_a && !equal);
}

static void test_contradictions_random(void) {
  static const char* const algos[] = {"ring", "tree"};
  static const char* const protos[] = {"ll", "simple"};
  int n_conflicts = 0, n_clean = 0;
  for (uint64_t seed = 1; seed <= 3000; seed++) {
    uint64_t s = seed;
    int n = 2 + (int)(rng_next(&s) % 12);
    char text[4096];
    size_t len = 0;
    cp_rule ref[16];
    for (int k = 0; k < n; k++) {
      /* Few distinct values so that overlaps, containments and equal ranges are common. */
      uint64_t lo = rng_next(&s) % 8, hi = lo + rng_next(&s) % 8;
      int open_max = rng_next(&s) % 6 == 0;
      int a = (int)(rng_next(&s) % 2), p = (int)(rng_next(&s) % 2);
      int nodes = (rng_next(&s) % 4 == 0) ? 2 : -1;
      int chunk = (rng_next(&s) % 5 == 0) ? 4096 : 0;
      char max_field[24];
      if (open_max)
        snprintf(max_field, sizeof max_field, "-1");
      else
        snprintf(max_field, sizeof max_field, "%llu", (unsigned long long)hi);
      len += (size_t)snprintf(text + len, sizeof text - len,
                              "allreduce,%llu,%s,%s,%s,-1,%d,-1,-1,-1,%d\n",
                              (unsigned long long)lo, max_field, algos[a], protos[p], nodes, chunk);
      memset(&ref[k], 0, sizeof ref[k]);
      ref[k].coll = CP_COLL_ALLREDUCE;
      ref[k].min_bytes = lo;
      ref[k].max_bytes = open_max ? UINT64_MAX : hi;
      ref[k].n_nodes = nodes;
      ref[k].n_ranks = CP_ANY;
      ref[k].num_pipe_ops = CP_ANY;
      ref[k].arms[0].algo = (int8_t)(a == 0 ? CP_ALGO_RING : CP_ALGO_TREE);
      ref[k].arms[0].proto = (int8_t)(p == 0 ? CP_PROTO_LL : CP_PROTO_SIMPLE);
      ref[k].arms[0].chunk_size = (uint32_t)chunk;
    }
    int want_b = 0;
    for (int b = 0; b < n && !want_b; b++)
      for (int a = 0; a < b; a++)
        if (violates(&ref[a], &ref[b])) {
          want_b = b + 1;
          break;
        }

    cp_rule_set set;
    cp_result r = parse_str(text, BIG_MAX, &set);
    if (want_b == 0) {
      n_clean++;
      CHECK(r == CP_OK, "seed %llu: clean table rejected: %s\n%s", (unsigned long long)seed, g_err,
            text);
      cp_rule_set_free(&set);
      continue;
    }
    n_conflicts++;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "t.conf:%d: ", want_b);
    CHECK(r == CP_ERR_PARSE && strncmp(g_err, prefix, strlen(prefix)) == 0,
          "seed %llu: want a conflict on line %d, got %d '%s'\n%s", (unsigned long long)seed,
          want_b, (int)r, g_err, text);
    /* The other line named must really be in conflict with this one. */
    const char* on = strstr(g_err, "on line ");
    int a_line = on ? atoi(on + 8) : 0;
    CHECK(a_line >= 1 && a_line < want_b && violates(&ref[a_line - 1], &ref[want_b - 1]),
          "seed %llu: line %d named as conflicting with %d: %s", (unsigned long long)seed, a_line,
          want_b, g_err);
  }
  /* The generator must exercise both outcomes, or this test proves little. */
  CHECK(n_conflicts > 300 && n_clean > 300, "conflicts %d, clean %d", n_conflicts, n_clean);
}

/* ---- hostile input ------------------------------------------------------------------------- */

static void check_parse_outcome(const char* buf, size_t len, uint64_t seed, const char* what) {
  cp_rule_set set;
  char err[256];
  memset(err, 'Z', sizeof err);
  cp_result r = cp_tablefile_parse_buffer("fuzz.conf", buf, len, 5000, &set, err, sizeof err);
  CHECK(memchr(err, '\0', sizeof err) != NULL, "%s seed %llu: message not terminated", what,
        (unsigned long long)seed);
  if (r == CP_OK) {
    for (size_t k = 0; k < set.n_rules; k++) {
      const cp_rule* x = &set.rules[k];
      int sane = x->coll >= 0 && x->coll < CP_NUM_COLLS && x->min_bytes <= x->max_bytes &&
                 x->n_arms == 1 && x->arms[0].algo >= 0 && x->arms[0].algo < CP_NUM_ALGOS &&
                 x->arms[0].proto >= 0 && x->arms[0].proto < CP_NUM_PROTOS &&
                 x->arms[0].n_channels <= CP_MAX_CHANNELS && x->arms[0].chunk_size <= 2147483647u &&
                 (x->n_nodes == CP_ANY || x->n_nodes > 0) && (x->n_ranks == CP_ANY || x->n_ranks > 0) &&
                 (x->num_pipe_ops == CP_ANY || x->num_pipe_ops > 0) && x->source_line > 0;
      CHECK(sane, "%s seed %llu: accepted an insane rule %zu", what, (unsigned long long)seed, k);
    }
    cp_table* t = NULL;
    CHECK_INT_EQ(cp_table_compile(set.rules, set.n_rules, 2, 16, 0, &t), CP_OK);
    cp_table_free(t);
    cp_rule_set_free(&set);
  } else {
    CHECK(r == CP_ERR_PARSE || r == CP_ERR_LIMIT, "%s seed %llu: unexpected result %d", what,
          (unsigned long long)seed, (int)r);
    CHECK(strncmp(err, "fuzz.conf:", 10) == 0, "%s seed %llu: message '%s'", what,
          (unsigned long long)seed, err);
    CHECK(set.rules == NULL && set.n_rules == 0, "%s seed %llu: output not empty", what,
          (unsigned long long)seed);
  }
}

static void test_hostile_input(void) {
  static const char* const pieces[] = {
      "allreduce", "allgather", "reducescatter", "broadcast", "reduce", "ring", "tree", "nvls",
      "pat", "ll", "ll128", "simple", "-1", "0", "1", "64", "65", "18446744073709551615",
      "18446744073709551616", "99999999999999999999999999999", "2147483648", "-", "--1", ",",
      ",,", " ", "\t", "#", "\n", "\r\n", "\r", "\x00", "\xff", "\xc2\xb5", "1e9", "0x1",
  };
  const size_t n_pieces = sizeof pieces / sizeof pieces[0];
  size_t cap = 1 << 16;
  char* buf = malloc(cap);
  if (!buf) return;

  for (uint64_t seed = 0; seed < 4000; seed++) {
    uint64_t s = seed;
    size_t len = 0;
    switch (seed % 4) {
      case 0: /* random bytes */
        len = rng_next(&s) % 2000;
        for (size_t i = 0; i < len; i++) buf[i] = (char)rng_next(&s);
        break;
      case 1: /* random concatenations of meaningful pieces (may contain NUL bytes) */
        for (int k = (int)(rng_next(&s) % 200); k > 0; k--) {
          const char* pc = pieces[rng_next(&s) % n_pieces];
          size_t pl = pc[0] == '\0' ? 1 : strlen(pc);
          if (len + pl >= cap) break;
          memcpy(buf + len, pc, pl);
          len += pl;
        }
        break;
      case 2: { /* the valid example, truncated at a random point */
        size_t full = strlen(nccl_example_conf);
        len = rng_next(&s) % (full + 1);
        memcpy(buf, nccl_example_conf, len);
        break;
      }
      default: { /* the valid example with random byte mutations, insertions and deletions */
        size_t full = strlen(nccl_example_conf);
        memcpy(buf, nccl_example_conf, full);
        len = full;
        for (int m = 1 + (int)(rng_next(&s) % 8); m > 0 && len > 0; m--) {
          size_t at = rng_next(&s) % len;
          switch (rng_next(&s) % 4) {
            case 0: buf[at] = (char)rng_next(&s); break;
            case 1: buf[at] = "0123456789,-#\n"[rng_next(&s) % 14]; break;
            case 2:
              if (len + 30 < cap) {
                memmove(buf + at + 25, buf + at, len - at);
                memcpy(buf + at, "9999999999999999999999999", 25);
                len += 25;
              }
              break;
            default:
              memmove(buf + at, buf + at + 1, len - at - 1);
              len--;
          }
        }
        break;
      }
    }
    /* Parse from an exact-size heap copy so ASan catches any read past the end. */
    char* exact = malloc(len ? len : 1);
    if (!exact) break;
    memcpy(exact, buf, len);
    check_parse_outcome(exact, len, seed, "fuzz");
    free(exact);
  }

  /* Many long rules of one group: the contradiction check must stay fast (n log n). */
  size_t n = 50000, used = 0;
  char* big = malloc(n * 48);
  if (big) {
    for (size_t k = 0; k < n; k++)
      used += (size_t)sprintf(big + used, "allreduce,%zu,%zu,ring,ll,-1,-1,-1\n", k, 2 * n - k);
    cp_rule_set set;
    CHECK_INT_EQ(cp_tablefile_parse_buffer("nested.conf", big, used, BIG_MAX, &set, g_err,
                                           sizeof g_err),
                 CP_OK);
    CHECK_INT_EQ(set.n_rules, n);
    cp_rule_set_free(&set);
    /* Flip the decision of the last (innermost) rule: it is shadowed by line 1. */
    char* last = big + used - 1;
    while (last > big && last[-1] != '\n') last--;
    sprintf(last, "allreduce,%zu,%zu,tree,ll,-1,-1,-1\n", n - 1, n + 1);
    used = (size_t)(last - big) + strlen(last);
    CHECK_INT_EQ(cp_tablefile_parse_buffer("nested.conf", big, used, BIG_MAX, &set, g_err,
                                           sizeof g_err),
                 CP_ERR_PARSE);
    char want[64];
    snprintf(want, sizeof want, "nested.conf:%zu: this rule can never apply", n);
    CHECK_STR_CONTAINS(g_err, want);
    free(big);
  }
  free(buf);
}

/* The content hash logged with a table: equal for equal bytes, different when one byte
 * differs (a node with a stale copy shows up in the logs). */
static void test_content_hash(void) {
  const char* a = "allreduce,0,-1,ring,simple,-1,-1,-1\n";
  char err[256];
  cp_rule_set x, y, z;
  CHECK_INT_EQ(cp_tablefile_parse_buffer("a", a, strlen(a), 10, &x, err, sizeof err), CP_OK);
  CHECK_INT_EQ(cp_tablefile_parse_buffer("a2", a, strlen(a), 10, &y, err, sizeof err), CP_OK);
  CHECK(x.content_hash == y.content_hash, "same bytes, same hash");
  CHECK(x.content_hash != 0xcbf29ce484222325ull, "hash covers the content");
  const char* c = "allreduce,0,-1,ring,simple,-1,-1,-1 \n";
  CHECK_INT_EQ(cp_tablefile_parse_buffer("c", c, strlen(c), 10, &z, err, sizeof err), CP_OK);
  CHECK(x.content_hash != z.content_hash, "one byte more, another hash");
  cp_rule_set_free(&x);
  cp_rule_set_free(&y);
  cp_rule_set_free(&z);
}

int main(void) {
  test_content_hash();
  test_nccl_example();
  test_accepted_forms();
  test_rejections();
  test_limits();
  test_files();
  test_contradictions_random();
  test_hostile_input();
  TEST_RETURN();
}
