/*
 * The daemon I/O thread (see cp_io.h). One loop: poll the connections with a short timeout,
 * handle what arrived, drain the hot-path queue, then run the timers (HELLO for new
 * communicators, HEARTBEAT, MEASUREMENTS, silence detection). Every failure here is logged,
 * counted and survived: the job never depends on this thread.
 *
 * Each registered communicator context has its own DEALER connection. The daemon identifies a
 * rank by its connection, so a process hosting several ranks of one communicator (NCCL allows
 * it) must not funnel them through one socket: their ACKs, call counts and summaries would be
 * indistinguishable. All sockets are still created, used and closed by this one thread only.
 */
#define _GNU_SOURCE
#include "cp_io.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "cp_codec.h"
#include "cp_queue.h"
#include "cp_tuner.h"

#define CP_IO_QUEUE_ENTRIES 4096
#define CP_IO_POLL_MS 10
#define CP_IO_DEFAULT_HEARTBEAT_MS 1000 /* until a WELCOME says otherwise */
#define CP_IO_MAX_BACKOFF 16            /* silence limit grows up to 16 x 3 heartbeats */
#define CP_IO_MAX_KEYS 4096             /* key reports kept per communicator for re-sending */
#define CP_IO_LOG_INTERVAL_NS 10000000000ull

enum { CP_IO_KEY = 1, CP_IO_ASK = 2 };

/* One hot-path hand-off. Fixed size: the cost table is copied in, never pointed to. */
typedef struct {
  int kind;
  int coll, num_pipe_ops;
  cp_tuner_comm* ctx; /* identity only: dereferenced after checking it is still registered */
  uint64_t comm, n_bytes, call, plan;
  float cost[CP_COST_ALGOS][CP_COST_PROTOS];
} cp_io_entry;

typedef struct {
  uint64_t comm;
  int profiler_abi;
  int rank; /* -1 when the profiler ABI does not say */
  cp_stats* stats;
  const cp_tuner_comm* claimed_by; /* the tuner context of the same rank, once joined */
} cp_io_stats;

typedef struct {
  cp_tuner_comm* ctx;
  cp_tuner_identity id;
  void* sock; /* this context's connection; I/O thread only */
  int hello_sent, welcomed, measure, plans;
  int packed; /* packed_stats granted (with measure): reports go as MEASUREMENTS_PACKED */
  int report_ms, heartbeat_ms;
  uint64_t next_report_ns, next_heartbeat_ns, hb_seq, last_rx_ns;
  unsigned backoff;
  int rank, profiler_abi; /* from the joined profiler context; -1 / 0 when none */
  cp_stats* stats;        /* the joined profiler context's statistics, NULL when none */
  cp_msg_key_report* keys; /* every key reported, re-sent after each WELCOME */
  size_t n_keys, cap_keys;
} cp_io_tuner;

struct cp_io {
  cp_process* proc;
  const cp_settings* st;
  pthread_t thread;
  _Atomic int stop;
  cp_mpsc queue;

  pthread_mutex_t lock; /* registry: contexts come and go on NCCL's threads */
  cp_io_tuner* tuners;
  size_t n_tuners, cap_tuners;
  cp_io_stats* stats;
  size_t n_stats, cap_stats;

  /* Sockets of unregistered contexts, closed by the I/O thread (which alone may touch them). */
  void** closing;
  size_t n_closing, cap_closing;

  /* I/O thread only. */
  void* zctx;
  char curve_public[41], curve_secret[41];
  cp_buf out;
  char host[CP_MAX_NAME_BYTES + 1];
  cp_stat_slot* snapshot;
  zmq_pollitem_t* poll_items;
  cp_tuner_comm** poll_ctx;
  size_t cap_poll;

  _Atomic uint64_t c_decode_errors, c_hellos, c_welcomes, c_reconnects, c_keys, c_meas, c_acks,
      c_errors, c_rx;
  cp_ratelimit rl_decode, rl_send, rl_error;
};

static void bump(_Atomic uint64_t* c) { atomic_fetch_add_explicit(c, 1, memory_order_relaxed); }

/* ---- sending ---------------------------------------------------------------------------------- */

