//! The health function: the probes of both runbooks.
//!
//! - `GET /api/v1/health/live` (alias `GET /api/health/liveness`): the process answers; no I/O.
//! - `GET /api/v1/health/ready` (alias `GET /api/health`): every DynamoDB table of the config
//!   (DescribeTable, `ACTIVE`) and the config secret (fetched and validated) are checked at once,
//!   each under its own timeout (`HEALTH_CHECK_TIMEOUT_MS`, default 1500), so the answer comes
//!   within the load balancer's 2 s even when a dependency hangs. 503 names the failed checks;
//!   also 503 until start-up has completed.

pub mod readiness;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use lumi_shared::{Platform, http::RequestId};
use serde_json::json;

pub fn routes(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/v1/health/live", get(live))
        .route("/api/health/liveness", get(live))
        .route("/api/v1/health/ready", get(ready))
        .route("/api/health", get(ready))
        .with_state(platform)
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "ok": true, "status": "alive" }))
}

async fn ready(State(platform): State<Arc<Platform>>, request_id: RequestId) -> Response {
    let report = readiness::check(&platform).await;
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::to_value(&report).unwrap_or_else(|_| json!({ "ok": false }));
    if !report.ok {
        body["request_id"] = json!(request_id.0);
    }
    (status, Json(body)).into_response()
}
