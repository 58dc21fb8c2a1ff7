//! Metrics as operators see them: every log and EMF line tagged with the service, stage and
//! region, in the stack's own namespace; and the runbook's "structured metrics endpoint
//! (Prometheus) /metrics", which reads the stack's metrics back from CloudWatch (the local
//! stack's, where the harness publishes the EMF lines as CloudWatch Logs does in AWS).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use lumi_shared::settings::SystemSettings;
use lumi_tests::{TestApp, assert_problem, logs};
use serde_json::Value;

/// One sample of the exposition text: name and labels.
type Key = (String, BTreeMap<String, String>);

/// Parses the exposition text with the Prometheus client's own text parser (the venv's
/// `prometheus_client`, pinned in `infra/requirements.txt`): `(family, type)` of every family
/// and every sample's value. Panics if it does not parse.
fn parse_exposition(text: &str) -> (Vec<(String, String)>, BTreeMap<Key, f64>) {
    use std::io::Write as _;
    let python = lumi_infra::workspace_root().join(".venv/bin/python");
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {"families": [], "samples": []}
for family in text_string_to_metric_families(sys.stdin.read()):
    out["families"].append([family.name, family.type])
    for sample in family.samples:
        out["samples"].append([sample.name, sample.labels, sample.value])
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the venv's python (make venv)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the Prometheus parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let families = parsed["families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f[0].as_str().unwrap().to_owned(),
                f[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let samples = parsed["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            (
                (s[0].as_str().unwrap().to_owned(), labels),
                s[2].as_f64().unwrap(),
            )
        })
        .collect();
    (families, samples)
}

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

/// `GET /api/v1/cart`'s status: a request on the customer budget.
async fn cart_status(app: &TestApp, token: &str) -> u16 {
    app.call(
        reqwest::Method::GET,
        "/api/v1/cart",
        Some(token),
        None,
        None,
    )
    .await
    .status()
    .as_u16()
}

/// An app whose customers have a budget of `limit` requests on the customer routes.
async fn app_with_customer_budget(limit: u32) -> TestApp {
    let app = TestApp::builder()
        .publishing_metrics()
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let mut settings = SystemSettings::default();
    settings.rate_limits.customer.limit = limit;
    app.put_settings(&settings).await;
    app
}

#[tokio::test]
async fn after_a_checkout_and_a_429_the_metrics_endpoint_shows_both_with_their_labels() {
    let app = Box::pin(app_with_customer_budget(4)).await;
    let sku = format!("{}-ONI", lumi_tests::unique_prefix());
    app.product(&[(&sku, 450, 10)]).await;
    let customer = app.customer_token().await;
    // Two customer requests (add to cart, checkout) of the budget of 4.
    let order = app.place_order_json(&customer, &[(&sku, 2)]).await;
    assert!(order["reference"].is_string(), "{order}");
    // Two more are admitted, the fifth is refused.
    for _ in 0..2 {
        assert_eq!(cart_status(&app, &customer).await, 200);
    }
    assert_eq!(cart_status(&app, &customer).await, 429);

    app.flush_metrics().await;
    let scrape_token = app.scrape_token().await;
    let response = app.scrape(Some(&scrape_token)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let (families, samples) = parse_exposition(&text);

    assert!(
        families.contains(&("order_created_total".into(), "gauge".into())),
        "{families:?}"
    );
    assert!(families.contains(&("lumi_rate_limited_total".into(), "gauge".into())));
    assert_eq!(
        samples.get(&key(
            "order_created_total",
            &[("function", "orders"), ("provider", "manual")]
        )),
        Some(&1.0),
        "{text}"
    );
    assert_eq!(
        samples.get(&key(
            "lumi_rate_limited_total",
            &[("function", "orders"), ("scope", "customer")]
        )),
        Some(&1.0),
        "{text}"
    );
    // The roll-ups the alarms read are not exposed a second time.
    assert!(
        !samples
            .keys()
            .any(|(name, labels)| { name == "order_created_total" && labels.len() < 2 })
    );
    // Requests by route and status class, the refused ones among them.
    assert_eq!(
        samples.get(&key(
            "lumi_http_requests_total",
            &[
                ("function", "orders"),
                ("route", "POST /api/v1/orders"),
                ("status_class", "2xx")
            ]
        )),
        Some(&1.0)
    );
    assert_eq!(
        samples.get(&key(
            "lumi_http_requests_total",
            &[
                ("function", "orders"),
                ("route", "GET /api/v1/cart"),
                ("status_class", "4xx")
            ]
        )),
        Some(&1.0)
    );
    assert_eq!(
        samples.get(&key("lumi_metrics_window_seconds", &[])),
        Some(&3600.0)
    );
    assert!(
        text.contains("not a monotonic counter"),
        "the HELP is honest"
    );

    // An admin's access token reads them too (the same cached answer).
    let admin = app.admin_token().await;
    let response = app.scrape(Some(&admin)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), text);
}

#[tokio::test]
async fn the_metrics_endpoint_needs_the_scrape_token_or_an_admin() {
    let app = TestApp::spawn().await;
    let refused = assert_problem(app.scrape(None).await, 401).await;
    assert!(refused["detail"].as_str().unwrap().contains("Bearer"));
    assert_problem(app.scrape(Some("not-the-scrape-token")).await, 401).await;
    let scrape_token = app.scrape_token().await;
    // A token that only starts like the right one is as wrong as any other.
    assert_problem(app.scrape(Some(&scrape_token[..20])).await, 401).await;
    let customer = app.customer_token().await;
    assert_problem(app.scrape(Some(&customer)).await, 403).await;
    let response = app.scrape(Some(&scrape_token)).await;
    assert_eq!(response.status(), 200);
    let (families, _) = parse_exposition(&response.text().await.unwrap());
    assert!(families.contains(&("lumi_metrics_window_seconds".into(), "gauge".into())));
}

/// The runbook's "tag streams with service, environment and region": every log line and every
/// EMF line of a request carries them, and the EMF lines are in this stack's namespace only.
#[tokio::test]
async fn log_and_metric_lines_carry_the_tags_and_the_stacks_namespace() {
    let app = TestApp::spawn().await;
    let request_id = format!("{}-tags", lumi_tests::unique_prefix());
    let response = app
        .http
        .get(app.url("/api/v1/health/ready"))
        .header("x-request-id", &request_id)
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.status(), 200);

    let log_lines: Vec<Value> = logs()
        .json()
        .into_iter()
        .filter(|line| line["request_id"] == request_id.as_str())
        .collect();
    assert!(!log_lines.is_empty());
    for line in &log_lines {
        assert_eq!(line["service"], "lumi", "{line}");
        assert_eq!(line["stage"], "local", "{line}");
        assert_eq!(line["region"], "us-east-1", "{line}");
        if line["type"] != "span" {
            // The request span names the function that served it (the gateway hosts them all).
            assert_eq!(line["function"], "health", "{line}");
        }
    }

    let emf: Vec<Value> = app
        .metrics
        .json()
        .into_iter()
        .filter(|line| line["request_id"] == request_id.as_str())
        .collect();
    assert!(!emf.is_empty());
    for line in &emf {
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            format!("Lumi/{}", app.stack.prefix)
        );
        assert_eq!(
            (&line["service"], &line["stage"], &line["region"]),
            (
                &Value::from("lumi"),
                &Value::from("local"),
                &Value::from("us-east-1")
            )
        );
        let dimensions = line["_aws"]["CloudWatchMetrics"][0]["Dimensions"].to_string();
        assert!(
            !dimensions.contains("service") && !dimensions.contains("stage"),
            "tags are not dimensions: {dimensions}"
        );
    }
}
