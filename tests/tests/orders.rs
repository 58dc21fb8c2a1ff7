//! The orders function end to end: catalog, cart reservations, checkout, idempotency, cancel,
//! tracking, against the serialized local stack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_shared::clock::ManualClock;
use lumi_tests::{TestApp, assert_problem, unique_prefix};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn token(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_owned()
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn add(app: &TestApp, token: &str, sku: &str, quantity: i64) -> reqwest::Response {
    send(
        app,
        Method::POST,
        "/api/v1/cart/items",
        token,
        None,
        Some(json!({ "variant": sku, "quantity": quantity })),
    )
    .await
}

async fn checkout(app: &TestApp, token: &str, key: &str) -> reqwest::Response {
    send(
        app,
        Method::POST,
        "/api/v1/orders",
        token,
        Some(key),
        Some(json!({})),
    )
    .await
}

fn sku() -> String {
    format!("SKU-{}", unique_prefix())
}

#[tokio::test]
async fn a_customer_browses_fills_a_cart_checks_out_lists_tracks_and_cancels() {
    let app = TestApp::spawn().await;
    let (a, b) = (sku(), sku());
    let product = app.product(&[(&a, 450, 10), (&b, 1290, 5)]).await;
    let listed: Value = app.get("/api/v1/products").await.json().await.unwrap();
    assert!(
        listed["products"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == product.as_str())
    );
    let one: Value = app
        .get(&format!("/api/v1/products/{product}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["variants"].as_array().unwrap().len(), 2);
    assert_problem(app.get("/api/v1/products/nope").await, 404).await;

    let customer = token(&app.quick_customer().await);
    assert_eq!(add(&app, &customer, &a, 2).await.status(), 200);
    let cart: Value = add(&app, &customer, &b, 1).await.json().await.unwrap();
    assert_eq!(cart["total"]["amount_minor"], 2 * 450 + 1290);
    assert_eq!(app.variant(&a).await.available, 8, "the cart holds two");
    let patched = send(
        &app,
        Method::PATCH,
        &format!("/api/v1/cart/items/{a}"),
        &customer,
        None,
        Some(json!({ "quantity": 3 })),
    )
    .await;
    assert_eq!(patched.status(), 200);
    assert_eq!(app.variant(&a).await.available, 7);

    let placed = checkout(&app, &customer, "k-1").await;
    assert_eq!(placed.status(), 201);
    let order: Value = placed.json().await.unwrap();
    let reference = order["reference"].as_str().unwrap().to_owned();
    assert!(
        reference.starts_with("LUMI-") && reference.len() == 14,
        "{reference}"
    );
    assert_eq!(order["total"]["amount_minor"], 3 * 450 + 1290);
    assert_eq!(
        (
            order["status"].as_str(),
            order["financial_status"].as_str(),
            order["fulfillment_status"].as_str()
        ),
        (Some("open"), Some("pending"), Some("unfulfilled"))
    );
    assert_eq!(order["payment"]["provider"], "manual");
    assert_eq!(order["payment"]["status"], "pending");
    assert_eq!(order["payment"]["amount_minor"], 3 * 450 + 1290);
    let (va, vb) = (app.variant(&a).await, app.variant(&b).await);
    assert_eq!(
        (va.stock, va.available, vb.stock, vb.available),
        (7, 7, 4, 4)
    );
    let cart: Value = send(&app, Method::GET, "/api/v1/cart", &customer, None, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(cart["lines"].as_array().unwrap().is_empty());

    let list: Value = send(&app, Method::GET, "/api/v1/orders", &customer, None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["orders"][0]["reference"], reference.as_str());
    let cancelled = send(
        &app,
        Method::POST,
        &format!("/api/v1/orders/{reference}/cancel"),
        &customer,
        Some("c-1"),
        None,
    )
    .await;
    assert_eq!(cancelled.status(), 200);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(
        (
            cancelled["status"].as_str(),
            cancelled["financial_status"].as_str(),
            cancelled["fulfillment_status"].as_str()
        ),
        (Some("cancelled"), Some("voided"), Some("removed")),
        "nothing was paid: nothing to refund"
    );
    assert!(cancelled["refunds"].as_array().unwrap().is_empty());
    let va = app.variant(&a).await;
    assert_eq!((va.stock, va.available), (10, 10), "stock came back");
    let track: Value = send(
        &app,
        Method::GET,
        &format!("/api/v1/orders/{reference}/track"),
        &customer,
        None,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(track["status"], "cancelled");
    assert_eq!(track["financial_status"], "voided");
    let timeline = track["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 2);
    assert_eq!(timeline[0]["action"], "order.placed");
    assert_eq!(timeline[1]["action"], "order.cancel");
    assert!(
        timeline[1]["changes"]
            .as_array()
            .unwrap()
            .contains(&json!({ "facet": "order", "from": "open", "to": "cancelled" })),
        "{}",
        timeline[1]
    );
    assert_eq!(
        timeline[1]["actor"], "user",
        "the customer sees roles, not ids"
    );

    assert_eq!(app.metric_total("order_created_total", &[]), 1.0);
    assert_eq!(
        app.metric_total(
            "order_status_transitions_total",
            &[("facet", "order"), ("from", "open"), ("to", "cancelled")]
        ),
        1.0
    );
    assert_eq!(
        app.metric_total(
            "order_status_transitions_total",
            &[("facet", "fulfillment"), ("to", "removed")]
        ),
        1.0
    );
    assert!(app.metric_total("lumi_cart_operations_total", &[]) >= 3.0);

    // Someone else's order does not exist for them.
    let other = token(&app.quick_customer().await);
    assert_problem(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/orders/{reference}"),
            &other,
            None,
            None,
        )
        .await,
        404,
    )
    .await;
    assert_problem(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/orders/{reference}/track"),
            &other,
            None,
            None,
        )
        .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn a_hundred_customers_race_for_ten_units_and_exactly_ten_orders_exist() {
    let app = TestApp::spawn().await;
    let sku = sku();
    app.product(&[(&sku, 990, 10)]).await;
    let customers: Vec<String> = futures::future::join_all((0..100).map(|_| app.quick_customer()))
        .await
        .iter()
        .map(token)
        .collect();
    let attempts = customers.iter().enumerate().map(|(i, customer)| {
        let (app, sku) = (&app, &sku);
        async move {
            let added = add(app, customer, sku, 1).await;
            if added.status() != StatusCode::OK {
                let status = added.status().as_u16();
                let body = assert_problem(added, 409).await;
                assert!(
                    body["detail"].as_str().unwrap().contains("out of stock"),
                    "{body}"
                );
                return status;
            }
            checkout(app, customer, &format!("race-{i}"))
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        90,
        "{statuses:?}"
    );
    let variant = app.variant(&sku).await;
    assert_eq!((variant.stock, variant.available), (0, 0));
}

#[tokio::test]
async fn twenty_concurrent_checkouts_with_one_key_make_one_order() {
    let app = TestApp::spawn().await;
    let sku = sku();
    app.product(&[(&sku, 500, 5)]).await;
    let customer = token(&app.quick_customer().await);
    add(&app, &customer, &sku, 2).await;
    let statuses: Vec<u16> =
        futures::future::join_all((0..20).map(|_| checkout(&app, &customer, "same-key")))
            .await
            .into_iter()
            .map(|r| r.status().as_u16())
            .collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let list: Value = send(&app, Method::GET, "/api/v1/orders", &customer, None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["orders"].as_array().unwrap().len(), 1);
    assert_eq!(app.variant(&sku).await.stock, 3);

    // Afterwards the key answers what it answered, and refuses another body.
    let again = checkout(&app, &customer, "same-key").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let replayed: Value = again.json().await.unwrap();
    assert_eq!(replayed["reference"], list["orders"][0]["reference"]);
    let other_body = send(
        &app,
        Method::POST,
        "/api/v1/orders",
        &customer,
        Some("same-key"),
        Some(json!({ "note": "ring twice" })),
    )
    .await;
    assert_problem(other_body, 422).await;
}

#[tokio::test]
async fn concurrent_cancels_restock_exactly_once() {
    let app = TestApp::spawn().await;
    let sku = sku();
    app.product(&[(&sku, 500, 6)]).await;
    let customer = token(&app.quick_customer().await);
    add(&app, &customer, &sku, 4).await;
    let order: Value = checkout(&app, &customer, "k").await.json().await.unwrap();
    let reference = order["reference"].as_str().unwrap();
    assert_eq!(app.variant(&sku).await.stock, 2);
    let path = format!("/api/v1/orders/{reference}/cancel");
    let statuses: Vec<u16> = futures::future::join_all((0..10).map(|i| {
        let (app, customer, path) = (&app, &customer, &path);
        async move {
            send(
                app,
                Method::POST,
                path,
                customer,
                Some(&format!("cancel-{i}")),
                None,
            )
            .await
            .status()
            .as_u16()
        }
    }))
    .await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "cancelling a cancelled order answers it as it is: {statuses:?}"
    );
    let variant = app.variant(&sku).await;
    assert_eq!((variant.stock, variant.available), (6, 6), "restocked once");
    let order = app.stored_order(reference).await;
    assert_eq!(order.lines[0].restocked, 4);
    assert_eq!(
        order
            .timeline
            .iter()
            .filter(|e| e.action == "order.cancel")
            .count(),
        1,
        "one cancel"
    );
    let admin = app.admin_token().await;
    let ledger = app
        .get_json(&format!("/api/v1/admin/variants/{sku}/ledger"), &admin)
        .await;
    let kinds: Vec<&str> = ledger["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["initial", "sale", "cancel_restock"], "{ledger}");
    assert_eq!(ledger["stock"], 6);
}

#[tokio::test]
async fn expired_reservations_give_their_stock_back() {
    let clock = ManualClock::starting_now();
    let app = TestApp::builder().clock(&clock).spawn().await;
    let sku = sku();
    app.product(&[(&sku, 500, 3)]).await;
    let (first, second) = (
        token(&app.quick_customer().await),
        token(&app.quick_customer().await),
    );
    assert_eq!(add(&app, &first, &sku, 3).await.status(), 200);
    assert_problem(add(&app, &second, &sku, 1).await, 409).await;
    clock.advance_secs(16 * 60);
    assert_eq!(
        add(&app, &second, &sku, 2).await.status(),
        200,
        "the lapsed reservation was swept"
    );
    assert_eq!(app.variant(&sku).await.available, 1);
    let cart: Value = send(&app, Method::GET, "/api/v1/cart", &first, None, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        cart["lines"].as_array().unwrap().is_empty(),
        "the first cart lost its lapsed line"
    );
    assert_problem(checkout(&app, &first, "late").await, 422).await;
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let sku = sku();
    app.product(&[(&sku, 500, 5)]).await;
    let customer = token(&app.quick_customer().await);
    for quantity in [0, -1, 21] {
        let body = assert_problem(add(&app, &customer, &sku, quantity).await, 422).await;
        assert_eq!(body["errors"][0]["field"], "quantity", "{quantity}");
    }
    let unknown = assert_problem(add(&app, &customer, "NO-SUCH-SKU", 1).await, 422).await;
    assert_eq!(unknown["errors"][0]["field"], "variant");
    assert_problem(checkout(&app, &customer, "empty").await, 422).await;
    add(&app, &customer, &sku, 1).await;
    let missing_key = send(
        &app,
        Method::POST,
        "/api/v1/orders",
        &customer,
        None,
        Some(json!({})),
    )
    .await;
    assert!(
        assert_problem(missing_key, 400).await["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    assert_problem(checkout(&app, &customer, "has spaces").await, 400).await;
    let huge = app
        .http
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&customer)
        .header("idempotency-key", "big")
        .header("content-type", "application/json")
        .body(format!(r#"{{"note":"{}"}}"#, "x".repeat(2 * 1024 * 1024)))
        .send()
        .await
        .unwrap();
    assert_problem(huge, 413).await;
    let long_note = send(
        &app,
        Method::POST,
        "/api/v1/orders",
        &customer,
        Some("note"),
        Some(json!({ "note": "x".repeat(501) })),
    )
    .await;
    assert_problem(long_note, 422).await;
    let variant = app.variant(&sku).await;
    assert_eq!(
        (variant.stock, variant.available),
        (5, 4),
        "only the one valid reservation"
    );
    let list: Value = send(&app, Method::GET, "/api/v1/orders", &customer, None, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(list["orders"].as_array().unwrap().is_empty());
    assert_problem(app.get("/api/v1/cart").await, 401).await;
}

#[tokio::test]
async fn the_customer_rate_limit_applies_and_lists_page_by_cursor() {
    let app = TestApp::spawn().await;
    let sku = sku();
    app.product(&[(&sku, 100, 50)]).await;
    let customer = token(&app.quick_customer().await);
    for i in 0..3 {
        add(&app, &customer, &sku, 1).await;
        assert_eq!(
            checkout(&app, &customer, &format!("k{i}")).await.status(),
            201
        );
    }
    let first = send(
        &app,
        Method::GET,
        "/api/v1/orders?limit=2",
        &customer,
        None,
        None,
    )
    .await;
    assert!(
        first.headers()["ratelimit-policy"]
            .to_str()
            .unwrap()
            .contains(r#""customer";q=60;w=300"#)
    );
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["orders"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = send(
        &app,
        Method::GET,
        &format!("/api/v1/orders?limit=2&cursor={cursor}"),
        &customer,
        None,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(second["orders"].as_array().unwrap().len(), 1);
    assert!(first["orders"][0]["created_at"].as_str() >= first["orders"][1]["created_at"].as_str());
    assert_problem(
        send(
            &app,
            Method::GET,
            "/api/v1/orders?cursor=garbage",
            &customer,
            None,
            None,
        )
        .await,
        400,
    )
    .await;
}

/// JSON Schema's `integer` (the OpenAPI document's) takes `2.0`: an integer field does too;
/// `2.5` is still a wrong type (422 naming the field).
#[tokio::test]
async fn a_whole_number_written_as_a_float_is_an_integer() {
    let app = TestApp::spawn().await;
    let sku = lumi_tests::unique_sku();
    app.product(&[(&sku, 1500, 5)]).await;
    let customer = app.customer_token().await;
    let body = serde_json::json!({ "variant": sku, "quantity": 2.0 });
    let response = app
        .call(
            reqwest::Method::POST,
            "/api/v1/cart/items",
            Some(&customer),
            None,
            Some(&body),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body = serde_json::json!({ "variant": sku, "quantity": 2.5 });
    let response = app
        .call(
            reqwest::Method::POST,
            "/api/v1/cart/items",
            Some(&customer),
            None,
            Some(&body),
        )
        .await;
    let problem = lumi_tests::assert_problem(response, 422).await;
    assert_eq!(problem["errors"][0]["field"], "quantity", "{problem}");
}