static int io_send(cp_io* io, cp_io_tuner* t, const cp_msg* msg) {
  cp_decode_error err;
  cp_result r = cp_msg_encode(msg, &io->out, &err);
  if (r != CP_OK) {
    /* Our own message breaks the protocol: a bug, never the job's problem. */
    cp_log_ratelimited(io->proc, &io->rl_send, CP_IO_LOG_INTERVAL_NS,
                       "cannot encode %s (%s: %s %s); not sent", cp_msg_type_name(msg->type),
                       cp_result_str(r), err.field, err.message);
    return -1;
  }
  if (!t->sock || zmq_send(t->sock, io->out.data, io->out.len, ZMQ_DONTWAIT) < 0) {
    cp_log_ratelimited(io->proc, &io->rl_send, CP_IO_LOG_INTERVAL_NS,
                       "cannot send %s to the daemon (%s); dropped",
                       cp_msg_type_name(msg->type), t->sock ? zmq_strerror(errno) : "no socket");
    return -1;
  }
  return 0;
}

static void io_send_error(cp_io* io, cp_io_tuner* t, cp_error_code code, const char* ref,
                          uint64_t comm, const char* text) {
  cp_msg m;
  cp_msg_init(&m, CP_MSG_ERROR);
  m.u.error.code = code;
  size_t n = strlen(text);
  if (n > CP_MAX_STR_BYTES) n = CP_MAX_STR_BYTES;
  while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80 && n < strlen(text)) n--;
  cp_str_assign(m.u.error.message.data, &m.u.error.message.len, CP_MAX_STR_BYTES, text,
                n ? n : 1);
  m.u.error.has_ref = 1;
  CP_STR_SET(m.u.error.ref, ref);
  m.u.error.has_comm = 1;
  m.u.error.comm = comm;
  if (io_send(io, t, &m) == 0) bump(&io->c_errors);
}

static void io_send_ack(cp_io* io, cp_io_tuner* t, uint64_t comm, const cp_plan_ack* ack) {
  cp_msg m;
  cp_msg_init(&m, CP_MSG_ACK);
  m.u.ack.comm = comm;
  m.u.ack.plan = ack->plan;
  m.u.ack.ok = ack->ok != 0;
  m.u.ack.calls = ack->calls;
  m.u.ack.seq_hash = ack->seq_hash;
  CP_STR_SET(m.u.ack.reason, ack->ok ? "" : (ack->reason[0] ? ack->reason : "refused"));
  if (io_send(io, t, &m) == 0) bump(&io->c_acks);
}

/* Pairs a tuner context with the profiler context of the same rank: NCCL creates the profiler
 * context of a communicator just before its tuner context, so the first unclaimed profiler
 * registration of the same comm id is this rank's. The profiler knows the rank; the tuner does
 * not. Called with the registry lock held. */
static void io_join_stats(cp_io* io, cp_io_tuner* t) {
  if (t->stats) return;
  for (size_t i = 0; i < io->n_stats; i++) {
    cp_io_stats* s = &io->stats[i];
    if (s->comm != t->id.comm_id || s->claimed_by) continue;
    s->claimed_by = t->ctx;
    t->stats = s->stats;
    t->rank = s->rank;
    t->profiler_abi = s->profiler_abi;
    return;
  }
}

static void io_send_hello(cp_io* io, cp_io_tuner* t) {
  cp_msg m;
  cp_msg_init(&m, CP_MSG_HELLO);
  cp_msg_hello* h = &m.u.hello;
  /* packed_stats (1.1) is only offered: a 1.0 daemon grants what it knows and leaves it out, and
   * then reports stay in the map form. */
  h->n_features = 3;
  CP_STR_SET(h->features[0], "measure");
  CP_STR_SET(h->features[1], "plans");
  CP_STR_SET(h->features[2], "packed_stats");
  CP_STR_SET(h->job, io->st->job_id);
  h->comm = t->id.comm_id;
  h->n_ranks = t->id.n_ranks >= 1 ? t->id.n_ranks : 1;
  h->n_nodes = t->id.n_nodes >= 1 ? t->id.n_nodes : 1;
  if (h->n_nodes > h->n_ranks) h->n_nodes = h->n_ranks;
  /* The tuner ABI does not pass the rank; the joined profiler context does (v4+). */
  h->has_rank = t->rank >= 0 && t->rank < h->n_ranks;
  h->rank = h->has_rank ? t->rank : 0;
  CP_STR_SET(h->host, io->host);
  h->pid = (uint32_t)getpid();
  h->nccl_version = 0; /* no tuner ABI passes NCCL's version */
  h->has_tuner_abi = t->id.abi_version >= 1 && t->id.abi_version <= 255;
  h->tuner_abi = (uint8_t)t->id.abi_version;
  int pabi = t->profiler_abi;
  h->has_profiler_abi = pabi >= 1 && pabi <= 255;
  h->profiler_abi = (uint8_t)pabi;
  if (io_send(io, t, &m) == 0) bump(&io->c_hellos);
  t->hello_sent = 1;
}

