//! A pure, sequential model of the commerce rules, written from the brief (`docs` of the
//! rebuilt core) and not from `lumi_commerce::model`: variants with `stock` and `available`,
//! carts holding reservations, orders with their three facets, payments, refund records and
//! the emails they owe. Online payments are Stripe's (`stripe`): its refunds are asked of it
//! right after the change that records them and succeed at once (the history pays every
//! captured intent with a real card at localstripe first), so an online refund record is
//! `succeeded` and its order's timeline shows `refund.settle` by `provider:stripe` right after
//! the change; manual refunds stay `pending` until an admin settles them. Every operation of the history checker has a method here that says
//! what the real system must answer (an [`Outcome`]) and changes the model only when the
//! real system must change.

use std::collections::{BTreeMap, BTreeSet};

/// Units one cart line may hold (`lumi_commerce::catalog::MAX_QUANTITY`, a published limit).
pub const MAX_QUANTITY: i64 = 20;
pub const CURRENCY: &str = "EUR";
/// How long an idempotency key answers its first response.
pub const KEY_LIFETIME_US: i64 = 24 * 3_600 * 1_000_000;
const MINUTE_US: i64 = 60 * 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Cancelled,
    Completed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Cancelled => "cancelled",
            Self::Completed => "completed",
        }
    }
}

/// The payment record's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pay {
    Pending,
    Authorized,
    Captured,
    Failed,
    AmountMismatch,
}

impl Pay {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::Failed => "failed",
            Self::AmountMismatch => "amount_mismatch",
        }
    }

    /// Money may still arrive for this attempt.
    fn awaiting(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Authorized | Self::AmountMismatch
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestockType {
    NoRestock,
    Cancel,
    Return,
}

impl RestockType {
    pub const ALL: [Self; 3] = [Self::NoRestock, Self::Cancel, Self::Return];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoRestock => "no_restock",
            Self::Cancel => "cancel",
            Self::Return => "return",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub sku: String,
    pub product: usize,
    pub price: i64,
    pub stock: i64,
    pub available: i64,
    pub active: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    pub variant: usize,
    pub quantity: i64,
    pub price: i64,
    pub fulfilled: i64,
    pub removed: i64,
    pub returned: i64,
    pub refunded: i64,
    pub restocked: i64,
}

impl Line {
    /// Units still to ship.
    pub fn open(&self) -> i64 {
        self.quantity - self.fulfilled - self.removed
    }

    /// Units whose money has not gone back.
    pub fn refundable(&self) -> i64 {
        self.quantity - self.refunded
    }
}

/// A cart line: units reserved until `expires_us` (renewed by each change of the line, never
/// past the maximum lifetime from `since_us`); a lapsed line holds its units until swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartLine {
    pub quantity: i64,
    pub since_us: i64,
    pub expires_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub amount: i64,
    pub lines: Vec<(u32, i64, RestockType)>,
    pub settled: bool,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub customer: usize,
    pub online: bool,
    pub status: Status,
    pub lines: Vec<Line>,
    pub total: i64,
    pub pay: Pay,
    pub captured: i64,
    pub refunded: i64,
    pub attempt: u32,
    /// Payment event ids applied (duplicates are no-ops).
    pub events: BTreeSet<String>,
    pub refunds: Vec<Refund>,
    /// Attempts whose failure emailed the customer.
    pub failed_attempts: BTreeSet<u32>,
    /// The actions of the timeline, in order.
    pub timeline: Vec<&'static str>,
}

impl Order {
    pub fn financial(&self) -> &'static str {
        if self.refunds.iter().any(|r| !r.settled) {
            "refund_pending"
        } else if self.captured > 0 {
            if self.refunded == 0 {
                "paid"
            } else if self.refunded < self.captured {
                "partially_refunded"
            } else {
                "refunded"
            }
        } else if self.pay == Pay::Failed || self.status == Status::Cancelled {
            "voided"
        } else if self.pay == Pay::Authorized {
            "authorized"
        } else {
            "pending"
        }
    }

    pub fn fulfillment(&self) -> &'static str {
        let shippable: i64 = self.lines.iter().map(|l| l.quantity - l.removed).sum();
        let shipped: i64 = self.lines.iter().map(|l| l.fulfilled).sum();
        if shippable == 0 {
            "removed"
        } else if shipped == 0 {
            "unfulfilled"
        } else if shipped < shippable {
            "partially_fulfilled"
        } else {
            "fulfilled"
        }
    }

    /// The emails this order owes: one per refund record, one per failed attempt.
    pub fn emails(&self) -> usize {
        self.refunds.len() + self.failed_attempts.len()
    }

    fn line_mut(&mut self, number: u32) -> Option<&mut Line> {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        self.lines.get_mut(index)
    }
}

