//! Backups end to end against the local stack: seed, back up, restore-check, restore; a corrupt
//! export fails the check loudly, naming the file; a restore that differs from its export is
//! reported by key and attribute name, never by value; tables a killed check left are deleted by
//! the next; the configuration export holds no secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
};

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

/// Every table of the moto server (every page: other tests' stacks share it).
async fn table_names(app: &TestApp) -> Vec<String> {
    app.dynamodb()
        .list_tables()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap()
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
    assert_eq!(
        tables[0]["compared"], tables[0]["items"],
        "every item is compared with the export"
    );
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

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .unwrap();
    text
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn a_restore_that_differs_from_its_export_names_the_key_and_attribute_never_the_value() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let jobs = app.backup_jobs();
    let report = jobs.run(Job::Backup).await.unwrap();
    let run_id = report["run_id"].as_str().unwrap();
    let archive = jobs.archive().unwrap();
    let mut manifest = archive.manifest(run_id).await.unwrap();

    // An export that restores to something else: a user's item twice (as a scan that met an item
    // twice would write it), the second time with another password hash, 30 other items between
    // so the two land in different write batches. The manifest is made to agree, so only the
    // comparison with the restored table can notice.
    let table = manifest
        .tables
        .iter_mut()
        .find(|t| t.logical_id == "AppTable")
        .unwrap();
    let file = &mut table.files[0];
    let mut text = gunzip(&archive.get(&file.key).await.unwrap());
    let user_line = text
        .lines()
        .find(|l| l.contains("password_hash"))
        .unwrap()
        .to_owned();
    let mut user: Value = serde_json::from_str(&user_line).unwrap();
    let original_hash = user["password_hash"]["S"].as_str().unwrap().to_owned();
    let user_pk = user["pk"]["S"].as_str().unwrap().to_owned();
    for i in 0..30 {
        text.push_str(&format!(
            "{}\n",
            json!({ "pk": { "S": format!("FILLER#{i}") }, "sk": { "S": "FILLER" } })
        ));
    }
    let tampered_hash = format!("$argon2id$tampered-{}", unique_prefix());
    user["password_hash"] = json!({ "S": tampered_hash });
    text.push_str(&format!("{user}\n"));
    let bytes = gzip(&text);
    file.items += 31;
    file.bytes = bytes.len() as u64;
    file.sha256 = archive::sha256_hex(&bytes);
    table.item_count += 31;
    archive
        .put(&file.key, bytes, "application/gzip")
        .await
        .unwrap();
    archive
        .put(
            &archive::manifest_key(run_id),
            serde_json::to_vec(&manifest).unwrap(),
            "application/json",
        )
        .await
        .unwrap();

    let error = jobs.run(Job::RestoreCheck).await.unwrap_err().to_string();
    let key = format!("pk={user_pk} sk=PROFILE");
    assert!(
        error.contains(&format!("{key}: attribute(s) password_hash differ")),
        "{error}"
    );
    // Neither value, anywhere a report goes: the error, the stored outcome, the logs.
    let outcomes = archive
        .s3
        .list_objects_v2()
        .bucket(&archive.bucket)
        .prefix(archive::CHECKS_PREFIX)
        .send()
        .await
        .unwrap();
    let stored = String::from_utf8(
        archive
            .get(outcomes.contents()[0].key().unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(stored.contains("password_hash differ"), "{stored}");
    let logged: Vec<String> = lumi_tests::logs()
        .lines()
        .into_iter()
        .filter(|l| l.contains(&user_pk))
        .collect();
    assert!(
        logged.iter().any(|l| l.contains("password_hash differ")),
        "the failure is logged"
    );
    for text in [&error, &stored].into_iter().chain(&logged) {
        assert!(
            !text.contains(&original_hash) && !text.contains(&tampered_hash),
            "a value leaked: {text}"
        );
    }
    assert!(
        !table_names(&app)
            .await
            .iter()
            .any(|t| t.starts_with(&app.resource("AppTable")) && t.contains("restorecheck")),
        "the temporary tables are deleted after a failure too"
    );
}

#[tokio::test]
async fn a_check_deletes_the_tables_a_killed_check_left_and_only_those() {
    let app = TestApp::spawn().await;
    let jobs = app.backup_jobs();
    jobs.run(Job::Backup).await.unwrap();
    let app_table = app.resource("AppTable");
    let now = time::OffsetDateTime::now_utc();
    let stamp = |at: time::OffsetDateTime| {
        format!(
            "{:04}{:02}{:02}t{:02}{:02}{:02}z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        )
    };
    // A check killed an hour ago; one running now; another stack's, long dead.
    let killed = format!(
        "{app_table}-restorecheck-{}-deadbeef",
        stamp(now - time::Duration::hours(1))
    );
    let running = format!("{app_table}-restorecheck-{}-0badf00d", stamp(now));
    let foreign = format!(
        "{}-AppTable-restorecheck-20200101t000000z-deadbeef",
        unique_prefix()
    );
    for name in [&killed, &running, &foreign] {
        app.dynamodb()
            .create_table()
            .table_name(name)
            .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
            .key_schema(
                aws_sdk_dynamodb::types::KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                aws_sdk_dynamodb::types::AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }

    let check = jobs.run(Job::RestoreCheck).await.unwrap();
    assert_eq!(check["outcome"]["ok"], true, "{check}");
    let names = table_names(&app).await;
    assert!(
        !names.contains(&killed),
        "the killed check's table is deleted"
    );
    assert!(names.contains(&running), "a running check's table is left");
    assert!(names.contains(&foreign), "another stack's table is left");
    for name in [&running, &foreign] {
        app.dynamodb()
            .delete_table()
            .table_name(name)
            .send()
            .await
            .unwrap();
    }
}
