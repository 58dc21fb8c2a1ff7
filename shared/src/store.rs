//! DynamoDB access for every function: each call has a timeout (`QUERY_TIMEOUT_MS`, default
//! 5000), is an `aws` span (written and exported with `TRACING_ENABLED=1`:
//! [`crate::telemetry::trace::aws_span`]), and logs a warning when slower
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

use crate::aws::LazyClient;

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

impl crate::error::DomainError for StoreError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            StoreError::Item { .. } => ErrorClass::Internal,
            StoreError::ConditionFailed { .. } => ErrorClass::Conflict,
            StoreError::Timeout { .. } | StoreError::Service { .. } => ErrorClass::Unavailable,
        }
    }

    fn public_detail(&self) -> String {
        match self {
            StoreError::ConditionFailed { .. } => "the item changed or already exists".into(),
            StoreError::Timeout { .. } | StoreError::Service { .. } => {
                "the database is unavailable; retry shortly".into()
            }
            StoreError::Item { .. } => "internal error".into(),
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
        let span = crate::telemetry::trace::aws_span("DynamoDB", op, Some(table));
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, call)
            .instrument(span.clone())
            .await;
        match &outcome {
            Ok(Ok(_)) => {}
            Err(_) => crate::telemetry::trace::aws_failed(&span, "Timeout"),
            Ok(Err(error)) => {
                crate::telemetry::trace::aws_failed(
                    &span,
                    &crate::telemetry::trace::sdk_error_code(error),
                );
            }
        }
        drop(span);
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

/// A string attribute.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The parts of one `TransactWriteItems` call on one table, built in order: each method returns
/// the part's position, so a caller can tell which condition refused a cancelled transaction.
/// `#name` placeholders in expressions are bound to `name` (every attribute this project names
/// with `#` is a reserved word or would be one).
#[derive(Debug)]
pub struct Tx {
    table: String,
    items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
}

/// Why one part of a cancelled transaction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartFailure {
    /// It did not fail.
    None,
    /// Its condition was false.
    Condition,
    /// Another transaction was writing the same item (retry).
    Conflict,
    /// Any other reason the service gave.
    Other,
}

/// A transaction the service refused: the reason of each part, when it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    pub reasons: Option<Vec<PartFailure>>,
}

impl Cancelled {
    /// Whether part `index` failed its condition.
    pub fn condition_failed(&self, index: usize) -> bool {
        self.reasons
            .as_ref()
            .is_some_and(|r| r.get(index) == Some(&PartFailure::Condition))
    }

    /// Whether any part in `range` failed its condition.
    pub fn any_condition_failed(&self, range: std::ops::Range<usize>) -> bool {
        range.into_iter().any(|i| self.condition_failed(i))
    }

    /// Whether the refusal was only a conflict with a concurrent transaction.
    pub fn is_conflict(&self) -> bool {
        self.reasons.as_ref().is_some_and(|r| {
            r.contains(&PartFailure::Conflict) && !r.contains(&PartFailure::Condition)
        })
    }
}

fn names_of(expressions: &[&str]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for expression in expressions {
        let bytes = expression.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'#' {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_')
                {
                    end += 1;
                }
                if end > start {
                    let name = &expression[start..end];
                    names.insert(format!("#{name}"), name.to_owned());
                }
                i = end;
            } else {
                i += 1;
            }
        }
    }
    names
}

