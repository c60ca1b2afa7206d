#!/usr/bin/env bash
# Runs every test of the project from a fresh machine, installing what it
# needs first. This is the command CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# One build of the stack serves every step, in as little disk as it can:
# - `cargo build --workspace --lib --tests` builds the tests, the server
#   (target/debug/valori) and the Python extension
#   (target/debug/libvalori_python.so) with the features `cargo test
#   --workspace` unifies; the later steps use those files (VALORI_PREBUILT)
#   instead of building DataFusion again with another feature set (`cargo
#   build -p valori-wire`, `maturin develop`).
# - PYO3_BUILD_EXTENSION_MODULE: the extension does not link libpython,
#   as maturin would build it.
# - No incremental state and no debug info in this build: a run from a
#   clean clone writes each artifact once and keeps it only to run it
#   (panics still name their file and line). Development builds keep the
#   profile's line tables.
# - One Python virtual environment for the client and Python suites.
export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=false PYO3_BUILD_EXTENSION_MODULE=1
export VALORI_PREBUILT=1 VALORI_VENV=${VALORI_VENV:-target/test-venv}

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "prerequisites"
scripts/install-prereqs.sh

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy -q --workspace --all-targets -- -D warnings

step "build: tests, server and Python extension"
cargo build -q --workspace --lib --tests

step "tests (workspace)"
cargo test -q --workspace

step "Postgres clients: psql, psycopg, asyncpg, pgvector-python, node-postgres"
scripts/test-clients.sh

step "Python: embedded and remote (pytest)"
VALORI_REQUIRE_ALL=1 scripts/test-python.sh

step "REST API under schemathesis"
scripts/test-rest-schema.sh 25

step "kernel and encoding tests on aarch64 (NEON paths) under qemu-user"
cargo test -q -p valori-core --target aarch64-unknown-linux-gnu

step "cross-architecture golden check"
scripts/crossarch-check.sh

printf '\nall tests passed in %ss; target/ holds %s\n' "$(( $(date +%s) - started ))" "$(du -sh target | cut -f1)"
