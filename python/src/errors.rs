//! Errors as the Python exceptions of `valori.errors`.
//!
//! The exception classes are defined in Python (so that `InvalidInput` can
//! also be a `ValueError` and `NotFound` a `LookupError`); this module only
//! picks the class of an error from its [`Fault`] — the classification
//! REST derives its status from — and keeps the message, so that the
//! embedded and the remote mode raise the same class with the same code
//! and message for the same input.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use valori_engine::EngineError;
use valori_query::QueryError;
use valori_query::dsl::DslError;
use valori_query::ops::{Fault, OpsError};

/// The exception class of each fault, by name in `valori.errors`.
fn class_name(fault: Fault) -> &'static str {
    match fault {
        Fault::InvalidInput => "InvalidInput",
        Fault::NotFound => "NotFound",
        Fault::Conflict => "Conflict",
        Fault::TooLarge => "TooLarge",
        Fault::Timeout => "Timeout",
        _ => "ServerError",
    }
}

/// A Python exception of the class of `fault` with `message` and the
/// fault's code ([`Fault::code`], REST's error code).
pub fn error(fault: Fault, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| {
        let class = py
            .import("valori.errors")
            .and_then(|m| m.getattr(class_name(fault)))
            .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
        match class {
            Ok(class) => PyErr::from_type(class, (message, fault.code())),
            // Only reachable when the package is broken (the native module
            // imported without its Python half).
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}

pub fn engine(e: EngineError) -> PyErr {
    error(e.fault(), e.to_string())
}

pub fn query(e: QueryError) -> PyErr {
    error(e.fault(), e.to_string())
}

pub fn dsl(e: DslError) -> PyErr {
    error(e.fault(), e.to_string())
}

pub fn ops(e: OpsError) -> PyErr {
    error(e.fault(), e.to_string())
}
