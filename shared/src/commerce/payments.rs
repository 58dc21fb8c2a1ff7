//! Payments: one `PAYMENT#<id>` item per order (`provider`: `manual`, or an online provider
//! with the `orderPayments` flag on), listed on `gsi1` by provider and status (the runbook's
//! "identify the failing provider from `Payment.provider`"). Online providers report through a
//! webhook signed with HMAC-SHA256 (`Lumi-Signature: t=<unix seconds>,v1=<hex>` over
//! `<t>.<body>`, the key in the config secret, five minutes of tolerance against replays).
//!
//! A capture moves the order to `paid`; a failure moves it to `payment_failed`, gives its stock
//! back and records the refund email in the outbox, all in one transaction. Each webhook event
//! applies once (its id is kept on the payment).

use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{
    lifecycle::OrderStatus,
    orders::{self, Change, Order},
    outbox, rfc3339, s, update,
};
use crate::{
    error::ApiError,
    store::{Db, Item, key},
};

const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub payment_id: String,
    pub order_reference: String,
    pub user_id: String,
    pub provider: String,
    /// `awaiting_payment` (manual), `pending`, `authorized`, `captured`, `failed`, `refunded`.
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub failure_reason: Option<String>,
}

pub fn payment_key(id: &str) -> Item {
    key(format!("PAYMENT#{id}"), "PAYMENT")
}

