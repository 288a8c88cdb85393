"""Tuners ("brains") the daemon can run per communicator; see cclpilot.daemon.brain."""

from __future__ import annotations

from cclpilot.tuner.online import OnlineTuner, TunerConfig, online_tuner_factory
from cclpilot.tuner.stats import StatsError, Summary, Welch, welch

__all__ = ["OnlineTuner", "StatsError", "Summary", "TunerConfig", "Welch", "online_tuner_factory",
           "welch"]
