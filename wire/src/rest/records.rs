//! Records of a collection: insert, batch insert, read, delete, tag and
//! metadata updates, and search. Checks, conversions and the events
//! themselves are the shared operations of `valori_query::ops`, the same
//! that Python calls; this module only reads JSON and writes it.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use valori_core::event::{CollectionName, Event, RecordId};
use valori_core::q16;
use valori_query::metadata;
use valori_query::ops::{self, BatchColumns, Inserted, Rows, SearchSpec, VectorOrigin};

use super::error::ApiError;
use super::extract::{Body, PathParams};
use super::{ApiResult, AppState, Shared, blocking, collection_name, receipt_json, submit, write};

/// A JSON vector as Q16.16, naming the vector (`origin`) and the first
/// component that cannot be one. JSON numbers are doubles; they are
/// narrowed to f32 first, exactly as the SQL functions and the Python
/// client do, then quantized.
pub fn quantize(values: &[f64], origin: VectorOrigin) -> Result<Vec<i32>, ApiError> {
    let mut out = Vec::with_capacity(values.len());
    ops::quantize_f64(values.iter().copied(), origin, &mut out)?;
    Ok(out)
}

fn metadata_bytes(value: Option<&Value>) -> Vec<u8> {
    value.map_or_else(Vec::new, metadata::to_bytes)
}

/// Stored metadata as a response's `metadata` (and `metadata_base64` for
/// bytes that are not JSON).
fn put_metadata(hit: &mut Value, bytes: &[u8]) {
    match metadata::to_value(bytes) {
        Ok(value) => hit["metadata"] = value,
        Err(raw) => {
            hit["metadata"] = Value::Null;
            hit["metadata_base64"] = Value::String(base64(raw));
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Insert {
    #[serde(default)]
    id: Option<u64>,
    vector: Vec<f64>,
    #[serde(default)]
    tag: u64,
    #[serde(default)]
    metadata: Option<Value>,
}

async fn insert_into(
    state: &Arc<AppState>,
    collection: CollectionName,
    body: Insert,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let origin = body.id.map_or(VectorOrigin::Single, VectorOrigin::Record);
    let vector = quantize(&body.vector, origin)?;
    let metadata = metadata_bytes(body.metadata.as_ref());
    let (id, tag) = (body.id, body.tag);
    let Inserted { ids, receipt } = write(state, move |engine| {
        ops::insert(engine, collection, vector, id, tag, metadata)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": ids.first(),
            "seq": receipt.seq,
            "log_root": receipt.log_root.to_string(),
        })),
    ))
}

pub async fn insert(
    State(state): Shared,
    PathParams(name): PathParams<String>,
    Body(body): Body<Insert>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    insert_into(&state, collection_name(&name)?, body).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsertBatch {
    #[serde(default)]
    ids: Option<Vec<u64>>,
    vectors: Vec<Vec<f64>>,
    #[serde(default)]
    tags: Option<Vec<u64>>,
    #[serde(default)]
    metadata: Option<Vec<Value>>,
}

async fn insert_batch_into(
    state: &Arc<AppState>,
    collection: CollectionName,
    body: InsertBatch,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let mut rows = Rows::new();
    for v in &body.vectors {
        rows.push_f64(v.iter().copied())?;
    }
    let columns = BatchColumns {
        ids: body.ids,
        tags: body.tags,
        metadata: body
            .metadata
            .map(|values| values.iter().map(|v| metadata_bytes(Some(v))).collect()),
    };
    let Inserted { ids, receipt } = write(state, move |engine| {
        ops::insert_batch(engine, collection, rows, columns)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "ids": ids,
            "seq": receipt.seq,
            "log_root": receipt.log_root.to_string(),
        })),
    ))
}

pub async fn insert_batch(
    State(state): Shared,
    PathParams(name): PathParams<String>,
    Body(body): Body<InsertBatch>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    insert_batch_into(&state, collection_name(&name)?, body).await
}

pub async fn get_record(
    State(state): Shared,
    PathParams((name, id)): PathParams<(String, u64)>,
) -> ApiResult {
    let name = collection_name(&name)?;
    let engine = Arc::clone(&state.engine);
    let lookup = name.clone();
    // The state's lock is waited for on a blocking thread.
    let found = blocking(move || {
        Ok(engine.read(|s| {
            let c = s.collection(&lookup)?;
            let row = c.row_of(RecordId(id))? as usize;
            if c.deleted()[row] {
                return None;
            }
            let vector: Vec<f64> = c
                .vector(row)
                .iter()
                .map(|&x| q16::Q16(x).to_f64())
                .collect();
            let mut record = json!({ "id": id, "vector": vector, "tag": c.tags()[row] });
            put_metadata(&mut record, c.metadata(row));
            Some(record)
        })?)
    })
    .await?;
    found.map(axum::Json).ok_or_else(|| {
        ApiError::not_found(format!("record {id} does not exist in collection {name}"))
    })
}

