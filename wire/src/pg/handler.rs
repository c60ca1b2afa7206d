//! Statements over the Postgres protocol.
//!
//! The handler keeps only the protocol: every statement is prepared and
//! run by the statement layer ([`valori_query::statement`]), the same one
//! REST and Python use. At Parse a statement is parsed and planned once
//! ([`QueryEngine::prepare_cached`]); Describe reports its parameter types
//! and result columns; at Bind each parameter is decoded from its text or
//! binary form into a typed value ([`super::types::param_value`]) and
//! Execute runs the prepared plan with those values and the connection's
//! [`Session`]. A simple query's statements are prepared and run one by
//! one the same way.
//!
//! Outside a transaction block every statement is its own durable
//! transaction. `BEGIN` opens a block in the connection's [`Session`]: its
//! writes are seen by its own statements only, `COMMIT` makes them durable
//! as one event (all or none) and `ROLLBACK` (or `ROLLBACK TO SAVEPOINT`)
//! undoes them ([`valori_query::transaction`]).

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::BytesMut;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, DEFAULT_NAME, METADATA_USER, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyOutResponse};
use pgwire::messages::data::{DataRow, NoData, ParameterDescription};
use pgwire::messages::extendedquery::Sync as SyncMessage;
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Describe, Parse, ParseComplete,
    TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{NoticeResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use tokio::sync::{RwLock, RwLockReadGuard};
use valori_core::limits;
use valori_query::datafusion::arrow::array::RecordBatch;
use valori_query::datafusion::arrow::array::{Array, ArrayRef};
use valori_query::datafusion::arrow::compute::cast;
use valori_query::datafusion::arrow::datatypes::DataType;
use valori_query::datafusion::common::ScalarValue;
use valori_query::rows::Rows;
use valori_query::session::{Session, startup_options};
use valori_query::statement::{
    Access, Command, CopyIn, CopyOut, Kind, Outcome, ParamType, Prepared,
};
use valori_query::{QueryEngine, sql_text};

use super::copy::{CopyWriter, binary_rows};
use super::error::{PgError, SqlState};
use super::types::{self, VECTOR_ARRAY_OID, VECTOR_OID, param_value, pg_type};
use crate::auth::{Auth, Role};

/// Longest SQL text accepted, in bytes.
pub const SQL_BYTES_MAX: usize = limits::SQL_BYTES_MAX as usize;

/// Per-connection state.
#[derive(Debug, Default)]
struct Connection {
    session: Session,
    copy: Option<PendingCopy>,
    /// The names of the statements Parse has stored for this connection
    /// (at most [`limits::PG_NAMED_STATEMENTS_MAX`]).
    statements: Names,
    /// The names of the portals Bind has stored (at most
    /// [`limits::PG_NAMED_PORTALS_MAX`]); they last until the
    /// transaction ends.
    portals: Names,
}

/// Names a connection has given its statements or its portals in the
/// portal store, which itself keeps no count.
#[derive(Debug, Default)]
struct Names(std::collections::BTreeSet<String>);

impl Names {
    /// Records `name`; a new one beyond `max` is refused (`what` says
    /// what is counted and how to make room).
    fn admit(&mut self, name: &str, max: u32, what: &str) -> Result<(), PgError> {
        if !self.0.contains(name) && self.0.len() >= max as usize {
            return Err(PgError::new(
                SqlState::ProgramLimitExceeded,
                format!("a connection holds at most {max} {what}"),
            ));
        }
        self.0.insert(name.to_owned());
        Ok(())
    }

    fn remove(&mut self, name: &str) -> bool {
        self.0.remove(name)
    }

    /// Every name, leaving none.
    fn take(&mut self) -> std::collections::BTreeSet<String> {
        std::mem::take(&mut self.0)
    }
}

/// A `COPY … FROM STDIN` receiving data.
#[derive(Debug)]
struct PendingCopy {
    copy: CopyIn,
    data: Vec<u8>,
    overflow: bool,
}

/// The connection's state, created at its first statement from the
/// startup parameters: settings given directly (`statement_timeout`,
/// `valori.ef_search`, `valori.exact`, as asyncpg's `server_settings`
/// sends them) and in `options` (`-c name=value` or `--name=value`, as
/// libpq's `PGOPTIONS`). A bad value there is ignored, with a log line.
/// The transaction status of a connection's session: in a block, failed
/// or not, or idle.
fn session_status(connection: &Mutex<Connection>) -> TransactionStatus {
    match &lock(connection).session.transaction {
        None => TransactionStatus::Idle,
        Some(t) if t.is_failed() => TransactionStatus::Error,
        Some(_) => TransactionStatus::Transaction,
    }
}

fn connection<C: ClientInfo + ?Sized>(client: &C) -> Arc<Mutex<Connection>> {
    client.session_extensions().get_or_insert_with(|| {
        let mut connection = Connection::default();
        let metadata = client.metadata();
        connection.session.user = metadata.get(METADATA_USER).cloned();
        let mut given: Vec<(String, String)> =
            ["statement_timeout", "valori.ef_search", "valori.exact"]
                .iter()
                .filter_map(|k| metadata.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect();
        if let Some(options) = metadata.get("options") {
            given.extend(startup_options(options));
        }
        for (name, value) in given {
            if let Err(e) = connection.session.set(&name, &value) {
                tracing::info!("ignoring startup setting {name}: {e}");
            }
        }
        Mutex::new(connection)
    })
}

/// Marks the connection's transaction block failed, if it is in one: a
/// statement that could not even be prepared fails the block as one that
/// ran and failed does.
fn block_failed<C: ClientInfo + ?Sized>(client: &C) {
    if let Some(transaction) = lock(&connection(client)).session.transaction.as_mut() {
        transaction.fail();
    }
}

fn lock(connection: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    // A panic while holding the lock cannot leave the state half-updated
    // in a way that matters: every field is replaced whole.
    connection
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `DEALLOCATE`: the connection's named statements are what it removes
/// (with `ALL`, also those `PREPARE`d in SQL, which the session keeps).
/// `None` for any other statement, and in a failed block (where the
/// statement layer refuses everything but the block's end).
fn deallocate<C>(client: &C, prepared: &Prepared) -> Option<Result<Response, PgError>>
where
    C: ClientInfo + ClientPortalStore,
    C::PortalStore: PortalStore,
{
    let Kind::Command(Command::Deallocate(target)) = prepared.kind() else {
        return None;
    };
    let connection = connection(client);
    let mut connection = lock(&connection);
    if connection
        .session
        .transaction
        .as_ref()
        .is_some_and(|t| t.is_failed())
    {
        return None;
    }
    Some(match target {
        Some(name) if connection.statements.remove(name) => {
            client.portal_store().rm_statement(name);
            Ok(Response::Execution(Tag::new("DEALLOCATE")))
        }
        // Not a protocol-level statement: one `PREPARE`d in SQL, which
        // the statement layer removes (or reports missing).
        Some(_) => return None,
        None => {
            forget_statements(client, &mut connection);
            connection.session.prepared.clear();
            Ok(Response::Execution(Tag::new("DEALLOCATE ALL")))
        }
    })
}

/// Removes every named statement of the connection (`DEALLOCATE ALL`,
/// `DISCARD ALL`).
fn forget_statements<C>(client: &C, connection: &mut Connection)
where
    C: ClientPortalStore,
    C::PortalStore: PortalStore,
{
    for name in connection.statements.take() {
        client.portal_store().rm_statement(&name);
    }
}

/// Removes the connection's named portals when no transaction is open:
/// portals last until their transaction ends, as in Postgres.
fn end_portals<C>(client: &C)
where
    C: ClientInfo + ClientPortalStore,
    C::PortalStore: PortalStore,
{
    let connection = connection(client);
    let mut connection = lock(&connection);
    if connection.session.transaction.is_none() {
        for name in connection.portals.take() {
            client.portal_store().rm_portal(&name);
        }
    }
}

/// Runs [`Handler::run`]'s answer through what a `DISCARD ALL` does over
/// Postgres besides the statement layer's part: it also removes the
/// connection's named statements.
fn after_discard<C>(client: &C, prepared: &Prepared, answer: &Result<Response, PgError>)
where
    C: ClientInfo + ClientPortalStore,
    C::PortalStore: PortalStore,
{
    if matches!(prepared.kind(), Kind::Command(Command::Discard)) && answer.is_ok() {
        let connection = connection(client);
        forget_statements(client, &mut lock(&connection));
    }
}

/// The Postgres type a statement's parameter is described with.
fn param_pg_type(ty: &ParamType) -> Type {
    match ty {
        ParamType::Vector => types::vector_type(),
        ParamType::Typed(t) => pg_type(t),
        ParamType::Column(field) => types::field_pg_type(field),
        ParamType::Unknown => Type::TEXT,
    }
}

/// A prepared statement's result columns, as Postgres types.
fn result_fields(prepared: &Prepared) -> Vec<(String, Type)> {
    prepared
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), types::field_pg_type(f)))
        .collect()
}

