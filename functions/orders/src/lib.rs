//! The orders function: the catalog, the cart and its stock reservations, checkout, the
//! customer's orders, cancel and tracking, and the payment provider's webhook. The rules live in
//! `lumi_commerce`; these handlers parse, call one use case, count the runbooks' cart and
//! checkout metrics (order transitions are counted by `Shop::mutate`, where every change is
//! committed) and shape the answers. Domain errors become problem+json through `DomainError`.
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
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::{get, patch, post},
};
use lumi_commerce::{
    Actor, CART_OPERATIONS_TOTAL, CommerceError, ORDER_CREATED_TOTAL, Shop, cart, catalog, content,
    orders::{self, OrderFilter, OrderView, Tracking},
    payments::{Applied, WebhookError, WebhookOutcome},
};
use lumi_shared::{
    ApiError, ApiResult, Platform,
    auth::{Authenticated, sessions::RequestMeta},
    http::{AppState, Json, extract::idempotent},
    idempotency::{Done, Guard, IdempotencyKey, hash_request},
    secrets::PAYMENT_PROVIDERS,
    telemetry::metrics::MetricSet,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

type Shared = AppState<Shop>;

pub fn routes(platform: Arc<Platform>) -> Router {
    let state = AppState::new(platform.clone(), Shop::new(platform));
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

fn function(shop: &Shop) -> &str {
    &shop.platform.config.function_name
}

fn customer(user: &Authenticated, meta: RequestMeta) -> Actor {
    Actor::new(format!("user:{}", user.user.id)).with_request(meta)
}

async fn list_products(State(shop): State<Shared>) -> ApiResult<axum::Json<serde_json::Value>> {
    let products = catalog::list(shop.db(), shop.table()).await?;
    Ok(axum::Json(json!({ "products": products })))
}

async fn get_product(
    State(shop): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<catalog::Product>> {
    catalog::get(shop.db(), shop.table(), &id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("no product {id}")))
}

/// The storefront's read of a content block.
async fn get_content(
    State(shop): State<Shared>,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let block = if content::valid_key(&key) {
        content::get(shop.db(), shop.table(), &key).await?
    } else {
        None
    }
    .ok_or_else(|| ApiError::not_found(format!("no site content {key}")))?;
    let content: serde_json::Value =
        serde_json::from_str(&block.content).unwrap_or(serde_json::Value::String(block.content));
    Ok(axum::Json(
        json!({ "key": block.key, "content": content, "updated_at": block.updated_at }),
    ))
}

async fn get_cart(
    State(shop): State<Shared>,
    user: Authenticated,
) -> ApiResult<axum::Json<cart::Cart>> {
    Ok(axum::Json(shop.cart(&user.user.id).await?))
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
    shop: &Shop,
    metrics: &MetricSet,
    user: &str,
    sku: &str,
    operation: &str,
    target: impl Fn(i64) -> i64,
) -> ApiResult<axum::Json<cart::Cart>> {
    let outcome = shop.set_cart_line(user, sku, target).await;
    let label = match &outcome {
        Ok(_) => "ok",
        Err(CommerceError::OutOfStock { .. }) => "out_of_stock",
        Err(_) => "rejected",
    };
    metrics.count(
        CART_OPERATIONS_TOTAL,
        &[
            ("function", function(shop)),
            ("operation", operation),
            ("outcome", label),
        ],
        1.0,
    );
    Ok(axum::Json(outcome?))
}

async fn add_to_cart(
    State(shop): State<Shared>,
    user: Authenticated,
    metrics: MetricSet,
    Json(body): Json<AddLine>,
) -> ApiResult<axum::Json<cart::Cart>> {
    if !(1..=i64::from(catalog::MAX_QUANTITY)).contains(&body.quantity) {
        return Err(ApiError::Validation {
            detail: format!("quantity must be between 1 and {}", catalog::MAX_QUANTITY).into(),
            errors: vec![lumi_shared::error::FieldError {
                field: "quantity".into(),
                message: format!("between 1 and {}", catalog::MAX_QUANTITY),
            }],
        });
    }
    if !catalog::valid_sku(&body.variant) {
        return Err(ApiError::Validation {
            detail: format!("no variant {}", body.variant).into(),
            errors: vec![lumi_shared::error::FieldError {
                field: "variant".into(),
                message: "unknown variant".into(),
            }],
        });
    }
    change_cart(
        &shop,
        &metrics,
        &user.user.id,
        &body.variant,
        "add",
        |held| held + body.quantity,
    )
    .await
}

async fn update_cart_line(
    State(shop): State<Shared>,
    user: Authenticated,
    metrics: MetricSet,
    Path(variant): Path<String>,
    Json(body): Json<SetLine>,
) -> ApiResult<axum::Json<cart::Cart>> {
    change_cart(&shop, &metrics, &user.user.id, &variant, "update", |_| {
        body.quantity
    })
    .await
}

async fn remove_cart_line(
    State(shop): State<Shared>,
    user: Authenticated,
    metrics: MetricSet,
    Path(variant): Path<String>,
) -> ApiResult<axum::Json<cart::Cart>> {
    change_cart(&shop, &metrics, &user.user.id, &variant, "remove", |_| 0).await
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct CheckoutBody {
    #[serde(default)]
    note: Option<String>,
}

async fn checkout(
    State(shop): State<Shared>,
    user: Authenticated,
    meta: RequestMeta,
    metrics: MetricSet,
    key: IdempotencyKey,
    Json(body): Json<CheckoutBody>,
) -> ApiResult<Response> {
    if body.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        return Err(ApiError::Validation {
            detail: "the note is longer than 500 characters".into(),
            errors: vec![lumi_shared::error::FieldError {
                field: "note".into(),
                message: "at most 500 characters".into(),
            }],
        });
    }
    let hash = hash_request(&[
        b"checkout",
        &serde_json::to_vec(&body).map_err(ApiError::internal)?,
    ]);
    let guard = Guard::new(&format!("checkout:{}", user.user.id), &key, hash);
    let actor = customer(&user, meta);
    let done = shop
        .checkout(&user.user.id, &user.user.email, body.note, &actor, &guard)
        .await?;
    let done = match done {
        Done::Fresh(placed) => {
            metrics.count(
                ORDER_CREATED_TOTAL,
                &[
                    ("function", function(&shop)),
                    ("provider", &placed.order.payment.provider),
                ],
                1.0,
            );
            Done::Fresh(serde_json::to_value(placed).map_err(ApiError::internal)?)
        }
        // The payment's client secret is never stored: a replay asks the provider again.
        Done::Replay(mut body) => {
            if let Some(reference) = body["reference"].as_str()
                && let Some(action) = shop.payment_action(&user.user.id, reference).await?
            {
                body["action"] = serde_json::to_value(action).map_err(ApiError::internal)?;
            }
            Done::Replay(body)
        }
    };
    Ok(idempotent(StatusCode::CREATED, done))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i32>,
    cursor: Option<String>,
}

async fn list_orders(
    State(shop): State<Shared>,
    user: Authenticated,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 100"));
    }
    let filter = OrderFilter {
        customer: Some(user.user.id.clone()),
        ..OrderFilter::default()
    };
    let (orders, next) = shop
        .list_orders(&filter, limit, query.cursor.as_deref())
        .await?;
    let orders: Vec<OrderView> = orders.iter().map(OrderView::from).collect();
    Ok(axum::Json(json!({ "orders": orders, "next_cursor": next })))
}

async fn get_order(
    State(shop): State<Shared>,
    user: Authenticated,
    Path(reference): Path<String>,
) -> ApiResult<axum::Json<OrderView>> {
    let order = shop.own_order(&user.user.id, &reference).await?;
    Ok(axum::Json(OrderView::of(&order)))
}

async fn track_order(
    State(shop): State<Shared>,
    user: Authenticated,
    Path(reference): Path<String>,
) -> ApiResult<axum::Json<Tracking>> {
    let order = shop.own_order(&user.user.id, &reference).await?;
    Ok(axum::Json(orders::tracking(&order)))
}

async fn cancel_order(
    State(shop): State<Shared>,
    user: Authenticated,
    meta: RequestMeta,
    key: IdempotencyKey,
    Path(reference): Path<String>,
) -> ApiResult<Response> {
    let guard = Guard::new(
        &format!("cancel:{}", user.user.id),
        &key,
        hash_request(&[b"cancel", reference.as_bytes()]),
    );
    let actor = customer(&user, meta);
    let done = shop
        .cancel_by_customer(&user.user.id, &reference, &actor, &guard)
        .await?;
    let done = done.map(|mutated| OrderView::of(mutated.order()));
    Ok(idempotent(StatusCode::OK, done))
}

/// `POST /api/v1/payments/webhooks/stripe`: Stripe's signed events (see
/// `lumi_commerce::payments`). A bad signature is 400/401 and changes nothing; everything
/// verified is acknowledged with 200, applied or not, so Stripe never retries it forever.
async fn payment_webhook(
    State(shop): State<Shared>,
    meta: RequestMeta,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult<axum::Json<serde_json::Value>> {
    if !PAYMENT_PROVIDERS.contains(&provider.as_str()) {
        return Err(ApiError::not_found(format!(
            "no payment provider {provider}"
        )));
    }
    let secrets = shop
        .platform
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
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let actor = Actor::new(format!("provider:{provider}")).with_request(meta);
    use secrecy::ExposeSecret as _;
    let outcome = shop
        .apply_stripe_webhook(
            secret.expose_secret().as_bytes(),
            signature,
            &body,
            shop.now_us() / 1_000_000,
            &actor,
        )
        .await?;
    // Stripe calls often: each verified event also asks again (a few) refunds Stripe could not
    // be asked before.
    if outcome.is_ok()
        && let Err(error) = shop.retry_provider_refunds(3, &actor).await
    {
        tracing::warn!(%error, "waiting refunds not retried");
    }
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error @ (WebhookError::Malformed | WebhookError::Event(_))) => {
            return Err(ApiError::bad_request(error.to_string()));
        }
        Err(error @ WebhookError::Signature(_)) => {
            return Err(ApiError::Unauthorized(error.to_string().into()));
        }
    };
    Ok(axum::Json(match outcome {
        WebhookOutcome::IgnoredType(kind) => {
            tracing::info!(event_type = %kind, "payment event type not acted on");
            json!({ "received": true, "applied": false, "outcome": "ignored_type" })
        }
        WebhookOutcome::Unusable(why) => {
            tracing::warn!(%why, "payment event without what Lumi needs; acknowledged");
            json!({ "received": true, "applied": false, "outcome": "ignored", "detail": why })
        }
        WebhookOutcome::NotOurs(why) => {
            tracing::info!(%why, "payment event about no order of this shop");
            json!({ "received": true, "applied": false, "outcome": "not_ours" })
        }
        WebhookOutcome::Applied(applied) => {
            let mut outcomes = Vec::new();
            for one in applied {
                outcomes.push(match one {
                    Applied::Changed(change) => {
                        json!({
                            "applied": true,
                            "outcome": change.action,
                            "order_reference": change.after.reference,
                            "order_status": change.after.status,
                            "financial_status": change.after.financial_status(),
                            "payment_status": change.after.payment.status,
                        })
                    }
                    Applied::Duplicate => json!({ "applied": false, "outcome": "duplicate" }),
                    Applied::Ignored(why) => {
                        tracing::info!(%why, "payment event acknowledged without effect");
                        json!({ "applied": false, "outcome": "ignored", "detail": why })
                    }
                });
            }
            let applied = outcomes.iter().any(|o| o["applied"] == true);
            let first = outcomes.first().cloned().unwrap_or_default();
            json!({
                "received": true,
                "applied": applied,
                "outcome": first["outcome"],
                "events": outcomes,
            })
        }
    }))
}
