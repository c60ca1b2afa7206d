// Runs the golden workload in a wasm32 module and prints its report.
// usage: node run.mjs path/to/valori_golden_wasm.wasm
import { readFileSync } from "node:fs";

const path = process.argv[2];
if (!path) {
  console.error("usage: node run.mjs MODULE.wasm");
  process.exit(2);
}
const { instance } = await WebAssembly.instantiate(readFileSync(path), {});
const packed = instance.exports.golden_run();
const ptr = Number(packed >> 32n);
const len = Number(packed & 0xffffffffn);
if (len === 0) {
  console.error("golden_run failed");
  process.exit(1);
}
const bytes = new Uint8Array(instance.exports.memory.buffer, ptr, len);
process.stdout.write(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
