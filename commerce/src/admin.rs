//! The admin's use cases: refunds with explicit restock choices, fulfilment, status changes
//! (cancel, complete, reopen), settling refunds, manual captures and the failed-payment
//! procedure, payments by provider, the catalog (create, edit, retire), stock adjustments, the
//! inventory-mismatch report and rebalance, a variant's ledger, site content. Each mutation
//! writes its audit event in its own transaction.

use lumi_shared::{
    audit::{self, AuditEvent},
    idempotency::{Done, Guard},
    store::{Item, StoreError, Tx, decode_cursor, encode_cursor, from_item, key, n, s},
};
use serde::{Deserialize, Serialize};

use crate::{
    Actor, CommerceError, Shop,
    cart::LineItem,
    catalog::{self, ProductItem, VariantItem, valid_sku, valid_slug, variant_key},
    content, invalid,
    ledger::{self, Movement},
    model::{self, MovementKind, Order, OrderStatus, PaymentEvent, RefundRequestLine, StockMove},
    orders::{Mutated, Planned},
    payments::Applied,
    persist::{self, PaymentItem},
    rfc3339,
};

/// What a rebalance did to one page of variants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rebalanced {
    pub repaired: Vec<Mismatch>,
    /// Variants that moved between the report and the repair: left for the next run.
    pub skipped_changed_meanwhile: Vec<String>,
    /// Variants whose `stock` disagrees with their ledger: not for a rebalance to hide; an
    /// adjustment with a reason repairs them.
    pub ledger_disagreements: Vec<Mismatch>,
    pub next_cursor: Option<String>,
}

/// What a refund request asks.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct RefundRequest {
    /// The units to refund, each line with its restock type.
    #[schema(min_items = 1)]
    pub lines: Vec<RefundRequestLine>,
    /// 1 to 500 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"\S",
        example = "damaged in transit"
    )]
    pub reason: String,
}

/// A status an admin may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusRequest {
    Cancel,
    Complete,
    Reopen,
}

impl StatusRequest {
    pub fn parse(text: &str) -> Result<Self, CommerceError> {
        match OrderStatus::parse(text) {
            Some(OrderStatus::Cancelled) => Ok(Self::Cancel),
            Some(OrderStatus::Completed) => Ok(Self::Complete),
            Some(OrderStatus::Open) => Ok(Self::Reopen),
            None => Err(invalid(
                "to",
                "one of open (reopen a cancelled order), cancelled, completed; refunds and \
                 shipments have their own endpoints",
            )),
        }
    }
}

fn audit_event(
    actor: &Actor,
    action: &str,
    target: String,
    summary: serde_json::Value,
    now: &str,
) -> AuditEvent {
    AuditEvent {
        actor: actor.name.clone(),
        action: action.into(),
        target,
        summary,
        request_id: actor.request_id.clone(),
        client_ip: actor.client_ip.clone(),
        at: now.to_owned(),
    }
}

/// Queries one page of the inventory-mismatch report may make (see [`Shop::mismatches`]).
pub const MISMATCH_CALL_BUDGET: usize = 40;

/// A page of the inventory-mismatch report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Mismatch {
    pub sku: String,
    pub stock: i64,
    pub available: i64,
    /// Units held by cart lines (lapsed ones included: they hold until swept).
    pub reserved: i64,
    /// `stock - reserved`: what `available` should be.
    pub expected_available: i64,
    pub difference: i64,
    /// The sum of the variant's ledger movements: `stock` must equal it.
    pub ledger_stock: i64,
}

/// A variant's ledger page with its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerView {
    pub sku: String,
    pub stock: i64,
    pub available: i64,
    pub active: bool,
    pub movements: Vec<Movement>,
    pub next_cursor: Option<String>,
}