/// A column's format code, safely (a client may send fewer codes than
/// columns; Postgres then refuses, here the missing ones are text).
fn format_for(format: &Format, i: usize) -> FieldFormat {
    match format {
        Format::UnifiedText => FieldFormat::Text,
        Format::UnifiedBinary => FieldFormat::Binary,
        Format::Individual(codes) => codes
            .get(i)
            .map_or(FieldFormat::Text, |c| FieldFormat::from(*c)),
    }
}

fn field_infos(fields: &[(String, Type)], format: &Format) -> Vec<FieldInfo> {
    fields
        .iter()
        .enumerate()
        .map(|(i, (name, ty))| {
            FieldInfo::new(name.clone(), None, None, ty.clone(), format_for(format, i))
        })
        .collect()
}

/// The Arrow type a Postgres type's values are encoded from.
fn arrow_type(ty: &Type) -> Option<DataType> {
    Some(match *ty {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::BYTEA => DataType::Binary,
        _ => return None,
    })
}

/// A batch's rows encoded for `fields` (whose types a Describe may
/// already have announced).
fn encode_batch(batch: &RecordBatch, fields: &[FieldInfo]) -> Result<Vec<DataRow>, PgError> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(fields)
        .map(|(array, field)| {
            let ty = field.datatype();
            if pg_type(array.data_type()) == *ty || *ty == Type::TEXT {
                return Ok(Arc::clone(array));
            }
            match arrow_type(ty) {
                Some(target) => cast(array, &target).map_err(|e| {
                    PgError::new(
                        SqlState::DataException,
                        format!("column {}: {e}", field.name()),
                    )
                }),
                None => Ok(Arc::clone(array)),
            }
        })
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut data = BytesMut::with_capacity(64);
        for (array, field) in columns.iter().zip(fields) {
            let format = if *field.datatype() == Type::TEXT {
                // The binary form of text is its text.
                FieldFormat::Text
            } else {
                field.format()
            };
            types::encode_value(&mut data, array.as_ref(), row, field.datatype(), format)?;
        }
        rows.push(DataRow::new(data, fields.len() as i16));
    }
    Ok(rows)
}

