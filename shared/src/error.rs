//! The one error type at the HTTP edge, and its `application/problem+json` form (RFC 9457).
//!
//! Handlers return [`ApiResult`]; every variant maps to a status, a stable `type` URI and a human
//! `detail`. The edge layer ([`crate::http`]) adds the request id to every problem body, and turns
//! any other error response (an unknown route, a wrong method) into a problem too, so a caller
//! never sees an error in another shape. Internal errors are logged once, with their whole chain,
//! and the caller sees only that something failed and the request id to quote.

use std::{borrow::Cow, error::Error as StdError};

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where the problem types are documented; `type` is this base plus a stable slug.
pub const PROBLEM_TYPE_BASE: &str = "https://lumi-commerce.com/problems/";
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

pub type ApiResult<T> = Result<T, ApiError>;
type BoxError = Box<dyn StdError + Send + Sync>;

/// A field that failed validation: which one, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("bad request: {0}")]
    BadRequest(Cow<'static, str>),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("unauthorized: {0}")]
    Unauthorized(Cow<'static, str>),
    #[error("forbidden: {0}")]
    Forbidden(Cow<'static, str>),
    #[error("not found: {0}")]
    NotFound(Cow<'static, str>),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(Cow<'static, str>),
    #[error("precondition failed: {0}")]
    PreconditionFailed(Cow<'static, str>),
    /// 428: a write that must be conditional (`If-Match`) came without its condition.
    #[error("precondition required: {0}")]
    PreconditionRequired(Cow<'static, str>),
    #[error("payload larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 413 for content too large in a way other than its byte count (an image's pixel count).
    #[error("content too large: {0}")]
    ContentTooLarge(Cow<'static, str>),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(Cow<'static, str>),
    #[error("validation failed: {detail}")]
    Validation {
        detail: Cow<'static, str>,
        errors: Vec<FieldError>,
    },
    #[error("too many requests")]
    TooManyRequests {
        retry_after_secs: u64,
        /// The violated policy (scope name).
        policy: String,
        /// The rate-limit headers of the refused request.
        headers: Vec<(http::HeaderName, HeaderValue)>,
    },
    /// An upstream service (the payment provider) refused what we asked of it.
    #[error("bad gateway: {0}")]
    BadGateway(Cow<'static, str>),
    /// A dependency (DynamoDB, Secrets Manager, ...) failed or timed out: retry later.
    #[error("service unavailable: {detail}")]
    Unavailable {
        detail: Cow<'static, str>,
        #[source]
        source: Option<BoxError>,
    },
    /// A bug or an unexpected state: logged with its chain, shown as a bare 500.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

/// What kind of failure a domain error is, said without HTTP: the edge turns each class into
/// its status (`From<E: DomainError> for ApiError`), so domain crates name no status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Nothing with that identifier (404).
    NotFound,
    /// A malformed parameter such as a cursor (400).
    Malformed,
    /// The input breaks a rule; `fields` name what to fix (422).
    Invalid(Vec<FieldError>),
    /// The request is valid but the current state refuses it, or changed meanwhile (409).
    Conflict,
    /// A dependency failed or timed out: nothing was written, retry later (503).
    Unavailable,
    /// An upstream service (the payment provider) refused the request (502).
    Upstream,
    /// A bug or an unexpected state (500).
    Internal,
}

/// An error of a domain crate, classified for the edge.
pub trait DomainError: StdError + Send + Sync + 'static {
    fn class(&self) -> ErrorClass;

    /// What the caller is told (the log keeps the whole chain of 503s and 500s).
    fn public_detail(&self) -> String {
        self.to_string()
    }
}

impl<E: DomainError> From<E> for ApiError {
    fn from(error: E) -> Self {
        let detail: Cow<'static, str> = error.public_detail().into();
        match error.class() {
            ErrorClass::NotFound => Self::NotFound(detail),
            ErrorClass::Malformed => Self::BadRequest(detail),
            ErrorClass::Invalid(errors) => Self::Validation { detail, errors },
            ErrorClass::Conflict => Self::Conflict(detail),
            ErrorClass::Unavailable => Self::Unavailable {
                detail,
                source: Some(Box::new(error)),
            },
            ErrorClass::Upstream => Self::BadGateway(detail),
            ErrorClass::Internal => Self::Internal(Box::new(error)),
        }
    }
}

impl DomainError for crate::idempotency::IdempotencyError {
    fn class(&self) -> ErrorClass {
        use crate::idempotency::IdempotencyError as E;
        match self {
            E::OtherBody => ErrorClass::Invalid(vec![FieldError {
                field: "Idempotency-Key".into(),
                message: "already used with another request body".into(),
            }]),
            E::InFlight => ErrorClass::Conflict,
            E::Store(store) => store.class(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::Store(store) => store.public_detail(),
            other => other.to_string(),
        }
    }
}

impl ApiError {
    pub fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::BadRequest(detail.into())
    }
    pub fn not_found(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::NotFound(detail.into())
    }
    pub fn unavailable(detail: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            detail: detail.into(),
            source: Some(source.into()),
        }
    }
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self::Internal(source.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            Self::PayloadTooLarge { .. } | Self::ContentTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document, without the request id (the edge adds it).
    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        let (slug, detail): (&'static str, String) = match self {
            Self::BadRequest(d) => ("bad-request", d.to_string()),
            Self::MalformedJson(d) => ("malformed-json", d.clone()),
            Self::Unauthorized(d) => ("unauthorized", d.to_string()),
            Self::Forbidden(d) => ("forbidden", d.to_string()),
            Self::NotFound(d) => ("not-found", d.to_string()),
            Self::MethodNotAllowed => (
                "method-not-allowed",
                "this route does not accept that method".into(),
            ),
            Self::Conflict(d) => ("conflict", d.to_string()),
            Self::PreconditionFailed(d) => ("precondition-failed", d.to_string()),
            Self::PreconditionRequired(d) => ("precondition-required", d.to_string()),
            Self::PayloadTooLarge { limit } => (
                "payload-too-large",
                format!("the request body is larger than {limit} bytes"),
            ),
            Self::ContentTooLarge(d) => ("payload-too-large", d.to_string()),
            Self::UnsupportedMediaType(d) => ("unsupported-media-type", d.to_string()),
            Self::Validation { detail, .. } => ("validation-failed", detail.to_string()),
            Self::TooManyRequests {
                retry_after_secs, ..
            } => (
                "rate-limited",
                format!("too many requests; retry after {retry_after_secs} s"),
            ),
            Self::BadGateway(d) => ("bad-gateway", d.to_string()),
            Self::Unavailable { detail, .. } => ("service-unavailable", detail.to_string()),
            Self::Internal(_) => (
                "internal",
                "the request failed on our side; quote the request id when reporting it".into(),
            ),
        };
        let mut problem = Problem::new(status, slug, detail);
        match self {
            Self::Validation { errors, .. } => {
                problem
                    .extensions
                    .insert("errors".into(), serde_json::json!(errors));
            }
            Self::TooManyRequests { policy, .. } => {
                problem
                    .extensions
                    .insert("policy".into(), Value::String(policy.clone()));
            }
            _ => {}
        }
        problem
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            // Logged here, once, inside the request's span (so with its request id).
            Self::Internal(source) => {
                let chain = error_chain(source.as_ref());
                tracing::error!(error = %chain, "request failed");
                let mut response = self.to_problem().into_response();
                response.extensions_mut().insert(InternalError(chain));
                return response;
            }
            Self::Unavailable {
                source: Some(source),
                detail,
            } => {
                tracing::warn!(error = %error_chain(source.as_ref()), %detail, "dependency unavailable")
            }
            _ => {}
        }
        let mut response = self.to_problem().into_response();
        if let Self::Unauthorized(_) = self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"lumi\""),
            );
        }
        if let Self::TooManyRequests {
            retry_after_secs,
            headers,
            ..
        } = self
        {
            response.headers_mut().extend(headers);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

/// Marks a response that carries an internal error, with its chain, for the edge to report
/// (see [`crate::telemetry::report`]).
#[derive(Debug, Clone)]
pub struct InternalError(pub String);

/// `error: cause: cause`, the way an operator wants to read it in one log line.
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub slug: &'static str,
    pub detail: String,
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            slug,
            detail: detail.into(),
            extensions: Map::new(),
        }
    }

    /// The body, with the request id when the edge knows it.
    pub fn to_json(&self, request_id: Option<&str>) -> Value {
        let mut body = Map::new();
        body.insert(
            "type".into(),
            Value::String(format!("{PROBLEM_TYPE_BASE}{}", self.slug)),
        );
        body.insert(
            "title".into(),
            Value::String(self.status.canonical_reason().unwrap_or("Error").to_owned()),
        );
        body.insert("status".into(), Value::from(self.status.as_u16()));
        body.insert("detail".into(), Value::String(self.detail.clone()));
        if let Some(id) = request_id {
            body.insert("request_id".into(), Value::String(id.to_owned()));
        }
        for (key, value) in &self.extensions {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(body)
    }

    /// A problem for an error response some layer produced without a body (404, 405, ...).
    pub fn for_status(status: StatusCode) -> Self {
        let (slug, detail) = match status {
            StatusCode::NOT_FOUND => ("route-not-found", "no route matches this path"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method-not-allowed",
                "this route does not accept that method",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "the request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported-media-type",
                "the request body's content type is not accepted here",
            ),
            StatusCode::FORBIDDEN => ("forbidden", "this request is not allowed"),
            StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
            s if s.is_server_error() => (
                "internal",
                "the request failed on our side; quote the request id when reporting it",
            ),
            _ => ("http-error", "the request could not be served"),
        };
        Self::new(status, slug, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.to_json(None).to_string();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_status_and_a_stable_type() {
        let cases = [
            (ApiError::bad_request("x"), 400, "bad-request"),
            (ApiError::MalformedJson("x".into()), 400, "malformed-json"),
            (ApiError::NotFound("x".into()), 404, "not-found"),
            (
                ApiError::PayloadTooLarge { limit: 10 },
                413,
                "payload-too-large",
            ),
            (
                ApiError::UnsupportedMediaType("x".into()),
                415,
                "unsupported-media-type",
            ),
            (
                ApiError::internal(std::io::Error::other("disk on fire")),
                500,
                "internal",
            ),
        ];
        for (error, status, slug) in cases {
            let body = error.to_problem().to_json(Some("req-1"));
            assert_eq!(body["status"], status);
            assert_eq!(body["type"], format!("{PROBLEM_TYPE_BASE}{slug}"));
            assert_eq!(body["request_id"], "req-1");
        }
    }

    #[test]
    fn internal_errors_say_nothing_of_internals() {
        let error = ApiError::internal(std::io::Error::other("password=hunter2 at db-7"));
        let body = error.to_problem().to_json(None).to_string();
        assert!(
            !body.contains("hunter2") && !body.contains("db-7"),
            "{body}"
        );
    }

    #[test]
    fn validation_errors_name_their_fields() {
        let error = ApiError::Validation {
            detail: "1 field is invalid".into(),
            errors: vec![FieldError {
                field: "email".into(),
                message: "not an email".into(),
            }],
        };
        let body = error.to_problem().to_json(None);
        assert_eq!(body["status"], 422);
        assert_eq!(body["errors"][0]["field"], "email");
    }

    #[test]
    fn error_chain_joins_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let chain = error_chain(&Outer(std::io::Error::other("inner")));
        assert_eq!(chain, "outer: inner");
    }
}
