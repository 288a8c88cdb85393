"""Workloads: file format validation, derived sizes, scaling to a cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cclpilot.errors import ConfigError
from cclpilot.sim.topology import Coll
from cclpilot.sim.workloads import (
    GPT_1_3B,
    GPT_13B,
    LLAMA2_7B,
    MIB,
    WORKLOAD_PRESETS,
    ddp_buckets,
    ddp_workload,
    load_workload,
    resolve,
    save_workload,
    workload_preset,
)


def test_model_parameter_counts_match_the_published_sizes() -> None:
    assert LLAMA2_7B.layer_params() == 202_383_360
    assert LLAMA2_7B.params() == 6_738_415_616  # Llama-2-7B's published count
    assert 1.30e9 < GPT_1_3B.params() < 1.33e9
    assert 12.5e9 < GPT_13B.params() < 13.2e9


@pytest.mark.parametrize("dtype,esize", [("fp32", 4), ("bf16", 2)])
def test_ddp_buckets_cover_all_gradients_and_respect_the_caps(dtype: str, esize: int) -> None:
    w = ddp_workload(GPT_1_3B, dtype)  # type: ignore[arg-type]
    r = resolve(w, 16, 2)
    assert sum(op.n_bytes for op in r.ops) == GPT_1_3B.params() * esize
    assert all(op.coll == Coll.ALLREDUCE for op in r.ops)
    tensor_bytes = [t * esize for t in GPT_1_3B.all_tensors()]
    biggest = max(tensor_bytes)
    sizes = [op.n_bytes for op in r.ops]
    # Every bucket but the last reached its cap; none exceeds cap + one tensor.
    assert sizes[0] >= 1 * MIB
    assert all(s >= 25 * MIB for s in sizes[1:-1])
    assert all(s < 25 * MIB + biggest for s in sizes)


def test_ddp_bucket_assignment_follows_pytorch_rules() -> None:
    kib = 1024
    # Reverse order: 600K, 600K -> first bucket closes at >= 1 MiB; then 25 MiB cap.
    b = ddp_buckets([30 * MIB, 10 * MIB, 10 * MIB, 600 * kib, 600 * kib])
    assert b == [[600 * kib, 600 * kib], [10 * MIB, 10 * MIB, 30 * MIB]]
    assert ddp_buckets([100]) == [[100]]


def test_fsdp_sizes_are_unit_bytes_padded_to_the_dp_size() -> None:
    w = WORKLOAD_PRESETS["fsdp-llama-2-7b"].build(16, 2)
    for dp, nodes in ((16, 2), (24, 3), (8, 1)):
        r = resolve(w, dp, nodes)
        layer = LLAMA2_7B.layer_params()
        padded = -(-layer // dp) * dp
        ag = [op for op in r.ops if op.coll == Coll.ALLGATHER]
        rs = [op for op in r.ops if op.coll == Coll.REDUCESCATTER]
        assert len(ag) == 2 * (LLAMA2_7B.layers + 1) - 1  # root is not re-gathered in backward
        assert len(rs) == LLAMA2_7B.layers + 1
        layer_ops = [op for op in r.ops if "layer" in op.label]
        assert {op.n_bytes for op in layer_ops} == {padded * 2}
        # The per-rank shard NCCL moves is the unit's bytes / dp.
        assert padded * 2 // dp == -(-layer // dp) * 2
        assert r.comms[0].n_ranks == dp and r.comms[0].n_nodes == nodes


def test_megatron_tp_and_dp_communicators() -> None:
    r = WORKLOAD_PRESETS["megatron-gpt-13b"].resolved(32, 4)
    tp, dp = r.comms
    assert (tp.n_ranks, tp.n_nodes) == (8, 1)
    assert (dp.n_ranks, dp.n_nodes) == (4, 4)
    act = 1 * GPT_13B.seq * GPT_13B.hidden * 2
    tp_ops = [op for op in r.ops if op.comm == 0]
    # Per micro-batch: embedding + 4 per layer + 3 cross-entropy; two micro-batches.
    assert len(tp_ops) == 2 * (1 + 4 * GPT_13B.layers + 3)
    assert sum(op.n_bytes == act for op in tp_ops) == 2 * (1 + 4 * GPT_13B.layers)
    dp_ops = [op for op in r.ops if op.comm == 1]
    assert sum(op.n_bytes for op in dp_ops) == GPT_13B.params() // 8 * 2
    # One node: TP takes half the node so that data parallelism exists.
    r1 = WORKLOAD_PRESETS["megatron-gpt-13b"].resolved(8, 1)
    assert [(c.n_ranks, c.n_nodes) for c in r1.comms] == [(4, 1), (2, 1)]


def test_mixed_workload_spans_tiny_to_large() -> None:
    r = WORKLOAD_PRESETS["mixed-gpt-350m"].resolved(16, 2)
    sizes = sorted(op.n_bytes for op in r.ops)
    assert sizes[0] <= 8 and sizes[-1] >= 25 * MIB
    assert {op.coll for op in r.ops} == {Coll.ALLREDUCE, Coll.ALLGATHER, Coll.BROADCAST}
    ag = next(op for op in r.ops if op.coll == Coll.ALLGATHER)
    assert ag.n_bytes == 4 * 16 * 4


@pytest.mark.parametrize("name", sorted(WORKLOAD_PRESETS))
def test_presets_resolve_on_every_cluster_shape_and_round_trip(name: str, tmp_path: Path) -> None:
    for n, nn in ((8, 1), (16, 2), (32, 4), (128, 16)):
        w = WORKLOAD_PRESETS[name].build(n, nn)
        r = resolve(w, n, nn)
        assert 10 <= len(r.ops) <= 500
        assert all(op.n_bytes > 0 and op.gap_us >= 0 for op in r.ops)
    p = tmp_path / "w.json"
    save_workload(w, p)
    assert load_workload(p) == w


def _write(tmp_path: Path, doc: object) -> Path:
    p = tmp_path / "w.json"
    p.write_text(json.dumps(doc))
    return p


BASE = {"name": "t", "communicators": [{"name": "world"}],
        "step": [{"comm": "world", "coll": "allreduce", "bytes": 1024, "dtype": "fp32"}]}


@pytest.mark.parametrize("patch,what", [
    ({"extra": 1}, "extra"),
    ({"step": [{"comm": "nope", "coll": "allreduce", "bytes": 4}]}, "uses communicator 'nope'"),
    ({"step": [{"comm": "world", "coll": "alltoall", "bytes": 4}]}, "step.0.coll"),
    ({"step": [{"comm": "world", "coll": "allreduce"}]}, "exactly one of 'bytes' and 'elements'"),
    ({"step": [{"comm": "world", "coll": "allreduce", "bytes": 6, "dtype": "fp32"}]}, "multiple"),
    ({"step": [{"comm": "world", "coll": "allreduce", "bytes": 4, "gap_us": -1}]}, "gap_us"),
    ({"communicators": [{"name": "tp", "layout": "group"}]}, "group_size is required"),
    ({"communicators": [{"name": "w"}, {"name": "w"}]}, "unique"),
    ({"format": "v2"}, "format"),
])
def test_invalid_workload_files_are_rejected(tmp_path: Path, patch: dict[str, object], what: str) -> None:
    p = _write(tmp_path, {**BASE, **patch})
    with pytest.raises(ConfigError) as e:
        load_workload(p)
    assert str(p) in str(e.value) and what in str(e.value)


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "w.json"
    p.write_text('{\n  "name": "t",\n  oops\n}')
    with pytest.raises(ConfigError, match=rf"{p}:3: not valid JSON"):
        load_workload(p)


def test_layouts_that_do_not_fit_the_cluster_are_rejected(tmp_path: Path) -> None:
    w = load_workload(_write(tmp_path, {**BASE, "communicators": [
        {"name": "world", "layout": "group", "group_size": 3}]}))
    with pytest.raises(ConfigError, match="group_size 3 must divide"):
        resolve(w, 16, 2)
    w2 = load_workload(_write(tmp_path, {**BASE, "communicators": [
        {"name": "world", "layout": "explicit", "n_ranks": 64, "n_nodes": 8}]}))
    with pytest.raises(ConfigError, match="does not fit"):
        resolve(w2, 16, 2)
    with pytest.raises(ConfigError, match="unknown workload preset"):
        workload_preset("nope")
