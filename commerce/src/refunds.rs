//! Refunds asked of the online provider. A refund record of an online payment is committed
//! `requested`, together with a `PROVIDER_REFUND#<refund id>` outbox item (so it cannot be
//! forgotten); right after the commit Lumi asks the provider, with an idempotency key derived
//! from the record (`lumi-refund-<refund id>`: a retried request never makes a second
//! refund), and applies the answer to the record: `succeeded`, `failed` (money still owed,
//! listed for admins and counted in `lumi_refunds_failed_total`), or accepted and pending
//! until the provider's event. A provider that does not answer leaves the outbox item: the
//! refund stays `requested` and is asked again (same key) after each of Stripe's webhooks (a
//! few at a time: Stripe calls often) and by `POST /api/v1/admin/refunds/retry`.
//! Refunds of admin listings (`GET /api/v1/admin/refunds?status=`) come from `REFUND#<id>`
//! projections written with each change of a record.

use lumi_shared::store::{Item, StoreError, Tx, from_item, key, s};
use serde::{Deserialize, Serialize};

use crate::{
    Actor, CommerceError, Shop,
    model::{Order, PaymentEvent, Refund, RefundStatus},
    orders::Planned,
    provider::{PaymentProvider, ProviderError, ProviderRefund, RefundStart},
};

/// How long a refund waits before a retry asks the provider again.
pub const RETRY_AFTER_US: i64 = 30 * 1_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProviderRefundItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    refund_id: String,
    order_reference: String,
}

fn outbox_key(refund_id: &str) -> Item {
    key(format!("PROVIDER_REFUND#{refund_id}"), "PROVIDER_REFUND")
}

/// Adds the outbox item of a refund to ask of the provider.
pub(crate) fn record(
    tx: &mut Tx,
    refund_id: &str,
    order_reference: &str,
    now: &str,
) -> Result<usize, StoreError> {
    tx.put(
        &ProviderRefundItem {
            pk: format!("PROVIDER_REFUND#{refund_id}"),
            sk: "PROVIDER_REFUND".into(),
            gsi1pk: "PROVIDER_REFUNDS".into(),
            gsi1sk: format!("{now}#{refund_id}"),
            refund_id: refund_id.to_owned(),
            order_reference: order_reference.to_owned(),
        },
        Some("attribute_not_exists(pk)"),
        Vec::new(),
    )
}

/// A refund record as listed for admins, rewritten with every change of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundItem {
    pub pk: String,
    pub sk: String,
    /// `REFUNDS#<status>` / `<created_at>#<id>`.
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub order_reference: String,
    pub provider: String,
    #[serde(flatten)]
    pub refund: Refund,
}