/// A query's rows as they are produced, each batch encoded for `fields`
/// when it arrives: an answer larger than memory is sent while it is
/// read, never held whole.
///
/// A cancel request for the connection (`handle`) ends the rows with
/// 57014. The protocol library watches for cancel requests only while a
/// statement starts (until its first batch); once the rows are being
/// sent it no longer waits for that signal, so the stream registers for
/// it itself when it is first read.
/// `rows` as a query response; `tag` is the command tag before the row
/// count (`SELECT` for a query, `INSERT 0` for a write's `RETURNING`).
fn row_stream(
    rows: Rows,
    fields: Arc<Vec<FieldInfo>>,
    handle: Option<Arc<ConnectionHandle>>,
    tag: &str,
) -> Result<Response, PgError> {
    if rows.schema().fields().len() != fields.len() {
        return Err(PgError::new(
            SqlState::SerializationFailure,
            "the statement's columns changed since it was prepared; prepare it again",
        ));
    }
    let encoded = Arc::clone(&fields);
    let data = rows
        .map(move |batch| {
            let encoded = batch
                .map_err(PgError::from)
                .and_then(|batch| encode_batch(&batch, &encoded));
            let rows: Vec<PgWireResult<DataRow>> = match encoded {
                Ok(rows) => rows.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e.into())],
            };
            stream::iter(rows)
        })
        .flatten();
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancelled);
    let cancel = async move {
        if let Some(handle) = handle {
            // `Err`: the next statement registered in its turn; this
            // one has ended.
            if handle.start_query().await.await.is_ok() {
                flag.store(true, Ordering::Release);
                return;
            }
        }
        futures::future::pending::<()>().await;
    };
    let ended = stream::once(async move { cancelled.load(Ordering::Acquire) }).filter_map(
        |cancelled| async move {
            cancelled.then(|| {
                Err(PgError::new(
                    SqlState::QueryCanceled,
                    "canceling statement due to user request",
                )
                .into())
            })
        },
    );
    let data = data.take_until(cancel).chain(ended);
    let mut response = QueryResponse::new(fields, data);
    response.set_command_tag(tag);
    Ok(Response::Query(response))
}

