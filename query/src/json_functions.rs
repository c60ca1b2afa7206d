//! Postgres's casts to `json`, `jsonb`, `jsonpath` and `uuid` in queries, and the
//! `jsonb` functions that frameworks build their metadata filters from:
//! `jsonb_path_match`, `jsonb_path_exists` and `jsonb_exists`.
//!
//! JSON values are text here (as `json` / `jsonb` columns are). The
//! statement layer turns `x::json`, `x::jsonb` and `x::jsonpath` in a
//! query into calls of [`JSON_CAST`], [`JSONB_CAST`] and
//! [`JSONPATH_CAST`]: the text is checked (and, for `jsonb`, brought to
//! `jsonb`'s canonical form) rather than passed on unread. `x::uuid`
//! becomes [`UUID_CAST`] alike: `uuid` values are text in queries (as
//! `uuid` columns are), checked and brought to Postgres's lower-case
//! hyphenated form.
//!
//! `jsonpath` is supported as far as filters use it: a path of member
//! accessors from the root (`$`, `$.a`, `$.a.b`, `$."a b"`), optionally
//! compared (`==`, `!=`, `<>`, `<`, `<=`, `>`, `>=`) with a literal
//! (number, string, `true`, `false`, `null`) or a variable (`$name`, read
//! from the `vars` argument). Evaluation follows Postgres's lax mode: a
//! missing member is an empty sequence, arrays are unwrapped, a
//! comparison is true when any pair of items satisfies it, unknown (SQL
//! NULL from `jsonb_path_match`) when none does and some pair is not
//! comparable (a number and a string, say). Any other path is an error
//! naming what is not supported — never a different answer.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use serde_json::Value;

/// The function a cast to `json` becomes in a query.
pub const JSON_CAST: &str = "valori_cast_json";
/// The function a cast to `jsonb` becomes in a query.
pub const JSONB_CAST: &str = "valori_cast_jsonb";
/// The function a cast to `jsonpath` becomes in a query.
pub const JSONPATH_CAST: &str = "valori_cast_jsonpath";
/// The function a cast to `uuid` becomes in a query.
pub const UUID_CAST: &str = "valori_cast_uuid";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Function {
    CastJson,
    CastJsonb,
    CastJsonpath,
    CastUuid,
    PathMatch,
    PathExists,
    Exists,
}

impl Function {
    const ALL: [Function; 7] = [
        Function::CastJson,
        Function::CastJsonb,
        Function::CastJsonpath,
        Function::CastUuid,
        Function::PathMatch,
        Function::PathExists,
        Function::Exists,
    ];

    fn name(self) -> &'static str {
        match self {
            Function::CastJson => JSON_CAST,
            Function::CastJsonb => JSONB_CAST,
            Function::CastJsonpath => JSONPATH_CAST,
            Function::CastUuid => UUID_CAST,
            Function::PathMatch => "jsonb_path_match",
            Function::PathExists => "jsonb_path_exists",
            Function::Exists => "jsonb_exists",
        }
    }

    /// How the function is named in errors.
    fn shown(self) -> &'static str {
        match self {
            Function::CastJson => "cast to json",
            Function::CastJsonb => "cast to jsonb",
            Function::CastJsonpath => "cast to jsonpath",
            Function::CastUuid => "cast to uuid",
            other => other.name(),
        }
    }

    /// The accepted argument counts.
    fn arity(self) -> (usize, usize) {
        match self {
            Function::CastJson
            | Function::CastJsonb
            | Function::CastJsonpath
            | Function::CastUuid => (1, 1),
            Function::PathMatch | Function::PathExists => (2, 4),
            Function::Exists => (2, 2),
        }
    }
}

/// Registers the casts and functions of this module.
pub fn register_functions(ctx: &SessionContext) {
    for function in Function::ALL {
        ctx.register_udf(ScalarUDF::new_from_impl(JsonFunctionUdf {
            function,
            signature: Signature::variadic_any(Volatility::Immutable),
        }));
    }
}

