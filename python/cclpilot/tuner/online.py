"""The first online tuner: per key, explore the valid arms live, keep the best, stop.

How it works, per key (collective, size, numPipeOps) of one communicator:

1. **Valid arms** are the (algorithm, protocol) entries of NCCL's cost table that are >= 0; an
   IGNORE'd (-1) entry is never proposed. NCCL's default is the argmin of the table (strict <,
   algorithm-major order), exactly as NCCL picks it.
2. **Phase "algo/proto"**: the incumbent (NCCL's default) and up to ``max_candidates`` other valid
   (algorithm, protocol) pairs, cheapest first by NCCL's own cost, channels left to NCCL. All of
   them go into ONE rule of ONE plan; the plugin uses arms[i % n] on call i of the key, so every
   rank runs the same arm and one two-phase commit covers the whole exploration round.
3. **Phase "channels"**: for the winner of phase 2, channel hints around the channel count NCCL
   ran it with (``channel_factors``, within 1..64), against the winner with NCCL's channels.
4. **Converged**: one exact-size rule with the best arm (no rule at all when NCCL's default won,
   which is the same decision with less to go wrong) for the rest of the job.

Every candidate is compared with the phase's incumbent by Welch's t-test on the arms' means AND a
minimum relative gain (``min_gain``). Decisions are taken at checkpoints (``min_samples``, then
doubling up to ``max_samples``), not after every report, so repeated looks do not inflate the
false-switch rate much. A candidate is dropped as soon as it is clearly worse than NCCL's default
(mean above ``rollback_ratio`` times the default's after ``rollback_min_samples`` samples, checked
on every report), when it is significantly slower than the incumbent, when even its optimistic
gain bound stays below ``min_gain``, or when ``max_samples`` leave it undecided. Dropping a
candidate re-plans the key without it. ``max_plans_per_key`` bounds the plans a key may use to
explore; a key out of budget converges on the best arm found so far.

**Sample counts.** The daemon sums per-rank samples; all ranks time the same collective, so an
observation of ``count`` rank-samples from ``ranks`` ranks holds about ``count / ranks``
independent collectives. Warm-up, checkpoints and the test's degrees of freedom use that
effective count. Warm-up is discarded per arm at the granularity of observations (the first
observations of an arm are skipped until ``warmup`` collectives were skipped), because a summary
cannot be split.

**Attribution.** Observations carry the arm that RAN, including the channel count NCCL's
scheduler actually used, which may differ from the hint (it is clamped to the communicator's
channels and to the number of data cells). Samples go to the candidates of the key's rule in the
last COMMITTED plan:

- when exactly one arm of the rule has the observed (algorithm, protocol), the samples are its
  (any channel count), and the channel count is recorded: for a hint of 0 as "NCCL's channel
  count for this pair", for a non-zero hint as "what this hint runs as";
- when several arms share the pair (the channel phase), a sample goes to the arm whose recorded
  (or, before anything is recorded, predicted: hint h runs h channels; hint 0 runs NCCL's recorded
  count) channel count equals the observed one. Samples matching no arm are held aside; when
  exactly one arm of the group has no match and exactly one unexplained channel count was seen,
  that hint is bound to that count (the scheduler clamped it there) and the held samples are its;
- anything else (a pair not in the rule, samples from before the rule changed that match nothing,
  an ambiguous key, unknown channel counts where they matter) is counted and discarded, never
  guessed. A candidate that still has no samples once the other arms of its rule collected
  enough is dropped: its hint runs exactly like another arm.

Every random choice (the order of the arms in a rule, which sets who runs on which call) comes
from ``seed``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cclpilot.daemon.brain import (
    ALGO_NAMES,
    COLL_NAMES,
    PROTO_NAMES,
    Brain,
    BrainFactory,
    CommInfo,
    Key,
    Observation,
    PlanProposal,
)
from cclpilot.errors import ConfigError
from cclpilot.proto.messages import (
    COST_ALGOS,
    COST_IGNORE,
    COST_PROTOS,
    MAX_ARMS,
    MAX_CHANNELS,
    MAX_RULES,
    U64_MAX,
    Arm,
    Rule,
)
from cclpilot.tuner.stats import Summary, welch

MAX_REASON_CHARS = 4000   # plan reasons go to the journal and artifacts; keep them readable


class TunerConfig(BaseModel):
    """Settings of the online tuner (validated; unknown names are rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    warmup: int = Field(default=3, ge=0, description="collectives skipped per arm before timing")
    min_samples: int = Field(default=20, ge=2, description="collectives per arm before a test")
    max_samples: int = Field(default=160, ge=2, description="collectives after which an "
                             "undecided candidate is dropped")
    alpha: float = Field(default=0.01, gt=0.0, lt=0.5, description="one-sided test level")
    min_gain: float = Field(default=0.03, ge=0.0, lt=1.0, description="relative gain needed "
                            "to switch")
    rollback_ratio: float = Field(default=1.5, gt=1.0, description="drop a candidate slower "
                                  "than this times NCCL's default")
    rollback_min_samples: int = Field(default=3, ge=1)
    max_candidates: int = Field(default=8, ge=0, le=MAX_ARMS - 1,
                                description="(algo, proto) pairs tried besides the default")
    channel_factors: tuple[float, ...] = Field(default=(0.5, 2.0), max_length=MAX_ARMS - 1)
    max_plans_per_key: int = Field(default=8, ge=1)
    max_aborts: int = Field(default=5, ge=1, description="consecutive aborted proposals "
                            "before the tuner stops proposing")

    @model_validator(mode="after")
    def _consistent(self) -> TunerConfig:
        if self.max_samples < self.min_samples:
            raise ValueError(f"max_samples ({self.max_samples}) must be at least min_samples "
                             f"({self.min_samples})")
        for f in self.channel_factors:
            if not (f > 0.0 and math.isfinite(f)):
                raise ValueError(f"channel_factors must be positive finite numbers (got {f})")
        return self


ArmKey = tuple[int, int, int]          # (algo, proto, channel hint; 0 = NCCL's)
Status = Literal["open", "better", "rejected"]
Phase = Literal["algo_proto", "channels", "converged"]


def size_text(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << (shift - 4)) == 0:
            v = n / (1 << shift)
            return f"{v:g} {unit}"
    return f"{n} B"


def key_text(key: Key) -> str:
    coll = COLL_NAMES[key.coll] if 0 <= key.coll < len(COLL_NAMES) else f"coll{key.coll}"
    pipe = "" if key.num_pipe_ops == 1 else f" x{key.num_pipe_ops} ops"
    return f"{coll} {size_text(key.n_bytes)}{pipe}"


def arm_text(arm: ArmKey) -> str:
    a, p, h = arm
    return f"{ALGO_NAMES[a]}/{PROTO_NAMES[p]}" + (f"/{h}ch" if h else "")


@dataclass
class _Cand:
    arm: ArmKey
    status: Status = "open"
    verdict: str = ""
    data: Summary = field(default_factory=Summary)
    skipped: float = 0.0          # collectives discarded as warm-up
    next_check: float = 0.0       # n_eff at which the next test is due
    p_value: float = math.nan

    def to_json(self) -> dict[str, object]:
        return {"arm": arm_text(self.arm), "status": self.status, "verdict": self.verdict,
                "warmup_skipped": round(self.skipped, 3), "samples": self.data.to_json()}


@dataclass
class _KeyState:
    key: Key
    order: int                                    # first-seen order, for rule ordering/caps
    valid: list[tuple[int, int]]                  # valid (algo, proto), cheapest first
    default: ArmKey
    phase: Phase = "algo_proto"
    incumbent: ArmKey = (0, 0, 0)
    cands: dict[ArmKey, _Cand] = field(default_factory=dict)      # every arm ever measured
    phase_cands: list[ArmKey] = field(default_factory=list)      # this phase's candidates
    best: ArmKey = (0, 0, 0)
    plans_used: int = 0
    default_channels: dict[tuple[int, int], Counter[int]] = field(default_factory=dict)
    hint_channels: dict[ArmKey, int] = field(default_factory=dict)
    pending: dict[tuple[int, int, int], list[Observation]] = field(default_factory=dict)
    epoch_samples: float = 0.0                    # n_eff attributed since the rule last changed
    unattributed: int = 0                         # rank-samples discarded
    events: list[str] = field(default_factory=list)
    reported: int = 0                             # events already told in a plan reason


class OnlineTuner(Brain):
    """Online tuner for one communicator (see the module docstring)."""

    def __init__(self, info: CommInfo | None = None, config: TunerConfig | None = None) -> None:
        self.info = info
        self.config = config or TunerConfig()
        self._keys: dict[Key, _KeyState] = {}
        self._active: dict[Key, tuple[ArmKey, ...]] = {}     # last committed plan, per key
        self._active_rules: tuple[Rule, ...] = ()
        self._proposed: tuple[Rule, ...] | None = None          # in flight
        self._proposed_arms: dict[Key, tuple[ArmKey, ...]] = {}
        self._aborted: tuple[Rule, ...] | None = None
        self._told_since_abort = True
        self._aborts_in_a_row = 0
        self._frozen = ""
        self._plans_committed = 0
        self._ignored_keys = 0         # rank-samples of keys never announced by on_key
        self._ambiguous = 0            # rank-samples whose key the daemon could not pin down
        self._log: list[str] = []

    # ---- Brain interface ------------------------------------------------------------------

    def on_key(self, key: Key, cost_table: tuple[tuple[float, ...], ...], first_call: int) -> None:
        if key in self._keys:
            return
        if len(cost_table) != COST_ALGOS or any(len(r) != COST_PROTOS for r in cost_table):
            raise ConfigError(f"cost table of {key_text(key)} must be {COST_ALGOS}x{COST_PROTOS} "
                              f"(algorithm rows, protocol entries); got rows of "
                              f"{[len(r) for r in cost_table]}")
        valid: list[tuple[float, int, int]] = []
        default: tuple[int, int] | None = None
        best_cost = math.inf
        for a, row in enumerate(cost_table):
            for p, v in enumerate(row):
                if not math.isfinite(v) or (v < 0.0 and v != COST_IGNORE):
                    raise ConfigError(f"cost[{a}][{p}] of {key_text(key)} is {v}: a cost is a "
                                      "finite number >= 0, or -1.0 for a combination NCCL ignores")
                if v < 0.0:
                    continue
                valid.append((v, a, p))
                if v < best_cost:              # strict <, algorithm-major: NCCL's own argmin
                    best_cost, default = v, (a, p)
        state = _KeyState(key=key, order=len(self._keys),
                          valid=[(a, p) for _, a, p in sorted(valid)],
                          default=(default[0], default[1], 0) if default else (-1, -1, 0))
        self._keys[key] = state
        if default is None:
            state.phase = "converged"
            self._event(state, "no valid arm in NCCL's cost table; NCCL decides")
            return
        state.incumbent = state.best = state.default
        state.cands[state.default] = _Cand(state.default)
        if len(self._keys) > MAX_RULES:
            state.phase = "converged"
            self._event(state, f"more than {MAX_RULES} keys; this one stays on NCCL's choice")
            return
        others = [(a, p, 0) for a, p in state.valid if (a, p, 0) != state.default]
        self._start_phase(state, "algo_proto", others[: self.config.max_candidates])

    def tell(self, observations: Sequence[Observation]) -> None:
        touched: set[Key] = set()
        for o in observations:
            if o.count <= 0:
                continue
            state = self._keys.get(o.key)
            if state is None:
                self._ignored_keys += o.count
                continue
            if o.key_ambiguous:
                self._ambiguous += o.count
                continue
            self._attribute(state, o)
            touched.add(o.key)
        for key in touched:
            state = self._keys[key]
            self._bind_clamped_hints(state)
            self._decide(state)
        self._told_since_abort = True

    def ask(self) -> PlanProposal | None:
        if self._proposed is not None or self._frozen:
            return None
        arms = self._desired_arms()
        rules = self._rules(arms)
        if rules == self._active_rules:
            return None
        if rules == self._aborted and not self._told_since_abort:
            return None
        changed = [k for k in sorted(set(arms) | set(self._active), key=self._order)
                   if arms.get(k) != self._active.get(k)]
        reason = self._reason(changed)
        self._proposed, self._proposed_arms = rules, arms
        return PlanProposal(rules=rules, reason=reason)

    def on_plan_outcome(self, plan_id: int, committed: bool, reason: str) -> None:
        if self._proposed is None:
            self._log.append(f"plan {plan_id}: outcome without a proposal in flight ({reason})")
            return
        rules, arms = self._proposed, self._proposed_arms
        self._proposed, self._proposed_arms = None, {}
        if not committed:
            self._aborted = rules
            self._told_since_abort = False
            self._aborts_in_a_row += 1
            self._log.append(f"plan {plan_id} aborted: {reason}")
            if self._aborts_in_a_row >= self.config.max_aborts:
                self._frozen = (f"{self._aborts_in_a_row} proposals in a row aborted (last: "
                                f"{reason}); keeping the current plan")
                self._log.append(self._frozen)
            return
        self._aborts_in_a_row = 0
        self._aborted = None
        self._plans_committed += 1
        self._log.append(f"plan {plan_id} committed")
        for key in set(arms) | set(self._active):
            if arms.get(key) == self._active.get(key):
                continue
            state = self._keys.get(key)
            if state is not None:
                state.plans_used += 1
                state.epoch_samples = 0.0
                state.pending.clear()
        self._active, self._active_rules = arms, rules

    def snapshot(self) -> dict[str, object]:
        keys: list[dict[str, object]] = []
        for state in sorted(self._keys.values(), key=lambda s: s.order):
            keys.append({
                "key": {"coll": state.key.coll, "n_bytes": state.key.n_bytes,
                        "num_pipe_ops": state.key.num_pipe_ops, "text": key_text(state.key)},
                "phase": state.phase,
                "default": arm_text(state.default) if state.default[0] >= 0 else None,
                "incumbent": arm_text(state.incumbent) if state.default[0] >= 0 else None,
                "best": arm_text(state.best) if state.default[0] >= 0 else None,
                "plans_used": state.plans_used,
                "unattributed_samples": state.unattributed,
                "default_channels": {arm_text((a, p, 0)): dict(c)
                                     for (a, p), c in sorted(state.default_channels.items())},
                "hint_channels": {arm_text(h): c for h, c in sorted(state.hint_channels.items())},
                "arms": [c.to_json() for _, c in sorted(state.cands.items())],
                "events": list(state.events[-50:]),
            })
        return {
            "brain": "online",
            "config": self.config.model_dump(mode="json"),
            "plans_committed": self._plans_committed,
            "aborts_in_a_row": self._aborts_in_a_row,
            "frozen": self._frozen or None,
            "in_flight": self._proposed is not None,
            "ignored_unknown_key_samples": self._ignored_keys,
            "ignored_ambiguous_key_samples": self._ambiguous,
            "keys": keys,
            "log": list(self._log[-200:]),
        }

    # ---- attribution ------------------------------------------------------------------------

    def _rule_arms(self, state: _KeyState) -> tuple[ArmKey, ...]:
        # No rule: NCCL decides, which is its default arm with its own channels.
        return self._active.get(state.key, (state.default,))

    def _expected_channels(self, state: _KeyState, arm: ArmKey) -> set[int]:
        a, p, h = arm
        if h == 0:
            return set(state.default_channels.get((a, p), Counter()))
        return {state.hint_channels.get(arm, h)}

    def _attribute(self, state: _KeyState, o: Observation) -> None:
        a, p, c = o.arm.algo, o.arm.proto, o.arm.n_channels
        group = [arm for arm in self._rule_arms(state) if arm[0] == a and arm[1] == p]
        if len(group) == 1:
            arm = group[0]
            if arm[2] == 0:
                if c > 0:
                    state.default_channels.setdefault((a, p), Counter())[c] += o.count
            elif c > 0 and arm not in state.hint_channels:
                state.hint_channels[arm] = c
            self._credit(state, arm, o)
            return
        if len(group) > 1 and c > 0:
            matches = [arm for arm in group if c in self._expected_channels(state, arm)]
            if len(matches) == 1:
                self._credit(state, matches[0], o)
                return
            if not matches:
                state.pending.setdefault((a, p, c), []).append(o)
                return
        state.unattributed += o.count

    def _bind_clamped_hints(self, state: _KeyState) -> None:
        rule = self._rule_arms(state)
        pairs = {(a, p) for a, p, _ in rule}
        for a, p in sorted(pairs):
            group = [arm for arm in rule if arm[0] == a and arm[1] == p]
            if len(group) < 2:
                continue
            unexplained = sorted(c for (pa, pp, c) in state.pending if (pa, pp) == (a, p))
            starving = [arm for arm in group
                        if arm[2] != 0 and arm not in state.hint_channels
                        and state.cands[arm].data.count == 0 and state.cands[arm].skipped == 0]
            if len(unexplained) == 1 and len(starving) == 1:
                arm, c = starving[0], unexplained[0]
                state.hint_channels[arm] = c
                self._event(state, f"hint {arm[2]} for {arm_text((a, p, 0))} runs as {c} "
                                   "channels (NCCL clamped it)")
                for o in state.pending.pop((a, p, c)):
                    self._credit(state, arm, o)

    def _credit(self, state: _KeyState, arm: ArmKey, o: Observation) -> None:
        cand = state.cands.setdefault(arm, _Cand(arm))
        n_eff = o.count / max(1, o.ranks)
        state.epoch_samples += n_eff
        if cand.skipped < self.config.warmup:
            cand.skipped += n_eff
            return
        cand.data = cand.data.add(o.count, o.sum_ns, o.sum_sq_ns, o.min_ns, o.max_ns, n_eff)

    # ---- decisions ----------------------------------------------------------------------------

    def _start_phase(self, state: _KeyState, phase: Phase, cands: list[ArmKey]) -> None:
        state.phase = phase
        state.phase_cands = []
        for arm in cands:
            cand = state.cands.setdefault(arm, _Cand(arm))
            # An arm already decided in an earlier phase keeps its verdict.
            if cand.status == "open":
                cand.next_check = float(self.config.min_samples)
                state.phase_cands.append(arm)
        if not state.phase_cands:
            self._phase_done(state)
            return
        names = ", ".join(arm_text(a) for a in state.phase_cands)
        role = " (default)" if state.incumbent == state.default else ""
        self._event(state, f"exploring {names} against {arm_text(state.incumbent)}{role}")

    def _decide(self, state: _KeyState) -> None:
        if state.phase == "converged":
            return
        cfg = self.config
        inc = state.cands[state.incumbent].data
        dflt = state.cands[state.default].data
        rule = self._rule_arms(state)
        enough = len(rule) * (cfg.warmup + cfg.min_samples)
        for arm in state.phase_cands:
            cand = state.cands[arm]
            if cand.status != "open":
                continue
            d = cand.data
            if (d.n_eff >= cfg.rollback_min_samples and dflt.n_eff >= cfg.rollback_min_samples
                    and d.mean > cfg.rollback_ratio * dflt.mean):
                self._reject(state, cand, f"rolled back: {d.mean / dflt.mean:.2f}x slower than "
                                          f"the default after {d.n_eff:.0f} samples")
                continue
            if (arm in rule and d.count == 0 and cand.skipped == 0
                    and state.epoch_samples >= enough):
                self._reject(state, cand, "no samples ran as this arm (NCCL's scheduler runs "
                                          "it like another arm)")
                continue
            if d.n_eff < cand.next_check or inc.n_eff < cfg.min_samples or d.count < 2:
                continue
            w = welch(d, inc)
            gain = w.diff / inc.mean
            _, gain_hi = w.gain_bounds(inc.mean, cfg.alpha)
            cand.p_value = w.p_faster
            ratio = inc.mean / d.mean
            if w.p_faster < cfg.alpha and gain >= cfg.min_gain:
                cand.status = "better"
                cand.verdict = (f"{ratio:.2f}x faster than {arm_text(state.incumbent)}, "
                                f"p={w.p_faster:.2g}")
                self._event(state, f"{arm_text(arm)}: {cand.verdict}")
            elif w.p_slower < cfg.alpha:
                self._reject(state, cand, f"slower than {arm_text(state.incumbent)} "
                                          f"({ratio:.3f}x, p={w.p_slower:.2g})")
            elif gain_hi < cfg.min_gain:
                self._reject(state, cand, f"not {cfg.min_gain:.0%} faster than "
                                          f"{arm_text(state.incumbent)} (gain {gain:+.1%}, "
                                          f"upper bound {gain_hi:+.1%})")
            elif d.n_eff >= cfg.max_samples:
                self._reject(state, cand, f"undecided after {d.n_eff:.0f} samples (gain "
                                          f"{gain:+.1%}, p={w.p_faster:.2g}); keeping "
                                          f"{arm_text(state.incumbent)}")
            else:
                cand.next_check = min(float(cfg.max_samples), 2.0 * cand.next_check)
        if all(state.cands[a].status != "open" for a in state.phase_cands):
            self._phase_done(state)

    def _reject(self, state: _KeyState, cand: _Cand, verdict: str) -> None:
        cand.status, cand.verdict = "rejected", verdict
        self._event(state, f"{arm_text(cand.arm)}: {verdict}")

    def _winner(self, state: _KeyState) -> ArmKey:
        better = [state.cands[a] for a in state.phase_cands if state.cands[a].status == "better"]
        if not better:
            return state.incumbent
        return min(better, key=lambda c: (c.data.mean, c.arm)).arm

    def _phase_done(self, state: _KeyState) -> None:
        winner = self._winner(state)
        state.incumbent = state.best = winner
        if state.phase == "algo_proto":
            seen = state.default_channels.get((winner[0], winner[1]))
            base = seen.most_common(1)[0][0] if seen else 0
            hints: list[ArmKey] = []
            if base > 0:
                for f in self.config.channel_factors:
                    h = min(MAX_CHANNELS, max(1, round(base * f)))
                    arm = (winner[0], winner[1], h)
                    if h != base and arm not in hints:
                        hints.append(arm)
            elif self.config.channel_factors:
                self._event(state, f"channel count of {arm_text(winner)} unknown; not "
                                   "exploring channels")
            self._start_phase(state, "channels", hints)
            return
        self._converge(state, "explored every candidate")

    def _converge(self, state: _KeyState, why: str) -> None:
        state.phase = "converged"
        state.phase_cands = []
        best = state.best
        if best == state.default:
            self._event(state, f"converged ({why}): NCCL's default {arm_text(best)} stays")
            return
        b = state.cands[best].data
        d = state.cands[state.default].data
        if b.n_eff > 1.0 and d.n_eff > 1.0:
            w = welch(b, d)
            detail = f"{d.mean / b.mean:.2f}x faster than default, p={w.p_faster:.2g}"
        else:
            detail = "faster than the default"
        self._event(state, f"converged ({why}): {arm_text(best)} {detail}")

    # ---- plans ------------------------------------------------------------------------------

    def _order(self, key: Key) -> tuple[int, int, int]:
        return (key.coll, key.n_bytes, key.num_pipe_ops)

    def _desired_arms(self) -> dict[Key, tuple[ArmKey, ...]]:
        out: dict[Key, tuple[ArmKey, ...]] = {}
        for key, state in self._keys.items():
            if state.phase != "converged":
                arms = self._exploration_arms(state)
                if arms != self._active.get(key) and state.plans_used >= self.config.max_plans_per_key:
                    state.best = self._best_so_far(state)
                    self._converge(state, f"exploration budget of {self.config.max_plans_per_key} "
                                          "plans spent")
                else:
                    out[key] = arms
                    continue
            if state.phase == "converged" and state.default[0] >= 0 and state.best != state.default:
                out[key] = (state.best,)
        return out

    def _best_so_far(self, state: _KeyState) -> ArmKey:
        pool = [state.incumbent] + [a for a in state.phase_cands
                                    if state.cands[a].status == "better"]
        return min(pool, key=lambda a: (state.cands[a].data.mean
                                        if state.cands[a].data.count else math.inf, a))

    def _exploration_arms(self, state: _KeyState) -> tuple[ArmKey, ...]:
        arms = sorted({state.incumbent} | {a for a in state.phase_cands
                                           if state.cands[a].status != "rejected"})
        # The rotation order decides which arm runs on which call; a seeded shuffle of the
        # sorted set keeps it reproducible and independent of the order events happened in.
        k = state.key
        rng = random.Random(f"{self.config.seed}:{k.coll}:{k.n_bytes}:{k.num_pipe_ops}:{arms}")
        rng.shuffle(arms)
        return tuple(arms)

    def _rules(self, arms: dict[Key, tuple[ArmKey, ...]]) -> tuple[Rule, ...]:
        rules = []
        for key in sorted(arms, key=self._order):
            if not 0 <= key.n_bytes <= U64_MAX:
                continue
            rules.append(Rule(
                coll=key.coll, min_bytes=key.n_bytes, max_bytes=key.n_bytes, n_nodes=-1,
                n_ranks=-1, num_pipe_ops=key.num_pipe_ops,
                arms=[Arm(algo=a, proto=p, n_channels=h, chunk_size=0) for a, p, h in arms[key]]))
        return tuple(rules[:MAX_RULES])

    def _reason(self, changed: list[Key]) -> str:
        parts: list[str] = []
        for key in changed:
            state = self._keys.get(key)
            if state is None:
                continue
            news = state.events[state.reported:] or state.events[-1:] or ["changed"]
            state.reported = len(state.events)
            parts.append(f"key {key_text(key)}: " + "; ".join(news))
        text = " | ".join(parts) or "plan update"
        if len(text) > MAX_REASON_CHARS:
            text = text[: MAX_REASON_CHARS - 20] + " ... (truncated)"
        return text

    def _event(self, state: _KeyState, text: str) -> None:
        state.events.append(text)
        self._log.append(f"key {key_text(state.key)}: {text}")


def online_tuner_factory(config: TunerConfig | None = None) -> BrainFactory:
    """A BrainFactory for the daemon: one OnlineTuner per communicator, same settings."""
    cfg = config or TunerConfig()

    def make(info: CommInfo) -> Brain:
        return OnlineTuner(info, cfg)
    return make
