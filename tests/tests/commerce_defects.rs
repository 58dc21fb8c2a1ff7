//! One end-to-end test per defect of the old order model (the commerce-core issue). Each fails
//! against the old design (one `status` for money and goods, refunds as a status, payment
//! copies, unbounded reservations) and passes against the three-facet model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_commerce::model::RefundStatus;
use lumi_shared::{clock::ManualClock, settings::SystemSettings};
use lumi_tests::{Refused, TestApp, assert_problem, unique_sku};
use serde_json::{Value, json};

/// A customer of the test: their token and where their emails go.
struct Customer {
    token: String,
    email: String,
}

async fn customer(app: &TestApp) -> Customer {
    let tokens = app.quick_customer().await;
    Customer {
        token: tokens["access_token"].as_str().unwrap().to_owned(),
        email: tokens["user"]["email"].as_str().unwrap().to_owned(),
    }
}

fn reference(order: &Value) -> String {
    order["reference"].as_str().unwrap().to_owned()
}

fn facets(order: &Value) -> (String, String, String) {
    let text = |name: &str| order[name].as_str().unwrap_or_default().to_owned();
    (
        text("status"),
        text("financial_status"),
        text("fulfillment_status"),
    )
}

fn facet_tuple(status: &str, financial: &str, fulfillment: &str) -> (String, String, String) {
    (status.into(), financial.into(), fulfillment.into())
}

/// The refund emails sent to `customer` once the queue is drained.
async fn refund_emails(app: &TestApp, customer: &Customer) -> Vec<Value> {
    app.drain_refund_emails().await;
    app.emails_to(&customer.email).await
}

#[tokio::test]
async fn a_customer_cancelling_a_paid_order_gets_the_money_back_through_a_refund_record() {
    let app = TestApp::builder().online_payments(None).spawn().await;
    let admin = app.admin_token().await;
    let sku = unique_sku();
    app.product(&[(&sku, 2500, 5)]).await;
    let buyer = customer(&app).await;
    let order = app.place_order_json(&buyer.token, &[(&sku, 2)]).await;
    let reference = reference(&order);
    let intent = order["payment"]["provider_ref"].as_str().unwrap();
    assert_eq!(
        app.pay_with_card(&order, "4242424242424242").await,
        "succeeded"
    );
    let paid = app.wait_for_payment(&reference, "captured").await;
    assert_eq!(paid.financial_status().as_str(), "paid");
    assert_eq!(app.variant(&sku).await.stock, 3);

    // The refund record is asked of Stripe once committed: its answer is in the response.
    let cancelled = app.cancel_order(&buyer.token, &reference, "cancel-1").await;
    assert_eq!(cancelled.status(), 200);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(
        facets(&cancelled),
        facet_tuple("cancelled", "refunded", "removed")
    );
    let payment = &cancelled["payment"];
    assert_eq!(payment["captured_minor"], 5000);
    assert_eq!(
        payment["refunded_minor"], payment["captured_minor"],
        "everything captured goes back"
    );
    let refunds = cancelled["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        (
            refunds[0]["status"].as_str(),
            refunds[0]["amount_minor"].as_i64()
        ),
        (Some("succeeded"), Some(5000))
    );
    assert!(refunds[0]["settled_at"].is_string(), "{cancelled}");
    let refund_id = refunds[0]["id"].as_str().unwrap().to_owned();
    let variant = app.variant(&sku).await;
    assert_eq!((variant.stock, variant.available), (5, 5), "stock back");
    let stored = app.stored_order(&reference).await;
    let stripe_refund = stored.refunds[0].provider_refund_id.clone().unwrap();
    let at_stripe = app.stripe_refunds(intent).await;
    assert_eq!(at_stripe.len(), 1, "{at_stripe:?}");
    assert_eq!(
        (at_stripe[0]["id"].as_str(), at_stripe[0]["amount"].as_i64()),
        (Some(stripe_refund.as_str()), Some(5000))
    );

    // The same request again answers what the first did.
    let replay = app.cancel_order(&buyer.token, &reference, "cancel-1").await;
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay, cancelled, "the replay answers the first answer");
    // Cancelling again answers the order as it is: no second refund, no second restock.
    let again = app.cancel_order(&buyer.token, &reference, "cancel-2").await;
    assert_eq!(again.status(), 200);
    assert_eq!(app.variant(&sku).await.stock, 5);
    let emails = refund_emails(&app, &buyer).await;
    assert_eq!(emails.len(), 1, "exactly one refund email");
    assert!(emails[0].to_string().contains("50.00 EUR"), "{}", emails[0]);

    // Nothing is left to refund: a clear refusal, not a dead end.
    for restock_type in ["cancel", "no_restock", "return"] {
        let refused = app
            .admin_refund(
                &admin,
                &reference,
                &format!("late-{restock_type}"),
                &[(1, 1, restock_type)],
                "again",
            )
            .await;
        let body = assert_problem(refused, 409).await;
        assert_eq!(
            body["detail"], "nothing is left to refund on this order",
            "{restock_type}: {body}"
        );
    }
    let stored = app.stored_order(&reference).await;
    assert_eq!(stored.refunds.len(), 1);
    assert_eq!(app.variant(&sku).await.stock, 5);
    assert_eq!(refund_emails(&app, &buyer).await.len(), 1);
    assert_eq!(
        app.stripe_refunds(intent).await.len(),
        1,
        "one Stripe refund"
    );

    // The money went back through Stripe: nothing is left for an admin to settle by hand.
    let settled =
        assert_problem(app.settle_refund(&admin, &reference, &refund_id).await, 409).await;
    assert!(
        settled["detail"]
            .as_str()
            .unwrap()
            .contains("settled already"),
        "{settled}"
    );
    assert_eq!(app.stored_order(&reference).await.version, stored.version);
    let seen = app.customer_order(&buyer.token, &reference).await;
    assert_eq!(seen["financial_status"], "refunded");
    assert_eq!(seen["refunds"][0]["status"], "succeeded");
}

