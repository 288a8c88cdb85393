"""Journal recovery from a torn last line, and the CURVE secret key file's protection."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cclpilot.daemon.journal import Journal
from cclpilot.daemon.security import generate_curve_keys, read_secret_key, write_secret_key


def test_torn_last_line_is_cut_so_later_restarts_still_load(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    j = Journal(path, fsync=False)
    j.record_prepare("job", 7, 1, 100, "first")
    j.decide("job", 7, 1, True, 100, "all ranks prepared")
    j.close()
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"schema":"cclpilot.live/1","event":"prep')  # a crash in mid-write
    again = Journal(path, fsync=False)  # first restart: drops the torn tail
    again.record_prepare("job", 7, 2, 200, "second")
    again.decide("job", 7, 2, False, 200, "a rank refused")
    again.close()
    third = Journal(path, fsync=False)  # second restart: every record readable
    assert third.decisions[(7, 1)].committed and not third.decisions[(7, 2)].committed
    assert third.max_plan[7] == 2
    third.close()


def test_secret_key_is_private_even_over_an_old_lax_file(tmp_path: Path) -> None:
    old = tmp_path / "curve_secret.key"
    old.write_text("stale\n")
    os.chmod(old, 0o644)
    keys = generate_curve_keys()
    path = write_secret_key(keys, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secret_key(path).public == keys.public


def test_secret_key_never_written_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "curve_secret.key").symlink_to(target)
    with pytest.raises(OSError):
        write_secret_key(generate_curve_keys(), tmp_path)
    assert target.read_text() == ""
