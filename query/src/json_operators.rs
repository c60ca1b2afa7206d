//! Postgres's JSON operators on `json` / `jsonb` values (text columns
//! holding JSON, and JSON text literals): `->` (a field or element as
//! JSON), `->>` (as text) and `@>` / `<@` (containment, as `jsonb`
//! defines it).
//!
//! [`JsonOperatorPlanner`] plans them as the functions `json_get`,
//! `json_get_text` and `json_contains` when their left operand is text;
//! DataFusion has no meaning of its own for them. A key that is text
//! names an object's field, an integer an array's element (negative from
//! the end); a missing field, an element out of range, a value that is
//! not an object or array, and NULL give NULL. Text that is not JSON is an
//! error naming the operator. `->` answers in `jsonb`'s canonical text.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// One JSON operator as a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum JsonFunction {
    /// `->`
    Get,
    /// `->>`
    GetText,
    /// `@>`
    Contains,
    /// `<@`
    ContainedBy,
}

impl JsonFunction {
    fn of_operator(op: &BinaryOperator) -> Option<JsonFunction> {
        Some(match op {
            BinaryOperator::Arrow => JsonFunction::Get,
            BinaryOperator::LongArrow => JsonFunction::GetText,
            BinaryOperator::AtArrow => JsonFunction::Contains,
            BinaryOperator::ArrowAt => JsonFunction::ContainedBy,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            JsonFunction::Get => "json_get",
            JsonFunction::GetText => "json_get_text",
            JsonFunction::Contains => "json_contains",
            JsonFunction::ContainedBy => "json_contained_by",
        }
    }

    fn operator(self) -> &'static str {
        match self {
            JsonFunction::Get => "->",
            JsonFunction::GetText => "->>",
            JsonFunction::Contains => "@>",
            JsonFunction::ContainedBy => "<@",
        }
    }
}

pub(crate) fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Plans the JSON operators over text (see the [module
/// documentation](self)).
#[derive(Debug, Default)]
pub struct JsonOperatorPlanner;

impl ExprPlanner for JsonOperatorPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let Some(function) = JsonFunction::of_operator(&expr.op) else {
            return Ok(PlannerResult::Original(expr));
        };
        let text = |e: &Expr| e.get_type(schema).is_ok_and(|t| is_text(&t) || t.is_null());
        if !text(&expr.left) {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            datafusion::logical_expr::expr::ScalarFunction::new_udf(
                Arc::new(ScalarUDF::new_from_impl(JsonUdf::new(function))),
                vec![expr.left, expr.right],
            ),
        )))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonUdf {
    function: JsonFunction,
    signature: Signature,
}

impl JsonUdf {
    fn new(function: JsonFunction) -> JsonUdf {
        JsonUdf {
            function,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// A JSON value of `text` (row `row` of an argument), for `function`.
fn parse(function: JsonFunction, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).or_else(|e| {
        exec_err!(
            "operator {}: invalid input syntax for type json: {e}",
            function.operator()
        )
    })
}

/// The field or element `key` of `value`.
fn get<'a>(value: &'a serde_json::Value, key: &ScalarValue) -> Option<&'a serde_json::Value> {
    match (value, key) {
        (serde_json::Value::Object(map), _) => match key {
            ScalarValue::Utf8(Some(k))
            | ScalarValue::LargeUtf8(Some(k))
            | ScalarValue::Utf8View(Some(k)) => map.get(k),
            _ => None,
        },
        (serde_json::Value::Array(items), _) => {
            let i = match key {
                ScalarValue::Int64(Some(i)) => *i,
                ScalarValue::Int32(Some(i)) => i64::from(*i),
                ScalarValue::Int16(Some(i)) => i64::from(*i),
                ScalarValue::Int8(Some(i)) => i64::from(*i),
                _ => return None,
            };
            let len = items.len() as i64;
            let at = if i < 0 { len + i } else { i };
            usize::try_from(at).ok().and_then(|at| items.get(at))
        }
        _ => None,
    }
}

/// `jsonb` containment as Postgres defines it: every field of an object
/// `b` is in `a` with a value containing `b`'s, every element of an array
/// `b` is contained in some element of `a` of the same kind, scalars are
/// equal; at the top level only, an array contains a scalar it holds.
fn contains(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (serde_json::Value::Array(items), b) if !b.is_object() && !b.is_array() => {
            items.iter().any(|item| item == b)
        }
        _ => contains_nested(a, b),
    }
}

fn contains_nested(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => b
            .iter()
            .all(|(k, bv)| a.get(k).is_some_and(|av| contains_nested(av, bv))),
        (Value::Array(a), Value::Array(b)) => b
            .iter()
            .all(|bv| a.iter().any(|av| contains_nested(av, bv))),
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        (a, b) => a == b,
    }
}

