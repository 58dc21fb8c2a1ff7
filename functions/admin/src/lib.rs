//! The admin function: `/api/v1/admin/*`, for the admin role only (a customer gets 403), under
//! the shared admin rate-limit budget. Every mutation writes an audit event.
//!
//! | route | does |
//! | --- | --- |
//! | `GET /api/v1/admin/orders` | every order, filtered by status, customer, date range; cursor |
//! | `GET /api/v1/admin/orders/{reference}` | one order with its timeline |
//! | `POST /api/v1/admin/orders/{reference}/status` `{to, note}` | an allowed lifecycle transition |
//! | `POST /api/v1/admin/orders/{reference}/refund` (Idempotency-Key) `{lines, reason}` | full or partial refund, restock, refund email |
//! | `GET /api/v1/admin/payments` | payments by provider and status |
//! | `POST /api/v1/admin/payments/{id}/fail` `{reason}` | marks a payment failed: order, stock, refund email |
//! | `GET /api/v1/admin/audit-logs` | audit events by actor, target, action, days |
//! | `GET /api/v1/admin/users`, `POST .../{id}/lock` `{reason}`, `POST .../{id}/unlock`, `DELETE .../{id}/sessions` | accounts |
//! | `GET`/`PUT /api/v1/admin/settings` | runtime settings, validated, with `ETag`/`If-Match` |
//! | `POST /api/v1/admin/products`, `PATCH .../{id}`, `POST /api/v1/admin/variants/{sku}/stock` | catalog and stock (see `catalog_api`) |
//! | `GET /api/v1/admin/inventory/mismatches`, `POST /api/v1/admin/inventory/rebalance` | the inventory-mismatch procedure |
//! | `GET`/`PUT /api/v1/admin/site-content/{key}` | the storefront's content blocks |
//! | `GET /api/v1/admin/email-deliveries?status=failed` | refund emails to send by hand |

pub mod catalog_api;
pub mod settings_api;

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, Query, State},
    routing::{delete, get, post},
};
use lumi_shared::{
    ApiError, ApiResult, Platform,
    audit::{self, AuditEvent, AuditFilter},
    auth::{
        AdminUser, now_ms,
        sessions::{self, RequestMeta},
        users,
    },
    commerce::ShopState,
    commerce::{
        ORDER_STATUS_TRANSITIONS_TOTAL,
        lifecycle::OrderStatus,
        orders, outbox,
        payments::{self, EventKind, PaymentItem, Webhook},
        s,
    },
    http::Json,
    store::from_item,
    telemetry::metrics::MetricSet,
};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn routes(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/v1/admin/orders", get(list_orders))
        .route("/api/v1/admin/orders/{reference}", get(get_order))
        .route(
            "/api/v1/admin/orders/{reference}/status",
            post(change_status),
        )
        .route(
            "/api/v1/admin/orders/{reference}/refund",
            post(refund_order),
        )
        .route("/api/v1/admin/payments", get(list_payments))
        .route("/api/v1/admin/payments/{id}/fail", post(fail_payment))
        .route("/api/v1/admin/audit-logs", get(audit_logs))
        .route("/api/v1/admin/products", post(catalog_api::create_product))
        .route(
            "/api/v1/admin/products/{id}",
            axum::routing::patch(catalog_api::update_product),
        )
        .route(
            "/api/v1/admin/variants/{sku}/stock",
            post(catalog_api::adjust_stock),
        )
        .route(
            "/api/v1/admin/inventory/mismatches",
            get(catalog_api::list_mismatches),
        )
        .route(
            "/api/v1/admin/inventory/rebalance",
            post(catalog_api::rebalance),
        )
        .route(
            "/api/v1/admin/site-content/{key}",
            get(catalog_api::get_content).put(catalog_api::put_content),
        )
        .route("/api/v1/admin/email-deliveries", get(email_deliveries))
        .route("/api/v1/admin/users", get(list_users))
        .route("/api/v1/admin/users/{id}/lock", post(lock_user))
        .route("/api/v1/admin/users/{id}/unlock", post(unlock_user))
        .route("/api/v1/admin/users/{id}/sessions", delete(delete_sessions))
        .route(
            "/api/v1/admin/settings",
            get(settings_api::get_settings).put(settings_api::put_settings),
        )
        .with_state(ShopState::new(platform))
}

