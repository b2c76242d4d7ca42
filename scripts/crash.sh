#!/usr/bin/env bash
# The long form of the crash test (issue 22): the real server under 16 command writers and
# page views, killed with SIGKILL at varying moments, on both backends (CI runs 3 cycles
# per backend in the test suite).
#   scripts/crash.sh [cycles]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
export LW_CRASH_CYCLES="${1:-20}"
exec cargo test --release -p lightwidget-api --test api -- crash:: --nocapture --test-threads 1
