/* Settings parsing: every accepted value and every rejection, with the message it produces. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "cp_process.h"
#include "testutil.h"

static void clear_env(void) {
  unsetenv("CCLPILOT_MODE");
  unsetenv("CCLPILOT_TABLE");
  unsetenv("CCLPILOT_STATS_FILE");
  unsetenv("CCLPILOT_TABLE_MAX_ENTRIES");
  unsetenv("NCCL_ALGO");
  unsetenv("NCCL_PROTO");
}

int main(void) {
  cp_settings s;
  char errors[2048];

  clear_env();
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_OBSERVE);
  CHECK_INT_EQ(s.table_max_entries, 65536);
  CHECK(errors[0] == '\0', "defaults produce no error, got: %s", errors);
  CHECK(!s.nccl_algo_forced && !s.nccl_proto_forced, "NCCL_ALGO/PROTO not seen as set");

  setenv("CCLPILOT_MODE", "OFF", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_OFF);

  setenv("CCLPILOT_MODE", "turbo", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_OBSERVE);
  CHECK_STR_CONTAINS(errors, "CCLPILOT_MODE='turbo'");
  CHECK_STR_CONTAINS(errors, "off|observe|static|live");

  setenv("CCLPILOT_MODE", "live", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_OBSERVE);
  CHECK_INT_EQ(s.mode_requested, CP_MODE_LIVE);
  CHECK_STR_CONTAINS(errors, "live tuning is not available");

  setenv("CCLPILOT_MODE", "static", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_OBSERVE);
  CHECK_STR_CONTAINS(errors, "needs CCLPILOT_TABLE");

  setenv("CCLPILOT_TABLE", "/tmp/some.conf", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_STATIC);
  CHECK(strcmp(s.table_path, "/tmp/some.conf") == 0, "table path kept: %s", s.table_path);

  setenv("CCLPILOT_TABLE_MAX_ENTRIES", "12x", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.table_max_entries, 65536);
  CHECK_STR_CONTAINS(errors, "CCLPILOT_TABLE_MAX_ENTRIES='12x'");
  setenv("CCLPILOT_TABLE_MAX_ENTRIES", "0", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_STR_CONTAINS(errors, "1..1048576");
  setenv("CCLPILOT_TABLE_MAX_ENTRIES", "-5", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.table_max_entries, 65536);
  setenv("CCLPILOT_TABLE_MAX_ENTRIES", "100", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.table_max_entries, 100);

  static char long_path[CP_PATH_MAX + 10];
  memset(long_path, 'a', sizeof long_path - 1);
  long_path[sizeof long_path - 1] = '\0';
  setenv("CCLPILOT_STATS_FILE", long_path, 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK(s.stats_path[0] == '\0', "over-long path ignored");
  CHECK_STR_CONTAINS(errors, "CCLPILOT_STATS_FILE is longer");

  setenv("NCCL_ALGO", "Ring", 1);
  setenv("NCCL_PROTO", "^LL", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK(s.nccl_algo_forced && s.nccl_proto_forced, "NCCL_ALGO/PROTO seen");

  /* A tiny error buffer truncates but never overflows. */
  char tiny[8];
  setenv("CCLPILOT_MODE", "bogus", 1);
  cp_settings_from_env(&s, tiny, sizeof tiny);
  CHECK(strlen(tiny) < sizeof tiny, "truncated safely");
  clear_env();
  TEST_RETURN();
}
