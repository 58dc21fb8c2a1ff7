//! Security incidents: the fraud or chargeback procedure's step 3, an incident entry with the
//! order reference and its timeline.
//!
//! An incident names an order and keeps, as they were when it was recorded: the order's tracking
//! payload (exactly what `GET /api/v1/orders/{reference}/track` answers: [`crate::orders::tracking`]),
//! the request ids the admin gives, and the keys of the order's audit events (target
//! `order:<reference>`, newest first, at most [`MAX_LINKED_AUDIT_EVENTS`]: one bounded query).
//! Later changes of the order do not change it. Only its status (`open`, `resolved`) changes,
//! with a note.
//!
//! Stored in the application table as `INCIDENT#<id>`/`INCIDENT`, listed on `gsi1` by the
//! partition `INCIDENTS`, sorted by creation time (`<microseconds, 20 digits>#<id>`). Each
//! write is one transaction with its audit event (`incident.create`, `incident.status`; target
//! `incident:<id>`); recording one also carries its Idempotency-Key record, so a retried request
//! answers the first incident instead of recording a second.

use lumi_shared::{
    audit::{self, AuditEvent},
    error::{DomainError, ErrorClass, FieldError},
    idempotency::{Done, Guard},
    store::{Item, StoreError, Tx, decode_cursor, encode_cursor, from_item, key, n, s},
};
use serde::{Deserialize, Serialize};

use crate::{
    Actor, CommerceError, Shop,
    orders::{tracking, valid_reference},
    rfc3339,
};

/// Longest summary, and longest status note, in characters.
pub const MAX_TEXT_CHARS: usize = 2_000;
/// Most request ids an incident keeps.
pub const MAX_REQUEST_IDS: usize = 20;
/// Most audit events of the order an incident links (one query's page).
pub const MAX_LINKED_AUDIT_EVENTS: i32 = 100;
/// The `gsi1` partition listing every incident.
pub const LIST_PARTITION: &str = "INCIDENTS";

/// Why an incident use case did not happen. Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("{0}")]
    NotFound(String),
    /// The request's fields, each with what is wrong with it.
    #[error("the incident is not valid: {}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// A query parameter that is not what the listing gave (a cursor).
    #[error("the {0} is not valid for this listing")]
    Malformed(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Commerce(#[from] CommerceError),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{} {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl DomainError for IncidentError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::NotFound(_) => ErrorClass::NotFound,
            Self::Invalid(errors) => ErrorClass::Invalid(errors.clone()),
            Self::Malformed(_) => ErrorClass::Malformed,
            Self::Conflict(_) => ErrorClass::Conflict,
            Self::Store(error) => error.class(),
            Self::Commerce(error) => error.class(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::Store(error) => error.public_detail(),
            Self::Commerce(error) => error.public_detail(),
            other => other.to_string(),
        }
    }
}

fn field(name: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    Open,
    Resolved,
}

impl IncidentStatus {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(Self::Open),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
        }
    }
}

/// What an admin asks to record (checked by [`NewIncident::check`]).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewIncident {
    #[schema(
        pattern = "^LUMI-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$",
        example = "LUMI-7K3F-9Q2M"
    )]
    pub order_reference: String,
    /// 1 to 2000 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"\S",
        example = "chargeback opened; card reported stolen"
    )]
    pub summary: String,
    #[schema(value_type = Severity)]
    pub severity: String,
    /// Request ids (`X-Request-Id`) the incident concerns.
    #[serde(default)]
    #[schema(max_items = 20, value_type = Vec<RequestIdDoc>)]
    pub request_ids: Vec<String>,
}

/// A request id as the edge accepts one (`X-Request-Id`), for the OpenAPI document.
pub struct RequestIdDoc;

impl utoipa::PartialSchema for RequestIdDoc {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[A-Za-z0-9._:=+/-]{1,128}$"))
            .into()
    }
}

impl utoipa::ToSchema for RequestIdDoc {
    fn name() -> std::borrow::Cow<'static, str> {
        "RequestId".into()
    }
}

/// A status change: `open` or `resolved`, with a note.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct StatusChange {
    #[schema(value_type = IncidentStatus)]
    pub status: String,
    /// 1 to 2000 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"\S",
        example = "refunded; card blocked"
    )]
    pub note: String,
}

fn check_text(errors: &mut Vec<FieldError>, name: &str, text: &str) {
    if text.trim().is_empty() {
        errors.push(field(name, "is required"));
    } else if text.chars().count() > MAX_TEXT_CHARS {
        errors.push(field(
            name,
            format!("is at most {MAX_TEXT_CHARS} characters"),
        ));
    }
}

