//! The order and its rules, as pure functions: no database, no clock, no HTTP. Every use case
//! reads an [`Order`], asks one function here for a [`Change`] (or a refusal), and commits the
//! change in one transaction (`persist`). The history checker's model re-implements these rules
//! independently and must agree with them.
//!
//! An order has three facets, each with its own states:
//!
//! - its own [`OrderStatus`]: `open`, `cancelled`, `completed`;
//! - its [`FinancialStatus`], derived from the payment record and the refund records:
//!   `pending`, `authorized`, `paid`, `partially_refunded`, `refunded`, `voided`, and
//!   `refund_pending` (money must still go back: a refund recorded but not yet settled);
//! - its [`FulfillmentStatus`], derived from each line's counters (`fulfilled`, `removed`,
//!   `returned`, `refunded`, `restocked`).
//!
//! ```text
//!   open ──cancel──► cancelled ──reopen (nothing captured; stock taken again)──► open
//!    │   (customer, admin, failed payment: open units restocked, captured money refunded)
//!    └──complete (nothing left to ship, no refund pending, not awaiting money)──► completed
//! ```
//!
//! Invariants (checked by [`Order::check`], by the tests and by the history checker):
//! 1. per line: `fulfilled + removed <= quantity`, `returned <= fulfilled`,
//!    `restocked <= removed + returned`, `restocked <= quantity`, `refunded <= quantity`;
//! 2. money: `refunded_minor <= captured_minor <= amount_minor`, and `refunded_minor` is the
//!    sum of the refund records; a cancelled order holds no captured money without a refund
//!    record (`captured_minor == refunded_minor`);
//! 3. units leave stock once at checkout and come back at most once each: only through a
//!    cancel (open units), a refund with `restock_type` `cancel` (open units) or `return`
//!    (fulfilled units); shipped units never return by a status change.

use serde::{Deserialize, Serialize};

use crate::CommerceError;

/// The order's own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Open,
    Cancelled,
    Completed,
}

impl OrderStatus {
    pub const ALL: [Self; 3] = [Self::Open, Self::Cancelled, Self::Completed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Cancelled => "cancelled",
            Self::Completed => "completed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Where the money stands, derived from the payment and refund records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinancialStatus {
    /// Nothing captured yet (awaiting the provider, or a manual payment).
    Pending,
    Authorized,
    /// Captured in full, nothing refunded.
    Paid,
    PartiallyRefunded,
    /// Everything captured was refunded and settled.
    Refunded,
    /// Nothing was captured and nothing will be: the payment failed or the order was cancelled.
    Voided,
    /// A refund is recorded but not settled yet: money must still go back to the customer.
    RefundPending,
}

impl FinancialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Authorized => "authorized",
            Self::Paid => "paid",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Voided => "voided",
            Self::RefundPending => "refund_pending",
        }
    }
}

/// Where the goods stand, derived from the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentStatus {
    Unfulfilled,
    PartiallyFulfilled,
    Fulfilled,
    /// Every unit was taken off the order before it shipped (cancelled or refunded).
    Removed,
}

impl FulfillmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unfulfilled => "unfulfilled",
            Self::PartiallyFulfilled => "partially_fulfilled",
            Self::Fulfilled => "fulfilled",
            Self::Removed => "removed",
        }
    }
}

/// The payment record's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Awaiting money (online: the provider's events; manual: an admin records the capture).
    Pending,
    Authorized,
    Captured,
    Failed,
    /// The provider reported a capture of another amount or currency than is due: the order
    /// stays unpaid until an admin acts (the capture is kept in `mismatch`).
    AmountMismatch,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::Failed => "failed",
            Self::AmountMismatch => "amount_mismatch",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Authorized,
            Self::Captured,
            Self::Failed,
            Self::AmountMismatch,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether money may still arrive for this attempt.
    fn awaiting(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Authorized | Self::AmountMismatch
        )
    }
}

/// What a refund does to the stock of its units (Shopify's `restock_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestockType {
    /// Money only: unshipped units are taken off the order without going back on the shelf
    /// (damaged, lost); shipped units stay with the customer.
    NoRestock,
    /// Unshipped units are taken off the order and go back on the shelf.
    Cancel,
    /// Shipped units came back and go back on the shelf.
    Return,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// A `manual` refund: to pay back by hand, then settle.
    Pending,
    /// Asked of the online provider (or about to be): its answer or event settles it.
    Requested,
    Succeeded,
    /// The provider refused or failed it: the money is still owed (an admin pays it back by
    /// hand and settles it).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    /// Minor units (cents).
    #[schema(example = 2190)]
    pub amount_minor: i64,
    /// ISO 4217; empty only in the total of an empty cart (zero, in no currency).
    #[schema(pattern = "^([A-Z]{3})?$", example = "EUR")]
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderLine {
    /// 1-based line number.
    pub line: u32,
    pub sku: String,
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub total_minor: i64,
    /// Units shipped.
    #[serde(default)]
    pub fulfilled: i64,
    /// Units taken off the order before they shipped (cancel, refund of unshipped units).
    #[serde(default)]
    pub removed: i64,
    /// Shipped units that came back (a refund with `restock_type: return`).
    #[serde(default)]
    pub returned: i64,
    /// Units whose money was refunded.
    #[serde(default)]
    pub refunded: i64,
    /// Units put back in stock (each unit at most once).
    #[serde(default)]
    pub restocked: i64,
}

impl OrderLine {
    /// Units still to ship.
    pub fn open_units(&self) -> i64 {
        self.quantity - self.fulfilled - self.removed
    }

