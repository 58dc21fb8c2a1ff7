//! The shop's domain: catalog, cart with stock reservations, orders and their lifecycle,
//! idempotent writes. Shared because the orders function and the admin function both move
//! orders and stock; no type here knows API Gateway or HTTP.
//!
//! Stock invariants (every change is a conditional write, several at once a transaction):
//! - `available` = `stock` − units held by reservations; a reservation takes `available` only
//!   while it is at least the quantity, so it never goes negative.
//! - Checkout consumes the exact reservations it read and takes `stock` under `stock >= qty`,
//!   together with the order, in one transaction: nothing interleaves to oversell.
//! - Stock comes back (cancel, failed payment, refund restock) in the same transaction as the
//!   status change that justifies it, conditional on the status before: exactly once.
//! - An expired reservation holds its stock until a sweep deletes it and gives the stock back,
//!   in one transaction conditional on the reservation being unchanged (the local stack never
//!   deletes TTL'd items, and DynamoDB may take 48 h: code never relies on TTL).

pub mod cart;
pub mod catalog;
pub mod content;
pub mod deliveries;
pub mod idempotency;
pub mod lifecycle;
pub mod orders;
pub mod outbox;
pub mod payments;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

use crate::store::{Item, StoreError};

/// The state of the functions that move orders (orders, admin): the platform and the outbox's
/// sender. Handlers extract `State<Arc<Platform>>` from it as well.
#[derive(Clone)]
pub struct ShopState {
    pub platform: std::sync::Arc<crate::platform::Platform>,
    pub outbox: outbox::OutboxSender,
}

impl ShopState {
    pub fn new(platform: std::sync::Arc<crate::platform::Platform>) -> Self {
        Self {
            outbox: outbox::OutboxSender::new(&platform),
            platform,
        }
    }
}

impl axum::extract::FromRef<ShopState> for std::sync::Arc<crate::platform::Platform> {
    fn from_ref(state: &ShopState) -> Self {
        state.platform.clone()
    }
}

/// Cart and order metrics.
pub const CART_OPERATIONS_TOTAL: &str = "lumi_cart_operations_total";
pub const ORDER_CREATED_TOTAL: &str = "order_created_total";
pub const ORDER_STATUS_TRANSITIONS_TOTAL: &str = "order_status_transitions_total";

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn invalid(table: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Service {
        op: "TransactWriteItems",
        table: table.to_owned(),
        code: "InvalidRequest".into(),
        message: error.to_string(),
    }
}

/// A transaction part, built with the table's name.
pub(crate) fn put(
    table: &str,
    item: Item,
    condition: Option<&str>,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .set_condition_expression(condition.map(str::to_owned))
        .build()
        .map_err(|e| invalid(table, e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Attribute names that are DynamoDB reserved words, by the placeholders this crate uses.
const RESERVED: &[(&str, &str)] = &[
    ("#status", "status"),
    ("#state", "state"),
    ("#response", "response"),
    ("#count", "count"),
    ("#lines", "lines"),
    ("#timeline", "timeline"),
    ("#payment", "payment"),
    ("#version", "version"),
];

pub(crate) fn update(
    table: &str,
    key: Item,
    expression: &str,
    condition: Option<&str>,
    values: Vec<(&str, AttributeValue)>,
) -> Result<TransactWriteItem, StoreError> {
    let mut builder = Update::builder()
        .table_name(table)
        .set_key(Some(key))
        .update_expression(expression)
        .set_condition_expression(condition.map(str::to_owned));
    for (name, value) in values {
        builder = builder.expression_attribute_values(name, value);
    }
    for (placeholder, name) in RESERVED {
        if expression.contains(placeholder) || condition.is_some_and(|c| c.contains(placeholder)) {
            builder = builder.expression_attribute_names(*placeholder, *name);
        }
    }
    Ok(TransactWriteItem::builder()
        .update(builder.build().map_err(|e| invalid(table, e))?)
        .build())
}

pub(crate) fn delete(
    table: &str,
    key: Item,
    condition: &str,
    values: Vec<(&str, AttributeValue)>,
) -> Result<TransactWriteItem, StoreError> {
    let mut builder = Delete::builder()
        .table_name(table)
        .set_key(Some(key))
        .condition_expression(condition);
    for (name, value) in values {
        builder = builder.expression_attribute_values(name, value);
    }
    for (placeholder, name) in RESERVED {
        if condition.contains(placeholder) {
            builder = builder.expression_attribute_names(*placeholder, *name);
        }
    }
    Ok(TransactWriteItem::builder()
        .delete(builder.build().map_err(|e| invalid(table, e))?)
        .build())
}

/// Which parts of a cancelled transaction failed their condition (by position), when the
/// service says; `None` when it gave no reasons.
pub(crate) async fn transact_reasons(
    db: &crate::store::Db,
    table: &str,
    items: Vec<TransactWriteItem>,
) -> Result<Result<(), Option<Vec<bool>>>, StoreError> {
    use aws_sdk_dynamodb::{
        error::SdkError, operation::transact_write_items::TransactWriteItemsError,
    };
    let request = db
        .client()
        .transact_write_items()
        .set_transact_items(Some(items))
        .send();
    let outcome = db.call("TransactWriteItems", table, async {
        match request.await {
            Ok(_) => Ok(Ok(())),
            Err(SdkError::ServiceError(error)) => match error.err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    let reasons = cancelled.cancellation_reasons.as_ref().map(|reasons| {
                        reasons
                            .iter()
                            .map(|r| r.code() == Some("ConditionalCheckFailed"))
                            .collect()
                    });
                    Ok(Err(reasons))
                }
                _ => Err(SdkError::ServiceError(error)),
            },
            Err(other) => Err(other),
        }
    });
    // Boxed: the SDK's futures are large, and every transaction of the shop goes through here.
    Box::pin(outcome).await
}

/// Time in RFC 3339 from the platform clock's microseconds.
pub fn rfc3339(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
