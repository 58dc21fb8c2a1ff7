//! Catalog and inventory for the admin: create products, edit or retire them, adjust stock with a
//! reason, and the runbook's inventory-mismatch procedure (report, then rebalance). Every
//! mutation is audited.

use std::sync::Arc;

use axum::extract::{Path, State};
use lumi_shared::{
    ApiError, ApiResult, Platform,
    auth::{AdminUser, sessions::RequestMeta},
    commerce::{cart::LineItem, catalog, n, s},
    error::FieldError,
    http::Json,
    store::{StoreError, from_item},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::record;

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Validation {
        detail: format!("{field}: {message}").into(),
        errors: vec![FieldError {
            field: field.into(),
            message: message.into(),
        }],
    }
}

fn slug_ok(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Deserialize)]
pub struct NewVariant {
    sku: String,
    name: String,
    price_minor: i64,
    currency: String,
    stock: i64,
}

#[derive(Deserialize)]
pub struct NewProductBody {
    id: String,
    name: String,
    #[serde(default)]
    description: String,
    variants: Vec<NewVariant>,
}

pub async fn create_product(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    Json(body): Json<NewProductBody>,
) -> ApiResult<(axum::http::StatusCode, axum::Json<Value>)> {
    if !slug_ok(&body.id) {
        return Err(invalid("id", "1 to 64 letters, digits, - or _"));
    }
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(invalid("name", "1 to 200 characters"));
    }
    if body.variants.is_empty() || body.variants.len() > 50 {
        return Err(invalid("variants", "1 to 50 variants"));
    }
    for (i, v) in body.variants.iter().enumerate() {
        if !slug_ok(&v.sku) {
            return Err(invalid(
                &format!("variants[{i}].sku"),
                "1 to 64 letters, digits, - or _",
            ));
        }
        if v.price_minor < 0 {
            return Err(invalid(
                &format!("variants[{i}].price_minor"),
                "must not be negative",
            ));
        }
        if v.stock < 0 {
            return Err(invalid(
                &format!("variants[{i}].stock"),
                "must not be negative",
            ));
        }
        if v.currency.len() != 3 || !v.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                &format!("variants[{i}].currency"),
                "an ISO 4217 code such as EUR",
            ));
        }
    }
    let product = catalog::NewProduct {
        id: &body.id,
        name: &body.name,
        description: &body.description,
        variants: body
            .variants
            .iter()
            .map(|v| {
                (
                    v.sku.as_str(),
                    v.name.as_str(),
                    v.price_minor,
                    v.currency.as_str(),
                    v.stock,
                )
            })
            .collect(),
    };
    match catalog::create(&platform.db, &platform.config.tables.app, &product).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed { .. }) => {
            return Err(ApiError::Conflict(
                "a product or SKU with this id exists already".into(),
            ));
        }
        Err(error) => return Err(error.into()),
    }
    let summary = json!({ "after": { "name": body.name, "skus": body.variants.iter().map(|v| &v.sku).collect::<Vec<_>>() } });
    record(
        &platform,
        &admin,
        &meta,
        "product.create",
        format!("product:{}", body.id),
        summary,
    )
    .await?;
    let created = catalog::get(&platform.db, &platform.config.tables.app, &body.id).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(json!(created))))
}

#[derive(Deserialize)]
pub struct ProductPatch {
    name: Option<String>,
    description: Option<String>,
    /// `false` retires the product: it leaves the storefront, orders keep it.
    active: Option<bool>,
}

