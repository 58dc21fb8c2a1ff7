//! Reading the whole state back after a history and checking it: the invariants every state
//! must keep (per variant, per order, per line, emails, audit and timeline), and the model's
//! agreement with the real system on every final value.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{
    api::{Api, Catalog, Customer, number, string},
    model::{self, Model, Pay, RestockType, Status},
};

/// Everything read back after a history.
pub struct Snapshot {
    /// The admin's view of every order of the history's customers, by reference.
    pub orders: BTreeMap<String, Value>,
    /// Per variant: (stock, available, active, ledger movements).
    pub variants: Vec<(i64, i64, bool, Vec<Value>)>,
    /// Per variant: units held by cart lines.
    pub reserved: Vec<i64>,
}

pub async fn snapshot(api: &Api<'_>, catalog: &Catalog, customers: &[Customer]) -> Snapshot {
    let users: BTreeSet<String> = customers.iter().map(|c| c.user_id.clone()).collect();
    let listed = api.orders_of(&users).await;
    let mut orders = BTreeMap::new();
    for order in listed {
        let reference = order["reference"].as_str().unwrap().to_owned();
        // The listing and the order's own read must tell the same story.
        let read = api.order(&reference).await;
        assert_eq!(
            read, order,
            "the listing shows {reference} as its own read does"
        );
        assert!(
            orders.insert(reference.clone(), read).is_none(),
            "{reference} listed twice"
        );
    }
    let mut variants = Vec::new();
    let mut reserved = Vec::new();
    for sku in &catalog.skus {
        variants.push(api.ledger(sku).await);
        reserved.push(api.reserved(sku).await);
    }
    Snapshot {
        orders,
        variants,
        reserved,
    }
}

fn int(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// A JSON value as the model writes it (strings without quotes).
fn plain(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

fn pay_of(text: &str) -> Pay {
    match text {
        "pending" => Pay::Pending,
        "authorized" => Pay::Authorized,
        "captured" => Pay::Captured,
        "failed" => Pay::Failed,
        "amount_mismatch" => Pay::AmountMismatch,
        other => panic!("unknown payment status {other}"),
    }
}

fn status_of(text: &str) -> Status {
    match text {
        "open" => Status::Open,
        "cancelled" => Status::Cancelled,
        "completed" => Status::Completed,
        other => panic!("unknown order status {other}"),
    }
}

/// The admin's view of an order read into the model's terms (to derive its facets the
/// model's way); `variant` maps a SKU to its index.
pub fn as_model(order: &Value, variant: &dyn Fn(&str) -> usize) -> model::Order {
    let lines = order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| model::Line {
            variant: variant(text(&l["sku"])),
            quantity: int(&l["quantity"]),
            price: int(&l["unit_price_minor"]),
            fulfilled: int(&l["fulfilled"]),
            removed: int(&l["removed"]),
            returned: int(&l["returned"]),
            refunded: int(&l["refunded"]),
            restocked: int(&l["restocked"]),
        })
        .collect();
    let refunds = order["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| model::Refund {
            amount: int(&r["amount_minor"]),
            lines: r["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        int(&l["line"]) as u32,
                        int(&l["quantity"]),
                        RestockType::parse(text(&l["restock_type"])).unwrap(),
                    )
                })
                .collect(),
            // Manual refunds wait `pending`; online ones are `requested` until Stripe answers
            // (`failed`: the money is still owed).
            settled: match text(&r["status"]) {
                "succeeded" => true,
                "pending" | "requested" | "failed" => false,
                other => panic!("unknown refund status {other}"),
            },
        })
        .collect();
    let payment = &order["payment"];
    model::Order {
        customer: 0,
        online: text(&payment["provider"]) == "stripe",
        status: status_of(text(&order["status"])),
        lines,
        total: int(&order["total"]["amount_minor"]),
        pay: pay_of(text(&payment["status"])),
        captured: int(&payment["captured_minor"]),
        refunded: int(&payment["refunded_minor"]),
        attempt: int(&payment["attempt"]) as u32,
        events: BTreeSet::new(),
        refunds,
        failed_attempts: failed_attempts(order),
        timeline: Vec::new(),
    }
}

