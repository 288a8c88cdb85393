/*
 * Daemon-side measurement ingestion: libcclpilot-ingest.so, loaded by the Python daemon through
 * cffi (python/cclpilot/daemon/ingest.py). Not part of the NCCL plugin; it reuses the plugin's
 * protocol codec so that both sides of the wire enforce one set of rules.
 *
 * Why native: MEASUREMENTS is the one message that arrives at volume (the capacity target is
 * 1,024 ranks x 100 keys every 100 ms, about a million stat entries per second on one core).
 * Decoding, validating and differencing them in Python costs a millisecond per report; here it
 * costs tens of microseconds, and Python only sees one call per report plus one per aggregate.
 *
 * Semantics are those of python/cclpilot/daemon/registry.py (CommState.absorb_cols and
 * take_observations), which remains the reference implementation and the fallback when this
 * library cannot be loaded; tests/test_daemon_ingest.py checks that both agree.
 *
 * Thread-safety: none. One decoder and its aggregators belong to the daemon's message loop.
 */
#ifndef CCLPILOT_CPI_INGEST_H
#define CCLPILOT_CPI_INGEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CPI_API __attribute__((visibility("default")))
#else
#define CPI_API
#endif

/* Bumped whenever a declaration below changes or what the functions accept does; the Python
 * binding refuses any other value. 2: cpi_decode_measurements takes MEASUREMENTS_PACKED too (a
 * daemon granting packed_stats with a version-1 library would drop every report). */
#define CPI_API_VERSION 2

/* ---- decoding ---------------------------------------------------------------------------------- */

typedef struct cpi_decoder cpi_decoder;

/* The envelope of the last accepted report. */
typedef struct {
  uint64_t comm;
  uint64_t calls;
  uint64_t dropped;
  uint32_t n_stats;
  /* 1: the canonical-encoding fast path declined and the full decoder accepted the frame (for
   * MEASUREMENTS_PACKED, also a valid histogram run with zero counts at an end). */
  uint32_t exact;
} cpi_report_head;

CPI_API int cpi_api_version(void);

/* NULL on allocation failure. */
CPI_API cpi_decoder* cpi_decoder_new(void);
CPI_API void cpi_decoder_free(cpi_decoder* dec);

/* Decodes one frame if it is a valid MEASUREMENTS or MEASUREMENTS_PACKED (PROTOCOL.md, every
 * rule); both give the same head and dense stats, so absorb does not know which arrived.
 *   returns 1: valid; *head filled; the stats stay in dec until the next call.
 *   returns 0: anything else (another message type, or invalid in any way). The caller's
 *              generic path then decodes it and names the error; this function never explains.
 *   returns -1: out of memory, or NULL arguments. */
CPI_API int cpi_decode_measurements(cpi_decoder* dec, const void* buf, size_t len,
                                    cpi_report_head* head);

/* ---- aggregation (one per communicator) ------------------------------------------------------- */

typedef struct cpi_agg cpi_agg;

/* Every credited sample goes to each channel; each channel has its own take windows, so one
 * consumer's takes do not disturb the other's: the daemon takes channel 0 for the brain's tells
 * (every ask interval) and channel 1 for the run artifacts' summaries (a coarser interval). */
#define CPI_CHANNELS 2

/* New samples of one (key, arm) since the previous take, summed over ranks: the fields of
 * cclpilot.daemon.brain.Observation before num_pipe_ops is attached. */
typedef struct {
  uint64_t n_bytes;
  uint64_t count;
  uint64_t untimed;
  uint64_t min_ns;
  uint64_t max_ns;
  double sum_ns;
  double sum_sq_ns;
  int32_t coll;
  int32_t algo;
  int32_t proto;
  int32_t n_channels;
  uint32_t ranks;      /* distinct senders that contributed since the previous take */
  uint32_t row;        /* dense id of the (key, arm) in this aggregate, stable for its life */
} cpi_obs;

typedef struct {
  uint64_t rows;           /* distinct (key, arm) pairs known */
  uint64_t pending[CPI_CHANNELS]; /* rows with samples waiting for the next take */
  uint64_t senders;        /* sender slots allocated */
  uint64_t stats_dropped;  /* stat entries ignored because a table was full */
} cpi_agg_info;

/* max_rows bounds both the distinct (key, arm) pairs of the communicator and those tracked per
 * sender (a hostile or broken plugin inventing keys cannot grow memory without bound); max_senders
 * bounds the sender slots. NULL on bad limits (0, or above 2^24) or allocation failure. */
CPI_API cpi_agg* cpi_agg_new(uint32_t max_rows, uint32_t max_senders);
CPI_API void cpi_agg_free(cpi_agg* agg);

/* Takes the decoder's last accepted report as the cumulative counters of sender `sender` (a
 * dense slot number the caller keeps stable across reconnects) and adds the differences to the
 * pending aggregate. credit == 0 only updates the sender's counters (samples that straddle a
 * plan change must not be credited to either plan). Counters that went back (a restarted plugin)
 * are taken whole. Returns 0, or -1 when sender >= max_senders or on allocation failure (nothing
 * absorbed). Stat entries beyond the table limits are skipped and counted (cpi_agg_get_info). */
CPI_API int cpi_agg_absorb(cpi_agg* agg, uint32_t sender, const cpi_decoder* dec, int credit);

/* Moves up to cap of the channel's pending rows, in the order they first received samples in the
 * current window, into out and clears them; returns how many were written (0 for a channel out of
 * range). Rows left over (more than cap pending) stay for the next call. */
CPI_API size_t cpi_agg_take(cpi_agg* agg, uint32_t channel, cpi_obs* out, size_t cap);

CPI_API void cpi_agg_get_info(const cpi_agg* agg, cpi_agg_info* info);

#ifdef __cplusplus
}
#endif
#endif
