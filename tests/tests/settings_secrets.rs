//! Sensitive settings (the error-reporting DSN, a credential) end to end: set through the admin
//! API they are stored sealed under `config_encryption_key`, shown and audited masked, never
//! logged, never exported in plain text, and still opened by the error reporter; a DSN an
//! earlier version stored in plain text keeps working and is sealed by the next backup; a key
//! rotation keeps every value readable and the next backup moves them to the new key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;

use aws_sdk_dynamodb::types::AttributeValue;
use backup::Job;
use lumi_shared::{
    secrets::{AppSecrets, rotate_config_key_json},
    settings::{ERROR_REPORTING_DSN, SystemSettings, sealed::key_id},
    telemetry::report::configured_dsn,
};
use lumi_tests::{TestApp, access_token, unique_prefix};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

/// A DSN whose public key no other test uses, and its masked form.
fn dsn() -> (String, String, String) {
    let key = format!("leak{}", unique_prefix());
    (
        format!("https://{key}@o1.ingest.sentry.io/42"),
        "https://****@o1.ingest.sentry.io/42".to_owned(),
        key,
    )
}

/// An app whose containers read the settings afresh for every request (no 30 s cache), so
/// `configured_dsn` sees what was just written.
async fn fresh_settings_app() -> TestApp {
    TestApp::builder()
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await
}

