//! Flight SQL over the statement layer, and `DoPut` into a collection
//! or a table with declared columns (through `INSERT`'s own path).
//!
//! Every statement is prepared and run by `QueryEngine::prepare` /
//! `QueryEngine::run` (the same KNN rewrite, filters, settings and errors
//! as Postgres and REST), in a session of its own, with the access of the
//! caller's role. Prepared statements (ADBC prepares every statement) are
//! kept by handle, at most `FLIGHT_PREPARED_STATEMENTS_MAX` for all
//! clients, the oldest closed first; their parameters arrive by `DoPut`
//! as one row per execution.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, Nullable,
    ProstMessageExt, Searchable, SqlInfo, TableExistsOption, TableNotExistOption,
    TicketStatementQuery, XdbcDataType,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use valori_core::event::CollectionName;
use valori_core::limits;
use valori_core::table::TableSchema;
use valori_query::datafusion::arrow::array::{Array, AsArray, RecordBatch};
use valori_query::datafusion::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Schema, SchemaRef,
};
use valori_query::datafusion::arrow::ipc::writer::IpcWriteOptions;
use valori_query::datafusion::common::ScalarValue;
use valori_query::ops;
use valori_query::session::Session;
use valori_query::statement::{Outcome, ParamType, Prepared};

use super::ingest::{Load, TableLoad};
use super::{
    FlightError, FlightState, access, auth, encode, encode_query, provenance_now, put_result,
    results,
};

type DoGetStream = <SqlService as FlightService>::DoGetStream;

/// arrow-flight's `FlightSqlService` for Valori.
#[derive(Debug)]
pub struct SqlService {
    state: Arc<FlightState>,
    prepared: Mutex<PreparedStatements>,
}

/// Open prepared statements by handle (handles count up, so the first in
/// the map is the oldest).
#[derive(Debug, Default)]
struct PreparedStatements {
    next: u64,
    open: BTreeMap<u64, Open>,
}

#[derive(Debug, Clone)]
struct Open {
    prepared: Arc<Prepared>,
    /// Parameter rows bound by the last `DoPut`, one per execution.
    params: Vec<Vec<ScalarValue>>,
}

/// The schema a statement's answer has over Flight SQL: its rows', or for
/// a write or a command the one row of its tag and count that
/// `Outcome::into_output` gives.
fn answer_schema(prepared: &Prepared) -> SchemaRef {
    if prepared.returns_rows() {
        return Arc::clone(prepared.schema());
    }
    Arc::new(Schema::new(vec![
        Field::new("command", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, true),
    ]))
}

/// The parameter schema ADBC and JDBC read: `$1`, `$2`, … with the types
/// the statement gives them (vectors as lists of `Float32`).
fn parameter_schema(prepared: &Prepared) -> Schema {
    let fields: Vec<Field> = prepared
        .params()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let data_type = match p {
                ParamType::Typed(t) => t.clone(),
                ParamType::Vector => {
                    DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
                }
                ParamType::Unknown => DataType::Utf8,
                ParamType::Column(field) => field.data_type().clone(),
            };
            Field::new(format!("${}", i + 1), data_type, true)
        })
        .collect();
    Schema::new(fields)
}

pub(super) fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, FlightError> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into()?;
    Ok(bytes)
}

/// One row of a parameter batch as typed values; a list of numbers is a
/// vector (pgvector's text form, as REST's JSON arrays are).
fn param_row(batch: &RecordBatch, row: usize) -> Result<Vec<ScalarValue>, FlightError> {
    batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let list = match column.data_type() {
                DataType::List(_) => Some(column.as_list::<i32>().value(row)),
                DataType::LargeList(_) => Some(column.as_list::<i64>().value(row)),
                DataType::FixedSizeList(_, _) => Some(column.as_fixed_size_list().value(row)),
                _ => None,
            };
            let Some(values) = list.filter(|_| !column.is_null(row)) else {
                return ScalarValue::try_from_array(column, row)
                    .map_err(|e| FlightError::Query(valori_query::QueryError::from(e)));
            };
            let floats: Vec<f32> = match values.data_type() {
                DataType::Float32 => values.as_primitive::<Float32Type>().values().to_vec(),
                DataType::Float64 => values
                    .as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .map(|&x| x as f32)
                    .collect(),
                found => {
                    return Err(FlightError::ColumnType {
                        column: format!("${}", i + 1),
                        found: found.clone(),
                        expected: "a list of Float32 or Float64 for a vector",
                    });
                }
            };
            Ok(ScalarValue::Utf8(Some(
                valori_query::statement::vector_text(&floats),
            )))
        })
        .collect()
}