static void io_send_key(cp_io* io, cp_io_tuner* t, const cp_msg_key_report* k) {
  cp_msg m;
  cp_msg_init(&m, CP_MSG_KEY_REPORT);
  m.u.key_report = *k;
  if (io_send(io, t, &m) == 0) bump(&io->c_keys);
}

static void io_send_measurements(cp_io* io, cp_io_tuner* t) {
  /* The joined profiler context of this rank: summaries are cumulative per connection. */
  if (!t->stats) return;
  size_t n = cp_stats_snapshot(t->stats, io->snapshot, CP_MAX_STATS);
  uint64_t calls, hash;
  cp_tuner_seq_state(t->ctx, &calls, &hash);
  cp_msg m;
  /* One form per connection, fixed by its WELCOME (PROTOCOL.md: never mixed for a communicator).
   * Both carry the same snapshot; the packed one is about a third of the bytes. */
  cp_msg_init(&m, t->packed ? CP_MSG_MEASUREMENTS_PACKED : CP_MSG_MEASUREMENTS);
  m.u.measurements.comm = t->id.comm_id;
  m.u.measurements.calls = calls;
  m.u.measurements.dropped = cp_stats_dropped(t->stats);
  m.u.measurements.n_stats = (uint32_t)n;
  m.u.measurements.stats = io->snapshot; /* borrowed: never cp_msg_free'd */
  if (io_send(io, t, &m) == 0) bump(&io->c_meas);
}

/* ---- socket lifetime -------------------------------------------------------------------------- */

static void io_close_socket(cp_io_tuner* t) {
  if (t->sock) zmq_close(t->sock);
  t->sock = NULL;
}

