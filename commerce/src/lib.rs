//! The shop's domain: catalog, carts with stock reservations, orders with their three facets
//! (status, money, fulfilment), payments, refunds and the stock ledger. It knows DynamoDB (through
//! `lumi_shared::store`) and SQS (the outbox), and nothing of HTTP: its errors are
//! [`CommerceError`], classified for the edge by `lumi_shared::error::DomainError`.
//!
//! The rules are pure functions in [`model`]; every use case reads, asks [`model`] for a
//! [`model::Change`] and commits it with everything it implies in one transaction
//! ([`persist`]): the order, its payment projection, each variant's counters with a ledger
//! movement, the refund emails (outbox), one audit event and the idempotency record.
//!
//! Stock invariants (every change is a conditional write, several at once a transaction):
//! - per variant, `stock` is the sum of its ledger movements, and `available` = `stock` − units
//!   held by live reservations; neither goes below zero (reservations take `available` only
//!   while it is at least the quantity, checkout takes `stock` only while it is at least the
//!   quantity, a reopened order takes both only while `available` is at least the quantity);
//! - checkout consumes the exact reservations it read and takes `stock`, together with the
//!   order, in one transaction: nothing interleaves to oversell;
//! - stock comes back only with the change that justifies it (cancel, refund with a restock
//!   type), conditional on the order's version: each unit at most once;
//! - an expired reservation holds its stock until a sweep deletes it and gives the units back,
//!   in one transaction conditional on the reservation being unchanged (the local stack never
//!   deletes TTL'd items, and DynamoDB may take 48 h: code never relies on TTL).

pub mod admin;
pub mod cart;
pub mod catalog;
pub mod content;
pub mod deliveries;
pub mod incidents;
pub mod ledger;
pub mod model;
pub mod orders;
pub mod outbox;
pub mod payments;
mod persist;
pub mod provider;
pub mod refunds;
pub mod stripe;

use std::sync::Arc;

use lumi_shared::{
    Platform,
    auth::sessions::RequestMeta,
    error::{DomainError, ErrorClass, FieldError},
    idempotency::IdempotencyError,
    store::{Db, StoreError},
    telemetry::metrics::MetricSet,
};

pub use model::Money;

/// Cart and order metrics (the runbooks' names).
pub const CART_OPERATIONS_TOTAL: &str = "lumi_cart_operations_total";
pub const ORDER_CREATED_TOTAL: &str = "order_created_total";
pub const ORDER_STATUS_TRANSITIONS_TOTAL: &str = "order_status_transitions_total";
pub const PAYMENT_AMOUNT_MISMATCH_TOTAL: &str = "lumi_payment_amount_mismatch_total";
pub const REFUNDS_TOTAL: &str = "lumi_refunds_total";
/// Refunds the provider refused or failed: the money is still owed (alarmed on).
pub const REFUNDS_FAILED_TOTAL: &str = "lumi_refunds_failed_total";

/// Why a use case did not happen. Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum CommerceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A query parameter that is not what the listing takes (a cursor it did not give, a time
    /// bound that is not RFC 3339).
    #[error("the {0} is not valid")]
    Malformed(&'static str),
    /// The state refuses the request, or kept changing under it.
    #[error("{0}")]
    Conflict(String),
    #[error("out of stock: only {available} of {sku} are available")]
    OutOfStock { sku: String, available: i64 },
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A dependency other than the database (the queue) failed; the change is kept and
    /// retried later.
    #[error("{0}")]
    Unavailable(String),
    /// The payment provider refused or could not be reached; nothing was written.
    #[error(transparent)]
    Provider(#[from] provider::ProviderError),
    /// A broken invariant or an unreadable record: a bug.
    #[error("internal: {0}")]
    Internal(String),
}

impl DomainError for CommerceError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::NotFound(_) => ErrorClass::NotFound,
            Self::Malformed(_) => ErrorClass::Malformed,
            Self::Invalid { field, message } => ErrorClass::Invalid(vec![FieldError {
                field: field.clone(),
                message: message.clone(),
            }]),
            Self::Conflict(_) | Self::OutOfStock { .. } => ErrorClass::Conflict,
            Self::Idempotency(error) => error.class(),
            Self::Store(error) => error.class(),
            Self::Unavailable(_) => ErrorClass::Unavailable,
            Self::Provider(provider::ProviderError::Refused(_)) => ErrorClass::Upstream,
            Self::Provider(_) => ErrorClass::Unavailable,
            Self::Internal(_) => ErrorClass::Internal,
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::Provider(provider::ProviderError::Refused(_)) => {
                "the payment provider refused the request; nothing was changed".into()
            }
            Self::Provider(_) => {
                "the payment provider is unavailable; nothing was changed, retry shortly".into()
            }
            Self::Idempotency(error) => error.public_detail(),
            Self::Store(error) => error.public_detail(),
            other => other.to_string(),
        }
    }
}

