//! The database engine: it owns the [`State`](valori_core::state::State) and
//! is the only writer of it. The durable event log, recovery, snapshots and
//! proofs are built here on top of the deterministic core.

pub use valori_columnar::State;
