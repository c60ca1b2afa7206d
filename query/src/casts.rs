//! Conversions to the integer types as Postgres makes them.
//!
//! DataFusion's cast of a floating-point or decimal value to an integer
//! truncates toward zero and reports overflow in its own words; Postgres
//! rounds, and names the type that overflowed. Every conversion to
//! `smallint`, `integer` or `bigint` that a statement makes goes through
//! the kernels here, so a query, a write and `COPY` agree:
//!
//! - a `real` or `double precision` value is rounded half to even
//!   (Postgres's `rint` in `float8_int4` and its relatives):
//!   `2.5::float8::int` is 2, `3.5::float8::int` is 4;
//! - a `numeric` value is rounded half away from zero (`numeric_int4`
//!   rounds before it converts): `2.5::numeric::int` is 3. A number
//!   written with a point or an exponent (`2.5`, `1e3`) is a `numeric`
//!   constant in Postgres, so it rounds this way too, and so does
//!   arithmetic of such constants with integers (`(n + 0.5)::int`);
//! - text is read by the integer input function (`int4in`): optional
//!   blanks and sign, decimal digits (or `0x`, `0o`, `0b` and their
//!   digits), `_` between digits; anything else, a point included, is
//!   `22P02` (`invalid input syntax for type integer: "2.5"`);
//! - a value outside the type is `22003` (`integer out of range`,
//!   `smallint out of range`, `bigint out of range`; for text, `value
//!   "…" is out of range for type integer`), NaN too; a `numeric` NaN is
//!   `0A000` (`cannot convert NaN to integer`), as in Postgres. Nothing
//!   wraps and nothing becomes NULL.
//!
//! In queries, [`PostgresTypes`] is an analyzer rule that runs before
//! DataFusion's type coercion: there the plan still holds the statement's
//! own expressions, so a decimal constant can be told from a
//! `double precision` value, which it no longer can once coercion has
//! cast integers to floats. It replaces each cast to an integer type (or
//! an array of one) whose operand could need rounding or checking by an
//! [`IntegerCast`] call that rounds by the operand's Postgres type
//! ([`Source`]). Casts that only widen an integer stay DataFusion's.
//! [`rewrite_literal_casts`] converts a constant cast to an integer
//! (`2.5::int`, `CAST(9223372036854775807.4 AS bigint)`) on the syntax
//! tree, exactly (DataFusion would read the constant as a `f64`). The
//! write path ([`crate::declared::scalar_bytes`]) uses the same kernels
//! for the values it stores in integer columns.
//!
//! The same rule reads `character(n)` values as Postgres does
//! ([`crate::bpchar`]), and answers `pg_typeof(x)` ([`PG_TYPEOF`]): the name of
//! `x`'s type as Postgres would type the expression written (a decimal
//! constant is `numeric`, `1` is `integer`, `'a'` alone is `unknown`),
//! a constant of type `regtype`, as Postgres prints it.
//!
//! What is not matched: values of `numeric` expressions are computed in
//! double precision by the query engine (only constants, `numeric`
//! columns and `::numeric` values are exact), so a rounding that falls
//! on a half only in exact decimal arithmetic can differ.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, GenericListArray, Int16Array, Int32Array, Int64Array, OffsetSizeTrait,
};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Field, FieldRef, Float32Type, Float64Type, Int64Type, UInt64Type,
};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::sql::sqlparser::ast::{
    self, DataType as SqlType, Statement, UnaryOperator, Value, visit_expressions_mut,
};

/// An integer type of Postgres.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntType {
    Int2,
    Int4,
    Int8,
}

impl IntType {
    /// The type's name as Postgres's messages write it.
    pub fn name(self) -> &'static str {
        match self {
            IntType::Int2 => "smallint",
            IntType::Int4 => "integer",
            IntType::Int8 => "bigint",
        }
    }

    fn min(self) -> i64 {
        match self {
            IntType::Int2 => i64::from(i16::MIN),
            IntType::Int4 => i64::from(i32::MIN),
            IntType::Int8 => i64::MIN,
        }
    }

    fn max(self) -> i64 {
        match self {
            IntType::Int2 => i64::from(i16::MAX),
            IntType::Int4 => i64::from(i32::MAX),
            IntType::Int8 => i64::MAX,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            IntType::Int2 => DataType::Int16,
            IntType::Int4 => DataType::Int32,
            IntType::Int8 => DataType::Int64,
        }
    }

    /// The Postgres integer type an Arrow type stands for.
    pub fn of_arrow(data_type: &DataType) -> Option<IntType> {
        match data_type {
            DataType::Int16 => Some(IntType::Int2),
            DataType::Int32 => Some(IntType::Int4),
            DataType::Int64 => Some(IntType::Int8),
            _ => None,
        }
    }

    /// The Postgres integer type a SQL type names (`int`, `int4`,
    /// `integer`, `bigint`, `int8`, `smallint`, `int2`).
    pub fn of_sql(data_type: &SqlType) -> Option<IntType> {
        match data_type {
            SqlType::SmallInt(None) | SqlType::Int2(None) | SqlType::Int16 => Some(IntType::Int2),
            SqlType::Int(None) | SqlType::Integer(None) | SqlType::Int4(None) | SqlType::Int32 => {
                Some(IntType::Int4)
            }
            SqlType::BigInt(None) | SqlType::Int8(None) | SqlType::Int64 => Some(IntType::Int8),
            _ => None,
        }
    }

    fn check(self, value: i128) -> Result<i64, CastError> {
        i64::try_from(value)
            .ok()
            .filter(|v| (self.min()..=self.max()).contains(v))
            .ok_or(CastError::OutOfRange(self))
    }

    /// Whether every value of the integer type `from` fits.
    fn holds(self, from: &DataType) -> bool {
        match from {
            DataType::Int8 | DataType::UInt8 => true,
            DataType::Int16 => true,
            DataType::UInt16 | DataType::Int32 => self != IntType::Int2,
            DataType::UInt32 | DataType::Int64 => self == IntType::Int8,
            _ => false,
        }
    }
}

/// A value that does not convert to an integer type, worded as Postgres
/// words it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CastError {
    /// SQLSTATE 22003.
    #[error("{} out of range", .0.name())]
    OutOfRange(IntType),
    /// Text in range of no integer type; SQLSTATE 22003.
    #[error("value \"{text}\" is out of range for type {}", .ty.name())]
    TextOutOfRange { text: String, ty: IntType },
    /// Text that is not an integer (or, for a `numeric` value held as
    /// text, not a number); SQLSTATE 22P02.
    #[error("invalid input syntax for type {type_name}: \"{text}\"")]
    InvalidText {
        text: String,
        type_name: &'static str,
    },
    /// A `numeric` NaN; SQLSTATE 0A000.
    #[error("cannot convert NaN to {}", .0.name())]
    NumericNaN(IntType),
}

