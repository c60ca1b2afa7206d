//! SQL functions that read one value out of a record's JSON metadata.
//!
//! | function | result | |
//! |---|---|---|
//! | `meta_get(metadata, key, …)` | `Utf8` | a string as is; a number, boolean, object or array as its canonical JSON text |
//! | `meta_num(metadata, key, …)` | `Float64` | a number; NULL for anything else |
//! | `meta_bool(metadata, key, …)` | `Boolean` | a boolean; NULL for anything else |
//!
//! The keys after `metadata` are a path: each is an object key, or, where
//! the value reached is an array, a 0-based index written in decimal. The
//! result is NULL when the path does not exist, when the value there is
//! JSON `null`, when the metadata is empty, or when it is not JSON (raw
//! bytes). So `meta_get(metadata, 'lang') = 'en'` keeps exactly the records
//! whose `lang` is the string `en`, and a comparison with a record lacking
//! the key is NULL, as in SQL (the row is not kept, also under `!=`).
//!
//! ```sql
//! SELECT id FROM docs WHERE meta_get(metadata, 'lang') = 'en'
//!   AND meta_num(metadata, 'stats', 'views') >= 100
//! ```
//!
//! The metadata argument is the `metadata` column (`Binary`) or JSON text
//! (`Utf8`); the keys are strings (usually literals). Numbers are read as
//! `f64`, as JSON parsers do.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

use crate::metadata;

/// What a metadata function returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetaFunction {
    /// `meta_get`: text.
    Text,
    /// `meta_num`: a number.
    Number,
    /// `meta_bool`: a boolean.
    Bool,
}

impl MetaFunction {
    pub const ALL: [MetaFunction; 3] =
        [MetaFunction::Text, MetaFunction::Number, MetaFunction::Bool];

    pub const fn name(self) -> &'static str {
        match self {
            MetaFunction::Text => "meta_get",
            MetaFunction::Number => "meta_num",
            MetaFunction::Bool => "meta_bool",
        }
    }

    const fn return_type(self) -> DataType {
        match self {
            MetaFunction::Text => DataType::Utf8,
            MetaFunction::Number => DataType::Float64,
            MetaFunction::Bool => DataType::Boolean,
        }
    }
}

/// The value at `path` in stored metadata `bytes`, if there is one (JSON
/// `null` counts as none).
pub fn lookup<S: AsRef<str>>(bytes: &[u8], path: &[S]) -> Option<Value> {
    let mut value = metadata::to_value(bytes).ok()?;
    for key in path {
        let key = key.as_ref();
        value = match value {
            Value::Object(mut map) => map.remove(key)?,
            Value::Array(mut items) => {
                let index: usize = key.parse().ok()?;
                if index >= items.len() {
                    return None;
                }
                items.swap_remove(index)
            }
            _ => return None,
        };
    }
    (!value.is_null()).then_some(value)
}

/// `value` as `meta_get` shows it.
fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        // Canonical: objects' keys are sorted (serde_json's map is ordered).
        other => other.to_string(),
    }
}

/// The scalar UDF of one [`MetaFunction`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MetaUdf {
    function: MetaFunction,
    signature: Signature,
}