pub async fn update_product(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(patch): Json<ProductPatch>,
) -> ApiResult<axum::Json<Value>> {
    let table = &platform.config.tables.app;
    let key = lumi_shared::store::key(format!("PRODUCT#{id}"), "PRODUCT");
    let before: catalog::ProductItem = platform
        .db
        .get_consistent(table, key.clone())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no product {id}")))?;
    let name = patch.name.unwrap_or_else(|| before.name.clone());
    if name.trim().is_empty() || name.len() > 200 {
        return Err(invalid("name", "1 to 200 characters"));
    }
    let description = patch
        .description
        .unwrap_or_else(|| before.description.clone());
    let active = patch.active.unwrap_or(before.active);
    let request = platform
        .db
        .client()
        .update_item()
        .table_name(table)
        .set_key(Some(key))
        .update_expression("SET #name = :name, description = :description, active = :active")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_names("#name", "name")
        .expression_attribute_values(":name", s(name.clone()))
        .expression_attribute_values(":description", s(description.clone()))
        .expression_attribute_values(
            ":active",
            aws_sdk_dynamodb::types::AttributeValue::Bool(active),
        )
        .send();
    platform.db.call("UpdateItem", table, request).await?;
    let action = if before.active && !active {
        "product.retire"
    } else {
        "product.update"
    };
    let summary = json!({
        "before": { "name": before.name, "description": before.description, "active": before.active },
        "after": { "name": name, "description": description, "active": active },
    });
    record(
        &platform,
        &admin,
        &meta,
        action,
        format!("product:{id}"),
        summary,
    )
    .await?;
    Ok(axum::Json(
        json!({ "id": id, "name": name, "description": description, "active": active }),
    ))
}

#[derive(Deserialize)]
pub struct StockAdjustment {
    /// Units to add (a delivery) or remove (shrinkage, damage).
    delta: i64,
    reason: String,
}

pub async fn adjust_stock(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(sku): Path<String>,
    Json(body): Json<StockAdjustment>,
) -> ApiResult<axum::Json<Value>> {
    if body.delta == 0 || body.delta.abs() > 1_000_000 {
        return Err(invalid("delta", "a non-zero number of units up to 1000000"));
    }
    if body.reason.trim().is_empty() {
        return Err(invalid("reason", "is required"));
    }
    let table = &platform.config.tables.app;
    let request = platform
        .db
        .client()
        .update_item()
        .table_name(table)
        .set_key(Some(catalog::variant_key(&sku)))
        .update_expression("SET stock = stock + :d, available = available + :d")
        // Removing units never takes stock or the unreserved units below zero.
        .condition_expression("attribute_exists(pk) AND stock >= :floor AND available >= :floor")
        .expression_attribute_values(":d", n(body.delta))
        .expression_attribute_values(":floor", n((-body.delta).max(0)))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
        .send();
    let after = match platform.db.call("UpdateItem", table, request).await {
        Ok(output) => output
            .attributes
            .map(|item| from_item::<catalog::VariantItem>(table, item))
            .transpose()?,
        Err(StoreError::ConditionFailed { .. }) => {
            return match catalog::variant(&platform.db, table, &sku).await? {
                None => Err(ApiError::not_found(format!("no variant {sku}"))),
                Some(v) => Err(ApiError::Conflict(
                    format!(
                        "only {} units are unreserved ({} on the shelf)",
                        v.available, v.stock
                    )
                    .into(),
                )),
            };
        }
        Err(error) => return Err(error.into()),
    };
    let after = after.ok_or_else(|| ApiError::internal("the update returned no item"))?;
    let summary = json!({
        "before": { "stock": after.stock - body.delta, "available": after.available - body.delta },
        "after": { "stock": after.stock, "available": after.available },
        "reason": body.reason,
    });
    record(
        &platform,
        &admin,
        &meta,
        "stock.adjust",
        format!("variant:{sku}"),
        summary,
    )
    .await?;
    Ok(axum::Json(
        json!({ "sku": sku, "stock": after.stock, "available": after.available }),
    ))
}

/// One variant whose `available` disagrees with its stock and the carts' reservations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub sku: String,
    pub stock: i64,
    pub available: i64,
    /// Units held by cart lines (lapsed ones included: they hold until swept).
    pub reserved: i64,
    /// `stock - reserved`: what `available` should be.
    pub expected_available: i64,
    pub difference: i64,
}

