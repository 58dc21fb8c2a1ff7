//! Extractors: [`Json`] (rejections are problem+json with the right status), and what the edge
//! puts on every request ([`RequestId`], [`ClientIp`], the request's [`MetricSet`]).

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
};
use http::{header, request::Parts};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::{
    error::{ApiError, FieldError},
    telemetry::metrics::MetricSet,
};

/// The request id the edge settled on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The body limit in force, put on the request by the edge for the extractors' messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

/// The caller's IP address as API Gateway saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp(pub String);

/// When the edge received the request: a handler with a deadline (readiness answers within
/// the load balancer's 2 s) counts the time the layers before it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedAt(pub tokio::time::Instant);

impl<S: Send + Sync> FromRequestParts<S> for ReceivedAt {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        from_extensions(parts)
    }
}

fn from_extensions<T: Clone + Send + Sync + 'static>(parts: &Parts) -> Result<T, ApiError> {
    parts.extensions.get::<T>().cloned().ok_or_else(|| {
        ApiError::internal(format!(
            "{} missing: the edge layer is not installed",
            std::any::type_name::<T>()
        ))
    })
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        from_extensions(parts)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        from_extensions(parts)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MetricSet {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        from_extensions(parts)
    }
}

/// A JSON body: 415 unless the content type is JSON, 413 past the body limit, 400 when the text
/// is not JSON, 422 when it is JSON of the wrong shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

fn is_json(parts: &Request) -> bool {
    parts
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(&request) {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as application/json".into(),
            ));
        }
        let limit = request.extensions().get::<BodyLimit>().map_or(0, |l| l.0);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { limit }
                } else {
                    ApiError::bad_request(rejection.body_text())
                }
            })?;
        parse_json(&bytes).map(Json)
    }
}

/// A JSON body read as `T`, the one way every route reads one: 400 when the text is not JSON,
/// 422 naming the field when it is JSON of the wrong shape. A number with no fractional part
/// (`968.0`) is an integer, as JSON Schema's `integer` says (the OpenAPI document's), so an
/// integer field takes it; `968.5` stays a wrong type there.
///
/// Every body of the API is a JSON object: anything else is 422 (serde would otherwise read a
/// struct from an array, field by position).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::Validation {
            detail: "the body must be a JSON object".into(),
            errors: vec![FieldError {
                field: String::new(),
                message: "must be a JSON object".into(),
            }],
        });
    }
    whole_numbers_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(json_rejection)
}

/// Every float with no fractional part, within `i64`, becomes that integer.
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64())
                && float.fract() == 0.0
                && float.abs() < 9.0e15
            {
                // Exact: every integer below 2^53 is a float.
                #[allow(clippy::cast_possible_truncation)]
                let integer = float as i64;
                *number = serde_json::Number::from(integer);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// 400 when the text is not JSON; 422 naming the field when it is JSON of the wrong shape.
fn json_rejection(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    match inner.classify() {
        Category::Data => {
            let message = inner.to_string();
            // "missing field `email` at line 1 column 9": the path is the parent object's.
            let field = match message.split('`').nth(1) {
                Some(name) if message.starts_with("missing field") => {
                    if path == "." {
                        name.to_owned()
                    } else {
                        format!("{path}.{name}")
                    }
                }
                _ => path,
            };
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            ApiError::Validation {
                detail: format!("`{field}`: {message}").into(),
                errors: vec![FieldError { field, message }],
            }
        }
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::MalformedJson(format!("the body is not valid JSON: {inner}"))
        }
    }
}

/// The `Idempotency-Key` header of an idempotent route: 400 when missing or malformed.
impl<S: Send + Sync> FromRequestParts<S> for crate::idempotency::IdempotencyKey {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok());
        Self::parse(header).map_err(|e| ApiError::bad_request(e.to_string()))
    }
}

/// The answer of an idempotent route: `status` with the body done now, or the recorded body of
/// the first request with `Idempotency-Replayed: true`.
pub fn idempotent<T: serde::Serialize>(
    status: http::StatusCode,
    done: crate::idempotency::Done<T>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match done {
        crate::idempotency::Done::Fresh(body) => (status, axum::Json(body)).into_response(),
        crate::idempotency::Done::Replay(body) => {
            (status, [("idempotency-replayed", "true")], axum::Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod parse_json_tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Line {
        quantity: i64,
    }

    #[test]
    fn whole_floats_are_integers_and_bodies_are_objects() {
        let line: Line = parse_json(br#"{"quantity": 2.0}"#).unwrap();
        assert_eq!(line.quantity, 2);
        let status = |bytes: &[u8]| parse_json::<Line>(bytes).unwrap_err().status().as_u16();
        assert_eq!(status(br#"{"quantity": 2.5}"#), 422);
        assert_eq!(status(br#"[3]"#), 422, "not a struct read by position");
        assert_eq!(status(br#"{"quantity": 2"#), 400);
    }
}
