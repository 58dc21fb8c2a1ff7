//! The health function: the probes of both runbooks.
//!
//! - `GET /api/v1/health/live` (alias `GET /api/health/liveness`): the process answers; no I/O,
//!   never rate limited.
//! - `GET /api/v1/health/ready` (alias `GET /api/health`): every DynamoDB table of the config
//!   (DescribeTable, `ACTIVE`) and the config secret (fetched and validated) are checked at once,
//!   each under its own timeout (`HEALTH_CHECK_TIMEOUT_MS`, default 1500), so the answer comes
//!   within the load balancer's 2 s even when a dependency hangs. 503 names the failed checks
//!   with a generic reason (the AWS error, which can carry ARNs and account ids, goes to the
//!   log only); also 503 until start-up has completed. A container reuses its report for
//!   `HEALTH_CACHE_MS` (default 5 s, one refresh at a time), and readiness spends the caller's
//!   IP rate-limit budget: a flood of probes costs neither AWS calls nor other callers' budget.

pub mod readiness;

use std::{convert::Infallible, sync::Arc};

use axum::{
    Json, Router,
    extract::{FromRef, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use lumi_shared::openapi::{ProblemDoc, TooManyRequests};
use lumi_shared::{
    Platform,
    cache::TtlCache,
    http::{ReceivedAt, RequestId},
};
use readiness::Report;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// The router's state: the platform and this container's last readiness report.
#[derive(Clone)]
pub struct Health {
    platform: Arc<Platform>,
    report: Arc<TtlCache<readiness::Report>>,
}

impl FromRef<Health> for Arc<Platform> {
    fn from_ref(health: &Health) -> Self {
        health.platform.clone()
    }
}

pub fn routes(platform: Arc<Platform>) -> Router {
    let report = Arc::new(TtlCache::new(platform.config.health_cache_ttl));
    Router::new()
        .route("/api/v1/health/live", get(live))
        .route("/api/health/liveness", get(live))
        .route("/api/v1/health/ready", get(ready))
        .route("/api/health", get(ready))
        .with_state(Health { platform, report })
}

/// This function's operations (`lumi_infra::openapi` merges every function's).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(paths(live, ready))]
    struct Doc;
    let mut doc = Doc::openapi();
    lumi_shared::openapi::alias(
        &mut doc,
        "/api/v1/health/live",
        "/api/health/liveness",
        "Alias",
    );
    lumi_shared::openapi::alias(&mut doc, "/api/v1/health/ready", "/api/health", "Alias");
    doc
}

/// The liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alive {
    #[schema(example = true)]
    pub ok: bool,
    #[schema(value_type = String, pattern = "^alive$", example = "alive")]
    pub status: &'static str,
}

/// Liveness (no I/O)
///
/// The process answers. Never rate limited, never touches a dependency.
#[utoipa::path(
    get,
    path = "/api/v1/health/live",
    tag = "health",
    operation_id = "healthLive",
    responses(
        (status = 200, description = "The process is alive.", body = Alive,
            example = json!({ "ok": true, "status": "alive" })),
    ),
)]
async fn live() -> Json<Alive> {
    Json(Alive {
        ok: true,
        status: "alive",
    })
}

/// Readiness (every table and the config secret, each within its timeout)
///
/// Every DynamoDB table of the configuration (`ACTIVE`) and the config secret are checked at
/// once, by a deadline counted from the request's arrival, so the answer comes within the load
/// balancer's 2 s. A container reuses its report for a few seconds; the probe spends the
/// caller's IP rate-limit budget. 503 names the failed checks with a generic reason.
#[utoipa::path(
    get,
    path = "/api/v1/health/ready",
    tag = "health",
    operation_id = "healthReady",
    responses(
        (status = 200, description = "Every dependency answered.", body = Report,
            example = json!({ "ok": true, "status": "ready", "checks": {
                "app_table": { "ok": true, "latency_ms": 12, "error": null },
                "config_secret": { "ok": true, "latency_ms": 20, "error": null } } })),
        (status = 429, response = TooManyRequests),
        (status = 503, description = "Not ready: a check failed or timed out (`application/json`, the report with the request id), start-up has not completed, or the rate limiter's store is unavailable (`application/problem+json`).",
            content(
                (Report = "application/json", example = json!({ "ok": false, "status": "not_ready",
                    "failed": ["app_table"], "checks": { "app_table": { "ok": false, "latency_ms": 1500, "error": "timeout" } },
                    "request_id": "3f1c2a9e-5b7d-4e21-9c0a-7d9e8f6a1b2c" })),
                (ProblemDoc = "application/problem+json"),
            )),
    ),
)]
async fn ready(
    State(health): State<Health>,
    request_id: RequestId,
    ReceivedAt(received): ReceivedAt,
) -> Response {
    // The checks' timeout counts from the request's arrival: the time the rate limit took
    // comes out of it, so the answer stays within the load balancer's 2 s.
    let deadline = received + health.platform.config.health_check_timeout;
    let report = if health.platform.is_started() {
        let platform = &health.platform;
        match health
            .report
            .get_with(|| async {
                Ok::<_, Infallible>(readiness::check_by(platform, deadline).await)
            })
            .await
        {
            Ok(report) => report,
            Err(never) => match never {},
        }
    } else {
        // Not cached: the first report after start-up must be a real one.
        Arc::new(readiness::check(&health.platform).await)
    };
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = readiness::Report::clone(&report);
    if !report.ok {
        body.request_id = Some(request_id.0);
    }
    (status, Json(body)).into_response()
}
