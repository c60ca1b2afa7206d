//! Column storage around the deterministic core.
//!
//! The columns themselves (ids, Q16.16 vectors, tags, metadata, tombstones)
//! live in [`valori_core::state::Collection`], because the state machine that
//! fills them must run on a Cortex-M as well. This crate adds what needs
//! `std`, as systems that walk those columns linearly:
//!
//! - [`snapshot`]: the snapshot file. [`write_snapshot`] streams a
//!   [`State`] and its [`SnapshotMeta`] (event count, state hash, log root
//!   and leaves) as deterministic little-endian bytes with a BLAKE3
//!   trailer; [`read_snapshot`] checks every length, the trailer, and
//!   rebuilds the state through the state machine's own checks, answering
//!   damage with a [`SnapshotError`] that names the offset, collection and
//!   row.
//! - [`arrow`]: Arrow views of a [`Collection`]. [`arrow::schema`] describes
//!   the columns (`id`, `vector` as raw Q16.16 `FixedSizeList<Int32>`,
//!   `tag`, `metadata`, and an optional `vector_f32` view),
//!   [`arrow::record_batch`] exports the live rows of a row range, and
//!   [`arrow::vector_array`] wraps an owned vector buffer without copying.

pub mod arrow;
pub mod snapshot;
pub mod texmex;

pub use snapshot::{SnapshotError, SnapshotMeta, read_snapshot, write_snapshot};
pub use valori_core::state::{Collection, State};
