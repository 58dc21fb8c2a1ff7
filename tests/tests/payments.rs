//! Payments behind `featureFlags.orderPayments`: Stripe's signed webhook, captures (which must
//! be what is due), failures with their restock and refund email on SQS, refunds Stripe settles
//! by its events, and the events Stripe retries, which are acknowledged rather than refused.
//!
//! The API's answers are typed; Stripe's events, the refund-email queue's messages and the
//! local Stripe server's records stay JSON: they are those systems' wire formats, forged or
//! read as they are.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_commerce::{
    model::{FinancialStatus, OrderStatus, PaymentStatus, RefundStatus, RestockType},
    orders::Placed,
};
use lumi_tests::{Refused, Request, TestApp, refund_request, unique_sku};
use orders::WebhookAck;
use serde_json::{Value, json};

async fn online_app() -> TestApp {
    TestApp::builder().online_payments(None).spawn().await
}

/// A new customer's order of `quantity` units at 7 EUR of a fresh variant with stock 5.
async fn an_order(app: &TestApp, quantity: i64) -> (String, Placed) {
    let sku = unique_sku();
    app.product(&[(&sku, 700, 5)]).await;
    let customer = app.new_customer().await;
    let placed = app.place_order(&customer, &[(&sku, quantity)]).await;
    (sku, placed)
}

/// Posts a signed `event`: the acknowledgement (asserts it was received).
async fn acknowledged(app: &TestApp, event: &Value) -> WebhookAck {
    let ack = app.stripe_event_sent(event).await.unwrap();
    assert!(ack.received, "{ack:?}");
    ack
}

/// The first payment event an acknowledgement reports.
fn first_event(ack: &WebhookAck) -> &orders::WebhookEvent {
    &ack.events.as_ref().unwrap_or_else(|| panic!("{ack:?}"))[0]
}

/// A Stripe `kind` event (`refund.updated`, `refund.failed`) about Stripe refund `id` of
/// `amount_minor` EUR on `intent`, for Lumi's refund record `refund_id`.
fn refund_event(
    kind: &str,
    id: &str,
    status: &str,
    amount_minor: i64,
    intent: &str,
    refund_id: &str,
) -> Value {
    let mut refund = json!({
        "id": id, "object": "refund", "amount": amount_minor, "currency": "eur",
        "status": status, "payment_intent": intent, "metadata": { "refund_id": refund_id },
    });
    if status == "failed" {
        refund["failure_reason"] = json!("expired_or_canceled_card");
    }
    TestApp::stripe_event(kind, refund)
}

