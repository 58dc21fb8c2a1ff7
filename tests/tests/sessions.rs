//! Browser sessions (cookie mode), client fingerprints and "log everyone out", end to end
//! against the local stack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};

use cookie::{Cookie, SameSite};
use lumi_shared::auth::{browser::REFRESH_COOKIE, now_ms, sessions};
use lumi_tests::{TestApp, access_token, assert_problem};
use reqwest::{Method, header};
use serde_json::{Value, json};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const FIREFOX_UPDATED: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:134.0) Gecko/20100101 Firefox/134.0";
const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// One of the stack's `CORS_ALLOWED_ORIGINS` (template.yaml's default).
const STOREFRONT: &str = "https://app.lumi-commerce.com";

/// A storefront tab: its refresh cookie (`name=value`), CSRF token and access token.
struct Browser {
    cookie: String,
    csrf: String,
    access: String,
    session_id: String,
}

/// The `__Host-` refresh cookie set by `response`, parsed.
fn set_cookie(response: &reqwest::Response) -> Cookie<'static> {
    let set: Vec<_> = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
        .collect();
    assert_eq!(set.len(), 1, "one Set-Cookie: {set:?}");
    set.into_iter().next().unwrap()
}

/// Reads a cookie-mode answer (asserting 200): the browser's new state.
async fn browser_from(response: reqwest::Response) -> (Browser, Cookie<'static>, Value) {
    let status = response.status();
    let cookie = set_cookie(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let browser = Browser {
        cookie: format!("{}={}", cookie.name(), cookie.value()),
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        access: access_token(&body),
        session_id: body["session_id"].as_str().unwrap().to_owned(),
    };
    (browser, cookie, body)
}

async fn cookie_login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/auth/login"))
        .header(header::USER_AGENT, FIREFOX)
        .json(&json!({ "email": email, "password": password, "mode": "cookie" }))
        .send()
        .await
        .unwrap()
}

/// A new customer signed in from a storefront in Firefox.
async fn signed_in_browser(app: &TestApp) -> Browser {
    let (email, password) = app.register_user().await;
    browser_from(cookie_login(app, &email, &password).await)
        .await
        .0
}

/// `POST path` as the storefront's `fetch` would: the cookie, the Firefox User-Agent, the
/// storefront's `Origin` and `Sec-Fetch-Site` (unless `extra` replaces them), and `csrf` in
/// `X-CSRF-Token` when given.
async fn cookie_post(
    app: &TestApp,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut headers = header::HeaderMap::new();
    headers.insert(header::COOKIE, cookie.parse().unwrap());
    headers.insert(header::USER_AGENT, FIREFOX.parse().unwrap());
    headers.insert(header::ORIGIN, STOREFRONT.parse().unwrap());
    headers.insert("sec-fetch-site", "same-site".parse().unwrap());
    if let Some(csrf) = csrf {
        headers.insert("x-csrf-token", csrf.parse().unwrap());
    }
    for (name, value) in extra {
        headers.insert(
            header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    app.http
        .post(app.url(path))
        .headers(headers)
        .send()
        .await
        .unwrap()
}

async fn me(app: &TestApp, access: &str) -> reqwest::Response {
    app.with_bearer(Method::GET, "/api/v1/auth/me", access)
        .await
}

/// A bearer-mode rotation from a client with this User-Agent.
async fn rotate_as(app: &TestApp, refresh: &str, user_agent: &str) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/auth/rotate"))
        .bearer_auth(refresh)
        .header(header::USER_AGENT, user_agent)
        .send()
        .await
        .unwrap()
}

/// The audit events of `target`, read from the table.
async fn audit_actions(app: &TestApp, target: &str) -> Vec<Value> {
    let admin = app.admin_token().await;
    app.audit_events(&admin, &format!("target={target}")).await
}

#[tokio::test]
async fn a_cookie_login_sets_the_host_cookie_and_keeps_the_refresh_token_out_of_the_body() {
    let app = TestApp::spawn().await;
    let (email, password) = app.register_user().await;
    let (browser, cookie, body) = browser_from(cookie_login(&app, &email, &password).await).await;

    assert_eq!(cookie.name(), "__Host-lumi-refresh");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Strict));
    assert_eq!(cookie.path(), Some("/"));
    assert!(cookie.domain().is_none(), "a __Host- cookie has no Domain");
    let max_age = cookie.max_age().unwrap().whole_seconds();
    assert!(
        (30 * 86_400 - 60..=30 * 86_400).contains(&max_age),
        "until the session's end: {max_age}"
    );

    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(body["refresh_token_cookie"], REFRESH_COOKIE);
    assert_eq!(body["token_type"], "Bearer");
    assert!(!browser.csrf.is_empty());
    let stored = app
        .stored_session(body["user"]["id"].as_str().unwrap(), &browser.session_id)
        .await;
    assert!(
        !browser
            .cookie
            .contains(stored["token_hash"].as_str().unwrap()),
        "the cookie is sealed"
    );
    assert_eq!(me(&app, &browser.access).await.status(), 200);
}

