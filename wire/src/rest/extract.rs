//! Request extractors whose rejections are the API's JSON errors.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The server's largest request body (`--body-bytes-max`), as a request
/// extension.
#[derive(Clone, Copy, Debug)]
pub struct BodyBytesMax(pub usize);

/// A JSON body, whatever its `Content-Type` says (so that a first
/// `curl -d '{…}'` works); malformed JSON is a 400 naming line and column.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let max = req.extensions().get::<BodyBytesMax>().copied();
        let bytes =
            Bytes::from_request(req, state)
                .await
                .map_err(|e: BytesRejection| match max {
                    Some(BodyBytesMax(max)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        ApiError::status_code(
                            e.status(),
                            format!("the request body exceeds {max} bytes (body_bytes_max)"),
                        )
                    }
                    _ => ApiError::status_code(e.status(), e.body_text()),
                })?;
        parse_json(&bytes).map(Body)
    }
}

/// A request body as [`Body`] reads it: one JSON value of type `T` and
/// nothing after it.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request needs a JSON body"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = T::deserialize(&mut de)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// Path parameters; a malformed one (`/records/abc`) is a 400.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|e: PathRejection| {
                let status = if e.status() == StatusCode::INTERNAL_SERVER_ERROR {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::BAD_REQUEST
                };
                ApiError::status_code(status, e.body_text())
            })
    }
}

/// Query-string parameters; a malformed one is a 400.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e: QueryRejection| ApiError::bad_request(e.body_text()))
    }
}
