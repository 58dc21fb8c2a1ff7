//! The cart: one line per variant, each line a reservation of stock for a limited time
//! (`CART_RESERVATION_MINUTES`, default 15).
//!
//! A line is `CART#<user>`/`ITEM#<sku>`, indexed on `gsi1` by variant and expiry
//! (`RESERVATION#<sku>`), so that a customer who finds a variant short first sweeps the expired
//! reservations of that variant: each sweep deletes one reservation and gives its units back in
//! one transaction, conditional on the reservation being unchanged.

use serde::{Deserialize, Serialize};

use super::{
    catalog::{self, MAX_QUANTITY, Money, variant_key},
    delete, n, rfc3339, s, transact_reasons, update,
};
use crate::{
    error::{ApiError, FieldError},
    store::{Db, Item, StoreError, from_item, key, to_item},
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    /// Expiry, zero-padded microseconds, so the index sorts by it.
    pub gsi1sk: String,
    pub sku: String,
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub currency: String,
    pub expires_at_us: i64,
    /// DynamoDB TTL (seconds); never relied on.
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CartLine {
    pub sku: String,
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: Money,
    pub reserved_until: String,
    /// The reservation has lapsed: checkout still works while no one has taken the units.
    pub expired: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cart {
    pub lines: Vec<CartLine>,
    pub total: Option<Money>,
}

pub fn line_key(user: &str, sku: &str) -> Item {
    key(format!("CART#{user}"), format!("ITEM#{sku}"))
}

/// The raw lines of a cart (strongly consistent).
pub async fn lines(db: &Db, table: &str, user: &str) -> Result<Vec<LineItem>, StoreError> {
    let request = db
        .client()
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :item)")
        .expression_attribute_values(":pk", s(format!("CART#{user}")))
        .expression_attribute_values(":item", s("ITEM#"))
        .consistent_read(true)
        .send();
    let page = db.call("Query", table, request).await?;
    page.items
        .unwrap_or_default()
        .into_iter()
        .map(|item| from_item(table, item))
        .collect()
}

pub fn view(lines: &[LineItem], now_us: i64) -> Cart {
    let lines: Vec<CartLine> = lines
        .iter()
        .map(|l| CartLine {
            sku: l.sku.clone(),
            product_id: l.product_id.clone(),
            name: l.name.clone(),
            quantity: l.quantity,
            unit_price: Money {
                amount_minor: l.unit_price_minor,
                currency: l.currency.clone(),
            },
            line_total: Money {
                amount_minor: l.unit_price_minor * l.quantity,
                currency: l.currency.clone(),
            },
            reserved_until: rfc3339(l.expires_at_us),
            expired: l.expires_at_us <= now_us,
        })
        .collect();
    let total = lines.first().map(|first| Money {
        amount_minor: lines.iter().map(|l| l.line_total.amount_minor).sum(),
        currency: first.unit_price.currency.clone(),
    });
    Cart { lines, total }
}

#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error("quantity must be between 0 and {MAX_QUANTITY}")]
    Quantity,
    #[error("no variant {0}")]
    UnknownVariant(String),
    #[error("only {available} of {sku} are available")]
    OutOfStock { sku: String, available: i64 },
    #[error("the cart changed while it was being updated; retry")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CartError> for ApiError {
    fn from(error: CartError) -> Self {
        match error {
            CartError::Quantity => ApiError::Validation {
                detail: error.to_string().into(),
                errors: vec![FieldError {
                    field: "quantity".into(),
                    message: error.to_string(),
                }],
            },
            CartError::UnknownVariant(_) => ApiError::Validation {
                detail: error.to_string().into(),
                errors: vec![FieldError {
                    field: "variant".into(),
                    message: "unknown variant".into(),
                }],
            },
            CartError::OutOfStock { .. } => {
                ApiError::Conflict(format!("out of stock: {error}").into())
            }
            CartError::Busy => ApiError::Conflict(error.to_string().into()),
            CartError::Store(store) => store.into(),
        }
    }
}

