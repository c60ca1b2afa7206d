#!/usr/bin/env bash
# Runs every test of the project from a fresh machine, installing what it
# needs first. This is the command CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "prerequisites"
scripts/install-prereqs.sh

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy -q --workspace --all-targets -- -D warnings

step "tests (workspace)"
cargo test -q --workspace

step "Postgres clients: psql, psycopg, asyncpg, pgvector-python, node-postgres"
scripts/test-clients.sh

step "Python: embedded and remote (pytest)"
VALORI_BUILD_SERVER=1 VALORI_REQUIRE_ALL=1 scripts/test-python.sh

step "REST API under schemathesis"
scripts/test-rest-schema.sh 25

step "kernel and encoding tests on aarch64 (NEON paths) under qemu-user"
cargo test -q -p valori-core --target aarch64-unknown-linux-gnu

step "cross-architecture golden check"
scripts/crossarch-check.sh

printf '\nall tests passed in %ss\n' "$(( $(date +%s) - started ))"
