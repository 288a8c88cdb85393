#!/usr/bin/env bash
# The main job: live tuning (real plugin, real daemon) against NCCL's default and the oracle,
# on a simulated cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/cclpilot demo "$@"
