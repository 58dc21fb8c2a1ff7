//! `sendOrderRefundEmail`: takes the refund-email messages the orders and admin functions put on
//! `RefundEmailQueue` and sends each through SES v2, exactly once toward the customer.
//!
//! - Every record of a batch is handled in a task of its own: a bad record, or one that panics,
//!   is that record's failure (`batchItemFailures`) and never fails the others. Each runs in its
//!   own span, with `TRACING_ENABLED=1` a child of the request that queued the message (its
//!   `traceparent` attribute).
//! - A delivery record is claimed with a condition before sending (see
//!   `lumi_commerce::deliveries`): a redelivered message finds it `sent` and sends
//!   nothing.
//! - A failed send is `retrying` and reported, so SQS redelivers it; at the last receive
//!   (`REFUND_EMAIL_MAX_RECEIVES`, the queue's `maxReceiveCount`) the record becomes `failed` and the
//!   message moves to the dead-letter queue: the admin's list of deliveries to make by hand.
//! - A message that cannot be read is recorded `failed` at once and reported, so it is not
//!   retried forever: after `maxReceiveCount` receives it rests in the dead-letter queue.
//! - Every failed record except a busy claim (another receive is sending it: not an error) is
//!   also sent to the error reporter (`lumi_shared::telemetry::report`), with the function, the
//!   message id and what failed, never the message (no address, no order details); the last
//!   receive's failure says the message goes to the dead-letter queue. Reporting is bounded by
//!   its deadline and never changes the record's outcome.

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use lumi_commerce::{
    deliveries::{self, About, Claim},
    outbox::RefundEmail,
};
use lumi_shared::{
    Platform,
    aws::LazyClient,
    bootstrap::SqsHandler,
    error::error_chain,
    telemetry::{
        report::{self, ErrorEvent, Source},
        trace,
    },
};
use tracing::Instrument as _;

/// Why a record failed: SQS redelivers it (and after `maxReceiveCount` receives moves it to
/// the dead-letter queue).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Not a refund email of schema 1: recorded `failed` at once.
    #[error("unreadable refund-email message: {0}")]
    Unreadable(String),
    /// Another receive of the message holds the delivery's claim.
    #[error("delivery {id} is {status}")]
    Busy { id: String, status: String },
    /// SES did not take it; at the last receive the delivery is recorded `failed`.
    #[error("refund email not sent (receive {receives}): {error}")]
    NotSent {
        error: String,
        receives: u32,
        last: bool,
    },
    /// The delivery records could not be read or written.
    #[error("delivery record: {0}")]
    Store(String),
}

impl Failure {
    /// What the error reporter is told, or `None` (a busy claim is no error). Never the
    /// message's contents: an unreadable message's parse error may quote them.
    pub fn report_text(&self) -> Option<String> {
        match self {
            Self::Busy { .. } => None,
            Self::Unreadable(_) => Some(
                "unreadable refund-email message: recorded failed; it goes to the dead-letter queue"
                    .into(),
            ),
            Self::NotSent {
                error,
                receives,
                last: true,
            } => Some(format!(
                "refund email not sent at the last receive ({receives}): recorded failed; the message goes to the dead-letter queue: {error}"
            )),
            Self::NotSent {
                error, receives, ..
            } => Some(format!(
                "refund email not sent (receive {receives}; SQS redelivers it): {error}"
            )),
            Self::Store(error) => Some(format!("delivery record: {error}")),
        }
    }
}

#[derive(Clone)]
pub struct Worker {
    platform: Arc<Platform>,
    ses: LazyClient<aws_sdk_sesv2::Client>,
}

impl Worker {
    pub fn new(platform: Arc<Platform>) -> Self {
        let ses = LazyClient::new(&platform.sdk_config, aws_sdk_sesv2::Client::new);
        Self { platform, ses }
    }

    fn table(&self) -> &str {
        &self.platform.config.tables.app
    }

