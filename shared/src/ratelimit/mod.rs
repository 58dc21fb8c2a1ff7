//! Rate limits and quotas: buckets in DynamoDB (`RateLimitTable`) shared by every container of
//! every function, the runbooks' Redis store made serverless.
//!
//! - [`gcra`]: the integer arithmetic (rolling budgets and hourly counters).
//! - [`RateLimiter`]: decides a request against all the scopes that apply to it in one
//!   DynamoDB round trip on the common path: each container remembers the last state it saw of
//!   each bucket, computes the outcome, and writes every admitted bucket in one conditional
//!   write (TransactWriteItems when several scopes apply). A condition that fails means another
//!   container moved a bucket: the limiter reads the current state and decides again. A rejection
//!   writes nothing. Correctness rests on the conditions (DynamoDB serialises writes to an item),
//!   so no interleaving admits more than a budget.
//! - [`layer`]: the edge middleware that picks the scopes of a request and answers 429.

pub mod gcra;
pub mod layer;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aws_sdk_dynamodb::{
    error::SdkError,
    operation::{transact_write_items::TransactWriteItemsError, update_item::UpdateItemError},
    types::{AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update},
};

use self::gcra::{Gcra, Outcome, decide_count, hour_of};
use crate::{
    clock::Clock,
    settings::{Budget, FailMode},
    store::{Db, Item, StoreError},
};

/// The runbooks' scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Ip,
    Customer,
    Admin,
    Auth,
    Quota,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Customer => "customer",
            Self::Admin => "admin",
            Self::Auth => "auth",
            Self::Quota => "quota",
        }
    }
}

/// One bucket a request must fit in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub scope: Scope,
    /// The bucket's key (`ip#203.0.113.7`, `customer#<user>`, `quota#<user>#<hour>`, ...).
    pub key: String,
    pub limit: u64,
    pub window_secs: u64,
    pub fail: FailMode,
    /// An hourly counter (the quota) rather than a rolling budget.
    pub hourly: bool,
}

impl Check {
    /// A rolling budget from the settings.
    pub fn rolling(scope: Scope, key: impl Into<String>, budget: Budget) -> Self {
        Self {
            scope,
            key: key.into(),
            limit: u64::from(budget.limit),
            window_secs: u64::from(budget.window_seconds),
            fail: budget.fail,
            hourly: false,
        }
    }

    /// The hourly quota of `user`, `multiplier` times the budget.
    pub fn hourly_quota(user: &str, budget: Budget, multiplier: u32, now_us: i64) -> Self {
        let (hour_start, _) = hour_of(now_us);
        Self {
            scope: Scope::Quota,
            key: format!("quota#{user}#{}", hour_start / 3_600_000_000),
            limit: u64::from(budget.limit) * u64::from(multiplier.max(1)),
            window_secs: 3600,
            fail: budget.fail,
            hourly: true,
        }
    }

    fn gcra(&self) -> Gcra {
        Gcra {
            limit: self.limit,
            window_us: self.window_secs as i64 * 1_000_000,
        }
    }

    fn decide(&self, state: Option<i64>, now: i64) -> Outcome {
        if self.hourly {
            decide_count(state, self.limit, now)
        } else {
            self.gcra().decide(state, now)
        }
    }
}

/// Where a scope stands after a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeState {
    pub scope: Scope,
    pub limit: u64,
    pub window_secs: u64,
    pub remaining: u64,
    pub reset_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed(Vec<ScopeState>),
    Limited {
        states: Vec<ScopeState>,
        violated: Scope,
        /// The key of the bucket that refused (one scope can have several buckets: `auth`).
        violated_key: String,
        retry_after_secs: u64,
    },
    /// The store did not answer in time and a scope that applies fails closed.
    Unavailable {
        scope: Scope,
    },
    /// The store did not answer in time; every scope that applies fails open.
    FailedOpen,
}

#[derive(Debug, thiserror::Error)]
enum LimiterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the rate-limit store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("buckets kept changing under {0} attempts")]
    Contention(usize),
    #[error("a bucket key is longer than {MAX_KEY_BYTES} bytes")]
    KeyTooLong,
}

/// The shared limiter of a container.
pub struct RateLimiter {
    db: Db,
    table: String,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    /// Last state seen per bucket: the TAT or the hour's count. Only admitted requests add
    /// entries, and the map is bounded by entries and by key bytes ([`SeenStates`]).
    seen: Mutex<SeenStates>,
    /// Requests of this container queue per bucket instead of racing each other's conditions
    /// (a Lambda container serves one request at a time; the local gateway and tests many).
    queues: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    round_trips: AtomicU64,
}