/// A `double precision` (or `real`) value rounded half to even, as
/// Postgres's `rint`; NaN, infinities and values outside `ty` are out of
/// range. `real` values are widened first, which changes nothing: every
/// `f32` is an `f64`, and the bounds compared are powers of two.
pub fn float_to_int(x: f64, ty: IntType) -> Result<i64, CastError> {
    checked_float(x.round_ties_even(), ty)
}

/// An approximate `numeric` value (the result of arithmetic the query
/// engine did in double precision) rounded half away from zero.
fn approximate_numeric_to_int(x: f64, ty: IntType) -> Result<i64, CastError> {
    checked_float(x.round(), ty)
}

fn checked_float(rounded: f64, ty: IntType) -> Result<i64, CastError> {
    // `-2^63 <= r < 2^63` (and the narrower types' bounds) compared as
    // floats: the bounds are exact, and `as` below cannot saturate.
    let below = -(ty.min() as f64);
    if rounded.is_nan() || rounded < ty.min() as f64 || rounded >= below {
        return Err(CastError::OutOfRange(ty));
    }
    Ok(rounded as i64)
}

/// An exact decimal (`unscaled × 10^-scale`) rounded half away from
/// zero, as `numeric_int4` rounds.
pub fn decimal_to_int(unscaled: i128, scale: i8, ty: IntType) -> Result<i64, CastError> {
    if scale <= 0 {
        let factor = 10i128
            .checked_pow(u32::from(scale.unsigned_abs()))
            .ok_or(CastError::OutOfRange(ty))?;
        return ty.check(
            unscaled
                .checked_mul(factor)
                .ok_or(CastError::OutOfRange(ty))?,
        );
    }
    let Some(divisor) = 10i128.checked_pow(u32::from(scale.unsigned_abs())) else {
        // More than 38 fraction digits: every i128 is below one half.
        return Ok(0);
    };
    let quotient = unscaled / divisor;
    let remainder = unscaled % divisor;
    let rounded = if remainder.unsigned_abs() >= divisor.unsigned_abs().div_ceil(2) {
        quotient + unscaled.signum()
    } else {
        quotient
    };
    ty.check(rounded)
}

/// A `numeric` value written as text (`-12.5`, `1e3`, `NaN`; a decimal
/// constant of a statement, or a value of a `numeric` column) rounded
/// half away from zero, exactly.
pub fn numeric_text_to_int(text: &str, ty: IntType) -> Result<i64, CastError> {
    let invalid = || CastError::InvalidText {
        text: text.to_owned(),
        type_name: "numeric",
    };
    let canonical = crate::declared::canonical_decimal(text).ok_or_else(invalid)?;
    if canonical == "NaN" {
        return Err(CastError::NumericNaN(ty));
    }
    let (negative, digits) = match canonical.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, canonical.as_str()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    // Beyond 38 digits no integer type holds it.
    if whole.len() > 38 {
        return Err(CastError::OutOfRange(ty));
    }
    let mut magnitude: i128 = whole.parse().map_err(|_| invalid())?;
    if fraction.as_bytes().first().is_some_and(|d| *d >= b'5') {
        magnitude += 1;
    }
    ty.check(if negative { -magnitude } else { magnitude })
}

/// Text read as Postgres 16's integer input function reads it
/// (`pg_strtoint32_safe` and its relatives): blanks, an optional sign,
/// then decimal digits, or `0x` / `0o` / `0b` and hexadecimal, octal or
/// binary digits, with single `_` between digits (after a prefix also
/// before the first digit), then blanks.
pub fn text_to_int(text: &str, ty: IntType) -> Result<i64, CastError> {
    let invalid = || CastError::InvalidText {
        text: text.to_owned(),
        type_name: ty.name(),
    };
    // Postgres's `isspace`: blank, tab, newline, vertical tab, form
    // feed, carriage return.
    let blank = |c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r');
    let body = text.trim_matches(blank);
    let (negative, body) = match body.as_bytes().first() {
        Some(b'-') => (true, &body[1..]),
        Some(b'+') => (false, &body[1..]),
        _ => (false, body),
    };
    let lower = body.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits, prefixed) = match lower.as_deref() {
        Some("0x") => (16, &body[2..], true),
        Some("0o") => (8, &body[2..], true),
        Some("0b") => (2, &body[2..], true),
        _ => (10, body, false),
    };
    let mut magnitude: u128 = 0;
    let mut any = false;
    let mut previous_digit = prefixed;
    let bytes = digits.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            // An underscore must sit between digits (or after a prefix)
            // and be followed by one.
            let next_is_digit = bytes
                .get(i + 1)
                .is_some_and(|n| char::from(*n).is_digit(radix));
            if !previous_digit || !next_is_digit {
                return Err(invalid());
            }
            previous_digit = false;
            continue;
        }
        let digit = char::from(b).to_digit(radix).ok_or_else(invalid)?;
        any = true;
        previous_digit = true;
        magnitude = magnitude
            .saturating_mul(u128::from(radix))
            .saturating_add(u128::from(digit));
    }
    if !any {
        return Err(invalid());
    }
    let out_of_range = || CastError::TextOutOfRange {
        text: text.to_owned(),
        ty,
    };
    let magnitude = i128::try_from(magnitude).map_err(|_| out_of_range())?;
    ty.check(if negative { -magnitude } else { magnitude })
        .map_err(|_| out_of_range())
}

/// How the values an [`IntegerCast`] converts are rounded or read: by
/// the Postgres type of the expression cast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// `real` / `double precision`: half to even.
    Float,
    /// `numeric` (also computed in double precision, or held as text):
    /// half away from zero.
    Numeric,
    /// `text`: the integer input function.
    Text,
}

/// `CAST(x AS smallint | integer | bigint)` (and to arrays of them) as
/// Postgres converts `x`: see the [module documentation](self).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IntegerCast {
    name: String,
    /// The cast's target field (an integer type, or a list of one).
    target: FieldRef,
    ty: IntType,
    source: Source,
    signature: Signature,
}

