"""The plugin inside real NCCL: two ranks on one GPU (scripts/real_nccl_check.py).

Needs a CUDA GPU and PyTorch with NCCL; skips cleanly without them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from cclpilot.paths import plugin_library

REPO = Path(__file__).resolve().parent.parent


def _gpu_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available() and torch.distributed.is_nccl_available())


@pytest.mark.skipif(not _gpu_available(), reason="needs a CUDA GPU and PyTorch with NCCL")
def test_plugin_in_real_nccl(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "real_nccl_check.py"), str(plugin_library()),
         str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
