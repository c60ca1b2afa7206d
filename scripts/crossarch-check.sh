#!/usr/bin/env bash
# The cross-architecture proof: applies the golden workload on x86-64
# (native), aarch64 (qemu-user), wasm32 (Node.js) and a Cortex-M4F
# (qemu-system-arm, mps2-an386) and fails unless all four print the same
# report: the same state hash, log digest and top-k ids and distances.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
profile=crossarch
host=$(rustc -vV | sed -n 's/^host: //p')

cargo build -q -p valori-golden-native --profile "$profile"
cargo build -q -p valori-golden-native --profile "$profile" --target aarch64-unknown-linux-gnu
cargo build -q -p valori-golden-wasm --profile "$profile" --target wasm32-unknown-unknown
cargo build -q -p valori-golden-m4 --profile "$profile" --target thumbv7em-none-eabihf

target/"$profile"/valori-golden >"$out/$host.txt"
qemu-aarch64-static -L /usr/aarch64-linux-gnu \
    target/aarch64-unknown-linux-gnu/"$profile"/valori-golden >"$out/aarch64.txt"
node crossarch/wasm/run.mjs \
    target/wasm32-unknown-unknown/"$profile"/valori_golden_wasm.wasm >"$out/wasm32.txt"
timeout 300 qemu-system-arm -machine mps2-an386 -nographic -monitor none \
    -semihosting-config enable=on,target=native \
    -kernel target/thumbv7em-none-eabihf/"$profile"/valori-golden-m4 >"$out/cortex-m4f.txt"

status=0
for arch in "$host" aarch64 wasm32 cortex-m4f; do
    file="$out/$arch.txt"
    hash=$(sed -n 's/^state_hash //p' "$file")
    topk=$(sed -n 's/^topk_digest //p' "$file")
    lines=$(wc -l <"$file")
    printf '%-26s state_hash %s  topk_digest %s  (%s lines)\n' "$arch" "${hash:-MISSING}" "${topk:-MISSING}" "$lines"
    [ -n "$hash" ] || status=1
    if ! cmp -s "$out/$host.txt" "$file"; then
        echo "MISMATCH: $arch differs from $host:"
        diff "$out/$host.txt" "$file" | head -20 || true
        status=1
    fi
done
if [ $status -eq 0 ]; then
    echo "cross-architecture check: all four architectures agree"
fi
exit $status