fn table(platform: &Platform) -> &str {
    &platform.config.tables.app
}

/// Appends an audit event of this admin's request.
pub(crate) async fn record(
    platform: &Platform,
    admin: &AdminUser,
    meta: &RequestMeta,
    action: &str,
    target: String,
    summary: Value,
) -> ApiResult<()> {
    audit::record(
        &platform.db,
        table(platform),
        AuditEvent {
            actor: format!("admin:{}", admin.0.user.id),
            action: action.into(),
            target,
            summary,
            request_id: meta.request_id.clone(),
            client_ip: meta.client_ip.clone(),
            at: String::new(),
        },
    )
    .await?;
    Ok(())
}

#[derive(Deserialize)]
struct OrderQuery {
    status: Option<String>,
    customer: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i32>,
    cursor: Option<String>,
}

async fn list_orders(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
    Query(query): Query<OrderQuery>,
) -> ApiResult<axum::Json<Value>> {
    let status = query
        .status
        .as_deref()
        .map(|s| {
            OrderStatus::parse(s)
                .ok_or_else(|| ApiError::bad_request(format!("no order status {s}")))
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 200"));
    }
    let filter = orders::OrderFilter {
        status,
        customer: query.customer,
        from: query.from,
        to: query.to,
    };
    let (orders, next) = orders::list_all(
        &platform.db,
        table(&platform),
        &filter,
        limit,
        query.cursor.as_deref(),
    )
    .await?;
    Ok(axum::Json(json!({ "orders": orders, "next_cursor": next })))
}

async fn get_order(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
    Path(reference): Path<String>,
) -> ApiResult<axum::Json<orders::Order>> {
    orders::get(&platform.db, table(&platform), &reference)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("no order {reference}")))
}

#[derive(Deserialize)]
struct StatusChange {
    to: String,
    #[serde(default)]
    note: String,
}

async fn change_status(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    metrics: MetricSet,
    Path(reference): Path<String>,
    Json(body): Json<StatusChange>,
) -> ApiResult<axum::Json<orders::Order>> {
    let to = OrderStatus::parse(&body.to).ok_or_else(|| ApiError::Validation {
        detail: format!("no order status {}", body.to).into(),
        errors: vec![lumi_shared::error::FieldError {
            field: "to".into(),
            message: "unknown status".into(),
        }],
    })?;
    let db = &platform.db;
    let order = orders::get(db, table(&platform), &reference)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no order {reference}")))?;
    let actor = format!("admin:{}", admin.0.user.id);
    let note = if body.note.is_empty() {
        "changed by an admin"
    } else {
        body.note.as_str()
    };
    let change = orders::Change {
        to,
        actor: &actor,
        note,
        now_us: platform.clock.now_us(),
        extra: Vec::new(),
    };
    let changed = orders::transition(db, table(&platform), &order, change, None)
        .await?
        .map_err(|_| ApiError::Conflict("the order changed meanwhile; reload it".into()))?;
    metrics.count(
        ORDER_STATUS_TRANSITIONS_TOTAL,
        &[
            ("function", &platform.config.function_name),
            ("from", order.status.as_str()),
            ("to", to.as_str()),
        ],
        1.0,
    );
    let summary =
        json!({ "before": { "status": order.status }, "after": { "status": to }, "note": note });
    record(
        &platform,
        &admin,
        &meta,
        "order.status",
        format!("order:{reference}"),
        summary,
    )
    .await?;
    Ok(axum::Json(changed))
}

#[derive(Deserialize)]
struct PaymentQuery {
    provider: Option<String>,
    status: Option<String>,
}

