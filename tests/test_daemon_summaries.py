"""measurements.jsonl: the hand-written JSON of the summaries equals the documented record."""

from __future__ import annotations

import json
import random
from pathlib import Path

from cclpilot.daemon.artifacts import RunArtifacts, measurement_record
from cclpilot.daemon.brain import ArmRan, Key, Observation


def _random_obs(rng: random.Random) -> Observation:
    return Observation(
        Key(rng.randrange(5), rng.choice([0, 1, 1 << 20, (1 << 64) - 1]), rng.randrange(1, 9)),
        ArmRan(rng.randrange(7), rng.randrange(3), rng.randrange(65)),
        rng.choice([0, 1, (1 << 64) - 1]), rng.choice([0.0, -0.0, 1e-300, 5e3, 1.7e308]),
        rng.choice([0.0, 2.5e7, 1e16]), rng.randrange(1 << 40), rng.randrange(1 << 40),
        rng.randrange(1 << 20), rng.randrange(1, 1025), rng.randrange(1 << 50),
        rng.random() < 0.5)


def test_summary_lines_parse_to_the_documented_records(tmp_path: Path) -> None:
    rng = random.Random(7)
    art = RunArtifacts(tmp_path, {}, 0)
    batches = [[_random_obs(rng) for _ in range(rng.randrange(1, 30))] for _ in range(20)]
    for obs in batches:
        art.measurements("job", 5, obs)
    art.close({})
    lines = next(tmp_path.rglob("measurements.jsonl")).read_text().splitlines()
    assert len(lines) == len(batches)
    for line, obs in zip(lines, batches):
        rec = json.loads(line)
        assert rec["schema"] == "cclpilot.live/1" and isinstance(rec["time"], float)
        assert rec["observations"] == [measurement_record(o) for o in obs]
        # The bool stays a JSON bool, not an int.
        assert all(type(r["key_ambiguous"]) is bool for r in rec["observations"])