static int io_open_socket(cp_io* io, cp_io_tuner* t) {
  t->sock = zmq_socket(io->zctx, ZMQ_DEALER);
  if (!t->sock) return -1;
  /* libzmq doubles its reconnect interval while the daemon is away. A restarted daemon must be
   * found while ranks still wait on an undecided plan (CCLPILOT_COMMIT_WAIT_MS, 2 s by default),
   * so the interval stops at half a second: a failed connect attempt twice a second costs
   * nothing, and a 5 s cap made recovery from a daemon restart a matter of luck. */
  int zero = 0, ivl = 100, ivl_max = 500;
  int64_t max_msg = 4 * (int64_t)CP_MAX_MESSAGE_BYTES; /* bounds memory a bad peer can make us use */
  zmq_setsockopt(t->sock, ZMQ_LINGER, &zero, sizeof zero);
  zmq_setsockopt(t->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
  zmq_setsockopt(t->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
  zmq_setsockopt(t->sock, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg);
  if (io->st->daemon_public_key[0]) {
    if (zmq_setsockopt(t->sock, ZMQ_CURVE_SERVERKEY, io->st->daemon_public_key, 40) != 0 ||
        zmq_setsockopt(t->sock, ZMQ_CURVE_PUBLICKEY, io->curve_public, 40) != 0 ||
        zmq_setsockopt(t->sock, ZMQ_CURVE_SECRETKEY, io->curve_secret, 40) != 0) {
      cp_log(io->proc, CP_LOG_WARN, CP_LOG_SUBSYS_INIT,
             "cannot enable CURVE encryption (%s): this libzmq lacks CURVE support; not "
             "connecting to the daemon", zmq_strerror(errno));
      io_close_socket(t);
      return -1;
    }
  }
  if (zmq_connect(t->sock, io->st->daemon) != 0) {
    cp_log(io->proc, CP_LOG_WARN, CP_LOG_SUBSYS_INIT, "cannot connect to the daemon at %s: %s",
           io->st->daemon, zmq_strerror(errno));
    io_close_socket(t);
    return -1;
  }
  return 0;
}

/* The daemon forgets a peer whose connection was replaced, so the communicator registers
 * again and waits for a new WELCOME. Called with the registry lock held. */
static void io_reconnect(cp_io* io, cp_io_tuner* t, uint64_t now) {
  io_close_socket(t);
  io_open_socket(io, t);
  bump(&io->c_reconnects);
  t->hello_sent = 0;
  t->welcomed = 0;
  cp_tuner_set_welcomed(t->ctx, 0);
  t->last_rx_ns = now;
  if (t->backoff < CP_IO_MAX_BACKOFF) t->backoff *= 2;
}

/* ---- receiving -------------------------------------------------------------------------------- */

/* Called with the registry lock held, for a message that arrived on t's connection. */
static void io_handle(cp_io* io, cp_io_tuner* t, const cp_msg* m) {
  uint64_t comm = 0;
  switch (m->type) {
    case CP_MSG_WELCOME: comm = m->u.welcome.comm; break;
    case CP_MSG_PREPARE: comm = m->u.prepare.comm; break;
    case CP_MSG_COMMIT: comm = m->u.commit.comm; break;
    case CP_MSG_ABORT: comm = m->u.abort_.comm; break;
    default: break;
  }
  int matched = 0;
  char why[256];
  if (t->id.comm_id == comm) {
    matched = 1;
    switch (m->type) {
      case CP_MSG_WELCOME: {
        const cp_msg_welcome* w = &m->u.welcome;
        t->welcomed = 1;
        t->measure = t->plans = t->packed = 0;
        for (uint32_t f = 0; f < w->n_features; f++) {
          if (strcmp(w->features[f].data, "measure") == 0) t->measure = 1;
          if (strcmp(w->features[f].data, "plans") == 0) t->plans = 1;
          if (strcmp(w->features[f].data, "packed_stats") == 0) t->packed = 1;
        }
        /* packed_stats only changes how measure's reports travel; alone it grants nothing. */
        if (!t->measure) t->packed = 0;
        t->heartbeat_ms = w->heartbeat_ms;
        t->report_ms = w->report_ms;
        t->next_report_ns = cp_now_ns() + (uint64_t)w->report_ms * 1000000ull;
        bump(&io->c_welcomes);
        cp_tuner_set_welcomed(t->ctx, 1);
        for (size_t k = 0; k < t->n_keys; k++) io_send_key(io, t, &t->keys[k]);
        cp_log(io->proc, CP_LOG_INFO, CP_LOG_SUBSYS_TUNING,
               "communicator %016llx registered with the daemon (session %llu, features:%s%s%s)",
               (unsigned long long)comm, (unsigned long long)w->session,
               t->measure ? " measure" : "", t->plans ? " plans" : "",
               t->packed ? " packed_stats" : "");
        break;
      }
      case CP_MSG_PREPARE: {
        cp_plan_ack ack;
        if (!t->plans) {
          memset(&ack, 0, sizeof ack);
          ack.plan = m->u.prepare.plan;
          cp_tuner_seq_state(t->ctx, &ack.calls, &ack.seq_hash);
          snprintf(ack.reason, sizeof ack.reason,
                   "the plans feature was not negotiated for this communicator");
        } else {
          cp_tuner_plan_prepare(t->ctx, m->u.prepare.plan, m->u.prepare.activate_at,
                                m->u.prepare.rules, m->u.prepare.n_rules, &ack);
        }
        io_send_ack(io, t, comm, &ack);
        break;
      }
      case CP_MSG_COMMIT:
        if (cp_tuner_plan_commit(t->ctx, m->u.commit.plan, m->u.commit.activate_at, why,
                                 sizeof why) != 0)
          io_send_error(io, t, CP_EC_STATE, "COMMIT", comm, why);
        break;
      case CP_MSG_ABORT:
        if (cp_tuner_plan_abort(t->ctx, m->u.abort_.plan, why, sizeof why) != 0)
          io_send_error(io, t, CP_EC_STATE, "ABORT", comm, why);
        break;
      default:
        break;
    }
  }
  if (m->type == CP_MSG_ERROR) {
    const cp_msg_error* e = &m->u.error;
    cp_log_ratelimited(io->proc, &io->rl_error, CP_IO_LOG_INTERVAL_NS,
                       "the daemon reports %s%s%s: %s", cp_error_code_name(e->code),
                       e->has_ref ? " about " : "", e->has_ref ? e->ref.data : "",
                       e->message.data);
    if (e->code == CP_EC_UNKNOWN_COMM && (!e->has_comm || t->id.comm_id == e->comm))
      t->hello_sent = 0;
  } else if (m->type != CP_MSG_HEARTBEAT && !matched) {
    if (m->type == CP_MSG_WELCOME || m->type == CP_MSG_PREPARE || m->type == CP_MSG_COMMIT ||
        m->type == CP_MSG_ABORT) {
      /* A communicator destroyed meanwhile, or a daemon mixing up peers. */
      snprintf(why, sizeof why, "%s for communicator %016llx, which this process does not have",
               cp_msg_type_name(m->type), (unsigned long long)comm);
      io_send_error(io, t, CP_EC_UNKNOWN_COMM, cp_msg_type_name(m->type), comm, why);
    } else {
      bump(&io->c_decode_errors);
      cp_log_ratelimited(io->proc, &io->rl_decode, CP_IO_LOG_INTERVAL_NS,
                         "the daemon sent %s, which only the plugin sends; dropped",
                         cp_msg_type_name(m->type));
    }
  }
}

/* Called with the registry lock held. */
static void io_receive(cp_io* io, cp_io_tuner* t) {
  for (;;) {
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    if (!t->sock || zmq_msg_recv(&frame, t->sock, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&frame);
      return;
    }
    t->last_rx_ns = cp_now_ns();
    t->backoff = 1;
    bump(&io->c_rx);
    if (zmq_msg_more(&frame)) {
      /* One message is one frame (PROTOCOL.md part 3): drop the whole multipart message. */
      do {
        zmq_msg_close(&frame);
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, t->sock, 0) < 0) break;
      } while (zmq_msg_more(&frame));
      zmq_msg_close(&frame);
      bump(&io->c_decode_errors);
      cp_log_ratelimited(io->proc, &io->rl_decode, CP_IO_LOG_INTERVAL_NS,
                         "the daemon sent a multipart message (malformed); dropped");
      continue;
    }
    cp_msg m;
    cp_decode_error err;
    cp_result r = cp_msg_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), &m, &err);
    zmq_msg_close(&frame);
    if (r != CP_OK) {
      bump(&io->c_decode_errors);
      cp_log_ratelimited(io->proc, &io->rl_decode, CP_IO_LOG_INTERVAL_NS,
                         "dropped a message from the daemon: %s%s%s %s",
                         r == CP_ERR_PARSE ? cp_error_code_name(err.kind) : cp_result_str(r),
                         err.field[0] ? " at " : "", err.field, err.message);
      continue;
    }
    io_handle(io, t, &m);
    cp_msg_free(&m);
  }
}

