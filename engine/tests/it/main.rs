//! Integration tests of the engine: one binary, one module per concern.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod bad_input;
mod common;
mod crash;
mod determinism;
mod faults;
mod hardening;
mod index;
mod proof;
mod recovery;