#[tokio::test]
async fn a_capture_arriving_after_a_cancel_is_acknowledged_and_refunded() {
    let app = TestApp::builder().online_payments(None).spawn().await;
    let sku = unique_sku();
    app.product(&[(&sku, 1800, 4)]).await;
    let buyer = customer(&app).await;
    let order = app.place_order_json(&buyer.token, &[(&sku, 1)]).await;
    let reference = reference(&order);
    let intent = order["payment"]["provider_ref"].as_str().unwrap();
    let cancelled: Value = app
        .cancel_order(&buyer.token, &reference, "c")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        facets(&cancelled),
        facet_tuple("cancelled", "voided", "removed")
    );
    assert_eq!(app.variant(&sku).await.stock, 4);

    // The customer's payment page was still open: Stripe takes the money, and its webhook
    // arrives after the cancel.
    assert_eq!(
        app.pay_with_card(&order, "4242424242424242").await,
        "succeeded"
    );
    let stored = app
        .wait_for_order(&reference, "captured and refunded by Stripe", |o| {
            o.payment.status.as_str() == "captured"
                && o.refunds
                    .first()
                    .is_some_and(|r| r.status == RefundStatus::Succeeded)
        })
        .await;
    assert_eq!(stored.status.as_str(), "cancelled");
    assert_eq!(
        (stored.payment.captured_minor, stored.payment.refunded_minor),
        (1800, 1800),
        "recorded captured, and refunded"
    );
    assert_eq!(stored.refunds.len(), 1);
    assert_eq!(stored.refunds[0].amount_minor, 1800);
    assert_eq!(stored.financial_status().as_str(), "refunded");
    let capture = stored
        .timeline
        .iter()
        .find(|e| e.action == "payment.capture")
        .unwrap();
    assert_eq!(capture.actor, "provider:stripe", "Stripe's webhook");
    let at_stripe = app.stripe_refunds(intent).await;
    assert_eq!(at_stripe.len(), 1, "{at_stripe:?}");
    assert_eq!(at_stripe[0]["amount"], 1800);

    // Stripe delivers the same event again (it retries for days): never a 409 it would retry
    // forever, and applied once.
    let sent = app
        .stripe_sent_events("payment_intent.succeeded", intent)
        .await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    for delivery in 0..2 {
        let response = app.stripe_webhook(&sent[0]).await;
        assert_eq!(response.status(), 200, "redelivery {delivery}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["received"], true);
        assert_eq!(
            (body["applied"].as_bool(), body["outcome"].as_str()),
            (Some(false), Some("duplicate")),
            "{body}"
        );
    }
    let after = app.stored_order(&reference).await;
    assert_eq!(after.version, stored.version, "nothing written");
    assert_eq!(
        app.stripe_refunds(intent).await.len(),
        1,
        "one Stripe refund"
    );
    assert_eq!(app.variant(&sku).await.stock, 4, "no second restock");
    let emails = refund_emails(&app, &buyer).await;
    assert_eq!(emails.len(), 1, "one refund email");
    assert!(emails[0].to_string().contains("18.00 EUR"), "{}", emails[0]);
}

