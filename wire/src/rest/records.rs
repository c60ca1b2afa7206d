//! Records of a collection: insert, batch insert, read, delete, tag and
//! metadata updates, and search.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use valori_core::event::{Batch, CollectionName, Event, Record, RecordId};
use valori_core::hnsw::SearchOptions;
use valori_core::limits;
use valori_core::q16;
use valori_query::functions::metric_distance;
use valori_query::metadata;

use super::error::ApiError;
use super::extract::{Body, PathParams};
use super::{ApiResult, AppState, Shared, blocking, collection_name, receipt_json, submit};

/// Largest `k` of a search.
pub const SEARCH_K_MAX: usize = 10_000;
/// Largest `ef` of a search.
pub const SEARCH_EF_MAX: usize = 10_000;

/// A JSON vector as Q16.16, naming the first component that cannot be one.
pub fn quantize(values: &[f64]) -> Result<Vec<i32>, ApiError> {
    // JSON numbers are doubles; they are narrowed to f32 first, exactly as
    // the SQL functions and the Python client do, then quantized.
    let narrowed: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    q16::quantize_vector(&narrowed).map_err(|e| ApiError::bad_request(format!("vector: {e}")))
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
    let vector = quantize(&body.vector)?;
    let metadata = metadata_bytes(body.metadata.as_ref());
    let tag = body.tag;
    let (ids, receipt) = submit_records(
        state,
        collection,
        body.id.map(|id| vec![id]),
        1,
        move |collection, ids| Event::Insert {
            collection,
            record: Record {
                id: RecordId(ids[0]),
                vector,
                tag,
                metadata,
            },
        },
    )
    .await?;
    let id = ids[0];
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": id,
            "seq": receipt.seq,
            "log_root": receipt.log_root.to_string(),
        })),
    ))
}