    /// Units that may still be refunded.
    pub fn refundable(&self) -> i64 {
        self.quantity - self.refunded
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Payment {
    pub id: String,
    /// `manual` (pay on pickup or by invoice) or an online provider.
    pub provider: String,
    pub status: PaymentStatus,
    /// What is due.
    pub amount_minor: i64,
    pub currency: String,
    #[serde(default)]
    pub captured_minor: i64,
    /// The sum of the order's refund records.
    #[serde(default)]
    pub refunded_minor: i64,
    /// 1 for the first attempt; a reopened order starts the next.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// Provider event ids already applied.
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// A capture that did not match what is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<Money>,
    /// The provider's object for this payment (a Stripe PaymentIntent id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<String>,
}

fn first_attempt() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefundLine {
    pub line: u32,
    pub quantity: i64,
    pub restock_type: RestockType,
}

/// A refund record: money going back, and what it did to the lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Refund {
    pub id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub lines: Vec<RefundLine>,
    pub reason: String,
    pub actor: String,
    pub status: RefundStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<String>,
    /// The provider's refund (a Stripe Refund id), once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_refund_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

impl From<&Refund> for Refund {
    fn from(refund: &Refund) -> Self {
        refund.clone()
    }
}

/// One facet's move, as the timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FacetChange {
    /// `order`, `financial`, `fulfillment` or `payment`.
    pub facet: String,
    pub from: String,
    pub to: String,
}

/// One mutation of the order: who, what, why, and every facet it moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimelineEvent {
    pub at: String,
    /// `user:<id>`, `admin:<id>`, `provider:<name>`, `system`.
    pub actor: String,
    /// `order.placed`, `order.cancel`, `payment.capture`, `order.refund`, ...
    pub action: String,
    pub note: String,
    #[serde(default)]
    pub changes: Vec<FacetChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub reference: String,
    pub user_id: String,
    /// Where refund emails go (copied at checkout: no read of the account per email).
    #[serde(default)]
    pub customer_email: String,
    pub status: OrderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    pub lines: Vec<OrderLine>,
    pub total_minor: i64,
    pub currency: String,
    pub payment: Payment,
    #[serde(default)]
    pub refunds: Vec<Refund>,
    pub timeline: Vec<TimelineEvent>,
    pub created_at: String,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A chargeback opened with the provider: the order is flagged for the fraud procedure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispute: Option<Dispute>,
}

/// A chargeback (`charge.dispute.created`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dispute {
    pub id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    pub opened_at: String,
}

/// Why a stock movement happened (the ledger's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// A variant's first stock.
    Initial,
    Sale,
    CancelRestock,
    RefundRestock,
    /// A reopened order takes its units again.
    Reopen,
    Adjustment,
    /// `available` repaired to `stock` minus live reservations (stock unchanged).
    Rebalance,
}

/// A change to one variant's counters, written with its cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockMove {
    pub sku: String,
    pub kind: MovementKind,
    pub stock_delta: i64,
    pub available_delta: i64,
}

/// A refund email to queue (one per refund record, one per failed payment attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailToSend {
    /// `order_refund`, or `payment_failed` (nothing was charged).
    pub kind: &'static str,
    pub idempotency_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
}

/// What a mutation does: the order after it, and what must be written with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub before: Order,
    pub after: Order,
    pub stock: Vec<StockMove>,
    pub emails: Vec<EmailToSend>,
    /// Refund records to ask of the online provider once this change is committed.
    pub provider_refunds: Vec<String>,
    /// The audit action (`order.cancel`, ...); the timeline event carries the same.
    pub action: String,
}

impl Change {
    /// The facets this change moved (for the timeline and the transitions metric).
    pub fn facet_changes(&self) -> Vec<FacetChange> {
        let mut changes = Vec::new();
        let mut push = |facet: &str, from: &str, to: &str| {
            if from != to {
                changes.push(FacetChange {
                    facet: facet.into(),
                    from: from.into(),
                    to: to.into(),
                });
            }
        };
        push(
            "order",
            self.before.status.as_str(),
            self.after.status.as_str(),
        );
        push(
            "financial",
            self.before.financial_status().as_str(),
            self.after.financial_status().as_str(),
        );
        push(
            "fulfillment",
            self.before.fulfillment_status().as_str(),
            self.after.fulfillment_status().as_str(),
        );
        push(
            "payment",
            self.before.payment.status.as_str(),
            self.after.payment.status.as_str(),
        );
        changes
    }
}

/// Who acts, when, and why: the context of every mutation.
#[derive(Debug, Clone)]
pub struct Act<'a> {
    pub actor: &'a str,
    pub now: &'a str,
    pub note: &'a str,
}

