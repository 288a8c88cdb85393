#!/usr/bin/env bash
# The whole test suite: C unit tests (plain, then under ASan+UBSan), type checks, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

jobs=$(nproc 2>/dev/null || echo 2)
echo "== C unit tests =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs" >/dev/null
ctest --test-dir build --output-on-failure

echo "== C unit tests under AddressSanitizer + UndefinedBehaviorSanitizer =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCCLPILOT_ASAN_UBSAN=ON -DCCLPILOT_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-asan --output-on-failure

echo "== ThreadSanitizer: the threaded parts (I/O thread, queues, plans, profiler) =="
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCCLPILOT_TSAN=ON -DCCLPILOT_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan -j"$jobs" >/dev/null
TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-tsan --output-on-failure \
  -R 'test_(io|live_plan|queue|tuner_core|tuner_chunk|profiler_core|stats|table)$'

echo "== protocol decoder fuzzing (libFuzzer, bounded) =="
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DCCLPILOT_FUZZ=ON \
  -DCCLPILOT_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz_decode fuzz_ingest >/dev/null
ctest --test-dir build-fuzz --output-on-failure -R 'fuzz_(decode|ingest)_smoke$'

echo "== mypy =="
.venv/bin/python -m mypy

echo "== pytest =="
# Bounded: a hung test fails the run (SIGABRT makes pytest's faulthandler print every thread)
# instead of holding CI until its own limit.
timeout --signal=ABRT --kill-after=30 1800 .venv/bin/python -m pytest -q "$@"