/// A request id as the edge accepts one (`X-Request-Id`): 1 to 128 letters, digits and
/// `-_.:=+/`.
pub fn valid_request_id(id: &str) -> bool {
    lumi_shared::http::edge::is_valid_request_id(id)
}

impl NewIncident {
    /// Every field checked at once: the severity, or every field that is wrong.
    pub fn check(&self) -> Result<Severity, IncidentError> {
        let mut errors = Vec::new();
        if !valid_reference(&self.order_reference) {
            errors.push(field(
                "order_reference",
                "is not an order reference (LUMI-XXXX-XXXX)",
            ));
        }
        check_text(&mut errors, "summary", &self.summary);
        let severity = Severity::parse(&self.severity);
        if severity.is_none() {
            errors.push(field("severity", "is one of low, medium, high, critical"));
        }
        if self.request_ids.len() > MAX_REQUEST_IDS {
            errors.push(field(
                "request_ids",
                format!("holds at most {MAX_REQUEST_IDS} request ids"),
            ));
        } else {
            for (i, id) in self.request_ids.iter().enumerate() {
                if !valid_request_id(id) {
                    errors.push(field(
                        format!("request_ids[{i}]"),
                        "is 1 to 128 letters, digits or -_.:=+/",
                    ));
                }
            }
        }
        match severity {
            Some(severity) if errors.is_empty() => Ok(severity),
            _ => Err(IncidentError::Invalid(errors)),
        }
    }
}

impl StatusChange {
    pub fn check(&self) -> Result<IncidentStatus, IncidentError> {
        let mut errors = Vec::new();
        let status = IncidentStatus::parse(&self.status);
        if status.is_none() {
            errors.push(field("status", "is one of open, resolved"));
        }
        check_text(&mut errors, "note", &self.note);
        match status {
            Some(status) if errors.is_empty() => Ok(status),
            _ => Err(IncidentError::Invalid(errors)),
        }
    }
}

/// An audit event of the order, linked by its key (`AUDIT#<day>`/`<time>#<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinkedAuditEvent {
    pub pk: String,
    pub sk: String,
    pub action: String,
    pub actor: String,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// An incident as stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Incident {
    /// `inc_` and 20 hexadecimal digits.
    pub id: String,
    pub order_reference: String,
    pub summary: String,
    pub severity: Severity,
    pub status: IncidentStatus,
    /// The last status change's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_note: Option<String>,
    pub request_ids: Vec<String>,
    /// The order's tracking payload when the incident was recorded, as the track route
    /// answered it then.
    pub tracking: serde_json::Value,
    /// The order's version the snapshot was taken at.
    pub order_version: u64,
    /// The order's audit events, newest first (at most [`MAX_LINKED_AUDIT_EVENTS`]).
    pub audit_events: Vec<LinkedAuditEvent>,
    /// Whether the order had more audit events than were linked (see the audit log by target).
    pub audit_events_truncated: bool,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub version: u64,
}

/// An incident in a listing: no snapshot, no links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IncidentSummary {
    pub id: String,
    pub order_reference: String,
    pub summary: String,
    pub severity: Severity,
    pub status: IncidentStatus,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
}

