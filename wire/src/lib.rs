//! The only crate that knows network protocols (Postgres wire, HTTP, Arrow
//! Flight) and serialisation formats. It also holds the `valori` binary.

pub mod audit;
pub mod auth;
pub mod client;
pub mod config;
pub mod flight;
pub mod metrics;
pub mod pg;
pub mod rest;
pub mod server;

#[cfg(test)]
mod test_alloc;