impl ScalarUDFImpl for JsonUdf {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if let Some(first) = arg_types.first()
            && !is_text(first)
            && !first.is_null()
        {
            return plan_err!(
                "operator {}: the left operand has type {first}; expected json or jsonb",
                self.function.operator()
            );
        }
        Ok(match self.function {
            JsonFunction::Get | JsonFunction::GetText => DataType::Utf8,
            JsonFunction::Contains | JsonFunction::ContainedBy => DataType::Boolean,
        })
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let field = Field::new(self.name(), self.return_type(&types)?, true);
        // `->` answers `jsonb`, as in Postgres.
        Ok(Arc::new(if self.function == JsonFunction::Get {
            field.with_metadata(
                [(
                    crate::catalog::PG_TYPE_METADATA_KEY.to_owned(),
                    "jsonb".to_owned(),
                )]
                .into(),
            )
        } else {
            field
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return plan_err!("operator {} takes 2 operands", self.function.operator());
        };
        let rows = args.number_rows;
        let left = left.to_array(rows)?;
        let right = right.to_array(rows)?;
        let left = datafusion::arrow::compute::cast(&left, &DataType::Utf8)?;
        let texts = left.as_string::<i32>();
        let out: ArrayRef = match self.function {
            JsonFunction::Get | JsonFunction::GetText => {
                let mut values: Vec<Option<String>> = Vec::with_capacity(rows);
                for row in 0..rows {
                    if texts.is_null(row) || right.is_null(row) {
                        values.push(None);
                        continue;
                    }
                    let value = parse(self.function, texts.value(row))?;
                    let key = ScalarValue::try_from_array(&right, row)?;
                    values.push(get(&value, &key).and_then(|v| match (self.function, v) {
                        (JsonFunction::GetText, serde_json::Value::Null) => None,
                        (JsonFunction::GetText, serde_json::Value::String(s)) => Some(s.clone()),
                        _ => Some(crate::declared::jsonb_text(v)),
                    }));
                }
                Arc::new(StringArray::from(values))
            }
            JsonFunction::Contains | JsonFunction::ContainedBy => {
                let right = datafusion::arrow::compute::cast(&right, &DataType::Utf8)?;
                let others = right.as_string::<i32>();
                let mut values: Vec<Option<bool>> = Vec::with_capacity(rows);
                for row in 0..rows {
                    if texts.is_null(row) || others.is_null(row) {
                        values.push(None);
                        continue;
                    }
                    let a = parse(self.function, texts.value(row))?;
                    let b = parse(self.function, others.value(row))?;
                    values.push(Some(if self.function == JsonFunction::Contains {
                        contains(&a, &b)
                    } else {
                        contains(&b, &a)
                    }));
                }
                Arc::new(BooleanArray::from(values))
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    /// Proves containment as Postgres documents it for `jsonb`: nested
    /// objects, arrays regardless of order and repetition, a scalar in an
    /// array, and what is not contained.
    #[test]
    fn containment_follows_jsonb() {
        let a = json(r#"{"a": 1, "b": {"c": [1, 2, 3], "d": "x"}, "e": [1, [2]]}"#);
        assert!(contains(&a, &json(r#"{"a": 1}"#)));
        assert!(contains(&a, &json(r#"{"b": {"c": [3, 1, 1]}}"#)));
        assert!(contains(&a, &json(r#"{"e": [[2]]}"#)));
        assert!(contains(&json("[1, 2]"), &json("1")));
        assert!(contains(&a, &json("{}")));
        assert!(!contains(&a, &json(r#"{"a": 2}"#)));
        assert!(!contains(&a, &json(r#"{"b": {"c": [4]}}"#)));
        assert!(!contains(&a, &json(r#"{"z": null}"#)));
        // Postgres: '[1, 2, [1, 3]]' @> '[1, 3]' is false, @> '[[1, 3]]'
        // true; a nested array's elements are not the outer array's.
        assert!(!contains(&json("[1, 2, [1, 3]]"), &json("[1, 3]")));
        assert!(contains(&json("[1, 2, [1, 3]]"), &json("[[1, 3]]")));
        assert!(contains(&json(r#"["foo", "bar"]"#), &json(r#""foo""#)));
    }

    /// Proves field and element access: text keys on objects, integer
    /// keys on arrays (negative from the end), nothing otherwise.
    #[test]
    fn fields_and_elements() {
        let v = json(r#"{"a": [10, 20, 30]}"#);
        let key = |k: &str| ScalarValue::Utf8(Some(k.to_owned()));
        let arr = get(&v, &key("a")).unwrap();
        assert_eq!(get(arr, &ScalarValue::Int64(Some(1))), Some(&json("20")));
        assert_eq!(get(arr, &ScalarValue::Int64(Some(-1))), Some(&json("30")));
        assert_eq!(get(arr, &ScalarValue::Int64(Some(3))), None);
        assert_eq!(get(&v, &key("b")), None);
        assert_eq!(get(arr, &key("a")), None);
    }
}