/// `arg::jsonb` as a query spells it after its casts are rewritten: the
/// canonical `jsonb` text of `arg`.
pub fn jsonb_cast(arg: datafusion::logical_expr::Expr) -> datafusion::logical_expr::Expr {
    let udf = ScalarUDF::new_from_impl(JsonFunctionUdf {
        function: Function::CastJsonb,
        signature: Signature::variadic_any(Volatility::Immutable),
    });
    datafusion::logical_expr::Expr::ScalarFunction(
        datafusion::logical_expr::expr::ScalarFunction::new_udf(Arc::new(udf), vec![arg]),
    )
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonFunctionUdf {
    function: Function,
    signature: Signature,
}

fn is_text_or_null(t: &DataType) -> bool {
    crate::json_operators::is_text(t) || t.is_null()
}

impl ScalarUDFImpl for JsonFunctionUdf {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let (min, max) = self.function.arity();
        if arg_types.len() < min || arg_types.len() > max {
            return plan_err!(
                "{} takes {min} to {max} arguments, got {}",
                self.function.shown(),
                arg_types.len()
            );
        }
        // The fourth argument of the path functions is `silent` (boolean).
        for (i, t) in arg_types.iter().enumerate().take(3) {
            if !is_text_or_null(t) {
                return plan_err!(
                    "{}: argument {} has type {t}; expected json, jsonb, jsonpath or text",
                    self.function.shown(),
                    i + 1
                );
            }
        }
        Ok(match self.function {
            Function::CastJson
            | Function::CastJsonb
            | Function::CastJsonpath
            | Function::CastUuid => DataType::Utf8,
            Function::PathMatch | Function::PathExists | Function::Exists => DataType::Boolean,
        })
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let field = Field::new(self.name(), self.return_type(&types)?, true);
        // Clients see the cast's type.
        let pg_type = match self.function {
            Function::CastJson => Some("json"),
            Function::CastJsonb => Some("jsonb"),
            Function::CastUuid => Some("uuid"),
            _ => None,
        };
        Ok(Arc::new(match pg_type {
            Some(name) => field.with_metadata(
                [(
                    crate::catalog::PG_TYPE_METADATA_KEY.to_owned(),
                    name.to_owned(),
                )]
                .into(),
            ),
            None => field,
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let mut texts = Vec::new();
        for arg in args.args.iter().take(3) {
            let array = arg.to_array(rows)?;
            texts.push(datafusion::arrow::compute::cast(&array, &DataType::Utf8)?);
        }
        let text = |i: usize, row: usize| -> Option<&str> {
            let a = texts[i].as_string::<i32>();
            (!a.is_null(row)).then(|| a.value(row))
        };
        let function = self.function;
        let json = |i: usize, row: usize| -> Result<Option<Value>> {
            match text(i, row) {
                None => Ok(None),
                Some(t) => serde_json::from_str(t).map(Some).or_else(|e| {
                    exec_err!(
                        "{}: invalid input syntax for type json: {e}",
                        function.shown()
                    )
                }),
            }
        };
        let out: ArrayRef = match function {
            Function::CastJson
            | Function::CastJsonb
            | Function::CastJsonpath
            | Function::CastUuid => {
                let mut values: Vec<Option<String>> = Vec::with_capacity(rows);
                for row in 0..rows {
                    values.push(match function {
                        Function::CastJson => {
                            // `json` keeps its text as written, once it parses.
                            json(0, row)?;
                            text(0, row).map(str::to_owned)
                        }
                        Function::CastJsonb => {
                            json(0, row)?.map(|v| crate::declared::jsonb_text(&v))
                        }
                        Function::CastUuid => match text(0, row) {
                            None => None,
                            Some(t) => match crate::declared::uuid_from_text(t) {
                                Some(bytes) => Some(crate::declared::uuid_text(&bytes)),
                                None => {
                                    return exec_err!(
                                        "invalid input syntax for type uuid: \"{t}\""
                                    );
                                }
                            },
                        },
                        _ => match text(0, row) {
                            None => None,
                            Some(t) => {
                                parse_path(t).map_err(|e| path_error(function, t, e))?;
                                Some(t.to_owned())
                            }
                        },
                    });
                }
                Arc::new(StringArray::from(values))
            }
            Function::Exists => {
                let mut values: Vec<Option<bool>> = Vec::with_capacity(rows);
                for row in 0..rows {
                    let (Some(target), Some(key)) = (json(0, row)?, text(1, row)) else {
                        values.push(None);
                        continue;
                    };
                    // `jsonb ? text`: a key of an object, a string element
                    // of an array, or the string itself.
                    values.push(Some(match &target {
                        Value::Object(map) => map.contains_key(key),
                        Value::Array(items) => items.iter().any(|v| v.as_str() == Some(key)),
                        Value::String(s) => s == key,
                        _ => false,
                    }));
                }
                Arc::new(BooleanArray::from(values))
            }
            Function::PathMatch | Function::PathExists => {
                let mut values: Vec<Option<bool>> = Vec::with_capacity(rows);
                for row in 0..rows {
                    let (Some(target), Some(path)) = (json(0, row)?, text(1, row)) else {
                        values.push(None);
                        continue;
                    };
                    let path = parse_path(path).map_err(|e| path_error(function, path, e))?;
                    let vars = if texts.len() > 2 { json(2, row)? } else { None };
                    let result = evaluate(&path, &target, vars.as_ref())
                        .or_else(|e| exec_err!("{}: {e}", function.shown()))?;
                    values.push(match (function, result) {
                        (Function::PathMatch, Outcome::Predicate(p)) => p,
                        (Function::PathMatch, Outcome::Items(items)) => match items.as_slice() {
                            [Value::Bool(b)] => Some(*b),
                            [Value::Null] => None,
                            _ => {
                                return exec_err!(
                                    "jsonb_path_match: single boolean result is expected"
                                );
                            }
                        },
                        // A predicate always yields one item (its truth
                        // value, or null).
                        (_, Outcome::Predicate(_)) => Some(true),
                        (_, Outcome::Items(items)) => Some(!items.is_empty()),
                    });
                }
                Arc::new(BooleanArray::from(values))
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

fn path_error(function: Function, path: &str, e: String) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution(format!(
        "{}: jsonpath {path:?}: {e}",
        function.shown()
    ))
}

/// A comparison operator of a path predicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The right side of a comparison.
#[derive(Clone, Debug, PartialEq)]
enum Operand {
    Literal(Value),
    Variable(String),
}

/// A parsed path: member accessors from `$`, then maybe a comparison.
#[derive(Clone, Debug, PartialEq)]
struct Path {
    members: Vec<String>,
    predicate: Option<(Compare, Operand)>,
}

const SUPPORTED: &str = "supported: $, member accessors ($.a.b, $.\"a b\"), and one comparison (==, !=, <>, <, <=, >, >=) of such a path with a literal or a $variable";

fn parse_path(text: &str) -> Result<Path, String> {
    let mut rest = text.trim();
    // `lax` is the default mode; `strict` changes the error handling,
    // which is not implemented.
    if let Some(r) = rest.strip_prefix("lax ") {
        rest = r.trim_start();
    }
    let Some(r) = rest.strip_prefix('$') else {
        return Err(format!("a path must start at $ ({SUPPORTED})"));
    };
    rest = r;
    let mut members = Vec::new();
    loop {
        rest = rest.trim_start();
        let Some(r) = rest.strip_prefix('.') else {
            break;
        };
        let r = r.trim_start();
        if let Some(quoted) = r.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| "unterminated quoted member name".to_owned())?;
            members.push(quoted[..end].to_owned());
            rest = &quoted[end + 1..];
        } else {
            let end = r
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(r.len());
            if end == 0 {
                return Err(format!("unsupported accessor after '.' ({SUPPORTED})"));
            }
            members.push(r[..end].to_owned());
            rest = &r[end..];
        }
    }
    rest = rest.trim_start();
    if rest.is_empty() {
        return Ok(Path {
            members,
            predicate: None,
        });
    }
    let operators = [
        ("==", Compare::Eq),
        ("!=", Compare::Ne),
        ("<>", Compare::Ne),
        ("<=", Compare::Le),
        (">=", Compare::Ge),
        ("<", Compare::Lt),
        (">", Compare::Gt),
    ];
    let Some((op, after)) = operators
        .iter()
        .find_map(|(s, op)| rest.strip_prefix(s).map(|r| (*op, r)))
    else {
        return Err(format!(
            "unsupported path expression at {rest:?} ({SUPPORTED})"
        ));
    };
    let operand = after.trim();
    let operand = if let Some(name) = operand.strip_prefix('$') {
        let name = name
            .strip_prefix('"')
            .and_then(|n| n.strip_suffix('"'))
            .unwrap_or(name);
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!("unsupported operand {operand:?} ({SUPPORTED})"));
        }
        Operand::Variable(name.to_owned())
    } else {
        match serde_json::from_str::<Value>(operand) {
            Ok(v @ (Value::Number(_) | Value::String(_) | Value::Bool(_) | Value::Null)) => {
                Operand::Literal(v)
            }
            _ => return Err(format!("unsupported operand {operand:?} ({SUPPORTED})")),
        }
    };
    Ok(Path {
        members,
        predicate: Some((op, operand)),
    })
}

/// What a path yields: its items, or a predicate's truth (None: unknown).
enum Outcome {
    Items(Vec<Value>),
    Predicate(Option<bool>),
}

/// The items `members` select from `root`, in lax mode.
fn select<'a>(root: &'a Value, members: &[String]) -> Vec<&'a Value> {
    let mut items = vec![root];
    for member in members {
        let mut next = Vec::new();
        for item in items {
            match item {
                Value::Object(map) => next.extend(map.get(member)),
                // Lax mode: an accessor applies to each element.
                Value::Array(elements) => next.extend(
                    elements
                        .iter()
                        .filter_map(|e| e.as_object().and_then(|m| m.get(member))),
                ),
                // Lax mode: an accessor on a scalar is an empty sequence.
                _ => {}
            }
        }
        items = next;
    }
    items
}