pub type Result<T, E = CommerceError> = std::result::Result<T, E>;

/// An ISO 4217 code as the shop writes one: three capital letters.
pub(crate) fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// The most money one capture may record, in minor units (10 billion in major units): far above
/// any order, far below where sums of them could overflow.
pub const MAX_CAPTURE_MINOR: i64 = 1_000_000_000_000;

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> CommerceError {
    CommerceError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Who makes a change, for the timeline and the audit log, and the request it is made in.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// `user:<id>`, `admin:<id>`, `provider:<name>`, `system`.
    pub name: String,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    /// The request's metrics (the edge flushes them); `None` outside a request: what the
    /// change counts is then written to the platform's metrics sink at once.
    pub metrics: Option<MetricSet>,
}

impl Actor {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// The request's id, client and metrics (what `RequestMeta` extracted).
    pub fn with_request(mut self, meta: RequestMeta) -> Self {
        self.request_id = meta.request_id;
        self.client_ip = meta.client_ip;
        self.metrics = meta.metrics;
        self
    }

    /// Another actor acting within the same request (the provider answering a refund asked
    /// during it): its changes count in the same metrics.
    pub fn within(&self, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            request_id: self.request_id.clone(),
            client_ip: None,
            metrics: self.metrics.clone(),
        }
    }
}

/// The shop: the platform (store, clock, settings, config) and the outbox's sender. Built once
/// per container by the orders and admin functions; every use case is a method.
#[derive(Clone)]
pub struct Shop {
    pub platform: Arc<Platform>,
    pub outbox: outbox::OutboxSender,
    pub stripe: Arc<provider::Stripe>,
}

impl Shop {
    pub fn new(platform: Arc<Platform>) -> Self {
        Self {
            outbox: outbox::OutboxSender::new(&platform),
            stripe: Arc::new(provider::Stripe::new(platform.clone())),
            platform,
        }
    }

    pub fn db(&self) -> &Db {
        &self.platform.db
    }

    pub fn table(&self) -> &str {
        &self.platform.config.tables.app
    }

    pub fn now_us(&self) -> i64 {
        self.platform.clock.now_us()
    }
}

/// Time in RFC 3339 from the platform clock's microseconds.
pub fn rfc3339(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A short random id with a prefix (`re_…` for refunds).
pub(crate) fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..20]
    )
}

/// Counts every facet a committed change moved in `order_status_transitions_total` (labels
/// `function`, `facet`, `from`, `to`), and the refunds, failed refunds and amount mismatches it
/// recorded. Called by `Shop::mutate` for each commit, the one way every order change is
/// written, so whichever path made the change (customer, admin, webhook, the refund retry)
/// counts it exactly once; use cases and handlers count no transitions themselves.
fn count_change(metrics: &MetricSet, function: &str, change: &model::Change) {
    for moved in change.facet_changes() {
        metrics.count(
            ORDER_STATUS_TRANSITIONS_TOTAL,
            &[
                ("function", function),
                ("facet", &moved.facet),
                ("from", &moved.from),
                ("to", &moved.to),
            ],
            1.0,
        );
    }
    let refunds = change.after.refunds.len() - change.before.refunds.len();
    if refunds > 0 {
        metrics.count(
            REFUNDS_TOTAL,
            &[
                ("function", function),
                ("provider", &change.after.payment.provider),
            ],
            refunds as f64,
        );
    }
    let failed = change
        .after
        .refunds
        .iter()
        .filter(|r| r.status == model::RefundStatus::Failed)
        .filter(|r| {
            !change
                .before
                .refunds
                .iter()
                .any(|b| b.id == r.id && b.status == model::RefundStatus::Failed)
        })
        .count();
    if failed > 0 {
        metrics.count(
            REFUNDS_FAILED_TOTAL,
            &[
                ("function", function),
                ("provider", &change.after.payment.provider),
            ],
            failed as f64,
        );
    }
    if change.action == "payment.amount_mismatch" {
        metrics.count(
            PAYMENT_AMOUNT_MISMATCH_TOTAL,
            &[
                ("function", function),
                ("provider", &change.after.payment.provider),
            ],
            1.0,
        );
    }
}

impl Shop {
    /// Counts a committed change ([`count_change`]) in the actor's request metrics, or, outside
    /// a request, in a set flushed to the platform's metrics sink at once (the sink the
    /// scheduled and queue-fed functions use).
    pub(crate) fn record_change(&self, actor: &Actor, change: &model::Change) {
        let function = &self.platform.config.function_name;
        match &actor.metrics {
            Some(metrics) => count_change(metrics, function, change),
            None => {
                let metrics = MetricSet::default();
                count_change(&metrics, function, change);
                self.platform.flush_metrics(&metrics, &[]);
            }
        }
    }
}
