//! Internal errors reach the Sentry-compatible reporter named by `ERROR_REPORTING_DSN` or by the
//! runtime setting `errorReportingDsn` (the runbook's "Sentry DSN via DB setting or env"), once
//! each, with the request id; client errors are not reported; a reporter that is down changes
//! nothing for the caller. The refund-email worker's failed records (with the SQS message id)
//! and the backup function's failed jobs (with the event id) reach it the same way, without
//! the message's contents. (How the setting is stored sealed: `settings_secrets.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::AttributeValue;
use axum::{extract::State, http::HeaderMap, routing::post};
use lumi_shared::{
    Platform,
    bootstrap::{EventHandler, SqsHandler},
};
use lumi_tests::{TestApp, assert_problem, unique_prefix};
use tokio::sync::mpsc;

/// One envelope as the reporter received it.
#[derive(Debug)]
struct Received {
    path: String,
    auth: String,
    lines: Vec<serde_json::Value>,
}

/// A Sentry stand-in on loopback: records every envelope, answers 200.
async fn reporter() -> (String, mpsc::UnboundedReceiver<Received>) {
    let (sent, received) = mpsc::unbounded_channel();
    async fn envelope(
        State(sent): State<Arc<mpsc::UnboundedSender<Received>>>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: String,
    ) {
        let lines = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let auth = headers["x-sentry-auth"].to_str().unwrap().to_owned();
        sent.send(Received {
            path: uri.path().to_owned(),
            auth,
            lines,
        })
        .unwrap();
    }
    let router = axum::Router::new()
        .route("/api/{project}/envelope/", post(envelope))
        .with_state(Arc::new(sent));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (address.to_string(), received)
}

/// A site-content block stored without its `content`: reading it is an internal error.
async fn broken_block(app: &TestApp) -> String {
    let key = format!("broken-{}", unique_prefix().to_lowercase());
    app.dynamodb()
        .put_item()
        .table_name(app.resource("AppTable"))
        .item("pk", AttributeValue::S(format!("SITE_CONTENT#{key}")))
        .item("sk", AttributeValue::S("CONTENT".into()))
        .item("key", AttributeValue::S(key.clone()))
        .send()
        .await
        .unwrap();
    format!("/api/v1/site-content/{key}")
}

#[tokio::test]
async fn internal_errors_go_to_the_dsn_from_the_environment_or_the_settings() {
    let (address, mut received) = reporter().await;
    let app = TestApp::builder()
        .env("ERROR_REPORTING_DSN", &format!("http://envkey@{address}/7"))
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let broken = broken_block(&app).await;

    // From the environment.
    let failed = assert_problem(app.get(&broken).await, 500).await;
    let report = received
        .try_recv()
        .expect("reported before the answer left");
    assert_eq!(report.path, "/api/7/envelope/");
    assert!(report.auth.contains("sentry_key=envkey"), "{}", report.auth);
    let event = &report.lines[2];
    assert_eq!(event["tags"]["request_id"], failed["request_id"]);
    assert_eq!(event["tags"]["route"], "GET /api/v1/site-content/{key}");
    assert_eq!(event["level"], "error");
    assert!(
        event["message"]["formatted"]
            .as_str()
            .unwrap()
            .contains("content"),
        "the chain names what failed: {event}"
    );
    assert!(received.try_recv().is_err(), "one report per error");

    // A client error is not reported.
    assert_problem(app.get("/api/v1/site-content/nothing-here").await, 404).await;
    assert!(received.try_recv().is_err());

    // The runtime setting, set through the admin API (stored sealed), wins over the
    // environment, without a redeploy.
    let admin = lumi_tests::access_token(&app.signed_in_admin().await);
    let put = |dsn: String, etag: &'static str| {
        app.http
            .put(app.url("/api/v1/admin/settings"))
            .bearer_auth(&admin)
            .header("if-match", etag)
            .json(&serde_json::json!({ "errorReportingDsn": dsn }))
            .send()
    };
    let set = put(format!("http://dbkey@{address}/8"), "\"v0\"")
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_problem(app.get(&broken).await, 500).await;
    let report = received.try_recv().unwrap();
    assert_eq!(report.path, "/api/8/envelope/");
    assert!(report.auth.contains("sentry_key=dbkey"));

    // The empty string turns reporting off.
    let off = put(String::new(), "\"v1\"").await.unwrap();
    assert_eq!(off.status(), 200);
    assert_problem(app.get(&broken).await, 500).await;
    assert!(received.try_recv().is_err());
}