/// A new product as the admin sends it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct NewVariant {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "TSHIRT-M")]
    pub sku: String,
    /// 1 to 200 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"\S",
        example = "T-shirt, M"
    )]
    pub name: String,
    /// Minor units (cents).
    #[schema(minimum = 0, maximum = 100_000_000, example = 1290)]
    pub price_minor: i64,
    /// ISO 4217.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
    /// The first stock: the variant's `initial` ledger movement.
    #[schema(minimum = 0, maximum = 1_000_000, example = 25)]
    pub stock: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct NewProductRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "tshirt")]
    pub id: String,
    /// 1 to 200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S", example = "T-shirt")]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
    #[schema(min_items = 1, max_items = 30)]
    pub variants: Vec<NewVariant>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct ProductPatch {
    /// 1 to 200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    /// `false` retires the product and its variants: they leave the storefront and carts,
    /// orders keep them.
    pub active: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub active: bool,
    pub variants: Vec<catalog::Variant>,
}

impl Shop {
    /// Refunds lines of an order (each with its restock type), recording the refund, its
    /// email and its stock movements; idempotent under `guard`.
    pub async fn refund(
        &self,
        reference: &str,
        request: &RefundRequest,
        actor: &Actor,
        guard: &Guard,
    ) -> Result<Done<Mutated>, CommerceError> {
        if request.reason.trim().is_empty() || request.reason.chars().count() > 500 {
            return Err(invalid("reason", "1 to 500 characters"));
        }
        let respond = |order: &Order| {
            serde_json::json!({
                "refund": order.refunds.last(),
                "order": crate::orders::AdminOrderView::from(order),
            })
        };
        let key = guard.key().as_str().to_owned();
        self.mutate(
            reference,
            actor,
            &request.reason,
            Some(guard),
            &respond,
            |order, cx| {
                model::refund(
                    order,
                    &request.lines,
                    cx.refund_id,
                    &request.reason,
                    Some(&key),
                    &cx.act,
                )
                .map(|c| Planned::Change(Box::new(c)))
            },
        )
        .await
    }

    /// Ships the named units (or every open unit) of a paid order.
    pub async fn fulfil(
        &self,
        reference: &str,
        lines: Option<&[(u32, i64)]>,
        note: &str,
        actor: &Actor,
    ) -> Result<Box<model::Change>, CommerceError> {
        self.change(reference, actor, note, |order, cx| {
            model::fulfil(order, lines, &cx.act)
        })
        .await
    }

    /// Cancels (money back, open units restocked), completes, or reopens (stock taken again,
    /// a new payment attempt) an order.
    pub async fn set_status(
        &self,
        reference: &str,
        to: StatusRequest,
        note: &str,
        actor: &Actor,
    ) -> Result<Box<model::Change>, CommerceError> {
        self.change(reference, actor, note, |order, cx| match to {
            StatusRequest::Cancel => model::cancel(order, "by an admin", cx.refund_id, &cx.act),
            StatusRequest::Complete => model::complete(order, &cx.act),
            StatusRequest::Reopen => model::reopen(order, &cx.act),
        })
        .await
    }

