//! The scheduled JWT key rotation (issue 16): the config secret's rotation function, driven step
//! by step as Secrets Manager drives it (the test stands in for Secrets Manager: it starts a
//! rotation, then invokes the function's handler with `createSecret`, `setSecret`, `testSecret`
//! and `finishSecret`), and the manual `lumi secrets rotate-jwt`, which runs the same steps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_shared::{auth::tokens, config::AuthConfig, secrets::AppSecrets};
use lumi_tests::{TestApp, access_token};
use reqwest::Method;
use serde_json::Value;

async fn me_status(app: &TestApp, access: &str) -> u16 {
    app.with_bearer(Method::GET, "/api/v1/auth/me", access)
        .await
        .status()
        .as_u16()
}

fn kid_of(tokens: &Value) -> String {
    tokens::key_id(&access_token(tokens)).unwrap()
}

/// The version labelled `label`, if any.
fn version_with(
    versions: &std::collections::HashMap<String, Vec<String>>,
    label: &str,
) -> Option<String> {
    versions
        .iter()
        .find(|(_, labels)| labels.iter().any(|l| l == label))
        .map(|(version, _)| version.clone())
}

/// The secret's JSON without its JWT keys: everything a rotation must keep as it is.
fn without_jwt_keys(raw: &str) -> Value {
    let mut value: Value = serde_json::from_str(raw).unwrap();
    value.as_object_mut().unwrap().remove("jwt_keys");
    value
}