/// Attempts when other containers keep moving the buckets; then the scope's fail mode applies.
const MAX_ATTEMPTS: usize = 8;
/// The per-container memory of bucket states: at most this many entries...
const SEEN_CAPACITY: usize = 20_000;
/// ...holding at most this many bytes of keys (keys are short: client-supplied values enter
/// them only as digests, see `layer`); either bound reached, the memory starts afresh (a
/// forgotten bucket costs one extra read, never a wrong decision).
const SEEN_KEY_BYTES: usize = 2 << 20;
/// A key longer than this is refused before any store call (DynamoDB's own partition key
/// limit is 2048 bytes; no key the layer builds comes near this).
pub const MAX_KEY_BYTES: usize = 256;

/// The bounded map behind [`RateLimiter`]'s memory of bucket states.
#[derive(Default)]
struct SeenStates {
    states: HashMap<String, Option<i64>>,
    key_bytes: usize,
}

impl SeenStates {
    fn get(&self, key: &str) -> Option<Option<i64>> {
        self.states.get(key).copied()
    }

    /// Updates an entry that exists; never adds one.
    fn update(&mut self, key: &str, state: Option<i64>) {
        if let Some(slot) = self.states.get_mut(key) {
            *slot = state;
        }
    }

    fn insert(&mut self, key: &str, state: Option<i64>) {
        if let Some(slot) = self.states.get_mut(key) {
            *slot = state;
            return;
        }
        if self.states.len() >= SEEN_CAPACITY || self.key_bytes + key.len() > SEEN_KEY_BYTES {
            self.states.clear();
            self.key_bytes = 0;
        }
        self.key_bytes += key.len();
        self.states.insert(key.to_owned(), state);
    }
}