/// The type a client gave for a parameter OID that Postgres's built-in
/// list does not have.
fn client_type(oid: u32) -> Option<Type> {
    match oid {
        0 => None,
        VECTOR_OID => Some(types::vector_type()),
        VECTOR_ARRAY_OID => Some(types::vector_array_type()),
        other => Type::from_oid(other),
    }
}

/// Statement handling shared by every connection.
#[derive(Debug)]
pub struct Handler {
    query: QueryEngine,
    auth: Arc<Auth>,
    gate: Arc<RwLock<()>>,
    parser: Arc<StatementParser>,
}

impl Handler {
    pub fn new(query: QueryEngine, auth: Arc<Auth>, gate: Arc<RwLock<()>>) -> Handler {
        Handler {
            parser: Arc::new(StatementParser {
                query: query.clone(),
            }),
            query,
            auth,
            gate,
        }
    }

    fn role<C: ClientInfo>(&self, client: &C) -> Role {
        if self.auth.is_open() {
            return Role::Write;
        }
        client
            .metadata()
            .get(METADATA_USER)
            .and_then(|name| self.auth.user(name))
            .map_or(Role::Read, |u| u.role)
    }

    fn access<C: ClientInfo>(&self, client: &C) -> Access {
        if self.role(client).may_write() {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        }
    }

    fn read_only_error<C: ClientInfo>(client: &C) -> PgError {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        PgError::new(
            SqlState::ReadOnlySqlTransaction,
            format!("cannot execute a write: user {user:?} has the read role"),
        )
    }

