//! Arrow Flight and Flight SQL: `valori serve`'s gRPC front end
//! (`--flight-addr`, docs/flight.md).
//!
//! - [`Front`] is the `FlightService` that tonic serves. Plain Flight
//!   (what `pyarrow.flight` speaks) it answers itself: `ListFlights`
//!   (every collection), `GetFlightInfo`/`GetSchema` of a collection (a
//!   path descriptor) or of a SQL query (a command descriptor of SQL text),
//!   `DoGet` of a collection (ticket: its name) or of a query (ticket: the
//!   SQL text), and `Handshake` (basic auth in, bearer token out).
//!   Anything in Flight SQL's protobuf envelope, and every `DoPut` and
//!   action, goes to [`sql::SqlService`], arrow-flight's `FlightSqlService`
//!   over the statement layer; a `DoPut` with a path descriptor loads a
//!   collection or a table with declared columns ([`ingest`]).
//! - [`export`]: a collection read from one consistent state, streamed a
//!   batch at a time, with the log size, log root, state hash and
//!   collection hash of that state ([`export::Provenance`]) in the schema
//!   metadata and the `app_metadata`.
//! - [`table`]: the columns of a table with declared columns in an export.
//! - [`auth`]: the users and roles of REST and Postgres.
//! - [`FlightError`]: failures, with the engine's `Fault` and a gRPC code.

mod auth;
mod create;
mod error;
pub mod export;
mod ingest;
mod sql;
pub mod table;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::Any;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message as _;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};
use valori_core::event::CollectionName;
use valori_engine::Engine;
use valori_query::QueryEngine;
use valori_query::datafusion::arrow::array::RecordBatch;
use valori_query::datafusion::arrow::datatypes::SchemaRef;
use valori_query::ops::{self, CollectionInfo};
use valori_query::session::Session;
use valori_query::statement::{Access, Outcome};

pub use error::FlightError;
use export::{Provenance, Snapshot};

use crate::auth::{Auth, Role};

/// What the Flight front end serves from.
#[derive(Debug)]
pub struct FlightState {
    pub engine: Arc<Engine>,
    pub query: QueryEngine,
    pub auth: Arc<Auth>,
    /// Largest gRPC message a client may send (one record batch of a
    /// `DoPut`): the server's `--body-bytes-max`, as for REST bodies.
    pub message_bytes_max: usize,
}

/// Serves Flight on `listener` until `shutdown` resolves, then lets calls
/// in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<FlightState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let limit = state.message_bytes_max;
    let service = FlightServiceServer::new(Front::new(state))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The prefix of every Flight SQL message's type in its `Any` envelope.
const FLIGHT_SQL_TYPE_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

/// The Flight SQL message in `bytes`, if they are one.
fn flight_sql_message(bytes: &[u8]) -> Option<Any> {
    Any::decode(bytes)
        .ok()
        .filter(|any| any.type_url.starts_with(FLIGHT_SQL_TYPE_PREFIX))
}

/// What a plain ticket or command descriptor names: a collection (its
/// name) or a SQL statement (any text that is not a collection name — a
/// statement always has a space or a symbol no name has).
#[derive(Debug)]
enum Target {
    Collection(CollectionName),
    /// `{"collection": NAME, "deleted": true}`: the collection with its
    /// deleted rows and a `deleted` column, which is what its hash covers.
    Export(ExportTicket),
    Sql(String),
}

/// A JSON ticket of a collection export with options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportTicket {
    collection: String,
    #[serde(default)]
    deleted: bool,
}

impl Target {
    fn parse(what: &'static str, bytes: &[u8]) -> Result<Target, FlightError> {
        let text = std::str::from_utf8(bytes).map_err(|_| FlightError::BadTarget {
            what,
            given: String::from_utf8_lossy(bytes).into_owned(),
        })?;
        if let Ok(name) = CollectionName::new(text) {
            return Ok(Target::Collection(name));
        }
        // No SQL statement starts with `{`.
        if text.trim_start().starts_with('{') {
            let ticket: ExportTicket =
                serde_json::from_str(text).map_err(|e| FlightError::BadTicket {
                    what,
                    reason: e.to_string(),
                })?;
            return Ok(Target::Export(ticket));
        }
        if text.trim().is_empty() {
            return Err(FlightError::BadTarget {
                what,
                given: text.to_owned(),
            });
        }
        Ok(Target::Sql(text.to_owned()))
    }
}