impl IntegerCast {
    fn new(target: FieldRef, ty: IntType, source: Source) -> IntegerCast {
        let rule = match source {
            Source::Float => "rounded_half_even",
            Source::Numeric => "rounded_half_away",
            Source::Text => "read",
        };
        IntegerCast {
            name: format!("{}_{rule}", ty.name()),
            target,
            ty,
            source,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    fn convert(&self, array: &ArrayRef) -> DfResult<ArrayRef> {
        let ty = self.ty;
        let values: Vec<Option<i64>> = match array.data_type() {
            DataType::Null => vec![None; array.len()],
            DataType::List(_) => return self.convert_list(array.as_list::<i32>()),
            DataType::LargeList(_) => return self.convert_list(array.as_list::<i64>()),
            DataType::Float32 => map(array.as_primitive::<Float32Type>(), |x| {
                self.float(f64::from(x))
            })?,
            DataType::Float64 => map(array.as_primitive::<Float64Type>(), |x| self.float(x))?,
            DataType::Decimal128(_, scale) => map(array.as_primitive::<Decimal128Type>(), |v| {
                decimal_to_int(v, *scale, ty)
            })?,
            // Every integer but a u64 widens to i64 without loss.
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => {
                let wide = datafusion::arrow::compute::cast(array, &DataType::Int64)?;
                map(wide.as_primitive::<Int64Type>(), |v| {
                    ty.check(i128::from(v))
                })?
            }
            DataType::UInt64 => map(array.as_primitive::<UInt64Type>(), |v| {
                ty.check(i128::from(v))
            })?,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let text = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
                text.as_string::<i32>()
                    .iter()
                    .map(|t| t.map(|t| self.text(t)).transpose().map_err(external))
                    .collect::<DfResult<_>>()?
            }
            other => {
                return Err(DataFusionError::NotImplemented(format!(
                    "cast of {other} to {}",
                    ty.name()
                )));
            }
        };
        Ok(match ty {
            IntType::Int2 => Arc::new(Int16Array::from_iter(
                values.into_iter().map(|v| v.map(|v| v as i16)),
            )),
            IntType::Int4 => Arc::new(Int32Array::from_iter(
                values.into_iter().map(|v| v.map(|v| v as i32)),
            )),
            IntType::Int8 => Arc::new(Int64Array::from_iter(values)),
        })
    }

    fn convert_list<O: OffsetSizeTrait>(&self, list: &GenericListArray<O>) -> DfResult<ArrayRef> {
        let values = self.convert(list.values())?;
        let item = match self.target.data_type() {
            DataType::List(item) | DataType::LargeList(item) => Arc::clone(item),
            _ => Arc::new(Field::new("item", self.ty.data_type(), true)),
        };
        Ok(Arc::new(GenericListArray::<O>::try_new(
            item,
            list.offsets().clone(),
            values,
            list.nulls().cloned(),
        )?))
    }

    fn float(&self, x: f64) -> Result<i64, CastError> {
        match self.source {
            Source::Numeric => approximate_numeric_to_int(x, self.ty),
            Source::Float | Source::Text => float_to_int(x, self.ty),
        }
    }

    fn text(&self, text: &str) -> Result<i64, CastError> {
        match self.source {
            Source::Numeric => numeric_text_to_int(text, self.ty),
            Source::Float | Source::Text => text_to_int(text, self.ty),
        }
    }
}

fn external(e: CastError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn map<T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
    array: &datafusion::arrow::array::PrimitiveArray<T>,
    f: impl Fn(T::Native) -> Result<i64, CastError>,
) -> DfResult<Vec<Option<i64>>> {
    array
        .iter()
        .map(|v| v.map(&f).transpose().map_err(external))
        .collect()
}

/// The field of a cast function's value: the cast's `target`, named
/// after the function, nullable as the value cast is (as the cast it
/// replaces).
fn cast_field(target: &FieldRef, name: &str, args: &ReturnFieldArgs) -> FieldRef {
    let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
    Arc::new(
        target
            .as_ref()
            .clone()
            .with_name(name)
            .with_nullable(nullable),
    )
}

/// Runs `convert` on the one argument of the cast function `name`, a
/// constant or a column.
fn invoke_cast(
    name: &str,
    args: &ScalarFunctionArgs,
    convert: impl Fn(&ArrayRef) -> DfResult<ArrayRef>,
) -> DfResult<ColumnarValue> {
    let [arg] = args.args.as_slice() else {
        return Err(DataFusionError::Internal(format!(
            "{name} takes one argument"
        )));
    };
    match arg {
        ColumnarValue::Scalar(value) => {
            let out = convert(&value.to_array()?)?;
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        }
        ColumnarValue::Array(array) => Ok(ColumnarValue::Array(convert(array)?)),
    }
}

/// The `ScalarUDFImpl` of a cast function: a struct with `name`,
/// `signature` and `target` (the cast's target field) and a method
/// `convert` from the value cast to the target's values.
macro_rules! cast_function {
    ($function:ty) => {
        impl ScalarUDFImpl for $function {
            fn name(&self) -> &str {
                &self.name
            }

            fn signature(&self) -> &Signature {
                &self.signature
            }

            fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
                Ok(self.target.data_type().clone())
            }

            fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
                Ok(cast_field(&self.target, &self.name, &args))
            }

            fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
                invoke_cast(&self.name, &args, |array| self.convert(array))
            }
        }
    };
}

cast_function!(IntegerCast);

/// A cast of a `real` or `double precision` value to text, written as
/// PostgreSQL writes it ([`crate::float_text`]).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FloatText {
    name: String,
    /// The cast's target field (a text type).
    target: FieldRef,
    signature: Signature,
}

impl FloatText {
    fn new(from: DataType, target: FieldRef) -> FloatText {
        let name = if from == DataType::Float32 {
            "float4_text"
        } else {
            "float8_text"
        };
        FloatText {
            name: name.to_owned(),
            target,
            signature: Signature::exact(vec![from], Volatility::Immutable),
        }
    }

    fn convert(&self, array: &ArrayRef) -> DfResult<ArrayRef> {
        let out = crate::float_text::float_column_text(array).ok_or_else(|| {
            DataFusionError::Internal(format!("{} of a {} value", self.name, array.data_type()))
        })?;
        Ok(datafusion::arrow::compute::cast(
            &out,
            self.target.data_type(),
        )?)
    }
}

cast_function!(FloatText);

/// A cast of text to an array, read as PostgreSQL's array input reads it:
/// `'{a,"b c",NULL}'::text[]` is three elements, not one element holding
/// the text (Arrow's cast of a string to a list). The elements are text;
/// a cast to the array's own element type follows.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayText {
    name: String,
    /// `List<Utf8>`.
    target: FieldRef,
    signature: Signature,
}

