//! How an order and a [`Change`] are stored: one transaction per change, holding everything the
//! change implies, so none of it can exist without the rest.
//!
//! - `ORDER#<reference>`/`ORDER`: the order (lines, payment, refunds, timeline), replaced whole
//!   under `version = <version read>`; its derived facets are stored beside it for filtering.
//!   `gsi1` lists a customer's orders (`CUSTOMER_ORDERS#<user>`), `gsi2` every order by time.
//! - `PAYMENT#<id>`/`PAYMENT`: a projection of the order's payment (rewritten from the same
//!   record in the same transaction: never a second truth), listed on `gsi1` by provider and
//!   status, and the way from a provider's payment id to its order.
//! - per stock move: the variant's counters (conditional) and a ledger movement.
//! - per email: an outbox message; one audit event; the idempotency record when guarded.

use lumi_shared::{
    audit::{self, AuditEvent},
    idempotency::Guard,
    store::{Item, StoreError, Tx, key, n},
};
use serde::{Deserialize, Serialize};

use crate::{
    Actor, ledger,
    model::{Change, Order, StockMove},
    outbox,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OrderItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    /// `ORDERS` / `<created_at>#<reference>`: every order by time, for the admin.
    pub gsi2pk: String,
    pub gsi2sk: String,
    /// Derived, stored for filters.
    #[serde(default)]
    pub financial_status: String,
    #[serde(default)]
    pub fulfillment_status: String,
    #[serde(flatten)]
    pub order: Order,
}

impl OrderItem {
    pub fn of(order: &Order) -> Self {
        Self {
            pk: format!("ORDER#{}", order.reference),
            sk: "ORDER".into(),
            gsi1pk: format!("CUSTOMER_ORDERS#{}", order.user_id),
            gsi1sk: format!("{}#{}", order.created_at, order.reference),
            gsi2pk: "ORDERS".into(),
            gsi2sk: format!("{}#{}", order.created_at, order.reference),
            financial_status: order.financial_status().as_str().into(),
            fulfillment_status: order.fulfillment_status().as_str().into(),
            order: order.clone(),
        }
    }
}

pub(crate) fn order_key(reference: &str) -> Item {
    key(format!("ORDER#{reference}"), "ORDER")
}

/// The payment projection (see the module's doc).
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
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub financial_status: String,
    /// The provider's payment (a Stripe PaymentIntent id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `PROVIDER_REF#<provider>#<provider's id>`: from a provider's payment (what its refund and
/// dispute events name) to Lumi's payment, written with the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProviderRefItem {
    pub pk: String,
    pub sk: String,
    pub payment_id: String,
    pub order_reference: String,
}

pub(crate) fn provider_ref_key(provider: &str, provider_ref: &str) -> Item {
    key(
        format!("PROVIDER_REF#{provider}#{provider_ref}"),
        "PROVIDER_REF",
    )
}

pub(crate) fn payment_key(id: &str) -> Item {
    key(format!("PAYMENT#{id}"), "PAYMENT")
}

fn payment_item(order: &Order, now: &str) -> PaymentItem {
    let p = &order.payment;
    PaymentItem {
        pk: format!("PAYMENT#{}", p.id),
        sk: "PAYMENT".into(),
        gsi1pk: format!("PAYMENTS#{}", p.provider),
        gsi1sk: format!("{}#{}", p.status.as_str(), order.created_at),
        payment_id: p.id.clone(),
        order_reference: order.reference.clone(),
        user_id: order.user_id.clone(),
        provider: p.provider.clone(),
        status: p.status.as_str().into(),
        amount_minor: p.amount_minor,
        currency: p.currency.clone(),
        captured_minor: p.captured_minor,
        refunded_minor: p.refunded_minor,
        financial_status: order.financial_status().as_str().into(),
        provider_ref: p.provider_ref.clone(),
        created_at: order.created_at.clone(),
        updated_at: now.to_owned(),
    }
}

/// Positions of a change's parts in its transaction, to tell which refused it.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    pub order: usize,
    /// (position of the variant update, sku)
    pub stock: Vec<(usize, String)>,
    pub guard: Option<usize>,
}

