//! Statements over the Postgres protocol.
//!
//! Each statement is first classified ([`classify`]): transaction control,
//! `SET`/`RESET`/`SHOW`, a write ([`valori_query::write`]), `COPY … FROM
//! STDIN`, a client catalog query ([`super::catalog`]) or a query for
//! DataFusion. At Parse time a query is planned (with its placeholders):
//! the parameter types come from DataFusion's inference and the result
//! columns from the plan's schema, which Describe reports. At Execute the
//! parameters become SQL literals ([`super::types::param_literal`]) in
//! place of `$n`, pgvector's operators are rewritten
//! ([`valori_query::pgvector::rewrite`]) and the statement runs through
//! [`QueryEngine::execute_with`] with the session's search settings and
//! under its `statement_timeout`.
//!
//! Every statement is its own durable transaction: `BEGIN`, `COMMIT`,
//! `ROLLBACK`, `SAVEPOINT` and `RELEASE` are answered so that drivers work,
//! but a write is durable when its statement completes and `ROLLBACK`
//! does not undo it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::{Sink, SinkExt, stream};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, METADATA_USER, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::{Parse, ParseComplete};
use pgwire::messages::response::NoticeResponse;
use tokio::sync::RwLock;
use valori_core::limits;
use valori_query::datafusion::arrow::array::{Array, ArrayRef};
use valori_query::datafusion::arrow::compute::cast;
use valori_query::datafusion::arrow::datatypes::DataType;
use valori_query::datafusion::common::Result as DfResult;
use valori_query::datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use valori_query::datafusion::logical_expr::{Expr, LogicalPlan};
use valori_query::functions::DistanceFunction;
use valori_query::settings::SearchSettings;
use valori_query::write::{self, Column, CopyFormat, WriteStatement};
use valori_query::{QueryEngine, QueryOutput, pgvector, sql_text};

use super::catalog::{self, Canned};
use super::error::{PgError, SqlState};
use super::types::{self, VECTOR_ARRAY_OID, VECTOR_OID, param_literal, pg_type};
use crate::auth::{Auth, Role};

/// Longest SQL text accepted, in bytes.
pub const SQL_BYTES_MAX: usize = limits::SQL_BYTES_MAX as usize;

/// What kind of statement a text is.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Empty,
    Begin,
    Commit,
    Rollback,
    /// Accepted and ignored, answered with this command tag.
    Noop(String),
    Set {
        name: String,
        value: String,
    },
    Reset(String),
    Show(String),
    Write,
    Copy,
    Catalog(Canned),
    Query,
}

/// A parsed statement: its kind, its parameter types and its result
/// columns.
#[derive(Debug)]
pub struct Prepared {
    pub sql: String,
    pub kind: Kind,
    pub params: Vec<Type>,
    pub fields: Vec<(String, Type)>,
}

/// Per-connection state.
#[derive(Debug, Default)]
struct Session {
    search: SearchSettings,
    statement_timeout: Option<Duration>,
    settings: BTreeMap<String, String>,
    copy: Option<PendingCopy>,
}

/// A `COPY … FROM STDIN` receiving data.
#[derive(Debug)]
struct PendingCopy {
    table: String,
    columns: Vec<Column>,
    format: CopyFormat,
    data: Vec<u8>,
    overflow: bool,
}

