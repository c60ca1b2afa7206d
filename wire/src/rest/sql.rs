//! `POST /v1/sql` and `POST /v1/query`: read-only SQL and the query DSL,
//! answered as JSON rows or as an Arrow IPC stream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use valori_core::event::CollectionName;
use valori_query::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, LargeBinaryArray, StringArray,
};
use valori_query::datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use valori_query::datafusion::arrow::ipc::writer::StreamWriter;
use valori_query::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use valori_query::dsl::DslError;
use valori_query::metadata;
use valori_query::session::Session;
use valori_query::statement::{Access, json_param};
use valori_query::{QueryError, QueryOutput};

use super::error::ApiError;
use super::extract::Body;
use super::records::base64;
use super::{AppState, Shared};

/// Media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    query: String,
    /// Values of `$1`, `$2`, …: JSON numbers, strings, booleans, `null`,
    /// and arrays of numbers (vectors).
    #[serde(default)]
    params: Vec<Value>,
    /// Session settings for this statement (`valori.ef_search`,
    /// `valori.exact`, `statement_timeout`), as `SET` takes them.
    #[serde(default)]
    settings: BTreeMap<String, Value>,
}

/// Runs one statement through the statement layer, as the Postgres front
/// end and Python do: queries, writes (for keys with the write role) and
/// session commands, which apply to this request only.
pub async fn sql_query(
    State(state): Shared,
    headers: HeaderMap,
    Body(body): Body<SqlRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let params = body
        .params
        .iter()
        .enumerate()
        .map(|(i, v)| json_param(i + 1, v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(QueryError::from)?;
    let mut session = Session::default();
    for (name, value) in &body.settings {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        session.set(name, &text).map_err(QueryError::from)?;
    }
    let may_write = state.auth.is_open()
        || super::bearer(&headers)
            .and_then(|key| state.auth.role_of_key(key))
            .is_some_and(|role| role.may_write());
    let access = if may_write {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
    let outcome = state
        .query
        .run_sql(&body.query, params, &mut session, access)
        .await?;
    // JSON answers whole: the rows are collected here.
    let output = outcome.into_output().await?;
    state.metrics.search_latency.observe(started.elapsed());
    answer(&headers, &output)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DslRequest {
    query: String,
    #[serde(default)]
    params: BTreeMap<String, Vec<f64>>,
}

pub async fn dsl_query(
    State(state): Shared,
    headers: HeaderMap,
    Body(body): Body<DslRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let output = run_dsl(&state, &body.query, &body.params).await?;
    state.metrics.search_latency.observe(started.elapsed());
    answer(&headers, &output)
}

async fn run_dsl(
    state: &Arc<AppState>,
    query: &str,
    params: &BTreeMap<String, Vec<f64>>,
) -> Result<QueryOutput, ApiError> {
    // JSON numbers are doubles; narrowed to f32 as every vector input is.
    let params: BTreeMap<String, Vec<f32>> = params
        .iter()
        .map(|(name, v)| (name.clone(), v.iter().map(|&x| x as f32).collect()))
        .collect();
    valori_query::dsl::run(&state.query, query, &params)
        .await
        .map_err(|e| match e {
            DslError::Query(q) => ApiError::from(q),
            e if e.is_user_error() => ApiError::bad_request(e.to_string()),
            e => ApiError::internal(e.to_string()),
        })
}

/// A search with a DSL `filter`: the same query through the DSL.
#[allow(clippy::too_many_arguments)]
pub async fn filtered_search(
    state: &Arc<AppState>,
    collection: CollectionName,
    vector: Vec<f64>,
    k: usize,
    tag: Option<u64>,
    filter: String,
    ef: Option<usize>,
    exact: bool,
) -> Result<axum::Json<Value>, ApiError> {
    let mut text = format!("FROM {collection} NEAREST $q K {k} WHERE ({filter})");
    if let Some(tag) = tag {
        text.push_str(&format!(" AND tag = {tag}"));
    }
    if let Some(ef) = ef {
        text.push_str(&format!(" EF {ef}"));
    }
    if exact {
        text.push_str(" EXACT");
    }
    let params = BTreeMap::from([("q".to_owned(), vector)]);
    let output = run_dsl(state, &text, &params).await?;
    let (_, rows) = to_json(&output);
    let hits: Vec<Value> = rows
        .into_iter()
        .map(|row| {
            let mut hit = Map::new();
            for (field, value) in output.schema.fields().iter().zip(row) {
                hit.insert(field.name().clone(), value);
            }
            Value::Object(hit)
        })
        .collect();
    Ok(axum::Json(json!({ "hits": hits })))
}

/// JSON rows, or an Arrow IPC stream when the client accepts one.
fn answer(headers: &HeaderMap, output: &QueryOutput) -> Result<Response, ApiError> {
    let wants_arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(ARROW_STREAM));
    if wants_arrow {
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::try_new(&mut bytes, &output.schema)
            .map_err(|e| ApiError::internal(format!("arrow stream: {e}")))?;
        for batch in &output.batches {
            writer
                .write(batch)
                .map_err(|e| ApiError::internal(format!("arrow stream: {e}")))?;
        }
        writer
            .finish()
            .map_err(|e| ApiError::internal(format!("arrow stream: {e}")))?;
        drop(writer);
        return Ok(([(header::CONTENT_TYPE, ARROW_STREAM)], bytes).into_response());
    }
    let (columns, rows) = to_json(output);
    Ok(axum::Json(json!({ "columns": columns, "rows": rows })).into_response())
}

/// Column descriptions and rows of a query result as JSON.
pub fn to_json(output: &QueryOutput) -> (Vec<Value>, Vec<Vec<Value>>) {
    let columns = output
        .schema
        .fields()
        .iter()
        .map(|f| json!({ "name": f.name(), "type": f.data_type().to_string() }))
        .collect();
    let mut rows = Vec::new();
    for batch in &output.batches {
        let first = rows.len();
        rows.extend((0..batch.num_rows()).map(|_| Vec::with_capacity(batch.num_columns())));
        for (field, column) in output.schema.fields().iter().zip(batch.columns()) {
            let is_metadata = field.name() == "metadata";
            for (i, row) in rows[first..].iter_mut().enumerate() {
                row.push(cell(column, i, is_metadata));
            }
        }
    }
    (columns, rows)
}

fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// One value of `array` as JSON: numbers, strings, booleans and lists as
/// themselves, binary metadata as its JSON value, other binary as base64,
/// anything else in Arrow's display form.
fn cell(array: &ArrayRef, i: usize, is_metadata: bool) -> Value {
    if array.is_null(i) || *array.data_type() == DataType::Null {
        return Value::Null;
    }
    let binary = |bytes: &[u8]| {
        if is_metadata && let Ok(value) = metadata::to_value(bytes) {
            return value;
        }
        Value::String(base64(bytes))
    };
    match array.data_type() {
        DataType::Boolean => array
            .as_any()
            .downcast_ref::<BooleanArray>()
            .map_or(Value::Null, |a| Value::Bool(a.value(i))),
        DataType::Int8 => json!(array.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => json!(array.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => json!(array.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => json!(array.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => json!(array.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => json!(array.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => json!(array.as_primitive::<UInt64Type>().value(i)),
        DataType::Float32 => number(f64::from(array.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => number(array.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => array
            .as_any()
            .downcast_ref::<StringArray>()
            .map_or(Value::Null, |a| Value::String(a.value(i).to_owned())),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(i).to_owned()),
        DataType::Utf8View => Value::String(array.as_string_view().value(i).to_owned()),
        DataType::Binary => array
            .as_any()
            .downcast_ref::<BinaryArray>()
            .map_or(Value::Null, |a| binary(a.value(i))),
        DataType::LargeBinary => array
            .as_any()
            .downcast_ref::<LargeBinaryArray>()
            .map_or(Value::Null, |a| binary(a.value(i))),
        DataType::BinaryView => binary(array.as_binary_view().value(i)),
        DataType::List(_) => list(&array.as_list::<i32>().value(i)),
        DataType::LargeList(_) => list(&array.as_list::<i64>().value(i)),
        DataType::FixedSizeList(_, _) => list(&array.as_fixed_size_list().value(i)),
        _ => match ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()) {
            Ok(f) => Value::String(f.value(i).to_string()),
            Err(_) => Value::Null,
        },
    }
}

fn list(values: &ArrayRef) -> Value {
    Value::Array((0..values.len()).map(|i| cell(values, i, false)).collect())
}
