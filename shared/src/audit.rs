//! The audit log: security events and admin mutations, appended and never edited.
//!
//! Items live in the application table under `AUDIT#<yyyy-mm-dd>` (one partition a day, sorted by
//! time) and are indexed by target on `gsi1` (`AUDIT_TARGET#<target>`), so both "what happened
//! on this day" and "what happened to this user or order" are single queries.

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::store::{Db, StoreError, Tx};

/// One audit event, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

fn item(event: &AuditEvent) -> AuditItem<'_> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let sort = format!("{}#{id}", event.at);
    AuditItem {
        pk: format!("AUDIT#{}", &event.at[..10.min(event.at.len())]),
        sk: sort.clone(),
        gsi1pk: format!("AUDIT_TARGET#{}", event.target),
        gsi1sk: sort,
        event,
    }
}

/// Appends `event` (with `at` set to now); the write refuses to replace anything.
pub async fn record(db: &Db, table: &str, mut event: AuditEvent) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    event.at = now.format(&Rfc3339).unwrap_or_default();
    db.put_new(table, &item(&event)).await
}

/// Adds `event` to a transaction, so the audit event exists exactly when the change it
/// describes does (`at` is taken from the event as given).
pub fn record_in(tx: &mut Tx, event: &AuditEvent) -> Result<usize, StoreError> {
    tx.put(&item(event), Some("attribute_not_exists(pk)"), Vec::new())
}

/// Filters of the audit-log listing.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub action: Option<String>,
    /// Days (`YYYY-MM-DD`), inclusive; at most 31 days apart. Default: today.
    pub from: Option<String>,
    pub to: Option<String>,
}

fn day_of(text: &str) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text.get(..10)?, &format).ok()
}

/// Query calls one page of the listing may make: the request's DynamoDB work is bounded
/// whatever the range and the filters (a filter that matches little ends a page early, with a
/// cursor, rather than reading a month of events in one request).
pub const MAX_QUERIES_PER_PAGE: usize = 8;

/// One page of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Where the next page starts; `None` when the range is exhausted. A page may hold fewer
    /// than `limit` events and still have a next one (its query budget ran out).
    pub next_cursor: Option<String>,
}

/// A partition of the listing: the target's index partition, or one day.
struct Partition {
    index: Option<&'static str>,
    key_name: &'static str,
    key_value: String,
}

/// Audit events, newest first: by target (one index partition), else day by day over the
/// range; actor and action filter the results. One page: at most `limit` events and
/// [`MAX_QUERIES_PER_PAGE`] queries, each reading at most `limit` items.
pub async fn list(
    db: &Db,
    table: &str,
    filter: &AuditFilter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<AuditPage, crate::error::ApiError> {
    use crate::{
        error::ApiError,
        store::{decode_cursor, encode_cursor, from_item, s},
    };
    let today = OffsetDateTime::now_utc().date();
    let to = filter
        .to
        .as_deref()
        .map(|t| day_of(t).ok_or_else(|| ApiError::bad_request("`to` is not a date")))
        .transpose()?
        .unwrap_or(today);
    let from = filter
        .from
        .as_deref()
        .map(|f| day_of(f).ok_or_else(|| ApiError::bad_request("`from` is not a date")))
        .transpose()?
        .unwrap_or(to);
    if from > to || (to - from).whole_days() > 31 {
        return Err(ApiError::bad_request(
            "the range must run forward and span at most 31 days",
        ));
    }
    let partitions: Vec<Partition> = match &filter.target {
        Some(target) => vec![Partition {
            index: Some("gsi1"),
            key_name: "gsi1pk",
            key_value: format!("AUDIT_TARGET#{target}"),
        }],
        None => {
            let mut days = Vec::new();
            let mut day = to;
            while day >= from {
                days.push(Partition {
                    index: None,
                    key_name: "pk",
                    key_value: format!("AUDIT#{day}"),
                });
                match day.previous_day() {
                    Some(previous) => day = previous,
                    None => break,
                }
            }
            days
        }
    };
    // A cursor names the partition it continues (and, inside it, the last key read).
    let (mut at, mut start) = match cursor {
        None => (0, None),
        Some(cursor) => partitions
            .iter()
            .enumerate()
            .find_map(|(i, p)| {
                decode_cursor(cursor, p.key_name, &p.key_value)
                    .ok()
                    .map(|key| (i, (key.len() > 1).then_some(key)))
            })
            .ok_or_else(|| ApiError::bad_request("the cursor is not valid for this listing"))?,
    };
    let mut events = Vec::new();
    let mut queries = 0;
    while at < partitions.len() && events.len() < limit && queries < MAX_QUERIES_PER_PAGE {
        let partition = &partitions[at];
        let mut request = db
            .client()
            .query()
            .table_name(table)
            .key_condition_expression(format!("{} = :p", partition.key_name))
            .expression_attribute_values(":p", s(partition.key_value.clone()))
            .scan_index_forward(false)
            .limit(i32::try_from(limit - events.len()).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start.take())
            .set_index_name(partition.index.map(str::to_owned));
        let mut filters = Vec::new();
        if let Some(actor) = &filter.actor {
            filters.push("actor = :actor");
            request = request.expression_attribute_values(":actor", s(actor.clone()));
        }
        if let Some(action) = &filter.action {
            filters.push("#action = :action");
            request = request
                .expression_attribute_names("#action", "action")
                .expression_attribute_values(":action", s(action.clone()));
        }
        if !filters.is_empty() {
            request = request.filter_expression(filters.join(" AND "));
        }
        queries += 1;
        let (items, next) = db.query_page(table, request).await?;
        for item in items {
            events.push(from_item::<AuditEvent>(table, item)?);
        }
        match next {
            Some(next) => start = Some(next),
            None => at += 1,
        }
    }
    let next_cursor = (at < partitions.len()).then(|| {
        let key = start.unwrap_or_else(|| {
            let partition = &partitions[at];
            std::collections::HashMap::from([(
                partition.key_name.to_owned(),
                s(partition.key_value.clone()),
            )])
        });
        encode_cursor(&key)
    });
    Ok(AuditPage {
        events,
        next_cursor,
    })
}
