//! Postgres types of Valori's values, their text and binary encodings, and
//! parameters turned into SQL literals.
//!
//! | Arrow type | Postgres type (OID) |
//! |---|---|
//! | `Boolean` | `bool` (16) |
//! | `Int8`, `Int16`, `UInt8` | `int2` (21) |
//! | `Int32`, `UInt16` | `int4` (23) |
//! | `Int64`, `UInt64` | `int8` (20) |
//! | `UInt32` (catalog object ids) | `oid` (26) |
//! | `Float16`, `Float32` | `float4` (700) |
//! | `Float64` | `float8` (701) |
//! | strings | `text` (25) |
//! | binaries | `bytea` (17) |
//! | lists of `Float32` (the `vec` column) | `vector` ([`VECTOR_OID`]) |
//! | lists of `Int32` (`vec_q16`) | `int4[]` (1007) |
//! | lists of `Int64` / `Float64` | `int8[]` (1016) / `float8[]` (1022) |
//! | lists of `UInt32` | `oid[]` (1028) |
//! | anything else | `text`, in Arrow's display form |
//!
//! `vector` is pgvector's type: text form `[1,2,3]`, binary form a big-endian
//! `u16` dimension, a `u16` 0, then the components as big-endian `f32`.
//! Its OID is fixed at [`VECTOR_OID`] (pgvector's OID depends on the
//! database it was installed in; clients look it up by name in `pg_type`).
//! A `UInt64` above `i64::MAX` has no `int8` binary form: it is an error in
//! binary format and printed in full in text format.

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::api::results::FieldFormat;
use postgres_types::Kind;
use valori_query::datafusion::arrow::array::{Array, AsArray};
use valori_query::datafusion::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use valori_query::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use valori_query::datafusion::common::ScalarValue;
use valori_query::declared::{micros_of, timestamp_micros, timestamp_text};
use valori_query::float_text::{PgFloat, float_text, push_float_text};
use valori_query::statement::vector_param;
use valori_query::write::{bytea_text, parse_vector_text};

use super::error::{PgError, SqlState};

/// The OID of the `vector` type.
pub const VECTOR_OID: u32 = 50_001;
/// The OID of `vector[]`.
pub const VECTOR_ARRAY_OID: u32 = 50_002;

/// The `vector` type.
pub fn vector_type() -> Type {
    Type::new("vector".into(), VECTOR_OID, Kind::Simple, "public".into())
}

/// The `vector[]` type.
pub fn vector_array_type() -> Type {
    Type::new(
        "_vector".into(),
        VECTOR_ARRAY_OID,
        Kind::Array(vector_type()),
        "public".into(),
    )
}

/// The Postgres type of values of `data_type`.
/// The Postgres type of a result column: its Arrow type's
/// ([`pg_type`]), unless the field names another in its metadata (the
/// catalog's `"char"` columns).
pub fn field_pg_type(field: &valori_query::datafusion::arrow::datatypes::Field) -> Type {
    match field
        .metadata()
        .get(valori_query::catalog::PG_TYPE_METADATA_KEY)
        .map(String::as_str)
    {
        Some("char") => Type::CHAR,
        // A declared column's `uuid`, `json`, `jsonb`, `numeric`,
        // `varchar`, `halfvec` or array type.
        Some(_) => {
            let oid = valori_query::catalog::field_type_oid(field);
            if oid == VECTOR_OID {
                vector_type()
            } else {
                Type::from_oid(oid).unwrap_or_else(|| pg_type(field.data_type()))
            }
        }
        None => pg_type(field.data_type()),
    }
}

pub fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Null => Type::TEXT,
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        // Catalog tables' object ids.
        DataType::UInt32 => Type::OID,
        DataType::Int64 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Date32 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            match item.data_type() {
                DataType::Float32 | DataType::Float16 => vector_type(),
                DataType::Int8 | DataType::Int16 | DataType::Int32 => Type::INT4_ARRAY,
                // Catalog object ids (`array_agg` of `pg_attribute.atttypid`):
                // `oid[]`, whose elements are 4 bytes as `oid`'s are.
                DataType::UInt32 => Type::OID_ARRAY,
                DataType::Int64 | DataType::UInt8 | DataType::UInt16 => Type::INT8_ARRAY,
                DataType::Float64 => Type::FLOAT8_ARRAY,
                DataType::Boolean => Type::BOOL_ARRAY,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT_ARRAY,
                _ => Type::TEXT,
            }
        }
        _ => Type::TEXT,
    }
}

/// Row `row` of a time-of-day column (`Time32`, `Time64`), in
/// microseconds since midnight.
fn time_micros(array: &dyn Array, row: usize) -> i64 {
    match array.data_type() {
        DataType::Time32(TimeUnit::Second) => micros_of(
            i64::from(array.as_primitive::<Time32SecondType>().value(row)),
            TimeUnit::Second,
        ),
        DataType::Time32(_) => micros_of(
            i64::from(array.as_primitive::<Time32MillisecondType>().value(row)),
            TimeUnit::Millisecond,
        ),
        DataType::Time64(TimeUnit::Nanosecond) => micros_of(
            array.as_primitive::<Time64NanosecondType>().value(row),
            TimeUnit::Nanosecond,
        ),
        _ => array.as_primitive::<Time64MicrosecondType>().value(row),
    }
}

/// A list of floats in text form, `[1,2.5]` (`brackets`, a vector's form)
/// or `{1,2.5}`, built in one string; `None` for other element types.
fn float_list_text(items: &dyn Array, brackets: bool) -> Option<String> {
    let (open, close) = if brackets { ('[', ']') } else { ('{', '}') };
    let mut out = String::with_capacity(2 + items.len() * 12);
    out.push(open);
    fn push_all<F>(out: &mut String, values: impl Iterator<Item = Option<F>>)
    where
        F: PgFloat,
    {
        for (i, v) in values.enumerate() {
            if i > 0 {
                out.push(',');
            }
            match v {
                Some(x) => push_float_text(out, x),
                None => out.push_str("NULL"),
            }
        }
    }
    match items.data_type() {
        DataType::Float32 => push_all(&mut out, items.as_primitive::<Float32Type>().iter()),
        DataType::Float64 => push_all(&mut out, items.as_primitive::<Float64Type>().iter()),
        _ => return None,
    }
    out.push(close);
    Some(out)
}

