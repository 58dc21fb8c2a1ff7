//! The commerce history checker: seeded histories of customers, admins and the payment
//! provider (Stripe: localstripe for its API, the history's own signed events for its
//! webhooks) against the real local stack (moto + the local gateway, over HTTP), then the whole
//! state read back and checked.
//!
//! Two phases per seed, each on its own catalog and customers:
//!
//! - **sequential**: the seed's operations one at a time against the system and against an
//!   in-memory model of the rules written here (`history/model.rs`, independent of
//!   `lumi_commerce::model`). Every answer (status, replay, what a payment event did) and every
//!   touched order must agree as they happen, and every final value at the end (orders, lines,
//!   money, refunds, timelines, variants, carts).
//! - **concurrent**: eight actors at once (five customers, two admins, the provider), which
//!   must only ever get the answers their operation allows (never a 5xx, never two orders for
//!   one checkout key, a replay naming the first order, a redelivered applied event a
//!   duplicate); since interleavings differ, the end state is checked against the invariants.
//!
//! The functions run on a manual clock the histories move: cart reservations lapse (15
//! minutes, at most 60 from a line's first reservation), hold their units until an add that
//! finds the variant short sweeps them, and still check out until then; webhooks are signed at
//! that time.
//!
//! Stripe's own webhooks do not reach the app (`without_stripe_webhooks`): every event is one
//! of the history's operations, forged and signed like Stripe's (`payment_intent.succeeded`,
//! `payment_intent.payment_failed`, `refund.updated`, and `payment_intent.amount_capturable_updated`
//! as a type Lumi does not act on). Before a `payment_intent.succeeded` of what is due, the
//! intent is really paid at localstripe with a working card, so that the refunds Lumi then asks
//! of Stripe find the money and succeed at once.
//!
//! The invariants, after both phases: per variant, `stock` is the sum of its ledger and
//! `available = stock - reserved`, neither negative, and initial + adjustments - units held by
//! orders == stock (ledger kinds and orders agree); per order, refunded <= captured <= total,
//! refunded is the sum of the refund records, a cancelled order holds no unrefunded capture,
//! the facets derive from the record, one audit event per timeline event, the payment
//! projection is the order's payment; per line, the counters are consistent, each unit is
//! restocked at most once and shipped units only through `return` refunds naming them; one
//! refund email (with its amount, to the order's customer) per refund record and per failed
//! payment attempt; online refunds succeeded are exactly the refunds localstripe holds for the
//! intent, each recorded once on the payment.
//!
//! `LUMI_HISTORY_SEEDS` (comma list, `random` for a clock seed) and `LUMI_HISTORY_OPS`
//! (operations per seed and phase) set the budget; `make soak SEED=.. OPS=..` runs a long one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod history;

use std::{collections::BTreeMap, sync::Mutex, time::Instant};

use history::{
    api::{Api, Catalog, Customer, Reply},
    check,
    model::{self, Model, Outcome, PayEvent, RestockType, Status},
    ops::{Generator, Op},
};
use lumi_shared::{
    clock::{Clock as _, ManualClock},
    settings::SystemSettings,
};
use lumi_tests::TestApp;
use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::Method;
use serde_json::{Value, json};

const DEFAULT_SEEDS: &[u64] = &[1, 2, 3];
const DEFAULT_OPS: usize = 150;
/// The share of customers the rollout gives online payments (the rest pay manually).
const ROLLOUT_PERCENT: u8 = 60;
/// Per product, its variants' (price in cents, initial stock): scarce on purpose.
const LAYOUT: &[&[(i64, i64)]] = &[&[(1250, 8), (700, 6)], &[(333, 12)], &[(2000, 5), (95, 14)]];

fn seeds() -> Vec<u64> {
    match std::env::var("LUMI_HISTORY_SEEDS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s == "random" {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos() as u64
                        % 1_000_000_007
                } else {
                    s.parse()
                        .unwrap_or_else(|_| panic!("LUMI_HISTORY_SEEDS: {s} is not a number"))
                }
            })
            .collect(),
        _ => DEFAULT_SEEDS.to_vec(),
    }
}

fn ops() -> usize {
    std::env::var("LUMI_HISTORY_OPS")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().expect("LUMI_HISTORY_OPS is a number"))
        .unwrap_or(DEFAULT_OPS)
}

/// Prints how to replay `seed` if the history panics.
struct Replay {
    phase: &'static str,
    seed: u64,
    ops: usize,
}

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the functions complained about last, to tell a bug from the machine.
            let complaints: Vec<String> = lumi_tests::logs()
                .json()
                .into_iter()
                .filter(|line| matches!(line["level"].as_str(), Some("WARN" | "ERROR")))
                .filter(|line| line["message"] != "slow DynamoDB call")
                .map(|line| line.to_string())
                .collect();
            eprintln!(
                "\nthe functions' last warnings and errors:\n  {}",
                complaints[complaints.len().saturating_sub(15)..].join("\n  ")
            );
            eprintln!(
                "\n*** commerce history FAILED: {} phase, seed {}, {} ops. Replay it with:\n    \
                 LUMI_HISTORY_SEEDS={} LUMI_HISTORY_OPS={} cargo test -p lumi-tests --test \
                 commerce_history {} -- --nocapture\n",
                self.phase, self.seed, self.ops, self.seed, self.ops, self.phase
            );
        }
    }
}

/// Cart reservations (the template's values, set here for the model).
const RESERVATION_MINUTES: i64 = 15;
const MAX_RESERVATION_MINUTES: i64 = 60;

