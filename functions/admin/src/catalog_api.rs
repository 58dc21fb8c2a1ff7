//! Catalog and inventory for the admin: create products, edit or retire them, adjust stock with a
//! reason, a variant's ledger, and the runbook's inventory-mismatch procedure (report, then
//! rebalance), site content. Every mutation is audited by its use case.

use axum::extract::{Path, Query, State};
use lumi_commerce::admin::{LedgerView, Mismatch, ProductView, Rebalanced};
use lumi_commerce::{
    admin::{NewProductRequest, ProductPatch},
    content,
};
use lumi_shared::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable,
    TooManyRequests, Unauthorized, UnsupportedMediaType, ValidationFailed,
};
use lumi_shared::{
    ApiError, ApiResult,
    auth::{AdminUser, sessions::RequestMeta},
    http::Json,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// A variant's counters after an adjustment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StockLevels {
    pub sku: String,
    pub stock: i64,
    pub available: i64,
}

/// One page of the inventory-mismatch report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MismatchPage {
    pub mismatches: Vec<Mismatch>,
    /// The `cursor` of the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A content block as the admin reads it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AdminSiteContent {
    pub key: String,
    /// Any JSON (a string when it was stored as text).
    pub content: Value,
    pub updated_at: String,
    /// `admin:<id>`.
    pub updated_by: String,
}

/// A content block written.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContentWritten {
    pub key: String,
    pub content: Value,
    pub updated_at: String,
}

use crate::{Shared, actor};

/// Create a product with its variants (each variant's stock is its first ledger movement), audited
#[utoipa::path(
    post,
    path = "/api/v1/admin/products",
    tag = "admin",
    operation_id = "adminCreateProduct",
    security(("accessToken" = [])),
    request_body(content = NewProductRequest, content_type = "application/json",
        example = json!({ "id": "tshirt", "name": "T-shirt", "description": "Organic cotton.",
            "variants": [{ "sku": "TSHIRT-M", "name": "T-shirt, M", "price_minor": 1290, "currency": "EUR", "stock": 25 }] })),
    responses(
        (status = 201, description = "The product.", body = ProductView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn create_product(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Json(body): Json<NewProductRequest>,
) -> ApiResult<(axum::http::StatusCode, axum::Json<ProductView>)> {
    let created = shop.create_product(&body, &actor(&admin, meta)).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(created)))
}

/// Edit a product; `active` false retires it and its variants (no longer sold, orders keep them), true brings them back
#[utoipa::path(
    patch,
    path = "/api/v1/admin/products/{id}",
    tag = "admin",
    operation_id = "adminUpdateProduct",
    security(("accessToken" = [])),
    params(("id" = String, Path, description = "The product id.")),
    request_body(content = ProductPatch, content_type = "application/json", example = json!({ "active": false })),
    responses(
        (status = 200, description = "The product.", body = ProductView),
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
pub async fn update_product(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(patch): Json<ProductPatch>,
) -> ApiResult<axum::Json<ProductView>> {
    let product = shop
        .update_product(&id, &patch, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(product))
}

/// A whole number of units from -1000000 to 1000000, not 0.
fn nonzero_delta() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    let range = |minimum: i64, maximum: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(minimum))
            .maximum(Some(maximum))
    };
    OneOfBuilder::new()
        .item(range(-1_000_000, -1))
        .item(range(1, 1_000_000))
        .build()
        .into()
}

/// A stock adjustment.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct StockAdjustment {
    /// Units to add (a delivery) or remove (shrinkage, damage): not 0, at most 1000000 either
    /// way.
    #[schema(schema_with = nonzero_delta, example = 12)]
    pub delta: i64,
    /// 1 to 500 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"\S",
        example = "delivery 2024-118"
    )]
    pub reason: String,
}