/// The attempts whose failure the timeline shows (a reopen starts the next attempt).
pub fn failed_attempts(order: &Value) -> BTreeSet<u32> {
    let mut attempt = 1;
    let mut failed = BTreeSet::new();
    for event in order["timeline"].as_array().unwrap() {
        match text(&event["action"]) {
            "order.reopen" => attempt += 1,
            "payment.fail" => {
                failed.insert(attempt);
            }
            _ => {}
        }
    }
    failed
}

pub fn actions(order: &Value) -> Vec<String> {
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| text(&e["action"]).to_owned())
        .collect()
}

/// Where the model's order and the real one differ (empty when they agree).
pub fn diff_order(
    expected: &model::Order,
    real: &Value,
    catalog: &Catalog,
    customers: &[Customer],
) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut same = |what: &str, want: String, got: String| {
        if want != got {
            diffs.push(format!("{what}: model {want}, system {got}"));
        }
    };
    let payment = &real["payment"];
    same(
        "status",
        expected.status.as_str().into(),
        plain(&real["status"]),
    );
    same(
        "financial_status",
        expected.financial().into(),
        plain(&real["financial_status"]),
    );
    same(
        "fulfillment_status",
        expected.fulfillment().into(),
        plain(&real["fulfillment_status"]),
    );
    same(
        "user",
        customers[expected.customer].user_id.clone(),
        plain(&real["user_id"]),
    );
    same(
        "customer_email",
        customers[expected.customer].email.clone(),
        plain(&real["customer_email"]),
    );
    same(
        "provider",
        if expected.online { "stripe" } else { "manual" }.into(),
        plain(&payment["provider"]),
    );
    same(
        "payment.status",
        expected.pay.as_str().into(),
        plain(&payment["status"]),
    );
    same(
        "total",
        expected.total.to_string(),
        real["total"]["amount_minor"].to_string(),
    );
    same(
        "payment.amount_minor",
        expected.total.to_string(),
        payment["amount_minor"].to_string(),
    );
    same(
        "captured",
        expected.captured.to_string(),
        payment["captured_minor"].to_string(),
    );
    same(
        "refunded",
        expected.refunded.to_string(),
        payment["refunded_minor"].to_string(),
    );
    same(
        "attempt",
        expected.attempt.to_string(),
        payment["attempt"].to_string(),
    );
    let lines = real["lines"].as_array().cloned().unwrap_or_default();
    same(
        "lines",
        expected.lines.len().to_string(),
        lines.len().to_string(),
    );
    for (i, (want, got)) in expected.lines.iter().zip(&lines).enumerate() {
        let n = i + 1;
        same(
            &format!("line {n} number"),
            n.to_string(),
            got["line"].to_string(),
        );
        same(
            &format!("line {n} sku"),
            catalog.skus[want.variant].clone(),
            plain(&got["sku"]),
        );
        for (field, value) in [
            ("quantity", want.quantity),
            ("unit_price_minor", want.price),
            ("total_minor", want.price * want.quantity),
            ("fulfilled", want.fulfilled),
            ("removed", want.removed),
            ("returned", want.returned),
            ("refunded", want.refunded),
            ("restocked", want.restocked),
        ] {
            same(
                &format!("line {n} {field}"),
                value.to_string(),
                got[field].to_string(),
            );
        }
    }
    let real_model = as_model(real, &|sku| {
        catalog
            .skus
            .iter()
            .position(|s| s == sku)
            .unwrap_or(usize::MAX)
    });
    same(
        "refunds",
        format!("{:?}", expected.refunds),
        format!("{:?}", real_model.refunds),
    );
    same(
        "failed attempts",
        format!("{:?}", expected.failed_attempts),
        format!("{:?}", real_model.failed_attempts),
    );
    same(
        "timeline",
        expected.timeline.join(","),
        actions(real).join(","),
    );
    diffs
}

/// Accumulates broken invariants.
#[derive(Default)]
pub struct Findings(pub Vec<String>);

impl Findings {
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }
}

/// Adjustments accepted per variant, known to the history (the ledger must hold exactly them).
pub type Adjusted = Vec<i64>;

