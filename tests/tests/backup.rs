//! Backups end to end against the local stack: seed, back up, restore-check, restore; a corrupt
//! export fails the check loudly, naming the file; the configuration export holds no secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use backup::{
    Job, archive, dynamo_json,
    restore::{self},
};
use lumi_shared::bootstrap::EventHandler as _;
use lumi_tests::{TestApp, unique_prefix};
use serde_json::{Value, json};

type Item = HashMap<String, AttributeValue>;

/// Some of everything: accounts, sessions, a product, a cart, an order, audit events, settings,
/// rate-limit buckets.
async fn seed(app: &TestApp) {
    let sku = format!("SKU-{}", unique_prefix());
    app.product(&[(&sku, 1200, 9)]).await;
    let customer = app.quick_customer().await;
    let token = customer["access_token"].as_str().unwrap();
    let added = app
        .http
        .post(app.url("/api/v1/cart/items"))
        .bearer_auth(token)
        .json(&json!({ "variant": sku, "quantity": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    let order = app
        .http
        .post(app.url("/api/v1/orders"))
        .bearer_auth(token)
        .header("idempotency-key", "backup-seed")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), 201);
    app.signed_in_admin().await;
}

async fn scan_all(app: &TestApp, table: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = app
            .dynamodb()
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        items.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => break,
        }
    }
    let mut lines: Vec<(String, Item)> = items
        .into_iter()
        .map(|i| (dynamo_json::item_to_json(&i).to_string(), i))
        .collect();
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    lines.into_iter().map(|(_, i)| i).collect()
}

async fn table_names(app: &TestApp) -> Vec<String> {
    app.dynamodb()
        .list_tables()
        .send()
        .await
        .unwrap()
        .table_names()
        .to_vec()
}

#[tokio::test]
async fn back_up_then_restore_check_passes_and_a_restore_equals_the_originals() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let jobs = app.backup_jobs();
    let app_table = app.resource("AppTable");
    let limit_table = app.resource("RateLimitTable");
    let before_app = scan_all(&app, &app_table).await;
    let before_limits = scan_all(&app, &limit_table).await;
    assert!(before_app.len() > 5 && !before_limits.is_empty());

    let report = jobs.run(Job::Backup).await.unwrap();
    let run_id = report["run_id"].as_str().unwrap().to_owned();

    // The manifest: counts, checksums of what is stored, key schema, times.
    let archive = jobs.archive().unwrap();
    let manifest = archive.manifest(&run_id).await.unwrap();
    let exported = manifest
        .tables
        .iter()
        .find(|t| t.logical_id == "AppTable")
        .unwrap();
    assert_eq!(exported.name, app_table);
    assert_eq!(exported.item_count, before_app.len() as u64);
    assert_eq!(exported.schema.key_schema[0].attribute, "pk");
    assert_eq!(exported.schema.global_secondary_indexes.len(), 2);
    assert_eq!(exported.schema.ttl_attribute.as_deref(), Some("expires_at"));
    for file in &exported.files {
        let stored = archive.get(&file.key).await.unwrap();
        assert_eq!(archive::sha256_hex(&stored), file.sha256, "{}", file.key);
        assert!(file.key.ends_with(".jsonl.gz"));
    }
    assert!(manifest.started_at <= manifest.finished_at);
    assert_eq!(
        manifest
            .tables
            .iter()
            .map(|t| t.logical_id.as_str())
            .collect::<Vec<_>>(),
        ["AppTable", "RateLimitTable"],
        "every application table"
    );

    // A run that died before its manifest is never taken for the latest.
    archive
        .put(
            "backups/99991231T235959Z-deadbeef/AppTable/part-00000.jsonl.gz",
            b"half".to_vec(),
            "application/gzip",
        )
        .await
        .unwrap();

    let check = jobs.run(Job::RestoreCheck).await.unwrap();
    assert_eq!(check["outcome"]["ok"], true, "{check}");
    assert_eq!(check["outcome"]["run_id"], run_id.as_str());
    let tables = check["outcome"]["tables"].as_array().unwrap();
    assert_eq!(tables[0]["items"], before_app.len());
    assert!(tables[0]["sampled"].as_u64().unwrap() >= 5);
    assert!(
        !table_names(&app)
            .await
            .iter()
            .any(|t| t.contains(&app_table) && t.contains("restorecheck")),
        "temporary tables are deleted"
    );
    let outcomes = archive
        .s3
        .list_objects_v2()
        .bucket(&archive.bucket)
        .prefix(archive::CHECKS_PREFIX)
        .send()
        .await
        .unwrap();
    assert_eq!(
        outcomes.contents().len(),
        1,
        "the outcome is recorded in S3"
    );
    let metrics = app.metrics.json();
    for (metric, outcome) in [
        ("lumi_backup_runs_total", "success"),
        ("lumi_restore_checks_total", "success"),
    ] {
        assert!(
            metrics
                .iter()
                .any(|m| m.get(metric).is_some() && m["outcome"] == outcome),
            "{metric} {outcome}"
        );
    }

    // Disaster recovery into named tables: equal to the originals, item for item.
    let restored_app = format!("{app_table}-dr");
    let restored_limits = format!("{limit_table}-dr");
    let restored = restore::restore_into(
        &archive,
        jobs.dynamodb(),
        &run_id,
        &[
            ("AppTable".into(), restored_app.clone()),
            ("RateLimitTable".into(), restored_limits.clone()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(restored[0], (restored_app.clone(), before_app.len() as u64));
    assert_eq!(scan_all(&app, &restored_app).await, before_app);
    assert_eq!(scan_all(&app, &restored_limits).await, before_limits);
    let refused = restore::restore_into(
        &archive,
        jobs.dynamodb(),
        &run_id,
        &[("AppTable".into(), restored_app)],
    )
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("CreateTable"), "{refused}");
}

#[tokio::test]
async fn a_corrupt_export_fails_the_restore_check_loudly_and_names_the_file() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let jobs = app.backup_jobs();
    let report = jobs.run(Job::Backup).await.unwrap();
    let run_id = report["run_id"].as_str().unwrap();
    let archive = jobs.archive().unwrap();
    let manifest = archive.manifest(run_id).await.unwrap();
    let victim = manifest.tables[0].files[0].key.clone();
    let mut bytes = archive.get(&victim).await.unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    archive
        .put(&victim, bytes, "application/gzip")
        .await
        .unwrap();

    let error = jobs.run(Job::RestoreCheck).await.unwrap_err().to_string();
    assert!(error.contains(&victim), "names the file: {error}");
    assert!(error.contains("SHA-256"), "{error}");
    // Recorded as a failure: in S3 and as a metric.
    let outcomes = archive
        .s3
        .list_objects_v2()
        .bucket(&archive.bucket)
        .prefix(archive::CHECKS_PREFIX)
        .send()
        .await
        .unwrap();
    let key = outcomes.contents()[0].key().unwrap().to_owned();
    let outcome: Value = serde_json::from_slice(&archive.get(&key).await.unwrap()).unwrap();
    assert_eq!(outcome["ok"], false);
    assert!(outcome["error"].as_str().unwrap().contains(&victim));
    assert!(
        app.metrics
            .json()
            .iter()
            .any(|m| m.get("lumi_restore_checks_total").is_some() && m["outcome"] == "failure")
    );
    assert!(
        !table_names(&app)
            .await
            .iter()
            .any(|t| t.contains(&app.resource("AppTable")) && t.contains("restorecheck")),
        "nothing was created from a corrupt export"
    );
}

