//! `valori._native`: the pyo3 half of the `valori` Python package.
//!
//! - [`database::Database`] opens an engine in-process and exposes the
//!   operations of the REST API (`docs/rest.md`) as methods; searches,
//!   writes (which wait for fsync) and SQL release the GIL.
//! - [`convert`]: floats in through the engine's one `quantize`, exact
//!   distance keys out as the SQL functions' values.
//! - [`errors`]: errors as the exceptions of `valori.errors`, by their
//!   `valori_query::ops::Fault` (the class REST answers by).
//! - The operations themselves (search, inserts, names, metrics, limits)
//!   are `valori_query::ops`, shared with REST.
//! - Module functions for clients that check proofs themselves (the remote
//!   mode's `verify`): [`leaf_hash`], [`verify_inclusion`],
//!   [`verify_consistency`], [`blake3_hex`] (for `verify_export`) and
//!   [`quantize`].
//!
//! The shim has no logic of its own: defaults, automatic creation of the
//! `default` collection and batch splitting are in `valori/_client.py`,
//! shared by the embedded and the remote mode.

mod convert;
mod database;
mod errors;

use pyo3::prelude::*;
use valori_core::hash::Hash32;

use valori_query::ops::{Fault, SearchSpec};

use crate::convert::quantize_into;
use crate::database::{hex, parse_hash};
use crate::errors::error;

/// The Q16.16 raw integers of `vector`: the conversion every entry point
/// uses (`f64` → `f32` → `round_half_to_even(x · 65536)`). A bad component
/// raises `InvalidInput` naming the vector as `origin` (`"query"`,
/// `"vector"`, `"row"` with the batch position `index`, `"record"` with
/// the id `index`) — the message REST gives for the same vector.
#[pyfunction]
#[pyo3(signature = (vector, origin = "vector", index = 0))]
fn quantize(vector: Vec<f64>, origin: &str, index: u64) -> PyResult<Vec<i32>> {
    let origin = convert::origin(origin, index).ok_or_else(|| {
        error(
            Fault::InvalidInput,
            format!("origin {origin:?}: expected query, vector, row or record"),
        )
    })?;
    let mut out = Vec::with_capacity(vector.len());
    quantize_into(vector, origin, &mut out)?;
    Ok(out)
}

/// Checks a search's `k` and `ef` against the limits, with the refusal
/// REST gives (both modes check here first, so a filtered search, which
/// runs as a DSL query, is refused alike).
#[pyfunction]
#[pyo3(signature = (k, ef = None))]
fn check_search(k: u64, ef: Option<u64>) -> PyResult<()> {
    SearchSpec::new(k, ef, None, false)
        .map(drop)
        .map_err(errors::ops)
}

/// The log's leaf hash of an event's canonical bytes (RFC 6962 leaf
/// prefix, BLAKE3), as hex.
#[pyfunction]
fn leaf_hash(event: &[u8]) -> String {
    hex(&valori_core::merkle::leaf_hash(event))
}

/// Plain BLAKE3-256 of `data`, as hex: the hash function of the state
/// hash, for clients that recompute a collection's hash from an export
/// (`valori.verify_export`, which does the encoding itself).
#[pyfunction]
fn blake3_hex(py: Python<'_>, data: &[u8]) -> String {
    let digest = py.detach(|| blake3::hash(data));
    digest.to_hex().to_string()
}

fn hashes(path: &[String]) -> PyResult<Vec<Hash32>> {
    path.iter().map(|h| parse_hash(h)).collect()
}

/// RFC 9162 inclusion check: is `leaf` number `index` of the log of `size`
/// events whose root is `root`, by the audit `path`?
#[pyfunction]
fn verify_inclusion(
    leaf: &str,
    index: u64,
    size: u64,
    path: Vec<String>,
    root: &str,
) -> PyResult<bool> {
    Ok(valori_core::merkle::verify_inclusion(
        &parse_hash(leaf)?,
        index,
        size,
        &hashes(&path)?,
        &parse_hash(root)?,
    ))
}

/// RFC 9162 consistency check: is the log of `new_size` events with
/// `new_root` an extension of the log of `old_size` events with
/// `old_root`?
#[pyfunction]
fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &str,
    new_root: &str,
    path: Vec<String>,
) -> PyResult<bool> {
    Ok(valori_core::merkle::verify_consistency(
        old_size,
        new_size,
        &parse_hash(old_root)?,
        &parse_hash(new_root)?,
        &hashes(&path)?,
    ))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<database::Database>()?;
    m.add_function(wrap_pyfunction!(quantize, m)?)?;
    m.add_function(wrap_pyfunction!(check_search, m)?)?;
    m.add_function(wrap_pyfunction!(leaf_hash, m)?)?;
    m.add_function(wrap_pyfunction!(blake3_hex, m)?)?;
    m.add_function(wrap_pyfunction!(verify_inclusion, m)?)?;
    m.add_function(wrap_pyfunction!(verify_consistency, m)?)?;
    m.add("BATCH_RECORDS_MAX", valori_core::limits::BATCH_RECORDS_MAX)?;
    m.add("EVENT_BYTES_MAX", valori_core::limits::EVENT_BYTES_MAX)?;
    m.add(
        "METADATA_BYTES_MAX",
        valori_core::limits::METADATA_BYTES_MAX,
    )?;
    m.add("DIM_MAX", valori_core::limits::DIM_MAX)?;
    m.add("SEARCH_K_MAX", valori_core::limits::SEARCH_K_MAX)?;
    m.add("SEARCH_EF_MAX", valori_core::limits::SEARCH_EF_MAX)?;
    m.add(
        "CLIENT_BATCH_BYTES_MAX",
        valori_core::limits::CLIENT_BATCH_BYTES_MAX,
    )?;
    Ok(())
}
