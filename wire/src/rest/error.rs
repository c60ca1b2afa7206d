//! The REST API's errors: a status and `{"error": {"code", "message"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use valori_core::state::ApplyError;
use valori_engine::EngineError;
use valori_query::QueryError;
use valori_query::write::WriteError;

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

    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
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
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
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

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let message = e.to_string();
        match &e {
            EngineError::Rejected(apply) => {
                let status = match apply {
                    ApplyError::UnknownCollection(_)
                    | ApplyError::UnknownRecord { .. }
                    | ApplyError::UnknownNode(_)
                    | ApplyError::UnknownEdge { .. } => StatusCode::NOT_FOUND,
                    ApplyError::CollectionExists(_)
                    | ApplyError::DuplicateId { .. }
                    | ApplyError::NodeExists(_)
                    | ApplyError::EdgeExists { .. } => StatusCode::CONFLICT,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                ApiError::status_code(status, message)
            }
            EngineError::EventTooLarge { .. } => {
                ApiError::status_code(StatusCode::PAYLOAD_TOO_LARGE, message)
            }
            EngineError::OutOfRange { .. } => ApiError::not_found(message),
            EngineError::Failed(_) => {
                ApiError::status_code(StatusCode::SERVICE_UNAVAILABLE, message)
            }
            _ => ApiError::internal(message),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        match e {
            QueryError::Engine(engine) => ApiError::from(engine),
            QueryError::Write(WriteError::Engine(engine)) => ApiError::from(engine),
            QueryError::Write(WriteError::UndefinedTable(_)) => {
                ApiError::status_code(StatusCode::NOT_FOUND, e.to_string())
            }
            QueryError::Conflict(_)
            | QueryError::Write(
                WriteError::Duplicate(_) | WriteError::TableExists(_) | WriteError::Conflict(_),
            ) => ApiError::status_code(StatusCode::CONFLICT, e.to_string()),
            QueryError::ReadOnly => ApiError::status_code(
                StatusCode::FORBIDDEN,
                "this API key has the read role and may not write",
            ),
            e if e.is_user_error() => ApiError::bad_request(e.to_string()),
            e => ApiError::internal(e.to_string()),
        }
    }
}
