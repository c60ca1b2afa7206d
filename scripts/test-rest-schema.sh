#!/usr/bin/env bash
# Runs schemathesis against the REST API's served OpenAPI document: a
# server on a free loopback port and a fresh data directory, a bounded
# number of generated requests per operation, and the checks that no
# request gets a server error (5xx) and that every answer matches the
# documented statuses, content types and schemas. Afterwards the data
# directory must pass `valori verify`.
#
# usage: scripts/test-rest-schema.sh [EXAMPLES]   (default 25)
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-25}
bin=target/debug/valori
venv=target/venv-rest
[ -x "$bin" ] || cargo build -q -p valori-wire --bin valori
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'schemathesis==4.32.5'
fi

data=$(mktemp -d)
log=$(mktemp)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rest=$(port)
pg=$(port)
"$bin" serve --data-dir "$data/db" --rest-addr "127.0.0.1:$rest" --pg-addr "127.0.0.1:$pg" \
    --flight-addr 127.0.0.1:0 \
    >"$log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    rm -rf "$data" "$log"
}
trap cleanup EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$rest/health" >/dev/null && break
    sleep 0.1
done

# A collection for the generated requests to find (the schema's example
# name), with a few records.
curl -sf "http://127.0.0.1:$rest/v1/collections" -d '{"name": "docs", "dim": 2}' >/dev/null
curl -sf "http://127.0.0.1:$rest/v1/collections/docs/records/batch" \
    -d '{"vectors": [[0.5, -0.25], [1, 2], [3, 4]], "ids": [0, 1, 2]}' >/dev/null

# The coverage phase is left out: it stops with an internal error of the
# generator on this document; fuzzing and stateful phases cover every
# operation.
"$venv/bin/schemathesis" run "http://127.0.0.1:$rest/v1/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,fuzzing,stateful \
    --max-examples "$examples" --seed 7 --workers 2 --no-color

kill -TERM "$server"
wait "$server" || { echo "server exited with an error:"; cat "$log"; exit 1; }
"$bin" verify "$data/db" | tail -3