/// Gives back the expired reservations of `sku`; returns how many units came back.
pub async fn sweep_expired(
    db: &Db,
    table: &str,
    sku: &str,
    now_us: i64,
) -> Result<i64, StoreError> {
    let request = db
        .client()
        .query()
        .table_name(table)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :r AND gsi1sk < :now")
        .expression_attribute_values(":r", s(format!("RESERVATION#{sku}")))
        .expression_attribute_values(":now", s(format!("{now_us:020}")))
        .send();
    let page = db.call("Query", table, request).await?;
    let mut freed = 0;
    for item in page.items.unwrap_or_default() {
        let line: LineItem = from_item(table, item)?;
        let writes = vec![
            delete(
                table,
                key(line.pk.clone(), line.sk.clone()),
                "expires_at_us = :e AND quantity = :q",
                vec![(":e", n(line.expires_at_us)), (":q", n(line.quantity))],
            )?,
            update(
                table,
                variant_key(sku),
                "SET available = available + :q",
                None,
                vec![(":q", n(line.quantity))],
            )?,
        ];
        // Lost races (the owner checked out or changed the line) are fine: not ours to free.
        if let Ok(()) = transact_reasons(db, table, writes).await? {
            freed += line.quantity;
        }
    }
    Ok(freed)
}

/// Sets the quantity of `sku` in the cart to `target(units held now)` (0 removes the line),
/// reserving or giving back the difference; the line's reservation is renewed.
pub async fn set_quantity(
    db: &Db,
    table: &str,
    user: &str,
    sku: &str,
    target: impl Fn(i64) -> i64,
    now_us: i64,
    reservation_us: i64,
) -> Result<(), CartError> {
    let mut swept = false;
    for _ in 0..5 {
        let Some(variant) = catalog::variant(db, table, sku).await? else {
            return Err(CartError::UnknownVariant(sku.to_owned()));
        };
        let current: Option<LineItem> = db.get_consistent(table, line_key(user, sku)).await?;
        let held = current.as_ref().map_or(0, |l| l.quantity);
        let quantity = target(held);
        if !(0..=i64::from(MAX_QUANTITY)).contains(&quantity) {
            return Err(CartError::Quantity);
        }
        let delta = quantity - held;
        let mut writes = Vec::new();
        if delta != 0 {
            writes.push(update(
                table,
                variant_key(sku),
                "SET available = available - :d",
                (delta > 0).then_some("available >= :d"),
                vec![(":d", n(delta))],
            )?);
        }
        let line_condition = match &current {
            None => "attribute_not_exists(pk)".to_owned(),
            Some(_) => "quantity = :held AND expires_at_us = :held_until".to_owned(),
        };
        let mut condition_values = Vec::new();
        if let Some(line) = &current {
            condition_values.push((":held", n(line.quantity)));
            condition_values.push((":held_until", n(line.expires_at_us)));
        }
        if quantity == 0 {
            let Some(_) = &current else { return Ok(()) };
            writes.push(delete(
                table,
                line_key(user, sku),
                &line_condition,
                condition_values,
            )?);
        } else {
            let expires_at_us = now_us + reservation_us;
            let line = LineItem {
                pk: format!("CART#{user}"),
                sk: format!("ITEM#{sku}"),
                gsi1pk: format!("RESERVATION#{sku}"),
                gsi1sk: format!("{expires_at_us:020}"),
                sku: sku.to_owned(),
                product_id: variant.product_id.clone(),
                name: variant.name.clone(),
                quantity,
                unit_price_minor: variant.price_minor,
                currency: variant.currency.clone(),
                expires_at_us,
                expires_at: expires_at_us / 1_000_000 + 3_600,
            };
            let put = aws_sdk_dynamodb::types::Put::builder()
                .table_name(table)
                .set_item(Some(to_item(table, &line)?))
                .condition_expression(line_condition)
                .set_expression_attribute_values((!condition_values.is_empty()).then(|| {
                    condition_values
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect()
                }))
                .build()
                .map_err(|e| StoreError::Service {
                    op: "TransactWriteItems",
                    table: table.to_owned(),
                    code: "InvalidRequest".into(),
                    message: e.to_string(),
                })?;
            writes.push(
                aws_sdk_dynamodb::types::TransactWriteItem::builder()
                    .put(put)
                    .build(),
            );
        }
        match transact_reasons(db, table, writes).await? {
            Ok(()) => return Ok(()),
            Err(reasons) => {
                let stock_failed =
                    delta > 0 && reasons.as_ref().is_none_or(|r| r.first() == Some(&true));
                if stock_failed {
                    if !swept && sweep_expired(db, table, sku, now_us).await? > 0 {
                        swept = true;
                        continue;
                    }
                    let latest = catalog::variant(db, table, sku)
                        .await?
                        .map_or(0, |v| v.available);
                    if reasons.is_some() || latest < delta {
                        return Err(CartError::OutOfStock {
                            sku: sku.to_owned(),
                            available: latest.max(0) + held,
                        });
                    }
                }
                // The line changed under us (another tab, a sweep): read again.
            }
        }
    }
    Err(CartError::Busy)
}