impl RateLimiter {
    pub fn new(db: Db, table: String, timeout: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            table,
            timeout,
            clock,
            seen: Mutex::new(SeenStates::default()),
            queues: Mutex::new(HashMap::new()),
            round_trips: AtomicU64::new(0),
        }
    }

    pub fn now_us(&self) -> i64 {
        self.clock.now_us()
    }

    /// DynamoDB calls made so far (for the benchmark's calls-per-request figure).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Decides a request against every check at once.
    pub async fn check(&self, checks: &[Check]) -> Decision {
        if checks.is_empty() {
            return Decision::Allowed(Vec::new());
        }
        let outcome = if checks.iter().any(|c| c.key.len() > MAX_KEY_BYTES) {
            Err(LimiterError::KeyTooLong)
        } else {
            let turn = self.queue(checks).await;
            let outcome = self.decide(checks).await;
            drop(turn);
            self.release(checks);
            outcome
        };
        match outcome {
            Ok(decision) => decision,
            Err(error) => match checks.iter().find(|c| c.fail == FailMode::Closed) {
                Some(closed) => {
                    tracing::warn!(%error, scope = closed.scope.name(), "rate-limit store unavailable; failing closed");
                    Decision::Unavailable {
                        scope: closed.scope,
                    }
                }
                None => {
                    tracing::warn!(%error, "rate-limit store unavailable; failing open");
                    Decision::FailedOpen
                }
            },
        }
    }

    /// Whether this container already knows `checks` will be refused: a bucket it remembers is
    /// spent (no I/O; [`Self::check`] then refuses without a store call too, since others only
    /// ever spend buckets). An unknown bucket is taken as full.
    pub fn foresees_denial(&self, checks: &[Check]) -> bool {
        let (_, outcomes) = self.foresee(checks, &HashMap::new(), self.clock.now_us());
        outcomes.iter().any(|o| matches!(o, Outcome::Deny { .. }))
    }

    /// What each bucket holds as far as this container knows (states read during a decision
    /// first, then its memory; unknown: assume unused), and each check's outcome on it.
    fn foresee(
        &self,
        checks: &[Check],
        overlay: &HashMap<String, Option<i64>>,
        now: i64,
    ) -> (Vec<Option<i64>>, Vec<Outcome>) {
        let expected: Vec<Option<i64>> = checks
            .iter()
            .map(|c| self.seen(overlay, &c.key).flatten())
            .collect();
        let outcomes = checks
            .iter()
            .zip(&expected)
            .map(|(c, state)| c.decide(*state, now))
            .collect();
        (expected, outcomes)
    }

    /// Waits for this container's earlier requests on the same buckets (locks taken in key
    /// order, so two requests sharing buckets cannot deadlock).
    async fn queue(&self, checks: &[Check]) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut keys: Vec<&str> = checks.iter().map(|c| c.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let locks: Vec<Arc<tokio::sync::Mutex<()>>> = match self.queues.lock() {
            Ok(mut queues) => keys
                .iter()
                .map(|k| queues.entry((*k).to_owned()).or_default().clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut guards = Vec::with_capacity(locks.len());
        for lock in locks {
            guards.push(lock.lock_owned().await);
        }
        guards
    }

    /// Forgets the queues of `checks` that nobody else holds or waits for: the map holds only
    /// buckets with requests in flight, so it cannot grow with the number of keys ever seen.
    fn release(&self, checks: &[Check]) {
        if let Ok(mut queues) = self.queues.lock() {
            for check in checks {
                if queues
                    .get(&check.key)
                    .is_some_and(|lock| Arc::strong_count(lock) == 1)
                {
                    queues.remove(&check.key);
                }
            }
        }
    }

    /// Requests in flight per bucket, for the memory test.
    pub fn queued_buckets(&self) -> usize {
        self.queues.lock().map_or(0, |q| q.len())
    }

    /// Buckets whose state this container remembers, and their keys' bytes.
    pub fn remembered(&self) -> (usize, usize) {
        self.seen
            .lock()
            .map_or((0, 0), |s| (s.states.len(), s.key_bytes))
    }

    /// One store call under the limiter's timeout.
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, LimiterError>>,
    ) -> Result<T, LimiterError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| LimiterError::Timeout(self.timeout))?
    }

    /// What this decision knows of `key`: a state read during it, else the container's memory.
    fn seen(&self, overlay: &HashMap<String, Option<i64>>, key: &str) -> Option<Option<i64>> {
        overlay
            .get(key)
            .copied()
            .or_else(|| self.seen.lock().ok()?.get(key))
    }

    /// Remembers the state an admitted request left.
    fn remember(&self, key: &str, state: Option<i64>) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(key, state);
        }
    }

    async fn decide(&self, checks: &[Check]) -> Result<Decision, LimiterError> {
        // States read during this decision: kept in the container's memory only if it admits
        // (a denied or failed decision adds no entry; anyone can make those with any key).
        let mut overlay: HashMap<String, Option<i64>> = HashMap::new();
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now_us();
            let (expected, outcomes) = self.foresee(checks, &overlay, now);
            // Others only ever spend buckets, so a denial on a stale view is a true denial.
            if let Some((
                check,
                Outcome::Deny {
                    retry_after_secs, ..
                },
            )) = checks
                .iter()
                .zip(&outcomes)
                .find(|(_, o)| matches!(o, Outcome::Deny { .. }))
            {
                let states = self.states(checks, &expected, now);
                if let Ok(mut seen) = self.seen.lock() {
                    for (key, state) in &overlay {
                        seen.update(key, *state);
                    }
                }
                return Ok(Decision::Limited {
                    states,
                    violated: check.scope,
                    violated_key: check.key.clone(),
                    retry_after_secs: *retry_after_secs,
                });
            }
            let known: Vec<bool> = checks
                .iter()
                .map(|c| self.seen(&overlay, &c.key).is_some())
                .collect();
            match Box::pin(self.timed(self.write(checks, &expected, &known, &outcomes, now)))
                .await?
            {
                Written::Done => {
                    let mut states = Vec::with_capacity(checks.len());
                    for (check, outcome) in checks.iter().zip(&outcomes) {
                        if let Outcome::Allow {
                            next,
                            remaining,
                            reset_secs,
                        } = outcome
                        {
                            self.remember(&check.key, Some(*next));
                            states.push(ScopeState {
                                scope: check.scope,
                                limit: check.limit,
                                window_secs: check.window_secs,
                                remaining: *remaining,
                                reset_secs: *reset_secs,
                            });
                        }
                    }
                    return Ok(Decision::Allowed(states));
                }
                Written::Conflict(current) => {
                    let current = match current {
                        Some(current) => current,
                        // Boxed: the SDK's futures are large, and this path is the rare one.
                        None => Box::pin(self.timed(self.read(checks))).await?,
                    };
                    overlay.extend(current);
                }
            }
        }
        Err(LimiterError::Contention(MAX_ATTEMPTS))
    }

    fn states(&self, checks: &[Check], expected: &[Option<i64>], now: i64) -> Vec<ScopeState> {
        checks
            .iter()
            .zip(expected)
            .map(|(check, state)| {
                let (remaining, reset_secs) = match (check.hourly, check.decide(*state, now)) {
                    (_, Outcome::Deny { reset_secs, .. }) => (0, reset_secs),
                    (
                        true,
                        Outcome::Allow {
                            remaining,
                            reset_secs,
                            ..
                        },
                    ) => (remaining + 1, reset_secs),
                    (false, Outcome::Allow { reset_secs, .. }) => {
                        (check.gcra().remaining(*state, now), reset_secs)
                    }
                };
                ScopeState {
                    scope: check.scope,
                    limit: check.limit,
                    window_secs: check.window_secs,
                    remaining,
                    reset_secs,
                }
            })
            .collect()
    }

    fn update(
        &self,
        check: &Check,
        expected: Option<i64>,
        known: bool,
        next: i64,
        now: i64,
    ) -> Result<Update, LimiterError> {
        let key = HashMap::from([("pk".to_owned(), AttributeValue::S(check.key.clone()))]);
        let builder = Update::builder().table_name(&self.table).set_key(Some(key));
        let builder = if check.hourly {
            // Usage records are kept 90 days for reporting.
            let (hour_start, _) = hour_of(now);
            let expires = hour_start / 1_000_000 + 3_600 + 90 * 86_400;
            builder
                .update_expression("SET #count = :next, expires_at = :exp, scope_name = :scope")
                .condition_expression(if known && expected.is_some() {
                    "#count = :expected"
                } else {
                    "attribute_not_exists(#count)"
                })
                .expression_attribute_names("#count", "count")
                .expression_attribute_values(":exp", AttributeValue::N(expires.to_string()))
        } else {
            // The item may vanish once the bucket is full again: it holds nothing then.
            let expires = next / 1_000_000 + 60;
            builder
                .update_expression("SET tat = :next, expires_at = :exp, scope_name = :scope")
                .condition_expression(if known && expected.is_some() {
                    "tat = :expected"
                } else {
                    "attribute_not_exists(tat)"
                })
                .expression_attribute_values(":exp", AttributeValue::N(expires.to_string()))
        };
        let builder = builder
            .expression_attribute_values(":next", AttributeValue::N(next.to_string()))
            .expression_attribute_values(":scope", AttributeValue::S(check.scope.name().to_owned()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match expected.filter(|_| known) {
            Some(value) => builder
                .expression_attribute_values(":expected", AttributeValue::N(value.to_string())),
            None => builder,
        }
        .build()
        .map_err(|e| {
            LimiterError::Store(StoreError::Service {
                op: "TransactWriteItems",
                table: self.table.clone(),
                code: "InvalidRequest".into(),
                message: e.to_string(),
            })
        })
    }

    async fn write(
        &self,
        checks: &[Check],
        expected: &[Option<i64>],
        known: &[bool],
        outcomes: &[Outcome],
        now: i64,
    ) -> Result<Written, LimiterError> {
        let updates: Vec<Update> = checks
            .iter()
            .zip(expected)
            .zip(known)
            .zip(outcomes)
            .filter_map(|(((check, expected), known), outcome)| match outcome {
                Outcome::Allow { next, .. } => {
                    Some(self.update(check, *expected, *known, *next, now))
                }
                Outcome::Deny { .. } => None,
            })
            .collect::<Result<_, _>>()?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let client = self.db.client();
        if let [update] = updates.as_slice() {
            let request = client
                .update_item()
                .table_name(update.table_name())
                .set_key(Some(update.key().clone()))
                .update_expression(update.update_expression())
                .set_condition_expression(update.condition_expression().map(str::to_owned))
                .set_expression_attribute_names(update.expression_attribute_names().cloned())
                .set_expression_attribute_values(update.expression_attribute_values().cloned())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send();
            let request = crate::telemetry::trace::aws_call(
                "DynamoDB",
                "UpdateItem",
                Some(&self.table),
                request,
            );
            return match request.await {
                Ok(_) => Ok(Written::Done),
                Err(SdkError::ServiceError(error)) => match error.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(failed) => {
                        Ok(Written::Conflict(failed.item.map(|item| {
                            vec![(checks[0].key.clone(), state_of(&checks[0], &item))]
                        })))
                    }
                    other => Err(service_error("UpdateItem", &self.table, &other)),
                },
                Err(other) => Err(service_error("UpdateItem", &self.table, &other)),
            };
        }
        let items = updates
            .into_iter()
            .map(|u| TransactWriteItem::builder().update(u).build())
            .collect();
        let request = client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send();
        match crate::telemetry::trace::aws_call(
            "DynamoDB",
            "TransactWriteItems",
            Some(&self.table),
            request,
        )
        .await
        {
            Ok(_) => Ok(Written::Done),
            Err(SdkError::ServiceError(error)) => match error.into_err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    // The reasons list the current item of each failed condition when the
                    // service returns them; otherwise the limiter reads them.
                    let reasons = cancelled.cancellation_reasons.unwrap_or_default();
                    let current: Vec<(String, Option<i64>)> = checks
                        .iter()
                        .zip(reasons.iter())
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .filter_map(|(check, r)| {
                            r.item()
                                .map(|item| (check.key.clone(), state_of(check, item)))
                        })
                        .collect();
                    let conflicts = reasons
                        .iter()
                        .filter(|r| r.code() == Some("ConditionalCheckFailed"))
                        .count();
                    Ok(Written::Conflict(
                        (conflicts > 0 && current.len() == conflicts).then_some(current),
                    ))
                }
                other => Err(service_error("TransactWriteItems", &self.table, &other)),
            },
            Err(other) => Err(service_error("TransactWriteItems", &self.table, &other)),
        }
    }

    /// The current state of every bucket of `checks` (one strongly consistent BatchGetItem).
    async fn read(&self, checks: &[Check]) -> Result<Vec<(String, Option<i64>)>, LimiterError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let keys: Vec<Item> = checks
            .iter()
            .map(|c| HashMap::from([("pk".to_owned(), AttributeValue::S(c.key.clone()))]))
            .collect();
        let items = self.db.batch_get(&self.table, keys).await?;
        Ok(checks
            .iter()
            .map(|check| {
                let item = items
                    .iter()
                    .find(|i| i.get("pk").and_then(|v| v.as_s().ok()) == Some(&check.key));
                (
                    check.key.clone(),
                    item.and_then(|item| state_of(check, item)),
                )
            })
            .collect())
    }
}

