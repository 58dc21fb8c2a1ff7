//! Orders: checkout from the cart, the customer's list, one order, its timeline, cancel.
//!
//! An order is one item, `ORDER#<reference>`/`ORDER`, holding its lines, payment summary and
//! timeline, with a `version` that every change moves (conditional, so two changes cannot both
//! apply to the same state). `gsi1` lists a customer's orders newest first
//! (`CUSTOMER_ORDERS#<user>`).

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::{
    cart::{self, LineItem, line_key},
    catalog::{Money, variant_key},
    delete,
    idempotency::{Claim, Recorded},
    lifecycle::OrderStatus,
    n, put, rfc3339, s, transact_reasons, update,
};
use crate::{
    error::ApiError,
    store::{Db, Item, StoreError, from_item, key, to_item},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// 1-based line number.
    pub line: u32,
    pub sku: String,
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub total_minor: i64,
    /// Units of this line already given back to stock (refunds restock each unit once).
    #[serde(default)]
    pub restocked: i64,
    /// Units of this line already refunded.
    #[serde(default)]
    pub refunded: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub at: String,
    pub status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<OrderStatus>,
    /// `user:<id>`, `admin:<id>`, `provider:<name>`, `system`.
    pub actor: String,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSummary {
    pub id: String,
    /// `manual` (pay on pickup or by invoice) or an online provider.
    pub provider: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub reference: String,
    pub user_id: String,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total_minor: i64,
    pub currency: String,
    pub payment: PaymentSummary,
    pub timeline: Vec<TimelineEvent>,
    pub created_at: String,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    /// `ORDERS` / `<created_at>#<reference>`: every order by time, for the admin.
    #[serde(default)]
    gsi2pk: String,
    #[serde(default)]
    gsi2sk: String,
    #[serde(flatten)]
    order: Order,
}

pub fn order_key(reference: &str) -> Item {
    key(format!("ORDER#{reference}"), "ORDER")
}

/// The customer's view of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderView {
    pub reference: String,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub payment: PaymentSummary,
    pub created_at: String,
}

impl From<&Order> for OrderView {
    fn from(order: &Order) -> Self {
        Self {
            reference: order.reference.clone(),
            status: order.status,
            lines: order.lines.clone(),
            total: Money {
                amount_minor: order.total_minor,
                currency: order.currency.clone(),
            },
            payment: order.payment.clone(),
            created_at: order.created_at.clone(),
        }
    }
}

/// `LUMI-7K3F-9Q2M`: 40 random bits in Crockford base32 (no I, L, O, U).
pub fn new_reference() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut rng = rand::rng();
    let mut part = || {
        (0..4)
            .map(|_| ALPHABET[rng.random_range(0..32)] as char)
            .collect::<String>()
    };
    format!("LUMI-{}-{}", part(), part())
}

pub async fn get(db: &Db, table: &str, reference: &str) -> Result<Option<Order>, StoreError> {
    if !reference.starts_with("LUMI-") || reference.len() > 20 {
        return Ok(None);
    }
    Ok(db
        .get_consistent::<OrderItem>(table, order_key(reference))
        .await?
        .map(|item| item.order))
}

/// An order of `user`; another customer's order does not exist for them (404, not 403).
pub async fn get_own(db: &Db, table: &str, user: &str, reference: &str) -> Result<Order, ApiError> {
    match get(db, table, reference).await? {
        Some(order) if order.user_id == user => Ok(order),
        _ => Err(ApiError::not_found(format!("no order {reference}"))),
    }
}

/// A page of the customer's orders, newest first, and the cursor of the next page.
pub async fn list_own(
    db: &Db,
    table: &str,
    user: &str,
    limit: i32,
    cursor: Option<&str>,
) -> Result<(Vec<OrderView>, Option<String>), ApiError> {
    let filter = OrderFilter {
        customer: Some(user.to_owned()),
        ..OrderFilter::default()
    };
    let (orders, next) = list_all(db, table, &filter, limit, cursor).await?;
    Ok((orders.iter().map(OrderView::from).collect(), next))
}

