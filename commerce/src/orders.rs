//! Orders: checkout from the cart, reads and lists, and [`Shop::mutate`], the one way every
//! later change of an order (cancel, payment events, refunds, fulfilment, status) is made:
//! read the order, ask [`crate::model`] for the change, commit it with everything it implies
//! (`persist`), retry on a concurrent change, send its emails.

use lumi_shared::{
    idempotency::{Done, Guard},
    store::{Db, Item, Tx, decode_cursor, encode_cursor, from_item, s},
};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::{
    Actor, CommerceError, Money, Shop,
    cart::{self, line_key},
    catalog::{VariantItem, variant_key},
    invalid,
    model::{
        self, Act, Change, FinancialStatus, FulfillmentStatus, MovementKind, Order, OrderLine,
        OrderStatus, Payment, PaymentStatus, Refund, StockMove, TimelineEvent,
    },
    persist::{self, OrderItem, order_key},
    provider::{PaymentProvider as _, PaymentStart, ProviderPayment},
    rfc3339,
};

/// The view of an order every caller gets: its three facets, lines, money and refunds (as
/// [`RefundView`] for the customer, whole records for the admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView<R = RefundView> {
    pub reference: String,
    pub status: OrderStatus,
    pub financial_status: FinancialStatus,
    pub fulfillment_status: FulfillmentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub payment: PaymentView,
    pub refunds: Vec<R>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl OrderView {
    /// The customer's view of `order`.
    pub fn of(order: &Order) -> Self {
        Self::from(order)
    }
}

/// A refund as the customer sees it (no admin ids, no idempotency keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefundView {
    pub id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub lines: Vec<model::RefundLine>,
    pub reason: String,
    pub status: model::RefundStatus,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<String>,
}

impl From<&Refund> for RefundView {
    fn from(r: &Refund) -> Self {
        Self {
            id: r.id.clone(),
            amount_minor: r.amount_minor,
            currency: r.currency.clone(),
            lines: r.lines.clone(),
            reason: r.reason.clone(),
            status: r.status,
            created_at: r.created_at.clone(),
            settled_at: r.settled_at.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentView {
    pub id: String,
    pub provider: String,
    pub status: PaymentStatus,
    pub amount_minor: i64,
    pub currency: String,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<Money>,
    /// The provider's payment (a Stripe PaymentIntent id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<String>,
}

impl From<&Payment> for PaymentView {
    fn from(p: &Payment) -> Self {
        Self {
            id: p.id.clone(),
            provider: p.provider.clone(),
            status: p.status,
            amount_minor: p.amount_minor,
            currency: p.currency.clone(),
            captured_minor: p.captured_minor,
            refunded_minor: p.refunded_minor,
            attempt: p.attempt,
            failure_reason: p.failure_reason.clone(),
            mismatch: p.mismatch.clone(),
            provider_ref: p.provider_ref.clone(),
        }
    }
}

impl<R: for<'a> From<&'a Refund>> From<&Order> for OrderView<R> {
    fn from(order: &Order) -> Self {
        Self {
            reference: order.reference.clone(),
            status: order.status,
            financial_status: order.financial_status(),
            fulfillment_status: order.fulfillment_status(),
            cancel_reason: order.cancel_reason.clone(),
            lines: order.lines.clone(),
            total: Money {
                amount_minor: order.total_minor,
                currency: order.currency.clone(),
            },
            payment: PaymentView::from(&order.payment),
            refunds: order.refunds.iter().map(R::from).collect(),
            created_at: order.created_at.clone(),
            note: order.note.clone(),
        }
    }
}

/// The admin's view: the customer's, with the whole refund records (actor, idempotency key),
/// the customer, the version and the timeline with its actors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdminOrderView {
    #[serde(flatten)]
    pub order: OrderView<Refund>,
    pub user_id: String,
    pub customer_email: String,
    pub version: u64,
    pub timeline: Vec<TimelineEvent>,
    /// A chargeback opened with the provider (the fraud procedure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispute: Option<model::Dispute>,
}

impl From<&Order> for AdminOrderView {
    fn from(order: &Order) -> Self {
        Self {
            order: OrderView::from(order),
            user_id: order.user_id.clone(),
            customer_email: order.customer_email.clone(),
            version: order.version,
            timeline: order.timeline.clone(),
            dispute: order.dispute.clone(),
        }
    }
}

/// The customer's tracking view: the facets and the timeline, each actor named by its role
/// only (`user`, `admin`, `provider`, `system`).
pub fn tracking(order: &Order) -> Tracking {
    Tracking {
        reference: order.reference.clone(),
        status: order.status,
        financial_status: order.financial_status(),
        fulfillment_status: order.fulfillment_status(),
        timeline: order
            .timeline
            .iter()
            .map(|event| TimelineEvent {
                actor: event.actor.split(':').next().unwrap_or_default().to_owned(),
                ..event.clone()
            })
            .collect(),
    }
}

/// What the storefront needs to let the customer pay online (Stripe.js `confirmPayment`):
/// answered with a checkout, never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentAction {
    pub provider: String,
    pub client_secret: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publishable_key: Option<String>,
}

/// A placed order and, for an online payment, how the customer pays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Placed {
    #[serde(flatten)]
    pub order: OrderView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<PaymentAction>,
}

