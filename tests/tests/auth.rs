//! Accounts, sessions and the authentication layer, end to end against the local stack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lumi_shared::{
    auth::{now_ms, users},
    secrets::{AppSecrets, rotate_jwt_key_json},
};
use lumi_tests::{TestApp, assert_problem, logs};
use reqwest::Method;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

fn token_of<'a>(tokens: &'a Value, field: &str) -> &'a str {
    tokens[field].as_str().unwrap()
}

async fn me(app: &TestApp, access: &str) -> reqwest::Response {
    app.with_bearer(Method::GET, "/api/v1/auth/me", access)
        .await
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

/// Claims like the auth function's, for forging variations of them.
fn claims(tokens: &Value) -> Value {
    let user_id = tokens["user"]["id"].as_str().unwrap();
    let now = now_secs();
    json!({
        "sub": user_id, "sid": tokens["session_id"], "role": "customer",
        "iat": now, "nbf": now, "exp": now + 600, "iss": "lumi", "aud": "lumi-api",
    })
}

fn sign(claims: &Value, kid: &str, secret: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn current_key(app: &TestApp) -> (String, String) {
    let secrets = AppSecrets::parse(&app.secret_json().await).unwrap();
    let key = secrets.signing_key();
    (key.kid.clone(), key.secret.expose_secret().to_owned())
}

#[tokio::test]
async fn register_login_me_and_runbook_rotation() {
    let app = TestApp::spawn().await;
    let (tokens, email, _) = app.signed_in_customer().await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let response = me(&app, token_of(&tokens, "access_token")).await;
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["email"], email.as_str());
    assert_eq!(user["role"], "customer");
    assert!(user.get("password_hash").is_none());

    // The runbook's path: POST /api/auth/rotate with the refresh token as Bearer.
    let rotated = app
        .with_bearer(
            Method::POST,
            "/api/auth/rotate",
            token_of(&tokens, "refresh_token"),
        )
        .await;
    assert_eq!(rotated.status(), 200);
    let next: Value = rotated.json().await.unwrap();
    assert_ne!(next["refresh_token"], tokens["refresh_token"]);
    assert_eq!(next["session_id"], tokens["session_id"]);
    assert_eq!(
        me(&app, token_of(&next, "access_token")).await.status(),
        200
    );
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_whole_family_and_is_audited() {
    let app = TestApp::spawn().await;
    let (tokens, _, _) = app.signed_in_customer().await;
    let first = token_of(&tokens, "refresh_token");
    let second: Value = app
        .with_bearer(Method::POST, "/api/v1/auth/rotate", first)
        .await
        .json()
        .await
        .unwrap();
    let third: Value = app
        .with_bearer(
            Method::POST,
            "/api/v1/auth/rotate",
            token_of(&second, "refresh_token"),
        )
        .await
        .json()
        .await
        .unwrap();

    // The first token again: reuse.
    let reuse = app
        .with_bearer(Method::POST, "/api/v1/auth/rotate", first)
        .await;
    let body = assert_problem(reuse, 401).await;
    assert!(body["detail"].as_str().unwrap().contains("already used"));
    // Every descendant is gone: the newest refresh token and the access tokens.
    let newest = app
        .with_bearer(
            Method::POST,
            "/api/v1/auth/rotate",
            token_of(&third, "refresh_token"),
        )
        .await;
    assert_problem(newest, 401).await;
    assert_problem(me(&app, token_of(&third, "access_token")).await, 401).await;

    let session = tokens["session_id"].as_str().unwrap();
    let audit = app
        .dynamodb()
        .query()
        .table_name(app.resource("AppTable"))
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :t")
        .expression_attribute_values(
            ":t",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("AUDIT_TARGET#session:{session}")),
        )
        .send()
        .await
        .unwrap();
    let items = audit.items.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["action"].as_s().unwrap(),
        "auth.refresh_token_reuse"
    );
}

#[tokio::test]
async fn revoke_all_refuses_every_earlier_token_and_a_new_login_works() {
    let app = TestApp::spawn().await;
    let (tokens, email, password) = app.signed_in_customer().await;
    let other = app.login(&email, &password).await;
    let access = token_of(&tokens, "access_token");

    let revoked = app
        .with_bearer(Method::POST, "/api/auth/revoke-all", access)
        .await;
    assert_eq!(revoked.status(), 200);

    for old in [&tokens, &other] {
        assert_problem(me(&app, token_of(old, "access_token")).await, 401).await;
        let refresh = app
            .with_bearer(
                Method::POST,
                "/api/v1/auth/rotate",
                token_of(old, "refresh_token"),
            )
            .await;
        assert_problem(refresh, 401).await;
    }
    let fresh = app.login(&email, &password).await;
    assert_eq!(
        me(&app, token_of(&fresh, "access_token")).await.status(),
        200
    );
}

