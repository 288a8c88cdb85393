/*
 * The process object and settings. See cp_process.h for why there is exactly one of these.
 */
#define _GNU_SOURCE
#include "cp_process.h"
#include "cp_io.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct cp_process {
  int refs; /* guarded by cp_process_lock */
  cp_settings settings;
  _Atomic(cp_log_fn) log;
  pthread_mutex_t io_lock;   /* serialises starting the I/O thread */
  _Atomic(struct cp_io*) io; /* set once, cleared only by the last release */
  int io_failed;             /* guarded by io_lock: do not retry (and re-log) a failed start */
  _Atomic uint64_t connect_budget_ns;
};

/* The only mutable statics in the plugin: the handle to the process object and its lock.
 * NCCL gives init no process-level argument, so contexts must find the shared object here. */
static pthread_mutex_t cp_process_lock = PTHREAD_MUTEX_INITIALIZER;
static cp_process* cp_process_instance = NULL;

uint64_t cp_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void cp_vlog(cp_process* proc, int level, unsigned long subsys, const char* fmt,
                    va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  cp_log_fn log = proc ? atomic_load_explicit(&proc->log, memory_order_acquire) : NULL;
  if (log) {
    log(level, subsys, "cclpilot", 0, "cclpilot: %s", msg);
  } else if (level <= CP_LOG_WARN) {
    /* Without NCCL's logger (profiler v1-v3, unit tests) warnings still have to reach a human. */
    fprintf(stderr, "cclpilot: WARN %s\n", msg);
  }
}

void cp_log(cp_process* proc, int level, unsigned long subsys, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cp_vlog(proc, level, subsys, fmt, ap);
  va_end(ap);
}

void cp_log_ratelimited(cp_process* proc, cp_ratelimit* rl, uint64_t interval_ns,
                        const char* fmt, ...) {
  uint64_t now = cp_now_ns();
  uint64_t next = atomic_load_explicit(&rl->next_ns, memory_order_relaxed);
  if (now < next || !atomic_compare_exchange_strong(&rl->next_ns, &next, now + interval_ns)) {
    atomic_fetch_add_explicit(&rl->suppressed, 1, memory_order_relaxed);
    return;
  }
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  uint64_t suppressed = atomic_exchange_explicit(&rl->suppressed, 0, memory_order_relaxed);
  if (suppressed)
    cp_log(proc, CP_LOG_WARN, CP_LOG_SUBSYS_TUNING, "%s (%llu similar messages suppressed)", msg,
           (unsigned long long)suppressed);
  else
    cp_log(proc, CP_LOG_WARN, CP_LOG_SUBSYS_TUNING, "%s", msg);
}

/* ---- settings ------------------------------------------------------------------------------ */

static void cp_append_error(char* errors, size_t len, const char* fmt, ...) {
  if (!errors || len == 0) return;
  size_t used = strnlen(errors, len);
  if (used + 1 >= len) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errors + used, len - used, fmt, ap);
  va_end(ap);
  used = strnlen(errors, len);
  if (used + 1 < len) {
    errors[used] = '\n';
    errors[used + 1] = '\0';
  }
}

/* Parses "lo..hi" bounds of a uint setting from the registry. */
static void cp_uint_bounds(const char* allowed, unsigned long long* lo, unsigned long long* hi) {
  *lo = strtoull(allowed, NULL, 10);
  const char* dots = strstr(allowed, "..");
  *hi = dots ? strtoull(dots + 2, NULL, 10) : ~0ull;
}

static int cp_parse_uint_setting(const char* name, const char* value, const char* def,
                                 const char* allowed, unsigned* out, char* errors,
                                 size_t errors_len) {
  unsigned long long lo, hi;
  cp_uint_bounds(allowed, &lo, &hi);
  *out = (unsigned)strtoull(def, NULL, 10);
  if (!value || !*value) return 0;
  char* end = NULL;
  errno = 0;
  unsigned long long v = strtoull(value, &end, 10);
  if (errno || end == value || *end != '\0' || value[0] == '-' || v < lo || v > hi) {
    cp_append_error(errors, errors_len,
                    "%s='%s' is not a whole number in %s; using the default %s. Set it to a "
                    "value in that range or unset it.",
                    name, value, allowed, def);
    return -1;
  }
  *out = (unsigned)v;
  return 0;
}