/// Filters of the admin's order list.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub customer: Option<String>,
    /// RFC 3339 bounds on the creation time, inclusive.
    pub from: Option<String>,
    pub to: Option<String>,
}

fn encode_cursor(key: Item) -> String {
    let raw: std::collections::HashMap<String, String> = key
        .into_iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|v| (k, v.clone())))
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&raw).unwrap_or_default())
}

/// A cursor of this listing: it must name the partition being listed (another one is refused
/// as invalid rather than handed to DynamoDB).
fn decode_cursor(cursor: &str, pk_name: &str, pk: &str) -> Result<Item, ApiError> {
    let invalid = || ApiError::bad_request("the cursor is not valid");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let raw: std::collections::HashMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if raw.get(pk_name).map(String::as_str) != Some(pk) {
        return Err(invalid());
    }
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k, AttributeValue::S(v)))
        .collect())
}

/// Every customer's orders, newest first, filtered; a page and the next cursor.
pub async fn list_all(
    db: &Db,
    table: &str,
    filter: &OrderFilter,
    limit: i32,
    cursor: Option<&str>,
) -> Result<(Vec<Order>, Option<String>), ApiError> {
    let (index, pk_name, pk) = match &filter.customer {
        Some(customer) => ("gsi1", "gsi1pk", format!("CUSTOMER_ORDERS#{customer}")),
        None => ("gsi2", "gsi2pk", "ORDERS".to_owned()),
    };
    let start = cursor.map(|c| decode_cursor(c, pk_name, &pk)).transpose()?;
    let sk_name = if index == "gsi1" { "gsi1sk" } else { "gsi2sk" };
    let mut condition = format!("{pk_name} = :pk");
    let mut request = db
        .client()
        .query()
        .table_name(table)
        .index_name(index)
        .expression_attribute_values(":pk", s(pk));
    match (&filter.from, &filter.to) {
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
    if let Some(status) = filter.status {
        request = request
            .filter_expression("#status = :status")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(status.as_str()));
    }
    let request = request
        .key_condition_expression(condition)
        .scan_index_forward(false)
        .limit(limit)
        .set_exclusive_start_key(start)
        .send();
    let page = db.call("Query", table, request).await?;
    let orders = page
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|item| from_item::<OrderItem>(table, item).map(|i| i.order))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        orders,
        page.last_evaluated_key
            .filter(|k| !k.is_empty())
            .map(encode_cursor),
    ))
}

/// What a checkout needs beyond the cart.
pub struct CheckoutRequest<'a> {
    pub user: &'a str,
    pub note: Option<String>,
    /// `manual` with the `orderPayments` flag off, else the online provider.
    pub provider: &'a str,
    pub now_us: i64,
}