/// Arrays unwrapped, as lax mode does for a comparison's operands.
fn unwrapped<'a>(items: impl IntoIterator<Item = &'a Value>) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::Array(elements) => out.extend(elements.iter()),
            other => out.push(other),
        }
    }
    out
}

fn evaluate(path: &Path, target: &Value, vars: Option<&Value>) -> Result<Outcome, String> {
    let left = select(target, &path.members);
    let Some((op, operand)) = &path.predicate else {
        return Ok(Outcome::Items(left.into_iter().cloned().collect()));
    };
    let right: &Value = match operand {
        Operand::Literal(v) => v,
        Operand::Variable(name) => match vars {
            Some(Value::Object(map)) => map
                .get(name)
                .ok_or_else(|| format!("could not find jsonpath variable {name:?}"))?,
            Some(_) => return Err("\"vars\" argument is not an object".to_owned()),
            None => return Err(format!("could not find jsonpath variable {name:?}")),
        },
    };
    let mut unknown = false;
    for a in unwrapped(left) {
        for b in unwrapped([right]) {
            match compare(a, b, *op) {
                Some(true) => return Ok(Outcome::Predicate(Some(true))),
                Some(false) => {}
                None => unknown = true,
            }
        }
    }
    Ok(Outcome::Predicate(if unknown { None } else { Some(false) }))
}