#[tokio::test]
async fn a_reporter_that_is_down_changes_nothing_for_the_caller() {
    // A port nobody listens on: bind, learn the port, close.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let app = TestApp::builder()
        .env("ERROR_REPORTING_DSN", &format!("http://k@{closed}/1"))
        .spawn()
        .await;
    let broken = broken_block(&app).await;
    let body = assert_problem(app.get(&broken).await, 500).await;
    assert_eq!(body["type"], "https://lumi-commerce.com/problems/internal");
    assert!(
        lumi_tests::logs()
            .lines()
            .iter()
            .any(|l| l.contains("error report not sent")
                && l.contains(body["request_id"].as_str().unwrap())),
        "the failed report is logged with the request id"
    );
}

#[tokio::test]
async fn the_settings_api_refuses_a_dsn_that_is_not_one() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in_admin().await;
    let admin = admin["access_token"].as_str().unwrap();
    let put = |dsn: serde_json::Value| {
        app.http
            .put(app.url("/api/v1/admin/settings"))
            .bearer_auth(admin)
            .header("if-match", "\"v0\"")
            .json(&serde_json::json!({ "errorReportingDsn": dsn }))
            .send()
    };
    let body = assert_problem(put("sentry.io/123".into()).await.unwrap(), 422).await;
    assert_eq!(body["errors"][0]["field"], "errorReportingDsn");
    assert_problem(put(42.into()).await.unwrap(), 422).await;
    let ok = put("https://abc@o1.ingest.sentry.io/99".into())
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(
        ok["errorReportingDsn"], "https://****@o1.ingest.sentry.io/99",
        "shown masked"
    );
}

fn sqs_record(message_id: &str, body: &str, receives: u32) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(message_id.into());
    record.body = Some(body.into());
    record
        .attributes
        .insert("ApproximateReceiveCount".into(), receives.to_string());
    record
}