/// Turns the cart into an order in one transaction. Returns the order and the response the
/// idempotency record keeps.
pub async fn checkout(
    db: &Db,
    table: &str,
    request: CheckoutRequest<'_>,
    claim: &Claim,
) -> Result<Order, ApiError> {
    let lines: Vec<LineItem> = cart::lines(db, table, request.user).await?;
    if lines.is_empty() {
        return Err(ApiError::Validation {
            detail: "the cart is empty".into(),
            errors: vec![crate::error::FieldError {
                field: "cart".into(),
                message: "is empty".into(),
            }],
        });
    }
    if lines.len() > 40 {
        return Err(ApiError::Validation {
            detail: "a cart holds at most 40 lines".into(),
            errors: Vec::new(),
        });
    }
    // Prices come from the catalog as it is now, never from the client.
    let keys: Vec<Item> = lines.iter().map(|l| variant_key(&l.sku)).collect();
    let variants: Vec<super::catalog::VariantItem> = db
        .batch_get(table, keys)
        .await?
        .into_iter()
        .map(|item| from_item(table, item))
        .collect::<Result<_, _>>()?;
    let mut order_lines = Vec::with_capacity(lines.len());
    let mut currency = None;
    for (i, line) in lines.iter().enumerate() {
        let variant = variants.iter().find(|v| v.sku == line.sku).ok_or_else(|| {
            ApiError::Conflict(
                format!("{} is no longer sold; remove it from the cart", line.sku).into(),
            )
        })?;
        if *currency.get_or_insert_with(|| variant.currency.clone()) != variant.currency {
            return Err(ApiError::Validation {
                detail: "the cart mixes currencies".into(),
                errors: Vec::new(),
            });
        }
        order_lines.push(OrderLine {
            line: i as u32 + 1,
            sku: line.sku.clone(),
            product_id: variant.product_id.clone(),
            name: variant.name.clone(),
            quantity: line.quantity,
            unit_price_minor: variant.price_minor,
            total_minor: variant.price_minor * line.quantity,
            restocked: 0,
            refunded: 0,
        });
    }
    let currency = currency.unwrap_or_default();
    let total_minor = order_lines.iter().map(|l| l.total_minor).sum();
    let created_at = rfc3339(request.now_us);
    let payment_status = if request.provider == "manual" {
        "awaiting_payment"
    } else {
        "pending"
    };

    for _ in 0..3 {
        let reference = new_reference();
        let order = Order {
            reference: reference.clone(),
            user_id: request.user.to_owned(),
            status: OrderStatus::PendingPayment,
            lines: order_lines.clone(),
            total_minor,
            currency: currency.clone(),
            payment: PaymentSummary {
                id: format!("pay_{}", uuid::Uuid::new_v4().simple()),
                provider: request.provider.to_owned(),
                status: payment_status.to_owned(),
            },
            timeline: vec![TimelineEvent {
                at: created_at.clone(),
                status: OrderStatus::PendingPayment,
                from: None,
                actor: format!("user:{}", request.user),
                note: "order placed".into(),
            }],
            created_at: created_at.clone(),
            version: 1,
            note: request.note.clone(),
        };
        let item = OrderItem {
            pk: format!("ORDER#{reference}"),
            sk: "ORDER".into(),
            gsi1pk: format!("CUSTOMER_ORDERS#{}", request.user),
            gsi1sk: format!("{created_at}#{reference}"),
            gsi2pk: "ORDERS".into(),
            gsi2sk: format!("{created_at}#{reference}"),
            order: order.clone(),
        };
        let recorded = Recorded {
            status: 201,
            body: serde_json::to_value(OrderView::from(&order)).map_err(ApiError::internal)?,
        };
        let mut writes = Vec::with_capacity(lines.len() * 2 + 2);
        for line in &lines {
            // The exact reservation read above: a sweep or another tab changing it fails this.
            writes.push(delete(
                table,
                line_key(request.user, &line.sku),
                "quantity = :q AND expires_at_us = :e",
                vec![(":q", n(line.quantity)), (":e", n(line.expires_at_us))],
            )?);
            writes.push(update(
                table,
                variant_key(&line.sku),
                "SET stock = stock - :q",
                Some("stock >= :q"),
                vec![(":q", n(line.quantity))],
            )?);
        }
        writes.push(put(
            table,
            to_item(table, &item)?,
            Some("attribute_not_exists(pk)"),
        )?);
        writes.push(put(
            table,
            to_item(table, &super::payments::for_order(&order))?,
            Some("attribute_not_exists(pk)"),
        )?);
        writes.push(claim.finish(table, &recorded)?);
        match transact_reasons(db, table, writes).await? {
            Ok(()) => return Ok(order),
            Err(Some(reasons)) if reasons.get(lines.len() * 2) == Some(&true) => continue, // reference taken
            Err(Some(reasons)) if reasons.last() == Some(&true) => {
                return Err(ApiError::Conflict(
                    "this Idempotency-Key is no longer held by this request".into(),
                ));
            }
            Err(Some(reasons)) if reasons.iter().step_by(2).take(lines.len()).any(|f| *f) => {
                return Err(ApiError::Conflict(
                    "the cart changed during checkout; review it and retry".into(),
                ));
            }
            Err(_) => {
                return Err(ApiError::Conflict(
                    "out of stock: the stock changed during checkout; retry".into(),
                ));
            }
        }
    }
    Err(ApiError::Conflict(
        "could not allocate an order reference; retry".into(),
    ))
}

