//! The REST API's errors: a status and `{"error": {"code", "message"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use valori_engine::EngineError;
use valori_query::QueryError;
use valori_query::dsl::DslError;
use valori_query::ops::{Fault, OpsError};

/// An error answer. Every one is JSON with a stable `code`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn status_code(status: StatusCode, message: impl Into<String>) -> ApiError {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::REQUEST_TIMEOUT => "timeout",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_client_error() => "bad_request",
            _ => "internal",
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        (self.status, axum::Json(body)).into_response()
    }
}

impl ApiError {
    /// The answer to a failure of class `fault`: its HTTP status and its
    /// stable code ([`Fault::code`], what Python reports too).
    pub fn from_fault(fault: Fault, message: impl Into<String>) -> ApiError {
        ApiError::new(fault_status(fault), fault.code(), message)
    }
}

/// The HTTP status of each fault class.
pub fn fault_status(fault: Fault) -> StatusCode {
    match fault {
        Fault::InvalidInput => StatusCode::BAD_REQUEST,
        Fault::NotFound => StatusCode::NOT_FOUND,
        Fault::Conflict => StatusCode::CONFLICT,
        Fault::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Fault::Timeout => StatusCode::REQUEST_TIMEOUT,
        Fault::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        ApiError::from_fault(e.fault(), e.to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        if let QueryError::ReadOnly = e {
            // A write by a read-role key: the same refusal as the
            // authorization layer's.
            return ApiError::status_code(
                StatusCode::FORBIDDEN,
                "this API key has the read role and may not write",
            );
        }
        ApiError::from_fault(e.fault(), e.to_string())
    }
}

impl From<DslError> for ApiError {
    fn from(e: DslError) -> ApiError {
        ApiError::from_fault(e.fault(), e.to_string())
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> ApiError {
        ApiError::from_fault(e.fault(), e.to_string())
    }
}