/// Runs the four steps of one rotation for `token`, asserting each succeeds; returns the new kid.
async fn rotate(app: &TestApp, token: &str) -> String {
    let created = app.rotation_step("createSecret", token).await.unwrap();
    assert_eq!(created["outcome"], "created", "{created}");
    for step in ["setSecret", "testSecret", "finishSecret"] {
        app.rotation_step(step, token).await.unwrap();
    }
    created["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_scheduled_rotation_signs_with_a_new_key_while_tokens_of_the_old_one_still_verify() {
    // Every request reads the secret, so what is in force is what Secrets Manager holds now.
    let app = TestApp::builder()
        .env("SECRETS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let (tokens, email, password) = app.signed_in_customer().await;
    let before_raw = app.secret_value("AWSCURRENT", None).await;
    let before = AppSecrets::parse(&before_raw).unwrap();
    let old_kid = before.signing_key().kid.clone();
    assert_eq!(kid_of(&tokens), old_kid);
    let old_version = version_with(&app.secret_versions().await, "AWSCURRENT").unwrap();

    let token = app.start_rotation().await;
    let created = app.rotation_step("createSecret", &token).await.unwrap();
    assert_eq!(created["outcome"], "created", "{created}");
    assert_eq!(created["previous"], old_kid.as_str());
    let new_kid = created["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    // The pending version is not in force: a login still signs with the current key.
    assert_eq!(kid_of(&app.login_json(&email, &password).await), old_kid);

    let set = app.rotation_step("setSecret", &token).await.unwrap();
    assert_eq!(set["outcome"], "nothing_to_set");
    let tested = app.rotation_step("testSecret", &token).await.unwrap();
    assert_eq!(tested["outcome"], "tested");
    assert_eq!(tested["kid"], new_kid.as_str());
    let finished = app.rotation_step("finishSecret", &token).await.unwrap();
    assert_eq!(finished["outcome"], "finished");

    // AWSCURRENT moved to the rotation's version; the former one is AWSPREVIOUS; none pending.
    let versions = app.secret_versions().await;
    assert_eq!(versions[&token], vec!["AWSCURRENT".to_owned()]);
    assert_eq!(versions[&old_version], vec!["AWSPREVIOUS".to_owned()]);
    assert_eq!(version_with(&versions, "AWSPENDING"), None);

    // The new current version: the new signing key, the former one kept, every other key as it was.
    let after_raw = app.secret_value("AWSCURRENT", None).await;
    let after = AppSecrets::parse(&after_raw).unwrap();
    assert_eq!(after.signing_key().kid, new_kid);
    assert!(after.jwt_key(&old_kid).is_some());
    assert_eq!(without_jwt_keys(&after_raw), without_jwt_keys(&before_raw));

    // In force: the old access token still verifies; new tokens (login, refresh) use the new kid.
    assert_eq!(me_status(&app, &access_token(&tokens)).await, 200);
    let fresh = app.login_json(&email, &password).await;
    assert_eq!(kid_of(&fresh), new_kid);
    assert_eq!(me_status(&app, &access_token(&fresh)).await, 200);
    let refreshed = app
        .with_bearer(
            Method::POST,
            "/api/v1/auth/rotate",
            tokens["refresh_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    assert_eq!(kid_of(&refreshed.json().await.unwrap()), new_kid);
}

#[tokio::test]
async fn create_secret_again_with_the_same_token_writes_nothing() {
    let app = TestApp::spawn().await;
    let token = app.start_rotation().await;
    let first = app.rotation_step("createSecret", &token).await.unwrap();
    assert_eq!(first["outcome"], "created");
    let pending = app.secret_value("AWSPENDING", Some(&token)).await;
    let versions = app.secret_versions().await;

    // Secrets Manager retries a step whose invocation it thinks failed.
    let again = app.rotation_step("createSecret", &token).await.unwrap();
    assert_eq!(again["outcome"], "already_created", "{again}");
    assert_eq!(again["kid"], first["kid"]);
    assert_eq!(app.secret_value("AWSPENDING", Some(&token)).await, pending);
    assert_eq!(app.secret_versions().await, versions);
}

#[tokio::test]
async fn once_finished_every_step_of_the_rotation_is_a_no_op() {
    let app = TestApp::spawn().await;
    let token = app.start_rotation().await;
    let kid = rotate(&app, &token).await;
    let current = app.secret_value("AWSCURRENT", None).await;
    let versions = app.secret_versions().await;

    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let outcome = app.rotation_step(step, &token).await.unwrap();
        assert_eq!(outcome["outcome"], "already_current", "{step}: {outcome}");
    }
    assert_eq!(app.secret_value("AWSCURRENT", None).await, current);
    assert_eq!(app.secret_versions().await, versions);
    assert_eq!(AppSecrets::parse(&current).unwrap().signing_key().kid, kid);
}

#[tokio::test]
async fn steps_are_refused_unless_rotation_is_on_and_the_token_is_staged_pending() {
    let app = TestApp::spawn().await;
    let unchanged = |before: &str, after: &str| assert_eq!(before, after, "a refused step wrote");

    // A fresh stack's secret has no rotation configured: no step runs.
    let current = app.secret_value("AWSCURRENT", None).await;
    let refused = app
        .rotation_step("createSecret", &uuid::Uuid::new_v4().to_string())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("not enabled for rotation"),
        "{refused}"
    );
    unchanged(&current, &app.secret_value("AWSCURRENT", None).await);

    // Rotation on, a rotation under way: a token Secrets Manager never staged is refused.
    let token = app.start_rotation().await;
    let versions = app.secret_versions().await;
    for step in ["createSecret", "testSecret", "finishSecret"] {
        let refused = app
            .rotation_step(step, &uuid::Uuid::new_v4().to_string())
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("has no stage for rotation"),
            "{step}: {refused}"
        );
    }
    // A step Secrets Manager does not have.
    assert!(app.rotation_step("dropSecret", &token).await.is_err());
    assert_eq!(app.secret_versions().await, versions);

    // A version that is neither pending nor current (the former current, now AWSPREVIOUS).
    let previous = version_with(&versions, "AWSCURRENT").unwrap();
    rotate(&app, &token).await;
    assert_eq!(
        app.secret_versions().await[&previous],
        vec!["AWSPREVIOUS".to_owned()]
    );
    let current = app.secret_value("AWSCURRENT", None).await;
    for step in ["createSecret", "finishSecret"] {
        let refused = app.rotation_step(step, &previous).await.unwrap_err();
        assert!(
            refused.to_string().contains("not staged AWSPENDING"),
            "{step}: {refused}"
        );
    }
    unchanged(&current, &app.secret_value("AWSCURRENT", None).await);
    assert_eq!(
        version_with(&app.secret_versions().await, "AWSCURRENT").as_deref(),
        Some(token.as_str())
    );
}

#[tokio::test]
async fn the_manual_rotation_runs_the_same_steps_and_waits_for_a_scheduled_one() {
    let app = TestApp::spawn().await;
    let client = app.secrets_manager();
    let arn = app.config_secret_arn();
    let old_kid = AppSecrets::parse(&app.secret_value("AWSCURRENT", None).await)
        .unwrap()
        .signing_key()
        .kid
        .clone();

    // `lumi secrets rotate-jwt`: create, test and finish at once, with a token of its own.
    let (kid, version) = secret_rotation::rotate_now(&client, &AuthConfig::default(), &arn)
        .await
        .unwrap();
    let versions = app.secret_versions().await;
    assert_eq!(versions[&version], vec!["AWSCURRENT".to_owned()]);
    assert_eq!(version_with(&versions, "AWSPENDING"), None);
    let current = AppSecrets::parse(&app.secret_value("AWSCURRENT", None).await).unwrap();
    assert_eq!(current.signing_key().kid, kid);
    assert!(current.jwt_key(&old_kid).is_some());

    // While a scheduled rotation is under way, the manual one is refused and writes nothing.
    let token = app.start_rotation().await;
    let versions = app.secret_versions().await;
    let refused = secret_rotation::rotate_now(&client, &AuthConfig::default(), &arn)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, secret_rotation::RotationError::InProgress { version, .. } if *version == token),
        "{refused}"
    );
    assert_eq!(app.secret_versions().await, versions);

    // The scheduled rotation then finishes as usual, keeping the manual key as the previous one.
    let scheduled = rotate(&app, &token).await;
    let current = AppSecrets::parse(&app.secret_value("AWSCURRENT", None).await).unwrap();
    assert_eq!(current.signing_key().kid, scheduled);
    assert!(current.jwt_key(&kid).is_some());
    assert!(current.jwt_key(&old_kid).is_none(), "two keys are kept");
}
