//! Catalog and inventory for the admin: create products, edit or retire them, adjust stock with a
//! reason, a variant's ledger, and the runbook's inventory-mismatch procedure (report, then
//! rebalance), site content. Every mutation is audited by its use case.

use axum::extract::{Path, Query, State};
use lumi_commerce::{
    admin::{NewProductRequest, ProductPatch},
    content,
};
use lumi_shared::{
    ApiError, ApiResult,
    auth::{AdminUser, sessions::RequestMeta},
    http::Json,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Shared, actor};

pub async fn create_product(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Json(body): Json<NewProductRequest>,
) -> ApiResult<(axum::http::StatusCode, axum::Json<Value>)> {
    let created = shop.create_product(&body, &actor(&admin, meta)).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(json!(created))))
}

pub async fn update_product(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(patch): Json<ProductPatch>,
) -> ApiResult<axum::Json<Value>> {
    let product = shop
        .update_product(&id, &patch, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(json!(product)))
}

#[derive(Deserialize)]
pub struct StockAdjustment {
    /// Units to add (a delivery) or remove (shrinkage, damage).
    delta: i64,
    reason: String,
}

pub async fn adjust_stock(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(sku): Path<String>,
    Json(body): Json<StockAdjustment>,
) -> ApiResult<axum::Json<Value>> {
    let after = shop
        .adjust_stock(&sku, body.delta, &body.reason, &actor(&admin, meta))
        .await?;
    Ok(axum::Json(
        json!({ "sku": sku, "stock": after.stock, "available": after.available }),
    ))
}

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<i32>,
    cursor: Option<String>,
}

fn limit(query: &PageQuery, default: i32) -> ApiResult<i32> {
    crate::page_limit(query.limit, default)
}

/// `GET /api/v1/admin/variants/{sku}/ledger`: the counters and the movements, oldest first.
pub async fn ledger(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Path(sku): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<axum::Json<Value>> {
    let view = shop
        .ledger(&sku, limit(&query, 100)?, query.cursor.as_deref())
        .await?;
    Ok(axum::Json(json!(view)))
}

/// `GET /api/v1/admin/inventory/mismatches`: one page of variants (`limit`, default 25) checked.
pub async fn list_mismatches(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Query(query): Query<PageQuery>,
) -> ApiResult<axum::Json<Value>> {
    let (mismatches, next) = shop
        .mismatches(limit(&query, 25)?, query.cursor.as_deref())
        .await?;
    Ok(axum::Json(
        json!({ "mismatches": mismatches, "next_cursor": next }),
    ))
}

/// `POST /api/v1/admin/inventory/rebalance`: repairs one page of mismatches, each conditional on
/// the values reported (a variant that moved meanwhile is left for the next run). Running it
/// again finds nothing to do.
pub async fn rebalance(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Query(query): Query<PageQuery>,
) -> ApiResult<axum::Json<Value>> {
    let done = shop
        .rebalance(
            limit(&query, 25)?,
            query.cursor.as_deref(),
            &actor(&admin, meta),
        )
        .await?;
    Ok(axum::Json(json!(done)))
}

/// `GET /api/v1/admin/site-content/{key}`
pub async fn get_content(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let block = if content::valid_key(&key) {
        content::get(shop.db(), shop.table(), &key).await?
    } else {
        None
    }
    .ok_or_else(|| ApiError::not_found(format!("no site content {key}")))?;
    let content: Value =
        serde_json::from_str(&block.content).unwrap_or(Value::String(block.content.clone()));
    Ok(axum::Json(
        json!({ "key": block.key, "content": content, "updated_at": block.updated_at, "updated_by": block.updated_by }),
    ))
}

#[derive(Deserialize)]
pub struct ContentBody {
    content: Value,
}

/// `PUT /api/v1/admin/site-content/{key}` `{content}`: any JSON up to 64 KiB, audited.
pub async fn put_content(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(key): Path<String>,
    Json(body): Json<ContentBody>,
) -> ApiResult<axum::Json<Value>> {
    let (_, block) = shop
        .put_content(&key, body.content.to_string(), &actor(&admin, meta))
        .await?;
    Ok(axum::Json(
        json!({ "key": key, "content": body.content, "updated_at": block.updated_at }),
    ))
}