static void cp_copy_path(char* dst, const char* value, const char* name, char* errors,
                         size_t errors_len) {
  dst[0] = '\0';
  if (!value || !*value) return;
  if (strlen(value) >= CP_PATH_MAX) {
    cp_append_error(errors, errors_len, "%s is longer than %d bytes; ignoring it. Use a shorter path.",
                    name, CP_PATH_MAX - 1);
    return;
  }
  strcpy(dst, value);
}

static int cp_is_z85(const char* s) {
  static const char alphabet[] =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  if (strlen(s) != 40) return 0;
  for (const char* p = s; *p; p++)
    if (!strchr(alphabet, *p)) return 0;
  return 1;
}

/* Endpoint, job id, CURVE key. A refused endpoint is cleared so that live mode falls back to
 * observe with the specific reason already logged. */
static void cp_read_daemon_settings(cp_settings* out, char* errors, size_t errors_len) {
  const char* ep = getenv("CCLPILOT_DAEMON");
  if (ep && *ep) {
    if (strlen(ep) >= sizeof out->daemon) {
      cp_append_error(errors, errors_len,
                      "CCLPILOT_DAEMON is longer than %zu bytes; ignoring it. Use a shorter "
                      "endpoint path.", sizeof out->daemon - 1);
      out->daemon_refused = 1;
    } else if (strncmp(ep, "ipc://", 6) != 0 && strncmp(ep, "tcp://", 6) != 0 &&
               strncmp(ep, "inproc://", 9) != 0) {
      cp_append_error(errors, errors_len,
                      "CCLPILOT_DAEMON='%s' is not an ipc://PATH or tcp://HOST:PORT endpoint; "
                      "ignoring it. Use the endpoint `cclpilot daemon` printed.", ep);
      out->daemon_refused = 1;
    } else {
      strcpy(out->daemon, ep);
    }
  }

  const char* key = getenv("CCLPILOT_DAEMON_PUBLIC_KEY");
  if (key && *key) {
    if (cp_is_z85(key)) {
      strcpy(out->daemon_public_key, key);
    } else {
      cp_append_error(errors, errors_len,
                      "CCLPILOT_DAEMON_PUBLIC_KEY is not a 40-character Z85 CURVE key; ignoring "
                      "it. Copy the daemon's public key exactly as `cclpilot daemon` printed it.");
    }
  }

  const char* insecure = getenv("CCLPILOT_DAEMON_INSECURE");
  if (insecure && *insecure) {
    if (strcmp(insecure, "1") == 0)
      out->daemon_insecure = 1;
    else if (strcmp(insecure, "0") != 0)
      cp_append_error(errors, errors_len,
                      "CCLPILOT_DAEMON_INSECURE='%s' is not 0 or 1; using 0 (plain TCP refused).",
                      insecure);
  }

  if (strncmp(out->daemon, "tcp://", 6) == 0 && out->daemon_public_key[0] == '\0') {
    if (out->daemon_insecure) {
      cp_append_error(errors, errors_len,
                      "CCLPILOT_DAEMON=%s without CURVE: CCLPILOT_DAEMON_INSECURE=1 allows plain "
                      "TCP, so anyone on the network can read and forge plans.", out->daemon);
    } else {
      cp_append_error(errors, errors_len,
                      "CCLPILOT_DAEMON=%s is plain TCP, which is refused: set "
                      "CCLPILOT_DAEMON_PUBLIC_KEY to the daemon's CURVE key (or, on a trusted "
                      "network only, CCLPILOT_DAEMON_INSECURE=1).", out->daemon);
      out->daemon[0] = '\0';
      out->daemon_refused = 1;
    }
  }

  const char* job = getenv("CCLPILOT_JOB_ID");
  const char* from = "CCLPILOT_JOB_ID";
  if (!job || !*job) {
    from = "SLURM_JOB_ID";
    job = getenv("SLURM_JOB_ID");
  }
  if (!job || !*job) {
    from = "TORCHELASTIC_RUN_ID";
    job = getenv("TORCHELASTIC_RUN_ID");
  }
  if (!job || !*job) job = "default";
  if (strlen(job) >= sizeof out->job_id) {
    cp_append_error(errors, errors_len,
                    "%s is longer than %zu bytes; using its first %zu bytes as the job id.", from,
                    sizeof out->job_id - 1, sizeof out->job_id - 1);
    /* Cut on a UTF-8 boundary so the HELLO stays valid. */
    size_t n = sizeof out->job_id - 1;
    while (n > 0 && ((unsigned char)job[n] & 0xC0) == 0x80) n--;
    memcpy(out->job_id, job, n);
    out->job_id[n] = '\0';
  } else {
    strcpy(out->job_id, job);
  }
}

