//! The admin function end to end: the runbooks' emergency procedures walked through over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lumi_tests::{TestApp, assert_problem, unique_prefix};
use reqwest::Method;
use serde_json::{Value, json};

fn token(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_owned()
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// A customer's order of 2 units (stock 5); returns (customer tokens, sku, order).
async fn customer_order(app: &TestApp) -> (Value, String, Value) {
    let sku = format!("SKU-{}", unique_prefix());
    app.product(&[(&sku, 1500, 5)]).await;
    let tokens = app.quick_customer().await;
    let t = token(&tokens);
    let added = call(
        app,
        Method::POST,
        "/api/v1/cart/items",
        &t,
        Some(json!({ "variant": sku, "quantity": 2 })),
    )
    .await;
    assert_eq!(added.status(), 200);
    let order = app
        .http
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&t)
        .header("idempotency-key", "k")
        .json(&json!({}));
    let order: Value = order.send().await.unwrap().json().await.unwrap();
    (tokens, sku, order)
}

#[tokio::test]
async fn a_customer_token_is_403_on_every_admin_route() {
    let app = TestApp::spawn().await;
    let customer = token(&app.quick_customer().await);
    let admin_routes: Vec<_> = app
        .routes
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/admin"))
        .collect();
    assert!(admin_routes.len() >= 12);
    for route in admin_routes {
        let path = route.path.replace(['{', '}'], "");
        let response = call(
            &app,
            route.method.parse().unwrap(),
            &path,
            &customer,
            Some(json!({})),
        )
        .await;
        assert_problem(response, 403).await;
    }
}

