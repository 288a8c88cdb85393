/*
 * The daemon I/O thread: one per process, owned by the process object (cp_process.h). It owns the
 * ZeroMQ context and one DEALER connection per communicator context; nothing else in the plugin
 * touches ZeroMQ.
 *
 * Hot paths reach it only through cp_io_post_* (a lock-free bounded queue: never blocks, never
 * allocates; a full queue drops and counts). Context creation and destruction (not hot paths)
 * register and unregister contexts under the registry lock, which the I/O thread also holds while
 * it touches a context, so a context is never used after its destroy returned.
 */
#ifndef CCLPILOT_CP_IO_H
#define CCLPILOT_CP_IO_H

#include <stdint.h>

#include "cp_core.h"
#include "cp_process.h"
#include "cp_stats.h"

typedef struct cp_io cp_io;

/* Starts the thread and connects to settings->daemon. Called by cp_process_io_start only. */
cp_result cp_io_start(cp_process* proc, cp_io** out);
/* Stops and joins the thread and frees everything; NULL-safe. Called by the last release. */
void cp_io_stop(cp_io* io);

/* Registration (not hot paths). A tuner context takes part in the live loop once registered: the
 * I/O thread sends its HELLO and applies plans to it through cp_tuner.h's plan functions. */
void cp_io_register_tuner(cp_io* io, cp_tuner_comm* ctx);
void cp_io_unregister_tuner(cp_io* io, cp_tuner_comm* ctx);
/* A profiler context's statistics and rank (-1 if unknown), joined with the tuner context of the
 * same rank (the first unclaimed one of the same comm id) for HELLO's rank and MEASUREMENTS. */
void cp_io_register_stats(cp_io* io, uint64_t comm_id, int profiler_abi, int rank,
                          cp_stats* stats);
void cp_io_unregister_stats(cp_io* io, cp_stats* stats);

/* Hot path: a key (coll, n_bytes, num_pipe_ops) seen for the first time at call index `call`,
 * with NCCL's cost table for it (copied into the queue entry; NULL = none). Returns 0 when the
 * queue was full (dropped and counted). */
int cp_io_post_key(cp_io* io, cp_tuner_comm* ctx, uint64_t comm_id, int coll, uint64_t n_bytes,
                   int num_pipe_ops, uint64_t call, const float* cost, int num_algo,
                   int num_proto);
/* Hot path (only while waiting at a plan boundary): asks the I/O thread to re-send this
 * context's ACK for `plan` as the question "what did you decide?". */
int cp_io_post_ask(cp_io* io, cp_tuner_comm* ctx, uint64_t plan);

/* Introspection for tests and logs. */
typedef struct {
  uint64_t queue_dropped;   /* hot-path entries dropped: queue full */
  uint64_t decode_errors;   /* frames from the daemon rejected by the decoder */
  uint64_t hellos_sent;
  uint64_t welcomes;
  uint64_t reconnects;      /* sockets closed and recreated after silence */
  uint64_t key_reports_sent;
  uint64_t measurements_sent;
  uint64_t acks_sent;
  uint64_t errors_sent;
  uint64_t messages_received;
} cp_io_counters;
void cp_io_get_counters(cp_io* io, cp_io_counters* out);

#endif
