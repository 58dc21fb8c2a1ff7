//! Payments: the provider's word (webhook events) and the admin's (a manual capture, the
//! failed-payment procedure), applied to the order through [`crate::model::apply_payment`].
//!
//! The online provider (`lumipay`) signs its webhooks with HMAC-SHA256
//! (`Lumi-Signature: t=<unix seconds>,v1=<hex>` over `<t>.<body>`, the key in the config secret,
//! five minutes of tolerance against replays; several `v1` values are accepted for key rolls).
//! Its events: `payment.authorized`, `payment.captured` (with `amount_minor` and `currency`:
//! a capture that does not match what is due is an amount mismatch, never a payment),
//! `payment.failed`, `refund.succeeded` (with `refund_id`). Each event applies once (its id is
//! kept on the payment); a duplicate or an event with nothing to do in the current state is
//! acknowledged, never refused, so a provider never retries it forever. Unknown types are
//! acknowledged and logged.

use hmac::{Hmac, Mac as _};
use lumi_shared::idempotency::Done;
use serde::Deserialize;
use sha2::Sha256;

use crate::{
    Actor, CommerceError, Shop, invalid,
    model::{self, PaymentEvent, PaymentOutcome},
    orders::{Mutated, Planned},
    persist::{PaymentItem, payment_key},
};

const TOLERANCE_SECS: u64 = 300;

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
    if now_secs.abs_diff(timestamp) > TOLERANCE_SECS {
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

/// A provider's webhook body.
#[derive(Debug, Clone, Deserialize)]
pub struct Webhook {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub payment_id: String,
    #[serde(default)]
    pub amount_minor: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub refund_id: Option<String>,
}

impl Webhook {
    /// The event this webhook reports, `None` for a type this provider integration ignores.
    pub fn event(&self) -> Result<Option<PaymentEvent>, CommerceError> {
        if self.event_id.is_empty() || self.event_id.len() > 128 {
            return Err(invalid("event_id", "1 to 128 characters"));
        }
        Ok(Some(match self.kind.as_str() {
            "payment.authorized" => PaymentEvent::Authorized,
            "payment.captured" => {
                let (Some(amount_minor), Some(currency)) = (self.amount_minor, &self.currency)
                else {
                    return Err(invalid(
                        "amount_minor",
                        "a capture carries amount_minor and currency",
                    ));
                };
                PaymentEvent::Captured {
                    amount_minor,
                    currency: currency.clone(),
                }
            }
            "payment.failed" => PaymentEvent::Failed {
                reason: self
                    .reason
                    .clone()
                    .unwrap_or_else(|| "the payment failed".into()),
            },
            "refund.succeeded" => PaymentEvent::RefundSucceeded {
                refund_id: self
                    .refund_id
                    .clone()
                    .ok_or_else(|| invalid("refund_id", "a refund event names its refund"))?,
            },
            _ => return Ok(None),
        }))
    }
}

/// What applying an event did, for the provider's acknowledgement.
#[derive(Debug, Clone)]
pub enum Applied {
    Changed(Box<model::Change>),
    Duplicate,
    Ignored(String),
}

/// A valid payment id (`pay_` and 32 hex digits), checked before any AWS call.
pub fn valid_payment_id(id: &str) -> bool {
    id.len() == 36 && id.starts_with("pay_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl Shop {
    /// The payment projection of `id` (which order it belongs to, its provider).
    pub async fn payment(&self, id: &str) -> Result<PaymentItem, CommerceError> {
        if !valid_payment_id(id) {
            return Err(CommerceError::NotFound(format!("no payment {id}")));
        }
        self.db()
            .get_consistent::<PaymentItem>(self.table(), payment_key(id))
            .await?
            .ok_or_else(|| CommerceError::NotFound(format!("no payment {id}")))
    }

    /// Applies one payment event of `provider` to the order of `payment_id`.
    pub async fn apply_payment_event(
        &self,
        provider: &str,
        payment_id: &str,
        event_id: &str,
        event: &PaymentEvent,
        actor: &Actor,
    ) -> Result<Applied, CommerceError> {
        let payment = self.payment(payment_id).await?;
        if payment.provider != provider {
            return Err(CommerceError::NotFound(format!(
                "no {provider} payment {payment_id}"
            )));
        }
        let outcome = std::sync::Mutex::new(None);
        let respond = |_: &model::Order| serde_json::Value::Null;
        let note = match event {
            PaymentEvent::Authorized => "payment authorized".to_owned(),
            PaymentEvent::Captured {
                amount_minor,
                currency,
            } => format!("capture of {amount_minor} {currency}"),
            PaymentEvent::Failed { reason } => format!("payment failed: {reason}"),
            PaymentEvent::RefundSucceeded { refund_id } => format!("refund {refund_id} settled"),
        };
        let done = self
            .mutate(
                &payment.order_reference,
                actor,
                &note,
                None,
                &respond,
                |order, cx| {
                    let applied =
                        model::apply_payment(order, event_id, event, cx.refund_id, &cx.act)?;
                    let planned = match &applied {
                        PaymentOutcome::Changed(change) => Planned::Change(change.clone()),
                        PaymentOutcome::Duplicate => Planned::Unchanged("a duplicate event".into()),
                        PaymentOutcome::Ignored(why) => Planned::Unchanged(why.clone()),
                    };
                    if let Ok(mut slot) = outcome.lock() {
                        *slot = Some(applied);
                    }
                    Ok(planned)
                },
            )
            .await?;
        let Done::Fresh(mutated) = done else {
            return Err(CommerceError::Internal("an unguarded replay".into()));
        };
        let applied = outcome.into_inner().ok().flatten();
        Ok(match (mutated, applied) {
            (Mutated::Changed(change), _) => Applied::Changed(change),
            (_, Some(PaymentOutcome::Duplicate)) => Applied::Duplicate,
            (Mutated::Unchanged { why, .. }, _) => Applied::Ignored(why),
        })
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
        // Extreme timestamps are stale, not an overflow.
        assert_eq!(
            verify(
                b"secret",
                Some(&sign(b"secret", i64::MIN, body)),
                body,
                i64::MAX
            ),
            Err(SignatureError::Stale)
        );
    }
}
