"""The online tuner: Brain conformance, statistics, and behaviour on seeded synthetic data."""

from __future__ import annotations

import json
import math
import random
import re

from typing import Any

import pytest

from brain_conformance import (
    BrainConformance,
    SyntheticComm,
    check_proposal,
    TruthFn,
    cost_table,
)
from cclpilot.daemon.brain import ArmRan, Brain, Key, NullBrain, Observation
from cclpilot.errors import CclpilotError
from cclpilot.tuner import OnlineTuner, TunerConfig
from cclpilot.tuner.stats import StatsError, Summary, t_ppf_upper, t_sf, welch

RING, TREE, NVLS = 1, 0, 4
LL, LL128, SIMPLE = 0, 1, 2
KEY = Key(4, 64 << 20, 1)
# NCCL's default here is ring/simple (cheapest); tree/simple and ring/LL128 are valid; tree/LL128
# and every other pair are IGNORE'd.
TABLE = cost_table({(RING, SIMPLE): 100.0, (TREE, SIMPLE): 120.0, (RING, LL128): 110.0})


class TestOnlineConformance(BrainConformance):
    def make_brain(self, seed: int) -> Brain:
        return OnlineTuner(None, TunerConfig(seed=seed))


class TestNullConformance(BrainConformance):
    proposes = False

    def make_brain(self, seed: int) -> Brain:
        return NullBrain(None)


# ---- statistics ---------------------------------------------------------------------------------

def test_t_distribution_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in (1.0, 2.5, 9.0, 41.7, 3000.0):
        for t in (-4.0, -1.0, 0.0, 0.3, 2.0, 7.5):
            assert t_sf(t, df) == pytest.approx(float(stats.t.sf(t, df)), abs=1e-10)
        for alpha in (0.001, 0.01, 0.05):
            assert t_ppf_upper(alpha, df) == pytest.approx(float(stats.t.isf(alpha, df)), rel=1e-7)


def test_welch_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(5)
    x = [rng.gauss(100.0, 6.0) for _ in range(40)]
    y = [rng.gauss(96.0, 9.0) for _ in range(33)]
    w = welch(Summary.of(y), Summary.of(x))
    ref = stats.ttest_ind(y, x, equal_var=False, alternative="less")
    assert w.p_faster == pytest.approx(float(ref.pvalue), rel=1e-6)
    assert w.df == pytest.approx(float(ref.df), rel=1e-9)


def test_effective_samples_widen_the_test() -> None:
    # The same rank-samples counted as 8 ranks per collective carry 1/8 of the evidence.
    a = Summary.of([100.0 + (i % 5) for i in range(80)])
    b = Summary.of([102.0 + (i % 5) for i in range(80)])
    a8 = Summary.of([100.0 + (i % 5) for i in range(80)], ranks=8)
    b8 = Summary.of([102.0 + (i % 5) for i in range(80)], ranks=8)
    assert welch(a8, b8).p_faster > welch(a, b).p_faster


