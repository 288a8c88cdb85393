"""Reusable conformance checks for any cclpilot Brain (cclpilot.daemon.brain).

A new brain gets the whole suite by subclassing ``BrainConformance`` in a test module and
implementing ``make_brain(seed)``; ``proposes`` says whether the brain is expected to propose
plans at all on a communicator with headroom (a null brain is not). The building blocks
(``SyntheticComm``, ``cost_table``, ``check_*``) are usable on their own.

``SyntheticComm`` stands in for the daemon and the ranks: it applies committed plans exactly as
the plugin does (rule lookup first-match, arms[i % n] with i the key's call count, channel hints
clamped by a communicator channel limit, fully specified arms whose cost is IGNORE fall back to
NCCL's choice), draws durations from a seeded generator, and feeds the brain observations summed
over ranks, as the daemon does.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cclpilot.daemon.brain import ArmRan, Brain, Key, Observation, PlanProposal
from cclpilot.proto.messages import COST_ALGOS, COST_IGNORE, COST_PROTOS, MAX_ARMS, MAX_RULES, Rule

CostTable = tuple[tuple[float, ...], ...]
AlgoProto = tuple[int, int]
TruthFn = Callable[[Key, int, int, int], float]   # (key, algo, proto, channels ran) -> mean ns


def cost_table(costs: Mapping[AlgoProto, float]) -> CostTable:
    """A 7x3 cost table: the given (algo, proto) entries, IGNORE everywhere else."""
    return tuple(tuple(float(costs.get((a, p), COST_IGNORE)) for p in range(COST_PROTOS))
                 for a in range(COST_ALGOS))


def nccl_default(table: CostTable) -> AlgoProto:
    best, arm = math.inf, (-1, -1)
    for a, row in enumerate(table):
        for p, v in enumerate(row):
            if v >= 0.0 and v < best:
                best, arm = v, (a, p)
    return arm


@dataclass
class _KeyInfo:
    table: CostTable
    calls: int = 0
    default_channels: int = 8


@dataclass
class SyntheticComm:
    """A simulated communicator driving one brain (see the module docstring)."""

    brain: Brain
    truth: TruthFn
    seed: int = 0
    ranks: int = 4
    noise: float = 0.05            # relative standard deviation of a collective's duration
    channel_limit: int = 16        # the communicator's channels: hints are clamped to it
    commit: Callable[[PlanProposal], bool] = lambda _p: True
    keys: dict[Key, _KeyInfo] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    proposals: list[PlanProposal] = field(default_factory=list)
    plan_id: int = 0
    calls: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def add_key(self, key: Key, table: CostTable, default_channels: int = 8) -> None:
        self.keys[key] = _KeyInfo(table, default_channels=default_channels)
        self.brain.on_key(key, table, self.calls)

    def _decide(self, key: Key, info: _KeyInfo) -> ArmRan:
        a0, p0 = nccl_default(info.table)
        for rule in self.rules:
            if (rule.coll == key.coll and rule.min_bytes <= key.n_bytes <= rule.max_bytes
                    and rule.num_pipe_ops in (-1, key.num_pipe_ops)
                    and rule.n_ranks in (-1, self.ranks)):
                arm = rule.arms[info.calls % len(rule.arms)]
                a = a0 if arm.algo < 0 else arm.algo
                p = p0 if arm.proto < 0 else arm.proto
                if info.table[a][p] < 0.0:
                    break          # the plugin refuses an IGNORE'd arm: NCCL decides
                ch = info.default_channels if arm.n_channels == 0 else min(arm.n_channels,
                                                                           self.channel_limit)
                return ArmRan(a, p, ch)
        return ArmRan(a0, p0, info.default_channels)

    def run(self, collectives: int, batch: int = 8) -> None:
        """Run ``collectives`` calls of every key; tell the brain every ``batch`` calls and ask
        for a plan after each tell (a proposal is committed or aborted at once)."""
        pending: dict[tuple[Key, ArmRan], list[float]] = {}
        for step in range(collectives):
            for key, info in self.keys.items():
                ran = self._decide(key, info)
                info.calls += 1
                self.calls += 1
                mean = self.truth(key, ran.algo, ran.proto, ran.n_channels)
                d = max(1.0, self.rng.gauss(mean, self.noise * mean))
                # Every rank times the same collective; they differ only by a little jitter.
                pending.setdefault((key, ran), []).extend(
                    max(1.0, d * (1.0 + self.rng.gauss(0.0, 0.002))) for _ in range(self.ranks))
            if (step + 1) % batch == 0 or step + 1 == collectives:
                self._flush(pending)
                pending = {}
                self.step_plan()

    def _flush(self, pending: dict[tuple[Key, ArmRan], list[float]]) -> None:
        obs = [Observation(key=k, arm=arm, count=len(v), sum_ns=math.fsum(v),
                           sum_sq_ns=math.fsum(x * x for x in v), min_ns=int(min(v)),
                           max_ns=int(max(v)), untimed=0, ranks=self.ranks, calls=self.calls)
               for (k, arm), v in sorted(pending.items(), key=lambda kv: repr(kv[0]))]
        if obs:
            self.brain.tell(obs)

    def step_plan(self) -> PlanProposal | None:
        proposal = self.brain.ask()
        if proposal is None:
            return None
        self.proposals.append(proposal)
        check_proposal(proposal, {k: i.table for k, i in self.keys.items()})
        self.plan_id += 1
        ok = self.commit(proposal)
        if ok:
            self.rules = proposal.rules
        self.brain.on_plan_outcome(self.plan_id, ok, "committed" if ok else "aborted by test")
        return proposal


# ---- checks -------------------------------------------------------------------------------------

def check_proposal(proposal: PlanProposal, tables: Mapping[Key, CostTable]) -> None:
    """Rules well-formed (they re-validate as protocol Rules, within the limits) and no arm
    that NCCL marked IGNORE for any key the rule matches."""
    assert isinstance(proposal, PlanProposal)
    assert isinstance(proposal.reason, str) and proposal.reason.strip(), "a plan needs a reason"
    assert len(proposal.rules) <= MAX_RULES
    for rule in proposal.rules:
        assert isinstance(rule, Rule)
        again = Rule.model_validate(rule.model_dump())      # strict protocol validation
        assert again == rule
        assert 1 <= len(rule.arms) <= MAX_ARMS
        for key, table in tables.items():
            if not (rule.coll == key.coll and rule.min_bytes <= key.n_bytes <= rule.max_bytes
                    and rule.num_pipe_ops in (-1, key.num_pipe_ops)):
                continue
            for arm in rule.arms:
                if arm.algo >= 0 and arm.proto >= 0:
                    assert table[arm.algo][arm.proto] >= 0.0, (
                        f"rule proposes IGNORE'd arm {arm} for {key}")
                elif arm.algo >= 0:
                    assert any(v >= 0.0 for v in table[arm.algo]), f"{arm} has no valid protocol"
                elif arm.proto >= 0:
                    assert any(row[arm.proto] >= 0.0 for row in table), f"{arm} has no valid algo"


def _truth(key: Key, algo: int, proto: int, channels: int) -> float:
    # A landscape with headroom: tree/simple 30% faster than NCCL's ring/simple default; LL slow.
    base = 1_000_000.0 if key.n_bytes >= 1 << 20 else 50_000.0
    factor = {(1, 2): 1.0, (0, 2): 0.7, (1, 1): 1.1, (0, 1): 0.9, (1, 0): 2.5, (0, 0): 2.6}
    return base * factor.get((algo, proto), 3.0) * (1.0 + 0.02 * abs(channels - 8) / 8)


# ring/simple is NCCL's default (cheapest by NCCL's cost), tree/LL128 is IGNORE'd.
STANDARD_TABLE = cost_table({(1, 2): 100.0, (0, 2): 120.0, (1, 1): 110.0, (1, 0): 300.0,
                             (0, 0): 310.0, (4, 2): 130.0})
KEYS = (Key(4, 64 << 20, 1), Key(4, 32 << 10, 1), Key(2, 8 << 20, 2))


def _comm(brain: Brain, seed: int = 0) -> SyntheticComm:
    comm = SyntheticComm(brain, _truth, seed=seed)
    for k in KEYS:
        comm.add_key(k, STANDARD_TABLE)
    return comm


def _truth_nvls_bad(key: Key, algo: int, proto: int, channels: int) -> float:
    return 10.0 * _truth(key, algo, proto, channels) if algo == 4 else _truth(key, algo, proto,
                                                                              channels)


def check_never_proposes_ignored(make: Callable[[int], Brain]) -> None:
    comm = SyntheticComm(make(0), _truth_nvls_bad, seed=1)
    for k in KEYS:
        comm.add_key(k, STANDARD_TABLE)
    comm.run(400)             # check_proposal runs on every proposal


def check_deterministic(make: Callable[[int], Brain]) -> None:
    runs = []
    for _ in range(2):
        comm = _comm(make(7), seed=3)
        comm.run(300)
        runs.append([(p.rules, p.reason) for p in comm.proposals])
    assert runs[0] == runs[1], "same seed and inputs must give the same proposals"


def check_ask_none_when_nothing_changed(make: Callable[[int], Brain]) -> None:
    brain = make(0)
    assert brain.ask() is None, "with no key reported there is nothing to propose"
    comm = _comm(brain)
    comm.run(200)
    # Drain whatever the brain still wants, then without new information it must be quiet.
    for _ in range(MAX_RULES):
        if comm.step_plan() is None:
            break
    assert brain.ask() is None
    assert brain.ask() is None


def check_tell_unknown(make: Callable[[int], Brain]) -> None:
    brain = make(0)
    brain.on_key(KEYS[0], STANDARD_TABLE, 0)
    odd = [
        Observation(Key(3, 12345, 1), ArmRan(1, 2, 8), 4, 4000.0, 4_000_000.0, 900, 1100, 0, 4, 10),
        Observation(KEYS[0], ArmRan(6, 0, 3), 4, 4000.0, 4_000_000.0, 900, 1100, 0, 4, 10),
        Observation(KEYS[0], ArmRan(1, 2, 0), 4, 4000.0, 4_000_000.0, 900, 1100, 2, 4, 10),
        Observation(KEYS[0], ArmRan(1, 2, 8), 4, 4000.0, 4_000_000.0, 900, 1100, 0, 4, 10,
                    key_ambiguous=True),
        Observation(KEYS[0], ArmRan(1, 2, 8), 0, 0.0, 0.0, 0, 0, 5, 4, 10),
    ]
    brain.tell(odd)
    proposal = brain.ask()
    if proposal is not None:
        check_proposal(proposal, {KEYS[0]: STANDARD_TABLE})
    json.dumps(brain.snapshot())


def check_snapshot_json(make: Callable[[int], Brain]) -> None:
    brain = make(0)
    json.dumps(brain.snapshot())
    comm = _comm(brain)
    comm.run(150)
    text = json.dumps(brain.snapshot())
    assert json.loads(text) == json.loads(json.dumps(brain.snapshot()))


def check_survives_aborts(make: Callable[[int], Brain]) -> None:
    """Aborted proposals keep the previous plan; the brain carries on and stays well-formed."""
    flip = {"n": 0}

    def commit(_p: PlanProposal) -> bool:
        flip["n"] += 1
        return flip["n"] % 2 == 0
    comm = _comm(make(0))
    comm.commit = commit
    comm.run(300)
    json.dumps(comm.brain.snapshot())


class BrainConformance:
    """Mixin for pytest: subclass it (name starting with Test) and implement ``make_brain``."""

    proposes: bool = True

    def make_brain(self, seed: int) -> Brain:
        raise NotImplementedError

    def test_never_proposes_ignored_arms(self) -> None:
        check_never_proposes_ignored(self.make_brain)

    def test_deterministic_with_seed(self) -> None:
        check_deterministic(self.make_brain)

    def test_ask_none_when_nothing_changed(self) -> None:
        check_ask_none_when_nothing_changed(self.make_brain)

    def test_tell_unknown_keys_and_arms(self) -> None:
        check_tell_unknown(self.make_brain)

    def test_snapshot_json(self) -> None:
        check_snapshot_json(self.make_brain)

    def test_survives_aborts(self) -> None:
        check_survives_aborts(self.make_brain)

    def test_proposes_on_headroom(self) -> None:
        comm = _comm(self.make_brain(0))
        comm.run(300)
        assert bool(comm.proposals) == self.proposes