/// A payment event as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayEvent {
    /// Stripe has no authorization event Lumi acts on: sent as
    /// `payment_intent.amount_capturable_updated`, acknowledged `ignored_type`.
    Authorized,
    Captured {
        amount: i64,
        currency: String,
    },
    Failed,
    /// `Some(index)` of one of the order's refund records; `None` names no refund.
    RefundSucceeded(Option<usize>),
}

/// What the real system must answer: the HTTP status, whether it is an idempotent replay,
/// and for payment events what they did (`payment.capture`, `duplicate`, `ignored`, or for the
/// admin's payment routes `applied` / `not_applied`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: u16,
    pub replayed: bool,
    pub detail: String,
}

impl Outcome {
    pub fn ok(status: u16) -> Self {
        Self {
            status,
            replayed: false,
            detail: String::new(),
        }
    }

    fn replay(status: u16) -> Self {
        Self {
            status,
            replayed: true,
            detail: String::new(),
        }
    }

    fn detail(status: u16, detail: &str) -> Self {
        Self {
            status,
            replayed: false,
            detail: detail.to_owned(),
        }
    }

    pub fn success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

const CONFLICT: u16 = 409;
const INVALID: u16 = 422;
const NOT_FOUND: u16 = 404;

/// An idempotency record: what it answers, until when.
type Keyed<T> = BTreeMap<(usize, String), (T, i64)>;

fn live<'a, T>(keys: &'a Keyed<T>, owner: usize, key: &str, now_us: i64) -> Option<&'a T> {
    keys.get(&(owner, key.to_owned()))
        .filter(|(_, expires)| *expires >= now_us)
        .map(|(value, _)| value)
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The functions' clock (a manual one the history moves).
    pub now_us: i64,
    pub reservation_us: i64,
    pub max_reservation_us: i64,
    pub variants: Vec<Variant>,
    /// Per customer: whether their orders are paid online (`stripe`) or manually.
    pub online: Vec<bool>,
    /// Per customer: variant index -> its line (line order = SKU order = index order).
    pub carts: Vec<BTreeMap<usize, CartLine>>,
    pub orders: Vec<Order>,
    /// (customer, key) -> the order its checkout placed.
    pub checkout_keys: Keyed<usize>,
    /// (customer, key) -> the order its cancel named.
    pub cancel_keys: Keyed<usize>,
    /// (order, key) -> the refund request body it carried.
    pub refund_keys: Keyed<String>,
    /// Units lapsed reservations gave back when swept (coverage).
    pub swept: i64,
}

impl Model {
    /// A model at `now_us` with reservations of `reservation_minutes`, each line's at most
    /// `max_minutes` from its first reservation.
    pub fn new(
        variants: Vec<Variant>,
        online: Vec<bool>,
        now_us: i64,
        reservation_minutes: i64,
        max_minutes: i64,
    ) -> Self {
        Self {
            now_us,
            reservation_us: reservation_minutes * MINUTE_US,
            max_reservation_us: max_minutes * MINUTE_US,
            carts: vec![BTreeMap::new(); online.len()],
            variants,
            online,
            ..Self::default()
        }
    }

    /// Time passes (nothing else happens: lapsed reservations hold until a sweep).
    pub fn tick(&mut self, seconds: i64) {
        self.now_us += seconds * 1_000_000;
    }