/// The payment record written with a new order.
pub fn for_order(order: &Order) -> PaymentItem {
    PaymentItem {
        pk: format!("PAYMENT#{}", order.payment.id),
        sk: "PAYMENT".into(),
        gsi1pk: format!("PAYMENTS#{}", order.payment.provider),
        gsi1sk: format!("{}#{}", order.payment.status, order.created_at),
        payment_id: order.payment.id.clone(),
        order_reference: order.reference.clone(),
        user_id: order.user_id.clone(),
        provider: order.payment.provider.clone(),
        status: order.payment.status.clone(),
        amount_minor: order.total_minor,
        currency: order.currency.clone(),
        created_at: order.created_at.clone(),
        updated_at: order.created_at.clone(),
        events: Vec::new(),
        failure_reason: None,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the Lumi-Signature header is missing or malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

/// The header value a provider sends for `body` at `timestamp` (tests and provider tooling).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail here.
    let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "t={timestamp},v1={}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Checks a `Lumi-Signature` header (constant-time comparison).
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Malformed)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v.to_owned()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_secs - timestamp).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let matches = signatures.iter().any(|candidate| {
        let bytes: Option<Vec<u8>> = (0..candidate.len())
            .step_by(2)
            .map(|i| {
                candidate
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        bytes.is_some_and(|bytes| {
            use subtle::ConstantTimeEq as _;
            bytes.len() == expected.len() && bool::from(bytes.ct_eq(&expected))
        })
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum EventKind {
    #[serde(rename = "payment.authorized")]
    Authorized,
    #[serde(rename = "payment.captured")]
    Captured,
    #[serde(rename = "payment.failed")]
    Failed,
}

/// A provider's webhook body.
#[derive(Debug, Clone, Deserialize)]
pub struct Webhook {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub payment_id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The payment (and maybe the order) moved; the order as it is now.
    Moved {
        payment_status: String,
        order: Option<Box<Order>>,
    },
    /// This event was applied before.
    Duplicate,
}

/// Applies one verified webhook event.
pub async fn apply(
    db: &Db,
    table: &str,
    provider: &str,
    webhook: &Webhook,
    recipient: impl AsyncFnOnce(&str) -> Result<String, ApiError>,
    now_us: i64,
) -> Result<Applied, ApiError> {
    let payment = db
        .get_consistent::<PaymentItem>(table, payment_key(&webhook.payment_id))
        .await?
        .filter(|p: &PaymentItem| p.provider == provider)
        .ok_or_else(|| {
            ApiError::not_found(format!("no {provider} payment {}", webhook.payment_id))
        })?;
    if payment.events.contains(&webhook.event_id) {
        return Ok(Applied::Duplicate);
    }
    let (to, order_to) = match (webhook.kind, payment.status.as_str()) {
        (EventKind::Authorized, "pending") => ("authorized", None),
        (EventKind::Captured, "pending" | "authorized") => ("captured", Some(OrderStatus::Paid)),
        (EventKind::Failed, "pending" | "authorized") => {
            ("failed", Some(OrderStatus::PaymentFailed))
        }
        (_, current) => {
            return Err(ApiError::Conflict(
                format!("a {current} payment does not take this event").into(),
            ));
        }
    };
    let now = rfc3339(now_us);
    let payment_update = update(
        table,
        payment_key(&payment.payment_id),
        "SET #status = :to, gsi1sk = :sort, updated_at = :now, events = list_append(events, :event), failure_reason = :reason",
        Some("#status = :from"),
        vec![
            (":to", s(to)),
            (":from", s(payment.status.clone())),
            (":sort", s(format!("{to}#{}", payment.created_at))),
            (":now", s(now)),
            (
                ":event",
                aws_sdk_dynamodb::types::AttributeValue::L(vec![s(webhook.event_id.clone())]),
            ),
            (
                ":reason",
                webhook
                    .reason
                    .clone()
                    .map_or(aws_sdk_dynamodb::types::AttributeValue::Null(true), s),
            ),
        ],
    )?;
    let Some(order_to) = order_to else {
        db.transact(table, vec![payment_update]).await?;
        return Ok(Applied::Moved {
            payment_status: to.into(),
            order: None,
        });
    };
    let order = orders::get(db, table, &payment.order_reference)
        .await?
        .ok_or_else(|| {
            ApiError::internal(format!("payment {} has no order", payment.payment_id))
        })?;
    let mut extra = vec![payment_update];
    if order_to == OrderStatus::PaymentFailed {
        let email = outbox::RefundEmail {
            schema: 1,
            kind: "order_refund".into(),
            idempotency_id: format!("{}:failed", payment.payment_id),
            order_reference: order.reference.clone(),
            payment_id: payment.payment_id.clone(),
            amount_minor: payment.amount_minor,
            currency: payment.currency.clone(),
            recipient: recipient(&order.user_id).await?,
            locale: "en".into(),
            reason: webhook
                .reason
                .clone()
                .unwrap_or_else(|| "the payment failed".into()),
        };
        extra.push(outbox::record(table, &email, now_us)?);
    }
    let actor = format!("provider:{provider}");
    let note = match order_to {
        OrderStatus::Paid => "payment captured".to_owned(),
        _ => format!(
            "payment failed: {}",
            webhook.reason.as_deref().unwrap_or("no reason given")
        ),
    };
    let change = Change {
        to: order_to,
        actor: &actor,
        note: &note,
        now_us,
        extra,
    };
    match orders::transition(db, table, &order, change, None).await? {
        Ok(order) => Ok(Applied::Moved {
            payment_status: to.into(),
            order: Some(Box::new(order)),
        }),
        Err(_) => Err(ApiError::Conflict(
            "the order or payment changed meanwhile; the provider should retry".into(),
        )),
    }
}

/// The amount of a payment, for a `Money`.
pub fn amount(payment: &PaymentItem) -> super::catalog::Money {
    super::catalog::Money {
        amount_minor: payment.amount_minor,
        currency: payment.currency.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_refuse_tampering_staleness_and_garbage() {
        let body = br#"{"event_id":"e1"}"#;
        let header = sign(b"secret", 1_000, body);
        assert_eq!(verify(b"secret", Some(&header), body, 1_100), Ok(()));
        assert_eq!(
            verify(b"other", Some(&header), body, 1_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", Some(&header), b"{}", 1_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", Some(&header), body, 2_000),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"secret", Some("t=1000"), body, 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"secret", None, body, 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"secret", Some("t=1000,v1=zz"), body, 1_000),
            Err(SignatureError::Mismatch)
        );
    }
}