impl From<Incident> for IncidentSummary {
    fn from(i: Incident) -> Self {
        Self {
            id: i.id,
            order_reference: i.order_reference,
            summary: i.summary,
            severity: i.severity,
            status: i.status,
            created_at: i.created_at,
            created_by: i.created_by,
            updated_at: i.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IncidentItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    #[serde(flatten)]
    incident: Incident,
}

fn incident_key(id: &str) -> Item {
    key(format!("INCIDENT#{id}"), "INCIDENT")
}

/// Whether `id` has the shape of an incident id (checked before any read).
pub fn valid_id(id: &str) -> bool {
    id.len() == 24
        && id.starts_with("inc_")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn audit_event(
    actor: &Actor,
    action: &str,
    id: &str,
    summary: serde_json::Value,
    at: &str,
) -> AuditEvent {
    AuditEvent {
        actor: actor.name.clone(),
        action: action.into(),
        target: format!("incident:{id}"),
        summary,
        request_id: actor.request_id.clone(),
        client_ip: actor.client_ip.clone(),
        at: at.to_owned(),
    }
}

/// One page of incidents and the cursor of the next.
pub type IncidentPage = (Vec<IncidentSummary>, Option<String>);

impl Shop {
    /// Records an incident for an order (404 when there is none): the order's tracking payload
    /// and audit-event keys as they are now, and the request ids given; audited
    /// (`incident.create`) in the same transaction.
    pub async fn record_incident(
        &self,
        request: &NewIncident,
        actor: &Actor,
        guard: &Guard,
    ) -> Result<Done<Incident>, IncidentError> {
        let severity = request.check()?;
        let (db, table) = (self.db(), self.table());
        if let Some(body) = guard
            .lookup(db, table, self.now_us())
            .await
            .map_err(CommerceError::from)?
        {
            return Ok(Done::Replay(body));
        }
        let reference = request.order_reference.as_str();
        let order = self.order(reference).await?;
        let (audit_events, audit_events_truncated) = self.order_audit_events(reference).await?;
        let tracking = serde_json::to_value(tracking(&order))
            .map_err(|e| CommerceError::Internal(format!("tracking of {reference}: {e}")))?;
        let now_us = self.now_us();
        let now = rfc3339(now_us);
        let incident = Incident {
            id: crate::new_id("inc"),
            order_reference: reference.to_owned(),
            summary: request.summary.clone(),
            severity,
            status: IncidentStatus::Open,
            status_note: None,
            request_ids: request.request_ids.clone(),
            tracking,
            order_version: order.version,
            audit_events,
            audit_events_truncated,
            created_at: now.clone(),
            created_by: actor.name.clone(),
            updated_at: now.clone(),
            version: 1,
        };
        let mut tx = Tx::new(self.table());
        tx.put(
            &IncidentItem {
                pk: format!("INCIDENT#{}", incident.id),
                sk: "INCIDENT".into(),
                gsi1pk: LIST_PARTITION.into(),
                gsi1sk: format!("{now_us:020}#{}", incident.id),
                incident: incident.clone(),
            },
            Some("attribute_not_exists(pk)"),
            Vec::new(),
        )?;
        audit::record_in(
            &mut tx,
            &audit_event(
                actor,
                "incident.create",
                &incident.id,
                serde_json::json!({
                    "order_reference": incident.order_reference,
                    "severity": incident.severity,
                    "order_version": incident.order_version,
                    "request_ids": incident.request_ids.len(),
                    "audit_events": incident.audit_events.len(),
                }),
                &now,
            ),
        )?;
        let response = serde_json::to_value(&incident)
            .map_err(|e| CommerceError::Internal(format!("incident {}: {e}", incident.id)))?;
        let guard_part = guard.record(&mut tx, &response, now_us)?;
        match db.commit(tx).await? {
            Ok(()) => Ok(Done::Fresh(incident)),
            // The key is live: the first request's answer (or 409 while it is still writing).
            Err(cancelled) if cancelled.condition_failed(guard_part) => Ok(Done::Replay(
                guard
                    .resolve(db, table, now_us)
                    .await
                    .map_err(CommerceError::from)?,
            )),
            Err(_) => Err(IncidentError::Conflict(
                "the incident was not recorded; retry".into(),
            )),
        }
    }

    /// The order's audit events, newest first: one query of at most
    /// [`MAX_LINKED_AUDIT_EVENTS`], and whether more may exist.
    async fn order_audit_events(
        &self,
        reference: &str,
    ) -> Result<(Vec<LinkedAuditEvent>, bool), IncidentError> {
        let request = self
            .db()
            .client()
            .query()
            .table_name(self.table())
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :p")
            .expression_attribute_values(":p", s(format!("AUDIT_TARGET#order:{reference}")))
            .scan_index_forward(false)
            .limit(MAX_LINKED_AUDIT_EVENTS);
        let (items, next) = self.db().query_page(self.table(), request).await?;
        let events = items
            .into_iter()
            .map(|item| from_item::<LinkedAuditEvent>(self.table(), item))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((events, next.is_some()))
    }

    /// The incident with `id`, or 404.
    pub async fn incident(&self, id: &str) -> Result<Incident, IncidentError> {
        Ok(self.incident_item(id).await?.incident)
    }

    async fn incident_item(&self, id: &str) -> Result<IncidentItem, IncidentError> {
        let missing = || IncidentError::NotFound(format!("no incident {id}"));
        if !valid_id(id) {
            return Err(missing());
        }
        self.db()
            .get_consistent::<IncidentItem>(self.table(), incident_key(id))
            .await?
            .ok_or_else(missing)
    }

    /// Incidents, newest first: one page of at most `limit`.
    pub async fn incidents(
        &self,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<IncidentPage, IncidentError> {
        let start = cursor
            .map(|c| {
                decode_cursor(c, "gsi1pk", LIST_PARTITION)
                    .map_err(|_| IncidentError::Malformed("cursor"))
            })
            .transpose()?;
        let request = self
            .db()
            .client()
            .query()
            .table_name(self.table())
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :p")
            .expression_attribute_values(":p", s(LIST_PARTITION))
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(start);
        let (items, last) = self.db().query_page(self.table(), request).await?;
        let incidents = items
            .into_iter()
            .map(|item| {
                from_item::<IncidentItem>(self.table(), item)
                    .map(|i| IncidentSummary::from(i.incident))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((incidents, last.as_ref().map(encode_cursor)))
    }

    /// Opens or resolves an incident, with a note; audited (`incident.status`) in the same
    /// transaction, under the version read (409 when it changed meanwhile, or already has
    /// that status).
    pub async fn set_incident_status(
        &self,
        id: &str,
        change: &StatusChange,
        actor: &Actor,
    ) -> Result<Incident, IncidentError> {
        let status = change.check()?;
        let item = self.incident_item(id).await?;
        let before = item.incident.clone();
        if before.status == status {
            return Err(IncidentError::Conflict(format!(
                "the incident is {} already",
                status.as_str()
            )));
        }
        let now_us = self.now_us();
        let now = rfc3339(now_us);
        let after = Incident {
            status,
            status_note: Some(change.note.clone()),
            updated_at: now.clone(),
            version: before.version + 1,
            ..before.clone()
        };
        let mut tx = Tx::new(self.table());
        tx.put(
            &IncidentItem {
                incident: after.clone(),
                ..item
            },
            Some("#version = :read"),
            vec![(":read", n(before.version))],
        )?;
        audit::record_in(
            &mut tx,
            &audit_event(
                actor,
                "incident.status",
                id,
                serde_json::json!({
                    "before": { "status": before.status },
                    "after": { "status": after.status, "note": change.note },
                }),
                &now,
            ),
        )?;
        self.db().commit(tx).await?.map_err(|_| {
            IncidentError::Conflict("the incident changed meanwhile; reload it".into())
        })?;
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(reference: &str, summary: &str, severity: &str, ids: Vec<String>) -> NewIncident {
        NewIncident {
            order_reference: reference.into(),
            summary: summary.into(),
            severity: severity.into(),
            request_ids: ids,
        }
    }

    fn fields(error: IncidentError) -> Vec<String> {
        match error {
            IncidentError::Invalid(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("not a validation error: {other}"),
        }
    }

    #[test]
    fn a_valid_request_passes_with_its_severity() {
        let ok = request(
            "LUMI-7K3F-9Q2M",
            "card testing",
            "high",
            vec!["abc-1".into()],
        );
        assert_eq!(ok.check().unwrap(), Severity::High);
    }

    #[test]
    fn every_wrong_field_is_named() {
        let bad = request(
            "LUMI-0000",
            " ",
            "urgent",
            vec!["ok".into(), "not ok".into()],
        );
        assert_eq!(
            fields(bad.check().unwrap_err()),
            ["order_reference", "summary", "severity", "request_ids[1]"]
        );
        let long = request(
            "LUMI-7K3F-9Q2M",
            &"x".repeat(2_001),
            "low",
            vec!["a".into(); 21],
        );
        assert_eq!(
            fields(long.check().unwrap_err()),
            ["summary", "request_ids"]
        );
        let longest = request(
            "LUMI-7K3F-9Q2M",
            &"é".repeat(2_000),
            "low",
            vec!["a".into(); 20],
        );
        assert_eq!(longest.check().unwrap(), Severity::Low);
    }

    #[test]
    fn a_status_change_needs_a_known_status_and_a_note() {
        let change = |status: &str, note: &str| StatusChange {
            status: status.into(),
            note: note.into(),
        };
        assert_eq!(
            change("resolved", "refunded").check().unwrap(),
            IncidentStatus::Resolved
        );
        assert_eq!(
            fields(change("closed", "").check().unwrap_err()),
            ["status", "note"]
        );
    }

    #[test]
    fn ids_are_checked_exactly() {
        let id = crate::new_id("inc");
        assert!(valid_id(&id), "{id}");
        assert!(!valid_id("inc_0123456789abcdef012"));
        assert!(!valid_id("inc_0123456789ABCDEF0123"));
        assert!(!valid_id("re_0123456789abcdef01234"));
    }
}
