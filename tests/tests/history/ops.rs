//! The operations of a history and the seeded generator that picks them from the model's
//! state: mostly operations that should succeed, with a share that must be refused (wrong
//! lines, wrong amounts, reused keys, events out of order, duplicates).

use rand::{Rng, rngs::StdRng};

use super::model::{Model, Pay, PayEvent, RestockType, Status};

/// A refund request's lines: (line, quantity, restock type).
pub type RefundLines = Vec<(u32, i64, RestockType)>;

/// A provider event of the history: made once, delivered any number of times, in any order.
#[derive(Debug, Clone)]
pub struct ProviderEvent {
    pub order: usize,
    pub id: String,
    pub what: PayEvent,
    pub delivered: bool,
}

#[derive(Debug, Clone)]
pub enum Op {
    CartAdd {
        customer: usize,
        variant: usize,
        quantity: i64,
    },
    CartRemove {
        customer: usize,
        variant: usize,
    },
    Checkout {
        customer: usize,
        key: String,
    },
    Cancel {
        customer: usize,
        order: usize,
        key: String,
    },
    SetStatus {
        order: usize,
        to: Status,
    },
    Fulfil {
        order: usize,
        lines: Option<Vec<(u32, i64)>>,
    },
    Refund {
        order: usize,
        lines: Vec<(u32, i64, RestockType)>,
        key: String,
    },
    Settle {
        order: usize,
        refund: usize,
    },
    Adjust {
        variant: usize,
        delta: i64,
    },
    Retire {
        product: usize,
    },
    Fail {
        order: usize,
    },
    Capture {
        order: usize,
        amount: i64,
        currency: String,
    },
    /// Delivers provider event `event` (fresh, held back until now, or again).
    Webhook {
        event: usize,
    },
    /// Time passes (reservations lapse; nothing is swept by itself).
    Tick {
        seconds: i64,
    },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Self::CartAdd { .. } => "cart add",
            Self::CartRemove { .. } => "cart remove",
            Self::Checkout { .. } => "checkout",
            Self::Cancel { .. } => "cancel",
            Self::SetStatus { to, .. } => match to {
                Status::Open => "status open",
                Status::Cancelled => "status cancelled",
                Status::Completed => "status completed",
            },
            Self::Fulfil { .. } => "fulfil",
            Self::Refund { .. } => "refund",
            Self::Settle { .. } => "settle",
            Self::Adjust { .. } => "adjust",
            Self::Retire { .. } => "retire",
            Self::Fail { .. } => "fail",
            Self::Capture { .. } => "capture",
            Self::Webhook { .. } => "webhook",
            Self::Tick { .. } => "tick",
        }
    }
}

/// What the generator remembers besides the model.
#[derive(Debug, Default)]
pub struct Generator {
    pub seed: u64,
    counter: u64,
    /// Every provider event made so far.
    pub events: Vec<ProviderEvent>,
    /// Keys each customer used for checkouts and cancels, to reuse some.
    checkout_keys: Vec<Vec<String>>,
    cancel_keys: Vec<Vec<(usize, String)>>,
    refund_keys: Vec<(usize, String, RefundLines)>,
    pub retired: bool,
    pub products: usize,
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| items[rng.random_range(0..items.len())])
}

impl Generator {
    pub fn new(seed: u64, customers: usize, products: usize) -> Self {
        Self {
            seed,
            checkout_keys: vec![Vec::new(); customers],
            cancel_keys: vec![Vec::new(); customers],
            products,
            ..Self::default()
        }
    }

    fn fresh(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("{what}-{}-{}", self.seed, self.counter)
    }

    /// Orders matching `wanted` most of the time, any order otherwise (to be refused).
    fn order_where(
        &self,
        rng: &mut StdRng,
        model: &Model,
        wanted: impl Fn(&super::model::Order) -> bool,
    ) -> Option<usize> {
        let matching: Vec<usize> = (0..model.orders.len())
            .filter(|&i| wanted(&model.orders[i]))
            .collect();
        if !matching.is_empty() && rng.random_bool(0.88) {
            return pick(rng, &matching);
        }
        // Nothing fits: mostly another kind of operation, sometimes this one anyway (refused).
        if model.orders.is_empty() || (matching.is_empty() && rng.random_bool(0.7)) {
            return None;
        }
        Some(rng.random_range(0..model.orders.len()))
    }

    /// The next operation for the state of `model`.
    pub fn next(&mut self, rng: &mut StdRng, model: &Model) -> Op {
        loop {
            if let Some(op) = self.try_next(rng, model) {
                return op;
            }
        }
    }

