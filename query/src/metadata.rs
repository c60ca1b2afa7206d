//! Metadata as JSON: one canonical byte form for a JSON value, so that the
//! same value written through REST, Python or SQL gives the same bytes and
//! the same state hash.

use serde_json::Value;

/// The stored form of a metadata value: compact JSON with object keys in
/// sorted order; `null` is stored as no bytes at all.
pub fn to_bytes(value: &Value) -> Vec<u8> {
    if value.is_null() {
        return Vec::new();
    }
    // serde_json's `Map` is a BTreeMap (the `preserve_order` feature is
    // off), so keys serialize sorted; serializing a `Value` cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// The canonical bytes of JSON text, or the parse error with its position.
pub fn from_json_text(text: &str) -> Result<Vec<u8>, serde_json::Error> {
    let value: Value = serde_json::from_str(text)?;
    Ok(to_bytes(&value))
}

/// Stored metadata read back: `Ok(value)` when the bytes are JSON (no bytes
/// read as `null`), `Err(bytes)` for raw bytes that are not.
pub fn to_value(bytes: &[u8]) -> Result<Value, &[u8]> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|_| bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_and_whitespace_dropped() {
        let bytes = from_json_text(r#"{ "b": 1, "a": [true, null], "c": {"z": "x", "y": 2.5} }"#)
            .unwrap_or_default();
        assert_eq!(bytes, br#"{"a":[true,null],"b":1,"c":{"y":2.5,"z":"x"}}"#);
        assert_eq!(from_json_text("null").ok(), Some(Vec::new()));
        assert!(from_json_text("{").is_err());
    }

    #[test]
    fn bytes_round_trip() {
        assert_eq!(to_value(b""), Ok(Value::Null));
        assert_eq!(to_value(b"\"en\""), Ok(Value::String("en".into())));
        assert_eq!(to_value(b"\xff\x00"), Err(&b"\xff\x00"[..]));
    }
}