/// Add (a delivery) or remove (shrinkage) units, with a ledger movement and an audit event in the same transaction
#[utoipa::path(
    post,
    path = "/api/v1/admin/variants/{sku}/stock",
    tag = "admin",
    operation_id = "adminAdjustStock",
    security(("accessToken" = [])),
    params(("sku" = String, Path, description = "The variant's SKU.")),
    request_body(content = StockAdjustment, content_type = "application/json", example = json!({ "delta": 12, "reason": "delivery 2024-118" })),
    responses(
        (status = 200, description = "The counters after it.", body = StockLevels),
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
pub async fn adjust_stock(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(sku): Path<String>,
    Json(body): Json<StockAdjustment>,
) -> ApiResult<axum::Json<StockLevels>> {
    let after = shop
        .adjust_stock(&sku, body.delta, &body.reason, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(StockLevels {
        sku,
        stock: after.stock,
        available: after.available,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Per page (1 to 200; the default depends on the listing).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn limit(query: &PageQuery, default: i32) -> ApiResult<i32> {
    crate::page_limit(query.limit, default)
}

/// A variant's counters and its stock movements, oldest first (`stock` is their sum)
///
/// `limit` defaults to 100.
#[utoipa::path(
    get,
    path = "/api/v1/admin/variants/{sku}/ledger",
    tag = "admin",
    operation_id = "adminVariantLedger",
    security(("accessToken" = [])),
    params(("sku" = String, Path, description = "The variant's SKU."), PageQuery),
    responses(
        (status = 200, description = "The counters and one page of movements.", body = LedgerView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn ledger(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Path(sku): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<axum::Json<LedgerView>> {
    let view = shop
        .ledger(&sku, limit(&query, 100)?, query.cursor.as_deref())
        .await?;
    Ok(axum::Json(view))
}

/// One page of variants whose `available` is not stock minus cart reservations, or whose stock is not the sum of its ledger
///
/// One page of variants (`limit`, default 25) checked, in about 40 queries at most.
#[utoipa::path(
    get,
    path = "/api/v1/admin/inventory/mismatches",
    tag = "admin",
    operation_id = "adminInventoryMismatches",
    security(("accessToken" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "One page.", body = MismatchPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn list_mismatches(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Query(query): Query<PageQuery>,
) -> ApiResult<axum::Json<MismatchPage>> {
    let (mismatches, next) = shop
        .mismatches(limit(&query, 25)?, query.cursor.as_deref())
        .await?;
    Ok(axum::Json(MismatchPage {
        mismatches,
        next_cursor: next,
    }))
}

/// Repair `available` on one page of mismatches (conditional on the reported values), each with a rebalance movement, audited
///
/// A variant that moved meanwhile is left for the next run; running it again finds nothing to
/// do. `limit` defaults to 25.
#[utoipa::path(
    post,
    path = "/api/v1/admin/inventory/rebalance",
    tag = "admin",
    operation_id = "adminInventoryRebalance",
    security(("accessToken" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "What was repaired, skipped, and left for a human.", body = Rebalanced),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn rebalance(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Query(query): Query<PageQuery>,
) -> ApiResult<axum::Json<Rebalanced>> {
    let done = shop
        .rebalance(
            limit(&query, 25)?,
            query.cursor.as_deref(),
            &actor(&admin, meta),
        )
        .await?;
    Ok(axum::Json(done))
}

/// A storefront content block, with who last wrote it
#[utoipa::path(
    get,
    path = "/api/v1/admin/site-content/{key}",
    tag = "admin",
    operation_id = "adminGetContent",
    security(("accessToken" = [])),
    params(("key" = String, Path, description = "The block's key: 1 to 64 lower-case letters, digits, `-` or `_`.", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The block.", body = AdminSiteContent),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn get_content(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<AdminSiteContent>> {
    let block = if content::valid_key(&key) {
        content::get(shop.db(), shop.table(), &key).await?
    } else {
        None
    }
    .ok_or_else(|| ApiError::not_found(format!("no site content {key}")))?;
    let content: Value =
        serde_json::from_str(&block.content).unwrap_or(Value::String(block.content.clone()));
    Ok(axum::Json(AdminSiteContent {
        key: block.key,
        content,
        updated_at: block.updated_at,
        updated_by: block.updated_by,
    }))
}

/// A content block's new content.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct ContentBody {
    /// Any JSON, at most 64 KiB as text.
    pub content: Value,
}

/// Write a storefront content block (any JSON up to 64 KiB), audited
#[utoipa::path(
    put,
    path = "/api/v1/admin/site-content/{key}",
    tag = "admin",
    operation_id = "adminPutContent",
    security(("accessToken" = [])),
    params(("key" = String, Path, description = "The block's key: 1 to 64 lower-case letters, digits, `-` or `_`.", pattern = "^[a-z0-9_-]{1,64}$")),
    request_body(content = ContentBody, content_type = "application/json", example = json!({ "content": { "title": "Summer sale", "body": "20% off" } })),
    responses(
        (status = 200, description = "The block written.", body = ContentWritten),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn put_content(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(key): Path<String>,
    Json(body): Json<ContentBody>,
) -> ApiResult<axum::Json<ContentWritten>> {
    let (_, block) = shop
        .put_content(&key, body.content.to_string(), &actor(&admin, meta))
        .await?;
    Ok(axum::Json(ContentWritten {
        key,
        content: body.content,
        updated_at: block.updated_at,
    }))
}
