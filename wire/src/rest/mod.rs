//! The REST/JSON API (docs/rest.md), served by axum.
//!
//! Handlers translate JSON into engine events and searches; every engine
//! call that may block (a durable write waits for an fsync, a search
//! computes) runs on the blocking pool.

mod error;
mod extract;
#[doc(hidden)]
pub mod fuzzing;
mod records;
mod sql;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use valori_core::event::{CollectionName, Event, NodeId};
use valori_engine::{Engine, Receipt};
use valori_query::QueryEngine;
use valori_query::ops::{self, CollectionInfo, NewCollection};
use valori_query::settings::ReadConsistency;

pub use error::ApiError;
use extract::{Body, PathParams, QueryParams};

use crate::auth::{Auth, Role};
use crate::metrics::{EngineGauges, Metrics, RowGauges};

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub query: QueryEngine,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    /// The node of the cluster, when the server is one.
    pub cluster: Option<Arc<valori_cluster::Node>>,
    /// Where Arrow Flight listens (as bound), advertised by `GET
    /// /v1/flight` so that clients find it without being told.
    pub flight_addr: Option<std::net::SocketAddr>,
}

type Shared = State<Arc<AppState>>;
type ApiResult<T = axum::Json<Value>> = Result<T, ApiError>;

/// The router of the whole API, with authentication, metrics and a body
/// limit of `body_bytes_max` bytes.
pub fn router(state: Arc<AppState>, body_bytes_max: usize) -> Router {
    let v1 = Router::new()
        .route(
            "/collections",
            post(create_collection).get(list_collections),
        )
        .route(
            "/collections/{name}",
            get(describe_collection).delete(drop_collection),
        )
        .route("/collections/{name}/records", post(records::insert))
        .route(
            "/collections/{name}/records/batch",
            post(records::insert_batch),
        )
        .route(
            "/collections/{name}/records/{id}",
            get(records::get_record).delete(records::delete_record),
        )
        .route(
            "/collections/{name}/records/{id}/tag",
            put(records::set_tag),
        )
        .route(
            "/collections/{name}/records/{id}/metadata",
            put(records::set_metadata),
        )
        .route("/collections/{name}/search", post(records::search))
        .route("/query", post(sql::dsl_query))
        .route("/sql", post(sql::sql_query))
        .route("/graph/nodes", post(create_node))
        .route("/graph/nodes/{id}", axum::routing::delete(delete_node))
        .route("/graph/nodes/{id}/edges", get(node_edges))
        .route("/graph/edges", post(create_edge))
        .route(
            "/graph/edges/{from}/{to}/{label}",
            axum::routing::delete(delete_edge),
        )
        .route("/proof/state", get(proof_state))
        .route("/proof/event/{seq}", get(proof_event))
        .route("/proof/consistency", get(proof_consistency))
        .route("/proof/log", get(proof_log))
        .route("/snapshots", post(create_snapshot).get(list_snapshots))
        .route("/snapshots/{events}", get(download_snapshot))
        .route("/memory/upsert_vector", post(records::compat_upsert))
        .route("/memory/search_vector", post(records::compat_search))
        .route("/vectors/batch_insert", post(records::compat_batch_insert))
        .route("/openapi.json", get(openapi))
        .route("/flight", get(flight_address))
        .route("/cluster/status", get(cluster_status))
        .route("/cluster/nodes/{id}/promote", post(cluster_promote))
        .route("/cluster/nodes/{id}", axum::routing::delete(cluster_remove));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .nest("/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            read_consistency,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authorize,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), count))
        .layer(DefaultBodyLimit::max(body_bytes_max))
        // Read by the body extractor, so that a 413 names the limit.
        .layer(axum::Extension(extract::BodyBytesMax(body_bytes_max)))
        .with_state(state)
}

/// Routes anyone may call.
fn is_public(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/v1/openapi.json")
}

/// Requests that only read, whatever their method.
fn is_read(method: &Method, path: &str) -> bool {
    method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST
            && (path.ends_with("/search")
                || matches!(path, "/v1/query" | "/v1/sql" | "/v1/memory/search_vector")))
}

