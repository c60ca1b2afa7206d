#!/usr/bin/env bash
# Builds the Python package in the dev profile and runs its pytest suite.
#
# - A virtual environment in target/pyenv (created once) with maturin,
#   pytest, numpy, pyarrow, pandas and polars from PyPI.
# - `maturin develop` builds valori._native in the dev profile into the
#   workspace's target/ (reusing what `cargo` built there) and installs the
#   package in the venv in editable form. A release build of DataFusion
#   takes half an hour on two cores; this never starts one.
# - The remote-mode tests start `target/debug/valori serve` on free ports;
#   they are skipped (with the reason) when that binary has no `serve`.
#   Set VALORI_BUILD_SERVER=1 to build it first (`cargo build -p valori-wire`).
#
# Extra arguments go to pytest, e.g. `scripts/test-python.sh -k remote -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

venv=target/pyenv
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv"
    "$python" -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
packages=(maturin pytest numpy pyarrow pandas polars)
if ! python -c "import maturin, pytest, numpy, pyarrow, pandas, polars" 2>/dev/null \
    || ! command -v maturin >/dev/null; then
    echo "==> installing ${packages[*]}"
    python -m pip install -q "${packages[@]}"
fi

if [ "${VALORI_BUILD_SERVER:-0}" = 1 ]; then
    echo "==> building the valori server"
    cargo build -q -p valori-wire --bin valori
fi

echo "==> maturin develop (dev profile)"
(cd python && maturin develop -q --profile dev)

echo "==> pytest"
status=0
python -m pytest python/tests -q -ra "$@" || status=$?
printf '\npython tests finished in %ss\n' "$(( $(date +%s) - started ))"
exit "$status"