#[tokio::test]
async fn every_view_of_the_payment_shows_the_capture_at_once() {
    let app = TestApp::builder().online_payments(None).spawn().await;
    let admin = app.admin_token().await;
    let sku = unique_sku();
    app.product(&[(&sku, 990, 3)]).await;
    let buyer = customer(&app).await;
    let order = app.place_order_json(&buyer.token, &[(&sku, 2)]).await;
    let reference = reference(&order);
    let payment_id = order["payment"]["id"].as_str().unwrap().to_owned();
    let intent = order["payment"]["provider_ref"].as_str().unwrap();
    app.stripe_capture(&order).await;

    let mine = app.customer_order(&buyer.token, &reference).await;
    let theirs = app.admin_order(&admin, &reference).await;
    for view in [&mine, &theirs] {
        assert_eq!(view["financial_status"], "paid", "{view}");
        assert_eq!(view["payment"]["status"], "captured", "{view}");
        assert_eq!(view["payment"]["captured_minor"], 1980, "{view}");
        assert_eq!(view["payment"]["id"], payment_id.as_str());
    }
    let track = app
        .get_json(&format!("/api/v1/orders/{reference}/track"), &buyer.token)
        .await;
    assert_eq!(track["financial_status"], "paid");
    let listed = app.admin_payments(&admin, "provider=stripe").await;
    let payment = listed
        .iter()
        .find(|p| p["payment_id"] == payment_id.as_str())
        .unwrap();
    assert_eq!(
        (
            payment["status"].as_str(),
            payment["captured_minor"].as_i64(),
            payment["financial_status"].as_str(),
            payment["provider_ref"].as_str()
        ),
        (Some("captured"), Some(1980), Some("paid"), Some(intent))
    );
    let captured = app
        .admin_payments(&admin, "provider=stripe&status=captured")
        .await;
    assert!(
        captured
            .iter()
            .any(|p| p["payment_id"] == payment_id.as_str())
    );
    let pending = app
        .admin_payments(&admin, "provider=stripe&status=pending")
        .await;
    assert!(
        pending
            .iter()
            .all(|p| p["payment_id"] != payment_id.as_str())
    );
    let paid = app
        .get_json("/api/v1/admin/orders?financial_status=paid", &admin)
        .await;
    assert_eq!(paid["orders"][0]["reference"], reference.as_str());
}