fn values_of(values: Vec<(&str, AttributeValue)>) -> Option<HashMap<String, AttributeValue>> {
    (!values.is_empty()).then(|| values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

impl Tx {
    pub fn new(table: &str) -> Self {
        Self {
            table: table.to_owned(),
            items: Vec::new(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn invalid(&self, error: impl std::fmt::Display) -> StoreError {
        StoreError::Service {
            op: "TransactWriteItems",
            table: self.table.clone(),
            code: "InvalidRequest".into(),
            message: error.to_string(),
        }
    }

    fn push(&mut self, item: aws_sdk_dynamodb::types::TransactWriteItem) -> usize {
        self.items.push(item);
        self.items.len() - 1
    }

    /// Puts `value` (serialised with serde_dynamo) under `condition`.
    pub fn put<T: Serialize>(
        &mut self,
        value: &T,
        condition: Option<&str>,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<usize, StoreError> {
        let item = to_item(&self.table, value)?;
        let names = names_of(&[condition.unwrap_or_default()]);
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names((!names.is_empty()).then_some(names))
            .set_expression_attribute_values(values_of(values))
            .build()
            .map_err(|e| self.invalid(e))?;
        Ok(self.push(
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .put(put)
                .build(),
        ))
    }

    /// Updates the item at `key` with `expression` under `condition`.
    pub fn update(
        &mut self,
        key: Item,
        expression: &str,
        condition: Option<&str>,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<usize, StoreError> {
        let names = names_of(&[expression, condition.unwrap_or_default()]);
        let update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(expression)
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names((!names.is_empty()).then_some(names))
            .set_expression_attribute_values(values_of(values))
            .build()
            .map_err(|e| self.invalid(e))?;
        Ok(self.push(
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .update(update)
                .build(),
        ))
    }

    /// Deletes the item at `key` under `condition`.
    pub fn delete(
        &mut self,
        key: Item,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<usize, StoreError> {
        let names = names_of(&[condition]);
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .condition_expression(condition)
            .set_expression_attribute_names((!names.is_empty()).then_some(names))
            .set_expression_attribute_values(values_of(values))
            .build()
            .map_err(|e| self.invalid(e))?;
        Ok(self.push(
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .delete(delete)
                .build(),
        ))
    }
}

impl Db {
    /// Writes a [`Tx`] atomically. `Ok(Err(_))`: the service refused it (a condition, or a
    /// concurrent transaction), with the reason of each part when it gave them.
    pub async fn commit(&self, tx: Tx) -> Result<Result<(), Cancelled>, StoreError> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        if tx.items.is_empty() {
            return Ok(Ok(()));
        }
        let table = tx.table;
        let request = self
            .client()
            .transact_write_items()
            .set_transact_items(Some(tx.items))
            .send();
        let outcome = self.call("TransactWriteItems", &table, async {
            match request.await {
                Ok(_) => Ok(Ok(())),
                Err(SdkError::ServiceError(error)) => match error.err() {
                    TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                        let reasons = cancelled.cancellation_reasons.as_ref().map(|reasons| {
                            reasons
                                .iter()
                                .map(|r| match r.code() {
                                    None | Some("None") => PartFailure::None,
                                    Some("ConditionalCheckFailed") => PartFailure::Condition,
                                    Some("TransactionConflict") => PartFailure::Conflict,
                                    Some(_) => PartFailure::Other,
                                })
                                .collect()
                        });
                        Ok(Err(Cancelled { reasons }))
                    }
                    _ => Err(SdkError::ServiceError(error)),
                },
                Err(other) => Err(other),
            }
        });
        // Boxed: the SDK's futures are large, and every transaction goes through here.
        Box::pin(outcome).await
    }

    /// One page of a query built by the caller (`Query` with its span and timeout): the items
    /// and the key to start the next page from.
    pub async fn query_page(
        &self,
        table: &str,
        request: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let page = self.call("Query", table, request.send()).await?;
        Ok((
            page.items.unwrap_or_default(),
            page.last_evaluated_key.filter(|k| !k.is_empty()),
        ))
    }
}

#[cfg(test)]
mod tx_tests {
    use super::*;

    #[test]
    fn placeholders_are_bound_to_their_names() {
        let names = names_of(&["SET #status = :s, #version = :v", "#version = :old"]);
        assert_eq!(names.len(), 2);
        assert_eq!(names["#status"], "status");
        assert_eq!(names["#version"], "version");
        assert!(names_of(&["stock >= :q"]).is_empty());
    }
}

/// The one page cursor of every listing: the `LastEvaluatedKey` of a Query as URL-safe base64
/// of its string attributes. A cursor is valid for one partition only: [`decode_cursor`] refuses
/// one that does not name the partition being listed, so nothing a client invents reaches
/// DynamoDB as another listing's key.
pub fn encode_cursor(key: &Item) -> String {
    use base64::Engine as _;
    let raw: std::collections::BTreeMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.as_str(), v.as_str())))
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&raw).unwrap_or_default())
}

/// A cursor that is not one of this listing's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not valid for this listing")]
pub struct BadCursor;

/// The start key a cursor of the partition `partition_key = partition` stands for.
pub fn decode_cursor(
    cursor: &str,
    partition_key: &str,
    partition: &str,
) -> Result<Item, BadCursor> {
    use base64::Engine as _;
    if cursor.len() > 1_024 {
        return Err(BadCursor);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| BadCursor)?;
    let raw: HashMap<String, String> = serde_json::from_slice(&bytes).map_err(|_| BadCursor)?;
    if raw.get(partition_key).map(String::as_str) != Some(partition) || raw.len() > 6 {
        return Err(BadCursor);
    }
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k, AttributeValue::S(v)))
        .collect())
}

#[cfg(test)]
mod cursor_tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_name_their_partition() {
        let key: Item = [
            ("gsi2pk".to_owned(), s("ORDERS")),
            ("pk".to_owned(), s("ORDER#X")),
        ]
        .into_iter()
        .collect();
        let cursor = encode_cursor(&key);
        assert_eq!(decode_cursor(&cursor, "gsi2pk", "ORDERS"), Ok(key));
        assert_eq!(
            decode_cursor(&cursor, "gsi1pk", "CUSTOMER_ORDERS#u"),
            Err(BadCursor)
        );
        assert_eq!(
            decode_cursor("not base64!", "gsi2pk", "ORDERS"),
            Err(BadCursor)
        );
    }
}