impl ArrayText {
    fn new(from: DataType) -> ArrayText {
        ArrayText {
            name: "array_in".to_owned(),
            target: Arc::new(Field::new(
                "array_in",
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                true,
            )),
            signature: Signature::exact(vec![from], Volatility::Immutable),
        }
    }

    fn convert(&self, array: &ArrayRef) -> DfResult<ArrayRef> {
        let texts = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let mut out = datafusion::arrow::array::ListBuilder::new(
            datafusion::arrow::array::StringBuilder::new(),
        );
        for text in texts.iter() {
            let Some(text) = text else {
                out.append_null();
                continue;
            };
            let items = crate::declared::array_text_elements(text).ok_or_else(|| {
                DataFusionError::Execution(format!("malformed array literal: {text:?}"))
            })?;
            for item in items {
                out.values().append_option(item);
            }
            out.append(true);
        }
        Ok(Arc::new(out.finish()))
    }
}

cast_function!(ArrayText);

/// The analyzer rule that gives casts to integer types Postgres's
/// rounding and range checks, and answers `pg_typeof` (see the [module
/// documentation](self)). It runs before DataFusion's type coercion.
#[derive(Debug, Default)]
pub struct PostgresTypes;

impl AnalyzerRule for PostgresTypes {
    fn name(&self) -> &str {
        "postgres_types"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let schema = merge_schema(&plan.inputs());
            let names = NamePreserver::new(&plan);
            plan.map_expressions(|expr| {
                let saved = names.save(&expr);
                expr.transform_up(|e| rewrite_expr(e, &schema))
                    .map(|t| t.update_data(|e| saved.restore(e)))
            })
        })
        .map(|t| t.data)
    }
}

/// `plan` with every cast typed by its own target alone. DataFusion
/// gives the value of a cast to a bare type the metadata of the value
/// cast, which here names the Postgres type clients are told
/// ([`crate::catalog::PG_TYPE_METADATA_KEY`]): `numeric_column::int`
/// would be described as `numeric`, `x::real[]::int[]` as `real[]`. A
/// cast's target field with a name of its own is used as it is, metadata
/// (none) included, and its value keeps the nullability of the value
/// cast.
pub fn own_cast_types(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    const NAME: &str = "cast";
    let named = |field: &FieldRef| -> Option<FieldRef> {
        (field.name().is_empty() && field.metadata().is_empty())
            .then(|| Arc::new(field.as_ref().clone().with_name(NAME)))
    };
    plan.transform_up_with_subqueries(|node| {
        node.map_expressions(|expr| {
            expr.transform_up(|e| {
                Ok(match e {
                    Expr::Cast(cast) => match named(&cast.field) {
                        Some(field) => {
                            Transformed::yes(Expr::Cast(datafusion::logical_expr::Cast {
                                expr: cast.expr,
                                field,
                            }))
                        }
                        None => Transformed::no(Expr::Cast(cast)),
                    },
                    Expr::TryCast(cast) => match named(&cast.field) {
                        Some(field) => {
                            Transformed::yes(Expr::TryCast(datafusion::logical_expr::TryCast {
                                expr: cast.expr,
                                field,
                            }))
                        }
                        None => Transformed::no(Expr::TryCast(cast)),
                    },
                    other => Transformed::no(other),
                })
            })
        })?
        .map_data(|node| node.recompute_schema())
    })
    .map(|t| t.data)
}

/// The analyzer's rules with [`PostgresTypes`] just before type coercion.
pub fn analyzer_rules() -> Vec<Arc<dyn AnalyzerRule + Send + Sync>> {
    let mut rules = datafusion::optimizer::Analyzer::new().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == "type_coercion")
        .unwrap_or(rules.len());
    rules.insert(at, Arc::new(PostgresTypes));
    rules
}

