/*
 * The process object: the one piece of process-wide state (settings, logger, counters, later the
 * daemon I/O thread). Created by the first context of either side (tuner or profiler) and released
 * by the last, so nothing outlives the library's use by NCCL. Reached only through contexts and
 * these functions; there is no other global state in the plugin.
 */
#ifndef CCLPILOT_CP_PROCESS_H
#define CCLPILOT_CP_PROCESS_H

#include <stdatomic.h>
#include <stdint.h>

#include "cp_core.h"

enum { CP_MODE_OFF = 0, CP_MODE_OBSERVE = 1, CP_MODE_STATIC = 2, CP_MODE_LIVE = 3 };

/* NCCL log levels and subsystems (facts of ncclDebugLogger_t). */
enum { CP_LOG_WARN = 2, CP_LOG_INFO = 3 };
#define CP_LOG_SUBSYS_INIT 0x1ul
#define CP_LOG_SUBSYS_TUNING 0x40ul
#define CP_LOG_SUBSYS_PROFILE 0x4000ul

#define CP_PATH_MAX 4096

typedef struct {
  int mode;                       /* CP_MODE_* after validation (live without a usable daemon
                                     endpoint falls back to observe) */
  int mode_requested;             /* what CCLPILOT_MODE asked for */
  char table_path[CP_PATH_MAX];   /* CCLPILOT_TABLE, "" when unset */
  char stats_path[CP_PATH_MAX];   /* CCLPILOT_STATS_FILE, "" when unset */
  unsigned table_max_entries;     /* CCLPILOT_TABLE_MAX_ENTRIES */
  int nccl_algo_forced;           /* NCCL_ALGO set: observe only */
  int nccl_proto_forced;          /* NCCL_PROTO set: observe only */
  char daemon[CP_PATH_MAX];       /* CCLPILOT_DAEMON endpoint, "" when unset */
  char job_id[257];               /* CCLPILOT_JOB_ID or its derived default */
  unsigned commit_wait_ms;        /* CCLPILOT_COMMIT_WAIT_MS */
  unsigned connect_wait_ms;       /* CCLPILOT_CONNECT_WAIT_MS */
  char daemon_public_key[41];     /* CCLPILOT_DAEMON_PUBLIC_KEY (Z85), "" when unset */
  int daemon_insecure;            /* CCLPILOT_DAEMON_INSECURE=1 */
  int daemon_refused;             /* an endpoint was given but refused (reason already logged) */
} cp_settings;

typedef struct cp_process cp_process;

/* Takes a reference on the process object, creating it (and reading the settings, logging every
 * problem once) on first use. Returns NULL only when memory is exhausted. `log` may be NULL; the
 * first non-NULL logger seen becomes the process logger. */
cp_process* cp_process_acquire(cp_log_fn log);
/* Drops a reference; the last one tears the process object down (joining its threads). */
void cp_process_release(cp_process* proc);

const cp_settings* cp_process_settings(const cp_process* proc);

/* The daemon I/O thread of this process (cp_io.h), started by the first context created in live
 * mode and joined by the last release. NULL outside live mode or when it could not start. */
struct cp_io;
struct cp_io* cp_process_io(cp_process* proc);
/* Starts the I/O thread if live mode wants one and it is not running yet. Called by context
 * creation (not a hot path); returns the I/O object or NULL. */
struct cp_io* cp_process_io_start(cp_process* proc);

/* What remains of the process's CCLPILOT_CONNECT_WAIT_MS budget: a waiter takes up to `want_ns`
 * of it and gives back what it did not use. */
uint64_t cp_process_connect_budget_take(cp_process* proc, uint64_t want_ns);
void cp_process_connect_budget_return(cp_process* proc, uint64_t unused_ns);

/* Logging through NCCL's logger when known, else stderr with a "cclpilot:" prefix.
 * Not for hot paths: use cp_ratelimit there. */
void cp_log(cp_process* proc, int level, unsigned long subsys, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* At most one message per `interval_ns` per limiter; suppressed ones are counted and reported with
 * the next one that gets through. */
typedef struct {
  _Atomic uint64_t next_ns;
  _Atomic uint64_t suppressed;
} cp_ratelimit;
void cp_log_ratelimited(cp_process* proc, cp_ratelimit* rl, uint64_t interval_ns,
                        const char* fmt, ...) __attribute__((format(printf, 4, 5)));

uint64_t cp_now_ns(void); /* CLOCK_MONOTONIC */

/* Parses the settings from the environment (getenv). Exposed for unit tests: `errors` receives one
 * line per problem found (unknown mode, bad number), separated by '\n'. */
void cp_settings_from_env(cp_settings* out, char* errors, size_t errors_len);

#endif