/// What Valori says of itself to `GetSqlInfo`.
fn sql_info() -> &'static SqlInfoData {
    static INFO: OnceLock<SqlInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "Valori");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        b.append(SqlInfo::FlightSqlServerReadOnly, false);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        // Every statement is its own durable transaction.
        b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        b.append(SqlInfo::FlightSqlServerCancel, false);
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, true);
        b.build()
            .expect("invariant: the server's SQL info has one value per name")
    })
}

/// One SQL type for `GetXdbcTypeInfo`.
#[allow(clippy::too_many_arguments)]
fn xdbc(
    name: &str,
    data_type: XdbcDataType,
    column_size: Option<i32>,
    radix: Option<i32>,
    quote: Option<(&str, &str)>,
    create_params: Option<Vec<String>>,
    searchable: Searchable,
    unsigned: Option<bool>,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.to_owned(),
        data_type,
        column_size,
        literal_prefix: quote.map(|(p, _)| p.to_owned()),
        literal_suffix: quote.map(|(_, s)| s.to_owned()),
        create_params,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: matches!(data_type, XdbcDataType::XdbcVarchar),
        searchable,
        unsigned_attribute: unsigned,
        fixed_prec_scale: false,
        auto_increment: unsigned.map(|_| false),
        local_type_name: Some(name.to_owned()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: radix,
        interval_precision: None,
    }
}

/// The SQL types of Valori's tables and results, for `GetXdbcTypeInfo`
/// (JDBC's `getTypeInfo`, ADBC): the columns' `BIGINT`, `VECTOR(n)`,
/// `BYTEA` and `JSONB`, and what expressions give. `VECTOR` has no XDBC
/// code of its own (`XDBC_UNKNOWN_TYPE`); its literal is `'[1,2,3]'`.
fn xdbc_type_info() -> &'static XdbcTypeInfoData {
    static INFO: OnceLock<XdbcTypeInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        use XdbcDataType as T;
        let text = Some(("'", "'"));
        let mut b = XdbcTypeInfoDataBuilder::new();
        for info in [
            xdbc(
                "BOOLEAN",
                T::XdbcBit,
                Some(1),
                None,
                None,
                None,
                Searchable::Basic,
                None,
            ),
            xdbc(
                "SMALLINT",
                T::XdbcSmallint,
                Some(5),
                Some(10),
                None,
                None,
                Searchable::Basic,
                Some(false),
            ),
            xdbc(
                "INTEGER",
                T::XdbcInteger,
                Some(10),
                Some(10),
                None,
                None,
                Searchable::Basic,
                Some(false),
            ),
            xdbc(
                "BIGINT",
                T::XdbcBigint,
                Some(19),
                Some(10),
                None,
                None,
                Searchable::Basic,
                Some(false),
            ),
            xdbc(
                "REAL",
                T::XdbcReal,
                Some(24),
                Some(2),
                None,
                None,
                Searchable::Basic,
                Some(false),
            ),
            xdbc(
                "DOUBLE PRECISION",
                T::XdbcDouble,
                Some(53),
                Some(2),
                None,
                None,
                Searchable::Basic,
                Some(false),
            ),
            xdbc(
                "VARCHAR",
                T::XdbcVarchar,
                Some(i32::MAX),
                None,
                text,
                Some(vec!["length".to_owned()]),
                Searchable::Full,
                None,
            ),
            xdbc(
                "JSONB",
                T::XdbcLongvarchar,
                Some(i32::MAX),
                None,
                text,
                None,
                Searchable::None,
                None,
            ),
            xdbc(
                "BYTEA",
                T::XdbcVarbinary,
                Some(i32::MAX),
                None,
                Some(("'\\x", "'")),
                None,
                Searchable::None,
                None,
            ),
            xdbc(
                "VECTOR",
                T::XdbcUnknownType,
                Some(limits::DIM_MAX as i32),
                None,
                Some(("'[", "]'")),
                Some(vec!["dimension".to_owned()]),
                Searchable::None,
                None,
            ),
        ] {
            b.append(info);
        }
        b.build()
            .expect("invariant: the type list is a valid XDBC type info batch")
    })
}