/// Adds one stock move (the variant's counters and the ledger movement) to `tx`. A move that
/// takes units is conditional: `stock >= q` for a sale (its units were reserved), `available >=
/// q` for anything else. Returns the position of the variant's update.
pub(crate) fn stock_move(
    tx: &mut Tx,
    movement: &StockMove,
    cause: &str,
    now_us: i64,
) -> Result<usize, StoreError> {
    let condition = if movement.stock_delta < 0 && movement.available_delta == 0 {
        "attribute_exists(pk) AND stock >= :take"
    } else if movement.available_delta < 0 || movement.stock_delta < 0 {
        "attribute_exists(pk) AND available >= :take AND stock >= :take"
    } else {
        "attribute_exists(pk)"
    };
    let take = (-movement.stock_delta)
        .max(-movement.available_delta)
        .max(0);
    let mut values = vec![
        (":s", n(movement.stock_delta)),
        (":a", n(movement.available_delta)),
    ];
    if take > 0 {
        values.push((":take", n(take)));
    }
    let at = tx.update(
        crate::catalog::variant_key(&movement.sku),
        "SET stock = stock + :s, available = available + :a",
        Some(condition),
        values,
    )?;
    ledger::record(tx, movement, cause, now_us)?;
    Ok(at)
}

/// Adds `change` to `tx`: the order (new, or under the version read), the payment projection,
/// the stock moves, the emails, the audit event and the guard's record of `response`.
pub(crate) fn write_change(
    tx: &mut Tx,
    change: &Change,
    actor: &Actor,
    new: bool,
    guard: Option<(&Guard, &serde_json::Value)>,
    now_us: i64,
) -> Result<Parts, StoreError> {
    let order = &change.after;
    let now = crate::rfc3339(now_us);
    let order_part = if new {
        tx.put(
            &OrderItem::of(order),
            Some("attribute_not_exists(pk)"),
            Vec::new(),
        )?
    } else {
        tx.put(
            &OrderItem::of(order),
            Some("#version = :version"),
            vec![(":version", n(change.before.version))],
        )?
    };
    let mut parts = Parts {
        order: order_part,
        ..Parts::default()
    };
    tx.put(&payment_item(order, &now), None, Vec::new())?;
    if new && let Some(provider_ref) = &order.payment.provider_ref {
        tx.put(
            &ProviderRefItem {
                pk: format!("PROVIDER_REF#{}#{provider_ref}", order.payment.provider),
                sk: "PROVIDER_REF".into(),
                payment_id: order.payment.id.clone(),
                order_reference: order.reference.clone(),
            },
            Some("attribute_not_exists(pk)"),
            Vec::new(),
        )?;
    }
    for refund in &order.refunds {
        if !change.before.refunds.contains(refund) {
            crate::refunds::project(tx, refund, order)?;
        }
    }
    for refund_id in &change.provider_refunds {
        crate::refunds::record(tx, refund_id, &order.reference, &now)?;
    }
    let cause = format!("order:{}", order.reference);
    for movement in &change.stock {
        let at = stock_move(tx, movement, &cause, now_us)?;
        parts.stock.push((at, movement.sku.clone()));
    }
    for email in &change.emails {
        outbox::record(
            tx,
            &outbox::RefundEmail {
                schema: 1,
                kind: email.kind.into(),
                idempotency_id: email.idempotency_id.clone(),
                order_reference: order.reference.clone(),
                payment_id: order.payment.id.clone(),
                amount_minor: email.amount_minor,
                currency: email.currency.clone(),
                recipient: order.customer_email.clone(),
                locale: "en".into(),
                reason: email.reason.clone(),
            },
            now_us,
        )?;
    }
    let event = order.timeline.last();
    audit::record_in(
        tx,
        &AuditEvent {
            actor: actor.name.clone(),
            action: change.action.clone(),
            target: cause,
            summary: serde_json::json!({
                "changes": event.map(|e| &e.changes),
                "note": event.map(|e| &e.note),
                "version": order.version,
            }),
            request_id: actor.request_id.clone(),
            client_ip: actor.client_ip.clone(),
            at: now,
        },
    )?;
    if let Some((guard, response)) = guard {
        parts.guard = Some(guard.record(tx, response, now_us)?);
    }
    Ok(parts)
}