#[tokio::test]
async fn a_cookie_rotation_with_the_csrf_token_sets_a_new_cookie_and_the_old_one_is_reuse() {
    let app = TestApp::spawn().await;
    let first = signed_in_browser(&app).await;

    let rotated = cookie_post(
        &app,
        "/api/v1/auth/rotate",
        &first.cookie,
        Some(&first.csrf),
        &[],
    )
    .await;
    let (second, cookie, body) = browser_from(rotated).await;
    assert_ne!(second.cookie, first.cookie);
    assert_eq!(cookie.same_site(), Some(SameSite::Strict));
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(
        second.csrf, first.csrf,
        "bound to the session, not the token"
    );
    assert_eq!(me(&app, &second.access).await.status(), 200);

    // The runbook's alias serves cookie mode too.
    let (third, _, _) = browser_from(
        cookie_post(
            &app,
            "/api/auth/rotate",
            &second.cookie,
            Some(&second.csrf),
            &[],
        )
        .await,
    )
    .await;

    // The first cookie again: a spent token, so the whole session ends.
    let reuse = cookie_post(
        &app,
        "/api/v1/auth/rotate",
        &first.cookie,
        Some(&first.csrf),
        &[],
    )
    .await;
    let problem = assert_problem(reuse, 401).await;
    assert!(problem["detail"].as_str().unwrap().contains("already used"));
    assert_problem(me(&app, &third.access).await, 401).await;
}

