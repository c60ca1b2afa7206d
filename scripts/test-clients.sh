#!/usr/bin/env bash
# Client compatibility tests of the Postgres front end (tests/clients/):
# psql, psycopg 3, asyncpg, pgvector-python, SQLAlchemy 2, Alembic and Django (pytest), and node-postgres
# (node's test runner); and of Arrow Flight: pyarrow.flight and ADBC's Flight SQL driver
# (tests/clients/test_flight.py).
#
# Installs what it needs under target/: a Python venv (target/clients-venv:
# psycopg[binary], asyncpg, pgvector, numpy, pytest, SQLAlchemy 2, Alembic, Django, pyarrow, pandas,
# polars, adbc_driver_flightsql; VALORI_VENV names another) and `pg` and `pgvector` from npm
# (target/clients-node). LlamaIndex's and LangChain's Postgres vector stores
# (tests/clients/test_frameworks.py) run in a venv of their own (target/frameworks-venv:
# psycopg[binary], numpy, pytest, llama-index-vector-stores-postgres, langchain-postgres;
# VALORI_FRAMEWORKS_VENV names another): langchain-postgres pins a pgvector older than the
# one the other tests use. Needs python3, psql and node/npm on the PATH.
# Starts two servers with `valori serve` on free ports: one open, one with the users alice:s3cret:write and
# bob:r3ad:read (SCRAM). Prints "N passed, N failed" and exits non-zero
# if a suite failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}

# VALORI_PREBUILT=1: target/debug/valori is already built (scripts/test.sh).
[ "${VALORI_PREBUILT:-0}" = 1 ] || cargo build -q -p valori-wire --bin valori
server=$target/debug/valori

venv=${VALORI_VENV:-$target/clients-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "psycopg[binary]" asyncpg pgvector numpy pytest "sqlalchemy>=2" \
    alembic django pyarrow pandas polars adbc_driver_flightsql adbc_driver_manager
fw_venv=${VALORI_FRAMEWORKS_VENV:-$target/frameworks-venv}
[ -x "$fw_venv/bin/python" ] || python3 -m venv "$fw_venv"
"$fw_venv/bin/pip" install -q "psycopg[binary]" numpy pytest \
    llama-index-vector-stores-postgres langchain-postgres

node_dir=$target/clients-node
mkdir -p "$node_dir"
if [ ! -d "$node_dir/node_modules/pg" ] || [ ! -d "$node_dir/node_modules/pgvector" ]; then
    (cd "$node_dir" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --silent pg pgvector >/dev/null)
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# start NAME [USER ...]: starts a server on a free port; sets $port.
start() {
    local name=$1
    shift
    local users=()
    for u in "$@"; do users+=(--user "$u"); done
    mkdir -p "$work/$name"
    "$server" serve --data-dir "$work/$name/data" --rest-addr 127.0.0.1:0 \
        --pg-addr 127.0.0.1:0 --flight-addr 127.0.0.1:0 "${users[@]}" >"$work/$name/out" 2>"$work/$name/log" &
    pids+=($!)
    for _ in $(seq 200); do
        grep -q '^valori listening: ' "$work/$name/out" && break
        sleep 0.1
    done
    for _ in $(seq 50); do
        grep -q '^valori flight: ' "$work/$name/out" && break
        sleep 0.1
    done
    port=$(sed -n 's|^valori listening: .* postgres://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$work/$name/out")
    rest_port=$(sed -n 's|^valori listening: rest http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$work/$name/out")
    flight_port=$(sed -n 's|^valori flight: grpc://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$work/$name/out")
    [ -n "$port" ] || { cat "$work/$name/log"; echo "server $name did not start" >&2; exit 1; }
}
start open
export VALORI_PG_PORT=$port VALORI_REST_PORT=$rest_port VALORI_FLIGHT_PORT=$flight_port
start auth alice:s3cret:write bob:r3ad:read
export VALORI_PG_AUTH_PORT=$port VALORI_REST_AUTH_PORT=$rest_port VALORI_FLIGHT_AUTH_PORT=$flight_port
export VALORI_PG_HOST=127.0.0.1

passed=0
failed=0
suite() {
    local name=$1
    shift
    echo "== $name"
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAILED: $name"
    fi
}
suite psql bash tests/clients/psql.sh
suite python "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/clients \
    --ignore=tests/clients/test_frameworks.py
suite frameworks "$fw_venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/clients/test_frameworks.py
suite node env NODE_PATH="$node_dir/node_modules" node --test tests/clients/node_pg.test.cjs
echo "clients: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