    /// One record: `Err` reports it as failed (SQS redelivers it).
    async fn process(&self, record: SqsMessage) -> Result<(), Failure> {
        let message_id = record.message_id.clone().unwrap_or_default();
        let receives: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let now = self.platform.clock.now_us();
        let db = &self.platform.db;
        let email = match parse(record.body.as_deref().unwrap_or_default()) {
            Ok(email) => email,
            Err(reason) => {
                // Recorded failed at once, and reported: SQS retries it a bounded number of
                // times and then keeps it in the dead-letter queue for someone to read.
                tracing::error!(%message_id, %reason, "unreadable refund-email message; recorded as failed");
                deliveries::record_unreadable(db, self.table(), &message_id, &reason, now)
                    .await
                    .map_err(|e| Failure::Store(e.to_string()))?;
                return Err(Failure::Unreadable(reason));
            }
        };
        let about = About {
            recipient: &email.recipient,
            order_reference: &email.order_reference,
            amount_minor: email.amount_minor,
            currency: &email.currency,
        };
        match deliveries::claim(db, self.table(), &email.idempotency_id, &about, now)
            .await
            .map_err(|e| Failure::Store(e.to_string()))?
        {
            Claim::AlreadySent => return Ok(()),
            Claim::Busy(status) => {
                return Err(Failure::Busy {
                    id: email.idempotency_id.clone(),
                    status,
                });
            }
            Claim::Send(_) => {}
        }
        let sent =
            tokio::time::timeout(std::time::Duration::from_secs(10), self.send(&email)).await;
        let outcome = match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error),
            Err(_) => Err("SES did not answer within 10 s".to_owned()),
        };
        let now = self.platform.clock.now_us();
        match outcome {
            Ok(()) => {
                deliveries::finish(db, self.table(), &email.idempotency_id, "sent", None, now)
                    .await
                    .map_err(|e| Failure::Store(e.to_string()))?;
                tracing::info!(delivery = %email.idempotency_id, order = %email.order_reference, "refund email sent");
                Ok(())
            }
            Err(error) => {
                let last = receives >= self.platform.config.refund_email_max_receives;
                let status = if last { "failed" } else { "retrying" };
                deliveries::finish(
                    db,
                    self.table(),
                    &email.idempotency_id,
                    status,
                    Some(&error),
                    now,
                )
                .await
                .map_err(|e| Failure::Store(e.to_string()))?;
                tracing::warn!(delivery = %email.idempotency_id, %error, receives, status, "refund email not sent");
                Err(Failure::NotSent {
                    error,
                    receives,
                    last,
                })
            }
        }
    }

    /// Tells the error reporter about a failed record (within its deadline; never fails).
    async fn report(&self, message_id: &str, what: &str) {
        let config = &self.platform.config;
        let event = ErrorEvent {
            message: what,
            source: Source::Message(message_id),
            function: &config.function_name,
            route: "refund-email record",
            stage: &config.stage,
        };
        report::report(&self.platform, &event).await;
    }

    async fn send(&self, email: &RefundEmail) -> Result<(), String> {
        let sender = self
            .platform
            .config
            .refund_email_from
            .clone()
            .ok_or_else(|| "REFUND_EMAIL_FROM is not set".to_owned())?;
        let (subject, text, html) = render(email);
        let content = |data: String| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| e.to_string())
        };
        let message = Message::builder()
            .subject(content(subject)?)
            .body(
                Body::builder()
                    .text(content(text)?)
                    .html(content(html)?)
                    .build(),
            )
            .build();
        let send = self
            .ses
            .get()
            .send_email()
            .from_email_address(sender)
            .destination(
                Destination::builder()
                    .to_addresses(email.recipient.clone())
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .send();
        trace::aws_call("SESv2", "SendEmail", None, send)
            .await
            .map(drop)
            .map_err(|e| error_chain(&e))
    }
}