/// The tracking view: the facets and the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tracking {
    pub reference: String,
    pub status: OrderStatus,
    pub financial_status: FinancialStatus,
    pub fulfillment_status: FulfillmentStatus,
    pub timeline: Vec<TimelineEvent>,
}

const REFERENCE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `LUMI-7K3F-9Q2M`: 40 random bits in Crockford base32 (no I, L, O, U).
pub fn new_reference() -> String {
    let mut rng = rand::rng();
    let bits: Vec<u8> = (0..8).map(|_| rng.random_range(0..32)).collect();
    reference_of(&bits)
}

fn reference_of(digits: &[u8]) -> String {
    let text: String = digits
        .iter()
        .take(8)
        .map(|d| REFERENCE_ALPHABET[usize::from(*d) % 32] as char)
        .collect();
    format!("LUMI-{}-{}", &text[..4], &text[4..])
}

/// What one checkout (this caller, this Idempotency-Key) derives its ids from.
fn checkout_seed(user: &str, key: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(format!("checkout\0{user}\0{key}").as_bytes()).into()
}

/// The reference and payment id of a checkout's `attempt`-th derivation: the same for every
/// retry of one checkout, so the provider's payment (asked with an idempotency key made of the
/// payment id) is the same too.
fn derived_ids(seed: &[u8; 32], attempt: u8) -> (String, String) {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(seed);
    hasher.update([attempt]);
    let digest: [u8; 32] = hasher.finalize().into();
    let reference = reference_of(&digest[..8].iter().map(|b| b % 32).collect::<Vec<_>>());
    let hex: String = digest[8..24].iter().map(|b| format!("{b:02x}")).collect();
    (reference, format!("pay_{hex}"))
}

/// Whether `text` has the shape of an order reference (checked before any AWS call).
pub fn valid_reference(text: &str) -> bool {
    const ALPHABET: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bytes = text.as_bytes();
    text.len() == 14
        && text.starts_with("LUMI-")
        && bytes[9] == b'-'
        && text[5..9]
            .chars()
            .chain(text[10..].chars())
            .all(|c| ALPHABET.contains(c))
}

/// The order with `reference`, if it exists (strongly consistent).
pub async fn get(db: &Db, table: &str, reference: &str) -> Result<Option<Order>, CommerceError> {
    if !valid_reference(reference) {
        return Ok(None);
    }
    Ok(db
        .get_consistent::<OrderItem>(table, order_key(reference))
        .await?
        .map(|item| item.order))
}

/// Filters of an order listing.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub financial_status: Option<FinancialStatus>,
    pub customer: Option<String>,
    /// RFC 3339 bounds on the creation time, inclusive.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Orders, newest first, filtered: a page and the next cursor. One Query.
