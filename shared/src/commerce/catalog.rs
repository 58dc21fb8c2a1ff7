//! The catalog: products and their variants (SKUs), prices in integer minor units.
//!
//! Items: `PRODUCT#<id>`/`PRODUCT` and `VARIANT#<sku>`/`VARIANT`; both on `gsi1` under
//! `CATALOG`, sorted `<product id>#...`, so the whole catalog is one Query and a product with
//! its variants one Query too.

use serde::{Deserialize, Serialize};

use super::{n, s};
use crate::store::{Db, Item, StoreError, from_item, key};

/// Most units of one variant in a cart line.
pub const MAX_QUANTITY: u32 = 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub product_id: String,
    pub name: String,
    pub description: String,
    pub active: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub price_minor: i64,
    pub currency: String,
    /// Units on the shelf.
    pub stock: i64,
    /// Units not held by a cart reservation (`stock` minus reservations).
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub sku: String,
    pub name: String,
    pub price: Money,
    /// Units a customer can still reserve.
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub description: String,
    pub variants: Vec<Variant>,
}

pub fn variant_key(sku: &str) -> Item {
    key(format!("VARIANT#{sku}"), "VARIANT")
}

impl From<&VariantItem> for Variant {
    fn from(v: &VariantItem) -> Self {
        Self {
            sku: v.sku.clone(),
            name: v.name.clone(),
            price: Money {
                amount_minor: v.price_minor,
                currency: v.currency.clone(),
            },
            available: v.available.max(0),
        }
    }
}

/// Groups a `gsi1` page of products and variants into products.
fn assemble(table: &str, items: Vec<Item>) -> Result<Vec<Product>, StoreError> {
    let mut products: Vec<Product> = Vec::new();
    for item in items {
        let kind = item
            .get("sk")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        if kind == "PRODUCT" {
            let product: ProductItem = from_item(table, item)?;
            if product.active {
                products.push(Product {
                    id: product.product_id,
                    name: product.name,
                    description: product.description,
                    variants: Vec::new(),
                });
            }
        } else {
            let variant: VariantItem = from_item(table, item)?;
            if let Some(product) = products
                .iter_mut()
                .rev()
                .find(|p| p.id == variant.product_id)
            {
                product.variants.push(Variant::from(&variant));
            }
        }
    }
    Ok(products)
}

/// The catalog's `gsi1` entries, all of them or those of one product (`prefix` `<id>#`).
async fn query_catalog(
    db: &Db,
    table: &str,
    prefix: Option<&str>,
) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let mut request = db
            .client()
            .query()
            .table_name(table)
            .index_name("gsi1")
            .expression_attribute_values(":catalog", s("CATALOG"))
            .set_exclusive_start_key(start.take());
        request = match prefix {
            Some(prefix) => request
                .key_condition_expression("gsi1pk = :catalog AND begins_with(gsi1sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix)),
            None => request.key_condition_expression("gsi1pk = :catalog"),
        };
        let request = request.send();
        let page = db.call("Query", table, request).await?;
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(next) if !next.is_empty() => start = Some(next),
            _ => return Ok(items),
        }
    }
}

/// Every active product with its variants.
pub async fn list(db: &Db, table: &str) -> Result<Vec<Product>, StoreError> {
    assemble(table, query_catalog(db, table, None).await?)
}

pub async fn get(db: &Db, table: &str, product_id: &str) -> Result<Option<Product>, StoreError> {
    if product_id.contains('#') {
        return Ok(None);
    }
    Ok(assemble(
        table,
        query_catalog(db, table, Some(&format!("{product_id}#"))).await?,
    )?
    .into_iter()
    .next())
}

pub async fn variant(db: &Db, table: &str, sku: &str) -> Result<Option<VariantItem>, StoreError> {
    db.get_consistent(table, variant_key(sku)).await
}

/// A new product with its variants (seed data, and the admin catalog later).
pub struct NewProduct<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    /// (sku, name, price in minor units, currency, stock)
    pub variants: Vec<(&'a str, &'a str, i64, &'a str, i64)>,
}

pub async fn create(db: &Db, table: &str, product: &NewProduct<'_>) -> Result<(), StoreError> {
    let mut writes = vec![super::put(
        table,
        crate::store::to_item(
            table,
            &ProductItem {
                pk: format!("PRODUCT#{}", product.id),
                sk: "PRODUCT".into(),
                gsi1pk: "CATALOG".into(),
                gsi1sk: format!("{}#", product.id),
                product_id: product.id.into(),
                name: product.name.into(),
                description: product.description.into(),
                active: true,
            },
        )?,
        Some("attribute_not_exists(pk)"),
    )?];
    for (sku, name, price_minor, currency, stock) in &product.variants {
        let variant = VariantItem {
            pk: format!("VARIANT#{sku}"),
            sk: "VARIANT".into(),
            gsi1pk: "CATALOG".into(),
            gsi1sk: format!("{}#V#{sku}", product.id),
            product_id: product.id.into(),
            sku: (*sku).into(),
            name: (*name).into(),
            price_minor: *price_minor,
            currency: (*currency).into(),
            stock: *stock,
            available: *stock,
        };
        writes.push(super::put(
            table,
            crate::store::to_item(table, &variant)?,
            Some("attribute_not_exists(pk)"),
        )?);
    }
    db.transact(table, writes).await
}

/// Adds `units` to a variant's shelf (a restock delivery; tests and tools).
pub async fn add_stock(db: &Db, table: &str, sku: &str, units: i64) -> Result<(), StoreError> {
    let request = db
        .client()
        .update_item()
        .table_name(table)
        .set_key(Some(variant_key(sku)))
        .update_expression("SET stock = stock + :u, available = available + :u")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":u", n(units))
        .send();
    db.call("UpdateItem", table, request).await.map(drop)
}