/// Adds the listing projection of `refund`.
pub(crate) fn project(tx: &mut Tx, refund: &Refund, order: &Order) -> Result<usize, StoreError> {
    let status = serde_json::to_value(refund.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    tx.put(
        &RefundItem {
            pk: format!("REFUND#{}", refund.id),
            sk: "REFUND".into(),
            gsi1pk: format!("REFUNDS#{status}"),
            gsi1sk: format!("{}#{}", refund.created_at, refund.id),
            order_reference: order.reference.clone(),
            provider: order.payment.provider.clone(),
            refund: refund.clone(),
        },
        None,
        Vec::new(),
    )
}

impl Shop {
    /// Asks the provider for each of `refund_ids` of `order` and applies its answers (as the
    /// provider, within `on_behalf`'s request if any: its metrics count them). Returns the
    /// order as it is after them (unchanged when the provider could not be reached).
    pub(crate) async fn ask_provider_refunds(
        &self,
        order: &Order,
        refund_ids: &[String],
        on_behalf: &Actor,
    ) -> Result<Order, CommerceError> {
        let mut latest = order.clone();
        for refund_id in refund_ids {
            let Some(refund) = latest.refunds.iter().find(|r| &r.id == refund_id).cloned() else {
                continue;
            };
            if refund.status != RefundStatus::Requested {
                self.forget_provider_refund(refund_id).await?;
                continue;
            }
            let Some(provider_ref) = latest.payment.provider_ref.clone() else {
                tracing::error!(%refund_id, reference = %latest.reference, "an online refund of a payment with no provider reference");
                continue;
            };
            let asked = self
                .stripe
                .refund(&RefundStart {
                    provider_ref,
                    refund_id: refund_id.clone(),
                    order_reference: latest.reference.clone(),
                    amount_minor: refund.amount_minor,
                    idempotency_key: format!("lumi-refund-{refund_id}"),
                })
                .await;
            let event = match asked {
                Ok(ProviderRefund::Succeeded { provider_refund_id }) => {
                    PaymentEvent::RefundSucceeded {
                        refund_id: refund_id.clone(),
                        provider_refund_id: Some(provider_refund_id),
                    }
                }
                Ok(ProviderRefund::Pending { provider_refund_id }) => {
                    PaymentEvent::RefundAccepted {
                        refund_id: refund_id.clone(),
                        provider_refund_id,
                    }
                }
                Ok(ProviderRefund::Failed {
                    provider_refund_id,
                    reason,
                }) => PaymentEvent::RefundFailed {
                    refund_id: refund_id.clone(),
                    reason: format!("{reason} ({provider_refund_id})"),
                },
                Err(ProviderError::Refused(reason)) => PaymentEvent::RefundFailed {
                    refund_id: refund_id.clone(),
                    reason,
                },
                Err(error) => {
                    tracing::warn!(%refund_id, %error, "refund not asked of the provider; kept for the next flush");
                    continue;
                }
            };
            let event_id = format!("provider-refund:{refund_id}");
            let actor = on_behalf.within("provider:stripe");
            let done = self
                .mutate_inner(
                    &latest.reference,
                    &actor,
                    "the provider's answer to a refund",
                    None,
                    &|_| serde_json::Value::Null,
                    |order, cx| {
                        Ok(
                            match crate::model::apply_payment(
                                order,
                                &event_id,
                                &event,
                                cx.refund_id,
                                &cx.act,
                            )? {
                                crate::model::PaymentOutcome::Changed(change) => {
                                    Planned::Change(change)
                                }
                                crate::model::PaymentOutcome::Duplicate => {
                                    Planned::Unchanged("answer applied already".into())
                                }
                                crate::model::PaymentOutcome::Ignored(why) => {
                                    Planned::Unchanged(why)
                                }
                            },
                        )
                    },
                )
                .await?;
            if let lumi_shared::idempotency::Done::Fresh(mutated) = done {
                latest = mutated.order().clone();
            }
            self.forget_provider_refund(refund_id).await?;
        }
        Ok(latest)
    }

    async fn forget_provider_refund(&self, refund_id: &str) -> Result<(), CommerceError> {
        let request = self
            .db()
            .client()
            .delete_item()
            .table_name(self.table())
            .set_key(Some(outbox_key(refund_id)))
            .send();
        self.db().call("DeleteItem", self.table(), request).await?;
        Ok(())
    }

    /// Asks the provider again for the refunds it could not be asked before (oldest first, at
    /// most `limit`), once they have waited [`RETRY_AFTER_US`]: a younger one may still be in
    /// its own first ask (asking twice at once is what the idempotency key is for, but there is
    /// no need to lean on it). The answers are applied through `mutate`, which counts them (in
    /// `on_behalf`'s request metrics, if any). Returns how many orders the answers changed.
    pub async fn retry_provider_refunds(
        &self,
        limit: i32,
        on_behalf: &Actor,
    ) -> Result<usize, CommerceError> {
        let request = self
            .db()
            .client()
            .query()
            .table_name(self.table())
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :p AND gsi1sk < :before")
            .expression_attribute_values(":p", s("PROVIDER_REFUNDS"))
            .expression_attribute_values(
                ":before",
                s(crate::rfc3339(self.now_us() - RETRY_AFTER_US)),
            )
            .limit(limit);
        let (items, _) = self.db().query_page(self.table(), request).await?;
        let mut answered = 0;
        for item in items {
            let waiting: ProviderRefundItem = from_item(self.table(), item)?;
            let Ok(order) = self.order(&waiting.order_reference).await else {
                continue;
            };
            let after = Box::pin(self.ask_provider_refunds(
                &order,
                std::slice::from_ref(&waiting.refund_id),
                on_behalf,
            ))
            .await?;
            if after.version != order.version {
                answered += 1;
            }
        }
        Ok(answered)
    }

    /// Refund records in one status, newest first; a page.
    pub async fn refunds(
        &self,
        status: RefundStatus,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<(Vec<RefundItem>, Option<String>), CommerceError> {
        let status_name = serde_json::to_value(status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let pk = format!("REFUNDS#{status_name}");
        let start = cursor
            .map(|c| {
                lumi_shared::store::decode_cursor(c, "gsi1pk", &pk)
                    .map_err(|_| CommerceError::Malformed("cursor"))
            })
            .transpose()?;
        let request = self
            .db()
            .client()
            .query()
            .table_name(self.table())
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :p")
            .expression_attribute_values(":p", s(pk))
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(start);
        let (items, last) = self.db().query_page(self.table(), request).await?;
        let refunds = items
            .into_iter()
            .map(|item| from_item::<RefundItem>(self.table(), item))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            refunds,
            last.as_ref().map(lumi_shared::store::encode_cursor),
        ))
    }
}
