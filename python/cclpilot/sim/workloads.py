"""Training-step workloads: what collectives a framework issues per step, on which communicators.

File format (JSON, validated; unknown keys are errors), documented in docs/simulator-model.md:

    {"format": "cclpilot-workload/1", "name": "...", "description": "...",
     "communicators": [{"name": "world", "layout": "world"},
                       {"name": "tp", "layout": "group", "group_size": 8},
                       {"name": "dp", "layout": "stride", "group_size": 8},
                       {"name": "x", "layout": "explicit", "n_ranks": 4, "n_nodes": 2}],
     "step": [{"comm": "world", "coll": "allreduce", "bytes": 26214400, "dtype": "bf16",
               "gap_us": 1200.0, "label": "bucket 3"},
              {"comm": "world", "coll": "allgather", "elements": 202383360, "dtype": "bf16"}],
     "tail_us": 5000.0}

Sizes follow NCCL's nBytes (reference §3.4). `bytes` is used as is. `elements` is a tensor's full
element count: for AllGather/ReduceScatter it is padded up to a multiple of the communicator's
size, as FSDP pads its flat parameters, so the same file scales to any data-parallel width.
`gap_us` is compute before the collective; `tail_us` is compute after the last one.

Presets are built for a cluster shape (ranks, nodes) from model dimensions; how each size is
derived is written next to the code and in docs/simulator-model.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigError
from .topology import Coll

DTYPE_BYTES: dict[str, int] = {
    "int8": 1, "uint8": 1, "fp8": 1, "fp16": 2, "bf16": 2, "fp32": 4, "int32": 4, "uint32": 4,
    "int64": 8, "uint64": 8, "fp64": 8,
}
DType = Literal["int8", "uint8", "fp8", "fp16", "bf16", "fp32", "int32", "uint32", "int64",
                "uint64", "fp64"]
CollName = Literal["broadcast", "reduce", "allgather", "reducescatter", "allreduce"]
COLL_BY_NAME: dict[str, Coll] = {c.name.lower(): c for c in Coll}
MIB = 1024 * 1024


class CommunicatorSpec(BaseModel):
    """A communicator, described relative to the cluster so a workload scales to it.

    world: every rank. group: `group_size` consecutive ranks inside one node (tensor parallel).
    stride: one rank from each such group (data parallel beside tensor parallel): world /
    group_size ranks on every node. explicit: fixed n_ranks on n_nodes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    layout: Literal["world", "group", "stride", "explicit"] = "world"
    group_size: int | None = Field(default=None, ge=1)
    n_ranks: int | None = Field(default=None, ge=2)
    n_nodes: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _fields_match_layout(self) -> CommunicatorSpec:
        needs_group = self.layout in ("group", "stride")
        if needs_group != (self.group_size is not None):
            raise ValueError(f"communicator {self.name!r}: group_size is required for layouts "
                             "'group' and 'stride' and not allowed otherwise")
        explicit = self.layout == "explicit"
        if explicit != (self.n_ranks is not None and self.n_nodes is not None):
            raise ValueError(f"communicator {self.name!r}: n_ranks and n_nodes are required for "
                             "layout 'explicit' and not allowed otherwise")
        if not explicit and (self.n_ranks is not None or self.n_nodes is not None):
            raise ValueError(f"communicator {self.name!r}: n_ranks/n_nodes only with 'explicit'")
        return self


class OpSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    comm: str
    coll: CollName
    bytes: int | None = Field(default=None, ge=1)
    elements: int | None = Field(default=None, ge=1)
    dtype: DType = "bf16"
    gap_us: float = Field(default=0.0, ge=0.0)
    label: str = ""

    @model_validator(mode="after")
    def _one_size(self) -> OpSpec:
        if (self.bytes is None) == (self.elements is None):
            raise ValueError("give exactly one of 'bytes' and 'elements'")
        if self.bytes is not None and self.bytes % DTYPE_BYTES[self.dtype]:
            raise ValueError(f"bytes={self.bytes} is not a multiple of the {self.dtype} size")
        return self


class Workload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["cclpilot-workload/1"] = "cclpilot-workload/1"
    name: str = Field(min_length=1)
    description: str = ""
    communicators: list[CommunicatorSpec] = Field(min_length=1)
    step: list[OpSpec] = Field(min_length=1)
    tail_us: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _comms_known(self) -> Workload:
        names = [c.name for c in self.communicators]
        if len(set(names)) != len(names):
            raise ValueError(f"communicator names must be unique, got {names}")
        for i, op in enumerate(self.step):
            if op.comm not in names:
                raise ValueError(f"step[{i}] uses communicator {op.comm!r}; defined: {names}")
        return self


