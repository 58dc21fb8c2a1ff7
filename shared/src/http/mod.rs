//! The HTTP edge every function's router is served behind, in Lambda and in the local gateway
//! alike (see [`serve`]):
//!
//! - [`edge`]: request id (API Gateway's, else a valid incoming `X-Request-Id`, else a new one),
//!   client IP from the API Gateway request context, the request span (request id, function,
//!   cold start), `X-Request-Id` and `X-API-Version` on every response, the body size limit (413),
//!   every error response as problem+json with the request id, an access log line and the
//!   `lumi_http_requests_total` metric flushed per invocation.
//! - The rate limits of [`crate::ratelimit::layer`], with their headers.
//! - CORS from `CORS_ALLOWED_ORIGINS` (tower-http), with preflights from other origins refused
//!   (403); HSTS, `nosniff` and `no-store` on every response.
//! - [`extract`]: the JSON extractor whose rejections are problem+json, and the request id,
//!   client IP and metric set of the request.
//! - [`path_ids`]: every path parameter checked by the one identifier format before the
//!   handler runs (404 when malformed), so a handler never sends one to DynamoDB or S3.
//! - [`routes`]: the API's routes, so that what no route matches is 405 with `Allow` when the
//!   path exists under another method, else 404.

pub mod edge;
pub mod extract;
pub mod path_ids;
pub mod routes;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use http::{HeaderName, HeaderValue, Method, header};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    set_header::SetResponseHeaderLayer,
};

pub use extract::{ClientIp, Json, ReceivedAt, RequestId};

use crate::{
    config::CorsConfig,
    error::{ApiError, Problem},
    platform::Platform,
};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_API_VERSION: HeaderName = HeaderName::from_static("x-api-version");
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A function's routes behind the edge: what `lambda_http::run` and the local gateway serve.
pub fn serve(platform: Arc<Platform>, routes: Router) -> Router {
    let cors = platform.config.cors.clone();
    routes
        .route_layer(middleware::from_fn(path_ids::check))
        .fallback(unknown_route)
        // The same answer as the catch-all's, whichever function a method reaches.
        .method_not_allowed_fallback(unknown_route)
        .layer(DefaultBodyLimit::max(platform.config.max_body_bytes))
        // Inside CORS (preflights are not limited), inside the edge (429s carry the request id).
        .layer(middleware::from_fn_with_state(
            platform.clone(),
            crate::ratelimit::layer::rate_limit,
        ))
        .layer(cors_layer(&cors))
        .layer(middleware::from_fn_with_state(
            Arc::new(cors),
            refuse_foreign_preflight,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains; preload"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(middleware::from_fn_with_state(platform, edge::edge))
}

/// What no route of this function matched: 405 with `Allow` when another method of the API
/// serves the path (the catch-all function answers for every function), else 404.
async fn unknown_route(method: Method, uri: http::Uri) -> Response {
    let allowed = routes::allowed_methods(uri.path());
    if allowed.is_empty() {
        return Problem::new(
            http::StatusCode::NOT_FOUND,
            "route-not-found",
            format!("no route matches {method} {}", uri.path()),
        )
        .into_response();
    }
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = Problem::new(
        http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{} accepts {allow}, not {method}", uri.path()),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// The request headers a page on an allowed origin may send, here and in the template's
/// `CorsConfiguration` (a test holds the two equal): `traceparent` and `tracestate` carry the
/// storefront's trace into ours (W3C Trace Context), `x-csrf-token` guards cookie sessions.
pub const CORS_ALLOW_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "if-match",
    "if-none-match",
    "idempotency-key",
    "x-request-id",
    "x-csrf-token",
    "traceparent",
    "tracestate",
];

fn cors_layer(cors: &CorsConfig) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(cors.allowed_origins.iter().cloned()))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(
            CORS_ALLOW_HEADERS
                .iter()
                .map(|name| HeaderName::from_static(name))
                .collect::<Vec<_>>(),
        )
        // A storefront on a listed origin sends and receives the refresh cookie of cookie-mode
        // sessions (`credentials: "include"`); unlisted origins get nothing, credentials or not.
        .allow_credentials(true)
        .expose_headers(cors.exposed_headers.clone())
        .max_age(Duration::from_secs(600))
}

/// tower-http answers a preflight from an unlisted origin with a 200 that merely lacks
/// `Access-Control-Allow-Origin`; say plainly that it is refused.
async fn refuse_foreign_preflight(
    State(cors): State<Arc<CorsConfig>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let is_preflight = request.method() == Method::OPTIONS
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if let Some(origin) = headers.get(header::ORIGIN).filter(|_| is_preflight)
        && !cors.allowed_origins.contains(origin)
    {
        return ApiError::Forbidden("this origin is not allowed to call the API".into())
            .into_response();
    }
    next.run(request).await
}

/// The router state of a function with a domain: the platform (for the shared extractors) and
/// the domain's entry point, built once per container. Derefs to the domain.
pub struct AppState<D> {
    pub platform: Arc<Platform>,
    pub domain: Arc<D>,
}

impl<D> Clone for AppState<D> {
    fn clone(&self) -> Self {
        Self {
            platform: self.platform.clone(),
            domain: self.domain.clone(),
        }
    }
}

impl<D> AppState<D> {
    pub fn new(platform: Arc<Platform>, domain: D) -> Self {
        Self {
            platform,
            domain: Arc::new(domain),
        }
    }
}

impl<D> std::ops::Deref for AppState<D> {
    type Target = D;
    fn deref(&self) -> &D {
        &self.domain
    }
}

impl<D> axum::extract::FromRef<AppState<D>> for Arc<Platform> {
    fn from_ref(state: &AppState<D>) -> Self {
        state.platform.clone()
    }
}
