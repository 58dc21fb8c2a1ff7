//! The outbox: messages for SQS written in the same DynamoDB transaction as the change that
//! causes them, then sent and deleted. A send that fails leaves the message in the outbox for the
//! next flush (`lumi outbox flush`, and every later flush by the function), so a refund email is
//! never lost between the database and the queue; the consumer deduplicates by `idempotency_id`.
//! With `TRACING_ENABLED=1` a message keeps the trace of the request that queued it and carries
//! it to the consumer as the `traceparent` message attribute.

use std::collections::HashMap;

use aws_sdk_sqs::types::MessageAttributeValue;
use lumi_shared::{
    store::{Db, StoreError, Tx, from_item, key, s},
    telemetry::trace,
};
use serde::{Deserialize, Serialize};

use crate::{CommerceError, rfc3339};

/// `sendOrderRefundEmail`'s message, version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundEmail {
    pub schema: u32,
    /// `order_refund`.
    pub kind: String,
    /// The same for every delivery of one refund: the consumer sends once per id.
    pub idempotency_id: String,
    pub order_reference: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub recipient: String,
    pub locale: String,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct OutboxItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    /// The message, as sent.
    body: String,
    /// The trace of the request that queued the message (W3C `traceparent`, with
    /// `TRACING_ENABLED=1`), sent as the message attribute of that name: the consumer's span
    /// joins it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

/// Adds `email` to a transaction (once per idempotency id).
pub fn record(tx: &mut Tx, email: &RefundEmail, now_us: i64) -> Result<usize, StoreError> {
    let body = serde_json::to_string(email).map_err(|e| StoreError::Service {
        op: "TransactWriteItems",
        table: tx.table().to_owned(),
        code: "InvalidRequest".into(),
        message: e.to_string(),
    })?;
    let item = OutboxItem {
        pk: format!("OUTBOX#{}", email.idempotency_id),
        sk: "OUTBOX".into(),
        gsi1pk: "OUTBOX".into(),
        gsi1sk: format!("{}#{}", rfc3339(now_us), email.idempotency_id),
        body,
        traceparent: lumi_shared::telemetry::trace::current_traceparent(),
    };
    tx.put(&item, Some("attribute_not_exists(pk)"), Vec::new())
}

/// Sends every pending message to `queue_url` and deletes each one sent. Returns how many were
/// sent; a failed send stays for the next flush.
pub async fn flush(
    db: &Db,
    table: &str,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<usize, CommerceError> {
    let request = db
        .client()
        .query()
        .table_name(table)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :outbox")
        .expression_attribute_values(":outbox", s("OUTBOX"))
        .send();
    let page = db.call("Query", table, request).await?;
    let mut sent = 0;
    for item in page.items.unwrap_or_default() {
        let message: OutboxItem = from_item(table, item)?;
        let trace = message.traceparent.as_deref().and_then(|traceparent| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(traceparent)
                .build()
                .ok()
        });
        let send = sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(&message.body)
            .set_message_attributes(
                trace.map(|value| HashMap::from([(trace::TRACEPARENT.to_owned(), value)])),
            )
            .send();
        let send = trace::aws_call("SQS", "SendMessage", None, send);
        match tokio::time::timeout(std::time::Duration::from_secs(5), send).await {
            Ok(Ok(_)) => {
                let request = db
                    .client()
                    .delete_item()
                    .table_name(table)
                    .set_key(Some(key(message.pk, message.sk)))
                    .send();
                db.call("DeleteItem", table, request).await?;
                sent += 1;
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %lumi_shared::error::error_chain(&error), "outbox message not sent; kept for the next flush");
            }
            Err(_) => tracing::warn!("outbox message not sent within 5 s; kept for the next flush"),
        }
    }
    Ok(sent)
}

/// Flushes the outbox to the refund-email queue: the SQS client (built on first use) and the
/// queue of `REFUND_EMAIL_QUEUE_URL`.
#[derive(Clone)]
pub struct OutboxSender {
    sqs: lumi_shared::aws::LazyClient<aws_sdk_sqs::Client>,
    queue_url: Option<String>,
}

impl OutboxSender {
    pub fn new(platform: &lumi_shared::Platform) -> Self {
        Self {
            sqs: lumi_shared::aws::LazyClient::new(&platform.sdk_config, aws_sdk_sqs::Client::new),
            queue_url: platform.config.refund_email_queue_url.clone(),
        }
    }

    /// Sends what waits in the outbox (see [`flush`]); without a queue configured the messages
    /// stay there, with a warning.
    pub async fn flush(&self, db: &Db, table: &str) -> Result<usize, CommerceError> {
        match &self.queue_url {
            Some(queue) => flush(db, table, self.sqs.get(), queue).await,
            None => {
                tracing::warn!(
                    "REFUND_EMAIL_QUEUE_URL is not set; the refund email waits in the outbox"
                );
                Ok(0)
            }
        }
    }
}