@dataclass(frozen=True)
class ResolvedComm:
    name: str
    n_ranks: int
    n_nodes: int


@dataclass(frozen=True)
class ResolvedOp:
    comm: int  # index into ResolvedWorkload.comms
    coll: Coll
    n_bytes: int  # NCCL's nBytes
    gap_us: float
    label: str


@dataclass(frozen=True)
class ResolvedWorkload:
    """A workload placed on a cluster shape: concrete communicators and NCCL byte counts."""

    name: str
    comms: tuple[ResolvedComm, ...]
    ops: tuple[ResolvedOp, ...]
    tail_us: float

    def bytes_by_comm(self) -> dict[str, int]:
        out: dict[str, int] = {c.name: 0 for c in self.comms}
        for op in self.ops:
            out[self.comms[op.comm].name] += op.n_bytes
        return out


def _resolve_comm(spec: CommunicatorSpec, n_ranks: int, n_nodes: int) -> ResolvedComm:
    gpn = n_ranks // n_nodes
    if spec.layout == "world":
        return ResolvedComm(spec.name, n_ranks, n_nodes)
    if spec.layout == "explicit":
        assert spec.n_ranks is not None and spec.n_nodes is not None
        if spec.n_ranks > n_ranks or spec.n_nodes > n_nodes or spec.n_ranks % spec.n_nodes:
            raise ConfigError(f"communicator {spec.name!r} ({spec.n_ranks} ranks on {spec.n_nodes} "
                              f"nodes) does not fit a cluster of {n_ranks} ranks on {n_nodes} nodes")
        return ResolvedComm(spec.name, spec.n_ranks, spec.n_nodes)
    g = spec.group_size
    assert g is not None
    if g > gpn or gpn % g:
        raise ConfigError(f"communicator {spec.name!r}: group_size {g} must divide the "
                          f"{gpn} GPUs of a node")
    if spec.layout == "group":
        return ResolvedComm(spec.name, g, 1)
    return ResolvedComm(spec.name, n_ranks // g, n_nodes)


def resolve(workload: Workload, n_ranks: int, n_nodes: int) -> ResolvedWorkload:
    """Place `workload` on a cluster of n_ranks GPUs on n_nodes nodes (same count per node)."""
    if n_nodes < 1 or n_ranks < 1 or n_ranks % n_nodes:
        raise ConfigError(f"cluster of {n_ranks} ranks on {n_nodes} nodes: need the same number "
                          "of GPUs on every node")
    comms = tuple(_resolve_comm(c, n_ranks, n_nodes) for c in workload.communicators)
    index = {c.name: i for i, c in enumerate(comms)}
    ops: list[ResolvedOp] = []
    for op in workload.step:
        i = index[op.comm]
        size = comms[i].n_ranks
        if size < 2:
            continue  # NCCL never reaches the tuner for one rank (reference §3.2): nothing to run
        coll = COLL_BY_NAME[op.coll]
        if op.bytes is not None:
            n_bytes = op.bytes
        else:
            assert op.elements is not None
            elems = op.elements
            if coll in (Coll.ALLGATHER, Coll.REDUCESCATTER):
                elems = -(-elems // size) * size
            n_bytes = elems * DTYPE_BYTES[op.dtype]
        ops.append(ResolvedOp(i, coll, n_bytes, op.gap_us, op.label))
    if not ops:
        raise ConfigError(f"workload {workload.name!r} has no collective with >= 2 ranks on a "
                          f"cluster of {n_ranks} ranks on {n_nodes} nodes")
    return ResolvedWorkload(workload.name, comms, tuple(ops), workload.tail_us)


def load_workload(path: str | Path) -> Workload:
    """Read and validate a workload JSON file; errors name the file and what to fix."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read workload file {p}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}:{e.lineno}: not valid JSON: {e.msg}") from None
    try:
        return Workload.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or '(top level)'}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigError(f"{p}: invalid workload: {problems}") from None


def save_workload(workload: Workload, path: str | Path) -> None:
    Path(path).write_text(workload.model_dump_json(indent=2, exclude_none=True) + "\n",
                          encoding="utf-8")


# -- model dimensions and what frameworks issue for them -------------------------------------------


@dataclass(frozen=True)
class Transformer:
    """Decoder-only transformer dimensions (the numbers the model cards publish)."""

    name: str
    hidden: int
    layers: int
    ffn: int
    vocab: int
    seq: int
    gated_mlp: bool = False  # SwiGLU (Llama): three ffn matrices, no biases, RMSNorm
    tied_embeddings: bool = True
    learned_positions: bool = True

    def layer_tensors(self) -> list[int]:
        """Element counts of one layer's parameters, in registration order."""
        h, f = self.hidden, self.ffn
        if self.gated_mlp:  # Llama: attn norm, q, k, v, o, mlp norm, gate, up, down
            return [h, h * h, h * h, h * h, h * h, h, f * h, f * h, h * f]
        # GPT-2 style: ln1 (w, b), qkv (w, b), attn proj (w, b), ln2 (w, b), fc (w, b), proj (w, b)
        return [h, h, 3 * h * h, 3 * h, h * h, h, h, h, f * h, f, h * f, h]

    def layer_params(self) -> int:
        return sum(self.layer_tensors())

    def head_tensors(self) -> list[int]:
        """Parameters outside the layers, registration order: embeddings first, final norm,
        untied output head last."""
        t = [self.vocab * self.hidden]
        if self.learned_positions:
            t.append(self.seq * self.hidden)
        t += [self.hidden] if self.gated_mlp else [self.hidden, self.hidden]
        if not self.tied_embeddings:
            t.append(self.vocab * self.hidden)
        return t

    def all_tensors(self) -> list[int]:
        """model.parameters() order: embeddings, layers, final norm (and head)."""
        head = self.head_tensors()
        n_embed = 2 if self.learned_positions else 1
        out = head[:n_embed]
        for _ in range(self.layers):
            out += self.layer_tensors()
        return out + head[n_embed:]

    def params(self) -> int:
        return sum(self.all_tensors())


GPT_1_3B = Transformer("gpt-1.3b", hidden=2048, layers=24, ffn=8192, vocab=50257, seq=2048)
GPT_350M = Transformer("gpt-350m", hidden=1024, layers=24, ffn=4096, vocab=50257, seq=1024)
GPT_13B = Transformer("gpt-13b", hidden=5120, layers=40, ffn=20480, vocab=50304, seq=2048)
LLAMA2_7B = Transformer("llama-2-7b", hidden=4096, layers=32, ffn=11008, vocab=32000, seq=4096,
                        gated_mlp=True, tied_embeddings=False, learned_positions=False)

# Sustained dense throughput assumed for compute gaps (bf16, ~30-40% of an H100's 989 TFLOP/s);
# gaps only set the pacing between collectives, never their durations.
ACHIEVED_TFLOPS = 350.0


def _compute_us(params: int, tokens: int, passes: int) -> float:
    """Dense compute of `passes` x 2 FLOPs per parameter per token (fwd = 1 pass, bwd = 2)."""
    return 2.0 * passes * params * tokens / (ACHIEVED_TFLOPS * 1e6)


def ddp_buckets(tensor_bytes: list[int], cap_bytes: int = 25 * MIB,
                first_cap_bytes: int = 1 * MIB) -> list[list[int]]:
    """PyTorch DDP's bucket assignment (`_compute_bucket_assignment_by_size`): gradients in
    reverse registration order, never split; a bucket closes as soon as it reaches its limit,
    which is 1 MiB for the first bucket and bucket_cap_mb for the rest."""
    buckets: list[list[int]] = []
    cur: list[int] = []
    size = 0
    limit = first_cap_bytes
    for b in reversed(tensor_bytes):
        cur.append(b)
        size += b
        if size >= limit:
            buckets.append(cur)
            cur, size, limit = [], 0, cap_bytes
    if cur:
        buckets.append(cur)
    return buckets


def ddp_workload(model: Transformer, dtype: DType, micro_batch: int = 1,
                 cap_mb: int = 25) -> Workload:
    """DDP: one all-reduce per gradient bucket over the whole world, fired as backward makes
    the bucket's gradients ready; forward compute precedes the first."""
    esize = DTYPE_BYTES[dtype]
    tensors = model.all_tensors()
    buckets = ddp_buckets([t * esize for t in tensors], cap_mb * MIB)
    tokens = micro_batch * model.seq
    ops: list[OpSpec] = []
    for i, bucket in enumerate(buckets):
        elems = sum(bucket) // esize
        gap = _compute_us(elems, tokens, 2)
        if i == 0:
            gap += _compute_us(model.params(), tokens, 1)
        ops.append(OpSpec(comm="world", coll="allreduce", bytes=sum(bucket), dtype=dtype,
                          gap_us=round(gap, 3), label=f"grad bucket {i}"))
    return Workload(
        name=f"ddp-{model.name}-{dtype}",
        description=(f"PyTorch DDP, {model.name} ({model.params():,} params), {dtype} gradients, "
                     f"bucket_cap_mb={cap_mb}, first bucket 1 MiB: {len(buckets)} all-reduces"),
        communicators=[CommunicatorSpec(name="world")], step=ops,
        tail_us=2000.0,  # optimizer step
    )


def fsdp_workload(model: Transformer, micro_batch: int = 1) -> Workload:
    """FSDP FULL_SHARD, one unit per decoder layer plus the root (embeddings, final norm, head),
    bf16 parameters and gradient reduction. Forward: all-gather root, then each layer. Backward
    (BACKWARD_PRE prefetch): all-gather layer i-1 before reduce-scattering layer i; the root's
    reduce-scatter last. NCCL sees each unit's full (padded) size for both collectives."""
    layer = model.layer_params()
    root = sum(model.head_tensors())
    tokens = micro_batch * model.seq
    fwd = _compute_us(layer, tokens, 1)
    bwd = _compute_us(layer, tokens, 2)

    def op(coll: CollName, elems: int, gap: float, label: str) -> OpSpec:
        return OpSpec(comm="dp", coll=coll, elements=elems, dtype="bf16", gap_us=round(gap, 3),
                      label=label)

    ops = [op("allgather", root, 0.0, "fwd all-gather root")]
    ops += [op("allgather", layer, fwd if i else 0.0, f"fwd all-gather layer {i}")
            for i in range(model.layers)]
    last = model.layers - 1
    ops.append(op("allgather", layer, fwd, f"bwd all-gather layer {last}"))
    for i in range(last, -1, -1):
        if i > 0:
            ops.append(op("allgather", layer, 0.0, f"bwd all-gather layer {i - 1}"))
        ops.append(op("reducescatter", layer, bwd, f"bwd reduce-scatter layer {i}"))
    ops.append(op("reducescatter", root, _compute_us(root, tokens, 2), "bwd reduce-scatter root"))
    return Workload(
        name=f"fsdp-{model.name}",
        description=(f"FSDP FULL_SHARD, {model.name}: {model.layers} layer units of {layer:,} params "
                     f"+ root unit of {root:,}, bf16; all-gather x2 and reduce-scatter x1 per unit"),
        communicators=[CommunicatorSpec(name="dp")], step=ops, tail_us=2000.0,
    )


def megatron_workload(model: Transformer, tp: int, dp: int, micro_batch: int = 1,
                      micro_batches: int = 2) -> Workload:
    """Megatron-LM tensor parallel (no sequence parallelism) inside a node, data parallel across
    the TP groups. Per micro-batch: the vocab-parallel embedding's all-reduce, two all-reduces of
    micro_batch x seq x hidden bf16 per layer forward and two backward, and the vocab-parallel
    cross entropy's three fp32 all-reduces of micro_batch x seq. Then the DP gradient
    all-reduce of this TP rank's shard in Megatron's buckets (max(40M, 1M x dp) elements)."""
    act = micro_batch * model.seq * model.hidden * 2
    ce = micro_batch * model.seq * 4
    tokens = micro_batch * model.seq
    layer_fwd = _compute_us(model.layer_params() // tp, tokens, 1)
    ops: list[OpSpec] = []

    def tp_op(nbytes: int, gap: float, label: str, dtype: DType = "bf16") -> OpSpec:
        return OpSpec(comm="tp", coll="allreduce", bytes=nbytes, dtype=dtype,
                      gap_us=round(gap, 3), label=label)

    for m in range(micro_batches):
        ops.append(tp_op(act, 0.0, f"mb{m} embedding"))
        for i in range(model.layers):
            ops.append(tp_op(act, layer_fwd / 2, f"mb{m} fwd layer {i} attention"))
            ops.append(tp_op(act, layer_fwd / 2, f"mb{m} fwd layer {i} mlp"))
        for k in ("max", "sum-exp", "target"):
            ops.append(tp_op(ce, 0.0, f"mb{m} cross-entropy {k}", "fp32"))
        for i in range(model.layers - 1, -1, -1):
            ops.append(tp_op(act, layer_fwd, f"mb{m} bwd layer {i} mlp"))
            ops.append(tp_op(act, layer_fwd, f"mb{m} bwd layer {i} attention"))
    # DP: this TP rank's gradient shard in Megatron's default buckets.
    shard = model.params() // tp
    bucket = max(40_000_000, 1_000_000 * dp)
    n_full, rest = divmod(shard, bucket)
    sizes = [bucket] * n_full + ([rest] if rest else [])
    for j, elems in enumerate(sizes):
        ops.append(OpSpec(comm="dp", coll="allreduce", bytes=elems * 2, dtype="bf16",
                          label=f"dp grad bucket {j}"))
    return Workload(
        name=f"megatron-tp{tp}-{model.name}",
        description=(f"Megatron-LM {model.name}, TP={tp} inside a node, DP across TP groups, "
                     f"{micro_batches} micro-batches of {micro_batch}x{model.seq} tokens"),
        communicators=[CommunicatorSpec(name="tp", layout="group", group_size=tp),
                       CommunicatorSpec(name="dp", layout="stride", group_size=tp)],
        step=ops, tail_us=2000.0,
    )


def mixed_workload(n_ranks: int) -> Workload:
    """Sizes from 4 bytes to tens of MiB in one step: DDP buckets of a 350M GPT in bf16, then the
    per-step bookkeeping a training loop adds: loss and token-count all-reduces (logging with
    sync_dist), an all-gather of 4 fp32 throughput stats per rank, and a 4-byte broadcast of the
    stop flag from rank 0."""
    base = ddp_workload(GPT_350M, "bf16")
    extra = [
        OpSpec(comm="world", coll="allreduce", bytes=4, dtype="fp32", label="loss"),
        OpSpec(comm="world", coll="allreduce", bytes=8, dtype="int64", label="token count"),
        OpSpec(comm="world", coll="allgather", elements=4 * n_ranks, dtype="fp32",
               label="throughput stats"),
        OpSpec(comm="world", coll="broadcast", bytes=4, dtype="int32", label="stop flag"),
    ]
    return Workload(name="mixed-gpt-350m", description=base.description + " + 4 tiny collectives",
                    communicators=base.communicators, step=list(base.step) + extra,
                    tail_us=base.tail_us)


@dataclass(frozen=True)
class WorkloadPreset:
    name: str
    description: str
    build: Callable[[int, int], Workload]  # (n_ranks, n_nodes) -> workload for that cluster

    def resolved(self, n_ranks: int, n_nodes: int) -> ResolvedWorkload:
        return resolve(self.build(n_ranks, n_nodes), n_ranks, n_nodes)


def _megatron(n_ranks: int, n_nodes: int) -> Workload:
    gpn = n_ranks // n_nodes
    # TP fills a node; on a single node TP takes half of it so that data parallelism exists.
    tp = gpn if n_nodes > 1 else max(1, gpn // 2)
    return megatron_workload(GPT_13B, tp, n_ranks // tp)


WORKLOAD_PRESETS: dict[str, WorkloadPreset] = {
    p.name: p for p in (
        WorkloadPreset("ddp-gpt-1.3b-fp32", "DDP, 1.3B GPT, fp32 gradients, 25 MiB buckets",
                       lambda n, nn: ddp_workload(GPT_1_3B, "fp32")),
        WorkloadPreset("ddp-gpt-1.3b-bf16", "DDP, 1.3B GPT, bf16 gradients, 25 MiB buckets",
                       lambda n, nn: ddp_workload(GPT_1_3B, "bf16")),
        WorkloadPreset("fsdp-llama-2-7b", "FSDP full shard, Llama-2-7B, one unit per layer",
                       lambda n, nn: fsdp_workload(LLAMA2_7B)),
        WorkloadPreset("megatron-gpt-13b", "Megatron TP inside nodes + DP across, 13B GPT",
                       _megatron),
        WorkloadPreset("mixed-gpt-350m", "4 B to 25 MiB: DDP buckets plus per-step bookkeeping",
                       lambda n, nn: mixed_workload(n)),
    )
}


def workload_preset(name: str) -> WorkloadPreset:
    try:
        return WORKLOAD_PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown workload preset {name!r}; choose one of: "
                          + ", ".join(sorted(WORKLOAD_PRESETS))) from None
