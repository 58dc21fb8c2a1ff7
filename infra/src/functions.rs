//! The functions the local stack can run, by binary name: the HTTP functions (each entry is the
//! same router builder its `main.rs` hands to `lambda_http`) and the event-fed ones the local
//! scheduler (or, for the rotation function, a stand-in for Secrets Manager) invokes (the same
//! handler `lambda_runtime` calls). A new function adds one line here and its resource in
//! `template.yaml`.

use std::sync::Arc;

use axum::Router;
use futures::future::BoxFuture;
use lumi_shared::{Platform, bootstrap::EventHandler as _};

pub type RoutesFn = fn(Arc<Platform>) -> Router;
/// One invocation of an event-fed function with a JSON event.
pub type EventFn =
    fn(Arc<Platform>, serde_json::Value) -> BoxFuture<'static, anyhow::Result<serde_json::Value>>;

pub fn http_functions() -> Vec<(&'static str, RoutesFn)> {
    vec![
        ("health", health::routes),
        ("auth", auth::routes),
        ("orders", orders::routes),
        ("admin", admin::routes),
        ("images", images::routes),
    ]
}

pub fn routes_of(binary: &str) -> Option<RoutesFn> {
    http_functions()
        .into_iter()
        .find(|(name, _)| *name == binary)
        .map(|(_, routes)| routes)
}

pub fn event_functions() -> Vec<(&'static str, EventFn)> {
    vec![
        ("backup", backup_event),
        ("secret-rotation", secret_rotation_event),
        ("health-probe", health_probe_event),
    ]
}

pub fn event_handler_of(binary: &str) -> Option<EventFn> {
    event_functions()
        .into_iter()
        .find(|(name, _)| *name == binary)
        .map(|(_, handler)| handler)
}

fn backup_event(
    platform: Arc<Platform>,
    event: serde_json::Value,
) -> BoxFuture<'static, anyhow::Result<serde_json::Value>> {
    Box::pin(async move {
        let event = serde_json::from_value(event)?;
        backup::Jobs::new(platform)
            .handle(event)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    })
}

/// One probe invocation (two rounds), as the schedule runs it; locally `PROBE_BASE_URL` is the
/// gateway's address (see `schedule::local_api_urls`).
fn health_probe_event(
    platform: Arc<Platform>,
    event: serde_json::Value,
) -> BoxFuture<'static, anyhow::Result<serde_json::Value>> {
    Box::pin(async move {
        let event = serde_json::from_value(event)?;
        health_probe::Probe::new(platform)
            .handle(event)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    })
}

/// One rotation step, as Secrets Manager invokes the function (no local scheduler calls it: the
/// tests and tools stand in for Secrets Manager).
fn secret_rotation_event(
    platform: Arc<Platform>,
    event: serde_json::Value,
) -> BoxFuture<'static, anyhow::Result<serde_json::Value>> {
    Box::pin(async move {
        let event = serde_json::from_value(event)?;
        let outcome = secret_rotation::Rotation::new(platform)
            .handle(event)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(serde_json::to_value(outcome)?)
    })
}
