//! Floats crossing the edge: quantized once, by the shared operations'
//! `quantize_f32`/`quantize_f64` (the engine's own `quantize`), naming the
//! vector as REST does. (Distances go out through
//! `valori_query::functions::metric_distance`, as over REST.)

use valori_query::ops::{self, VectorOrigin};

use crate::errors;

/// Appends the Q16.16 raw values of `values` to `out`. Python floats are
/// `f64`; like every entry point they become `f32` first (round to nearest)
/// and then go through the engine's `quantize`, so a float gives the same
/// raw integer here, over REST and in SQL. On error `out` is unchanged.
pub fn quantize_into<T: Copy + Into<f64>>(
    values: impl IntoIterator<Item = T>,
    origin: VectorOrigin,
    out: &mut Vec<i32>,
) -> pyo3::PyResult<()> {
    ops::quantize_f64(values.into_iter().map(Into::into), origin, out).map_err(errors::ops)
}

/// The origin named by `kind` (`"query"`, `"vector"`, `"row"`,
/// `"record"`) and `index` (the row or the record id), as the Python half
/// names a vector it checks itself.
pub fn origin(kind: &str, index: u64) -> Option<VectorOrigin> {
    match kind {
        "query" => Some(VectorOrigin::Query),
        "vector" => Some(VectorOrigin::Single),
        "row" => Some(VectorOrigin::Row(index)),
        "record" => Some(VectorOrigin::Record(index)),
        _ => None,
    }
}