fn rewrite_expr(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    if let Some(read) = crate::bpchar::rewrite(&expr, schema)? {
        return Ok(read);
    }
    if let Expr::ScalarFunction(f) = &expr
        && f.name() == PG_TYPEOF
        && let [arg] = f.args.as_slice()
    {
        return Ok(Transformed::yes(Expr::Literal(
            ScalarValue::Utf8(Some(type_name(arg, schema))),
            Some(regtype_metadata()),
        )));
    }
    // `pg_typeof(x) = 'integer'::regtype`: a `regtype` written as a cast
    // is its OID here ([`crate::catalog::rewrite`]), so `pg_typeof`'s
    // answer compared with one is its OID too.
    if let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr
        && (is_regtype_name(left) || is_regtype_name(right))
    {
        let oid_of = |e: &Expr| -> Option<Expr> {
            let Expr::Literal(ScalarValue::Utf8(Some(name)), _) = e else {
                return None;
            };
            let oid = match name.as_str() {
                "unknown" => 705,
                _ => crate::catalog::type_oid(name)?,
            };
            Some(Expr::Literal(ScalarValue::UInt32(Some(oid)), None))
        };
        let other_is_oid = |e: &Expr| e.get_type(schema).is_ok_and(|t| t == DataType::UInt32);
        let replaced = if is_regtype_name(left) && other_is_oid(right) {
            oid_of(left).map(|l| (l, right.as_ref().clone()))
        } else if is_regtype_name(right) && other_is_oid(left) {
            oid_of(right).map(|r| (left.as_ref().clone(), r))
        } else {
            None
        };
        if let Some((l, r)) = replaced {
            return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(l),
                *op,
                Box::new(r),
            ))));
        }
    }
    // `jsonb_column = '{"k":3}'`: Postgres reads the other side as
    // `jsonb` and compares values, not texts (`{"k":3}` and the stored
    // canonical `{"k": 3}` are equal).
    if let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr
        && matches!(
            op,
            Operator::Eq | Operator::NotEq | Operator::IsDistinctFrom | Operator::IsNotDistinctFrom
        )
    {
        let is_jsonb = |e: &Expr| pg_type_of(e, schema).is_some_and(|t| t == "jsonb");
        let is_text = |e: &Expr| {
            e.get_type(schema).is_ok_and(|t| {
                matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            })
        };
        let (l, r) = (left.as_ref(), right.as_ref());
        let cast_side = if is_jsonb(l) && is_text(r) && !is_jsonb(r) {
            Some(false)
        } else if is_jsonb(r) && is_text(l) && !is_jsonb(l) {
            Some(true)
        } else {
            None
        };
        if let Some(cast_left) = cast_side {
            let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
                unreachable!("matched above")
            };
            let (left, right) = if cast_left {
                (crate::json_functions::jsonb_cast(*left), *right)
            } else {
                (*left, crate::json_functions::jsonb_cast(*right))
            };
            return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(left),
                op,
                Box::new(right),
            ))));
        }
    }
    let Expr::Cast(cast) = &expr else {
        return Ok(Transformed::no(expr));
    };
    // `x::real::text`: PostgreSQL's float text (`1e+06`, `2`), not
    // Arrow's (`1000000.0`, `2.0`).
    if matches!(
        cast.field.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) && let Ok(from @ (DataType::Float32 | DataType::Float64)) = cast.expr.get_type(schema)
    {
        let udf = ScalarUDF::new_from_impl(FloatText::new(from, Arc::clone(&cast.field)));
        let Expr::Cast(cast) = expr else {
            unreachable!("matched above")
        };
        return Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::new(udf), vec![*cast.expr]),
        )));
    }
    // `'{a,b}'::text[]`, `$1::int[]` with the text `{1,2}`: the array
    // the text spells, then each element cast to the element type.
    if let DataType::List(item) | DataType::LargeList(item) = cast.field.data_type()
        && let Ok(from @ (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)) =
            cast.expr.get_type(schema)
        && !matches!(item.data_type(), DataType::List(_) | DataType::LargeList(_))
    {
        let udf = ScalarUDF::new_from_impl(ArrayText::new(from));
        let Expr::Cast(cast) = expr else {
            unreachable!("matched above")
        };
        let items = Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(udf), vec![*cast.expr]));
        if cast.field.data_type()
            == &DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
        {
            return Ok(Transformed::yes(items));
        }
        return rewrite_expr(
            Expr::Cast(datafusion::logical_expr::Cast {
                expr: Box::new(items),
                field: cast.field,
            }),
            schema,
        )
        .map(|t| Transformed::yes(t.data));
    }
    // `ARRAY[a, b]::int[]`: Postgres casts each element to the element
    // type (`ARRAY[1.5::float8, 2.5]::int[]` is `{2,3}`), rather than
    // the array of the elements' common type.
    let array_element = match (cast.expr.as_ref(), cast.field.data_type()) {
        (Expr::ScalarFunction(f), DataType::List(item) | DataType::LargeList(item))
            if f.name() == "make_array"
                && !f.args.is_empty()
                && IntType::of_arrow(item.data_type()).is_some() =>
        {
            Some(item.data_type().clone())
        }
        _ => None,
    };
    if let Some(element) = array_element {
        let Expr::Cast(cast) = expr else {
            unreachable!("matched above")
        };
        let Expr::ScalarFunction(mut f) = *cast.expr else {
            unreachable!("matched above")
        };
        f.args = std::mem::take(&mut f.args)
            .into_iter()
            .map(|arg| {
                rewrite_expr(
                    Expr::Cast(datafusion::logical_expr::Cast::new(
                        Box::new(arg),
                        element.clone(),
                    )),
                    schema,
                )
                .map(|t| t.data)
            })
            .collect::<DfResult<_>>()?;
        return Ok(Transformed::yes(Expr::Cast(
            datafusion::logical_expr::Cast {
                expr: Box::new(Expr::ScalarFunction(f)),
                field: cast.field,
            },
        )));
    }
    let target = cast.field.data_type();
    let element = |t: &DataType| match t {
        DataType::List(item) | DataType::LargeList(item) => Some(item.data_type().clone()),
        _ => None,
    };
    let target_list = element(target).is_some();
    let Some(ty) = IntType::of_arrow(&element(target).unwrap_or_else(|| target.clone())) else {
        return Ok(Transformed::no(expr));
    };
    // An operand whose type cannot be told yet (a parameter without a
    // type) keeps DataFusion's cast.
    let Ok(from) = cast.expr.get_type(schema) else {
        return Ok(Transformed::no(expr));
    };
    let from_element = match (element(&from), target_list) {
        (Some(e), true) => e,
        (None, false) => from.clone(),
        _ => return Ok(Transformed::no(expr)),
    };
    let converted = match &from_element {
        DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View => true,
        t if t.is_integer() => !ty.holds(t),
        _ => false,
    };
    if !converted {
        return Ok(Transformed::no(expr));
    }
    let source = source_of(&cast.expr, schema).unwrap_or(Source::Float);
    let udf = ScalarUDF::new_from_impl(IntegerCast::new(Arc::clone(&cast.field), ty, source));
    let Expr::Cast(cast) = expr else {
        unreachable!("matched above")
    };
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(Arc::new(udf), vec![*cast.expr]),
    )))
}

/// The Postgres type class of `expr` as the statement wrote it (before
/// coercion), where it decides how a cast to an integer rounds: a
/// decimal constant or a `numeric` value is [`Source::Numeric`], and so
/// is arithmetic of those with integers; anything with a float in it is
/// [`Source::Float`]; text is [`Source::Text`]. `None`: an integer (no
/// rounding), or nothing known.
fn source_of(expr: &Expr, schema: &DFSchema) -> Option<Source> {
    #[derive(Clone, Copy, PartialEq)]
    enum Class {
        Integer,
        Of(Source),
    }
    fn by_type(data_type: &DataType, pg_type: Option<&str>) -> Option<Class> {
        Some(match data_type {
            DataType::Float16 | DataType::Float32 | DataType::Float64 => Class::Of(Source::Float),
            DataType::Decimal128(..) | DataType::Decimal256(..) => Class::Of(Source::Numeric),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                if matches!(pg_type, Some("numeric" | "_numeric")) {
                    Class::Of(Source::Numeric)
                } else {
                    Class::Of(Source::Text)
                }
            }
            DataType::List(item) | DataType::LargeList(item) => {
                return by_type(item.data_type(), pg_type);
            }
            t if t.is_integer() => Class::Integer,
            _ => return None,
        })
    }
    fn combine(a: Option<Class>, b: Option<Class>) -> Option<Class> {
        use Class::{Integer, Of};
        match (a?, b?) {
            (Of(Source::Float), _) | (_, Of(Source::Float)) => Some(Of(Source::Float)),
            (Of(Source::Numeric), Of(Source::Numeric) | Integer)
            | (Integer, Of(Source::Numeric)) => Some(Of(Source::Numeric)),
            (Integer, Integer) => Some(Integer),
            _ => None,
        }
    }
    fn class(expr: &Expr, schema: &DFSchema) -> Option<Class> {
        match expr {
            Expr::Alias(alias) => class(&alias.expr, schema),
            // A number with a point or an exponent: Postgres's `numeric`
            // constant, which DataFusion reads as a `f64`.
            Expr::Literal(ScalarValue::Float32(_) | ScalarValue::Float64(_), _) => {
                Some(Class::Of(Source::Numeric))
            }
            Expr::Negative(inner) => class(inner, schema),
            Expr::BinaryExpr(BinaryExpr {
                left,
                op:
                    Operator::Plus
                    | Operator::Minus
                    | Operator::Multiply
                    | Operator::Divide
                    | Operator::Modulo,
                right,
            }) => combine(class(left, schema), class(right, schema)),
            // `ARRAY[1.5, 2.5]` is a `numeric[]`.
            Expr::ScalarFunction(f) if f.name() == "make_array" => f
                .args
                .iter()
                .map(|a| class(a, schema))
                .reduce(combine)
                .flatten(),
            other => {
                let (_, field) = other.to_field(schema).ok()?;
                by_type(
                    field.data_type(),
                    field
                        .metadata()
                        .get(crate::catalog::PG_TYPE_METADATA_KEY)
                        .map(String::as_str),
                )
            }
        }
    }
    match class(expr, schema)? {
        Class::Of(source) => Some(source),
        Class::Integer => None,
    }
}