#[tokio::test]
async fn logout_ends_the_session_and_its_refresh_token() {
    let app = TestApp::spawn().await;
    let (tokens, _, _) = app.signed_in_customer().await;
    let out = app
        .with_bearer(
            Method::POST,
            "/api/v1/auth/logout",
            token_of(&tokens, "access_token"),
        )
        .await;
    assert_eq!(out.status(), 204);
    let refresh = app
        .with_bearer(
            Method::POST,
            "/api/v1/auth/rotate",
            token_of(&tokens, "refresh_token"),
        )
        .await;
    assert_problem(refresh, 401).await;
    assert_problem(me(&app, token_of(&tokens, "access_token")).await, 401).await;
}

#[tokio::test]
async fn forged_and_stale_access_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let (tokens, _, _) = app.signed_in_customer().await;
    let (kid, secret) = current_key(&app).await;
    let good = claims(&tokens);
    // The forging works: a faithful copy is accepted.
    assert_eq!(me(&app, &sign(&good, &kid, &secret)).await.status(), 200);

    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT", "kid": kid })),
        b64(&good)
    );
    let mut expired = good.clone();
    expired["exp"] = json!(now_secs() - 120);
    expired["iat"] = json!(now_secs() - 1000);
    expired["nbf"] = json!(now_secs() - 1000);
    let mut audience = good.clone();
    audience["aud"] = json!("another-api");
    let mut issuer = good.clone();
    issuer["iss"] = json!("someone-else");
    let mut admin = good.clone();
    admin["role"] = json!("admin");
    let genuine = sign(&good, &kid, &secret);
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let tampered_payload = b64(&admin);
    parts[1] = &tampered_payload;
    let tampered = parts.join(".");

    let cases = [
        ("alg none", alg_none),
        ("another key", sign(&good, &kid, &"x".repeat(64))),
        ("tampered payload", tampered),
        ("expired", sign(&expired, &kid, &secret)),
        ("wrong audience", sign(&audience, &kid, &secret)),
        ("wrong issuer", sign(&issuer, &kid, &secret)),
        ("unknown kid", sign(&good, "k-unknown", &secret)),
        ("not a JWT", "garbage".to_owned()),
    ];
    for (case, token) in cases {
        let response = me(&app, &token).await;
        assert_eq!(response.status(), 401, "{case}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        assert_problem(response, 401).await;
    }
    assert_problem(app.get("/api/v1/auth/me").await, 401).await;
}

#[tokio::test]
async fn a_locked_users_token_is_403() {
    let app = TestApp::spawn().await;
    let (tokens, email, password) = app.signed_in_customer().await;
    let user_id = tokens["user"]["id"].as_str().unwrap();
    // A token issued after the lock: the lock itself, not the revocation, refuses it.
    let (kid, secret) = current_key(&app).await;
    users::set_locked(
        &app.db(),
        &app.resource("AppTable"),
        user_id,
        Some("chargeback"),
        now_ms() - 60_000,
    )
    .await
    .unwrap()
    .unwrap();
    let body = assert_problem(me(&app, &sign(&claims(&tokens), &kid, &secret)).await, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("locked"));
    let login = app
        .post_json(
            "/api/v1/auth/login",
            &json!({ "email": email, "password": password }),
        )
        .await;
    assert_problem(login, 403).await;
}

