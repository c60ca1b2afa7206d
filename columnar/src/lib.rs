//! Column storage around the deterministic core.
//!
//! The columns themselves (ids, Q16.16 vectors, tags, metadata, tombstones)
//! live in [`valori_core::state::Collection`], because the state machine that
//! fills them must run on a Cortex-M as well. This crate adds what needs
//! `std`: Arrow conversion and the snapshot file format.

pub use valori_core::state::{Collection, State};
