//! Security incidents (the fraud or chargeback procedure's step 3): record one for an order (its
//! tracking payload, the request ids given and its audit events' keys, kept as they were), list
//! them newest first, read one, open or resolve one with a note. Each handler parses, calls one
//! `lumi_commerce::incidents` use case (which audits its own writes) and shapes the answer.

use axum::response::Response;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
};
use lumi_commerce::incidents::IncidentSummary;
use lumi_commerce::incidents::{Incident, NewIncident, StatusChange};
use lumi_shared::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, ServiceUnavailable,
    TooManyRequests, Unauthorized, UnsupportedMediaType, ValidationFailed,
};
use lumi_shared::{
    ApiResult,
    auth::{AdminUser, sessions::RequestMeta},
    http::{Json, extract::idempotent},
    idempotency::{Guard, IdempotencyKey, hash_request},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One page of incidents.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentPage {
    pub incidents: Vec<IncidentSummary>,
    /// The `cursor` of the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

const INCIDENT_ID: &str = "The incident id (`inc_` and 20 hexadecimal digits).";

use crate::{Shared, actor};

/// Record a security incident for an order (the fraud or chargeback procedure's step 3)
///
/// Idempotency-Key required: a retry with the same key and body gets the same incident
/// (`Idempotency-Replayed: true`), not a second one; 422 names every wrong field; 404 for an
/// unknown order.
#[utoipa::path(
    post,
    path = "/api/v1/admin/incidents",
    tag = "admin",
    operation_id = "adminCreateIncident",
    security(("accessToken" = [])),
    params(
        ("Idempotency-Key" = String, Header, description = "One key per intended incident (1 to 128 letters, digits, `-`, `_`, `.` or `:`).", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:-]{1,128}$"),
    ),
    request_body(content = NewIncident, content_type = "application/json",
        example = json!({ "order_reference": "LUMI-7K3F-9Q2M", "summary": "chargeback opened; card reported stolen", "severity": "high", "request_ids": ["3f1c2a9e-5b7d-4e21-9c0a-7d9e8f6a1b2c"] })),
    responses(
        (status = 201, description = "The incident.", body = Incident, headers(("Idempotency-Replayed" = String, description = "`true` when this answers an earlier request with the same key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]

pub async fn create_incident(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    key: IdempotencyKey,
    Json(body): Json<NewIncident>,
) -> ApiResult<Response> {
    // The parsed body, re-serialised: the same incident asked twice hashes the same whatever
    // its whitespace or field order.
    let canonical = serde_json::to_vec(&body).unwrap_or_default();
    let guard = Guard::new(
        &format!("incident:{}", admin.0.user.id),
        &key,
        hash_request(&[b"incident", &canonical]),
    );
    let done = shop
        .record_incident(&body, &actor(&admin, meta), &guard)
        .await?;
    Ok(idempotent(StatusCode::CREATED, done))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<i32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Incidents, newest first, without their snapshots
#[utoipa::path(
    get,
    path = "/api/v1/admin/incidents",
    tag = "admin",
    operation_id = "adminListIncidents",
    security(("accessToken" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "One page.", body = IncidentPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]
pub async fn list_incidents(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Query(query): Query<PageQuery>,
) -> ApiResult<axum::Json<IncidentPage>> {
    let limit = crate::page_limit(query.limit, 50)?;
    let (incidents, next) = shop.incidents(limit, query.cursor.as_deref()).await?;
    Ok(axum::Json(IncidentPage {
        incidents,
        next_cursor: next,
    }))
}

/// One incident, with the order's tracking snapshot and its linked audit events
#[utoipa::path(
    get,
    path = "/api/v1/admin/incidents/{id}",
    tag = "admin",
    operation_id = "adminGetIncident",
    security(("accessToken" = [])),
    params(("id" = String, Path, description = INCIDENT_ID)),
    responses(
        (status = 200, description = "The incident.", body = Incident),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]

pub async fn get_incident(
    State(shop): State<Shared>,
    _admin: AdminUser,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Incident>> {
    Ok(axum::Json(shop.incident(&id).await?))
}

/// Resolve or reopen an incident, with a note (audited, `incident.status`)
#[utoipa::path(
    patch,
    path = "/api/v1/admin/incidents/{id}",
    tag = "admin",
    operation_id = "adminSetIncidentStatus",
    security(("accessToken" = [])),
    params(("id" = String, Path, description = INCIDENT_ID)),
    request_body(content = StatusChange, content_type = "application/json", example = json!({ "status": "resolved", "note": "refunded; card blocked" })),
    responses(
        (status = 200, description = "The incident.", body = Incident),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    ),
)]

pub async fn set_incident_status(
    State(shop): State<Shared>,
    admin: AdminUser,
    meta: RequestMeta,
    Path(id): Path<String>,
    Json(body): Json<StatusChange>,
) -> ApiResult<axum::Json<Incident>> {
    Ok(axum::Json(
        shop.set_incident_status(&id, &body, &actor(&admin, meta))
            .await?,
    ))
}
