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
use lumi_commerce::{
    catalog::Product,
    model::{FinancialStatus, OrderStatus, PaymentStatus},
};
use lumi_shared::openapi::{
    BadGateway, BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable,
    TooManyRequests, Unauthorized, UnsupportedMediaType, ValidationFailed,
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
use utoipa::{IntoParams, OpenApi, ToSchema};

/// This function's operations (`lumi_infra::openapi` merges every function's).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(
        paths(
            list_products,
            get_product,
            get_content,
            get_cart,
            add_to_cart,
            update_cart_line,
            remove_cart_line,
            checkout,
            list_orders,
            get_order,
            cancel_order,
            track_order,
            payment_webhook,
        ),
        components(schemas(lumi_commerce::orders::RefundView))
    )]
    struct Doc;
    Doc::openapi()
}

/// The catalog.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProductList {
    /// Every active product with its active variants.
    pub products: Vec<Product>,
}

/// A storefront content block.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SiteContent {
    #[schema(example = "home.hero")]
    pub key: String,
    /// What the admin stored: any JSON (a string when it was stored as text).
    pub content: serde_json::Value,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// One page of the caller's orders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// The `cursor` of the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// The answer to every verified webhook event (Stripe retries nothing answered 2xx).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookAck {
    #[schema(example = true)]
    pub received: bool,
    /// Whether the event changed an order.
    pub applied: bool,
    /// `ignored_type`, `ignored`, `not_ours`, or the first event's outcome (`duplicate`, or the
    /// change's action, e.g. `payment.capture`).
    pub outcome: Option<String>,
    /// Why an event was acknowledged without effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<String>,
    /// One entry per payment event the provider's event meant.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub events: Option<Vec<WebhookEvent>>,
}

/// What one payment event did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookEvent {
    pub applied: bool,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub order_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub order_status: Option<OrderStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub financial_status: Option<FinancialStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub payment_status: Option<PaymentStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<String>,
}

impl WebhookEvent {
    fn outcome(applied: bool, outcome: &str, detail: Option<String>) -> Self {
        Self {
            applied,
            outcome: outcome.to_owned(),
            order_reference: None,
            order_status: None,
            financial_status: None,
            payment_status: None,
            detail,
        }
    }
}

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

