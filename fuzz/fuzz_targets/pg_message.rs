//! libFuzzer entry of the `pg_message` target; the checks are in
//! `valori_fuzz_targets::pg_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| valori_fuzz_targets::pg_message(data));
