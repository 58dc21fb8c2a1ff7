//! Stripe, for real: PaymentIntents, signed webhooks and refunds against a local Stripe server
//! (localstripe, started by the harness for each app), the local AWS stack and the HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_tests::{TestApp, assert_problem, unique_prefix};
use serde_json::{Value, json};

/// An app with online payments, a customer, and an order of `quantity` units at 12.50 EUR from
/// a fresh variant with stock 5: (app, customer token, sku, checkout answer).
async fn placed(quantity: i64) -> (TestApp, String, String, Value) {
    // Boxed: the app's start is a large future.
    let app = Box::pin(TestApp::builder().online_payments(None).spawn()).await;
    let sku = format!("SKU-{}", unique_prefix());
    app.product(&[(&sku, 1_250, 5)]).await;
    let token = app.customer_token().await;
    app.add_to_cart_response(&token, &sku, quantity).await;
    let response = app.checkout_response(&token, "first").await;
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    (app, token, sku, order)
}

#[tokio::test]
async fn a_card_payment_is_confirmed_with_stripe_and_its_webhook_pays_the_order() {
    let (app, token, sku, order) = placed(2).await;
    let reference = order["reference"].as_str().unwrap();
    assert_eq!(order["payment"]["provider"], "stripe");
    let intent = order["payment"]["provider_ref"].as_str().unwrap();
    assert!(intent.starts_with("pi_"), "{order}");
    // What Stripe.js needs: the intent's client secret and the publishable key.
    let action = &order["action"];
    assert_eq!(action["provider"], "stripe");
    assert!(
        action["client_secret"]
            .as_str()
            .unwrap()
            .starts_with(intent)
    );
    assert_eq!(action["publishable_key"], "pk_test_lumi_local");

    // A retried checkout answers the same order and the same intent (no second intent).
    let again = app.checkout_response(&token, "first").await;
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["payment"]["provider_ref"], intent);
    assert_eq!(again["action"]["client_secret"], action["client_secret"]);

    assert_eq!(
        app.pay_with_card(&order, "4242424242424242").await,
        "succeeded"
    );
    let paid = app.wait_for_payment(reference, "captured").await;
    assert_eq!(paid.payment.captured_minor, 2_500);
    assert_eq!(paid.financial_status().as_str(), "paid");
    assert_eq!(
        paid.timeline.last().unwrap().actor,
        "provider:stripe",
        "the signed webhook from Stripe paid it"
    );
    assert_eq!(app.variant(&sku).await.stock, 3);
    assert_eq!(
        app.metric_total(
            "order_status_transitions_total",
            &[("facet", "payment"), ("to", "captured")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_declined_card_fails_the_payment_restocks_once_and_sends_one_notice() {
    let (app, _, sku, order) = placed(1).await;
    let reference = order["reference"].as_str().unwrap();
    // localstripe declines this test card on a PaymentIntent (see docs/stripe-local-differences.md).
    assert_eq!(
        app.pay_with_card(&order, "4000000000000341").await,
        "card_declined"
    );
    let failed = app.wait_for_payment(reference, "failed").await;
    assert_eq!(failed.status.as_str(), "cancelled");
    assert_eq!(app.variant(&sku).await.stock, 5, "the unit is back once");
    app.drain_refund_emails().await;
    let notices = app.emails_to(&failed.customer_email).await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].to_string().contains("did not go through"));
}

#[tokio::test]
async fn admin_refunds_become_stripe_refunds_of_exactly_those_amounts_once_per_key() {
    let (app, _, sku, order) = placed(3).await;
    let reference = order["reference"].as_str().unwrap();
    app.pay_with_card(&order, "4242424242424242").await;
    app.wait_for_payment(reference, "captured").await;
    let admin = app.admin_token().await;
    app.admin_fulfil(&admin, reference, None).await;

    let partial = app
        .admin_refund(
            &admin,
            reference,
            "partial-1",
            &[(1, 1, "return")],
            "damaged",
        )
        .await;
    assert_eq!(partial.status(), 201);
    let partial: Value = partial.json().await.unwrap();
    let refund = &partial["refund"];
    assert_eq!(refund["amount_minor"], 1_250);
    assert_eq!(refund["status"], "succeeded", "{partial}");
    let stripe_refund = refund["provider_refund_id"].as_str().unwrap().to_owned();

    // The same request again: the recorded answer, no second Stripe refund.
    let replay = app
        .admin_refund(
            &admin,
            reference,
            "partial-1",
            &[(1, 1, "return")],
            "damaged",
        )
        .await;
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(
        replay, partial,
        "the replay answers what the first request did"
    );

    let rest = app
        .admin_refund(
            &admin,
            reference,
            "rest-1",
            &[(1, 2, "no_restock")],
            "goodwill",
        )
        .await;
    let rest: Value = rest.json().await.unwrap();
    assert_eq!(rest["refund"]["amount_minor"], 2_500);
    assert_eq!(rest["order"]["financial_status"], "refunded");

    // Stripe holds exactly two refunds of those amounts.
    let client = app.stripe.as_ref().unwrap().client().unwrap();
    let intent = order["payment"]["provider_ref"].as_str().unwrap();
    let listed: Value = client
        .get(&format!("/v1/refunds?payment_intent={intent}"))
        .await
        .unwrap();
    let mut amounts: Vec<i64> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [1_250, 2_500], "{listed}");
    assert!(listed.to_string().contains(&stripe_refund));
    assert_eq!(
        app.variant(&sku).await.stock,
        3,
        "only the returned unit came back"
    );
}