/// A stack for histories: a manual clock the histories move (reservations lapse, sweeps free
/// them), online payments for a share of customers, settings read on every request, no rate
/// limits (the admin budget is for people), sessions that outlive a long soak.
async fn stack() -> (TestApp, SystemSettings, ManualClock) {
    let clock = ManualClock::starting_now();
    let app = TestApp::builder()
        .clock(&clock)
        // localstripe for Stripe's API; its own events stay out: the history sends each one.
        .online_payments(Some(ROLLOUT_PERCENT))
        .without_stripe_webhooks()
        .env("SETTINGS_CACHE_TTL_SECONDS", "0")
        .env("RATE_LIMIT_ENABLED", "false")
        .env("CART_RESERVATION_MINUTES", &RESERVATION_MINUTES.to_string())
        .env(
            "CART_RESERVATION_MAX_MINUTES",
            &MAX_RESERVATION_MINUTES.to_string(),
        )
        .env("ACCESS_TOKEN_TTL_SECONDS", "86400")
        // A loaded 2-core machine and a one-request-at-a-time moto: a slow call is not an outage.
        .env("QUERY_TIMEOUT_MS", "30000")
        .spawn()
        .await;
    let mut settings = SystemSettings::default();
    settings.feature_flags.order_payments = true;
    settings.feature_flags.order_payments_rollout_percent = Some(ROLLOUT_PERCENT);
    app.put_settings(&settings).await;
    (app, settings, clock)
}

fn report(phase: &str, seed: u64, findings: &[String]) {
    assert!(
        findings.is_empty(),
        "{phase} history of seed {seed}: {} broken:\n  {}",
        findings.len(),
        findings.join("\n  ")
    );
}

// ------------------------------------------------------------------------------------------
// The sequential phase: the system and the model, one operation at a time.
// ------------------------------------------------------------------------------------------

struct Sequential<'a> {
    api: &'a Api<'a>,
    catalog: Catalog,
    customers: Vec<Customer>,
    model: Model,
    generator: Generator,
    /// Model order index -> reference, payment id, real refund ids.
    references: Vec<String>,
    payments: Vec<String>,
    /// Model order index -> its PaymentIntent (online payments).
    intents: Vec<Option<String>>,
    refund_ids: Vec<Vec<String>>,
    /// Model order index -> per refund record, its Stripe refund (online ones).
    stripe_refund_ids: Vec<Vec<Option<String>>>,
    adjusted: Vec<i64>,
    counter: u64,
    log: Vec<String>,
    /// "operation status" (and payment outcomes) -> how many.
    seen: BTreeMap<String, usize>,
}

