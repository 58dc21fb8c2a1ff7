//! Payments behind `featureFlags.orderPayments`: the provider webhook (HMAC), captures (which
//! must be what is due), failures with their restock and refund email on SQS, and the events a
//! provider retries, which are acknowledged rather than refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_tests::{TestApp, assert_problem, unique_sku};
use serde_json::{Value, json};

async fn online_app() -> TestApp {
    TestApp::builder().online_payments(None).spawn().await
}

/// A customer's order of `quantity` units at 7 EUR of a fresh variant with stock 5.
async fn order(app: &TestApp, quantity: i64) -> (String, Value) {
    let sku = unique_sku();
    app.product(&[(&sku, 700, 5)]).await;
    let token = app.customer_token().await;
    let order = app.place_order(&token, &[(&sku, quantity)]).await;
    (sku, order)
}

#[tokio::test]
async fn a_captured_payment_pays_the_order_once_and_a_bad_signature_changes_nothing() {
    let app = online_app().await;
    let (_, order) = order(&app, 1).await;
    assert_eq!(order["payment"]["provider"], "lumipay");
    assert_eq!(order["payment"]["status"], "pending");
    assert!(
        order["payment"]["id"].as_str().unwrap().starts_with("pay_"),
        "{order}"
    );
    let reference = order["reference"].as_str().unwrap();
    let event = TestApp::capture_event(&order);
    assert_eq!(event["amount_minor"], 700);
    assert_eq!(event["currency"], "EUR");

    assert_problem(
        app.lumipay_webhook_signed_with(&event, "not-the-key").await,
        401,
    )
    .await;
    let unsigned = app
        .http
        .post(app.url("/api/v1/payments/webhooks/lumipay"))
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_problem(unsigned, 401).await;
    // A capture must say how much: without it the event is not understood.
    let mut vague = event.clone();
    vague.as_object_mut().unwrap().remove("amount_minor");
    let body = assert_problem(app.lumipay_webhook(&vague).await, 422).await;
    assert_eq!(body["errors"][0]["field"], "amount_minor", "{body}");
    let untouched = app.stored_order(reference).await;
    assert_eq!(
        (
            untouched.status.as_str(),
            untouched.financial_status().as_str(),
            untouched.payment.status.as_str()
        ),
        ("open", "pending", "pending")
    );

    let applied = app.lumipay_webhook(&event).await;
    assert_eq!(applied.status(), 200);
    let applied: Value = applied.json().await.unwrap();
    assert_eq!(applied["applied"], true, "{applied}");
    assert_eq!(
        (
            applied["payment_status"].as_str(),
            applied["financial_status"].as_str(),
            applied["order_status"].as_str()
        ),
        (Some("captured"), Some("paid"), Some("open"))
    );
    let again: Value = app.lumipay_webhook(&event).await.json().await.unwrap();
    assert_eq!(
        (again["applied"].as_bool(), again["outcome"].as_str()),
        (Some(false), Some("duplicate"))
    );
    let stored = app.stored_order(reference).await;
    assert_eq!(stored.payment.captured_minor, 700, "captured once");
    assert_eq!(stored.timeline.len(), 2);
    assert_eq!(stored.timeline[1].actor, "provider:lumipay");
    assert_eq!(stored.timeline[1].action, "payment.capture");

    // A failure after the capture is acknowledged (a provider retries refusals forever) and
    // changes nothing.
    let late_failure = json!({
        "event_id": "evt-2", "type": "payment.failed", "payment_id": event["payment_id"],
        "reason": "late",
    });
    let late = app.lumipay_webhook(&late_failure).await;
    assert_eq!(late.status(), 200);
    let late: Value = late.json().await.unwrap();
    assert_eq!(
        (late["applied"].as_bool(), late["outcome"].as_str()),
        (Some(false), Some("ignored")),
        "{late}"
    );
    let after = app.stored_order(reference).await;
    assert_eq!(
        (after.status.as_str(), after.financial_status().as_str()),
        ("open", "paid")
    );
    assert_eq!(after.version, stored.version, "nothing written");
    // Types this integration does not handle are acknowledged too.
    let other_type = json!({ "event_id": "evt-4", "type": "payment.disputed", "payment_id": event["payment_id"] });
    let ignored: Value = app.lumipay_webhook(&other_type).await.json().await.unwrap();
    assert_eq!(ignored["outcome"], "ignored_type");
    let unknown = json!({
        "event_id": "evt-3", "type": "payment.captured", "payment_id": "pay_none",
        "amount_minor": 700, "currency": "EUR",
    });
    assert_problem(app.lumipay_webhook(&unknown).await, 404).await;
    let unknown = json!({
        "event_id": "evt-3", "type": "payment.captured",
        "payment_id": format!("pay_{}", "0".repeat(32)), "amount_minor": 700, "currency": "EUR",
    });
    assert_problem(app.lumipay_webhook(&unknown).await, 404).await;
}

