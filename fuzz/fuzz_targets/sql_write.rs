//! libFuzzer entry of the `sql_write` target; the checks are in
//! `valori_fuzz_targets::sql_write`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| valori_fuzz_targets::sql_write(data));