fn conflict(message: impl Into<String>) -> CommerceError {
    CommerceError::Conflict(message.into())
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> CommerceError {
    CommerceError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Order {
    pub fn captured_unrefunded(&self) -> i64 {
        self.payment.captured_minor - self.payment.refunded_minor
    }

    pub fn financial_status(&self) -> FinancialStatus {
        let payment = &self.payment;
        if self
            .refunds
            .iter()
            .any(|r| r.status != RefundStatus::Succeeded)
        {
            return FinancialStatus::RefundPending;
        }
        if payment.captured_minor > 0 {
            return if payment.refunded_minor == 0 {
                FinancialStatus::Paid
            } else if payment.refunded_minor < payment.captured_minor {
                FinancialStatus::PartiallyRefunded
            } else {
                FinancialStatus::Refunded
            };
        }
        if payment.status == PaymentStatus::Failed || self.status == OrderStatus::Cancelled {
            return FinancialStatus::Voided;
        }
        if payment.status == PaymentStatus::Authorized {
            FinancialStatus::Authorized
        } else {
            FinancialStatus::Pending
        }
    }

    pub fn fulfillment_status(&self) -> FulfillmentStatus {
        let shippable: i64 = self.lines.iter().map(|l| l.quantity - l.removed).sum();
        let fulfilled: i64 = self.lines.iter().map(|l| l.fulfilled).sum();
        if shippable == 0 {
            FulfillmentStatus::Removed
        } else if fulfilled == 0 {
            FulfillmentStatus::Unfulfilled
        } else if fulfilled < shippable {
            FulfillmentStatus::PartiallyFulfilled
        } else {
            FulfillmentStatus::Fulfilled
        }
    }

    /// The order's invariants; `Err` names the first one broken.
    pub fn check(&self) -> Result<(), String> {
        for l in &self.lines {
            let ok = l.fulfilled >= 0
                && l.removed >= 0
                && l.returned >= 0
                && l.refunded >= 0
                && l.restocked >= 0
                && l.fulfilled + l.removed <= l.quantity
                && l.returned <= l.fulfilled
                && l.restocked <= l.removed + l.returned
                && l.restocked <= l.quantity
                && l.refunded <= l.quantity;
            if !ok {
                return Err(format!("line {} counters are inconsistent: {l:?}", l.line));
            }
        }
        let p = &self.payment;
        if !(0 <= p.refunded_minor
            && p.refunded_minor <= p.captured_minor
            && p.captured_minor <= p.amount_minor)
        {
            return Err(format!(
                "money: refunded {} captured {} due {}",
                p.refunded_minor, p.captured_minor, p.amount_minor
            ));
        }
        let recorded: i64 = self.refunds.iter().map(|r| r.amount_minor).sum();
        if recorded != p.refunded_minor {
            return Err(format!(
                "refund records sum to {recorded}, the payment says {}",
                p.refunded_minor
            ));
        }
        if self.status == OrderStatus::Cancelled && p.captured_minor != p.refunded_minor {
            return Err("a cancelled order holds captured money without a refund record".into());
        }
        Ok(())
    }

    fn change(&self, action: &str) -> Change {
        let mut after = self.clone();
        after.version += 1;
        Change {
            before: self.clone(),
            after,
            stock: Vec::new(),
            emails: Vec::new(),
            provider_refunds: Vec::new(),
            action: action.into(),
        }
    }
}

impl Change {
    /// Appends the timeline event and checks the invariants of the result.
    fn finish(mut self, act: &Act<'_>) -> Result<Self, CommerceError> {
        let changes = self.facet_changes();
        self.after.timeline.push(TimelineEvent {
            at: act.now.to_owned(),
            actor: act.actor.to_owned(),
            action: self.action.clone(),
            note: act.note.to_owned(),
            changes,
        });
        self.after
            .check()
            .map_err(|broken| CommerceError::Internal(format!("{}: {broken}", self.action)))?;
        Ok(self)
    }

    /// Puts every open unit back on the shelf (taken off the order).
    fn remove_open_units(&mut self) {
        for line in &mut self.after.lines {
            let units = line.open_units();
            if units > 0 {
                line.removed += units;
                line.restocked += units;
                self.stock.push(StockMove {
                    sku: line.sku.clone(),
                    kind: MovementKind::CancelRestock,
                    stock_delta: units,
                    available_delta: units,
                });
            }
        }
    }

    /// Records a refund of everything captured and not yet refunded, with its email.
    fn refund_the_rest(&mut self, id: &str, reason: &str, act: &Act<'_>, restock: RestockType) {
        let amount = self.after.captured_unrefunded();
        if amount <= 0 {
            return;
        }
        let mut lines = Vec::new();
        for line in &mut self.after.lines {
            let units = line.refundable();
            if units > 0 {
                line.refunded += units;
                lines.push(RefundLine {
                    line: line.line,
                    quantity: units,
                    restock_type: restock,
                });
            }
        }
        self.push_refund(Refund {
            id: id.to_owned(),
            amount_minor: amount,
            currency: self.after.currency.clone(),
            lines,
            reason: reason.to_owned(),
            actor: act.actor.to_owned(),
            status: RefundStatus::Pending,
            idempotency_key: None,
            created_at: act.now.to_owned(),
            settled_at: None,
            provider_refund_id: None,
            failure_reason: None,
        });
    }

    /// Records a refund: `manual` ones wait to be paid back by hand (`pending`), online ones
    /// are asked of the provider after the commit (`requested`). One email per record.
    fn push_refund(&mut self, mut refund: Refund) {
        if self.after.payment.provider == "manual" {
            refund.status = RefundStatus::Pending;
        } else {
            refund.status = RefundStatus::Requested;
            self.provider_refunds.push(refund.id.clone());
        }
        self.record_refund(refund);
    }

    /// The bookkeeping every refund record gets, whatever its status: the payment's refunded
    /// sum and one email.
    fn record_refund(&mut self, refund: Refund) {
        self.after.payment.refunded_minor += refund.amount_minor;
        self.emails.push(EmailToSend {
            kind: "order_refund",
            idempotency_id: format!("refund:{}", refund.id),
            amount_minor: refund.amount_minor,
            currency: refund.currency.clone(),
            reason: refund.reason.clone(),
        });
        self.after.refunds.push(refund);
    }
}

/// Cancels an open order that has shipped nothing: open units back on the shelf, and a refund
/// record of every captured cent (with its email). `refund_id` names that refund if one is made.
pub fn cancel(
    order: &Order,
    reason: &str,
    refund_id: &str,
    act: &Act<'_>,
) -> Result<Change, CommerceError> {
    if order.status != OrderStatus::Open {
        return Err(conflict(format!(
            "an order that is {} cannot be cancelled",
            order.status.as_str()
        )));
    }
    if order.lines.iter().any(|l| l.fulfilled > 0) {
        return Err(conflict(
            "units of this order have shipped: refund them with restock_type return instead",
        ));
    }
    let mut change = order.change("order.cancel");
    change.after.status = OrderStatus::Cancelled;
    change.after.cancel_reason = Some(reason.to_owned());
    change.remove_open_units();
    change.refund_the_rest(
        refund_id,
        &format!("order cancelled: {reason}"),
        act,
        RestockType::Cancel,
    );
    change.finish(act)
}

/// A provider's (or an admin's) word about the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEvent {
    Authorized,
    Captured {
        amount_minor: i64,
        currency: String,
    },
    Failed {
        reason: String,
    },
    /// A refund record was paid back (the provider confirmed it, or an admin settled it).
    RefundSucceeded {
        refund_id: String,
        /// The provider's refund, when it says.
        provider_refund_id: Option<String>,
    },
    /// The provider took the refund request (its refund id) but has not paid it yet.
    RefundAccepted {
        refund_id: String,
        provider_refund_id: String,
    },
    /// The provider refused or failed a refund: the money is still owed.
    RefundFailed {
        refund_id: String,
        reason: String,
    },
    /// A refund made at the provider outside Lumi (the Stripe dashboard): recorded as a
    /// money-only refund, once per provider refund id.
    ExternalRefund {
        provider_refund_id: String,
        amount_minor: i64,
        currency: String,
    },
    /// A chargeback: the order is flagged for the fraud procedure.
    Disputed {
        dispute_id: String,
        amount_minor: i64,
        currency: String,
        reason: String,
    },
}

/// What a payment event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    Changed(Box<Change>),
    /// Applied before (same event id).
    Duplicate,
    /// Nothing to do in this state (a failure after the capture, a second capture...): the
    /// event is acknowledged and logged, never refused, so a provider does not retry it forever.
    Ignored(String),
}