#[tokio::test]
async fn cookie_rotate_and_logout_without_the_right_csrf_proof_are_403_and_change_nothing() {
    let app = TestApp::spawn().await;
    let browser = signed_in_browser(&app).await;
    let other = signed_in_browser(&app).await;

    for path in ["/api/v1/auth/rotate", "/api/v1/auth/logout"] {
        let missing = cookie_post(&app, path, &browser.cookie, None, &[]).await;
        let problem = assert_problem(missing, 403).await;
        assert!(problem["detail"].as_str().unwrap().contains("X-CSRF-Token"));
        // Another session's token, and a made-up one.
        for wrong in [other.csrf.as_str(), "AAAA", "not base64!"] {
            let refused = cookie_post(&app, path, &browser.cookie, Some(wrong), &[]).await;
            assert_problem(refused, 403).await;
        }
        // The right token, from a page of another site.
        let cross_site = cookie_post(
            &app,
            path,
            &browser.cookie,
            Some(&browser.csrf),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
        assert_problem(cross_site, 403).await;
        let foreign = cookie_post(
            &app,
            path,
            &browser.cookie,
            Some(&browser.csrf),
            &[("origin", "https://evil.example")],
        )
        .await;
        assert_problem(foreign, 403).await;
    }

    // None of the refusals spent the token or ended the session.
    assert_eq!(me(&app, &browser.access).await.status(), 200);
    let rotated = cookie_post(
        &app,
        "/api/v1/auth/rotate",
        &browser.cookie,
        Some(&browser.csrf),
        &[],
    )
    .await;
    browser_from(rotated).await;
}

#[tokio::test]
async fn a_tampered_cookie_is_401() {
    let app = TestApp::spawn().await;
    let browser = signed_in_browser(&app).await;
    let (name, value) = browser.cookie.split_once('=').unwrap();
    let middle = value.len() / 2;
    let flipped = if &value[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    let tampered = format!(
        "{name}={}{flipped}{}",
        &value[..middle],
        &value[middle + 1..]
    );

    for path in ["/api/v1/auth/rotate", "/api/v1/auth/logout"] {
        let refused = cookie_post(&app, path, &tampered, Some(&browser.csrf), &[]).await;
        let problem = assert_problem(refused, 401).await;
        assert!(problem["detail"].as_str().unwrap().contains("cookie"));
    }
    // A sealed value moved to another name does not open either.
    let renamed = format!("lumi-refresh={value}; {REFRESH_COOKIE}={value}x");
    let refused = cookie_post(
        &app,
        "/api/v1/auth/rotate",
        &renamed,
        Some(&browser.csrf),
        &[],
    )
    .await;
    assert_problem(refused, 401).await;
    assert_eq!(me(&app, &browser.access).await.status(), 200);
}

#[tokio::test]
async fn a_cookie_logout_clears_the_cookie_and_ends_the_session() {
    let app = TestApp::spawn().await;
    let browser = signed_in_browser(&app).await;

    let logout = cookie_post(
        &app,
        "/api/v1/auth/logout",
        &browser.cookie,
        Some(&browser.csrf),
        &[],
    )
    .await;
    assert_eq!(logout.status(), 204);
    let cleared = set_cookie(&logout);
    assert_eq!(cleared.name(), REFRESH_COOKIE);
    assert_eq!(cleared.value(), "");
    assert_eq!(cleared.path(), Some("/"));
    assert_eq!(cleared.secure(), Some(true));
    assert_eq!(cleared.max_age().unwrap().whole_seconds(), 0);

    assert_problem(me(&app, &browser.access).await, 401).await;
    let rotate = cookie_post(
        &app,
        "/api/v1/auth/rotate",
        &browser.cookie,
        Some(&browser.csrf),
        &[],
    )
    .await;
    assert_problem(rotate, 401).await;
}

#[tokio::test]
async fn bearer_mode_is_unchanged_and_ignores_a_stray_cookie() {
    let app = TestApp::spawn().await;
    let (tokens, _, _) = app.signed_in_customer().await;
    assert!(tokens["refresh_token"].is_string());
    assert!(tokens.get("csrf_token").is_none());
    let browser = signed_in_browser(&app).await;

    // An Authorization header makes it a bearer request, whatever cookie comes with it.
    let rotated = app
        .http
        .post(app.url("/api/v1/auth/rotate"))
        .bearer_auth(tokens["refresh_token"].as_str().unwrap())
        .header(header::COOKIE, &browser.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    assert!(rotated.headers().get(header::SET_COOKIE).is_none());
    let next: Value = rotated.json().await.unwrap();
    assert!(next["refresh_token"].is_string());
    assert_eq!(next["session_id"], tokens["session_id"]);
    // The browser's session was not touched.
    assert_eq!(me(&app, &browser.access).await.status(), 200);
}

#[tokio::test]
async fn a_refresh_from_another_user_agent_ends_the_session_and_is_audited() {
    let app = TestApp::spawn().await;
    let (email, password) = app.register_user().await;
    let tokens = app.login_as(&email, &password, FIREFOX).await.unwrap();
    let refresh = tokens.refresh_token.as_str();

    let stolen = rotate_as(&app, refresh, CHROME).await;
    let problem = assert_problem(stolen, 401).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("another client"),
        "{problem}"
    );
    // The session family is over: the same token from the right client, and the access token.
    assert_problem(rotate_as(&app, refresh, FIREFOX).await, 401).await;
    assert_problem(me(&app, &tokens.access_token).await, 401).await;

    let session = &tokens.session_id;
    let events = audit_actions(&app, &format!("session:{session}")).await;
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "auth.session_fingerprint_mismatch"),
        "{events:?}"
    );
    // Another login from the thief's browser is a session of its own.
    let fresh = app.login_as(&email, &password, CHROME).await.unwrap();
    let next = rotate_as(&app, &fresh.refresh_token, CHROME).await;
    assert_eq!(next.status(), 200);
}

