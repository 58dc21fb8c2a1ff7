//! Refund-email delivery records: one per refund (`DELIVERY#<idempotency id>`), claimed with a
//! condition before the email is sent, so a redelivered message never sends a second email.
//! Status: `sending` (claimed), `sent`, `retrying` (the last attempt failed; SQS will redeliver),
//! `failed` (gave up: the message goes to the dead-letter queue, or could not be read at all).
//! Listed by status on `gsi1` (`DELIVERIES#<status>`) for the admin's "notify the customer
//! manually" list.

use serde::{Deserialize, Serialize};

use lumi_shared::store::{Db, Item, StoreError, from_item, key, n, s};

use crate::rfc3339;

/// A `sending` claim older than this is from a worker that died mid-send: it may be taken over.
pub const STALE_SENDING_US: i64 = 5 * 60 * 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    pub status: String,
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub recipient: String,
    #[serde(default)]
    pub order_reference: String,
    #[serde(default)]
    pub amount_minor: i64,
    #[serde(default)]
    pub currency: String,
    pub updated_at: String,
    pub updated_at_us: i64,
}

#[derive(Serialize, Deserialize)]
struct DeliveryItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    #[serde(flatten)]
    delivery: Delivery,
}

fn delivery_key(id: &str) -> lumi_shared::store::Item {
    key(format!("DELIVERY#{id}"), "DELIVERY")
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker may send now (attempt number given).
    Send(u32),
    /// Already sent: nothing to do.
    AlreadySent,
    /// Given up earlier, or another worker is sending right now.
    Busy(String),
}

/// The context of a delivery, for the record.
pub struct About<'a> {
    pub recipient: &'a str,
    pub order_reference: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
}

/// Claims the delivery `id` for sending: new, retrying, failed (a message re-driven from the
/// dead-letter queue), or claimed by a worker that died mid-send.
pub async fn claim(
    db: &Db,
    table: &str,
    id: &str,
    about: &About<'_>,
    now_us: i64,
) -> Result<Claim, StoreError> {
    let request = db
        .client()
        .update_item()
        .table_name(table)
        .set_key(Some(delivery_key(id)))
        .update_expression(
            "SET #status = :sending, attempts = if_not_exists(attempts, :zero) + :one, updated_at = :now, \
             updated_at_us = :now_us, gsi1pk = :list, gsi1sk = :now, id = :id, recipient = :recipient, \
             order_reference = :reference, amount_minor = :amount, currency = :currency",
        )
        .condition_expression(
            "attribute_not_exists(pk) OR #status IN (:retrying, :failed) OR (#status = :sending AND updated_at_us < :stale)",
        )
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":sending", s("sending"))
        .expression_attribute_values(":retrying", s("retrying"))
        .expression_attribute_values(":failed", s("failed"))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":now", s(rfc3339(now_us)))
        .expression_attribute_values(":now_us", n(now_us))
        .expression_attribute_values(":stale", n(now_us - STALE_SENDING_US))
        .expression_attribute_values(":list", s("DELIVERIES#sending"))
        .expression_attribute_values(":id", s(id))
        .expression_attribute_values(":recipient", s(about.recipient))
        .expression_attribute_values(":reference", s(about.order_reference))
        .expression_attribute_values(":amount", n(about.amount_minor))
        .expression_attribute_values(":currency", s(about.currency))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
        .send();
    match db.call("UpdateItem", table, request).await {
        Ok(output) => {
            let attempts = output
                .attributes
                .and_then(|a| {
                    a.get("attempts")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse().ok())
                })
                .unwrap_or(1);
            Ok(Claim::Send(attempts))
        }
        Err(StoreError::ConditionFailed { .. }) => match get(db, table, id).await? {
            Some(d) if d.status == "sent" => Ok(Claim::AlreadySent),
            Some(d) => Ok(Claim::Busy(d.status)),
            None => Ok(Claim::Busy("unknown".into())),
        },
        Err(error) => Err(error),
    }
}

/// Records the outcome of an attempt: `sent`, `retrying` or `failed`.
pub async fn finish(
    db: &Db,
    table: &str,
    id: &str,
    status: &str,
    error: Option<&str>,
    now_us: i64,
) -> Result<(), StoreError> {
    let request = db
        .client()
        .update_item()
        .table_name(table)
        .set_key(Some(delivery_key(id)))
        .update_expression("SET #status = :status, last_error = :error, updated_at = :now, updated_at_us = :now_us, gsi1pk = :list, gsi1sk = :now")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":status", s(status))
        .expression_attribute_values(
            ":error",
            error.map_or(aws_sdk_dynamodb::types::AttributeValue::Null(true), s),
        )
        .expression_attribute_values(":now", s(rfc3339(now_us)))
        .expression_attribute_values(":now_us", n(now_us))
        .expression_attribute_values(":list", s(format!("DELIVERIES#{status}")))
        .send();
    db.call("UpdateItem", table, request).await.map(drop)
}

/// A message that cannot be read: recorded as failed at once (never retried).
pub async fn record_unreadable(
    db: &Db,
    table: &str,
    message_id: &str,
    error: &str,
    now_us: i64,
) -> Result<(), StoreError> {
    let id = format!("unreadable:{message_id}");
    let item = DeliveryItem {
        pk: format!("DELIVERY#{id}"),
        sk: "DELIVERY".into(),
        gsi1pk: "DELIVERIES#failed".into(),
        gsi1sk: rfc3339(now_us),
        delivery: Delivery {
            id,
            status: "failed".into(),
            attempts: 1,
            last_error: Some(error.to_owned()),
            recipient: String::new(),
            order_reference: String::new(),
            amount_minor: 0,
            currency: String::new(),
            updated_at: rfc3339(now_us),
            updated_at_us: now_us,
        },
    };
    db.put(table, &item).await
}

pub async fn get(db: &Db, table: &str, id: &str) -> Result<Option<Delivery>, StoreError> {
    Ok(db
        .get_consistent::<DeliveryItem>(table, delivery_key(id))
        .await?
        .map(|i| i.delivery))
}

/// The index partition listing deliveries in `status` (a cursor names it).
pub fn list_partition(status: &str) -> String {
    format!("DELIVERIES#{status}")
}

/// One page of deliveries in `status`, newest first, from `start`; the next page's start.
pub async fn list(
    db: &Db,
    table: &str,
    status: &str,
    limit: i32,
    start: Option<Item>,
) -> Result<(Vec<Delivery>, Option<Item>), StoreError> {
    let request = db
        .client()
        .query()
        .table_name(table)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :list")
        .expression_attribute_values(":list", s(list_partition(status)))
        .scan_index_forward(false)
        .limit(limit)
        .set_exclusive_start_key(start);
    let (items, next) = db.query_page(table, request).await?;
    let deliveries = items
        .into_iter()
        .map(|item| from_item::<DeliveryItem>(table, item).map(|i| i.delivery))
        .collect::<Result<_, _>>()?;
    Ok((deliveries, next))
}