/// The Postgres type `expr`'s field names in its metadata, if any.
fn pg_type_of(expr: &Expr, schema: &DFSchema) -> Option<String> {
    let (_, field) = expr.to_field(schema).ok()?;
    field
        .metadata()
        .get(crate::catalog::PG_TYPE_METADATA_KEY)
        .cloned()
}

/// The name of `pg_typeof`, which the analyzer rule answers.
pub const PG_TYPEOF: &str = "pg_typeof";

fn regtype_metadata() -> datafusion::common::metadata::FieldMetadata {
    datafusion::common::metadata::FieldMetadata::from(std::collections::BTreeMap::from([(
        crate::catalog::PG_TYPE_METADATA_KEY.to_owned(),
        "regtype".to_owned(),
    )]))
}

/// Whether `expr` is `pg_typeof`'s answer.
fn is_regtype_name(expr: &Expr) -> bool {
    matches!(expr, Expr::Literal(ScalarValue::Utf8(Some(_)), Some(metadata))
        if metadata
            .inner()
            .get(crate::catalog::PG_TYPE_METADATA_KEY)
            .is_some_and(|t| t == "regtype"))
}

/// The name Postgres's `pg_typeof` gives the type of `expr` as the
/// statement wrote it: constants typed as Postgres types them (`1` is
/// `integer`, a number beyond `bigint` or with a point `numeric`, a
/// string or NULL alone `unknown`), arithmetic of integers the wider
/// operand's type and of a `numeric` with integers `numeric`; anything
/// else the type the value is sent to clients as (`text`, `double
/// precision`, `vector`, `timestamp with time zone`, `integer[]`, …).
fn type_name(expr: &Expr, schema: &DFSchema) -> String {
    let integer_rank = |name: &str| match name {
        "smallint" => Some(1),
        "integer" => Some(2),
        "bigint" => Some(3),
        _ => None,
    };
    match expr {
        Expr::Alias(alias) => type_name(&alias.expr, schema),
        // `pg_typeof(pg_typeof(x))`: the inner call's answer.
        e if is_regtype_name(e) => "regtype".to_owned(),
        // `ARRAY[1, 2]` is an `integer[]`, `ARRAY[1.5]` a `numeric[]`.
        Expr::ScalarFunction(f) if f.name() == "make_array" && !f.args.is_empty() => {
            let names: Vec<String> = f.args.iter().map(|a| type_name(a, schema)).collect();
            let widest = names.iter().max_by_key(|n| integer_rank(n)).filter(|n| {
                names.iter().all(|m| integer_rank(m).is_some()) && integer_rank(n).is_some()
            });
            match widest {
                Some(name) => format!("{name}[]"),
                None if names
                    .iter()
                    .all(|n| n == "numeric" || integer_rank(n).is_some()) =>
                {
                    "numeric[]".to_owned()
                }
                None => field_type_name(expr, schema),
            }
        }
        Expr::Literal(value, _) => match value {
            ScalarValue::Null
            | ScalarValue::Utf8(_)
            | ScalarValue::LargeUtf8(_)
            | ScalarValue::Utf8View(_) => "unknown".to_owned(),
            ScalarValue::Int64(Some(v)) if i32::try_from(*v).is_ok() => "integer".to_owned(),
            ScalarValue::Int64(_) => "bigint".to_owned(),
            ScalarValue::UInt64(_)
            | ScalarValue::Float32(_)
            | ScalarValue::Float64(_)
            | ScalarValue::Decimal128(..)
            | ScalarValue::Decimal256(..) => "numeric".to_owned(),
            _ => field_type_name(expr, schema),
        },
        Expr::Negative(inner) => type_name(inner, schema),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op:
                Operator::Plus
                | Operator::Minus
                | Operator::Multiply
                | Operator::Divide
                | Operator::Modulo,
            right,
        }) => {
            let (l, r) = (type_name(left, schema), type_name(right, schema));
            match (integer_rank(&l), integer_rank(&r)) {
                (Some(a), Some(b)) => {
                    if a >= b {
                        l
                    } else {
                        r
                    }
                }
                _ if source_of(expr, schema) == Some(Source::Numeric) => "numeric".to_owned(),
                _ => field_type_name(expr, schema),
            }
        }
        _ => field_type_name(expr, schema),
    }
}

/// The name of the type values of `expr` are sent to clients as.
fn field_type_name(expr: &Expr, schema: &DFSchema) -> String {
    let Ok((_, field)) = expr.to_field(schema) else {
        return "unknown".to_owned();
    };
    pg_type_name_of_field(&field)
}

/// The Postgres name of the type of a result column (`pg_typeof`'s
/// answer for a value of it).
pub fn pg_type_name_of_field(field: &Field) -> String {
    let pg_type = field
        .metadata()
        .get(crate::catalog::PG_TYPE_METADATA_KEY)
        .map(String::as_str);
    match (field.data_type(), pg_type) {
        (DataType::Null, _) => return "unknown".to_owned(),
        (DataType::Decimal128(..) | DataType::Decimal256(..), _) => return "numeric".to_owned(),
        (DataType::Interval(_), _) => return "interval".to_owned(),
        (DataType::Time64(_) | DataType::Time32(_), _) => {
            return "time without time zone".to_owned();
        }
        (_, Some("halfvec")) => return "halfvec".to_owned(),
        (_, Some("regtype")) => return "regtype".to_owned(),
        _ => {}
    }
    let oid = crate::catalog::field_type_oid(field);
    crate::catalog::format_type(oid, None).unwrap_or_else(|| "unknown".to_owned())
}