impl MetaUdf {
    pub fn new(function: MetaFunction) -> MetaUdf {
        MetaUdf {
            function,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

/// Registers `meta_get`, `meta_num` and `meta_bool` with `ctx`.
pub fn register_functions(ctx: &SessionContext) {
    for function in MetaFunction::ALL {
        ctx.register_udf(ScalarUDF::new_from_impl(MetaUdf::new(function)));
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

impl ScalarUDFImpl for MetaUdf {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let name = self.function.name();
        let Some((first, keys)) = arg_types.split_first() else {
            return plan_err!("{name}(metadata, key, ...) takes the metadata and at least one key");
        };
        if keys.is_empty() {
            return plan_err!("{name}(metadata, key, ...) takes the metadata and at least one key");
        }
        if !matches!(
            first,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        ) && !is_text(first)
        {
            return plan_err!(
                "{name}: the first argument has type {first}; expected the metadata column"
            );
        }
        if let Some(t) = keys.iter().find(|t| !is_text(t)) {
            return plan_err!("{name}: keys must be strings, not {t}");
        }
        Ok(self.function.return_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let (metadata, keys) = arrays
            .split_first()
            .expect("invariant: return_type checked there are at least two arguments");
        let bytes_at = |row: usize| -> Option<Vec<u8>> {
            if metadata.is_null(row) {
                return None;
            }
            match metadata.data_type() {
                DataType::Binary => Some(metadata.as_binary::<i32>().value(row).to_vec()),
                DataType::LargeBinary => Some(metadata.as_binary::<i64>().value(row).to_vec()),
                DataType::BinaryView => Some(metadata.as_binary_view().value(row).to_vec()),
                DataType::Utf8 => Some(metadata.as_string::<i32>().value(row).as_bytes().to_vec()),
                DataType::LargeUtf8 => {
                    Some(metadata.as_string::<i64>().value(row).as_bytes().to_vec())
                }
                DataType::Utf8View => {
                    Some(metadata.as_string_view().value(row).as_bytes().to_vec())
                }
                _ => None,
            }
        };
        let key_at = |array: &ArrayRef, row: usize| -> Option<String> {
            if array.is_null(row) {
                return None;
            }
            match array.data_type() {
                DataType::Utf8 => Some(array.as_string::<i32>().value(row).to_owned()),
                DataType::LargeUtf8 => Some(array.as_string::<i64>().value(row).to_owned()),
                DataType::Utf8View => Some(array.as_string_view().value(row).to_owned()),
                _ => None,
            }
        };
        let values: Vec<Option<Value>> = (0..rows)
            .map(|row| {
                let bytes = bytes_at(row)?;
                let path = keys
                    .iter()
                    .map(|k| key_at(k, row))
                    .collect::<Option<Vec<String>>>()?;
                lookup(&bytes, &path)
            })
            .collect();
        let array: ArrayRef = match self.function {
            MetaFunction::Text => Arc::new(
                values
                    .iter()
                    .map(|v| v.as_ref().map(as_text))
                    .collect::<StringArray>(),
            ),
            MetaFunction::Number => Arc::new(
                values
                    .iter()
                    .map(|v| v.as_ref().and_then(Value::as_f64))
                    .collect::<Float64Array>(),
            ),
            MetaFunction::Bool => Arc::new(
                values
                    .iter()
                    .map(|v| v.as_ref().and_then(Value::as_bool))
                    .collect::<BooleanArray>(),
            ),
        };
        if all_scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?));
        }
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves path lookup: object keys, array indices, missing keys,
    /// JSON null, empty and non-JSON metadata.
    #[test]
    fn lookup_follows_paths() {
        let doc = br#"{"lang":"en","n":3,"ok":true,"tags":["a","b"],"s":{"v":1.5},"z":null}"#;
        assert_eq!(lookup(doc, &["lang"]), Some(Value::from("en")));
        assert_eq!(lookup(doc, &["n"]).and_then(|v| v.as_f64()), Some(3.0));
        assert_eq!(lookup(doc, &["ok"]), Some(Value::Bool(true)));
        assert_eq!(lookup(doc, &["tags", "1"]), Some(Value::from("b")));
        assert_eq!(lookup(doc, &["tags", "2"]), None);
        assert_eq!(lookup(doc, &["tags", "x"]), None);
        assert_eq!(lookup(doc, &["s", "v"]).and_then(|v| v.as_f64()), Some(1.5));
        assert_eq!(lookup(doc, &["s", "v", "w"]), None);
        assert_eq!(lookup(doc, &["z"]), None);
        assert_eq!(lookup(doc, &["missing"]), None);
        assert_eq!(lookup(b"", &["lang"]), None);
        assert_eq!(lookup(b"\xff\x00", &["lang"]), None);
        // Text form: strings bare, everything else canonical JSON.
        assert_eq!(as_text(&Value::from("en")), "en");
        assert_eq!(
            lookup(doc, &["tags"]).map(|v| as_text(&v)),
            Some(r#"["a","b"]"#.to_owned())
        );
        assert_eq!(
            lookup(doc, &["n"]).map(|v| as_text(&v)),
            Some("3".to_owned())
        );
    }
}
