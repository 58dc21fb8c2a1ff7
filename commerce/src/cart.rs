//! The cart: one line per variant (at most `CART_MAX_LINES`), each line a reservation of stock
//! for a limited time (`CART_RESERVATION_MINUTES`, default 15, renewed by every change of the
//! line but never past `CART_RESERVATION_MAX_MINUTES`, default 60, from its first reservation:
//! a few accounts cannot hold a scarce item's stock indefinitely). Retired variants cannot be
//! added.
//!
//! A line is `CART#<user>`/`ITEM#<sku>`, indexed on `gsi1` by variant and expiry
//! (`RESERVATION#<sku>`), so that a customer who finds a variant short first sweeps the expired
//! reservations of that variant: each sweep deletes one reservation and gives its units back in
//! one transaction, conditional on the reservation being unchanged.

use lumi_shared::store::{Db, Item, StoreError, Tx, from_item, key, n, s};
use serde::{Deserialize, Serialize};

use crate::{
    CommerceError, Shop,
    catalog::{self, MAX_QUANTITY, Money, variant_key},
    invalid, rfc3339,
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
    /// When the line first reserved units: renewals never extend it past the maximum lifetime.
    #[serde(default)]
    pub reserved_since_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cart {
    pub lines: Vec<CartLine>,
    /// The sum of the lines; zero in no currency for an empty cart.
    pub total: Money,
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
    let total = Money {
        amount_minor: lines.iter().map(|l| l.line_total.amount_minor).sum(),
        currency: lines
            .first()
            .map(|first| first.unit_price.currency.clone())
            .unwrap_or_default(),
    };
    Cart { lines, total }
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
        let mut tx = Tx::new(table);
        tx.delete(
            key(line.pk.clone(), line.sk.clone()),
            "expires_at_us = :e AND quantity = :q",
            vec![(":e", n(line.expires_at_us)), (":q", n(line.quantity))],
        )?;
        tx.update(
            variant_key(sku),
            "SET available = available + :q",
            None,
            vec![(":q", n(line.quantity))],
        )?;
        // Lost races (the owner checked out or changed the line) are fine: not ours to free.
        if let Ok(()) = db.commit(tx).await? {
            freed += line.quantity;
        }
    }
    Ok(freed)
}

/// Lines of a cart (a count query, for the lines limit).
async fn line_count(db: &Db, table: &str, user: &str) -> Result<usize, StoreError> {
    let request = db
        .client()
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :item)")
        .expression_attribute_values(":pk", s(format!("CART#{user}")))
        .expression_attribute_values(":item", s("ITEM#"))
        .select(aws_sdk_dynamodb::types::Select::Count)
        .consistent_read(true)
        .send();
    Ok(db.call("Query", table, request).await?.count.max(0) as usize)
}

/// The expiry of a line changed now: a full reservation from now, but never past the line's
/// maximum lifetime from its first reservation.
pub fn renewed_expiry(now_us: i64, since_us: i64, reservation_us: i64, max_us: i64) -> i64 {
    (now_us + reservation_us).min(since_us + max_us)
}

impl Shop {
    /// The customer's cart.
    pub async fn cart(&self, user: &str) -> Result<Cart, CommerceError> {
        let lines = lines(self.db(), self.table(), user).await?;
        Ok(view(&lines, self.now_us()))
    }

    /// Sets the quantity of `sku` in the cart to `target(units held now)` (0 removes the line),
    /// reserving or giving back the difference; the line's reservation is renewed (within its
    /// maximum lifetime). Returns the cart as it is then.
    pub async fn set_cart_line(
        &self,
        user: &str,
        sku: &str,
        target: impl Fn(i64) -> i64,
    ) -> Result<Cart, CommerceError> {
        if !catalog::valid_sku(sku) {
            return Err(CommerceError::NotFound(format!("no variant {sku}")));
        }
        let (db, table) = (self.db(), self.table());
        let config = &self.platform.config.cart;
        let reservation_us = config.reservation.as_micros() as i64;
        let max_us = config.max_reservation.as_micros() as i64;
        let mut swept = false;
        for _ in 0..5 {
            let now_us = self.now_us();
            let Some(variant) = catalog::variant(db, table, sku).await? else {
                return Err(invalid("variant", format!("no variant {sku}")));
            };
            let current: Option<LineItem> = db.get_consistent(table, line_key(user, sku)).await?;
            let held = current.as_ref().map_or(0, |l| l.quantity);
            let quantity = target(held);
            if !(0..=i64::from(MAX_QUANTITY)).contains(&quantity) {
                return Err(invalid(
                    "quantity",
                    format!("must be between 0 and {MAX_QUANTITY}"),
                ));
            }
            if quantity > held && !variant.active {
                return Err(invalid("variant", format!("{sku} is no longer sold")));
            }
            if current.is_none() && quantity > 0 {
                let count = line_count(db, table, user).await?;
                if count >= config.max_lines {
                    return Err(invalid(
                        "cart",
                        format!("a cart holds at most {} lines", config.max_lines),
                    ));
                }
            }
            let delta = quantity - held;
            let mut tx = Tx::new(table);
            if delta != 0 {
                tx.update(
                    variant_key(sku),
                    "SET available = available - :d",
                    (delta > 0).then_some("available >= :d"),
                    vec![(":d", n(delta))],
                )?;
            }
            let (line_condition, condition_values) = match &current {
                None => ("attribute_not_exists(pk)", Vec::new()),
                Some(line) => (
                    "quantity = :held AND expires_at_us = :held_until",
                    vec![
                        (":held", n(line.quantity)),
                        (":held_until", n(line.expires_at_us)),
                    ],
                ),
            };
            if quantity == 0 {
                if current.is_none() {
                    return self.cart(user).await;
                }
                tx.delete(line_key(user, sku), line_condition, condition_values)?;
            } else {
                let since = current
                    .as_ref()
                    .map(|l| l.reserved_since_us)
                    .filter(|since| *since > 0)
                    .unwrap_or(now_us);
                let expires_at_us = renewed_expiry(now_us, since, reservation_us, max_us);
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
                    reserved_since_us: since,
                };
                tx.put(&line, Some(line_condition), condition_values)?;
            }
            match db.commit(tx).await? {
                Ok(()) => return self.cart(user).await,
                Err(cancelled) => {
                    let stock_failed =
                        delta > 0 && (cancelled.reasons.is_none() || cancelled.condition_failed(0));
                    if stock_failed {
                        if !swept && sweep_expired(db, table, sku, now_us).await? > 0 {
                            swept = true;
                            continue;
                        }
                        let latest = catalog::variant(db, table, sku)
                            .await?
                            .map_or(0, |v| v.available);
                        if cancelled.reasons.is_some() || latest < delta {
                            return Err(CommerceError::OutOfStock {
                                sku: sku.to_owned(),
                                available: latest.max(0) + held,
                            });
                        }
                    }
                    // The line changed under us (another tab, a sweep): read again.
                }
            }
        }
        Err(CommerceError::Conflict(
            "the cart changed while it was being updated; retry".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_never_pass_the_maximum_lifetime() {
        let minute = 60_000_000;
        // First reservation at 0: 15 minutes.
        assert_eq!(renewed_expiry(0, 0, 15 * minute, 60 * minute), 15 * minute);
        // Renewed at 50 minutes: capped at 60.
        assert_eq!(
            renewed_expiry(50 * minute, 0, 15 * minute, 60 * minute),
            60 * minute
        );
        // Renewed at 70 minutes: still 60, already lapsed.
        assert_eq!(
            renewed_expiry(70 * minute, 0, 15 * minute, 60 * minute),
            60 * minute
        );
    }
}