    /// Gives back the lapsed reservations of `variant`, every customer's; the units freed.
    fn sweep(&mut self, variant: usize) -> i64 {
        let mut freed = 0;
        for cart in &mut self.carts {
            if let Some(line) = cart.get(&variant).copied()
                && line.expires_us < self.now_us
            {
                cart.remove(&variant);
                freed += line.quantity;
            }
        }
        self.variants[variant].available += freed;
        self.swept += freed;
        freed
    }

    // ---- the customer ----

    /// Adds units to a line. Short of stock, the variant's lapsed reservations (this
    /// customer's own included) are swept once and the line read again.
    pub fn cart_add(&mut self, customer: usize, variant: usize, quantity: i64) -> Outcome {
        let mut swept = false;
        loop {
            let current = self.carts[customer].get(&variant).copied();
            let held = current.map_or(0, |l| l.quantity);
            let wanted = held + quantity;
            if !(0..=MAX_QUANTITY).contains(&wanted) || !self.variants[variant].active {
                return Outcome::ok(INVALID);
            }
            if self.variants[variant].available < quantity {
                if !swept && self.sweep(variant) > 0 {
                    swept = true;
                    continue;
                }
                return Outcome::ok(CONFLICT);
            }
            self.variants[variant].available -= quantity;
            let since_us = current.map_or(self.now_us, |l| l.since_us);
            let expires_us =
                (self.now_us + self.reservation_us).min(since_us + self.max_reservation_us);
            self.carts[customer].insert(
                variant,
                CartLine {
                    quantity: wanted,
                    since_us,
                    expires_us,
                },
            );
            return Outcome::ok(200);
        }
    }

    pub fn cart_remove(&mut self, customer: usize, variant: usize) -> Outcome {
        if let Some(line) = self.carts[customer].remove(&variant) {
            self.variants[variant].available += line.quantity;
        }
        Outcome::ok(200)
    }

    /// Returns the outcome and, for a fresh order, its index.
    pub fn checkout(&mut self, customer: usize, key: &str) -> (Outcome, Option<usize>) {
        if let Some(&order) = live(&self.checkout_keys, customer, key, self.now_us) {
            // A replay answers the first response, whatever the cart holds now.
            return (Outcome::replay(201), Some(order));
        }
        let cart = &self.carts[customer];
        if cart.is_empty() || cart.keys().any(|v| !self.variants[*v].active) {
            return (Outcome::ok(INVALID), None);
        }
        // Lapsed lines not swept still hold their units: they check out.
        let mut lines = Vec::new();
        for (&variant, line) in cart {
            let quantity = line.quantity;
            let v = &mut self.variants[variant];
            // The reservation already took `available`; the sale takes `stock`.
            v.stock -= quantity;
            lines.push(Line {
                variant,
                quantity,
                price: v.price,
                ..Line::default()
            });
        }
        self.carts[customer].clear();
        let total = lines.iter().map(|l| l.price * l.quantity).sum();
        self.orders.push(Order {
            customer,
            online: self.online[customer],
            status: Status::Open,
            lines,
            total,
            pay: Pay::Pending,
            captured: 0,
            refunded: 0,
            attempt: 1,
            events: BTreeSet::new(),
            refunds: Vec::new(),
            failed_attempts: BTreeSet::new(),
            timeline: vec!["order.placed"],
        });
        let index = self.orders.len() - 1;
        self.checkout_keys.insert(
            (customer, key.to_owned()),
            (index, self.now_us + KEY_LIFETIME_US),
        );
        (Outcome::ok(201), Some(index))
    }

    pub fn customer_cancel(&mut self, customer: usize, order: usize, key: &str) -> Outcome {
        if self.orders[order].customer != customer {
            return Outcome::ok(NOT_FOUND);
        }
        if let Some(&named) = live(&self.cancel_keys, customer, key, self.now_us) {
            return if named == order {
                Outcome::replay(200)
            } else {
                Outcome::ok(INVALID)
            };
        }
        let record = (order, self.now_us + KEY_LIFETIME_US);
        if self.orders[order].status == Status::Cancelled {
            // Answered as it is, and recorded under the key.
            self.cancel_keys.insert((customer, key.to_owned()), record);
            return Outcome::ok(200);
        }
        let outcome = self.cancel(order);
        if outcome.success() {
            self.cancel_keys.insert((customer, key.to_owned()), record);
        }
        outcome
    }

