//! `character(n)` (`bpchar`) as Postgres reads it.
//!
//! A `character(n)` column stores its values padded with blanks to `n`
//! characters ([`crate::declared::fitted_text`]; the state machine checks
//! the width), and a query sends them padded, as Postgres does. Its
//! values are text to DataFusion, marked as `bpchar` in their field's
//! metadata ([`crate::catalog::PG_TYPE_METADATA_KEY`]); the analyzer rule
//! of [`crate::casts`] calls [`rewrite`] on every expression, before
//! type coercion, so that they are read as Postgres reads a `bpchar`:
//!
//! - trailing blanks are insignificant in comparisons (`bpchareq`,
//!   `bpcharlt`, …): `c = 'ab'`, `c IN ('ab')`, `c < d` compare the
//!   values without them. A `character(n)` compared with `text` is
//!   compared as text (Postgres resolves `bpchar = text` to `texteq`,
//!   the `bpchar` read without its blanks), with `varchar` or a string
//!   constant as `bpchar`;
//! - `length`, `char_length` and `character_length` count without them
//!   (`bpcharlen`); `octet_length` counts the padded bytes;
//! - any other function or operator that takes text (`||`, `upper`,
//!   `replace`, `string_agg`, a cast to `text` or `varchar`) reads the
//!   value without its trailing blanks (Postgres's implicit cast of
//!   `bpchar` to `text` strips them); `concat`, `concat_ws` and
//!   `format`, which print their arguments, `coalesce`, `greatest`,
//!   `least` (whose result is a `bpchar` again), `min`, `max`,
//!   `array_agg`, `LIKE` and regular expressions see the padded value,
//!   as in Postgres; `nullif(c, x)` compares as `=` and answers `c`
//!   padded.
//!
//! A cast to `char(n)` / `character(n)` in a query ([`BPCHAR_CAST`]) pads
//! or cuts its text to `n` characters (an explicit cast drops what does
//! not fit, as Postgres's does), and is a `bpchar`.
//!
//! Not matched: `ORDER BY` and `GROUP BY` a `character(n)` column compare
//! the padded values, which orders as Postgres's comparison without
//! blanks except for characters below the blank (control characters);
//! the result of `min` or `max` of a `character(n)` column is text to
//! the functions and operators it is given to (`min(c) || 'x'` keeps the
//! blanks, where Postgres drops them).

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::{AggregateFunction, InList, ScalarFunction};
use datafusion::logical_expr::{
    Between, BinaryExpr, ColumnarValue, Expr, ExprSchemable, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{
    self, CharacterLength, DataType as SqlType, Statement, Value, visit_expressions_mut,
};

/// The metadata value that marks a `character(n)` value.
pub const BPCHAR: &str = "bpchar";

/// The function a query's cast to `char(n)` becomes.
pub const BPCHAR_CAST: &str = "valori_bpchar";

/// Functions whose arguments are read padded: those that print values
/// (`concat`, `format`), that pass a `bpchar` on (`coalesce`, `min`, …),
/// `octet_length` (`bpcharoctetlen`), and this module's own cast.
const PADDED_ARGUMENTS: &[&str] = &[
    "concat",
    "concat_ws",
    "format",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "octet_length",
    "pg_typeof",
    BPCHAR_CAST,
];

/// Aggregates that pass a `bpchar` on.
const PADDED_AGGREGATES: &[&str] = &[
    "min",
    "max",
    "array_agg",
    "count",
    "first_value",
    "last_value",
];

/// The Postgres type a column (or an outer query's column) names in its
/// field's metadata. Looked up without walking the expression: the rule
/// asks this of every node of every expression, and statements may hold
/// thousands of nodes.
fn named_type<'a>(expr: &'a Expr, schema: &'a DFSchema) -> Option<&'a str> {
    let field = match expr {
        Expr::Column(column) => schema.qualified_field_from_column(column).ok()?.1,
        Expr::OuterReferenceColumn(field, _) => field.as_ref(),
        Expr::Alias(alias) => return named_type(&alias.expr, schema),
        _ => return None,
    };
    field
        .metadata()
        .get(crate::catalog::PG_TYPE_METADATA_KEY)
        .map(String::as_str)
}

/// Whether `expr` is a `character(n)` value: a column of that type, or a
/// cast to it ([`BPCHAR_CAST`]).
pub fn is_bpchar(expr: &Expr, schema: &DFSchema) -> bool {
    match expr {
        Expr::ScalarFunction(f) => {
            f.name() == BPCHAR_CAST
                // Postgres types these by their arguments: a `bpchar`
                // among them makes the result one.
                || (PASSED_ON.contains(&f.name()) && f.args.iter().any(|a| is_bpchar(a, schema)))
        }
        other => named_type(other, schema) == Some(BPCHAR),
    }
}

/// Functions whose result is a `bpchar` when an argument is.
const PASSED_ON: &[&str] = &["coalesce", "nullif", "greatest", "least"];

/// `expr` without trailing blanks (`rtrim(expr, ' ')`).
fn stripped(expr: Expr) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        datafusion::functions::string::rtrim(),
        vec![
            expr,
            Expr::Literal(ScalarValue::Utf8(Some(" ".to_owned())), None),
        ],
    ))
}

