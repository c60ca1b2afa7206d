//! Distance functions for SQL: exact integer kernels behind `Float64`
//! results.
//!
//! | function | value | ordering key it follows |
//! |---|---|---|
//! | `l2_squared(a, b)` | `Σ (a_i − b_i)²`, i.e. the exact raw sum / 2^32 | `l2` key, ascending |
//! | `l2(a, b)` | `√(raw sum) / 2^16` (the Euclidean distance) | `l2` key, ascending |
//! | `inner_product(a, b)` | `Σ a_i · b_i`, i.e. the exact raw sum / 2^32 | `inner_product` key, **descending** |
//! | `negative_inner_product(a, b)` | `−Σ a_i · b_i` (pgvector's `<#>`) | `inner_product` key, ascending |
//! | `cosine_distance(a, b)` | the cosine key / 2^32: `1 − cos(a, b)` with integer square roots, floored to 2^-32 | `cosine` key, ascending |
//! | `l1_distance(a, b)` | `Σ |a_i − b_i|`, i.e. the exact raw sum / 2^16 (pgvector's `<+>`) | none: no index follows it |
//!
//! `l2_distance` is another name of `l2` (pgvector's name for it).
//!
//! The keys are those of `docs/format.md` §1.2 and
//! [`valori_core::distance`]: both arguments are converted to Q16.16 with
//! [`valori_core::q16::quantize`] (the one conversion every entry point
//! uses), and the sums are computed exactly in integers by the same kernels
//! the engine searches with. Only the last step, integer → `f64`, rounds
//! (to nearest; the scaling by a power of two is exact). That step is
//! monotonic, so ordering by a function's value never contradicts ordering
//! by the exact key — but two keys that differ may round to the same
//! `f64` (only above 2^53 raw units, or through the square root of `l2`),
//! so queries that must match the engine order by `(value, id)`.
//!
//! # Arguments
//!
//! Either argument may be
//!
//! - a vector literal in pgvector's text form, `'[1, 2.5, -3]'` (each
//!   component parsed as an `f32`, as pgvector does);
//! - a list (`List`, `LargeList`, `FixedSizeList`) of numbers, converted to
//!   `f32` and then quantized — this is how the `vec` column arrives;
//! - a `FixedSizeList<Int32>` field tagged as raw Q16.16 (the `vec_q16`
//!   column, see [`crate::provider`]): taken as is, exactly.
//!
//! `l2(vec, q)` on a Valori table is rewritten at planning time to
//! `l2(vec_q16, q)` (see [`DistanceUdf`]'s `simplify`), so the stored raw
//! integers are compared directly. Where `vec_q16` is not reachable (for
//! example a subquery that selected only `vec`), the `f32` view is
//! quantized again. That gives back the stored integer for every value
//! that entered through `quantize` (a test proves it), and differs only
//! for raw integers above 2^24 in magnitude that a client stored directly
//! without an `f32` behind them.
//!
//! A NULL argument gives a NULL result (the functions are strict, as in
//! pgvector). A NULL component, NaN, an infinity, a component of magnitude
//! 32768 or more, a malformed literal or vectors of different dimensions are
//! errors ([`VectorInputError`]) naming the function, the argument and the
//! component.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, GenericListArray, OffsetSizeTrait,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Int32Type};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use valori_core::distance::{self, Kernel, Metric};
use valori_core::q16::{QuantizeErrorKind, quantize};

use crate::provider::{Q16_ENCODING, VALORI_ENCODING_KEY, VALORI_EXACT_COLUMN_KEY};

/// One of the distance functions; see the module documentation.
/// The value of the metric's own distance function (`l2`,
/// `negative_inner_product` or `cosine_distance`) for an exact search key:
/// what a search reports as a hit's distance.
pub fn metric_distance(metric: Metric, key: distance::Distance) -> f64 {
    const RAW_PRODUCT: f64 = 1.0 / 4_294_967_296.0;
    match metric {
        Metric::L2 => (key.0 as f64).sqrt() / 65536.0,
        Metric::InnerProduct => key.0 as f64 * RAW_PRODUCT,
        Metric::Cosine => cosine_value(key),
    }
}

