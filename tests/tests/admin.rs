//! The admin function end to end: the runbooks' emergency procedures walked through over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_commerce::{
    admin::{NewProductRequest, NewVariant, ProductPatch},
    model::{FinancialStatus, OrderStatus, PaymentStatus, RefundStatus, RestockType},
    orders::OrderView,
};
use lumi_tests::{
    Customer, Refused, Request, TestApp, assert_problem, refund_request, status_of, unique_prefix,
};
use serde_json::{Value, json};

/// A customer's order of 2 units at 15 EUR (stock 5); returns (customer, sku, order).
async fn customer_order(app: &TestApp) -> (Customer, String, OrderView) {
    let sku = format!("SKU-{}", unique_prefix());
    app.product(&[(&sku, 1500, 5)]).await;
    let customer = app.new_customer().await;
    app.add_to_cart(&customer, &sku, 2).await.unwrap();
    let order = app.checkout(&customer, "k").await.unwrap().order;
    (customer, sku, order)
}

/// Every admin route, called generically from the route table: raw requests, as the routes'
/// bodies differ.
#[tokio::test]
async fn a_customer_token_is_403_on_every_admin_route() {
    let app = TestApp::spawn().await;
    let customer = app.new_customer().await;
    let admin_routes: Vec<_> = app
        .routes
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/admin"))
        .collect();
    assert!(admin_routes.len() >= 12);
    for route in admin_routes {
        let path = route.path.replace(['{', '}'], "");
        let response = app
            .call(
                route.method.parse().unwrap(),
                &path,
                Some(customer.token()),
                None,
                Some(&json!({})),
            )
            .await;
        assert_problem(response, 403).await;
    }
}

#[tokio::test]
async fn fraud_procedure_audit_logs_lock_the_user_and_track_the_order() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let admin = app.admin(&admin);
    let (customer, _, order) = customer_order(&app).await;
    let user_id = customer.id();
    let reference = order.reference.as_str();

    // 2. Lock the affected user: their token is refused at once.
    admin
        .lock(user_id, "chargeback on LUMI order")
        .await
        .unwrap();
    app.orders(&customer, "").await.refused(403);
    // 1. The audit log shows it, by target and by day.
    let logs = admin
        .audit(&format!("target=user:{user_id}"))
        .await
        .unwrap();
    assert_eq!(logs.events[0].action, "user.lock");
    assert_eq!(logs.events[0].summary["after"]["locked"], true);
    let today = admin.audit("action=user.lock").await.unwrap();
    assert!(!today.events.is_empty());
    // 3. The order reference and its timeline for the incident entry.
    let tracked = admin.order(reference).await.unwrap();
    assert_eq!(tracked.order.status, OrderStatus::Open);
    assert_eq!(tracked.user_id, user_id);
    assert_eq!(tracked.timeline[0].action, "order.placed");
    assert!(tracked.timeline[0].actor.ends_with(user_id));
    // The user can be found by email, unlocked, and their sessions deleted.
    let found = admin
        .users(&format!("email={}", customer.email()))
        .await
        .unwrap();
    assert!(found.users[0].locked);
    let deleted = admin.delete_sessions(user_id).await.unwrap();
    assert_eq!(deleted.sessions_deleted, 1);
    admin.unlock(user_id).await.unwrap();
    app.orders(&customer, "").await.refused(401);
}

