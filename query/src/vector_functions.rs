//! pgvector's scalar functions and operators on vectors.
//!
//! | SQL | value |
//! |---|---|
//! | `x::vector` selected in a query, `vector(x)` | the vector `x` reads as (a text `'[1,2,3]'` checked as every vector input is, or a list of numbers), its components the Q16.16 values it is stored as |
//! | `x::vector(n)` selected in a query, `vector_of_dims(x, n)` | the same, and an error unless it has `n` components |
//! | `vector_dims(v)` | the number of components (`integer`) |
//! | `vector_norm(v)`, `l2_norm(v)` | `√(Σ raw_i²) / 2^16`: the Euclidean norm, from the exact integer sum (`double precision`) |
//! | `l2_normalize(v)` | `v / ‖v‖`, each component `raw_i / √(Σ raw²)` rounded once to `f32`; a zero vector stays zero |
//! | `subvector(v, start, count)` | components `start … start + count − 1`, 1-based and clipped to the vector as pgvector does |
//! | `v + w`, `vector_add(v, w)` | element-wise sum |
//! | `v - w`, `vector_sub(v, w)` | element-wise difference |
//! | `v * w`, `vector_mul(v, w)` | element-wise product |
//! | `v \|\| w`, `vector_concat(v, w)` | the components of `v`, then those of `w` |
//!
//! Every vector argument is read as the distance functions read it
//! ([`crate::functions`]): a literal `'[1,2,3]'`, a list of numbers or a
//! vector column, quantized to Q16.16 by the one conversion. Results that
//! are vectors are lists of `f32` (pgvector's `vector` on the wire),
//! computed from the exact integers and rounded once: a sum or difference
//! of two Q16.16 values is exact in integers, a product exact in 64-bit
//! integers before the rounding. A result may hold components of 32768 or
//! more (pgvector's `f32` holds them too); using such a vector as a
//! distance argument or storing it is refused then, as for any input.
//!
//! NULL in gives NULL out. Vectors of different dimensions, a result with
//! no component or more than [`DIM_MAX`] components are errors
//! ([`VectorInputError`]).
//!
//! # Operators
//!
//! `+`, `-`, `*` and `||` are planned by [`VectorOperatorPlanner`], which
//! DataFusion asks before its own planners: when either operand is a
//! vector (a list of `f32`, as a vector column is), the operator becomes
//! the function. A literal cast to vector (`'[1,2]'::vector + …`) is
//! recognised on the syntax tree ([`crate::pgvector`]), since the cast
//! itself is dropped there. Two texts without a cast stay texts, as in
//! Postgres (`'[1]' || '[2]'` is the text `'[1][2]'`).
//!
//! [`DIM_MAX`]: valori_core::limits::DIM_MAX

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, Float32Array, Float64Array, Int32Array, ListArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::common::{DFSchema, Result, ScalarValue, plan_err};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use valori_core::limits::DIM_MAX;

use crate::functions::{Argument, VectorInputError, Vectors, is_vector_type};

/// One of the functions of this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VectorFunction {
    Cast,
    CastDims,
    Dims,
    Norm,
    Normalize,
    Subvector,
    Add,
    Sub,
    Mul,
    Concat,
}

impl VectorFunction {
    /// Every function, in registration order.
    pub const ALL: [VectorFunction; 10] = [
        VectorFunction::Cast,
        VectorFunction::CastDims,
        VectorFunction::Dims,
        VectorFunction::Norm,
        VectorFunction::Normalize,
        VectorFunction::Subvector,
        VectorFunction::Add,
        VectorFunction::Sub,
        VectorFunction::Mul,
        VectorFunction::Concat,
    ];

