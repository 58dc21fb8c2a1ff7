//! The health probe end to end: real HTTP from the probe to the local gateway (as it calls API
//! Gateway in AWS), real readiness checks against moto, the outcomes read back as the EMF lines
//! the readiness alarm is built on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use health_probe::{Outcome, PROBE_LATENCY_MS, PROBE_TOTAL, Probe, ProbeResult, Target};
use lumi_shared::{Platform, clock::SystemClock, telemetry::CapturedLines};
use lumi_tests::{TestApp, hanging_endpoint};
use serde_json::{Value, json};

/// The probe as Lambda would build it from the template's environment, pointed at `base_url`,
/// its metrics captured on their own (the gateway's go to the app's sink).
fn probe_at(app: &TestApp, base_url: &str, interval_seconds: &str) -> (Probe, CapturedLines) {
    let mut env = app.stack.function_env("health-probe").unwrap();
    env.set("PROBE_BASE_URL", base_url);
    env.set("PROBE_INTERVAL_SECONDS", interval_seconds);
    let config = lumi_shared::Config::from_env("health-probe", &env).unwrap();
    let metrics = CapturedLines::default();
    let platform = Platform::build(config, Arc::new(metrics.clone()), Arc::new(SystemClock));
    (Probe::new(platform), metrics)
}

/// The value of `lumi_health_probe_total{probe, outcome}` summed over every EMF line.
fn total(metrics: &CapturedLines, probe: &str, outcome: &str) -> f64 {
    metrics
        .json()
        .iter()
        .filter(|doc| doc["probe"] == probe && doc["outcome"] == outcome)
        .filter_map(|doc| doc[PROBE_TOTAL].as_f64())
        .sum()
}

fn outcome_of(results: &[ProbeResult], target: Target) -> Outcome {
    results.iter().find(|r| r.probe == target).unwrap().outcome
}

#[tokio::test]
async fn a_round_against_a_healthy_api_counts_ok_for_readiness_and_liveness() {
    let app = TestApp::spawn().await;
    let (probe, metrics) = probe_at(&app, &app.base_url, "0");

    let results = probe.round().await.unwrap();
    assert_eq!(
        outcome_of(&results, Target::Ready),
        Outcome::Ok,
        "{results:?}"
    );
    assert_eq!(
        outcome_of(&results, Target::Live),
        Outcome::Ok,
        "{results:?}"
    );
    assert!(results.iter().all(|r| r.status == Some(200)), "{results:?}");

    for probe in ["ready", "live"] {
        assert_eq!(total(&metrics, probe, "ok"), 1.0, "{probe}");
        // The other outcomes are published as 0, so the alarm's series exist whenever the
        // probe ran.
        assert_eq!(total(&metrics, probe, "failed"), 0.0, "{probe}");
        assert_eq!(total(&metrics, probe, "timeout"), 0.0, "{probe}");
        let present = metrics
            .json()
            .iter()
            .filter(|doc| doc["probe"] == probe && doc.get(PROBE_TOTAL).is_some())
            .count();
        assert_eq!(present, 3, "{probe}: one line per outcome");
        let latency: Vec<Value> = metrics
            .json()
            .into_iter()
            .filter(|doc| doc["probe"] == probe && doc.get(PROBE_LATENCY_MS).is_some())
            .collect();
        assert_eq!(latency.len(), 1, "{probe}");
        assert!(latency[0][PROBE_LATENCY_MS].as_f64().unwrap() < 2000.0);
        assert_eq!(
            latency[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
    }
    // The alarm reads `{outcome, probe}` in the stack's namespace, `Lumi/<stack name>`.
    let line = metrics
        .json()
        .into_iter()
        .find(|doc| doc["probe"] == "ready" && doc["outcome"] == "failed")
        .unwrap();
    let directive = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], format!("Lumi/{}", app.stack.prefix));
    assert_eq!(
        (&line["service"], &line["stage"]),
        (&json!("lumi"), &json!("local"))
    );
    assert_eq!(directive["Dimensions"][0], json!(["outcome", "probe"]));
    // The probe's requests reached the health function through the gateway.
    assert!(
        app.metrics
            .json()
            .iter()
            .any(|doc| doc["route"] == "GET /api/v1/health/ready" && doc["status_class"] == "2xx")
    );
}

#[tokio::test]
async fn an_invocation_from_the_template_schedule_runs_two_rounds() {
    let app = TestApp::spawn().await;
    let (probe, metrics) = probe_at(&app, &app.base_url, "0");
    let schedule = lumi_infra::template::Template::project()
        .unwrap()
        .schedules()
        .unwrap()
        .into_iter()
        .find(|s| s.function == "health-probe")
        .expect("the template schedules the probe");
    let event = serde_json::from_str(schedule.input.as_deref().unwrap()).unwrap();

    let output = lumi_shared::bootstrap::EventHandler::handle(&probe, event)
        .await
        .unwrap();
    assert_eq!(output["rounds"].as_array().unwrap().len(), 2, "{output}");
    for probe in ["ready", "live"] {
        assert_eq!(total(&metrics, probe, "ok"), 2.0, "{probe}");
        assert_eq!(total(&metrics, probe, "failed"), 0.0, "{probe}");
    }

    // The sample event (`cargo lambda invoke health-probe --data-file ...`) is the same job.
    let sample = std::fs::read_to_string(
        lumi_infra::workspace_root().join("events/health-probe/probe.json"),
    )
    .unwrap();
    let sample: <Probe as lumi_shared::bootstrap::EventHandler>::Event =
        serde_json::from_str(&sample).unwrap();
    assert_eq!(sample.detail.job, health_probe::Job::Probe);
}

