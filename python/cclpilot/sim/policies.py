"""Policies compared side by side in one simulated run, and the tables they run through the plugin.

- default: NCCL's own choice (plugin in observe mode: it measures, decides nothing);
- static: a user's table file (plugin in static mode);
- sweep: NCCL's recommended offline workflow. Every available arm (algorithm x protocol x a few
  channel counts) is measured on the ground truth for every key of the workload; the sweep's GPU
  time (the sum of every sample it took) is charged. Per (collective, nNodes, nRanks) the
  measured sizes get their argmin arm, ranges switch at the midpoint in log size between
  neighbouring measured sizes, adjacent ranges with the same arm merge, and the result is a table
  file run in static mode;
- oracle: the best arm per key under the noise-free truth, searched over every channel hint,
  written as exact-size rules so it too goes through the plugin.

"Available" means both that NCCL's cost table offers the arm (entry >= 0; the plugin never
enables anything else) and that the hardware can run it. A channel count in a table is a hint:
NCCL's scheduler may run fewer channels, and arms are told apart by what really runs.

Every policy runs in its own fresh worker processes (the plugin's settings are process-wide)
with the same seed, so all of them see the same noise.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError, SimulationError
from .nccl_model import NcclModel, finalize_chunk
from .runner import (JobResult, JobSpec, ProgressFn, TruthSpec, comm_topology, decode_choice,
                     make_truth, run_job)
from .topology import Algo, Coll, Proto, Topology
from .truth import PerformanceModel
from .workloads import ResolvedWorkload

POLICY_NAMES = ("default", "static", "sweep", "oracle", "live")
SWEEP_HINTS = (2, 4, 8, 16, 32)  # "a few channel counts", besides NCCL's own
SWEEP_REPEATS = 5
TABLE_COLLS = {c: c.name.lower() for c in Coll}
TABLE_ALGOS = {a: a.name.lower() for a in Algo}
TABLE_PROTOS = {p: p.name.lower() for p in Proto}


@dataclass(frozen=True, order=True)
class Key:
    """One tuning key: a collective of one size on one workload communicator."""

    comm: str
    coll: Coll
    n_bytes: int
    n_ranks: int
    n_nodes: int

    def label(self) -> str:
        return f"{self.comm} {self.coll.name.lower()} {self.n_bytes} B"


@dataclass(frozen=True)
class Arm:
    algo: Algo
    proto: Proto
    hint: int  # the table's channels field: -1 = NCCL's own count
    channels: int  # what NCCL's scheduler really runs for this hint

    def label(self) -> str:
        h = "nccl" if self.hint < 0 else str(self.hint)
        return f"{self.algo.name}/{self.proto.name} {self.channels} ch (hint {h})"


@dataclass(frozen=True)
class Rule:
    coll: Coll
    lo: int
    hi: int  # -1 = no upper bound
    algo: Algo
    proto: Proto
    channels: int  # -1 = keep NCCL's
    n_nodes: int
    n_ranks: int

    def line(self) -> str:
        return ",".join([TABLE_COLLS[self.coll], str(self.lo), str(self.hi), TABLE_ALGOS[self.algo],
                         TABLE_PROTOS[self.proto], str(self.channels), str(self.n_nodes),
                         str(self.n_ranks)])


def workload_keys(workload: ResolvedWorkload) -> list[Key]:
    seen: dict[Key, None] = {}
    for op in workload.ops:
        c = workload.comms[op.comm]
        seen.setdefault(Key(c.name, op.coll, op.n_bytes, c.n_ranks, c.n_nodes), None)
    return list(seen)


def op_keys(workload: ResolvedWorkload) -> list[Key]:
    out = []
    for op in workload.ops:
        c = workload.comms[op.comm]
        out.append(Key(c.name, op.coll, op.n_bytes, c.n_ranks, c.n_nodes))
    return out


def _chunk(model: NcclModel, coll: Coll, algo: Algo, proto: Proto) -> int:
    limits = model.chunk_limits(coll, algo, proto)
    return finalize_chunk(limits.default, limits)


def candidate_arms(model: NcclModel, truth: PerformanceModel, key: Key,
                   hints: Iterable[int] | None) -> list[Arm]:
    """Arms NCCL offers and the hardware runs; NCCL's own channel count first, then each hint
    (None: every hint up to the algorithm's limit) that runs a different number of channels."""
    table = model.cost_table(key.coll, key.n_bytes)
    out: list[Arm] = []
    for a in Algo:
        for p in Proto:
            if table[a * len(Proto) + p] < 0:
                continue
            if not truth.available(key.coll, a, p, key.n_ranks, key.n_nodes):
                continue
            nc = model.default_channels(key.coll, a, p, key.n_bytes).n_channels
            seen = {model.schedule(key.coll, a, p, key.n_bytes, nc).n_channels}
            out.append(Arm(a, p, -1, next(iter(seen))))
            limit = model.channel_limit(a) or model.topology.comm_channels
            for h in (range(1, limit + 1) if hints is None else hints):
                if h > limit:
                    continue
                ch = model.schedule(key.coll, a, p, key.n_bytes, h).n_channels
                if ch not in seen:
                    seen.add(ch)
                    out.append(Arm(a, p, h, ch))
    if not out:
        raise SimulationError(f"{key.label()}: no arm is both offered by NCCL and available on "
                              "this cluster")
    return out


def _models(topology: Topology, workload: ResolvedWorkload) -> dict[str, NcclModel]:
    return {c.name: NcclModel(comm_topology(topology, c)) for c in workload.comms}


# ------------------------------------------------------------------------------------------------
# Tables


def range_rules(points: Sequence[tuple[int, Arm]], coll: Coll, n_nodes: int, n_ranks: int
                ) -> list[Rule]:
    """Argmin arms at measured sizes -> covering ranges: boundaries at the midpoint in log size,
    adjacent ranges with the same arm merged; the first starts at 0, the last is open."""
    pts = sorted(points, key=lambda x: x[0])
    rules: list[Rule] = []
    for i, (size, arm) in enumerate(pts):
        lo = 0 if i == 0 else rules[-1].hi + 1 if rules else 0
        if i + 1 < len(pts):
            hi = int(math.floor(math.sqrt(size * pts[i + 1][0])))
            hi = max(hi, size)  # the measured size stays in its own range
        else:
            hi = -1
        if rules and (rules[-1].algo, rules[-1].proto, rules[-1].channels) == (
                arm.algo, arm.proto, arm.hint):
            prev = rules.pop()
            lo = prev.lo
        rules.append(Rule(coll, lo, hi, arm.algo, arm.proto, arm.hint, n_nodes, n_ranks))
    return rules


def table_text(rules: Sequence[Rule], header: Sequence[str]) -> str:
    lines = [f"# {h}" if h else "#" for h in header]
    lines.append("# collective,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks")
    lines += [r.line() for r in rules]
    return "\n".join(lines) + "\n"


def parse_table(text: str, where: str = "table") -> list[Rule]:
    """Read back the 8-field rules this module writes (the plugin's parser is the authority on
    the full format; this exists to check generated files round-trip)."""
    inv_c = {v: k for k, v in TABLE_COLLS.items()}
    inv_a = {v: k for k, v in TABLE_ALGOS.items()}
    inv_p = {v: k for k, v in TABLE_PROTOS.items()}
    rules: list[Rule] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        f = [x.strip().lower() for x in line.split(",")]
        if len(f) != 8:
            raise ConfigError(f"{where}:{n}: expected 8 fields, got {len(f)}")
        try:
            rules.append(Rule(inv_c[f[0]], int(f[1]), int(f[2]), inv_a[f[3]], inv_p[f[4]],
                              int(f[5]), int(f[6]), int(f[7])))
        except (KeyError, ValueError) as e:
            raise ConfigError(f"{where}:{n}: cannot read {raw!r} ({e})") from None
    return rules


# ------------------------------------------------------------------------------------------------
# Sweep and oracle


@dataclass
class Measurement:
    key: Key
    arm: Arm
    samples_us: list[float]

    @property
    def score(self) -> float:
        return statistics.median(self.samples_us)


@dataclass
class TablePolicy:
    name: str
    rules: list[Rule]
    choice: dict[Key, Arm]
    expected_us: dict[Key, float]  # noise-free truth time of the chosen arm
    gpu_time_us: float = 0.0  # what building it cost on the GPUs (the sweep's samples)
    measurements: list[Measurement] = field(default_factory=list)

    def text(self, header: Sequence[str]) -> str:
        return table_text(self.rules, header)


def _arm_expected(truth: PerformanceModel, model: NcclModel, key: Key, arm: Arm) -> float:
    return truth.expected_time(key.coll, key.n_bytes, arm.algo, arm.proto, arm.channels,
                               _chunk(model, key.coll, arm.algo, arm.proto), key.n_ranks,
                               key.n_nodes)


def sweep_policy(truth_spec: TruthSpec, topology: Topology, workload: ResolvedWorkload, seed: int,
                 repeats: int = SWEEP_REPEATS, hints: Sequence[int] = SWEEP_HINTS) -> TablePolicy:
    """Measure every arm for every key (noisy samples, median scored), build the range table."""
    if repeats < 1:
        raise ConfigError(f"sweep repeats {repeats}: take at least one sample per arm")
    truth = make_truth(truth_spec, int(np.random.SeedSequence([seed, 0x5EE9]).generate_state(1)[0]))
    quiet = make_truth(truth_spec, 0)
    models = _models(topology, workload)
    meas: list[Measurement] = []
    by_group: dict[tuple[Coll, int, int], dict[int, dict[Arm, float]]] = {}
    gpu = 0.0
    keys = workload_keys(workload)
    for key in keys:
        model = models[key.comm]
        scores: dict[Arm, float] = {}
        for arm in candidate_arms(model, truth, key, hints):
            chunk = _chunk(model, key.coll, arm.algo, arm.proto)
            samples = [truth.sample_time(key.coll, key.n_bytes, arm.algo, arm.proto, arm.channels,
                                         chunk, key.n_ranks, key.n_nodes, ("sweep", key.comm))
                       for _ in range(repeats)]
            gpu += sum(samples)
            m = Measurement(key, arm, samples)
            meas.append(m)
            scores[arm] = m.score
        group = by_group.setdefault((key.coll, key.n_nodes, key.n_ranks), {})
        at = group.setdefault(key.n_bytes, {})
        for arm, s in scores.items():
            at[arm] = at.get(arm, 0.0) + s
    rules: list[Rule] = []
    for (coll, nn, n), sizes in sorted(by_group.items()):
        points = [(size, min(arms, key=lambda a: arms[a])) for size, arms in sizes.items()]
        rules += range_rules(points, coll, nn, n)
    choice = {k: _rule_arm(rules, k, models[k.comm]) for k in keys}
    expected = {k: _arm_expected(quiet, models[k.comm], k, a) for k, a in choice.items()}
    return TablePolicy("sweep", rules, choice, expected, gpu, meas)


def _rule_arm(rules: Sequence[Rule], key: Key, model: NcclModel) -> Arm:
    for r in rules:
        if (r.coll == key.coll and r.n_nodes == key.n_nodes and r.n_ranks == key.n_ranks
                and r.lo <= key.n_bytes and (r.hi < 0 or key.n_bytes <= r.hi)):
            nc = r.channels if r.channels > 0 else model.default_channels(
                key.coll, r.algo, r.proto, key.n_bytes).n_channels
            return Arm(r.algo, r.proto, r.channels,
                       model.schedule(key.coll, r.algo, r.proto, key.n_bytes, nc).n_channels)
    raise SimulationError(f"no rule covers {key.label()}")  # pragma: no cover - tables cover all


def oracle_policy(truth_spec: TruthSpec, topology: Topology, workload: ResolvedWorkload
                  ) -> TablePolicy:
    """Best arm per key under the noise-free truth, over every channel hint."""
    truth = make_truth(truth_spec, 0)
    models = _models(topology, workload)
    choice: dict[Key, Arm] = {}
    expected: dict[Key, float] = {}
    for key in workload_keys(workload):
        model = models[key.comm]
        best = min(((_arm_expected(truth, model, key, a), i, a)
                    for i, a in enumerate(candidate_arms(model, truth, key, None))))
        choice[key], expected[key] = best[2], best[0]
    rules = [Rule(k.coll, k.n_bytes, k.n_bytes, a.algo, a.proto, a.hint, k.n_nodes, k.n_ranks)
             for k, a in sorted(choice.items())]
    # Two keys of the same shape and size (several communicators) must not contradict.
    dedup: dict[tuple[Coll, int, int, int], Rule] = {}
    for r in rules:
        prev = dedup.setdefault((r.coll, r.lo, r.n_nodes, r.n_ranks), r)
        if prev != r:
            raise SimulationError(f"oracle: communicators of the same shape disagree at {r.lo} B")
    return TablePolicy("oracle", list(dedup.values()), choice, expected)


def default_expected(truth_spec: TruthSpec, topology: Topology, workload: ResolvedWorkload
                     ) -> dict[Key, tuple[Arm, float]]:
    """NCCL's own arm per key (its cost model and channel count) and its noise-free time."""
    truth = make_truth(truth_spec, 0)
    models = _models(topology, workload)
    out: dict[Key, tuple[Arm, float]] = {}
    for key in workload_keys(workload):
        model = models[key.comm]
        table = model.cost_table(key.coll, key.n_bytes)
        best = min((v, i) for i, v in enumerate(table) if v >= 0)[1]
        a, p = Algo(best // len(Proto)), Proto(best % len(Proto))
        nc = model.default_channels(key.coll, a, p, key.n_bytes).n_channels
        arm = Arm(a, p, -1, model.schedule(key.coll, a, p, key.n_bytes, nc).n_channels)
        out[key] = (arm, _arm_expected(truth, model, key, arm))
    return out


# ------------------------------------------------------------------------------------------------
# Running policies side by side


@dataclass
class KeyUse:
    key: Key
    arm: str  # the arm that ran most often
    count: int  # collective instances (x communicator instances) that ran it
    total: int  # collective instances of this key
    mean_us: float


@dataclass
class PolicyOutcome:
    name: str
    env: dict[str, str]
    table: str | None
    job: JobResult
    gpu_time_us: float = 0.0
    warmup_steps: int = 1

    def steady(self) -> np.ndarray:
        s = self.job.step_comm_us
        out: np.ndarray = s[self.warmup_steps:] if len(s) > self.warmup_steps else s
        return out

    def stats(self) -> dict[str, float]:
        s = self.steady()
        return {"mean_us": float(s.mean()), "p50_us": float(np.percentile(s, 50)),
                "p95_us": float(np.percentile(s, 95)),
                "wait_mean_us": float(self.job.step_wait_us.mean())}

    def key_uses(self) -> list[KeyUse]:
        keys = op_keys(self.job.spec.workload)
        agg: dict[Key, tuple[dict[int, int], list[int]]] = {}
        for j, k in enumerate(keys):
            counts, cols = agg.setdefault(k, ({}, []))
            for code, n in self.job.choice_counts[j].items():
                counts[code] = counts.get(code, 0) + n
            cols.append(j)
        out = []
        for k, (counts, cols) in agg.items():
            code, n = max(counts.items(), key=lambda x: (x[1], -x[0]))
            a, p, ch, chunk = decode_choice(code)
            times = self.job.op_time_us[self.warmup_steps:, cols] if self.job.op_time_us.shape[0] > \
                self.warmup_steps else self.job.op_time_us[:, cols]
            out.append(KeyUse(k, f"{a.name}/{p.name} {ch} ch", n, sum(counts.values()),
                              float(times.mean())))
        return out


@dataclass
class Comparison:
    cluster: str
    workload: str
    steps: int
    seed: int
    outcomes: list[PolicyOutcome]
    tables: dict[str, TablePolicy]
    nccl_default: dict[Key, tuple[Arm, float]]

    def outcome(self, name: str) -> PolicyOutcome | None:
        return next((o for o in self.outcomes if o.name == name), None)

    def summary(self) -> list[dict[str, float | str | None]]:
        base = self.outcome("default")
        oracle = self.outcome("oracle")
        rows: list[dict[str, float | str | None]] = []
        for o in self.outcomes:
            st = o.stats()
            row: dict[str, float | str | None] = {"policy": o.name, **st}
            row["speedup_vs_default"] = (base.stats()["mean_us"] / st["mean_us"]) if base else None
            row["regret_vs_oracle"] = (st["mean_us"] / oracle.stats()["mean_us"] - 1.0) if oracle \
                else None
            row["gpu_time_us"] = o.gpu_time_us
            rows.append(row)
        return rows


def parse_policies(text: str, table: str | None) -> list[str]:
    names = [x.strip().lower() for x in text.split(",") if x.strip()]
    if not names:
        raise ConfigError("--policies is empty; give a comma-separated subset of "
                          + ",".join(POLICY_NAMES))
    bad = [n for n in names if n not in POLICY_NAMES]
    if bad:
        raise ConfigError(f"unknown policy {bad[0]!r}; choose from {','.join(POLICY_NAMES)}")
    if "static" in names and table is None:
        raise ConfigError("policy 'static' needs --table FILE")
    if table is not None and "static" not in names:
        names.append("static")
    return list(dict.fromkeys(names))


def run_policies(truth_spec: TruthSpec, topology: Topology, workload: ResolvedWorkload, steps: int,
                 seed: int, policies: Sequence[str], tables_dir: Path, plugin_path: str,
                 static_table: str | None = None, ranks_per_process: int = 8,
                 progress: ProgressFn | None = None, extra_env: dict[str, str] | None = None
                 ) -> Comparison:
    """Build the generated tables into `tables_dir`, then run every policy as its own job."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    tables: dict[str, TablePolicy] = {}
    header = [f"cclpilot sim: cluster {truth_spec.cluster}"
              + (f", profile {truth_spec.profile}" if truth_spec.profile else "")
              + f", workload {workload.name}, seed {seed}"]
    if "sweep" in policies:
        sw = sweep_policy(truth_spec, topology, workload, seed)
        tables["sweep"] = sw
        (tables_dir / "sweep.conf").write_text(sw.text(
            ["offline sweep: per-size-range argmin of measured arms"] + header
            + [f"sweep GPU time {sw.gpu_time_us / 1e6:.3f} s"]))
    if "oracle" in policies:
        orc = oracle_policy(truth_spec, topology, workload)
        tables["oracle"] = orc
        (tables_dir / "oracle.conf").write_text(orc.text(
            ["oracle: best arm per key under the noise-free ground truth"] + header))
    outcomes: list[PolicyOutcome] = []
    n_pol = len(policies)
    for i, name in enumerate(policies):
        env = dict(extra_env or {})
        table: str | None = None
        daemon = None
        if name == "default":
            env["CCLPILOT_MODE"] = "observe"
        elif name == "live":
            # A real daemon with the online tuner, in this process; the ranks run in lockstep
            # (as NCCL's collectives keep them) so plans activate where the daemon expects.
            from ..daemon.server import Daemon, DaemonConfig
            from ..tuner.online import TunerConfig, online_tuner_factory

            daemon = Daemon(DaemonConfig(run_dir=tables_dir / "live-daemon", seed=seed,
                                         brain_factory=online_tuner_factory(
                                             TunerConfig(seed=seed)))).start()
            env.update(CCLPILOT_MODE="live", CCLPILOT_DAEMON=daemon.endpoint,
                       CCLPILOT_JOB_ID=f"sim-{truth_spec.cluster}")
        else:
            if name == "static":
                if static_table is None:
                    raise ConfigError("policy 'static' needs --table FILE")
                p = Path(static_table)
                if not p.is_file():
                    raise ConfigError(f"--table {static_table}: no such file")
                table = str(p.resolve())
            else:
                table = str((tables_dir / f"{name}.conf").resolve())
            env["CCLPILOT_MODE"] = "static"
            env["CCLPILOT_TABLE"] = table
        spec = JobSpec(truth_spec, topology, workload, steps, seed, env, plugin_path,
                       ranks_per_process=ranks_per_process, lockstep=name == "live")

        def prog(done: int, total: int, i: int = i) -> None:
            if progress is not None:
                progress(i * total + done, n_pol * total)

        try:
            job = run_job(spec, prog)
        finally:
            if daemon is not None:
                daemon.stop()
        gpu = tables["sweep"].gpu_time_us if name == "sweep" else 0.0
        outcomes.append(PolicyOutcome(name, env, table, job, gpu))
    return Comparison(truth_spec.cluster, workload.name, steps, seed, outcomes, tables,
                      default_expected(truth_spec, topology, workload))


def env_snapshot() -> dict[str, str]:
    """The NCCL_*/CCLPILOT_* variables of the calling environment (recorded, not used)."""
    return {k: v for k, v in os.environ.items() if k.startswith(("NCCL_", "CCLPILOT_"))}
