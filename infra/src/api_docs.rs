//! The API reference at `/docs` of the local gateway (`make dev`): Redoc rendering
//! `docs/openapi.yaml`. The page is `docs/api/index.html`; the Redoc bundle is the pinned npm
//! release `make` fetches into `.tools/` (checked against its published SHA-512). Files are read
//! at each request, so an edited document shows on reload.

use std::path::{Path, PathBuf};

use axum::{
    Router,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

/// Redoc's release, as in the Makefile's `REDOC_VERSION`.
pub const REDOC_VERSION: &str = "2.5.4";

/// Where `make` puts the Redoc bundle.
pub fn redoc_bundle(root: &Path) -> PathBuf {
    root.join(".tools")
        .join(format!("redoc-{REDOC_VERSION}"))
        .join("redoc.standalone.js")
}

/// `/docs`, `/docs/openapi.yaml` and `/docs/redoc.standalone.js`, from files under `root`.
pub fn router(root: PathBuf) -> Router {
    let page = root.join("docs/api/index.html");
    let document = root.join("docs/openapi.yaml");
    let bundle = redoc_bundle(&root);
    Router::new()
        .route(
            "/docs",
            get(move || file(page.clone(), "text/html; charset=utf-8")),
        )
        .route(
            "/docs/openapi.yaml",
            get(move || file(document.clone(), "application/yaml")),
        )
        .route(
            "/docs/redoc.standalone.js",
            get(move || file(bundle.clone(), "text/javascript; charset=utf-8")),
        )
}

async fn file(path: PathBuf, content_type: &'static str) -> Response {
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => (
            StatusCode::NOT_FOUND,
            format!(
                "{} is missing ({error}); `make dev` fetches the Redoc bundle",
                path.display()
            ),
        )
            .into_response(),
    }
}