#[tokio::test]
async fn a_failed_payment_cancels_the_order_restocks_once_and_queues_the_refund_email() {
    let app = online_app().await;
    let (sku, order) = order(&app, 3).await;
    assert_eq!(app.variant(&sku).await.stock, 2);
    let reference = order["reference"].as_str().unwrap();
    let payment_id = order["payment"]["id"].as_str().unwrap();
    let event = json!({
        "event_id": "evt-f", "type": "payment.failed", "payment_id": payment_id,
        "reason": "card declined",
    });
    let first: Value = app.lumipay_webhook(&event).await.json().await.unwrap();
    assert_eq!(
        (
            first["order_status"].as_str(),
            first["financial_status"].as_str(),
            first["payment_status"].as_str()
        ),
        (Some("cancelled"), Some("voided"), Some("failed")),
        "{first}"
    );
    let redelivery = app.lumipay_webhook(&event).await;
    assert_eq!(redelivery.status(), 200, "a redelivery is a duplicate");
    assert_eq!(
        redelivery.json::<Value>().await.unwrap()["outcome"],
        "duplicate"
    );
    let stored = app.stored_order(reference).await;
    assert_eq!(stored.status.as_str(), "cancelled");
    assert_eq!(
        stored.payment.failure_reason.as_deref(),
        Some("card declined")
    );
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
    assert_eq!(message["kind"], "payment_failed", "nothing was charged");
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
        format!("payment:{payment_id}:failed:1")
    );

    // The customer sees why.
    let timeline = app.stored_order(reference).await.timeline;
    assert_eq!(timeline[1].action, "payment.fail");
    assert!(timeline[1].note.contains("card declined"));
    // A capture that arrives after all is refunded, not refused.
    let late = app.lumipay_capture(&order).await;
    assert_eq!(late["applied"], true, "{late}");
    let stored = app.stored_order(reference).await;
    assert_eq!(
        (stored.payment.captured_minor, stored.payment.refunded_minor),
        (2100, 2100)
    );
    assert_eq!(app.variant(&sku).await.stock, 5, "no second restock");
    // The provider confirms the refund: it is settled, and the money is back.
    assert_eq!(stored.financial_status().as_str(), "refund_pending");
    let confirmed = json!({
        "event_id": "evt-r", "type": "refund.succeeded", "payment_id": payment_id,
        "refund_id": stored.refunds[0].id,
    });
    let confirmed: Value = app.lumipay_webhook(&confirmed).await.json().await.unwrap();
    assert_eq!(confirmed["financial_status"], "refunded", "{confirmed}");
    let stored = app.stored_order(reference).await;
    assert_eq!(
        stored.refunds[0].status,
        lumi_commerce::model::RefundStatus::Succeeded
    );
    let no_such = json!({
        "event_id": "evt-r2", "type": "refund.succeeded", "payment_id": payment_id,
        "refund_id": "re_nothing",
    });
    assert_problem(app.lumipay_webhook(&no_such).await, 404).await;
}

#[tokio::test]
async fn with_the_flag_off_orders_are_paid_manually() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (_, order) = order(&app, 1).await;
    assert_eq!(order["payment"]["provider"], "manual");
    let payment_id = order["payment"]["id"].as_str().unwrap();
    let listed = app
        .admin_payments(&admin, "provider=manual&status=pending")
        .await;
    let payment = listed
        .iter()
        .find(|p| p["payment_id"] == payment_id)
        .unwrap();
    assert_eq!(
        (
            payment["provider"].as_str(),
            payment["status"].as_str(),
            payment["amount_minor"].as_i64(),
            payment["order_reference"].as_str()
        ),
        (
            Some("manual"),
            Some("pending"),
            Some(700),
            order["reference"].as_str()
        )
    );
    // The provider cannot speak for a manual payment.
    let capture = TestApp::capture_event(&order);
    assert_problem(app.lumipay_webhook(&capture).await, 404).await;
    // The admin records the money received; it must be what is due.
    let short = app.admin_capture(&admin, payment_id, 100, "EUR").await;
    let short: Value = short.json().await.unwrap();
    assert_eq!(short["status"], "amount_mismatch", "{short}");
    app.admin_pay(&admin, &order).await;
    let stored = app.stored_order(order["reference"].as_str().unwrap()).await;
    assert_eq!(
        (
            stored.payment.status.as_str(),
            stored.payment.captured_minor,
            stored.financial_status().as_str()
        ),
        ("captured", 700, "paid")
    );
}