/// The invariants of a state, read back whole (see the module doc of `commerce_history`).
pub async fn invariants(
    api: &Api<'_>,
    catalog: &Catalog,
    customers: &[Customer],
    snap: &Snapshot,
    adjusted: &Adjusted,
) -> Findings {
    let mut f = Findings::default();
    let variant_of = |sku: &str| {
        catalog
            .skus
            .iter()
            .position(|s| s == sku)
            .unwrap_or_else(|| panic!("an order of the history names {sku}, not of its catalog"))
    };
    // Units each order still holds per variant (sold and not restocked), for conservation.
    let mut held_by_orders = vec![0_i64; catalog.skus.len()];
    let mut sold = vec![0_i64; catalog.skus.len()];
    let emails: BTreeSet<&str> = customers.iter().map(|c| c.email.as_str()).collect();
    for (reference, order) in &snap.orders {
        let o = as_model(order, &variant_of);
        let r = reference;
        // 2. money
        f.check(
            0 <= o.refunded && o.refunded <= o.captured && o.captured <= o.total,
            || {
                format!(
                    "{r}: refunded {} captured {} total {}",
                    o.refunded, o.captured, o.total
                )
            },
        );
        f.check(o.captured == 0 || o.captured == o.total, || {
            format!(
                "{r}: captured {} of {}: a capture is all or nothing",
                o.captured, o.total
            )
        });
        let recorded: i64 = o.refunds.iter().map(|x| x.amount).sum();
        f.check(recorded == o.refunded, || {
            format!(
                "{r}: refund records sum to {recorded}, refunded_minor is {}",
                o.refunded
            )
        });
        f.check(
            o.status != Status::Cancelled || o.captured == o.refunded,
            || {
                format!(
                    "{r}: cancelled holding captured {} refunded {}",
                    o.captured, o.refunded
                )
            },
        );
        for (i, refund) in o.refunds.iter().enumerate() {
            let priced: i64 = refund
                .lines
                .iter()
                .map(|(line, q, _)| {
                    let index = (*line as usize).wrapping_sub(1);
                    o.lines.get(index).map_or(i64::MIN / 4, |l| l.price * q)
                })
                .sum();
            f.check(priced == refund.amount, || {
                format!(
                    "{r}: refund {i} of {} for units worth {priced}",
                    refund.amount
                )
            });
        }
        for raw in order["refunds"].as_array().unwrap() {
            f.check(raw["currency"] == order["total"]["currency"], || {
                format!(
                    "{r}: refund in {} for an order in {}",
                    raw["currency"], order["total"]["currency"]
                )
            });
        }
        // 3. per line
        for (i, l) in o.lines.iter().enumerate() {
            let n = i + 1;
            f.check(
                [l.fulfilled, l.removed, l.returned, l.refunded, l.restocked]
                    .iter()
                    .all(|c| *c >= 0),
                || format!("{r} line {n}: a negative counter {l:?}"),
            );
            f.check(l.fulfilled + l.removed <= l.quantity, || {
                format!("{r} line {n}: fulfilled + removed > quantity {l:?}")
            });
            f.check(l.returned <= l.fulfilled, || {
                format!("{r} line {n}: returned > fulfilled {l:?}")
            });
            f.check(
                l.restocked <= l.quantity && l.refunded <= l.quantity,
                || format!("{r} line {n}: restocked or refunded > quantity {l:?}"),
            );
            // Restocked units are removed (unshipped) units or returned (shipped) ones, each once.
            f.check(
                l.restocked - l.returned <= l.removed && l.restocked >= l.returned,
                || {
                    format!(
                        "{r} line {n}: restocked {} is not removed {} + returned {}",
                        l.restocked, l.removed, l.returned
                    )
                },
            );
            let returned: i64 = o
                .refunds
                .iter()
                .flat_map(|x| &x.lines)
                .filter(|(line, _, restock)| *line as usize == n && *restock == RestockType::Return)
                .map(|(_, q, _)| q)
                .sum();
            f.check(returned == l.returned, || {
                format!(
                    "{r} line {n}: refunds return {returned} units, the line says {}",
                    l.returned
                )
            });
            let refunded: i64 = o
                .refunds
                .iter()
                .flat_map(|x| &x.lines)
                .filter(|(line, _, _)| *line as usize == n)
                .map(|(_, q, _)| q)
                .sum();
            f.check(refunded == l.refunded, || {
                format!(
                    "{r} line {n}: refunds name {refunded} units, the line says {}",
                    l.refunded
                )
            });
            held_by_orders[l.variant] += l.quantity - l.restocked;
            sold[l.variant] += l.quantity;
        }
        f.check(
            o.lines.iter().all(|l| l.fulfilled == 0) || o.captured > 0,
            || format!("{r}: shipped without a capture"),
        );
        f.check(
            o.status != Status::Completed || o.lines.iter().all(|l| l.open() == 0),
            || format!("{r}: completed with units to ship"),
        );
        // The derived facets are the model's derivation of the record.
        f.check(order["financial_status"] == o.financial(), || {
            format!(
                "{r}: financial_status {} but the record says {}",
                order["financial_status"],
                o.financial()
            )
        });
        f.check(order["fulfillment_status"] == o.fulfillment(), || {
            format!(
                "{r}: fulfillment_status {} but the record says {}",
                order["fulfillment_status"],
                o.fulfillment()
            )
        });
        // One timeline event per mutation: the version counts them.
        let timeline = actions(order);
        f.check(
            timeline.first().map(String::as_str) == Some("order.placed"),
            || format!("{r}: the timeline starts with {:?}", timeline.first()),
        );
        f.check(int(&order["version"]) == timeline.len() as i64, || {
            format!(
                "{r}: version {} with {} timeline events",
                order["version"],
                timeline.len()
            )
        });
        f.check(emails.contains(text(&order["customer_email"])), || {
            format!(
                "{r}: customer_email {} is no customer of the history",
                order["customer_email"]
            )
        });
        // 4. exactly one audit event per timeline event, same actions.
        let audit = api.audit(reference).await;
        let mut audited: Vec<String> = audit
            .iter()
            .map(|e| text(&e["action"]).to_owned())
            .collect();
        let mut expected = timeline.clone();
        audited.sort();
        expected.sort();
        f.check(audited == expected, || {
            format!("{r}: audit actions {audited:?} vs timeline {expected:?}")
        });
        // The stock ledger's movements caused by this order: the line's units out, restocked back.
        for l in &o.lines {
            let (_, _, _, movements) = &snap.variants[l.variant];
            let caused: i64 = movements
                .iter()
                .filter(|m| m["cause"] == format!("order:{reference}").as_str())
                .map(|m| int(&m["stock_delta"]))
                .sum();
            f.check(caused == -(l.quantity - l.restocked), || {
                format!(
                    "{r}: {} ledger movements sum to {caused}; the line holds {} of {} (restocked {})",
                    catalog.skus[l.variant],
                    l.quantity - l.restocked,
                    l.quantity,
                    l.restocked
                )
            });
        }
        // Refunds by provider: manual ones wait for an admin (`pending`, no Stripe refund);
        // online ones are Stripe's refunds, settled by its answer (`provider:stripe`) and
        // recorded once on the payment (`provider-refund:<id>`), exactly what Stripe holds.
        let payment = &order["payment"];
        stripe_refunds(api, r, order, &mut f).await;
        // The payment projection is the order's payment.
        match api
            .item(&format!("PAYMENT#{}", text(&payment["id"])), "PAYMENT")
            .await
        {
            None => f.0.push(format!("{r}: no payment projection")),
            Some(item) => {
                let projected = (
                    string(item.get("order_reference")),
                    string(item.get("status")),
                    number(item.get("captured_minor")),
                    number(item.get("refunded_minor")),
                    string(item.get("financial_status")),
                );
                let record = (
                    reference.clone(),
                    text(&payment["status"]).to_owned(),
                    o.captured,
                    o.refunded,
                    text(&order["financial_status"]).to_owned(),
                );
                f.check(projected == record, || {
                    format!("{r}: payment projection {projected:?} vs the order {record:?}")
                });
            }
        }
    }
    // 1. per variant
    for (v, sku) in catalog.skus.iter().enumerate() {
        let (stock, available, _, movements) = &snap.variants[v];
        let by_kind = |kind: &str| -> i64 {
            movements
                .iter()
                .filter(|m| m["kind"] == kind)
                .map(|m| int(&m["stock_delta"]))
                .sum()
        };
        let ledger: i64 = movements.iter().map(|m| int(&m["stock_delta"])).sum();
        f.check(ledger == *stock, || {
            format!("{sku}: stock {stock}, ledger sums to {ledger}")
        });
        let reserved = snap.reserved[v];
        f.check(*available == stock - reserved, || {
            format!("{sku}: available {available}, stock {stock} - reserved {reserved}")
        });
        f.check(*stock >= 0 && *available >= 0 && reserved >= 0, || {
            format!("{sku}: negative stock {stock} / available {available} / reserved {reserved}")
        });
        let initial = by_kind("initial");
        let adjustments = by_kind("adjustment");
        let sales = by_kind("sale");
        let restocked = by_kind("cancel_restock") + by_kind("refund_restock");
        let retaken = by_kind("reopen");
        f.check(initial == catalog.initial[v], || {
            format!(
                "{sku}: initial movements {initial}, created with {}",
                catalog.initial[v]
            )
        });
        f.check(adjustments == adjusted[v], || {
            format!(
                "{sku}: adjustment movements {adjustments}, accepted adjustments {}",
                adjusted[v]
            )
        });
        f.check(-sales == sold[v], || {
            format!(
                "{sku}: sale movements {sales}, orders hold {} units sold",
                sold[v]
            )
        });
        f.check(
            by_kind("rebalance") == 0 && movements.iter().all(|m| m["kind"] != "rebalance"),
            || format!("{sku}: a rebalance movement: nothing should need repair"),
        );
        // Global conservation: initial + adjustments - sold + restocked - retaken == stock, and
        // what the orders still hold is exactly what left the shelf.
        f.check(initial + adjustments + sales + restocked + retaken == *stock, || {
            format!("{sku}: initial {initial} + adjustments {adjustments} + sales {sales} + restocked {restocked} + reopened {retaken} != stock {stock}")
        });
        f.check(initial + adjustments - held_by_orders[v] == *stock, || {
            format!(
                "{sku}: initial {initial} + adjustments {adjustments} - held by orders {} != stock {stock}",
                held_by_orders[v]
            )
        });
    }
    let mismatched: Vec<Value> = api
        .mismatches()
        .await
        .into_iter()
        .filter(|m| catalog.skus.iter().any(|s| m["sku"] == s.as_str()))
        .collect();
    f.check(mismatched.is_empty(), || {
        format!("the inventory-mismatch report finds {mismatched:?}")
    });
    f
}

