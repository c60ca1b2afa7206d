//! libFuzzer entry of the `snapshot` target; the checks are in
//! `valori_fuzz_targets::snapshot`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| valori_fuzz_targets::snapshot(data));