/// Applies one payment event. `refund_id` names the refund a capture after a cancel makes.
pub fn apply_payment(
    order: &Order,
    event_id: &str,
    event: &PaymentEvent,
    refund_id: &str,
    act: &Act<'_>,
) -> Result<PaymentOutcome, CommerceError> {
    if order.payment.events.iter().any(|e| e == event_id) {
        return Ok(PaymentOutcome::Duplicate);
    }
    let status = order.payment.status;
    let mut change = match event {
        PaymentEvent::Authorized => {
            if status != PaymentStatus::Pending {
                return Ok(PaymentOutcome::Ignored(format!(
                    "an authorization for a {} payment",
                    status.as_str()
                )));
            }
            let mut change = order.change("payment.authorize");
            change.after.payment.status = PaymentStatus::Authorized;
            change
        }
        PaymentEvent::Captured {
            amount_minor,
            currency,
        } => {
            if !status.awaiting() && status != PaymentStatus::Failed {
                return Ok(PaymentOutcome::Ignored(format!(
                    "a capture for a {} payment",
                    status.as_str()
                )));
            }
            if *amount_minor != order.payment.amount_minor
                || !currency.eq_ignore_ascii_case(&order.payment.currency)
            {
                let mut change = order.change("payment.amount_mismatch");
                change.after.payment.status = PaymentStatus::AmountMismatch;
                change.after.payment.mismatch = Some(Money {
                    amount_minor: *amount_minor,
                    currency: currency.to_ascii_uppercase(),
                });
                change
            } else {
                let mut change = order.change("payment.capture");
                change.after.payment.status = PaymentStatus::Captured;
                change.after.payment.captured_minor = *amount_minor;
                change.after.payment.failure_reason = None;
                if order.status == OrderStatus::Cancelled {
                    // Money arrived for an order that will not be delivered: it goes back.
                    change.refund_the_rest(
                        refund_id,
                        "captured after the order was cancelled",
                        act,
                        RestockType::NoRestock,
                    );
                }
                change
            }
        }
        PaymentEvent::Failed { reason } => {
            if !status.awaiting() {
                return Ok(PaymentOutcome::Ignored(format!(
                    "a failure for a {} payment",
                    status.as_str()
                )));
            }
            let mut change = order.change("payment.fail");
            change.after.payment.status = PaymentStatus::Failed;
            change.after.payment.failure_reason = Some(reason.clone());
            if order.status == OrderStatus::Open {
                // Nothing ships before it is paid, so every unit is still open.
                change.after.status = OrderStatus::Cancelled;
                change.after.cancel_reason = Some(format!("payment failed: {reason}"));
                change.remove_open_units();
            }
            change.emails.push(EmailToSend {
                kind: "payment_failed",
                idempotency_id: format!(
                    "payment:{}:failed:{}",
                    order.payment.id, order.payment.attempt
                ),
                amount_minor: order.payment.amount_minor,
                currency: order.payment.currency.clone(),
                reason: reason.clone(),
            });
            change
        }
        PaymentEvent::RefundSucceeded {
            refund_id,
            provider_refund_id,
        } => {
            let Some(refund) = order.refunds.iter().find(|r| &r.id == refund_id) else {
                // Acknowledged, not refused: a provider would retry a refusal forever.
                return Ok(PaymentOutcome::Ignored(format!(
                    "no refund {refund_id} on this order"
                )));
            };
            if refund.status == RefundStatus::Succeeded {
                return Ok(PaymentOutcome::Ignored(format!(
                    "refund {refund_id} is settled already"
                )));
            }
            let mut change = order.change("refund.settle");
            if let Some(refund) = change.after.refunds.iter_mut().find(|r| &r.id == refund_id) {
                refund.status = RefundStatus::Succeeded;
                refund.settled_at = Some(act.now.to_owned());
                refund.failure_reason = None;
                if provider_refund_id.is_some() {
                    refund.provider_refund_id = provider_refund_id.clone();
                }
            }
            change
        }
        PaymentEvent::RefundAccepted {
            refund_id,
            provider_refund_id,
        } => {
            let Some(refund) = order.refunds.iter().find(|r| &r.id == refund_id) else {
                return Ok(PaymentOutcome::Ignored(format!(
                    "no refund {refund_id} on this order"
                )));
            };
            if refund.provider_refund_id.as_ref() == Some(provider_refund_id)
                || refund.status != RefundStatus::Requested
            {
                return Ok(PaymentOutcome::Ignored(format!(
                    "refund {refund_id} knows its provider refund already"
                )));
            }
            let mut change = order.change("refund.accepted");
            if let Some(refund) = change.after.refunds.iter_mut().find(|r| &r.id == refund_id) {
                refund.provider_refund_id = Some(provider_refund_id.clone());
            }
            change
        }
        PaymentEvent::RefundFailed { refund_id, reason } => {
            let Some(refund) = order.refunds.iter().find(|r| &r.id == refund_id) else {
                return Ok(PaymentOutcome::Ignored(format!(
                    "no refund {refund_id} on this order"
                )));
            };
            if refund.status != RefundStatus::Requested {
                return Ok(PaymentOutcome::Ignored(format!(
                    "refund {refund_id} is {:?} already",
                    refund.status
                )));
            }
            let mut change = order.change("refund.fail");
            if let Some(refund) = change.after.refunds.iter_mut().find(|r| &r.id == refund_id) {
                refund.status = RefundStatus::Failed;
                refund.failure_reason = Some(reason.clone());
            }
            change
        }
        PaymentEvent::ExternalRefund {
            provider_refund_id,
            amount_minor,
            currency,
        } => {
            if order
                .refunds
                .iter()
                .any(|r| r.provider_refund_id.as_ref() == Some(provider_refund_id))
            {
                return Ok(PaymentOutcome::Ignored(format!(
                    "refund {provider_refund_id} is recorded already"
                )));
            }
            if !currency.eq_ignore_ascii_case(&order.currency)
                || *amount_minor <= 0
                || *amount_minor > order.captured_unrefunded()
            {
                return Ok(PaymentOutcome::Ignored(format!(
                    "a refund of {amount_minor} {currency} does not fit what is captured and not refunded ({})",
                    order.captured_unrefunded()
                )));
            }
            let mut change = order.change("refund.external");
            let refund = Refund {
                id: refund_id.to_owned(),
                amount_minor: *amount_minor,
                currency: order.currency.clone(),
                lines: Vec::new(),
                reason: "refunded at the payment provider".into(),
                actor: act.actor.to_owned(),
                status: RefundStatus::Succeeded,
                idempotency_key: None,
                created_at: act.now.to_owned(),
                settled_at: Some(act.now.to_owned()),
                provider_refund_id: Some(provider_refund_id.clone()),
                failure_reason: None,
            };
            // Already made at the provider: recorded and emailed, not asked again.
            change.record_refund(refund);
            change
        }
        PaymentEvent::Disputed {
            dispute_id,
            amount_minor,
            currency,
            reason,
        } => {
            if order.dispute.as_ref().is_some_and(|d| &d.id == dispute_id) {
                return Ok(PaymentOutcome::Ignored(format!(
                    "dispute {dispute_id} is recorded already"
                )));
            }
            let mut change = order.change("payment.dispute");
            change.after.dispute = Some(Dispute {
                id: dispute_id.clone(),
                amount_minor: *amount_minor,
                currency: currency.to_ascii_uppercase(),
                reason: reason.clone(),
                opened_at: act.now.to_owned(),
            });
            change
        }
    };
    change.after.payment.events.push(event_id.to_owned());
    Ok(PaymentOutcome::Changed(Box::new(change.finish(act)?)))
}