async fn put_settings(app: &TestApp, admin: &str, etag: &str, body: Value) -> reqwest::Response {
    app.http
        .put(app.url("/api/v1/admin/settings"))
        .bearer_auth(admin)
        .header("if-match", etag)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The settings item exactly as stored.
async fn stored_item(app: &TestApp) -> (String, Value) {
    let item = app
        .dynamodb()
        .get_item()
        .table_name(app.resource("AppTable"))
        .key("pk", AttributeValue::S("SETTINGS".into()))
        .key("sk", AttributeValue::S("SYSTEM".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let document = item["document"].as_s().unwrap();
    (format!("{item:?}"), serde_json::from_str(document).unwrap())
}

async fn secrets(app: &TestApp) -> AppSecrets {
    AppSecrets::parse(&app.secret_json().await).unwrap()
}

/// Everything a backup run wrote, as text (the table files unzipped).
async fn backup_texts(app: &TestApp) -> (Vec<String>, Value) {
    let jobs = app.backup_jobs();
    let report = jobs.run(Job::Backup).await.unwrap();
    let archive = jobs.archive().unwrap();
    let manifest = archive
        .manifest(report["run_id"].as_str().unwrap())
        .await
        .unwrap();
    let mut texts = Vec::new();
    for file in manifest.tables.iter().flat_map(|t| &t.files) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(archive.get(&file.key).await.unwrap().as_slice())
            .read_to_string(&mut text)
            .unwrap();
        texts.push(text);
    }
    let config =
        String::from_utf8(archive.get(&manifest.config_export.key).await.unwrap()).unwrap();
    let config_json = serde_json::from_str(&config).unwrap();
    texts.push(config);
    (texts, config_json)
}

#[tokio::test]
async fn a_dsn_set_through_the_admin_api_is_sealed_masked_and_never_written_in_plain_text() {
    let app = fresh_settings_app().await;
    let admin = access_token(&app.signed_in_admin().await);
    let (dsn, masked, key) = dsn();

    let set = put_settings(&app, &admin, "\"v0\"", json!({ ERROR_REPORTING_DSN: dsn })).await;
    assert_eq!(set.status(), 200);
    let answered: Value = set.json().await.unwrap();
    assert_eq!(
        answered[ERROR_REPORTING_DSN],
        masked.as_str(),
        "answered masked"
    );
    let read = app
        .http
        .get(app.url("/api/v1/admin/settings"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(read.headers()["etag"], "\"v1\"");
    let shown: Value = read.json().await.unwrap();
    assert_eq!(shown[ERROR_REPORTING_DSN], masked.as_str(), "shown masked");

    // Stored sealed, under the current key, and it opens to the DSN.
    let (raw, document) = stored_item(&app).await;
    assert!(!raw.contains(&key), "stored in plain text: {raw}");
    let sealed = &document[ERROR_REPORTING_DSN];
    assert_eq!(sealed["alg"], "A256GCM");
    let keys = secrets(&app).await.config_encryption_key;
    assert_eq!(sealed["kid"], key_id(keys.newest()).as_str());
    let settings: SystemSettings = serde_json::from_value(document).unwrap();
    let opened = settings
        .error_reporting_dsn
        .as_ref()
        .unwrap()
        .reveal(&keys, ERROR_REPORTING_DSN)
        .unwrap();
    assert_eq!(opened.expose_secret(), dsn);
    // The app opens it where it uses it.
    let reporter = configured_dsn(&app.platforms["admin"]).await.unwrap();
    assert_eq!(reporter.public_key, key);

    // The document sent back as read (masked DSN and all) keeps the DSN.
    let mut edited = shown.clone();
    edited["rate_limits"]["customer"]["limit"] = json!(90);
    let saved = put_settings(&app, &admin, "\"v1\"", edited).await;
    assert_eq!(saved.status(), 200);
    let (_, document) = stored_item(&app).await;
    let settings: SystemSettings = serde_json::from_value(document).unwrap();
    assert_eq!(settings.rate_limits.customer.limit, 90);
    assert_eq!(
        settings
            .error_reporting_dsn
            .unwrap()
            .reveal(&keys, ERROR_REPORTING_DSN)
            .unwrap()
            .expose_secret(),
        dsn
    );

    // Audited masked.
    let audit = app.audit_events(&admin, "target=settings:system").await;
    assert_eq!(audit.len(), 2);
    let audit_text = Value::Array(audit.clone()).to_string();
    assert!(
        !audit_text.contains(&key),
        "audited in plain text: {audit_text}"
    );
    let first = audit
        .iter()
        .find(|e| e["summary"]["before"][ERROR_REPORTING_DSN].is_null())
        .unwrap();
    assert_eq!(
        first["summary"]["after"][ERROR_REPORTING_DSN],
        masked.as_str()
    );

    // The backup: the table export holds the sealed item, the configuration export the mask.
    let (texts, config) = backup_texts(&app).await;
    for text in &texts {
        assert!(!text.contains(&key), "exported in plain text");
    }
    assert!(
        texts[0].contains("A256GCM"),
        "the settings item is exported sealed"
    );
    assert_eq!(
        config["settings"]["document"][ERROR_REPORTING_DSN],
        masked.as_str()
    );
    assert_eq!(
        config["secret"]["config_encryption_key_ids"][0],
        key_id(keys.newest()).as_str()
    );

    // Never logged.
    assert!(
        !lumi_tests::logs().lines().iter().any(|l| l.contains(&key)),
        "logged in plain text"
    );
}

#[tokio::test]
async fn a_plain_dsn_an_earlier_version_stored_still_works_and_the_next_backup_seals_it() {
    let app = fresh_settings_app().await;
    let admin = access_token(&app.signed_in_admin().await);
    let (dsn, masked, key) = dsn();
    app.dynamodb()
        .put_item()
        .table_name(app.resource("AppTable"))
        .item("pk", AttributeValue::S("SETTINGS".into()))
        .item("sk", AttributeValue::S("SYSTEM".into()))
        .item("version", AttributeValue::N("3".into()))
        .item(
            "document",
            AttributeValue::S(json!({ ERROR_REPORTING_DSN: dsn }).to_string()),
        )
        .send()
        .await
        .unwrap();
    let reporter = configured_dsn(&app.platforms["admin"]).await.unwrap();
    assert_eq!(reporter.public_key, key, "still reported to");
    let shown = app.get_json("/api/v1/admin/settings", &admin).await;
    assert_eq!(shown[ERROR_REPORTING_DSN], masked.as_str());

    let (texts, _) = backup_texts(&app).await;
    for text in &texts {
        assert!(!text.contains(&key), "exported in plain text");
    }
    let (raw, document) = stored_item(&app).await;
    assert!(!raw.contains(&key), "sealed in the table too: {raw}");
    assert!(raw.contains("N(\"3\")"), "the version is kept: {raw}");
    let settings: SystemSettings = serde_json::from_value(document).unwrap();
    let keys = secrets(&app).await.config_encryption_key;
    assert_eq!(
        settings
            .error_reporting_dsn
            .unwrap()
            .reveal(&keys, ERROR_REPORTING_DSN)
            .unwrap()
            .expose_secret(),
        dsn
    );
}

#[tokio::test]
async fn a_key_rotation_keeps_the_dsn_readable_and_the_next_backup_reseals_it() {
    // The container below meets the value sealed under the new key while its cached secret
    // has only the old one.
    let app = fresh_settings_app().await;
    let admin = access_token(&app.signed_in_admin().await);
    let (dsn, _, key) = dsn();
    let set = put_settings(&app, &admin, "\"v0\"", json!({ ERROR_REPORTING_DSN: dsn })).await;
    assert_eq!(set.status(), 200);
    let old_kid = stored_item(&app).await.1[ERROR_REPORTING_DSN]["kid"].clone();

    // A new key first, the old one kept.
    let rotated = rotate_config_key_json(&app.secret_json().await).unwrap();
    app.secrets_manager()
        .put_secret_value()
        .secret_id(app.resource("ConfigSecret"))
        .secret_string(&rotated)
        .send()
        .await
        .unwrap();
    let keys = AppSecrets::parse(&rotated).unwrap().config_encryption_key;
    let new_kid = key_id(keys.newest());
    assert_ne!(old_kid, new_kid.as_str());

    // The backup seals it under the new key; a container still holding the old secret reads
    // the secret again when a value names a key it does not know.
    backup_texts(&app).await;
    let (_, document) = stored_item(&app).await;
    assert_eq!(document[ERROR_REPORTING_DSN]["kid"], new_kid.as_str());
    let reporter = configured_dsn(&app.platforms["admin"]).await.unwrap();
    assert_eq!(reporter.public_key, key);

    // Once nothing names the old key it can go.
    let mut only_new: Value = serde_json::from_str(&rotated).unwrap();
    only_new["config_encryption_key"] = json!([keys.newest().expose_secret()]);
    let only_new = AppSecrets::parse(&only_new.to_string()).unwrap();
    let settings: SystemSettings = serde_json::from_value(document).unwrap();
    assert_eq!(
        settings
            .error_reporting_dsn
            .unwrap()
            .reveal(&only_new.config_encryption_key, ERROR_REPORTING_DSN)
            .unwrap()
            .expose_secret(),
        dsn
    );
}

#[tokio::test]
async fn a_dsn_sealed_under_a_dropped_key_is_shown_unreadable_and_can_be_set_again() {
    let app = fresh_settings_app().await;
    let admin = access_token(&app.signed_in_admin().await);
    let (dsn, masked, key) = dsn();
    // Sealed under a key the secret no longer holds (dropped too early).
    let dropped = lumi_shared::secrets::ConfigKeys::new(vec!["d".repeat(43).into()]).unwrap();
    let settings = SystemSettings {
        error_reporting_dsn: Some(
            lumi_shared::settings::Sensitive::seal(&dropped, ERROR_REPORTING_DSN, &dsn).unwrap(),
        ),
        ..SystemSettings::default()
    };
    app.put_settings(&settings).await;

    assert!(
        configured_dsn(&app.platforms["admin"]).await.is_none(),
        "no reporter: the environment sets none"
    );
    let shown = app.get_json("/api/v1/admin/settings", &admin).await;
    let unreadable = shown[ERROR_REPORTING_DSN].as_str().unwrap().to_owned();
    assert!(unreadable.starts_with("[unreadable"), "{unreadable}");
    // Other settings can still change, and the value stays as it was.
    let changed = put_settings(
        &app,
        &admin,
        "\"v1\"",
        json!({ "rate_limits": { "customer": { "limit": 70 } }, ERROR_REPORTING_DSN: unreadable }),
    )
    .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(
        stored_item(&app).await.1[ERROR_REPORTING_DSN]["kid"],
        key_id(dropped.newest()).as_str()
    );
    // Set again, it is sealed under the current key and used.
    let set = put_settings(&app, &admin, "\"v2\"", json!({ ERROR_REPORTING_DSN: dsn })).await;
    assert_eq!(set.status(), 200);
    let answered: Value = set.json().await.unwrap();
    assert_eq!(answered[ERROR_REPORTING_DSN], masked.as_str());
    assert_eq!(
        configured_dsn(&app.platforms["admin"])
            .await
            .unwrap()
            .public_key,
        key
    );
}