/// Whether `expr` is read as a `bpchar` beside one: a string constant
/// (Postgres's `unknown`, resolved to `bpchar`) or a `varchar`.
fn reads_as_bpchar(expr: &Expr, schema: &DFSchema) -> bool {
    if matches!(
        expr,
        Expr::Literal(
            ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_),
            _
        )
    ) {
        return true;
    }
    is_bpchar(expr, schema) || named_type(expr, schema) == Some("varchar")
}

fn is_text(expr: &Expr, schema: &DFSchema) -> bool {
    expr.get_type(schema)
        .is_ok_and(|t| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
}

/// One expression read as Postgres reads `bpchar` values in it (see the
/// [module documentation](self)); `None` when nothing changes.
pub fn rewrite(expr: &Expr, schema: &DFSchema) -> DfResult<Option<Transformed<Expr>>> {
    let bpchar = |e: &Expr| is_bpchar(e, schema);
    Ok(match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if (bpchar(left) || bpchar(right))
                && matches!(
                    op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::Lt
                        | Operator::LtEq
                        | Operator::Gt
                        | Operator::GtEq
                        | Operator::IsDistinctFrom
                        | Operator::IsNotDistinctFrom
                ) =>
        {
            if !(is_text(left, schema) && is_text(right, schema)) {
                return Ok(None);
            }
            // Both sides compared as `bpchar` (without trailing blanks),
            // or the `bpchar` side read as `text` beside a `text`.
            let side = |e: &Expr, other: &Expr| -> Expr {
                if bpchar(e) || (reads_as_bpchar(e, schema) && bpchar(other)) {
                    stripped(e.clone())
                } else {
                    e.clone()
                }
            };
            Some(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(side(left, right)),
                *op,
                Box::new(side(right, left)),
            ))))
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if *op == Operator::StringConcat && (bpchar(left) || bpchar(right)) =>
        {
            let side = |e: &Expr| {
                if bpchar(e) {
                    stripped(e.clone())
                } else {
                    e.clone()
                }
            };
            Some(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(side(left)),
                *op,
                Box::new(side(right)),
            ))))
        }
        Expr::InList(InList {
            expr: inner,
            list,
            negated,
        }) if bpchar(inner) && is_text(inner, schema) => {
            let item = |e: &Expr| {
                if bpchar(e) || reads_as_bpchar(e, schema) {
                    stripped(e.clone())
                } else {
                    e.clone()
                }
            };
            Some(Transformed::yes(Expr::InList(InList::new(
                Box::new(stripped(inner.as_ref().clone())),
                list.iter().map(item).collect(),
                *negated,
            ))))
        }
        Expr::Between(Between {
            expr: inner,
            negated,
            low,
            high,
        }) if bpchar(inner) && is_text(inner, schema) => {
            let side = |e: &Expr| {
                if bpchar(e) || reads_as_bpchar(e, schema) {
                    stripped(e.clone())
                } else {
                    e.clone()
                }
            };
            Some(Transformed::yes(Expr::Between(Between::new(
                Box::new(stripped(inner.as_ref().clone())),
                *negated,
                Box::new(side(low)),
                Box::new(side(high)),
            ))))
        }
        // `nullif(c, x)` compares as `=` does (without trailing blanks)
        // and answers `c` as it is.
        Expr::ScalarFunction(f) if f.name() == "nullif" && f.args.iter().any(bpchar) => {
            let [a, b] = f.args.as_slice() else {
                return Ok(None);
            };
            if !(is_text(a, schema) && is_text(b, schema)) {
                return Ok(None);
            }
            let equal = rewrite(
                &Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(a.clone()),
                    Operator::Eq,
                    Box::new(b.clone()),
                )),
                schema,
            )?
            .map_or_else(
                || {
                    Expr::BinaryExpr(BinaryExpr::new(
                        Box::new(a.clone()),
                        Operator::Eq,
                        Box::new(b.clone()),
                    ))
                },
                |t| t.data,
            );
            Some(Transformed::yes(Expr::Case(
                datafusion::logical_expr::Case::new(
                    None,
                    vec![(
                        Box::new(equal),
                        Box::new(Expr::Literal(ScalarValue::Utf8(None), None)),
                    )],
                    Some(Box::new(a.clone())),
                ),
            )))
        }
        Expr::ScalarFunction(f)
            if !PADDED_ARGUMENTS.contains(&f.name()) && f.args.iter().any(bpchar) =>
        {
            let args = f
                .args
                .iter()
                .map(|a| {
                    if bpchar(a) {
                        stripped(a.clone())
                    } else {
                        a.clone()
                    }
                })
                .collect();
            Some(Transformed::yes(Expr::ScalarFunction(
                ScalarFunction::new_udf(Arc::clone(&f.func), args),
            )))
        }
        Expr::AggregateFunction(agg)
            if !PADDED_AGGREGATES.contains(&agg.func.name())
                && agg.params.args.iter().any(bpchar) =>
        {
            let mut agg: AggregateFunction = agg.clone();
            for a in &mut agg.params.args {
                if bpchar(a) {
                    *a = stripped(a.clone());
                }
            }
            Some(Transformed::yes(Expr::AggregateFunction(agg)))
        }
        Expr::Cast(cast)
            if bpchar(&cast.expr)
                && matches!(
                    cast.field.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
        {
            Some(Transformed::yes(Expr::Cast(
                datafusion::logical_expr::Cast {
                    expr: Box::new(stripped(cast.expr.as_ref().clone())),
                    field: Arc::clone(&cast.field),
                },
            )))
        }
        _ => None,
    })
}