/// The refunds of order `r` (the admin's view `order`) against its provider: see the caller.
async fn stripe_refunds(api: &Api<'_>, r: &str, order: &Value, f: &mut Findings) {
    let payment = &order["payment"];
    let refunds = order["refunds"].as_array().unwrap();
    if payment["provider"] != "stripe" {
        f.check(
            refunds
                .iter()
                .all(|x| x["status"] != "requested" && x.get("provider_refund_id").is_none()),
            || format!("{r}: a manual refund asked of Stripe: {refunds:?}"),
        );
        return;
    }
    f.check(
        refunds
            .iter()
            .all(|x| matches!(text(&x["status"]), "succeeded" | "requested")),
        || format!("{r}: an online refund neither succeeded nor requested: {refunds:?}"),
    );
    let settles: Vec<&Value> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "refund.settle")
        .collect();
    f.check(
        settles.iter().all(|e| e["actor"] == "provider:stripe"),
        || format!("{r}: an online refund settled by someone else than Stripe: {settles:?}"),
    );
    let stored = api.app.stored_order(r).await;
    let mut ours: Vec<(String, i64)> = Vec::new();
    for x in refunds.iter().filter(|x| x["status"] == "succeeded") {
        let Some(provider) = x["provider_refund_id"].as_str() else {
            f.0.push(format!(
                "{r}: a succeeded online refund without its Stripe refund: {x}"
            ));
            continue;
        };
        ours.push((provider.to_owned(), int(&x["amount_minor"])));
        let event = format!("provider-refund:{}", text(&x["id"]));
        let recorded = stored
            .payment
            .events
            .iter()
            .filter(|e| **e == event)
            .count();
        f.check(recorded == 1, || {
            format!("{r}: the payment records {event} {recorded} times")
        });
    }
    let Some(intent) = payment["provider_ref"].as_str() else {
        f.0.push(format!("{r}: an online payment without its PaymentIntent"));
        return;
    };
    if refunds.iter().any(|x| x["status"] != "succeeded") {
        // Still to be asked (the concurrent phase): Stripe may hold it already.
        return;
    }
    if int(&payment["captured_minor"]) == 0 {
        // Never paid (localstripe cannot list the refunds of an intent never charged).
        f.check(refunds.is_empty(), || {
            format!("{r}: refunds of nothing captured: {refunds:?}")
        });
        return;
    }
    let held = match api.stripe_refunds(intent).await {
        Ok(listed) => listed,
        Err(error) => {
            f.0.push(format!("{r}: the refunds of {intent} at Stripe: {error}"));
            return;
        }
    };
    // One Stripe refund per Lumi record (its idempotency key is the record's). localstripe
    // ignores idempotency keys, so a record asked twice with its key shows twice there, where
    // Stripe would answer the first refund again: what Stripe would hold is one per record.
    let mut by_record: BTreeMap<&str, Vec<&super::api::StripeRefund>> = BTreeMap::new();
    for refund in &held {
        by_record.entry(refund.3.as_str()).or_default().push(refund);
    }
    let mut asked: Vec<(String, i64)> = Vec::new();
    for (record, copies) in &by_record {
        f.check(
            copies
                .iter()
                .all(|c| c.2 == "succeeded" && c.1 == copies[0].1),
            || format!("{r}: Stripe's refunds for record {record:?} differ: {copies:?}"),
        );
        let answered = ours
            .iter()
            .find(|(id, _)| copies.iter().any(|c| &c.0 == id));
        asked.push(
            answered
                .cloned()
                .unwrap_or_else(|| (copies[0].0.clone(), copies[0].1)),
        );
        if copies.len() > 1 {
            println!(
                "{r}: record {record} asked of Stripe {} times with its key: {copies:?}",
                copies.len()
            );
        }
    }
    ours.sort();
    asked.sort();
    f.check(ours == asked, || {
        format!("{r}: Stripe holds the refunds {held:?} of {intent}, the order {ours:?}")
    });
}

