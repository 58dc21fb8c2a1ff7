//! `Idempotency-Key`: a write that must not double happens once per key and caller.
//!
//! The first request with a key claims it (a conditional put, `in_flight`); the write it guards
//! records the response in the same transaction that does the work (`done`). The same key again:
//! with the same body, the recorded response; with another body, 422; while the first is still
//! in flight, 409. A request that fails before its write releases the key. Records expire after
//! 24 h (checked by the code: TTL deletion may lag).

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{n, s, update};
use crate::{
    error::ApiError,
    store::{Db, Item, StoreError, key},
};

const LIFETIME_US: i64 = 24 * 3_600 * 1_000_000;

/// A valid `Idempotency-Key`: 1 to 128 characters of letters, digits and `-_.:`.
pub fn parse_key(header: Option<&str>) -> Result<String, ApiError> {
    let key =
        header.ok_or_else(|| ApiError::bad_request("the Idempotency-Key header is required"))?;
    let valid = (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(ApiError::bad_request(
            "the Idempotency-Key header must be 1 to 128 letters, digits or -_.:",
        ))
    }
}

pub fn hash_request(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A recorded response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub status: u16,
    pub body: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    pk: String,
    sk: String,
    state: String,
    request_hash: String,
    expires_at_us: i64,
    /// DynamoDB TTL (seconds).
    expires_at: i64,
    #[serde(default)]
    response: Option<String>,
}

/// The claim on a key by one request.
#[derive(Debug, Clone)]
pub struct Claim {
    pk: String,
    request_hash: String,
}

pub enum Begin {
    /// This request owns the key: do the work, then [`Claim::finish`] in the same transaction.
    Fresh(Claim),
    /// The key was used with this body: answer what was answered.
    Replay(Recorded),
}

fn record_key(pk: &str) -> Item {
    key(pk.to_owned(), "IDEMPOTENCY")
}

/// Claims `key` for `scope` (the caller and the operation), or says what to answer instead.
pub async fn begin(
    db: &Db,
    table: &str,
    scope: &str,
    key_value: &str,
    request_hash: String,
    now_us: i64,
) -> Result<Begin, ApiError> {
    let pk = format!("IDEMPOTENCY#{scope}#{key_value}");
    let record = Record {
        pk: pk.clone(),
        sk: "IDEMPOTENCY".into(),
        state: "in_flight".into(),
        request_hash: request_hash.clone(),
        expires_at_us: now_us + LIFETIME_US,
        expires_at: (now_us + LIFETIME_US) / 1_000_000,
        response: None,
    };
    let item = crate::store::to_item(table, &record)?;
    let request = db
        .client()
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk) OR expires_at_us < :now")
        .expression_attribute_values(":now", n(now_us))
        .send();
    match db.call("PutItem", table, request).await {
        Ok(_) => return Ok(Begin::Fresh(Claim { pk, request_hash })),
        Err(StoreError::ConditionFailed { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    let Some(existing) = db.get_consistent::<Record>(table, record_key(&pk)).await? else {
        // Released between our write and our read: the caller may simply retry.
        return Err(ApiError::Conflict(
            "this Idempotency-Key is being used right now; retry shortly".into(),
        ));
    };
    if existing.request_hash != request_hash {
        return Err(ApiError::Validation {
            detail: "this Idempotency-Key was used with another request body".into(),
            errors: vec![crate::error::FieldError {
                field: "Idempotency-Key".into(),
                message: "already used with another request body".into(),
            }],
        });
    }
    match (existing.state.as_str(), existing.response) {
        ("done", Some(response)) => Ok(Begin::Replay(
            serde_json::from_str(&response).map_err(ApiError::internal)?,
        )),
        _ => Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still in progress; retry shortly".into(),
        )),
    }
}

impl Claim {
    /// The transaction part that records the response, valid only while this claim holds.
    pub fn finish(
        &self,
        table: &str,
        response: &Recorded,
    ) -> Result<TransactWriteItem, StoreError> {
        let text = serde_json::to_string(response).map_err(|e| StoreError::Service {
            op: "TransactWriteItems",
            table: table.to_owned(),
            code: "InvalidRequest".into(),
            message: e.to_string(),
        })?;
        update(
            table,
            record_key(&self.pk),
            "SET #state = :done, #response = :response",
            Some("#state = :in_flight AND request_hash = :hash"),
            vec![
                (":done", s("done")),
                (":in_flight", s("in_flight")),
                (":hash", s(self.request_hash.clone())),
                (":response", AttributeValue::S(text)),
            ],
        )
    }

    /// Records the response on its own (when the outcome needed no transaction).
    pub async fn complete(
        &self,
        db: &Db,
        table: &str,
        response: &Recorded,
    ) -> Result<(), StoreError> {
        db.transact(table, vec![self.finish(table, response)?])
            .await
    }

    /// Gives the key back: the guarded write did not happen.
    pub async fn release(&self, db: &Db, table: &str) {
        let request = db
            .client()
            .delete_item()
            .table_name(table)
            .set_key(Some(record_key(&self.pk)))
            .condition_expression("#state = :in_flight")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_flight", s("in_flight"))
            .send();
        if let Err(error) = db.call("DeleteItem", table, request).await {
            tracing::warn!(%error, "could not release an idempotency key; it frees itself in 24 h");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(parse_key(None).is_err());
        assert!(parse_key(Some("")).is_err());
        assert!(parse_key(Some("has space")).is_err());
        assert!(parse_key(Some(&"a".repeat(129))).is_err());
        assert_eq!(
            parse_key(Some("order-2026-11-22:1")).unwrap(),
            "order-2026-11-22:1"
        );
    }

    #[test]
    fn hashes_separate_their_parts() {
        assert_ne!(hash_request(&[b"ab", b"c"]), hash_request(&[b"a", b"bc"]));
        assert_eq!(hash_request(&[b"x"]), hash_request(&[b"x"]));
    }
}
