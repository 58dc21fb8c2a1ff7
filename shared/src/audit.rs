//! The audit log: security events and admin mutations, appended and never edited.
//!
//! Items live in the application table under `AUDIT#<yyyy-mm-dd>` (one partition a day, sorted by
//! time) and are indexed by target on `gsi1` (`AUDIT_TARGET#<target>`), so both "what happened
//! on this day" and "what happened to this user or order" are single queries.

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::store::{Db, StoreError};

/// One audit event, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Who acted: a user id, or `system`.
    pub actor: String,
    /// What was done: `auth.refresh_token_reuse`, `auth.revoke_all`, `user.lock`, ...
    pub action: String,
    /// What it was done to: `user:<id>`, `session:<id>`, `order:<reference>`, ...
    pub target: String,
    /// Before/after or other detail, never a secret.
    pub summary: serde_json::Value,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    /// RFC 3339, set when recorded.
    #[serde(default)]
    pub at: String,
}

#[derive(Serialize)]
struct AuditItem<'a> {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// Appends `event` (with `at` set to now); the write refuses to replace anything.
pub async fn record(db: &Db, table: &str, mut event: AuditEvent) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    event.at = now.format(&Rfc3339).unwrap_or_default();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let sort = format!("{}#{id}", event.at);
    let item = AuditItem {
        pk: format!("AUDIT#{}", &event.at[..10.min(event.at.len())]),
        sk: sort.clone(),
        gsi1pk: format!("AUDIT_TARGET#{}", event.target),
        gsi1sk: sort,
        event: &event,
    };
    db.put_new(table, &item).await
}