    fn try_next(&mut self, rng: &mut StdRng, model: &Model) -> Option<Op> {
        let customers = model.online.len();
        let variants = model.variants.len();
        if rng.random_bool(0.05) {
            return Some(Op::Tick {
                seconds: rng.random_range(2..=35) * 60,
            });
        }
        let roll = rng.random_range(0..100);
        Some(match roll {
            0..16 => {
                // Mostly variants still sold.
                let sold: Vec<usize> = (0..variants)
                    .filter(|&v| model.variants[v].active)
                    .collect();
                let variant = match pick(rng, &sold) {
                    Some(v) if rng.random_bool(0.9) => v,
                    _ => rng.random_range(0..variants),
                };
                Op::CartAdd {
                    customer: rng.random_range(0..customers),
                    variant,
                    quantity: rng.random_range(1..=3),
                }
            }
            16..18 => {
                let customer = rng.random_range(0..customers);
                let held: Vec<usize> = model.carts[customer].keys().copied().collect();
                Op::CartRemove {
                    customer,
                    variant: pick(rng, &held).unwrap_or(rng.random_range(0..variants)),
                }
            }
            18..29 => {
                // Customers with something in the cart, mostly.
                let with_cart: Vec<usize> = (0..customers)
                    .filter(|&c| !model.carts[c].is_empty())
                    .collect();
                let customer = if rng.random_bool(0.8) {
                    pick(rng, &with_cart).unwrap_or(rng.random_range(0..customers))
                } else {
                    rng.random_range(0..customers)
                };
                let used = &self.checkout_keys[customer];
                let key = match pick(rng, &(0..used.len()).collect::<Vec<_>>()) {
                    Some(i) if rng.random_bool(0.25) => used[i].clone(),
                    _ => self.fresh("checkout"),
                };
                self.checkout_keys[customer].push(key.clone());
                Op::Checkout { customer, key }
            }
            29..33 => {
                let order = self.order_where(rng, model, |o| {
                    o.status == Status::Open && o.lines.iter().all(|l| l.fulfilled == 0)
                })?;
                let customer = model.orders[order].customer;
                let used = &self.cancel_keys[customer];
                let key = match pick(rng, &(0..used.len()).collect::<Vec<_>>()) {
                    // Mostly the same order again (a retry); sometimes another (refused).
                    Some(i) if rng.random_bool(0.3) => used[i].1.clone(),
                    _ => self.fresh("cancel"),
                };
                self.cancel_keys[customer].push((order, key.clone()));
                Op::Cancel {
                    customer,
                    order,
                    key,
                }
            }
            33..41 => {
                let to = match rng.random_range(0..10) {
                    0..3 => Status::Cancelled,
                    3..7 => Status::Completed,
                    _ => Status::Open,
                };
                let order = match to {
                    Status::Cancelled => self.order_where(rng, model, |o| {
                        o.status == Status::Open && o.lines.iter().all(|l| l.fulfilled == 0)
                    }),
                    Status::Completed => self.order_where(rng, model, |o| {
                        o.status == Status::Open
                            && o.pay == Pay::Captured
                            && o.lines.iter().all(|l| l.open() == 0)
                            && o.refunds.iter().all(|r| r.settled)
                    }),
                    Status::Open => self.order_where(rng, model, |o| {
                        o.status == Status::Cancelled && o.captured == 0
                    }),
                }?;
                Op::SetStatus { order, to }
            }
            41..51 => {
                let order = self.order_where(rng, model, |o| {
                    o.status == Status::Open
                        && o.pay == Pay::Captured
                        && o.lines.iter().any(|l| l.open() > 0)
                })?;
                let lines = if rng.random_bool(0.4) {
                    None
                } else {
                    let o = &model.orders[order];
                    let mut lines = Vec::new();
                    for (i, line) in o.lines.iter().enumerate() {
                        if rng.random_bool(0.6) {
                            let most = line.open().max(1);
                            // Sometimes one unit more than is left: refused.
                            let quantity =
                                rng.random_range(1..=most) + i64::from(rng.random_bool(0.1));
                            lines.push((i as u32 + 1, quantity));
                        }
                    }
                    if lines.is_empty() {
                        lines.push((rng.random_range(1..=o.lines.len() as u32 + 1), 1));
                    }
                    Some(lines)
                };
                Op::Fulfil { order, lines }
            }
            51..61 => {
                if !self.refund_keys.is_empty() && rng.random_bool(0.12) {
                    // A retry with the same key: the same body (a replay) or another (422).
                    let i = rng.random_range(0..self.refund_keys.len());
                    let (order, key, mut lines) = self.refund_keys[i].clone();
                    if rng.random_bool(0.3) {
                        lines[0].1 += 1;
                    }
                    return Some(Op::Refund { order, lines, key });
                }
                let order = self.order_where(rng, model, |o| {
                    o.captured > 0 && o.lines.iter().any(|l| l.refundable() > 0)
                })?;
                let o = &model.orders[order];
                let mut lines = Vec::new();
                for (i, line) in o.lines.iter().enumerate() {
                    if !rng.random_bool(0.6) {
                        continue;
                    }
                    // Mostly a restock type that fits the line, sometimes any.
                    let fitting: Vec<(RestockType, i64)> = [
                        (RestockType::Cancel, line.open().min(line.refundable())),
                        (
                            RestockType::Return,
                            (line.fulfilled - line.returned).min(line.refundable()),
                        ),
                        (RestockType::NoRestock, line.refundable()),
                    ]
                    .into_iter()
                    .filter(|(_, most)| *most > 0)
                    .collect();
                    let (restock, most) = match pick(rng, &fitting) {
                        Some(choice) if rng.random_bool(0.85) => choice,
                        _ => (RestockType::ALL[rng.random_range(0..3)], 1),
                    };
                    lines.push((i as u32 + 1, rng.random_range(1..=most.max(1)), restock));
                }
                if lines.is_empty() {
                    let restock = RestockType::ALL[rng.random_range(0..3)];
                    lines.push((rng.random_range(1..=o.lines.len() as u32), 1, restock));
                }
                let key = self.fresh("refund");
                self.refund_keys.push((order, key.clone(), lines.clone()));
                Op::Refund { order, lines, key }
            }
            61..66 => {
                let order =
                    self.order_where(rng, model, |o| o.refunds.iter().any(|r| !r.settled))?;
                let refunds = &model.orders[order].refunds;
                if refunds.is_empty() {
                    return None;
                }
                let pending: Vec<usize> = (0..refunds.len())
                    .filter(|&r| !refunds[r].settled)
                    .collect();
                let refund = match pick(rng, &pending) {
                    Some(r) if rng.random_bool(0.85) => r,
                    _ => rng.random_range(0..refunds.len()),
                };
                Op::Settle { order, refund }
            }
            66..70 => Op::Adjust {
                variant: rng.random_range(0..variants),
                delta: if rng.random_bool(0.6) {
                    rng.random_range(1..=6)
                } else {
                    -rng.random_range(1..=3)
                },
            },
            70..71 => {
                // Late in a history, once: the orders and carts holding its variants stay.
                if self.retired || model.orders.len() < 8 {
                    return None;
                }
                self.retired = true;
                Op::Retire {
                    product: rng.random_range(0..self.products),
                }
            }
            71..73 => {
                let order = self.order_where(rng, model, |o| o.status == Status::Open)?;
                Op::Fail { order }
            }
            73..80 => {
                let order = self.order_where(rng, model, |o| {
                    !o.online && o.status == Status::Open && o.captured == 0
                })?;
                let total = model.orders[order].total;
                let amount = if rng.random_bool(0.85) {
                    total
                } else {
                    total + rng.random_range(-50..=50).max(1 - total)
                };
                Op::Capture {
                    order,
                    amount,
                    currency: "EUR".into(),
                }
            }
            _ => return self.provider(rng, model),
        })
    }