#[tokio::test]
async fn failed_payment_procedure_identify_the_provider_mark_failed_and_queue_the_email() {
    let app = TestApp::builder().online_payments(None).spawn().await;
    let admin = app.new_admin().await;
    let admin = app.admin(&admin);
    let (customer, sku, order) = customer_order(&app).await;
    let reference = order.reference.as_str();
    let payment_id = order.payment.id.as_str();

    // 1. Identify the failing provider: the payments awaiting money, by provider, with the
    //    provider's own id (the PaymentIntent to look up in the Stripe dashboard).
    let pending = admin
        .payments("provider=stripe&status=pending")
        .await
        .unwrap();
    let found = pending
        .payments
        .iter()
        .find(|p| p.payment_id == payment_id)
        .unwrap();
    assert_eq!(found.provider, "stripe");
    assert_eq!(found.order_reference, reference);
    assert_eq!(found.provider_ref, order.payment.provider_ref);
    assert!(
        found.provider_ref.as_deref().unwrap().starts_with("pi_"),
        "{found:?}"
    );

    // 2. Mark it failed: the order is cancelled, its stock comes back, the email is queued.
    let failed = admin
        .fail_payment(payment_id, "provider outage")
        .await
        .unwrap();
    assert_eq!(
        (
            failed.status,
            failed.order_status,
            failed.financial_status,
            failed.refund_email.as_deref()
        ),
        (
            Some(PaymentStatus::Failed),
            Some(OrderStatus::Cancelled),
            Some(FinancialStatus::Voided),
            Some("queued")
        ),
        "{failed:?}"
    );
    assert_eq!(app.variant(&sku).await.stock, 5, "the stock came back");
    // Done twice by mistake, nothing more happens.
    let twice = admin
        .fail_payment(payment_id, "provider outage")
        .await
        .unwrap();
    assert!(!twice.applied, "{twice:?}");
    assert_eq!(app.variant(&sku).await.stock, 5, "restocked once");
    let listed = admin
        .payments("provider=stripe&status=failed")
        .await
        .unwrap();
    assert!(listed.payments.iter().any(|p| p.payment_id == payment_id));
    assert!(
        admin
            .payments("provider=stripe&status=pending")
            .await
            .unwrap()
            .payments
            .iter()
            .all(|p| p.payment_id != payment_id),
        "the listing follows the payment"
    );
    assert_eq!(app.drain_refund_emails().await, 1);
    let emails = app.emails_to(customer.email()).await;
    assert_eq!(emails.len(), 1);
    assert!(emails[0].to_string().contains("provider outage"));
    let audit = admin
        .audit(&format!("target=order:{reference}&action=payment.fail"))
        .await
        .unwrap();
    assert_eq!(audit.events.len(), 1);
    assert!(
        audit.events[0].actor.starts_with("admin:"),
        "{:?}",
        audit.events[0]
    );
}

#[tokio::test]
async fn admins_move_orders_through_allowed_transitions_only() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let admin = app.admin(&admin);
    let (_, _, order) = customer_order(&app).await;
    let reference = order.reference.as_str();
    // Unpaid orders do not ship or complete.
    admin.fulfil(reference, None).await.refused(409);
    admin.set_status(reference, "completed").await.refused(409);
    admin.pay(&order).await;
    let shipped = admin.fulfil(reference, None).await.unwrap();
    assert_eq!(shipped.order.fulfillment_status.as_str(), "fulfilled");
    assert_eq!(shipped.order.lines[0].fulfilled, 2);
    // Shipped orders are not cancelled (refund them with restock_type return instead), nor
    // reopened; statuses that are not the order's own are refused by name.
    admin.set_status(reference, "cancelled").await.refused(409);
    admin.set_status(reference, "open").await.refused(409);
    for to in ["delivered", "teleported", "refunded", "paid"] {
        let problem = admin.set_status(reference, to).await.refused(422);
        assert_eq!(problem.errors[0].field, "to", "{to}: {}", problem.body);
    }
    let completed = admin.set_status(reference, "completed").await.unwrap();
    assert_eq!(
        (
            completed.order.status.as_str(),
            completed.order.financial_status.as_str(),
            completed.order.fulfillment_status.as_str()
        ),
        ("completed", "paid", "fulfilled")
    );
    let listed = admin.orders("status=completed").await.unwrap();
    assert_eq!(listed.orders[0].order.reference, reference);
    let listed = admin.orders("financial_status=paid").await.unwrap();
    assert_eq!(listed.orders[0].order.reference, reference);
    let open = admin.orders("status=open").await.unwrap();
    assert!(open.orders.is_empty());
    admin.orders("financial_status=shipped").await.refused(400);
    let moved = |facet: &str, from: &str, to: &str| {
        app.metric_total(
            "order_status_transitions_total",
            &[("facet", facet), ("from", from), ("to", to)],
        )
    };
    assert_eq!(moved("financial", "pending", "paid"), 1.0);
    assert_eq!(moved("payment", "pending", "captured"), 1.0);
    assert_eq!(moved("fulfillment", "unfulfilled", "fulfilled"), 1.0);
    assert_eq!(moved("order", "open", "completed"), 1.0);
    assert_eq!(
        app.metric_total("order_status_transitions_total", &[]),
        4.0,
        "refusals move nothing"
    );
    let timeline: Vec<String> = admin
        .order(reference)
        .await
        .unwrap()
        .timeline
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        timeline,
        [
            "order.placed",
            "payment.capture",
            "order.fulfil",
            "order.complete"
        ]
    );
}

