//! libFuzzer entry of the `pg_param` target; the checks are in
//! `valori_fuzz_targets::pg_param`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| valori_fuzz_targets::pg_param(data));