/// The conditional write that moves `order` to `next` (status, version, lines, payment) and
/// appends `event` to its timeline: it applies only to the version read.
fn order_write(
    table: &str,
    order: &Order,
    next: &Order,
    event: &TimelineEvent,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    let event_value =
        serde_dynamo::to_attribute_value::<_, AttributeValue>(event).map_err(ApiError::internal)?;
    let lines_value = serde_dynamo::to_attribute_value::<_, AttributeValue>(&next.lines)
        .map_err(ApiError::internal)?;
    let payment_value = serde_dynamo::to_attribute_value::<_, AttributeValue>(&next.payment)
        .map_err(ApiError::internal)?;
    Ok(update(
        table,
        order_key(&order.reference),
        "SET #status = :to, #version = :next, #timeline = list_append(#timeline, :event), #lines = :lines, #payment = :payment",
        Some("#version = :version AND #status = :from"),
        vec![
            (":to", s(next.status.as_str())),
            (":from", s(order.status.as_str())),
            (":next", n(next.version)),
            (":version", n(order.version)),
            (":event", AttributeValue::L(vec![event_value])),
            (":lines", lines_value),
            (":payment", payment_value),
        ],
    )?)
}

/// Builds the response an idempotency record keeps, from the order as changed.
pub type Respond<'a> = &'a (dyn Fn(&Order) -> Recorded + Sync);

/// A status change: to what, by whom, why, when, and what else must be written with it.
pub struct Change<'a> {
    pub to: OrderStatus,
    pub actor: &'a str,
    pub note: &'a str,
    pub now_us: i64,
    /// Written in the same transaction (a payment's status, an outbox message).
    pub extra: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
}