/// The settings document is read as wire JSON: its camelCase names, the ETag and If-Match
/// headers and the fields a 422 names are the contract under test.
#[tokio::test]
async fn settings_are_validated_versioned_and_audited() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let read = app
        .send::<Value>(
            Request::get("/api/v1/admin/settings").auth(admin.token()),
            200,
        )
        .await
        .unwrap();
    assert_eq!(read.header("etag"), Some("\"v0\""));
    let put = |body: Value, etag: Option<&'static str>| {
        let mut request = Request::put("/api/v1/admin/settings")
            .auth(admin.token())
            .json(&body);
        if let Some(etag) = etag {
            request = request.header("if-match", etag);
        }
        app.send::<Value>(request, 200)
    };
    let invalid = put(
        json!({ "rate_limits": { "customer": { "limit": 0 }, "bogus": {} }, "colour": "red" }),
        Some("\"v0\""),
    )
    .await
    .refused(422);
    let fields = invalid.fields();
    for field in ["rate_limits.customer.limit", "rate_limits.bogus", "colour"] {
        assert!(fields.contains(&field), "{fields:?}");
    }
    // No If-Match: 428 Precondition Required; one that is not an ETag of ours: 400.
    put(
        json!({ "rate_limits": { "customer": { "limit": 90 } } }),
        None,
    )
    .await
    .refused(428);
    put(
        json!({ "rate_limits": { "customer": { "limit": 90 } } }),
        Some("\"latest\""),
    )
    .await
    .refused(400);

    let changed = put(json!({ "rate_limits": { "customer": { "limit": 90 } }, "featureFlags": { "orderPayments": true } }), Some("\"v0\"")).await.unwrap();
    assert_eq!(changed.header("etag"), Some("\"v1\""));
    let changed = changed.body;
    assert_eq!(changed["rate_limits"]["customer"]["limit"], 90);
    assert_eq!(
        changed["rate_limits"]["customer"]["window_seconds"], 300,
        "untouched fields stay"
    );
    assert_eq!(changed["featureFlags"]["orderPayments"], true);
    put(
        json!({ "rate_limits": { "customer": { "limit": 10 } } }),
        Some("\"v0\""),
    )
    .await
    .refused(412);
    // An ETag of ours too large for any version (found by Schemathesis) is stale, not malformed.
    put(
        json!({ "rate_limits": { "customer": { "limit": 10 } } }),
        Some("\"v73744561799002999268416662619994\""),
    )
    .await
    .refused(412);
    let now = app
        .request::<Value>(
            Request::get("/api/v1/admin/settings").auth(admin.token()),
            200,
        )
        .await
        .unwrap();
    assert_eq!(
        now["rate_limits"]["customer"]["limit"], 90,
        "the stale write changed nothing"
    );
    let audit = app
        .admin(&admin)
        .audit("target=settings:system")
        .await
        .unwrap();
    assert_eq!(audit.events.len(), 1);

    // The other settings: rollout share, image quality, slow-call threshold.
    let out_of_range = json!({
        "imageQuality": { "jpeg": 0, "gif": 50 },
        "slowQueryThresholdMs": 0,
        "featureFlags": { "orderPaymentsRolloutPercent": 101 },
    });
    let problem = put(out_of_range, Some("\"v1\"")).await.refused(422);
    let fields = problem.fields();
    for field in [
        "imageQuality.jpeg",
        "imageQuality.gif",
        "slowQueryThresholdMs",
        "featureFlags.orderPaymentsRolloutPercent",
    ] {
        assert!(fields.contains(&field), "{fields:?}");
    }
    let tuned = json!({
        "imageQuality": { "jpeg": 60 },
        "slowQueryThresholdMs": 250,
        "featureFlags": { "orderPaymentsRolloutPercent": 10 },
    });
    let tuned = put(tuned, Some("\"v1\"")).await.unwrap().body;
    assert_eq!(
        (
            tuned["imageQuality"]["jpeg"].as_u64(),
            tuned["imageQuality"]["webp"].as_u64()
        ),
        (Some(60), Some(80))
    );
    assert_eq!(tuned["slowQueryThresholdMs"], 250);
    assert_eq!(tuned["featureFlags"]["orderPaymentsRolloutPercent"], 10);
}