/// One line of a refund request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefundRequestLine {
    pub line: u32,
    pub quantity: i64,
    pub restock_type: RestockType,
}

/// Refunds units of lines, each with its explicit restock choice. Money must have been
/// captured; the amount is what those units cost.
pub fn refund(
    order: &Order,
    request: &[RefundRequestLine],
    refund_id: &str,
    reason: &str,
    idempotency_key: Option<&str>,
    act: &Act<'_>,
) -> Result<Change, CommerceError> {
    if request.is_empty() {
        return Err(invalid("lines", "name at least one line"));
    }
    if order.payment.captured_minor == 0 {
        return Err(conflict(
            "nothing was captured for this order: cancel it instead of refunding",
        ));
    }
    if order.captured_unrefunded() == 0 || order.lines.iter().all(|l| l.refundable() == 0) {
        return Err(conflict("nothing is left to refund on this order"));
    }
    let mut change = order.change("order.refund");
    let mut amount = 0;
    let mut seen = std::collections::BTreeSet::new();
    for (i, wanted) in request.iter().enumerate() {
        let field = format!("lines[{i}]");
        if !seen.insert(wanted.line) {
            return Err(invalid(format!("{field}.line"), "names a line twice"));
        }
        let Some(line) = change
            .after
            .lines
            .iter_mut()
            .find(|l| l.line == wanted.line)
        else {
            return Err(invalid(format!("{field}.line"), "no such line"));
        };
        let q = wanted.quantity;
        let most = match wanted.restock_type {
            RestockType::Cancel => line.open_units().min(line.refundable()),
            RestockType::Return => (line.fulfilled - line.returned).min(line.refundable()),
            RestockType::NoRestock => line.refundable(),
        };
        if q < 1 || q > most {
            let what = match wanted.restock_type {
                RestockType::Cancel => "unshipped refundable units",
                RestockType::Return => "shipped refundable units not yet returned",
                RestockType::NoRestock => "refundable units",
            };
            return Err(invalid(
                format!("{field}.quantity"),
                if most == 0 {
                    format!("line {} has no {what}", line.line)
                } else {
                    format!("must be between 1 and {most} ({what})")
                },
            ));
        }
        line.refunded += q;
        amount += line.unit_price_minor * q;
        match wanted.restock_type {
            RestockType::Cancel => {
                line.removed += q;
                line.restocked += q;
            }
            RestockType::Return => {
                line.returned += q;
                line.restocked += q;
            }
            RestockType::NoRestock => {
                // Unshipped units come off the order first; shipped ones stay with the customer.
                line.removed += q.min(line.open_units());
            }
        }
        if matches!(
            wanted.restock_type,
            RestockType::Cancel | RestockType::Return
        ) {
            change.stock.push(StockMove {
                sku: line.sku.clone(),
                kind: MovementKind::RefundRestock,
                stock_delta: q,
                available_delta: q,
            });
        }
    }
    if amount > order.captured_unrefunded() {
        return Err(conflict(format!(
            "the refund ({amount}) exceeds what is captured and not refunded ({})",
            order.captured_unrefunded()
        )));
    }
    change.push_refund(Refund {
        id: refund_id.to_owned(),
        amount_minor: amount,
        currency: order.currency.clone(),
        lines: request
            .iter()
            .map(|l| RefundLine {
                line: l.line,
                quantity: l.quantity,
                restock_type: l.restock_type,
            })
            .collect(),
        reason: reason.to_owned(),
        actor: act.actor.to_owned(),
        status: RefundStatus::Pending,
        idempotency_key: idempotency_key.map(str::to_owned),
        created_at: act.now.to_owned(),
        settled_at: None,
        provider_refund_id: None,
        failure_reason: None,
    });
    change.finish(act)
}