#[tokio::test]
async fn a_reopened_order_takes_its_stock_again_or_is_refused_without_overselling() {
    let app = TestApp::builder().online_payments(None).spawn().await;
    let admin = app.admin_token().await;
    let sku = unique_sku();
    app.product(&[(&sku, 1200, 1)]).await;
    let buyer = customer(&app).await;
    let order = app.place_order_json(&buyer.token, &[(&sku, 1)]).await;
    let reference = reference(&order);
    // Each attempt's decline is its own Stripe event (a fresh event id).
    let fail = || TestApp::intent_failed(&order, "card declined");
    let first = app.stripe_webhook(&fail()).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.json::<Value>().await.unwrap()["outcome"],
        "payment.fail"
    );
    let variant = app.variant(&sku).await;
    assert_eq!((variant.stock, variant.available), (1, 1));

    // The customer's retry: reopened, the unit is taken again and a new attempt starts.
    let reopened = app.admin_status(&admin, &reference, "open").await;
    assert_eq!(reopened.status(), 200);
    let reopened: Value = reopened.json().await.unwrap();
    assert_eq!(
        facets(&reopened),
        facet_tuple("open", "pending", "unfulfilled")
    );
    assert_eq!(reopened["payment"]["status"], "pending");
    assert_eq!(reopened["payment"]["attempt"], 2);
    let variant = app.variant(&sku).await;
    assert_eq!(
        (variant.stock, variant.available),
        (0, 0),
        "the stock is taken again"
    );
    // Someone else cannot have it meanwhile.
    let rival = customer(&app).await;
    assert_problem(app.add_to_cart_response(&rival.token, &sku, 1).await, 409).await;

    // The second attempt fails too; the unit goes back, and the rival reserves it.
    let second = app.stripe_webhook(&fail()).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.json::<Value>().await.unwrap()["outcome"],
        "payment.fail"
    );
    assert_eq!(app.variant(&sku).await.stock, 1);
    assert_eq!(
        app.add_to_cart_response(&rival.token, &sku, 1)
            .await
            .status(),
        200
    );
    let before = app.stored_order(&reference).await;
    // Held by the rival's cart: reopening would sell it twice.
    let refused = assert_problem(app.admin_status(&admin, &reference, "open").await, 409).await;
    assert!(
        refused["detail"].as_str().unwrap().contains("out of stock"),
        "{refused}"
    );
    assert_eq!(
        app.checkout_response(&rival.token, "rival").await.status(),
        201
    );
    // Sold to the rival: still refused, and nothing changed.
    assert_problem(app.admin_status(&admin, &reference, "open").await, 409).await;
    let after = app.stored_order(&reference).await;
    assert_eq!(after, before, "the refused reopens changed nothing");
    assert_eq!(after.status.as_str(), "cancelled");
    let variant = app.variant(&sku).await;
    assert_eq!(
        (variant.stock, variant.available),
        (0, 0),
        "one unit, one sale"
    );
    let ledger = app
        .get_json(&format!("/api/v1/admin/variants/{sku}/ledger"), &admin)
        .await;
    let movements = ledger["movements"].as_array().unwrap();
    let kinds: Vec<&str> = movements
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "initial",
            "sale",
            "cancel_restock",
            "reopen",
            "cancel_restock",
            "sale"
        ]
    );
    let ledger_stock: i64 = movements
        .iter()
        .map(|m| m["stock_delta"].as_i64().unwrap())
        .sum();
    assert_eq!(ledger_stock, 0, "the ledger agrees with the shelf");
    // One email per failed attempt.
    assert_eq!(refund_emails(&app, &buyer).await.len(), 2);
}

