#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine with rustup:
# Rust targets and components, QEMU, the aarch64 cross toolchain, and the
# clients the server's tests drive (psql, curl, Node.js, Python venvs), and
# openssl for the certificates of the cluster's TLS test.
# Idempotent: anything already present is skipped.
set -euo pipefail

need_apt=()
command -v qemu-aarch64-static >/dev/null || need_apt+=(qemu-user-static)
command -v qemu-system-arm >/dev/null || need_apt+=(qemu-system-arm)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v psql >/dev/null || need_apt+=(postgresql-client)
command -v curl >/dev/null || need_apt+=(curl)
# The cluster's mutual-TLS test makes its certificates with openssl.
command -v openssl >/dev/null || need_apt+=(openssl)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)

if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need_apt[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

targets=(aarch64-unknown-linux-gnu wasm32-unknown-unknown thumbv7em-none-eabihf)
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
components=$(rustup component list --installed)
for c in rustfmt clippy; do
    grep -q "^$c" <<<"$components" || rustup component add "$c"
done