#[tokio::test]
async fn the_configuration_export_holds_fingerprints_never_secret_values() {
    let app = TestApp::spawn().await;
    let jobs = app.backup_jobs();
    let report = jobs.run(Job::Backup).await.unwrap();
    let archive = jobs.archive().unwrap();
    let run_id = report["run_id"].as_str().unwrap();
    let manifest = archive.manifest(run_id).await.unwrap();
    let export =
        String::from_utf8(archive.get(&manifest.config_export.key).await.unwrap()).unwrap();
    let secret: Value = serde_json::from_str(&app.secret_json().await).unwrap();

    fn leaves(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
            Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
            Value::String(text) => out.push(text.clone()),
            Value::Null => {}
            other => out.push(other.to_string()),
        }
    }
    let mut values = Vec::new();
    leaves(&secret, &mut values);
    let secret_values: Vec<&String> = values.iter().filter(|v| v.len() >= 8).collect();
    assert!(secret_values.len() >= 2, "the secret has values to hide");
    for value in secret_values {
        assert!(!export.contains(value.as_str()), "a secret value leaked");
    }
    let export: Value = serde_json::from_str(&export).unwrap();
    assert!(
        export["secret"]["values"].to_string().contains("sha256:"),
        "{export}"
    );
    assert_eq!(
        export["function_config"]["tables"]["app"],
        app.resource("AppTable")
    );
    assert!(export["settings"]["document"]["rate_limits"].is_object());
}

#[tokio::test]
async fn the_schedule_events_run_through_the_handler() {
    let app = TestApp::spawn().await;
    let jobs = app.backup_jobs();
    let dir = lumi_infra::workspace_root().join("events/backup");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    // `backup.json` before `restore-check.json`: the check needs an export.
    files.sort();
    assert_eq!(files.len(), 2);
    for file in files {
        let event = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let output = jobs.handle(event).await.unwrap();
        assert!(output["job"].is_string(), "{}: {output}", file.display());
    }
}