/// `pg_typeof(x)`: see [`type_name`]. The analyzer rule replaces each
/// call by its answer; evaluated otherwise, it answers by the argument's
/// type.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTypeof {
    signature: Signature,
}

impl ScalarUDFImpl for PgTypeof {
    fn name(&self) -> &str {
        PG_TYPEOF
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(
            Field::new(PG_TYPEOF, DataType::Utf8, false)
                .with_metadata(regtype_metadata().to_hashmap()),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let name = args
            .arg_fields
            .first()
            .map_or_else(|| "unknown".to_owned(), |f| pg_type_name_of_field(f));
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}

/// Registers `pg_typeof`.
pub fn register_functions(ctx: &datafusion::execution::context::SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(PgTypeof {
        signature: Signature::any(1, Volatility::Immutable),
    }));
}

/// A cast of a number constant to an integer type (`2.5::int`, `CAST(-1e3
/// AS bigint)`, under parentheses and a sign) becomes the integer it
/// rounds to, computed exactly from the constant's digits: DataFusion
/// would read the constant as a `f64`, which holds neither every decimal
/// nor every `bigint`. A constant out of the type's range fails the
/// statement, as Postgres fails it when it folds the constant.
pub fn rewrite_literal_casts(statement: &mut Statement) -> Result<(), CastError> {
    let flow = visit_expressions_mut(statement, |expr| {
        timestamp_literal(expr);
        if let ast::Expr::Cast {
            expr: inner,
            data_type,
            ..
        } = expr
            && let Some(ty) = IntType::of_sql(data_type)
            && let Some(text) = constant_number(inner)
        {
            match numeric_text_to_int(&text, ty) {
                Ok(v) => {
                    **inner = ast::Expr::value(Value::Number(v.to_string(), false));
                }
                Err(e) => return ControlFlow::Break(e),
            }
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// `'2026-01-01 12:00'::timestamp`, `timestamptz '2026-01-02 03:04+02'`:
/// a constant read as Postgres's timestamp input reads it (seconds
/// optional, a blank or `T` before the time, the zones it knows), written
/// back in the one form DataFusion's cast reads, UTC for `timestamptz`.
/// A text it does not read is left to the cast, which refuses it.
fn timestamp_literal(expr: &mut ast::Expr) {
    let (text, zoned) = match &*expr {
        ast::Expr::Cast {
            expr: inner,
            data_type,
            ..
        } => match (inner.as_ref(), timestamp_zoned(data_type)) {
            (ast::Expr::Value(v), Some(zoned)) => match &v.value {
                Value::SingleQuotedString(t) => (t.clone(), zoned),
                _ => return,
            },
            _ => return,
        },
        ast::Expr::TypedString(typed) => {
            match (&typed.value.value, timestamp_zoned(&typed.data_type)) {
                (Value::SingleQuotedString(t), Some(zoned)) => (t.clone(), zoned),
                _ => return,
            }
        }
        _ => return,
    };
    let Some(micros) = crate::declared::parse_timestamp(&text, zoned) else {
        return;
    };
    let canonical = crate::declared::timestamp_text(micros);
    let canonical = if zoned {
        format!("{canonical}+00")
    } else {
        canonical
    };
    match expr {
        ast::Expr::Cast { expr: inner, .. } => {
            **inner = ast::Expr::value(Value::SingleQuotedString(canonical));
        }
        ast::Expr::TypedString(typed) => {
            typed.value.value = Value::SingleQuotedString(canonical);
        }
        _ => {}
    }
}

/// For a timestamp type, whether it has a time zone.
fn timestamp_zoned(data_type: &SqlType) -> Option<bool> {
    match data_type {
        SqlType::Timestamp(_, tz) => Some(!matches!(
            tz,
            ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone
        )),
        _ => None,
    }
}

/// The text of a number constant with its sign (`-2.5` for `(-2.5)`),
/// or `None` for anything else.
fn constant_number(expr: &ast::Expr) -> Option<String> {
    match expr {
        ast::Expr::Nested(inner) => constant_number(inner),
        ast::Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(n.to_string()),
            _ => None,
        },
        ast::Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => constant_number(expr).map(|n| match n.strip_prefix('-') {
            Some(positive) => positive.to_owned(),
            None => format!("-{n}"),
        }),
        ast::Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => constant_number(expr),
        _ => None,
    }
}

impl IntType {
    fn sql_type(self) -> SqlType {
        match self {
            IntType::Int2 => SqlType::SmallInt(None),
            IntType::Int4 => SqlType::Integer(None),
            IntType::Int8 => SqlType::BigInt(None),
        }
    }
}

/// The select list (or `VALUES` rows) of the query of an `INSERT …
/// SELECT`, each item that goes to an integer column (`targets`, by
/// position) cast to the column's type: Postgres converts the query's
/// values by an assignment cast, where the value's own type (a decimal
/// constant, a `numeric`, a float) decides how it rounds, which the rows
/// the query returns no longer tell. A select list with `*`, and set
/// operations, are left as they are: their values are converted when
/// written, a float half to even and a `numeric` half away from zero.
pub fn cast_to_integer_targets(query: &mut ast::Query, targets: &[Option<IntType>]) {
    let cast = |expr: &mut ast::Expr, ty: IntType| {
        let inner = std::mem::replace(expr, ast::Expr::value(Value::Null));
        *expr = ast::Expr::Cast {
            kind: ast::CastKind::Cast,
            expr: Box::new(inner),
            data_type: ty.sql_type(),
            array: false,
            format: None,
        };
    };
    match query.body.as_mut() {
        ast::SetExpr::Select(select) => {
            if select.projection.iter().any(|item| {
                !matches!(
                    item,
                    ast::SelectItem::UnnamedExpr(_) | ast::SelectItem::ExprWithAlias { .. }
                )
            }) {
                return;
            }
            for (item, ty) in select.projection.iter_mut().zip(targets) {
                if let (
                    ast::SelectItem::UnnamedExpr(expr)
                    | ast::SelectItem::ExprWithAlias { expr, .. },
                    Some(ty),
                ) = (item, ty)
                {
                    cast(expr, *ty);
                }
            }
        }
        ast::SetExpr::Values(values) => {
            for row in &mut values.rows {
                for (expr, ty) in row.iter_mut().zip(targets) {
                    if let Some(ty) = ty {
                        cast(expr, *ty);
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves floats round half to even, as Postgres's `rint` in
    /// `float8_int4` (PostgreSQL 16: `2.5::float8::int` = 2,
    /// `3.5::float8::int` = 4, `-2.5::float8` → -2, `0.5` → 0, `1.5` → 2),
    /// and that the bounds are those of `FLOAT8_FITS_IN_INT32` and its
    /// relatives (checked after rounding: `2147483647.4` fits,
    /// `2147483647.5` rounds to 2^31 and does not; `-32768.5` rounds to
    /// -32768 and fits a `smallint`).
    #[test]
    fn floats_round_half_to_even_within_the_type() {
        for (x, v) in [
            (2.5, 2),
            (3.5, 4),
            (-2.5, -2),
            (0.5, 0),
            (1.5, 2),
            (-0.5, 0),
        ] {
            assert_eq!(float_to_int(x, IntType::Int4), Ok(v), "{x}");
        }
        assert_eq!(
            float_to_int(2_147_483_647.4, IntType::Int4),
            Ok(2_147_483_647)
        );
        for x in [
            2_147_483_647.5,
            -2_147_483_649.0,
            1e10,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert_eq!(
                float_to_int(x, IntType::Int4),
                Err(CastError::OutOfRange(IntType::Int4)),
                "{x}"
            );
        }
        assert_eq!(float_to_int(-32768.5, IntType::Int2), Ok(-32768));
        assert_eq!(
            float_to_int(32767.5, IntType::Int2),
            Err(CastError::OutOfRange(IntType::Int2))
        );
        // 2^63 is out of a bigint, the largest f64 below it is in.
        assert_eq!(
            float_to_int(9_223_372_036_854_775_807.0, IntType::Int8),
            Err(CastError::OutOfRange(IntType::Int8))
        );
        assert_eq!(
            float_to_int(-9_223_372_036_854_775_808.0, IntType::Int8),
            Ok(i64::MIN)
        );
        assert_eq!(
            CastError::OutOfRange(IntType::Int8).to_string(),
            "bigint out of range"
        );
    }

    /// Proves `numeric` values round half away from zero, exactly, as
    /// `numeric_int4` rounds (PostgreSQL 16: `2.5::numeric::int` = 3,
    /// `(-2.5)::numeric::int` = -3, `9223372036854775807.4::bigint` =
    /// 9223372036854775807, `9223372036854775807.5::bigint` is `bigint
    /// out of range`, `1.5e1::int` = 15, `2.5e-1::int` = 0, NaN is
    /// `cannot convert NaN to integer`).
    #[test]
    fn numerics_round_half_away_from_zero_exactly() {
        for (text, v) in [
            ("2.5", 3),
            ("-2.5", -3),
            ("2.49999", 2),
            ("0.5", 1),
            ("1.5e1", 15),
            ("2.5e-1", 0),
            ("1e2", 100),
        ] {
            assert_eq!(numeric_text_to_int(text, IntType::Int4), Ok(v), "{text}");
        }
        assert_eq!(
            numeric_text_to_int("9223372036854775807.4", IntType::Int8),
            Ok(i64::MAX)
        );
        assert_eq!(
            numeric_text_to_int("9223372036854775807.5", IntType::Int8),
            Err(CastError::OutOfRange(IntType::Int8))
        );
        assert_eq!(
            numeric_text_to_int("-9223372036854775808.4", IntType::Int8),
            Ok(i64::MIN)
        );
        assert_eq!(
            numeric_text_to_int("1e10", IntType::Int4),
            Err(CastError::OutOfRange(IntType::Int4))
        );
        assert_eq!(
            numeric_text_to_int("1e100", IntType::Int8),
            Err(CastError::OutOfRange(IntType::Int8))
        );
        assert_eq!(
            numeric_text_to_int("NaN", IntType::Int4),
            Err(CastError::NumericNaN(IntType::Int4))
        );
        assert_eq!(
            CastError::NumericNaN(IntType::Int4).to_string(),
            "cannot convert NaN to integer"
        );
        // Decimals as the query engine holds `::numeric` values.
        assert_eq!(decimal_to_int(25, 1, IntType::Int4), Ok(3));
        assert_eq!(decimal_to_int(-25, 1, IntType::Int4), Ok(-3));
        assert_eq!(decimal_to_int(24_999, 4, IntType::Int4), Ok(2));
        assert_eq!(decimal_to_int(15_000_000_000, 10, IntType::Int2), Ok(2));
        assert_eq!(decimal_to_int(3, -2, IntType::Int4), Ok(300));
        assert_eq!(
            decimal_to_int(327_675, 1, IntType::Int2),
            Err(CastError::OutOfRange(IntType::Int2))
        );
    }

    /// Proves text is read as PostgreSQL 16's `int4in` reads it:
    /// `' 12 '`, `'+12'`, `'1_000'`, `'0x1F'`, `'0X1f'`, `'0o17'`,
    /// `'0b101'`, `'0x_1F'`, `'-0x80000000'` are integers; `'12.0'`,
    /// `'1e3'`, `''`, `'_1000'`, `'1__0'`, `'10_'`, `'0x'`, `'- 1'` are
    /// `invalid input syntax for type integer`; `'2147483648'` is `value
    /// "2147483648" is out of range for type integer`.
    #[test]
    fn text_is_read_as_the_integer_input_function_reads_it() {
        for (text, v) in [
            (" 12 ", 12),
            ("+12", 12),
            ("1_000", 1000),
            ("0x1F", 31),
            ("0X1f", 31),
            ("0o17", 15),
            ("0b101", 5),
            ("0x_1F", 31),
            ("-0x80000000", -2_147_483_648),
            ("\t7\n", 7),
            ("-0", 0),
            ("00012", 12),
        ] {
            assert_eq!(text_to_int(text, IntType::Int4), Ok(v), "{text:?}");
        }
        for text in [
            "12.0", "1e3", "", "_1000", "1__0", "10_", "0x", "- 1", "abc",
        ] {
            assert_eq!(
                text_to_int(text, IntType::Int4),
                Err(CastError::InvalidText {
                    text: text.to_owned(),
                    type_name: "integer"
                }),
                "{text:?}"
            );
        }
        assert_eq!(
            text_to_int("2147483648", IntType::Int4)
                .unwrap_err()
                .to_string(),
            "value \"2147483648\" is out of range for type integer"
        );
        assert_eq!(
            text_to_int("99999", IntType::Int2).unwrap_err().to_string(),
            "value \"99999\" is out of range for type smallint"
        );
        assert_eq!(
            text_to_int("-9223372036854775808", IntType::Int8),
            Ok(i64::MIN)
        );
        assert_eq!(
            text_to_int("abc", IntType::Int2).unwrap_err().to_string(),
            "invalid input syntax for type smallint: \"abc\""
        );
    }
}