    // ---- the admin ----

    pub fn set_status(&mut self, order: usize, to: Status) -> Outcome {
        match to {
            Status::Cancelled => self.cancel(order),
            Status::Completed => self.complete(order),
            Status::Open => self.reopen(order),
        }
    }

    fn cancel(&mut self, index: usize) -> Outcome {
        let order = &self.orders[index];
        if order.status != Status::Open || order.lines.iter().any(|l| l.fulfilled > 0) {
            return Outcome::ok(CONFLICT);
        }
        self.restock_open_units(index);
        let order = &mut self.orders[index];
        order.status = Status::Cancelled;
        let asked = self.refund_the_rest(index, RestockType::Cancel);
        let order = &mut self.orders[index];
        order.timeline.push("order.cancel");
        if asked {
            // Stripe's answer to the refund is its own change.
            order.timeline.push("refund.settle");
        }
        Outcome::ok(200)
    }

    /// Open units come off the order and go back on the shelf.
    fn restock_open_units(&mut self, index: usize) {
        let Self {
            orders, variants, ..
        } = self;
        for line in &mut orders[index].lines {
            let units = line.open();
            if units > 0 {
                line.removed += units;
                line.restocked += units;
                variants[line.variant].stock += units;
                variants[line.variant].available += units;
            }
        }
    }

    /// A refund record of everything captured and not refunded (its units named per line);
    /// whether it is an online one (asked of Stripe and settled right after the change).
    fn refund_the_rest(&mut self, index: usize, restock: RestockType) -> bool {
        let order = &mut self.orders[index];
        let amount = order.captured - order.refunded;
        if amount <= 0 {
            return false;
        }
        let mut lines = Vec::new();
        for (i, line) in order.lines.iter_mut().enumerate() {
            let units = line.refundable();
            if units > 0 {
                line.refunded += units;
                lines.push((i as u32 + 1, units, restock));
            }
        }
        order.refunded += amount;
        order.refunds.push(Refund {
            amount,
            lines,
            settled: order.online,
        });
        order.online
    }

    fn complete(&mut self, index: usize) -> Outcome {
        let order = &mut self.orders[index];
        if order.status != Status::Open
            || order.lines.iter().any(|l| l.open() > 0)
            || matches!(
                order.financial(),
                "pending" | "authorized" | "refund_pending"
            )
        {
            return Outcome::ok(CONFLICT);
        }
        order.status = Status::Completed;
        order.timeline.push("order.complete");
        Outcome::ok(200)
    }

    fn reopen(&mut self, index: usize) -> Outcome {
        let order = &self.orders[index];
        if order.status != Status::Cancelled || order.captured > 0 || !order.refunds.is_empty() {
            return Outcome::ok(CONFLICT);
        }
        // The units are taken again only while each variant has them unreserved.
        for line in &order.lines {
            let v = &self.variants[line.variant];
            if line.restocked > 0 && (v.available < line.restocked || v.stock < line.restocked) {
                return Outcome::ok(CONFLICT);
            }
        }
        let Self {
            orders, variants, ..
        } = self;
        let order = &mut orders[index];
        for line in &mut order.lines {
            variants[line.variant].stock -= line.restocked;
            variants[line.variant].available -= line.restocked;
            line.removed = 0;
            line.restocked = 0;
        }
        order.status = Status::Open;
        order.pay = Pay::Pending;
        order.attempt += 1;
        order.timeline.push("order.reopen");
        Outcome::ok(200)
    }

    pub fn fulfil(&mut self, index: usize, request: Option<&[(u32, i64)]>) -> Outcome {
        let order = &self.orders[index];
        // Only a captured payment ships (a pending partial refund does not hold the rest back).
        if order.status != Status::Open || order.pay != Pay::Captured {
            return Outcome::ok(CONFLICT);
        }
        let mut after = order.clone();
        let mut shipped = 0;
        match request {
            None => {
                for line in &mut after.lines {
                    let units = line.open();
                    line.fulfilled += units;
                    shipped += units;
                }
            }
            Some(request) => {
                for &(number, quantity) in request {
                    let Some(line) = after.line_mut(number) else {
                        return Outcome::ok(INVALID);
                    };
                    if quantity < 1 || quantity > line.open() {
                        return Outcome::ok(INVALID);
                    }
                    line.fulfilled += quantity;
                    shipped += quantity;
                }
            }
        }
        if shipped == 0 {
            return Outcome::ok(CONFLICT);
        }
        after.timeline.push("order.fulfil");
        self.orders[index] = after;
        Outcome::ok(200)
    }

