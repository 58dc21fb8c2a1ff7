//! Payments: the provider's word (Stripe's signed webhook events) and the admin's (a manual
//! capture, the failed-payment procedure), applied to the order through
//! [`crate::model::apply_payment`].
//!
//! Stripe's events at `POST /api/v1/payments/webhooks/stripe`, verified with `Stripe-Signature`
//! (the endpoint's signing secret `payment_webhook_secrets.stripe`; see [`crate::stripe`]):
//! - `payment_intent.succeeded`: a capture of what the intent received (`amount_received`):
//!   what is due pays the order, anything else is an amount mismatch;
//! - `payment_intent.payment_failed`: the failed-payment procedure (order cancelled, stock back
//!   once, one notice);
//! - `refund.created`/`refund.updated`/`refund.failed` and `charge.refunded`: Lumi's refund
//!   records settle or fail; a refund made in the Stripe dashboard is recorded as a money-only
//!   refund;
//! - `charge.dispute.created`: the order is flagged and the chargeback audited (the fraud
//!   procedure).
//!
//! Each event applies once (its id is kept on the payment); duplicates, events with nothing to
//! do in the current state, events about payments that are not Lumi's and unknown types are
//! acknowledged (2xx) and logged, never refused, so Stripe never retries them forever.

use lumi_shared::idempotency::Done;

use crate::{
    Actor, CommerceError, Shop,
    model::{self, PaymentEvent, PaymentOutcome},
    orders::{Mutated, Planned},
    persist::{PaymentItem, ProviderRefItem, payment_key, provider_ref_key},
    stripe::{self, EventObject},
};

/// What a webhook event did.
#[derive(Debug, Clone)]
pub enum WebhookOutcome {
    Applied(Vec<Applied>),
    /// A type Lumi does not act on.
    IgnoredType(String),
    /// About a payment that is not one of Lumi's orders.
    NotOurs(String),
    /// Lacking what Lumi needs to act (logged; Stripe always sends it).
    Unusable(String),
}

/// Why a webhook was refused before anything was read.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    #[error("the webhook signature is not valid: {0}")]
    Signature(stripe::SignatureError),
    #[error("the event is not understood: {0}")]
    Event(String),
}

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
            PaymentEvent::RefundSucceeded { refund_id, .. } => {
                format!("refund {refund_id} settled")
            }
            PaymentEvent::RefundAccepted { refund_id, .. } => {
                format!("refund {refund_id} accepted by the provider")
            }
            PaymentEvent::RefundFailed { refund_id, reason } => {
                format!("refund {refund_id} failed: {reason}")
            }
            PaymentEvent::ExternalRefund {
                amount_minor,
                currency,
                ..
            } => format!("refund of {amount_minor} {currency} made at the provider"),
            PaymentEvent::Disputed { reason, .. } => format!("chargeback opened: {reason}"),
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

/// The payment a Stripe event is about: its Lumi payment id from the intent's metadata, or
/// through the `PROVIDER_REF#stripe#<intent>` pointer.
enum Target {
    Payment(String),
    Intent(String),
    Unknown,
}