/// A ticket or `FlightInfo` for one result of `schema`.
fn info(
    schema: &Schema,
    descriptor: FlightDescriptor,
    ticket: Any,
) -> Result<FlightInfo, FlightError> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)?
        .with_descriptor(descriptor)
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket.encode_to_vec())))
        .with_ordered(true))
}

fn one_batch(schema: SchemaRef, batch: RecordBatch) -> DoGetStream {
    encode(schema, futures::stream::iter([Ok(batch)]), Vec::new())
}

impl SqlService {
    pub fn new(state: Arc<FlightState>) -> SqlService {
        SqlService {
            state,
            prepared: Mutex::new(PreparedStatements::default()),
        }
    }

    fn statements(&self) -> std::sync::MutexGuard<'_, PreparedStatements> {
        self.prepared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self, handle: &[u8]) -> Result<Open, FlightError> {
        let id = <[u8; 8]>::try_from(handle)
            .map(u64::from_le_bytes)
            .map_err(|_| FlightError::UnknownHandle)?;
        self.statements()
            .open
            .get(&id)
            .cloned()
            .ok_or(FlightError::UnknownHandle)
    }

    fn role(&self, metadata: &MetadataMap) -> Result<crate::auth::Role, FlightError> {
        auth::role(&self.state.auth, metadata)
    }

    /// Runs `prepared` once per parameter row (once without parameters
    /// when there are none) and answers the last run's outcome and the
    /// rows written by all.
    async fn run(
        &self,
        metadata: &MetadataMap,
        prepared: &Prepared,
        params: Vec<Vec<ScalarValue>>,
    ) -> Result<(Outcome, u64), FlightError> {
        let access = access(self.role(metadata)?);
        let rows = if params.is_empty() {
            vec![Vec::new()]
        } else {
            params
        };
        let mut written = 0;
        let mut last = None;
        for values in rows {
            let mut session = Session::default();
            let outcome = self
                .state
                .query
                .run(prepared, values, &mut session, access)
                .await?;
            if let Outcome::Done { rows: Some(n), .. } = &outcome {
                written += n;
            }
            last = Some(outcome);
        }
        Ok((last.unwrap_or(Outcome::Empty), written))
    }

    /// The parameter rows of a `DoPut` stream.
    async fn param_rows(
        &self,
        stream: PeekableFlightDataStream,
    ) -> Result<Vec<Vec<ScalarValue>>, FlightError> {
        let batches: Vec<RecordBatch> = decode(stream).try_collect().await?;
        let mut rows = Vec::new();
        for batch in &batches {
            for row in 0..batch.num_rows() {
                rows.push(param_row(batch, row)?);
            }
        }
        Ok(rows)
    }

    /// `DoPut` with a path descriptor: the stream's batches, converted and
    /// checked whole, written as one event.
    async fn load(
        &self,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<arrow_flight::PutResult, FlightError> {
        auth::writer(&self.state.auth, request.metadata())?;
        let mut stream = request.into_inner();
        let descriptor = match stream.peek().await {
            Some(Ok(first)) => first.flight_descriptor.clone(),
            Some(Err(status)) => return Err(status.clone().into()),
            None => None,
        };
        let Some(descriptor) = descriptor.filter(|d| d.r#type() == DescriptorType::Path) else {
            return Err(FlightError::BadTarget {
                what: "DoPut descriptor",
                given: "(not a path)".to_owned(),
            });
        };
        let [name] = descriptor.path.as_slice() else {
            return Err(FlightError::BadPath {
                len: descriptor.path.len(),
            });
        };
        let name = ops::collection_name(name)?;
        if let Some(schema) = self.declared(&name).await? {
            let rows = self
                .load_table(name, &schema, Box::pin(decode(stream)))
                .await?;
            return Ok(arrow_flight::PutResult {
                app_metadata: serde_json::json!({ "rows": rows })
                    .to_string()
                    .into_bytes()
                    .into(),
            });
        }
        let load = Load::read(Box::pin(decode(stream))).await?;
        let engine = Arc::clone(&self.state.engine);
        let (rows, columns) = load.into_parts();
        let inserted =
            tokio::task::spawn_blocking(move || ops::insert_batch(&engine, name, rows, columns))
                .await??;
        Ok(put_result(&inserted))
    }

    /// The declared columns of `name`, when it is a table with them.
    async fn declared(&self, name: &CollectionName) -> Result<Option<TableSchema>, FlightError> {
        let engine = Arc::clone(&self.state.engine);
        let name = name.clone();
        let schema = tokio::task::spawn_blocking(move || {
            engine.read(|state| {
                state
                    .collection(&name)
                    .and_then(|c| c.table().map(|t| t.schema().clone()))
            })
        })
        .await??;
        Ok(schema)
    }

    /// A stream of batches into table `name` of declared columns
    /// `schema`: checked whole, then one `INSERT` of its rows through the
    /// statement layer's insert (one event). Answers the rows written.
    async fn load_table(
        &self,
        name: CollectionName,
        schema: &TableSchema,
        batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Unpin,
    ) -> Result<u64, FlightError> {
        let load = TableLoad::read(schema, name.as_str(), batches).await?;
        if load.batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(0);
        }
        let engine = Arc::clone(&self.state.engine);
        let outcome = tokio::task::spawn_blocking(move || {
            valori_query::declared::insert_batches(
                &engine,
                name.as_str(),
                &load.names,
                &load.batches,
            )
        })
        .await??;
        Ok(outcome.rows)
    }

    /// `CommandStatementIngest` (ADBC's `adbc_ingest`): the rows as a
    /// `DoPut` into the collection, which is created first when the
    /// options ask (dimension from the vectors, metric `l2` unless the
    /// option `valori.metric` says otherwise).
    async fn ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, FlightError> {
        auth::writer(&self.state.auth, request.metadata())?;
        let name = ops::collection_name(&command.table)?;
        let options = command.table_definition_options.unwrap_or_default();
        if let Some(schema) = self.declared(&name).await? {
            return match options.if_exists() {
                TableExistsOption::Fail => Err(FlightError::IngestExists {
                    name: name.as_str().to_owned(),
                }),
                TableExistsOption::Replace => Err(FlightError::IngestReplaceTable {
                    name: name.as_str().to_owned(),
                }),
                _ => {
                    let rows = self
                        .load_table(name, &schema, Box::pin(decode(request.into_inner())))
                        .await?;
                    Ok(i64::try_from(rows).unwrap_or(i64::MAX))
                }
            };
        }
        // The first batch's columns say which kind of table the rows make:
        // the fixed layout's, or one declared from the batch's schema.
        let mut batches = Box::pin(decode(request.into_inner()));
        let first = batches.next().await.transpose()?;
        let first_schema = first.as_ref().map(RecordBatch::schema);
        let declares = first_schema
            .as_ref()
            .is_some_and(|s| !super::ingest::is_fixed_layout(s));
        let batches = futures::stream::iter(first.map(Ok)).chain(batches);
        if let (true, Some(first)) = (declares, &first_schema) {
            let first = Arc::clone(first);
            return self
                .ingest_declared(name, &command, options, first, batches)
                .await;
        }
        let load = Load::read(batches).await?;
        let dim = u32::try_from(load.rows.dim()).unwrap_or(u32::MAX);
        let metric = command
            .options
            .get("valori.metric")
            .cloned()
            .unwrap_or_else(|| "l2".to_owned());
        let engine = Arc::clone(&self.state.engine);
        let inserted = tokio::task::spawn_blocking(move || {
            let exists = ops::describe(&engine, name.as_str()).is_ok();
            let create = || {
                ops::create_collection(
                    &engine,
                    &ops::NewCollection {
                        name: name.as_str(),
                        dim,
                        metric: &metric,
                        m: None,
                        ef_construction: None,
                        seed: None,
                    },
                )
            };
            match (exists, options.if_exists(), options.if_not_exist()) {
                (true, TableExistsOption::Fail, _) => {
                    return Err(FlightError::IngestExists {
                        name: name.as_str().to_owned(),
                    });
                }
                (true, TableExistsOption::Replace, _) => {
                    ops::drop_collection(&engine, name.as_str())?;
                    create()?;
                }
                (false, _, TableNotExistOption::Create) => {
                    create()?;
                }
                _ => {}
            }
            let (rows, columns) = load.into_parts();
            Ok(ops::insert_batch(&engine, name, rows, columns)?)
        })
        .await??;
        Ok(i64::try_from(inserted.ids.len()).unwrap_or(i64::MAX))
    }

    /// `adbc_ingest` of batches whose columns are not the fixed layout's
    /// into a table that does not exist as a declared table: in mode
    /// `create` (or `create_append`, or `replace` of a fixed collection)
    /// the table is declared from the batches' schema (`create.rs`) by
    /// the statement layer's `CREATE TABLE`, then loaded as any declared
    /// table is.
    async fn ingest_declared(
        &self,
        name: CollectionName,
        command: &CommandStatementIngest,
        options: arrow_flight::sql::TableDefinitionOptions,
        first: SchemaRef,
        batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Unpin + Send,
    ) -> Result<i64, FlightError> {
        let sql = super::create::create_table_sql(name.as_str(), &first, &command.options)?;
        let engine = Arc::clone(&self.state.engine);
        let lookup = name.clone();
        let exists =
            tokio::task::spawn_blocking(move || ops::describe(&engine, lookup.as_str()).is_ok())
                .await?;
        match (exists, options.if_exists(), options.if_not_exist()) {
            (true, TableExistsOption::Fail, _) => {
                return Err(FlightError::IngestExists {
                    name: name.as_str().to_owned(),
                });
            }
            (true, TableExistsOption::Replace, _) => {
                let engine = Arc::clone(&self.state.engine);
                let dropped = name.clone();
                tokio::task::spawn_blocking(move || {
                    ops::drop_collection(&engine, dropped.as_str())
                })
                .await??;
            }
            (true, _, _) => {
                // Appending columns the fixed layout does not have: the
                // fixed load names the first one it cannot take.
                return Err(FlightError::UnknownColumn {
                    column: first
                        .fields()
                        .iter()
                        .find(|f| !super::ingest::is_fixed_column(f.name()))
                        .map(|f| f.name().clone())
                        .unwrap_or_default(),
                });
            }
            (false, _, TableNotExistOption::Create) => {}
            (false, _, _) => {
                return Err(FlightError::Ops(ops::OpsError::UnknownCollection(name)));
            }
        }
        let mut session = Session::default();
        self.state
            .query
            .run_sql(
                &sql,
                Vec::new(),
                &mut session,
                valori_query::statement::Access::ReadWrite,
            )
            .await?;
        let schema = self
            .declared(&name)
            .await?
            .ok_or_else(|| FlightError::Ops(ops::OpsError::UnknownCollection(name.clone())))?;
        let rows = self.load_table(name, &schema, batches).await?;
        Ok(i64::try_from(rows).unwrap_or(i64::MAX))
    }

    /// The answer schema of a statement or prepared statement command,
    /// without running it (`None` for other commands).
    pub async fn statement_schema(&self, any: Any) -> Result<Option<SchemaRef>, FlightError> {
        if let Ok(Some(query)) = any.unpack::<CommandStatementQuery>() {
            let prepared = self.state.query.prepare_cached(&query.query).await?;
            return Ok(Some(answer_schema(&prepared)));
        }
        if let Ok(Some(command)) = any.unpack::<CommandPreparedStatementQuery>() {
            let open = self.open(&command.prepared_statement_handle)?;
            return Ok(Some(answer_schema(&open.prepared)));
        }
        Ok(None)
    }

    fn store(&self, prepared: Arc<Prepared>) -> u64 {
        let mut statements = self.statements();
        while statements.open.len() >= limits::FLIGHT_PREPARED_STATEMENTS_MAX as usize {
            statements.open.pop_first();
        }
        let id = statements.next;
        statements.next += 1;
        statements.open.insert(
            id,
            Open {
                prepared,
                params: Vec::new(),
            },
        );
        id
    }

    /// `GetTables`: every collection as a table of `valori.public`,
    /// with its SQL schema when asked.
    async fn tables(&self, query: CommandGetTables) -> Result<RecordBatch, FlightError> {
        let include_schema = query.include_schema;
        let mut builder = query.into_builder();
        let engine = Arc::clone(&self.state.engine);
        // The state's lock is waited for on a blocking thread.
        let names: Vec<String> = tokio::task::spawn_blocking(move || ops::collections(&engine))
            .await??
            .into_iter()
            .map(|c| c.name)
            .collect();
        for name in names {
            let schema = if include_schema {
                let sql = format!("SELECT * FROM \"{name}\"");
                self.state
                    .query
                    .prepare(&sql)
                    .await?
                    .schema()
                    .as_ref()
                    .clone()
            } else {
                Schema::empty()
            };
            builder
                .append(
                    valori_query::CATALOG,
                    valori_query::SCHEMA,
                    &name,
                    "TABLE",
                    &schema,
                )
                .map_err(FlightError::Catalog)?;
        }
        builder.build().map_err(FlightError::Catalog)
    }
}

