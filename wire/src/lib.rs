//! The only crate that knows network protocols (Postgres wire, HTTP, Arrow
//! Flight) and serialisation formats. It also holds the `valori` binary.

pub mod auth;
pub mod pg;
