//! libFuzzer entry of the `sql` target; the checks are in
//! `valori_fuzz_targets::sql`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| valori_fuzz_targets::sql(data));