#[tokio::test]
async fn refunded_is_not_a_status_and_only_returns_put_shipped_units_back() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let sku = unique_sku();
    app.product(&[(&sku, 1000, 10)]).await;
    let buyer = customer(&app).await;
    let order = app.place_order_json(&buyer.token, &[(&sku, 3)]).await;
    let reference = reference(&order);
    app.admin_pay(&admin, &order).await;
    let shipped = app.admin_fulfil(&admin, &reference, Some(&[(1, 2)])).await;
    assert_eq!(shipped.status(), 200);
    assert_eq!(
        facets(&shipped.json().await.unwrap()),
        facet_tuple("open", "paid", "partially_fulfilled")
    );
    assert_eq!(app.variant(&sku).await.stock, 7);

    let refused = assert_problem(app.admin_status(&admin, &reference, "refunded").await, 422).await;
    assert_eq!(refused["errors"][0]["field"], "to", "{refused}");
    assert_problem(app.admin_status(&admin, &reference, "cancelled").await, 409).await;
    assert_eq!(
        app.variant(&sku).await.stock,
        7,
        "shipped units do not come back by a status change"
    );

    // One of the two shipped units comes back: exactly one unit returns to the shelf.
    let returned = app
        .admin_refund(&admin, &reference, "ret-1", &[(1, 1, "return")], "returned")
        .await;
    assert_eq!(returned.status(), 201);
    let returned: Value = returned.json().await.unwrap();
    assert_eq!(returned["refund"]["amount_minor"], 1000);
    assert_eq!(returned["order"]["lines"][0]["returned"], 1);
    let variant = app.variant(&sku).await;
    assert_eq!((variant.stock, variant.available), (8, 8));
    // Not the same unit twice, and unshipped units are not "returned".
    let body = assert_problem(
        app.admin_refund(&admin, &reference, "ret-2", &[(1, 2, "return")], "again")
            .await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "lines[0].quantity");
    // The unshipped unit is cancelled off the order.
    let cancelled_unit = app
        .admin_refund(
            &admin,
            &reference,
            "can-1",
            &[(1, 1, "cancel")],
            "out of glaze",
        )
        .await;
    assert_eq!(cancelled_unit.status(), 201);
    assert_eq!(app.variant(&sku).await.stock, 9);
    let current = app.admin_order(&admin, &reference).await;
    assert_eq!(
        facets(&current),
        facet_tuple("open", "refund_pending", "fulfilled")
    );
    assert_problem(app.admin_status(&admin, &reference, "completed").await, 409).await;
    for refund in current["refunds"].as_array().unwrap() {
        let settled = app
            .settle_refund(&admin, &reference, refund["id"].as_str().unwrap())
            .await;
        assert_eq!(settled.status(), 200);
    }
    let completed = app.admin_status(&admin, &reference, "completed").await;
    assert_eq!(completed.status(), 200);
    assert_eq!(
        facets(&completed.json().await.unwrap()),
        facet_tuple("completed", "partially_refunded", "fulfilled")
    );
    assert_problem(app.admin_status(&admin, &reference, "cancelled").await, 409).await;
    assert_problem(app.admin_status(&admin, &reference, "refunded").await, 422).await;
    assert_eq!(
        app.variant(&sku).await.stock,
        9,
        "the unit the customer kept never came back"
    );
    let stored = app.stored_order(&reference).await;
    assert_eq!(
        (
            stored.lines[0].fulfilled,
            stored.lines[0].removed,
            stored.lines[0].returned,
            stored.lines[0].restocked,
            stored.lines[0].refunded
        ),
        (2, 1, 1, 2, 2)
    );
}

#[tokio::test]
async fn a_capture_of_the_wrong_amount_leaves_the_order_unpaid_audited_and_counted() {
    let app = TestApp::builder().online_payments(None).spawn().await;
    let admin = app.admin_token().await;
    let sku = unique_sku();
    app.product(&[(&sku, 2500, 2)]).await;
    let buyer = customer(&app).await;
    let order = app.place_order_json(&buyer.token, &[(&sku, 1)]).await;
    let reference = reference(&order);
    let one_cent = TestApp::intent_succeeded(&order, 1, "EUR");
    let answered = app.stripe_webhook(&one_cent).await;
    assert_eq!(answered.status(), 200, "acknowledged, not retried");
    let answered: Value = answered.json().await.unwrap();
    assert_eq!(answered["outcome"], "payment.amount_mismatch", "{answered}");

    let view = app.customer_order(&buyer.token, &reference).await;
    assert_eq!(facets(&view), facet_tuple("open", "pending", "unfulfilled"));
    assert_eq!(view["payment"]["status"], "amount_mismatch");
    assert_eq!(view["payment"]["captured_minor"], 0);
    assert_eq!(
        view["payment"]["mismatch"],
        json!({ "amount_minor": 1, "currency": "EUR" })
    );
    assert_problem(app.admin_fulfil(&admin, &reference, None).await, 409).await;
    let audit = app
        .audit_events(
            &admin,
            &format!("target=order:{reference}&action=payment.amount_mismatch"),
        )
        .await;
    assert_eq!(audit.len(), 1, "audited");
    assert_eq!(audit[0]["actor"], "provider:stripe");
    assert_eq!(
        app.metric_total(
            "lumi_payment_amount_mismatch_total",
            &[("provider", "stripe")]
        ),
        1.0
    );
    let mismatched = app
        .admin_payments(&admin, "provider=stripe&status=amount_mismatch")
        .await;
    assert!(
        mismatched
            .iter()
            .any(|p| p["order_reference"] == reference.as_str())
    );

    // Another currency is a mismatch too; the right capture then pays it.
    let dollars = TestApp::intent_succeeded(&order, 2500, "USD");
    let answered: Value = app.stripe_webhook(&dollars).await.json().await.unwrap();
    assert_eq!(answered["outcome"], "payment.amount_mismatch", "{answered}");
    assert_eq!(
        app.metric_total("lumi_payment_amount_mismatch_total", &[]),
        2.0
    );
    assert_eq!(
        app.stripe_capture(&order).await["events"][0]["financial_status"],
        "paid"
    );
    assert_eq!(
        app.stored_order(&reference).await.payment.captured_minor,
        2500
    );
}

