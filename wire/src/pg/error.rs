//! Errors as Postgres ErrorResponses: every failure has an SQLSTATE that
//! says whose fault it is.

use std::fmt;

use pgwire::error::{ErrorInfo, PgWireError};
use valori_engine::EngineError;
use valori_query::QueryError;
use valori_query::advisory::AdvisoryError;
use valori_query::casts::CastError;
use valori_query::datafusion::common::DataFusionError;
use valori_query::functions::{ComponentError, VectorInputError};
use valori_query::ops::Fault;
use valori_query::session::SettingError;
use valori_query::statement::ParamError;
use valori_query::transaction::TransactionError;
use valori_query::write::WriteError;

/// The SQLSTATE codes this server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqlState {
    SyntaxError,
    UndefinedTable,
    UndefinedColumn,
    AmbiguousColumn,
    DuplicateColumn,
    UndefinedFunction,
    UndefinedObject,
    DuplicateTable,
    UniqueViolation,
    NotNullViolation,
    ForeignKeyViolation,
    DependentObjectsStillExist,
    InvalidForeignKey,
    DatatypeMismatch,
    CardinalityViolation,
    GeneratedAlways,
    InvalidColumnReference,
    InvalidTextRepresentation,
    InvalidParameterValue,
    InvalidBinaryRepresentation,
    BadCopyFileFormat,
    NumericValueOutOfRange,
    StringDataRightTruncation,
    CharacterNotInRepertoire,
    ReadOnlySqlTransaction,
    InFailedSqlTransaction,
    NoActiveSqlTransaction,
    InvalidSavepointSpecification,
    InvalidSqlStatementName,
    DuplicatePreparedStatement,
    ActiveSqlTransaction,
    FeatureNotSupported,
    ProgramLimitExceeded,
    QueryCanceled,
    OutOfMemory,
    SerializationFailure,
    LockNotAvailable,
    ProtocolViolation,
    SyntaxOrAccessRule,
    DataException,
    DivisionByZero,
    SystemError,
    InternalError,
}

impl SqlState {
    pub fn code(self) -> &'static str {
        match self {
            SqlState::SyntaxError => "42601",
            SqlState::UndefinedTable => "42P01",
            SqlState::UndefinedColumn => "42703",
            SqlState::AmbiguousColumn => "42702",
            SqlState::DuplicateColumn => "42701",
            SqlState::UndefinedFunction => "42883",
            SqlState::UndefinedObject => "42704",
            SqlState::DuplicateTable => "42P07",
            SqlState::UniqueViolation => "23505",
            SqlState::NotNullViolation => "23502",
            SqlState::ForeignKeyViolation => "23503",
            SqlState::DependentObjectsStillExist => "2BP01",
            SqlState::InvalidForeignKey => "42830",
            SqlState::DatatypeMismatch => "42804",
            SqlState::CardinalityViolation => "21000",
            SqlState::GeneratedAlways => "428C9",
            SqlState::InvalidColumnReference => "42P10",
            SqlState::InvalidTextRepresentation => "22P02",
            SqlState::InvalidParameterValue => "22023",
            SqlState::InvalidBinaryRepresentation => "22P03",
            SqlState::BadCopyFileFormat => "22P04",
            SqlState::NumericValueOutOfRange => "22003",
            SqlState::StringDataRightTruncation => "22001",
            SqlState::CharacterNotInRepertoire => "22021",
            SqlState::ReadOnlySqlTransaction => "25006",
            SqlState::InFailedSqlTransaction => "25P02",
            SqlState::NoActiveSqlTransaction => "25P01",
            SqlState::InvalidSavepointSpecification => "3B001",
            SqlState::InvalidSqlStatementName => "26000",
            SqlState::DuplicatePreparedStatement => "42P05",
            SqlState::ActiveSqlTransaction => "25001",
            SqlState::FeatureNotSupported => "0A000",
            SqlState::ProgramLimitExceeded => "54000",
            SqlState::QueryCanceled => "57014",
            SqlState::OutOfMemory => "53200",
            SqlState::SerializationFailure => "40001",
            SqlState::LockNotAvailable => "55P03",
            SqlState::ProtocolViolation => "08P01",
            SqlState::SyntaxOrAccessRule => "42000",
            SqlState::DataException => "22000",
            SqlState::DivisionByZero => "22012",
            SqlState::SystemError => "58000",
            SqlState::InternalError => "XX000",
        }
    }
}

/// One error for the client.
#[derive(Clone, Debug)]
pub struct PgError {
    state: SqlState,
    message: String,
}