    /// Runs one prepared statement with its parameter values; `fields`
    /// are the columns a Describe announced (extended protocol), `None`
    /// for a simple query (the result's own columns). `running` is the
    /// statement's hold on the shutdown gate: a `COPY … TO STDOUT`
    /// releases it before it sends its rows, as a query's rows are sent
    /// after it, so that a client that stops reading cannot keep the
    /// server from shutting down.
    async fn run<C>(
        &self,
        client: &mut C,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
        fields: Option<&Format>,
        running: &mut Option<RwLockReadGuard<'_, ()>>,
    ) -> Result<Response, PgError>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // After an error in a transaction block only its end is taken, as
        // Postgres does: the statement layer refuses the rest and answers
        // COMMIT of a failed block as ROLLBACK.
        let connection = connection(client);
        let mut session = lock(&connection).session.clone();
        let access = self.access(client);
        let result = self.query.run(prepared, params, &mut session, access).await;
        // SET, RESET and the transaction block changed the session (an
        // error marks the block failed).
        lock(&connection).session = session;
        let outcome = match result {
            Err(valori_query::QueryError::ReadOnly) => return Err(Self::read_only_error(client)),
            other => other?,
        };
        Ok(match outcome {
            Outcome::Empty => Response::EmptyQuery,
            Outcome::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            Outcome::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
            Outcome::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
            Outcome::Done { tag, rows, notices } => {
                for notice in &notices {
                    send_notice(client, notice).await?;
                }
                let mut t = Tag::new(&tag);
                if tag == "INSERT" {
                    t = t.with_oid(0);
                }
                if let Some(rows) = rows {
                    t = t.with_rows(rows as usize);
                }
                Response::Execution(t)
            }
            Outcome::CopyIn(copy) => {
                let n = copy.width();
                let code = i8::from(copy.format.binary);
                lock(&connection).copy = Some(PendingCopy {
                    copy,
                    data: Vec::new(),
                    overflow: false,
                });
                Response::CopyIn(CopyResponse::new(code, n, stream::empty()))
            }
            Outcome::CopyOut(copy) => {
                running.take();
                copy_out(client, copy).await?
            }
            Outcome::Rows(rows) => self.rows_response(client, prepared, rows, fields, "SELECT")?,
            Outcome::Returning { tag, rows } => {
                self.rows_response(client, prepared, rows, fields, &tag)?
            }
        })
    }

    /// A statement's rows as a query response (see [`row_stream`]).
    fn rows_response<C: ClientInfo>(
        &self,
        client: &C,
        prepared: &Prepared,
        rows: Rows,
        fields: Option<&Format>,
        tag: &str,
    ) -> Result<Response, PgError> {
        let fields = match fields {
            // Extended protocol: the columns Describe announced.
            Some(format) => field_infos(&result_fields(prepared), format),
            None => {
                let described: Vec<(String, Type)> = rows
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), types::field_pg_type(f)))
                    .collect();
                field_infos(&described, &Format::UnifiedText)
            }
        };
        if fields.is_empty() {
            return Ok(Response::Execution(Tag::new("OK")));
        }
        let handle = client
            .session_extensions()
            .get::<Arc<ConnectionHandle>>()
            .map(|h| Arc::clone(&*h));
        row_stream(rows, Arc::new(fields), handle, tag)
    }

    /// One statement of a simple query; `first` when no statement of the
    /// query string came before it.
    async fn run_simple<C>(
        &self,
        client: &mut C,
        sql: &str,
        first: bool,
        running: &mut Option<RwLockReadGuard<'_, ()>>,
    ) -> Result<Response, PgError>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = lock(&connection(client)).session.clone();
        let prepared = self
            .query
            .prepare_for(&session, sql)
            .await
            .inspect_err(|_| block_failed(client))?;
        // A COPY's rows are sent while it runs, but the answers of the
        // statements before it in the same string are sent when the whole
        // string has run: they would arrive after its rows.
        if !first && matches!(prepared.kind(), Kind::CopyOut { .. }) {
            return Err(PgError::new(
                SqlState::FeatureNotSupported,
                "COPY … TO STDOUT after other statements in one query string; send it first or on its own",
            ));
        }
        if let Some(answer) = deallocate(client, &prepared) {
            return answer;
        }
        let answer = self.run(client, &prepared, Vec::new(), None, running).await;
        after_discard(client, &prepared, &answer);
        // A simple query ends the implicit transaction, and COMMIT or
        // ROLLBACK a block: either way the portals end with it.
        end_portals(client);
        answer
    }
}

/// Sends the rows of a `COPY … TO STDOUT` as they are produced, batch by
/// batch: CopyOutResponse, a CopyData per row (a binary stream's
/// signature with the first, its trailer last), CopyDone; the answer is
/// the command tag with the rows sent. An error while the rows are read
/// ends the copy with an ErrorResponse, as Postgres ends it.
async fn copy_out<C>(client: &mut C, copy: CopyOut) -> Result<Response, PgError>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
{
    let CopyOut { mut rows, format } = copy;
    let mut writer = CopyWriter::new(format, rows.schema());
    let code = writer.code();
    let columns = i16::try_from(writer.columns()).map_err(|_| {
        PgError::new(
            SqlState::ProgramLimitExceeded,
            "COPY of more than 32767 columns",
        )
    })?;
    let sent = |e: C::Error| PgError::internal(format!("sending COPY data: {e:?}"));
    client
        .feed(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            code,
            columns,
            vec![i16::from(code); writer.columns()],
        )))
        .await
        .map_err(sent)?;
    if let Some(header) = writer.header() {
        client
            .feed(PgWireBackendMessage::CopyData(CopyData::new(header)))
            .await
            .map_err(sent)?;
    }
    let mut count = 0usize;
    while let Some(batch) = rows.next().await {
        let batch = batch.map_err(PgError::from)?;
        for data in writer.rows(&batch)? {
            client
                .feed(PgWireBackendMessage::CopyData(CopyData::new(data)))
                .await
                .map_err(sent)?;
            count += 1;
        }
        // Each batch reaches the client before the next is read.
        client.flush().await.map_err(sent)?;
    }
    if let Some(last) = writer.finish() {
        client
            .feed(PgWireBackendMessage::CopyData(CopyData::new(last)))
            .await
            .map_err(sent)?;
    }
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await
        .map_err(sent)?;
    Ok(Response::Execution(Tag::new("COPY").with_rows(count)))
}