/// Every active product with its variants
#[utoipa::path(
    get,
    path = "/api/v1/products",
    tag = "orders",
    operation_id = "listProducts",
    responses(
        (status = 200, description = "The catalog.", body = ProductList),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn list_products(State(shop): State<Shared>) -> ApiResult<axum::Json<ProductList>> {
    let products = catalog::list(shop.db(), shop.table()).await?;
    Ok(axum::Json(ProductList { products }))
}

/// One product with its variants
#[utoipa::path(
    get,
    path = "/api/v1/products/{id}",
    tag = "orders",
    operation_id = "getProduct",
    params(("id" = String, Path, description = "The product id.")),
    responses(
        (status = 200, description = "The product.", body = Product),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn get_product(
    State(shop): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<catalog::Product>> {
    catalog::get(shop.db(), shop.table(), &id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("no product {id}")))
}

/// A storefront content block (public)
#[utoipa::path(
    get,
    path = "/api/v1/site-content/{key}",
    tag = "orders",
    operation_id = "getSiteContent",
    params(("key" = String, Path, description = "The block's key: 1 to 64 lower-case letters, digits, `-` or `_`.", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The block.", body = SiteContent),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn get_content(
    State(shop): State<Shared>,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<SiteContent>> {
    let block = if content::valid_key(&key) {
        content::get(shop.db(), shop.table(), &key).await?
    } else {
        None
    }
    .ok_or_else(|| ApiError::not_found(format!("no site content {key}")))?;
    let content: serde_json::Value =
        serde_json::from_str(&block.content).unwrap_or(serde_json::Value::String(block.content));
    Ok(axum::Json(SiteContent {
        key: block.key,
        content,
        updated_at: block.updated_at,
    }))
}

/// The caller's cart
#[utoipa::path(
    get,
    path = "/api/v1/cart",
    tag = "orders",
    operation_id = "getCart",
    security(("accessToken" = [])),
    responses(
        (status = 200, description = "The cart; each line reserves its units until `reserved_until`.", body = cart::Cart),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn get_cart(
    State(shop): State<Shared>,
    user: Authenticated,
) -> ApiResult<axum::Json<cart::Cart>> {
    Ok(axum::Json(shop.cart(&user.user.id).await?))
}

/// Units of a variant to add to the cart.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct AddLine {
    /// The variant's SKU.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "TSHIRT-M")]
    pub variant: String,
    /// Units to add to what the line holds (the line holds at most 20).
    #[schema(minimum = 1, maximum = 20, example = 2)]
    pub quantity: i64,
}

/// The quantity a cart line should hold.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct SetLine {
    /// 0 removes the line.
    #[schema(minimum = 0, maximum = 20, example = 3)]
    pub quantity: i64,
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

/// Reserve units of a variant (adds to the line's quantity)
#[utoipa::path(
    post,
    path = "/api/v1/cart/items",
    tag = "orders",
    operation_id = "addToCart",
    security(("accessToken" = [])),
    request_body(content = AddLine, content_type = "application/json", example = json!({ "variant": "TSHIRT-M", "quantity": 2 })),
    responses(
        (status = 200, description = "The cart; each line reserves its units until `reserved_until`.", body = cart::Cart),
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

/// Set a cart line's quantity (0 removes it)
#[utoipa::path(
    patch,
    path = "/api/v1/cart/items/{variant}",
    tag = "orders",
    operation_id = "setCartQuantity",
    security(("accessToken" = [])),
    params(("variant" = String, Path, description = "The variant's SKU.")),
    request_body(content = SetLine, content_type = "application/json", example = json!({ "quantity": 3 })),
    responses(
        (status = 200, description = "The cart; each line reserves its units until `reserved_until`.", body = cart::Cart),
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

/// Remove a cart line (its units go back)
#[utoipa::path(
    delete,
    path = "/api/v1/cart/items/{variant}",
    tag = "orders",
    operation_id = "removeFromCart",
    security(("accessToken" = [])),
    params(("variant" = String, Path, description = "The variant's SKU.")),
    responses(
        (status = 200, description = "The cart; each line reserves its units until `reserved_until`.", body = cart::Cart),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn remove_cart_line(
    State(shop): State<Shared>,
    user: Authenticated,
    metrics: MetricSet,
    Path(variant): Path<String>,
) -> ApiResult<axum::Json<cart::Cart>> {
    change_cart(&shop, &metrics, &user.user.id, &variant, "remove", |_| 0).await
}

/// A checkout: the cart, with an optional note.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct CheckoutBody {
    #[serde(default)]
    #[schema(max_length = 500, example = "leave it at the door")]
    pub note: Option<String>,
}

/// Turn the cart into an order (one transaction); Idempotency-Key required
///
/// For an online payment the answer carries the payment `action` (Stripe.js's client secret;
/// asked of the provider again for a replay).
#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "orders",
    operation_id = "checkout",
    security(("accessToken" = [])),
    params(
        ("Idempotency-Key" = String, Header, description = "One key per intended operation (1 to 128 letters, digits, `-`, `_`, `.` or `:`); a retry with the same key and body answers the first result.", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:-]{1,128}$"),
    ),
    request_body(content = CheckoutBody, content_type = "application/json", example = json!({ "note": "leave it at the door" })),
    responses(
        (status = 201, description = "The placed order (`Idempotency-Replayed: true` on a replay).", body = lumi_commerce::orders::Placed, headers(("Idempotency-Replayed" = String, description = "`true` when this answers an earlier request with the same key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 502, response = BadGateway),
        (status = 503, response = ServiceUnavailable),
    ),
)]
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

/// A page of a listing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Orders per page.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i32>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 2048)]
    cursor: Option<String>,
}

/// The caller's orders, newest first
#[utoipa::path(
    get,
    path = "/api/v1/orders",
    tag = "orders",
    operation_id = "listOrders",
    security(("accessToken" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "One page.", body = OrderPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn list_orders(
    State(shop): State<Shared>,
    user: Authenticated,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<OrderPage>> {
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
    Ok(axum::Json(OrderPage {
        orders,
        next_cursor: next,
    }))
}

/// One of the caller's orders
#[utoipa::path(
    get,
    path = "/api/v1/orders/{reference}",
    tag = "orders",
    operation_id = "getOrder",
    security(("accessToken" = [])),
    params(("reference" = String, Path, description = "The order reference (`LUMI-7K3F-9Q2M`).", pattern = "^LUMI-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")),
    responses(
        (status = 200, description = "The order.", body = OrderView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn get_order(
    State(shop): State<Shared>,
    user: Authenticated,
    Path(reference): Path<String>,
) -> ApiResult<axum::Json<OrderView>> {
    let order = shop.own_order(&user.user.id, &reference).await?;
    Ok(axum::Json(OrderView::of(&order)))
}

/// The order's facets and timeline (the runbook's incident payload)
#[utoipa::path(
    get,
    path = "/api/v1/orders/{reference}/track",
    tag = "orders",
    operation_id = "trackOrder",
    security(("accessToken" = [])),
    params(("reference" = String, Path, description = "The order reference (`LUMI-7K3F-9Q2M`).", pattern = "^LUMI-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")),
    responses(
        (status = 200, description = "The facets and the timeline, each actor named by its role.", body = Tracking),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn track_order(
    State(shop): State<Shared>,
    user: Authenticated,
    Path(reference): Path<String>,
) -> ApiResult<axum::Json<Tracking>> {
    let order = shop.own_order(&user.user.id, &reference).await?;
    Ok(axum::Json(orders::tracking(&order)))
}

/// Cancel an open order that has shipped nothing; its units come back once, captured money is refunded
#[utoipa::path(
    post,
    path = "/api/v1/orders/{reference}/cancel",
    tag = "orders",
    operation_id = "cancelOrder",
    security(("accessToken" = [])),
    params(
        ("reference" = String, Path, description = "The order reference (`LUMI-7K3F-9Q2M`).", pattern = "^LUMI-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$"),
        ("Idempotency-Key" = String, Header, description = "One key per intended operation (1 to 128 letters, digits, `-`, `_`, `.` or `:`); a retry with the same key answers the first result.", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:-]{1,128}$"),
    ),
    responses(
        (status = 200, description = "The cancelled order (`Idempotency-Replayed: true` on a replay).", body = OrderView, headers(("Idempotency-Replayed" = String, description = "`true` when this answers an earlier request with the same key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
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

/// Stripe's signed webhook events, applied to the payment and its order once
///
/// `POST /api/v1/payments/webhooks/stripe` (see `lumi_commerce::payments`). A malformed event
/// is 400 and a bad signature 401, changing nothing; everything verified is acknowledged with
/// 200, applied or not, so Stripe never retries it forever.
#[utoipa::path(
    post,
    path = "/api/v1/payments/webhooks/{provider}",
    tag = "orders",
    operation_id = "paymentWebhook",
    params(
        ("provider" = String, Path, description = "The payment provider.", pattern = "^stripe$"),
        ("Stripe-Signature" = String, Header, description = "`t=<unix seconds>,v1=<HMAC-SHA256 hex>` (other schemes ignored), verified against the configured signing secret (300 s tolerance): malformed is 400, not verified 401.",
            pattern = "^t=(0|[1-9][0-9]{0,18})(,v[0-9]+=[0-9a-f]+)*,v1=[0-9a-f]{64}(,v[0-9]+=[0-9a-f]+)*$"),
    ),
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "The provider's event, verified byte for byte against the signature."),
    responses(
        (status = 200, description = "Verified and acknowledged.", body = WebhookAck,
            example = json!({ "received": true, "applied": true, "outcome": "payment.capture",
                "events": [{ "applied": true, "outcome": "payment.capture", "order_reference": "LUMI-7K3F-9Q2M",
                    "order_status": "open", "financial_status": "paid", "payment_status": "captured" }] })),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
async fn payment_webhook(
    State(shop): State<Shared>,
    meta: RequestMeta,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult<axum::Json<WebhookAck>> {
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
    let ack = |outcome: &str, detail: Option<String>| WebhookAck {
        received: true,
        applied: false,
        outcome: Some(outcome.to_owned()),
        detail,
        events: None,
    };
    Ok(axum::Json(match outcome {
        WebhookOutcome::IgnoredType(kind) => {
            tracing::info!(event_type = %kind, "payment event type not acted on");
            ack("ignored_type", None)
        }
        WebhookOutcome::Unusable(why) => {
            tracing::warn!(%why, "payment event without what Lumi needs; acknowledged");
            ack("ignored", Some(why))
        }
        WebhookOutcome::NotOurs(why) => {
            tracing::info!(%why, "payment event about no order of this shop");
            ack("not_ours", None)
        }
        WebhookOutcome::Applied(applied) => {
            let mut outcomes = Vec::new();
            for one in applied {
                outcomes.push(match one {
                    Applied::Changed(change) => WebhookEvent {
                        applied: true,
                        outcome: change.action.clone(),
                        order_reference: Some(change.after.reference.clone()),
                        order_status: Some(change.after.status),
                        financial_status: Some(change.after.financial_status()),
                        payment_status: Some(change.after.payment.status),
                        detail: None,
                    },
                    Applied::Duplicate => WebhookEvent::outcome(false, "duplicate", None),
                    Applied::Ignored(why) => {
                        tracing::info!(%why, "payment event acknowledged without effect");
                        WebhookEvent::outcome(false, "ignored", Some(why))
                    }
                });
            }
            WebhookAck {
                received: true,
                applied: outcomes.iter().any(|o| o.applied),
                outcome: outcomes.first().map(|o| o.outcome.clone()),
                detail: None,
                events: Some(outcomes),
            }
        }
    }))
}