    /// An unguarded change that must happen (a plan that refuses is the answer).
    async fn change(
        &self,
        reference: &str,
        actor: &Actor,
        note: &str,
        plan: impl Fn(&Order, &crate::orders::Context<'_>) -> Result<model::Change, CommerceError>,
    ) -> Result<Box<model::Change>, CommerceError> {
        let done = self
            .mutate(
                reference,
                actor,
                note,
                None,
                &|_| serde_json::Value::Null,
                |order, cx| plan(order, cx).map(|c| Planned::Change(Box::new(c))),
            )
            .await?;
        match done {
            Done::Fresh(Mutated::Changed(change)) => Ok(change),
            Done::Fresh(Mutated::Unchanged { why, .. }) => Err(CommerceError::Conflict(why)),
            Done::Replay(_) => Err(CommerceError::Internal("an unguarded replay".into())),
        }
    }

    /// Marks a pending refund as paid back (a manual refund paid by hand, or an online one the
    /// provider confirmed out of band).
    pub async fn settle_refund(
        &self,
        reference: &str,
        refund_id: &str,
        actor: &Actor,
    ) -> Result<Box<model::Change>, CommerceError> {
        let order = self.order(reference).await?;
        let Some(refund) = order.refunds.iter().find(|r| r.id == refund_id) else {
            return Err(CommerceError::NotFound(format!(
                "no refund {refund_id} on order {reference}"
            )));
        };
        if refund.status == crate::model::RefundStatus::Requested {
            // Stripe has been asked for this money: settling it by hand too would pay it twice.
            return Err(CommerceError::Conflict(format!(
                "refund {refund_id} is with the payment provider; its answer settles it (settle by hand only a pending or failed refund)"
            )));
        }
        match self
            .apply_payment_event(
                &order.payment.provider,
                &order.payment.id,
                &format!("settle:{refund_id}"),
                &PaymentEvent::RefundSucceeded {
                    refund_id: refund_id.to_owned(),
                    provider_refund_id: None,
                },
                actor,
            )
            .await?
        {
            Applied::Changed(change) => Ok(change),
            Applied::Duplicate => Err(CommerceError::Conflict(format!(
                "refund {refund_id} is settled already"
            ))),
            Applied::Ignored(why) => Err(CommerceError::Conflict(why)),
        }
    }

    /// Records money received by hand for a `manual` payment: it must be what is due.
    pub async fn capture_manual(
        &self,
        payment_id: &str,
        amount_minor: i64,
        currency: &str,
        actor: &Actor,
    ) -> Result<Applied, CommerceError> {
        // What was received is checked before it is compared with what is due: a malformed
        // amount or currency is an error of the request, not a mismatch to record.
        if !(1..=crate::MAX_CAPTURE_MINOR).contains(&amount_minor) {
            return Err(invalid(
                "amount_minor",
                format!("1 to {}", crate::MAX_CAPTURE_MINOR),
            ));
        }
        if !crate::is_currency_code(currency) {
            return Err(invalid("currency", "an ISO 4217 code such as EUR"));
        }
        let payment = self.payment(payment_id).await?;
        if payment.provider != "manual" {
            return Err(CommerceError::Conflict(format!(
                "a {} payment is captured by its provider",
                payment.provider
            )));
        }
        let event = PaymentEvent::Captured {
            amount_minor,
            currency: currency.to_owned(),
        };
        self.apply_payment_event(
            "manual",
            payment_id,
            &format!("admin-capture:{}", uuid::Uuid::new_v4().simple()),
            &event,
            actor,
        )
        .await
    }

    /// The failed-payment procedure: the payment fails, the order is cancelled with its stock
    /// back once, and the refund email is queued; for any provider.
    pub async fn fail_payment(
        &self,
        payment_id: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<Applied, CommerceError> {
        if reason.trim().is_empty() || reason.chars().count() > 500 {
            return Err(invalid("reason", "1 to 500 characters"));
        }
        let payment = self.payment(payment_id).await?;
        self.apply_payment_event(
            &payment.provider,
            payment_id,
            &format!("admin-fail:{}", uuid::Uuid::new_v4().simple()),
            &PaymentEvent::Failed {
                reason: reason.to_owned(),
            },
            actor,
        )
        .await
    }

    /// Payments of one provider (optionally in one status), newest first; a page.
    pub async fn payments(
        &self,
        provider: &str,
        status: Option<model::PaymentStatus>,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<(Vec<PaymentItem>, Option<String>), CommerceError> {
        if !valid_slug(provider) {
            return Ok((Vec::new(), None));
        }
        let pk = format!("PAYMENTS#{provider}");
        let mut request = self
            .db()
            .client()
            .query()
            .table_name(self.table())
            .index_name("gsi1")
            .expression_attribute_values(":p", s(pk.clone()))
            .scan_index_forward(false)
            .limit(limit);
        request = match status {
            Some(status) => request
                .key_condition_expression("gsi1pk = :p AND begins_with(gsi1sk, :status)")
                .expression_attribute_values(":status", s(format!("{}#", status.as_str()))),
            None => request.key_condition_expression("gsi1pk = :p"),
        };
        if let Some(cursor) = cursor {
            request = request.set_exclusive_start_key(Some(page_start(cursor, "gsi1pk", &pk)?));
        }
        let (items, last) = self.db().query_page(self.table(), request).await?;
        let payments = items
            .into_iter()
            .map(|item| from_item::<PaymentItem>(self.table(), item))
            .collect::<Result<Vec<_>, _>>()?;
        let next = last.as_ref().map(encode_cursor);
        Ok((payments, next))
    }

    /// Adds (a delivery) or removes (shrinkage) units of a variant, with a ledger movement and
    /// an audit event in the same transaction; removing never takes `stock` or `available`
    /// below zero.
    pub async fn adjust_stock(
        &self,
        sku: &str,
        delta: i64,
        reason: &str,
        actor: &Actor,
    ) -> Result<VariantItem, CommerceError> {
        if delta == 0 || delta.abs() > 1_000_000 {
            return Err(invalid("delta", "a non-zero number of units up to 1000000"));
        }
        if reason.trim().is_empty() || reason.chars().count() > 500 {
            return Err(invalid("reason", "1 to 500 characters"));
        }
        let (db, table) = (self.db(), self.table());
        let before = catalog::variant(db, table, sku)
            .await?
            .ok_or_else(|| CommerceError::NotFound(format!("no variant {sku}")))?;
        let now_us = self.now_us();
        let now = rfc3339(now_us);
        let mut tx = Tx::new(table);
        let movement = StockMove {
            sku: sku.to_owned(),
            kind: MovementKind::Adjustment,
            stock_delta: delta,
            available_delta: delta,
        };
        persist::stock_move(&mut tx, &movement, &actor.name, now_us)?;
        audit::record_in(
            &mut tx,
            &audit_event(
                actor,
                "stock.adjust",
                format!("variant:{sku}"),
                serde_json::json!({
                    "before": { "stock": before.stock, "available": before.available },
                    "delta": delta,
                    "reason": reason,
                }),
                &now,
            ),
        )?;
        match db.commit(tx).await? {
            Ok(()) => catalog::variant(db, table, sku)
                .await?
                .ok_or_else(|| CommerceError::NotFound(format!("no variant {sku}"))),
            Err(_) => {
                let latest = catalog::variant(db, table, sku).await?.unwrap_or(before);
                Err(CommerceError::Conflict(format!(
                    "only {} units are unreserved ({} on the shelf)",
                    latest.available, latest.stock
                )))
            }
        }
    }

    /// Creates a product with its variants (their stock the first ledger movement), audited.
    pub async fn create_product(
        &self,
        request: &NewProductRequest,
        actor: &Actor,
    ) -> Result<ProductView, CommerceError> {
        if !valid_slug(&request.id) {
            return Err(invalid("id", "1 to 64 letters, digits, - or _"));
        }
        if request.name.trim().is_empty() || request.name.chars().count() > 200 {
            return Err(invalid("name", "1 to 200 characters"));
        }
        if request.description.chars().count() > 5_000 {
            return Err(invalid("description", "at most 5000 characters"));
        }
        if request.variants.is_empty() || request.variants.len() > 30 {
            return Err(invalid("variants", "1 to 30 variants"));
        }
        for (i, v) in request.variants.iter().enumerate() {
            let field = |name: &str| format!("variants[{i}].{name}");
            if !valid_sku(&v.sku) {
                return Err(invalid(field("sku"), "1 to 64 letters, digits, - or _"));
            }
            // One transaction writes every variant: two with one SKU would be one item twice.
            if request.variants[..i].iter().any(|other| other.sku == v.sku) {
                return Err(invalid(
                    field("sku"),
                    "another variant of this product has it",
                ));
            }
            if v.name.trim().is_empty() || v.name.chars().count() > 200 {
                return Err(invalid(field("name"), "1 to 200 characters"));
            }
            if !(0..=100_000_000).contains(&v.price_minor) {
                return Err(invalid(field("price_minor"), "0 to 100000000"));
            }
            if !(0..=1_000_000).contains(&v.stock) {
                return Err(invalid(field("stock"), "0 to 1000000"));
            }
            if !crate::is_currency_code(&v.currency) {
                return Err(invalid(field("currency"), "an ISO 4217 code such as EUR"));
            }
        }
        let product = catalog::NewProduct {
            id: &request.id,
            name: &request.name,
            description: &request.description,
            variants: request
                .variants
                .iter()
                .map(|v| {
                    (
                        v.sku.as_str(),
                        v.name.as_str(),
                        v.price_minor,
                        v.currency.as_str(),
                        v.stock,
                    )
                })
                .collect(),
        };
        let now_us = self.now_us();
        let summary = serde_json::json!({ "after": { "name": request.name, "skus": request.variants.iter().map(|v| &v.sku).collect::<Vec<_>>() } });
        let event = audit_event(
            actor,
            "product.create",
            format!("product:{}", request.id),
            summary,
            &rfc3339(now_us),
        );
        match catalog::create(self.db(), self.table(), &product, Some(&event), now_us).await {
            Ok(()) => {}
            Err(StoreError::ConditionFailed { .. }) => {
                return Err(CommerceError::Conflict(
                    "a product or SKU with this id exists already".into(),
                ));
            }
            Err(error) => return Err(error.into()),
        }
        self.product(&request.id).await
    }

    /// A product with every variant, retired ones included.
    pub async fn product(&self, id: &str) -> Result<ProductView, CommerceError> {
        let (product, variants) = if valid_slug(id) {
            catalog::product_with_variants(self.db(), self.table(), id).await?
        } else {
            None
        }
        .ok_or_else(|| CommerceError::NotFound(format!("no product {id}")))?;
        Ok(ProductView {
            id: product.product_id,
            name: product.name,
            description: product.description,
            active: product.active,
            variants: variants.iter().map(catalog::Variant::from).collect(),
        })
    }

    /// Edits a product; `active: false` retires it and its variants in one transaction
    /// (conditional on the product read), with the audit event.
    pub async fn update_product(
        &self,
        id: &str,
        patch: &ProductPatch,
        actor: &Actor,
    ) -> Result<ProductView, CommerceError> {
        let (db, table) = (self.db(), self.table());
        let (before, variants): (ProductItem, Vec<VariantItem>) = if valid_slug(id) {
            catalog::product_with_variants(db, table, id).await?
        } else {
            None
        }
        .ok_or_else(|| CommerceError::NotFound(format!("no product {id}")))?;
        let name = patch.name.clone().unwrap_or_else(|| before.name.clone());
        if name.trim().is_empty() || name.chars().count() > 200 {
            return Err(invalid("name", "1 to 200 characters"));
        }
        let description = patch
            .description
            .clone()
            .unwrap_or_else(|| before.description.clone());
        if description.chars().count() > 5_000 {
            return Err(invalid("description", "at most 5000 characters"));
        }
        let active = patch.active.unwrap_or(before.active);
        let mut tx = Tx::new(table);
        tx.update(
            key(format!("PRODUCT#{id}"), "PRODUCT"),
            "SET #name = :name, description = :description, active = :active",
            Some("attribute_exists(pk) AND active = :was"),
            vec![
                (":name", s(name.clone())),
                (":description", s(description.clone())),
                (
                    ":active",
                    aws_sdk_dynamodb::types::AttributeValue::Bool(active),
                ),
                (
                    ":was",
                    aws_sdk_dynamodb::types::AttributeValue::Bool(before.active),
                ),
            ],
        )?;
        if active != before.active {
            for variant in &variants {
                tx.update(
                    variant_key(&variant.sku),
                    "SET active = :active",
                    Some("attribute_exists(pk)"),
                    vec![(
                        ":active",
                        aws_sdk_dynamodb::types::AttributeValue::Bool(active),
                    )],
                )?;
            }
        }
        let action = match (before.active, active) {
            (true, false) => "product.retire",
            (false, true) => "product.reactivate",
            _ => "product.update",
        };
        audit::record_in(
            &mut tx,
            &audit_event(
                actor,
                action,
                format!("product:{id}"),
                serde_json::json!({
                    "before": { "name": before.name, "description": before.description, "active": before.active },
                    "after": { "name": name, "description": description, "active": active },
                }),
                &rfc3339(self.now_us()),
            ),
        )?;
        if db.commit(tx).await?.is_err() {
            return Err(CommerceError::Conflict(
                "the product changed meanwhile; reload it".into(),
            ));
        }
        self.product(id).await
    }

    /// Units held by `sku`'s reservations, and the queries it took.
    async fn reserved(&self, sku: &str) -> Result<(i64, usize), CommerceError> {
        let (db, table) = (self.db(), self.table());
        let mut reserved = 0;
        let mut start = None;
        let mut calls = 0;
        loop {
            let request = db
                .client()
                .query()
                .table_name(table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :r")
                .expression_attribute_values(":r", s(format!("RESERVATION#{sku}")))
                .limit(500)
                .set_exclusive_start_key(start.take());
            calls += 1;
            let (items, next) = db.query_page(table, request).await?;
            for item in items {
                reserved += from_item::<LineItem>(table, item)?.quantity;
            }
            match next {
                Some(next) => start = Some(next),
                None => return Ok((reserved, calls)),
            }
        }
    }

    /// The stock `sku`'s ledger adds up to, and the queries it took.
    async fn ledger_sum(&self, sku: &str) -> Result<(i64, usize), CommerceError> {
        let mut sum = 0;
        let mut after = None;
        let mut calls = 0;
        loop {
            calls += 1;
            let (movements, next) =
                ledger::page(self.db(), self.table(), sku, 500, after.as_deref()).await?;
            sum += movements.iter().map(|m| m.stock_delta).sum::<i64>();
            match next {
                Some(next) => after = Some(next),
                None => return Ok((sum, calls)),
            }
        }
    }

    /// One page (at most `limit` variants, and about [`MISMATCH_CALL_BUDGET`] queries) of the
    /// inventory-mismatch report: variants whose `available` disagrees with `stock` minus
    /// their reservations, or whose `stock` disagrees with their ledger. Returns the
    /// mismatches and the cursor of the next page. A page ends early, after the variant that
    /// spent the budget, so one request's DynamoDB work stays bounded however long the
    /// ledgers are.
    pub async fn mismatches(
        &self,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<(Vec<Mismatch>, Option<String>), CommerceError> {
        let start = cursor
            .map(|c| page_start(c, "gsi1pk", "CATALOG"))
            .transpose()?;
        let (variants, mut next) =
            catalog::variants_page(self.db(), self.table(), limit, start).await?;
        let mut calls = 1;
        let mut found = Vec::new();
        let count = variants.len();
        for (position, variant) in variants.into_iter().enumerate() {
            let (reserved, reserved_calls) = self.reserved(&variant.sku).await?;
            let (ledger_stock, ledger_calls) = self.ledger_sum(&variant.sku).await?;
            calls += reserved_calls + ledger_calls;
            if calls >= MISMATCH_CALL_BUDGET && position + 1 < count {
                // The next page starts after this variant (its index key is the start key).
                next = Some(
                    [
                        ("pk", &variant.pk),
                        ("sk", &variant.sk),
                        ("gsi1pk", &variant.gsi1pk),
                        ("gsi1sk", &variant.gsi1sk),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), s(v.clone())))
                    .collect(),
                );
            }
            let expected = variant.stock - reserved;
            if expected != variant.available || variant.stock < 0 || ledger_stock != variant.stock {
                found.push(Mismatch {
                    sku: variant.sku,
                    stock: variant.stock,
                    available: variant.available,
                    reserved,
                    expected_available: expected,
                    difference: variant.available - expected,
                    ledger_stock,
                });
            }
            if calls >= MISMATCH_CALL_BUDGET {
                break;
            }
        }
        let next = next.as_ref().map(encode_cursor);
        Ok((found, next))
    }

    /// Repairs one page of mismatches: each `available` set to `stock` minus reservations,
    /// conditional on the values reported (a variant that moved meanwhile is left for the next
    /// run), with a `rebalance` ledger movement and an audit event.
    pub async fn rebalance(
        &self,
        limit: i32,
        cursor: Option<&str>,
        actor: &Actor,
    ) -> Result<Rebalanced, CommerceError> {
        let (mismatches, next) = self.mismatches(limit, cursor).await?;
        let mut done = Rebalanced {
            next_cursor: next,
            ..Rebalanced::default()
        };
        for mismatch in mismatches {
            let target = mismatch.expected_available.max(0);
            if mismatch.ledger_stock != mismatch.stock {
                done.ledger_disagreements.push(mismatch.clone());
            }
            if target == mismatch.available {
                continue;
            }
            let now_us = self.now_us();
            let mut tx = Tx::new(self.table());
            tx.update(
                variant_key(&mismatch.sku),
                "SET available = :expected",
                Some("stock = :stock AND available = :available"),
                vec![
                    (":expected", n(target)),
                    (":stock", n(mismatch.stock)),
                    (":available", n(mismatch.available)),
                ],
            )?;
            ledger::record(
                &mut tx,
                &StockMove {
                    sku: mismatch.sku.clone(),
                    kind: MovementKind::Rebalance,
                    stock_delta: 0,
                    available_delta: target - mismatch.available,
                },
                &actor.name,
                now_us,
            )?;
            audit::record_in(
                &mut tx,
                &audit_event(
                    actor,
                    "inventory.rebalance",
                    format!("variant:{}", mismatch.sku),
                    serde_json::json!({
                        "before": { "available": mismatch.available },
                        "after": { "available": target },
                        "stock": mismatch.stock,
                        "reserved": mismatch.reserved,
                    }),
                    &rfc3339(now_us),
                ),
            )?;
            match self.db().commit(tx).await? {
                Ok(()) => done.repaired.push(mismatch),
                Err(_) => done.skipped_changed_meanwhile.push(mismatch.sku),
            }
        }
        Ok(done)
    }

    /// A variant's counters and a page of its ledger, oldest first.
    pub async fn ledger(
        &self,
        sku: &str,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<LedgerView, CommerceError> {
        let variant = catalog::variant(self.db(), self.table(), sku)
            .await?
            .ok_or_else(|| CommerceError::NotFound(format!("no variant {sku}")))?;
        let (movements, next) = ledger::page(self.db(), self.table(), sku, limit, cursor).await?;
        Ok(LedgerView {
            sku: variant.sku,
            stock: variant.stock,
            available: variant.available,
            active: variant.active,
            movements,
            next_cursor: next,
        })
    }

    /// Writes a site-content block, audited.
    pub async fn put_content(
        &self,
        key_name: &str,
        text: String,
        actor: &Actor,
    ) -> Result<(Option<content::ContentBlock>, content::ContentBlock), CommerceError> {
        if !content::valid_key(key_name) {
            return Err(invalid("key", "1 to 64 lower-case letters, digits, - or _"));
        }
        if text.len() > content::MAX_BYTES {
            return Err(invalid("content", "at most 64 KiB of JSON"));
        }
        let before = content::get(self.db(), self.table(), key_name).await?;
        let block = content::ContentBlock {
            key: key_name.to_owned(),
            content: text,
            updated_at: rfc3339(self.now_us()),
            updated_by: actor.name.clone(),
        };
        let summary = serde_json::json!({ "before": before.as_ref().map(|b| &b.content), "after": block.content });
        let mut tx = Tx::new(self.table());
        content::put(&mut tx, block.clone())?;
        audit::record_in(
            &mut tx,
            &audit_event(
                actor,
                "content.update",
                format!("content:{key_name}"),
                summary,
                &block.updated_at,
            ),
        )?;
        self.db()
            .commit(tx)
            .await?
            .map_err(|_| CommerceError::Conflict("the content changed meanwhile; retry".into()))?;
        Ok((before, block))
    }
}

/// The start key of a page from a listing's cursor (400 when it is not one of its own).
fn page_start(cursor: &str, partition_key: &str, partition: &str) -> Result<Item, CommerceError> {
    decode_cursor(cursor, partition_key, partition).map_err(|_| CommerceError::Malformed("cursor"))
}
