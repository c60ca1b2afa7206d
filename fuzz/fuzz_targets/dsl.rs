//! libFuzzer entry of the `dsl` target; the checks are in
//! `valori_fuzz_targets::dsl`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| valori_fuzz_targets::dsl(data));