/// A cosine key as the distance reported: never below 0, as pgvector's
/// (the key's floored roots make it slightly negative for nearly
/// parallel vectors; clamping keeps the order of the keys).
fn cosine_value(key: distance::Distance) -> f64 {
    const RAW_PRODUCT: f64 = 1.0 / 4_294_967_296.0;
    key.0.max(0) as f64 * RAW_PRODUCT
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DistanceFunction {
    L2Squared,
    L2,
    InnerProduct,
    NegativeInnerProduct,
    CosineDistance,
    L1,
}

impl DistanceFunction {
    /// Every function, in registration order.
    pub const ALL: [DistanceFunction; 6] = [
        DistanceFunction::L2Squared,
        DistanceFunction::L2,
        DistanceFunction::InnerProduct,
        DistanceFunction::NegativeInnerProduct,
        DistanceFunction::CosineDistance,
        DistanceFunction::L1,
    ];

    /// The SQL name.
    pub const fn name(self) -> &'static str {
        match self {
            DistanceFunction::L2Squared => "l2_squared",
            DistanceFunction::L2 => "l2",
            DistanceFunction::InnerProduct => "inner_product",
            DistanceFunction::NegativeInnerProduct => "negative_inner_product",
            DistanceFunction::CosineDistance => "cosine_distance",
            DistanceFunction::L1 => "l1_distance",
        }
    }

    /// Other names the function answers to.
    pub const fn aliases(self) -> &'static [&'static str] {
        match self {
            DistanceFunction::L2 => &["l2_distance"],
            _ => &[],
        }
    }

    /// The metric whose exact key this function's value follows (for
    /// `inner_product`, in reverse); `None` for `l1_distance`, which no
    /// index is built for (it is answered by an exact sort).
    pub const fn metric(self) -> Option<Metric> {
        match self {
            DistanceFunction::L2Squared | DistanceFunction::L2 => Some(Metric::L2),
            DistanceFunction::InnerProduct | DistanceFunction::NegativeInnerProduct => {
                Some(Metric::InnerProduct)
            }
            DistanceFunction::CosineDistance => Some(Metric::Cosine),
            DistanceFunction::L1 => None,
        }
    }

    /// The function's value for two Q16.16 vectors of one dimension.
    pub fn evaluate(self, kernel: Kernel, a: &[i32], b: &[i32]) -> f64 {
        // 2^-32: one raw unit of a product of two Q16.16 values. Dividing
        // by a power of two is exact, so each value rounds exactly once
        // (integer → f64).
        const RAW_PRODUCT: f64 = 1.0 / 4_294_967_296.0;
        match self {
            DistanceFunction::L2Squared => kernel.l2_squared(a, b) as f64 * RAW_PRODUCT,
            DistanceFunction::L2 => (kernel.l2_squared(a, b) as f64).sqrt() / 65536.0,
            DistanceFunction::InnerProduct => kernel.dot(a, b) as f64 * RAW_PRODUCT,
            DistanceFunction::NegativeInnerProduct => -(kernel.dot(a, b) as f64) * RAW_PRODUCT,
            DistanceFunction::CosineDistance => cosine_value(kernel.distance(Metric::Cosine, a, b)),
            DistanceFunction::L1 => l1_raw(a, b) as f64 / 65536.0,
        }
    }
}

/// `Σ |a_i − b_i|` in raw Q16.16 units, exactly: each difference is below
/// 2^32 and there are at most [`valori_core::limits::DIM_MAX`] of them, so
/// the sum stays far below 2^64.
fn l1_raw(a: &[i32], b: &[i32]) -> u64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (i64::from(x) - i64::from(y)).unsigned_abs())
        .fold(0u64, u64::saturating_add)
}

impl fmt::Display for DistanceFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which argument of a distance function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Argument {
    First,
    Second,
    /// The one vector argument of a function that takes one.
    Only,
}

impl fmt::Display for Argument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Argument::First => "first argument",
            Argument::Second => "second argument",
            Argument::Only => "argument",
        })
    }
}

