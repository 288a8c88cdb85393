#!/usr/bin/env bash
# Prepares a fresh machine: system build prerequisites, then a virtual environment in .venv with
# cclpilot installed (pip install . builds the plugin through CMake). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# The plugin's live mode talks ZeroMQ with msgpack; clang builds the protocol fuzzer.
pkg-config --exists libzmq 2>/dev/null || need+=(libzmq3-dev)
pkg-config --exists msgpack 2>/dev/null || pkg-config --exists msgpack-c 2>/dev/null || need+=(libmsgpack-dev)
command -v clang >/dev/null 2>&1 || need+=(clang)
if command -v clang >/dev/null 2>&1; then
  probe=$(mktemp -d)
  echo 'int LLVMFuzzerTestOneInput(const char* d, unsigned long n) { return 0; }' >"$probe/f.c"
  clang -fsanitize=fuzzer "$probe/f.c" -o "$probe/f" >/dev/null 2>&1 || need+=(libclang-rt-dev)
  rm -rf "$probe"
else
  need+=(libclang-rt-dev)
fi
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "cclpilot bootstrap: installing ${need[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "cclpilot bootstrap: missing build prerequisites: ${need[*]}." >&2
    echo "Install them (Debian/Ubuntu: sudo apt-get install ${need[*]}) and run this again." >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# Not editable: tests run against the installed wheel layout, exactly what users get.
.venv/bin/python -m pip install -q ".[test]"