#[tokio::test]
async fn concurrent_refunds_cannot_restock_more_than_was_sold() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let admin = app.admin(&admin);
    let (customer, sku, order) = customer_order(&app).await;
    let reference = order.reference.as_str();
    assert_eq!(app.variant(&sku).await.stock, 3);
    admin.pay(&order).await;

    let one_unit = refund_request(&[(1, 1, RestockType::Cancel)], "damaged in transit");
    let attempts = (0..8).map(|i| {
        let (admin, one_unit) = (&admin, &one_unit);
        async move {
            status_of(
                &admin
                    .refund(reference, one_unit, &format!("refund-{i}"))
                    .await,
                201,
            )
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [201, 409, 422].contains(s)),
        "{statuses:?}"
    );
    let variant = app.variant(&sku).await;
    assert_eq!(
        (variant.stock, variant.available),
        (5, 5),
        "two units sold, two restocked"
    );
    let refunded = admin.order(reference).await.unwrap();
    let order = &refunded.order;
    assert_eq!(
        (
            order.status.as_str(),
            order.financial_status.as_str(),
            order.fulfillment_status.as_str()
        ),
        ("open", "refund_pending", "removed")
    );
    assert_eq!(order.lines[0].refunded, 2);
    assert_eq!(order.lines[0].restocked, 2);
    assert_eq!(order.payment.refunded_minor, 3000);
    assert_eq!(order.payment.captured_minor, 3000);
    let refunds = &order.refunds;
    assert_eq!(refunds.len(), 2);
    // The consumer sends once per refund: exactly two emails reach the customer.
    app.drain_refund_emails().await;
    let emails = app.emails_to(customer.email()).await;
    assert_eq!(emails.len(), 2, "one refund email per refund");
    // A replayed key answers what it answered (or, if it lost, refuses again): no third refund.
    let again = status_of(&admin.refund(reference, &one_unit, "refund-0").await, 201);
    assert!(again == 201 || again == 422, "{again}");
    assert_eq!(app.variant(&sku).await.stock, 5);
    assert_eq!(app.stored_order(reference).await.refunds.len(), 2);
    // The money goes back: settled, the order is refunded and can be archived.
    for refund in refunds {
        admin.settle(reference, &refund.id).await.unwrap();
    }
    let settled = admin.order(reference).await.unwrap();
    assert_eq!(settled.order.financial_status.as_str(), "refunded");
    admin.settle(reference, &refunds[0].id).await.refused(409);
    admin.set_status(reference, "completed").await.unwrap();
}