/// Appends one value (row `row` of `array`) to a DataRow buffer: its
/// length, then its bytes; a NULL is length -1.
pub fn encode_value(
    out: &mut BytesMut,
    array: &dyn Array,
    row: usize,
    ty: &Type,
    format: FieldFormat,
) -> Result<(), PgError> {
    // A column of Arrow's `Null` type (`SELECT NULL`) has no validity
    // buffer: every value is NULL, though `is_null` says otherwise.
    if array.is_null(row) || *array.data_type() == DataType::Null {
        out.put_i32(-1);
        return Ok(());
    }
    let start = out.len();
    out.put_i32(0);
    if format == FieldFormat::Binary {
        encode_binary(out, array, row, ty)?;
    } else {
        out.put_slice(text_form(array, row, ty)?.as_bytes());
    }
    let len = i32::try_from(out.len() - start - 4)
        .map_err(|_| PgError::new(SqlState::ProgramLimitExceeded, "value too large"))?;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// One value in the text form a query sends for a column of type `ty`
/// (the form `COPY … TO STDOUT` writes too).
pub fn text_form(array: &dyn Array, row: usize, ty: &Type) -> Result<String, PgError> {
    // `int2vector` and `oidvector` (the catalog's `indkey`, `indclass`)
    // print their elements separated by spaces, without braces.
    if matches!(*ty, Type::INT2_VECTOR | Type::OID_VECTOR)
        && let Some(items) = list_items(array, row)
    {
        let parts = (0..items.len())
            .map(|i| text_value(items.as_ref(), i))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(parts.join(" "));
    }
    let text = text_value(array, row)?;
    // A list of `f32` typed as a Postgres array (a declared `real[]`
    // column, `::real[]`) is written with Postgres's braces, not a
    // vector's brackets.
    let is_float_array = matches!(ty.kind(), Kind::Array(_))
        && ty.oid() != VECTOR_ARRAY_OID
        && matches!(
            array.data_type(),
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
        )
        && text.starts_with('[')
        && text.ends_with(']');
    Ok(if is_float_array {
        format!("{{{}}}", &text[1..text.len() - 1])
    } else {
        text
    })
}

/// A list value's items as `f64`s, and its raw `i32`s when it holds them.
fn list_items(array: &dyn Array, row: usize) -> Option<std::sync::Arc<dyn Array>> {
    match array.data_type() {
        DataType::List(_) => Some(array.as_list::<i32>().value(row)),
        DataType::LargeList(_) => Some(array.as_list::<i64>().value(row)),
        DataType::FixedSizeList(_, _) => Some(array.as_fixed_size_list().value(row)),
        _ => None,
    }
}

/// One value in Postgres's text form.
pub fn text_value(array: &dyn Array, row: usize) -> Result<String, PgError> {
    Ok(match array.data_type() {
        DataType::Boolean => if array.as_boolean().value(row) {
            "t"
        } else {
            "f"
        }
        .into(),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::Float32 => float_text(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => float_text(array.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(unit, tz) => {
            let text = timestamp_text(timestamp_micros(array, row, *unit));
            if tz.is_some() {
                format!("{text}+00")
            } else {
                text
            }
        }
        DataType::Time32(_) | DataType::Time64(_) => {
            let micros = time_micros(array, row).rem_euclid(86_400_000_000);
            let secs = micros / 1_000_000;
            let mut text = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
            let fraction = micros % 1_000_000;
            if fraction != 0 {
                let digits = format!("{fraction:06}");
                text.push('.');
                text.push_str(digits.trim_end_matches('0'));
            }
            text
        }
        DataType::Utf8 => array.as_string::<i32>().value(row).to_owned(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_owned(),
        DataType::Utf8View => array.as_string_view().value(row).to_owned(),
        DataType::Binary => hex_text(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => hex_text(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => hex_text(array.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => hex_text(array.as_fixed_size_binary().value(row)),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            let is_vector = matches!(item.data_type(), DataType::Float32 | DataType::Float16);
            let items =
                list_items(array, row).ok_or_else(|| PgError::internal("list without items"))?;
            if let Some(text) = float_list_text(items.as_ref(), is_vector) {
                return Ok(text);
            }
            let textual = matches!(
                item.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            );
            let parts = (0..items.len())
                .map(|i| {
                    if items.is_null(i) {
                        Ok("NULL".to_owned())
                    } else if textual {
                        text_value(items.as_ref(), i)
                            .map(|t| valori_query::declared::array_element_text(&t))
                    } else {
                        text_value(items.as_ref(), i)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            if is_vector {
                format!("[{}]", parts.join(","))
            } else {
                format!("{{{}}}", parts.join(","))
            }
        }
        _ => {
            let options = FormatOptions::default();
            let formatter = ArrayFormatter::try_new(array, &options)
                .map_err(|e| PgError::internal(e.to_string()))?;
            formatter.value(row).to_string()
        }
    })
}

/// A `numeric` parameter's text as an exact `Decimal128` when it has at
/// most 38 digits (writes keep every digit), else as a float, else as
/// text for the statement to refuse.
fn decimal_param(text: &str) -> ScalarValue {
    let t = text.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = int.trim_start_matches(['-', '+']);
    if !digits.is_empty()
        && digits
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
        && digits.len() + frac.len() <= 38
        && let Ok(value) = format!("{int}{frac}").parse::<i128>()
        && let Ok(scale) = i8::try_from(frac.len())
    {
        return ScalarValue::Decimal128(Some(value), 38, scale);
    }
    match t.parse::<f64>() {
        Ok(x) => ScalarValue::Float64(Some(x)),
        Err(_) => ScalarValue::Utf8(Some(t.to_owned())),
    }
}

/// Postgres's binary `numeric` as decimal text.
fn numeric_text(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<i16> {
        Some(i16::from_be_bytes([
            *bytes.get(2 * i)?,
            *bytes.get(2 * i + 1)?,
        ]))
    };
    let ndigits = usize::try_from(word(0)?).ok()?;
    let weight = i64::from(word(1)?);
    let sign = word(2)? as u16;
    let dscale = usize::try_from(word(3)?).ok()?;
    if bytes.len() != 8 + 2 * ndigits {
        return None;
    }
    if sign == 0xC000 {
        return Some("NaN".into());
    }
    let digits: Vec<i16> = (0..ndigits).map(|i| word(4 + i)).collect::<Option<_>>()?;
    let mut int = String::new();
    for g in 0..=weight.max(-1) {
        let d = usize::try_from(g)
            .ok()
            .and_then(|g| digits.get(g))
            .copied()
            .unwrap_or(0);
        if int.is_empty() {
            if d != 0 {
                int = d.to_string();
            }
        } else {
            int.push_str(&format!("{d:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut g = weight + 1;
    while frac.len() < dscale {
        let d = usize::try_from(g)
            .ok()
            .and_then(|g| digits.get(g))
            .copied()
            .unwrap_or(0);
        frac.push_str(&format!("{d:04}"));
        g += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Some(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

/// The elements of a one-dimensional binary array of text elements.
fn binary_text_array(bytes: &[u8]) -> Option<Vec<Option<String>>> {
    let word =
        |at: usize| -> Option<i32> { Some(i32::from_be_bytes(array4(bytes.get(at..at + 4)?))) };
    let ndim = word(0)?;
    if ndim == 0 {
        return Some(Vec::new());
    }
    if ndim != 1 {
        return None;
    }
    let len = usize::try_from(word(12)?).ok()?;
    let mut at = ARRAY_HEADER_BYTES;
    let mut out = Vec::with_capacity(len.min(bytes.len() / 4));
    for _ in 0..len {
        let n = word(at)?;
        at += 4;
        if n < 0 {
            out.push(None);
            continue;
        }
        let item = bytes.get(at..at + usize::try_from(n).ok()?)?;
        at += item.len();
        out.push(Some(String::from_utf8(item.to_vec()).ok()?));
    }
    (at == bytes.len()).then_some(out)
}

/// Days between 1970-01-01 and Postgres's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// `numeric` text in Postgres's binary form: digit count, weight, sign and
/// display scale, then base-10000 digits.
fn numeric_binary(out: &mut BytesMut, text: &str) -> Result<(), PgError> {
    let bad = || PgError::internal(format!("numeric value {text:?} is not decimal text"));
    if text == "NaN" {
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(0xC000);
        out.put_i16(0);
        return Ok(());
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) || int.is_empty() {
        return Err(bad());
    }
    let dscale = i16::try_from(frac.len()).map_err(|_| bad())?;
    let int = int.trim_start_matches('0');
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let all: String = "0".repeat(int_pad) + int + frac + &"0".repeat(frac_pad);
    let mut groups: Vec<i16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, b| acc * 10 + i16::from(b - b'0')))
        .collect();
    let mut weight = i16::try_from((int.len() + int_pad) / 4).map_err(|_| bad())? - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(i16::try_from(groups.len()).map_err(|_| bad())?);
    out.put_i16(weight);
    out.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_i16(dscale);
    for g in groups {
        out.put_i16(g);
    }
    Ok(())
}

fn hex_text(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn out_of_range(what: &str) -> PgError {
    PgError::new(
        SqlState::NumericValueOutOfRange,
        format!("{what} is out of range for its binary type"),
    )
}

fn encode_binary(
    out: &mut BytesMut,
    array: &dyn Array,
    row: usize,
    ty: &Type,
) -> Result<(), PgError> {
    match array.data_type() {
        DataType::Boolean => out.put_u8(u8::from(array.as_boolean().value(row))),
        DataType::Int8 => out.put_i16(i16::from(array.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => out.put_i16(array.as_primitive::<Int16Type>().value(row)),
        DataType::UInt8 => out.put_i16(i16::from(array.as_primitive::<UInt8Type>().value(row))),
        DataType::Int32 => out.put_i32(array.as_primitive::<Int32Type>().value(row)),
        DataType::UInt16 => out.put_i32(i32::from(array.as_primitive::<UInt16Type>().value(row))),
        DataType::Int64 => out.put_i64(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt32 => out.put_u32(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => {
            let v = array.as_primitive::<UInt64Type>().value(row);
            out.put_i64(i64::try_from(v).map_err(|_| out_of_range(&v.to_string()))?);
        }
        DataType::Float32 => out.put_f32(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => out.put_f64(array.as_primitive::<Float64Type>().value(row)),
        DataType::Date32 => {
            out.put_i32(array.as_primitive::<Date32Type>().value(row) - PG_EPOCH_DAYS);
        }
        DataType::Timestamp(unit, _) => {
            let micros = timestamp_micros(array, row, *unit);
            out.put_i64(micros.saturating_sub(i64::from(PG_EPOCH_DAYS) * 86_400_000_000));
        }
        DataType::Time32(_) | DataType::Time64(_) => {
            out.put_i64(time_micros(array, row).rem_euclid(86_400_000_000));
        }
        DataType::Utf8 if *ty == Type::UUID => {
            let text = array.as_string::<i32>().value(row);
            let bytes = valori_query::declared::uuid_from_text(text)
                .ok_or_else(|| PgError::internal(format!("{text:?} is not a uuid")))?;
            out.put_slice(&bytes);
        }
        DataType::Utf8 if *ty == Type::JSONB => {
            out.put_u8(1);
            out.put_slice(array.as_string::<i32>().value(row).as_bytes());
        }
        DataType::Utf8 if *ty == Type::NUMERIC => {
            numeric_binary(out, array.as_string::<i32>().value(row))?;
        }
        // `pg_typeof`'s answer: a type's name, sent in binary as its OID.
        DataType::Utf8 if *ty == Type::REGTYPE => {
            let name = array.as_string::<i32>().value(row);
            let oid = match name {
                // Not in `pg_type` here: Postgres's `unknown`, and
                // pgvector's `halfvec`, which is a `vector` here.
                "unknown" => Some(705),
                "halfvec" => Some(VECTOR_OID),
                _ => valori_query::catalog::type_oid(name),
            }
            .ok_or_else(|| PgError::internal(format!("{name:?} names no type")))?;
            out.put_u32(oid);
        }
        // Integer and float arrays are cast to their element type below:
        // narrower Arrow items (Int8, Int16, UInt8, UInt16, Float16) are
        // not the element's width.
        DataType::List(_)
            if matches!(ty.kind(), Kind::Array(_))
                && ty.oid() != VECTOR_ARRAY_OID
                && !matches!(
                    ty,
                    &Type::INT4_ARRAY | &Type::INT8_ARRAY | &Type::FLOAT8_ARRAY
                ) =>
        {
            let Kind::Array(element) = ty.kind() else {
                unreachable!("matched above")
            };
            let items =
                list_items(array, row).ok_or_else(|| PgError::internal("list without items"))?;
            let len = i32::try_from(items.len()).map_err(|_| out_of_range("array length"))?;
            out.put_i32(1);
            out.put_i32(i32::from(items.null_count() > 0));
            out.put_u32(element.oid());
            out.put_i32(len);
            out.put_i32(1);
            for i in 0..items.len() {
                encode_value(out, items.as_ref(), i, element, FieldFormat::Binary)?;
            }
        }
        DataType::Binary => out.put_slice(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => out.put_slice(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => out.put_slice(array.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => out.put_slice(array.as_fixed_size_binary().value(row)),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
            if ty.oid() == VECTOR_OID =>
        {
            let items =
                list_items(array, row).ok_or_else(|| PgError::internal("list without items"))?;
            let floats = valori_query::datafusion::arrow::compute::cast(&items, &DataType::Float32)
                .map_err(|e| PgError::internal(e.to_string()))?;
            let floats = floats.as_primitive::<Float32Type>();
            let dim = u16::try_from(floats.len()).map_err(|_| out_of_range("vector dimension"))?;
            out.put_u16(dim);
            out.put_u16(0);
            for i in 0..floats.len() {
                out.put_f32(floats.value(i));
            }
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
            if matches!(
                ty,
                &Type::INT4_ARRAY | &Type::INT8_ARRAY | &Type::FLOAT8_ARRAY
            ) =>
        {
            let items =
                list_items(array, row).ok_or_else(|| PgError::internal("list without items"))?;
            let (element, target) = match *ty {
                Type::INT4_ARRAY => (Type::INT4, DataType::Int32),
                Type::INT8_ARRAY => (Type::INT8, DataType::Int64),
                _ => (Type::FLOAT8, DataType::Float64),
            };
            let items = valori_query::datafusion::arrow::compute::cast(&items, &target)
                .map_err(|e| PgError::internal(e.to_string()))?;
            let len = i32::try_from(items.len()).map_err(|_| out_of_range("array length"))?;
            out.put_i32(1);
            out.put_i32(i32::from(items.null_count() > 0));
            out.put_u32(element.oid());
            out.put_i32(len);
            out.put_i32(1);
            for i in 0..items.len() {
                encode_value(out, items.as_ref(), i, &element, FieldFormat::Binary)?;
            }
        }
        // Everything else is `text`, whose binary form is its text.
        _ => out.put_slice(text_value(array, row)?.as_bytes()),
    }
    Ok(())
}

/// A parameter value, decoded from its text or binary form, as a typed
/// value for the statement layer (never as SQL text). `ty` is the
/// parameter's type (the client's, else the statement's); unknown types
/// are taken as text. The statement layer then converts the value to the
/// type the statement needs.
pub fn param_value(value: Option<&[u8]>, binary: bool, ty: &Type) -> Result<ScalarValue, PgError> {
    let Some(bytes) = value else {
        return Ok(ScalarValue::Null);
    };
    let bad = |what: &str| {
        PgError::new(
            SqlState::InvalidBinaryRepresentation,
            format!("parameter of type {}: {what}", ty.name()),
        )
    };
    let text_of = |bytes: &[u8]| -> Result<String, PgError> {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| bad("not UTF-8"))
    };
    if binary {
        let be = |n: usize| -> Result<&[u8], PgError> {
            if bytes.len() == n {
                Ok(bytes)
            } else {
                Err(bad(&format!("expected {n} bytes, got {}", bytes.len())))
            }
        };
        return Ok(match *ty {
            Type::BOOL => ScalarValue::Boolean(Some(be(1)?[0] != 0)),
            Type::INT2 => ScalarValue::Int16(Some(i16::from_be_bytes([be(2)?[0], bytes[1]]))),
            Type::INT4 => ScalarValue::Int32(Some(i32::from_be_bytes(array4(be(4)?)))),
            Type::OID => ScalarValue::Int64(Some(i64::from(u32::from_be_bytes(array4(be(4)?))))),
            Type::INT8 => ScalarValue::Int64(Some(i64::from_be_bytes(array8(be(8)?)))),
            Type::FLOAT4 => ScalarValue::Float32(Some(f32::from_be_bytes(array4(be(4)?)))),
            Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_be_bytes(array8(be(8)?)))),
            Type::BYTEA => ScalarValue::Binary(Some(bytes.to_vec())),
            Type::JSONB => {
                let (version, text) = bytes.split_first().ok_or_else(|| bad("empty jsonb"))?;
                if *version != 1 {
                    return Err(bad("unknown jsonb version"));
                }
                ScalarValue::Utf8(Some(text_of(text)?))
            }
            Type::FLOAT4_ARRAY
            | Type::FLOAT8_ARRAY
            | Type::INT2_ARRAY
            | Type::INT4_ARRAY
            | Type::INT8_ARRAY => binary_number_array(bytes).map_err(|e| bad(&e))?,
            _ if ty.oid() == VECTOR_OID => {
                vector_param(binary_vector(bytes).ok_or_else(|| bad("malformed vector"))?)
            }
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
                ScalarValue::Utf8(Some(text_of(bytes)?))
            }
            Type::DATE => ScalarValue::Date32(Some(
                i32::from_be_bytes(array4(be(4)?)).saturating_add(PG_EPOCH_DAYS),
            )),
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                let micros = i64::from_be_bytes(array8(be(8)?))
                    .saturating_add(i64::from(PG_EPOCH_DAYS) * 86_400_000_000);
                let text = timestamp_text(micros);
                ScalarValue::Utf8(Some(if *ty == Type::TIMESTAMPTZ {
                    format!("{text}+00")
                } else {
                    text
                }))
            }
            Type::UUID => ScalarValue::Utf8(Some(valori_query::declared::uuid_text(be(16)?))),
            Type::NUMERIC => {
                let text = numeric_text(bytes).ok_or_else(|| bad("malformed numeric"))?;
                decimal_param(&text)
            }
            Type::OID_ARRAY => oid_list(binary_oid_array(bytes).map_err(|e| bad(&e))?),
            Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
                let items = binary_text_array(bytes).ok_or_else(|| bad("malformed text array"))?;
                ScalarValue::List(ScalarValue::new_list_nullable(
                    &items.into_iter().map(ScalarValue::Utf8).collect::<Vec<_>>(),
                    &DataType::Utf8,
                ))
            }
            _ => {
                return Err(PgError::new(
                    SqlState::FeatureNotSupported,
                    format!(
                        "binary parameters of type {} are not supported; send text",
                        ty.name()
                    ),
                ));
            }
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        PgError::new(
            SqlState::CharacterNotInRepertoire,
            "parameter is not valid UTF-8",
        )
    })?;
    let invalid = |kind: &str| {
        PgError::new(
            SqlState::InvalidTextRepresentation,
            format!("invalid input syntax for type {kind}: {text:?}"),
        )
    };
    Ok(match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => {
            let t = text.trim();
            match t.parse::<i64>() {
                Ok(n) => ScalarValue::Int64(Some(n)),
                Err(_) => ScalarValue::UInt64(Some(t.parse::<u64>().map_err(|_| {
                    if t.parse::<i128>().is_ok() {
                        PgError::new(
                            SqlState::NumericValueOutOfRange,
                            format!("value {t:?} is out of range for type bigint"),
                        )
                    } else {
                        invalid("integer")
                    }
                })?)),
            }
        }
        // Exact digits for numeric columns; a float only beyond 38 digits.
        Type::NUMERIC => decimal_param(text),
        Type::FLOAT4 | Type::FLOAT8 => {
            let t = text.trim();
            let x = match t.to_ascii_lowercase().as_str() {
                "nan" => f64::NAN,
                "infinity" | "inf" => f64::INFINITY,
                "-infinity" | "-inf" => f64::NEG_INFINITY,
                _ => t.parse::<f64>().map_err(|_| invalid("double precision"))?,
            };
            ScalarValue::Float64(Some(x))
        }
        Type::BOOL => ScalarValue::Boolean(Some(
            valori_query::session::parse_bool(text.trim()).ok_or_else(|| invalid("boolean"))?,
        )),
        Type::BYTEA => {
            ScalarValue::Binary(Some(bytea_text(text).map_err(|e| {
                PgError::new(SqlState::InvalidTextRepresentation, e.to_string())
            })?))
        }
        Type::FLOAT4_ARRAY
        | Type::FLOAT8_ARRAY
        | Type::INT2_ARRAY
        | Type::INT4_ARRAY
        | Type::INT8_ARRAY
        | Type::NUMERIC_ARRAY => {
            let item_type = match *ty {
                Type::INT2_ARRAY | Type::INT4_ARRAY | Type::INT8_ARRAY => DataType::Int64,
                Type::FLOAT4_ARRAY => DataType::Float32,
                _ => DataType::Float64,
            };
            text_number_array(text, &item_type).ok_or_else(|| invalid(ty.name()))?
        }
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            let items = valori_query::declared::array_text_elements(text)
                .ok_or_else(|| invalid(ty.name()))?;
            ScalarValue::List(ScalarValue::new_list_nullable(
                &items.into_iter().map(ScalarValue::Utf8).collect::<Vec<_>>(),
                &DataType::Utf8,
            ))
        }
        Type::OID_ARRAY => {
            let inner = text
                .trim()
                .strip_prefix('{')
                .and_then(|t| t.strip_suffix('}'))
                .ok_or_else(|| invalid("oid[]"))?;
            let oids = inner
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| t.parse::<u32>().map_err(|_| invalid("oid")))
                .collect::<Result<Vec<u32>, PgError>>()?;
            oid_list(oids)
        }
        _ if ty.oid() == VECTOR_OID => {
            parse_vector_text(text)
                .map_err(|e| PgError::new(SqlState::InvalidTextRepresentation, e))?;
            ScalarValue::Utf8(Some(text.to_owned()))
        }
        _ => ScalarValue::Utf8(Some(text.to_owned())),
    })
}

/// An `oid[]` parameter's value: a list of `UInt32`, as catalog ids are.
fn oid_list(oids: Vec<u32>) -> ScalarValue {
    let items: Vec<ScalarValue> = oids
        .into_iter()
        .map(|o| ScalarValue::UInt32(Some(o)))
        .collect();
    ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::UInt32))
}

/// A one-dimensional binary `oid[]` (asyncpg sends its type lookups'
/// OIDs so), or what is wrong with it. The element count is checked
/// against the bytes sent before anything is allocated; NULL elements are
/// refused.
fn binary_oid_array(bytes: &[u8]) -> Result<Vec<u32>, String> {
    let word = |at: usize| array_word(bytes, at);
    // Each element is its 4-byte length and 4 bytes.
    let Some((element, len)) = array_header(bytes, 8)? else {
        return Ok(Vec::new());
    };
    if element != 26 {
        return Err(format!("elements of type OID {element}; expected oid (26)"));
    }
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let at = ARRAY_HEADER_BYTES + 8 * i;
        if word(at)? != 4 {
            return Err(format!("array element {i}: NULL or not 4 bytes"));
        }
        out.push(u32::from_be_bytes(array4(&bytes[at + 4..at + 8])));
    }
    if ARRAY_HEADER_BYTES + 8 * len != bytes.len() {
        return Err(format!(
            "{} bytes follow the array",
            bytes.len() - ARRAY_HEADER_BYTES - 8 * len
        ));
    }
    Ok(out)
}

fn array4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

fn array8(b: &[u8]) -> [u8; 8] {
    [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// pgvector's binary form: u16 dimension, u16 unused, f32 big-endian.
pub fn binary_vector(bytes: &[u8]) -> Option<Vec<f32>> {
    let dim = usize::from(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]));
    let body = bytes.get(4..)?;
    if body.len() != dim * 4 {
        return None;
    }
    Some(
        body.chunks_exact(4)
            .map(|c| f32::from_be_bytes(array4(c)))
            .collect(),
    )
}

/// Bytes of a binary array's header: ndim, flags, element OID, then for
/// its one dimension the length and the lower bound.
const ARRAY_HEADER_BYTES: usize = 20;

/// The big-endian `i32` at byte `at` of a binary array.
fn array_word(bytes: &[u8], at: usize) -> Result<i32, String> {
    bytes
        .get(at..at + 4)
        .map(|b| i32::from_be_bytes(array4(b)))
        .ok_or_else(|| format!("array ends at byte {}, inside its header", bytes.len()))
}

/// A one-dimensional binary array's element OID and element count, `None`
/// for an empty array (no dimensions). The count is the client's word: it
/// is checked against the bytes actually sent, each element taking at
/// least `element_bytes_min`, before anything is allocated.
fn array_header(bytes: &[u8], element_bytes_min: usize) -> Result<Option<(i32, usize)>, String> {
    let ndim = array_word(bytes, 0)?;
    let element = array_word(bytes, 8)?;
    if ndim == 0 {
        return Ok(None);
    }
    if ndim != 1 {
        return Err(format!("array of {ndim} dimensions; expected one"));
    }
    let claimed = array_word(bytes, 12)?;
    // The lower bound is not used, but the header must be whole: the
    // elements start after it.
    array_word(bytes, 16)?;
    let body = bytes.len() - ARRAY_HEADER_BYTES;
    let len = usize::try_from(claimed)
        .ok()
        .filter(|&len| len <= body / element_bytes_min)
        .ok_or_else(|| {
            format!("array claims {claimed} elements but only {body} bytes of elements follow")
        })?;
    Ok(Some((element, len)))
}

/// A one-dimensional binary array of int2/int4/int8/float4/float8
/// elements as a list of their own type (integers as `Int64`, `float4`
/// as `Float32`, `float8` as `Float64`; NULL elements as NULL items), or
/// what is wrong with it. The statement layer takes it as a vector where
/// the statement needs one and as an array elsewhere. The element count
/// is the client's word: it is checked against the bytes actually sent
/// (each element takes at least its 4-byte length) before anything is
/// allocated.
fn binary_number_array(bytes: &[u8]) -> Result<ScalarValue, String> {
    let word = |at: usize| array_word(bytes, at);
    // Each element takes at least its 4-byte length.
    let Some((element, len)) = array_header(bytes, 4)? else {
        return Ok(number_list(Vec::new(), &DataType::Int64));
    };
    let item_type = match element {
        21 | 23 | 20 => DataType::Int64,
        700 => DataType::Float32,
        701 => DataType::Float64,
        oid => {
            return Err(format!(
                "elements of type OID {oid}; expected int2, int4, int8, float4 or float8"
            ));
        }
    };
    let mut at = ARRAY_HEADER_BYTES;
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let n = word(at)?;
        at += 4;
        if n == -1 {
            out.push(ScalarValue::try_from(&item_type).map_err(|e| e.to_string())?);
            continue;
        }
        let item = usize::try_from(n)
            .ok()
            .and_then(|n| bytes.get(at..at + n))
            .ok_or_else(|| format!("array element {i}: length {n} (past the end)"))?;
        at += item.len();
        out.push(match (element, item.len()) {
            (21, 2) => ScalarValue::Int64(Some(i64::from(i16::from_be_bytes([item[0], item[1]])))),
            (23, 4) => ScalarValue::Int64(Some(i64::from(i32::from_be_bytes(array4(item))))),
            (20, 8) => ScalarValue::Int64(Some(i64::from_be_bytes(array8(item)))),
            (700, 4) => ScalarValue::Float32(Some(f32::from_be_bytes(array4(item)))),
            (701, 8) => ScalarValue::Float64(Some(f64::from_be_bytes(array8(item)))),
            (oid, n) => return Err(format!("array element {i}: {n} bytes of type OID {oid}")),
        });
    }
    if at != bytes.len() {
        return Err(format!("{} bytes follow the array", bytes.len() - at));
    }
    Ok(number_list(out, &item_type))
}

/// A text-form number array (`{1,2,NULL}`) as a list of `item_type`, or
/// `None` when it does not read as one.
fn text_number_array(text: &str, item_type: &DataType) -> Option<ScalarValue> {
    let items = valori_query::declared::array_text_elements(text)?
        .into_iter()
        .map(|item| match item {
            None => ScalarValue::try_from(item_type).ok(),
            Some(t) => {
                let t = t.trim();
                match item_type {
                    DataType::Int64 => t.parse::<i64>().ok().map(|n| ScalarValue::Int64(Some(n))),
                    DataType::Float32 => {
                        float_item(t).map(|x| ScalarValue::Float32(Some(x as f32)))
                    }
                    _ => float_item(t).map(|x| ScalarValue::Float64(Some(x))),
                }
            }
        })
        .collect::<Option<Vec<ScalarValue>>>()?;
    Some(number_list(items, item_type))
}

/// A float element of an array's text form (`NaN` and `Infinity` as
/// Postgres spells them).
fn float_item(t: &str) -> Option<f64> {
    match t.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => t.parse::<f64>().ok(),
    }
}

fn number_list(items: Vec<ScalarValue>, item_type: &DataType) -> ScalarValue {
    ScalarValue::List(ScalarValue::new_list_nullable(&items, item_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use valori_query::datafusion::arrow::array::{
        FixedSizeListArray, Float32Array, Float64Array, ListArray, UInt64Array,
    };
    use valori_query::datafusion::arrow::datatypes::Field;

    /// Proves pgvector's binary form round-trips and that malformed bytes
    /// are refused.
    #[test]
    fn vector_binary_form() {
        let mut bytes = vec![0u8, 2, 0, 0];
        bytes.extend_from_slice(&1.5f32.to_be_bytes());
        bytes.extend_from_slice(&(-2.0f32).to_be_bytes());
        assert_eq!(binary_vector(&bytes), Some(vec![1.5, -2.0]));
        assert_eq!(binary_vector(&bytes[..7]), None);
        assert_eq!(
            param_value(Some(&bytes), true, &vector_type()).unwrap(),
            vector_param(vec![1.5, -2.0])
        );
    }

    /// A binary array header: one dimension of `len` elements of type
    /// `oid`, lower bound 1.
    fn array_header(len: i32, oid: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [1, 0, oid as i32, len, 1] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        bytes
    }

    /// Proves a binary array's element count is checked against the bytes
    /// sent before anything is allocated: a 20-byte parameter claiming
    /// 2^31 - 1 elements is refused with 22P03 without reserving memory
    /// for them (it used to reserve 8 GiB), and a well-formed array still
    /// reads.
    #[test]
    fn binary_array_length_is_checked_before_allocating() {
        let claim = array_header(i32::MAX, 700);
        let (result, largest) = crate::test_alloc::largest_allocation(|| {
            param_value(Some(&claim), true, &Type::FLOAT4_ARRAY)
        });
        assert!(
            largest < 1 << 20,
            "allocated {largest} bytes for a 20-byte parameter"
        );
        let e = result.unwrap_err();
        assert_eq!(e.code(), "22P03");
        assert!(e.to_string().contains("claims 2147483647 elements"), "{e}");

        let mut ok = array_header(2, 700);
        for x in [1.5f32, -2.0] {
            ok.extend_from_slice(&4i32.to_be_bytes());
            ok.extend_from_slice(&x.to_be_bytes());
        }
        assert_eq!(
            param_value(Some(&ok), true, &Type::FLOAT4_ARRAY).unwrap(),
            list(
                vec![
                    ScalarValue::Float32(Some(1.5)),
                    ScalarValue::Float32(Some(-2.0))
                ],
                DataType::Float32
            )
        );
        // A NULL element is a NULL item (a vector refuses it later).
        let mut null = array_header(1, 700);
        null.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            param_value(Some(&null), true, &Type::FLOAT4_ARRAY).unwrap(),
            list(vec![ScalarValue::Float32(None)], DataType::Float32)
        );
        // int8 elements stay exact integers (2^40 + 1 has no f32).
        let mut big = array_header(1, 20);
        big.extend_from_slice(&8i32.to_be_bytes());
        big.extend_from_slice(&((1i64 << 40) + 1).to_be_bytes());
        assert_eq!(
            param_value(Some(&big), true, &Type::INT8_ARRAY).unwrap(),
            list(
                vec![ScalarValue::Int64(Some((1 << 40) + 1))],
                DataType::Int64
            )
        );
        // One element too many for the bytes, and a trailing byte, are
        // refused.
        let mut short = array_header(3, 700);
        short.extend_from_slice(&ok[20..]);
        assert!(param_value(Some(&short), true, &Type::FLOAT4_ARRAY).is_err());
        ok.push(0);
        assert!(param_value(Some(&ok), true, &Type::FLOAT4_ARRAY).is_err());
    }

    /// Proves parameters become typed values, never SQL text: a string
    /// with quotes stays one string, numbers and bytes are decoded from
    /// text and binary, and bad text is refused with 22P02.
    #[test]
    fn parameters_become_values() {
        assert_eq!(
            param_value(Some(b"x'); DROP TABLE t; --"), false, &Type::TEXT).unwrap(),
            utf8("x'); DROP TABLE t; --")
        );
        assert_eq!(
            param_value(Some(b" 42 "), false, &Type::INT8).unwrap(),
            ScalarValue::Int64(Some(42))
        );
        let e = param_value(Some(b"4x"), false, &Type::INT8).unwrap_err();
        assert_eq!(e.code(), "22P02");
        assert_eq!(
            param_value(Some(&7i64.to_be_bytes()), true, &Type::INT8).unwrap(),
            ScalarValue::Int64(Some(7))
        );
        assert_eq!(
            param_value(None, true, &Type::INT8).unwrap(),
            ScalarValue::Null
        );
        assert_eq!(
            param_value(Some(b"\\x00ff"), false, &Type::BYTEA).unwrap(),
            ScalarValue::Binary(Some(vec![0, 0xff]))
        );
        // Arrays' text forms are their elements, typed.
        assert_eq!(
            param_value(Some(b"{1,2.5}"), false, &Type::FLOAT8_ARRAY).unwrap(),
            list(
                vec![
                    ScalarValue::Float64(Some(1.0)),
                    ScalarValue::Float64(Some(2.5))
                ],
                DataType::Float64
            )
        );
        assert_eq!(
            param_value(Some(b"{1099511627777,NULL}"), false, &Type::INT8_ARRAY).unwrap(),
            list(
                vec![
                    ScalarValue::Int64(Some(1_099_511_627_777)),
                    ScalarValue::Int64(None)
                ],
                DataType::Int64
            )
        );
        assert_eq!(
            param_value(Some(br#"{a,"b,c",NULL}"#), false, &Type::TEXT_ARRAY).unwrap(),
            list(
                vec![utf8("a"), utf8("b,c"), ScalarValue::Utf8(None)],
                DataType::Utf8
            )
        );
        let e = param_value(Some(b"{1,x}"), false, &Type::INT4_ARRAY).unwrap_err();
        assert_eq!(e.code(), "22P02");
    }

    fn utf8(s: &str) -> ScalarValue {
        ScalarValue::Utf8(Some(s.to_owned()))
    }

    fn list(items: Vec<ScalarValue>, item_type: DataType) -> ScalarValue {
        ScalarValue::List(ScalarValue::new_list_nullable(&items, &item_type))
    }

    /// Proves timestamps and times of every Arrow unit are sent in
    /// PostgreSQL's forms at its microsecond resolution: DataFusion's
    /// `now()` is a nanosecond `timestamptz`, which went out in Arrow's
    /// display form (`2026-12-07T19:26:10.264282577`) that no driver
    /// reads. 1,796,671,570 s after 1970-01-01 is 2026-12-07 19:26:10 UTC
    /// (Python's `datetime.fromtimestamp(1796671570, timezone.utc)`).
    #[test]
    fn timestamps_and_times_of_every_unit() {
        use valori_query::datafusion::arrow::array::{
            Time32SecondArray, Time64NanosecondArray, TimestampMillisecondArray,
            TimestampNanosecondArray,
        };
        let now =
            TimestampNanosecondArray::from(vec![1_796_671_570_264_282_577]).with_timezone("+00:00");
        assert_eq!(pg_type(now.data_type()), Type::TIMESTAMPTZ);
        assert_eq!(
            text_value(&now, 0).unwrap(),
            "2026-12-07 19:26:10.264283+00"
        );
        let mut out = BytesMut::new();
        encode_value(&mut out, &now, 0, &Type::TIMESTAMPTZ, FieldFormat::Binary).unwrap();
        // PostgreSQL's binary form: microseconds since 2000-01-01 00:00,
        // 946,684,800 s after 1970-01-01.
        let since_2000: i64 = (1_796_671_570 - 946_684_800) * 1_000_000 + 264_283;
        assert_eq!(out[4..], since_2000.to_be_bytes());
        // Half a microsecond goes to the even neighbour.
        let halves = TimestampNanosecondArray::from(vec![1_500, 2_500, -500]);
        let texts: Vec<String> = (0..3).map(|i| text_value(&halves, i).unwrap()).collect();
        assert_eq!(
            texts,
            [
                "1970-01-01 00:00:00.000002",
                "1970-01-01 00:00:00.000002",
                "1970-01-01 00:00:00"
            ]
        );
        let millis = TimestampMillisecondArray::from(vec![1_796_671_570_250]);
        assert_eq!(pg_type(millis.data_type()), Type::TIMESTAMP);
        assert_eq!(text_value(&millis, 0).unwrap(), "2026-12-07 19:26:10.25");
        let time = Time64NanosecondArray::from(vec![
            (19 * 3600 + 26 * 60 + 10) * 1_000_000_000 + 295_868_938,
        ]);
        assert_eq!(pg_type(time.data_type()), Type::TIME);
        assert_eq!(text_value(&time, 0).unwrap(), "19:26:10.295869");
        let seconds = Time32SecondArray::from(vec![3_661]);
        assert_eq!(text_value(&seconds, 0).unwrap(), "01:01:01");
        let mut out = BytesMut::new();
        encode_value(&mut out, &seconds, 0, &Type::TIME, FieldFormat::Binary).unwrap();
        assert_eq!(out[4..], 3_661_000_000i64.to_be_bytes());
    }

    /// Proves the text forms of floats, vectors and large unsigned values,
    /// and that a u64 above i64::MAX has no binary int8 form.
    #[test]
    fn text_and_binary_values() {
        let floats = Float64Array::from(vec![1.0, 0.1, 1e20, f64::NAN, 1e-7, 1.5e-10, 1e100]);
        let texts: Vec<String> = (0..7).map(|i| text_value(&floats, i).unwrap()).collect();
        // Postgres's forms: `SELECT 1e-7::float8` is `1e-07`.
        assert_eq!(
            texts,
            ["1", "0.1", "1e+20", "NaN", "1e-07", "1.5e-10", "1e+100"]
        );
        let f32s = Float32Array::from(vec![0.1f32, 1e-5]);
        assert_eq!(text_value(&f32s, 0).unwrap(), "0.1");
        assert_eq!(text_value(&f32s, 1).unwrap(), "1e-05");
        // A vector's components in one string, each in Postgres's float4
        // form (`SELECT '[1.5258789e-05]'::vector` prints `[1.5258789e-05]`,
        // `float4out` of -0 is `-0`); a list of f64 in braces, with NULL.
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let vectors = FixedSizeListArray::new(
            item,
            8,
            Arc::new(Float32Array::from(vec![
                0.1f32,
                1.0 / 65536.0,
                -0.0,
                1e20,
                f32::INFINITY,
                f32::NAN,
                32767.5,
                -3.25,
            ])),
            None,
        );
        assert_eq!(
            text_value(&vectors, 0).unwrap(),
            "[0.1,1.5258789e-05,-0,1e+20,Infinity,NaN,32767.5,-3.25]"
        );
        let doubles = ListArray::from_iter_primitive::<Float64Type, _, _>([Some(vec![
            Some(0.5),
            None,
            Some(1e-7),
        ])]);
        assert_eq!(text_value(&doubles, 0).unwrap(), "{0.5,NULL,1e-07}");
        let big = UInt64Array::from(vec![u64::MAX]);
        assert_eq!(text_value(&big, 0).unwrap(), "18446744073709551615");
        let mut out = BytesMut::new();
        assert!(encode_value(&mut out, &big, 0, &Type::INT8, FieldFormat::Binary).is_err());
    }
}
