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
# - VALORI_PREBUILT=1 (scripts/test.sh): `cargo test --workspace` has
#   built both the server and target/debug/libvalori_python.so with the
#   workspace's features; the library is installed as `valori._native`
#   beside the Python sources (what `maturin develop` does) instead of
#   building DataFusion again for maturin's feature set.
# - VALORI_VENV names the virtual environment (default target/pyenv).
#
# Extra arguments go to pytest, e.g. `scripts/test-python.sh -k remote -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

venv=${VALORI_VENV:-target/pyenv}
prebuilt=${VALORI_PREBUILT:-0}
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv"
    "$python" -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
packages=(pytest numpy pyarrow pandas polars)
[ "$prebuilt" = 1 ] || packages+=(maturin)
if ! python -c "import $(IFS=,; echo "${packages[*]}")" 2>/dev/null; then
    echo "==> installing ${packages[*]}"
    python -m pip install -q "${packages[@]}"
fi

if [ "${VALORI_BUILD_SERVER:-0}" = 1 ] && [ "$prebuilt" != 1 ]; then
    echo "==> building the valori server"
    cargo build -q -p valori-wire --bin valori
fi

if [ "$prebuilt" = 1 ]; then
    echo "==> installing target/debug/libvalori_python.so as valori._native"
    cp target/debug/libvalori_python.so python/python/valori/_native.abi3.so
    site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$PWD/python/python" >"$site/valori.pth"
else
    echo "==> maturin develop (dev profile)"
    (cd python && maturin develop -q --profile dev)
fi

echo "==> pytest"
status=0
python -m pytest python/tests -q -ra "$@" || status=$?
printf '\npython tests finished in %ss\n' "$(( $(date +%s) - started ))"
exit "$status"