/* ---- hot-path entries ------------------------------------------------------------------------- */

static cp_io_tuner* io_find(cp_io* io, const cp_tuner_comm* ctx) {
  for (size_t i = 0; i < io->n_tuners; i++)
    if (io->tuners[i].ctx == ctx) return &io->tuners[i];
  return NULL;
}

static void io_entry(cp_io* io, const cp_io_entry* e) {
  pthread_mutex_lock(&io->lock);
  cp_io_tuner* t = io_find(io, e->ctx);
  if (t && e->kind == CP_IO_KEY && t->n_keys < CP_IO_MAX_KEYS) {
    if (t->n_keys == t->cap_keys) {
      size_t cap = t->cap_keys ? t->cap_keys * 2 : 64;
      cp_msg_key_report* grown = realloc(t->keys, cap * sizeof *grown);
      if (!grown) goto out;
      t->keys = grown;
      t->cap_keys = cap;
    }
    cp_msg_key_report* k = &t->keys[t->n_keys++];
    k->comm = e->comm;
    k->coll = e->coll;
    k->n_bytes = e->n_bytes;
    k->num_pipe_ops = e->num_pipe_ops;
    k->call = e->call;
    for (int a = 0; a < CP_COST_ALGOS; a++)
      for (int p = 0; p < CP_COST_PROTOS; p++) {
        float v = e->cost[a][p];
        /* NCCL's table holds >= 0 costs and exactly -1 for ignored combinations; anything else
         * (NaN, other negatives) is reported as ignored rather than breaking the message. */
        k->cost[a][p] = (v >= 0.0f && v < 3.0e38f) ? (double)v : -1.0;
      }
    if (t->welcomed) io_send_key(io, t, k);
  } else if (t && e->kind == CP_IO_ASK && t->welcomed) {
    cp_plan_ack ack;
    if (cp_tuner_plan_last_ack(t->ctx, e->plan, &ack)) io_send_ack(io, t, t->id.comm_id, &ack);
  }
out:
  pthread_mutex_unlock(&io->lock);
}