#[tokio::test]
async fn fraud_procedure_audit_logs_lock_the_user_and_track_the_order() {
    let app = TestApp::spawn().await;
    let admin = token(&app.signed_in_admin().await);
    let (customer, _, order) = customer_order(&app).await;
    let user_id = customer["user"]["id"].as_str().unwrap();
    let reference = order["reference"].as_str().unwrap();

    // 2. Lock the affected user: their token is refused at once.
    let locked = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/users/{user_id}/lock"),
        &admin,
        Some(json!({ "reason": "chargeback on LUMI order" })),
    )
    .await;
    assert_eq!(locked.status(), 200);
    let refused = call(&app, Method::GET, "/api/v1/orders", &token(&customer), None).await;
    assert_problem(refused, 403).await;
    // 1. The audit log shows it, by target and by day.
    let logs: Value = call(
        &app,
        Method::GET,
        &format!("/api/v1/admin/audit-logs?target=user:{user_id}"),
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(logs["events"][0]["action"], "user.lock");
    assert_eq!(logs["events"][0]["summary"]["after"]["locked"], true);
    let today: Value = call(
        &app,
        Method::GET,
        "/api/v1/admin/audit-logs?action=user.lock",
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(!today["events"].as_array().unwrap().is_empty());
    // 3. The order reference and its timeline for the incident entry.
    let tracked: Value = call(
        &app,
        Method::GET,
        &format!("/api/v1/admin/orders/{reference}"),
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(tracked["status"], "open");
    assert_eq!(tracked["user_id"], user_id);
    assert_eq!(tracked["timeline"][0]["action"], "order.placed");
    assert!(
        tracked["timeline"][0]["actor"]
            .as_str()
            .unwrap()
            .ends_with(user_id)
    );
    // The user can be found by email, unlocked, and their sessions deleted.
    let email = customer["user"]["email"].as_str().unwrap();
    let found: Value = call(
        &app,
        Method::GET,
        &format!("/api/v1/admin/users?email={email}"),
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(found["users"][0]["locked"], true);
    let deleted: Value = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/admin/users/{user_id}/sessions"),
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(deleted["sessions_deleted"], 1);
    assert_eq!(
        call(
            &app,
            Method::POST,
            &format!("/api/v1/admin/users/{user_id}/unlock"),
            &admin,
            None
        )
        .await
        .status(),
        200
    );
    assert_problem(
        call(&app, Method::GET, "/api/v1/orders", &token(&customer), None).await,
        401,
    )
    .await;
}

#[tokio::test]
async fn failed_payment_procedure_identify_the_provider_mark_failed_and_queue_the_email() {
    let app = TestApp::builder().online_payments(None).spawn().await;
    let admin = token(&app.signed_in_admin().await);
    let (customer, sku, order) = customer_order(&app).await;
    let reference = order["reference"].as_str().unwrap();
    let payment_id = order["payment"]["id"].as_str().unwrap();

    // 1. Identify the failing provider: the payments awaiting money, by provider, with the
    //    provider's own id (the PaymentIntent to look up in the Stripe dashboard).
    let pending = app
        .admin_payments(&admin, "provider=stripe&status=pending")
        .await;
    let found = pending
        .iter()
        .find(|p| p["payment_id"] == payment_id)
        .unwrap();
    assert_eq!(found["provider"], "stripe");
    assert_eq!(found["order_reference"], reference);
    assert_eq!(found["provider_ref"], order["payment"]["provider_ref"]);
    assert!(
        found["provider_ref"].as_str().unwrap().starts_with("pi_"),
        "{found}"
    );

    // 2. Mark it failed: the order is cancelled, its stock comes back, the email is queued.
    let failed = app
        .admin_fail_payment(&admin, payment_id, "provider outage")
        .await;
    assert_eq!(failed.status(), 200);
    let failed: Value = failed.json().await.unwrap();
    assert_eq!(
        (
            failed["status"].as_str(),
            failed["order_status"].as_str(),
            failed["financial_status"].as_str(),
            failed["refund_email"].as_str()
        ),
        (
            Some("failed"),
            Some("cancelled"),
            Some("voided"),
            Some("queued")
        ),
        "{failed}"
    );
    assert_eq!(app.variant(&sku).await.stock, 5, "the stock came back");
    // Done twice by mistake, nothing more happens.
    let twice: Value = app
        .admin_fail_payment(&admin, payment_id, "provider outage")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(twice["applied"], false, "{twice}");
    assert_eq!(app.variant(&sku).await.stock, 5, "restocked once");
    let listed = app
        .admin_payments(&admin, "provider=stripe&status=failed")
        .await;
    assert!(listed.iter().any(|p| p["payment_id"] == payment_id));
    assert!(
        app.admin_payments(&admin, "provider=stripe&status=pending")
            .await
            .iter()
            .all(|p| p["payment_id"] != payment_id),
        "the listing follows the payment"
    );
    assert_eq!(app.drain_refund_emails().await, 1);
    let emails = app
        .emails_to(customer["user"]["email"].as_str().unwrap())
        .await;
    assert_eq!(emails.len(), 1);
    assert!(emails[0].to_string().contains("provider outage"));
    let audit = app
        .audit_events(
            &admin,
            &format!("target=order:{reference}&action=payment.fail"),
        )
        .await;
    assert_eq!(audit.len(), 1);
    assert!(
        audit[0]["actor"].as_str().unwrap().starts_with("admin:"),
        "{}",
        audit[0]
    );
}

#[tokio::test]
async fn admins_move_orders_through_allowed_transitions_only() {
    let app = TestApp::spawn().await;
    let admin = token(&app.signed_in_admin().await);
    let (_, _, order) = customer_order(&app).await;
    let reference = order["reference"].as_str().unwrap();
    // Unpaid orders do not ship or complete.
    assert_problem(app.admin_fulfil(&admin, reference, None).await, 409).await;
    assert_problem(app.admin_status(&admin, reference, "completed").await, 409).await;
    app.admin_pay(&admin, &order).await;
    let shipped = app.admin_fulfil(&admin, reference, None).await;
    assert_eq!(shipped.status(), 200);
    let shipped: Value = shipped.json().await.unwrap();
    assert_eq!(shipped["fulfillment_status"], "fulfilled");
    assert_eq!(shipped["lines"][0]["fulfilled"], 2);
    // Shipped orders are not cancelled (refund them with restock_type return instead), nor
    // reopened; statuses that are not the order's own are refused by name.
    assert_problem(app.admin_status(&admin, reference, "cancelled").await, 409).await;
    assert_problem(app.admin_status(&admin, reference, "open").await, 409).await;
    for to in ["delivered", "teleported", "refunded", "paid"] {
        let body = assert_problem(app.admin_status(&admin, reference, to).await, 422).await;
        assert_eq!(body["errors"][0]["field"], "to", "{to}: {body}");
    }
    let completed = app.admin_status(&admin, reference, "completed").await;
    assert_eq!(completed.status(), 200);
    let completed: Value = completed.json().await.unwrap();
    assert_eq!(
        (
            completed["status"].as_str(),
            completed["financial_status"].as_str(),
            completed["fulfillment_status"].as_str()
        ),
        (Some("completed"), Some("paid"), Some("fulfilled"))
    );
    let listed = app
        .get_json("/api/v1/admin/orders?status=completed", &admin)
        .await;
    assert_eq!(listed["orders"][0]["reference"], reference);
    let listed = app
        .get_json("/api/v1/admin/orders?financial_status=paid", &admin)
        .await;
    assert_eq!(listed["orders"][0]["reference"], reference);
    let open = app
        .get_json("/api/v1/admin/orders?status=open", &admin)
        .await;
    assert!(open["orders"].as_array().unwrap().is_empty());
    assert_problem(
        call(
            &app,
            Method::GET,
            "/api/v1/admin/orders?financial_status=shipped",
            &admin,
            None,
        )
        .await,
        400,
    )
    .await;
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
    let timeline: Vec<String> = app.admin_order(&admin, reference).await["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
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

#[tokio::test]
async fn settings_are_validated_versioned_and_audited() {
    let app = TestApp::spawn().await;
    let admin = token(&app.signed_in_admin().await);
    let read = call(&app, Method::GET, "/api/v1/admin/settings", &admin, None).await;
    assert_eq!(read.headers()["etag"], "\"v0\"");
    let put = |body: Value, etag: Option<&'static str>| {
        let mut request = app
            .http
            .put(app.url("/api/v1/admin/settings"))
            .bearer_auth(&admin)
            .json(&body);
        if let Some(etag) = etag {
            request = request.header("if-match", etag);
        }
        request.send()
    };
    let invalid = put(
        json!({ "rate_limits": { "customer": { "limit": 0 }, "bogus": {} }, "colour": "red" }),
        Some("\"v0\""),
    )
    .await
    .unwrap();
    let body = assert_problem(invalid, 422).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in ["rate_limits.customer.limit", "rate_limits.bogus", "colour"] {
        assert!(fields.contains(&field), "{fields:?}");
    }
    // No If-Match: 428 Precondition Required; one that is not an ETag of ours: 400.
    assert_problem(
        put(
            json!({ "rate_limits": { "customer": { "limit": 90 } } }),
            None,
        )
        .await
        .unwrap(),
        428,
    )
    .await;
    assert_problem(
        put(
            json!({ "rate_limits": { "customer": { "limit": 90 } } }),
            Some("\"latest\""),
        )
        .await
        .unwrap(),
        400,
    )
    .await;

    let changed = put(json!({ "rate_limits": { "customer": { "limit": 90 } }, "featureFlags": { "orderPayments": true } }), Some("\"v0\"")).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.headers()["etag"], "\"v1\"");
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(changed["rate_limits"]["customer"]["limit"], 90);
    assert_eq!(
        changed["rate_limits"]["customer"]["window_seconds"], 300,
        "untouched fields stay"
    );
    assert_eq!(changed["featureFlags"]["orderPayments"], true);
    assert_problem(
        put(
            json!({ "rate_limits": { "customer": { "limit": 10 } } }),
            Some("\"v0\""),
        )
        .await
        .unwrap(),
        412,
    )
    .await;
    let now: Value = call(&app, Method::GET, "/api/v1/admin/settings", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        now["rate_limits"]["customer"]["limit"], 90,
        "the stale write changed nothing"
    );
    let audit: Value = call(
        &app,
        Method::GET,
        "/api/v1/admin/audit-logs?target=settings:system",
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(audit["events"].as_array().unwrap().len(), 1);

    // The other settings: rollout share, image quality, slow-call threshold.
    let out_of_range = json!({
        "imageQuality": { "jpeg": 0, "gif": 50 },
        "slowQueryThresholdMs": 0,
        "featureFlags": { "orderPaymentsRolloutPercent": 101 },
    });
    let body = assert_problem(put(out_of_range, Some("\"v1\"")).await.unwrap(), 422).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
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
    let tuned = put(tuned, Some("\"v1\"")).await.unwrap();
    assert_eq!(tuned.status(), 200, "{:?}", tuned.text().await);
    let tuned: Value = tuned.json().await.unwrap();
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
    let admin = token(&app.signed_in_admin().await);
    let (customer, sku, order) = customer_order(&app).await;
    let reference = order["reference"].as_str().unwrap();
    assert_eq!(app.variant(&sku).await.stock, 3);
    app.admin_pay(&admin, &order).await;

    let attempts = (0..8).map(|i| {
        let (app, admin) = (&app, &admin);
        async move {
            app.admin_refund(
                admin,
                reference,
                &format!("refund-{i}"),
                &[(1, 1, "cancel")],
                "damaged in transit",
            )
            .await
            .status()
            .as_u16()
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
    let order = app.admin_order(&admin, reference).await;
    assert_eq!(
        (
            order["status"].as_str(),
            order["financial_status"].as_str(),
            order["fulfillment_status"].as_str()
        ),
        (Some("open"), Some("refund_pending"), Some("removed"))
    );
    assert_eq!(order["lines"][0]["refunded"], 2);
    assert_eq!(order["lines"][0]["restocked"], 2);
    assert_eq!(order["payment"]["refunded_minor"], 3000);
    assert_eq!(order["payment"]["captured_minor"], 3000);
    let refunds = order["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 2);
    // The consumer sends once per refund: exactly two emails reach the customer.
    app.drain_refund_emails().await;
    let emails = app
        .emails_to(customer["user"]["email"].as_str().unwrap())
        .await;
    assert_eq!(emails.len(), 2, "one refund email per refund");
    // A replayed key answers what it answered (or, if it lost, refuses again): no third refund.
    let again = app
        .admin_refund(
            &admin,
            reference,
            "refund-0",
            &[(1, 1, "cancel")],
            "damaged in transit",
        )
        .await;
    assert!(
        again.status() == 201 || again.status() == 422,
        "{}",
        again.status()
    );
    assert_eq!(app.variant(&sku).await.stock, 5);
    assert_eq!(app.stored_order(reference).await.refunds.len(), 2);
    // The money goes back: settled, the order is refunded and can be archived.
    for refund in refunds {
        let settled = app
            .settle_refund(&admin, reference, refund["id"].as_str().unwrap())
            .await;
        assert_eq!(settled.status(), 200);
    }
    let settled = app.admin_order(&admin, reference).await;
    assert_eq!(settled["financial_status"], "refunded");
    assert_problem(
        app.settle_refund(&admin, reference, refunds[0]["id"].as_str().unwrap())
            .await,
        409,
    )
    .await;
    assert_eq!(
        app.admin_status(&admin, reference, "completed")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_partial_refund_without_restock_keeps_the_order_open() {
    let app = TestApp::spawn().await;
    let admin = token(&app.signed_in_admin().await);
    let (_, sku, order) = customer_order(&app).await;
    let reference = order["reference"].as_str().unwrap();
    // Nothing captured yet: a refund is refused (cancel the order instead).
    assert_problem(
        app.admin_refund(&admin, reference, "early", &[(1, 1, "no_restock")], "x")
            .await,
        409,
    )
    .await;
    app.admin_pay(&admin, &order).await;
    let refund = async |quantity: i64, key: &'static str| {
        app.admin_refund(
            &admin,
            reference,
            key,
            &[(1, quantity, "no_restock")],
            "late delivery",
        )
        .await
    };
    let body = assert_problem(refund(3, "too-many").await, 422).await;
    assert_eq!(body["errors"][0]["field"], "lines[0].quantity", "{body}");
    let old_shape = app
        .call(
            Method::POST,
            &format!("/api/v1/admin/orders/{reference}/refund"),
            Some(&admin),
            Some("old-shape"),
            Some(
                &json!({ "lines": [{ "line": 1, "quantity": 1, "restock": true }], "reason": "x" }),
            ),
        )
        .await;
    assert_problem(old_shape, 422).await;
    let partial = refund(1, "one").await;
    assert_eq!(partial.status(), 201);
    let partial: Value = partial.json().await.unwrap();
    assert_eq!(partial["refund"]["amount_minor"], 1500);
    assert_eq!(partial["refund"]["status"], "pending");
    assert_eq!(partial["refund"]["lines"][0]["restock_type"], "no_restock");
    assert_eq!(partial["order"]["status"], "open");
    assert_eq!(partial["order"]["financial_status"], "refund_pending");
    assert_eq!(partial["order"]["payment"]["refunded_minor"], 1500);
    assert_eq!(
        partial["order"]["lines"][0]["removed"], 1,
        "the unshipped unit came off the order"
    );
    assert_eq!(app.variant(&sku).await.stock, 3, "nothing restocked");
    let settled = app
        .settle_refund(&admin, reference, partial["refund"]["id"].as_str().unwrap())
        .await;
    let settled: Value = settled.json().await.unwrap();
    assert_eq!(settled["financial_status"], "partially_refunded");
    assert_eq!(settled["status"], "open");
    // The other unit still ships.
    let shipped: Value = app
        .admin_fulfil(&admin, reference, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shipped["fulfillment_status"], "fulfilled", "{shipped}");
    assert_eq!(shipped["lines"][0]["fulfilled"], 1);
    let audit = app
        .audit_events(
            &admin,
            &format!("target=order:{reference}&action=order.refund"),
        )
        .await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["summary"]["note"], "late delivery");
}

#[tokio::test]
async fn inventory_mismatch_procedure_report_rebalance_report_clean() {
    let app = TestApp::spawn().await;
    let admin = token(&app.signed_in_admin().await);
    let sku = format!("SKU-{}", unique_prefix());
    app.product(&[(&sku, 300, 10)]).await;
    let customer = token(&app.quick_customer().await);
    let added = call(
        &app,
        Method::POST,
        "/api/v1/cart/items",
        &customer,
        Some(json!({ "variant": sku, "quantity": 3 })),
    )
    .await;
    assert_eq!(added.status(), 200);
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

    let report: Value = call(
        &app,
        Method::GET,
        "/api/v1/admin/inventory/mismatches",
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let ours: Vec<&Value> = report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["sku"] == sku.as_str())
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(
        (
            ours[0]["stock"].as_i64(),
            ours[0]["reserved"].as_i64(),
            ours[0]["expected_available"].as_i64(),
            ours[0]["difference"].as_i64()
        ),
        (Some(10), Some(3), Some(7), Some(-3))
    );

    let repaired: Value = call(
        &app,
        Method::POST,
        "/api/v1/admin/inventory/rebalance",
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        repaired["repaired"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["sku"] == sku.as_str())
    );
    assert_eq!(app.variant(&sku).await.available, 7);
    let clean: Value = call(
        &app,
        Method::GET,
        "/api/v1/admin/inventory/mismatches",
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        clean["mismatches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["sku"] != sku.as_str())
    );
    let again: Value = call(
        &app,
        Method::POST,
        "/api/v1/admin/inventory/rebalance",
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        again["repaired"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["sku"] != sku.as_str()),
        "idempotent"
    );
    let audit: Value = call(
        &app,
        Method::GET,
        &format!("/api/v1/admin/audit-logs?target=variant:{sku}"),
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(audit["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn admins_create_edit_retire_products_and_adjust_stock_with_a_reason() {
    let app = TestApp::spawn().await;
    let admin = token(&app.signed_in_admin().await);
    let id = unique_prefix();
    let sku = format!("SKU-{id}");
    let created = call(&app, Method::POST, "/api/v1/admin/products", &admin, Some(json!({
        "id": id, "name": "Taiyaki", "description": "Fish-shaped cake",
        "variants": [{ "sku": sku, "name": "Red bean", "price_minor": 350, "currency": "EUR", "stock": 12 }]
    }))).await;
    assert_eq!(created.status(), 201);
    let duplicate = call(&app, Method::POST, "/api/v1/admin/products", &admin, Some(json!({
        "id": id, "name": "Again", "variants": [{ "sku": sku, "name": "x", "price_minor": 1, "currency": "EUR", "stock": 1 }]
    }))).await;
    assert_problem(duplicate, 409).await;
    let bad = call(&app, Method::POST, "/api/v1/admin/products", &admin, Some(json!({
        "id": "x", "name": "Bad", "variants": [{ "sku": "S-1", "name": "x", "price_minor": -1, "currency": "EUR", "stock": 1 }]
    }))).await;
    assert_eq!(
        assert_problem(bad, 422).await["errors"][0]["field"],
        "variants[0].price_minor"
    );

    let removed = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/variants/{sku}/stock"),
        &admin,
        Some(json!({ "delta": -2, "reason": "damaged" })),
    )
    .await;
    assert_eq!(removed.status(), 200);
    assert_eq!(app.variant(&sku).await.stock, 10);
    let too_many = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/variants/{sku}/stock"),
        &admin,
        Some(json!({ "delta": -11, "reason": "count" })),
    )
    .await;
    assert_problem(too_many, 409).await;
    let no_reason = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/variants/{sku}/stock"),
        &admin,
        Some(json!({ "delta": 5, "reason": "" })),
    )
    .await;
    assert_problem(no_reason, 422).await;

    let retired = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/admin/products/{id}"),
        &admin,
        Some(json!({ "active": false })),
    )
    .await;
    assert_eq!(retired.status(), 200);
    assert_problem(app.get(&format!("/api/v1/products/{id}")).await, 404).await;
    let audit: Value = call(
        &app,
        Method::GET,
        &format!("/api/v1/admin/audit-logs?target=product:{id}"),
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["product.retire", "product.create"]);
}

#[tokio::test]
async fn site_content_is_edited_by_admins_and_read_by_the_storefront() {
    let app = TestApp::spawn().await;
    let admin = token(&app.signed_in_admin().await);
    assert_problem(app.get("/api/v1/site-content/home-banner").await, 404).await;
    let banner = json!({ "title": "Matsuri week", "body": "Yakitori 2 for 1" });
    let saved = call(
        &app,
        Method::PUT,
        "/api/v1/admin/site-content/home-banner",
        &admin,
        Some(json!({ "content": banner })),
    )
    .await;
    assert_eq!(saved.status(), 200);
    let public: Value = app
        .get("/api/v1/site-content/home-banner")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(public["content"], banner);
    let bad_key = call(
        &app,
        Method::PUT,
        "/api/v1/admin/site-content/Home%20Banner",
        &admin,
        Some(json!({ "content": "x" })),
    )
    .await;
    // Not an identifier at all: 404 at the edge, like every malformed path identifier.
    assert_problem(bad_key, 404).await;
    // An identifier, but not a block key (upper case): the domain's own 422.
    let upper = call(
        &app,
        Method::PUT,
        "/api/v1/admin/site-content/HomeBanner",
        &admin,
        Some(json!({ "content": "x" })),
    )
    .await;
    assert_problem(upper, 422).await;
    let too_big = call(
        &app,
        Method::PUT,
        "/api/v1/admin/site-content/huge",
        &admin,
        Some(json!({ "content": "x".repeat(70 * 1024) })),
    )
    .await;
    assert!(too_big.status() == 413 || too_big.status() == 422);
    let audit: Value = call(
        &app,
        Method::GET,
        "/api/v1/admin/audit-logs?target=content:home-banner",
        &admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(audit["events"][0]["action"], "content.update");
}

/// The mismatch report's pages are bounded in DynamoDB work, not only in variants: 30 variants
/// asked in one page of 200 take several pages (each about `MISMATCH_CALL_BUDGET` queries), and
/// following the cursors finds the one drifted variant exactly once.
#[tokio::test]
async fn the_mismatch_report_bounds_each_request_and_pages_through_everything() {
    let app = TestApp::builder().counting_aws_calls().spawn().await;
    let admin = token(&app.signed_in_admin().await);
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
        let mut path = "/api/v1/admin/inventory/mismatches?limit=200".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let before = app.aws_calls("Query");
        let page: Value = call(&app, Method::GET, &path, &admin, None)
            .await
            .json()
            .await
            .unwrap();
        let queries = app.aws_calls("Query") - before;
        // The budget, overrun at most by the last variant's own two queries.
        assert!(queries <= budget + 2, "{queries} queries in one page");
        pages += 1;
        found.extend(page["mismatches"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(
        pages >= 2,
        "30 variants at two queries each exceed one page's budget"
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["sku"], drifted.as_str());
}

/// A 31-day audit range is read a bounded number of queries at a time: the first page of an
/// empty month stops after `MAX_QUERIES_PER_PAGE` days with a cursor, and following the cursors
/// lists every event of the range once, newest first.
#[tokio::test]
async fn the_audit_log_range_is_paged_with_a_bounded_number_of_queries() {
    let app = TestApp::builder().counting_aws_calls().spawn().await;
    let admin = token(&app.signed_in_admin().await);
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
        let mut path =
            format!("/api/v1/admin/audit-logs?from={from}&to={to}&limit=4&actor=test:{marker}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let before = app.aws_calls("Query");
        let response = call(&app, Method::GET, &path, &admin, None).await;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        let queries = app.aws_calls("Query") - before;
        assert!(
            queries <= lumi_shared::audit::MAX_QUERIES_PER_PAGE,
            "{queries} queries for one page"
        );
        assert!(page["events"].as_array().unwrap().len() <= 4);
        pages += 1;
        listed.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 40, "the cursor moves forward");
    }
    assert!(
        pages >= 4,
        "32 days at 8 queries a page take at least 4 pages"
    );
    let at: Vec<&str> = listed.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert_eq!(at.len(), 9, "{at:?}");
    let mut sorted = at.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(at, sorted, "newest first");
    let bad = call(
        &app,
        Method::GET,
        "/api/v1/admin/audit-logs?cursor=eyJwayI6IlVTRVIjeCJ9",
        &admin,
        None,
    )
    .await;
    assert_problem(bad, 400).await;
}

/// Query parameters are checked before any AWS call: a time bound that is not RFC 3339 and a
/// provider that is none are 400 (not a failed query, not an empty page).
#[tokio::test]
async fn listing_filters_are_checked_before_the_query() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    for path in [
        "/api/v1/admin/orders?from=",
        "/api/v1/admin/orders?to=yesterday",
        "/api/v1/admin/payments?provider=",
        "/api/v1/admin/payments?provider=paypal",
    ] {
        let response = app.call(Method::GET, path, Some(&admin), None, None).await;
        assert_problem(response, 400).await;
    }
    // Any RFC 3339 offset is read as the instant it names.
    let page = app
        .get_json(
            "/api/v1/admin/orders?from=2026-01-01T09:00:00%2B09:00&to=2099-01-01T00:00:00Z",
            &admin,
        )
        .await;
    assert!(page["orders"].is_array(), "{page}");
}

/// Two variants of one product with one SKU are 422 naming the second (not a failed
/// transaction writing one item twice).
#[tokio::test]
async fn a_product_cannot_list_one_sku_twice() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let sku = lumi_tests::unique_sku();
    let variant =
        json!({ "sku": sku, "name": "M", "price_minor": 1500, "currency": "EUR", "stock": 1 });
    let body = json!({ "id": unique_prefix(), "name": "T-shirt", "variants": [variant, variant] });
    let response = app
        .call(
            Method::POST,
            "/api/v1/admin/products",
            Some(&admin),
            None,
            Some(&body),
        )
        .await;
    let problem = assert_problem(response, 422).await;
    assert_eq!(
        problem["errors"][0]["field"], "variants[1].sku",
        "{problem}"
    );
}