async fn authorize(State(state): Shared, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if is_public(path) || state.auth.is_open() {
        return next.run(req).await;
    }
    let Some(role) = bearer(req.headers()).and_then(|key| state.auth.role_of_key(key)) else {
        let mut response = ApiError::status_code(
            StatusCode::UNAUTHORIZED,
            "missing or unknown API key: send Authorization: Bearer KEY",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    };
    if role == Role::Read && !is_read(req.method(), path) {
        return ApiError::status_code(
            StatusCode::FORBIDDEN,
            "this API key has the read role and may not write",
        )
        .into_response();
    }
    next.run(req).await
}

/// The request header that asks for a read's consistency: `applied` (the
/// default: this node's applied state) or `linearizable`.
pub const READ_CONSISTENCY_HEADER: &str = "valori-read-consistency";

/// Reads of the API's data: those that take [`READ_CONSISTENCY_HEADER`].
/// The cluster's status answers from wherever the node is, and the
/// server's own routes have no data to be stale.
fn takes_read_consistency(method: &Method, path: &str) -> bool {
    is_read(method, path)
        && path.starts_with("/v1/")
        && !matches!(path, "/v1/openapi.json" | "/v1/cluster/status")
}

/// A read with `Valori-Read-Consistency: linearizable` first waits at the
/// engine's read barrier: on a node of a cluster, until it has applied
/// every write acknowledged before the request (read index confirmed by
/// the leader's majority); refused with 503 when that cannot be
/// confirmed. Any other value than `applied` or `linearizable` is a 400.
async fn read_consistency(State(state): Shared, req: Request, next: Next) -> Response {
    if !takes_read_consistency(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let Some(value) = req.headers().get(READ_CONSISTENCY_HEADER) else {
        return next.run(req).await;
    };
    match value.to_str().ok().and_then(ReadConsistency::parse) {
        None => {
            return ApiError::bad_request(format!(
                "header Valori-Read-Consistency is {value:?}; expected applied or linearizable"
            ))
            .into_response();
        }
        Some(ReadConsistency::Linearizable) => {
            if let Err(e) = state.engine.read_barrier().await {
                return ApiError::from(e).into_response();
            }
        }
        Some(ReadConsistency::Applied) => {}
    }
    next.run(req).await
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

async fn count(State(state): Shared, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let m = &state.metrics;
    m.http_requests.fetch_add(1, Ordering::Relaxed);
    if response.status().is_client_error() {
        m.http_client_errors.fetch_add(1, Ordering::Relaxed);
    } else if response.status().is_server_error() {
        m.http_server_errors.fetch_add(1, Ordering::Relaxed);
    }
    response
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}; the API is described at /v1/openapi.json",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::status_code(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
}

/// Submits `event` and waits until it is durable.
async fn submit(state: &Arc<AppState>, event: Event) -> Result<Receipt, ApiError> {
    let state = Arc::clone(state);
    blocking(move || {
        let started = Instant::now();
        let receipt = state.engine.submit(event)?;
        state.metrics.commit_latency.observe(started.elapsed());
        Ok(receipt)
    })
    .await
}

/// Runs a shared write operation on the blocking pool (it waits for
/// fsync) and records its commit latency.
async fn write<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&Engine) -> Result<T, ops::OpsError> + Send + 'static,
) -> Result<T, ApiError> {
    let engine = Arc::clone(&state.engine);
    let metrics = Arc::clone(&state.metrics);
    blocking(move || {
        let started = Instant::now();
        let done = f(&engine)?;
        metrics.commit_latency.observe(started.elapsed());
        Ok(done)
    })
    .await
}

fn receipt_json(receipt: &Receipt) -> Value {
    json!({ "seq": receipt.seq, "log_root": receipt.log_root.to_string() })
}

fn collection_name(name: &str) -> Result<CollectionName, ApiError> {
    Ok(ops::collection_name(name)?)
}

fn collection_json(c: &CollectionInfo) -> Value {
    json!({
        "name": c.name,
        "dim": c.dim,
        "metric": c.metric,
        "m": c.m,
        "ef_construction": c.ef_construction,
        "seed": c.seed,
        "rows": c.rows,
        "live": c.live,
        "indexed": c.indexed,
    })
}

async fn health() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// Where this server serves Arrow Flight: the bound address, so a
/// client can move bulk reads and writes there. An unspecified host
/// (`0.0.0.0`, `::`) means every interface: the client keeps the host it
/// reached REST on.
async fn flight_address(State(state): Shared) -> ApiResult {
    let addr = state
        .flight_addr
        .ok_or_else(|| ApiError::not_found("this server serves no Arrow Flight"))?;
    Ok(axum::Json(json!({
        "address": format!("grpc://{addr}"),
        "host": addr.ip().to_string(),
        "port": addr.port(),
    })))
}

