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
  unsetenv("CCLPILOT_DAEMON");
  unsetenv("CCLPILOT_JOB_ID");
  unsetenv("CCLPILOT_COMMIT_WAIT_MS");
  unsetenv("CCLPILOT_CONNECT_WAIT_MS");
  unsetenv("CCLPILOT_DAEMON_PUBLIC_KEY");
  unsetenv("CCLPILOT_DAEMON_INSECURE");
  unsetenv("SLURM_JOB_ID");
  unsetenv("TORCHELASTIC_RUN_ID");
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

  /* Live mode needs a daemon endpoint; without a usable one it observes, saying why. */
  setenv("CCLPILOT_MODE", "live", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_OBSERVE);
  CHECK_INT_EQ(s.mode_requested, CP_MODE_LIVE);
  CHECK_STR_CONTAINS(errors, "CCLPILOT_MODE=live needs CCLPILOT_DAEMON");
  CHECK_INT_EQ(s.commit_wait_ms, 2000);
  CHECK_INT_EQ(s.connect_wait_ms, 200);
  CHECK(strcmp(s.job_id, "default") == 0, "job id default: %s", s.job_id);

  setenv("CCLPILOT_DAEMON", "ipc:///tmp/cclpilot-test.sock", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_LIVE);
  CHECK(errors[0] == '\0', "ipc endpoint accepted silently, got: %s", errors);
  CHECK(strcmp(s.daemon, "ipc:///tmp/cclpilot-test.sock") == 0, "endpoint kept: %s", s.daemon);

  setenv("CCLPILOT_DAEMON", "localhost:5555", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_OBSERVE);
  CHECK_STR_CONTAINS(errors, "CCLPILOT_DAEMON='localhost:5555' is not an ipc://PATH");
  CHECK(strstr(errors, "needs CCLPILOT_DAEMON") == NULL, "one reason only: %s", errors);

  /* Plain TCP is refused unless declared insecure; CURVE makes it acceptable. */
  setenv("CCLPILOT_DAEMON", "tcp://10.0.0.1:5555", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_OBSERVE);
  CHECK_STR_CONTAINS(errors, "plain TCP, which is refused");
  CHECK_STR_CONTAINS(errors, "CCLPILOT_DAEMON_PUBLIC_KEY");
  setenv("CCLPILOT_DAEMON_INSECURE", "1", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_LIVE);
  CHECK_INT_EQ(s.daemon_insecure, 1);
  CHECK_STR_CONTAINS(errors, "CCLPILOT_DAEMON_INSECURE=1 allows plain TCP");
  setenv("CCLPILOT_DAEMON_INSECURE", "yes", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_OBSERVE);
  CHECK_STR_CONTAINS(errors, "CCLPILOT_DAEMON_INSECURE='yes' is not 0 or 1");
  unsetenv("CCLPILOT_DAEMON_INSECURE");
  setenv("CCLPILOT_DAEMON_PUBLIC_KEY", "short", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_OBSERVE);
  CHECK_STR_CONTAINS(errors, "not a 40-character Z85 CURVE key");
  setenv("CCLPILOT_DAEMON_PUBLIC_KEY", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.mode, CP_MODE_LIVE);
  CHECK(errors[0] == '\0', "tcp with a CURVE key accepted, got: %s", errors);
  unsetenv("CCLPILOT_DAEMON_PUBLIC_KEY");
  unsetenv("CCLPILOT_DAEMON");

  setenv("CCLPILOT_COMMIT_WAIT_MS", "700000", 1);
  setenv("CCLPILOT_CONNECT_WAIT_MS", "0", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(s.commit_wait_ms, 2000);
  CHECK_STR_CONTAINS(errors, "CCLPILOT_COMMIT_WAIT_MS='700000'");
  CHECK_INT_EQ(s.connect_wait_ms, 0);
  unsetenv("CCLPILOT_COMMIT_WAIT_MS");
  unsetenv("CCLPILOT_CONNECT_WAIT_MS");

  /* Job id: explicit, else the launcher's. */
  setenv("TORCHELASTIC_RUN_ID", "elastic-7", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK(strcmp(s.job_id, "elastic-7") == 0, "job id from torchelastic: %s", s.job_id);
  setenv("SLURM_JOB_ID", "4242", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK(strcmp(s.job_id, "4242") == 0, "slurm before torchelastic: %s", s.job_id);
  setenv("CCLPILOT_JOB_ID", "my-job", 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK(strcmp(s.job_id, "my-job") == 0, "explicit job id wins: %s", s.job_id);
  static char long_job[400];
  memset(long_job, 'j', sizeof long_job - 1);
  setenv("CCLPILOT_JOB_ID", long_job, 1);
  cp_settings_from_env(&s, errors, sizeof errors);
  CHECK_INT_EQ(strlen(s.job_id), 256);
  CHECK_STR_CONTAINS(errors, "CCLPILOT_JOB_ID is longer than 256 bytes");
  unsetenv("CCLPILOT_JOB_ID");
  unsetenv("SLURM_JOB_ID");
  unsetenv("TORCHELASTIC_RUN_ID");

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
