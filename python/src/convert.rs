//! Floats crossing the edge: quantized once, by the engine's own
//! `quantize`. (Distances go out through
//! `valori_query::functions::metric_distance`, as over REST.)

use valori_core::q16;

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
/// and then go through the engine's `quantize`, so a float gives the same
/// raw integer here, over REST and in SQL. On error `out` is unchanged.
pub fn quantize_into<T: Copy + Into<f64>>(
    values: impl IntoIterator<Item = T>,
    origin: Origin,
    out: &mut Vec<i32>,
) -> pyo3::PyResult<()> {
    let narrowed: Vec<f32> = values.into_iter().map(|x| x.into() as f32).collect();
    quantize_f32_into(&narrowed, origin, out)
}

/// [`quantize_into`] for values that are `f32` already (read in place).
pub fn quantize_f32_into(values: &[f32], origin: Origin, out: &mut Vec<i32>) -> pyo3::PyResult<()> {
    q16::quantize_into(values, out).map_err(|e| error(Kind::InvalidInput, format!("{origin}: {e}")))
}