#[tokio::test]
async fn a_retired_product_cannot_be_added_or_checked_out() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let (retired, kept) = (unique_sku(), unique_sku());
    let product = app.product(&[(&retired, 800, 6)]).await;
    app.product(&[(&kept, 300, 6)]).await;
    let holder = customer(&app).await;
    assert_eq!(
        app.add_to_cart_response(&holder.token, &retired, 2)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.add_to_cart_response(&holder.token, &kept, 1)
            .await
            .status(),
        200
    );

    let patched = app
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/admin/products/{product}"),
            Some(&admin),
            None,
            Some(&json!({ "active": false })),
        )
        .await;
    assert_eq!(patched.status(), 200);
    assert!(!app.variant(&retired).await.active);

    let newcomer = customer(&app).await;
    let body = assert_problem(
        app.add_to_cart_response(&newcomer.token, &retired, 1).await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "variant", "{body}");
    // The holder cannot add more of it either.
    assert_problem(
        app.add_to_cart_response(&holder.token, &retired, 1).await,
        422,
    )
    .await;

    let refused = assert_problem(app.checkout_response(&holder.token, "retired").await, 422).await;
    let field = refused["errors"][0]["field"].as_str().unwrap();
    assert!(field.contains(&retired), "names the line: {refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains(&retired),
        "{refused}"
    );
    assert!(
        app.get_json("/api/v1/orders", &holder.token).await["orders"]
            .as_array()
            .unwrap()
            .is_empty(),
        "no order"
    );
    let variant = app.variant(&retired).await;
    assert_eq!((variant.stock, variant.available), (6, 4), "nothing sold");
    // Taking it out of the cart gives the units back, and the rest checks out.
    let removed = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/cart/items/{retired}"),
            Some(&holder.token),
            None,
            None,
        )
        .await;
    assert_eq!(removed.status(), 200);
    assert_eq!(app.variant(&retired).await.available, 6);
    assert_eq!(
        app.checkout_response(&holder.token, "kept").await.status(),
        201
    );
}

