"""Multi-rank jobs: N simulated ranks in P OS processes, all driving the real plugin.

A job places every rank of a cluster preset in one of P worker processes (`ranks_per_process`
consecutive ranks each; NCCL allows several ranks per process too). Each rank of each
communicator is its own plugin context (SimComm); ranks of one communicator share its comm_id.
Every rank issues the workload's collective sequence for `steps` steps.

Consistency is the point: for every collective instance the (algorithm, protocol, channels
actually run, chunk size) of every rank is collected and compared. Ranks of one process are
compared at once (the first disagreement aborts the worker); across processes the parent compares
the per-instance choices afterwards. A disagreement is what makes a real job hang, so it fails the
run with a SimulationError naming the step, the collective and the ranks' choices.

Durations: every communicator instance has its own ground-truth model (seeded from the run seed
and the instance), sampled once per collective instance with the arm that ran, so every process
hosting a rank of that instance computes the same time without talking to the others. Each rank
also arrives late by a seeded skew (identical in every process); the collective completes when the
last rank arrived, so a rank's kernel, as its profiler sees it, lasts (last arrival - own arrival)
+ the collective's time. Policies run with the same seed see the same noise (common random
numbers), which makes their comparison much sharper than independent runs would.

Everything process-wide in the plugin (mode, table, stats file) is set in the worker's
environment before its first context exists; a job therefore always gets fresh processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..errors import CclpilotError, ConfigError, SimulationError
from .harness import Decision, Launch, SimComm, SimNccl
from .topology import Algo, Coll, Proto, Topology
from .truth import PerformanceModel
from .workloads import ResolvedComm, ResolvedWorkload

ProgressFn = Callable[[int, int], None]  # (units done, units total)

# Choice codes: one int64 per (algo, proto, channels, chunk) so arrays compare quickly.
_CH_BITS = 8
_PROTO_BITS = 4
_ALGO_BITS = 4


def encode_choice(algo: int, proto: int, channels: int, chunk: int) -> int:
    return (((chunk << _ALGO_BITS | algo) << _PROTO_BITS | proto) << _CH_BITS) | channels


def decode_choice(code: int) -> tuple[Algo, Proto, int, int]:
    channels = code & ((1 << _CH_BITS) - 1)
    code >>= _CH_BITS
    proto = code & ((1 << _PROTO_BITS) - 1)
    code >>= _PROTO_BITS
    algo = code & ((1 << _ALGO_BITS) - 1)
    chunk = code >> _ALGO_BITS
    return Algo(algo), Proto(proto), channels, chunk


def choice_str(code: int) -> str:
    a, p, ch, chunk = decode_choice(code)
    return f"{a.name}/{p.name} {ch} ch chunk {chunk}"


# ------------------------------------------------------------------------------------------------
# Placement


@dataclass(frozen=True)
class CommInstance:
    """One NCCL communicator of the job: an instance of a workload communicator."""

    comm: int  # index into ResolvedWorkload.comms
    index: int  # instance number among this workload communicator's instances
    comm_id: int  # NCCL's commHash stand-in
    ranks: tuple[int, ...]  # global ranks, in communicator-rank order


def comm_instances(comm_index: int, comm: ResolvedComm, n_ranks: int, n_nodes: int
                   ) -> list[CommInstance]:
    """How a resolved communicator tiles the cluster.

    The whole world: one instance. One node's worth or less (n_nodes == 1, a tensor-parallel
    group): consecutive blocks. Spread over every node with fewer ranks than the world (data
    parallel beside tensor parallel): ranks with the same position modulo the group count.
    Anything else (an explicit shape): one instance on the first nodes.
    """
    ppn = n_ranks // n_nodes
    size = comm.n_ranks

    def cid(i: int) -> int:
        # Stable, distinct and uint64: the name's bytes would be too, but this is readable in logs.
        return ((comm_index + 1) << 32) | (i + 1)

    if size == n_ranks:
        return [CommInstance(comm_index, 0, cid(0), tuple(range(n_ranks)))]
    if comm.n_nodes == 1 and ppn % size == 0:
        return [CommInstance(comm_index, i, cid(i), tuple(range(i * size, (i + 1) * size)))
                for i in range(n_ranks // size)]
    if comm.n_nodes == n_nodes and n_ranks % size == 0:
        groups = n_ranks // size
        return [CommInstance(comm_index, i, cid(i), tuple(range(i, n_ranks, groups)))
                for i in range(groups)]
    per_node = size // comm.n_nodes
    ranks = tuple(node * ppn + j for node in range(comm.n_nodes) for j in range(per_node))
    return [CommInstance(comm_index, 0, cid(0), ranks)]


def comm_topology(cluster: Topology, comm: ResolvedComm) -> Topology:
    """NCCL's view of a sub-communicator of `cluster`: the same graphs and channels, its own shape.

    An approximation: NCCL searches again per communicator, but on these regular machines a
    sub-communicator finds the same per-channel speeds. What does change is which algorithms
    exist: NVLS needs several GPUs of a node, NVLS_TREE several nodes, PAT one GPU per node.
    """
    if comm.n_ranks == cluster.n_ranks and comm.n_nodes == cluster.n_nodes:
        return cluster
    graphs = dict(cluster.graphs)
    ppn = comm.n_ranks // comm.n_nodes
    nvls = cluster.nvls_support and ppn > 1
    if not nvls:
        graphs.pop(Algo.NVLS, None)
        graphs.pop(Algo.NVLS_TREE, None)
    if comm.n_nodes == 1:
        graphs.pop(Algo.NVLS_TREE, None)
    if ppn == 1 and Algo.PAT not in graphs and Algo.RING in graphs:
        graphs[Algo.PAT] = graphs[Algo.RING]
    return replace(cluster, name=f"{cluster.name}/{comm.name}", n_ranks=comm.n_ranks,
                   n_nodes=comm.n_nodes, graphs=graphs, nvls_support=nvls,
                   nvls_channels=cluster.nvls_channels if nvls else 0)


# ------------------------------------------------------------------------------------------------
# The job description handed to every worker (picklable).


@dataclass(frozen=True)
class TruthSpec:
    """How a worker builds the ground truth: a cluster preset, or a measured profile file."""

    cluster: str
    profile: str | None = None


@dataclass(frozen=True)
class JobSpec:
    truth: TruthSpec
    topology: Topology
    workload: ResolvedWorkload
    steps: int
    seed: int
    env: dict[str, str]  # CCLPILOT_* settings of this job's plugin processes
    plugin_path: str
    ranks_per_process: int = 8
    skew_base_us: float = 2.0  # mean arrival skew of a rank with no compute before the collective
    skew_frac: float = 0.01  # plus this fraction of the compute gap (kernels finish unevenly)
    progress_every: int = 10  # steps between progress reports
    # Test hook: {global rank: extra environment} is impossible (settings are per process), so
    # the inconsistency tests give processes different settings instead: {process: env}.
    process_env: dict[int, dict[str, str]] = field(default_factory=dict)
    # Live mode: processes wait for each other at every step boundary, as NCCL's collectives
    # would make them, so no rank runs thousands of calls ahead of a plan's activation point.
    lockstep: bool = False

    @property
    def n_ranks(self) -> int:
        return self.topology.n_ranks

    @property
    def n_processes(self) -> int:
        return -(-self.n_ranks // self.ranks_per_process)

    def instances(self) -> list[CommInstance]:
        out: list[CommInstance] = []
        t = self.topology
        for i, c in enumerate(self.workload.comms):
            out += comm_instances(i, c, t.n_ranks, t.n_nodes)
        return out


def make_truth(spec: TruthSpec, seed: int) -> PerformanceModel:
    """A fresh ground-truth model for one communicator instance."""
    from .clusters import cluster

    preset = cluster(spec.cluster)
    if spec.profile is not None:
        # The cluster preset still gives NCCL's view (topology) and the noise; the measurements
        # replace the preset's physics.
        from .profiles import load_profile

        t = preset.topology
        return load_profile([spec.profile], noise=preset.noise, seed=seed, ranks=t.n_ranks,
                            nodes=t.n_nodes)
    return preset.truth(seed=seed)


def validate_job(spec: JobSpec) -> None:
    if spec.steps < 1:
        raise ConfigError(f"steps={spec.steps}: run at least one step")
    if spec.ranks_per_process < 1:
        raise ConfigError(f"ranks per process {spec.ranks_per_process}: use at least 1")
    if spec.skew_base_us < 0 or spec.skew_frac < 0:
        raise ConfigError("arrival skew parameters must be >= 0")
    for inst in spec.instances():
        c = spec.workload.comms[inst.comm]
        if len(inst.ranks) != c.n_ranks:
            raise ConfigError(f"communicator {c.name!r} ({c.n_ranks} ranks on {c.n_nodes} nodes) "
                              f"does not tile the cluster {spec.topology.name}")


# ------------------------------------------------------------------------------------------------
# Results


@dataclass
class WorkerResult:
    process: int
    ranks: tuple[int, ...]
    # per hosted instance (global instance number): (steps, ops_of_comm) choice codes and times
    choices: dict[int, np.ndarray]
    times_us: dict[int, np.ndarray]
    waits_us: dict[int, np.ndarray]
    decisions: int  # getCollInfo-driving run_collective calls made
    wall_s: float
    violations: list[str]
    max_call_s: float = 0.0  # longest wall time of one rank's collective call (plugin included)


@dataclass
class JobResult:
    spec: JobSpec
    instances: list[CommInstance]
    op_time_us: np.ndarray  # (steps, ops): the collective's time, max over its instances
    op_wait_us: np.ndarray  # (steps, ops): arrival skew waited before it could start
    op_choice: list[list[int]]  # per op: choice code per instance (from step `steps-1`)
    choice_counts: list[dict[int, int]]  # per op: choice code -> instances x steps that ran it
    decisions: int
    wall_s: float
    violations: list[str]
    # Longest wall time of one rank's collective call: bounds how long the plugin ever held a
    # collective back (waiting for the daemon at a plan boundary or at connection time).
    max_call_s: float = 0.0

    @property
    def step_comm_us(self) -> np.ndarray:
        """Per step: sum of collective times (what a policy changes)."""
        out: np.ndarray = self.op_time_us.sum(axis=1)
        return out

    @property
    def step_wait_us(self) -> np.ndarray:
        out: np.ndarray = self.op_wait_us.sum(axis=1)
        return out


# ------------------------------------------------------------------------------------------------
# Worker side


class _Durations:
    """duration_fn for one collective instance: the truth is sampled once, with the first
    rank's arm; a rank running a different arm gets that arm's noise-free time (the run fails
    on the mismatch anyway, but the plugin still needs a number)."""

    __slots__ = ("truth", "n_ranks", "n_nodes", "key", "arrival", "last", "t", "code", "comm")

    def __init__(self, truth: PerformanceModel, n_ranks: int, n_nodes: int, comm: int) -> None:
        self.truth = truth
        self.n_ranks = n_ranks
        self.n_nodes = n_nodes
        self.comm = comm
        self.t = 0.0
        self.code = -1
        self.arrival = 0.0
        self.last = 0.0

    def __call__(self, launch: Launch) -> float:
        code = encode_choice(launch.algo, launch.proto, launch.n_channels, launch.chunk_size)
        if self.code < 0:
            self.code = code
            self.t = self.truth.sample_time(launch.coll, launch.n_bytes, launch.algo, launch.proto,
                                            launch.n_channels, launch.chunk_size, self.n_ranks,
                                            self.n_nodes, self.comm)
            t = self.t
        elif code == self.code:
            t = self.t
        else:
            t = self.truth.expected_time(launch.coll, launch.n_bytes, launch.algo, launch.proto,
                                         launch.n_channels, launch.chunk_size, self.n_ranks,
                                         self.n_nodes)
        return self.last - self.arrival + t


def _skews(spec: JobSpec, step: int, gaps: np.ndarray) -> np.ndarray:
    """(ops, ranks) arrival delays in µs; identical in every process (seeded by step)."""
    rng = np.random.default_rng([spec.seed, step, 0x5E3])
    scale = spec.skew_base_us + spec.skew_frac * gaps
    out: np.ndarray = rng.exponential(1.0, size=(len(gaps), spec.n_ranks)) * scale[:, None]
    return out


def _worker_main(spec: JobSpec, process: int, out_q: Any, barrier: Any = None) -> None:
    try:
        env = dict(spec.env)
        env.update(spec.process_env.get(process, {}))
        for name in [n for n in os.environ if n.startswith("CCLPILOT_")]:
            del os.environ[name]
        os.environ.update(env)
        result = _run_worker(spec, process, out_q, barrier)
        out_q.put(("result", process, result))
    except CclpilotError as e:
        out_q.put(("error", process, type(e).__name__, str(e)))
    except BaseException as e:  # noqa: BLE001 - the parent must hear about every failure
        out_q.put(("error", process, type(e).__name__, f"{e}\n{traceback.format_exc()}"))


def _run_worker(spec: JobSpec, process: int, out_q: Any, barrier: Any = None) -> WorkerResult:
    t0 = time.perf_counter()
    lo = process * spec.ranks_per_process
    hosted = tuple(range(lo, min(lo + spec.ranks_per_process, spec.n_ranks)))
    hosted_set = set(hosted)
    wl = spec.workload
    instances = spec.instances()
    # Per workload communicator: its topology and one SimNccl (several per process is what
    # several communicators of different shapes in one NCCL process look like).
    sims: dict[int, SimNccl] = {}
    local: dict[int, list[tuple[int, SimComm]]] = {}  # instance -> [(global rank, SimComm)]
    truths: dict[int, PerformanceModel] = {}
    ops_of: dict[int, list[int]] = {}  # workload comm -> op indices
    for j, op in enumerate(wl.ops):
        ops_of.setdefault(op.comm, []).append(j)
    try:
        for k, inst in enumerate(instances):
            mine = [(r, i) for i, r in enumerate(inst.ranks) if r in hosted_set]
            if not mine or inst.comm not in ops_of:
                continue
            if inst.comm not in sims:
                topo = comm_topology(spec.topology, wl.comms[inst.comm])
                sims[inst.comm] = SimNccl(topo, spec.plugin_path)
            sim = sims[inst.comm]
            name = wl.comms[inst.comm].name
            local[k] = [(r, sim.create_comm(inst.comm_id, i, f"{name}#{inst.index}"))
                        for r, i in mine]
            truths[k] = make_truth(spec.truth, int(np.random.SeedSequence(
                [spec.seed, k]).generate_state(1)[0]))
        gaps = np.array([op.gap_us for op in wl.ops], dtype=float)
        choices = {k: np.zeros((spec.steps, len(ops_of[instances[k].comm])), dtype=np.int64)
                   for k in local}
        times = {k: np.zeros_like(v, dtype=float) for k, v in choices.items()}
        waits = {k: np.zeros_like(v, dtype=float) for k, v in choices.items()}
        n_dec = 0
        max_call = 0.0
        # Per op: the hosted instances it runs on, precomputed so the hot loop only iterates.
        plan: list[list[tuple[int, int, list[tuple[int, SimComm]], ResolvedComm, tuple[int, ...]]]]
        plan = [[] for _ in wl.ops]
        for k, members in local.items():
            inst = instances[k]
            for col, j in enumerate(ops_of[inst.comm]):
                plan[j].append((k, col, members, wl.comms[inst.comm], inst.ranks))
        for step in range(spec.steps):
            for tr in truths.values():
                tr.set_step(step)
            skew = _skews(spec, step, gaps)
            for j, op in enumerate(wl.ops):
                for k, col, members, comm, ranks in plan[j]:
                    arrive = skew[j, list(ranks)]
                    dur = _Durations(truths[k], comm.n_ranks, comm.n_nodes, k)
                    dur.last = float(arrive.max())
                    codes: list[tuple[int, Decision]] = []
                    for r, c in members:
                        dur.arrival = float(skew[j, r])
                        t_call = time.perf_counter()
                        d = c.run_collective(op.coll, op.n_bytes, duration_fn=dur)
                        max_call = max(max_call, time.perf_counter() - t_call)
                        codes.append((r, d))
                    n_dec += len(members)
                    first = encode_choice(codes[0][1].algo, codes[0][1].proto, codes[0][1].channels,
                                          codes[0][1].chunk_size)
                    for r, d in codes[1:]:
                        code = encode_choice(d.algo, d.proto, d.channels, d.chunk_size)
                        if code != first:
                            raise SimulationError(_hang_message(
                                step, j, op.label, comm.name, instances[k],
                                {codes[0][0]: first, r: code}))
                    choices[k][step, col] = first
                    times[k][step, col] = dur.t
                    waits[k][step, col] = dur.last - float(arrive.min())
            if barrier is not None:
                barrier.wait(timeout=120.0)
            if (step + 1) % spec.progress_every == 0 or step + 1 == spec.steps:
                out_q.put(("progress", process, step + 1))
        violations: list[str] = []
        for sim in sims.values():
            violations += sim.violations
        return WorkerResult(process, hosted, choices, times, waits, n_dec,
                            time.perf_counter() - t0, violations, max_call)
    finally:
        for sim in sims.values():
            sim.close()


def _hang_message(step: int, op: int, label: str, comm: str, inst: CommInstance,
                  by_rank: dict[int, int]) -> str:
    groups: dict[int, list[int]] = {}
    for r, code in by_rank.items():
        groups.setdefault(code, []).append(r)
    parts = "; ".join(f"rank(s) {', '.join(map(str, sorted(rs)))} chose {choice_str(code)}"
                      for code, rs in groups.items())
    what = f" ({label})" if label else ""
    return (f"ranks disagree at step {step}, collective #{op}{what} on communicator {comm!r} "
            f"instance {inst.index} (comm_id {inst.comm_id:#x}): {parts}. On a real cluster this "
            "collective hangs or corrupts data; every rank must decide from rank-invariant "
            "inputs and the same table/plan.")


# ------------------------------------------------------------------------------------------------
# Parent side


def run_job(spec: JobSpec, progress: ProgressFn | None = None, timeout_s: float = 3600.0
            ) -> JobResult:
    """Run the job in fresh spawn-started processes and check cross-process consistency."""
    validate_job(spec)
    ctx = mp.get_context("spawn")
    out_q: Any = ctx.Queue()
    barrier = ctx.Barrier(spec.n_processes) if spec.lockstep and spec.n_processes > 1 else None
    procs = [ctx.Process(target=_worker_main, args=(spec, p, out_q, barrier), daemon=True,
                         name=f"cclpilot-sim-{p}") for p in range(spec.n_processes)]
    t0 = time.perf_counter()
    for pr in procs:
        pr.start()
    results: dict[int, WorkerResult] = {}
    done_steps = [0] * len(procs)
    total = spec.steps * len(procs)
    try:
        while len(results) < len(procs):
            try:
                msg = out_q.get(timeout=1.0)
            except queue.Empty:
                if time.perf_counter() - t0 > timeout_s:
                    raise SimulationError(f"simulated job did not finish within {timeout_s:.0f} s")
                dead = [p for i, p in enumerate(procs) if i not in results and not p.is_alive()
                        and p.exitcode not in (0, None)]
                if dead:
                    raise SimulationError(f"simulator worker {dead[0].name} died with exit code "
                                          f"{dead[0].exitcode} (crash in the plugin?)")
                continue
            kind = msg[0]
            if kind == "progress":
                done_steps[msg[1]] = msg[2]
                if progress is not None:
                    progress(sum(done_steps), total)
            elif kind == "result":
                results[msg[1]] = msg[2]
            else:
                _, proc_i, err_type, text = msg
                if err_type in ("SimulationError", "PluginContractError"):
                    raise SimulationError(text)
                if err_type in ("ConfigError",):
                    raise ConfigError(text)
                raise SimulationError(f"simulator worker {proc_i} failed: {err_type}: {text}")
        for pr in procs:
            pr.join(timeout=10)
    finally:
        for pr in procs:
            if pr.is_alive():
                pr.terminate()
                pr.join(timeout=5)
    return _combine(spec, results, time.perf_counter() - t0)


def _combine(spec: JobSpec, results: dict[int, WorkerResult], wall: float) -> JobResult:
    wl = spec.workload
    instances = spec.instances()
    ops_of: dict[int, list[int]] = {}
    for j, op in enumerate(wl.ops):
        ops_of.setdefault(op.comm, []).append(j)
    n_ops = len(wl.ops)
    op_time = np.zeros((spec.steps, n_ops))
    op_wait = np.zeros((spec.steps, n_ops))
    op_choice: list[list[int]] = [[] for _ in range(n_ops)]
    counts: list[dict[int, int]] = [{} for _ in range(n_ops)]
    for k, inst in enumerate(instances):
        if inst.comm not in ops_of:
            continue
        holders = [r for r in results.values() if k in r.choices]
        if not holders:
            raise SimulationError(f"no process ran communicator instance {k}")
        ref = holders[0]
        for other in holders[1:]:
            diff = np.argwhere(other.choices[k] != ref.choices[k])
            if diff.size:
                step, col = (int(x) for x in diff[0])
                j = ops_of[inst.comm][col]
                by_rank = {}
                for h in (ref, other):
                    rank = next(r for r in inst.ranks if r in h.ranks)
                    by_rank[rank] = int(h.choices[k][step, col])
                raise SimulationError(_hang_message(step, j, wl.ops[j].label,
                                                    wl.comms[inst.comm].name, inst, by_rank))
        cols = ops_of[inst.comm]
        op_time[:, cols] = np.maximum(op_time[:, cols], ref.times_us[k])
        op_wait[:, cols] = np.maximum(op_wait[:, cols], ref.waits_us[k])
        for col, j in enumerate(cols):
            op_choice[j].append(int(ref.choices[k][-1, col]))
            vals, cnt = np.unique(ref.choices[k][:, col], return_counts=True)
            for v, c in zip(vals.tolist(), cnt.tolist()):
                counts[j][int(v)] = counts[j].get(int(v), 0) + int(c)
    violations = [v for r in results.values() for v in r.violations]
    return JobResult(spec, instances, op_time, op_wait, op_choice, counts,
                     sum(r.decisions for r in results.values()), wall, violations,
                     max(r.max_call_s for r in results.values()))


def default_plugin_path() -> str:
    from .. import paths

    return str(paths.plugin_library())


__all__ = [
    "CommInstance", "JobResult", "JobSpec", "ProgressFn", "TruthSpec", "WorkerResult",
    "choice_str", "comm_instances", "comm_topology", "decode_choice", "default_plugin_path",
    "encode_choice", "make_truth", "run_job", "validate_job",
]
