//! libFuzzer entry of the `event` target; the checks are in
//! `valori_fuzz_targets::event`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| valori_fuzz_targets::event(data));