impl Sequential<'_> {
    fn fresh(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("{what}-{}-{}", self.generator.seed, self.counter)
    }

    fn refund_id(&self, order: usize, refund: usize) -> String {
        self.refund_ids[order]
            .get(refund)
            .cloned()
            .unwrap_or_else(|| "re_notarefundofthisorder0".into())
    }

    /// Applies `op` to the model (what must happen) and to the system (what happens), and
    /// returns both answers and the order it touched.
    async fn apply(&mut self, op: &Op) -> (Outcome, Reply, Option<usize>) {
        let api = self.api;
        match op {
            Op::CartAdd {
                customer,
                variant,
                quantity,
            } => {
                let expected = self.model.cart_add(*customer, *variant, *quantity);
                let body = json!({ "variant": self.catalog.skus[*variant], "quantity": quantity });
                let reply = api
                    .as_customer(
                        &self.customers[*customer],
                        Method::POST,
                        "/api/v1/cart/items",
                        None,
                        Some(&body),
                    )
                    .await;
                (expected, reply, None)
            }
            Op::CartRemove { customer, variant } => {
                let expected = self.model.cart_remove(*customer, *variant);
                let path = format!("/api/v1/cart/items/{}", self.catalog.skus[*variant]);
                let reply = api
                    .as_customer(
                        &self.customers[*customer],
                        Method::DELETE,
                        &path,
                        None,
                        None,
                    )
                    .await;
                (expected, reply, None)
            }
            Op::Checkout { customer, key } => {
                let (expected, order) = self.model.checkout(*customer, key);
                let reply = api
                    .as_customer(
                        &self.customers[*customer],
                        Method::POST,
                        "/api/v1/orders",
                        Some(key),
                        Some(&json!({})),
                    )
                    .await;
                if reply.status == 201
                    && !reply.replayed
                    && expected.success()
                    && !expected.replayed
                {
                    self.references
                        .push(reply.body["reference"].as_str().unwrap().to_owned());
                    self.payments
                        .push(reply.body["payment"]["id"].as_str().unwrap().to_owned());
                    self.intents.push(
                        reply.body["payment"]["provider_ref"]
                            .as_str()
                            .map(str::to_owned),
                    );
                    self.refund_ids.push(Vec::new());
                    self.stripe_refund_ids.push(Vec::new());
                }
                (expected, reply, order)
            }
            Op::Cancel {
                customer,
                order,
                key,
            } => {
                let expected = self.model.customer_cancel(*customer, *order, key);
                let path = format!("/api/v1/orders/{}/cancel", self.references[*order]);
                let reply = api
                    .as_customer(
                        &self.customers[*customer],
                        Method::POST,
                        &path,
                        Some(key),
                        None,
                    )
                    .await;
                (expected, reply, Some(*order))
            }
            Op::SetStatus { order, to } => {
                let expected = self.model.set_status(*order, *to);
                let path = format!("/api/v1/admin/orders/{}/status", self.references[*order]);
                let body = json!({ "to": to.as_str(), "note": "history check" });
                let reply = api.as_admin(Method::POST, &path, None, Some(&body)).await;
                (expected, reply, Some(*order))
            }
            Op::Fulfil { order, lines } => {
                let expected = self.model.fulfil(*order, lines.as_deref());
                let path = format!(
                    "/api/v1/admin/orders/{}/fulfillments",
                    self.references[*order]
                );
                let body = match lines {
                    None => json!({ "note": "history check" }),
                    Some(lines) => json!({
                        "lines": lines.iter().map(|(l, q)| json!({ "line": l, "quantity": q })).collect::<Vec<_>>(),
                    }),
                };
                let reply = api.as_admin(Method::POST, &path, None, Some(&body)).await;
                (expected, reply, Some(*order))
            }
            Op::Refund { order, lines, key } => {
                let body = Api::refund_body(lines);
                let expected = self.model.refund(*order, lines, key, &body);
                let reply = api.refund(&self.references[*order], key, &body).await;
                (expected, reply, Some(*order))
            }
            Op::Settle { order, refund } => {
                let id = self.refund_id(*order, *refund);
                let expected = self.model.settle(*order, *refund, &id);
                let path = format!(
                    "/api/v1/admin/orders/{}/refunds/{id}/settle",
                    self.references[*order]
                );
                let reply = api.as_admin(Method::POST, &path, None, None).await;
                (expected, reply, Some(*order))
            }
            Op::Adjust { variant, delta } => {
                let expected = self.model.adjust(*variant, *delta);
                let path = format!(
                    "/api/v1/admin/variants/{}/stock",
                    self.catalog.skus[*variant]
                );
                let body = json!({ "delta": delta, "reason": "history check" });
                let reply = api.as_admin(Method::POST, &path, None, Some(&body)).await;
                if reply.status == 200 {
                    self.adjusted[*variant] += delta;
                }
                (expected, reply, None)
            }
            Op::Retire { product } => {
                let expected = self.model.retire(*product);
                let path = format!("/api/v1/admin/products/{}", self.catalog.products[*product]);
                let reply = api
                    .as_admin(
                        Method::PATCH,
                        &path,
                        None,
                        Some(&json!({ "active": false })),
                    )
                    .await;
                (expected, reply, None)
            }
            Op::Fail { order } => {
                let event = self.fresh("admin-fail");
                let expected = self.model.admin_fail(*order, &event);
                let path = format!("/api/v1/admin/payments/{}/fail", self.payments[*order]);
                let body = json!({ "reason": "card declined (history check)" });
                let reply = api.as_admin(Method::POST, &path, None, Some(&body)).await;
                (expected, reply, Some(*order))
            }
            Op::Capture {
                order,
                amount,
                currency,
            } => {
                let event = self.fresh("admin-capture");
                let expected = self.model.manual_capture(*order, &event, *amount, currency);
                let path = format!("/api/v1/admin/payments/{}/capture", self.payments[*order]);
                let body = json!({ "amount_minor": amount, "currency": currency });
                let reply = api.as_admin(Method::POST, &path, None, Some(&body)).await;
                (expected, reply, Some(*order))
            }
            Op::Tick { seconds } => {
                self.model.tick(*seconds);
                api.clock.advance_secs(*seconds);
                let answer = Reply {
                    status: 200,
                    replayed: false,
                    body: Value::Null,
                };
                (Outcome::ok(200), answer, None)
            }
            Op::Webhook { event } => {
                let provider_event = self.generator.events[*event].clone();
                self.generator.events[*event].delivered = true;
                let order = provider_event.order;
                let expected = self
                    .model
                    .webhook(order, &provider_event.id, &provider_event.what);
                let body = self.webhook_body(&provider_event.id, order, &provider_event.what);
                if let (Some(intent), PayEvent::Captured { amount, currency }) =
                    (&self.intents[order], &provider_event.what)
                    && *amount == self.model.orders[order].total
                    && currency.eq_ignore_ascii_case(model::CURRENCY)
                {
                    // Stripe holds the money it reports: refunds of it can succeed.
                    api.pay_at_stripe(intent).await;
                }
                let reply = api.webhook(&body).await;
                (expected, reply, Some(order))
            }
        }
    }

    /// The Stripe event `event_id` about order `order` (what Stripe would send; a manual
    /// payment has no intent, so its events name one Lumi does not know).
    fn webhook_body(&self, event_id: &str, order: usize, what: &PayEvent) -> Value {
        let payment = &self.payments[order];
        let total = self.model.orders[order].total;
        let intent = self.intents[order]
            .clone()
            .unwrap_or_else(|| format!("pi_notours{}", &payment[4..]));
        let metadata = json!({ "order_reference": self.references[order], "payment_id": payment });
        let (kind, object) = match what {
            PayEvent::Authorized => (
                "payment_intent.amount_capturable_updated",
                json!({
                    "id": intent, "object": "payment_intent", "status": "requires_capture",
                    "amount": total, "amount_capturable": total, "currency": "eur",
                    "metadata": metadata,
                }),
            ),
            PayEvent::Captured { amount, currency } => (
                "payment_intent.succeeded",
                json!({
                    "id": intent, "object": "payment_intent", "status": "succeeded",
                    "amount": total, "amount_received": amount,
                    "currency": currency.to_lowercase(), "metadata": metadata,
                }),
            ),
            PayEvent::Failed => (
                "payment_intent.payment_failed",
                json!({
                    "id": intent, "object": "payment_intent", "status": "requires_payment_method",
                    "amount": total, "currency": "eur",
                    "last_payment_error": {
                        "type": "card_error", "code": "card_declined",
                        "message": "insufficient funds (history check)",
                    },
                    "metadata": metadata,
                }),
            ),
            PayEvent::RefundSucceeded(refund) => {
                let (id, stripe_id, amount) = match refund {
                    Some(r) => (
                        self.refund_id(order, *r),
                        self.stripe_refund_ids[order]
                            .get(*r)
                            .cloned()
                            .flatten()
                            .unwrap_or_else(|| format!("re_notatstripe{r}")),
                        self.model.orders[order].refunds[*r].amount,
                    ),
                    None => (
                        "re_notarefundofthisorder0".to_owned(),
                        "re_notastriperefund0".to_owned(),
                        1,
                    ),
                };
                (
                    "refund.updated",
                    json!({
                        "id": stripe_id, "object": "refund", "amount": amount, "currency": "eur",
                        "status": "succeeded", "payment_intent": intent,
                        "metadata": { "refund_id": id, "order_reference": self.references[order] },
                    }),
                )
            }
        };
        json!({
            "id": event_id, "object": "event", "type": kind,
            "created": self.api.clock.now_us() / 1_000_000, "livemode": false,
            "api_version": lumi_commerce::stripe::API_VERSION,
            "data": { "object": object },
        })
    }

    /// Runs `count` operations; `Err` describes the first disagreement.
    async fn run(&mut self, count: usize, rng: &mut StdRng) -> Result<(), String> {
        for step in 0..count {
            let op = self.generator.next(rng, &self.model);
            let (expected, reply, touched) = self.apply(&op).await;
            let got = Outcome {
                status: reply.status,
                replayed: reply.replayed,
                detail: if expected.detail.is_empty() {
                    String::new()
                } else {
                    reply.payment_detail()
                },
            };
            let detail = if got.detail.is_empty() {
                String::new()
            } else {
                format!(" {}", got.detail)
            };
            *self
                .seen
                .entry(format!("{} {}{detail}", op.name(), got.status))
                .or_default() += 1;
            self.log.push(format!(
                "#{step} {op:?} -> {} {}{}",
                got.status,
                if got.replayed { "(replay) " } else { "" },
                got.detail
            ));
            let mut problems = Vec::new();
            if got != expected {
                problems.push(format!(
                    "the answer: model {expected:?}, system {got:?} {}",
                    reply.body
                ));
            }
            if let (Op::Checkout { .. }, Some(order), true) = (&op, touched, reply.replayed) {
                let replayed = reply.body["reference"].as_str().unwrap_or_default();
                if self.references.get(order).map(String::as_str) != Some(replayed) {
                    problems.push(format!(
                        "a replay answers {replayed}, first placed {:?}",
                        self.references.get(order)
                    ));
                }
            }
            if let Some(order) = touched.filter(|o| *o < self.references.len()) {
                let real = self.api.order(&self.references[order]).await;
                self.refund_ids[order] = real["refunds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_owned())
                    .collect();
                self.stripe_refund_ids[order] = real["refunds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["provider_refund_id"].as_str().map(str::to_owned))
                    .collect();
                for diff in check::diff_order(
                    &self.model.orders[order],
                    &real,
                    &self.catalog,
                    &self.customers,
                ) {
                    problems.push(format!(
                        "order {order} ({}): {diff}",
                        self.references[order]
                    ));
                }
            }
            for expected in &self.model.variants {
                let real = self.api.variant(&expected.sku).await;
                if real != (expected.stock, expected.available, expected.active) {
                    problems.push(format!(
                        "{}: model (stock, available, active) {:?}, system {real:?}",
                        expected.sku,
                        (expected.stock, expected.available, expected.active)
                    ));
                }
            }
            if !problems.is_empty() {
                let recent = self.log[self.log.len().saturating_sub(12)..].join("\n    ");
                return Err(format!(
                    "step {step}: {op:?}\n  {}\n  the last operations:\n    {recent}",
                    problems.join("\n  ")
                ));
            }
        }
        Ok(())
    }
}

async fn sequential_history(
    api: &Api<'_>,
    settings: &SystemSettings,
    seed: u64,
    count: usize,
) -> BTreeMap<String, usize> {
    let _replay = Replay {
        phase: "sequential",
        seed,
        ops: count,
    };
    let catalog = api.catalog(LAYOUT).await;
    let customers = api.customers(settings, 3, 2).await;
    let variants = (0..catalog.skus.len())
        .map(|v| model::Variant {
            sku: catalog.skus[v].clone(),
            product: catalog.product_of[v],
            price: catalog.prices[v],
            stock: catalog.initial[v],
            available: catalog.initial[v],
            active: true,
        })
        .collect();
    let mut run = Sequential {
        api,
        model: Model::new(
            variants,
            customers.iter().map(|c| c.online).collect(),
            api.clock.now_us(),
            RESERVATION_MINUTES,
            MAX_RESERVATION_MINUTES,
        ),
        generator: Generator::new(seed, customers.len(), catalog.products.len()),
        adjusted: vec![0; catalog.skus.len()],
        catalog,
        customers,
        references: Vec::new(),
        payments: Vec::new(),
        intents: Vec::new(),
        refund_ids: Vec::new(),
        stripe_refund_ids: Vec::new(),
        counter: 0,
        log: Vec::new(),
        seen: BTreeMap::new(),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    if let Err(disagreement) = run.run(count, &mut rng).await {
        panic!(
            "sequential history of seed {seed}: the model and the system disagree at {disagreement}"
        );
    }
    let snap = check::snapshot(api, &run.catalog, &run.customers).await;
    let agreement = check::agreement(
        api,
        &run.model,
        &run.references,
        &run.catalog,
        &run.customers,
        &snap,
    )
    .await;
    report("sequential (final agreement)", seed, &agreement.0);
    let invariants =
        check::invariants(api, &run.catalog, &run.customers, &snap, &run.adjusted).await;
    report("sequential (invariants)", seed, &invariants.0);
    let emails = check::emails(api, &run.customers, &snap).await;
    report("sequential (emails)", seed, &emails.0);
    let owed: usize = run.model.orders.iter().map(model::Order::emails).sum();
    let sent: usize = snap
        .orders
        .values()
        .map(|o| o["refunds"].as_array().unwrap().len() + check::failed_attempts(o).len())
        .sum();
    assert_eq!(
        owed, sent,
        "the model owes as many emails as the system sent"
    );
    coverage(run.seen, &run.model)
}

/// What a history exercised (printed, to see a seed is not idle).
fn coverage(mut seen: BTreeMap<String, usize>, model: &Model) -> BTreeMap<String, usize> {
    let orders = &model.orders;
    let units = |count: fn(&model::Line) -> i64| -> usize {
        orders
            .iter()
            .flat_map(|o| &o.lines)
            .map(|l| count(l) as usize)
            .sum()
    };
    for (what, count) in [
        ("orders", orders.len()),
        (
            "refund records",
            orders.iter().map(|o| o.refunds.len()).sum(),
        ),
        (
            "completed",
            orders
                .iter()
                .filter(|o| o.status == Status::Completed)
                .count(),
        ),
        (
            "cancelled",
            orders
                .iter()
                .filter(|o| o.status == Status::Cancelled)
                .count(),
        ),
        (
            "refunds at Stripe",
            orders
                .iter()
                .filter(|o| o.online)
                .map(|o| o.refunds.len())
                .sum(),
        ),
        ("reopened", orders.iter().filter(|o| o.attempt > 1).count()),
        ("units shipped", units(|l| l.fulfilled)),
        ("units returned", units(|l| l.returned)),
        ("units restocked", units(|l| l.restocked)),
        ("emails", orders.iter().map(model::Order::emails).sum()),
        ("units swept", model.swept as usize),
    ] {
        seen.insert(format!("= {what}"), count);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential() {
    let count = ops();
    let seeds = seeds();
    println!(
        "commerce history (sequential): seeds {seeds:?}, {count} operations each; replay one with \
         LUMI_HISTORY_SEEDS=<seed> LUMI_HISTORY_OPS={count}"
    );
    for seed in seeds {
        let started = Instant::now();
        // A stack per seed: its tables hold one history (moto's queries scan a whole table).
        let (app, settings, clock) = Box::pin(stack()).await;
        let api = Api::new(&app, clock).await;
        let seen = sequential_history(&api, &settings, seed, count).await;
        println!(
            "sequential seed {seed}: {count} operations agree with the model in {:.1?}: {seen:?}",
            started.elapsed()
        );
    }
}

// ------------------------------------------------------------------------------------------
// The concurrent phase: eight actors at once, then the invariants.
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Known {
    reference: String,
    payment: String,
    /// Its PaymentIntent (online payments).
    intent: Option<String>,
    customer: usize,
    online: bool,
    total: i64,
}

/// What the actors share: the orders placed, what they must check, what went wrong.
struct Board<'a> {
    api: &'a Api<'a>,
    catalog: &'a Catalog,
    customers: &'a [Customer],
    orders: Mutex<Vec<Known>>,
    /// (customer, checkout key) -> the reference its first success placed.
    checkouts: Mutex<BTreeMap<(usize, String), String>>,
    adjusted: Mutex<Vec<i64>>,
    problems: Mutex<Vec<String>>,
    counts: Mutex<BTreeMap<String, usize>>,
    /// (orders placed, of them paid online, every customer done): admins and the provider
    /// wait for something to act on.
    placed: tokio::sync::watch::Sender<(usize, usize, bool)>,
}

impl Board<'_> {
    fn problem(&self, what: String) {
        self.problems.lock().unwrap().push(what);
    }

    /// Counts an answer and flags the ones no actor may ever get.
    fn answered(&self, what: &str, reply: &Reply, allowed: &[u16]) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry(format!("{what} {}", reply.status))
            .or_default() += 1;
        if !allowed.contains(&reply.status) {
            self.problem(format!("{what}: {} {}", reply.status, reply.body));
        }
    }

    /// Waits until an order (`online`: paid online) exists; `false` when none ever will.
    async fn wait_for_orders(&self, online: bool) -> bool {
        let mut seen = self.placed.subscribe();
        let state = seen
            .wait_for(|(all, paid_online, done)| {
                *done || if online { *paid_online > 0 } else { *all > 0 }
            })
            .await
            .map(|state| *state);
        matches!(state, Ok((all, paid_online, _)) if if online { paid_online > 0 } else { all > 0 })
    }

    fn random_order(&self, rng: &mut StdRng, wanted: impl Fn(&Known) -> bool) -> Option<Known> {
        let orders = self.orders.lock().unwrap();
        let matching: Vec<&Known> = orders.iter().filter(|k| wanted(k)).collect();
        (!matching.is_empty()).then(|| matching[rng.random_range(0..matching.len())].clone())
    }
}

async fn customer_actor(board: &Board<'_>, me: usize, seed: u64, count: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let api = board.api;
    let customer = &board.customers[me];
    let mut checkout_keys: Vec<String> = Vec::new();
    let mut cancel_keys: Vec<(String, String)> = Vec::new();
    for n in 0..count {
        match rng.random_range(0..100) {
            0..50 => {
                let sku = &board.catalog.skus[rng.random_range(0..board.catalog.skus.len())];
                let body = json!({ "variant": sku, "quantity": rng.random_range(1..=3) });
                let reply = api
                    .as_customer(
                        customer,
                        Method::POST,
                        "/api/v1/cart/items",
                        None,
                        Some(&body),
                    )
                    .await;
                board.answered("cart add", &reply, &[200, 409, 422]);
            }
            50..55 => {
                let sku = &board.catalog.skus[rng.random_range(0..board.catalog.skus.len())];
                let path = format!("/api/v1/cart/items/{sku}");
                let reply = api
                    .as_customer(customer, Method::DELETE, &path, None, None)
                    .await;
                board.answered("cart remove", &reply, &[200]);
            }
            55..80 => {
                let key = if !checkout_keys.is_empty() && rng.random_bool(0.25) {
                    checkout_keys[rng.random_range(0..checkout_keys.len())].clone()
                } else {
                    format!("co-{seed}-{me}-{n}")
                };
                checkout_keys.push(key.clone());
                // Sometimes the same request twice at once (a double click).
                let twice = rng.random_bool(0.2);
                let empty = json!({});
                let send = || {
                    api.as_customer(
                        customer,
                        Method::POST,
                        "/api/v1/orders",
                        Some(&key),
                        Some(&empty),
                    )
                };
                let mut replies = if twice {
                    let (a, b) = tokio::join!(send(), send());
                    vec![a, b]
                } else {
                    vec![send().await]
                };
                // The fresh answer first: the replay of a double click names its order.
                replies.sort_by_key(|reply| reply.replayed);
                let mut fresh = 0;
                for reply in &replies {
                    board.answered("checkout", reply, &[201, 409, 422]);
                    if reply.status != 201 {
                        continue;
                    }
                    let reference = reply.body["reference"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let mut checkouts = board.checkouts.lock().unwrap();
                    let first = checkouts.get(&(me, key.clone())).cloned();
                    match (reply.replayed, first) {
                        (false, None) => {
                            fresh += 1;
                            checkouts.insert((me, key.clone()), reference.clone());
                            let online = reply.body["payment"]["provider"] == "stripe";
                            board.orders.lock().unwrap().push(Known {
                                reference,
                                payment: reply.body["payment"]["id"].as_str().unwrap().to_owned(),
                                intent: reply.body["payment"]["provider_ref"]
                                    .as_str()
                                    .map(str::to_owned),
                                customer: me,
                                online,
                                total: reply.body["total"]["amount_minor"].as_i64().unwrap(),
                            });
                            board.placed.send_modify(|(all, paid_online, _)| {
                                *all += 1;
                                *paid_online += usize::from(online);
                            });
                        }
                        (false, Some(first)) => board.problem(format!(
                            "checkout key {key} placed {reference} after {first}: two orders for one key"
                        )),
                        (true, Some(first)) if first == reference => {}
                        (true, first) => board.problem(format!(
                            "checkout key {key} replays {reference}, first placed {first:?}"
                        )),
                    }
                }
                if fresh > 1 {
                    board.problem(format!("checkout key {key}: {fresh} fresh orders at once"));
                }
            }
            80..92 => {
                let Some(order) = board.random_order(&mut rng, |k| k.customer == me) else {
                    continue;
                };
                let key = match cancel_keys.len() {
                    0 => format!("cx-{seed}-{me}-{n}"),
                    used if rng.random_bool(0.3) => {
                        cancel_keys[rng.random_range(0..used)].1.clone()
                    }
                    _ => format!("cx-{seed}-{me}-{n}"),
                };
                let path = format!("/api/v1/orders/{}/cancel", order.reference);
                let reply = api
                    .as_customer(customer, Method::POST, &path, Some(&key), None)
                    .await;
                board.answered("cancel", &reply, &[200, 409, 422]);
                if reply.status == 200 {
                    if reply.body["reference"] != order.reference.as_str() {
                        board.problem(format!(
                            "cancel of {} with key {key} answers {}",
                            order.reference, reply.body["reference"]
                        ));
                    }
                    cancel_keys.push((order.reference.clone(), key));
                }
            }
            _ => {
                let Some(order) = board.random_order(&mut rng, |k| k.customer == me) else {
                    continue;
                };
                let path = format!("/api/v1/orders/{}/track", order.reference);
                let reply = api
                    .as_customer(customer, Method::GET, &path, None, None)
                    .await;
                board.answered("track", &reply, &[200]);
                // Someone else's order does not exist for this customer.
                let other = &board.customers[(me + 1) % board.customers.len()];
                let reply = api.as_customer(other, Method::GET, &path, None, None).await;
                if other.user_id != customer.user_id {
                    board.answered("track (another customer's)", &reply, &[404]);
                }
            }
        }
    }
}

/// An admin: reads an order, then acts on it as the view suggests (or not quite).
async fn admin_actor(board: &Board<'_>, me: usize, seed: u64, count: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let api = board.api;
    let catalog = board.catalog;
    let mut refund_keys: Vec<(String, String, String)> = Vec::new();
    for n in 0..count {
        let roll = rng.random_range(0..100);
        if roll < 5 {
            let sku = &catalog.skus[rng.random_range(0..catalog.skus.len())];
            let v = catalog.skus.iter().position(|s| s == sku).unwrap();
            let delta: i64 = if rng.random_bool(0.5) {
                rng.random_range(1..=4)
            } else {
                -rng.random_range(1..=3)
            };
            let path = format!("/api/v1/admin/variants/{sku}/stock");
            let reply = api
                .as_admin(
                    Method::POST,
                    &path,
                    None,
                    Some(&json!({ "delta": delta, "reason": "count" })),
                )
                .await;
            board.answered("adjust", &reply, &[200, 409]);
            if reply.status == 200 {
                board.adjusted.lock().unwrap()[v] += delta;
            }
            continue;
        }
        if roll < 6 && me == 0 {
            let product = &catalog.products[rng.random_range(0..catalog.products.len())];
            let reply = api
                .as_admin(
                    Method::PATCH,
                    &format!("/api/v1/admin/products/{product}"),
                    None,
                    Some(&json!({ "active": false })),
                )
                .await;
            board.answered("retire", &reply, &[200, 409]);
            continue;
        }
        if !board.wait_for_orders(false).await {
            return;
        }
        let Some(known) = board.random_order(&mut rng, |_| true) else {
            continue;
        };
        let view = api.order(&known.reference).await;
        let o = check::as_model(&view, &|sku| {
            catalog.skus.iter().position(|s| s == sku).unwrap()
        });
        let reference = &known.reference;
        // Mostly what the order's state suggests (as an admin would), sometimes anything.
        let (kind, hint) = if rng.random_bool(0.75) {
            suggest(&o, &mut rng)
        } else {
            (roll, None)
        };
        match kind {
            6..30 => {
                let to = hint.unwrap_or(match rng.random_range(0..3) {
                    0 => "cancelled",
                    1 => "completed",
                    _ => "open",
                });
                let path = format!("/api/v1/admin/orders/{reference}/status");
                let reply = api
                    .as_admin(Method::POST, &path, None, Some(&json!({ "to": to })))
                    .await;
                board.answered(&format!("status {to}"), &reply, &[200, 409]);
            }
            30..50 => {
                let body = if rng.random_bool(0.5) {
                    json!({})
                } else {
                    let mut lines = Vec::new();
                    for (i, l) in o.lines.iter().enumerate() {
                        if l.open() > 0 && rng.random_bool(0.7) {
                            lines.push(json!({ "line": i + 1, "quantity": rng.random_range(1..=l.open()) }));
                        }
                    }
                    if lines.is_empty() {
                        json!({ "lines": [{ "line": 1, "quantity": 1 }] })
                    } else {
                        json!({ "lines": lines })
                    }
                };
                let path = format!("/api/v1/admin/orders/{reference}/fulfillments");
                let reply = api.as_admin(Method::POST, &path, None, Some(&body)).await;
                board.answered("fulfil", &reply, &[200, 409, 422]);
            }
            50..75 => {
                if !refund_keys.is_empty() && rng.random_bool(0.15) {
                    let (reference, key, body) =
                        refund_keys[rng.random_range(0..refund_keys.len())].clone();
                    let reply = api.refund(&reference, &key, &body).await;
                    board.answered("refund (retry)", &reply, &[201, 409]);
                    if reply.status == 201 && !reply.replayed {
                        board.problem(format!("refund key {key} on {reference} refunded twice"));
                    }
                    continue;
                }
                let mut lines = Vec::new();
                for (i, l) in o.lines.iter().enumerate() {
                    if !rng.random_bool(0.6) {
                        continue;
                    }
                    let restock = RestockType::ALL[rng.random_range(0..3)];
                    let most = match restock {
                        RestockType::Cancel => l.open().min(l.refundable()),
                        RestockType::Return => (l.fulfilled - l.returned).min(l.refundable()),
                        RestockType::NoRestock => l.refundable(),
                    };
                    lines.push((i as u32 + 1, rng.random_range(1..=most.max(1)), restock));
                }
                if lines.is_empty() {
                    lines.push((1, 1, RestockType::NoRestock));
                }
                let key = format!("rf-{seed}-{me}-{n}");
                let body = Api::refund_body(&lines);
                let reply = api.refund(reference, &key, &body).await;
                board.answered("refund", &reply, &[201, 409, 422]);
                if reply.status == 201 {
                    refund_keys.push((reference.clone(), key, body));
                }
            }
            75..83 => {
                let pending: Vec<usize> = (0..o.refunds.len())
                    .filter(|r| !o.refunds[*r].settled)
                    .collect();
                let Some(&r) = pending.get(rng.random_range(0..pending.len().max(1))) else {
                    continue;
                };
                let id = view["refunds"][r]["id"].as_str().unwrap();
                let path = format!("/api/v1/admin/orders/{reference}/refunds/{id}/settle");
                let reply = api.as_admin(Method::POST, &path, None, None).await;
                board.answered("settle", &reply, &[200, 409]);
            }
            83..88 => {
                let path = format!("/api/v1/admin/payments/{}/fail", known.payment);
                let reply = api
                    .as_admin(
                        Method::POST,
                        &path,
                        None,
                        Some(&json!({ "reason": "chargeback" })),
                    )
                    .await;
                board.answered("fail", &reply, &[200]);
            }
            _ => {
                let amount = if rng.random_bool(0.85) {
                    known.total
                } else {
                    known.total + 1
                };
                let path = format!("/api/v1/admin/payments/{}/capture", known.payment);
                let reply = api
                    .as_admin(
                        Method::POST,
                        &path,
                        None,
                        Some(&json!({ "amount_minor": amount, "currency": "EUR" })),
                    )
                    .await;
                if known.online {
                    board.answered("capture (online)", &reply, &[409]);
                } else {
                    board.answered("capture", &reply, &[200]);
                }
            }
        }
    }
}

/// What an admin would do with an order in the state of `o`: an operation kind of
/// `admin_actor` (6..30 status, with the status; 30..50 fulfil; 50..75 refund; 75..83 settle;
/// 83..88 fail; 88.. capture).
fn suggest(o: &model::Order, rng: &mut StdRng) -> (u32, Option<&'static str>) {
    const STATUS: u32 = 6;
    const FULFIL: u32 = 30;
    const REFUND: u32 = 50;
    const SETTLE: u32 = 75;
    const FAIL: u32 = 83;
    const CAPTURE: u32 = 90;
    let captured = o.pay == model::Pay::Captured;
    let pending_refund = o.refunds.iter().any(|r| !r.settled);
    let open_units = o.lines.iter().any(|l| l.open() > 0);
    let choices: &[(u32, Option<&'static str>)] = match o.status {
        Status::Open if !captured && o.online => {
            &[(STATUS, Some("cancelled")), (FAIL, None), (FULFIL, None)]
        }
        Status::Open if !captured => &[
            (CAPTURE, None),
            (CAPTURE, None),
            (STATUS, Some("cancelled")),
        ],
        Status::Open if open_units => &[
            (FULFIL, None),
            (FULFIL, None),
            (REFUND, None),
            (STATUS, Some("cancelled")),
        ],
        Status::Open if pending_refund => &[(SETTLE, None), (REFUND, None)],
        Status::Open => &[
            (STATUS, Some("completed")),
            (STATUS, Some("completed")),
            (REFUND, None),
        ],
        Status::Cancelled if o.captured == 0 => &[(STATUS, Some("open")), (REFUND, None)],
        Status::Cancelled | Status::Completed if pending_refund => {
            &[(SETTLE, None), (REFUND, None)]
        }
        Status::Cancelled => &[(REFUND, None), (STATUS, Some("open"))],
        Status::Completed => &[(REFUND, None), (STATUS, Some("cancelled"))],
    };
    choices[rng.random_range(0..choices.len())]
}

/// The provider: events for its orders, some held back and delivered late, some twice.
async fn provider_actor(board: &Board<'_>, seed: u64, count: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let api = board.api;
    let mut held: Vec<Value> = Vec::new();
    // Events delivered, and whether their first delivery applied.
    let mut delivered: Vec<(Value, bool)> = Vec::new();
    for n in 0..count {
        let roll = rng.random_range(0..100);
        if roll >= 92 {
            // Time passes for everyone: reservations lapse, later adds sweep them.
            api.clock.advance_secs(rng.random_range(5..=30) * 60);
            continue;
        }
        let (body, again) = if roll < 15 && !held.is_empty() {
            (held.swap_remove(rng.random_range(0..held.len())), None)
        } else if roll < 30 && !delivered.is_empty() {
            let (body, applied) = delivered[rng.random_range(0..delivered.len())].clone();
            (body, Some(applied))
        } else {
            if !board.wait_for_orders(true).await {
                return;
            }
            let Some(known) = board.random_order(&mut rng, |k| k.online) else {
                continue;
            };
            let id = format!("evt-{seed}-{n}");
            let payment = &known.payment;
            let intent = known.intent.clone().unwrap_or_default();
            let metadata = json!({ "order_reference": known.reference, "payment_id": payment });
            let succeeded = |received: i64, currency: &str| {
                json!({
                    "id": intent, "object": "payment_intent", "status": "succeeded",
                    "amount": known.total, "amount_received": received, "currency": currency,
                    "metadata": metadata,
                })
            };
            let (kind, object) = match rng.random_range(0..100) {
                0..45 => ("payment_intent.succeeded", succeeded(known.total, "eur")),
                45..55 => (
                    "payment_intent.succeeded",
                    succeeded(known.total - 1, "eur"),
                ),
                55..60 => ("payment_intent.succeeded", succeeded(known.total, "usd")),
                60..75 => (
                    "payment_intent.payment_failed",
                    json!({
                        "id": intent, "object": "payment_intent",
                        "status": "requires_payment_method", "amount": known.total,
                        "currency": "eur",
                        "last_payment_error": { "type": "card_error", "message": "expired card" },
                        "metadata": metadata,
                    }),
                ),
                75..82 => (
                    "payment_intent.amount_capturable_updated",
                    succeeded(known.total, "eur"),
                ),
                _ => {
                    // Stripe reports only its own refunds: one of the order's, or (as late
                    // news of nothing Lumi knows) none.
                    let view = api.order(&known.reference).await;
                    let asked: Vec<&Value> = view["refunds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|r| r["provider_refund_id"].is_string())
                        .collect();
                    let refund = match asked.first() {
                        Some(refund) => json!({
                            "id": refund["provider_refund_id"], "amount": refund["amount_minor"],
                            "metadata": { "refund_id": refund["id"] },
                        }),
                        None => json!({
                            "id": format!("re_notastripe{seed}{n}"), "amount": 1,
                            "metadata": { "refund_id": "re_notarefundofthisorder0" },
                        }),
                    };
                    (
                        "refund.updated",
                        json!({
                            "id": refund["id"], "object": "refund", "amount": refund["amount"],
                            "currency": "eur", "status": "succeeded", "payment_intent": intent,
                            "metadata": refund["metadata"],
                        }),
                    )
                }
            };
            let body = json!({
                "id": id, "object": "event", "type": kind,
                "created": api.clock.now_us() / 1_000_000, "livemode": false,
                "api_version": lumi_commerce::stripe::API_VERSION,
                "data": { "object": object },
            });
            if rng.random_bool(0.2) {
                held.push(body);
                continue;
            }
            (body, None)
        };
        let object = &body["data"]["object"];
        if body["type"] == "payment_intent.succeeded"
            && object["amount_received"] == object["amount"]
            && object["currency"] == "eur"
        {
            // Stripe holds the money it reports: refunds of it can succeed.
            api.pay_at_stripe(object["id"].as_str().unwrap()).await;
        }
        let reply = api.webhook(&body).await;
        board.answered("webhook", &reply, &[200]);
        let outcome = reply.body["outcome"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if again == Some(true) && outcome != "duplicate" {
            board.problem(format!(
                "an applied event delivered again did {outcome}: {body}"
            ));
        }
        if again.is_none() {
            let applied = reply.body["applied"] == true;
            delivered.push((body, applied));
        }
    }
}

async fn concurrent_history(
    api: &Api<'_>,
    settings: &SystemSettings,
    seed: u64,
    count: usize,
) -> BTreeMap<String, usize> {
    let _replay = Replay {
        phase: "concurrent",
        seed,
        ops: count,
    };
    let catalog = api.catalog(LAYOUT).await;
    let customers = api.customers(settings, 3, 2).await;
    let board = Board {
        api,
        catalog: &catalog,
        customers: &customers,
        orders: Mutex::new(Vec::new()),
        checkouts: Mutex::new(BTreeMap::new()),
        adjusted: Mutex::new(vec![0; catalog.skus.len()]),
        problems: Mutex::new(Vec::new()),
        counts: Mutex::new(BTreeMap::new()),
        placed: tokio::sync::watch::Sender::new((0, 0, false)),
    };
    // Eight actors share the operations: five customers (12% each: they make the orders),
    // two admins (15% each) and the provider (16%).
    let share = |percent: usize| (count * percent).div_ceil(100).max(1);
    let base = seed.wrapping_mul(1_000_003);
    let customer_runs =
        (0..customers.len()).map(|c| customer_actor(&board, c, base + c as u64, share(12)));
    let admin_runs = (0..2).map(|a| admin_actor(&board, a, base + 100 + a as u64, share(15)));
    let customers_done = async {
        futures::future::join_all(customer_runs).await;
        board.placed.send_modify(|(_, _, done)| *done = true);
    };
    tokio::join!(
        customers_done,
        futures::future::join_all(admin_runs),
        provider_actor(&board, base + 200, share(16)),
    );
    let problems = board.problems.lock().unwrap().clone();
    report("concurrent (answers)", seed, &problems);

    let snap = check::snapshot(api, &catalog, &customers).await;
    let placed: std::collections::BTreeSet<String> = board
        .orders
        .lock()
        .unwrap()
        .iter()
        .map(|k| k.reference.clone())
        .collect();
    let listed: std::collections::BTreeSet<String> = snap.orders.keys().cloned().collect();
    assert_eq!(
        listed, placed,
        "seed {seed}: the orders listed are exactly the checkouts that answered 201"
    );
    let adjusted = board.adjusted.lock().unwrap().clone();
    let invariants = check::invariants(api, &catalog, &customers, &snap, &adjusted).await;
    report("concurrent (invariants)", seed, &invariants.0);
    let emails = check::emails(api, &customers, &snap).await;
    report("concurrent (emails)", seed, &emails.0);
    let mut counts = board.counts.lock().unwrap().clone();
    counts.insert("orders".into(), snap.orders.len());
    counts.insert(
        "refund records".into(),
        snap.orders
            .values()
            .map(|o| o["refunds"].as_array().unwrap().len())
            .sum(),
    );
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent() {
    let count = ops();
    let seeds = seeds();
    println!(
        "commerce history (concurrent): seeds {seeds:?}, {count} operations each over 8 actors"
    );
    for seed in seeds {
        let started = Instant::now();
        let (app, settings, clock) = Box::pin(stack()).await;
        let api = Api::new(&app, clock).await;
        let counts = concurrent_history(&api, &settings, seed, count).await;
        println!(
            "concurrent seed {seed}: invariants hold after {:.1?}: {counts:?}",
            started.elapsed()
        );
    }
}