    /// A refund of `request` under `key`; `body` is the request as sent (for replays).
    pub fn refund(
        &mut self,
        index: usize,
        request: &[(u32, i64, RestockType)],
        key: &str,
        body: &str,
    ) -> Outcome {
        if let Some(first) = live(&self.refund_keys, index, key, self.now_us) {
            return if first == body {
                Outcome::replay(201)
            } else {
                Outcome::ok(INVALID)
            };
        }
        let order = &self.orders[index];
        if request.is_empty() {
            return Outcome::ok(INVALID);
        }
        if order.captured == 0
            || order.captured == order.refunded
            || order.lines.iter().all(|l| l.refundable() == 0)
        {
            // Nothing captured, or nothing left to refund: the state refuses, whatever the lines.
            return Outcome::ok(CONFLICT);
        }
        let mut after = order.clone();
        let mut moves = Vec::new();
        let mut seen = BTreeSet::new();
        let mut amount = 0;
        for &(number, quantity, restock) in request {
            if !seen.insert(number) {
                return Outcome::ok(INVALID);
            }
            let Some(line) = after.line_mut(number) else {
                return Outcome::ok(INVALID);
            };
            let most = match restock {
                RestockType::Cancel => line.open().min(line.refundable()),
                RestockType::Return => (line.fulfilled - line.returned).min(line.refundable()),
                RestockType::NoRestock => line.refundable(),
            };
            if quantity < 1 || quantity > most {
                return Outcome::ok(INVALID);
            }
            line.refunded += quantity;
            amount += line.price * quantity;
            match restock {
                RestockType::Cancel => {
                    line.removed += quantity;
                    line.restocked += quantity;
                    moves.push((line.variant, quantity));
                }
                RestockType::Return => {
                    line.returned += quantity;
                    line.restocked += quantity;
                    moves.push((line.variant, quantity));
                }
                RestockType::NoRestock => {
                    // Unshipped units come off the order first; shipped ones stay shipped.
                    line.removed += quantity.min(line.open());
                }
            }
        }
        if amount > order.captured - order.refunded {
            return Outcome::ok(CONFLICT);
        }
        for (variant, units) in moves {
            self.variants[variant].stock += units;
            self.variants[variant].available += units;
        }
        after.refunded += amount;
        after.refunds.push(Refund {
            amount,
            lines: request.to_vec(),
            // An online refund is asked of Stripe right after the commit; it succeeds at once.
            settled: after.online,
        });
        after.timeline.push("order.refund");
        if after.online {
            after.timeline.push("refund.settle");
        }
        self.orders[index] = after;
        self.refund_keys.insert(
            (index, key.to_owned()),
            (body.to_owned(), self.now_us + KEY_LIFETIME_US),
        );
        Outcome::ok(201)
    }

    /// The admin settles refund `refund` (event id `settle:<refund id>`).
    pub fn settle(&mut self, index: usize, refund: usize, refund_id: &str) -> Outcome {
        let event = format!("settle:{refund_id}");
        let outcome = self.payment_event(index, &event, &PayEvent::RefundSucceeded(Some(refund)));
        match outcome.detail.as_str() {
            "refund.settle" => Outcome::ok(200),
            "duplicate" | "ignored" => Outcome::ok(CONFLICT),
            _ => outcome,
        }
    }

    pub fn adjust(&mut self, variant: usize, delta: i64) -> Outcome {
        let v = &mut self.variants[variant];
        if delta < 0 && (v.available < -delta || v.stock < -delta) {
            return Outcome::ok(CONFLICT);
        }
        v.stock += delta;
        v.available += delta;
        Outcome::ok(200)
    }

