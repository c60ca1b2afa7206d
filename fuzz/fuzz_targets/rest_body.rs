//! libFuzzer entry of the `rest_body` target; the checks are in
//! `valori_fuzz_targets::rest_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| valori_fuzz_targets::rest_body(data));