/// Ships units: the named ones, or every open unit. Only an open order whose payment is
/// captured ships (a pending partial refund does not hold the rest back).
pub fn fulfil(
    order: &Order,
    request: Option<&[(u32, i64)]>,
    act: &Act<'_>,
) -> Result<Change, CommerceError> {
    if order.status != OrderStatus::Open {
        return Err(conflict(format!(
            "an order that is {} does not ship",
            order.status.as_str()
        )));
    }
    if order.payment.status != PaymentStatus::Captured {
        return Err(conflict(format!(
            "an order whose payment is {} does not ship",
            order.payment.status.as_str()
        )));
    }
    let mut change = order.change("order.fulfil");
    let mut shipped = 0;
    match request {
        None => {
            for line in &mut change.after.lines {
                let units = line.open_units();
                line.fulfilled += units;
                shipped += units;
            }
        }
        Some(lines) => {
            for (i, (number, quantity)) in lines.iter().enumerate() {
                let Some(line) = change.after.lines.iter_mut().find(|l| l.line == *number) else {
                    return Err(invalid(format!("lines[{i}].line"), "no such line"));
                };
                if *quantity < 1 || *quantity > line.open_units() {
                    return Err(invalid(
                        format!("lines[{i}].quantity"),
                        format!(
                            "must be between 1 and {} (units to ship)",
                            line.open_units()
                        ),
                    ));
                }
                line.fulfilled += quantity;
                shipped += quantity;
            }
        }
    }
    if shipped == 0 {
        return Err(conflict("nothing is left to ship"));
    }
    change.finish(act)
}

/// Archives an open order once nothing is left to ship and no money is outstanding.
pub fn complete(order: &Order, act: &Act<'_>) -> Result<Change, CommerceError> {
    if order.status != OrderStatus::Open {
        return Err(conflict(format!(
            "an order that is {} cannot be completed",
            order.status.as_str()
        )));
    }
    if order.lines.iter().any(|l| l.open_units() > 0) {
        return Err(conflict(
            "units are still to ship: fulfil, refund or cancel them first",
        ));
    }
    match order.financial_status() {
        FinancialStatus::Pending | FinancialStatus::Authorized => {
            return Err(conflict("the payment is still awaited"));
        }
        FinancialStatus::RefundPending => {
            return Err(conflict("a refund is still to settle"));
        }
        _ => {}
    }
    let mut change = order.change("order.complete");
    change.after.status = OrderStatus::Completed;
    change.finish(act)
}

/// Reopens a cancelled order on which no money was taken (the failed-payment retry): its units
/// are taken from stock again (the caller's write is conditional on `available >= qty`), and a
/// new payment attempt starts.
pub fn reopen(order: &Order, act: &Act<'_>) -> Result<Change, CommerceError> {
    if order.status != OrderStatus::Cancelled {
        return Err(conflict(format!(
            "an order that is {} cannot be reopened",
            order.status.as_str()
        )));
    }
    if order.payment.captured_minor > 0 || !order.refunds.is_empty() {
        return Err(conflict(
            "money was taken for this order: place a new order instead",
        ));
    }
    let mut change = order.change("order.reopen");
    change.after.status = OrderStatus::Open;
    change.after.cancel_reason = None;
    for line in &mut change.after.lines {
        let units = line.restocked;
        if units > 0 {
            change.stock.push(StockMove {
                sku: line.sku.clone(),
                kind: MovementKind::Reopen,
                stock_delta: -units,
                available_delta: -units,
            });
        }
        line.removed = 0;
        line.restocked = 0;
    }
    let payment = &mut change.after.payment;
    payment.status = PaymentStatus::Pending;
    payment.attempt += 1;
    payment.failure_reason = None;
    change.finish(act)
}