    pub fn retire(&mut self, product: usize) -> Outcome {
        for v in &mut self.variants {
            if v.product == product {
                v.active = false;
            }
        }
        Outcome::ok(200)
    }

    /// `POST /admin/payments/{id}/fail` (a fresh event id).
    pub fn admin_fail(&mut self, index: usize, event: &str) -> Outcome {
        let outcome = self.payment_event(index, event, &PayEvent::Failed);
        Outcome::detail(
            200,
            if outcome.detail == "payment.fail" {
                "applied"
            } else {
                "not_applied"
            },
        )
    }

    /// `POST /admin/payments/{id}/capture`: manual payments only.
    pub fn manual_capture(
        &mut self,
        index: usize,
        event: &str,
        amount: i64,
        currency: &str,
    ) -> Outcome {
        if self.orders[index].online {
            return Outcome::ok(CONFLICT);
        }
        let outcome = self.payment_event(
            index,
            event,
            &PayEvent::Captured {
                amount,
                currency: currency.to_owned(),
            },
        );
        Outcome::detail(
            200,
            if matches!(
                outcome.detail.as_str(),
                "payment.capture" | "payment.amount_mismatch"
            ) {
                "applied"
            } else {
                "not_applied"
            },
        )
    }

    /// A Stripe webhook: a type Lumi does not act on is acknowledged whatever it is about;
    /// the manual payments are not Stripe's (`not_ours`, acknowledged).
    pub fn webhook(&mut self, index: usize, event: &str, what: &PayEvent) -> Outcome {
        if *what == PayEvent::Authorized {
            return Outcome::detail(200, "ignored_type");
        }
        if !self.orders[index].online {
            return Outcome::detail(200, "not_ours");
        }
        self.payment_event(index, event, what)
    }

    /// One payment event; `detail` is what it did (the webhook's `outcome`).
    fn payment_event(&mut self, index: usize, event: &str, what: &PayEvent) -> Outcome {
        let order = &self.orders[index];
        if order.events.contains(event) {
            return Outcome::detail(200, "duplicate");
        }
        let pay = order.pay;
        // An online refund the change made: Stripe's answer settles it right after.
        let mut asked = false;
        let action = match what {
            // Not an event Lumi acts on (see `webhook`).
            PayEvent::Authorized => return Outcome::detail(200, "ignored_type"),
            PayEvent::Captured { amount, currency } => {
                if !pay.awaiting() && pay != Pay::Failed {
                    return Outcome::detail(200, "ignored");
                }
                let order = &mut self.orders[index];
                if *amount != order.total || !currency.eq_ignore_ascii_case(CURRENCY) {
                    order.pay = Pay::AmountMismatch;
                    "payment.amount_mismatch"
                } else {
                    order.pay = Pay::Captured;
                    order.captured = *amount;
                    if order.status == Status::Cancelled {
                        // Money for an order that will not ship goes back (never a 409).
                        asked = self.refund_the_rest(index, RestockType::NoRestock);
                    }
                    "payment.capture"
                }
            }
            PayEvent::Failed => {
                if !pay.awaiting() {
                    return Outcome::detail(200, "ignored");
                }
                if self.orders[index].status == Status::Open {
                    self.restock_open_units(index);
                    self.orders[index].status = Status::Cancelled;
                }
                let order = &mut self.orders[index];
                order.pay = Pay::Failed;
                let attempt = order.attempt;
                order.failed_attempts.insert(attempt);
                "payment.fail"
            }
            PayEvent::RefundSucceeded(refund) => {
                let Some(refund) = refund.and_then(|r| self.orders[index].refunds.get_mut(r))
                else {
                    // Acknowledged, never refused: a provider would retry a refusal forever.
                    return Outcome::detail(200, "ignored");
                };
                if refund.settled {
                    return Outcome::detail(200, "ignored");
                }
                refund.settled = true;
                "refund.settle"
            }
        };
        let order = &mut self.orders[index];
        order.events.insert(event.to_owned());
        order.timeline.push(action);
        if asked {
            order.timeline.push("refund.settle");
        }
        Outcome::detail(200, action)
    }
}
