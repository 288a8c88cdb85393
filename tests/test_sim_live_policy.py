"""`cclpilot sim run --policies ...,live`: the runner starts a real daemon and runs in live mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cclpilot import cli


def test_live_policy_runs_against_a_daemon(tmp_env: Path, plugin_library: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_env / "run"
    assert cli.main(["sim", "run", "--steps", "60", "--policies", "default,live", "--seed", "2",
                     "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    names = [p["policy"] for p in result["policies"]]
    assert names == ["default", "live"]
    events = [json.loads(x)["event"] for x in
              (out / "live-daemon" / "decisions.jsonl").read_text().splitlines()]
    assert "commit" in events, "the daemon committed at least one plan"
    live_arms = {k["arm"] for k in result["keys"] if k["policy"] == "live"}
    default_arms = {k["arm"] for k in result["keys"] if k["policy"] == "default"}
    assert live_arms != default_arms, "live tuning changed what ran"
