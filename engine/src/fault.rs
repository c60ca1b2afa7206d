//! [`Fault`]: who is at fault for a failed operation, in the few classes
//! every front end answers by. REST derives its HTTP status and error code
//! from it, Python its exception class, the Postgres front end the SQLSTATE
//! of errors it has no finer code for. Every error type of the engine and
//! of the query layer says its fault (`EngineError::fault`,
//! `valori_query::QueryError::fault`, …), so that the same failure is
//! classified the same way whichever front end reports it.

use std::fmt;

use valori_core::state::ApplyError;

/// Who is at fault, and how the caller can react.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The input is wrong (a value, a dimension, a name, a statement);
    /// nothing changed and the caller may fix it.
    InvalidInput,
    /// An unknown collection, record, graph node or edge, or log position.
    NotFound,
    /// What is being created exists already, or a concurrent change got
    /// in the way; nothing changed.
    Conflict,
    /// The input exceeds one of the limits of `valori_core::limits` (or
    /// the server's configured request size); nothing changed.
    TooLarge,
    /// The operation ran longer than its time limit and was cancelled.
    Timeout,
    /// The engine stopped accepting work (after a failed fsync) and must be
    /// restarted.
    Unavailable,
    /// The database failed: storage, a broken invariant, a bug.
    Internal,
}

impl Fault {
    /// The stable error code of this class, the same through REST
    /// (`{"error": {"code": …}}`) and Python (`ValoriError.code`).
    pub const fn code(self) -> &'static str {
        match self {
            Fault::InvalidInput => "bad_request",
            Fault::NotFound => "not_found",
            Fault::Conflict => "conflict",
            Fault::TooLarge => "payload_too_large",
            Fault::Timeout => "timeout",
            Fault::Unavailable => "unavailable",
            Fault::Internal => "internal",
        }
    }

    /// Whether the caller caused the failure (and nothing was written).
    pub const fn is_user_error(self) -> bool {
        matches!(
            self,
            Fault::InvalidInput
                | Fault::NotFound
                | Fault::Conflict
                | Fault::TooLarge
                | Fault::Timeout
        )
    }

    /// The fault of an event the state machine refused.
    pub fn of_apply(e: &ApplyError) -> Fault {
        match e {
            // A transaction's write is classed as the write itself.
            ApplyError::InTransaction { source, .. } => Fault::of_apply(source),
            ApplyError::UnknownCollection(_)
            | ApplyError::UnknownRecord { .. }
            | ApplyError::UnknownNode(_)
            | ApplyError::UnknownEdge { .. } => Fault::NotFound,
            ApplyError::CollectionExists(_)
            | ApplyError::DuplicateId { .. }
            | ApplyError::NodeExists(_)
            | ApplyError::EdgeExists { .. } => Fault::Conflict,
            ApplyError::TooManyCollections
            | ApplyError::MetadataTooLarge { .. }
            | ApplyError::BadBatchSize => Fault::TooLarge,
            _ => Fault::InvalidInput,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