/// Postgres's comparison of two jsonpath items: `None` when they are not
/// comparable (different types other than null, or arrays and objects).
fn compare(a: &Value, b: &Value, op: Compare) -> Option<bool> {
    let ordering = match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        // Null against a non-null: only `!=` holds.
        (Value::Null, _) | (_, Value::Null) => return Some(op == Compare::Ne),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y)?,
        // Strings compare by code point (UTF-8 bytes keep that order).
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => return None,
    };
    Some(match op {
        Compare::Eq => ordering == Ordering::Equal,
        Compare::Ne => ordering != Ordering::Equal,
        Compare::Lt => ordering == Ordering::Less,
        Compare::Le => ordering != Ordering::Greater,
        Compare::Gt => ordering == Ordering::Greater,
        Compare::Ge => ordering != Ordering::Less,
    })
}

fn compare_numbers(x: &serde_json::Number, y: &serde_json::Number) -> Option<Ordering> {
    // Integers exactly; otherwise as doubles.
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return Some(a.cmp(&b));
    }
    x.as_f64()?.partial_cmp(&y.as_f64()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(target: &str, path: &str, vars: &str) -> Option<bool> {
        let target: Value = serde_json::from_str(target).unwrap();
        let vars: Value = serde_json::from_str(vars).unwrap();
        match evaluate(&parse_path(path).unwrap(), &target, Some(&vars)).unwrap() {
            Outcome::Predicate(p) => p,
            Outcome::Items(_) => panic!("not a predicate"),
        }
    }

    /// The answers Postgres 16 gives for these `jsonb_path_match` calls
    /// (lax mode): equality and order on numbers and strings, a missing
    /// member is false, incomparable types are unknown (NULL), null
    /// against a value is false except for `!=`, arrays are unwrapped.
    #[test]
    fn predicates_follow_postgres() {
        assert_eq!(
            matches(r#"{"a": 3}"#, "$.a == $v", r#"{"v": 3}"#),
            Some(true)
        );
        assert_eq!(
            matches(r#"{"a": 3}"#, "$.a >= $v", r#"{"v": 3.5}"#),
            Some(false)
        );
        assert_eq!(matches(r#"{"a": 3}"#, "$.a < 4", "{}"), Some(true));
        assert_eq!(
            matches(r#"{"a": "x"}"#, "$.a == $v", r#"{"v": "x"}"#),
            Some(true)
        );
        assert_eq!(matches(r#"{"a": "b"}"#, "$.a > \"a\"", "{}"), Some(true));
        assert_eq!(matches(r#"{"b": 1}"#, "$.a == 1", "{}"), Some(false));
        assert_eq!(matches(r#"{"a": "1"}"#, "$.a == 1", "{}"), None);
        assert_eq!(matches(r#"{"a": null}"#, "$.a == 1", "{}"), Some(false));
        assert_eq!(matches(r#"{"a": null}"#, "$.a != 1", "{}"), Some(true));
        assert_eq!(matches(r#"{"a": [1, 5]}"#, "$.a == 5", "{}"), Some(true));
        assert_eq!(
            matches(r#"{"a": {"b": true}}"#, "$.a.b == true", "{}"),
            Some(true)
        );
        assert_eq!(
            matches(r#"{"a b": 2}"#, "$.\"a b\" <> 2", "{}"),
            Some(false)
        );
    }

    /// Paths outside the supported subset are refused, not misread.
    #[test]
    fn unsupported_paths_are_refused() {
        for path in [
            "$.a[0] == 1",
            "$.a ? (@ > 1)",
            "$.a == 1 && $.b == 2",
            "a == 1",
            "$.* == 1",
        ] {
            assert!(parse_path(path).is_err(), "{path}");
        }
    }
}