/// Moves `order` to `change.to` (one conditional write with the stock it gives back), or says
/// why not: `Err` for a forbidden transition, `Ok(Err(_))` when the order changed meanwhile.
/// Restocks every line's unreturned units when the order stops holding stock.
pub async fn transition(
    db: &Db,
    table: &str,
    order: &Order,
    change: Change<'_>,
    claim: Option<(&Claim, Respond<'_>)>,
) -> Result<Result<Order, Option<Vec<bool>>>, ApiError> {
    let Change {
        to,
        actor,
        note,
        now_us,
        extra,
    } = change;
    if !order.status.can_become(to) {
        return Err(ApiError::Conflict(
            format!(
                "an order that is {} cannot become {}",
                order.status.as_str(),
                to.as_str()
            )
            .into(),
        ));
    }
    let mut next = order.clone();
    next.status = to;
    next.version += 1;
    let event = TimelineEvent {
        at: rfc3339(now_us),
        status: to,
        from: Some(order.status),
        actor: actor.to_owned(),
        note: note.to_owned(),
    };
    next.timeline.push(event.clone());
    let restock = order.status.holds_stock() && !to.holds_stock();
    let mut writes = extra;
    if restock {
        for line in &mut next.lines {
            let units = line.quantity - line.restocked;
            if units > 0 {
                writes.push(update(
                    table,
                    variant_key(&line.sku),
                    "SET stock = stock + :u, available = available + :u",
                    Some("attribute_exists(pk)"),
                    vec![(":u", n(units))],
                )?);
                line.restocked = line.quantity;
            }
        }
    }
    if to == OrderStatus::PaymentFailed {
        next.payment.status = "failed".into();
    }
    writes.push(order_write(table, order, &next, &event)?);
    if let Some((claim, respond)) = claim {
        writes.push(claim.finish(table, &respond(&next))?);
    }
    Ok(transact_reasons(db, table, writes).await?.map(|()| next))
}

/// One line of a refund: how many units, and whether they go back on the shelf.
#[derive(Debug, Clone, Deserialize)]
pub struct RefundLine {
    pub line: u32,
    pub quantity: i64,
    #[serde(default)]
    pub restock: bool,
}

/// What a refund did.
#[derive(Debug, Clone)]
pub struct Refunded {
    pub order: Order,
    pub amount_minor: i64,
    pub restocked_units: i64,
}

/// Refunds `lines` of `order` (the runbook's `OrderService.restockInventory`): in one transaction
/// conditional on the order's version, each line's refunded (and restocked) units grow, never
/// past what was sold, the chosen units go back to stock, the payment is marked, `extra`
/// (the refund email, the idempotency record) is written. A full refund makes the order
/// `refunded`. `Ok(Err(_))`: the order changed meanwhile.
pub async fn refund(
    db: &Db,
    table: &str,
    order: &Order,
    lines: &[RefundLine],
    change: Change<'_>,
    claim: Option<(&Claim, Respond<'_>)>,
) -> Result<Result<Refunded, Option<Vec<bool>>>, ApiError> {
    let Change {
        actor,
        note,
        now_us,
        extra,
        ..
    } = change;
    let invalid = |field: String, message: &str| ApiError::Validation {
        detail: format!("{field}: {message}").into(),
        errors: vec![crate::error::FieldError {
            field,
            message: message.into(),
        }],
    };
    if lines.is_empty() {
        return Err(invalid("lines".into(), "name at least one line"));
    }
    if !order.status.can_become(OrderStatus::Refunded) {
        return Err(ApiError::Conflict(
            format!(
                "an order that is {} cannot be refunded",
                order.status.as_str()
            )
            .into(),
        ));
    }
    let mut next = order.clone();
    let mut writes = extra;
    let (mut amount_minor, mut restocked_units) = (0, 0);
    for (i, refund) in lines.iter().enumerate() {
        let field = format!("lines[{i}]");
        let line = next
            .lines
            .iter_mut()
            .find(|l| l.line == refund.line)
            .ok_or_else(|| invalid(format!("{field}.line"), "no such line"))?;
        let refundable = line.quantity - line.refunded;
        if refund.quantity < 1 || refund.quantity > refundable {
            return Err(invalid(
                format!("{field}.quantity"),
                &format!("must be between 1 and {refundable}"),
            ));
        }
        line.refunded += refund.quantity;
        amount_minor += line.unit_price_minor * refund.quantity;
        if refund.restock {
            let units = refund.quantity.min(line.quantity - line.restocked);
            if units > 0 {
                line.restocked += units;
                restocked_units += units;
                writes.push(update(
                    table,
                    variant_key(&line.sku),
                    "SET stock = stock + :u, available = available + :u",
                    Some("attribute_exists(pk)"),
                    vec![(":u", n(units))],
                )?);
            }
        }
    }
    let full = next.lines.iter().all(|l| l.refunded == l.quantity);
    let to = if full {
        OrderStatus::Refunded
    } else {
        order.status
    };
    next.status = to;
    next.version += 1;
    next.payment.status = if full {
        "refunded".into()
    } else {
        "partially_refunded".into()
    };
    let event = TimelineEvent {
        at: rfc3339(now_us),
        status: to,
        from: Some(order.status),
        actor: actor.to_owned(),
        note: format!("{} ({} refunded)", note, amount_minor),
    };
    next.timeline.push(event.clone());
    writes.push(order_write(table, order, &next, &event)?);
    writes.push(update(
        table,
        super::payments::payment_key(&order.payment.id),
        "SET #status = :status, gsi1sk = :sort",
        None,
        vec![
            (":status", s(next.payment.status.clone())),
            (
                ":sort",
                s(format!("{}#{}", next.payment.status, order.created_at)),
            ),
        ],
    )?);
    if let Some((claim, respond)) = claim {
        writes.push(claim.finish(table, &respond(&next))?);
    }
    Ok(transact_reasons(db, table, writes)
        .await?
        .map(|()| Refunded {
            order: next,
            amount_minor,
            restocked_units,
        }))
}
