"""The cclpilot daemon: registry, plan activation, journal and artifacts (docs/daemon.md)."""

from __future__ import annotations

from cclpilot.daemon.brain import (
    ArmRan,
    Brain,
    BrainFactory,
    CommInfo,
    Key,
    NullBrain,
    Observation,
    PlanProposal,
)

__all__ = ["ArmRan", "Brain", "BrainFactory", "CommInfo", "Key", "NullBrain", "Observation",
           "PlanProposal"]