    /// The SQL name.
    pub const fn name(self) -> &'static str {
        match self {
            VectorFunction::Cast => "vector",
            VectorFunction::CastDims => "vector_of_dims",
            VectorFunction::Dims => "vector_dims",
            VectorFunction::Norm => "vector_norm",
            VectorFunction::Normalize => "l2_normalize",
            VectorFunction::Subvector => "subvector",
            VectorFunction::Add => "vector_add",
            VectorFunction::Sub => "vector_sub",
            VectorFunction::Mul => "vector_mul",
            VectorFunction::Concat => "vector_concat",
        }
    }

    const fn aliases(self) -> &'static [&'static str] {
        match self {
            VectorFunction::Norm => &["l2_norm"],
            _ => &[],
        }
    }

    /// How many arguments it takes.
    const fn arity(self) -> usize {
        match self {
            VectorFunction::Cast
            | VectorFunction::Dims
            | VectorFunction::Norm
            | VectorFunction::Normalize => 1,
            VectorFunction::Subvector => 3,
            VectorFunction::CastDims => 2,
            _ => 2,
        }
    }

    /// How many of its arguments (the first ones) are vectors.
    const fn vector_arguments(self) -> usize {
        match self {
            VectorFunction::Cast
            | VectorFunction::CastDims
            | VectorFunction::Dims
            | VectorFunction::Norm
            | VectorFunction::Normalize
            | VectorFunction::Subvector => 1,
            _ => 2,
        }
    }

    /// The function an operator stands for when an operand is a vector.
    fn of_operator(op: &BinaryOperator) -> Option<VectorFunction> {
        Some(match op {
            BinaryOperator::Plus => VectorFunction::Add,
            BinaryOperator::Minus => VectorFunction::Sub,
            BinaryOperator::Multiply => VectorFunction::Mul,
            BinaryOperator::StringConcat => VectorFunction::Concat,
            _ => return None,
        })
    }
}

/// The function name an operator stands for between vectors (for the
/// syntax tree's rewrite of literals cast to vector).
pub fn operator_function_name(op: &BinaryOperator) -> Option<&'static str> {
    VectorFunction::of_operator(op).map(VectorFunction::name)
}

/// The scalar UDF of one [`VectorFunction`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorUdf {
    function: VectorFunction,
    signature: Signature,
    aliases: Vec<String>,
}

impl VectorUdf {
    pub fn new(function: VectorFunction) -> VectorUdf {
        VectorUdf {
            function,
            // Types are checked in `return_type`, so that no implicit
            // coercion turns a vector literal into something else.
            signature: Signature::any(function.arity(), Volatility::Immutable),
            aliases: function.aliases().iter().map(|a| (*a).to_owned()).collect(),
        }
    }
}

/// Registers every function of this module with `ctx`.
pub fn register_functions(ctx: &SessionContext) {
    for function in VectorFunction::ALL {
        ctx.register_udf(ScalarUDF::new_from_impl(VectorUdf::new(function)));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(RealArrayCastUdf::default()));
    ctx.register_udf(ScalarUDF::new_from_impl(TextCastUdf::default()));
}

/// The type of vectors these functions return: pgvector's `vector` on
/// the wire.
pub fn vector_result_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)))
}

/// Whether values of `data_type` are vectors to the operators: lists of
/// `f32`, as vector columns and vector results are.
pub(crate) fn is_vector_value(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _)
            if matches!(item.data_type(), DataType::Float32 | DataType::Float16)
    )
}

fn argument_of(function: VectorFunction, index: usize) -> Argument {
    match (function.vector_arguments(), index) {
        (1, _) => Argument::Only,
        (_, 0) => Argument::First,
        _ => Argument::Second,
    }
}

