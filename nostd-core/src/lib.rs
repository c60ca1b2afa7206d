//! Valori's deterministic kernel, `#![no_std]`.
//!
//! Everything that decides what the database contains lives here, as pure
//! functions of their inputs, so that one log gives one state on every
//! machine:
//!
//! - [`q16`]: the Q16.16 value type and the one float → Q16.16 conversion;
//! - [`distance`]: exact integer distance kernels (wide, portable, AVX2,
//!   NEON) and the [`Metric`](distance::Metric)s built on them;
//! - [`event`]: the [`Event`](event::Event) enum and its canonical, versioned
//!   binary encoding (`alloc`);
//! - [`state`]: the columnar [`State`](state::State) and its `apply` loop
//!   (`alloc`);
//! - [`hash`]: the BLAKE3 state hash over a canonical encoding (`alloc`);
//! - [`hnsw`]: the deterministic HNSW index (`alloc`);
//! - [`rows`]: fixed-width rows in segments that never move (`alloc`);
//! - [`merkle`]: the RFC 6962/9162 Merkle tree over the event log, with
//!   inclusion and consistency proofs and their verifiers (`alloc`);
//! - [`golden`]: the fixed workload used to prove that four architectures
//!   agree (`alloc`);
//! - [`table`]: declared tables' schemas and scalar columns (`alloc`);
//! - [`limits`]: every size limit.
//!
//! No IO, clock, random number source, host-sized integer on disk, or float
//! arithmetic on any path that changes state.

#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod distance;
pub mod limits;
pub mod q16;
pub mod rng;

#[cfg(feature = "alloc")]
pub mod event;
#[cfg(feature = "alloc")]
pub mod golden;
#[cfg(feature = "alloc")]
pub mod hash;
#[cfg(feature = "alloc")]
pub mod hnsw;
#[cfg(feature = "alloc")]
pub mod merkle;
#[cfg(feature = "alloc")]
pub mod rows;
#[cfg(feature = "alloc")]
pub mod state;
#[cfg(feature = "alloc")]
pub mod table;

pub use distance::{Distance, Metric};
pub use q16::Q16;

#[cfg(all(test, feature = "alloc"))]
mod model_tests;
