//! Rate limits against the serialized local stack: exact budgets under concurrency, refill with
//! an injected clock, scopes, runtime settings, fail modes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use lumi_shared::{
    Platform,
    auth::{AdminUser, Authenticated},
    clock::ManualClock,
    settings::{FailMode, SystemSettings},
};
use lumi_tests::{Refused, TestApp, assert_problem, hanging_endpoint, status_of};
use reqwest::Method;
use serde_json::{Value, json};

/// Routes under the limited prefixes (the orders and admin functions come later; the layer is
/// the same for every function).
fn probe_routes(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/v1/orders", get(|_: Authenticated| async { "orders" }))
        .route("/api/v1/cart", get(|| async { "cart" }))
        .route(
            "/api/v1/admin/orders",
            get(|_: AdminUser| async { "admin" }),
        )
        .with_state(platform)
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn burst(url: &str, token: &str, n: usize) -> Vec<reqwest::Response> {
    let client = reqwest::Client::new();
    let requests = (0..n).map(|_| client.get(url).bearer_auth(token).send());
    futures::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

fn count(responses: &[reqwest::Response], status: u16) -> usize {
    responses
        .iter()
        .filter(|r| r.status().as_u16() == status)
        .count()
}

#[tokio::test]
async fn exactly_60_of_200_concurrent_orders_requests_are_admitted() {
    let clock = ManualClock::starting_now();
    let app = TestApp::builder().clock(&clock).spawn().await;
    let base = app.serve_routes(probe_routes).await;
    let (tokens, _, _) = app.signed_in_customer().await;
    let token = tokens["access_token"].as_str().unwrap();

    let responses = burst(&format!("{base}/api/v1/orders"), token, 200).await;
    assert_eq!(count(&responses, 200), 60);
    assert_eq!(count(&responses, 429), 140);

    let mut remaining: Vec<u64> = responses
        .iter()
        .filter(|r| r.status() == 200)
        .map(|r| header(r, "x-ratelimit-remaining").parse().unwrap())
        .collect();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..60).collect::<Vec<_>>(),
        "each admitted request saw its own count"
    );
    let ok = responses.iter().find(|r| r.status() == 200).unwrap();
    assert_eq!(header(ok, "x-ratelimit-limit"), "60");
    assert!(header(ok, "ratelimit-policy").contains(r#""customer";q=60;w=300"#));
    assert!(header(ok, "ratelimit-policy").contains(r#""ip";q=600;w=300"#));
    assert!(header(ok, "ratelimit").contains(r#""customer";r="#));

    let refused = responses.into_iter().find(|r| r.status() == 429).unwrap();
    assert_eq!(header(&refused, "retry-after"), "5");
    assert_eq!(header(&refused, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&refused, "x-ratelimit-limit"), "60");
    let body = assert_problem(refused, 429).await;
    assert_eq!(body["policy"], "customer");
    assert_eq!(
        body["type"],
        "https://lumi-commerce.com/problems/rate-limited"
    );

    // Denials wrote nothing: the bucket holds exactly 60 intervals of debt.
    let user = tokens["user"]["id"].as_str().unwrap();
    let item = app
        .dynamodb()
        .get_item()
        .table_name(app.resource("RateLimitTable"))
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("customer#user:{user}")),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let tat: i64 = item["tat"].as_n().unwrap().parse().unwrap();
    assert_eq!(tat, lumi_shared::clock::Clock::now_us(&clock) + 300_000_000);

    let limited: f64 = app
        .metrics
        .json()
        .iter()
        .filter(|d| d["scope"] == "customer")
        .filter_map(|d| d["lumi_rate_limited_total"].as_f64())
        .sum();
    assert_eq!(limited, 140.0);
}

#[tokio::test]
async fn the_admin_budget_of_300_is_shared_by_every_admin() {
    let clock = ManualClock::starting_now();
    let app = TestApp::builder().clock(&clock).spawn().await;
    let base = app.serve_routes(probe_routes).await;
    let (first, second) = (app.signed_in_admin().await, app.signed_in_admin().await);
    let url = format!("{base}/api/v1/admin/orders");
    let (a, b) = tokio::join!(
        burst(&url, first["access_token"].as_str().unwrap(), 200),
        burst(&url, second["access_token"].as_str().unwrap(), 200)
    );
    let responses: Vec<_> = a.into_iter().chain(b).collect();
    assert_eq!(count(&responses, 200), 300);
    assert_eq!(count(&responses, 429), 100);
    let refused = responses.into_iter().find(|r| r.status() == 429).unwrap();
    assert_eq!(assert_problem(refused, 429).await["policy"], "admin");
}

#[tokio::test]
async fn buckets_refill_with_time_partially_then_fully() {
    let clock = ManualClock::starting_now();
    let app = TestApp::builder().clock(&clock).spawn().await;
    let base = app.serve_routes(probe_routes).await;
    let (tokens, _, _) = app.signed_in_customer().await;
    let token = tokens["access_token"].as_str().unwrap();
    let url = format!("{base}/api/v1/orders");
    assert_eq!(count(&burst(&url, token, 70).await, 200), 60);
    clock.advance_secs(150);
    assert_eq!(
        count(&burst(&url, token, 70).await, 200),
        30,
        "half the window: half the budget"
    );
    clock.advance_secs(300);
    assert_eq!(
        count(&burst(&url, token, 70).await, 200),
        60,
        "a whole window: all of it"
    );
}

#[tokio::test]
async fn settings_changes_apply_without_a_restart() {
    let clock = ManualClock::starting_now();
    let app = TestApp::builder()
        .clock(&clock)
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let base = app.serve_routes(probe_routes).await;
    let url = format!("{base}/api/v1/orders");
    let (first, _, _) = app.signed_in_customer().await;
    let response = &burst(&url, first["access_token"].as_str().unwrap(), 1).await[0];
    assert_eq!(header(response, "x-ratelimit-limit"), "60");

    let mut settings = SystemSettings::default();
    settings.rate_limits.customer.limit = 3;
    app.put_settings(&settings).await;
    let (second, _, _) = app.signed_in_customer().await;
    let responses = burst(&url, second["access_token"].as_str().unwrap(), 5).await;
    assert_eq!(count(&responses, 200), 3);
    assert_eq!(header(&responses[0], "x-ratelimit-limit"), "3");
}

#[tokio::test]
async fn premium_users_get_twice_the_hourly_quota() {
    let clock = ManualClock::starting_now();
    let app = TestApp::builder()
        .clock(&clock)
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let mut settings = SystemSettings::default();
    settings.rate_limits.quota.limit = 3;
    app.put_settings(&settings).await;

    let (standard, _, _) = app.signed_in_customer().await;
    let (email, password) = app.register_user().await;
    let user =
        lumi_shared::auth::users::find_by_email(&app.db(), &app.resource("AppTable"), &email)
            .await
            .unwrap()
            .unwrap();
    app.dynamodb()
        .update_item()
        .table_name(app.resource("AppTable"))
        .set_key(Some(lumi_shared::auth::users::user_key(&user.user_id)))
        .update_expression("SET tier = :premium")
        .expression_attribute_values(
            ":premium",
            aws_sdk_dynamodb::types::AttributeValue::S("premium".into()),
        )
        .send()
        .await
        .unwrap();
    let premium = app.login_json(&email, &password).await;

    let me = app.url("/api/v1/auth/me");
    let standard = burst(&me, standard["access_token"].as_str().unwrap(), 8).await;
    let premium = burst(&me, premium["access_token"].as_str().unwrap(), 8).await;
    assert_eq!(count(&standard, 200), 3);
    assert_eq!(count(&premium, 200), 6);
    let refused = standard.into_iter().find(|r| r.status() == 429).unwrap();
    assert!(header(&refused, "ratelimit-policy").contains(r#""quota";q=3;w=3600"#));
    assert_eq!(assert_problem(refused, 429).await["policy"], "quota");

    // The hour's usage is kept for reporting.
    let usage = app
        .dynamodb()
        .scan()
        .table_name(app.resource("RateLimitTable"))
        .filter_expression("scope_name = :quota")
        .expression_attribute_values(
            ":quota",
            aws_sdk_dynamodb::types::AttributeValue::S("quota".into()),
        )
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    let counts: Vec<i64> = usage
        .iter()
        .map(|i| i["count"].as_n().unwrap().parse().unwrap())
        .collect();
    assert!(counts.contains(&3) && counts.contains(&6), "{counts:?}");
}

#[tokio::test]
async fn the_ip_layer_and_the_user_scope_are_separate_buckets() {
    let clock = ManualClock::starting_now();
    let app = TestApp::builder()
        .clock(&clock)
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let mut settings = SystemSettings::default();
    settings.rate_limits.ip.limit = 5;
    settings.rate_limits.customer.limit = 3;
    app.put_settings(&settings).await;
    let base = app.serve_routes(probe_routes).await;
    let client = reqwest::Client::new();
    let get = |token: String, ip: &'static str| {
        client
            .get(format!("{base}/api/v1/orders"))
            .bearer_auth(token)
            .header("x-test-source-ip", ip)
            .send()
    };
    let (a, _, _) = app.signed_in_customer().await;
    let (b, _, _) = app.signed_in_customer().await;
    let (a, b) = (
        a["access_token"].as_str().unwrap().to_owned(),
        b["access_token"].as_str().unwrap().to_owned(),
    );

    // User A spends the customer budget (3) from one IP.
    for _ in 0..3 {
        assert_eq!(get(a.clone(), "203.0.113.10").await.unwrap().status(), 200);
    }
    let refused = get(a.clone(), "203.0.113.10").await.unwrap();
    assert_eq!(assert_problem(refused, 429).await["policy"], "customer");
    // User B from the same IP still has a budget of its own...
    assert_eq!(get(b.clone(), "203.0.113.10").await.unwrap().status(), 200);
    // ...until the IP's (5: A's three, A's refused one did not count, B's one) runs out.
    assert_eq!(get(b.clone(), "203.0.113.10").await.unwrap().status(), 200);
    let refused = get(b.clone(), "203.0.113.10").await.unwrap();
    assert_eq!(assert_problem(refused, 429).await["policy"], "ip");
    // Another IP: B is admitted again.
    assert_eq!(get(b, "203.0.113.11").await.unwrap().status(), 200);
}

/// A customer made directly: registering through the API would spend an attempt.
async fn direct_customer(app: &TestApp, password: &str) -> String {
    let email = format!("{}@example.com", lumi_tests::unique_prefix());
    lumi_shared::auth::users::create(
        &app.db(),
        &app.resource("AppTable"),
        lumi_shared::auth::users::NewUser {
            email: email.clone(),
            name: "Target".into(),
            password: password.to_owned(),
            role: lumi_shared::auth::Role::Customer,
            tier: lumi_shared::auth::Tier::Standard,
        },
    )
    .await
    .unwrap();
    email
}

/// OWASP's policy: per (account, client) 2, per client 6, per account 20 (the auth budget is
/// set to 2 here). The owner's client, which signed in last, is not locked out by an attacker
/// who spends the account's ceiling from many addresses; a new client is.
#[tokio::test]
async fn an_attacker_cannot_lock_the_owner_out_but_cannot_guess_on_forever() {
    let app = TestApp::builder()
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let mut settings = SystemSettings::default();
    settings.rate_limits.auth.limit = 2;
    app.put_settings(&settings).await;
    let password = "owner-password-1";
    let email = direct_customer(&app, password).await;
    let owner = [127, 0, 2, 1];
    app.login_from(owner, &email, password).await.unwrap();

    // An attacker from many addresses: the account's ceiling (20, the owner's login included).
    let mut statuses = BTreeMap::new();
    for i in 0..25u8 {
        let response = app
            .login_from([127, 0, 3, i + 1], &email, "guess-password-1")
            .await;
        *statuses.entry(status_of(&response, 200)).or_insert(0) += 1;
        if let Err(problem) = response
            && problem.status == 429
        {
            assert_eq!(problem.body["policy"], "auth");
        }
    }
    assert_eq!(statuses, BTreeMap::from([(401, 19), (429, 6)]));
    // Even the right password waits, from a client the account has not seen...
    app.login_from([127, 0, 4, 1], &email, password)
        .await
        .refused(429);
    // ...but the owner's own client still gets in.
    app.login_from(owner, &email, password).await.unwrap();

    // One client guessing: its (account, client) budget, then its own budget over accounts.
    let prober = [127, 0, 5, 1];
    let victim = direct_customer(&app, password).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(status_of(
            &app.login_from(prober, &victim, "guess-password-2").await,
            200,
        ));
    }
    assert_eq!(seen, [401, 401, 429]);
    let mut seen = Vec::new();
    for _ in 0..6 {
        let other = format!("{}@example.com", lumi_tests::unique_prefix());
        seen.push(status_of(
            &app.login_from(prober, &other, "guess-password-3").await,
            200,
        ));
    }
    // 2 spent on the victim, 4 more on other accounts: the client's 6 are gone.
    assert_eq!(seen, [401, 401, 401, 401, 429, 429]);
}

#[tokio::test]
async fn a_huge_email_is_422_before_it_becomes_a_key_and_leaves_no_state() {
    let app = TestApp::spawn().await;
    let limiter = &app.platforms["auth"].limiter;
    let huge = format!("{}@example.com", "a".repeat(200 * 1024));
    let first = app
        .post_json(
            "/api/v1/auth/login",
            &json!({ "email": huge, "password": "whatever-123" }),
        )
        .await;
    assert_problem(first, 422).await;
    // What the first one left: its IP bucket (spent before the handler), nothing of the email.
    let remembered = limiter.remembered();
    assert_eq!(remembered.0, 1);
    for path in ["/api/v1/auth/login", "/api/v1/auth/register"] {
        for i in 0..20 {
            let response = app
                .post_json(
                    path,
                    &json!({ "email": format!("{i}{huge}"), "password": "whatever-123", "name": "X" }),
                )
                .await;
            let body = assert_problem(response, 422).await;
            assert_eq!(body["errors"][0]["field"], "email", "{body}");
        }
    }
    let response = app
        .post_json(
            "/api/v1/auth/login",
            &json!({ "email": "a@example.com", "password": "p".repeat(10_000) }),
        )
        .await;
    assert_eq!(
        assert_problem(response, 422).await["errors"][0]["field"],
        "password"
    );
    assert_eq!(
        limiter.remembered(),
        remembered,
        "no state for refused input"
    );
    assert_eq!(limiter.queued_buckets(), 0);
    // Nothing reached the rate-limit table either.
    let items = app
        .dynamodb()
        .scan()
        .table_name(app.resource("RateLimitTable"))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert!(
        items.iter().all(|i| i["pk"].as_s().unwrap().len() < 100),
        "{items:?}"
    );
}

#[tokio::test]
async fn anonymous_and_customer_traffic_cannot_spend_the_admin_budget() {
    let clock = ManualClock::starting_now();
    let app = TestApp::builder()
        .clock(&clock)
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let mut settings = SystemSettings::default();
    settings.rate_limits.admin.limit = 10;
    app.put_settings(&settings).await;
    let base = app.serve_routes(probe_routes).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v1/admin/orders");
    let (customer, _, _) = app.signed_in_customer().await;
    let customer = customer["access_token"].as_str().unwrap().to_owned();
    // Twice the admin budget, anonymous from a few addresses and as a customer.
    let mut statuses = BTreeMap::new();
    for i in 0..20 {
        let request = client
            .get(&url)
            .header("x-test-source-ip", format!("198.51.100.{}", i % 4));
        let request = if i % 2 == 0 {
            request
        } else {
            request.bearer_auth(&customer)
        };
        let status = request.send().await.unwrap().status().as_u16();
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(401, 10), (403, 10)]));
    let admin = app.signed_in_admin().await;
    let response = client
        .get(&url)
        .bearer_auth(admin["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        header(&response, "ratelimit").contains(r#""admin";r=9;"#),
        "{}",
        header(&response, "ratelimit")
    );
}

#[tokio::test]
async fn an_unreachable_store_fails_open_or_closed_per_scope_within_its_timeout() {
    let hung = hanging_endpoint().await;
    // The deployed default timeout (the local stack's is longer).
    let app = TestApp::builder()
        .env("AWS_ENDPOINT_URL", &hung)
        .env("RATE_LIMIT_TIMEOUT_MS", "250")
        .spawn()
        .await;
    let base = app.serve_routes(probe_routes).await;

    // ip and customer fail open: admitted, counted.
    let started = Instant::now();
    let cart = reqwest::get(format!("{base}/api/v1/cart")).await.unwrap();
    assert_eq!(cart.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        app.metrics
            .json()
            .iter()
            .any(|d| d["mode"] == "open" && d["lumi_rate_limit_store_errors_total"] == 1.0)
    );

    // auth fails closed: login is refused rather than left unguarded.
    let started = Instant::now();
    let login = app
        .post_json(
            "/api/v1/auth/login",
            &json!({ "email": "a@example.com", "password": "whatever-123" }),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let body = assert_problem(login, 503).await;
    assert!(body["detail"].as_str().unwrap().contains("auth"));
}

#[tokio::test]
async fn rate_limit_enabled_false_turns_every_limit_off() {
    let app = TestApp::builder()
        .env("RATE_LIMIT_ENABLED", "false")
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let mut settings = SystemSettings::default();
    settings.rate_limits.customer.limit = 1;
    settings.rate_limits.ip.limit = 1;
    settings.rate_limits.auth.fail = FailMode::Closed;
    app.put_settings(&settings).await;
    let base = app.serve_routes(probe_routes).await;
    let (tokens, _, _) = app.signed_in_customer().await;
    let responses = burst(
        &format!("{base}/api/v1/orders"),
        tokens["access_token"].as_str().unwrap(),
        5,
    )
    .await;
    assert_eq!(count(&responses, 200), 5);
    assert!(responses[0].headers().get("x-ratelimit-limit").is_none());
    let me = app
        .with_bearer(
            Method::GET,
            "/api/v1/auth/me",
            tokens["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(me.status(), 200);
    let _: Value = me.json().await.unwrap();
}
