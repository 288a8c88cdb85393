"""The daemon's native MEASUREMENTS path: libcclpilot-ingest.so through cffi (ABI mode).

MEASUREMENTS is the one message that arrives at volume: the capacity target is 1,024 ranks x 100
keys every 100 ms. Decoding, validating and differencing them in Python costs about a millisecond
per report, so the daemon hands each frame to the C library (plugin/ingest/cpi_ingest.h), which
reuses the plugin's protocol codec and keeps each sender's cumulative counters and each
communicator's pending aggregate. Python makes one call per report and one per aggregate take.

The pure-Python path (fastmeas.py + registry.CommState.absorb_cols) stays the reference: the
daemon falls back to it, with one warning, when the library cannot be loaded, and
tests/test_daemon_ingest.py checks that both produce the same observations.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

import cffi  # type: ignore[import-untyped,unused-ignore]
import numpy as np

from cclpilot import paths
from cclpilot.errors import CclpilotError

log = logging.getLogger("cclpilot.daemon")

# Must equal CPI_API_VERSION in cpi_ingest.h: the declarations below restate that header.
API_VERSION = 2

# Per communicator: distinct (key, arm) pairs, and per sender the pairs it reports. A plugin's
# statistics table holds far fewer (CCLPILOT_TABLE_MAX_ENTRIES-sized); the bound only stops a
# broken or hostile peer from growing the daemon's memory.
MAX_ROWS = 65_536

_CDEF = """
typedef struct cpi_decoder cpi_decoder;
typedef struct {
  uint64_t comm;
  uint64_t calls;
  uint64_t dropped;
  uint32_t n_stats;
  uint32_t exact;
} cpi_report_head;
int cpi_api_version(void);
cpi_decoder* cpi_decoder_new(void);
void cpi_decoder_free(cpi_decoder* dec);
int cpi_decode_measurements(cpi_decoder* dec, const char* buf, size_t len, cpi_report_head* head);

typedef struct cpi_agg cpi_agg;
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
  uint32_t ranks;
  uint32_t row;
} cpi_obs;
typedef struct {
  uint64_t rows;
  uint64_t pending[2];
  uint64_t senders;
  uint64_t stats_dropped;
} cpi_agg_info;
cpi_agg* cpi_agg_new(uint32_t max_rows, uint32_t max_senders);
void cpi_agg_free(cpi_agg* agg);
int cpi_agg_absorb(cpi_agg* agg, uint32_t sender, const cpi_decoder* dec, int credit);
size_t cpi_agg_take(cpi_agg* agg, uint32_t channel, cpi_obs* out, size_t cap);
void cpi_agg_get_info(const cpi_agg* agg, cpi_agg_info* info);
"""

# cpi_obs as numpy sees it; tests/test_daemon_ingest.py checks it against cffi's layout.
OBS_DTYPE = np.dtype([
    ("n_bytes", "<u8"), ("count", "<u8"), ("untimed", "<u8"), ("min_ns", "<u8"),
    ("max_ns", "<u8"), ("sum_ns", "<f8"), ("sum_sq_ns", "<f8"), ("coll", "<i4"),
    ("algo", "<i4"), ("proto", "<i4"), ("n_channels", "<i4"), ("ranks", "<u4"),
    ("row", "<u4")])

# The aggregate's channels (CPI_CHANNELS): each sees every credited sample, with its own takes.
BRAIN = 0       # the brain's tells, every ask interval
SUMMARY = 1     # the run artifacts' measurement summaries, every summary interval


class IngestError(CclpilotError):
    """The native ingestion library is missing, incompatible, or failed."""


class ReportHead(NamedTuple):
    comm: int
    calls: int
    dropped: int
    n_stats: int
    exact: bool     # True: not canonically encoded, decoded by the full decoder


# One aggregate row as cpi_agg_take returns it, a plain tuple in OBS_DTYPE's field order
# (n_bytes, count, untimed, min_ns, max_ns, sum_ns, sum_sq_ns, coll, algo, proto, n_channels,
# ranks, row): at capacity the daemon takes 100,000s a second, and a NamedTuple per row would
# double the cost. `row` is the dense id of the (key, arm) in its aggregate, stable for its life.
ObsRow = tuple[int, int, int, int, int, float, float, int, int, int, int, int, int]


class NativeIngest:
    """One decoder; it holds the last accepted report until the next decode."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else paths.ingest_library()
        self.ffi = cffi.FFI()
        self.ffi.cdef(_CDEF)
        try:
            self.lib: Any = self.ffi.dlopen(str(self.path))
        except OSError as e:
            raise IngestError(f"cannot load {self.path}: {e}; rebuild cclpilot "
                              "(pip install . or cmake --build build)") from e
        version = self.lib.cpi_api_version()
        if version != API_VERSION:
            raise IngestError(f"{self.path} implements ingest API {version}, this daemon needs "
                              f"{API_VERSION}; the library and the Python package come from "
                              "different builds: reinstall cclpilot")
        self._dec = self.ffi.gc(self.lib.cpi_decoder_new(), self.lib.cpi_decoder_free)
        if self._dec == self.ffi.NULL:
            raise IngestError("out of memory creating the MEASUREMENTS decoder")
        self._head = self.ffi.new("cpi_report_head*")
        self._decode = self.lib.cpi_decode_measurements

    def decode(self, data: bytes) -> ReportHead | None:
        """The envelope of a valid MEASUREMENTS (its stats stay inside for absorb), or None for
        anything else: the caller's generic path decodes that and names any error."""
        rc = self._decode(self._dec, data, len(data), self._head)
        if rc == 1:
            h = self._head
            return ReportHead(h.comm, h.calls, h.dropped, h.n_stats, bool(h.exact))
        if rc < 0:
            raise IngestError("out of memory decoding a MEASUREMENTS report")
        return None

    def new_agg(self, max_senders: int, max_rows: int = MAX_ROWS) -> NativeAgg:
        return NativeAgg(self, max_rows, max_senders)


