//! `Idempotency-Key`: a write that must not double happens once per key, caller and operation.
//! One mechanism for every idempotent route (checkout, cancel, refund):
//!
//! - The edge parses the header into an [`IdempotencyKey`] (1 to 128 of `A-Za-z0-9-_.:`; 400
//!   otherwise) and hashes the request into a [`Guard`] with the operation's scope.
//! - The use case may [`Guard::lookup`] first (one read) to answer a replay without work.
//! - The write it guards carries [`Guard::record`] in its own transaction: the record (with the
//!   response) is put only if the key is free or expired, so the work and the record happen
//!   together or not at all. No separate claim: a checkout pays no extra call.
//! - When that part refuses the transaction, [`Guard::resolve`] reads the record: the same body
//!   gets the recorded response ([`Done::Replay`], answered with `Idempotency-Replayed: true`),
//!   another body 422, and a record not yet readable (a concurrent request still writing) 409.
//! - When the answer grows after the commit (a payment provider's reply to a refund the
//!   transaction recorded), [`Guard::amend`] records the answer given, so that a replay answers
//!   what the first request did.
//!
//! Records expire after 24 h; the code checks the expiry itself (TTL deletion may lag, and the
//! local stack never deletes).

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::store::{Db, Item, StoreError, Tx, key, n, s};

const LIFETIME_US: i64 = 24 * 3_600 * 1_000_000;

/// A valid `Idempotency-Key` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Why an `Idempotency-Key` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the Idempotency-Key header is required")]
    Missing,
    #[error("the Idempotency-Key header must be 1 to 128 letters, digits or -_.:")]
    Malformed,
}

impl IdempotencyKey {
    pub fn parse(header: Option<&str>) -> Result<Self, KeyError> {
        let key = header.ok_or(KeyError::Missing)?;
        let valid = (1..=128).contains(&key.len())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if valid {
            Ok(Self(key.to_owned()))
        } else {
            Err(KeyError::Malformed)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A hash of the parts that make two requests "the same" (length-prefixed, so parts cannot run
/// into each other).
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

/// What an idempotent operation produced: done now, or the body answered the first time.
#[derive(Debug, Clone, PartialEq)]
pub enum Done<T> {
    Fresh(T),
    Replay(serde_json::Value),
}

impl<T> Done<T> {
    /// Shapes a fresh result; a replay stays the recorded body.
    pub fn map<U>(self, shape: impl FnOnce(T) -> U) -> Done<U> {
        match self {
            Self::Fresh(value) => Done::Fresh(shape(value)),
            Self::Replay(body) => Done::Replay(body),
        }
    }
}

/// Why a guarded write cannot go ahead.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("this Idempotency-Key was used with another request body")]
    OtherBody,
    #[error("a request with this Idempotency-Key is still in progress; retry shortly")]
    InFlight,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    pk: String,
    sk: String,
    request_hash: String,
    expires_at_us: i64,
    /// DynamoDB TTL (seconds).
    expires_at: i64,
    /// The response body, as JSON text.
    response: String,
}

/// One request's use of a key: the scope (caller and operation), the key, the request's hash.
#[derive(Debug, Clone)]
pub struct Guard {
    pk: String,
    key: IdempotencyKey,
    request_hash: String,
}

impl Guard {
    pub fn new(scope: &str, key: &IdempotencyKey, request_hash: String) -> Self {
        Self {
            pk: format!("IDEMPOTENCY#{scope}#{}", key.as_str()),
            key: key.clone(),
            request_hash,
        }
    }

    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    fn record_key(&self) -> Item {
        key(self.pk.clone(), "IDEMPOTENCY")
    }

    /// The recorded answer for this key, if one is live: `Ok(Some)` to replay, `OtherBody` when
    /// the key was used with another request.
    pub async fn lookup(
        &self,
        db: &Db,
        table: &str,
        now_us: i64,
    ) -> Result<Option<serde_json::Value>, IdempotencyError> {
        let record: Option<Record> = db.get_consistent(table, self.record_key()).await?;
        match record {
            Some(record) if record.expires_at_us >= now_us => {
                if record.request_hash != self.request_hash {
                    return Err(IdempotencyError::OtherBody);
                }
                serde_json::from_str(&record.response)
                    .map(Some)
                    .map_err(|e| {
                        IdempotencyError::Store(StoreError::Service {
                            op: "GetItem",
                            table: table.to_owned(),
                            code: "CorruptRecord".into(),
                            message: e.to_string(),
                        })
                    })
            }
            _ => Ok(None),
        }
    }

    /// Adds the record of `response` to `tx`: the part fails when the key is live already.
    /// Returns the part's position.
    pub fn record(
        &self,
        tx: &mut Tx,
        response: &serde_json::Value,
        now_us: i64,
    ) -> Result<usize, StoreError> {
        let record = Record {
            pk: self.pk.clone(),
            sk: "IDEMPOTENCY".into(),
            request_hash: self.request_hash.clone(),
            expires_at_us: now_us + LIFETIME_US,
            expires_at: (now_us + LIFETIME_US) / 1_000_000,
            response: response.to_string(),
        };
        tx.put(
            &record,
            Some("attribute_not_exists(pk) OR expires_at_us < :now"),
            vec![(":now", n(now_us))],
        )
    }

    /// Replaces the recorded response of this request (committed by [`Guard::record`]) with
    /// `response`, the answer actually given when it grew after the commit. Only a record of
    /// this same request is touched (`ConditionFailed` otherwise).
    pub async fn amend(
        &self,
        db: &Db,
        table: &str,
        response: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let request = db
            .client()
            .update_item()
            .table_name(table)
            .set_key(Some(self.record_key()))
            .update_expression("SET #response = :response")
            .condition_expression("request_hash = :hash")
            .expression_attribute_names("#response", "response")
            .expression_attribute_values(":response", s(response.to_string()))
            .expression_attribute_values(":hash", s(self.request_hash.clone()))
            .send();
        db.call("UpdateItem", table, request).await.map(drop)
    }

    /// After the record's part refused a transaction: the answer to give instead.
    pub async fn resolve(
        &self,
        db: &Db,
        table: &str,
        now_us: i64,
    ) -> Result<serde_json::Value, IdempotencyError> {
        self.lookup(db, table, now_us)
            .await?
            .ok_or(IdempotencyError::InFlight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert_eq!(IdempotencyKey::parse(None), Err(KeyError::Missing));
        assert_eq!(IdempotencyKey::parse(Some("")), Err(KeyError::Malformed));
        assert_eq!(
            IdempotencyKey::parse(Some("has space")),
            Err(KeyError::Malformed)
        );
        assert_eq!(
            IdempotencyKey::parse(Some(&"a".repeat(129))),
            Err(KeyError::Malformed)
        );
        assert_eq!(
            IdempotencyKey::parse(Some("order-2026-11-22:1"))
                .unwrap()
                .as_str(),
            "order-2026-11-22:1"
        );
    }

    #[test]
    fn hashes_separate_their_parts() {
        assert_ne!(hash_request(&[b"ab", b"c"]), hash_request(&[b"a", b"bc"]));
        assert_eq!(hash_request(&[b"x"]), hash_request(&[b"x"]));
    }

    #[test]
    fn scopes_keep_keys_apart() {
        let key = IdempotencyKey::parse(Some("k")).unwrap();
        let a = Guard::new("checkout:u1", &key, "h".into());
        let b = Guard::new("checkout:u2", &key, "h".into());
        assert_ne!(a.record_key(), b.record_key());
    }
}