int cp_io_post_key(cp_io* io, cp_tuner_comm* ctx, uint64_t comm_id, int coll, uint64_t n_bytes,
                   int num_pipe_ops, uint64_t call, const float* cost, int num_algo,
                   int num_proto) {
  if (!io) return 0;
  cp_io_entry e;
  e.kind = CP_IO_KEY;
  e.ctx = ctx;
  e.comm = comm_id;
  e.coll = coll;
  e.n_bytes = n_bytes;
  e.num_pipe_ops = num_pipe_ops;
  e.call = call;
  e.plan = 0;
  for (int a = 0; a < CP_COST_ALGOS; a++)
    for (int p = 0; p < CP_COST_PROTOS; p++)
      e.cost[a][p] = (cost && a < num_algo && p < num_proto) ? cost[a * num_proto + p] : -1.0f;
  return cp_mpsc_push(&io->queue, &e);
}

int cp_io_post_ask(cp_io* io, cp_tuner_comm* ctx, uint64_t plan) {
  if (!io) return 0;
  cp_io_entry e;
  memset(&e, 0, sizeof e);
  e.kind = CP_IO_ASK;
  e.ctx = ctx;
  e.plan = plan;
  return cp_mpsc_push(&io->queue, &e);
}

/* ---- the thread ------------------------------------------------------------------------------- */

static void io_timers(cp_io* io, uint64_t now) {
  pthread_mutex_lock(&io->lock);
  for (size_t c = 0; c < io->n_closing; c++) zmq_close(io->closing[c]);
  io->n_closing = 0;
  for (size_t i = 0; i < io->n_tuners; i++) {
    cp_io_tuner* t = &io->tuners[i];
    if (!t->sock) {
      if (t->last_rx_ns && now - t->last_rx_ns < 1000000000ull) continue; /* retry once a second */
      t->last_rx_ns = now;
      if (io_open_socket(io, t) != 0) continue;
    }
    if (!t->hello_sent) {
      io_join_stats(io, t);
      io_send_hello(io, t);
    }
    uint64_t hb_ns = (uint64_t)t->heartbeat_ms * 1000000ull;
    if (t->welcomed) {
      if (t->measure && now >= t->next_report_ns) {
        io_send_measurements(io, t);
        t->next_report_ns = now + (uint64_t)t->report_ms * 1000000ull;
      }
      if (now >= t->next_heartbeat_ns) {
        cp_msg m;
        cp_msg_init(&m, CP_MSG_HEARTBEAT);
        m.u.heartbeat.seq = t->hb_seq++;
        m.u.heartbeat.time_ns = now;
        io_send(io, t, &m);
        t->next_heartbeat_ns = now + hb_ns;
      }
    }
    /* Silence for three heartbeat periods means the daemon (or the path to it) is gone: a new
     * socket is the only way to be sure no stale pipe keeps our messages. Backs off while the
     * daemon stays away. */
    if (now - t->last_rx_ns > 3 * hb_ns * t->backoff) {
      cp_log(io->proc, CP_LOG_INFO, CP_LOG_SUBSYS_TUNING,
             "no message from the daemon at %s for %.1f s (communicator %016llx); reconnecting",
             io->st->daemon, (double)(now - t->last_rx_ns) / 1e9,
             (unsigned long long)t->id.comm_id);
      io_reconnect(io, t, now);
    }
  }
  pthread_mutex_unlock(&io->lock);
}

/* Polls every connection. The socket list is copied under the lock and polled without it, so
 * registrations never wait for a poll; a socket unregistered meanwhile is only closed by this
 * thread, later, so the copy stays valid. */
static void io_poll(cp_io* io) {
  pthread_mutex_lock(&io->lock);
  size_t n = 0;
  if (io->cap_poll < io->n_tuners) {
    size_t cap = io->n_tuners * 2;
    zmq_pollitem_t* items = realloc(io->poll_items, cap * sizeof *items);
    if (items) io->poll_items = items;
    cp_tuner_comm** owners = realloc(io->poll_ctx, cap * sizeof *owners);
    if (owners) io->poll_ctx = owners;
    if (items && owners) io->cap_poll = cap;
  }
  for (size_t i = 0; i < io->n_tuners && n < io->cap_poll; i++) {
    if (!io->tuners[i].sock) continue;
    io->poll_items[n] = (zmq_pollitem_t){io->tuners[i].sock, 0, ZMQ_POLLIN, 0};
    io->poll_ctx[n++] = io->tuners[i].ctx;
  }
  pthread_mutex_unlock(&io->lock);
  if (n == 0) {
    usleep(CP_IO_POLL_MS * 1000);
    return;
  }
  if (zmq_poll(io->poll_items, (int)n, CP_IO_POLL_MS) <= 0) return;
  pthread_mutex_lock(&io->lock);
  for (size_t k = 0; k < n; k++) {
    if (!(io->poll_items[k].revents & ZMQ_POLLIN)) continue;
    cp_io_tuner* t = io_find(io, io->poll_ctx[k]);
    if (t && t->sock == io->poll_items[k].socket) io_receive(io, t);
  }
  pthread_mutex_unlock(&io->lock);
}

