//! DynamoDB access for every function: each call has a timeout (`QUERY_TIMEOUT_MS`, default
//! 5000), is a `dynamodb` span (written with `TRACING_ENABLED=1`), and logs a warning when slower
//! than `DATABASE_SLOW_QUERY_THRESHOLD_MS` (default 100). Items are Rust types mapped with
//! serde_dynamo; the application table keys every item by `pk` and `sk`.

use std::{collections::HashMap, future::Future, time::Duration};

use aws_sdk_dynamodb::{
    Client,
    config::retry::RetryConfig,
    error::{ProvideErrorMetadata, SdkError},
    types::AttributeValue,
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::{aws::LazyClient, error::ApiError};

pub type Item = HashMap<String, AttributeValue>;

/// Maps a raw item to `T`, naming the table when it does not fit.
pub fn from_item<T: DeserializeOwned>(table: &str, item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|source| StoreError::Item {
        table: table.to_owned(),
        source,
    })
}

/// Maps `T` to a raw item.
pub fn to_item<T: Serialize>(table: &str, value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|source| StoreError::Item {
        table: table.to_owned(),
        source,
    })
}

/// The key of an application-table item.
pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.into())),
        ("sk".to_owned(), AttributeValue::S(sk.into())),
    ])
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB {op} on {table} timed out after {after:?}")]
    Timeout {
        op: &'static str,
        table: String,
        after: Duration,
    },
    #[error("DynamoDB {op} on {table}: condition not met")]
    ConditionFailed { op: &'static str, table: String },
    #[error("DynamoDB {op} on {table} failed: {code}: {message}")]
    Service {
        op: &'static str,
        table: String,
        code: String,
        message: String,
    },
    #[error("an item of {table} does not have the expected shape")]
    Item {
        table: String,
        #[source]
        source: serde_dynamo::Error,
    },
}

impl StoreError {
    /// The service's error code (`ResourceNotFoundException`, ...), when it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            Self::ConditionFailed { .. } => Some("ConditionalCheckFailedException"),
            _ => None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Item { .. } => ApiError::internal(error),
            StoreError::ConditionFailed { .. } => {
                ApiError::Conflict("the item changed or already exists".into())
            }
            StoreError::Timeout { .. } | StoreError::Service { .. } => {
                ApiError::unavailable("the database is unavailable; retry shortly", error)
            }
        }
    }
}

