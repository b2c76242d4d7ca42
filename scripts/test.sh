#!/usr/bin/env bash
# Runs every test of the workspace. The PostgreSQL tests need a server: unless
# LW_TEST_DATABASE_URL points at one, the local cluster on 127.0.0.1:5432 is used, and started
# when it is down.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

if [ -z "${LW_TEST_DATABASE_URL:-}" ] && ! pg_up; then
    # A fresh machine without PostgreSQL gets it from Debian's packages (as root), with
    # trust authentication on the loopback address as the tests expect.
    if ! command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "PostgreSQL is not installed; installing it from Debian's packages" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        for conf in /etc/postgresql/*/main/pg_hba.conf; do
            [ -f "$conf" ] && sed -i -E 's/^(host|local)(.*)(scram-sha-256|md5|peer)$/\1\2trust/' "$conf"
        done
    fi
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        echo "PostgreSQL is down on 127.0.0.1:5432; starting it" >&2
        for version in /etc/postgresql/*; do
            pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start || true
            pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main reload || true
        done
        for _ in $(seq 1 30); do pg_up && break; sleep 1; done
    fi
    pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432; set LW_TEST_DATABASE_URL" >&2; exit 1; }
fi

# The console's browser tests need headless Chromium and its WebDriver (Debian's packages)
# and axe-core (the npm registry), installed here when missing (as root, on Debian).
if ! { [ -x "${LW_CHROMIUM:-/usr/bin/chromium}" ] && [ -x "${LW_CHROMEDRIVER:-/usr/bin/chromedriver}" ]; }; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "Chromium or chromedriver is missing; installing Debian's chromium and chromium-driver" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
fi
if [ -z "${LW_AXE_JS:-}" ] && [ ! -f target/axe/node_modules/axe-core/axe.min.js ] && command -v npm >/dev/null 2>&1; then
    echo "axe-core is missing; installing it from the npm registry into target/axe" >&2
    mkdir -p target/axe && (cd target/axe && npm install --no-audit --no-fund --silent axe-core@4.14.1 >/dev/null)
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