#[tokio::test]
async fn the_refund_email_workers_failed_records_are_reported_once_without_their_contents() {
    let (address, mut received) = reporter().await;
    let app = TestApp::spawn().await;
    let dsn = format!("http://workerkey@{address}/11");
    // A sender SES refuses: every send fails.
    let worker = app.refund_worker(&[
        ("ERROR_REPORTING_DSN", dsn.as_str()),
        ("REFUND_EMAIL_FROM", "unverified@nowhere.example"),
    ]);
    let id = unique_prefix();
    let recipient = format!("{}@example.com", id.to_lowercase());
    let email = lumi_commerce::outbox::RefundEmail {
        schema: 1,
        kind: "order_refund".into(),
        idempotency_id: id.clone(),
        order_reference: "LUMI-SECRET-ITEMS".into(),
        payment_id: format!("pay_{id}"),
        amount_minor: 990,
        currency: "EUR".into(),
        recipient: recipient.clone(),
        locale: "en".into(),
        reason: "the blue teapot".into(),
    };
    let mut batch = SqsEvent::default();
    batch.records = vec![
        // Its last receive: recorded failed, on its way to the dead-letter queue.
        sqs_record("m-last", &serde_json::to_string(&email).unwrap(), 5),
        // Unreadable, and quoting an address in what can be read of it.
        sqs_record(
            "m-poison",
            r#"{"schema":1,"kind":"order_refund","recipient":"poison@example.com","#,
            1,
        ),
    ];
    let response = worker.handle(batch).await;
    assert_eq!(response.batch_item_failures.len(), 2);

    let mut reports = Vec::new();
    while let Ok(report) = received.try_recv() {
        reports.push(report);
    }
    assert_eq!(
        reports.len(),
        2,
        "one report per failed record: {reports:?}"
    );
    let event_of = |message_id: &str| {
        reports
            .iter()
            .map(|r| &r.lines[2])
            .find(|e| e["tags"]["message_id"] == message_id)
            .unwrap_or_else(|| panic!("no report of {message_id}: {reports:?}"))
            .clone()
    };
    for report in &reports {
        assert_eq!(report.path, "/api/11/envelope/");
        let event = &report.lines[2];
        assert_eq!(event["tags"]["function"], "refund-email");
        assert_eq!(event["server_name"], "refund-email");
        let text = event.to_string();
        for private in [
            recipient.as_str(),
            "poison@example.com",
            "unverified@nowhere.example",
            "LUMI-SECRET-ITEMS",
            "blue teapot",
        ] {
            assert!(!text.contains(private), "{private} reported: {text}");
        }
    }
    let last = event_of("m-last");
    assert!(
        last["message"]["formatted"]
            .as_str()
            .unwrap()
            .contains("dead-letter queue"),
        "{last}"
    );
    let poison = event_of("m-poison");
    assert!(
        poison["message"]["formatted"]
            .as_str()
            .unwrap()
            .contains("unreadable"),
        "{poison}"
    );
}

#[tokio::test]
async fn a_failed_backup_job_is_reported_once_and_still_fails_the_invocation() {
    let (address, mut received) = reporter().await;
    let app = TestApp::spawn().await;
    let mut vars = app.stack.function_env("backup").unwrap();
    vars.set(
        "ERROR_REPORTING_DSN",
        format!("http://backupkey@{address}/12"),
    );
    let config = lumi_shared::Config::from_env("backup", &vars).unwrap();
    let jobs = backup::Jobs::new(Platform::build(
        config,
        Arc::new(app.metrics.clone()),
        Arc::new(lumi_shared::clock::SystemClock),
    ));
    // A fresh stack has no backup: the restore check has nothing to restore.
    let event = serde_json::json!({
        "version": "0",
        "id": "evt-restore-1",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-01T04:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": { "job": "restore-check" }
    });
    let error = jobs
        .handle(serde_json::from_value(event).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("no complete backup"), "{error}");

    let report = received.try_recv().expect("reported before the job ended");
    assert_eq!(report.path, "/api/12/envelope/");
    let event = &report.lines[2];
    assert_eq!(event["tags"]["function"], "backup");
    assert_eq!(event["tags"]["event_id"], "evt-restore-1");
    assert_eq!(event["tags"]["route"], "backup job restore-check");
    assert!(
        event["message"]["formatted"]
            .as_str()
            .unwrap()
            .contains("no complete backup"),
        "{event}"
    );
    assert!(received.try_recv().is_err(), "one report per failure");
    assert_eq!(
        app.metric_total("lumi_restore_checks_total", &[("outcome", "failure")]),
        1.0,
        "the outcome is counted as before"
    );
}

#[tokio::test]
async fn a_reporter_that_is_down_fails_no_record_and_no_job_more_than_before() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let app = TestApp::spawn().await;
    let dsn = format!("http://k@{closed}/1");
    let worker = app.refund_worker(&[("ERROR_REPORTING_DSN", dsn.as_str())]);
    let mut batch = SqsEvent::default();
    batch.records = vec![sqs_record("m-down", "not json", 1)];
    let response = worker.handle(batch).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m-down"], "the record's own outcome, nothing more");
    assert!(
        lumi_tests::logs()
            .lines()
            .iter()
            .any(|l| l.contains("error report not sent") && l.contains("m-down")),
        "the failed report is logged with the message id"
    );
}