/// Sends every refund email waiting (outbox, then the queue through the worker), then checks
/// exactly one email per refund record and per failed attempt reached each order's customer,
/// with the amounts owed, and each delivery record says `sent`.
pub async fn emails(api: &Api<'_>, customers: &[Customer], snap: &Snapshot) -> Findings {
    let mut f = Findings::default();
    let app = api.app;
    // The orders' own flushes sent everything; a leftover is a message that never left.
    f.check(api.outbox_left().await == 0, || {
        "messages are left in the outbox".into()
    });
    let worker = app.refund_worker(&[]);
    // Concurrent flushes of the outbox may queue one message twice; the worker sends it once
    // and reports the copy it finds `sending` as failed (SQS redelivers it later, to find it
    // `sent`): a failure here is not a lost email. What counts is below: one email per id.
    while app.poll_refund_emails(&worker).await.received > 0 {}
    let recipients: BTreeSet<&str> = customers.iter().map(|c| c.email.as_str()).collect();
    let sent: Vec<Value> = app
        .sent_emails()
        .await
        .into_iter()
        .filter(|e| {
            recipients
                .iter()
                .any(|r| e["destinations"].to_string().contains(r))
        })
        .collect();
    let mut accounted = 0;
    for (reference, order) in &snap.orders {
        let r = reference;
        let to = text(&order["customer_email"]);
        let mine: Vec<&Value> = sent
            .iter()
            .filter(|e| e["subject"].to_string().contains(reference.as_str()))
            .collect();
        accounted += mine.len();
        let payment = &order["payment"];
        let mut owed: Vec<(String, i64)> = order["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    format!("refund:{}", text(&x["id"])),
                    int(&x["amount_minor"]),
                )
            })
            .collect();
        for attempt in failed_attempts(order) {
            owed.push((
                format!("payment:{}:failed:{attempt}", text(&payment["id"])),
                int(&payment["amount_minor"]),
            ));
        }
        f.check(mine.len() == owed.len(), || {
            format!(
                "{r}: {} emails sent, {} owed ({owed:?})",
                mine.len(),
                owed.len()
            )
        });
        f.check(
            mine.iter()
                .all(|e| e["destinations"].to_string().contains(to)),
            || format!("{r}: an email went to someone else than {to}"),
        );
        let payment_id = text(&payment["id"]);
        f.check(
            mine.iter()
                .all(|e| e["body"].to_string().contains(payment_id)),
            || format!("{r}: an email does not name the payment {payment_id}"),
        );
        let mut amounts_sent: Vec<String> = mine.iter().map(|e| amount_in(e)).collect();
        let mut amounts_owed: Vec<String> = owed
            .iter()
            .map(|(_, amount)| format!("{}.{:02} EUR", amount / 100, amount % 100))
            .collect();
        amounts_sent.sort();
        amounts_owed.sort();
        f.check(amounts_sent == amounts_owed, || {
            format!("{r}: amounts emailed {amounts_sent:?}, owed {amounts_owed:?}")
        });
        for (id, _) in &owed {
            let delivery = api.item(&format!("DELIVERY#{id}"), "DELIVERY").await;
            let status = delivery.map(|d| string(d.get("status")));
            f.check(status.as_deref() == Some("sent"), || {
                format!("{r}: delivery {id} is {status:?}")
            });
        }
    }
    f.check(accounted == sent.len(), || {
        format!(
            "{} emails to the history's customers name none of their orders",
            sent.len() - accounted
        )
    });
    f
}

