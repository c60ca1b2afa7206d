//! The Flight front end's errors and their gRPC status codes.

use tonic::{Code, Status};
use valori_engine::EngineError;
use valori_query::QueryError;
use valori_query::datafusion::arrow::datatypes::DataType;
use valori_query::datafusion::arrow::error::ArrowError;
use valori_query::ops::{Fault, OpsError};

/// Why a Flight call failed. Each variant's [`Fault`] says whose fault;
/// the status code follows from it ([`status_code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlightError {
    #[error(
        "missing or unknown credentials: send `authorization: Bearer KEY`, or `Basic` \
         NAME:KEY, or do the handshake"
    )]
    Unauthenticated,
    #[error("this user has the read role and may not write")]
    ReadOnly,
    /// A descriptor or ticket that names nothing Valori serves.
    #[error("{what} {given:?} is neither a collection name nor a SQL statement")]
    BadTarget { what: &'static str, given: String },
    /// A JSON export ticket that does not parse.
    #[error(
        "{what} is a JSON export ticket ({{\"collection\": NAME, \"deleted\": BOOL}}) that does not parse: {reason}"
    )]
    BadTicket { what: &'static str, reason: String },
    /// A path descriptor of other than one element.
    #[error("a collection is named by a path of one element; this one has {len}")]
    BadPath { len: usize },
    /// A record batch loaded by DoPut lacks its vectors.
    #[error("the batch has no `vector` (or `vector_f32`) column")]
    MissingVector,
    #[error(
        "column {column:?} is not one of id, vector, vector_f32, vec, vec_q16, tag, metadata \
         (a collection's columns; for other columns declare a table with CREATE TABLE, then load \
         it with DoPut or ingest mode append)"
    )]
    UnknownColumn { column: String },
    #[error("column {column:?} has type {found}; expected {expected}")]
    ColumnType {
        column: String,
        found: DataType,
        expected: &'static str,
    },
    #[error("column {column:?} is in some batches of the stream but not in others")]
    SchemaChanged { column: &'static str },
    #[error("column {column:?} has a null at row {row} of the stream")]
    Null { column: String, row: u64 },
    #[error("column {column:?}, row {row} of the stream: {source}")]
    Value {
        column: String,
        row: u64,
        source: ArrowError,
    },
    #[error("metadata at row {row} of the stream is not JSON ({source}); send raw bytes as Binary")]
    MetadataJson { row: u64, source: serde_json::Error },
    /// A DoPut stream is one event: at most `BATCH_RECORDS_MAX` records.
    #[error(
        "the stream holds more than {max} records; one DoPut is one atomic event, so split \
         larger loads into several",
        max = valori_core::limits::BATCH_RECORDS_MAX
    )]
    TooManyRecords,
    /// The collection was dropped (or dropped and created again) while it
    /// was being exported.
    #[error("collection {name} was dropped during the export; nothing more can be read from it")]
    ExportGone { name: String },
    /// A column of a batch loaded into a table with declared columns
    /// that the table does not have.
    #[error("column {column:?} is not a column of table {table} (its columns: {columns})")]
    TableColumn {
        table: String,
        column: String,
        columns: String,
    },
    /// The batches of one stream into a table name different columns.
    #[error(
        "the batches of the stream into table {table} name different columns: first ({first}), then ({now}); every batch of one load has the same columns"
    )]
    TableColumnsChanged {
        table: String,
        first: String,
        now: String,
    },
    /// A timestamp or date column that does not fit in microseconds or
    /// days.
    #[error("column {column:?}: {source}")]
    Cast { column: String, source: ArrowError },
    /// `adbc_ingest` in mode `replace` of a table with declared columns,
    /// whose declaration a batch cannot carry.
    #[error(
        "table {name} has declared columns, which ingest cannot declare again; ingest with mode append (or DROP and CREATE TABLE it over SQL first)"
    )]
    IngestReplaceTable { name: String },
    /// `adbc_ingest` in mode `create` of batches a table cannot be
    /// declared from.
    #[error("column {column:?}: {reason}")]
    IngestDeclaration { column: String, reason: String },
    /// A prepared statement handle that is not open (closed, or the
    /// oldest closed to keep `FLIGHT_PREPARED_STATEMENTS_MAX`).
    #[error("no open prepared statement has this handle; prepare the statement again")]
    UnknownHandle,
    /// `adbc_ingest` in mode `create` of a collection that exists.
    #[error("collection {name} exists; ingest with mode append or replace")]
    IngestExists { name: String },
    /// Malformed Arrow IPC from a client.
    #[error("bad Arrow data: {0}")]
    Decode(#[source] arrow_flight::error::FlightError),
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Building a batch of the server's own rows failed: a broken
    /// invariant, never the client's fault.
    #[error("cannot build a batch: {0}")]
    Arrow(#[from] ArrowError),
    /// Building a catalog or SQL info answer failed: a broken invariant.
    #[error("cannot build a catalog answer: {0}")]
    Catalog(#[source] arrow_flight::error::FlightError),
    #[error("a task of the server failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The client's call was malformed at the Flight layer (reported by
    /// arrow-flight with its own code).
    #[error("{0}")]
    Status(Box<Status>),
}

impl FlightError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            FlightError::Unauthenticated | FlightError::ReadOnly => Fault::InvalidInput,
            FlightError::BadTarget { .. }
            | FlightError::BadTicket { .. }
            | FlightError::BadPath { .. }
            | FlightError::MissingVector
            | FlightError::UnknownColumn { .. }
            | FlightError::ColumnType { .. }
            | FlightError::Null { .. }
            | FlightError::SchemaChanged { .. }
            | FlightError::Value { .. }
            | FlightError::MetadataJson { .. }
            | FlightError::TableColumn { .. }
            | FlightError::TableColumnsChanged { .. }
            | FlightError::Cast { .. }
            | FlightError::IngestReplaceTable { .. }
            | FlightError::IngestDeclaration { .. }
            | FlightError::Decode(_) => Fault::InvalidInput,
            FlightError::TooManyRecords => Fault::TooLarge,
            FlightError::UnknownHandle => Fault::NotFound,
            FlightError::IngestExists { .. } => Fault::Conflict,
            FlightError::ExportGone { .. } => Fault::Conflict,
            FlightError::Ops(e) => e.fault(),
            FlightError::Query(e) => e.fault(),
            FlightError::Engine(e) => e.fault(),
            FlightError::Arrow(_) | FlightError::Catalog(_) | FlightError::Task(_) => {
                Fault::Internal
            }
            FlightError::Status(s) => match s.code() {
                Code::Internal | Code::Unknown | Code::DataLoss => Fault::Internal,
                _ => Fault::InvalidInput,
            },
        }
    }
}