pub async fn list(
    db: &Db,
    table: &str,
    filter: &OrderFilter,
    limit: i32,
    cursor: Option<&str>,
) -> Result<(Vec<Order>, Option<String>), CommerceError> {
    let (index, pk_name, sk_name, pk) = match &filter.customer {
        Some(customer) => (
            "gsi1",
            "gsi1pk",
            "gsi1sk",
            format!("CUSTOMER_ORDERS#{customer}"),
        ),
        None => ("gsi2", "gsi2pk", "gsi2sk", "ORDERS".to_owned()),
    };
    let start = cursor
        .map(|c| decode_cursor(c, pk_name, &pk).map_err(|_| CommerceError::Malformed("cursor")))
        .transpose()?;
    let mut condition = format!("{pk_name} = :pk");
    let mut request = db
        .client()
        .query()
        .table_name(table)
        .index_name(index)
        .expression_attribute_values(":pk", s(pk));
    // The bounds compare with the stored creation times as text: each is read as RFC 3339 and
    // written as they are (UTC, `rfc3339`), or refused before any call.
    let bound = |text: &Option<String>, name: &'static str| {
        text.as_deref()
            .map(|text| {
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map(|at| crate::rfc3339((at.unix_timestamp_nanos() / 1_000) as i64))
                    .map_err(|_| CommerceError::Malformed(name))
            })
            .transpose()
    };
    let (from, to) = (bound(&filter.from, "from")?, bound(&filter.to, "to")?);
    match (&from, &to) {
        (Some(from), Some(to)) => {
            condition.push_str(&format!(" AND {sk_name} BETWEEN :from AND :to"));
            request = request
                .expression_attribute_values(":from", s(from.clone()))
                .expression_attribute_values(":to", s(format!("{to}~")));
        }
        (Some(from), None) => {
            condition.push_str(&format!(" AND {sk_name} >= :from"));
            request = request.expression_attribute_values(":from", s(from.clone()));
        }
        (None, Some(to)) => {
            condition.push_str(&format!(" AND {sk_name} <= :to"));
            request = request.expression_attribute_values(":to", s(format!("{to}~")));
        }
        (None, None) => {}
    }
    let mut filters = Vec::new();
    if let Some(status) = filter.status {
        filters.push("#status = :status");
        request = request
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(status.as_str()));
    }
    if let Some(financial) = filter.financial_status {
        filters.push("financial_status = :financial");
        request = request.expression_attribute_values(":financial", s(financial.as_str()));
    }
    if !filters.is_empty() {
        request = request.filter_expression(filters.join(" AND "));
    }
    let request = request
        .key_condition_expression(condition)
        .scan_index_forward(false)
        .limit(limit)
        .set_exclusive_start_key(start);
    let (items, last) = db.query_page(table, request).await?;
    let orders = items
        .into_iter()
        .map(|item| from_item::<OrderItem>(table, item).map(|i| i.order))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((orders, last.as_ref().map(encode_cursor)))
}

/// What a mutation's plan decided.
pub enum Planned {
    Change(Box<Change>),
    /// Nothing to write (a duplicate event, an order already in the wanted state); the reason is
    /// logged and may be shown.
    Unchanged(String),
}

/// What a mutation did.
#[derive(Debug, Clone)]
pub enum Mutated {
    Changed(Box<Change>),
    Unchanged { order: Box<Order>, why: String },
}

impl Mutated {
    pub fn order(&self) -> &Order {
        match self {
            Self::Changed(change) => &change.after,
            Self::Unchanged { order, .. } => order,
        }
    }
}

/// The facts a plan gets besides the order.
pub struct Context<'a> {
    pub act: Act<'a>,
    /// A fresh id for a refund this change may record.
    pub refund_id: &'a str,
}

impl Shop {
    /// The order with `reference`, or 404.
    pub async fn order(&self, reference: &str) -> Result<Order, CommerceError> {
        get(self.db(), self.table(), reference)
            .await?
            .ok_or_else(|| CommerceError::NotFound(format!("no order {reference}")))
    }