#[tokio::test]
async fn a_partial_refund_without_restock_keeps_the_order_open() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let (_, sku, order) = customer_order(&app).await;
    let reference = order.reference.as_str();
    let api = app.admin(&admin);
    // Nothing captured yet: a refund is refused (cancel the order instead).
    let early = refund_request(&[(1, 1, RestockType::NoRestock)], "x");
    api.refund(reference, &early, "early").await.refused(409);
    api.pay(&order).await;
    let refund =
        |quantity: i64| refund_request(&[(1, quantity, RestockType::NoRestock)], "late delivery");
    let problem = api
        .refund(reference, &refund(3), "too-many")
        .await
        .refused(422);
    assert_eq!(
        problem.errors[0].field, "lines[0].quantity",
        "{}",
        problem.body
    );
    // The request shape before restock types (`restock: true`), raw: refused, not guessed.
    let old_shape = Request::post(format!("/api/v1/admin/orders/{reference}/refund"))
        .auth(admin.token())
        .key("old-shape")
        .json(&json!({ "lines": [{ "line": 1, "quantity": 1, "restock": true }], "reason": "x" }));
    app.request::<Value>(old_shape, 201).await.refused(422);
    let partial = api.refund(reference, &refund(1), "one").await.unwrap();
    let made = partial.refund.as_ref().unwrap();
    assert_eq!(made.amount_minor, 1500);
    assert_eq!(made.status, RefundStatus::Pending);
    assert_eq!(made.lines[0].restock_type, RestockType::NoRestock);
    assert_eq!(partial.order.order.status.as_str(), "open");
    assert_eq!(
        partial.order.order.financial_status.as_str(),
        "refund_pending"
    );
    assert_eq!(partial.order.order.payment.refunded_minor, 1500);
    assert_eq!(
        partial.order.order.lines[0].removed, 1,
        "the unshipped unit came off the order"
    );
    assert_eq!(app.variant(&sku).await.stock, 3, "nothing restocked");
    let settled = api.settle(reference, &made.id).await.unwrap();
    assert_eq!(
        settled.order.financial_status.as_str(),
        "partially_refunded"
    );
    assert_eq!(settled.order.status.as_str(), "open");
    // The other unit still ships.
    let shipped = api.fulfil(reference, None).await.unwrap();
    assert_eq!(
        shipped.order.fulfillment_status.as_str(),
        "fulfilled",
        "{shipped:?}"
    );
    assert_eq!(shipped.order.lines[0].fulfilled, 1);
    let audit = api
        .audit(&format!("target=order:{reference}&action=order.refund"))
        .await
        .unwrap();
    assert_eq!(audit.events.len(), 1);
    assert_eq!(audit.events[0].summary["note"], "late delivery");
}

#[tokio::test]
async fn inventory_mismatch_procedure_report_rebalance_report_clean() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let admin = app.admin(&admin);
    let sku = format!("SKU-{}", unique_prefix());
    app.product(&[(&sku, 300, 10)]).await;
    let customer = app.new_customer().await;
    app.add_to_cart(&customer, &sku, 3).await.unwrap();
    // Made on purpose: `available` drifts from stock minus reservations (7).
    app.dynamodb()
        .update_item()
        .table_name(app.resource("AppTable"))
        .set_key(Some(lumi_commerce::catalog::variant_key(&sku)))
        .update_expression("SET available = :a")
        .expression_attribute_values(":a", aws_sdk_dynamodb::types::AttributeValue::N("4".into()))
        .send()
        .await
        .unwrap();

    let report = admin.mismatches("").await.unwrap();
    let ours: Vec<_> = report.mismatches.iter().filter(|m| m.sku == sku).collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(
        (
            ours[0].stock,
            ours[0].reserved,
            ours[0].expected_available,
            ours[0].difference
        ),
        (10, 3, 7, -3)
    );

    let repaired = admin.rebalance().await.unwrap();
    assert!(repaired.repaired.iter().any(|m| m.sku == sku));
    assert_eq!(app.variant(&sku).await.available, 7);
    let clean = admin.mismatches("").await.unwrap();
    assert!(clean.mismatches.iter().all(|m| m.sku != sku));
    let again = admin.rebalance().await.unwrap();
    assert!(again.repaired.iter().all(|m| m.sku != sku), "idempotent");
    let audit = admin.audit(&format!("target=variant:{sku}")).await.unwrap();
    assert_eq!(audit.events.len(), 1);
}

/// A product without description: `(sku, price_minor, stock)` per variant, each named `x`.
fn new_product(id: &str, name: &str, variants: &[(&str, i64, i64)]) -> NewProductRequest {
    NewProductRequest {
        id: id.to_owned(),
        name: name.to_owned(),
        description: String::new(),
        variants: variants
            .iter()
            .map(|&(sku, price_minor, stock)| NewVariant {
                sku: sku.to_owned(),
                name: "x".into(),
                price_minor,
                currency: "EUR".into(),
                stock,
            })
            .collect(),
    }
}

