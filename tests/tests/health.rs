//! The health function end to end: real HTTP through the local gateway, real DynamoDB and
//! Secrets Manager calls against moto.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use lumi_tests::{TestApp, assert_problem, hanging_endpoint};
use serde_json::Value;

#[tokio::test]
async fn liveness_answers_alive_on_both_paths() {
    let app = TestApp::spawn().await;
    for path in ["/api/v1/health/live", "/api/health/liveness"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, serde_json::json!({ "ok": true, "status": "alive" }));
    }
}

#[tokio::test]
async fn readiness_is_200_with_every_check_on_both_paths() {
    let app = TestApp::spawn().await;
    for path in ["/api/v1/health/ready", "/api/health"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["ok"], true);
        assert_eq!(body["status"], "ready");
        for check in [
            "dynamodb:AppTable",
            "dynamodb:RateLimitTable",
            "secretsmanager:ConfigSecret",
        ] {
            assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
            assert!(body["checks"][check]["latency_ms"].is_u64());
            assert!(body["checks"][check]["error"].is_null());
        }
    }
}

#[tokio::test]
async fn readiness_is_503_naming_dynamodb_when_a_table_is_missing() {
    let app = TestApp::spawn().await;
    app.dynamodb()
        .delete_table()
        .table_name(app.resource("AppTable"))
        .send()
        .await
        .unwrap();

    let response = app.get("/api/v1/health/ready").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ok"], false);
    assert_eq!(body["failed"], serde_json::json!(["dynamodb:AppTable"]));
    // A generic reason: the AWS error (table ARN, account id) goes to the log, not the caller.
    assert_eq!(body["checks"]["dynamodb:AppTable"]["error"], "unavailable");
    let text = body.to_string();
    let table = app.resource("AppTable");
    for leak in [table.as_str(), "ResourceNotFound", "arn:", "123456789012"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    assert!(
        lumi_tests::logs()
            .lines()
            .iter()
            .any(|l| l.contains("readiness check failed") && l.contains(&table)),
        "the detail is logged for the operator"
    );
    assert_eq!(body["checks"]["secretsmanager:ConfigSecret"]["ok"], true);
}

#[tokio::test]
async fn readiness_is_503_naming_dynamodb_when_moto_is_stopped() {
    let mut app = TestApp::builder()
        .own_moto()
        .env("HEALTH_CACHE_MS", "0")
        .spawn()
        .await;
    assert_eq!(app.get("/api/v1/health/ready").await.status(), 200);

    app.moto.as_mut().unwrap().stop();
    let response = app.get("/api/v1/health/ready").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    let failed: Vec<&str> = body["failed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(failed.contains(&"dynamodb:AppTable"), "{body}");
    assert!(failed.contains(&"secretsmanager:ConfigSecret"), "{body}");
    // Liveness does no I/O and stays up.
    assert_eq!(app.get("/api/v1/health/live").await.status(), 200);
}

#[tokio::test]
async fn a_container_reuses_its_readiness_report_for_a_few_seconds() {
    let app = TestApp::builder().counting_aws_calls().spawn().await;
    let before = app.aws_calls("DescribeTable");
    for _ in 0..10 {
        assert_eq!(app.get("/api/v1/health/ready").await.status(), 200);
    }
    // Ten probes, one report: one DescribeTable per table, not ten.
    let tables = app.platforms["health"].config.tables.all().len();
    assert_eq!(app.aws_calls("DescribeTable") - before, tables);
}

#[tokio::test]
async fn a_readiness_flood_spends_the_ip_budget_and_liveness_stays_up() {
    let app = TestApp::builder()
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let mut settings = lumi_shared::settings::SystemSettings::default();
    settings.rate_limits.ip.limit = 5;
    app.put_settings(&settings).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(app.get("/api/v1/health/ready").await.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    let refused = app.get("/api/health").await;
    assert_eq!(assert_problem(refused, 429).await["policy"], "ip");
    assert_eq!(app.get("/api/v1/health/live").await.status(), 200);
}

#[tokio::test]
async fn readiness_answers_within_two_seconds_when_a_dependency_hangs() {
    let hung = hanging_endpoint().await;
    // Readiness spends the IP budget first: with the deployed limiter timeout (250 ms; the
    // local stack's is longer) and the checks' 1500 ms the answer stays within 2 s.
    let app = TestApp::builder()
        .env("AWS_ENDPOINT_URL", &hung)
        .env("RATE_LIMIT_TIMEOUT_MS", "250")
        .spawn()
        .await;

    let started = Instant::now();
    let response = app.get("/api/v1/health/ready").await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(
        elapsed < Duration::from_secs(2),
        "answered after {elapsed:?}"
    );
    let body: Value = response.json().await.unwrap();
    for check in ["dynamodb:AppTable", "secretsmanager:ConfigSecret"] {
        assert_eq!(body["checks"][check]["ok"], false);
    }
    assert!(body["request_id"].is_string());
}

#[tokio::test]
async fn readiness_is_503_until_startup_has_completed() {
    let app = TestApp::spawn().await;
    let platform = &app.platforms["health"];
    let config = platform.config.clone();
    let fresh = lumi_shared::Platform::new(config).await;
    // Built but not started: what a container is before its bootstrap finishes.
    let report = health::readiness::check(&fresh).await;
    assert!(!report.ok);
    assert_eq!(report.status, "starting");
    assert_eq!(report.failed, ["startup"]);
}

#[tokio::test]
async fn every_request_counts_in_lumi_http_requests_total() {
    let app = TestApp::spawn().await;
    app.get("/api/v1/health/live").await;
    app.get("/no/such/route").await;
    let docs = app.metrics.json();
    let count = |route: &str, class: &str| {
        docs.iter()
            .filter(|d| {
                d["route"] == route && d["status_class"] == class && d["function"] == "health"
            })
            .filter_map(|d| d["lumi_http_requests_total"].as_f64())
            .sum::<f64>()
    };
    assert_eq!(count("GET /api/v1/health/live", "2xx"), 1.0);
    assert_eq!(count("unmatched", "4xx"), 1.0);
    let doc = docs
        .iter()
        .find(|d| d["route"] == "GET /api/v1/health/live")
        .unwrap();
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
        "lumi_http_requests_total"
    );
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problems() {
    let app = TestApp::spawn().await;
    let body = assert_problem(app.get("/api/v1/nothing/here").await, 404).await;
    assert_eq!(
        body["type"],
        "https://lumi-commerce.com/problems/route-not-found"
    );
    assert_problem(app.get("/").await, 404).await;
    let response = app
        .http
        .delete(app.url("/api/v1/health/live"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 405).await;
}
