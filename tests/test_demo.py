"""`cclpilot demo`: live tuning through the real plugin and a real daemon, against NCCL's default
and the oracle, on a preset with headroom and on one without."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cclpilot import cli
from cclpilot.demo import converged_step, run_demo


def test_live_tuning_beats_the_default_where_there_is_headroom(tmp_env: Path,
                                                               plugin_library: Path) -> None:
    r = run_demo("a100-2x4", "ddp-gpt-1.3b-bf16", steps=240, seed=3, out_dir=tmp_env / "d")
    assert r.plans_committed >= 1
    # Each key runs once per step and every candidate needs its replicates: a few rounds of
    # ~20 steps per candidate, then the final plan.
    assert r.converged_step is not None and r.converged_step < 220
    # Published case: NCCL's Ring is far from the best here; live tuning must recover most of it.
    assert r.speedup_after_convergence() > 1.2
    assert r.steady_mean("live") <= 1.10 * r.steady_mean("oracle")
    saved = json.loads((tmp_env / "d" / "demo.json").read_text())
    assert saved["schema"] == "cclpilot.demo/1" and len(saved["series_us"]["live"]) == 240
    assert (tmp_env / "d" / "daemon" / "decisions.jsonl").stat().st_size > 0


def test_live_tuning_never_loses_without_headroom(tmp_env: Path, plugin_library: Path) -> None:
    # The simulator runs steps as fast as it can and the daemon in real time, so how many steps
    # exploration takes depends on the machine's load: the last key finishes around step 130 on
    # an idle 2-core machine, later under load. The tail judged leaves room for that.
    r = run_demo("h100-1x8-nvswitch", "ddp-gpt-1.3b-bf16", steps=200, seed=3,
                 out_dir=tmp_env / "d")
    tail = slice(160, 200)
    ratio = r.series_us["live"][tail] / r.series_us["default"][tail]
    # Once exploration is over the job runs at least as fast as with NCCL's choices.
    assert float(np.mean(ratio)) <= 1.01


def test_short_run_does_not_claim_convergence(tmp_env: Path, plugin_library: Path) -> None:
    r = run_demo("a100-2x4", "ddp-gpt-1.3b-bf16", steps=30, seed=3, out_dir=tmp_env / "d")
    # Exploration needs far more than 30 steps here: the report must not pretend otherwise.
    assert r.converged_step is None or r.converged_step < 30


def test_converged_step() -> None:
    series = np.concatenate([np.full(30, 2.0), np.full(70, 1.0)])
    assert converged_step(series) == 30
    assert converged_step(np.ones(10)) is None


def test_demo_cli_rejects_bad_input(capsys: pytest.CaptureFixture[str], tmp_env: Path) -> None:
    assert cli.main(["demo", "--steps", "5"]) == 2
    assert "at least 20 steps" in capsys.readouterr().err
    assert cli.main(["demo", "--cluster", "nope", "--steps", "30"]) == 2
    assert "nope" in capsys.readouterr().err