#[tokio::test]
async fn admins_create_edit_retire_products_and_adjust_stock_with_a_reason() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let admin = app.admin(&admin);
    let id = unique_prefix();
    let sku = format!("SKU-{id}");
    let taiyaki = NewProductRequest {
        id: id.clone(),
        name: "Taiyaki".into(),
        description: "Fish-shaped cake".into(),
        variants: vec![NewVariant {
            sku: sku.clone(),
            name: "Red bean".into(),
            price_minor: 350,
            currency: "EUR".into(),
            stock: 12,
        }],
    };
    admin.create_product(&taiyaki).await.unwrap();
    let duplicate = new_product(&id, "Again", &[(&sku, 1, 1)]);
    admin.create_product(&duplicate).await.refused(409);
    let bad = new_product("x", "Bad", &[("S-1", -1, 1)]);
    assert_eq!(
        admin.create_product(&bad).await.refused(422).errors[0].field,
        "variants[0].price_minor"
    );

    admin.adjust_stock(&sku, -2, "damaged").await.unwrap();
    assert_eq!(app.variant(&sku).await.stock, 10);
    admin.adjust_stock(&sku, -11, "count").await.refused(409);
    admin.adjust_stock(&sku, 5, "").await.refused(422);

    let retire = ProductPatch {
        active: Some(false),
        ..ProductPatch::default()
    };
    admin.patch_product(&id, &retire).await.unwrap();
    app.get_product(&id).await.refused(404);
    let audit = admin.audit(&format!("target=product:{id}")).await.unwrap();
    let actions: Vec<&str> = audit.events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["product.retire", "product.create"]);
}

#[tokio::test]
async fn site_content_is_edited_by_admins_and_read_by_the_storefront() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let admin = app.admin(&admin);
    app.site_content("home-banner").await.refused(404);
    let banner = json!({ "title": "Matsuri week", "body": "Yakitori 2 for 1" });
    admin
        .put_content("home-banner", banner.clone())
        .await
        .unwrap();
    let public = app.site_content("home-banner").await.unwrap();
    assert_eq!(public.content, banner);
    // Not an identifier at all: 404 at the edge, like every malformed path identifier.
    admin
        .put_content("Home%20Banner", json!("x"))
        .await
        .refused(404);
    // An identifier, but not a block key (upper case): the domain's own 422.
    admin
        .put_content("HomeBanner", json!("x"))
        .await
        .refused(422);
    let too_big = admin
        .put_content("huge", json!("x".repeat(70 * 1024)))
        .await
        .unwrap_err();
    assert!(too_big.status == 413 || too_big.status == 422);
    let audit = admin.audit("target=content:home-banner").await.unwrap();
    assert_eq!(audit.events[0].action, "content.update");
}

