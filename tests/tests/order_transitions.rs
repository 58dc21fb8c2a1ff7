//! `order_status_transitions_total` counts every committed change of an order's facets exactly
//! once, with `facet`, `from`, `to` and the function that committed it, whichever path made it:
//! an admin's refund (and the provider's answer to it, a second commit in the same request), an
//! admin marking a payment failed, a Stripe refund webhook. Replays and duplicates count nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_tests::{TestApp, unique_prefix};
use serde_json::{Value, json};

const TRANSITIONS: &str = "order_status_transitions_total";

fn moved(app: &TestApp, function: &str, facet: &str, from: &str, to: &str) -> f64 {
    app.metric_total(
        TRANSITIONS,
        &[
            ("function", function),
            ("facet", facet),
            ("from", from),
            ("to", to),
        ],
    )
}

/// An app with online payments and a customer's order of `quantity` units at 12.50 EUR
/// (Stripe): (app, order as checkout answered). The local Stripe server's own events do not
/// reach the app: the tests sign every event they need, so nothing else commits (or counts)
/// while they look at the metrics.
async fn placed(quantity: i64) -> (TestApp, Value) {
    let app = Box::pin(
        TestApp::builder()
            .online_payments(None)
            .without_stripe_webhooks()
            .spawn(),
    )
    .await;
    let sku = format!("SKU-{}", unique_prefix());
    app.product(&[(&sku, 1_250, 5)]).await;
    let token = app.customer_token().await;
    app.add_to_cart_response(&token, &sku, quantity).await;
    let response = app.checkout_response(&token, "first").await;
    assert_eq!(response.status(), 201);
    (app, response.json().await.unwrap())
}

#[tokio::test]
async fn an_admin_refund_counts_the_refund_and_the_providers_answer_once_each() {
    let (app, order) = placed(1).await;
    let reference = order["reference"].as_str().unwrap();
    // Paid at Stripe (so Stripe can refund it), and told to Lumi by a signed event.
    assert_eq!(
        app.pay_with_card(&order, "4242424242424242").await,
        "succeeded"
    );
    app.stripe_capture(&order).await;
    let before = app.metric_total(TRANSITIONS, &[]);
    let admin = app.admin_token().await;

    let refunded = app
        .admin_refund(&admin, reference, "r-1", &[(1, 1, "no_restock")], "damaged")
        .await;
    assert_eq!(refunded.status(), 201);
    let refunded: Value = refunded.json().await.unwrap();
    assert_eq!(refunded["refund"]["status"], "succeeded", "{refunded}");
    assert_eq!(refunded["order"]["financial_status"], "refunded");

    // Two commits: the refund recorded (`requested`), then Stripe's answer; both in the
    // admin's request, each counted once.
    assert_eq!(
        moved(&app, "admin", "financial", "paid", "refund_pending"),
        1.0
    );
    assert_eq!(
        moved(&app, "admin", "financial", "refund_pending", "refunded"),
        1.0
    );
    assert_eq!(
        moved(&app, "admin", "financial", "paid", "refunded"),
        0.0,
        "each commit counts its own transition, not their sum"
    );
    assert_eq!(
        moved(&app, "admin", "fulfillment", "unfulfilled", "removed"),
        1.0
    );
    let after_refund = app.metric_total(TRANSITIONS, &[]);
    let facets = app
        .stored_order(reference)
        .await
        .timeline
        .iter()
        .skip_while(|event| !event.action.starts_with("order.refund"))
        .map(|event| event.changes.len())
        .sum::<usize>();
    assert_eq!(
        after_refund - before,
        facets as f64,
        "one count per facet the timeline shows moved"
    );
    assert_eq!(
        app.metric_total(
            "lumi_refunds_total",
            &[("function", "admin"), ("provider", "stripe")]
        ),
        1.0
    );

    // The same request again is a replay: nothing is committed, nothing counted.
    let replay = app
        .admin_refund(&admin, reference, "r-1", &[(1, 1, "no_restock")], "damaged")
        .await;
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    assert_eq!(app.metric_total(TRANSITIONS, &[]), after_refund);
}

#[tokio::test]
async fn an_admin_marking_a_payment_failed_counts_each_facet_once() {
    let (app, order) = placed(2).await;
    let payment_id = order["payment"]["id"].as_str().unwrap();
    let admin = app.admin_token().await;
    let before = app.metric_total(TRANSITIONS, &[("function", "admin")]);

    let failed = app
        .admin_fail_payment(&admin, payment_id, "provider outage")
        .await;
    assert_eq!(failed.status(), 200);
    let failed: Value = failed.json().await.unwrap();
    assert_eq!(failed["applied"], true, "{failed}");

    assert_eq!(moved(&app, "admin", "payment", "pending", "failed"), 1.0);
    assert_eq!(moved(&app, "admin", "order", "open", "cancelled"), 1.0);
    assert_eq!(moved(&app, "admin", "financial", "pending", "voided"), 1.0);
    assert_eq!(
        moved(&app, "admin", "fulfillment", "unfulfilled", "removed"),
        1.0
    );
    let counted = app.metric_total(TRANSITIONS, &[("function", "admin")]);
    assert_eq!(counted - before, 4.0, "exactly the four facets, once");

    // Marked failed again by mistake: nothing changes, nothing is counted.
    let twice: Value = app
        .admin_fail_payment(&admin, payment_id, "provider outage")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(twice["applied"], false, "{twice}");
    assert_eq!(
        app.metric_total(TRANSITIONS, &[("function", "admin")]),
        counted
    );
}

#[tokio::test]
async fn a_stripe_refund_webhook_counts_its_transition_once() {
    let (app, order) = placed(1).await;
    let reference = order["reference"].as_str().unwrap();
    let intent = order["payment"]["provider_ref"].as_str().unwrap();
    app.stripe_capture(&order).await;
    assert_eq!(moved(&app, "orders", "financial", "pending", "paid"), 1.0);
    let before = app.metric_total(TRANSITIONS, &[]);

    let refund = TestApp::stripe_event(
        "refund.updated",
        json!({ "id": "re_dashboard_9", "object": "refund", "amount": 500, "currency": "eur", "status": "succeeded", "payment_intent": intent, "metadata": {} }),
    );
    // Stripe delivers at least once: the second delivery is a duplicate.
    for _ in 0..2 {
        assert_eq!(app.stripe_webhook(&refund).await.status(), 200);
    }
    assert_eq!(
        app.stored_order(reference)
            .await
            .financial_status()
            .as_str(),
        "partially_refunded"
    );
    assert_eq!(
        moved(&app, "orders", "financial", "paid", "partially_refunded"),
        1.0
    );
    assert_eq!(
        app.metric_total(TRANSITIONS, &[]) - before,
        1.0,
        "only the financial facet moved, once"
    );
    assert_eq!(
        app.metric_total(
            "lumi_refunds_total",
            &[("function", "orders"), ("provider", "stripe")]
        ),
        1.0
    );
}