/// The connection's session, created at its first statement from the
/// startup parameters: settings given directly (`statement_timeout`,
/// `valori.ef_search`, `valori.exact`, as asyncpg's `server_settings`
/// sends them) and in `options` (`-c name=value` or `--name=value`, as
/// libpq's `PGOPTIONS`). A bad value there is ignored, with a log line.
fn session<C: ClientInfo + ?Sized>(client: &C) -> Arc<Mutex<Session>> {
    client.session_extensions().get_or_insert_with(|| {
        let mut session = Session::default();
        let metadata = client.metadata();
        let mut given: Vec<(String, String)> =
            ["statement_timeout", "valori.ef_search", "valori.exact"]
                .iter()
                .filter_map(|k| metadata.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect();
        if let Some(options) = metadata.get("options") {
            given.extend(startup_options(options));
        }
        for (name, value) in given {
            if let Err(e) = apply_set(&mut session, &name.to_ascii_lowercase(), &value) {
                tracing::info!("ignoring startup setting {name}: {e}");
            }
        }
        Mutex::new(session)
    })
}

/// `name=value` pairs of a startup `options` string.
fn startup_options(options: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut tokens = options.split_whitespace();
    while let Some(token) = tokens.next() {
        let pair = if token == "-c" {
            tokens.next()
        } else {
            token
                .strip_prefix("-c")
                .or_else(|| token.strip_prefix("--"))
        };
        if let Some((name, value)) = pair.and_then(|p| p.split_once('=')) {
            out.push((name.replace('-', "_"), value.to_owned()));
        }
    }
    out
}

fn lock(session: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    // A panic while holding the lock cannot leave a Session half-updated
    // in a way that matters: every field is replaced whole.
    session
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Characters between the words [`words`] reads.
fn is_word_separator(c: char) -> bool {
    c.is_whitespace() || c == ';' || c == '('
}

/// The first words of a statement, lowercased.
fn words(sql: &str, n: usize) -> Vec<String> {
    sql.split(is_word_separator)
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The text after the first word [`words`] reads (`SET`, `SHOW`). The
/// word is found with the same separators, any Unicode whitespace among
/// them, and the text is cut where it ends, never at a byte count that
/// could fall inside a multi-byte character.
fn after_first_word(sql: &str) -> &str {
    let start = sql.find(|c| !is_word_separator(c)).unwrap_or(sql.len());
    let rest = &sql[start..];
    let end = rest.find(is_word_separator).unwrap_or(rest.len());
    &rest[end..]
}

/// `text` split after its first whitespace-separated word, and the rest
/// with its leading whitespace removed.
fn split_word(text: &str) -> (&str, &str) {
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    (&text[..end], text[end..].trim_start())
}

/// `SET [SESSION | LOCAL] name {= | TO} value`.
fn parse_set(sql: &str) -> Result<Kind, PgError> {
    let rest = after_first_word(sql).trim_start();
    let (first, tail) = split_word(rest);
    let rest = if (first.eq_ignore_ascii_case("session")
        && !split_word(tail).0.eq_ignore_ascii_case("characteristics"))
        || first.eq_ignore_ascii_case("local")
    {
        tail
    } else {
        rest
    };
    let lower = rest.to_ascii_lowercase();
    if lower.starts_with("transaction") || lower.starts_with("session characteristics") {
        return Ok(Kind::Noop("SET".into()));
    }
    if let Some(zone) = lower.strip_prefix("time zone") {
        return Ok(Kind::Set {
            name: "timezone".into(),
            value: unquote(zone.trim()),
        });
    }
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(rest.len());
    let name = rest[..end].trim_matches('"').to_ascii_lowercase();
    let value = rest[end..].trim_start();
    let value = if let Some(v) = value.strip_prefix('=') {
        v
    } else if value.get(..2).is_some_and(|w| w.eq_ignore_ascii_case("to")) {
        value.get(2..).unwrap_or_default()
    } else {
        return Err(PgError::new(
            SqlState::SyntaxError,
            format!("syntax error in SET: expected SET {name} = value"),
        ));
    };
    Ok(Kind::Set {
        name,
        value: unquote(value.trim()),
    })
}

fn unquote(value: &str) -> String {
    let value = value.trim().trim_end_matches(';').trim();
    if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.replace("''", "'");
    }
    value.to_owned()
}

/// Classifies one statement (see [`Kind`]).
pub fn classify(sql: &str) -> Result<Kind, PgError> {
    if sql.len() > SQL_BYTES_MAX {
        return Err(PgError::new(
            SqlState::ProgramLimitExceeded,
            format!(
                "statement of {} bytes exceeds {SQL_BYTES_MAX} bytes",
                sql.len()
            ),
        ));
    }
    // Every later step (classification, the write parser, the catalog,
    // planning) parses the text; its shape is bounded before any of them.
    sql_text::check_expression_bounds(sql)
        .map_err(|e| PgError::from(valori_query::QueryError::from(e)))?;
    if sql_text::is_blank(sql) {
        return Ok(Kind::Empty);
    }
    let w = words(sql_text::strip_leading_comments(sql), 3);
    let first = w.first().map(String::as_str).unwrap_or_default();
    let second = w.get(1).map(String::as_str).unwrap_or_default();
    Ok(match first {
        "begin" => Kind::Begin,
        "start" if second == "transaction" => Kind::Begin,
        "commit" | "end" => Kind::Commit,
        "rollback" | "abort" => {
            if w.iter().any(|x| x == "to") {
                Kind::Noop("ROLLBACK".into())
            } else {
                Kind::Rollback
            }
        }
        "savepoint" => Kind::Noop("SAVEPOINT".into()),
        "release" => Kind::Noop("RELEASE".into()),
        "discard" => Kind::Noop("DISCARD ALL".into()),
        "deallocate" => Kind::Noop("DEALLOCATE".into()),
        "listen" | "unlisten" => Kind::Noop(first.to_ascii_uppercase()),
        // pgvector's setup step: the vector type is built in.
        "create" if second == "extension" => {
            let name = w.get(2).map(String::as_str).unwrap_or_default();
            let name = if name == "if" {
                words(sql, 6).get(5).cloned().unwrap_or_default()
            } else {
                name.to_owned()
            };
            if name.trim_matches('"') != "vector" {
                return Err(PgError::new(
                    SqlState::FeatureNotSupported,
                    format!("extension {name} is not available; vector is built in"),
                ));
            }
            Kind::Noop("CREATE EXTENSION".into())
        }
        "set" => parse_set(sql_text::strip_leading_comments(sql))?,
        "reset" => Kind::Reset(second.trim_matches('"').to_owned()),
        "show" => Kind::Show(
            after_first_word(sql_text::strip_leading_comments(sql))
                .trim()
                .trim_end_matches(';')
                .trim()
                .trim_matches('"')
                .to_ascii_lowercase(),
        ),
        _ => match write::parse(sql).map_err(PgError::from)? {
            Some(WriteStatement::CopyFrom { .. }) => Kind::Copy,
            Some(_) => Kind::Write,
            None => match catalog::intercept(sql) {
                Some(canned) => Kind::Catalog(canned),
                None => Kind::Query,
            },
        },
    })
}

/// The Postgres type of a write's parameter column.
fn column_type(column: Column) -> Type {
    match column {
        Column::Id | Column::Tag => Type::INT8,
        Column::Vec => types::vector_type(),
        Column::Metadata => Type::TEXT,
    }
}

/// Classifies and, for queries, plans `sql`: the statement of a Parse.
pub async fn prepare(query: &QueryEngine, sql: &str) -> Result<Prepared, PgError> {
    let mut kind = classify(sql)?;
    let count = sql_text::placeholders(sql);
    let mut params = vec![Type::TEXT; count];
    let mut fields = Vec::new();
    match &kind {
        Kind::Write | Kind::Copy => {
            if let Some(statement) = write::parse(sql).map_err(PgError::from)? {
                for (n, column) in statement.parameter_columns() {
                    if let Some(slot) = params.get_mut(n.wrapping_sub(1)) {
                        *slot = column_type(column);
                    }
                }
            }
        }
        Kind::Catalog(canned) => {
            for (slot, ty) in params.iter_mut().zip(canned.parameters()) {
                *slot = ty;
            }
            fields = canned.columns();
        }
        Kind::Show(name) => fields = vec![(name.clone(), Type::TEXT)],
        Kind::Query => match plan(query, sql).await {
            Ok((inferred, columns)) => {
                for (slot, ty) in params.iter_mut().zip(inferred) {
                    if let Some(ty) = ty {
                        *slot = ty;
                    }
                }
                fields = columns;
            }
            Err(e) => match catalog::empty_answer(sql) {
                Some(canned) => {
                    fields = canned.columns();
                    kind = Kind::Catalog(canned);
                }
                None => return Err(e),
            },
        },
        _ => {}
    }
    Ok(Prepared {
        sql: sql.to_owned(),
        kind,
        params,
        fields,
    })
}

/// Plans a query with placeholders: the placeholders' types (by number)
/// and the result columns.
async fn plan(
    query: &QueryEngine,
    sql: &str,
) -> Result<(Vec<Option<Type>>, Vec<(String, Type)>), PgError> {
    let rewritten = pgvector::rewrite(sql)
        .map_err(|e| PgError::new(SqlState::SyntaxError, format!("syntax error: {e}")))?;
    // Planned (and dropped) where a deep statement's recursion fits.
    let (inferred, vectors, fields) = query
        .inspect_plan(&rewritten, |plan| {
            let fields: Vec<(String, Type)> = plan
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), pg_type(f.data_type())))
                .collect();
            Ok((
                plan.get_parameter_types()?,
                distance_arguments(plan)?,
                fields,
            ))
        })
        .await?;
    let count = sql_text::placeholders(sql);
    let params = (1..=count)
        .map(|n| {
            let id = format!("${n}");
            match inferred.get(&id).cloned().flatten() {
                Some(t) => Some(pg_type(&t)),
                // An untyped argument of a distance function is a vector.
                None => vectors.contains(&id).then(types::vector_type),
            }
        })
        .collect();
    Ok((params, fields))
}