async fn send_notice<C>(client: &mut C, message: &str) -> Result<(), PgError>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
{
    let info = ErrorInfo::new("NOTICE".to_owned(), "00000".to_owned(), message.to_owned());
    client
        .feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
            info,
        )))
        .await
        .map_err(|e| PgError::internal(format!("sending a notice: {e:?}")))
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    /// Like pgwire's, but the ReadyForQuery that ends the query string
    /// carries the session's status ([`SessionStatus`]).
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let connection = connection(client);
        let mut client = SessionStatus { client, connection };
        self._on_query(&mut client, query).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut running = Some(self.gate.read().await);
        let mut responses = Vec::new();
        for statement in sql_text::split_statements(query) {
            // A COPY … TO STDOUT before this one let go of the gate.
            if running.is_none() {
                running = Some(self.gate.read().await);
            }
            match self
                .run_simple(client, statement, responses.is_empty(), &mut running)
                .await
            {
                Ok(response) => {
                    let copy = matches!(response, Response::CopyIn(_));
                    responses.push(response);
                    if copy {
                        break;
                    }
                }
                Err(e) => {
                    responses.push(Response::Error(Box::new(e.into())));
                    break;
                }
            }
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        Ok(responses)
    }
}

/// Prepares statements at Parse time.
#[derive(Debug)]
pub struct StatementParser {
    query: QueryEngine,
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Arc<Prepared>>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        // Inside a block that has written, on the block's copy of the
        // state: the statement may name a table the block created.
        let session = lock(&connection(client)).session.clone();
        Ok(Some(
            self.query
                .prepare_for(&session, sql)
                .await
                .map_err(PgError::from)?,
        ))
    }

    fn get_parameter_types(&self, stmt: &Arc<Prepared>) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params().iter().map(param_pg_type).collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Arc<Prepared>,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(field_infos(
            &result_fields(stmt),
            column_format.unwrap_or(&Format::UnifiedText),
        ))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Arc<Prepared>;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        Arc::clone(&self.parser)
    }

    /// Like pgwire's, but a statement that returns no rows is described
    /// with NoData after its parameters, as Postgres does, also when it
    /// has parameters (pgwire sends an empty RowDescription then, which
    /// drivers take for a result of no columns).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        if message.target_type != TARGET_TYPE_BYTE_STATEMENT {
            return self._on_describe(client, message).await;
        }
        let Some(Entry::Value(stmt)) = client.portal_store().get_statement(name) else {
            return self._on_describe(client, message).await;
        };
        let described = self.do_describe_statement(client, &stmt).await?;
        if !described.fields.is_empty() {
            return pgwire::api::query::send_describe_response(client, &described).await;
        }
        client
            .send(PgWireBackendMessage::ParameterDescription(
                ParameterDescription::new(described.parameters.iter().map(Type::oid).collect()),
            ))
            .await?;
        client
            .send(PgWireBackendMessage::NoData(NoData::default()))
            .await?;
        Ok(())
    }

    /// Like pgwire's, but the status it reports is the session's: in a
    /// block, failed or not (a `ROLLBACK TO SAVEPOINT` ends a block's
    /// failure, which pgwire's own tracking cannot see).
    async fn on_sync<C>(&self, client: &mut C, _message: SyncMessage) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        let status = session_status(&connection(client));
        // Portals end with their transaction, as in Postgres.
        end_portals(client);
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    /// Like pgwire's, and a named portal counts against the connection's
    /// [`limits::PG_NAMED_PORTALS_MAX`] until its transaction ends or it
    /// is closed.
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement_name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal_name = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
        if portal_name != DEFAULT_NAME {
            lock(&connection(client)).portals.admit(
                portal_name,
                limits::PG_NAMED_PORTALS_MAX,
                "named portals (PG_NAMED_PORTALS_MAX); close some or end the transaction",
            )?;
        }
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) => {
                if !message.parameters.is_empty() {
                    return Err(PgError::new(
                        SqlState::ProtocolViolation,
                        format!(
                            "bind message supplies {} parameters, but prepared statement {statement_name:?} requires 0",
                            message.parameters.len()
                        ),
                    )
                    .into());
                }
                client.portal_store().put_empty_portal(portal_name);
            }
            None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
        }
        client
            .send(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    /// Like pgwire's, and a closed statement no longer counts against the
    /// connection's named statements.
    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                lock(&connection(client)).statements.remove(name);
                client.portal_store().rm_statement(name);
            }
            TARGET_TYPE_BYTE_PORTAL => {
                lock(&connection(client)).portals.remove(name);
                client.portal_store().rm_portal(name);
            }
            _ => {}
        }
        client
            .send(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    /// Like pgwire's, but keeps the parameter types clients give for
    /// `vector` (an OID pgwire's built-in list does not know).
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        if sql_text::is_blank(&message.query) {
            client.portal_store().put_empty_statement(&name);
        } else {
            let types = message
                .type_oids
                .iter()
                .map(|oid| client_type(*oid))
                .collect();
            let session = lock(&connection(client)).session.clone();
            let prepared = self
                .query
                .prepare_for(&session, &message.query)
                .await
                .map_err(|e| {
                    block_failed(client);
                    PgError::from(e)
                })?;
            if name != DEFAULT_NAME {
                lock(&connection(client)).statements.admit(
                    &name,
                    limits::PG_NAMED_STATEMENTS_MAX,
                    "named prepared statements (PG_NAMED_STATEMENTS_MAX); close or DEALLOCATE some",
                )?;
            }
            client
                .portal_store()
                .put_statement(Arc::new(StoredStatement::new(name, prepared, types)));
        }
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Arc<Prepared>>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut running = Some(self.gate.read().await);
        let prepared = &portal.statement.statement;
        let mut values = Vec::with_capacity(portal.parameter_len());
        for (i, value) in portal.parameters.iter().enumerate() {
            let given = portal
                .statement
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .filter(|t| *t != Type::UNKNOWN);
            let ty = given
                .or_else(|| prepared.params().get(i).map(param_pg_type))
                .unwrap_or(Type::TEXT);
            let binary = format_for(&portal.parameter_format, i) == FieldFormat::Binary;
            values.push(param_value(value.as_deref(), binary, &ty)?);
        }
        if let Some(answer) = deallocate(client, prepared) {
            return Ok(answer?);
        }
        let answer = self
            .run(
                client,
                prepared,
                values,
                Some(&portal.result_column_format),
                &mut running,
            )
            .await;
        after_discard(client, prepared, &answer);
        Ok(answer?)
    }
}