/// The first amount an email names (`21.00 EUR`), whatever its wording.
fn amount_in(email: &Value) -> String {
    let body = email["body"].as_str().unwrap_or_default();
    body.match_indices(" EUR")
        .map(|(at, _)| {
            let number = body[..at]
                .rsplit(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()
                .unwrap_or_default();
            format!("{number} EUR")
        })
        .find(|amount| amount.len() > " EUR".len())
        .unwrap_or_else(|| format!("? in {body}"))
}

/// Compares the model's final state with the system's: every order, variant and cart.
pub async fn agreement(
    api: &Api<'_>,
    model: &Model,
    references: &[String],
    catalog: &Catalog,
    customers: &[Customer],
    snap: &Snapshot,
) -> Findings {
    let mut f = Findings::default();
    f.check(snap.orders.len() == model.orders.len(), || {
        format!(
            "the system lists {} orders, the model placed {}",
            snap.orders.len(),
            model.orders.len()
        )
    });
    for (i, expected) in model.orders.iter().enumerate() {
        let reference = &references[i];
        match snap.orders.get(reference) {
            None => f.0.push(format!("order {i} ({reference}) is not listed")),
            Some(real) => {
                for diff in diff_order(expected, real, catalog, customers) {
                    f.0.push(format!("order {i} ({reference}): {diff}"));
                }
            }
        }
    }
    for (v, expected) in model.variants.iter().enumerate() {
        let (stock, available, active, _) = &snap.variants[v];
        f.check(
            (expected.stock, expected.available, expected.active) == (*stock, *available, *active),
            || {
                format!(
                    "{}: model stock {} available {} active {}, system {stock} {available} {active}",
                    expected.sku, expected.stock, expected.available, expected.active
                )
            },
        );
    }
    for (c, customer) in customers.iter().enumerate() {
        let cart = api
            .as_customer(customer, reqwest::Method::GET, "/api/v1/cart", None, None)
            .await;
        let real: Vec<(String, i64, String, bool)> = cart.body["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    text(&l["sku"]).to_owned(),
                    int(&l["quantity"]),
                    text(&l["reserved_until"]).to_owned(),
                    l["expired"].as_bool().unwrap(),
                )
            })
            .collect();
        let expected: Vec<(String, i64, String, bool)> = model.carts[c]
            .iter()
            .map(|(v, line)| {
                (
                    catalog.skus[*v].clone(),
                    line.quantity,
                    lumi_commerce::rfc3339(line.expires_us),
                    line.expires_us <= model.now_us,
                )
            })
            .collect();
        f.check(real == expected, || {
            format!("customer {c}'s cart: model {expected:?}, system {real:?}")
        });
    }
    f
}
