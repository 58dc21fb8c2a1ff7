//! The API reference `make dev` serves at `/docs` (Redoc over `docs/openapi.yaml`) renders every
//! operation of the document, checked in headless Chromium: the page, the document and the
//! pinned Redoc bundle all come from the local gateway, the DOM is read after Redoc has run.
//!
//! Without a `chromium` on the PATH the test says so and passes; `make test` installs Chromium
//! and sets `LUMI_REQUIRE_CHROMIUM=1`, which turns the skip into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, time::Duration};

use lumi_tests::{TestApp, unique_prefix};

/// Every `operationId` of the checked-in document.
fn operation_ids() -> BTreeSet<String> {
    let path = lumi_infra::workspace_root().join("docs/openapi.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let root: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let mut ids = BTreeSet::new();
    for (_, item) in root["paths"].as_mapping().unwrap() {
        for (_, operation) in item.as_mapping().unwrap() {
            if let Some(id) = operation["operationId"].as_str() {
                ids.insert(id.to_owned());
            }
        }
    }
    ids
}

/// The DOM of `url` once its scripts have run (Chromium's virtual time lets the page load the
/// document and render before the dump; no wall-clock wait).
async fn rendered_dom(chromium: &str, url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("lumi-chromium-{}", unique_prefix()));
    let run = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=30000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("chromium did not finish within 120 s")
        .expect("running chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn chromium() -> Option<String> {
    let found = std::env::var("LUMI_CHROMIUM").ok().or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|candidate| candidate.is_file())
                .map(|path| path.display().to_string())
        })
    });
    if found.is_none() {
        assert!(
            std::env::var_os("LUMI_REQUIRE_CHROMIUM").is_none(),
            "LUMI_REQUIRE_CHROMIUM is set but no chromium is on the PATH (make chromium)"
        );
        eprintln!("skipped: no chromium on the PATH (`make chromium` installs it)");
    }
    found
}

#[tokio::test]
async fn the_api_reference_renders_every_operation_of_the_document() {
    let app = TestApp::spawn().await;

    // The page and what it loads, from the gateway.
    for (path, content_type) in [
        ("/docs", "text/html; charset=utf-8"),
        ("/docs/openapi.yaml", "application/yaml"),
        (
            "/docs/redoc.standalone.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "{path} (make dev fetches the Redoc bundle)"
        );
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
    }

    let Some(chromium) = chromium() else { return };
    let dom = rendered_dom(&chromium, &app.url("/docs")).await;
    assert!(dom.contains("Lumi API"), "the document's title is rendered");
    let ids = operation_ids();
    assert!(ids.len() > 50, "{} operations in the document", ids.len());
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| !dom.contains(&format!("id=\"operation/{id}\"")))
        .collect();
    assert!(missing.is_empty(), "operations not rendered: {missing:?}");
}