/// A statement's access for a caller of `role`.
fn access(role: Role) -> Access {
    if role.may_write() {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    }
}

/// A query's result as a schema and a stream of batches.
pub struct Results {
    pub schema: SchemaRef,
    pub batches: Pin<Box<dyn Stream<Item = Result<RecordBatch, FlightError>> + Send>>,
}

impl std::fmt::Debug for Results {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Results")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// The one place that turns a statement's outcome into a stream of
/// batches for a Flight client: a query's rows as the statement produces
/// them; a write's or a command's outcome as one row of its tag and count,
/// as REST answers.
pub async fn results(outcome: Outcome) -> Result<Results, FlightError> {
    match outcome {
        Outcome::Rows(rows) => Ok(Results {
            schema: Arc::clone(rows.schema()),
            batches: Box::pin(rows.map_err(FlightError::from)),
        }),
        other => {
            let output = other.into_output().await?;
            Ok(Results {
                schema: output.schema,
                batches: Box::pin(futures::stream::iter(output.batches.into_iter().map(Ok))),
            })
        }
    }
}

/// Encodes `batches` as Flight data under `schema`, `app_metadata` on the
/// first message.
fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
    app_metadata: Vec<u8>,
) -> BoxStream<FlightData> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_metadata(app_metadata.into())
        .build(batches.map_err(arrow_flight::error::FlightError::from))
        .map_err(Status::from);
    Box::pin(stream)
}

/// The provenance of the engine's current state, read on the blocking
/// pool (asking for the state hash may re-hash dirty chunks).
async fn provenance_now(engine: &Arc<Engine>) -> Result<Provenance, FlightError> {
    let engine = Arc::clone(engine);
    tokio::task::spawn_blocking(move || Provenance::of(&engine, None)).await?
}

/// What the last message of a query's stream says of the states its rows
/// were read from: `from`, the state before the statement ran; `to`, the
/// state when its last batch had been produced; `consistent` when the two
/// are the same state, so that every scan of the statement read exactly
/// that state (the log only grows, so the same size is the same state).
fn query_provenance(from: &Provenance, to: &Provenance) -> Vec<u8> {
    let side = |p: &Provenance| {
        serde_json::json!({
            "log_size": p.log_size,
            "log_root": p.log_root,
            "state_hash": p.state_hash,
        })
    };
    serde_json::json!({
        "from": side(from),
        "to": side(to),
        "consistent": from.log_size == to.log_size,
    })
    .to_string()
    .into_bytes()
}

/// Encodes a query's results, batch by batch as the statement produces
/// them, with provenance: the first message's `app_metadata` is `start`
/// (the state before the statement ran, taken by the caller before it ran
/// anything), and the last message's is [`query_provenance`] from `start`
/// to the state once the statement's stream has ended. The last message
/// is held back until then (one message of look-ahead); a stream without
/// batches carries both in its one message.
pub fn encode_query(
    engine: Arc<Engine>,
    start: Provenance,
    results: Results,
) -> BoxStream<FlightData> {
    struct Pending {
        inner: BoxStream<FlightData>,
        held: Option<FlightData>,
        done: bool,
        engine: Arc<Engine>,
        start: Provenance,
    }
    let inner = encode(results.schema, results.batches, start.json());
    let pending = Pending {
        inner,
        held: None,
        done: false,
        engine,
        start,
    };
    Box::pin(futures::stream::unfold(pending, |mut p| async move {
        loop {
            if p.done {
                return None;
            }
            match p.inner.next().await {
                Some(Ok(message)) => {
                    if let Some(previous) = p.held.replace(message) {
                        return Some((Ok(previous), p));
                    }
                }
                Some(Err(status)) => {
                    p.done = true;
                    return Some((Err(status), p));
                }
                None => {
                    p.done = true;
                    let mut last = p.held.take()?;
                    let end = match provenance_now(&p.engine).await {
                        Ok(end) => end,
                        Err(e) => return Some((Err(Status::from(e)), p)),
                    };
                    last.app_metadata = query_provenance(&p.start, &end).into();
                    return Some((Ok(last), p));
                }
            }
        }
    }))
}