/// In a query (and the query of an `INSERT … SELECT`), a cast to
/// `char(n)` / `character(n)` (`char` alone: `char(1)`) becomes
/// [`BPCHAR_CAST`]`(x, n)`. Writes of `VALUES` convert values for their
/// column themselves.
pub fn rewrite_casts(statement: &mut Statement) {
    let rewrite = |expr: &mut ast::Expr| {
        if let ast::Expr::Cast {
            expr: inner,
            data_type: SqlType::Char(length) | SqlType::Character(length),
            ..
        } = expr
        {
            let n = match length {
                None => Some(1),
                Some(CharacterLength::IntegerLength { length, .. }) => Some(*length),
                Some(CharacterLength::Max) => None,
            };
            if let Some(n) = n {
                let inner = std::mem::replace(inner.as_mut(), ast::Expr::value(Value::Null));
                *expr = crate::pgvector::function_call(
                    BPCHAR_CAST,
                    vec![inner, ast::Expr::value(Value::Number(n.to_string(), false))],
                );
            }
        }
        ControlFlow::<()>::Continue(())
    };
    match statement {
        Statement::Query(_) => {
            let _ = visit_expressions_mut(statement, rewrite);
        }
        Statement::Insert(insert) => {
            if let Some(source) = insert.source.as_mut()
                && !matches!(source.body.as_ref(), ast::SetExpr::Values(_))
            {
                let _ = visit_expressions_mut(source, rewrite);
            }
        }
        _ => {}
    }
}

/// Text cut or padded to `n` characters, as an explicit cast to
/// `character(n)` makes it.
pub fn padded(text: &str, n: usize) -> String {
    let mut out: String = text.chars().take(n).collect();
    let chars = out.chars().count();
    out.extend(std::iter::repeat_n(' ', n - chars));
    out
}

/// `x::char(n)`: see [`rewrite_casts`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct BpcharCast {
    signature: Signature,
}

impl ScalarUDFImpl for BpcharCast {
    fn name(&self) -> &str {
        BPCHAR_CAST
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let nullable = args.arg_fields.first().is_none_or(|f| f.is_nullable());
        Ok(Arc::new(
            Field::new(BPCHAR_CAST, DataType::Utf8, nullable).with_metadata(
                [(
                    crate::catalog::PG_TYPE_METADATA_KEY.to_owned(),
                    BPCHAR.to_owned(),
                )]
                .into(),
            ),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [value, n] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(format!(
                "{BPCHAR_CAST} takes a value and a length"
            )));
        };
        let n = match n {
            ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) if n >= 1 => n as usize,
                other => {
                    return Err(DataFusionError::Plan(format!(
                        "length for type char must be at least 1, not {other}"
                    )));
                }
            },
            ColumnarValue::Array(_) => {
                return Err(DataFusionError::Plan(
                    "the length of char(n) must be a constant".to_owned(),
                ));
            }
        };
        let rows = args.number_rows;
        let array: ArrayRef = value.to_array(rows)?;
        let text = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let out: StringArray = (0..text.len())
            .map(|i| (!text.is_null(i)).then(|| padded(text.value(i), n)))
            .collect();
        Ok(match value {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(Arc::new(out)),
        })
    }
}

/// Registers [`BPCHAR_CAST`].
pub fn register_functions(ctx: &datafusion::execution::context::SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(BpcharCast {
        signature: Signature::any(2, Volatility::Immutable),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves an explicit cast to `character(n)` pads or cuts as
    /// PostgreSQL 16's does: `'ab'::char(5)` is `'ab   '` (5 octets),
    /// `'abcdefg'::char(3)` is `'abc'`, `'ab'::char` is `'a'`.
    #[test]
    fn casts_pad_and_cut() {
        assert_eq!(padded("ab", 5), "ab   ");
        assert_eq!(padded("abcdefg", 3), "abc");
        assert_eq!(padded("ab", 1), "a");
        assert_eq!(padded("é", 2), "é ");
    }
}
