//! libFuzzer entry of the `checkpoint` target; the checks are in
//! `valori_fuzz_targets::checkpoint`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| valori_fuzz_targets::checkpoint(data));
