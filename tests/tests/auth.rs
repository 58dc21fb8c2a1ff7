//! Accounts, sessions and the authentication layer, end to end against the local stack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lumi_shared::{
    auth::{Role, User, now_ms, sessions::IssuedTokens, users},
    secrets::{AppSecrets, rotate_jwt_key_json},
};
use lumi_tests::{Refused, Request, TestApp, assert_problem, logs, status_of};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

fn now_secs() -> i64 {
    now_ms() / 1000
}

/// Claims like the auth function's, for forging variations of them.
fn claims(tokens: &IssuedTokens) -> Value {
    let now = now_secs();
    json!({
        "sub": tokens.user.id, "sid": tokens.session_id, "role": "customer",
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
    let customer = app.registered_customer().await;
    let tokens = &customer.tokens;
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 900);
    // Read as wire JSON: the account as sent has no `password_hash` at all.
    let me = Request::get("/api/v1/auth/me").auth(customer.token());
    let user = app.request::<Value>(me, 200).await.unwrap();
    assert_eq!(user["email"], customer.email());
    assert_eq!(user["role"], "customer");
    assert!(user.get("password_hash").is_none());

    // The runbook's path: POST /api/auth/rotate with the refresh token as Bearer.
    let rotate = Request::post("/api/auth/rotate").auth(customer.refresh_token());
    let next = app.request::<IssuedTokens>(rotate, 200).await.unwrap();
    assert_ne!(next.refresh_token, tokens.refresh_token);
    assert_eq!(next.session_id, tokens.session_id);
    app.me(&next.access_token).await.unwrap();
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_whole_family_and_is_audited() {
    let app = TestApp::spawn().await;
    let customer = app.registered_customer().await;
    let first = customer.refresh_token();
    let second = app.refresh(first).await.unwrap();
    let third = app.refresh(&second.refresh_token).await.unwrap();

    // The first token again: reuse.
    let reuse = app.refresh(first).await.refused(401);
    assert!(reuse.detail.contains("already used"));
    // Every descendant is gone: the newest refresh token and the access tokens.
    app.refresh(&third.refresh_token).await.refused(401);
    app.me(&third.access_token).await.refused(401);

    let session = &customer.tokens.session_id;
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
    let customer = app.registered_customer().await;
    let other = app
        .login(customer.email(), customer.password())
        .await
        .unwrap();

    // The runbook's path (the unversioned alias).
    let revoke = Request::post("/api/auth/revoke-all").auth(customer.token());
    let revoked = app.request::<auth::Revoked>(revoke, 200).await.unwrap();
    assert!(revoked.revoked);

    for old in [&customer.tokens, &other] {
        app.me(&old.access_token).await.refused(401);
        app.refresh(&old.refresh_token).await.refused(401);
    }
    let fresh = app
        .login(customer.email(), customer.password())
        .await
        .unwrap();
    app.me(&fresh.access_token).await.unwrap();
}

#[tokio::test]
async fn logout_ends_the_session_and_its_refresh_token() {
    let app = TestApp::spawn().await;
    let customer = app.registered_customer().await;
    app.logout(customer.token()).await.unwrap();
    app.refresh(customer.refresh_token()).await.refused(401);
    app.me(customer.token()).await.refused(401);
}

#[tokio::test]
async fn forged_and_stale_access_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let customer = app.registered_customer().await;
    let (kid, secret) = current_key(&app).await;
    let good = claims(&customer.tokens);
    // The forging works: a faithful copy is accepted.
    app.me(&sign(&good, &kid, &secret)).await.unwrap();

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
        let problem = app.me(&token).await.unwrap_err();
        assert_eq!(problem.status, 401, "{case}");
        assert!(
            problem.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    app.request::<User>(Request::get("/api/v1/auth/me"), 200)
        .await
        .refused(401);
}

#[tokio::test]
async fn a_locked_users_token_is_403() {
    let app = TestApp::spawn().await;
    let customer = app.registered_customer().await;
    // A token issued after the lock: the lock itself, not the revocation, refuses it.
    let (kid, secret) = current_key(&app).await;
    users::set_locked(
        &app.db(),
        &app.resource("AppTable"),
        customer.id(),
        Some("chargeback"),
        now_ms() - 60_000,
    )
    .await
    .unwrap()
    .unwrap();
    let problem = app
        .me(&sign(&claims(&customer.tokens), &kid, &secret))
        .await
        .refused(403);
    assert!(problem.detail.contains("locked"));
    app.login(customer.email(), customer.password())
        .await
        .refused(403);
}

#[tokio::test]
async fn rotated_keys_verify_old_tokens_until_they_expire_and_new_kids_are_learned() {
    let app = TestApp::spawn().await;
    let customer = app.registered_customer().await;

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
    app.me(customer.token()).await.unwrap();
    // Signed by the new key, which this container has not read yet: it reads the secret once.
    let (kid, secret) = current_key(&app).await;
    assert_eq!(kid, new_kid);
    app.me(&sign(&claims(&customer.tokens), &kid, &secret))
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_401() {
    let app = TestApp::spawn().await;
    let customer = app.registered_customer().await;
    let a = app
        .login(customer.email(), "wrong-password-1")
        .await
        .refused(401);
    let b = app
        .login("nobody-xyz@example.com", "wrong-password-1")
        .await
        .refused(401);
    assert_eq!(a.detail, b.detail);
    assert_eq!(a.kind, b.kind);
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
        let (app, email) = (&app, &email);
        async move {
            let registered = app
                .register(email, &format!("racing-pass-{i}"), "Racer")
                .await;
            status_of(&registered, 201)
        }
    });
    let statuses: Vec<u16> = futures::future::join_all(attempts).await;
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

/// Bodies that are not what the typed `Register` and `Login` can say: sent as raw bytes or
/// JSON values.
#[tokio::test]
async fn malformed_and_invalid_bodies_name_the_problem() {
    let app = TestApp::spawn().await;
    let raw = |body: &'static str| {
        let request = Request::post("/api/v1/auth/register")
            .header("content-type", "application/json")
            .text(body);
        app.request::<User>(request, 201)
    };
    raw(r#"{"email": "#).await.refused(400);
    let missing = raw(r#"{"email":"a@example.com","name":"A"}"#)
        .await
        .refused(422);
    assert_eq!(missing.errors[0].field, "password");
    let wrong_type = raw(r#"{"email":"a@example.com","name":5,"password":"x"}"#)
        .await
        .refused(422);
    assert_eq!(wrong_type.errors[0].field, "name");
    let invalid = app.register("not-an-email", "short", "").await.refused(422);
    let fields: HashSet<&str> = invalid.fields().into_iter().collect();
    assert_eq!(fields, HashSet::from(["email", "password", "name"]));
    let form = Request::post("/api/v1/auth/login").text("email=a");
    app.request::<IssuedTokens>(form, 200).await.refused(415);
}

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_logs() {
    let app = TestApp::spawn().await;
    let customer = app.registered_customer().await;
    let (tokens, password) = (&customer.tokens, customer.password());
    let rotated = app.refresh(&tokens.refresh_token).await.unwrap();
    // Reuse logs a warning; a wrong password is logged as a refusal.
    let _ = app.refresh(&tokens.refresh_token).await;
    let _ = app.login(customer.email(), &format!("{password}x")).await;
    let lines = logs().lines();
    assert!(
        lines.iter().any(|l| l.contains(customer.id())),
        "the test sees the logs"
    );
    let secrets = [
        password.to_owned(),
        format!("{password}x"),
        tokens.access_token.clone(),
        tokens.refresh_token.clone(),
        rotated.refresh_token.clone(),
        rotated.access_token.clone(),
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
    let customer = app.registered_customer().await;
    let (_, secret) = current_key(&app).await;
    let reads_before = app.aws_calls("GetSecretValue");
    for i in 0..5 {
        let forged = sign(&claims(&customer.tokens), &format!("k-forged-{i}"), &secret);
        app.me(&forged).await.refused(401);
    }
    assert_eq!(
        app.aws_calls("GetSecretValue") - reads_before,
        1,
        "one refresh, not one per request"
    );

    // The common path: a valid token costs one DynamoDB round trip for user and session.
    let batch_before = app.aws_calls("BatchGetItem");
    let items_before = app.aws_calls("GetItem");
    app.me(customer.token()).await.unwrap();
    assert_eq!(app.aws_calls("BatchGetItem") - batch_before, 1);
    assert_eq!(app.aws_calls("GetItem") - items_before, 0);
}

/// A route served beside the app by [`TestApp::serve_routes`] (not part of its API): called
/// with raw requests at that server's address.
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
    let customer = app.registered_customer().await;
    let admin = app.new_admin().await;
    assert_eq!(admin.tokens.user.role, Role::Admin);
    let call = |token: String| {
        client
            .get(format!("{base}/api/v1/admin/ping"))
            .bearer_auth(token)
            .send()
    };

    let refused = call(customer.token().to_owned()).await.unwrap();
    assert_problem(refused, 403).await;
    let admitted = call(admin.token().to_owned()).await.unwrap();
    assert_eq!(admitted.status(), 200);
    assert_eq!(admitted.text().await.unwrap(), admin.tokens.user.email);
    let anonymous = client
        .get(format!("{base}/api/v1/admin/ping"))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401).await;
}