#[tokio::test]
async fn a_captured_payment_pays_the_order_once_and_a_bad_signature_changes_nothing() {
    let app = online_app().await;
    let (_, placed) = an_order(&app, 1).await;
    let order = &placed.order;
    assert_eq!(order.payment.provider, "stripe");
    assert_eq!(order.payment.status, PaymentStatus::Pending);
    assert!(order.payment.id.starts_with("pay_"), "{order:?}");
    let intent = order.payment.provider_ref.as_deref().unwrap();
    assert!(intent.starts_with("pi_"), "{order:?}");
    let reference = order.reference.as_str();
    let stored_at_first = app.stored_order(reference).await;
    let event = TestApp::capture_event(&placed);
    let object = &event["data"]["object"];
    assert_eq!(object["amount_received"], 700);
    assert_eq!(object["currency"], "eur");
    assert_eq!(object["id"], intent);

    let secret = app.stripe_webhook_secret().await;
    let signed = |secret: &str, timestamp: i64| {
        app.request::<WebhookAck>(app.signed_stripe_event(&event, secret, timestamp), 200)
    };
    signed("whsec_not_the_key", app.now_secs())
        .await
        .refused(401);
    // Signed with the right key, but too long ago to be anything but a replay.
    signed(&secret, app.now_secs() - 301).await.refused(401);
    let unsigned = Request::post("/api/v1/payments/webhooks/stripe").json(&event);
    app.request::<WebhookAck>(unsigned, 200).await.refused(400);
    // A PaymentIntent must say its currency: without it the event is not understood.
    let mut vague = event.clone();
    vague["data"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("currency");
    app.stripe_event_sent(&vague).await.refused(400);
    // Nor is a capture that does not say how much was received: acknowledged, not applied.
    let mut silent = TestApp::capture_event(&placed);
    silent["data"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("amount_received");
    let silent = acknowledged(&app, &silent).await;
    assert!(!silent.applied, "{silent:?}");
    let untouched = app.stored_order(reference).await;
    assert_eq!(
        (
            untouched.status.as_str(),
            untouched.financial_status().as_str(),
            untouched.payment.status.as_str()
        ),
        ("open", "pending", "pending")
    );
    assert_eq!(
        untouched.version, stored_at_first.version,
        "nothing written"
    );

    let applied = acknowledged(&app, &event).await;
    assert!(applied.applied, "{applied:?}");
    assert_eq!(applied.outcome.as_deref(), Some("payment.capture"));
    let change = first_event(&applied);
    assert_eq!(
        (
            change.payment_status,
            change.financial_status,
            change.order_status,
            change.order_reference.as_deref()
        ),
        (
            Some(PaymentStatus::Captured),
            Some(FinancialStatus::Paid),
            Some(OrderStatus::Open),
            Some(reference)
        )
    );
    let again = acknowledged(&app, &event).await;
    assert_eq!(
        (again.applied, again.outcome.as_deref()),
        (false, Some("duplicate"))
    );
    let stored = app.stored_order(reference).await;
    assert_eq!(stored.payment.captured_minor, 700, "captured once");
    assert_eq!(stored.timeline.len(), 2);
    assert_eq!(stored.timeline[1].actor, "provider:stripe");
    assert_eq!(stored.timeline[1].action, "payment.capture");

    // A failure after the capture is acknowledged (Stripe retries refusals for days) and
    // changes nothing.
    let late = acknowledged(&app, &TestApp::intent_failed(&placed, "late")).await;
    assert_eq!(
        (late.applied, late.outcome.as_deref()),
        (false, Some("ignored")),
        "{late:?}"
    );
    let after = app.stored_order(reference).await;
    assert_eq!(
        (after.status.as_str(), after.financial_status().as_str()),
        ("open", "paid")
    );
    assert_eq!(after.version, stored.version, "nothing written");
    // Types this integration does not handle are acknowledged too.
    let other_type = TestApp::stripe_event(
        "payment_intent.processing",
        json!({ "id": intent, "object": "payment_intent", "status": "processing" }),
    );
    assert_eq!(
        acknowledged(&app, &other_type).await.outcome.as_deref(),
        Some("ignored_type")
    );
    // Captures of payments that are not this shop's: acknowledged, and nothing is paid.
    let stranger = json!({
        "id": "pi_stranger", "object": "payment_intent", "status": "succeeded", "amount": 700,
        "amount_received": 700, "currency": "eur", "metadata": { "payment_id": "pay_none" },
    });
    let stranger = TestApp::stripe_event("payment_intent.succeeded", stranger);
    let unknown = acknowledged(&app, &stranger).await;
    assert_eq!(
        (unknown.applied, unknown.outcome.as_deref()),
        (false, Some("not_ours")),
        "{unknown:?}"
    );
    let mut no_such_payment = stranger.clone();
    no_such_payment["id"] = json!(format!("evt_{}", lumi_tests::unique_prefix()));
    no_such_payment["data"]["object"]["metadata"]["payment_id"] =
        json!(format!("pay_{}", "0".repeat(32)));
    assert_eq!(
        acknowledged(&app, &no_such_payment)
            .await
            .outcome
            .as_deref(),
        Some("not_ours")
    );
    let last = app.stored_order(reference).await;
    assert_eq!(last.version, stored.version);
    assert_eq!(last.payment.captured_minor, 700);
}

#[tokio::test]
async fn a_failed_payment_cancels_the_order_restocks_once_and_queues_the_refund_email() {
    let app = online_app().await;
    let (sku, placed) = an_order(&app, 3).await;
    assert_eq!(app.variant(&sku).await.stock, 2);
    let reference = placed.order.reference.as_str();
    let payment_id = placed.order.payment.id.as_str();
    let intent = placed.order.payment.provider_ref.as_deref().unwrap();
    // Stripe declined the card the customer tried.
    let event = TestApp::intent_failed(&placed, "card declined");
    let first = acknowledged(&app, &event).await;
    assert_eq!(first.outcome.as_deref(), Some("payment.fail"), "{first:?}");
    let change = first_event(&first);
    assert_eq!(
        (
            change.order_status,
            change.financial_status,
            change.payment_status
        ),
        (
            Some(OrderStatus::Cancelled),
            Some(FinancialStatus::Voided),
            Some(PaymentStatus::Failed)
        ),
        "{first:?}"
    );
    let redelivery = acknowledged(&app, &event).await;
    assert_eq!(
        redelivery.outcome.as_deref(),
        Some("duplicate"),
        "a redelivery is a duplicate"
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

    // After a decline Stripe lets the customer pay the same intent with another card: a
    // capture that arrives after all is refunded (asked of Stripe at once), not refused.
    assert_eq!(
        app.pay_with_card(&placed, "4242424242424242").await,
        "succeeded"
    );
    let stored = app
        .wait_for_order(reference, "refunded by Stripe", |o| {
            o.refunds
                .first()
                .is_some_and(|r| r.status == RefundStatus::Succeeded)
        })
        .await;
    assert_eq!(stored.status.as_str(), "cancelled");
    assert_eq!(stored.payment.status.as_str(), "captured");
    assert_eq!(
        (stored.payment.captured_minor, stored.payment.refunded_minor),
        (2100, 2100)
    );
    assert_eq!(stored.financial_status().as_str(), "refunded");
    assert_eq!(stored.refunds.len(), 1);
    let refund = &stored.refunds[0];
    assert_eq!(refund.amount_minor, 2100);
    assert!(refund.settled_at.is_some());
    let stripe_refund = refund.provider_refund_id.clone().unwrap();
    let at_stripe = app.stripe_refunds(intent).await;
    assert_eq!(at_stripe.len(), 1, "one Stripe refund: {at_stripe:?}");
    assert_eq!(
        (
            at_stripe[0]["id"].as_str(),
            at_stripe[0]["amount"].as_i64(),
            at_stripe[0]["metadata"]["refund_id"].as_str()
        ),
        (
            Some(stripe_refund.as_str()),
            Some(2100),
            Some(refund.id.as_str())
        )
    );
    assert_eq!(app.variant(&sku).await.stock, 5, "no second restock");
    let actions: Vec<(&str, &str)> = stored
        .timeline
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        actions[2..],
        [
            ("payment.capture", "provider:stripe"),
            ("refund.settle", "provider:stripe")
        ]
    );

    // Stripe's own event about that refund, later: it is settled already, nothing changes.
    let confirmed = refund_event(
        "refund.updated",
        &stripe_refund,
        "succeeded",
        2100,
        intent,
        &refund.id,
    );
    let confirmed = acknowledged(&app, &confirmed).await;
    assert_eq!(
        (confirmed.applied, confirmed.outcome.as_deref()),
        (false, Some("ignored")),
        "{confirmed:?}"
    );
    // A refund this order does not have: acknowledged, nothing changes.
    let no_such = refund_event(
        "refund.updated",
        "re_other",
        "succeeded",
        2100,
        intent,
        "re_nothing",
    );
    let no_such = acknowledged(&app, &no_such).await;
    assert!(!no_such.applied, "{no_such:?}");
    let last = app.stored_order(reference).await;
    assert_eq!(last.version, stored.version, "nothing written");
    assert_eq!(last.payment.refunded_minor, 2100);
}

#[tokio::test]
async fn refunds_stripe_did_not_answer_are_settled_or_failed_by_its_refund_events() {
    let mut app = online_app().await;
    let admin = app.new_admin().await;
    let (sku, placed) = an_order(&app, 2).await;
    let reference = placed.order.reference.as_str();
    let intent = placed.order.payment.provider_ref.as_deref().unwrap();
    app.pay_with_card(&placed, "4242424242424242").await;
    app.wait_for_payment(reference, "captured").await;

    // Stripe cannot be reached when the refunds are asked: they stay requested.
    app.stripe.as_mut().unwrap().stop();
    let mut refund_ids = Vec::new();
    let one_unit = refund_request(&[(1, 1, RestockType::Cancel)], "out of stock");
    for key in ["refund-1", "refund-2"] {
        let refunded = app
            .admin(&admin)
            .refund(reference, &one_unit, key)
            .await
            .unwrap();
        let refund = refunded.refund.as_ref().unwrap();
        assert_eq!(refund.status, RefundStatus::Requested, "{refunded:?}");
        assert_eq!(
            refunded.order.order.financial_status,
            FinancialStatus::RefundPending
        );
        refund_ids.push(refund.id.clone());
    }
    assert_eq!(app.variant(&sku).await.stock, 5);

    // Stripe made the first after all (the answer was lost) and says so.
    let succeeded = refund_event(
        "refund.updated",
        "re_lost_answer",
        "succeeded",
        700,
        intent,
        &refund_ids[0],
    );
    let settled = acknowledged(&app, &succeeded).await;
    assert!(settled.applied, "{settled:?}");
    assert_eq!(settled.outcome.as_deref(), Some("refund.settle"));
    assert_eq!(
        first_event(&settled).financial_status,
        Some(FinancialStatus::RefundPending),
        "the second is still owed"
    );
    assert_eq!(
        acknowledged(&app, &succeeded).await.outcome.as_deref(),
        Some("duplicate")
    );
    let stored = app.stored_order(reference).await;
    let first = &stored.refunds[0];
    assert_eq!(first.status, RefundStatus::Succeeded);
    assert_eq!(first.provider_refund_id.as_deref(), Some("re_lost_answer"));
    assert!(first.settled_at.is_some());
    // A failure reported out of order, after the success: acknowledged, nothing changes.
    let late_failure = refund_event(
        "refund.failed",
        "re_lost_answer",
        "failed",
        700,
        intent,
        &refund_ids[0],
    );
    assert!(!acknowledged(&app, &late_failure).await.applied);
    assert_eq!(
        app.stored_order(reference).await.refunds[0].status,
        RefundStatus::Succeeded
    );

    // Stripe could not make the second: the money is still owed, and admins see it.
    let failed = refund_event(
        "refund.failed",
        "re_failed",
        "failed",
        700,
        intent,
        &refund_ids[1],
    );
    let failed = acknowledged(&app, &failed).await;
    assert_eq!(failed.outcome.as_deref(), Some("refund.fail"), "{failed:?}");
    let stored = app.stored_order(reference).await;
    assert_eq!(stored.refunds[1].status, RefundStatus::Failed);
    assert_eq!(
        stored.refunds[1].failure_reason.as_deref(),
        Some("expired_or_canceled_card")
    );
    assert_eq!(stored.financial_status().as_str(), "refund_pending");
    let listed = app.admin(&admin).refunds("status=failed").await.unwrap();
    assert!(
        listed.refunds.iter().any(|r| r.refund.id == refund_ids[1]),
        "{listed:?}"
    );
    // An admin pays it back by hand and settles it: the order is refunded.
    let settled = app
        .admin(&admin)
        .settle(reference, &refund_ids[1])
        .await
        .unwrap();
    assert_eq!(
        settled.order.financial_status,
        FinancialStatus::Refunded,
        "{settled:?}"
    );
    let stored = app.stored_order(reference).await;
    assert_eq!(
        (stored.payment.captured_minor, stored.payment.refunded_minor),
        (1400, 1400)
    );
    assert!(
        stored
            .refunds
            .iter()
            .all(|r| r.status == RefundStatus::Succeeded)
    );
}

#[tokio::test]
async fn with_the_flag_off_orders_are_paid_manually() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let admin = app.admin(&admin);
    let (_, placed) = an_order(&app, 1).await;
    let order = &placed.order;
    assert_eq!(order.payment.provider, "manual");
    assert!(order.payment.provider_ref.is_none(), "{order:?}");
    assert!(placed.action.is_none(), "nothing to pay online: {placed:?}");
    let payment_id = order.payment.id.as_str();
    let listed = admin
        .payments("provider=manual&status=pending")
        .await
        .unwrap();
    let payment = listed
        .payments
        .iter()
        .find(|p| p.payment_id == payment_id)
        .unwrap();
    assert_eq!(
        (
            payment.provider.as_str(),
            payment.status.as_str(),
            payment.amount_minor,
            payment.order_reference.as_str()
        ),
        ("manual", "pending", 700, order.reference.as_str())
    );
    // Stripe cannot speak for a manual payment, even naming it.
    let mut forged = placed.clone();
    forged.order.payment.provider_ref = Some("pi_forged".into());
    let capture = app
        .stripe_event_sent(&TestApp::capture_event(&forged))
        .await
        .unwrap();
    assert_eq!(
        (capture.applied, capture.outcome.as_deref()),
        (false, Some("not_ours")),
        "{capture:?}"
    );
    let reference = order.reference.as_str();
    assert_eq!(
        app.stored_order(reference).await.payment.status.as_str(),
        "pending"
    );
    // The admin records the money received; it must be what is due.
    let short = admin.capture(payment_id, 100, "EUR").await.unwrap();
    assert_eq!(
        short.status,
        Some(PaymentStatus::AmountMismatch),
        "{short:?}"
    );
    admin.pay(order).await;
    let stored = app.stored_order(reference).await;
    assert_eq!(
        (
            stored.payment.status.as_str(),
            stored.payment.captured_minor,
            stored.financial_status().as_str()
        ),
        ("captured", 700, "paid")
    );
}
