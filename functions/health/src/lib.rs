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
use lumi_shared::{
    Platform,
    cache::TtlCache,
    http::{ReceivedAt, RequestId},
};
use serde_json::json;

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

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "ok": true, "status": "alive" }))
}

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
    let mut body = serde_json::to_value(&*report).unwrap_or_else(|_| json!({ "ok": false }));
    if !report.ok {
        body["request_id"] = json!(request_id.0);
    }
    (status, Json(body)).into_response()
}