/// The record batches of a `DoPut` stream.
fn decode(
    stream: PeekableFlightDataStream,
) -> impl Stream<Item = Result<RecordBatch, FlightError>> + Send {
    FlightRecordBatchStream::new_from_flight_data(
        stream.map_err(arrow_flight::error::FlightError::from),
    )
    .map_err(FlightError::Decode)
}

/// Marks a statement ticket that carries a finished write's answer
/// rather than SQL text (no statement text starts with a NUL byte).
const DONE_TICKET: u8 = 0;

/// A ticket holding a finished statement's command tag and rows written:
/// writes and commands run when their `FlightInfo` is asked for, since a
/// client need not fetch an answer it does not want (ADBC's `execute`
/// does not), and the ticket then only reports what happened.
fn done_ticket(outcome: &Outcome, written: u64) -> TicketStatementQuery {
    let tag = match outcome {
        Outcome::Done { tag, .. } => tag.as_str(),
        Outcome::Begin => "BEGIN",
        Outcome::Commit => "COMMIT",
        Outcome::Rollback => "ROLLBACK",
        _ => "",
    };
    let mut handle = vec![DONE_TICKET];
    handle.extend_from_slice(&written.to_le_bytes());
    handle.extend_from_slice(tag.as_bytes());
    TicketStatementQuery {
        statement_handle: handle.into(),
    }
}