def test_stats_reject_bad_input() -> None:
    with pytest.raises(StatsError, match="two independent samples"):
        welch(Summary.of([1.0]), Summary.of([1.0, 2.0]))
    with pytest.raises(StatsError, match="negative"):
        Summary().add(-1, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert issubclass(StatsError, CclpilotError)


def test_config_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_samples"):
        TunerConfig(min_samples=50, max_samples=10)
    with pytest.raises(ValueError, match="extra"):
        TunerConfig.model_validate({"seed": 1, "bogus": 2})


# ---- behaviour ----------------------------------------------------------------------------------

def _truth(factors: dict[tuple[int, int], float], base: float = 1_000_000.0,
           channel_slope: float = 0.0) -> TruthFn:
    def truth(key: Key, algo: int, proto: int, channels: int) -> float:
        return base * factors[(algo, proto)] * (1.0 + channel_slope * abs(channels - 8) / 8)
    return truth


def _run(factors: dict[tuple[int, int], float], *, seed: int = 0, noise: float = 0.05,
         collectives: int = 1500, config: TunerConfig | None = None,
         table: tuple[tuple[float, ...], ...] = TABLE) -> tuple[OnlineTuner, SyntheticComm]:
    brain = OnlineTuner(None, config or TunerConfig(seed=seed))
    comm = SyntheticComm(brain, _truth(factors), seed=seed, noise=noise)
    comm.add_key(KEY, table)
    comm.run(collectives)
    return brain, comm


def _key_snapshot(brain: OnlineTuner) -> dict[str, Any]:
    keys = brain.snapshot()["keys"]
    assert isinstance(keys, list)
    ks = keys[0]
    assert isinstance(ks, dict)
    return ks


def test_first_plan_explores_every_valid_arm_in_one_rule() -> None:
    brain = OnlineTuner(None, TunerConfig(seed=0))
    brain.on_key(KEY, TABLE, 0)
    p = brain.ask()
    assert p is not None
    assert len(p.rules) == 1
    rule = p.rules[0]
    assert (rule.min_bytes, rule.max_bytes, rule.num_pipe_ops) == (KEY.n_bytes, KEY.n_bytes, 1)
    assert (rule.n_nodes, rule.n_ranks) == (-1, -1)
    assert {(a.algo, a.proto, a.n_channels) for a in rule.arms} == {
        (RING, SIMPLE, 0), (TREE, SIMPLE, 0), (RING, LL128, 0)}
    assert "exploring" in p.reason and "ring/simple (default)" in p.reason
    assert brain.ask() is None, "a plan in flight: nothing else to propose"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_30_percent_better_arm(seed: int) -> None:
    brain, comm = _run({(RING, SIMPLE): 1.0, (TREE, SIMPLE): 0.7, (RING, LL128): 1.05}, seed=seed)
    ks = _key_snapshot(brain)
    assert ks["phase"] == "converged"
    assert str(ks["best"]).startswith("tree/simple")
    assert len(comm.proposals) <= 6
    final = comm.proposals[-1]
    assert len(final.rules) == 1 and len(final.rules[0].arms) == 1
    arm = final.rules[0].arms[0]
    assert (arm.algo, arm.proto) == (TREE, SIMPLE)
    assert "converged" in final.reason and "faster than default" in final.reason


@pytest.mark.parametrize("seed", range(6))
def test_no_switch_on_1_percent_under_5_percent_noise(seed: int) -> None:
    brain, comm = _run({(RING, SIMPLE): 1.0, (TREE, SIMPLE): 0.99, (RING, LL128): 1.01},
                       seed=seed, noise=0.05)
    ks = _key_snapshot(brain)
    assert ks["phase"] == "converged"
    assert ks["best"] == "ring/simple"
    # Converged on NCCL's default: the last plan hands every decision back to NCCL.
    assert comm.proposals[-1].rules == ()


def test_rolls_back_2x_worse_arm_at_once() -> None:
    cfg = TunerConfig(seed=0)
    brain = OnlineTuner(None, cfg)
    comm = SyntheticComm(brain, _truth({(RING, SIMPLE): 1.0, (TREE, SIMPLE): 2.0,
                                        (RING, LL128): 1.0}), seed=0, noise=0.05)
    comm.add_key(KEY, TABLE)
    comm.step_plan()
    assert len(comm.proposals) == 1
    # Each arm runs every third call; a tell every 3 calls. The bad arm must be gone from the
    # plan once it has warm-up + rollback_min_samples samples, not after min_samples.
    limit = 3 * (cfg.warmup + cfg.rollback_min_samples + 2)
    for _ in range(limit):
        comm.run(3, batch=3)
        if len(comm.proposals) > 1:
            break
    assert len(comm.proposals) == 2, "the 2x worse arm was not rolled back quickly"
    arms = {(a.algo, a.proto) for r in comm.proposals[1].rules for a in r.arms}
    assert (TREE, SIMPLE) not in arms
    assert "rolled back" in comm.proposals[1].reason
    ratio = re.search(r"rolled back: ([0-9.]+)x slower", comm.proposals[1].reason)
    assert ratio is not None and 1.7 < float(ratio.group(1)) < 2.3   # states the measured ratio


def test_converges_then_stops_proposing() -> None:
    brain, comm = _run({(RING, SIMPLE): 1.0, (TREE, SIMPLE): 0.7, (RING, LL128): 1.2}, seed=4)
    n = len(comm.proposals)
    assert _key_snapshot(brain)["phase"] == "converged"
    comm.run(2000)
    assert len(comm.proposals) == n, "a converged tuner proposed again"
    assert brain.ask() is None


def test_channel_phase_uses_observed_channels_and_clamps() -> None:
    # Fewer channels are 20% better for tree/simple; hint 16 is clamped to NCCL's 8 -> dropped.
    def truth(key: Key, algo: int, proto: int, channels: int) -> float:
        base = {(RING, SIMPLE): 1.0, (TREE, SIMPLE): 0.7, (RING, LL128): 1.3}[(algo, proto)]
        return 1e6 * base * (0.8 if channels == 4 else 1.0)
    brain = OnlineTuner(None, TunerConfig(seed=0))
    comm = SyntheticComm(brain, truth, seed=0, noise=0.03, channel_limit=8)
    comm.add_key(KEY, TABLE, default_channels=8)
    comm.run(3000)
    ks = _key_snapshot(brain)
    assert ks["phase"] == "converged"
    assert ks["best"] == "tree/simple/4ch"
    arms = {a["arm"]: a for a in ks["arms"]}
    assert arms["tree/simple/16ch"]["status"] == "rejected"
    final = comm.proposals[-1].rules[0].arms
    assert [(a.algo, a.proto, a.n_channels) for a in final] == [(TREE, SIMPLE, 4)]


def test_clamped_hint_is_bound_to_what_ran() -> None:
    # Hint 16 runs as 12 (the communicator's limit): the samples at 12 channels are that arm's.
    def truth(key: Key, algo: int, proto: int, channels: int) -> float:
        base = {(RING, SIMPLE): 1.0, (TREE, SIMPLE): 0.7, (RING, LL128): 1.3}[(algo, proto)]
        return 1e6 * base * (0.75 if channels == 12 else 1.0)
    brain = OnlineTuner(None, TunerConfig(seed=0))
    comm = SyntheticComm(brain, truth, seed=0, noise=0.03, channel_limit=12)
    comm.add_key(KEY, TABLE, default_channels=8)
    comm.run(3000)
    ks = _key_snapshot(brain)
    assert ks["hint_channels"] == {"tree/simple/16ch": 12}
    assert ks["best"] == "tree/simple/16ch"


def test_budget_bounds_exploration_plans() -> None:
    brain, comm = _run({(RING, SIMPLE): 1.0, (TREE, SIMPLE): 1.6, (RING, LL128): 1.0},
                       config=TunerConfig(seed=0, max_plans_per_key=1))
    ks = _key_snapshot(brain)
    assert ks["phase"] == "converged"
    assert ks["plans_used"] == 2     # the exploration plan and the final one
    assert any("budget" in e for e in ks["events"])


def test_only_default_valid_means_no_plan() -> None:
    brain = OnlineTuner(None, TunerConfig())
    brain.on_key(KEY, cost_table({(RING, SIMPLE): 5.0}), 0)
    assert brain.ask() is None
    brain2 = OnlineTuner(None, TunerConfig())
    brain2.on_key(KEY, cost_table({}), 0)
    assert brain2.ask() is None
    assert _key_snapshot(brain2)["phase"] == "converged"


def test_default_is_strict_argmin_algorithm_major() -> None:
    # Ties: NCCL keeps the first minimum in algorithm-major order (tree before ring).
    brain = OnlineTuner(None, TunerConfig())
    brain.on_key(KEY, cost_table({(RING, SIMPLE): 10.0, (TREE, SIMPLE): 10.0}), 0)
    assert _key_snapshot(brain)["default"] == "tree/simple"


def test_bad_cost_table_is_a_clear_error() -> None:
    brain = OnlineTuner(None, TunerConfig())
    bad = tuple(tuple(-2.0 if (a, p) == (1, 2) else -1.0 for p in range(3)) for a in range(7))
    with pytest.raises(CclpilotError, match=r"cost\[1\]\[2\]"):
        brain.on_key(KEY, bad, 0)


def test_aborted_plan_is_retried_only_after_new_data_and_freezes() -> None:
    brain = OnlineTuner(None, TunerConfig(max_aborts=3))
    brain.on_key(KEY, TABLE, 0)
    p = brain.ask()
    assert p is not None
    brain.on_plan_outcome(1, False, "rank 3 refused")
    assert brain.ask() is None, "nothing new since the abort"
    obs = Observation(KEY, ArmRan(RING, SIMPLE, 8), 4, 4e6, 4e12, 990_000, 1_010_000, 0, 4, 4)
    for i in range(2):
        brain.tell([obs])
        again = brain.ask()
        assert again is not None and again.rules == p.rules
        brain.on_plan_outcome(2 + i, False, "rank 3 refused")
    brain.tell([obs])
    assert brain.ask() is None
    assert "aborted" in str(brain.snapshot()["frozen"])


def test_reason_and_snapshot_are_readable() -> None:
    brain, comm = _run({(RING, SIMPLE): 1.0, (TREE, SIMPLE): 0.7, (RING, LL128): 1.05})
    snap = brain.snapshot()
    json.dumps(snap)
    assert "allreduce 64 MiB" in comm.proposals[0].reason
    for p in comm.proposals:
        check_proposal(p, {KEY: TABLE})
    ks = _key_snapshot(brain)
    best = [a for a in ks["arms"] if a["arm"] == ks["best"]]
    assert best and not math.isnan(float(best[0]["samples"]["mean_ns"]))