/// What is wrong with one component of a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentError {
    #[error("{0}")]
    Quantize(QuantizeErrorKind),
    #[error("NULL is not a vector component")]
    Null,
    #[error("not a number")]
    Syntax,
}

/// A distance function's argument that is not a vector Valori can compare.
/// Always the caller's fault: the query is wrong, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VectorInputError {
    #[error(
        "{function}: {argument} {text:?} is not a vector literal: expected '[x1, x2, ...]' with at least one component"
    )]
    Malformed {
        /// The SQL function (or operator's function) that read it.
        function: &'static str,
        argument: Argument,
        text: String,
    },
    #[error("{function}: {argument}, component {component} ({value}): {error}")]
    Component {
        function: &'static str,
        argument: Argument,
        /// 0-based index within the vector.
        component: u32,
        /// The component as written (literals) or as received.
        value: String,
        error: ComponentError,
    },
    #[error("{function}: different vector dimensions {left} and {right}")]
    DimensionMismatch {
        function: &'static str,
        left: u64,
        right: u64,
    },
    /// A cast to `vector(n)` of a vector of another dimension.
    #[error("{function}: expected {expected} dimensions, not {dim}")]
    WrongDimension {
        function: &'static str,
        expected: i64,
        dim: u64,
    },
    /// A result vector would have no component.
    #[error("{function}: vector must have at least 1 dimension")]
    Empty { function: &'static str },
    /// A result vector would have more components than the limit.
    #[error("{function}: vector cannot have more than {max} dimensions (it would have {dim})")]
    TooManyDimensions {
        function: &'static str,
        dim: u64,
        max: u32,
    },
}

impl From<VectorInputError> for DataFusionError {
    fn from(e: VectorInputError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// The scalar UDF of one [`DistanceFunction`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DistanceUdf {
    function: DistanceFunction,
    signature: Signature,
    aliases: Vec<String>,
}

impl DistanceUdf {
    pub fn new(function: DistanceFunction) -> DistanceUdf {
        DistanceUdf {
            function,
            // Any two arguments: the types are checked in `return_type`, so
            // that no implicit coercion turns a literal into something else.
            signature: Signature::any(2, Volatility::Immutable),
            aliases: function.aliases().iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    pub fn function(&self) -> DistanceFunction {
        self.function
    }
}

/// Registers every distance function with `ctx`.
pub fn register_functions(ctx: &SessionContext) {
    for function in DistanceFunction::ALL {
        ctx.register_udf(ScalarUDF::new_from_impl(DistanceUdf::new(function)));
    }
}

/// The distance function `udf` implements, when it is one of ours.
pub fn distance_function_of(udf: &ScalarUDF) -> Option<DistanceFunction> {
    udf.inner()
        .downcast_ref::<DistanceUdf>()
        .map(DistanceUdf::function)
}

/// A constant argument of `function` as the function itself reads it: the
/// Q16.16 components of a vector literal or list, exactly as a call would
/// quantize them. `Ok(None)` for NULL (the function's value is then NULL).
/// The KNN rewrite uses this so that the graph is searched with the very
/// vector the function compares against.
pub fn constant_vector(
    value: &ScalarValue,
    function: DistanceFunction,
    argument: Argument,
) -> Result<Option<Vec<i32>>> {
    let field = Field::new("constant", value.data_type(), true);
    if !is_vector_type(field.data_type()) {
        return plan_err!(
            "{function}: {argument} has type {}; expected a vector literal such as '[1,2,3]' or a list of numbers",
            field.data_type()
        );
    }
    let vectors = Vectors::from_columnar(
        &ColumnarValue::Scalar(value.clone()),
        &field,
        function.name(),
        argument,
    )?;
    Ok(vectors.row(0).map(<[i32]>::to_vec))
}

/// Whether `data_type` can be a distance function's argument.
pub(crate) fn is_vector_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::Null | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            let t = item.data_type();
            t.is_numeric() || t.is_null()
        }
        _ => false,
    }
}

