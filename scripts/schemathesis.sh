#!/usr/bin/env bash
# Runs schemathesis (pinned, from PyPI, in a virtualenv under target/) with every check
# against the server's own /openapi.json, on each backend, with an owner's token and the
# admin's (who holds every staff role); then the operations that end the caller's session
# or account, each with a token of its own. Fails on any failure.
#   scripts/schemathesis.sh [examples per operation and run]   (default 40: about 7,400
#   requests in all; CI runs 8)
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-40}"
venv=target/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==3.39.16" "hypothesis==6.115.0"
fi
cargo build --locked --quiet -p lightwidget-api --bin lightwidget
bin="$PWD/target/debug/lightwidget"
admin="schemathesis-admin-token-0123456789"
port=18181
work=$(mktemp -d)
server=""
db=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    [ -n "$db" ] && psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

start() { # backend
    local env=(LW_LISTEN=127.0.0.1:$port LW_ADMIN_TOKEN=$admin LW_PAYPAL_WEBHOOK_SECRET=schemathesis
               LW_RATE_LIMIT_ANONYMOUS_PER_MINUTE=1000000 LW_RATE_LIMIT_TOKEN_PER_MINUTE=1000000
               LW_DATA_DIR="$work/data-$1")
    if [ "$1" = postgres ]; then
        db="lw_schemathesis_$$"
        psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db" >/dev/null
        env+=(LW_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
              LW_MASTER_KEY="$(head -c 32 /dev/urandom | base64)")
    fi
    env "${env[@]}" "$bin" serve >"$work/server-$1.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return 0
        sleep 0.1
    done
    echo "the server did not start" >&2; cat "$work/server-$1.log" >&2; exit 1
}

stop() {
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
    if [ -n "$db" ]; then
        psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null; db=""
    fi
}

owner_token() { # username
    curl -sf -X POST "http://127.0.0.1:$port/v1/auth/instagram" -H 'content-type: application/json' \
        -d "{\"code\":\"demo:$1\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

admin_staff_token() {
    curl -sf -X POST "http://127.0.0.1:$port/v1/staff" -H "authorization: Bearer $admin" \
        -H 'content-type: application/json' -d '{"name":"second admin","role":"admin"}' \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

run() { # token, examples, extra arguments...
    local token=$1 n=$2; shift 2
    "$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
        --experimental=openapi-3.1 --checks all --hypothesis-max-examples "$n" \
        --hypothesis-derandomize -H "Authorization: Bearer $token" "$@"
}

for backend in sqlite postgres; do
    echo "== schemathesis on $backend"
    start "$backend"
    keep=(--exclude-operation-id sign_out --exclude-operation-id delete_me
          --exclude-operation-id rotate_admin_token)
    run "$(owner_token schemathesis)" "$examples" "${keep[@]}"
    run "$admin" "$examples" "${keep[@]}"
    # What ends a session or an account, each with a token of its own.
    run "$(owner_token leaving)" "$examples" --include-operation-id sign_out
    run "$(owner_token deleting)" "$examples" --include-operation-id delete_me
    run "$(admin_staff_token)" "$examples" --include-operation-id rotate_admin_token
    stop
done
