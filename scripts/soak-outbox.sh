#!/usr/bin/env bash
# The long form of the outbox's crash test: many kill -9 cycles of the real server under
# ticket load, against a local Zendesk stand-in (CI runs 20 cycles in the test suite).
#   scripts/soak-outbox.sh [cycles]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
export LW_OUTBOX_KILL_CYCLES="${1:-200}"
exec cargo test --release -p lightwidget-api --test api -- \
  cli::the_outbox_loses_nothing_across_kill_9_cycles --exact --nocapture