/// DynamoDB with this container's timeouts.
#[derive(Debug, Clone)]
pub struct Db {
    client: LazyClient<Client>,
    timeout: Duration,
    slow: Duration,
    /// The runtime settings' `slowQueryThresholdMs` (0: none), shared by every clone.
    slow_override_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Db {
    pub fn new(client: Client, timeout: Duration, slow: Duration) -> Self {
        Self {
            client: LazyClient::ready(client, Client::new),
            timeout,
            slow,
            slow_override_ms: Default::default(),
        }
    }

    /// A store whose client is built on its first call.
    pub fn lazy(client: LazyClient<Client>, timeout: Duration, slow: Duration) -> Self {
        Self {
            client,
            timeout,
            slow,
            slow_override_ms: Default::default(),
        }
    }

    /// Overrides the slow-call threshold (from the runtime settings), or restores the configured
    /// one with `None`.
    pub fn set_slow_threshold(&self, threshold: Option<Duration>) {
        let ms = threshold.map_or(0, |t| t.as_millis().max(1) as u64);
        self.slow_override_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn slow_threshold(&self) -> Duration {
        match self
            .slow_override_ms
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => self.slow,
            ms => Duration::from_millis(ms),
        }
    }

    pub fn client(&self) -> &Client {
        self.client.get()
    }

    /// Runs one SDK call under the timeout, the span and the slow-call warning.
    pub async fn call<T, E, R>(
        &self,
        op: &'static str,
        table: &str,
        call: impl Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, StoreError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let span = tracing::debug_span!("dynamodb", op, table);
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, call)
            .instrument(span)
            .await;
        let elapsed = started.elapsed();
        let slow = self.slow_threshold();
        if elapsed >= slow {
            tracing::warn!(
                op,
                table,
                elapsed_ms = elapsed.as_millis() as u64,
                threshold_ms = slow.as_millis() as u64,
                "slow DynamoDB call"
            );
        }
        match outcome {
            Err(_) => Err(StoreError::Timeout {
                op,
                table: table.to_owned(),
                after: self.timeout,
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(SdkError::TimeoutError(_))) => Err(StoreError::Timeout {
                op,
                table: table.to_owned(),
                after: self.timeout,
            }),
            Ok(Err(error)) => {
                let code = match &error {
                    SdkError::DispatchFailure(_) => "Unreachable",
                    _ => error.code().unwrap_or("Unknown"),
                }
                .to_owned();
                let cancelled_by_condition = code == "TransactionCanceledException"
                    && error
                        .message()
                        .is_some_and(|m| m.contains("ConditionalCheckFailed"));
                if code == "ConditionalCheckFailedException" || cancelled_by_condition {
                    return Err(StoreError::ConditionFailed {
                        op,
                        table: table.to_owned(),
                    });
                }
                let message = error
                    .message()
                    .map_or_else(|| crate::error::error_chain(&error), str::to_owned);
                Err(StoreError::Service {
                    op,
                    table: table.to_owned(),
                    code,
                    message,
                })
            }
        }
    }

    /// Reads one item as `T` (eventually consistent: the cheaper read).
    pub async fn get<T: DeserializeOwned>(
        &self,
        table: &str,
        key: Item,
    ) -> Result<Option<T>, StoreError> {
        self.get_item(table, key, false).await
    }

    /// Reads one item with a strongly consistent read.
    pub async fn get_consistent<T: DeserializeOwned>(
        &self,
        table: &str,
        key: Item,
    ) -> Result<Option<T>, StoreError> {
        self.get_item(table, key, true).await
    }

    async fn get_item<T: DeserializeOwned>(
        &self,
        table: &str,
        key: Item,
        consistent: bool,
    ) -> Result<Option<T>, StoreError> {
        let request = self
            .client()
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(consistent)
            .send();
        let output = self.call("GetItem", table, request).await?;
        output.item.map(|item| from_item(table, item)).transpose()
    }

    /// Writes one item (replacing any with the same key).
    pub async fn put<T: Serialize>(&self, table: &str, item: &T) -> Result<(), StoreError> {
        self.put_item(table, to_item(table, item)?, None).await
    }

    /// Writes one item only if no item has its key yet (`ConditionFailed` otherwise).
    pub async fn put_new<T: Serialize>(&self, table: &str, item: &T) -> Result<(), StoreError> {
        self.put_item(
            table,
            to_item(table, item)?,
            Some("attribute_not_exists(pk)"),
        )
        .await
    }

    async fn put_item(
        &self,
        table: &str,
        item: Item,
        condition: Option<&str>,
    ) -> Result<(), StoreError> {
        let request = self
            .client()
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .send();
        self.call("PutItem", table, request).await.map(drop)
    }

    /// Reads several items of one table in one round trip (strongly consistent), in no order.
    pub async fn batch_get(&self, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Service {
                    op: "BatchGetItem",
                    table: table.to_owned(),
                    code: "InvalidRequest".into(),
                    message: e.to_string(),
                })?,
        );
        let mut items = Vec::new();
        // DynamoDB may return some keys as unprocessed under load: ask again for those.
        while let Some(request_items) = pending.take() {
            let request = self
                .client()
                .batch_get_item()
                .request_items(table, request_items)
                .send();
            let mut output = self.call("BatchGetItem", table, request).await?;
            if let Some(mut responses) = output.responses.take() {
                items.extend(responses.remove(table).unwrap_or_default());
            }
            pending = output
                .unprocessed_keys
                .and_then(|mut unprocessed| unprocessed.remove(table))
                .filter(|k| !k.keys().is_empty());
        }
        Ok(items)
    }

    /// Writes several items atomically (TransactWriteItems): all or none. A failed condition
    /// is `ConditionFailed`.
    pub async fn transact(
        &self,
        table: &str,
        items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let request = self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send();
        self.call("TransactWriteItems", table, request)
            .await
            .map(drop)
    }

    /// DescribeTable once, without retries (readiness wants the first answer), returning the
    /// table's status (`ACTIVE`, ...).
    pub async fn describe_table(&self, table: &str) -> Result<String, StoreError> {
        let request = self
            .client()
            .describe_table()
            .table_name(table)
            .customize()
            .config_override(
                aws_sdk_dynamodb::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send();
        let output = self.call("DescribeTable", table, request).await?;
        Ok(output
            .table
            .and_then(|t| t.table_status)
            .map_or_else(|| "UNKNOWN".to_owned(), |s| s.as_str().to_owned()))
    }
}