#[tokio::test]
async fn a_customer_cancelling_a_paid_order_gets_a_stripe_refund_and_one_email() {
    let (app, token, sku, order) = placed(2).await;
    let reference = order["reference"].as_str().unwrap();
    app.pay_with_card(&order, "4242424242424242").await;
    app.wait_for_payment(reference, "captured").await;
    let cancelled = app.cancel_order(&token, reference, "cancel-1").await;
    assert_eq!(cancelled.status(), 200);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["financial_status"], "refunded", "{cancelled}");
    assert_eq!(cancelled["refunds"][0]["status"], "succeeded");
    assert_eq!(app.variant(&sku).await.stock, 5);
    app.drain_refund_emails().await;
    let stored = app.stored_order(reference).await;
    assert_eq!(app.emails_to(&stored.customer_email).await.len(), 1);
}

#[tokio::test]
async fn forged_stale_and_replayed_webhooks_change_nothing_and_duplicates_apply_once() {
    let (app, _, _, order) = placed(1).await;
    let reference = order["reference"].as_str().unwrap();
    let event = TestApp::capture_event(&order);
    let secret = app.stripe_webhook_secret().await;

    let forged = app
        .stripe_webhook_signed_with(&event, "whsec_not_ours", app.now_secs())
        .await;
    assert_problem(forged, 401).await;
    let stale = app
        .stripe_webhook_signed_with(&event, &secret, app.now_secs() - 600)
        .await;
    assert_problem(stale, 401).await;
    let unsigned = app
        .http
        .post(app.url("/api/v1/payments/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_problem(unsigned, 400).await;
    assert_eq!(
        app.stored_order(reference).await.payment.status.as_str(),
        "pending"
    );

    // The real one, twice, then a late failure: one capture, the rest acknowledged.
    for _ in 0..2 {
        assert_eq!(app.stripe_webhook(&event).await.status(), 200);
    }
    let late = app
        .stripe_webhook(&TestApp::intent_failed(&order, "declined late"))
        .await;
    assert_eq!(late.status(), 200);
    let late: Value = late.json().await.unwrap();
    assert_eq!(late["applied"], false, "{late}");
    let stored = app.stored_order(reference).await;
    assert_eq!(stored.payment.status.as_str(), "captured");
    assert_eq!(stored.payment.events.len(), 1);
    // An unknown type and a payment that is not ours: acknowledged.
    let other = TestApp::stripe_event("customer.created", json!({ "id": "cus_1" }));
    let other: Value = app.stripe_webhook(&other).await.json().await.unwrap();
    assert_eq!(other["outcome"], "ignored_type");
    let stranger = TestApp::stripe_event(
        "payment_intent.succeeded",
        json!({ "id": "pi_stranger", "status": "succeeded", "amount": 100, "amount_received": 100, "currency": "eur" }),
    );
    let stranger: Value = app.stripe_webhook(&stranger).await.json().await.unwrap();
    assert_eq!(stranger["outcome"], "not_ours");
}

#[tokio::test]
async fn a_refund_made_in_the_dashboard_and_a_chargeback_are_recorded() {
    let (app, _, _, order) = placed(1).await;
    let reference = order["reference"].as_str().unwrap();
    let intent = order["payment"]["provider_ref"].as_str().unwrap();
    app.stripe_capture(&order).await;
    let dashboard_refund = TestApp::stripe_event(
        "refund.updated",
        json!({ "id": "re_dashboard_1", "object": "refund", "amount": 500, "currency": "eur", "status": "succeeded", "payment_intent": intent, "metadata": {} }),
    );
    for _ in 0..2 {
        assert_eq!(app.stripe_webhook(&dashboard_refund).await.status(), 200);
    }
    let stored = app.stored_order(reference).await;
    assert_eq!(stored.refunds.len(), 1, "recorded once");
    assert_eq!(stored.payment.refunded_minor, 500);
    assert_eq!(stored.financial_status().as_str(), "partially_refunded");

    let dispute = TestApp::stripe_event(
        "charge.dispute.created",
        json!({ "id": "dp_1", "object": "dispute", "amount": 1_250, "currency": "eur", "charge": "ch_1", "payment_intent": intent, "reason": "fraudulent", "status": "needs_response" }),
    );
    assert_eq!(app.stripe_webhook(&dispute).await.status(), 200);
    let stored = app.stored_order(reference).await;
    assert_eq!(stored.dispute.as_ref().unwrap().reason, "fraudulent");
    let admin = app.admin_token().await;
    let audit = app
        .audit_events(
            &admin,
            &format!("target=order:{reference}&action=payment.dispute"),
        )
        .await;
    assert_eq!(audit.len(), 1);
}

#[tokio::test]
async fn stripe_unreachable_at_checkout_is_a_503_with_no_order_and_the_cart_kept() {
    let mut app = TestApp::builder().online_payments(None).spawn().await;
    let sku = format!("SKU-{}", unique_prefix());
    app.product(&[(&sku, 900, 2)]).await;
    let token = app.customer_token().await;
    app.add_to_cart_response(&token, &sku, 1).await;
    app.stripe.as_mut().unwrap().stop();
    let refused = app.checkout_response(&token, "down-1").await;
    let body = assert_problem(refused, 503).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("payment provider")
    );
    let cart = app.cart_json(&token).await;
    assert_eq!(
        cart["lines"].as_array().unwrap().len(),
        1,
        "the cart keeps its reservation"
    );
    let variant = app.variant(&sku).await;
    assert_eq!((variant.stock, variant.available), (2, 1));
    let admin = app.admin_token().await;
    let orders = app.get_json("/api/v1/admin/orders", &admin).await;
    assert!(!orders.to_string().contains(&sku), "no order holds stock");
}

#[tokio::test]
async fn stripe_unreachable_at_refund_leaves_the_refund_requested_and_retried_later() {
    let (mut app, token, _, order) = placed(1).await;
    let reference = order["reference"].as_str().unwrap().to_owned();
    app.stripe_capture(&order).await;
    app.stripe.as_mut().unwrap().stop();
    let cancelled = app.cancel_order(&token, &reference, "cancel-down").await;
    assert_eq!(
        cancelled.status(),
        200,
        "the cancel itself never waits for Stripe"
    );
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["refunds"][0]["status"], "requested");
    assert_eq!(cancelled["financial_status"], "refund_pending");
    let admin = app.admin_token().await;
    let listed = app
        .get_json("/api/v1/admin/refunds?status=requested", &admin)
        .await;
    assert!(listed.to_string().contains(&reference), "{listed}");
    // Stripe still down: a retry answers nothing and keeps it.
    let retried = app
        .call(
            reqwest::Method::POST,
            "/api/v1/admin/refunds/retry",
            Some(&admin),
            None,
            None,
        )
        .await;
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["answered"], 0);
    assert_eq!(
        app.stored_order(&reference).await.refunds[0].status,
        lumi_commerce::model::RefundStatus::Requested
    );
}