async fn mismatches(platform: &Platform) -> ApiResult<Vec<Mismatch>> {
    let db = &platform.db;
    let table = &platform.config.tables.app;
    let mut found = Vec::new();
    let variants = db
        .client()
        .query()
        .table_name(table)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :catalog")
        .expression_attribute_values(":catalog", s("CATALOG"))
        .send();
    let page = db.call("Query", table, variants).await?;
    for item in page.items.unwrap_or_default() {
        if item
            .get("sk")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
            != Some("VARIANT")
        {
            continue;
        }
        let variant: catalog::VariantItem = from_item(table, item)?;
        let lines = db
            .client()
            .query()
            .table_name(table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :r")
            .expression_attribute_values(":r", s(format!("RESERVATION#{}", variant.sku)))
            .send();
        let page = db.call("Query", table, lines).await?;
        let reserved: i64 = page
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| from_item::<LineItem>(table, item).map(|l| l.quantity))
            .sum::<Result<i64, _>>()?;
        let expected = variant.stock - reserved;
        if expected != variant.available || variant.stock < 0 {
            found.push(Mismatch {
                sku: variant.sku,
                stock: variant.stock,
                available: variant.available,
                reserved,
                expected_available: expected,
                difference: variant.available - expected,
            });
        }
    }
    Ok(found)
}

/// `GET /api/v1/admin/inventory/mismatches`
pub async fn list_mismatches(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        json!({ "mismatches": mismatches(&platform).await? }),
    ))
}

/// `POST /api/v1/admin/inventory/rebalance`: sets each mismatched `available` to what the stock
/// and reservations say, conditional on the values reported (a variant that moved meanwhile is
/// left for the next run). Running it again finds nothing to do.
pub async fn rebalance(
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
) -> ApiResult<axum::Json<Value>> {
    let table = &platform.config.tables.app;
    let mut repaired = Vec::new();
    let mut skipped = Vec::new();
    for mismatch in mismatches(&platform).await? {
        let request = platform
            .db
            .client()
            .update_item()
            .table_name(table)
            .set_key(Some(catalog::variant_key(&mismatch.sku)))
            .update_expression("SET available = :expected")
            .condition_expression("stock = :stock AND available = :available")
            .expression_attribute_values(":expected", n(mismatch.expected_available.max(0)))
            .expression_attribute_values(":stock", n(mismatch.stock))
            .expression_attribute_values(":available", n(mismatch.available))
            .send();
        match platform.db.call("UpdateItem", table, request).await {
            Ok(_) => {
                let summary = json!({
                    "before": { "available": mismatch.available },
                    "after": { "available": mismatch.expected_available.max(0) },
                    "stock": mismatch.stock,
                    "reserved": mismatch.reserved,
                });
                record(
                    &platform,
                    &admin,
                    &meta,
                    "inventory.rebalance",
                    format!("variant:{}", mismatch.sku),
                    summary,
                )
                .await?;
                repaired.push(mismatch);
            }
            Err(StoreError::ConditionFailed { .. }) => skipped.push(mismatch.sku),
            Err(error) => return Err(error.into()),
        }
    }
    Ok(axum::Json(
        json!({ "repaired": repaired, "skipped_changed_meanwhile": skipped }),
    ))
}

/// `GET /api/v1/admin/site-content/{key}`
pub async fn get_content(
    State(platform): State<Arc<Platform>>,
    _admin: AdminUser,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let block =
        lumi_shared::commerce::content::get(&platform.db, &platform.config.tables.app, &key)
            .await?
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
    State(platform): State<Arc<Platform>>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(key): Path<String>,
    Json(body): Json<ContentBody>,
) -> ApiResult<axum::Json<Value>> {
    use lumi_shared::commerce::content;
    if !content::valid_key(&key) {
        return Err(invalid("key", "1 to 64 lower-case letters, digits, - or _"));
    }
    let text = body.content.to_string();
    if text.len() > content::MAX_BYTES {
        return Err(invalid("content", "at most 64 KiB of JSON"));
    }
    let table = &platform.config.tables.app;
    let before = content::get(&platform.db, table, &key).await?;
    let block = content::ContentBlock {
        key: key.clone(),
        content: text,
        updated_at: lumi_shared::commerce::rfc3339(platform.clock.now_us()),
        updated_by: format!("admin:{}", admin.0.user.id),
    };
    content::put(&platform.db, table, block.clone()).await?;
    let summary = json!({ "before": before.map(|b| b.content), "after": block.content });
    record(
        &platform,
        &admin,
        &meta,
        "content.update",
        format!("content:{key}"),
        summary,
    )
    .await?;
    Ok(axum::Json(
        json!({ "key": key, "content": body.content, "updated_at": block.updated_at }),
    ))
}