/// Prices cart lines from the catalog as it is now (never from the client).
pub fn price_lines(
    lines: &[(String, i64)],
    variants: &[crate::catalog::VariantItem],
) -> Result<(Vec<OrderLine>, String), CommerceError> {
    let mut order_lines = Vec::with_capacity(lines.len());
    let mut currency: Option<String> = None;
    for (i, (sku, quantity)) in lines.iter().enumerate() {
        let variant = variants
            .iter()
            .find(|v| &v.sku == sku)
            .filter(|v| v.active)
            .ok_or_else(|| {
                invalid(
                    format!("cart[{sku}]"),
                    format!("{sku} is no longer sold; remove it from the cart"),
                )
            })?;
        if *currency.get_or_insert_with(|| variant.currency.clone()) != variant.currency {
            return Err(invalid("cart", "the cart mixes currencies"));
        }
        order_lines.push(OrderLine {
            line: i as u32 + 1,
            sku: sku.clone(),
            product_id: variant.product_id.clone(),
            name: variant.name.clone(),
            quantity: *quantity,
            unit_price_minor: variant.price_minor,
            total_minor: variant.price_minor * quantity,
            fulfilled: 0,
            removed: 0,
            returned: 0,
            refunded: 0,
            restocked: 0,
        });
    }
    Ok((order_lines, currency.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act() -> Act<'static> {
        Act {
            actor: "admin:a",
            now: "2026-12-02T00:00:00Z",
            note: "test",
        }
    }

    fn order(lines: &[(i64, i64)]) -> Order {
        let lines: Vec<OrderLine> = lines
            .iter()
            .enumerate()
            .map(|(i, (q, price))| OrderLine {
                line: i as u32 + 1,
                sku: format!("SKU-{i}"),
                product_id: "p".into(),
                name: "n".into(),
                quantity: *q,
                unit_price_minor: *price,
                total_minor: q * price,
                fulfilled: 0,
                removed: 0,
                returned: 0,
                refunded: 0,
                restocked: 0,
            })
            .collect();
        let total = lines.iter().map(|l| l.total_minor).sum();
        Order {
            reference: "LUMI-0000-0000".into(),
            user_id: "u".into(),
            customer_email: "u@example.com".into(),
            status: OrderStatus::Open,
            cancel_reason: None,
            lines,
            total_minor: total,
            currency: "EUR".into(),
            payment: Payment {
                id: "pay_1".into(),
                provider: "lumipay".into(),
                status: PaymentStatus::Pending,
                amount_minor: total,
                currency: "EUR".into(),
                captured_minor: 0,
                refunded_minor: 0,
                attempt: 1,
                events: Vec::new(),
                failure_reason: None,
                mismatch: None,
                provider_ref: None,
            },
            refunds: Vec::new(),
            timeline: Vec::new(),
            created_at: "2026-12-02T00:00:00Z".into(),
            version: 1,
            note: None,
            dispute: None,
        }
    }

    fn changed(outcome: PaymentOutcome) -> Change {
        match outcome {
            PaymentOutcome::Changed(change) => *change,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    fn paid(order: &Order) -> Order {
        let event = PaymentEvent::Captured {
            amount_minor: order.total_minor,
            currency: "eur".into(),
        };
        changed(apply_payment(order, "evt_capture", &event, "r0", &act()).unwrap()).after
    }

    #[test]
    fn cancelling_a_paid_order_refunds_what_was_captured_and_restocks_once() {
        let order = paid(&order(&[(2, 500), (1, 300)]));
        assert_eq!(order.financial_status(), FinancialStatus::Paid);
        let change = cancel(&order, "changed my mind", "r1", &act()).unwrap();
        let after = &change.after;
        assert_eq!(after.status, OrderStatus::Cancelled);
        assert_eq!(after.payment.refunded_minor, 1_300);
        assert_eq!(after.refunds.len(), 1);
        assert_eq!(after.financial_status(), FinancialStatus::RefundPending);
        assert_eq!(change.emails.len(), 1);
        let restocked: i64 = change.stock.iter().map(|m| m.stock_delta).sum();
        assert_eq!(restocked, 3);
        assert!(cancel(after, "again", "r2", &act()).is_err());
        let settled = changed(
            apply_payment(
                after,
                "evt_r1",
                &PaymentEvent::RefundSucceeded {
                    refund_id: "r1".into(),
                    provider_refund_id: None,
                },
                "x",
                &act(),
            )
            .unwrap(),
        );
        assert_eq!(settled.after.financial_status(), FinancialStatus::Refunded);
    }

    #[test]
    fn a_capture_after_a_cancel_is_refunded_not_refused() {
        let order = order(&[(1, 2_500)]);
        let cancelled = cancel(&order, "no", "r1", &act()).unwrap().after;
        assert!(cancelled.refunds.is_empty(), "nothing was captured yet");
        assert_eq!(cancelled.financial_status(), FinancialStatus::Voided);
        let change = changed(
            apply_payment(
                &cancelled,
                "evt",
                &PaymentEvent::Captured {
                    amount_minor: 2_500,
                    currency: "EUR".into(),
                },
                "r2",
                &act(),
            )
            .unwrap(),
        );
        assert_eq!(change.after.payment.captured_minor, 2_500);
        assert_eq!(change.after.payment.refunded_minor, 2_500);
        assert!(change.stock.is_empty(), "the cancel restocked already");
        assert_eq!(change.emails.len(), 1);
    }

    #[test]
    fn a_capture_of_the_wrong_amount_leaves_the_order_unpaid() {
        let order = order(&[(1, 2_500)]);
        let event = PaymentEvent::Captured {
            amount_minor: 1,
            currency: "EUR".into(),
        };
        let change = changed(apply_payment(&order, "e", &event, "r", &act()).unwrap());
        assert_eq!(change.after.payment.status, PaymentStatus::AmountMismatch);
        assert_eq!(change.after.payment.captured_minor, 0);
        assert_eq!(change.after.financial_status(), FinancialStatus::Pending);
        assert!(fulfil(&change.after, None, &act()).is_err());
        let other_currency = PaymentEvent::Captured {
            amount_minor: 2_500,
            currency: "USD".into(),
        };
        let change = changed(apply_payment(&order, "e2", &other_currency, "r", &act()).unwrap());
        assert_eq!(change.after.payment.status, PaymentStatus::AmountMismatch);
    }

    #[test]
    fn duplicate_and_late_events_change_nothing() {
        let paid = paid(&order(&[(1, 100)]));
        assert_eq!(
            apply_payment(&paid, "evt_capture", &PaymentEvent::Authorized, "r", &act()).unwrap(),
            PaymentOutcome::Duplicate
        );
        assert!(matches!(
            apply_payment(
                &paid,
                "evt_late",
                &PaymentEvent::Failed {
                    reason: "late".into()
                },
                "r",
                &act()
            )
            .unwrap(),
            PaymentOutcome::Ignored(_)
        ));
    }

    #[test]
    fn a_failed_payment_cancels_restocks_and_emails_once_and_reopening_takes_stock_again() {
        let order = order(&[(2, 100)]);
        let failed = changed(
            apply_payment(
                &order,
                "e",
                &PaymentEvent::Failed {
                    reason: "declined".into(),
                },
                "r",
                &act(),
            )
            .unwrap(),
        );
        assert_eq!(failed.after.status, OrderStatus::Cancelled);
        assert_eq!(failed.stock[0].stock_delta, 2);
        assert_eq!(failed.emails.len(), 1);
        let reopened = reopen(&failed.after, &act()).unwrap();
        assert_eq!(reopened.stock[0].stock_delta, -2);
        assert_eq!(reopened.stock[0].available_delta, -2);
        assert_eq!(reopened.after.payment.status, PaymentStatus::Pending);
        assert_eq!(reopened.after.payment.attempt, 2);
        assert_eq!(reopened.after.lines[0].open_units(), 2);
        // The second attempt's failure is another email.
        let again = changed(
            apply_payment(
                &reopened.after,
                "e2",
                &PaymentEvent::Failed {
                    reason: "declined".into(),
                },
                "r",
                &act(),
            )
            .unwrap(),
        );
        assert_ne!(
            again.emails[0].idempotency_id,
            failed.emails[0].idempotency_id
        );
    }

    #[test]
    fn refund_arithmetic_and_restock_choices_per_unit() {
        let order = paid(&order(&[(3, 1_000), (2, 250)]));
        let shipped = fulfil(&order, Some(&[(1, 2)]), &act()).unwrap().after;
        // Line 1: 2 shipped, 1 open. Return both shipped, cancel the open one.
        let request = [
            RefundRequestLine {
                line: 1,
                quantity: 2,
                restock_type: RestockType::Return,
            },
            RefundRequestLine {
                line: 2,
                quantity: 1,
                restock_type: RestockType::NoRestock,
            },
        ];
        let change = refund(&shipped, &request, "r1", "damaged", Some("k"), &act()).unwrap();
        assert_eq!(change.after.refunds[0].amount_minor, 2_250);
        assert_eq!(change.after.payment.refunded_minor, 2_250);
        assert_eq!(
            change.stock.iter().map(|m| m.stock_delta).sum::<i64>(),
            2,
            "no_restock puts nothing back"
        );
        assert_eq!(change.after.lines[1].removed, 1);
        assert_eq!(
            change.after.financial_status(),
            FinancialStatus::RefundPending
        );
        // Shipped units cannot be "cancelled", and returned ones not returned twice.
        let again = [RefundRequestLine {
            line: 1,
            quantity: 1,
            restock_type: RestockType::Return,
        }];
        assert!(refund(&change.after, &again, "r2", "x", None, &act()).is_err());
        let cancel_shipped = [RefundRequestLine {
            line: 1,
            quantity: 2,
            restock_type: RestockType::Cancel,
        }];
        assert!(refund(&change.after, &cancel_shipped, "r2", "x", None, &act()).is_err());
        // An unpaid order is cancelled, not refunded.
        assert!(refund(&self::order(&[(1, 1)]), &again, "r", "x", None, &act()).is_err());
    }

    #[test]
    fn shipped_orders_cannot_be_cancelled_and_complete_only_when_settled() {
        let order = paid(&order(&[(1, 100)]));
        let shipped = fulfil(&order, None, &act()).unwrap().after;
        assert_eq!(shipped.fulfillment_status(), FulfillmentStatus::Fulfilled);
        assert!(cancel(&shipped, "x", "r", &act()).is_err());
        assert!(fulfil(&shipped, None, &act()).is_err());
        let done = complete(&shipped, &act()).unwrap().after;
        assert_eq!(done.status, OrderStatus::Completed);
        assert!(complete(&self::order(&[(1, 1)]), &act()).is_err());
    }

    fn variant(sku: &str, price: i64, currency: &str, active: bool) -> crate::catalog::VariantItem {
        crate::catalog::VariantItem {
            pk: format!("VARIANT#{sku}"),
            sk: "VARIANT".into(),
            gsi1pk: "CATALOG".into(),
            gsi1sk: format!("p#V#{sku}"),
            product_id: "p".into(),
            sku: sku.into(),
            name: sku.into(),
            price_minor: price,
            currency: currency.into(),
            stock: 10,
            available: 10,
            active,
        }
    }

    #[test]
    fn lines_are_priced_from_the_catalog_and_refuse_retired_or_mixed_carts() {
        let variants = [
            variant("A", 250, "EUR", true),
            variant("B", 1_000, "EUR", true),
            variant("C", 5, "USD", true),
            variant("D", 5, "EUR", false),
        ];
        let (lines, currency) =
            price_lines(&[("A".into(), 3), ("B".into(), 1)], &variants).unwrap();
        assert_eq!(currency, "EUR");
        assert_eq!(
            lines
                .iter()
                .map(|l| (l.line, l.total_minor))
                .collect::<Vec<_>>(),
            [(1, 750), (2, 1_000)]
        );
        let retired = price_lines(&[("A".into(), 1), ("D".into(), 1)], &variants).unwrap_err();
        assert!(matches!(retired, CommerceError::Invalid { ref field, .. } if field == "cart[D]"));
        let gone = price_lines(&[("Z".into(), 1)], &variants).unwrap_err();
        assert!(matches!(gone, CommerceError::Invalid { .. }));
        let mixed = price_lines(&[("A".into(), 1), ("C".into(), 1)], &variants).unwrap_err();
        assert!(matches!(mixed, CommerceError::Invalid { ref field, .. } if field == "cart"));
    }

    #[test]
    fn only_open_unshipped_orders_cancel_and_only_cancelled_unpaid_ones_reopen() {
        let open = order(&[(1, 100)]);
        assert!(reopen(&open, &act()).is_err());
        assert!(complete(&open, &act()).is_err(), "awaiting payment");
        let cancelled = cancel(&open, "x", "r", &act()).unwrap().after;
        assert!(complete(&cancelled, &act()).is_err());
        assert!(reopen(&cancelled, &act()).is_ok());
        let paid_then_cancelled = cancel(&paid(&open), "x", "r", &act()).unwrap().after;
        assert!(
            reopen(&paid_then_cancelled, &act()).is_err(),
            "money was taken and refunded: a new order instead"
        );
    }

    #[test]
    fn every_change_leaves_one_timeline_event_naming_its_facets() {
        let order = paid(&order(&[(1, 100)]));
        assert_eq!(order.timeline.len(), 1);
        let cancelled = cancel(&order, "x", "r", &act()).unwrap().after;
        assert_eq!(cancelled.timeline.len(), 2);
        let facets: Vec<&str> = cancelled.timeline[1]
            .changes
            .iter()
            .map(|c| c.facet.as_str())
            .collect();
        assert_eq!(facets, ["order", "financial", "fulfillment"]);
    }
}