impl SqsHandler for Worker {
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let tasks: Vec<_> = event
            .records
            .into_iter()
            .map(|record| {
                let id = record.message_id.clone().unwrap_or_default();
                let worker = self.clone();
                let message_id = id.clone();
                // The record's span continues the trace of the request that queued it.
                let span = trace::message_span(&self.platform.config.function_name, &record);
                (
                    id,
                    tokio::spawn(
                        async move {
                            let result = worker.process(record).await;
                            if let Err(failure) = &result
                                && let Some(text) = failure.report_text()
                            {
                                worker.report(&message_id, &text).await;
                            }
                            result
                        }
                        .instrument(span),
                    ),
                )
            })
            .collect();
        let mut response = SqsBatchResponse::default();
        for (id, task) in tasks {
            let failed = match task.await {
                Ok(Ok(())) => false,
                Ok(Err(error)) => {
                    tracing::warn!(message_id = %id, %error, "refund-email record failed; SQS will redeliver it");
                    true
                }
                Err(join) => {
                    tracing::error!(message_id = %id, panicked = join.is_panic(), "refund-email record crashed");
                    self.report(&id, "the refund-email record's task crashed")
                        .await;
                    true
                }
            };
            if failed {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }
}

/// Reads a message of schema 1.
pub fn parse(body: &str) -> Result<RefundEmail, String> {
    let email: RefundEmail =
        serde_json::from_str(body).map_err(|e| format!("not a refund email: {e}"))?;
    if email.schema != 1 || !["order_refund", "payment_failed"].contains(&email.kind.as_str()) {
        return Err(format!(
            "unknown message schema {} kind {}",
            email.schema, email.kind
        ));
    }
    if !email.recipient.contains('@') || email.idempotency_id.is_empty() {
        return Err("the message has no recipient or no idempotency id".into());
    }
    Ok(email)
}

/// `21.00 EUR`: minor units in the currency's own decimals.
pub fn format_amount(minor: i64, currency: &str) -> String {
    const ZERO_DECIMAL: &[&str] = &["JPY", "KRW", "VND", "CLP", "ISK", "HUF"];
    if ZERO_DECIMAL.contains(&currency) {
        return format!("{minor} {currency}");
    }
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", minor / 100, minor % 100)
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

/// Subject, plain text and HTML of a refund email (`order_refund`), or of the failed-payment
/// notice (`payment_failed`: nothing was charged, the order was cancelled).
pub fn render(email: &RefundEmail) -> (String, String, String) {
    let amount = format_amount(email.amount_minor, &email.currency);
    if email.kind == "payment_failed" {
        let subject = format!(
            "Your payment for order {} did not go through",
            email.order_reference
        );
        let text = format!(
            "Hello,\n\nYour payment of {amount} for order {reference} did not go through, so nothing was charged and the order was cancelled.\nReason: {reason}\nPayment: {payment}\n\nYou are welcome to order again.\n\nYuki Yaki Corner",
            reference = email.order_reference,
            reason = email.reason,
            payment = email.payment_id,
        );
        let html = format!(
            "<p>Hello,</p><p>Your payment of <strong>{amount}</strong> for order <strong>{reference}</strong> did not go through, so nothing was charged and the order was cancelled.</p>\
             <p>Reason: {reason}<br>Payment: {payment}</p><p>You are welcome to order again.</p><p>Yuki Yaki Corner</p>",
            amount = escape(&amount),
            reference = escape(&email.order_reference),
            reason = escape(&email.reason),
            payment = escape(&email.payment_id),
        );
        return (subject, text, html);
    }
    let subject = format!("Your refund for order {}", email.order_reference);
    let text = format!(
        "Hello,\n\nWe have refunded {amount} for your order {reference}.\nReason: {reason}\nPayment: {payment}\n\nThe amount reaches your account within a few working days.\n\nYuki Yaki Corner",
        reference = email.order_reference,
        reason = email.reason,
        payment = email.payment_id,
    );
    let html = format!(
        "<p>Hello,</p><p>We have refunded <strong>{amount}</strong> for your order <strong>{reference}</strong>.</p>\
         <p>Reason: {reason}<br>Payment: {payment}</p><p>The amount reaches your account within a few working days.</p><p>Yuki Yaki Corner</p>",
        amount = escape(&amount),
        reference = escape(&email.order_reference),
        reason = escape(&email.reason),
        payment = escape(&email.payment_id),
    );
    (subject, text, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(reason: &str) -> RefundEmail {
        RefundEmail {
            schema: 1,
            kind: "order_refund".into(),
            idempotency_id: "pay_1:failed".into(),
            order_reference: "LUMI-AAAA-BBBB".into(),
            payment_id: "pay_1".into(),
            amount_minor: 2100,
            currency: "EUR".into(),
            recipient: "yuki@example.com".into(),
            locale: "en".into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn amounts_use_the_currencys_decimals() {
        assert_eq!(format_amount(2100, "EUR"), "21.00 EUR");
        assert_eq!(format_amount(5, "EUR"), "0.05 EUR");
        assert_eq!(format_amount(1200, "JPY"), "1200 JPY");
    }

    #[test]
    fn html_is_escaped_and_text_shows_the_details() {
        let (subject, text, html) = render(&email("<script>alert(1)</script> & co"));
        assert!(subject.contains("LUMI-AAAA-BBBB"));
        assert!(text.contains("21.00 EUR") && text.contains("<script>"));
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains("&amp; co"));
    }

    #[test]
    fn only_schema_1_refunds_are_read() {
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"schema":2}"#).is_err());
        let good = serde_json::to_string(&email("x")).unwrap();
        assert!(parse(&good).is_ok());
        assert!(parse(&good.replace("yuki@example.com", "nobody")).is_err());
    }
}
