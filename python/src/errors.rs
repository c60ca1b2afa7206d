//! Engine and query errors as the Python exceptions of `valori.errors`.
//!
//! The exception classes are defined in Python (so that `InvalidInput` can
//! also be a `ValueError` and `NotFound` a `LookupError`); this module only
//! decides which class an error belongs to, by who is at fault, and keeps
//! the engine's message.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use valori_core::state::ApplyError;
use valori_engine::EngineError;
use valori_query::QueryError;
use valori_query::write::WriteError;

/// The exception classes, by name in `valori.errors`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The input is wrong: dimension, value, name, size. Nothing changed.
    InvalidInput,
    /// An unknown collection, record, graph node or edge, or log position.
    NotFound,
    /// The target already exists (collection, id, node, edge).
    Conflict,
    /// The database failed (storage, a stopped engine, an internal error).
    ServerError,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::InvalidInput => "InvalidInput",
            Kind::NotFound => "NotFound",
            Kind::Conflict => "Conflict",
            Kind::ServerError => "ServerError",
        }
    }

    /// The REST error code of the same situation (`docs/rest.md`).
    fn code(self) -> &'static str {
        match self {
            Kind::InvalidInput => "bad_request",
            Kind::NotFound => "not_found",
            Kind::Conflict => "conflict",
            Kind::ServerError => "internal",
        }
    }
}

/// A Python exception of class `kind` with `message`.
pub fn error(kind: Kind, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| {
        let class = py
            .import("valori.errors")
            .and_then(|m| m.getattr(kind.class_name()))
            .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
        match class {
            Ok(class) => PyErr::from_type(class, (message, kind.code())),
            // Only reachable when the package is broken (the native module
            // imported without its Python half).
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}

/// Who is at fault for a rejected event.
fn apply_kind(e: &ApplyError) -> Kind {
    match e {
        ApplyError::UnknownCollection(_)
        | ApplyError::UnknownRecord { .. }
        | ApplyError::UnknownNode(_)
        | ApplyError::UnknownEdge { .. } => Kind::NotFound,
        ApplyError::CollectionExists(_)
        | ApplyError::DuplicateId { .. }
        | ApplyError::NodeExists(_)
        | ApplyError::EdgeExists { .. } => Kind::Conflict,
        _ => Kind::InvalidInput,
    }
}

pub fn engine_kind(e: &EngineError) -> Kind {
    match e {
        EngineError::Rejected(a) => apply_kind(a),
        EngineError::EventTooLarge { .. } => Kind::InvalidInput,
        EngineError::OutOfRange { .. } => Kind::NotFound,
        _ => Kind::ServerError,
    }
}

pub fn engine(e: EngineError) -> PyErr {
    error(engine_kind(&e), e.to_string())
}

pub fn query(e: QueryError) -> PyErr {
    let kind = match &e {
        QueryError::Conflict(_) => Kind::Conflict,
        QueryError::Engine(inner) => engine_kind(inner),
        // As REST answers them (404, 409).
        QueryError::Write(WriteError::Engine(inner)) => engine_kind(inner),
        QueryError::Write(WriteError::UndefinedTable(_)) => Kind::NotFound,
        QueryError::Write(
            WriteError::Duplicate(_) | WriteError::TableExists(_) | WriteError::Conflict(_),
        ) => Kind::Conflict,
        e if e.is_user_error() => Kind::InvalidInput,
        _ => Kind::ServerError,
    };
    error(kind, e.to_string())
}