void cp_settings_from_env(cp_settings* out, char* errors, size_t errors_len) {
  memset(out, 0, sizeof *out);
  if (errors && errors_len) errors[0] = '\0';

  const char* mode_value = getenv("CCLPILOT_MODE");
  static const char* const mode_names[] = {"off", "observe", "static", "live"};
  out->mode_requested = CP_MODE_OBSERVE;
  if (mode_value && *mode_value) {
    int found = -1;
    for (int i = 0; i < 4; i++)
      if (strcasecmp(mode_value, mode_names[i]) == 0) found = i;
    if (found < 0)
      cp_append_error(errors, errors_len,
                      "CCLPILOT_MODE='%s' is not one of off|observe|static|live; running in "
                      "observe mode (measure only). Fix the value to choose a mode.",
                      mode_value);
    else
      out->mode_requested = found;
  }
  out->mode = out->mode_requested;

  cp_copy_path(out->table_path, getenv("CCLPILOT_TABLE"), "CCLPILOT_TABLE", errors, errors_len);
  cp_copy_path(out->stats_path, getenv("CCLPILOT_STATS_FILE"), "CCLPILOT_STATS_FILE", errors,
               errors_len);
#define CP_SETTING(id, env, kind, def, allowed, doc)                                        \
  if (strcmp(#id, "TABLE_MAX_ENTRIES") == 0)                                                \
    cp_parse_uint_setting(env, getenv(env), def, allowed, &out->table_max_entries, errors,  \
                          errors_len);                                                      \
  if (strcmp(#id, "COMMIT_WAIT_MS") == 0)                                                   \
    cp_parse_uint_setting(env, getenv(env), def, allowed, &out->commit_wait_ms, errors,     \
                          errors_len);                                                      \
  if (strcmp(#id, "CONNECT_WAIT_MS") == 0)                                                  \
    cp_parse_uint_setting(env, getenv(env), def, allowed, &out->connect_wait_ms, errors,    \
                          errors_len);
#include "cclpilot/settings.def"
#undef CP_SETTING

  cp_read_daemon_settings(out, errors, errors_len);
  if (out->mode == CP_MODE_LIVE && out->daemon[0] == '\0') {
    if (!out->daemon_refused)
      cp_append_error(errors, errors_len,
                      "CCLPILOT_MODE=live needs CCLPILOT_DAEMON=<endpoint> (ipc://PATH or "
                      "tcp://HOST:PORT, as printed by `cclpilot daemon`); none is usable, so "
                      "every decision is left to NCCL (observe mode).");
    out->mode = CP_MODE_OBSERVE;
  }
  if (out->mode == CP_MODE_STATIC && out->table_path[0] == '\0') {
    cp_append_error(errors, errors_len,
                    "CCLPILOT_MODE=static needs CCLPILOT_TABLE=<file>; none is set, so every "
                    "decision is left to NCCL (observe mode).");
    out->mode = CP_MODE_OBSERVE;
  }
  const char* algo = getenv("NCCL_ALGO");
  const char* proto = getenv("NCCL_PROTO");
  out->nccl_algo_forced = algo && *algo;
  out->nccl_proto_forced = proto && *proto;
}

/* ---- lifetime ------------------------------------------------------------------------------ */

cp_process* cp_process_acquire(cp_log_fn log) {
  char errors[2048] = "";
  pthread_mutex_lock(&cp_process_lock);
  cp_process* proc = cp_process_instance;
  int created = 0;
  if (!proc) {
    proc = calloc(1, sizeof *proc);
    if (!proc) {
      pthread_mutex_unlock(&cp_process_lock);
      return NULL;
    }
    atomic_init(&proc->log, log);
    /* Settings are read before the object is published, so no context ever sees them half-made. */
    cp_settings_from_env(&proc->settings, errors, sizeof errors);
    pthread_mutex_init(&proc->io_lock, NULL);
    atomic_init(&proc->io, NULL);
    atomic_init(&proc->connect_budget_ns, (uint64_t)proc->settings.connect_wait_ms * 1000000ull);
    cp_process_instance = proc;
    created = 1;
  }
  if (log && !atomic_load(&proc->log)) atomic_store(&proc->log, log);
  proc->refs++;
  pthread_mutex_unlock(&cp_process_lock);

  if (created) {
    /* Each problem is its own log line so that none hides behind another. */
    char* save = NULL;
    for (char* line = strtok_r(errors, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
      cp_log(proc, CP_LOG_WARN, CP_LOG_SUBSYS_INIT, "%s", line);
    static const char* const names[] = {"off", "observe", "static", "live"};
    cp_log(proc, CP_LOG_INFO, CP_LOG_SUBSYS_INIT, "mode %s%s%s%s%s", names[proc->settings.mode],
           proc->settings.stats_path[0] ? ", statistics to " : "", proc->settings.stats_path,
           proc->settings.mode == CP_MODE_LIVE ? ", daemon " : "",
           proc->settings.mode == CP_MODE_LIVE ? proc->settings.daemon : "");
  }
  return proc;
}

void cp_process_release(cp_process* proc) {
  if (!proc) return;
  pthread_mutex_lock(&cp_process_lock);
  int last = --proc->refs == 0;
  if (last) cp_process_instance = NULL;
  pthread_mutex_unlock(&cp_process_lock);
  if (last) {
    /* Contexts are all gone, so nothing can post to the I/O thread any more; join it before
     * NCCL may unload the library. */
    cp_io_stop(atomic_load(&proc->io));
    pthread_mutex_destroy(&proc->io_lock);
    free(proc);
  }
}

const cp_settings* cp_process_settings(const cp_process* proc) { return &proc->settings; }

struct cp_io* cp_process_io(cp_process* proc) {
  return proc ? atomic_load_explicit(&proc->io, memory_order_acquire) : NULL;
}

struct cp_io* cp_process_io_start(cp_process* proc) {
  if (!proc || proc->settings.mode != CP_MODE_LIVE) return NULL;
  struct cp_io* io = cp_process_io(proc);
  if (io) return io;
  pthread_mutex_lock(&proc->io_lock);
  io = atomic_load(&proc->io);
  if (!io && !proc->io_failed) {
    cp_result r = cp_io_start(proc, &io);
    if (r != CP_OK) {
      proc->io_failed = 1;
      io = NULL;
      cp_log(proc, CP_LOG_WARN, CP_LOG_SUBSYS_INIT,
             "cannot start the daemon I/O thread (%s); live mode runs without the daemon: "
             "every decision is left to NCCL.", cp_result_str(r));
    } else {
      atomic_store_explicit(&proc->io, io, memory_order_release);
    }
  }
  pthread_mutex_unlock(&proc->io_lock);
  return io;
}

uint64_t cp_process_connect_budget_take(cp_process* proc, uint64_t want_ns) {
  uint64_t have = atomic_load(&proc->connect_budget_ns);
  for (;;) {
    uint64_t take = have < want_ns ? have : want_ns;
    if (take == 0) return 0;
    if (atomic_compare_exchange_weak(&proc->connect_budget_ns, &have, have - take)) return take;
  }
}

void cp_process_connect_budget_return(cp_process* proc, uint64_t unused_ns) {
  if (unused_ns) atomic_fetch_add(&proc->connect_budget_ns, unused_ns);
}
