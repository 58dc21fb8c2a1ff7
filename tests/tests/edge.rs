//! The shared HTTP edge, through the local gateway: request ids, version and security headers,
//! CORS, body limits, and every error as problem+json.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::{Router, routing::post};
use lumi_shared::{Config, Platform, http::Json};
use lumi_tests::{TestApp, assert_problem, bootstrap_stack, shared_moto};
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;

const LISTED: &str = "https://app.lumi-commerce.com";

#[tokio::test]
async fn every_response_carries_request_id_and_api_version() {
    let app = TestApp::spawn().await;
    for (path, status) in [
        ("/api/v1/health/live", 200),
        ("/api/v1/health/ready", 200),
        ("/nope", 404),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status().as_u16(), status);
        let headers = response.headers();
        assert!(!headers["x-request-id"].is_empty(), "{path}");
        assert_eq!(headers["x-api-version"], lumi_shared::API_VERSION, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(
            headers["strict-transport-security"]
                .to_str()
                .unwrap()
                .contains("max-age=")
        );
    }
}

#[tokio::test]
async fn the_gateway_request_id_wins_and_logs_can_quote_it() {
    let app = TestApp::spawn().await;
    // The local gateway, like API Gateway, gives each request an id; the caller's is not used
    // when the gateway's is there.
    let response = app
        .http
        .get(app.url("/api/v1/health/live"))
        .header("x-request-id", "caller-chosen-1")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, "caller-chosen-1");
    assert!(id.ends_with('='), "API Gateway-shaped id: {id}");
    let metric = app
        .metrics
        .json()
        .into_iter()
        .find(|d| d["request_id"] == id);
    assert!(metric.is_some(), "the metric line carries the request id");
}

#[tokio::test]
async fn cors_preflight_is_allowed_for_a_listed_origin_and_refused_for_another() {
    let app = TestApp::spawn().await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/health/ready"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight(LISTED).await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(allowed.headers()["access-control-allow-origin"], LISTED);
    assert!(!allowed.headers()["x-request-id"].is_empty());

    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert_problem(refused, 403).await;

    let simple = app
        .http
        .get(app.url("/api/v1/health/live"))
        .header("origin", LISTED)
        .send()
        .await
        .unwrap();
    assert_eq!(simple.headers()["access-control-allow-origin"], LISTED);
    let exposed = simple.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("x-api-version"),
        "{exposed}"
    );
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .post(app.url("/api/v1/health/live"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_problem(response, 413).await;
}

#[derive(Debug, Deserialize)]
struct Greeting {
    #[allow(dead_code)]
    name: String,
}

/// A router of the test's own behind the shared edge, for the JSON extractor.
async fn json_app() -> String {
    let stack = bootstrap_stack(shared_moto()).await;
    let mut env = stack.function_env("health").unwrap();
    env.set("MAX_BODY_BYTES", "1024");
    let platform = Platform::new(Config::from_env("health", &env).unwrap()).await;
    let routes = Router::new().route("/greet", post(|Json(_): Json<Greeting>| async { "hi" }));
    let app = lumi_shared::http::serve(platform, routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/greet", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn json_bodies_are_checked_and_rejections_are_problems() {
    let url = json_app().await;
    let client = reqwest::Client::new();
    let send = |content_type: &'static str, body: &'static str| {
        client
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(
        send("application/json", r#"{"name":"Yuki"}"#)
            .await
            .unwrap()
            .status(),
        200
    );
    let malformed =
        assert_problem(send("application/json", r#"{"name":"#).await.unwrap(), 400).await;
    assert_eq!(
        malformed["type"],
        "https://lumi-commerce.com/problems/malformed-json"
    );
    assert_problem(
        send("application/json", r#"{"name":7}"#).await.unwrap(),
        422,
    )
    .await;
    assert_problem(send("text/plain", r#"{"name":"Yuki"}"#).await.unwrap(), 415).await;
    let big: &'static str =
        Box::leak(format!(r#"{{"name":"{}"}}"#, "x".repeat(2000)).into_boxed_str());
    let too_big: Value = assert_problem(send("application/json", big).await.unwrap(), 413).await;
    assert!(too_big["detail"].as_str().unwrap().contains("1024"));
}

/// Every route of the template with a path parameter, called with identifiers of the wrong
/// shape: 404 problem+json, and not one AWS call (rate limits are off here, so the only calls
/// a request could make are its handler's).
#[tokio::test]
async fn malformed_path_identifiers_are_404_before_any_aws_call() {
    let app = TestApp::builder()
        .counting_aws_calls()
        .env("RATE_LIMIT_ENABLED", "false")
        .spawn()
        .await;
    let admin = app.signed_in_admin().await;
    let admin = admin["access_token"].as_str().unwrap().to_owned();
    let long = "A".repeat(65);
    let mut checked = 0;
    for route in app.routes.clone() {
        if route.method == "ANY" || !route.path.contains('{') {
            continue;
        }
        for bad in ["%C2%A3%C2%A3", "LUMI%230000", "a%20b", long.as_str()] {
            let path: String = route
                .path
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        bad
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let before = app.aws_call_log().len();
            let response = app
                .http
                .request(route.method.parse().unwrap(), app.url(&path))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 404, "{} {path}", route.method);
            // HEAD: the same answer without its body.
            if route.method != "HEAD" {
                let body = assert_problem(response, 404).await;
                assert!(
                    body["detail"]
                        .as_str()
                        .unwrap()
                        .contains("not a valid identifier"),
                    "{} {path}: {body}",
                    route.method
                );
            }
            let calls = app.aws_call_log()[before..].to_vec();
            assert!(calls.is_empty(), "{} {path} made {calls:?}", route.method);
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked} routes with parameters checked");
}

/// A path the API serves, asked with a method it does not serve there, is 405 problem+json with
/// `Allow` (whichever function serves the path: the catch-all answers); an unknown path is 404.
#[tokio::test]
async fn a_method_a_path_does_not_serve_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let trace = reqwest::Method::from_bytes(b"TRACE").unwrap();
    for (method, path, allow) in [
        (trace.clone(), "/api/v1/orders", "GET, POST"),
        (reqwest::Method::DELETE, "/api/v1/products/p_1", "GET"),
        (reqwest::Method::GET, "/api/v1/auth/login", "POST"),
        (
            reqwest::Method::PUT,
            "/api/v1/cart/items/SKU-1",
            "DELETE, PATCH",
        ),
        (reqwest::Method::PATCH, "/api/v1/admin/settings", "GET, PUT"),
    ] {
        let response = app
            .http
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let problem = assert_problem(response, 405).await;
        assert_eq!(
            problem["type"], "https://lumi-commerce.com/problems/method-not-allowed",
            "{problem}"
        );
    }
    // HEAD where a path declares GET only: API Gateway sends it to the catch-all as well (axum
    // alone would answer it with the GET handler); the signed image URLs declare HEAD.
    let response = app
        .http
        .head(app.url("/api/v1/products"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    let response = app
        .http
        .request(trace, app.url("/api/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("allow").is_none());
    assert_problem(response, 404).await;
}