#[tokio::test]
async fn renewals_never_hold_a_reservation_past_its_maximum_lifetime() {
    const MINUTE: i64 = 60_000_000;
    let clock = ManualClock::starting_now();
    let app = TestApp::builder()
        .clock(&clock)
        .env("CART_RESERVATION_MINUTES", "10")
        .env("CART_RESERVATION_MAX_MINUTES", "25")
        .spawn()
        .await;
    let sku = unique_sku();
    app.product(&[(&sku, 500, 2)]).await;
    let (hoarder, other) = (customer(&app).await, customer(&app).await);
    let start = lumi_shared::clock::Clock::now_us(&clock);
    let until = |minutes: i64| lumi_commerce::rfc3339(start + minutes * MINUTE);
    let cart: Value = app
        .add_to_cart_response(&hoarder.token, &sku, 2)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cart["lines"][0]["reserved_until"], until(10));

    // Renewed every 8 minutes: 18, then capped at 25, and it stays there.
    let mut seen = Vec::new();
    for quantity in [1, 2, 1] {
        clock.advance_secs(8 * 60);
        let cart: Value = app
            .set_cart_quantity_response(&hoarder.token, &sku, quantity)
            .await
            .json()
            .await
            .unwrap();
        seen.push(
            cart["lines"][0]["reserved_until"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen, [until(18), until(25), until(25)]);
    assert_problem(app.add_to_cart_response(&other.token, &sku, 2).await, 409).await;

    // Past the cap, another customer takes the units once the lapsed line is swept.
    clock.advance_secs(2 * 60);
    let taken = app.add_to_cart_response(&other.token, &sku, 2).await;
    assert_eq!(taken.status(), 200);
    let variant = app.variant(&sku).await;
    assert_eq!((variant.stock, variant.available), (2, 0));
    assert!(
        app.cart_json(&hoarder.token).await["lines"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the hoarder's line was swept"
    );
    assert_eq!(
        app.checkout_response(&other.token, "other").await.status(),
        201
    );
    assert_problem(app.checkout_response(&hoarder.token, "hoarder").await, 422).await;
}

#[tokio::test]
async fn a_cart_holds_at_most_cart_max_lines_lines() {
    let app = TestApp::builder().env("CART_MAX_LINES", "2").spawn().await;
    let skus: Vec<String> = (0..3).map(|_| unique_sku()).collect();
    for sku in &skus {
        app.product(&[(sku, 100, 5)]).await;
    }
    let buyer = customer(&app).await;
    assert_eq!(
        app.add_to_cart_response(&buyer.token, &skus[0], 1)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.add_to_cart_response(&buyer.token, &skus[1], 1)
            .await
            .status(),
        200
    );
    let body = assert_problem(
        app.add_to_cart_response(&buyer.token, &skus[2], 1).await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "cart", "{body}");
    assert_eq!(app.variant(&skus[2]).await.available, 5, "nothing reserved");
    // Lines already in the cart still change.
    assert_eq!(
        app.add_to_cart_response(&buyer.token, &skus[0], 1)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.cart_json(&buyer.token).await["lines"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn the_rollout_share_decides_who_pays_online() {
    let app = TestApp::builder().online_payments(Some(0)).spawn().await;
    let sku = unique_sku();
    app.product(&[(&sku, 100, 10)]).await;
    let buyer = customer(&app).await;
    let first = app.place_order_json(&buyer.token, &[(&sku, 1)]).await;
    assert_eq!(first["payment"]["provider"], "manual", "0 %: nobody");

    let mut settings = SystemSettings::default();
    settings.feature_flags.order_payments = true;
    settings.feature_flags.order_payments_rollout_percent = Some(100);
    app.put_settings(&settings).await;
    let second = app.place_order_json(&buyer.token, &[(&sku, 1)]).await;
    assert_eq!(second["payment"]["provider"], "stripe", "100 %: everybody");
    let other = customer(&app).await;
    let third = app.place_order_json(&other.token, &[(&sku, 1)]).await;
    assert_eq!(third["payment"]["provider"], "stripe");

    settings.feature_flags.order_payments = false;
    app.put_settings(&settings).await;
    let fourth = app.place_order_json(&other.token, &[(&sku, 1)]).await;
    assert_eq!(fourth["payment"]["provider"], "manual", "the flag off wins");
}

#[tokio::test]
async fn the_payments_listing_is_typed_and_leaks_no_keys() {
    let app = TestApp::builder().online_payments(None).spawn().await;
    let admin = app.admin_token().await;
    let sku = unique_sku();
    app.product(&[(&sku, 650, 10)]).await;
    let buyer = customer(&app).await;
    let online = app.place_order_json(&buyer.token, &[(&sku, 2)]).await;
    app.stripe_capture(&online).await;
    app.put_settings(&SystemSettings::default()).await;
    let manual = app.place_order_json(&buyer.token, &[(&sku, 1)]).await;
    assert_eq!(manual["payment"]["provider"], "manual");

    let listed = app.admin_payments(&admin, "").await;
    assert_eq!(listed.len(), 2, "every provider: {listed:?}");
    for (order, provider, status, captured) in [
        (&online, "stripe", "captured", 1300),
        (&manual, "manual", "pending", 0),
    ] {
        let payment = listed
            .iter()
            .find(|p| p["payment_id"] == order["payment"]["id"])
            .unwrap();
        let keys: Vec<&str> = payment
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for forbidden in ["pk", "sk", "gsi1pk", "gsi1sk"] {
            assert!(!keys.contains(&forbidden), "{forbidden} in {payment}");
        }
        assert_eq!(payment["provider"], provider);
        assert_eq!(payment["status"], status);
        assert_eq!(payment["amount_minor"], order["total"]["amount_minor"]);
        assert_eq!(payment["captured_minor"], captured);
        assert_eq!(payment["refunded_minor"], 0);
        assert_eq!(payment["order_reference"], order["reference"]);
        assert!(payment["payment_id"].as_str().unwrap().starts_with("pay_"));
        // The Stripe id an admin looks up; never what lets a customer pay it.
        assert_eq!(payment["provider_ref"], order["payment"]["provider_ref"]);
        assert!(!payment.to_string().contains("secret"), "{payment}");
    }
    assert!(
        online["payment"]["provider_ref"]
            .as_str()
            .unwrap()
            .starts_with("pi_")
    );
    // One provider's payments page by cursor, newest first.
    let again = app.place_order_json(&buyer.token, &[(&sku, 3)]).await;
    let first = app
        .get_json("/api/v1/admin/payments?provider=manual&limit=1", &admin)
        .await;
    assert_eq!(first["payments"].as_array().unwrap().len(), 1);
    assert_eq!(first["payments"][0]["payment_id"], again["payment"]["id"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let mut url = reqwest::Url::parse(&app.url("/api/v1/admin/payments")).unwrap();
    url.query_pairs_mut()
        .append_pair("provider", "manual")
        .append_pair("limit", "1")
        .append_pair("cursor", cursor);
    let second: Value = app
        .http
        .get(url)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        second["payments"][0]["payment_id"], manual["payment"]["id"],
        "{second}"
    );
    assert_problem(
        app.call(
            reqwest::Method::GET,
            "/api/v1/admin/payments?provider=manual&cursor=garbage",
            Some(&admin),
            None,
            None,
        )
        .await,
        400,
    )
    .await;
    let body = assert_problem(
        app.call(
            reqwest::Method::GET,
            "/api/v1/admin/payments?status=settled",
            Some(&admin),
            None,
            None,
        )
        .await,
        400,
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("settled"));
}

#[tokio::test]
async fn a_checkout_costs_at_most_five_aws_calls() {
    let app = TestApp::builder().counting_aws_calls().spawn().await;
    let sku = unique_sku();
    app.product(&[(&sku, 450, 10)]).await;
    let buyer = customer(&app).await;
    // A warm container (keys, settings and the limiter's buckets loaded), as most requests
    // find it.
    app.place_order_json(&buyer.token, &[(&sku, 1)]).await;
    assert_eq!(
        app.add_to_cart_response(&buyer.token, &sku, 1)
            .await
            .status(),
        200
    );

    let before = app.aws_call_log().len();
    let placed = app.checkout_response(&buyer.token, "counted").await;
    assert_eq!(placed.status(), 201);
    let calls = app.aws_call_log()[before..].to_vec();
    assert!(
        calls.len() <= 5,
        "{} AWS calls for one checkout:\n{}",
        calls.len(),
        calls.join("\n")
    );
    // The last is the order's own transaction (the limiter writes its buckets in one too).
    assert!(
        calls.last().unwrap().ends_with("TransactWriteItems POST /"),
        "{calls:?}"
    );
    assert!(
        calls.iter().all(|c| c.starts_with("dynamodb ")),
        "no other service on the way: {calls:?}"
    );
}

#[tokio::test]
async fn a_capture_of_a_malformed_amount_or_currency_is_refused_and_records_no_mismatch() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let sku = unique_sku();
    app.product(&[(&sku, 700, 5)]).await;
    let buyer = app.new_customer().await;
    let placed = app.place_order(&buyer, &[(&sku, 1)]).await;
    let (reference, payment) = (&placed.order.reference, &placed.order.payment.id);
    // Found by Schemathesis: a currency of one letter was recorded as the payment's mismatch.
    for (amount, currency, field) in [
        (700, "T", "currency"),
        (700, "eur", "currency"),
        (0, "EUR", "amount_minor"),
        (-5, "EUR", "amount_minor"),
        (1_000_000_000_001, "EUR", "amount_minor"),
    ] {
        let refused = app
            .admin(&admin)
            .capture(payment, amount, currency)
            .await
            .refused(422);
        assert_eq!(refused.fields(), [field], "{}", refused.body);
    }
    let stored = app.stored_order(reference).await;
    assert_eq!(stored.payment.mismatch, None, "nothing was recorded");
    assert_eq!(stored.payment.captured_minor, 0);
    // A well-formed amount that is not the one due is still a mismatch to record.
    app.admin(&admin)
        .capture(payment, 699, "EUR")
        .await
        .unwrap_or_else(|p| panic!("{}", p.body));
    assert!(app.stored_order(reference).await.payment.mismatch.is_some());
}