#[async_trait]
impl CopyHandler for Handler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let connection = connection(client);
        let mut s = lock(&connection);
        if let Some(copy) = s.copy.as_mut() {
            if copy.data.len() + copy_data.data.len() > limits::EVENT_BYTES_MAX as usize {
                copy.overflow = true;
                copy.data = Vec::new();
            }
            if !copy.overflow {
                copy.data.extend_from_slice(&copy_data.data);
            }
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _running = self.gate.read().await;
        let mut session = lock(&connection(client)).session.clone();
        let Some(pending) = lock(&connection(client)).copy.take() else {
            return Err(PgError::new(SqlState::ProtocolViolation, "no COPY in progress").into());
        };
        if pending.overflow {
            return Err(PgError::new(
                SqlState::ProgramLimitExceeded,
                format!(
                    "COPY data exceeds {} bytes; split it",
                    limits::EVENT_BYTES_MAX
                ),
            )
            .into());
        }
        let outcome = if pending.copy.format.binary {
            let columns: Vec<(String, Type)> = pending
                .copy
                .fields
                .iter()
                .map(|f| (f.name().clone(), types::field_pg_type(f)))
                .collect();
            let data = pending.data;
            // Reading up to EVENT_BYTES_MAX bytes is work for a blocking
            // thread, not the connection's task.
            let rows = tokio::task::spawn_blocking(move || binary_rows(&data, &columns))
                .await
                .map_err(|e| PgError::internal(format!("COPY decoding failed: {e}")))??;
            self.query
                .copy_in_values(pending.copy, rows, &mut session)
                .await
        } else {
            self.query
                .copy_in(pending.copy, pending.data, &mut session)
                .await
        };
        // A failed COPY in a block marks the block failed.
        lock(&connection(client)).session = session;
        let outcome = outcome.map_err(PgError::from)?;
        let rows = match outcome {
            Outcome::Done { rows, .. } => rows.unwrap_or(0),
            _ => 0,
        };
        let tag = Tag::new("COPY").with_rows(rows as usize);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        lock(&connection(client)).copy = None;
        PgError::new(
            SqlState::QueryCanceled,
            format!("COPY from stdin failed: {}", fail.message),
        )
        .into()
    }
}