/// The client that last signed in to an account (the login policy's exemption, see `layer`).
#[derive(serde::Serialize, serde::Deserialize)]
struct TrustedClient {
    pk: String,
    client: String,
    /// Seconds; the code checks it (the local stack never deletes expired items).
    expires_at: i64,
}

impl RateLimiter {
    /// The client digest that last signed in to `account` (a digest), unless expired.
    pub async fn trusted_client(&self, account: &str) -> Result<Option<String>, StoreError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let key = HashMap::from([("pk".to_owned(), AttributeValue::S(trusted_key(account)))]);
        let item: Option<TrustedClient> = self.db.get(&self.table, key).await?;
        let now = self.clock.now_us() / 1_000_000;
        Ok(item.filter(|t| t.expires_at > now).map(|t| t.client))
    }

    /// Remembers `client` as the one that last signed in to `account`, for `ttl`.
    pub async fn trust(
        &self,
        account: &str,
        client: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let item = TrustedClient {
            pk: trusted_key(account),
            client: client.to_owned(),
            expires_at: self.clock.now_us() / 1_000_000 + ttl.as_secs() as i64,
        };
        self.db.put(&self.table, &item).await
    }
}

fn trusted_key(account: &str) -> String {
    format!("auth#trusted:{account}")
}

enum Written {
    Done,
    /// Another container moved a bucket; its current states when the service returned them.
    Conflict(Option<Vec<(String, Option<i64>)>>),
}

