//! The stock ledger: every change of a variant's `stock` (and of its `available` outside cart
//! reservations) is a movement, written in the same transaction as its cause, so `stock` is
//! always the sum of the variant's movements.
//!
//! Items: `LEDGER#<sku>` / `<microseconds, 20 digits>#<id>`, oldest first; one Query pages
//! through a variant's history.

use lumi_shared::store::{Db, StoreError, Tx, decode_cursor, encode_cursor, from_item, s};
use serde::{Deserialize, Serialize};

use crate::{
    CommerceError,
    model::{MovementKind, StockMove},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Movement {
    pub sku: String,
    pub kind: MovementKind,
    pub stock_delta: i64,
    pub available_delta: i64,
    /// `order:<reference>` (sales, restocks, reopen), `product:<id>` (initial stock),
    /// `admin:<id>` (adjustments, rebalance).
    pub cause: String,
    pub at: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct MovementItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    movement: Movement,
}

/// Adds a movement to `tx`.
pub(crate) fn record(
    tx: &mut Tx,
    movement: &StockMove,
    cause: &str,
    now_us: i64,
) -> Result<usize, StoreError> {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let item = MovementItem {
        pk: format!("LEDGER#{}", movement.sku),
        sk: format!("{now_us:020}#{id}"),
        movement: Movement {
            sku: movement.sku.clone(),
            kind: movement.kind,
            stock_delta: movement.stock_delta,
            available_delta: movement.available_delta,
            cause: cause.to_owned(),
            at: crate::rfc3339(now_us),
        },
    };
    tx.put(&item, Some("attribute_not_exists(pk)"), Vec::new())
}

/// A page of a variant's movements, oldest first, and the cursor of the next page.
pub async fn page(
    db: &Db,
    table: &str,
    sku: &str,
    limit: i32,
    cursor: Option<&str>,
) -> Result<(Vec<Movement>, Option<String>), CommerceError> {
    let pk = format!("LEDGER#{sku}");
    let start = cursor
        .map(|c| decode_cursor(c, "pk", &pk).map_err(|_| CommerceError::Malformed("cursor")))
        .transpose()?;
    let request = db
        .client()
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s(pk))
        .consistent_read(true)
        .limit(limit)
        .set_exclusive_start_key(start);
    let (items, last) = db.query_page(table, request).await?;
    let movements = items
        .into_iter()
        .map(|item| from_item::<MovementItem>(table, item).map(|m| m.movement))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((movements, last.as_ref().map(encode_cursor)))
}
