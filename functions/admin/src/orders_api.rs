//! Orders and payments for the admin: listing, one order, status changes, fulfilment, refunds,
//! settling refunds, payments by provider, manual captures and the failed-payment procedure.
//! Each handler parses, calls one `lumi_commerce` use case (which writes its own audit event
//! in its transaction; `Shop::mutate` counts the change) and shapes the answer.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use lumi_commerce::{
    admin::{RefundRequest, StatusRequest},
    model::{FinancialStatus, OrderStatus, PaymentStatus, RefundStatus},
    orders::{AdminOrderView, OrderFilter},
    payments::Applied,
};
use lumi_shared::{
    ApiError, ApiResult,
    auth::{AdminUser, sessions::RequestMeta},
    http::{Json, extract::idempotent},
    idempotency::{Guard, IdempotencyKey, hash_request},
    secrets::PAYMENT_PROVIDERS,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Shared, actor};

#[derive(Deserialize)]
pub struct OrderQuery {
    status: Option<String>,
    financial_status: Option<String>,
    customer: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i32>,
    cursor: Option<String>,
}

fn parse_financial(text: &str) -> Option<FinancialStatus> {
    serde_json::from_value(Value::String(text.to_owned())).ok()
}

pub async fn list_orders(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Query(query): Query<OrderQuery>,
) -> ApiResult<axum::Json<Value>> {
    let status = query
        .status
        .as_deref()
        .map(|s| {
            OrderStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "no order status {s}: one of open, cancelled, completed"
                ))
            })
        })
        .transpose()?;
    let financial_status = query
        .financial_status
        .as_deref()
        .map(|s| {
            parse_financial(s)
                .ok_or_else(|| ApiError::bad_request(format!("no financial status {s}")))
        })
        .transpose()?;
    let limit = crate::page_limit(query.limit, 50)?;
    let filter = OrderFilter {
        status,
        financial_status,
        customer: query.customer,
        from: query.from,
        to: query.to,
    };
    let (orders, next) = shop
        .list_orders(&filter, limit, query.cursor.as_deref())
        .await?;
    let orders: Vec<AdminOrderView> = orders.iter().map(AdminOrderView::from).collect();
    Ok(axum::Json(json!({ "orders": orders, "next_cursor": next })))
}

pub async fn get_order(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Path(reference): Path<String>,
) -> ApiResult<axum::Json<AdminOrderView>> {
    Ok(axum::Json(AdminOrderView::from(
        &shop.order(&reference).await?,
    )))
}

#[derive(Deserialize)]
pub struct StatusChange {
    to: String,
    #[serde(default)]
    note: String,
}

/// `POST /api/v1/admin/orders/{reference}/status` `{to, note}`: `cancelled` (money back, open
/// units restocked), `completed`, or `open` (reopen a cancelled, unpaid order: stock taken again).
pub async fn change_status(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(reference): Path<String>,
    Json(body): Json<StatusChange>,
) -> ApiResult<axum::Json<AdminOrderView>> {
    let to = StatusRequest::parse(&body.to)?;
    let note = if body.note.trim().is_empty() {
        "changed by an admin"
    } else {
        body.note.as_str()
    };
    let change = shop
        .set_status(&reference, to, note, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(AdminOrderView::from(&change.after)))
}

#[derive(Deserialize)]
pub struct FulfilLine {
    line: u32,
    quantity: i64,
}

#[derive(Deserialize)]
pub struct FulfilBody {
    /// Omitted: every unit still to ship.
    #[serde(default)]
    lines: Option<Vec<FulfilLine>>,
    #[serde(default)]
    note: String,
}

/// `POST /api/v1/admin/orders/{reference}/fulfillments`: ships units of a paid order.
pub async fn fulfil(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(reference): Path<String>,
    Json(body): Json<FulfilBody>,
) -> ApiResult<axum::Json<AdminOrderView>> {
    let lines: Option<Vec<(u32, i64)>> = body
        .lines
        .map(|lines| lines.iter().map(|l| (l.line, l.quantity)).collect());
    let note = if body.note.trim().is_empty() {
        "shipped"
    } else {
        body.note.as_str()
    };
    let change = shop
        .fulfil(&reference, lines.as_deref(), note, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(AdminOrderView::from(&change.after)))
}

/// `POST /api/v1/admin/orders/{reference}/refund` (Idempotency-Key): a refund record of the
/// named units, each line with its `restock_type`, and its refund email.
pub async fn refund_order(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    key: IdempotencyKey,
    Path(reference): Path<String>,
    body: bytes::Bytes,
) -> ApiResult<Response> {
    let request: RefundRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::Validation {
            detail: format!("the refund is not understood: {e}").into(),
            errors: Vec::new(),
        })?;
    let guard = Guard::new(
        &format!("refund:{reference}"),
        &key,
        hash_request(&[b"refund", reference.as_bytes(), &body]),
    );
    let done = shop
        .refund(&reference, &request, &actor(&admin, meta), &guard)
        .await?;
    let done = done.map(|mutated| {
        let order = mutated.order();
        json!({
            "refund": order.refunds.last(),
            "order": AdminOrderView::from(order),
        })
    });
    Ok(idempotent(StatusCode::CREATED, done))
}