static void* io_main(void* arg) {
  cp_io* io = arg;
  while (!atomic_load_explicit(&io->stop, memory_order_acquire)) {
    io_poll(io);
    cp_io_entry e;
    while (cp_mpsc_pop(&io->queue, &e)) io_entry(io, &e);
    io_timers(io, cp_now_ns());
  }
  return NULL;
}

cp_result cp_io_start(cp_process* proc, cp_io** out) {
  *out = NULL;
  cp_io* io = calloc(1, sizeof *io);
  CP_ALLOC_CHECK(io);
  io->proc = proc;
  io->st = cp_process_settings(proc);
  cp_buf_init(&io->out, 0);
  pthread_mutex_init(&io->lock, NULL);
  if (gethostname(io->host, sizeof io->host - 1) != 0 || !io->host[0]) strcpy(io->host, "unknown");
  io->snapshot = malloc(CP_MAX_STATS * sizeof *io->snapshot);
  if (!io->snapshot || cp_mpsc_init(&io->queue, CP_IO_QUEUE_ENTRIES, sizeof(cp_io_entry)) != 0) {
    free(io->snapshot);
    free(io);
    return CP_ERR_NOMEM;
  }
  if (io->st->daemon_public_key[0] && zmq_curve_keypair(io->curve_public, io->curve_secret) != 0) {
    cp_log(proc, CP_LOG_WARN, CP_LOG_SUBSYS_INIT,
           "CCLPILOT_DAEMON_PUBLIC_KEY is set but this libzmq cannot make CURVE keys (%s); not "
           "connecting to the daemon. Use a libzmq built with libsodium.", zmq_strerror(errno));
    goto fail;
  }
  io->zctx = zmq_ctx_new();
  if (!io->zctx) goto fail;
  if (pthread_create(&io->thread, NULL, io_main, io) != 0) goto fail;
  cp_log(proc, CP_LOG_INFO, CP_LOG_SUBSYS_INIT, "connecting to the daemon at %s as job %s%s",
         io->st->daemon, io->st->job_id, io->st->daemon_public_key[0] ? " (CURVE)" : "");
  *out = io;
  return CP_OK;
fail:
  if (io->zctx) zmq_ctx_term(io->zctx);
  cp_mpsc_destroy(&io->queue);
  cp_buf_free(&io->out);
  pthread_mutex_destroy(&io->lock);
  free(io->snapshot);
  free(io);
  return CP_ERR_IO;
}

void cp_io_stop(cp_io* io) {
  if (!io) return;
  atomic_store_explicit(&io->stop, 1, memory_order_release);
  pthread_join(io->thread, NULL);
  for (size_t i = 0; i < io->n_tuners; i++) io_close_socket(&io->tuners[i]);
  for (size_t c = 0; c < io->n_closing; c++) zmq_close(io->closing[c]);
  zmq_ctx_term(io->zctx); /* joins ZeroMQ's own threads; linger 0 makes it immediate */
  cp_log(io->proc, CP_LOG_INFO, CP_LOG_SUBSYS_INIT,
         "daemon I/O stopped: %llu HELLO, %llu WELCOME, %llu reconnect(s), %llu key report(s), "
         "%llu measurement(s), %llu ACK(s) sent/received; %llu bad message(s) from the daemon, "
         "%llu hot-path entr%s dropped (queue full)",
         (unsigned long long)io->c_hellos, (unsigned long long)io->c_welcomes,
         (unsigned long long)io->c_reconnects, (unsigned long long)io->c_keys,
         (unsigned long long)io->c_meas, (unsigned long long)io->c_acks,
         (unsigned long long)io->c_decode_errors, (unsigned long long)cp_mpsc_dropped(&io->queue),
         cp_mpsc_dropped(&io->queue) == 1 ? "y" : "ies");
  for (size_t i = 0; i < io->n_tuners; i++) free(io->tuners[i].keys);
  free(io->tuners);
  free(io->stats);
  free(io->closing);
  free(io->poll_items);
  free(io->poll_ctx);
  free(io->snapshot);
  cp_mpsc_destroy(&io->queue);
  cp_buf_free(&io->out);
  pthread_mutex_destroy(&io->lock);
  free(io);
}

