//! Integration tests of `valori-columnar`: snapshot files and Arrow views,
//! on states built by applying events through the state machine.

// Helpers outside `#[test]` functions unwrap as the tests do (clippy's
// `allow-unwrap-in-tests` covers only the latter): a panic is a failure.
#![allow(clippy::unwrap_used)]

mod arrow;
mod common;
mod snapshot;