async fn ready(State(state): Shared) -> Response {
    match state.engine.proof() {
        Ok(proof) => {
            axum::Json(json!({ "status": "ready", "log_size": proof.log_size })).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// This node's role, term, commit and applied index, lag, and the event
/// count, state hash and log root at its applied index; a server that is
/// not a node of a cluster says `standalone`.
async fn cluster_status(State(state): Shared) -> Response {
    match &state.cluster {
        Some(node) => axum::Json(node.status()).into_response(),
        None => match state.engine.proof() {
            Ok(proof) => axum::Json(json!({
                "role": "standalone",
                "events": proof.log_size,
                "state_hash": proof.hashes.state.to_string(),
                "log_root": proof.log_root.to_string(),
            }))
            .into_response(),
            Err(e) => ApiError::from(e).into_response(),
        },
    }
}

fn cluster_node(state: &AppState) -> Result<&Arc<valori_cluster::Node>, ApiError> {
    state
        .cluster
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this server is not a node of a cluster"))
}

/// Makes learner `id` a voter (on the leader; a follower names it).
async fn cluster_promote(State(state): Shared, PathParams(id): PathParams<u64>) -> ApiResult {
    let node = Arc::clone(cluster_node(&state)?);
    node.promote(id).await?;
    Ok(axum::Json(json!({ "promoted": id })))
}

/// Removes node `id` from the cluster (on the leader; a follower names it).
async fn cluster_remove(State(state): Shared, PathParams(id): PathParams<u64>) -> ApiResult {
    let node = Arc::clone(cluster_node(&state)?);
    node.remove(id).await?;
    Ok(axum::Json(json!({ "removed": id })))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(State(state): Shared) -> ApiResult<Response> {
    // A fenced replica serves no reads, but its metrics (the divergence
    // above all) still render. The state's lock is waited for on a
    // blocking thread (see `list_collections`).
    let engine = Arc::clone(&state.engine);
    let rows = blocking(move || {
        Ok(engine
            .read(|s| {
                let mut g = RowGauges {
                    collections: s.collections().len() as u64,
                    ..RowGauges::default()
                };
                for c in s.collections() {
                    g.rows += c.rows() as u64;
                    g.live_rows += c.live() as u64;
                    g.indexed_rows += c.indexed_rows() as u64;
                }
                g
            })
            .ok())
    })
    .await?;
    let gauges = EngineGauges {
        events: state.engine.log_size(),
        rows,
    };
    let cluster = state.cluster.as_ref().map(|node| node.status());
    let text = state
        .metrics
        .render(&gauges, state.engine.log_write_latency(), cluster.as_ref());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCollection {
    name: String,
    dim: u32,
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    m: Option<u16>,
    #[serde(default)]
    ef_construction: Option<u16>,
    #[serde(default)]
    seed: Option<u64>,
}

async fn create_collection(
    State(state): Shared,
    Body(body): Body<CreateCollection>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let name = body.name.clone();
    let (receipt, info) = write(&state, move |engine| {
        let receipt = ops::create_collection(
            engine,
            &NewCollection {
                name: &body.name,
                dim: body.dim,
                metric: body.metric.as_deref().unwrap_or("l2"),
                m: body.m,
                ef_construction: body.ef_construction,
                seed: body.seed,
            },
        )?;
        // Described right after its event; dropped meanwhile, it is
        // described by its name alone.
        Ok((receipt, ops::describe(engine, &body.name).ok()))
    })
    .await?;
    let mut described = info.map_or_else(|| json!({ "name": name }), |i| collection_json(&i));
    described["receipt"] = receipt_json(&receipt);
    Ok((StatusCode::CREATED, axum::Json(described)))
}

async fn list_collections(State(state): Shared) -> ApiResult {
    // Every read of the state waits on its lock, which a snapshot holds
    // while it finishes the graphs (minutes at millions of rows): on a
    // blocking thread, never on one of the few threads that accept and
    // serve every connection.
    let engine = Arc::clone(&state.engine);
    let list = blocking(move || Ok(ops::collections(&engine)?)).await?;
    let list: Vec<Value> = list.iter().map(collection_json).collect();
    Ok(axum::Json(json!({ "collections": list })))
}

async fn describe_collection(
    State(state): Shared,
    PathParams(name): PathParams<String>,
) -> ApiResult {
    let engine = Arc::clone(&state.engine);
    let info = blocking(move || Ok(ops::describe(&engine, &name)?)).await?;
    Ok(axum::Json(collection_json(&info)))
}

async fn drop_collection(State(state): Shared, PathParams(name): PathParams<String>) -> ApiResult {
    let receipt = write(&state, move |engine| ops::drop_collection(engine, &name)).await?;
    Ok(axum::Json(receipt_json(&receipt)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateNode {
    id: u64,
    #[serde(default)]
    label: u64,
}

async fn create_node(
    State(state): Shared,
    Body(body): Body<CreateNode>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let event = Event::CreateNode {
        node: NodeId(body.id),
        label: body.label,
    };
    let receipt = submit(&state, event).await?;
    Ok((StatusCode::CREATED, axum::Json(receipt_json(&receipt))))
}

async fn delete_node(State(state): Shared, PathParams(id): PathParams<u64>) -> ApiResult {
    let receipt = submit(&state, Event::DeleteNode { node: NodeId(id) }).await?;
    Ok(axum::Json(receipt_json(&receipt)))
}

async fn node_edges(State(state): Shared, PathParams(id): PathParams<u64>) -> ApiResult {
    let node = NodeId(id);
    let engine = Arc::clone(&state.engine);
    let answer = blocking(move || {
        Ok(engine.read(|s| {
            let graph = s.graph();
            let label = graph.node_label(node)?;
            let out: Vec<Value> = graph
                .edges_from(node)
                .map(|(to, label)| json!({ "to": to.0, "label": label }))
                .collect();
            let into: Vec<Value> = graph
                .edges_to(node)
                .map(|(from, label)| json!({ "from": from.0, "label": label }))
                .collect();
            Some(json!({ "node": id, "label": label, "out": out, "in": into }))
        })?)
    })
    .await?;
    answer
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("graph node {id} does not exist")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEdge {
    from: u64,
    to: u64,
    #[serde(default)]
    label: u64,
}

async fn create_edge(
    State(state): Shared,
    Body(body): Body<CreateEdge>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let event = Event::CreateEdge {
        from: NodeId(body.from),
        to: NodeId(body.to),
        label: body.label,
    };
    let receipt = submit(&state, event).await?;
    Ok((StatusCode::CREATED, axum::Json(receipt_json(&receipt))))
}

async fn delete_edge(
    State(state): Shared,
    PathParams((from, to, label)): PathParams<(u64, u64, u64)>,
) -> ApiResult {
    let event = Event::DeleteEdge {
        from: NodeId(from),
        to: NodeId(to),
        label,
    };
    let receipt = submit(&state, event).await?;
    Ok(axum::Json(receipt_json(&receipt)))
}

async fn proof_state(State(state): Shared) -> ApiResult {
    let proof = state.engine.proof()?;
    let collections: Vec<Value> = proof
        .hashes
        .collections
        .iter()
        .map(|(name, hash)| {
            let index = proof
                .hashes
                .indexes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, h)| h.to_string());
            json!({ "name": name.as_str(), "hash": hash.to_string(), "index_hash": index })
        })
        .collect();
    Ok(axum::Json(json!({
        "state_hash": proof.hashes.state.to_string(),
        "log_size": proof.log_size,
        "log_root": proof.log_root.to_string(),
        "graph_hash": proof.hashes.graph.to_string(),
        "index_hash": proof.hashes.index.to_string(),
        "collections": collections,
    })))
}

async fn proof_event(State(state): Shared, PathParams(seq): PathParams<u64>) -> ApiResult {
    let engine = Arc::clone(&state.engine);
    let (proof, entry) = blocking(move || {
        let proof = engine.inclusion_proof(seq, None)?;
        let entry = engine.read_log(seq, 1)?.into_iter().next();
        Ok((proof, entry))
    })
    .await?;
    let entry =
        entry.ok_or_else(|| ApiError::not_found(format!("event {seq} is not in the log")))?;
    Ok(axum::Json(json!({
        "seq": proof.seq,
        "size": proof.size,
        "leaf": proof.leaf.to_string(),
        "root": proof.root.to_string(),
        "path": proof.path.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "event": hex(&entry.event),
    })))
}

#[derive(Deserialize)]
struct ConsistencyParams {
    from: u64,
    to: Option<u64>,
}

async fn proof_consistency(
    State(state): Shared,
    QueryParams(params): QueryParams<ConsistencyParams>,
) -> ApiResult {
    let to = params.to.unwrap_or_else(|| state.engine.log_size());
    if params.from > to {
        return Err(ApiError::bad_request(format!(
            "from = {} is after to = {to}",
            params.from
        )));
    }
    let engine = Arc::clone(&state.engine);
    let proof = blocking(move || Ok(engine.consistency_proof(params.from, to)?)).await?;
    Ok(axum::Json(json!({
        "old_size": proof.old_size,
        "new_size": proof.new_size,
        "old_root": proof.old_root.to_string(),
        "new_root": proof.new_root.to_string(),
        "path": proof.path.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct LogParams {
    from: u64,
    limit: Option<u32>,
    size: Option<u64>,
}

/// A page of the log with an inclusion proof of each event in the log of
/// `size` events (the current size by default): what an auditor needs to
/// replay the log without trusting the server. At most
/// `LOG_PAGE_EVENTS_MAX` events, ending after `LOG_PAGE_BYTES_MAX` bytes
/// of events.
async fn proof_log(State(state): Shared, QueryParams(params): QueryParams<LogParams>) -> ApiResult {
    use valori_core::limits::{LOG_PAGE_BYTES_MAX, LOG_PAGE_EVENTS_MAX};
    let engine = Arc::clone(&state.engine);
    let page = blocking(move || {
        let current = engine.log_size();
        let size = params.size.unwrap_or(current);
        if size > current {
            return Err(ApiError::bad_request(format!(
                "size = {size} is beyond the log's {current} events"
            )));
        }
        if params.from > size {
            return Err(ApiError::bad_request(format!(
                "from = {} is after size = {size}",
                params.from
            )));
        }
        let limit = params
            .limit
            .unwrap_or(LOG_PAGE_EVENTS_MAX)
            .clamp(1, LOG_PAGE_EVENTS_MAX);
        let wanted = (size - params.from).min(u64::from(limit)) as usize;
        let root = engine.consistency_proof(size, size)?.new_root;
        let entries = if wanted == 0 {
            Vec::new()
        } else {
            engine.read_log_bounded(params.from, wanted, u64::from(LOG_PAGE_BYTES_MAX))?
        };
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries.iter().take_while(|e| e.seq < size) {
            let proof = engine.inclusion_proof(entry.seq, Some(size))?;
            events.push(json!({
                "seq": entry.seq,
                "event": hex(&entry.event),
                "path": proof.path.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }));
        }
        Ok(json!({ "size": size, "root": root.to_string(), "events": events }))
    })
    .await?;
    Ok(axum::Json(page))
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn create_snapshot(State(state): Shared) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let engine = Arc::clone(&state.engine);
    let info = blocking(move || Ok(engine.snapshot()?)).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "events": info.events,
            "file": file_name(&info.path),
            "bytes": info.bytes,
            "state_hash": info.state_hash.to_string(),
            "index_hash": info.index_hash.to_string(),
            "log_root": info.log_root.to_string(),
        })),
    ))
}

async fn list_snapshots(State(state): Shared) -> ApiResult {
    let engine = Arc::clone(&state.engine);
    let list = blocking(move || Ok(engine.snapshots()?)).await?;
    let list: Vec<Value> = list
        .iter()
        .map(|(events, path)| {
            let bytes = std::fs::metadata(path).map(|m| m.len()).ok();
            json!({ "events": events, "file": file_name(path), "bytes": bytes })
        })
        .collect();
    Ok(axum::Json(json!({ "snapshots": list })))
}

async fn download_snapshot(
    State(state): Shared,
    PathParams(events): PathParams<u64>,
) -> ApiResult<Response> {
    let engine = Arc::clone(&state.engine);
    let bytes = blocking(move || {
        let list = engine.snapshots()?;
        let Some((_, path)) = list.into_iter().find(|(e, _)| *e == events) else {
            return Err(ApiError::not_found(format!(
                "no snapshot at {events} events; GET /v1/snapshots lists them"
            )));
        };
        std::fs::read(&path).map_err(|e| ApiError::internal(format!("reading the snapshot: {e}")))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
