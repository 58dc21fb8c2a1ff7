//! Orders and payments for the admin: listing, one order, status changes, fulfilment, refunds,
//! settling refunds, payments by provider, manual captures and the failed-payment procedure.
//! Each handler parses, calls one `lumi_commerce` use case (which writes its own audit event
//! in its transaction; `Shop::mutate` counts the change) and shapes the answer.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use lumi_commerce::model::Refund;
use lumi_commerce::{
    admin::{RefundRequest, StatusRequest},
    model::{FinancialStatus, OrderStatus, PaymentStatus, RefundStatus},
    orders::{AdminOrderView, OrderFilter},
    payments::Applied,
};
use lumi_shared::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable,
    TooManyRequests, Unauthorized, UnsupportedMediaType, ValidationFailed,
};
use lumi_shared::{
    ApiError, ApiResult,
    auth::{AdminUser, sessions::RequestMeta},
    http::{Json, extract::idempotent},
    idempotency::{Guard, IdempotencyKey, hash_request},
    secrets::PAYMENT_PROVIDERS,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// One page of orders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AdminOrderPage {
    pub orders: Vec<AdminOrderView>,
    /// The `cursor` of the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A refund made: the record and the order after it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefundMade {
    pub refund: Option<Refund>,
    pub order: AdminOrderView,
}

/// A payment as the payments listing shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PaymentListItem {
    pub payment_id: String,
    /// `manual` or an online provider (`stripe`).
    pub provider: String,
    #[schema(value_type = PaymentStatus)]
    pub status: String,
    pub order_reference: String,
    pub user_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    #[schema(value_type = FinancialStatus)]
    pub financial_status: String,
    /// The provider's payment (a Stripe PaymentIntent id).
    pub provider_ref: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One page of payments.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PaymentPage {
    pub payments: Vec<PaymentListItem>,
    /// With `provider`: the `cursor` of the next page; `null` on the last (and without
    /// `provider`).
    pub next_cursor: Option<String>,
}

/// A refund record in the refunds listing: the record with its order and provider.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefundListItem {
    #[serde(flatten)]
    pub refund: Refund,
    pub order_reference: String,
    pub provider: String,
}

/// One page of refunds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefundPage {
    pub refunds: Vec<RefundListItem>,
    /// The `cursor` of the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// The refunds retried.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetriedRefunds {
    /// How many waiting refunds the provider answered.
    pub answered: usize,
}

/// What a manual capture or a payment failure did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PaymentApplied {
    pub payment_id: String,
    /// Whether it changed the order (`false`: a duplicate, or nothing to do).
    pub applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub status: Option<PaymentStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub order_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub order_status: Option<OrderStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub financial_status: Option<FinancialStatus>,
    /// `queued` when the change owes the customer an email, else `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, pattern = "^(queued|none)$")]
    pub refund_email: Option<String>,
    /// Why nothing changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<String>,
}

use crate::{Shared, actor};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    #[param(value_type = Option<OrderStatus>)]
    status: Option<String>,
    #[param(value_type = Option<FinancialStatus>)]
    financial_status: Option<String>,
    /// A user id.
    customer: Option<String>,
    /// Placed at or after (RFC 3339).
    from: Option<String>,
    /// Placed before (RFC 3339).
    to: Option<String>,
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<i32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn parse_financial(text: &str) -> Option<FinancialStatus> {
    serde_json::from_value(Value::String(text.to_owned())).ok()
}