/// The one-row answer a [`done_ticket`] carries.
fn done_answer(handle: &[u8]) -> Result<DoGetStream, FlightError> {
    let bad = || FlightError::BadTarget {
        what: "statement ticket",
        given: String::from_utf8_lossy(handle).into_owned(),
    };
    let written = handle
        .get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(bad)?;
    let tag = std::str::from_utf8(&handle[9..]).map_err(|_| bad())?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("command", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(valori_query::datafusion::arrow::array::StringArray::from(
                vec![tag],
            )),
            Arc::new(valori_query::datafusion::arrow::array::UInt64Array::from(
                vec![written],
            )),
        ],
    )?;
    Ok(one_batch(schema, batch))
}

fn handle_bytes(id: u64) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(&id.to_le_bytes())
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl FlightSqlService for SqlService {
    type FlightService = SqlService;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Answer<FlightInfo> {
        self.role(request.metadata())?;
        let prepared = self
            .state
            .query
            .prepare_cached(&query.query)
            .await
            .map_err(FlightError::from)?;
        let schema = answer_schema(&prepared);
        let ticket = if prepared.returns_rows() {
            TicketStatementQuery {
                statement_handle: query.query.into_bytes().into(),
            }
        } else {
            let (outcome, written) = self.run(request.metadata(), &prepared, Vec::new()).await?;
            done_ticket(&outcome, written)
        };
        let now = provenance_now(&self.state.engine).await?;
        Ok(Response::new(
            info(&schema, request.into_inner(), ticket.as_any())?.with_app_metadata(now.json()),
        ))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Answer<DoGetStream> {
        if ticket.statement_handle.first() == Some(&DONE_TICKET) {
            self.role(request.metadata())?;
            return Ok(Response::new(done_answer(&ticket.statement_handle)?));
        }
        let sql =
            std::str::from_utf8(&ticket.statement_handle).map_err(|_| FlightError::BadTarget {
                what: "statement ticket",
                given: String::from_utf8_lossy(&ticket.statement_handle).into_owned(),
            })?;
        let prepared = self
            .state
            .query
            .prepare_cached(sql)
            .await
            .map_err(FlightError::from)?;
        let start = provenance_now(&self.state.engine).await?;
        let (outcome, _) = self.run(request.metadata(), &prepared, Vec::new()).await?;
        let results = results(outcome).await?;
        Ok(Response::new(encode_query(
            Arc::clone(&self.state.engine),
            start,
            results,
        )))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Answer<FlightInfo> {
        self.role(request.metadata())?;
        let open = self.open(&command.prepared_statement_handle)?;
        let schema = answer_schema(&open.prepared);
        if !open.prepared.returns_rows() {
            let (outcome, written) = self
                .run(request.metadata(), &open.prepared, open.params)
                .await?;
            let ticket = done_ticket(&outcome, written);
            return Ok(Response::new(info(
                &schema,
                request.into_inner(),
                ticket.as_any(),
            )?));
        }
        let now = provenance_now(&self.state.engine).await?;
        Ok(Response::new(
            info(&schema, request.into_inner(), command.as_any())?.with_app_metadata(now.json()),
        ))
    }

    async fn do_get_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Answer<DoGetStream> {
        let open = self.open(&command.prepared_statement_handle)?;
        let start = provenance_now(&self.state.engine).await?;
        let (outcome, _) = self
            .run(request.metadata(), &open.prepared, open.params)
            .await?;
        let results = results(outcome).await?;
        Ok(Response::new(encode_query(
            Arc::clone(&self.state.engine),
            start,
            results,
        )))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Answer<FlightInfo> {
        self.role(request.metadata())?;
        let schema = query.into_builder().schema();
        Ok(Response::new(info(
            &schema,
            request.into_inner(),
            query.as_any(),
        )?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Answer<DoGetStream> {
        self.role(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append(valori_query::CATALOG);
        let schema = builder.schema();
        let batch = builder.build().map_err(FlightError::Catalog)?;
        Ok(Response::new(one_batch(schema, batch)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Answer<FlightInfo> {
        self.role(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(info(
            &schema,
            request.into_inner(),
            query.as_any(),
        )?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Answer<DoGetStream> {
        self.role(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append(valori_query::CATALOG, valori_query::SCHEMA);
        let schema = builder.schema();
        let batch = builder.build().map_err(FlightError::Catalog)?;
        Ok(Response::new(one_batch(schema, batch)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Answer<FlightInfo> {
        self.role(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(info(
            &schema,
            request.into_inner(),
            query.as_any(),
        )?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Answer<DoGetStream> {
        self.role(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        let batch = self.tables(query).await?;
        Ok(Response::new(one_batch(schema, batch)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Answer<FlightInfo> {
        self.role(request.metadata())?;
        Ok(Response::new(info(
            &table_types_schema(),
            request.into_inner(),
            query.as_any(),
        )?))
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Answer<DoGetStream> {
        self.role(request.metadata())?;
        let schema = Arc::new(table_types_schema());
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(
                valori_query::datafusion::arrow::array::StringArray::from(vec!["TABLE"]),
            )],
        )
        .map_err(FlightError::from)?;
        Ok(Response::new(one_batch(schema, batch)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Answer<FlightInfo> {
        self.role(request.metadata())?;
        let schema = query.clone().into_builder(sql_info()).schema();
        Ok(Response::new(info(
            &schema,
            request.into_inner(),
            query.as_any(),
        )?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Answer<DoGetStream> {
        self.role(request.metadata())?;
        let builder = query.into_builder(sql_info());
        let schema = builder.schema();
        let batch = builder.build().map_err(FlightError::Catalog)?;
        Ok(Response::new(one_batch(schema, batch)))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Answer<FlightInfo> {
        self.role(request.metadata())?;
        let schema = query.into_builder(xdbc_type_info()).schema();
        Ok(Response::new(info(
            &schema,
            request.into_inner(),
            query.as_any(),
        )?))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Answer<DoGetStream> {
        self.role(request.metadata())?;
        let builder = query.into_builder(xdbc_type_info());
        let schema = builder.schema();
        let batch = builder.build().map_err(FlightError::Catalog)?;
        Ok(Response::new(one_batch(schema, batch)))
    }

    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        _message: Any,
    ) -> Answer<<Self as FlightService>::DoPutStream> {
        let result = self.load(request).await?;
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let prepared = self
            .state
            .query
            .prepare_cached(&command.query)
            .await
            .map_err(FlightError::from)?;
        let (_, written) = self.run(request.metadata(), &prepared, Vec::new()).await?;
        Ok(i64::try_from(written).unwrap_or(i64::MAX))
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Ok(self.ingest(command, request).await?)
    }

    async fn do_put_prepared_statement_query(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.role(request.metadata())?;
        let params = self.param_rows(request.into_inner()).await?;
        let handle = &command.prepared_statement_handle;
        self.open(handle)?;
        let id = u64::from_le_bytes(
            <[u8; 8]>::try_from(&handle[..]).map_err(|_| FlightError::UnknownHandle)?,
        );
        if let Some(open) = self.statements().open.get_mut(&id) {
            open.params = params;
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.clone()),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        command: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let open = self.open(&command.prepared_statement_handle)?;
        let metadata = request.metadata().clone();
        let mut params = self.param_rows(request.into_inner()).await?;
        if params.is_empty() {
            params = open.params;
        }
        let (_, written) = self.run(&metadata, &open.prepared, params).await?;
        Ok(i64::try_from(written).unwrap_or(i64::MAX))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.role(request.metadata())?;
        let prepared = self
            .state
            .query
            .prepare(&query.query)
            .await
            .map_err(FlightError::from)?;
        let dataset_schema = ipc_schema(&answer_schema(&prepared))?;
        let parameter_schema = ipc_schema(&parameter_schema(&prepared))?;
        let id = self.store(prepared);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle_bytes(id),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.role(request.metadata())?;
        if let Ok(id) = <[u8; 8]>::try_from(&query.prepared_statement_handle[..]) {
            self.statements().open.remove(&u64::from_le_bytes(id));
        }
        Ok(())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

fn table_types_schema() -> Schema {
    Schema::new(vec![Field::new("table_type", DataType::Utf8, false)])
}