/// The mismatch report's pages are bounded in DynamoDB work, not only in variants: 30 variants
/// asked in one page of 200 take several pages (each about `MISMATCH_CALL_BUDGET` queries), and
/// following the cursors finds the one drifted variant exactly once.
#[tokio::test]
async fn the_mismatch_report_bounds_each_request_and_pages_through_everything() {
    let app = TestApp::builder().counting_aws_calls().spawn().await;
    let admin = app.new_admin().await;
    let admin = app.admin(&admin);
    let prefix = unique_prefix();
    let skus: Vec<String> = (0..30).map(|i| format!("SKU-{prefix}-{i:02}")).collect();
    let variants: Vec<(&str, i64, i64)> = skus.iter().map(|s| (s.as_str(), 100, 5)).collect();
    app.product(&variants).await;
    let drifted = &skus[27];
    app.dynamodb()
        .update_item()
        .table_name(app.resource("AppTable"))
        .set_key(Some(lumi_commerce::catalog::variant_key(drifted)))
        .update_expression("SET available = :a")
        .expression_attribute_values(":a", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();

    let budget = lumi_commerce::admin::MISMATCH_CALL_BUDGET;
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = "limit=200".to_owned();
        if let Some(cursor) = &cursor {
            query.push_str(&format!("&cursor={cursor}"));
        }
        let before = app.aws_calls("Query");
        let page = admin.mismatches(&query).await.unwrap();
        let queries = app.aws_calls("Query") - before;
        // The budget, overrun at most by the last variant's own two queries.
        assert!(queries <= budget + 2, "{queries} queries in one page");
        pages += 1;
        found.extend(page.mismatches);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert!(
        pages >= 2,
        "30 variants at two queries each exceed one page's budget"
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(&found[0].sku, drifted);
}

/// A 31-day audit range is read a bounded number of queries at a time: the first page of an
/// empty month stops after `MAX_QUERIES_PER_PAGE` days with a cursor, and following the cursors
/// lists every event of the range once, newest first.
#[tokio::test]
async fn the_audit_log_range_is_paged_with_a_bounded_number_of_queries() {
    let app = TestApp::builder().counting_aws_calls().spawn().await;
    let admin = app.new_admin().await;
    let admin = app.admin(&admin);
    let table = app.resource("AppTable");
    let marker = unique_prefix();
    // Three events on each of three days of last month, written as the audit module does.
    let month_ago = time::OffsetDateTime::now_utc() - time::Duration::days(40);
    let days: Vec<time::OffsetDateTime> = (0..3)
        .map(|d| month_ago + time::Duration::days(d * 10))
        .collect();
    for day in &days {
        for i in 0..3 {
            let at = (*day + time::Duration::seconds(i))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let event = lumi_shared::audit::AuditEvent {
                actor: format!("test:{marker}"),
                action: "test.event".into(),
                target: format!("test:{marker}:{i}"),
                summary: json!({}),
                request_id: None,
                client_ip: None,
                at,
            };
            let mut tx = lumi_shared::store::Tx::new(&table);
            lumi_shared::audit::record_in(&mut tx, &event).unwrap();
            app.db().commit(tx).await.unwrap().unwrap();
        }
    }
    let from = (month_ago - time::Duration::days(1)).date();
    let to = from + time::Duration::days(31);
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = format!("from={from}&to={to}&limit=4&actor=test:{marker}");
        if let Some(cursor) = &cursor {
            query.push_str(&format!("&cursor={cursor}"));
        }
        let before = app.aws_calls("Query");
        let page = admin.audit(&query).await.unwrap();
        let queries = app.aws_calls("Query") - before;
        assert!(
            queries <= lumi_shared::audit::MAX_QUERIES_PER_PAGE,
            "{queries} queries for one page"
        );
        assert!(page.events.len() <= 4);
        pages += 1;
        listed.extend(page.events);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 40, "the cursor moves forward");
    }
    assert!(
        pages >= 4,
        "32 days at 8 queries a page take at least 4 pages"
    );
    let at: Vec<&str> = listed.iter().map(|e| e.at.as_str()).collect();
    assert_eq!(at.len(), 9, "{at:?}");
    let mut sorted = at.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(at, sorted, "newest first");
    admin
        .audit("cursor=eyJwayI6IlVTRVIjeCJ9")
        .await
        .refused(400);
}

/// Query parameters are checked before any AWS call: a time bound that is not RFC 3339 and a
/// provider that is none are 400 (not a failed query, not an empty page).
#[tokio::test]
async fn listing_filters_are_checked_before_the_query() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let admin = app.admin(&admin);
    for query in ["from=", "to=yesterday"] {
        admin.orders(query).await.refused(400);
    }
    for query in ["provider=", "provider=paypal"] {
        admin.payments(query).await.refused(400);
    }
    // Any RFC 3339 offset is read as the instant it names: a page of orders.
    admin
        .orders("from=2026-01-01T09:00:00%2B09:00&to=2099-01-01T00:00:00Z")
        .await
        .unwrap();
}

/// Two variants of one product with one SKU are 422 naming the second (not a failed
/// transaction writing one item twice).
#[tokio::test]
async fn a_product_cannot_list_one_sku_twice() {
    let app = TestApp::spawn().await;
    let admin = app.new_admin().await;
    let sku = lumi_tests::unique_sku();
    let product = new_product(
        &unique_prefix(),
        "T-shirt",
        &[(&sku, 1500, 1), (&sku, 1500, 1)],
    );
    let problem = app
        .admin(&admin)
        .create_product(&product)
        .await
        .refused(422);
    assert_eq!(
        problem.errors[0].field, "variants[1].sku",
        "{}",
        problem.body
    );
}
