//! Request bodies parsed exactly as the REST handlers parse them, for the
//! fuzz targets (crate `valori-fuzz-targets`). Not a stable API.

use serde_json::Value;

use super::error::ApiError;
use super::extract::parse_json;
use super::{CreateCollection, CreateEdge, CreateNode, records, sql};

/// The body types, in the order [`parse_body`] numbers them.
pub const BODIES: &[&str] = &[
    "create_collection",
    "create_node",
    "create_edge",
    "insert",
    "insert_batch",
    "set_tag",
    "set_metadata",
    "search",
    "sql",
    "dsl",
    "compat_upsert",
    "compat_search",
    "compat_batch_insert",
];

/// Parses `bytes` as body number `kind % BODIES.len()` (see [`BODIES`]):
/// the JSON reading of the extractor, then for the compatibility routes
/// the removal of `collection` and the typed reading of the rest.
pub fn parse_body(kind: usize, bytes: &[u8]) -> Result<(), ApiError> {
    match kind % BODIES.len() {
        0 => parse_json::<CreateCollection>(bytes).map(drop),
        1 => parse_json::<CreateNode>(bytes).map(drop),
        2 => parse_json::<CreateEdge>(bytes).map(drop),
        3 => parse_json::<records::Insert>(bytes).map(drop),
        4 => parse_json::<records::InsertBatch>(bytes).map(drop),
        5 => parse_json::<records::SetTag>(bytes).map(drop),
        6 => parse_json::<records::SetMetadata>(bytes).map(drop),
        7 => parse_json::<records::Search>(bytes).map(drop),
        8 => parse_json::<sql::SqlRequest>(bytes).map(drop),
        9 => parse_json::<sql::DslRequest>(bytes).map(drop),
        10 => compat::<records::Insert>(bytes),
        11 => compat::<records::Search>(bytes),
        _ => compat::<records::InsertBatch>(bytes),
    }
}

/// A compatibility route's body: any JSON value, whose `collection` is
/// taken out before the rest is read as `T`.
fn compat<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(), ApiError> {
    let mut body: Value = parse_json(bytes)?;
    if let Some(collection) = body.as_object_mut().and_then(|o| o.remove("collection"))
        && !(collection.is_null() || collection.is_string())
    {
        return Err(ApiError::bad_request("collection must be a string"));
    }
    serde_json::from_value::<T>(body)
        .map(drop)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
