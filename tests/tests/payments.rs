//! Payments behind `featureFlags.orderPayments`: the provider webhook (HMAC), captures, failures
//! with their restock and refund email on SQS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_shared::{commerce::payments, settings::SystemSettings};
use lumi_tests::{TestApp, assert_problem, unique_prefix};
use serde_json::{Value, json};

async fn online_app() -> TestApp {
    let app = TestApp::builder()
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .spawn()
        .await;
    let mut settings = SystemSettings::default();
    settings.feature_flags.order_payments = true;
    app.put_settings(&settings).await;
    app
}

/// A customer's order of `quantity` units of a fresh variant with stock 5.
async fn order(app: &TestApp, quantity: i64) -> (String, Value) {
    let sku = format!("SKU-{}", unique_prefix());
    app.product(&[(&sku, 700, 5)]).await;
    let tokens = app.quick_customer().await;
    let token = tokens["access_token"].as_str().unwrap();
    let add = app
        .http
        .post(app.url("/api/v1/cart/items"))
        .bearer_auth(token)
        .json(&json!({ "variant": sku, "quantity": quantity }));
    assert_eq!(add.send().await.unwrap().status(), 200);
    let placed = app
        .http
        .post(app.url("/api/v1/orders"))
        .bearer_auth(token)
        .header("idempotency-key", "k")
        .json(&json!({}));
    let order: Value = placed.send().await.unwrap().json().await.unwrap();
    (sku, order)
}

async fn webhook(app: &TestApp, body: &Value, secret: Option<&str>) -> reqwest::Response {
    let body = body.to_string();
    let secret = match secret {
        Some(secret) => secret.to_owned(),
        None => {
            let secrets: Value = serde_json::from_str(&app.secret_json().await).unwrap();
            secrets["payment_webhook_secrets"]["lumipay"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let now = lumi_shared::auth::now_ms() / 1000;
    app.http
        .post(app.url("/api/v1/payments/webhooks/lumipay"))
        .header("content-type", "application/json")
        .header(
            "lumi-signature",
            payments::sign(secret.as_bytes(), now, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn status_of(app: &TestApp, reference: &str) -> String {
    let order = lumi_shared::commerce::orders::get(&app.db(), &app.resource("AppTable"), reference)
        .await
        .unwrap()
        .unwrap();
    order.status.as_str().to_owned()
}

#[tokio::test]
async fn a_captured_payment_pays_the_order_once_and_a_bad_signature_changes_nothing() {
    let app = online_app().await;
    let (_, order) = order(&app, 1).await;
    assert_eq!(order["payment"]["provider"], "lumipay");
    assert_eq!(order["payment"]["status"], "pending");
    let reference = order["reference"].as_str().unwrap();
    let event = json!({ "event_id": "evt-1", "type": "payment.captured", "payment_id": order["payment"]["id"] });

    assert_problem(webhook(&app, &event, Some("not-the-key")).await, 401).await;
    let unsigned = app
        .http
        .post(app.url("/api/v1/payments/webhooks/lumipay"))
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_problem(unsigned, 401).await;
    assert_eq!(status_of(&app, reference).await, "pending_payment");

    let applied = webhook(&app, &event, None).await;
    assert_eq!(applied.status(), 200);
    let applied: Value = applied.json().await.unwrap();
    assert_eq!(
        (
            applied["payment_status"].as_str(),
            applied["order_status"].as_str()
        ),
        (Some("captured"), Some("paid"))
    );
    let again: Value = webhook(&app, &event, None).await.json().await.unwrap();
    assert_eq!(again["duplicate"], true);
    let order = lumi_shared::commerce::orders::get(&app.db(), &app.resource("AppTable"), reference)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.timeline.len(), 2);
    assert_eq!(order.timeline[1].actor, "provider:lumipay");
    let late_failure =
        json!({ "event_id": "evt-2", "type": "payment.failed", "payment_id": event["payment_id"] });
    assert_problem(webhook(&app, &late_failure, None).await, 409).await;
    let unknown =
        json!({ "event_id": "evt-3", "type": "payment.captured", "payment_id": "pay_none" });
    assert_problem(webhook(&app, &unknown, None).await, 404).await;
}

#[tokio::test]
async fn a_failed_payment_marks_the_order_restocks_once_and_queues_the_refund_email() {
    let app = online_app().await;
    let (sku, order) = order(&app, 3).await;
    assert_eq!(app.variant(&sku).await.stock, 2);
    let reference = order["reference"].as_str().unwrap();
    let event = json!({ "event_id": "evt-f", "type": "payment.failed", "payment_id": order["payment"]["id"], "reason": "card declined" });
    assert_eq!(webhook(&app, &event, None).await.status(), 200);
    assert_eq!(
        webhook(&app, &event, None).await.status(),
        200,
        "a redelivery is a duplicate"
    );
    assert_eq!(status_of(&app, reference).await, "payment_failed");
    let variant = app.variant(&sku).await;
    assert_eq!(
        (variant.stock, variant.available),
        (5, 5),
        "the stock came back once"
    );

    let sqs = aws_sdk_sqs::Client::new(&app.stack.sdk_config);
    let received = sqs
        .receive_message()
        .queue_url(app.resource("RefundEmailQueue"))
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 1);
    let message: Value = serde_json::from_str(received[0].body().unwrap()).unwrap();
    assert_eq!(message["schema"], 1);
    assert_eq!(message["kind"], "order_refund");
    assert_eq!(message["order_reference"], reference);
    assert_eq!(message["amount_minor"], 2100);
    assert_eq!(message["currency"], "EUR");
    assert_eq!(message["reason"], "card declined");
    assert!(
        message["recipient"]
            .as_str()
            .unwrap()
            .ends_with("@example.com")
    );
    assert_eq!(
        message["idempotency_id"],
        format!("{}:failed", order["payment"]["id"].as_str().unwrap())
    );

    // The customer sees it; the order can still be cancelled (nothing more to restock).
    let timeline =
        lumi_shared::commerce::orders::get(&app.db(), &app.resource("AppTable"), reference)
            .await
            .unwrap()
            .unwrap()
            .timeline;
    assert!(timeline[1].note.contains("card declined"));
}

#[tokio::test]
async fn with_the_flag_off_orders_are_paid_manually() {
    let app = TestApp::spawn().await;
    let (_, order) = order(&app, 1).await;
    assert_eq!(order["payment"]["provider"], "manual");
    let payment = app
        .db()
        .get_consistent::<payments::PaymentItem>(
            &app.resource("AppTable"),
            payments::payment_key(order["payment"]["id"].as_str().unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            payment.provider.as_str(),
            payment.status.as_str(),
            payment.amount_minor
        ),
        ("manual", "awaiting_payment", 700)
    );
}