    /// The provider: a new event now, a new event held back, a held one delivered late, or
    /// a delivered one again.
    fn provider(&mut self, rng: &mut StdRng, model: &Model) -> Option<Op> {
        let held: Vec<usize> = (0..self.events.len())
            .filter(|&e| !self.events[e].delivered)
            .collect();
        let delivered: Vec<usize> = (0..self.events.len())
            .filter(|&e| self.events[e].delivered)
            .collect();
        let roll = rng.random_range(0..100);
        if roll < 15
            && let Some(event) = pick(rng, &held)
        {
            return Some(Op::Webhook { event });
        }
        if roll < 30
            && let Some(event) = pick(rng, &delivered)
        {
            return Some(Op::Webhook { event });
        }
        // Online refunds settle at once (Stripe's answer): a `refund.updated` about one is
        // late news, acknowledged and ignored.
        let order = self.order_where(rng, model, |o| {
            o.online && (o.status == Status::Open || !o.refunds.is_empty())
        })?;
        let o = &model.orders[order];
        let pending: Vec<usize> = (0..o.refunds.len())
            .filter(|&r| !o.refunds[r].settled)
            .collect();
        // Mostly what the payment's state calls for, sometimes anything (late, out of order).
        let roll = match (o.pay, pending.is_empty()) {
            _ if rng.random_bool(0.3) => rng.random_range(0..100),
            (_, false) => 90,
            (super::model::Pay::Captured | super::model::Pay::Failed, true) => {
                rng.random_range(0..100)
            }
            _ => rng.random_range(0..82),
        };
        let what = match roll {
            0..45 => PayEvent::Captured {
                amount: o.total,
                currency: if rng.random_bool(0.5) { "EUR" } else { "eur" }.into(),
            },
            45..55 => PayEvent::Captured {
                amount: o.total - rng.random_range(1..=o.total.clamp(1, 100)),
                currency: "EUR".into(),
            },
            55..60 => PayEvent::Captured {
                amount: o.total,
                currency: "USD".into(),
            },
            60..75 => PayEvent::Failed,
            75..82 => PayEvent::Authorized,
            82..98 => match pick(rng, &pending)
                .or_else(|| pick(rng, &(0..o.refunds.len()).collect::<Vec<_>>()))
            {
                Some(r) => PayEvent::RefundSucceeded(Some(r)),
                None => PayEvent::Authorized,
            },
            _ => PayEvent::RefundSucceeded(None),
        };
        let id = self.fresh("evt");
        self.events.push(ProviderEvent {
            order,
            id,
            what,
            delivered: false,
        });
        let event = self.events.len() - 1;
        if rng.random_bool(0.2) {
            // Held back: delivered later, after whatever happens meanwhile.
            return None;
        }
        Some(Op::Webhook { event })
    }
}