/// A client whose ReadyForQuery messages carry the session's transaction
/// status. pgwire derives a simple query's status from the answers of its
/// statements (an error in a block marks the block failed), which cannot
/// tell that a COMMIT failing with `40001` ended its block: PostgreSQL
/// answers such a COMMIT with the error and then status idle, and drivers
/// begin their next transaction from that status.
struct SessionStatus<'a, C> {
    client: &'a mut C,
    connection: Arc<Mutex<Connection>>,
}

impl<C> Sink<PgWireBackendMessage> for SessionStatus<'_, C>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin,
{
    type Error = C::Error;

    fn poll_ready(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::pin::Pin::new(&mut *self.client).poll_ready(cx)
    }

    fn start_send(
        mut self: std::pin::Pin<&mut Self>,
        item: PgWireBackendMessage,
    ) -> Result<(), Self::Error> {
        let item = match item {
            PgWireBackendMessage::ReadyForQuery(_) => {
                let status = session_status(&self.connection);
                self.client.set_transaction_status(status);
                PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(status))
            }
            other => other,
        };
        std::pin::Pin::new(&mut *self.client).start_send(item)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::pin::Pin::new(&mut *self.client).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::pin::Pin::new(&mut *self.client).poll_close(cx)
    }
}

impl<C: ClientPortalStore> ClientPortalStore for SessionStatus<'_, C> {
    type PortalStore = C::PortalStore;

    fn portal_store(&self) -> &Self::PortalStore {
        self.client.portal_store()
    }
}

impl<C: ClientInfo> ClientInfo for SessionStatus<'_, C> {
    fn socket_addr(&self) -> std::net::SocketAddr {
        self.client.socket_addr()
    }

    fn is_secure(&self) -> bool {
        self.client.is_secure()
    }

    fn protocol_version(&self) -> pgwire::messages::ProtocolVersion {
        self.client.protocol_version()
    }

    fn set_protocol_version(&mut self, version: pgwire::messages::ProtocolVersion) {
        self.client.set_protocol_version(version);
    }

    fn pid_and_secret_key(&self) -> (i32, pgwire::messages::startup::SecretKey) {
        self.client.pid_and_secret_key()
    }

    fn set_pid_and_secret_key(&mut self, pid: i32, key: pgwire::messages::startup::SecretKey) {
        self.client.set_pid_and_secret_key(pid, key);
    }

    fn state(&self) -> pgwire::api::PgWireConnectionState {
        self.client.state()
    }

    fn set_state(&mut self, state: pgwire::api::PgWireConnectionState) {
        self.client.set_state(state);
    }

    fn transaction_status(&self) -> TransactionStatus {
        self.client.transaction_status()
    }

    fn set_transaction_status(&mut self, status: TransactionStatus) {
        self.client.set_transaction_status(status);
    }

    fn metadata(&self) -> &std::collections::HashMap<String, String> {
        self.client.metadata()
    }

    fn metadata_mut(&mut self) -> &mut std::collections::HashMap<String, String> {
        self.client.metadata_mut()
    }

    fn session_extensions(&self) -> &pgwire::api::SessionExtensions {
        self.client.session_extensions()
    }

    fn sni_server_name(&self) -> Option<&str> {
        self.client.sni_server_name()
    }

    fn client_certificates<'a>(&self) -> Option<&[rustls_pki_types::CertificateDer<'a>]> {
        self.client.client_certificates()
    }
}