#[tokio::test]
async fn a_failing_readiness_counts_failed_and_liveness_stays_ok() {
    let app = TestApp::builder().env("HEALTH_CACHE_MS", "0").spawn().await;
    let (probe, metrics) = probe_at(&app, &app.base_url, "0");
    app.dynamodb()
        .delete_table()
        .table_name(app.resource("AppTable"))
        .send()
        .await
        .unwrap();

    let results = probe.round().await.unwrap();
    let ready = results.iter().find(|r| r.probe == Target::Ready).unwrap();
    assert_eq!(ready.outcome, Outcome::Failed, "{results:?}");
    assert_eq!(ready.status, Some(503));
    assert_eq!(outcome_of(&results, Target::Live), Outcome::Ok);
    assert_eq!(total(&metrics, "ready", "failed"), 1.0);
    assert_eq!(total(&metrics, "ready", "ok"), 0.0);
    assert_eq!(total(&metrics, "live", "ok"), 1.0);
    assert_eq!(total(&metrics, "live", "failed"), 0.0);
}

#[tokio::test]
async fn an_api_that_never_answers_is_a_timeout_after_two_seconds() {
    let app = TestApp::spawn().await;
    let hung = hanging_endpoint().await;
    let (probe, metrics) = probe_at(&app, &hung, "0");

    let started = Instant::now();
    let results = probe.round().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(outcome_of(&results, Target::Ready), Outcome::Timeout);
    assert_eq!(outcome_of(&results, Target::Live), Outcome::Timeout);
    for result in &results {
        assert!(
            (2000..3000).contains(&result.latency_ms),
            "{}: {} ms",
            result.probe.name(),
            result.latency_ms
        );
    }
    // Both at once: a round lasts one timeout, not two.
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_millis(3000),
        "{elapsed:?}"
    );
    for probe in ["ready", "live"] {
        assert_eq!(total(&metrics, probe, "timeout"), 1.0, "{probe}");
        assert_eq!(total(&metrics, probe, "ok"), 0.0, "{probe}");
    }
}

#[tokio::test]
async fn nothing_listening_is_failed_not_timeout() {
    let app = TestApp::spawn().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let (probe, metrics) = probe_at(&app, &closed, "0");

    let results = probe.round().await.unwrap();
    for result in &results {
        assert_eq!(result.outcome, Outcome::Failed, "{result:?}");
        assert!(result.error.is_some(), "{result:?}");
        assert!(result.latency_ms < 2000, "{result:?}");
    }
    assert_eq!(total(&metrics, "ready", "failed"), 1.0);
}

#[tokio::test]
async fn without_a_base_url_the_invocation_fails_and_publishes_nothing() {
    let app = TestApp::spawn().await;
    let (probe, metrics) = probe_at(&app, "", "0");

    let error = probe.round().await.unwrap_err();
    assert!(error.to_string().contains("PROBE_BASE_URL"), "{error}");
    assert!(
        metrics.json().is_empty(),
        "no results: the alarm sees missing data"
    );
}

#[test]
fn the_interval_is_at_most_forty_seconds() {
    let mut env = lumi_shared::Env::from_pairs([
        ("APP_TABLE", "t"),
        ("RATE_LIMIT_TABLE", "r"),
        ("CONFIG_SECRET_ID", "s"),
    ]);
    let default = lumi_shared::Config::from_env("health-probe", &env).unwrap();
    assert_eq!(default.probe.interval, Duration::from_secs(30));
    env.set("PROBE_INTERVAL_SECONDS", "41");
    let error = lumi_shared::Config::from_env("health-probe", &env).unwrap_err();
    assert!(
        error.to_string().contains("PROBE_INTERVAL_SECONDS"),
        "{error}"
    );
}

/// Under `make dev` the schedule's `PROBE_BASE_URL` (the deployed API's endpoint in the
/// template) is the local gateway's address.
#[tokio::test]
async fn the_local_schedule_points_the_probe_at_the_gateway() {
    let app = TestApp::spawn().await;
    let mut env = app.stack.function_env("health-probe").unwrap();
    assert!(env.get("PROBE_BASE_URL").unwrap().contains(".execute-api."));
    lumi_infra::schedule::local_api_urls(&app.stack, &mut env, "http://127.0.0.1:3000/").unwrap();
    assert_eq!(env.get("PROBE_BASE_URL"), Some("http://127.0.0.1:3000"));
    // Nothing else changes.
    assert_eq!(
        env.get("APP_TABLE"),
        app.stack
            .function_env("health-probe")
            .unwrap()
            .get("APP_TABLE")
    );
}