pub async fn delete_record(
    State(state): Shared,
    PathParams((name, id)): PathParams<(String, u64)>,
) -> ApiResult {
    let collection = collection_name(&name)?;
    let receipt = write(&state, move |engine| ops::delete(engine, collection, id)).await?;
    Ok(axum::Json(receipt_json(&receipt)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTag {
    tag: u64,
}

pub async fn set_tag(
    State(state): Shared,
    PathParams((name, id)): PathParams<(String, u64)>,
    Body(body): Body<SetTag>,
) -> ApiResult {
    let collection = collection_name(&name)?;
    let event = Event::SetTag {
        collection,
        id: RecordId(id),
        tag: body.tag,
    };
    Ok(axum::Json(receipt_json(&submit(&state, event).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMetadata {
    metadata: Value,
}

pub async fn set_metadata(
    State(state): Shared,
    PathParams((name, id)): PathParams<(String, u64)>,
    Body(body): Body<SetMetadata>,
) -> ApiResult {
    let collection = collection_name(&name)?;
    let event = Event::SetMetadata {
        collection,
        id: RecordId(id),
        metadata: metadata::to_bytes(&body.metadata),
    };
    Ok(axum::Json(receipt_json(&submit(&state, event).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    vector: Vec<f64>,
    #[serde(default = "default_k")]
    k: u64,
    #[serde(default)]
    tag: Option<u64>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    ef: Option<u64>,
    #[serde(default)]
    exact: bool,
}

fn default_k() -> u64 {
    10
}

async fn search_in(state: &Arc<AppState>, name: CollectionName, body: Search) -> ApiResult {
    // The same checks, in the same order, with or without a filter.
    let spec = SearchSpec::new(body.k, body.ef, body.tag, body.exact)?;
    let query = quantize(&body.vector, VectorOrigin::Query)?;
    if let Some(filter) = body.filter {
        return super::sql::filtered_search(
            state,
            name,
            body.vector,
            spec.k,
            body.tag,
            filter,
            body.ef.map(|ef| ef as usize),
            body.exact,
        )
        .await;
    }
    let engine = Arc::clone(&state.engine);
    let metrics = Arc::clone(&state.metrics);
    let hits = blocking(move || {
        let started = Instant::now();
        let hits = engine.read(|s| ops::search(s, &name, &query, &spec))??;
        metrics.search_latency.observe(started.elapsed());
        Ok(hits)
    })
    .await?;
    let hits: Vec<Value> = hits
        .into_iter()
        .map(|hit| {
            let mut out = json!({ "id": hit.id, "distance": hit.distance, "tag": hit.tag });
            put_metadata(&mut out, &hit.metadata);
            out
        })
        .collect();
    Ok(axum::Json(json!({ "hits": hits })))
}

pub async fn search(
    State(state): Shared,
    PathParams(name): PathParams<String>,
    Body(body): Body<Search>,
) -> ApiResult {
    search_in(&state, collection_name(&name)?, body).await
}

/// The collection a compatibility route names, `default` if none.
fn compat_collection(body: &mut Value) -> Result<CollectionName, ApiError> {
    let name = match body.as_object_mut().and_then(|o| o.remove("collection")) {
        None | Some(Value::Null) => "default".to_owned(),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::bad_request("collection must be a string")),
    };
    collection_name(&name)
}

fn from_value<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// `POST /v1/memory/upsert_vector`: an insert (an existing id is a 409).
pub async fn compat_upsert(
    State(state): Shared,
    Body(mut body): Body<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let collection = compat_collection(&mut body)?;
    insert_into(&state, collection, from_value(body)?).await
}

/// `POST /v1/memory/search_vector`.
pub async fn compat_search(State(state): Shared, Body(mut body): Body<Value>) -> ApiResult {
    let collection = compat_collection(&mut body)?;
    search_in(&state, collection, from_value(body)?).await
}

/// `POST /v1/vectors/batch_insert`.
pub async fn compat_batch_insert(
    State(state): Shared,
    Body(mut body): Body<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let collection = compat_collection(&mut body)?;
    insert_batch_into(&state, collection, from_value(body)?).await
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        // RFC 4648 §10.
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn bad_components_are_named() {
        let err = quantize(&[0.5, f64::NAN], VectorOrigin::Query).expect_err("NaN");
        assert!(
            err.message.starts_with("query vector: component 1"),
            "{}",
            err.message
        );
        let err = quantize(&[1e6], VectorOrigin::Record(4)).expect_err("too large");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.starts_with("record 4: "), "{}", err.message);
        assert_eq!(
            quantize(&[1.0, -0.5], VectorOrigin::Single).ok(),
            Some(vec![65536, -32768])
        );
    }
}