fn state_of(check: &Check, item: &Item) -> Option<i64> {
    let field = if check.hourly { "count" } else { "tat" };
    item.get(field)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn service_error(
    op: &'static str,
    table: &str,
    error: &(dyn std::error::Error + 'static),
) -> LimiterError {
    LimiterError::Store(StoreError::Service {
        op,
        table: table.to_owned(),
        code: "RateLimitStore".into(),
        message: crate::error::error_chain(error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_of_states_is_bounded_by_entries_and_key_bytes() {
        let mut seen = SeenStates::default();
        for i in 0..(SEEN_CAPACITY * 2) {
            seen.insert(&format!("ip#{i}"), Some(1));
            assert!(seen.states.len() <= SEEN_CAPACITY);
        }
        let mut seen = SeenStates::default();
        let long = "k".repeat(MAX_KEY_BYTES);
        for i in 0..(SEEN_KEY_BYTES / MAX_KEY_BYTES * 2) {
            seen.insert(&format!("{i}{long}"), Some(1));
            assert!(seen.key_bytes <= SEEN_KEY_BYTES);
        }
    }

    #[test]
    fn update_never_adds_an_entry() {
        let mut seen = SeenStates::default();
        seen.update("auth#client:x", Some(5));
        assert_eq!(seen.get("auth#client:x"), None);
        seen.insert("auth#client:x", Some(5));
        seen.update("auth#client:x", Some(7));
        assert_eq!(seen.get("auth#client:x"), Some(Some(7)));
    }
}