/// Every order, newest first
#[utoipa::path(
    get,
    path = "/api/v1/admin/orders",
    tag = "admin",
    operation_id = "adminListOrders",
    security(("accessToken" = [])),
    params(OrderQuery),
    responses(
        (status = 200, description = "One page.", body = AdminOrderPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn list_orders(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Query(query): Query<OrderQuery>,
) -> ApiResult<axum::Json<AdminOrderPage>> {
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
    Ok(axum::Json(AdminOrderPage {
        orders,
        next_cursor: next,
    }))
}

/// One order with its facets, payment, refunds and timeline
#[utoipa::path(
    get,
    path = "/api/v1/admin/orders/{reference}",
    tag = "admin",
    operation_id = "adminGetOrder",
    security(("accessToken" = [])),
    params(("reference" = String, Path, description = "The order reference (`LUMI-7K3F-9Q2M`).", pattern = "^LUMI-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")),
    responses(
        (status = 200, description = "The order.", body = AdminOrderView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn get_order(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Path(reference): Path<String>,
) -> ApiResult<axum::Json<AdminOrderView>> {
    Ok(axum::Json(AdminOrderView::from(
        &shop.order(&reference).await?,
    )))
}

/// The status an admin asks for.
#[derive(Deserialize, Serialize, ToSchema)]
#[schema(as = OrderStatusChange)]
pub struct StatusChange {
    /// `cancelled` (money back, open units restocked), `completed`, or `open` (reopen a
    /// cancelled, unpaid order: its stock taken again).
    #[schema(value_type = OrderStatus)]
    pub to: String,
    /// For the timeline (default: "changed by an admin").
    #[serde(default)]
    pub note: String,
}

/// Cancel (open units restocked, captured money refunded), complete, or reopen an order
#[utoipa::path(
    post,
    path = "/api/v1/admin/orders/{reference}/status",
    tag = "admin",
    operation_id = "adminOrderStatus",
    security(("accessToken" = [])),
    params(("reference" = String, Path, description = "The order reference (`LUMI-7K3F-9Q2M`).", pattern = "^LUMI-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")),
    request_body(content = StatusChange, content_type = "application/json", example = json!({ "to": "cancelled", "note": "customer called" })),
    responses(
        (status = 200, description = "The order after the change.", body = AdminOrderView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]

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

/// Units of one line to ship.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct FulfilLine {
    /// The 1-based line number.
    #[schema(minimum = 1)]
    pub line: u32,
    #[schema(minimum = 1)]
    pub quantity: i64,
}

/// What to ship.
#[derive(Deserialize, Serialize, ToSchema)]
#[schema(as = FulfilmentRequest)]
pub struct FulfilBody {
    /// Omitted: every unit still to ship.
    #[serde(default)]
    pub lines: Option<Vec<FulfilLine>>,
    /// For the timeline (default: "shipped").
    #[serde(default)]
    pub note: String,
}

/// Ship units of an open order whose payment is captured (the named lines, or every unit still to ship)
#[utoipa::path(
    post,
    path = "/api/v1/admin/orders/{reference}/fulfillments",
    tag = "admin",
    operation_id = "adminFulfilOrder",
    security(("accessToken" = [])),
    params(("reference" = String, Path, description = "The order reference (`LUMI-7K3F-9Q2M`).", pattern = "^LUMI-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")),
    request_body(content = FulfilBody, content_type = "application/json", example = json!({ "lines": [{ "line": 1, "quantity": 2 }], "note": "DHL 00340434" })),
    responses(
        (status = 200, description = "The order after the change.", body = AdminOrderView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]

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

/// A refund record of the named units, each line with its restock type, and its refund email
///
/// Idempotency-Key required. An online payment's refund is recorded first and then asked of the
/// provider. The body is read as it is (any content type); a body of the wrong shape is 422.
#[utoipa::path(
    post,
    path = "/api/v1/admin/orders/{reference}/refund",
    tag = "admin",
    operation_id = "adminOrderRefund",
    security(("accessToken" = [])),
    params(
        ("reference" = String, Path, description = "The order reference (`LUMI-7K3F-9Q2M`).", pattern = "^LUMI-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$"),
        ("Idempotency-Key" = String, Header, description = "One key per intended refund (1 to 128 letters, digits, `-`, `_`, `.` or `:`).", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:-]{1,128}$"),
    ),
    request_body(content = lumi_commerce::admin::RefundRequest, content_type = "application/json",
        example = json!({ "lines": [{ "line": 1, "quantity": 1, "restock_type": "return" }], "reason": "damaged in transit" })),
    responses(
        (status = 201, description = "The refund record and the order (`Idempotency-Replayed: true` on a replay).", body = RefundMade, headers(("Idempotency-Replayed" = String, description = "`true` when this answers an earlier request with the same key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]

pub async fn refund_order(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    key: IdempotencyKey,
    Path(reference): Path<String>,
    body: bytes::Bytes,
) -> ApiResult<Response> {
    // Read from the bytes (not the `Json` extractor): the same bytes are the idempotency hash.
    let request: RefundRequest = lumi_shared::http::extract::parse_json(&body)?;
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
        RefundMade {
            refund: order.refunds.last().cloned(),
            order: AdminOrderView::from(order),
        }
    });
    Ok(idempotent(StatusCode::CREATED, done))
}

/// A refund not yet succeeded was paid back (a `manual` one by hand, a `failed` Stripe one another way, or one Stripe confirmed out of band)
#[utoipa::path(
    post,
    path = "/api/v1/admin/orders/{reference}/refunds/{refund_id}/settle",
    tag = "admin",
    operation_id = "adminSettleRefund",
    security(("accessToken" = [])),
    params(
        ("reference" = String, Path, description = "The order reference (`LUMI-7K3F-9Q2M`).", pattern = "^LUMI-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$"),
        ("refund_id" = String, Path, description = "The refund record's id."),
    ),
    responses(
        (status = 200, description = "The order after the change.", body = AdminOrderView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PaymentQuery {
    /// `manual` or `stripe`; omitted: every provider (then no `cursor`).
    #[param(pattern = "^(manual|stripe)$")]
    provider: Option<String>,
    #[param(value_type = Option<PaymentStatus>)]
    status: Option<String>,
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<i32>,
    /// The `next_cursor` of the previous page (with `provider`).
    cursor: Option<String>,
}

/// Payments by provider and status, newest first (the failed-payment procedure's first step)
///
/// With their provider, amounts due, captured and refunded (the runbook's "identify the failing
/// provider").
#[utoipa::path(
    get,
    path = "/api/v1/admin/payments",
    tag = "admin",
    operation_id = "adminListPayments",
    security(("accessToken" = [])),
    params(PaymentQuery),
    responses(
        (status = 200, description = "One page (per provider).", body = PaymentPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn list_payments(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Query(query): Query<PaymentQuery>,
) -> ApiResult<axum::Json<PaymentPage>> {
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
        Some(provider) if provider == "manual" || PAYMENT_PROVIDERS.contains(&provider) => {
            vec![provider]
        }
        Some(provider) => {
            return Err(ApiError::bad_request(format!(
                "no payment provider {provider:?}: manual or {}",
                PAYMENT_PROVIDERS.join(", ")
            )));
        }
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
        payments.extend(page.into_iter().map(|p| PaymentListItem {
            payment_id: p.payment_id,
            provider: p.provider,
            status: p.status,
            order_reference: p.order_reference,
            user_id: p.user_id,
            amount_minor: p.amount_minor,
            currency: p.currency,
            captured_minor: p.captured_minor,
            refunded_minor: p.refunded_minor,
            financial_status: p.financial_status,
            provider_ref: p.provider_ref,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }));
        if query.provider.is_some() {
            next_cursor = next;
        }
    }
    Ok(axum::Json(PaymentPage {
        payments,
        next_cursor,
    }))
}

fn applied(id: &str, applied: Applied) -> PaymentApplied {
    let unchanged = |detail| PaymentApplied {
        payment_id: id.to_owned(),
        applied: false,
        status: None,
        order_reference: None,
        order_status: None,
        financial_status: None,
        refund_email: None,
        detail,
    };
    match applied {
        Applied::Changed(change) => PaymentApplied {
            payment_id: id.to_owned(),
            applied: true,
            status: Some(change.after.payment.status),
            order_reference: Some(change.after.reference.clone()),
            order_status: Some(change.after.status),
            financial_status: Some(change.after.financial_status()),
            refund_email: Some(
                if change.emails.is_empty() {
                    "none"
                } else {
                    "queued"
                }
                .to_owned(),
            ),
            detail: None,
        },
        Applied::Duplicate => unchanged(None),
        Applied::Ignored(why) => unchanged(Some(why)),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RefundQuery {
    #[param(value_type = Option<RefundStatus>, default = "failed")]
    status: Option<String>,
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<i32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Refund records in one status, newest first (refunds still owed, by default those Stripe refused)
///
/// `failed` (default): online refunds the provider refused; `pending`: manual refunds to pay
/// back by hand; `requested`, `succeeded`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/refunds",
    tag = "admin",
    operation_id = "adminListRefunds",
    security(("accessToken" = [])),
    params(RefundQuery),
    responses(
        (status = 200, description = "One page.", body = RefundPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn list_refunds(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Query(query): Query<RefundQuery>,
) -> ApiResult<axum::Json<RefundPage>> {
    let status = query.status.as_deref().unwrap_or("failed");
    let status: RefundStatus =
        serde_json::from_value(Value::String(status.to_owned())).map_err(|_| {
            ApiError::bad_request("status is one of failed, pending, requested, succeeded")
        })?;
    let limit = crate::page_limit(query.limit, 50)?;
    let (refunds, next) = shop.refunds(status, limit, query.cursor.as_deref()).await?;
    let refunds = refunds
        .into_iter()
        .map(|r| RefundListItem {
            refund: r.refund,
            order_reference: r.order_reference,
            provider: r.provider,
        })
        .collect();
    Ok(axum::Json(RefundPage {
        refunds,
        next_cursor: next,
    }))
}

/// Ask Stripe again for the refunds it could not be asked (still `requested`), oldest first, 25 per call
#[utoipa::path(
    post,
    path = "/api/v1/admin/refunds/retry",
    tag = "admin",
    operation_id = "adminRetryRefunds",
    security(("accessToken" = [])),
    responses(
        (status = 200, description = "How many the provider answered.", body = RetriedRefunds),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn retry_refunds(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
) -> ApiResult<axum::Json<RetriedRefunds>> {
    let answered = shop
        .retry_provider_refunds(25, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(RetriedRefunds { answered }))
}

/// Money received by hand.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct CaptureBody {
    /// Minor units (cents): anything but the amount due makes the payment `amount_mismatch`.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64, example = 2190)]
    pub amount_minor: i64,
    /// ISO 4217: anything but the order's currency makes the payment `amount_mismatch`.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
}

const PAYMENT_ID: &str = "The payment id.";

/// Money received for a `manual` payment; it must be the amount and currency due (else the payment is `amount_mismatch`)
#[utoipa::path(
    post,
    path = "/api/v1/admin/payments/{id}/capture",
    tag = "admin",
    operation_id = "adminCapturePayment",
    security(("accessToken" = [])),
    params(("id" = String, Path, description = PAYMENT_ID)),
    request_body(content = CaptureBody, content_type = "application/json", example = json!({ "amount_minor": 2190, "currency": "EUR" })),
    responses(
        (status = 200, description = "What the capture did.", body = PaymentApplied),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn capture_payment(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(body): Json<CaptureBody>,
) -> ApiResult<axum::Json<PaymentApplied>> {
    let outcome = shop
        .capture_manual(&id, body.amount_minor, &body.currency, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(applied(&id, outcome)))
}

/// Why the payment failed.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct FailPayment {
    /// 1 to 500 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"\S",
        example = "card declined"
    )]
    pub reason: String,
}

/// The failed-payment procedure, for any provider (payment failed, open order cancelled with its units restocked, refund email queued)
#[utoipa::path(
    post,
    path = "/api/v1/admin/payments/{id}/fail",
    tag = "admin",
    operation_id = "adminFailPayment",
    security(("accessToken" = [])),
    params(("id" = String, Path, description = PAYMENT_ID)),
    request_body(content = FailPayment, content_type = "application/json", example = json!({ "reason": "card declined" })),
    responses(
        (status = 200, description = "What the failure did.", body = PaymentApplied),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn fail_payment(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(body): Json<FailPayment>,
) -> ApiResult<axum::Json<PaymentApplied>> {
    let outcome = shop
        .fail_payment(&id, &body.reason, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(applied(&id, outcome)))
}
