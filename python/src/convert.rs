//! Values crossing the edge: floats in (quantized once, by the engine's
//! own `quantize`), distances out.

use valori_core::distance::{Distance, Metric};
use valori_core::q16::quantize;

use crate::errors::{Kind, error};

/// Where a vector came from, to name it in an error.
#[derive(Clone, Copy, Debug)]
pub enum Origin {
    /// The query vector of a search.
    Query,
    /// The vector of a single insert that lets the engine choose the id.
    Single,
    /// Vector number `index` of a batch (0-based position in the call).
    Row(usize),
    /// The vector of the record with this id.
    Record(u64),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Query => f.write_str("query vector"),
            Origin::Single => f.write_str("vector"),
            Origin::Row(i) => write!(f, "vector {i} of the batch"),
            Origin::Record(id) => write!(f, "record {id}"),
        }
    }
}

/// Appends the Q16.16 raw values of `values` to `out`. Python floats are
/// `f64`; like every entry point they become `f32` first (round to nearest)
/// and then go through `quantize`, so a float gives the same raw integer
/// here, over REST and in SQL.
pub fn quantize_into<T: Copy + Into<f64>>(
    values: impl IntoIterator<Item = T>,
    origin: Origin,
    out: &mut Vec<i32>,
) -> pyo3::PyResult<()> {
    for (component, x) in values.into_iter().enumerate() {
        let x: f64 = x.into();
        let narrow = x as f32;
        match quantize(narrow) {
            Ok(q) => out.push(q.raw()),
            Err(kind) => {
                return Err(error(
                    Kind::InvalidInput,
                    format!("{origin}: component {component} ({x:?}): {kind}"),
                ));
            }
        }
    }
    Ok(())
}

/// The user-facing distance of an exact key: the value of the metric's SQL
/// function (`l2`, `negative_inner_product`, `cosine_distance`), computed
/// as `valori_query::functions::DistanceFunction::evaluate` does, so that
/// embedded and REST hits carry the same floats.
pub fn distance_value(metric: Metric, d: Distance) -> f64 {
    // 2^-32: one raw unit of a product of two Q16.16 values; dividing by a
    // power of two is exact, so each value rounds once (integer → f64).
    const RAW_PRODUCT: f64 = 1.0 / 4_294_967_296.0;
    match metric {
        Metric::L2 => (d.0 as f64).sqrt() / 65536.0,
        // The key is the negated dot product; negation commutes with the
        // rounding to f64.
        Metric::InnerProduct | Metric::Cosine => d.0 as f64 * RAW_PRODUCT,
    }
}