#[tokio::test]
async fn rotated_keys_verify_old_tokens_until_they_expire_and_new_kids_are_learned() {
    let app = TestApp::spawn().await;
    let (tokens, _, _) = app.signed_in_customer().await;
    let old_access = token_of(&tokens, "access_token").to_owned();

    // The quarterly procedure: rotate the signing key in the secret.
    let (rotated, new_kid) = rotate_jwt_key_json(&app.secret_json().await).unwrap();
    app.secrets_manager()
        .put_secret_value()
        .secret_id(app.resource("ConfigSecret"))
        .secret_string(&rotated)
        .send()
        .await
        .unwrap();

    // Signed by the previous key, not expired: still accepted.
    assert_eq!(me(&app, &old_access).await.status(), 200);
    // Signed by the new key, which this container has not read yet: it reads the secret once.
    let (kid, secret) = current_key(&app).await;
    assert_eq!(kid, new_kid);
    assert_eq!(
        me(&app, &sign(&claims(&tokens), &kid, &secret))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_401() {
    let app = TestApp::spawn().await;
    let (email, _) = app.register_user().await;
    let wrong_password = app
        .post_json(
            "/api/v1/auth/login",
            &json!({ "email": email, "password": "wrong-password-1" }),
        )
        .await;
    let unknown = app
        .post_json(
            "/api/v1/auth/login",
            &json!({ "email": "nobody-xyz@example.com", "password": "wrong-password-1" }),
        )
        .await;
    let a = assert_problem(wrong_password, 401).await;
    let b = assert_problem(unknown, 401).await;
    assert_eq!(a["detail"], b["detail"]);
    assert_eq!(a["type"], b["type"]);
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_make_exactly_one_account() {
    // About the conditional write, not the brute-force limit (10 attempts per account).
    let app = TestApp::builder()
        .env("RATE_LIMIT_ENABLED", "false")
        .spawn()
        .await;
    let email = format!("{}@example.com", lumi_tests::unique_prefix());
    let attempts = (0..12).map(|i| {
        let body =
            json!({ "email": email, "password": format!("racing-pass-{i}"), "name": "Racer" });
        let app = &app;
        async move { app.post_json("/api/v1/auth/register", &body).await }
    });
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        11,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn malformed_and_invalid_bodies_name_the_problem() {
    let app = TestApp::spawn().await;
    let raw = |body: &'static str| {
        app.http
            .post(app.url("/api/v1/auth/register"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_problem(raw(r#"{"email": "#).await.unwrap(), 400).await;
    let missing = assert_problem(
        raw(r#"{"email":"a@example.com","name":"A"}"#)
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(missing["errors"][0]["field"], "password");
    let wrong_type = assert_problem(
        raw(r#"{"email":"a@example.com","name":5,"password":"x"}"#)
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(wrong_type["errors"][0]["field"], "name");
    let invalid = app
        .post_json(
            "/api/v1/auth/register",
            &json!({ "email": "not-an-email", "password": "short", "name": "" }),
        )
        .await;
    let invalid = assert_problem(invalid, 422).await;
    let fields: HashSet<&str> = invalid["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, HashSet::from(["email", "password", "name"]));
    let form = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_problem(form, 415).await;
}

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_logs() {
    let app = TestApp::spawn().await;
    let (tokens, email, password) = app.signed_in_customer().await;
    let rotated: Value = app
        .with_bearer(
            Method::POST,
            "/api/v1/auth/rotate",
            token_of(&tokens, "refresh_token"),
        )
        .await
        .json()
        .await
        .unwrap();
    // Reuse logs a warning; a wrong password is logged as a refusal.
    app.with_bearer(
        Method::POST,
        "/api/v1/auth/rotate",
        token_of(&tokens, "refresh_token"),
    )
    .await;
    app.post_json(
        "/api/v1/auth/login",
        &json!({ "email": email, "password": format!("{password}x") }),
    )
    .await;
    let lines = logs().lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(tokens["user"]["id"].as_str().unwrap())),
        "the test sees the logs"
    );
    let secrets = [
        password.clone(),
        format!("{password}x"),
        token_of(&tokens, "access_token").to_owned(),
        token_of(&tokens, "refresh_token").to_owned(),
        token_of(&rotated, "refresh_token").to_owned(),
        token_of(&rotated, "access_token").to_owned(),
    ];
    for line in &lines {
        for secret in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "a secret reached the logs: {line}"
            );
        }
    }
}

#[tokio::test]
async fn a_flood_of_unknown_kids_reads_the_secret_once_and_a_request_costs_one_state_read() {
    let app = TestApp::builder().counting_aws_calls().spawn().await;
    let (tokens, _, _) = app.signed_in_customer().await;
    let (_, secret) = current_key(&app).await;
    let reads_before = app.aws_calls("GetSecretValue");
    for i in 0..5 {
        let forged = sign(&claims(&tokens), &format!("k-forged-{i}"), &secret);
        assert_problem(me(&app, &forged).await, 401).await;
    }
    assert_eq!(
        app.aws_calls("GetSecretValue") - reads_before,
        1,
        "one refresh, not one per request"
    );

    // The common path: a valid token costs one DynamoDB round trip for user and session.
    let batch_before = app.aws_calls("BatchGetItem");
    let items_before = app.aws_calls("GetItem");
    assert_eq!(
        me(&app, token_of(&tokens, "access_token")).await.status(),
        200
    );
    assert_eq!(app.aws_calls("BatchGetItem") - batch_before, 1);
    assert_eq!(app.aws_calls("GetItem") - items_before, 0);
}

#[tokio::test]
async fn admin_only_routes_refuse_customers_with_403_and_admit_admins() {
    fn routes(platform: std::sync::Arc<lumi_shared::Platform>) -> axum::Router {
        axum::Router::new()
            .route(
                "/api/v1/admin/ping",
                axum::routing::get(|admin: lumi_shared::auth::AdminUser| async move {
                    admin.0.user.email
                }),
            )
            .with_state(platform)
    }
    let app = TestApp::spawn().await;
    let base = app.serve_routes(routes).await;
    let client = reqwest::Client::new();
    let (customer, _, _) = app.signed_in_customer().await;
    let admin = app.signed_in_admin().await;
    let call = |token: String| {
        client
            .get(format!("{base}/api/v1/admin/ping"))
            .bearer_auth(token)
            .send()
    };

    let refused = call(customer["access_token"].as_str().unwrap().to_owned())
        .await
        .unwrap();
    assert_problem(refused, 403).await;
    let admitted = call(admin["access_token"].as_str().unwrap().to_owned())
        .await
        .unwrap();
    assert_eq!(admitted.status(), 200);
    assert_eq!(
        admitted.text().await.unwrap(),
        admin["user"]["email"].as_str().unwrap()
    );
    let anonymous = client
        .get(format!("{base}/api/v1/admin/ping"))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401).await;
}
