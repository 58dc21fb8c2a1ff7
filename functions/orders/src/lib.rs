//! The orders function: the catalog, the cart and its stock reservations, checkout, the
//! customer's orders, cancel and tracking. The rules live in `lumi_shared::commerce`; these
//! handlers parse, call them, count the runbooks' metrics and shape the answers.
//!
//! | route | auth |
//! | --- | --- |
//! | `GET /api/v1/products`, `GET /api/v1/products/{id}`, `GET /api/v1/site-content/{key}` | none |
//! | `GET /api/v1/cart`, `POST /api/v1/cart/items`, `PATCH`/`DELETE /api/v1/cart/items/{variant}` | customer |
//! | `POST /api/v1/orders` (Idempotency-Key), `GET /api/v1/orders` | customer |
//! | `GET /api/v1/orders/{reference}`, `POST .../cancel` (Idempotency-Key), `GET .../track` | customer |
//! | `POST /api/v1/payments/webhooks/{provider}` | the provider's HMAC signature |

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, patch, post},
};
use lumi_shared::{
    ApiError, ApiResult, Platform,
    auth::{Authenticated, users},
    commerce::ShopState,
    commerce::{
        CART_OPERATIONS_TOTAL, ORDER_CREATED_TOTAL, ORDER_STATUS_TRANSITIONS_TOTAL, cart, catalog,
        idempotency::{self, Begin, Recorded},
        lifecycle::OrderStatus,
        orders::{self, CheckoutRequest, OrderView},
        payments::{self, Applied, Webhook},
    },
    http::Json,
    secrets::PAYMENT_PROVIDERS,
    telemetry::metrics::MetricSet,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub fn routes(platform: Arc<Platform>) -> Router {
    let state = ShopState::new(platform);
    Router::new()
        .route("/api/v1/products", get(list_products))
        .route("/api/v1/products/{id}", get(get_product))
        .route("/api/v1/site-content/{key}", get(get_content))
        .route("/api/v1/cart", get(get_cart))
        .route("/api/v1/cart/items", post(add_to_cart))
        .route(
            "/api/v1/cart/items/{variant}",
            patch(update_cart_line).delete(remove_cart_line),
        )
        .route("/api/v1/orders", post(checkout).get(list_orders))
        .route("/api/v1/orders/{reference}", get(get_order))
        .route("/api/v1/orders/{reference}/cancel", post(cancel_order))
        .route("/api/v1/orders/{reference}/track", get(track_order))
        .route(
            "/api/v1/payments/webhooks/{provider}",
            post(payment_webhook),
        )
        .with_state(state)
}

fn table(platform: &Platform) -> &str {
    &platform.config.tables.app
}

async fn list_products(
    State(platform): State<Arc<Platform>>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let products = catalog::list(&platform.db, table(&platform)).await?;
    Ok(axum::Json(json!({ "products": products })))
}

async fn get_product(
    State(platform): State<Arc<Platform>>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<catalog::Product>> {
    catalog::get(&platform.db, table(&platform), &id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("no product {id}")))
}

/// The storefront's read of a content block.
async fn get_content(
    State(platform): State<Arc<Platform>>,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let block = lumi_shared::commerce::content::get(&platform.db, table(&platform), &key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no site content {key}")))?;
    let content: serde_json::Value =
        serde_json::from_str(&block.content).unwrap_or(serde_json::Value::String(block.content));
    Ok(axum::Json(
        json!({ "key": block.key, "content": content, "updated_at": block.updated_at }),
    ))
}

async fn cart_view(platform: &Platform, user: &str) -> ApiResult<axum::Json<cart::Cart>> {
    let lines = cart::lines(&platform.db, table(platform), user).await?;
    Ok(axum::Json(cart::view(&lines, platform.clock.now_us())))
}

async fn get_cart(
    State(platform): State<Arc<Platform>>,
    user: Authenticated,
) -> ApiResult<axum::Json<cart::Cart>> {
    cart_view(&platform, &user.user.id).await
}

#[derive(Deserialize)]
struct AddLine {
    variant: String,
    quantity: i64,
}

#[derive(Deserialize)]
struct SetLine {
    quantity: i64,
}

async fn change_cart(
    platform: &Platform,
    metrics: &MetricSet,
    user: &str,
    sku: &str,
    operation: &str,
    target: impl Fn(i64) -> i64,
) -> ApiResult<axum::Json<cart::Cart>> {
    let now = platform.clock.now_us();
    let reservation = platform.config.cart_reservation.as_micros() as i64;
    // The target is applied to what the line holds when the cart module reads it (one read).
    let outcome = cart::set_quantity(
        &platform.db,
        table(platform),
        user,
        sku,
        target,
        now,
        reservation,
    )
    .await;
    let label = match &outcome {
        Ok(()) => "ok",
        Err(cart::CartError::OutOfStock { .. }) => "out_of_stock",
        Err(_) => "rejected",
    };
    metrics.count(
        CART_OPERATIONS_TOTAL,
        &[
            ("function", &platform.config.function_name),
            ("operation", operation),
            ("outcome", label),
        ],
        1.0,
    );
    outcome?;
    cart_view(platform, user).await
}

async fn add_to_cart(
    State(platform): State<Arc<Platform>>,
    user: Authenticated,
    metrics: MetricSet,
    Json(body): Json<AddLine>,
) -> ApiResult<axum::Json<cart::Cart>> {
    if body.quantity < 1 {
        return Err(cart::CartError::Quantity.into());
    }
    change_cart(
        &platform,
        &metrics,
        &user.user.id,
        &body.variant,
        "add",
        |held| held + body.quantity,
    )
    .await
}

async fn update_cart_line(
    State(platform): State<Arc<Platform>>,
    user: Authenticated,
    metrics: MetricSet,
    Path(variant): Path<String>,
    Json(body): Json<SetLine>,
) -> ApiResult<axum::Json<cart::Cart>> {
    change_cart(
        &platform,
        &metrics,
        &user.user.id,
        &variant,
        "update",
        |_| body.quantity,
    )
    .await
}

async fn remove_cart_line(
    State(platform): State<Arc<Platform>>,
    user: Authenticated,
    metrics: MetricSet,
    Path(variant): Path<String>,
) -> ApiResult<axum::Json<cart::Cart>> {
    change_cart(
        &platform,
        &metrics,
        &user.user.id,
        &variant,
        "remove",
        |_| 0,
    )
    .await
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct CheckoutBody {
    #[serde(default)]
    note: Option<String>,
}

fn replay(recorded: Recorded) -> Response {
    let status = StatusCode::from_u16(recorded.status).unwrap_or(StatusCode::OK);
    let mut response = (status, axum::Json(recorded.body)).into_response();
    response
        .headers_mut()
        .insert("idempotency-replayed", HeaderValue::from_static("true"));
    response
}

async fn checkout(
    State(platform): State<Arc<Platform>>,
    user: Authenticated,
    metrics: MetricSet,
    headers: HeaderMap,
    Json(body): Json<CheckoutBody>,
) -> ApiResult<Response> {
    let key = idempotency::parse_key(headers.get("idempotency-key").and_then(|v| v.to_str().ok()))?;
    if body.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        return Err(ApiError::Validation {
            detail: "the note is longer than 500 characters".into(),
            errors: vec![lumi_shared::error::FieldError {
                field: "note".into(),
                message: "at most 500 characters".into(),
            }],
        });
    }
    let hash = idempotency::hash_request(&[
        b"checkout",
        &serde_json::to_vec(&body).map_err(ApiError::internal)?,
    ]);
    let now = platform.clock.now_us();
    let scope = format!("checkout:{}", user.user.id);
    let claim =
        match idempotency::begin(&platform.db, table(&platform), &scope, &key, hash, now).await? {
            Begin::Replay(recorded) => return Ok(replay(recorded)),
            Begin::Fresh(claim) => claim,
        };
    let settings = platform.settings.get().await;
    let provider = if settings.feature_flags.order_payments {
        "lumipay"
    } else {
        "manual"
    };
    let request = CheckoutRequest {
        user: &user.user.id,
        note: body.note,
        provider,
        now_us: now,
    };
    match orders::checkout(&platform.db, table(&platform), request, &claim).await {
        Ok(order) => {
            metrics.count(
                ORDER_CREATED_TOTAL,
                &[
                    ("function", &platform.config.function_name),
                    ("provider", provider),
                ],
                1.0,
            );
            Ok((StatusCode::CREATED, axum::Json(OrderView::from(&order))).into_response())
        }
        Err(error) => {
            claim.release(&platform.db, table(&platform)).await;
            Err(error)
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i32>,
    cursor: Option<String>,
}

async fn list_orders(
    State(platform): State<Arc<Platform>>,
    user: Authenticated,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 100"));
    }
    let (orders, next) = orders::list_own(
        &platform.db,
        table(&platform),
        &user.user.id,
        limit,
        query.cursor.as_deref(),
    )
    .await?;
    Ok(axum::Json(json!({ "orders": orders, "next_cursor": next })))
}

async fn get_order(
    State(platform): State<Arc<Platform>>,
    user: Authenticated,
    Path(reference): Path<String>,
) -> ApiResult<axum::Json<OrderView>> {
    let order = orders::get_own(&platform.db, table(&platform), &user.user.id, &reference).await?;
    Ok(axum::Json(OrderView::from(&order)))
}

async fn track_order(
    State(platform): State<Arc<Platform>>,
    user: Authenticated,
    Path(reference): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let order = orders::get_own(&platform.db, table(&platform), &user.user.id, &reference).await?;
    Ok(axum::Json(json!({
        "reference": order.reference,
        "status": order.status,
        "timeline": order.timeline,
    })))
}

async fn cancel_order(
    State(platform): State<Arc<Platform>>,
    user: Authenticated,
    metrics: MetricSet,
    headers: HeaderMap,
    Path(reference): Path<String>,
) -> ApiResult<Response> {
    let key = idempotency::parse_key(headers.get("idempotency-key").and_then(|v| v.to_str().ok()))?;
    let db = &platform.db;
    let table = table(&platform);
    let mut order = orders::get_own(db, table, &user.user.id, &reference).await?;
    let hash = idempotency::hash_request(&[b"cancel", reference.as_bytes()]);
    let now = platform.clock.now_us();
    let scope = format!("cancel:{}", user.user.id);
    let claim = match idempotency::begin(db, table, &scope, &key, hash, now).await? {
        Begin::Replay(recorded) => return Ok(replay(recorded)),
        Begin::Fresh(claim) => claim,
    };
    let respond = |order: &orders::Order| Recorded {
        status: 200,
        body: serde_json::to_value(OrderView::from(order)).unwrap_or_default(),
    };
    for _ in 0..5 {
        if order.status == OrderStatus::Cancelled {
            // Already cancelled (by an earlier call): the same answer, and no second restock.
            let recorded = respond(&order);
            claim.complete(db, table, &recorded).await?;
            return Ok(replay(recorded));
        }
        if !order.status.customer_cancellable() {
            claim.release(db, table).await;
            return Err(ApiError::Conflict(
                format!(
                    "an order that is {} can no longer be cancelled",
                    order.status.as_str()
                )
                .into(),
            ));
        }
        let actor = format!("user:{}", user.user.id);
        let from = order.status;
        let change = orders::Change {
            to: OrderStatus::Cancelled,
            actor: &actor,
            note: "cancelled by the customer",
            now_us: now,
            extra: Vec::new(),
        };
        match orders::transition(db, table, &order, change, Some((&claim, &respond))).await {
            Ok(Ok(cancelled)) => {
                metrics.count(
                    ORDER_STATUS_TRANSITIONS_TOTAL,
                    &[
                        ("function", &platform.config.function_name),
                        ("from", from.as_str()),
                        ("to", "cancelled"),
                    ],
                    1.0,
                );
                return Ok(axum::Json(OrderView::from(&cancelled)).into_response());
            }
            Ok(Err(_)) => order = orders::get_own(db, table, &user.user.id, &reference).await?,
            Err(error) => {
                claim.release(db, table).await;
                return Err(error);
            }
        }
    }
    claim.release(db, table).await;
    Err(ApiError::Conflict("the order kept changing; retry".into()))
}

async fn payment_webhook(
    State(state): State<ShopState>,
    metrics: MetricSet,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let platform = &state.platform;
    if !PAYMENT_PROVIDERS.contains(&provider.as_str()) {
        return Err(ApiError::not_found(format!(
            "no payment provider {provider}"
        )));
    }
    let secrets = platform
        .secrets
        .get()
        .await
        .map_err(|e| ApiError::unavailable("the key store is unavailable; retry shortly", e))?;
    let secret = secrets
        .payment_webhook_secrets
        .get(&provider)
        .ok_or_else(|| {
            ApiError::unavailable(
                "this provider's webhook key is not configured",
                format!("no key for {provider}"),
            )
        })?;
    let now = platform.clock.now_us();
    let signature = headers.get("lumi-signature").and_then(|v| v.to_str().ok());
    use secrecy::ExposeSecret as _;
    payments::verify(
        secret.expose_secret().as_bytes(),
        signature,
        &body,
        now / 1_000_000,
    )
    .map_err(|e| ApiError::Unauthorized(e.to_string().into()))?;
    let webhook: Webhook = serde_json::from_slice(&body).map_err(|e| ApiError::Validation {
        detail: format!("the event is not understood: {e}").into(),
        errors: Vec::new(),
    })?;
    let db = &platform.db;
    let table = table(platform);
    let recipient = async |user_id: &str| -> Result<String, ApiError> {
        let user = users::get(db, table, user_id).await?;
        Ok(user.map(|u| u.email).unwrap_or_default())
    };
    let applied = payments::apply(db, table, &provider, &webhook, recipient, now).await?;
    let (payment_status, order) = match applied {
        Applied::Duplicate => {
            return Ok(axum::Json(json!({ "received": true, "duplicate": true })));
        }
        Applied::Moved {
            payment_status,
            order,
        } => (payment_status, order),
    };
    if let Some(order) = &order {
        let from = order
            .timeline
            .last()
            .and_then(|e| e.from)
            .map_or("unknown", OrderStatus::as_str);
        metrics.count(
            ORDER_STATUS_TRANSITIONS_TOTAL,
            &[
                ("function", &platform.config.function_name),
                ("from", from),
                ("to", order.status.as_str()),
            ],
            1.0,
        );
        if order.status == OrderStatus::PaymentFailed {
            state.outbox.flush(db, table).await?;
        }
    }
    Ok(axum::Json(json!({
        "received": true,
        "payment_status": payment_status,
        "order_status": order.map(|o| o.status),
    })))
}
