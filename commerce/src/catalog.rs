//! The catalog: products and their variants (SKUs), prices in integer minor units.
//!
//! Items: `PRODUCT#<id>`/`PRODUCT` and `VARIANT#<sku>`/`VARIANT`; both on `gsi1` under
//! `CATALOG`, sorted `<product id>#...`, so the whole catalog is one Query and a product with
//! its variants one Query too. A retired product and its variants carry `active: false`: they
//! leave the storefront and cannot be added to a cart or checked out; orders keep them.

use lumi_shared::store::{Db, Item, StoreError, Tx, from_item, key, s};
use serde::{Deserialize, Serialize};

use crate::model::{MovementKind, StockMove};

/// Most units of one variant in a cart line.
pub const MAX_QUANTITY: u32 = 20;

/// A product id or SKU: 1 to 64 letters, digits, `-` or `_` (checked before any AWS call).
pub fn valid_slug(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn valid_sku(sku: &str) -> bool {
    valid_slug(sku)
}

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
    /// `false` once retired (with its product).
    #[serde(default = "active")]
    pub active: bool,
}

fn active() -> bool {
    true
}

pub use crate::model::Money;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Variant {
    pub sku: String,
    pub name: String,
    pub price: Money,
    /// Units a customer can still reserve.
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
            if !variant.active {
                continue;
            }
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
    if !valid_slug(product_id) {
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
    if !valid_sku(sku) {
        return Ok(None);
    }
    db.get_consistent(table, variant_key(sku)).await
}

/// A new product with its variants (seed data and the admin catalog); each variant's stock is
/// its first ledger movement.
pub struct NewProduct<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    /// (sku, name, price in minor units, currency, stock)
    pub variants: Vec<(&'a str, &'a str, i64, &'a str, i64)>,
}

pub async fn create(
    db: &Db,
    table: &str,
    product: &NewProduct<'_>,
    audit: Option<&lumi_shared::audit::AuditEvent>,
    now_us: i64,
) -> Result<(), StoreError> {
    let mut tx = Tx::new(table);
    if let Some(event) = audit {
        lumi_shared::audit::record_in(&mut tx, event)?;
    }
    tx.put(
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
        Some("attribute_not_exists(pk)"),
        Vec::new(),
    )?;
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
            active: true,
        };
        tx.put(&variant, Some("attribute_not_exists(pk)"), Vec::new())?;
        crate::ledger::record(
            &mut tx,
            &StockMove {
                sku: (*sku).into(),
                kind: MovementKind::Initial,
                stock_delta: *stock,
                available_delta: *stock,
            },
            &format!("product:{}", product.id),
            now_us,
        )?;
    }
    match db.commit(tx).await? {
        Ok(()) => Ok(()),
        Err(_) => Err(StoreError::ConditionFailed {
            op: "TransactWriteItems",
            table: table.to_owned(),
        }),
    }
}

/// The product item and its variants, retired ones included (the admin's view).
pub async fn product_with_variants(
    db: &Db,
    table: &str,
    product_id: &str,
) -> Result<Option<(ProductItem, Vec<VariantItem>)>, StoreError> {
    let items = query_catalog(db, table, Some(&format!("{product_id}#"))).await?;
    let mut product = None;
    let mut variants = Vec::new();
    for item in items {
        let kind = item.get("sk").and_then(|v| v.as_s().ok()).cloned();
        if kind.as_deref() == Some("PRODUCT") {
            product = Some(from_item::<ProductItem>(table, item)?);
        } else {
            variants.push(from_item::<VariantItem>(table, item)?);
        }
    }
    Ok(product.map(|p| (p, variants)))
}

/// Every variant of the catalog, retired ones included, a page at a time (`gsi1` `CATALOG`).
pub async fn variants_page(
    db: &Db,
    table: &str,
    limit: i32,
    start: Option<Item>,
) -> Result<(Vec<VariantItem>, Option<Item>), StoreError> {
    let request = db
        .client()
        .query()
        .table_name(table)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :catalog")
        .expression_attribute_values(":catalog", s("CATALOG"))
        .limit(limit)
        .set_exclusive_start_key(start);
    let (items, next) = db.query_page(table, request).await?;
    let mut variants = Vec::new();
    for item in items {
        if item
            .get("sk")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
            == Some("VARIANT")
        {
            variants.push(from_item(table, item)?);
        }
    }
    Ok((variants, next))
}