/// Submits the event `make` builds for `n` record ids — `given`, or the
/// next free ids of `collection` chosen by the engine — and waits until it
/// is durable; the ids and the receipt.
async fn submit_records(
    state: &Arc<AppState>,
    collection: CollectionName,
    given: Option<Vec<u64>>,
    n: usize,
    make: impl FnOnce(CollectionName, &[u64]) -> Event + Send + 'static,
) -> Result<(Vec<u64>, valori_engine::Receipt), ApiError> {
    let engine = Arc::clone(&state.engine);
    let metrics = Arc::clone(&state.metrics);
    blocking(move || {
        let started = Instant::now();
        let (ids, receipt) = match given {
            Some(ids) => {
                let receipt = engine.submit(make(collection, &ids))?;
                (ids, receipt)
            }
            None => {
                let mut chosen = Vec::new();
                let receipt = engine.submit_with_next_id(&collection.clone(), |first| {
                    chosen = (0..n as u64).map(|i| first.saturating_add(i)).collect();
                    make(collection, &chosen)
                })?;
                (chosen, receipt)
            }
        };
        metrics.commit_latency.observe(started.elapsed());
        Ok((ids, receipt))
    })
    .await
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
    let n = body.vectors.len();
    if n == 0 || n > limits::BATCH_RECORDS_MAX as usize {
        return Err(ApiError::bad_request(format!(
            "a batch holds 1..={} vectors, this one {n}",
            limits::BATCH_RECORDS_MAX
        )));
    }
    for (field, len) in [
        ("ids", body.ids.as_ref().map(Vec::len)),
        ("tags", body.tags.as_ref().map(Vec::len)),
        ("metadata", body.metadata.as_ref().map(Vec::len)),
    ] {
        if let Some(len) = len.filter(|&len| len != n) {
            return Err(ApiError::bad_request(format!(
                "{field} has {len} entries for {n} vectors"
            )));
        }
    }
    let dim = body.vectors[0].len();
    let mut vectors = Vec::with_capacity(n * dim);
    let mut narrowed = Vec::with_capacity(dim);
    for (i, v) in body.vectors.iter().enumerate() {
        if v.len() != dim {
            return Err(ApiError::bad_request(format!(
                "vectors[{i}] has {} components, vectors[0] has {dim}",
                v.len()
            )));
        }
        narrowed.clear();
        narrowed.extend(v.iter().map(|&x| x as f32));
        q16::quantize_into(&narrowed, &mut vectors)
            .map_err(|e| ApiError::bad_request(format!("vectors[{i}]: {e}")))?;
    }
    let tags = body.tags.unwrap_or_else(|| vec![0; n]);
    let metadata: Vec<Vec<u8>> = match &body.metadata {
        Some(values) => values.iter().map(|v| metadata_bytes(Some(v))).collect(),
        None => vec![Vec::new(); n],
    };
    let (ids, receipt) = submit_records(state, collection, body.ids, n, move |collection, ids| {
        let mut batch = Batch::new(dim as u32);
        for (i, &id) in ids.iter().enumerate() {
            batch.push(
                RecordId(id),
                &vectors[i * dim..(i + 1) * dim],
                tags[i],
                &metadata[i],
            );
        }
        Event::InsertBatch { collection, batch }
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
    let found = state.engine.read(|s| {
        let c = s.collection(&name)?;
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
    })?;
    found.map(axum::Json).ok_or_else(|| {
        ApiError::not_found(format!("record {id} does not exist in collection {name}"))
    })
}

pub async fn delete_record(
    State(state): Shared,
    PathParams((name, id)): PathParams<(String, u64)>,
) -> ApiResult {
    let collection = collection_name(&name)?;
    let receipt = submit(
        &state,
        Event::Delete {
            collection,
            id: RecordId(id),
        },
    )
    .await?;
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
    k: usize,
    #[serde(default)]
    tag: Option<u64>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    ef: Option<usize>,
    #[serde(default)]
    exact: bool,
}

fn default_k() -> usize {
    10
}

async fn search_in(state: &Arc<AppState>, name: CollectionName, body: Search) -> ApiResult {
    if body.k > SEARCH_K_MAX {
        return Err(ApiError::bad_request(format!(
            "k = {} exceeds {SEARCH_K_MAX}",
            body.k
        )));
    }
    if let Some(ef) = body.ef.filter(|&ef| ef == 0 || ef > SEARCH_EF_MAX) {
        return Err(ApiError::bad_request(format!(
            "ef = {ef} is outside 1..={SEARCH_EF_MAX}"
        )));
    }
    let query = quantize(&body.vector)?;
    if let Some(filter) = body.filter {
        return super::sql::filtered_search(
            state,
            name,
            body.vector,
            body.k,
            body.tag,
            filter,
            body.ef,
            body.exact,
        )
        .await;
    }
    let options = SearchOptions {
        ef: body.ef.unwrap_or(SearchOptions::default().ef).max(body.k),
        exact: body.exact,
        tag: body.tag,
    };
    let engine = Arc::clone(&state.engine);
    let metrics = Arc::clone(&state.metrics);
    let k = body.k;
    let hits = blocking(move || {
        let started = Instant::now();
        let hits = engine.read(|s| {
            let Some(c) = s.collection(&name) else {
                return Err(ApiError::not_found(format!(
                    "collection {name} does not exist"
                )));
            };
            if query.len() != c.dim() {
                return Err(ApiError::bad_request(format!(
                    "query vector has {} components, collection {name} has dimension {}",
                    query.len(),
                    c.dim()
                )));
            }
            let metric = c.config().metric;
            let found = c.search(&query, k, &options);
            Ok(found
                .into_iter()
                .map(|(distance, id)| {
                    let row = c.row_of(id).map_or(0, |r| r as usize);
                    let mut hit = json!({
                        "id": id.0,
                        "distance": metric_distance(metric, distance),
                        "tag": c.tags()[row],
                    });
                    put_metadata(&mut hit, c.metadata(row));
                    hit
                })
                .collect::<Vec<_>>())
        })??;
        metrics.search_latency.observe(started.elapsed());
        Ok(hits)
    })
    .await?;
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
        let err = quantize(&[0.5, f64::NAN]).expect_err("NaN");
        assert!(err.message.contains("component 1"), "{}", err.message);
        let err = quantize(&[1e6]).expect_err("too large");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(quantize(&[1.0, -0.5]).ok(), Some(vec![65536, -32768]));
    }
}
