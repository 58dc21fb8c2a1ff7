//! Tiers and quota usage (issue 16): an admin makes a user premium (audited, effective from the
//! user's next token, which carries the premium quota), and reads a user's hourly usage records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_shared::{clock::ManualClock, settings::SystemSettings};
use lumi_tests::{TestApp, access_token, assert_problem};
use reqwest::Method;
use serde_json::{Value, json};

const HOUR_US: i64 = 3_600_000_000;

/// `GET /api/v1/auth/me`, asserting 200; returns its `RateLimit-Policy` header.
async fn me_policy(app: &TestApp, access: &str) -> String {
    let response = app
        .with_bearer(Method::GET, "/api/v1/auth/me", access)
        .await;
    assert_eq!(response.status(), 200);
    response.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn rfc3339(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn an_admin_makes_a_user_premium_and_their_next_token_gets_the_premium_quota() {
    let app = TestApp::builder()
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let mut settings = SystemSettings::default();
    settings.rate_limits.quota.limit = 50;
    settings.rate_limits.premium_multiplier = 3;
    app.put_settings(&settings).await;
    let admin = app.signed_in_admin().await;
    let (admin_token, admin_id) = (access_token(&admin), admin["user"]["id"].as_str().unwrap());
    let (tokens, _, _) = app.signed_in_customer().await;
    let user = tokens["user"]["id"].as_str().unwrap();
    assert!(
        me_policy(&app, &access_token(&tokens))
            .await
            .contains(r#""quota";q=50;w=3600"#)
    );

    let response = app
        .set_user_tier(&admin_token, user, &json!({ "tier": "premium" }))
        .await;
    assert_eq!(response.status(), 200);
    let changed: Value = response.json().await.unwrap();
    assert_eq!(changed["tier"], "premium");
    assert_eq!(changed["before"], "standard");
    assert_eq!(changed["changed"], true);

    // The access token in hand still carries the standard tier...
    assert!(
        me_policy(&app, &access_token(&tokens))
            .await
            .contains(r#""quota";q=50;w=3600"#)
    );
    // ...the next one (a refresh) the premium tier: three times the quota.
    let refreshed = app
        .with_bearer(
            Method::POST,
            "/api/v1/auth/rotate",
            tokens["refresh_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await.unwrap();
    assert_eq!(refreshed["user"]["tier"], "premium");
    assert!(
        me_policy(&app, &access_token(&refreshed))
            .await
            .contains(r#""quota";q=150;w=3600"#)
    );

    // Audited once, by the admin, with what changed.
    let audited = |events: Vec<Value>| -> Vec<Value> {
        events
            .into_iter()
            .filter(|e| e["action"] == "user.tier")
            .collect()
    };
    let events = audited(
        app.audit_events(&admin_token, &format!("target=user:{user}"))
            .await,
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor"], format!("admin:{admin_id}"));
    assert_eq!(events[0]["summary"]["before"]["tier"], "standard");
    assert_eq!(events[0]["summary"]["after"]["tier"], "premium");
    assert!(events[0]["request_id"].is_string());

    // The same tier again changes nothing and writes no event.
    let again: Value = app
        .set_user_tier(&admin_token, user, &json!({ "tier": "premium" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["changed"], false);
    let events = audited(
        app.audit_events(&admin_token, &format!("target=user:{user}"))
            .await,
    );
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn the_usage_report_shows_each_hour_with_its_count_and_limit() {
    // Half past an hour, so the requests below fall in two known hours.
    let now_us = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64;
    let hour = now_us.div_euclid(HOUR_US) * HOUR_US;
    let clock = ManualClock::new(hour + HOUR_US / 2);
    let app = TestApp::builder().clock(&clock).spawn().await;
    let admin = app.admin_token().await;
    let (tokens, _, _) = app.signed_in_customer().await;
    let (user, access) = (
        tokens["user"]["id"].as_str().unwrap(),
        access_token(&tokens),
    );
    for _ in 0..3 {
        me_policy(&app, &access).await;
    }
    clock.advance_secs(3600);
    for _ in 0..2 {
        me_policy(&app, &access).await;
    }

    let usage: Value = app
        .user_usage(&admin, user, "hours=3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["user_id"], user);
    assert_eq!(usage["tier"], "standard");
    assert_eq!(usage["limit"], 1000);
    assert_eq!(usage["from"], rfc3339(hour - HOUR_US));
    assert_eq!(usage["until"], rfc3339(hour + HOUR_US));
    assert_eq!(
        usage["hours"],
        json!([
            { "hour": rfc3339(hour + HOUR_US), "count": 2, "limit": 1000 },
            { "hour": rfc3339(hour), "count": 3, "limit": 1000 },
        ])
    );

    // An earlier window, by `until`: the first hour alone; and an hour without requests.
    let first: Value = app
        .user_usage(
            &admin,
            user,
            &format!("hours=1&until={}", rfc3339(hour + 60_000_000)),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["hours"],
        json!([{ "hour": rfc3339(hour), "count": 3, "limit": 1000 }])
    );
    let quiet: Value = app
        .user_usage(
            &admin,
            user,
            &format!("hours=1&until={}", rfc3339(hour - HOUR_US)),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(quiet["hours"], json!([]));
}

#[tokio::test]
async fn tiers_and_usage_are_for_admins_and_refuse_what_they_cannot_use() {
    // The settings stay cached, so the AWS calls counted below are the routes' own.
    let app = TestApp::builder()
        .counting_aws_calls()
        .env("SETTINGS_CACHE_TTL_SECONDS", "60")
        .spawn()
        .await;
    let admin = app.admin_token().await;
    let (tokens, email, _) = app.signed_in_customer().await;
    let (user, customer) = (
        tokens["user"]["id"].as_str().unwrap(),
        access_token(&tokens),
    );
    let premium = json!({ "tier": "premium" });

    // A customer gets 403 on both routes.
    assert_problem(app.set_user_tier(&customer, user, &premium).await, 403).await;
    assert_problem(app.user_usage(&customer, user, "").await, 403).await;

    // An unknown tier is 422, naming the field.
    let refused = assert_problem(
        app.set_user_tier(&admin, user, &json!({ "tier": "gold" }))
            .await,
        422,
    )
    .await;
    assert_eq!(refused["errors"][0]["field"], "tier");

    // A well-formed id of nobody is 404, after reading the account.
    let nobody = uuid::Uuid::new_v4().simple().to_string();
    let get_items = |calls: &[String]| calls.iter().filter(|c| c.contains(".GetItem ")).count();
    let before = app.aws_call_log().len();
    assert_problem(app.user_usage(&admin, &nobody, "").await, 404).await;
    assert!(get_items(&app.aws_call_log()[before..]) >= 1);
    assert_problem(app.set_user_tier(&admin, &nobody, &premium).await, 404).await;

    // An id that is not a user id names nobody either: 404, decided before any read or write
    // of the routes (by its format; a `#` already at the edge).
    let before = app.aws_call_log().len();
    for id in ["not-a-user-id", "USER%23x", &user.to_uppercase()] {
        assert_problem(app.user_usage(&admin, id, "").await, 404).await;
        assert_problem(app.set_user_tier(&admin, id, &premium).await, 404).await;
    }
    let calls = app.aws_call_log()[before..].to_vec();
    assert_eq!(get_items(&calls), 0, "{calls:#?}");

    // The window is bounded, and `until` is a time.
    for query in ["hours=0", "hours=101", "until=yesterday"] {
        assert_problem(app.user_usage(&admin, user, query).await, 400).await;
    }

    // Nothing refused changed the account.
    let listed = app
        .get_json(&format!("/api/v1/admin/users?email={email}"), &admin)
        .await;
    assert_eq!(listed["users"][0]["tier"], "standard");
}