async fn list_payments(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
    Query(query): Query<PaymentQuery>,
) -> ApiResult<axum::Json<Value>> {
    let providers: Vec<String> = match query.provider {
        Some(provider) => vec![provider],
        None => std::iter::once("manual")
            .chain(lumi_shared::secrets::PAYMENT_PROVIDERS.iter().copied())
            .map(str::to_owned)
            .collect(),
    };
    let db = &platform.db;
    let mut payments: Vec<PaymentItem> = Vec::new();
    for provider in providers {
        let mut request = db
            .client()
            .query()
            .table_name(table(&platform))
            .index_name("gsi1")
            .expression_attribute_values(":p", s(format!("PAYMENTS#{provider}")));
        request = match &query.status {
            Some(status) => request
                .key_condition_expression("gsi1pk = :p AND begins_with(gsi1sk, :status)")
                .expression_attribute_values(":status", s(format!("{status}#"))),
            None => request.key_condition_expression("gsi1pk = :p"),
        };
        let page = db
            .call(
                "Query",
                table(&platform),
                request.scan_index_forward(false).limit(200).send(),
            )
            .await?;
        for item in page.items.unwrap_or_default() {
            payments.push(from_item(table(&platform), item)?);
        }
    }
    Ok(axum::Json(json!({ "payments": payments })))
}

#[derive(Deserialize)]
struct FailPayment {
    reason: String,
}