impl Shop {
    /// Verifies and applies one Stripe webhook (`body` as received). `now_secs` is the time
    /// the signature is checked against.
    pub async fn apply_stripe_webhook(
        &self,
        secret: &[u8],
        signature: Option<&str>,
        body: &[u8],
        now_secs: i64,
        actor: &Actor,
    ) -> Result<Result<WebhookOutcome, WebhookError>, CommerceError> {
        match stripe::verify_signature(secret, signature, body, now_secs) {
            Ok(_) => {}
            Err(stripe::SignatureError::Malformed) => return Ok(Err(WebhookError::Malformed)),
            Err(error) => return Ok(Err(WebhookError::Signature(error))),
        }
        let event = match stripe::parse_event(body) {
            Ok(event) => event,
            Err(error) => return Ok(Err(WebhookError::Event(error.to_string()))),
        };
        let mut changes: Vec<(Target, PaymentEvent, String)> = Vec::new();
        let id = event.id.clone();
        match event.object {
            EventObject::PaymentIntentSucceeded(intent) => {
                let Some(amount_minor) = intent.received_minor() else {
                    return Ok(Ok(WebhookOutcome::Unusable(format!(
                        "intent {} does not say what it received",
                        intent.id
                    ))));
                };
                changes.push((
                    target_of(&intent),
                    PaymentEvent::Captured {
                        amount_minor,
                        currency: intent.currency.to_ascii_uppercase(),
                    },
                    id,
                ));
            }
            EventObject::PaymentIntentPaymentFailed(intent) => {
                let reason = intent
                    .last_payment_error
                    .as_ref()
                    .and_then(|e| e.message.clone().or_else(|| e.code.clone()))
                    .unwrap_or_else(|| "the payment failed".into());
                changes.push((target_of(&intent), PaymentEvent::Failed { reason }, id));
            }
            EventObject::RefundCreated(refund)
            | EventObject::RefundUpdated(refund)
            | EventObject::RefundFailed(refund) => {
                if let Some(change) = refund_change(&refund) {
                    changes.push(change);
                }
            }
            EventObject::ChargeRefunded(charge) => {
                for refund in charge.refunds.iter().flat_map(|list| list.data.iter()) {
                    let mut refund = refund.clone();
                    if refund.payment_intent.is_none() {
                        refund.payment_intent = charge.payment_intent.clone();
                    }
                    if let Some(change) = refund_change(&refund) {
                        changes.push(change);
                    }
                }
            }
            EventObject::ChargeDisputeCreated(dispute) => {
                let target = dispute
                    .payment_intent
                    .clone()
                    .map_or(Target::Unknown, Target::Intent);
                changes.push((
                    target,
                    PaymentEvent::Disputed {
                        dispute_id: dispute.id.clone(),
                        amount_minor: dispute.amount,
                        currency: dispute.currency.clone(),
                        reason: dispute.reason,
                    },
                    id,
                ));
            }
            EventObject::Other(_) => {
                return Ok(Ok(WebhookOutcome::IgnoredType(event.kind)));
            }
        }
        let mut applied = Vec::new();
        for (target, change, event_id) in changes {
            let payment_id = match target {
                Target::Payment(id) => Some(id),
                Target::Intent(intent) => self.payment_of_intent(&intent).await?,
                Target::Unknown => None,
            };
            let Some(payment_id) = payment_id else {
                return Ok(Ok(WebhookOutcome::NotOurs(format!(
                    "a {} event about no payment of this shop",
                    event.kind
                ))));
            };
            match self
                .apply_payment_event("stripe", &payment_id, &event_id, &change, actor)
                .await
            {
                Ok(outcome) => applied.push(outcome),
                Err(CommerceError::NotFound(why)) => {
                    return Ok(Ok(WebhookOutcome::NotOurs(why)));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(Ok(WebhookOutcome::Applied(applied)))
    }

    async fn payment_of_intent(&self, intent: &str) -> Result<Option<String>, CommerceError> {
        if intent.is_empty() || intent.len() > 255 || !intent.is_ascii() {
            return Ok(None);
        }
        Ok(self
            .db()
            .get_consistent::<ProviderRefItem>(self.table(), provider_ref_key("stripe", intent))
            .await?
            .map(|item| item.payment_id))
    }
}

fn target_of(intent: &stripe::PaymentIntent) -> Target {
    match intent.payment_id() {
        Some(id) if valid_payment_id(id) => Target::Payment(id.to_owned()),
        _ => Target::Intent(intent.id.clone()),
    }
}

/// The change a Stripe refund object reports: for one of Lumi's records (its metadata names
/// it), succeeded or failed; for a refund made in the dashboard, an external refund once it
/// succeeded. Pending refunds change nothing yet.
fn refund_change(refund: &stripe::Refund) -> Option<(Target, PaymentEvent, String)> {
    let target = refund
        .payment_intent
        .clone()
        .map_or(Target::Unknown, Target::Intent);
    let event = match (refund.lumi_refund_id(), refund.status) {
        (Some(id), stripe::RefundStatus::Succeeded) => PaymentEvent::RefundSucceeded {
            refund_id: id.to_owned(),
            provider_refund_id: Some(refund.id.clone()),
        },
        (Some(id), stripe::RefundStatus::Failed | stripe::RefundStatus::Canceled) => {
            PaymentEvent::RefundFailed {
                refund_id: id.to_owned(),
                reason: refund
                    .failure_reason
                    .clone()
                    .unwrap_or_else(|| format!("{:?}", refund.status).to_lowercase()),
            }
        }
        (None, stripe::RefundStatus::Succeeded) => PaymentEvent::ExternalRefund {
            provider_refund_id: refund.id.clone(),
            amount_minor: refund.amount,
            currency: refund.currency.clone(),
        },
        _ => return None,
    };
    // One application per refund and state, however many events report it.
    let state = format!("{:?}", refund.status).to_lowercase();
    Some((target, event, format!("refund:{}:{state}", refund.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_ids_are_checked_by_shape() {
        assert!(valid_payment_id("pay_0123456789abcdef0123456789abcdef"));
        assert!(!valid_payment_id("pay_0123"));
        assert!(!valid_payment_id("PAYMENT#x"));
    }

    fn refund(metadata: Option<&str>, status: stripe::RefundStatus) -> stripe::Refund {
        stripe::Refund {
            id: "re_1".into(),
            amount: 500,
            currency: "eur".into(),
            status,
            payment_intent: Some("pi_1".into()),
            charge: None,
            failure_reason: None,
            reason: None,
            metadata: metadata
                .map(|id| {
                    [("refund_id".to_owned(), id.to_owned())]
                        .into_iter()
                        .collect()
                })
                .unwrap_or_default(),
            created: 0,
        }
    }

    #[test]
    fn refund_objects_settle_fail_or_record_dashboard_refunds() {
        let (_, event, id) =
            refund_change(&refund(Some("re_lumi"), stripe::RefundStatus::Succeeded)).unwrap();
        assert!(
            matches!(event, PaymentEvent::RefundSucceeded { ref refund_id, .. } if refund_id == "re_lumi")
        );
        assert_eq!(id, "refund:re_1:succeeded");
        let (_, event, _) =
            refund_change(&refund(Some("re_lumi"), stripe::RefundStatus::Failed)).unwrap();
        assert!(matches!(event, PaymentEvent::RefundFailed { .. }));
        let (_, event, _) = refund_change(&refund(None, stripe::RefundStatus::Succeeded)).unwrap();
        assert!(matches!(
            event,
            PaymentEvent::ExternalRefund {
                amount_minor: 500,
                ..
            }
        ));
        assert!(refund_change(&refund(None, stripe::RefundStatus::Pending)).is_none());
    }
}
