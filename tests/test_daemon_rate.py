"""The daemon's call-rate estimate, which places every plan's activation point."""

from __future__ import annotations

from cclpilot.daemon.plans import choose_activate_at
from cclpilot.daemon.registry import RATE_WINDOW_S, CommState


def test_reports_handled_back_to_back_do_not_inflate_the_rate() -> None:
    st = CommState("job", 1, n_ranks=8, n_nodes=1, nccl_version=0)
    true_rate = 1000.0   # calls per second on every rank
    t = 100.0
    for tick in range(20):
        t = 100.0 + 0.1 * tick
        # Eight ranks' reports of one interval, a few calls apart, handled 10 us apart: a
        # fast daemon sees them almost at once.
        for r in range(8):
            st.note_calls(int(true_rate * (t - 100.0)) + r, t + r * 1e-5)
    assert 0.8 * true_rate <= st.rate <= 1.25 * true_rate
    at = choose_activate_at(st.max_calls, st.max_calls_time, st.rate, t + 1e-4, 0.01, 0.2, 32)
    # About a quarter of a second of calls ahead, not minutes.
    assert st.max_calls < at < st.max_calls + 1000


def test_rate_needs_a_full_window() -> None:
    st = CommState("job", 1, n_ranks=2, n_nodes=1, nccl_version=0)
    st.note_calls(100, 10.0)
    st.note_calls(100_000, 10.0 + RATE_WINDOW_S / 10)
    assert st.rate == 0.0          # no estimate from a sliver of time
    st.note_calls(100_050, 10.0 + RATE_WINDOW_S)
    assert st.rate > 0.0


def test_first_plans_use_the_calls_since_registration_until_the_rate_is_measured() -> None:
    from cclpilot.daemon.server import _call_rate

    st = CommState("job", 1, n_ranks=2, n_nodes=1, nccl_version=0)
    st.complete_at = 10.0
    assert _call_rate(st) == 0.0                  # no call count yet: min_lead_calls only
    st.note_calls(500, 10.5)                      # one report: 500 calls in the half second
    assert st.rate == 0.0 and _call_rate(st) == 1000.0
    st.max_calls, st.max_calls_time = 3, 10.0 + RATE_WINDOW_S / 2
    assert _call_rate(st) == 0.0                  # too short a span to divide by
    st.rate = 250.0                               # measured: that wins
    assert _call_rate(st) == 250.0