impl ScalarUDFImpl for DistanceUdf {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        for (i, t) in arg_types.iter().enumerate() {
            if !is_vector_type(t) {
                return plan_err!(
                    "{}: argument {} has type {t}; expected a vector literal such as '[1,2,3]' or a list of numbers",
                    self.function,
                    i + 1
                );
            }
        }
        Ok(DataType::Float64)
    }

    /// Rewrites a Valori table's `vec` column to its exact `vec_q16`
    /// sibling when the sibling is in scope, so that the stored raw
    /// integers are compared rather than their `f32` view.
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let mut changed = false;
        let args: Vec<Expr> = args
            .into_iter()
            .map(|arg| match exact_sibling(&arg, info) {
                Some(exact) => {
                    changed = true;
                    exact
                }
                None => arg,
            })
            .collect();
        if !changed {
            return Ok(ExprSimplifyResult::Original(args));
        }
        Ok(ExprSimplifyResult::Simplified(Expr::ScalarFunction(
            datafusion::logical_expr::expr::ScalarFunction::new_udf(
                Arc::new(ScalarUDF::new_from_impl(DistanceUdf::new(self.function))),
                args,
            ),
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return plan_err!("{} takes 2 arguments", self.function);
        };
        let scalar_result = matches!(
            (left, right),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let rows = if scalar_result { 1 } else { args.number_rows };
        let name = self.function.name();
        let left = Vectors::from_columnar(left, &args.arg_fields[0], name, Argument::First)?;
        let right = Vectors::from_columnar(right, &args.arg_fields[1], name, Argument::Second)?;
        let dim = left.max_len.max(right.max_len);
        let kernel = Kernel::new(
            dim,
            distance::max_abs(&left.values),
            distance::max_abs(&right.values),
        );
        let mut out: Vec<Option<f64>> = Vec::with_capacity(rows);
        for row in 0..rows {
            let (Some(a), Some(b)) = (left.row(row), right.row(row)) else {
                out.push(None);
                continue;
            };
            if a.len() != b.len() {
                return Err(VectorInputError::DimensionMismatch {
                    function: self.function.name(),
                    left: a.len() as u64,
                    right: b.len() as u64,
                }
                .into());
            }
            out.push(Some(self.function.evaluate(kernel, a, b)));
        }
        if scalar_result {
            return Ok(ColumnarValue::Scalar(ScalarValue::Float64(
                out.first().copied().flatten(),
            )));
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}

/// The exact `vec_q16` column standing for `expr`, when `expr` is a Valori
/// table's `vec` column and its sibling is in `info`'s schema.
fn exact_sibling(expr: &Expr, info: &SimplifyContext) -> Option<Expr> {
    let Expr::Column(column) = expr else {
        return None;
    };
    let schema = info.schema();
    let (qualifier, field) = schema.qualified_field_from_column(column).ok()?;
    let sibling_name = field.metadata().get(VALORI_EXACT_COLUMN_KEY)?;
    let sibling = datafusion::common::Column::new(qualifier.cloned(), sibling_name);
    let (_, sibling_field) = schema.qualified_field_from_column(&sibling).ok()?;
    if !is_q16_field(sibling_field) {
        return None;
    }
    Some(Expr::Column(sibling))
}

/// Whether `field` holds raw Q16.16 integers (the `vec_q16` column).
fn is_q16_field(field: &Field) -> bool {
    field
        .metadata()
        .get(VALORI_ENCODING_KEY)
        .is_some_and(|v| v == Q16_ENCODING)
        && matches!(field.data_type(), DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Int32)
}

/// One argument's vectors, quantized: row `r` is
/// `values[start..start + len]` of `spans[r]`, or NULL. A scalar argument
/// has one row, repeated for every row of the batch.
#[derive(Debug, Default)]
pub(crate) struct Vectors {
    pub(crate) values: Vec<i32>,
    spans: Vec<Option<(usize, usize)>>,
    pub(crate) max_len: usize,
    broadcast: bool,
}

impl Vectors {
    pub(crate) fn row(&self, row: usize) -> Option<&[i32]> {
        let index = if self.broadcast { 0 } else { row };
        let (start, len) = (*self.spans.get(index)?)?;
        Some(&self.values[start..start + len])
    }

    pub(crate) fn from_columnar(
        value: &ColumnarValue,
        field: &Field,
        function: &'static str,
        argument: Argument,
    ) -> Result<Vectors> {
        let (array, broadcast) = match value {
            ColumnarValue::Array(array) => (Arc::clone(array), false),
            ColumnarValue::Scalar(scalar) => (scalar.to_array_of_size(1)?, true),
        };
        let mut out = Vectors {
            broadcast,
            ..Vectors::default()
        };
        let cx = Context { function, argument };
        match array.data_type() {
            DataType::Null => out.spans = vec![None; array.len()],
            DataType::Utf8 => out.push_texts(array.as_string::<i32>().iter(), cx)?,
            DataType::LargeUtf8 => out.push_texts(array.as_string::<i64>().iter(), cx)?,
            DataType::Utf8View => out.push_texts(array.as_string_view().iter(), cx)?,
            DataType::FixedSizeList(_, size) => {
                let list = array.as_fixed_size_list();
                let size = usize::try_from(*size).unwrap_or(0);
                let raw = is_q16_field(field);
                let values = ComponentValues::new(list.values(), raw)?;
                for row in 0..list.len() {
                    if list.is_null(row) {
                        out.spans.push(None);
                    } else {
                        let start = usize::try_from(list.value_offset(row)).unwrap_or(0);
                        out.push_range(&values, start, size, cx)?;
                    }
                }
            }
            DataType::List(_) => out.push_list(array.as_list::<i32>(), cx)?,
            DataType::LargeList(_) => out.push_list(array.as_list::<i64>(), cx)?,
            other => {
                return plan_err!(
                    "{function}: {argument} has type {other}; expected a vector literal such as '[1,2,3]' or a list of numbers"
                );
            }
        }
        Ok(out)
    }

    fn push_list<O: OffsetSizeTrait>(
        &mut self,
        list: &GenericListArray<O>,
        cx: Context,
    ) -> Result<()> {
        let values = ComponentValues::new(list.values(), false)?;
        let offsets = list.value_offsets();
        for row in 0..list.len() {
            if list.is_null(row) {
                self.spans.push(None);
                continue;
            }
            let start = offsets[row].as_usize();
            let end = offsets[row + 1].as_usize();
            self.push_range(&values, start, end - start, cx)?;
        }
        Ok(())
    }

    /// Appends one vector: components `start..start + len` of `values`.
    fn push_range(
        &mut self,
        values: &ComponentValues,
        start: usize,
        len: usize,
        cx: Context,
    ) -> Result<()> {
        let first = self.values.len();
        for i in 0..len {
            let component = i as u32;
            let raw = match values {
                ComponentValues::Raw(a) => {
                    if a.is_null(start + i) {
                        return Err(cx.component(component, "NULL", ComponentError::Null));
                    }
                    a.value(start + i)
                }
                ComponentValues::Float(a) => {
                    if a.is_null(start + i) {
                        return Err(cx.component(component, "NULL", ComponentError::Null));
                    }
                    let x = a.value(start + i);
                    quantize(x)
                        .map_err(|kind| {
                            cx.component(
                                component,
                                &format!("{x:?}"),
                                ComponentError::Quantize(kind),
                            )
                        })?
                        .raw()
                }
            };
            self.values.push(raw);
        }
        self.spans.push(Some((first, len)));
        self.max_len = self.max_len.max(len);
        Ok(())
    }

    fn push_texts<'a>(
        &mut self,
        texts: impl Iterator<Item = Option<&'a str>>,
        cx: Context,
    ) -> Result<()> {
        for text in texts {
            match text {
                None => self.spans.push(None),
                Some(text) => {
                    let first = self.values.len();
                    parse_vector_into(text, &mut self.values, cx)?;
                    let len = self.values.len() - first;
                    self.spans.push(Some((first, len)));
                    self.max_len = self.max_len.max(len);
                }
            }
        }
        Ok(())
    }
}

/// Where an error happened, for its message.
#[derive(Clone, Copy, Debug)]
struct Context {
    function: &'static str,
    argument: Argument,
}

impl Context {
    fn component(self, component: u32, value: &str, error: ComponentError) -> DataFusionError {
        VectorInputError::Component {
            function: self.function,
            argument: self.argument,
            component,
            value: value.to_owned(),
            error,
        }
        .into()
    }
}

/// The components of a list argument: raw Q16.16 integers, or numbers as
/// `f32` still to be quantized.
enum ComponentValues {
    Raw(datafusion::arrow::array::Int32Array),
    Float(datafusion::arrow::array::Float32Array),
}

impl ComponentValues {
    fn new(values: &ArrayRef, raw: bool) -> Result<ComponentValues> {
        if raw {
            return Ok(ComponentValues::Raw(
                values.as_primitive::<Int32Type>().clone(),
            ));
        }
        // Every number becomes an f32 first (as a pgvector `vector` holds
        // f32), then goes through the one quantization.
        let floats = cast(values, &DataType::Float32)?;
        Ok(ComponentValues::Float(
            floats.as_primitive::<Float32Type>().clone(),
        ))
    }
}

/// Parses pgvector's text form `[x1, x2, ...]` into Q16.16 components
/// appended to `out` (left unchanged on error).
fn parse_vector_into(text: &str, out: &mut Vec<i32>, cx: Context) -> Result<()> {
    let malformed = || -> DataFusionError {
        VectorInputError::Malformed {
            function: cx.function,
            argument: cx.argument,
            text: text.to_owned(),
        }
        .into()
    };
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(malformed)?;
    if inner.trim().is_empty() {
        return Err(malformed());
    }
    let start = out.len();
    for (i, part) in inner.split(',').enumerate() {
        let part = part.trim();
        let parsed = part.parse::<f32>().map_err(|_| ComponentError::Syntax);
        let raw = parsed.and_then(|x| quantize(x).map_err(ComponentError::Quantize));
        match raw {
            Ok(q) => out.push(q.raw()),
            Err(error) => {
                out.truncate(start);
                return Err(cx.component(i as u32, part, error));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context {
        Context {
            function: "l2",
            argument: Argument::Second,
        }
    }

    fn parse(text: &str) -> std::result::Result<Vec<i32>, String> {
        let mut out = Vec::new();
        parse_vector_into(text, &mut out, cx())
            .map(|()| out)
            .map_err(|e| e.to_string())
    }

    /// Proves literals parse component by component into exactly what
    /// `quantize` gives for the same f32, whitespace aside.
    #[test]
    fn literal_components_go_through_quantize() {
        assert_eq!(parse("[1,2,3]").unwrap(), vec![65536, 131072, 196608]);
        assert_eq!(parse("  [ -0.5 , 1e-5,0.1 ] ").unwrap(), {
            let q = |x: f32| quantize(x).unwrap().raw();
            vec![-32768, q(1e-5), q(0.1)]
        });
        // 1e-5 · 65536 = 0.65536 rounds to 1; 0.1f32 · 65536 = 6553.6000…
        // rounds to 6554.
        assert_eq!(parse("[1e-5, 0.1]").unwrap(), vec![1, 6554]);
    }

    /// Proves malformed literals and bad components are errors naming the
    /// function, the argument and the component.
    #[test]
    fn bad_literals_name_the_component() {
        for text in ["", "[]", "[ ]", "1,2", "[1,2", "(1,2)"] {
            let e = parse(text).unwrap_err();
            assert!(e.contains("l2: second argument"), "{text}: {e}");
            assert!(e.contains("is not a vector literal"), "{text}: {e}");
        }
        let e = parse("[1, x, 3]").unwrap_err();
        assert!(e.contains("component 1 (x): not a number"), "{e}");
        let e = parse("[1, 2, NaN]").unwrap_err();
        assert!(e.contains("component 2 (NaN): NaN"), "{e}");
        let e = parse("[inf]").unwrap_err();
        assert!(e.contains("component 0 (inf): infinity"), "{e}");
        let e = parse("[0, 32768]").unwrap_err();
        assert!(
            e.contains("component 1 (32768): |x| must be below 32768"),
            "{e}"
        );
        let e = parse("[1,,2]").unwrap_err();
        assert!(e.contains("component 1 (): not a number"), "{e}");
    }

    /// Proves that the `f32` view of any value that entered through
    /// `quantize` converts back to the same raw integer, on a stride
    /// through every f32 bit pattern (so the fallback without `vec_q16` is
    /// exact for such values): for |x| >= 256 the raw value is x · 2^16
    /// without rounding, below that it is at most 2^24, which f32 holds.
    #[test]
    fn f32_view_of_quantized_values_round_trips() {
        let mut bits: u32 = 0;
        let mut checked = 0u32;
        loop {
            if let Ok(q) = quantize(f32::from_bits(bits)) {
                let view = q.raw() as f32 / 65536.0;
                assert_eq!(
                    quantize(view).map(|v| v.raw()),
                    Ok(q.raw()),
                    "bits {bits:#010x}"
                );
                checked += 1;
            }
            match bits.checked_add(7919) {
                Some(next) => bits = next,
                None => break,
            }
        }
        assert!(checked > 100_000, "{checked}");
        // And a raw value no f32 holds does not round-trip: the case
        // vec_q16 exists for.
        let raw = (1 << 24) + 1;
        assert_ne!(quantize(raw as f32 / 65536.0).map(|v| v.raw()), Ok(raw));
    }

    /// Proves each function's value on small vectors against values worked
    /// out by hand (see the comments).
    #[test]
    fn values_match_hand_computation() {
        let q = |v: &[f32]| -> Vec<i32> { v.iter().map(|&x| quantize(x).unwrap().raw()).collect() };
        let a = q(&[3.0, 4.0, 0.0]);
        let b = q(&[0.0, 0.0, 0.0]);
        let c = q(&[1.0, 0.5, 2.0]);
        let k = Kernel::wide();
        // |a − 0|² = 9 + 16 = 25, |a| = 5.
        assert_eq!(DistanceFunction::L2Squared.evaluate(k, &a, &b), 25.0);
        assert_eq!(DistanceFunction::L2.evaluate(k, &a, &b), 5.0);
        // a·c = 3 + 2 + 0 = 5.
        assert_eq!(DistanceFunction::InnerProduct.evaluate(k, &a, &c), 5.0);
        assert_eq!(
            DistanceFunction::NegativeInnerProduct.evaluate(k, &a, &c),
            -5.0
        );
        // |a − c|² = 4 + 12.25 + 4 = 20.25, l2 = 4.5.
        assert_eq!(DistanceFunction::L2Squared.evaluate(k, &a, &c), 20.25);
        assert_eq!(DistanceFunction::L2.evaluate(k, &a, &c), 4.5);
        // cos(a, 2a) = 1: den = |a|·|2a| in raw units = (5·2^16)(10·2^16),
        // a·2a = 50·2^32 = den, so the key is 0.
        let a2 = q(&[6.0, 8.0, 0.0]);
        assert_eq!(DistanceFunction::CosineDistance.evaluate(k, &a, &a2), 0.0);
        // Orthogonal: a·(0,0,1) = 0, so 1 − cos = 1 exactly.
        let z = q(&[0.0, 0.0, 1.0]);
        assert_eq!(DistanceFunction::CosineDistance.evaluate(k, &a, &z), 1.0);
        // Opposite: 1 − (−1) = 2.
        let neg = q(&[-3.0, -4.0, 0.0]);
        assert_eq!(DistanceFunction::CosineDistance.evaluate(k, &a, &neg), 2.0);
        // A zero vector has cosine 0 by definition, so distance 1.
        assert_eq!(DistanceFunction::CosineDistance.evaluate(k, &a, &b), 1.0);
        // Parallel, with norms that are not perfect squares: the key is
        // below 0 (⌊√(14·2^32)⌋·⌊√(56·2^32)⌋ < 28·2^32 = p·2p), the distance 0.
        let p = q(&[1.0, 2.0, 3.0]);
        let p2 = q(&[2.0, 4.0, 6.0]);
        assert!(k.distance(Metric::Cosine, &p, &p2).0 < 0);
        assert_eq!(DistanceFunction::CosineDistance.evaluate(k, &p, &p2), 0.0);
        assert_eq!(
            metric_distance(Metric::Cosine, k.distance(Metric::Cosine, &p, &p2)),
            0.0
        );
    }
}