#[tokio::test]
async fn a_browser_update_and_a_new_client_ip_keep_the_session() {
    let app = TestApp::spawn().await;
    let (email, password) = app.register_user().await;
    // Clients on two different addresses (all of 127/8 is loopback): the gateway sees each
    // connection's own source address, as API Gateway's `sourceIp`.
    let from = |last: u8| {
        reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
            .build()
            .unwrap()
    };
    let (home, mobile) = (from(2), from(3));
    let login = home
        .post(app.url("/api/v1/auth/login"))
        .header(header::USER_AGENT, FIREFOX)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let tokens: Value = login.json().await.unwrap();
    let stored = app
        .stored_session(
            tokens["user"]["id"].as_str().unwrap(),
            tokens["session_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(stored["client_ip"], "127.0.0.2");

    let rotated = mobile
        .post(app.url("/api/v1/auth/rotate"))
        .bearer_auth(tokens["refresh_token"].as_str().unwrap())
        .header(header::USER_AGENT, FIREFOX_UPDATED)
        .send()
        .await
        .unwrap();
    let status = rotated.status();
    let next: Value = rotated.json().await.unwrap();
    assert_eq!(status, 200, "{next}");
    let me_from_mobile = mobile
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(access_token(&next))
        .send()
        .await
        .unwrap();
    assert_eq!(me_from_mobile.status(), 200);
}

/// Sessions of every kind, before a global logout: (bearer customer's tokens, browser, admin's
/// tokens).
async fn everyone_signed_in(app: &TestApp) -> (Value, Browser, Value) {
    let (customer, _, _) = app.signed_in_customer().await;
    let browser = signed_in_browser(app).await;
    let admin = app.signed_in_admin().await;
    for access in [
        access_token(&customer),
        browser.access.clone(),
        access_token(&admin),
    ] {
        assert_eq!(me(app, &access).await.status(), 200);
    }
    (customer, browser, admin)
}

/// Every token of `everyone_signed_in` is refused; a new login works.
async fn assert_everyone_logged_out(
    app: &TestApp,
    (customer, browser, admin): &(Value, Browser, Value),
) {
    for access in [
        access_token(customer),
        browser.access.clone(),
        access_token(admin),
    ] {
        let problem = assert_problem(me(app, &access).await, 401).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("sign in again")
        );
    }
    for refresh in [&customer["refresh_token"], &admin["refresh_token"]] {
        let rotate = app
            .with_bearer(
                Method::POST,
                "/api/v1/auth/rotate",
                refresh.as_str().unwrap(),
            )
            .await;
        assert_problem(rotate, 401).await;
    }
    let rotate = cookie_post(
        app,
        "/api/v1/auth/rotate",
        &browser.cookie,
        Some(&browser.csrf),
        &[],
    )
    .await;
    assert_problem(rotate, 401).await;

    let (fresh, _, _) = app.signed_in_customer().await;
    assert_eq!(me(app, &access_token(&fresh)).await.status(), 200);
    let rotated = app
        .with_bearer(
            Method::POST,
            "/api/v1/auth/rotate",
            fresh["refresh_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(rotated.status(), 200);
}

#[tokio::test]
async fn an_admin_logs_everyone_out_and_it_is_audited() {
    let app = TestApp::spawn().await;
    let everyone = everyone_signed_in(&app).await;
    let customer = access_token(&everyone.0);
    let refused = app
        .with_bearer(Method::POST, "/api/v1/admin/sessions/revoke-all", &customer)
        .await;
    assert_problem(refused, 403).await;
    assert_eq!(
        me(&app, &customer).await.status(),
        200,
        "a 403 changes nothing"
    );

    let before = now_ms();
    let revoked = app
        .with_bearer(
            Method::POST,
            "/api/v1/admin/sessions/revoke-all",
            &access_token(&everyone.2),
        )
        .await;
    let status = revoked.status();
    let body: Value = revoked.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let epoch = body["sessions_valid_after_ms"].as_i64().unwrap();
    assert!(epoch >= before && epoch <= now_ms(), "{body}");
    assert_eq!(body["before_ms"], 0);

    assert_everyone_logged_out(&app, &everyone).await;

    let events = audit_actions(&app, "sessions:everyone").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let admin_id = everyone.2["user"]["id"].as_str().unwrap();
    assert_eq!(events[0]["action"], "auth.revoke_all_everyone");
    assert_eq!(events[0]["actor"], format!("admin:{admin_id}"));
    assert_eq!(
        events[0]["summary"]["after"]["sessions_valid_after_ms"],
        epoch
    );
    assert!(events[0]["request_id"].is_string());
}

#[tokio::test]
async fn the_cli_logs_everyone_out_and_it_is_audited() {
    let app = TestApp::spawn().await;
    let everyone = everyone_signed_in(&app).await;

    // What `lumi sessions revoke-all --table <t> --everyone` runs.
    let table = app.resource("AppTable");
    let revoked = sessions::revoke_everyone(
        &app.db(),
        &table,
        "operator:test",
        &Default::default(),
        now_ms(),
    )
    .await
    .unwrap();
    assert_everyone_logged_out(&app, &everyone).await;

    // A second run with a clock behind the first never moves the epoch back.
    let again = sessions::revoke_everyone(
        &app.db(),
        &table,
        "operator:test",
        &Default::default(),
        revoked.sessions_valid_after_ms - 60_000,
    )
    .await
    .unwrap();
    assert_eq!(again.before_ms, revoked.sessions_valid_after_ms);
    assert_eq!(
        again.sessions_valid_after_ms,
        revoked.sessions_valid_after_ms
    );

    let events = audit_actions(&app, "sessions:everyone").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["actor"] == "operator:test" && e["action"] == "auth.revoke_all_everyone")
    );
}