impl PgError {
    pub fn new(state: SqlState, message: impl Into<String>) -> PgError {
        PgError {
            state,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> PgError {
        PgError::new(SqlState::InternalError, message)
    }

    pub fn code(&self) -> &'static str {
        self.state.code()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn state(&self) -> SqlState {
        self.state
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.state.code())
    }
}

impl From<PgError> for ErrorInfo {
    fn from(e: PgError) -> ErrorInfo {
        ErrorInfo::new("ERROR".to_owned(), e.state.code().to_owned(), e.message)
    }
}

impl From<PgError> for PgWireError {
    fn from(e: PgError) -> PgWireError {
        PgWireError::UserError(Box::new(e.into()))
    }
}

impl From<WriteError> for PgError {
    fn from(e: WriteError) -> PgError {
        PgError::from_write(&e)
    }
}

impl PgError {
    fn from_write(e: &WriteError) -> PgError {
        let state = match e {
            WriteError::Syntax(_) => SqlState::SyntaxError,
            WriteError::Unsupported(_) => SqlState::FeatureNotSupported,
            WriteError::UndefinedTable(_) => SqlState::UndefinedTable,
            WriteError::UndefinedColumn(_) => SqlState::UndefinedColumn,
            WriteError::DuplicateColumn(_) => SqlState::DuplicateColumn,
            WriteError::TableExists(_) | WriteError::IndexExists(_) => SqlState::DuplicateTable,
            WriteError::UndefinedIndex(_) | WriteError::UndefinedConstraint(_) => {
                SqlState::UndefinedObject
            }
            WriteError::InvalidText(_) => SqlState::InvalidTextRepresentation,
            WriteError::InvalidValue(_) => SqlState::InvalidParameterValue,
            WriteError::Duplicate(_) => SqlState::UniqueViolation,
            WriteError::NotNull(_) => SqlState::NotNullViolation,
            WriteError::ForeignKeyViolation(_) => SqlState::ForeignKeyViolation,
            WriteError::DependentObjects(_) => SqlState::DependentObjectsStillExist,
            WriteError::InvalidForeignKey(_) => SqlState::InvalidForeignKey,
            WriteError::DatatypeMismatch(_) => SqlState::DatatypeMismatch,
            WriteError::Cardinality(_) => SqlState::CardinalityViolation,
            WriteError::GeneratedAlways(_) => SqlState::GeneratedAlways,
            WriteError::InvalidReference(_) => SqlState::InvalidColumnReference,
            WriteError::OutOfRange(_) => SqlState::NumericValueOutOfRange,
            WriteError::Cast { error, .. } => cast_state(error),
            WriteError::StringTooLong(_) => SqlState::StringDataRightTruncation,
            WriteError::TooLarge(_) => SqlState::ProgramLimitExceeded,
            WriteError::Conflict(_) => SqlState::SerializationFailure,
            WriteError::Engine(engine) => engine_state(engine),
            _ => fault_state(e.fault()),
        };
        PgError::new(state, e.to_string())
    }
}

/// The SQLSTATE of a failure of class `fault`, for errors that have no
/// finer code of their own (an engine error reported through a
/// statement): the class every front end reports for it.
pub fn fault_state(fault: Fault) -> SqlState {
    match fault {
        Fault::InvalidInput => SqlState::DataException,
        Fault::NotFound => SqlState::UndefinedObject,
        Fault::Conflict => SqlState::UniqueViolation,
        Fault::TooLarge => SqlState::ProgramLimitExceeded,
        Fault::Timeout => SqlState::QueryCanceled,
        // A storage failure or a stopped engine: outside the statement.
        _ => SqlState::SystemError,
    }
}

/// The SQLSTATE of an engine error: a write sent to a follower of a
/// cluster is refused as a write in a read-only transaction (25006, what
/// a Postgres hot standby answers), its message naming the leader's REST
/// and Postgres addresses; any other by its fault class.
pub fn engine_state(e: &EngineError) -> SqlState {
    match e {
        EngineError::NotLeader { .. } => SqlState::ReadOnlySqlTransaction,
        EngineError::TransactionConflict { .. } => SqlState::SerializationFailure,
        _ => fault_state(e.fault()),
    }
}

/// The SQLSTATE of a value that does not convert to an integer type, as
/// Postgres reports each: 22003, 22P02, or 0A000 for a `numeric` NaN.
fn cast_state(e: &CastError) -> SqlState {
    match e {
        CastError::OutOfRange(_) | CastError::TextOutOfRange { .. } => {
            SqlState::NumericValueOutOfRange
        }
        CastError::InvalidText { .. } => SqlState::InvalidTextRepresentation,
        _ => SqlState::FeatureNotSupported,
    }
}

/// The SQLSTATE of a DataFusion error the statement caused.
fn datafusion_state(e: &DataFusionError) -> SqlState {
    match e.find_root() {
        DataFusionError::SQL(..) => SqlState::SyntaxError,
        DataFusionError::SchemaError(inner, _) => {
            let text = inner.to_string();
            if text.contains("No field named") || text.contains("not found") {
                SqlState::UndefinedColumn
            } else {
                SqlState::SyntaxOrAccessRule
            }
        }
        DataFusionError::NotImplemented(_) => SqlState::FeatureNotSupported,
        DataFusionError::Plan(text) => {
            if text.contains("table '") && text.contains("not found") {
                SqlState::UndefinedTable
            } else if text.starts_with("ORDER BY") && text.ends_with("is ambiguous") {
                SqlState::AmbiguousColumn
            } else if text.contains("Invalid function")
                || text.contains("function") && text.contains("not found")
            {
                SqlState::UndefinedFunction
            } else {
                SqlState::SyntaxOrAccessRule
            }
        }
        DataFusionError::ArrowError(e, _)
            if matches!(
                e.as_ref(),
                valori_query::datafusion::arrow::error::ArrowError::DivideByZero
            ) =>
        {
            SqlState::DivisionByZero
        }
        DataFusionError::ArrowError(..) | DataFusionError::Execution(_) => SqlState::DataException,
        DataFusionError::External(e) => match e.downcast_ref::<AdvisoryError>() {
            Some(AdvisoryError::Timeout(_)) => SqlState::LockNotAvailable,
            Some(AdvisoryError::TooMany) => SqlState::OutOfMemory,
            Some(AdvisoryError::BadKey { .. }) => SqlState::InvalidParameterValue,
            Some(_) => SqlState::FeatureNotSupported,
            None => SqlState::SyntaxOrAccessRule,
        },
        _ => SqlState::SyntaxOrAccessRule,
    }
}

impl From<QueryError> for PgError {
    fn from(e: QueryError) -> PgError {
        let state = match &e {
            QueryError::Invalid(df) => datafusion_state(df),
            QueryError::Vector(v) => match v {
                VectorInputError::Malformed { .. }
                | VectorInputError::Component {
                    error: ComponentError::Syntax,
                    ..
                } => SqlState::InvalidTextRepresentation,
                _ => SqlState::InvalidParameterValue,
            },
            QueryError::Cast(c) => cast_state(c),
            QueryError::Conflict(_) => SqlState::SerializationFailure,
            QueryError::TooLong { .. } | QueryError::TooComplex(_) => {
                SqlState::ProgramLimitExceeded
            }
            QueryError::Timeout { .. } => SqlState::QueryCanceled,
            QueryError::MemoryExhausted(_) => SqlState::OutOfMemory,
            QueryError::Engine(engine) => engine_state(engine),
            QueryError::Write(w) => return PgError::from_write(w),
            QueryError::Setting(s) => match s {
                SettingError::Unknown(_) => SqlState::UndefinedObject,
                SettingError::TooLarge(_) => SqlState::ProgramLimitExceeded,
                _ => SqlState::InvalidParameterValue,
            },
            QueryError::Param(p) => match p {
                ParamError::Count { .. } => SqlState::ProtocolViolation,
                _ => SqlState::InvalidTextRepresentation,
            },
            QueryError::ReadOnly => SqlState::ReadOnlySqlTransaction,
            QueryError::Transaction(t) => match t {
                TransactionError::Aborted => SqlState::InFailedSqlTransaction,
                TransactionError::NoSavepoint(_) => SqlState::InvalidSavepointSpecification,
                TransactionError::NoPreparedStatement(_) => SqlState::InvalidSqlStatementName,
                TransactionError::PreparedStatementExists(_) => {
                    SqlState::DuplicatePreparedStatement
                }
                TransactionError::InBlock(_) => SqlState::ActiveSqlTransaction,
                TransactionError::NotInBlock(_) => SqlState::NoActiveSqlTransaction,
                _ => SqlState::ProgramLimitExceeded,
            },
            _ => SqlState::InternalError,
        };
        // An error of Valori's raised inside DataFusion reads as itself.
        if let QueryError::Invalid(df) = &e
            && let DataFusionError::External(inner) = df.find_root()
            && inner.is::<AdvisoryError>()
        {
            return PgError::new(state, inner.to_string());
        }
        PgError::new(state, e.to_string())
    }
}
