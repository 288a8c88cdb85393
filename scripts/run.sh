#!/usr/bin/env bash
# The main job: the real plugin driven by the simulator on a simulated cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/cclpilot sim run "$@"