/// The plain Flight service; Flight SQL goes to [`sql::SqlService`].
#[derive(Debug)]
pub struct Front {
    state: Arc<FlightState>,
    sql: sql::SqlService,
}

impl Front {
    pub fn new(state: Arc<FlightState>) -> Front {
        Front {
            sql: sql::SqlService::new(Arc::clone(&state)),
            state,
        }
    }

    fn role<T>(&self, request: &Request<T>) -> Result<Role, FlightError> {
        auth::role(&self.state.auth, request.metadata())
    }

    /// Runs `f` on the engine on the blocking pool (it may wait for the
    /// state's read lock during a commit).
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Arc<Engine>) -> Result<R, FlightError> + Send + 'static,
    ) -> Result<R, FlightError> {
        let engine = Arc::clone(&self.state.engine);
        tokio::task::spawn_blocking(move || f(&engine)).await?
    }

    /// Every collection's `FlightInfo`, from one state.
    async fn collection_infos(&self) -> Result<Vec<FlightInfo>, FlightError> {
        self.blocking(|engine| {
            engine.read(|state| {
                let provenance = Provenance::of(engine, None)?;
                state
                    .collections()
                    .map(|c| {
                        let mut p = provenance.clone();
                        p.collection_hash = Provenance::of(engine, Some(c.name()))?.collection_hash;
                        collection_info(c, &p)
                    })
                    .collect::<Result<Vec<_>, FlightError>>()
            })?
        })
        .await
    }

    async fn one_collection_info(&self, name: CollectionName) -> Result<FlightInfo, FlightError> {
        self.blocking(move |engine| {
            engine.read(|state| {
                let c = state
                    .collection(&name)
                    .ok_or_else(|| ops::OpsError::UnknownCollection(name.clone()))?;
                let provenance = Provenance::of(engine, Some(&name))?;
                collection_info(c, &provenance)
            })?
        })
        .await
    }

    /// The `FlightInfo` of a SQL statement: prepared (not run) for its
    /// schema; its ticket is the statement's text.
    async fn sql_info(
        &self,
        sql: String,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, FlightError> {
        let prepared = self.state.query.prepare_cached(&sql).await?;
        let now = provenance_now(&self.state.engine).await?;
        let info = FlightInfo::new()
            .try_with_schema(prepared.schema())?
            .with_descriptor(descriptor)
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(sql.into_bytes())))
            .with_ordered(true)
            .with_app_metadata(now.json());
        Ok(info)
    }

    async fn info(&self, request: Request<FlightDescriptor>) -> Result<FlightInfo, FlightError> {
        let descriptor = request.get_ref().clone();
        match descriptor.r#type() {
            DescriptorType::Path => {
                let [name] = descriptor.path.as_slice() else {
                    return Err(FlightError::BadPath {
                        len: descriptor.path.len(),
                    });
                };
                let name = ops::collection_name(name)?;
                self.one_collection_info(name).await
            }
            _ => match Target::parse("command", &descriptor.cmd)? {
                Target::Collection(name) => self.one_collection_info(name).await,
                Target::Export(ticket) => {
                    let name = ops::collection_name(&ticket.collection)?;
                    self.one_collection_info(name).await
                }
                Target::Sql(sql) => self.sql_info(sql, descriptor).await,
            },
        }
    }

    /// DoGet of a plain ticket.
    async fn get(&self, role: Role, ticket: &[u8]) -> Result<BoxStream<FlightData>, FlightError> {
        match Target::parse("ticket", ticket)? {
            Target::Collection(name) => self.export(name, false).await,
            Target::Export(ticket) => {
                let name = ops::collection_name(&ticket.collection)?;
                self.export(name, ticket.deleted).await
            }
            Target::Sql(sql) => {
                let start = provenance_now(&self.state.engine).await?;
                let results = self.run_sql(&sql, role).await?;
                Ok(encode_query(Arc::clone(&self.state.engine), start, results))
            }
        }
    }

    /// A whole collection (with its deleted rows when `deleted`), read
    /// from one state and streamed.
    async fn export(
        &self,
        name: CollectionName,
        deleted: bool,
    ) -> Result<BoxStream<FlightData>, FlightError> {
        let snapshot = self
            .blocking(move |engine| Snapshot::take(engine, name, deleted))
            .await?;
        let schema = snapshot.schema.clone();
        let metadata = snapshot.provenance.json();
        Ok(encode(schema, snapshot.stream(), metadata))
    }

    /// Runs a statement through the statement layer, as REST's `/v1/sql`
    /// does: in a session of its own, with the caller's access.
    async fn run_sql(&self, sql: &str, role: Role) -> Result<Results, FlightError> {
        let mut session = Session::default();
        let outcome = self
            .state
            .query
            .run_sql(sql, Vec::new(), &mut session, access(role))
            .await?;
        results(outcome).await
    }
}

