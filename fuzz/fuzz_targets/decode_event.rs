//! Fuzzes the event decoder: it must never panic on any input, and every
//! input it accepts must be canonical, i.e. re-encode to exactly the same
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use valori_core::event::Event;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = Event::decode(data) {
        let encoded = event.encode();
        assert_eq!(
            encoded.as_slice(),
            data,
            "non-canonical: decode accepted bytes that re-encode differently ({event:?})"
        );
    }
});
