"""The daemon's interface to a tuner ("brain"): small, ask/tell, one instance per communicator.

The daemon owns the protocol, the registry, the two-phase plan activation and the journal; a
brain only sees what it needs to decide and proposes complete plans. The daemon calls a brain
from one worker thread at a time (never concurrently for one communicator and never on the
message loop), so implementations need no locking of their own.

Call order per communicator, once it is complete (every rank registered):

1. ``on_key`` for every key any rank reported (first report wins; ranks report the same table);
2. ``tell`` with new samples whenever measurement reports arrived since the last call;
3. ``ask`` when no plan is in flight; a proposal starts a two-phase activation;
4. ``on_plan_outcome`` once per proposal, when it committed or aborted.

Observations are *differences* of the plugins' cumulative MEASUREMENTS, per (key, arm as it RAN).
The daemon cannot pair the samples of one collective across ranks (summaries carry no collective
ids), so per-rank summaries are **summed**: ``count`` is the number of rank-samples, ``sum_ns``
their total, ``min_ns``/``max_ns`` the extremes over ranks. Note that a rank's kernel duration
includes waiting for its slowest peer, so the per-rank durations of one collective are close to
each other and their mean estimates the collective's duration; a straggler shows up in
``max_ns`` and in the variance.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cclpilot.proto.messages import Rule

COLL_NAMES: tuple[str, ...] = ("broadcast", "reduce", "allgather", "reducescatter", "allreduce")
ALGO_NAMES: tuple[str, ...] = ("tree", "ring", "collnet_direct", "collnet_chain", "nvls",
                               "nvls_tree", "pat")
PROTO_NAMES: tuple[str, ...] = ("LL", "LL128", "simple")


@dataclass(frozen=True)
class Key:
    """What a decision is a function of, besides the communicator: NCCL's per-call inputs."""

    coll: int
    n_bytes: int
    num_pipe_ops: int


@dataclass(frozen=True)
class ArmRan:
    """The arm a sample was measured on, as the profiler saw it run (0 channels: unknown)."""

    algo: int
    proto: int
    n_channels: int


@dataclass(frozen=True)
class CommInfo:
    """A complete communicator, as its ranks registered it."""

    job: str
    comm: int
    n_ranks: int
    n_nodes: int
    hosts: tuple[str, ...]
    nccl_version: int
    session: int


class Observation(NamedTuple):
    """New samples of one (key, arm) since the previous tell, summed over ranks.

    ``num_pipe_ops`` is not in the plugin's statistics slots; the daemon fills it in from the
    communicator's reported keys when exactly one key has this (coll, n_bytes), and uses 1
    otherwise (``key_ambiguous`` is then True, and a brain may choose to ignore the sample).

    A NamedTuple (immutable like the frozen dataclasses here) because the daemon builds one per
    (key, arm) per communicator per ask interval: at capacity that is 100,000s a second, and a
    frozen dataclass costs six times as much to construct.
    """

    key: Key
    arm: ArmRan
    # Shadows tuple.count on purpose: the field is the interface brains already use.
    count: int  # type: ignore[assignment]
    sum_ns: float
    sum_sq_ns: float
    min_ns: int
    max_ns: int
    untimed: int
    ranks: int            # ranks that contributed new samples to this observation
    calls: int            # the communicator's largest reported call count so far
    key_ambiguous: bool = False

    @property
    def mean_ns(self) -> float:
        return self.sum_ns / self.count if self.count else 0.0


@dataclass(frozen=True)
class PlanProposal:
    """A complete rule list (replaces the current plan; empty = NCCL's choices everywhere)."""

    rules: tuple[Rule, ...]
    reason: str


class Brain(ABC):
    """One communicator's tuner. See the module docstring for the call order and the threading."""

    @abstractmethod
    def on_key(self, key: Key, cost_table: tuple[tuple[float, ...], ...], first_call: int) -> None:
        """A new key with NCCL's cost table (rows: algorithm, entries: protocol; -1.0 ignored)."""

    @abstractmethod
    def tell(self, observations: Sequence[Observation]) -> None:
        """New samples since the previous tell (never empty)."""

    @abstractmethod
    def ask(self) -> PlanProposal | None:
        """A plan to activate next, or None to keep the current one. Must return quickly
        (the daemon bounds it, see docs/daemon.md); heavy work belongs in tell."""

    @abstractmethod
    def on_plan_outcome(self, plan_id: int, committed: bool, reason: str) -> None:
        """The last proposal was committed (it decides calls from its activation point on) or
        aborted (the previous plan stays); ``reason`` says why."""

    @abstractmethod
    def snapshot(self) -> dict[str, object]:
        """JSON-serialisable state for the run artifacts."""


BrainFactory = Callable[[CommInfo], Brain]


class NullBrain(Brain):
    """Never proposes: the job runs on NCCL's choices (or the plugin's static table)."""

    def __init__(self, info: CommInfo | None = None) -> None:
        self.keys = 0
        self.samples = 0

    def on_key(self, key: Key, cost_table: tuple[tuple[float, ...], ...], first_call: int) -> None:
        self.keys += 1

    def tell(self, observations: Sequence[Observation]) -> None:
        self.samples += sum(o.count for o in observations)

    def ask(self) -> PlanProposal | None:
        return None

    def on_plan_outcome(self, plan_id: int, committed: bool, reason: str) -> None:
        return None

    def snapshot(self) -> dict[str, object]:
        return {"brain": "null", "keys": self.keys, "samples": self.samples}