/// A collection's `FlightInfo`: path descriptor, ticket, schema with
/// provenance, live rows, provenance as `app_metadata`.
fn collection_info(
    collection: &valori_core::state::Collection,
    provenance: &Provenance,
) -> Result<FlightInfo, FlightError> {
    let c = CollectionInfo::of(collection);
    let schema = export::schema(collection, provenance, false);
    Ok(FlightInfo::new()
        .try_with_schema(&schema)?
        .with_descriptor(FlightDescriptor::new_path(vec![c.name.clone()]))
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(c.name.clone().into_bytes())))
        .with_total_records(i64::try_from(c.live).unwrap_or(i64::MAX))
        .with_ordered(true)
        .with_app_metadata(provenance.json()))
}

#[tonic::async_trait]
impl FlightService for Front {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;
    type DoExchangeStream = BoxStream<FlightData>;

    /// Checks the credentials of the call (basic or bearer) and answers
    /// with the bearer token to send from then on: the user's key.
    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let (_, key) = auth::credentials(&self.state.auth, request.metadata())?;
        let token = key.unwrap_or_default();
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into_bytes().into(),
        };
        let mut response: Response<Self::HandshakeStream> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if !token.is_empty() {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::invalid_argument("the key is not a valid header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.role(&request)?;
        let infos = self.collection_infos().await?;
        Ok(Response::new(Box::pin(futures::stream::iter(
            infos.into_iter().map(Ok),
        ))))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.role(&request)?;
        if flight_sql_message(&request.get_ref().cmd).is_some() {
            return self.sql.get_flight_info(request).await;
        }
        Ok(Response::new(self.info(request).await?))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented(
            "PollFlightInfo: every query answers at once; use GetFlightInfo",
        ))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.role(&request)?;
        let info = match flight_sql_message(&request.get_ref().cmd) {
            // A statement's schema comes from preparing it: asking for
            // its `FlightInfo` would run a write.
            Some(any) => match self.sql.statement_schema(any).await? {
                Some(schema) => {
                    return Ok(Response::new(SchemaResult {
                        schema: sql::ipc_schema(&schema)?,
                    }));
                }
                None => self.sql.get_flight_info(request).await?.into_inner(),
            },
            None => self.info(request).await?,
        };
        Ok(Response::new(SchemaResult {
            schema: info.schema,
        }))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let role = self.role(&request)?;
        if flight_sql_message(&request.get_ref().ticket).is_some() {
            return self.sql.do_get(request).await;
        }
        let stream = self.get(role, &request.get_ref().ticket).await?;
        Ok(Response::new(stream))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.role(&request)?;
        self.sql.do_put(request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        self.role(&request)?;
        self.sql.do_action(request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.role(&request)?;
        self.sql.list_actions(request).await
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented(
            "DoExchange: use DoGet to read and DoPut to load",
        ))
    }
}

/// The JSON `app_metadata` of a `PutResult`: the rows written, the
/// first id (the ids are consecutive from it when the stream named none)
/// and the event's place in the log.
fn put_result(inserted: &ops::Inserted) -> PutResult {
    let body = serde_json::json!({
        "rows": inserted.ids.len(),
        "first_id": inserted.ids.first(),
        "seq": inserted.receipt.seq,
        "log_root": inserted.receipt.log_root.to_string(),
    });
    PutResult {
        app_metadata: body.to_string().into_bytes().into(),
    }
}