async fn fail_payment(
    State(state): State<ShopState>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(body): Json<FailPayment>,
) -> ApiResult<axum::Json<Value>> {
    let platform = &state.platform;
    let db = &platform.db;
    let table = table(platform);
    if body.reason.trim().is_empty() {
        return Err(ApiError::Validation {
            detail: "give the reason".into(),
            errors: vec![lumi_shared::error::FieldError {
                field: "reason".into(),
                message: "is required".into(),
            }],
        });
    }
    let payment: PaymentItem = db
        .get_consistent(table, payments::payment_key(&id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no payment {id}")))?;
    // The same path as the provider's own failure event: order, stock and refund email together.
    let event = Webhook {
        event_id: format!("admin-fail:{}", meta.request_id.clone().unwrap_or_default()),
        kind: EventKind::Failed,
        payment_id: id.clone(),
        reason: Some(body.reason.clone()),
    };
    let pending = if payment.status == "awaiting_payment" {
        "pending"
    } else {
        payment.status.as_str()
    };
    if pending != payment.status {
        // A manual payment awaiting money fails the same way an online one does.
        let request = db
            .client()
            .update_item()
            .table_name(table)
            .set_key(Some(payments::payment_key(&id)))
            .update_expression("SET #status = :pending")
            .condition_expression("#status = :awaiting")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":awaiting", s("awaiting_payment"))
            .send();
        db.call("UpdateItem", table, request).await?;
    }
    let recipient = async |user_id: &str| -> Result<String, ApiError> {
        Ok(users::get(db, table, user_id)
            .await?
            .map(|u| u.email)
            .unwrap_or_default())
    };
    let applied = payments::apply(
        db,
        table,
        &payment.provider,
        &event,
        recipient,
        platform.clock.now_us(),
    )
    .await?;
    state.outbox.flush(db, table).await?;
    let summary = json!({ "before": { "status": payment.status }, "after": { "status": "failed" }, "reason": body.reason, "provider": payment.provider });
    record(
        platform,
        &admin,
        &meta,
        "payment.fail",
        format!("payment:{id}"),
        summary,
    )
    .await?;
    let order_status = match applied {
        payments::Applied::Moved { order, .. } => order.map(|o| o.status),
        payments::Applied::Duplicate => None,
    };
    Ok(axum::Json(
        json!({ "payment_id": id, "status": "failed", "order_status": order_status, "refund_email": "queued" }),
    ))
}

#[derive(Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    target: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

async fn audit_logs(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
    Query(query): Query<AuditQuery>,
) -> ApiResult<axum::Json<Value>> {
    let filter = AuditFilter {
        actor: query.actor,
        target: query.target,
        action: query.action,
        from: query.from,
        to: query.to,
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let events = audit::list(&platform.db, table(&platform), &filter, limit).await?;
    Ok(axum::Json(json!({ "events": events })))
}

#[derive(Deserialize)]
struct UserQuery {
    email: Option<String>,
}

async fn list_users(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
    Query(query): Query<UserQuery>,
) -> ApiResult<axum::Json<Value>> {
    let prefix = query.email.unwrap_or_default().trim().to_lowercase();
    let mut request = platform
        .db
        .client()
        .query()
        .table_name(table(&platform))
        .index_name("gsi1")
        .expression_attribute_values(":users", s("USERS"))
        .limit(100);
    request = if prefix.is_empty() {
        request.key_condition_expression("gsi1pk = :users")
    } else {
        request
            .key_condition_expression("gsi1pk = :users AND begins_with(gsi1sk, :email)")
            .expression_attribute_values(":email", s(prefix))
    };
    let page = platform
        .db
        .call("Query", table(&platform), request.send())
        .await?;
    let users: Vec<users::User> = page
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|item| {
            from_item::<users::UserItem>(table(&platform), item).map(|u| users::User::from(&u))
        })
        .collect::<Result<_, _>>()?;
    Ok(axum::Json(json!({ "users": users })))
}

#[derive(Deserialize)]
struct Lock {
    reason: String,
}

async fn lock_user(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(body): Json<Lock>,
) -> ApiResult<axum::Json<Value>> {
    if body.reason.trim().is_empty() {
        return Err(ApiError::Validation {
            detail: "give the reason".into(),
            errors: vec![lumi_shared::error::FieldError {
                field: "reason".into(),
                message: "is required".into(),
            }],
        });
    }
    let before = users::set_locked(
        &platform.db,
        table(&platform),
        &id,
        Some(&body.reason),
        now_ms(),
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    let summary = json!({ "before": { "locked": before.locked }, "after": { "locked": true, "reason": body.reason } });
    record(
        &platform,
        &admin,
        &meta,
        "user.lock",
        format!("user:{id}"),
        summary,
    )
    .await?;
    Ok(axum::Json(
        json!({ "id": id, "locked": true, "sessions_ended": true }),
    ))
}

async fn unlock_user(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let before = users::set_locked(&platform.db, table(&platform), &id, None, now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    let summary = json!({ "before": { "locked": before.locked }, "after": { "locked": false } });
    record(
        &platform,
        &admin,
        &meta,
        "user.unlock",
        format!("user:{id}"),
        summary,
    )
    .await?;
    Ok(axum::Json(json!({ "id": id, "locked": false })))
}

async fn delete_sessions(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    if users::get(&platform.db, table(&platform), &id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("no user {id}")));
    }
    let deleted = sessions::purge(&platform.db, table(&platform), &id).await?;
    let summary = json!({ "sessions_deleted": deleted });
    record(
        &platform,
        &admin,
        &meta,
        "user.sessions_delete",
        format!("user:{id}"),
        summary,
    )
    .await?;
    Ok(axum::Json(json!({ "id": id, "sessions_deleted": deleted })))
}

#[derive(Deserialize)]
struct RefundBody {
    lines: Vec<orders::RefundLine>,
    reason: String,
}

/// `POST /api/v1/admin/orders/{reference}/refund` (Idempotency-Key): full or partial, restocking
/// the chosen lines exactly once, marking the payment, queueing the refund email.
pub(crate) async fn refund_order(
    State(state): State<ShopState>,
    admin: AdminUser,
    meta: RequestMeta,
    headers: axum::http::HeaderMap,
    Path(reference): Path<String>,
    body: bytes::Bytes,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse as _;
    use lumi_shared::commerce::idempotency::{self, Begin, Recorded};
    let platform = &state.platform;
    let db = &platform.db;
    let table = table(platform);
    let key = idempotency::parse_key(headers.get("idempotency-key").and_then(|v| v.to_str().ok()))?;
    let parsed: RefundBody = serde_json::from_slice(&body).map_err(|e| ApiError::Validation {
        detail: format!("the refund is not understood: {e}").into(),
        errors: Vec::new(),
    })?;
    if parsed.reason.trim().is_empty() {
        return Err(ApiError::Validation {
            detail: "give the reason".into(),
            errors: vec![lumi_shared::error::FieldError {
                field: "reason".into(),
                message: "is required".into(),
            }],
        });
    }
    let hash = idempotency::hash_request(&[b"refund", reference.as_bytes(), &body]);
    let now = platform.clock.now_us();
    let claim = match idempotency::begin(db, table, &format!("refund:{reference}"), &key, hash, now)
        .await?
    {
        Begin::Replay(recorded) => {
            let status = axum::http::StatusCode::from_u16(recorded.status)
                .unwrap_or(axum::http::StatusCode::OK);
            return Ok((status, axum::Json(recorded.body)).into_response());
        }
        Begin::Fresh(claim) => claim,
    };
    let actor = format!("admin:{}", admin.0.user.id);
    let respond = |order: &orders::Order| Recorded {
        status: 200,
        body: serde_json::to_value(order).unwrap_or_default(),
    };
    let mut outcome = Err(ApiError::Conflict("the order kept changing; retry".into()));
    for _ in 0..5 {
        let Some(order) = orders::get(db, table, &reference).await? else {
            outcome = Err(ApiError::not_found(format!("no order {reference}")));
            break;
        };
        let recipient = users::get(db, table, &order.user_id)
            .await?
            .map(|u| u.email)
            .unwrap_or_default();
        let amount: i64 = parsed
            .lines
            .iter()
            .filter_map(|r| {
                order
                    .lines
                    .iter()
                    .find(|l| l.line == r.line)
                    .map(|l| l.unit_price_minor * r.quantity)
            })
            .sum();
        let email = outbox::RefundEmail {
            schema: 1,
            kind: "order_refund".into(),
            idempotency_id: format!("{}:refund:{key}", order.payment.id),
            order_reference: order.reference.clone(),
            payment_id: order.payment.id.clone(),
            amount_minor: amount,
            currency: order.currency.clone(),
            recipient,
            locale: "en".into(),
            reason: parsed.reason.clone(),
        };
        let change = orders::Change {
            to: OrderStatus::Refunded,
            actor: &actor,
            note: "refund",
            now_us: now,
            extra: vec![outbox::record(table, &email, now)?],
        };
        match orders::refund(
            db,
            table,
            &order,
            &parsed.lines,
            change,
            Some((&claim, &respond)),
        )
        .await
        {
            Ok(Ok(refunded)) => {
                outcome = Ok((order, refunded));
                break;
            }
            Ok(Err(_)) => continue,
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    let (before, refunded) = match outcome {
        Ok(done) => done,
        Err(error) => {
            claim.release(db, table).await;
            return Err(error);
        }
    };
    state.outbox.flush(db, table).await?;
    let summary = json!({
        "before": { "status": before.status, "lines": before.lines },
        "after": { "status": refunded.order.status, "lines": refunded.order.lines },
        "amount_minor": refunded.amount_minor,
        "restocked_units": refunded.restocked_units,
        "reason": parsed.reason,
    });
    record(
        platform,
        &admin,
        &meta,
        "order.refund",
        format!("order:{reference}"),
        summary,
    )
    .await?;
    Ok(axum::Json(refunded.order).into_response())
}

#[derive(Deserialize)]
struct DeliveryQuery {
    status: Option<String>,
}

/// `GET /api/v1/admin/email-deliveries?status=failed`: the refund emails that could not be
/// delivered (the runbook's "notify the customer manually"); also `retrying`, `sent`, `sending`.
async fn email_deliveries(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
    Query(query): Query<DeliveryQuery>,
) -> ApiResult<axum::Json<Value>> {
    let status = query.status.unwrap_or_else(|| "failed".into());
    if !["failed", "retrying", "sent", "sending"].contains(&status.as_str()) {
        return Err(ApiError::bad_request(
            "status is one of failed, retrying, sent, sending",
        ));
    }
    let deliveries =
        lumi_shared::commerce::deliveries::list(&platform.db, table(&platform), &status, 200)
            .await?;
    Ok(axum::Json(json!({ "deliveries": deliveries })))
}
