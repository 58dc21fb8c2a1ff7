//! The HTTP functions the local gateway can host, by binary name: each entry is the same router
//! builder its `main.rs` hands to `lambda_http`. A new function adds one line here and its
//! resource in `template.yaml`.

use std::sync::Arc;

use axum::Router;
use lumi_shared::Platform;

pub type RoutesFn = fn(Arc<Platform>) -> Router;

pub fn http_functions() -> Vec<(&'static str, RoutesFn)> {
    vec![
        ("health", health::routes),
        ("auth", auth::routes),
        ("orders", orders::routes),
        ("admin", admin::routes),
    ]
}

pub fn routes_of(binary: &str) -> Option<RoutesFn> {
    http_functions()
        .into_iter()
        .find(|(name, _)| *name == binary)
        .map(|(_, routes)| routes)
}