    /// An order of `user`; another customer's order does not exist for them (404, not 403).
    pub async fn own_order(&self, user: &str, reference: &str) -> Result<Order, CommerceError> {
        match get(self.db(), self.table(), reference).await? {
            Some(order) if order.user_id == user => Ok(order),
            _ => Err(CommerceError::NotFound(format!("no order {reference}"))),
        }
    }

    pub async fn list_orders(
        &self,
        filter: &OrderFilter,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<(Vec<Order>, Option<String>), CommerceError> {
        list(self.db(), self.table(), filter, limit, cursor).await
    }

    /// Reads the order, plans a change with `plan`, commits it (the order under the version
    /// read, with its stock moves, emails, audit event and the guard's record of
    /// `respond(order after)`), and sends its emails. A concurrent change makes it read and plan
    /// again (five times at most). With a guard, a replay answers the recorded body.
    pub async fn mutate(
        &self,
        reference: &str,
        actor: &Actor,
        note: &str,
        guard: Option<&Guard>,
        respond: &(dyn Fn(&Order) -> serde_json::Value + Sync),
        plan: impl Fn(&Order, &Context<'_>) -> Result<Planned, CommerceError>,
    ) -> Result<Done<Mutated>, CommerceError> {
        // Boxed: the SDK futures inside are large, and every order change comes through here.
        let mut done =
            Box::pin(self.mutate_inner(reference, actor, note, guard, respond, plan)).await?;
        // Refunds of online payments are asked of the provider once the records are committed;
        // the answer shows in the order returned (the change then spans both), and in the
        // guard's record, so that a replay answers the same.
        if let Done::Fresh(Mutated::Changed(change)) = &mut done
            && !change.provider_refunds.is_empty()
        {
            let ids = change.provider_refunds.clone();
            let committed = change.after.version;
            change.after = Box::pin(self.ask_provider_refunds(&change.after, &ids, actor)).await?;
            if let Some(guard) = guard
                && change.after.version != committed
                && let Err(error) = guard
                    .amend(self.db(), self.table(), &respond(&change.after))
                    .await
            {
                tracing::warn!(%error, reference, "a replay will answer the order as committed, before the provider's answer");
            }
        }
        Ok(done)
    }

    pub(crate) async fn mutate_inner(
        &self,
        reference: &str,
        actor: &Actor,
        note: &str,
        guard: Option<&Guard>,
        respond: &(dyn Fn(&Order) -> serde_json::Value + Sync),
        plan: impl Fn(&Order, &Context<'_>) -> Result<Planned, CommerceError>,
    ) -> Result<Done<Mutated>, CommerceError> {
        let (db, table) = (self.db(), self.table());
        if let Some(guard) = guard
            && let Some(body) = guard.lookup(db, table, self.now_us()).await?
        {
            return Ok(Done::Replay(body));
        }
        for _ in 0..5 {
            let order = self.order(reference).await?;
            let now_us = self.now_us();
            let now = rfc3339(now_us);
            let refund_id = crate::new_id("re");
            let context = Context {
                act: Act {
                    actor: &actor.name,
                    now: &now,
                    note,
                },
                refund_id: &refund_id,
            };
            let mut tx = Tx::new(table);
            let (mutated, parts) = match plan(&order, &context)? {
                Planned::Unchanged(why) => {
                    tracing::info!(reference, %why, "order unchanged");
                    let guard_part = match guard {
                        Some(guard) => Some(guard.record(&mut tx, &respond(&order), now_us)?),
                        None => None,
                    };
                    let parts = persist::Parts {
                        guard: guard_part,
                        ..persist::Parts::default()
                    };
                    let mutated = Mutated::Unchanged {
                        order: Box::new(order),
                        why,
                    };
                    (mutated, parts)
                }
                Planned::Change(change) => {
                    let response = respond(&change.after);
                    let parts = persist::write_change(
                        &mut tx,
                        &change,
                        actor,
                        false,
                        guard.map(|g| (g, &response)),
                        now_us,
                    )?;
                    (Mutated::Changed(change), parts)
                }
            };
            match db.commit(tx).await? {
                Ok(()) => {
                    if let Mutated::Changed(change) = &mutated {
                        // The one place a committed order change is counted.
                        self.record_change(actor, change);
                        if !change.emails.is_empty() {
                            self.flush_outbox().await;
                        }
                    }
                    return Ok(Done::Fresh(mutated));
                }
                Err(cancelled) => {
                    if let (Some(guard), Some(at)) = (guard, parts.guard)
                        && cancelled.condition_failed(at)
                    {
                        return Ok(Done::Replay(guard.resolve(db, table, now_us).await?));
                    }
                    if let Some((_, sku)) = parts
                        .stock
                        .iter()
                        .find(|(at, _)| cancelled.condition_failed(*at))
                    {
                        let available = crate::catalog::variant(db, table, sku)
                            .await?
                            .map_or(0, |v| v.available);
                        return Err(CommerceError::OutOfStock {
                            sku: sku.clone(),
                            available: available.max(0),
                        });
                    }
                    // The order moved (or a concurrent transaction touched it): read again.
                }
            }
        }
        Err(CommerceError::Conflict(
            "the order kept changing; retry".into(),
        ))
    }

    /// Sends what waits in the outbox; a failure leaves it for the next flush (logged).
    pub async fn flush_outbox(&self) {
        if let Err(error) = self.outbox.flush(self.db(), self.table()).await {
            tracing::warn!(error = %error, "the outbox was not flushed; the next flush sends it");
        }
    }

    /// Turns the customer's cart into an order in one transaction: the reservations it read
    /// are consumed, the stock taken (`stock >= qty`), the order, its payment and the sale
    /// movements written, with one audit event and the idempotency record. A replay answers
    /// the first response; the cart's lines are priced from the catalog as it is now.
    pub async fn checkout(
        &self,
        user: &str,
        email: &str,
        note: Option<String>,
        actor: &Actor,
        guard: &Guard,
    ) -> Result<Done<Placed>, CommerceError> {
        // Boxed: the SDK's and the Stripe client's futures are large.
        Box::pin(self.checkout_inner(user, email, note, actor, guard)).await
    }

    async fn checkout_inner(
        &self,
        user: &str,
        email: &str,
        note: Option<String>,
        actor: &Actor,
        guard: &Guard,
    ) -> Result<Done<Placed>, CommerceError> {
        let (db, table) = (self.db(), self.table());
        let lines = cart::lines(db, table, user).await?;
        if lines.is_empty() {
            // Perhaps this very key emptied it: a replay, or a real empty cart.
            return self
                .replay_or(guard, invalid("cart", "the cart is empty"))
                .await;
        }
        let max_lines = self.platform.config.cart.max_lines;
        if lines.len() > max_lines {
            let error = invalid("cart", format!("a cart holds at most {max_lines} lines"));
            return self.replay_or(guard, error).await;
        }
        let keys: Vec<Item> = lines.iter().map(|l| variant_key(&l.sku)).collect();
        let variants: Vec<VariantItem> = db
            .batch_get(table, keys)
            .await?
            .into_iter()
            .map(|item| from_item(table, item))
            .collect::<Result<_, _>>()?;
        let wanted: Vec<(String, i64)> =
            lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
        let (order_lines, currency) = match model::price_lines(&wanted, &variants) {
            Ok(priced) => priced,
            // A retry of a checkout that succeeded (the customer has since filled the cart with
            // something no longer sold) answers its first response, not this cart's refusal.
            Err(error) => return self.replay_or(guard, error).await,
        };
        let total_minor: i64 = order_lines.iter().map(|l| l.total_minor).sum();
        let settings = self.platform.settings.get().await;
        let provider = if settings.feature_flags.order_payments_for(user) {
            self.stripe.name()
        } else {
            "manual"
        };
        // Ids derived from the caller and the key: a retried checkout asks the provider for the
        // same payment (same idempotency key, same parameters), so it never makes two.
        let seed = checkout_seed(user, guard.key().as_str());
        let now_us = self.now_us();
        let created_at = rfc3339(now_us);
        for attempt in 0..3u8 {
            // A derived reference already taken (the key reused after its record expired, or a
            // collision) moves on to the next derivation.
            let (reference, payment_id) = derived_ids(&seed, attempt);
            let online = match provider {
                "manual" => None,
                _ => Some(
                    self.stripe
                        .start(&PaymentStart {
                            order_reference: reference.clone(),
                            payment_id: payment_id.clone(),
                            amount_minor: total_minor,
                            currency: currency.clone(),
                            idempotency_key: format!(
                                "lumi-pi-{payment_id}-{total_minor}{currency}"
                            ),
                        })
                        .await?,
                ),
            };
            let placed = Order {
                reference: reference.clone(),
                user_id: user.to_owned(),
                customer_email: email.to_owned(),
                status: OrderStatus::Open,
                cancel_reason: None,
                lines: order_lines.clone(),
                total_minor,
                currency: currency.clone(),
                payment: Payment {
                    id: payment_id.clone(),
                    provider: provider.to_owned(),
                    status: PaymentStatus::Pending,
                    amount_minor: total_minor,
                    currency: currency.clone(),
                    captured_minor: 0,
                    refunded_minor: 0,
                    attempt: 1,
                    events: Vec::new(),
                    failure_reason: None,
                    mismatch: None,
                    provider_ref: online.as_ref().map(|p| p.provider_ref.clone()),
                },
                refunds: Vec::new(),
                dispute: None,
                timeline: vec![TimelineEvent {
                    at: created_at.clone(),
                    actor: actor.name.clone(),
                    action: "order.placed".into(),
                    note: "order placed".into(),
                    changes: Vec::new(),
                }],
                created_at: created_at.clone(),
                version: 1,
                note: note.clone(),
            };
            let change = Change {
                before: placed.clone(),
                after: placed.clone(),
                stock: order_lines
                    .iter()
                    .map(|l| StockMove {
                        sku: l.sku.clone(),
                        kind: MovementKind::Sale,
                        stock_delta: -l.quantity,
                        available_delta: 0,
                    })
                    .collect(),
                emails: Vec::new(),
                provider_refunds: Vec::new(),
                action: "order.placed".into(),
            };
            let view = OrderView::of(&placed);
            let response =
                serde_json::to_value(&view).map_err(|e| CommerceError::Internal(e.to_string()))?;
            let mut tx = Tx::new(table);
            let mut reservation_parts = Vec::with_capacity(lines.len());
            for line in &lines {
                // The exact reservation read above: a sweep or another tab changing it fails this.
                reservation_parts.push(tx.delete(
                    line_key(user, &line.sku),
                    "quantity = :q AND expires_at_us = :e",
                    vec![
                        (":q", lumi_shared::store::n(line.quantity)),
                        (":e", lumi_shared::store::n(line.expires_at_us)),
                    ],
                )?);
            }
            let parts = persist::write_change(
                &mut tx,
                &change,
                actor,
                true,
                Some((guard, &response)),
                now_us,
            )?;
            let committed = db.commit(tx).await;
            let cancelled = match committed {
                Ok(Ok(())) => {
                    return Ok(Done::Fresh(Placed {
                        order: view,
                        action: online.and_then(|p| {
                            p.client_secret.map(|client_secret| PaymentAction {
                                provider: provider.to_owned(),
                                client_secret,
                                publishable_key: self.stripe.publishable_key().map(str::to_owned),
                            })
                        }),
                    }));
                }
                Ok(Err(cancelled)) => Some(cancelled),
                Err(error) => {
                    self.forget_payment(online.as_ref(), &payment_id).await;
                    return Err(error.into());
                }
            };
            if let Some(cancelled) = cancelled {
                if parts.guard.is_some_and(|at| cancelled.condition_failed(at)) {
                    // The first request with this key made the order (and its payment).
                    return Ok(Done::Replay(guard.resolve(db, table, now_us).await?));
                }
                self.forget_payment(online.as_ref(), &payment_id).await;
                if cancelled.condition_failed(parts.order) {
                    continue; // the reference is taken: derive the next
                }
                if reservation_parts
                    .iter()
                    .any(|at| cancelled.condition_failed(*at))
                {
                    return Err(CommerceError::Conflict(
                        "the cart changed during checkout; review it and retry".into(),
                    ));
                }
                if let Some((_, sku)) = parts
                    .stock
                    .iter()
                    .find(|(at, _)| cancelled.condition_failed(*at))
                {
                    return Err(CommerceError::OutOfStock {
                        sku: sku.clone(),
                        available: 0,
                    });
                }
                return Err(CommerceError::Conflict(
                        "a request with this Idempotency-Key or this cart is in progress; retry shortly".into(),
                    ));
            }
        }
        Err(CommerceError::Conflict(
            "could not allocate an order reference; retry".into(),
        ))
    }

    /// The recorded response of `guard`'s key if that request succeeded before, else `error`:
    /// a checkout refused for what the cart holds now is first checked for being a retry (only
    /// on the refusal path, so a checkout still reads the key's record only when it must).
    async fn replay_or(
        &self,
        guard: &Guard,
        error: CommerceError,
    ) -> Result<Done<Placed>, CommerceError> {
        match guard.lookup(self.db(), self.table(), self.now_us()).await? {
            Some(body) => Ok(Done::Replay(body)),
            None => Err(error),
        }
    }

    /// Cancels the provider's payment of a checkout that made no order (best effort: an intent
    /// nobody can confirm is harmless, since its client secret never left the server).
    async fn forget_payment(&self, online: Option<&ProviderPayment>, payment_id: &str) {
        if let Some(payment) = online
            && let Err(error) = self
                .stripe
                .cancel(
                    &payment.provider_ref,
                    &format!("lumi-pi-cancel-{payment_id}"),
                )
                .await
        {
            tracing::warn!(%error, provider_ref = %payment.provider_ref, "an unused payment intent was not cancelled");
        }
    }

    /// How `user` pays their open online order `reference` (the client secret, asked of the
    /// provider each time: never stored). `None` when nothing is to pay online.
    pub async fn payment_action(
        &self,
        user: &str,
        reference: &str,
    ) -> Result<Option<PaymentAction>, CommerceError> {
        let order = self.own_order(user, reference).await?;
        let awaiting = order.status == OrderStatus::Open
            && matches!(
                order.payment.status,
                PaymentStatus::Pending | PaymentStatus::Authorized
            );
        let Some(provider_ref) = order.payment.provider_ref.filter(|_| awaiting) else {
            return Ok(None);
        };
        let secret = self.stripe.client_secret(&provider_ref).await?;
        Ok(secret.map(|client_secret| PaymentAction {
            provider: order.payment.provider.clone(),
            client_secret,
            publishable_key: self.stripe.publishable_key().map(str::to_owned),
        }))
    }

    /// The customer cancels their order: money back, open units back on the shelf. Cancelling
    /// an order that is cancelled already answers it as it is.
    pub async fn cancel_by_customer(
        &self,
        user: &str,
        reference: &str,
        actor: &Actor,
        guard: &Guard,
    ) -> Result<Done<Mutated>, CommerceError> {
        let respond =
            |order: &Order| serde_json::to_value(OrderView::of(order)).unwrap_or_default();
        self.mutate(
            reference,
            actor,
            "cancelled by the customer",
            Some(guard),
            &respond,
            |order, cx| {
                if order.user_id != user {
                    return Err(CommerceError::NotFound(format!("no order {reference}")));
                }
                if order.status == OrderStatus::Cancelled {
                    return Ok(Planned::Unchanged("cancelled already".into()));
                }
                model::cancel(order, "by the customer", cx.refund_id, &cx.act)
                    .map(|c| Planned::Change(Box::new(c)))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_validated_by_shape() {
        for _ in 0..100 {
            assert!(valid_reference(&new_reference()));
        }
        assert!(!valid_reference("LUMI-0000-000"));
        assert!(!valid_reference("LUMI-0000-000I"));
        assert!(!valid_reference("%C2%A3"));
        assert!(!valid_reference("LUMI-0000#0000"));
    }
}