impl ScalarUDFImpl for VectorUdf {
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
        let vectors = self.function.vector_arguments();
        for (i, t) in arg_types.iter().enumerate() {
            if i < vectors && !is_vector_type(t) {
                return plan_err!(
                    "{}: argument {} has type {t}; expected a vector such as '[1,2,3]'",
                    self.function.name(),
                    i + 1
                );
            }
            if i >= vectors && !(t.is_integer() || t.is_null()) {
                return plan_err!(
                    "{}: argument {} has type {t}; expected an integer",
                    self.function.name(),
                    i + 1
                );
            }
        }
        Ok(match self.function {
            VectorFunction::Dims => DataType::Int32,
            VectorFunction::Norm => DataType::Float64,
            _ => vector_result_type(),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let function = self.function;
        if args.args.len() != function.arity() {
            return plan_err!("{} takes {} arguments", function.name(), function.arity());
        }
        let scalar_result = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar_result { 1 } else { args.number_rows };
        let mut vectors = Vec::with_capacity(function.vector_arguments());
        for i in 0..function.vector_arguments() {
            vectors.push(Vectors::from_columnar(
                &args.args[i],
                &args.arg_fields[i],
                function.name(),
                argument_of(function, i),
            )?);
        }
        let integers: Vec<Integers> = args.args[function.vector_arguments()..]
            .iter()
            .map(Integers::new)
            .collect::<Result<_>>()?;
        let out: ArrayRef = match function {
            VectorFunction::Dims => Arc::new(Int32Array::from_iter((0..rows).map(|r| {
                vectors[0]
                    .row(r)
                    .map(|v| i32::try_from(v.len()).unwrap_or(i32::MAX))
            }))),
            VectorFunction::Norm => Arc::new(Float64Array::from_iter(
                (0..rows).map(|r| vectors[0].row(r).map(norm)),
            )),
            _ => {
                let mut builder = ListBuilder::with_capacity(rows);
                for r in 0..rows {
                    let row = match function {
                        // A vector has at least one component.
                        VectorFunction::Cast | VectorFunction::CastDims
                            if vectors[0].row(r).is_some_and(<[i32]>::is_empty) =>
                        {
                            Some(Err(VectorInputError::Empty { function: "vector" }.into()))
                        }
                        VectorFunction::Cast => vectors[0]
                            .row(r)
                            .map(|v| Ok(v.iter().map(|&raw| raw_f32(i64::from(raw))).collect())),
                        VectorFunction::CastDims => match (vectors[0].row(r), integers[0].row(r)) {
                            (Some(v), Some(n)) if v.len() as i64 == n => {
                                Some(Ok(v.iter().map(|&raw| raw_f32(i64::from(raw))).collect()))
                            }
                            (Some(v), Some(n)) => Some(Err(VectorInputError::WrongDimension {
                                function: "vector",
                                expected: n,
                                dim: v.len() as u64,
                            }
                            .into())),
                            _ => None,
                        },
                        VectorFunction::Normalize => vectors[0].row(r).map(|v| Ok(normalize(v))),
                        VectorFunction::Subvector => {
                            match (vectors[0].row(r), integers[0].row(r), integers[1].row(r)) {
                                (Some(v), Some(start), Some(count)) => {
                                    Some(subvector(v, start, count))
                                }
                                _ => None,
                            }
                        }
                        _ => match (vectors[0].row(r), vectors[1].row(r)) {
                            (Some(a), Some(b)) => Some(elementwise(function, a, b)),
                            _ => None,
                        },
                    };
                    builder.push(row.transpose()?);
                }
                Arc::new(builder.finish()?)
            }
        };
        if scalar_result {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

/// An integer argument (`subvector`'s start and count), per row.
struct Integers {
    values: Vec<Option<i64>>,
    broadcast: bool,
}

impl Integers {
    fn new(value: &ColumnarValue) -> Result<Integers> {
        let (array, broadcast) = match value {
            ColumnarValue::Array(array) => (Arc::clone(array), false),
            ColumnarValue::Scalar(scalar) => (scalar.to_array_of_size(1)?, true),
        };
        let array = cast(&array, &DataType::Int64)?;
        Ok(Integers {
            values: array.as_primitive::<Int64Type>().iter().collect(),
            broadcast,
        })
    }

    fn row(&self, row: usize) -> Option<i64> {
        let index = if self.broadcast { 0 } else { row };
        self.values.get(index).copied().flatten()
    }
}

/// Lists of `f32` built row by row.
pub(crate) struct ListBuilder {
    values: Vec<f32>,
    offsets: Vec<i32>,
    valid: Vec<bool>,
}

impl ListBuilder {
    pub(crate) fn with_capacity(rows: usize) -> ListBuilder {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        ListBuilder {
            values: Vec::new(),
            offsets,
            valid: Vec::with_capacity(rows),
        }
    }

    pub(crate) fn push(&mut self, row: Option<Vec<f32>>) {
        self.valid.push(row.is_some());
        if let Some(row) = row {
            self.values.extend(row);
        }
        // Offsets stay within i32: a batch's vectors came from arrays whose
        // offsets are i32 or from literals bounded by the statement size,
        // and no result is longer than its inputs together.
        self.offsets
            .push(i32::try_from(self.values.len()).unwrap_or(i32::MAX));
    }

    pub(crate) fn finish(self) -> Result<ListArray> {
        let DataType::List(field) = vector_result_type() else {
            unreachable!("vector_result_type is a list")
        };
        Ok(ListArray::try_new(
            field,
            OffsetBuffer::new(self.offsets.into()),
            Arc::new(Float32Array::from(self.values)),
            Some(self.valid.into()),
        )?)
    }
}

/// One raw Q16.16 integer as an `f32` (rounded once, above 2^24).
fn raw_f32(raw: i64) -> f32 {
    raw as f32 / 65536.0
}

/// `√(Σ raw_i²) / 2^16`: the sum is exact (each square is below 2^62 and
/// there are at most [`DIM_MAX`] of them); it rounds once to `f64`, the
/// square root once more — as `l2(v, 0)` does.
fn norm(v: &[i32]) -> f64 {
    (squares(v) as f64).sqrt() / 65536.0
}

fn squares(v: &[i32]) -> u128 {
    v.iter()
        .map(|&x| u128::from(x.unsigned_abs()) * u128::from(x.unsigned_abs()))
        .sum()
}

fn normalize(v: &[i32]) -> Vec<f32> {
    let norm = (squares(v) as f64).sqrt();
    if norm == 0.0 {
        return vec![0.0; v.len()];
    }
    v.iter().map(|&x| (f64::from(x) / norm) as f32).collect()
}

/// pgvector's `subvector`: 1-based `start`, clipped to the vector; a
/// result without components is an error.
fn subvector(v: &[i32], start: i64, count: i64) -> Result<Vec<f32>> {
    let dim = v.len() as i64;
    let empty = || VectorInputError::Empty {
        function: VectorFunction::Subvector.name(),
    };
    if count < 1 {
        return Err(empty().into());
    }
    // `end` is exclusive, 1-based; computed without overflow as pgvector
    // does (`start > dim - count` means the end is past the vector).
    let end = if start > dim - count {
        dim + 1
    } else {
        start + count
    };
    let start = start.max(1);
    if start > dim || end <= start {
        return Err(empty().into());
    }
    let (from, to) = ((start - 1) as usize, (end - 1) as usize);
    Ok(v[from..to].iter().map(|&x| raw_f32(i64::from(x))).collect())
}

fn elementwise(function: VectorFunction, a: &[i32], b: &[i32]) -> Result<Vec<f32>> {
    if function == VectorFunction::Concat {
        let dim = a.len() + b.len();
        if dim > DIM_MAX as usize {
            return Err(VectorInputError::TooManyDimensions {
                function: function.name(),
                dim: dim as u64,
                max: DIM_MAX,
            }
            .into());
        }
        return Ok(a.iter().chain(b).map(|&x| raw_f32(i64::from(x))).collect());
    }
    if a.len() != b.len() {
        return Err(VectorInputError::DimensionMismatch {
            function: function.name(),
            left: a.len() as u64,
            right: b.len() as u64,
        }
        .into());
    }
    // 2^-32: one raw unit of a product of two Q16.16 values.
    const RAW_PRODUCT: f32 = 1.0 / 4_294_967_296.0;
    Ok(a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let (x, y) = (i64::from(x), i64::from(y));
            match function {
                VectorFunction::Add => raw_f32(x + y),
                VectorFunction::Sub => raw_f32(x - y),
                // |x·y| < 2^62: exact in i64, rounded once to f32; the
                // scaling by a power of two is exact.
                _ => (x * y) as f32 * RAW_PRODUCT,
            }
        })
        .collect())
}

/// The name of the function a cast to `real[]` / `float4[]` becomes in a
/// query (pgvector's cast function has this name).
pub const REAL_ARRAY_CAST: &str = "vector_to_float4";

/// `x::real[]` in a query: the components as `f32`s, in a field typed
/// `real[]` for the Postgres front end (a plain list of `f32` is sent as a
/// `vector`). Any argument is converted as Arrow's cast converts it, so a
/// value the cast refuses is refused here too.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RealArrayCastUdf {
    signature: Signature,
}

impl Default for RealArrayCastUdf {
    fn default() -> Self {
        RealArrayCastUdf {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for RealArrayCastUdf {
    fn name(&self) -> &str {
        REAL_ARRAY_CAST
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(vector_result_type())
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        let field = Field::new(REAL_ARRAY_CAST, vector_result_type(), nullable).with_metadata(
            [(
                crate::catalog::PG_TYPE_METADATA_KEY.to_owned(),
                "_float4".to_owned(),
            )]
            .into(),
        );
        Ok(Arc::new(field))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return plan_err!("{REAL_ARRAY_CAST} takes 1 argument");
        };
        arg.cast_to(&vector_result_type(), None)
    }
}

/// The name of the function a cast to `text` (or `varchar`) becomes in a
/// query.
pub const TEXT_CAST: &str = "valori_text_cast";

/// `x::text` in a query: a vector as pgvector writes it (`[1,2,3]`), a
/// `real[]` as Postgres writes an array (`{1,2,3}`), a timestamp as
/// Postgres writes it (`2024-01-02 03:04:05`, `+00` for UTC), anything
/// else as
/// DataFusion's own cast converts it (so a value the cast refuses is
/// refused here too). Arrow has no cast from a list to text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TextCastUdf {
    signature: Signature,
}

impl Default for TextCastUdf {
    fn default() -> Self {
        TextCastUdf {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for TextCastUdf {
    fn name(&self) -> &str {
        TEXT_CAST
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ([arg], [field]) = (args.args.as_slice(), args.arg_fields.as_slice()) else {
            return plan_err!("{TEXT_CAST} takes 1 argument");
        };
        if let DataType::Timestamp(unit, tz) = field.data_type() {
            // As Postgres prints it (Arrow writes `2024-01-02T03:04:05`).
            let values = arg.to_array(args.number_rows)?;
            let suffix = if tz.is_some() { "+00" } else { "" };
            let out: ArrayRef = Arc::new(
                (0..values.len())
                    .map(|row| {
                        values.is_valid(row).then(|| {
                            let micros = crate::declared::timestamp_micros(&values, row, *unit);
                            format!("{}{suffix}", crate::declared::timestamp_text(micros))
                        })
                    })
                    .collect::<datafusion::arrow::array::StringArray>(),
            );
            if matches!(arg, ColumnarValue::Scalar(_)) {
                return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
            }
            return Ok(ColumnarValue::Array(out));
        }
        // `x::real::text`: PostgreSQL's float text (`1e+06`, `2`), not
        // Arrow's (`1000000.0`, `2.0`).
        if matches!(field.data_type(), DataType::Float32 | DataType::Float64)
            && let Some(out) =
                crate::float_text::float_column_text(&arg.to_array(args.number_rows)?)
        {
            let out: ArrayRef = Arc::new(out);
            if matches!(arg, ColumnarValue::Scalar(_)) {
                return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
            }
            return Ok(ColumnarValue::Array(out));
        }
        // `x::text` of another array: Postgres's array text (`{a,"b c"}`).
        if matches!(
            field.data_type(),
            DataType::List(_) | DataType::LargeList(_)
        ) && !is_vector_value(field.data_type())
        {
            use datafusion::arrow::array::Array as _;
            let values = arg.to_array(args.number_rows)?;
            let lists = cast(
                &values,
                &DataType::List(Arc::new(Field::new_list_field(
                    match field.data_type() {
                        DataType::List(item) | DataType::LargeList(item) => {
                            item.data_type().clone()
                        }
                        _ => unreachable!("matched above"),
                    },
                    true,
                ))),
            )?;
            let lists = lists.as_list::<i32>();
            let out: ArrayRef = Arc::new(
                (0..lists.len())
                    .map(|row| {
                        if lists.is_null(row) {
                            return Ok(None);
                        }
                        crate::declared::array_text(lists.value(row).as_ref())
                            .map(Some)
                            .ok_or_else(|| {
                                datafusion::common::DataFusionError::NotImplemented(
                                    "text of an array of arrays".to_owned(),
                                )
                            })
                    })
                    .collect::<Result<datafusion::arrow::array::StringArray>>()?,
            );
            if matches!(arg, ColumnarValue::Scalar(_)) {
                return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
            }
            return Ok(ColumnarValue::Array(out));
        }
        if !is_vector_value(field.data_type()) {
            let options = datafusion::arrow::compute::CastOptions {
                safe: false,
                ..Default::default()
            };
            return arg.cast_to(&DataType::Utf8, Some(&options));
        }
        let as_array = field
            .metadata()
            .get(crate::catalog::PG_TYPE_METADATA_KEY)
            .is_some_and(|t| t == "_float4");
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let lists = cast(&arg.to_array(args.number_rows)?, &vector_result_type())?;
        let lists = lists.as_any().downcast_ref::<ListArray>().ok_or_else(|| {
            datafusion::common::DataFusionError::Internal(format!(
                "{TEXT_CAST}: a list cast to {:?}",
                vector_result_type()
            ))
        })?;
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for row in lists.iter() {
            let Some(values) = row else {
                out.append_null();
                continue;
            };
            let values = values
                .as_any()
                .downcast_ref::<Float32Array>()
                .map(|v| {
                    v.iter()
                        .map(|x| x.unwrap_or(f32::NAN))
                        .collect::<Vec<f32>>()
                })
                .unwrap_or_default();
            let text = crate::statement::vector_text(&values);
            if as_array {
                out.append_value(format!("{{{}}}", &text[1..text.len() - 1]));
            } else {
                out.append_value(text);
            }
        }
        let out: ArrayRef = Arc::new(out.finish());
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

/// Plans `+`, `-`, `*` and `||` with a vector operand as the vector
/// functions (see the [module documentation](self)), and a comparison of
/// a vector with a text literal (`embedding = '[1,2,3]'`) as a comparison
/// with that vector.
#[derive(Debug, Default)]
pub struct VectorOperatorPlanner;

/// The comparison `op` stands for, if it is one.
fn comparison(op: &BinaryOperator) -> Option<datafusion::logical_expr::Operator> {
    use datafusion::logical_expr::Operator;
    Some(match op {
        BinaryOperator::Eq => Operator::Eq,
        BinaryOperator::NotEq => Operator::NotEq,
        BinaryOperator::Lt => Operator::Lt,
        BinaryOperator::LtEq => Operator::LtEq,
        BinaryOperator::Gt => Operator::Gt,
        BinaryOperator::GtEq => Operator::GtEq,
        _ => return None,
    })
}

/// The text literal `text` as a vector of type `vector_type` (the other
/// side of a comparison), read and checked as the distance functions read
/// a vector literal: its components rounded to Q16.16 as a stored
/// vector's are, so that a vector equals the text it was written from.
fn vector_literal(text: &str, vector_type: &DataType) -> Result<ScalarValue> {
    const FUNCTION: &str = "vector comparison";
    let literal = ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.to_owned())));
    let field = Field::new("literal", DataType::Utf8, true);
    let read = Vectors::from_columnar(&literal, &field, FUNCTION, Argument::Second)?;
    let raw = read.row(0).unwrap_or_default();
    let values = Arc::new(Float32Array::from_iter_values(
        raw.iter().map(|&r| raw_f32(i64::from(r))),
    ));
    match vector_type {
        DataType::FixedSizeList(item, n) => {
            if i64::from(*n) != raw.len() as i64 {
                return Err(VectorInputError::DimensionMismatch {
                    function: FUNCTION,
                    left: u64::try_from(*n).unwrap_or(0),
                    right: raw.len() as u64,
                }
                .into());
            }
            let values = cast(&(values as ArrayRef), item.data_type())?;
            let list = datafusion::arrow::array::FixedSizeListArray::try_new(
                Arc::clone(item),
                *n,
                values,
                None,
            )?;
            Ok(ScalarValue::FixedSizeList(Arc::new(list)))
        }
        _ => {
            let list = ListArray::try_new(
                Arc::new(Field::new_list_field(DataType::Float32, true)),
                OffsetBuffer::from_lengths([raw.len()]),
                values,
                None,
            )?;
            let list = cast(&(Arc::new(list) as ArrayRef), vector_type)?;
            ScalarValue::try_from_array(&list, 0)
        }
    }
}

impl ExprPlanner for VectorOperatorPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let is_vector = |e: &Expr| {
            e.get_type(schema)
                .map(|t| is_vector_value(&t))
                .unwrap_or(false)
        };
        if let Some(op) = comparison(&expr.op) {
            let text = |e: &Expr| match e {
                Expr::Literal(
                    ScalarValue::Utf8(Some(t))
                    | ScalarValue::Utf8View(Some(t))
                    | ScalarValue::LargeUtf8(Some(t)),
                    _,
                ) => Some(t.clone()),
                _ => None,
            };
            let (vector, literal, vector_left) = match (text(&expr.left), text(&expr.right)) {
                (None, Some(t)) if is_vector(&expr.left) => (&expr.left, t, true),
                (Some(t), None) if is_vector(&expr.right) => (&expr.right, t, false),
                _ => return Ok(PlannerResult::Original(expr)),
            };
            let literal = Expr::Literal(vector_literal(&literal, &vector.get_type(schema)?)?, None);
            let vector = vector.clone();
            let (left, right) = match vector_left {
                true => (vector, literal),
                false => (literal, vector),
            };
            return Ok(PlannerResult::Planned(Expr::BinaryExpr(
                datafusion::logical_expr::BinaryExpr::new(Box::new(left), op, Box::new(right)),
            )));
        }
        let Some(function) = VectorFunction::of_operator(&expr.op) else {
            return Ok(PlannerResult::Original(expr));
        };
        if !is_vector(&expr.left) && !is_vector(&expr.right) {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            datafusion::logical_expr::expr::ScalarFunction::new_udf(
                Arc::new(ScalarUDF::new_from_impl(VectorUdf::new(function))),
                vec![expr.left, expr.right],
            ),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &[f32]) -> Vec<i32> {
        v.iter()
            .map(|&x| valori_core::q16::quantize(x).unwrap().raw())
            .collect()
    }

    /// Proves `subvector` follows pgvector's clipping: 1-based start,
    /// a start before 1 shortens the result, a count past the end stops
    /// at the end, and an empty result is an error.
    #[test]
    fn subvector_clips_as_pgvector() {
        let v = q(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(subvector(&v, 2, 3).unwrap(), [2.0, 3.0, 4.0]);
        assert_eq!(subvector(&v, 0, 2).unwrap(), [1.0]);
        assert_eq!(subvector(&v, -1, 4).unwrap(), [1.0, 2.0]);
        assert_eq!(subvector(&v, 4, 10).unwrap(), [4.0, 5.0]);
        assert_eq!(
            subvector(&v, 1, i64::MAX).unwrap(),
            [1.0, 2.0, 3.0, 4.0, 5.0]
        );
        for (start, count) in [
            (6, 1),
            (1, 0),
            (0, 1),
            (i64::MIN, 1),
            (i64::MAX, 1),
            (2, -3),
        ] {
            assert!(subvector(&v, start, count).is_err(), "{start} {count}");
        }
    }

    /// Proves the element-wise operations on values worked out by hand,
    /// and the norm and normalization of a 3-4-5 triangle.
    #[test]
    fn elementwise_by_hand() {
        let a = q(&[1.0, 2.0, 3.0]);
        let b = q(&[4.0, 5.0, 6.5]);
        assert_eq!(
            elementwise(VectorFunction::Add, &a, &b).unwrap(),
            [5.0, 7.0, 9.5]
        );
        assert_eq!(
            elementwise(VectorFunction::Sub, &a, &b).unwrap(),
            [-3.0, -3.0, -3.5]
        );
        assert_eq!(
            elementwise(VectorFunction::Mul, &a, &b).unwrap(),
            [4.0, 10.0, 19.5]
        );
        assert_eq!(
            elementwise(VectorFunction::Concat, &a, &b[..1]).unwrap(),
            [1.0, 2.0, 3.0, 4.0]
        );
        assert!(elementwise(VectorFunction::Add, &a, &b[..2]).is_err());
        let t = q(&[3.0, 4.0]);
        assert_eq!(norm(&t), 5.0);
        assert_eq!(normalize(&t), [0.6, 0.8]);
        assert_eq!(normalize(&q(&[0.0, 0.0])), [0.0, 0.0]);
        let long = vec![1; DIM_MAX as usize];
        assert!(elementwise(VectorFunction::Concat, &long, &[1]).is_err());
    }
}