/* ---- registry --------------------------------------------------------------------------------- */

void cp_io_register_tuner(cp_io* io, cp_tuner_comm* ctx) {
  pthread_mutex_lock(&io->lock);
  if (io->n_tuners == io->cap_tuners) {
    size_t cap = io->cap_tuners ? io->cap_tuners * 2 : 8;
    cp_io_tuner* grown = realloc(io->tuners, cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&io->lock);
      cp_log(io->proc, CP_LOG_WARN, CP_LOG_SUBSYS_INIT,
             "out of memory registering a communicator with the daemon I/O thread; it runs on "
             "NCCL's choices");
      return;
    }
    io->tuners = grown;
    io->cap_tuners = cap;
  }
  if (io->n_closing == io->cap_closing) {
    /* Room for this context's socket to be closed later, so unregistering never allocates. */
    size_t cap = io->cap_closing ? io->cap_closing * 2 : 8;
    void** grown = realloc(io->closing, cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&io->lock);
      cp_log(io->proc, CP_LOG_WARN, CP_LOG_SUBSYS_INIT,
             "out of memory registering a communicator with the daemon I/O thread; it runs on "
             "NCCL's choices");
      return;
    }
    io->closing = grown;
    io->cap_closing = cap;
  }
  cp_io_tuner* t = &io->tuners[io->n_tuners++];
  memset(t, 0, sizeof *t);
  t->ctx = ctx;
  t->rank = -1;
  t->heartbeat_ms = CP_IO_DEFAULT_HEARTBEAT_MS;
  t->backoff = 1;
  cp_tuner_identity_of(ctx, &t->id);
  pthread_mutex_unlock(&io->lock);
}

void cp_io_unregister_tuner(cp_io* io, cp_tuner_comm* ctx) {
  if (!io) return;
  pthread_mutex_lock(&io->lock);
  for (size_t i = 0; i < io->n_tuners; i++) {
    if (io->tuners[i].ctx != ctx) continue;
    free(io->tuners[i].keys);
    if (io->tuners[i].sock && io->n_closing < io->cap_closing)
      io->closing[io->n_closing++] = io->tuners[i].sock;
    for (size_t k = 0; k < io->n_stats; k++)
      if (io->stats[k].claimed_by == ctx) io->stats[k].claimed_by = NULL;
    io->tuners[i] = io->tuners[--io->n_tuners];
    break;
  }
  pthread_mutex_unlock(&io->lock);
}

void cp_io_register_stats(cp_io* io, uint64_t comm_id, int profiler_abi, int rank,
                          cp_stats* stats) {
  if (!io || !stats) return;
  pthread_mutex_lock(&io->lock);
  if (io->n_stats == io->cap_stats) {
    size_t cap = io->cap_stats ? io->cap_stats * 2 : 8;
    cp_io_stats* grown = realloc(io->stats, cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&io->lock);
      return; /* measurements of this communicator are not shipped; nothing else changes */
    }
    io->stats = grown;
    io->cap_stats = cap;
  }
  io->stats[io->n_stats++] = (cp_io_stats){comm_id, profiler_abi, rank, stats, NULL};
  pthread_mutex_unlock(&io->lock);
}

void cp_io_unregister_stats(cp_io* io, cp_stats* stats) {
  if (!io || !stats) return;
  pthread_mutex_lock(&io->lock);
  for (size_t i = 0; i < io->n_stats; i++) {
    if (io->stats[i].stats != stats) continue;
    for (size_t k = 0; k < io->n_tuners; k++)
      if (io->tuners[k].stats == stats) io->tuners[k].stats = NULL;
    io->stats[i] = io->stats[--io->n_stats];
    break;
  }
  pthread_mutex_unlock(&io->lock);
}

void cp_io_get_counters(cp_io* io, cp_io_counters* out) {
  memset(out, 0, sizeof *out);
  if (!io) return;
  out->queue_dropped = cp_mpsc_dropped(&io->queue);
  out->decode_errors = atomic_load(&io->c_decode_errors);
  out->hellos_sent = atomic_load(&io->c_hellos);
  out->welcomes = atomic_load(&io->c_welcomes);
  out->reconnects = atomic_load(&io->c_reconnects);
  out->key_reports_sent = atomic_load(&io->c_keys);
  out->measurements_sent = atomic_load(&io->c_meas);
  out->acks_sent = atomic_load(&io->c_acks);
  out->errors_sent = atomic_load(&io->c_errors);
  out->messages_received = atomic_load(&io->c_rx);
}
