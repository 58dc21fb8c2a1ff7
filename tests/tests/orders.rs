//! The orders function end to end: catalog, cart reservations, checkout, idempotency, cancel,
//! tracking, against the serialized local stack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_commerce::model::{FacetChange, MovementKind};
use lumi_shared::clock::ManualClock;
use lumi_tests::{Refused, Request, TestApp, status_of, unique_prefix};
use orders::{CheckoutBody, OrderPage};
use serde_json::{Value, json};

fn sku() -> String {
    format!("SKU-{}", unique_prefix())
}

#[tokio::test]
async fn a_customer_browses_fills_a_cart_checks_out_lists_tracks_and_cancels() {
    let app = TestApp::spawn().await;
    let (a, b) = (sku(), sku());
    let product = app.product(&[(&a, 450, 10), (&b, 1290, 5)]).await;
    let listed = app.products().await.unwrap();
    assert!(listed.products.iter().any(|p| p.id == product));
    let one = app.get_product(&product).await.unwrap();
    assert_eq!(one.variants.len(), 2);
    app.get_product("nope").await.refused(404);

    let customer = app.new_customer().await;
    app.add_to_cart(&customer, &a, 2).await.unwrap();
    let cart = app.add_to_cart(&customer, &b, 1).await.unwrap();
    assert_eq!(cart.total.amount_minor, 2 * 450 + 1290);
    assert_eq!(app.variant(&a).await.available, 8, "the cart holds two");
    app.set_cart_quantity(&customer, &a, 3).await.unwrap();
    assert_eq!(app.variant(&a).await.available, 7);

    let order = app.checkout(&customer, "k-1").await.unwrap().order;
    let reference = order.reference.clone();
    assert!(
        reference.starts_with("LUMI-") && reference.len() == 14,
        "{reference}"
    );
    assert_eq!(order.total.amount_minor, 3 * 450 + 1290);
    assert_eq!(
        (
            order.status.as_str(),
            order.financial_status.as_str(),
            order.fulfillment_status.as_str()
        ),
        ("open", "pending", "unfulfilled")
    );
    assert_eq!(order.payment.provider, "manual");
    assert_eq!(order.payment.status.as_str(), "pending");
    assert_eq!(order.payment.amount_minor, 3 * 450 + 1290);
    let (va, vb) = (app.variant(&a).await, app.variant(&b).await);
    assert_eq!(
        (va.stock, va.available, vb.stock, vb.available),
        (7, 7, 4, 4)
    );
    assert!(app.cart(&customer).await.unwrap().lines.is_empty());

    let list = app.orders(&customer, "").await.unwrap();
    assert_eq!(list.orders[0].reference, reference);
    let cancelled = app.cancel(&customer, &reference, "c-1").await.unwrap();
    assert_eq!(
        (
            cancelled.status.as_str(),
            cancelled.financial_status.as_str(),
            cancelled.fulfillment_status.as_str()
        ),
        ("cancelled", "voided", "removed"),
        "nothing was paid: nothing to refund"
    );
    assert!(cancelled.refunds.is_empty());
    let va = app.variant(&a).await;
    assert_eq!((va.stock, va.available), (10, 10), "stock came back");
    let track = app.track(&customer, &reference).await.unwrap();
    assert_eq!(track.status.as_str(), "cancelled");
    assert_eq!(track.financial_status.as_str(), "voided");
    let timeline = &track.timeline;
    assert_eq!(timeline.len(), 2);
    assert_eq!(timeline[0].action, "order.placed");
    assert_eq!(timeline[1].action, "order.cancel");
    let cancel = FacetChange {
        facet: "order".into(),
        from: "open".into(),
        to: "cancelled".into(),
    };
    assert!(timeline[1].changes.contains(&cancel), "{:?}", timeline[1]);
    assert_eq!(
        timeline[1].actor, "user",
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
    let other = app.new_customer().await;
    app.order(&other, &reference).await.refused(404);
    app.track(&other, &reference).await.refused(404);
}

#[tokio::test]
async fn a_hundred_customers_race_for_ten_units_and_exactly_ten_orders_exist() {
    let app = TestApp::spawn().await;
    let sku = sku();
    app.product(&[(&sku, 990, 10)]).await;
    let customers = futures::future::join_all((0..100).map(|_| app.new_customer())).await;
    let attempts = customers.iter().enumerate().map(|(i, customer)| {
        let (app, sku) = (&app, &sku);
        async move {
            if let Err(problem) = app.add_to_cart(customer, sku, 1).await {
                let problem = problem.assert_status(409);
                assert!(problem.detail.contains("out of stock"), "{}", problem.body);
                return problem.status;
            }
            status_of(&app.checkout(customer, &format!("race-{i}")).await, 201)
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
    let customer = app.new_customer().await;
    app.add_to_cart(&customer, &sku, 2).await.unwrap();
    let statuses: Vec<u16> =
        futures::future::join_all((0..20).map(|_| app.checkout(&customer, "same-key")))
            .await
            .iter()
            .map(|r| status_of(r, 201))
            .collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let list = app.orders(&customer, "").await.unwrap();
    assert_eq!(list.orders.len(), 1);
    assert_eq!(app.variant(&sku).await.stock, 3);

    // Afterwards the key answers what it answered, and refuses another body.
    let again = app
        .checkout_with(&customer, "same-key", &CheckoutBody::default())
        .await
        .unwrap();
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    assert_eq!(again.body.order.reference, list.orders[0].reference);
    let other_body = CheckoutBody {
        note: Some("ring twice".into()),
    };
    app.checkout_with(&customer, "same-key", &other_body)
        .await
        .refused(422);
}

#[tokio::test]
async fn concurrent_cancels_restock_exactly_once() {
    let app = TestApp::spawn().await;
    let sku = sku();
    app.product(&[(&sku, 500, 6)]).await;
    let customer = app.new_customer().await;
    app.add_to_cart(&customer, &sku, 4).await.unwrap();
    let order = app.checkout(&customer, "k").await.unwrap().order;
    let reference = order.reference.as_str();
    assert_eq!(app.variant(&sku).await.stock, 2);
    let statuses: Vec<u16> = futures::future::join_all((0..10).map(|i| {
        let (app, customer) = (&app, &customer);
        async move {
            status_of(
                &app.cancel(customer, reference, &format!("cancel-{i}"))
                    .await,
                200,
            )
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
    let admin = app.new_admin().await;
    let ledger = app.admin(&admin).ledger(&sku).await.unwrap();
    let kinds: Vec<MovementKind> = ledger.movements.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            MovementKind::Initial,
            MovementKind::Sale,
            MovementKind::CancelRestock
        ],
        "{ledger:?}"
    );
    assert_eq!(ledger.stock, 6);
}

#[tokio::test]
async fn expired_reservations_give_their_stock_back() {
    let clock = ManualClock::starting_now();
    let app = TestApp::builder().clock(&clock).spawn().await;
    let sku = sku();
    app.product(&[(&sku, 500, 3)]).await;
    let (first, second) = (app.new_customer().await, app.new_customer().await);
    app.add_to_cart(&first, &sku, 3).await.unwrap();
    app.add_to_cart(&second, &sku, 1).await.refused(409);
    clock.advance_secs(16 * 60);
    app.add_to_cart(&second, &sku, 2)
        .await
        .expect("the lapsed reservation was swept");
    assert_eq!(app.variant(&sku).await.available, 1);
    assert!(
        app.cart(&first).await.unwrap().lines.is_empty(),
        "the first cart lost its lapsed line"
    );
    app.checkout(&first, "late").await.refused(422);
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let sku = sku();
    app.product(&[(&sku, 500, 5)]).await;
    let customer = app.new_customer().await;
    for quantity in [0, -1, 21] {
        let problem = app
            .add_to_cart(&customer, &sku, quantity)
            .await
            .refused(422);
        assert_eq!(problem.errors[0].field, "quantity", "{quantity}");
    }
    let unknown = app
        .add_to_cart(&customer, "NO-SUCH-SKU", 1)
        .await
        .refused(422);
    assert_eq!(unknown.errors[0].field, "variant");
    app.checkout(&customer, "empty").await.refused(422);
    app.add_to_cart(&customer, &sku, 1).await.unwrap();
    // A checkout without the Idempotency-Key header: the client's checkout always sends one.
    let missing_key = Request::post("/api/v1/orders")
        .auth(customer.token())
        .json(&CheckoutBody::default());
    let missing_key = app.request::<Value>(missing_key, 201).await.refused(400);
    assert!(missing_key.detail.contains("Idempotency-Key"));
    app.checkout(&customer, "has spaces").await.refused(400);
    let huge = CheckoutBody {
        note: Some("x".repeat(2 * 1024 * 1024)),
    };
    app.checkout_with(&customer, "big", &huge)
        .await
        .refused(413);
    let long_note = CheckoutBody {
        note: Some("x".repeat(501)),
    };
    app.checkout_with(&customer, "note", &long_note)
        .await
        .refused(422);
    let variant = app.variant(&sku).await;
    assert_eq!(
        (variant.stock, variant.available),
        (5, 4),
        "only the one valid reservation"
    );
    assert!(app.orders(&customer, "").await.unwrap().orders.is_empty());
    app.request::<Value>(Request::get("/api/v1/cart"), 200)
        .await
        .refused(401);
}

#[tokio::test]
async fn the_customer_rate_limit_applies_and_lists_page_by_cursor() {
    let app = TestApp::spawn().await;
    let sku = sku();
    app.product(&[(&sku, 100, 50)]).await;
    let customer = app.new_customer().await;
    for i in 0..3 {
        app.add_to_cart(&customer, &sku, 1).await.unwrap();
        app.checkout(&customer, &format!("k{i}")).await.unwrap();
    }
    // The first page with its headers (the rate-limit policy).
    let first = Request::get("/api/v1/orders?limit=2").auth(customer.token());
    let first = app.send::<OrderPage>(first, 200).await.unwrap();
    assert!(
        first
            .header("ratelimit-policy")
            .unwrap()
            .contains(r#""customer";q=60;w=300"#)
    );
    let first = first.body;
    assert_eq!(first.orders.len(), 2);
    let cursor = first.next_cursor.as_deref().unwrap();
    let second = app
        .orders(&customer, &format!("limit=2&cursor={cursor}"))
        .await
        .unwrap();
    assert_eq!(second.orders.len(), 1);
    assert!(first.orders[0].created_at >= first.orders[1].created_at);
    app.orders(&customer, "cursor=garbage").await.refused(400);
}

/// JSON Schema's `integer` (the OpenAPI document's) takes `2.0`: an integer field does too;
/// `2.5` is still a wrong type (422 naming the field). Wire-level: the bodies are raw JSON, as
/// the typed `AddLine` cannot hold a float.
#[tokio::test]
async fn a_whole_number_written_as_a_float_is_an_integer() {
    let app = TestApp::spawn().await;
    let sku = lumi_tests::unique_sku();
    app.product(&[(&sku, 1500, 5)]).await;
    let customer = app.new_customer().await;
    let add = |body: Value| {
        Request::post("/api/v1/cart/items")
            .auth(customer.token())
            .json(&body)
    };
    app.request::<lumi_commerce::cart::Cart>(add(json!({ "variant": sku, "quantity": 2.0 })), 200)
        .await
        .unwrap();
    let problem = app
        .request::<lumi_commerce::cart::Cart>(add(json!({ "variant": sku, "quantity": 2.5 })), 200)
        .await
        .refused(422);
    assert_eq!(problem.errors[0].field, "quantity", "{}", problem.body);
}