class NativeAgg:
    """One communicator's sender counters and pending aggregate."""

    def __init__(self, ingest: NativeIngest, max_rows: int, max_senders: int) -> None:
        self._ingest = ingest
        ffi, lib = ingest.ffi, ingest.lib
        ptr = lib.cpi_agg_new(max_rows, max_senders)
        if ptr == ffi.NULL:
            raise IngestError(f"cannot create an aggregate for {max_senders} senders and "
                              f"{max_rows} rows (limits are 1..2^24)")
        self._agg = ffi.gc(ptr, lib.cpi_agg_free)
        self.max_senders = max_senders
        self._info = ffi.new("cpi_agg_info*")
        self._buf: Any = ffi.new("cpi_obs[]", 64)
        self._cap = 64

    def absorb(self, sender: int, credit: bool) -> bool:
        """Takes the ingest's last decoded report as `sender`'s cumulative counters. False when
        the sender number is out of range or memory ran out (nothing absorbed)."""
        lib = self._ingest.lib
        return bool(lib.cpi_agg_absorb(self._agg, sender, self._ingest._dec, 1 if credit else 0)
                    == 0)

    def info(self) -> dict[str, int]:
        self._ingest.lib.cpi_agg_get_info(self._agg, self._info)
        i = self._info
        return {"rows": i.rows, "pending_brain": i.pending[BRAIN],
                "pending_summary": i.pending[SUMMARY], "senders": i.senders,
                "stats_dropped": i.stats_dropped}

    def pending(self, channel: int) -> int:
        self._ingest.lib.cpi_agg_get_info(self._agg, self._info)
        return int(self._info.pending[channel])

    def take(self, channel: int) -> list[ObsRow]:
        """Every row pending on `channel`, in the order rows first received samples in this
        window; clears them (on that channel only)."""
        ffi, lib = self._ingest.ffi, self._ingest.lib
        n = self.pending(channel)
        if n == 0:
            return []
        if n > self._cap:
            while self._cap < n:
                self._cap *= 2
            self._buf = ffi.new("cpi_obs[]", self._cap)
        got = lib.cpi_agg_take(self._agg, channel, self._buf, n)
        arr = np.frombuffer(ffi.buffer(self._buf, got * OBS_DTYPE.itemsize), dtype=OBS_DTYPE)
        # tolist() converts every field to Python ints and floats in C.
        rows: list[ObsRow] = arr.tolist()
        return rows


def load_native_ingest() -> NativeIngest | None:
    """The native path, or None (with one warning) when the library is unavailable."""
    try:
        return NativeIngest()
    except CclpilotError as e:
        log.warning("native MEASUREMENTS ingestion unavailable (%s); using the Python path, "
                    "which handles roughly a tenth of the report rate", e)
        return None
