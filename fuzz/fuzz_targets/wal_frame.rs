//! libFuzzer entry of the `wal_frame` target; the checks are in
//! `valori_fuzz_targets::wal_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| valori_fuzz_targets::wal_frame(data));
