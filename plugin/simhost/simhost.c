/*
 * Host-side helper for cclpilot's simulator.
 *
 * NCCL hands plugins a variadic logger (ncclDebugLogger_t). The simulator drives the plugin from
 * Python through cffi, and cffi cannot build a variadic callback. This library provides a real
 * variadic function with the logger's signature: it formats the message itself and forwards the
 * finished line to one plain callback that Python registers.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define SIMHOST_EXPORT __attribute__((visibility("default")))

typedef void (*simhost_sink_fn)(int level, unsigned long flags, const char* msg);

/* The sink is read by every logging thread and replaced rarely, so an atomic pointer suffices:
 * a message either goes to the old or to the new sink, never to a torn pointer. */
static _Atomic(simhost_sink_fn) g_sink = NULL;

/* NCCL's own log lines are bounded at 1 KiB; longer messages are cut, with a visible marker, so
 * that a plugin formatting something huge can never overrun a stack buffer here. */
enum { SIMHOST_MSG_MAX = 1024 };
enum { SIMHOST_LOG_TRACE = 5 }; /* NCCL_LOG_TRACE */

SIMHOST_EXPORT void cclpilot_simhost_set_sink(simhost_sink_fn sink) {
  atomic_store_explicit(&g_sink, sink, memory_order_release);
}

SIMHOST_EXPORT void cclpilot_simhost_log(int level, unsigned long flags, const char* file, int line,
                                         const char* fmt, ...) {
  simhost_sink_fn sink = atomic_load_explicit(&g_sink, memory_order_acquire);
  if (sink == NULL) return;
  char msg[SIMHOST_MSG_MAX];
  int prefix = 0;
  /* Like NCCL, only TRACE lines name their source location; other levels carry the text only. */
  if (level == SIMHOST_LOG_TRACE && file != NULL) {
    prefix = snprintf(msg, sizeof msg, "%s:%d ", file, line);
    if (prefix < 0) prefix = 0;
    if ((size_t)prefix >= sizeof msg) prefix = (int)sizeof msg - 1;
  }
  if (fmt == NULL) {
    snprintf(msg + prefix, sizeof msg - (size_t)prefix, "(null format)");
  } else {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg + prefix, sizeof msg - (size_t)prefix, fmt, ap);
    va_end(ap);
    if (n < 0) {
      snprintf(msg + prefix, sizeof msg - (size_t)prefix, "(unformattable message: %s)", fmt);
    } else if ((size_t)n >= sizeof msg - (size_t)prefix) {
      /* Mark truncation so a reader never mistakes a cut line for a complete one. */
      memcpy(msg + sizeof msg - 4, "...", 4);
    }
  }
  sink(level, flags, msg);
}