/// The gRPC status code of each fault class.
pub fn status_code(fault: Fault) -> Code {
    match fault {
        Fault::InvalidInput => Code::InvalidArgument,
        Fault::NotFound => Code::NotFound,
        Fault::Conflict => Code::AlreadyExists,
        Fault::TooLarge => Code::OutOfRange,
        Fault::Timeout => Code::DeadlineExceeded,
        Fault::Unavailable => Code::Unavailable,
        _ => Code::Internal,
    }
}

impl From<FlightError> for Status {
    fn from(e: FlightError) -> Status {
        match e {
            FlightError::Status(status) => *status,
            FlightError::Unauthenticated => Status::unauthenticated(e.to_string()),
            FlightError::ReadOnly => Status::permission_denied(e.to_string()),
            FlightError::Query(QueryError::ReadOnly) => Status::permission_denied(e.to_string()),
            e => Status::new(status_code(e.fault()), e.to_string()),
        }
    }
}

impl From<Status> for FlightError {
    fn from(status: Status) -> FlightError {
        FlightError::Status(Box::new(status))
    }
}

impl From<FlightError> for arrow_flight::error::FlightError {
    fn from(e: FlightError) -> arrow_flight::error::FlightError {
        arrow_flight::error::FlightError::Tonic(Box::new(Status::from(e)))
    }
}