/// `POST /api/v1/admin/orders/{reference}/refunds/{refund_id}/settle`
pub async fn settle_refund(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path((reference, refund_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<AdminOrderView>> {
    let change = shop
        .settle_refund(&reference, &refund_id, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(AdminOrderView::from(&change.after)))
}

#[derive(Deserialize)]
pub struct PaymentQuery {
    provider: Option<String>,
    status: Option<String>,
    limit: Option<i32>,
    cursor: Option<String>,
}

/// `GET /api/v1/admin/payments?provider=&status=`: payments newest first, with their provider,
/// amounts due, captured and refunded (the runbook's "identify the failing provider").
pub async fn list_payments(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Query(query): Query<PaymentQuery>,
) -> ApiResult<axum::Json<Value>> {
    let status = query
        .status
        .as_deref()
        .map(|s| {
            PaymentStatus::parse(s)
                .ok_or_else(|| ApiError::bad_request(format!("no payment status {s}")))
        })
        .transpose()?;
    let limit = crate::page_limit(query.limit, 50)?;
    let providers: Vec<&str> = match query.provider.as_deref() {
        Some(provider) => vec![provider],
        None if query.cursor.is_some() => {
            return Err(ApiError::bad_request(
                "a cursor pages one provider: name it",
            ));
        }
        None => std::iter::once("manual")
            .chain(PAYMENT_PROVIDERS.iter().copied())
            .collect(),
    };
    let mut payments = Vec::new();
    let mut next_cursor = None;
    for provider in providers {
        let (page, next) = shop
            .payments(provider, status, limit, query.cursor.as_deref())
            .await?;
        payments.extend(page.into_iter().map(|p| {
            json!({
                "payment_id": p.payment_id,
                "provider": p.provider,
                "status": p.status,
                "order_reference": p.order_reference,
                "user_id": p.user_id,
                "amount_minor": p.amount_minor,
                "currency": p.currency,
                "captured_minor": p.captured_minor,
                "refunded_minor": p.refunded_minor,
                "financial_status": p.financial_status,
                "provider_ref": p.provider_ref,
                "created_at": p.created_at,
                "updated_at": p.updated_at,
            })
        }));
        if query.provider.is_some() {
            next_cursor = next;
        }
    }
    Ok(axum::Json(
        json!({ "payments": payments, "next_cursor": next_cursor }),
    ))
}

fn applied(id: &str, applied: Applied) -> Value {
    match applied {
        Applied::Changed(change) => {
            json!({
                "payment_id": id,
                "applied": true,
                "status": change.after.payment.status,
                "order_reference": change.after.reference,
                "order_status": change.after.status,
                "financial_status": change.after.financial_status(),
                "refund_email": if change.emails.is_empty() { "none" } else { "queued" },
            })
        }
        Applied::Duplicate => json!({ "payment_id": id, "applied": false }),
        Applied::Ignored(why) => json!({ "payment_id": id, "applied": false, "detail": why }),
    }
}

#[derive(Deserialize)]
pub struct RefundQuery {
    status: Option<String>,
    limit: Option<i32>,
    cursor: Option<String>,
}

/// `GET /api/v1/admin/refunds?status=failed|pending|requested|succeeded` (default `failed`):
/// refunds still owed (a failed online refund, a manual one to pay back by hand), newest first.
pub async fn list_refunds(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Query(query): Query<RefundQuery>,
) -> ApiResult<axum::Json<Value>> {
    let status = query.status.as_deref().unwrap_or("failed");
    let status: RefundStatus =
        serde_json::from_value(Value::String(status.to_owned())).map_err(|_| {
            ApiError::bad_request("status is one of failed, pending, requested, succeeded")
        })?;
    let limit = crate::page_limit(query.limit, 50)?;
    let (refunds, next) = shop.refunds(status, limit, query.cursor.as_deref()).await?;
    let refunds: Vec<Value> = refunds
        .into_iter()
        .map(|r| {
            let mut value = json!(r.refund);
            value["order_reference"] = json!(r.order_reference);
            value["provider"] = json!(r.provider);
            value
        })
        .collect();
    Ok(axum::Json(
        json!({ "refunds": refunds, "next_cursor": next }),
    ))
}

/// `POST /api/v1/admin/refunds/retry`: asks the provider again for the refunds it could not be
/// asked (it was unreachable), oldest first, 25 at a time.
pub async fn retry_refunds(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
) -> ApiResult<axum::Json<Value>> {
    let answered = shop
        .retry_provider_refunds(25, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(json!({ "answered": answered })))
}

#[derive(Deserialize)]
pub struct CaptureBody {
    amount_minor: i64,
    currency: String,
}

/// `POST /api/v1/admin/payments/{id}/capture`: money received by hand for a manual payment.
pub async fn capture_payment(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(body): Json<CaptureBody>,
) -> ApiResult<axum::Json<Value>> {
    let outcome = shop
        .capture_manual(&id, body.amount_minor, &body.currency, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(applied(&id, outcome)))
}

#[derive(Deserialize)]
pub struct FailPayment {
    reason: String,
}

/// `POST /api/v1/admin/payments/{id}/fail`: the failed-payment procedure, for any provider.
pub async fn fail_payment(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(body): Json<FailPayment>,
) -> ApiResult<axum::Json<Value>> {
    let outcome = shop
        .fail_payment(&id, &body.reason, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(applied(&id, outcome)))
}