/// The placeholders that are arguments of a distance function.
fn distance_arguments(plan: &LogicalPlan) -> DfResult<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && DistanceFunction::ALL.iter().any(|d| d.name() == f.name())
                {
                    for arg in &f.args {
                        if let Expr::Placeholder(p) = arg {
                            found.insert(p.id.clone());
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(found)
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

/// The output's rows encoded for `fields` (whose types a Describe may
/// already have announced).
fn encode_rows(output: &QueryOutput, fields: &[FieldInfo]) -> Result<Vec<DataRow>, PgError> {
    if output.schema.fields().len() != fields.len() {
        return Err(PgError::new(
            SqlState::SerializationFailure,
            "the statement's columns changed since it was prepared; prepare it again",
        ));
    }
    let mut rows = Vec::new();
    for batch in &output.batches {
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
    }
    Ok(rows)
}

fn query_response(fields: Vec<FieldInfo>, rows: Vec<DataRow>) -> Response {
    Response::Query(QueryResponse::new(
        Arc::new(fields),
        stream::iter(rows.into_iter().map(Ok)),
    ))
}

/// The text of a bound parameter for catalog answers (`None` for NULL).
fn literal_text(literal: &str) -> Option<String> {
    if literal == "NULL" {
        return None;
    }
    match literal
        .strip_prefix('\'')
        .and_then(|l| l.strip_suffix('\''))
    {
        Some(inner) => Some(inner.replace("''", "'")),
        None => Some(literal.to_owned()),
    }
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

    fn check_write<C: ClientInfo>(&self, client: &C) -> Result<(), PgError> {
        if self.role(client).may_write() {
            return Ok(());
        }
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        Err(PgError::new(
            SqlState::ReadOnlySqlTransaction,
            format!("cannot execute a write: user {user:?} has the read role"),
        ))
    }

    /// Runs one prepared statement with its parameters as SQL literals.
    async fn run<C>(
        &self,
        client: &mut C,
        prepared: &Prepared,
        literals: &[String],
        format: Option<&Format>,
    ) -> Result<Response, PgError>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let sql = if literals.is_empty() && sql_text::placeholders(&prepared.sql) == 0 {
            prepared.sql.clone()
        } else {
            // A space before each literal keeps it a token of its own
            // (after `LIKE$1`, `E'…'` would otherwise read backslashes).
            sql_text::substitute_placeholders(&prepared.sql, |n| {
                literals.get(n.wrapping_sub(1)).map(|l| format!(" {l}"))
            })
            .map_err(|n| {
                PgError::new(
                    SqlState::ProtocolViolation,
                    format!("there is no parameter ${n}: {} were bound", literals.len()),
                )
            })?
        };
        let session = session(client);
        match &prepared.kind {
            Kind::Empty => Ok(Response::EmptyQuery),
            Kind::Begin => Ok(Response::TransactionStart(Tag::new("BEGIN"))),
            Kind::Commit => Ok(Response::TransactionEnd(Tag::new("COMMIT"))),
            Kind::Rollback => Ok(Response::TransactionEnd(Tag::new("ROLLBACK"))),
            Kind::Noop(tag) => Ok(Response::Execution(Tag::new(tag))),
            Kind::Set { name, value } => {
                apply_set(&mut lock(&session), name, value)?;
                Ok(Response::Execution(Tag::new("SET")))
            }
            Kind::Reset(name) => {
                let mut s = lock(&session);
                match name.as_str() {
                    "all" => {
                        s.search = SearchSettings::default();
                        s.statement_timeout = None;
                        s.settings.clear();
                    }
                    other => apply_set(&mut s, other, "default")?,
                }
                Ok(Response::Execution(Tag::new("RESET")))
            }
            Kind::Show(name) => {
                let value = show(&lock(&session), name)?;
                let fields = field_infos(
                    &[(name.clone(), Type::TEXT)],
                    format.unwrap_or(&Format::UnifiedText),
                );
                let mut data = BytesMut::new();
                catalog::CatalogValue::Text(value).encode(&mut data, FieldFormat::Text);
                Ok(query_response(fields, vec![DataRow::new(data, 1)]))
            }
            Kind::Catalog(canned) => {
                let params: Vec<Option<String>> =
                    literals.iter().map(|l| literal_text(l)).collect();
                let rows = canned.rows(self.query.engine(), &params, &sql)?;
                let fields = field_infos(&canned.columns(), format.unwrap_or(&Format::UnifiedText));
                let rows = rows
                    .into_iter()
                    .map(|values| {
                        let mut data = BytesMut::new();
                        for (i, value) in values.iter().enumerate() {
                            let f = fields.get(i).map_or(FieldFormat::Text, FieldInfo::format);
                            value.encode(&mut data, f);
                        }
                        DataRow::new(data, values.len() as i16)
                    })
                    .collect();
                Ok(query_response(fields, rows))
            }
            Kind::Write => {
                self.check_write(client)?;
                let Some(statement) = write::parse(&sql)? else {
                    return Err(PgError::internal("a write classified as a query"));
                };
                let command = statement.command();
                let engine = Arc::clone(self.query.engine());
                // The write runs to completion even if the client cancels:
                // once submitted, an event is durable or rejected.
                let outcome =
                    tokio::task::spawn_blocking(move || write::execute(&engine, &statement))
                        .await
                        .map_err(|e| PgError::internal(format!("write task failed: {e}")))??;
                for notice in &outcome.notices {
                    send_notice(client, notice).await?;
                }
                let tag = match command {
                    "INSERT" => Tag::new("INSERT")
                        .with_oid(0)
                        .with_rows(outcome.rows as usize),
                    "DELETE" | "UPDATE" => Tag::new(command).with_rows(outcome.rows as usize),
                    other => Tag::new(other),
                };
                Ok(Response::Execution(tag))
            }
            Kind::Copy => {
                self.check_write(client)?;
                let Some(WriteStatement::CopyFrom {
                    table,
                    columns,
                    format,
                }) = write::parse(&sql)?
                else {
                    return Err(PgError::internal("a COPY classified as something else"));
                };
                let exists = self
                    .query
                    .engine()
                    .read(|state| {
                        valori_core::event::CollectionName::new(&table)
                            .ok()
                            .is_some_and(|n| state.collection(&n).is_some())
                    })
                    .map_err(|e| PgError::new(SqlState::SystemError, e.to_string()))?;
                if !exists {
                    return Err(PgError::new(
                        SqlState::UndefinedTable,
                        format!("table {table:?} does not exist"),
                    ));
                }
                let n = columns.len();
                lock(&session).copy = Some(PendingCopy {
                    table,
                    columns,
                    format,
                    data: Vec::new(),
                    overflow: false,
                });
                Ok(Response::CopyIn(CopyResponse::new(0, n, stream::empty())))
            }
            Kind::Query => {
                let rewritten = pgvector::rewrite(&sql).map_err(|e| {
                    PgError::new(SqlState::SyntaxError, format!("syntax error: {e}"))
                })?;
                let (settings, timeout) = {
                    let s = lock(&session);
                    (s.search, s.statement_timeout)
                };
                let run = self.query.execute_with(&rewritten, &settings);
                let result = match timeout {
                    Some(limit) => tokio::time::timeout(limit, run).await.map_err(|_| {
                        PgError::new(
                            SqlState::QueryCanceled,
                            "canceling statement due to statement timeout",
                        )
                    })?,
                    None => run.await,
                };
                let output = match result {
                    Ok(output) => output,
                    Err(e) => {
                        // A catalog query DataFusion cannot plan: no rows.
                        if let Some(canned) = catalog::empty_answer(&sql)
                            && prepared.fields.is_empty()
                        {
                            let fields = field_infos(&canned.columns(), &Format::UnifiedText);
                            return Ok(query_response(fields, Vec::new()));
                        }
                        return Err(e.into());
                    }
                };
                let fields = match format {
                    // Extended protocol: the columns Describe announced.
                    Some(format) => field_infos(&prepared.fields, format),
                    None => {
                        let described: Vec<(String, Type)> = output
                            .schema
                            .fields()
                            .iter()
                            .map(|f| (f.name().clone(), pg_type(f.data_type())))
                            .collect();
                        field_infos(&described, &Format::UnifiedText)
                    }
                };
                if fields.is_empty() {
                    return Ok(Response::Execution(Tag::new("OK")));
                }
                let rows = encode_rows(&output, &fields)?;
                Ok(query_response(fields, rows))
            }
        }
    }

    /// One statement of a simple query.
    async fn run_simple<C>(&self, client: &mut C, sql: &str) -> Result<Response, PgError>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let kind = classify(sql)?;
        let fields = match &kind {
            Kind::Catalog(canned) => canned.columns(),
            _ => Vec::new(),
        };
        let prepared = Prepared {
            sql: sql.to_owned(),
            kind,
            params: Vec::new(),
            fields,
        };
        self.run(client, &prepared, &[], None).await
    }
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

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "t" | "yes" | "1" => Some(true),
        "off" | "false" | "f" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// `statement_timeout` values: milliseconds, or a number with `ms`, `s`,
/// `min`; `0` turns it off.
fn parse_timeout(value: &str) -> Option<Option<Duration>> {
    let value = value.trim().to_ascii_lowercase();
    if value == "default" {
        return Some(None);
    }
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let n: u64 = value[..split].parse().ok()?;
    let ms = match value[split..].trim() {
        "" | "ms" => n,
        "s" => n.checked_mul(1000)?,
        "min" => n.checked_mul(60_000)?,
        _ => return None,
    };
    Some((ms > 0).then(|| Duration::from_millis(ms)))
}

fn invalid_setting(name: &str, value: &str, expected: &str) -> PgError {
    PgError::new(
        SqlState::InvalidParameterValue,
        format!("invalid value for parameter \"{name}\": {value:?} ({expected})"),
    )
}

fn apply_set(session: &mut Session, name: &str, value: &str) -> Result<(), PgError> {
    match name {
        "valori.ef_search" => {
            session.search.ef_search = if value.eq_ignore_ascii_case("default") {
                None
            } else {
                Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=100_000).contains(n))
                        .ok_or_else(|| invalid_setting(name, value, "an integer in 1..=100000"))?,
                )
            };
        }
        "valori.exact" => {
            session.search.exact = if value.eq_ignore_ascii_case("default") {
                false
            } else {
                parse_bool(value).ok_or_else(|| invalid_setting(name, value, "on or off"))?
            };
        }
        "statement_timeout" => {
            session.statement_timeout = parse_timeout(value).ok_or_else(|| {
                invalid_setting(name, value, "milliseconds, or a number with ms, s or min")
            })?;
        }
        _ => {
            if value.eq_ignore_ascii_case("default") {
                session.settings.remove(name);
            } else {
                check_setting_size(session, name, value)?;
                session.settings.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    Ok(())
}

/// Bounds what a client can make its session keep: the settings Valori
/// does not use are stored for `SHOW`, so their number and sizes are
/// limited ([`limits::SESSION_SETTINGS_MAX`] and the byte limits).
fn check_setting_size(session: &Session, name: &str, value: &str) -> Result<(), PgError> {
    let too_large = |message: String| Err(PgError::new(SqlState::ProgramLimitExceeded, message));
    if name.len() > limits::SESSION_SETTING_NAME_BYTES_MAX as usize {
        return too_large(format!(
            "setting name of {} bytes exceeds {} bytes (SESSION_SETTING_NAME_BYTES_MAX)",
            name.len(),
            limits::SESSION_SETTING_NAME_BYTES_MAX
        ));
    }
    if value.len() > limits::SESSION_SETTING_VALUE_BYTES_MAX as usize {
        return too_large(format!(
            "value of setting \"{name}\" has {} bytes; at most {} (SESSION_SETTING_VALUE_BYTES_MAX)",
            value.len(),
            limits::SESSION_SETTING_VALUE_BYTES_MAX
        ));
    }
    if !session.settings.contains_key(name)
        && session.settings.len() >= limits::SESSION_SETTINGS_MAX as usize
    {
        return too_large(format!(
            "a session stores at most {} settings (SESSION_SETTINGS_MAX); RESET one first",
            limits::SESSION_SETTINGS_MAX
        ));
    }
    Ok(())
}

fn show(session: &Session, name: &str) -> Result<String, PgError> {
    Ok(match name {
        "valori.ef_search" => session
            .search
            .ef_search
            .map_or_else(|| "default".to_owned(), |n| n.to_string()),
        "valori.exact" => if session.search.exact { "on" } else { "off" }.to_owned(),
        "statement_timeout" => session
            .statement_timeout
            .map_or_else(|| "0".to_owned(), |d| format!("{}ms", d.as_millis())),
        other => match session.settings.get(other) {
            Some(v) => v.clone(),
            None => catalog::server_setting(other)
                .ok_or_else(|| {
                    PgError::new(
                        SqlState::UndefinedObject,
                        format!("unrecognized configuration parameter \"{other}\""),
                    )
                })?
                .to_owned(),
        },
    })
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _running = self.gate.read().await;
        let mut responses = Vec::new();
        for statement in sql_text::split_statements(query) {
            match self.run_simple(client, statement).await {
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

/// Plans statements at Parse time.
#[derive(Debug)]
pub struct StatementParser {
    query: QueryEngine,
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Arc<Prepared>>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        Ok(Some(Arc::new(prepare(&self.query, sql).await?)))
    }

    fn get_parameter_types(&self, stmt: &Arc<Prepared>) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Arc<Prepared>,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(field_infos(
            &stmt.fields,
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
            let prepared = prepare(&self.query, &message.query).await?;
            client
                .portal_store()
                .put_statement(Arc::new(StoredStatement::new(
                    name,
                    Arc::new(prepared),
                    types,
                )));
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
        let _running = self.gate.read().await;
        let prepared = &portal.statement.statement;
        let mut literals = Vec::with_capacity(portal.parameter_len());
        for (i, value) in portal.parameters.iter().enumerate() {
            let given = portal
                .statement
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .filter(|t| *t != Type::UNKNOWN);
            let ty = given
                .or_else(|| prepared.params.get(i).cloned())
                .unwrap_or(Type::TEXT);
            let binary = format_for(&portal.parameter_format, i) == FieldFormat::Binary;
            literals.push(param_literal(value.as_deref(), binary, &ty)?);
        }
        Ok(self
            .run(
                client,
                prepared,
                &literals,
                Some(&portal.result_column_format),
            )
            .await?)
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
        let session = session(client);
        let mut s = lock(&session);
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
        let Some(copy) = lock(&session(client)).copy.take() else {
            return Err(PgError::new(SqlState::ProtocolViolation, "no COPY in progress").into());
        };
        if copy.overflow {
            return Err(PgError::new(
                SqlState::ProgramLimitExceeded,
                format!(
                    "COPY data exceeds {} bytes; split it",
                    limits::EVENT_BYTES_MAX
                ),
            )
            .into());
        }
        let rows =
            write::copy_rows(&copy.format, &copy.columns, &copy.data).map_err(PgError::from)?;
        let engine = Arc::clone(self.query.engine());
        let outcome = tokio::task::spawn_blocking(move || {
            write::execute_copy(&engine, &copy.table, &copy.columns, &rows)
        })
        .await
        .map_err(|e| PgError::internal(format!("copy task failed: {e}")))?
        .map_err(PgError::from)?;
        let tag = Tag::new("COPY").with_rows(outcome.rows as usize);
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
        lock(&session(client)).copy = None;
        PgError::new(
            SqlState::QueryCanceled,
            format!("COPY from stdin failed: {}", fail.message),
        )
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves statement classification, including SET's spellings.
    #[test]
    fn classifies_statements() {
        assert_eq!(classify("BEGIN").unwrap(), Kind::Begin);
        assert_eq!(
            classify("start transaction isolation level serializable").unwrap(),
            Kind::Begin
        );
        assert_eq!(
            classify("ROLLBACK TO SAVEPOINT a").unwrap(),
            Kind::Noop("ROLLBACK".into())
        );
        assert_eq!(classify("rollback").unwrap(), Kind::Rollback);
        assert_eq!(
            classify("SET valori.ef_search = 40").unwrap(),
            Kind::Set {
                name: "valori.ef_search".into(),
                value: "40".into()
            }
        );
        assert_eq!(
            classify("set session statement_timeout to '1s'").unwrap(),
            Kind::Set {
                name: "statement_timeout".into(),
                value: "1s".into()
            }
        );
        assert_eq!(
            classify("SHOW valori.exact").unwrap(),
            Kind::Show("valori.exact".into())
        );
        assert_eq!(classify("  -- nothing\n").unwrap(), Kind::Empty);
        assert_eq!(
            classify("INSERT INTO t (id, vec) VALUES (1, '[1]')").unwrap(),
            Kind::Write
        );
        assert_eq!(classify("COPY t FROM STDIN").unwrap(), Kind::Copy);
        assert_eq!(classify("SELECT 1").unwrap(), Kind::Query);
        assert_eq!(
            classify("/* app */ -- note\nINSERT INTO t (id, vec) VALUES (1, '[1]')").unwrap(),
            Kind::Write
        );
        assert_eq!(
            classify("-- x\nSET valori.exact = on").unwrap(),
            Kind::Set {
                name: "valori.exact".into(),
                value: "on".into()
            }
        );
        assert_eq!(
            classify("CREATE EXTENSION IF NOT EXISTS vector").unwrap(),
            Kind::Noop("CREATE EXTENSION".into())
        );
        assert_eq!(
            classify("create extension vector;").unwrap(),
            Kind::Noop("CREATE EXTENSION".into())
        );
        assert_eq!(
            classify("CREATE EXTENSION postgis").unwrap_err().code(),
            "0A000"
        );
        assert_eq!(
            classify("INSERT INTO t VALUES (").unwrap_err().code(),
            "42601"
        );
    }

    /// Proves SET and SHOW read their name and value after any Unicode
    /// whitespace, in any position, without slicing inside a character
    /// (the statement's first word used to be cut off by its byte length,
    /// which panicked when a multi-byte separator came before it).
    #[test]
    fn set_and_show_after_unicode_whitespace() {
        let spaces = [
            '\u{3000}', '\u{2003}', '\u{2028}', '\u{202f}', '\u{1680}', '\u{00a0}',
        ];
        for sp in spaces {
            let set = Kind::Set {
                name: "x".into(),
                value: "1".into(),
            };
            for sql in [
                format!("SET{sp}x{sp}={sp}1"),
                format!("{sp}SET x = 1"),
                format!("({sp}SET x = 1"),
                format!("(({sp}SET x{sp}TO{sp}1"),
                format!(";{sp}set{sp}session{sp}x = 1"),
                format!("SET LOCAL{sp}x = 1"),
            ] {
                assert_eq!(classify(&sql).unwrap(), set, "{sql:?}");
            }
            for sql in [
                format!("SHOW{sp}x"),
                format!("(({sp}SHOW x"),
                format!("({sp}show{sp}x{sp};"),
            ] {
                assert_eq!(classify(&sql).unwrap(), Kind::Show("x".into()), "{sql:?}");
            }
            // Odd spellings are refused or read, never a panic.
            for sql in [
                format!("SET{sp}"),
                format!("SET x{sp}"),
                format!("SET{sp}SESSION{sp}"),
                format!("SHOW{sp}"),
                format!("SET x{sp}T{sp}1"),
            ] {
                let _ = classify(&sql);
            }
        }
    }

    /// Proves the settings a session stores are bounded in number, name
    /// and value size, with 54000, and that a refused SET keeps the
    /// session's settings.
    #[test]
    fn stored_settings_are_bounded() {
        let mut s = Session::default();
        let max_value = "v".repeat(limits::SESSION_SETTING_VALUE_BYTES_MAX as usize);
        apply_set(&mut s, "application_name", &max_value).unwrap();
        let e = apply_set(&mut s, "application_name", &format!("{max_value}v")).unwrap_err();
        assert_eq!(e.code(), "54000");
        assert_eq!(show(&s, "application_name").unwrap(), max_value);
        let long_name = "n".repeat(limits::SESSION_SETTING_NAME_BYTES_MAX as usize + 1);
        assert_eq!(
            apply_set(&mut s, &long_name, "1").unwrap_err().code(),
            "54000"
        );
        for i in 1..limits::SESSION_SETTINGS_MAX {
            apply_set(&mut s, &format!("app.s{i}"), "1").unwrap();
        }
        assert_eq!(s.settings.len(), limits::SESSION_SETTINGS_MAX as usize);
        let e = apply_set(&mut s, "app.one_more", "1").unwrap_err();
        assert_eq!(e.code(), "54000");
        assert!(e.to_string().contains("SESSION_SETTINGS_MAX"), "{e}");
        // Changing or removing a stored setting is still allowed.
        apply_set(&mut s, "app.s1", "2").unwrap();
        apply_set(&mut s, "app.s1", "default").unwrap();
        apply_set(&mut s, "app.one_more", "1").unwrap();
    }

    /// Proves libpq-style startup options are read.
    #[test]
    fn startup_options_pairs() {
        assert_eq!(
            startup_options(
                "-c statement_timeout=100 -cvalori.exact=on --valori.ef_search=32 junk"
            ),
            vec![
                ("statement_timeout".to_owned(), "100".to_owned()),
                ("valori.exact".to_owned(), "on".to_owned()),
                ("valori.ef_search".to_owned(), "32".to_owned()),
            ]
        );
    }

    /// Proves the session settings' values and refusals.
    #[test]
    fn settings() {
        let mut s = Session::default();
        apply_set(&mut s, "valori.ef_search", "64").unwrap();
        apply_set(&mut s, "valori.exact", "on").unwrap();
        apply_set(&mut s, "statement_timeout", "2s").unwrap();
        assert_eq!(
            s.search,
            SearchSettings {
                ef_search: Some(64),
                exact: true
            }
        );
        assert_eq!(s.statement_timeout, Some(Duration::from_millis(2000)));
        assert_eq!(show(&s, "valori.ef_search").unwrap(), "64");
        assert_eq!(
            apply_set(&mut s, "valori.ef_search", "0")
                .unwrap_err()
                .code(),
            "22023"
        );
        assert_eq!(
            apply_set(&mut s, "valori.exact", "maybe")
                .unwrap_err()
                .code(),
            "22023"
        );
        apply_set(&mut s, "statement_timeout", "0").unwrap();
        assert_eq!(s.statement_timeout, None);
        assert_eq!(show(&s, "no_such_thing").unwrap_err().code(), "42704");
    }
}
